//! Integration tests of the gateway: real MQTT brokers (embedded rumqttd, Debian's Mosquitto),
//! real SQLite files, real HTTP. One test binary, one module per capability.
//!
//! Tests that need Mosquitto start their own `mosquitto` process on a free port. Without the
//! binary they print a loud SKIPPED banner to the terminal, or fail when
//! `TAZA_REQUIRE_MOSQUITTO=1` (CI sets it after installing Mosquitto).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod receivers;
mod support;

mod alerts;
mod bad_input;
mod crash;
mod delivery;
mod e2e;
mod health;
mod migrate;
mod pg_replicas;
mod replicas;
mod scores;
mod sink;
mod start;
mod technician_cli;
