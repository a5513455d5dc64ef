//! Taza post firmware core: everything a post does between its sensors and the MQTT broker,
//! generic over embedded-hal(-async), embedded-io-async and embedded-storage-async so the same
//! code runs on a board and in the host simulator (`firmware/sim`).
//!
//! Data flows one way, each stage a module with one job:
//!
//! ```text
//! sensor drivers (pms, sht3x, ads1115 + no2, river)
//!   -> sensor::run_sensor (one loop per sensor, backoff, error counter)
//!   -> Channel<SampleBatch>                                   (sampling never waits on the network)
//!   -> sampling::run_sampler (Averager: windows, QA flags, corrections; SenML CBOR encoding)
//!   -> store::RecordQueue (bounded, flash-backed, drop-oldest counted)
//!   -> uplink::run_uplink (MQTT QoS 1; a record leaves the queue only on PUBACK)
//! ```
//!
//! At boot a post reads its device config blob (identity, broker, credentials, sensors,
//! initial config) from its own flash partition through [`provisioning`]. The uplink's
//! retained status reports firmware, config hash, clock, uptime and the board's
//! [`uplink::Vitals`] (signal, supply).
//!
//! `#![no_std]`, no allocator, no `unsafe`; builds for `thumbv7em-none-eabihf`.
#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![allow(async_fn_in_trait)] // our traits are used with static dispatch only, like embedded-hal-async's
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::indexing_slicing,
        clippy::panic
    )
)]

mod fmt;

pub mod ads1115;
pub mod clock;
pub mod correction;
pub mod installed;
pub mod no2;
pub mod pms;
pub mod provisioning;
pub mod river;
pub mod sampling;
pub mod sensor;
pub mod sht3x;
pub mod store;
pub mod uplink;

pub use clock::Clock;
pub use sensor::{Sample, SampleBatch, Sensor};

/// Firmware version reported in the birth message.
pub const FIRMWARE_VERSION: &str = env!("CARGO_PKG_VERSION");
