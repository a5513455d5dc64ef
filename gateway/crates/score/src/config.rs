//! The `[score]` section: where scoring finds the department's data.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Where scoring finds the department's data.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ScoreConfig {
    /// Folder of TOML files that override the shipped norms (same file names as
    /// `gateway/crates/score/norms/`); read at every computation, so edits apply without a restart.
    pub norms_dir: Option<PathBuf>,
    /// Limit set to score against (overrides `active_set` in the norms).
    pub limit_set: Option<String>,
    /// GeoJSON FeatureCollection of low-emission zones loaded at startup (properties: `id`,
    /// `name`, `start_date`); zones can also be added through the API.
    pub zones_file: Option<PathBuf>,
}
