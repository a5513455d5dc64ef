//! The post registry, in one place: registering and changing posts ([`manage`]), their MQTT
//! credentials and device config blobs ([`provision`]), the broker's password file and ACL
//! ([`mosquitto`]), the desired config each post is sent ([`config_push`]), the in-memory copy
//! the running gateway admits by ([`refresh`]) and commissioning a post on site
//! ([`commission`]). [`service`] is the one door the CLI and the API both use.
//!
//! Owns the registry's rules and workflows; the SQL behind them lives in `taza_store::registry`.

pub mod commission;
pub mod config;
pub mod config_push;
pub mod manage;
pub mod mosquitto;
pub mod provision;
pub mod refresh;
pub mod service;
#[cfg(test)]
mod testing;
