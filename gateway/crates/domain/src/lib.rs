//! The gateway's domain: what a post is ([`post`]), the registry the running gateway admits
//! posts by ([`registry`], [`credentials`]), the Almaty calendar ([`calendar`]), the series
//! scoring reads ([`series`]) and the messages between pipeline stages ([`pipeline`]).
//!
//! Owns types and pure functions only: no files, sockets or database. Every other gateway crate
//! depends on this one; it depends on none of them.

pub mod calendar;
pub mod credentials;
pub mod pipeline;
pub mod post;
pub mod registry;
pub mod secret;
pub mod series;

pub use post::{Instrument, LinearFit, No2Cell, PostCalibration, PostEntry, PostKind};
pub use registry::{Admission, Registry};
pub use secret::SecretString;
