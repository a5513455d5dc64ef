//! The `[store]` section.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// SQLite settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// Folder holding `taza.db`.
    pub data_dir: PathBuf,
    /// How long raw readings are kept (rollups are kept for ever). None: keep for ever.
    #[serde(with = "humantime_serde")]
    pub raw_retention: Option<Duration>,
    /// `full` survives power loss; `normal` survives a process crash and is faster.
    pub synchronous: Synchronous,
    /// Reporting interval assumed for posts that do not set one (data capture needs it).
    #[serde(with = "humantime_serde")]
    pub default_cadence: Duration,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("taza-data"),
            raw_retention: None,
            synchronous: Synchronous::Full,
            default_cadence: Duration::from_secs(60),
        }
    }
}

/// SQLite `synchronous` pragma.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Synchronous {
    /// fsync on every commit: durable across power loss.
    Full,
    /// WAL fsync at checkpoints only: durable across process crashes.
    Normal,
}
