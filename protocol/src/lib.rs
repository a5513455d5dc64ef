//! The Taza wire contract, shared by sensor posts (firmware, `no_std`, no allocator) and the
//! gateway (`std` feature).
//!
//! It owns:
//! - [`PostId`]: the slug that names a post in topics and SenML base names;
//! - [`Quantity`] and [`Unit`]: what a post measures and the one unit each is carried in;
//! - [`QaFlags`]: the data-quality flags a post attaches to an averaged record;
//! - [`topic`][mod@topic]: `{prefix}/v1/posts/{post_id}/{telemetry|status|config}`;
//! - [`senml`]: SenML (RFC 8428) telemetry in CBOR (from posts) and JSON (people, third parties),
//!   decoded by looking at the first byte, never by a header;
//! - [`status`]: the retained birth / last-will message on the status topic;
//! - [`device_config`]: the provisioning blob (identity, broker, credentials, sensors, initial
//!   config) a post reads from flash.
//!
//! Decoding never panics and never allocates without bound: inputs larger than
//! [`senml::MAX_PAYLOAD_BYTES`] are refused before parsing, and every refusal is a
//! [`DecodeError`] whose [`DecodeError::as_label`] is a bounded metric label.
#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::indexing_slicing,
        clippy::panic
    )
)]

// Tests use `std` collections even in the no_std build.
#[cfg(any(test, feature = "std"))]
extern crate std;

pub mod device_config;
mod error;
pub mod post_config;
mod post_id;
mod qa;
mod quantity;
pub mod senml;
pub mod status;
mod time;
pub mod topic;

pub use error::DecodeError;
pub use post_id::PostId;
pub use qa::QaFlags;
pub use quantity::{Quantity, Unit};
pub use senml::{Measurement, Telemetry};
pub use time::UnixSeconds;
