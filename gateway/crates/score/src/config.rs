//! The `[score]` section: where scoring finds the department's data.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Where scoring finds the department's data.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ScoreConfig {
    /// Folder of TOML files that override the shipped norms (same file names as
    /// `gateway/crates/score/norms/`). Scores reload them when a file changes (checked at each
    /// request by size and modification time), so edits apply without a restart; an edit that does
    /// not validate keeps the last good norms and shows in `/healthz`. Alert thresholds that name a
    /// norm resolve at start: restart the gateway for those.
    pub norms_dir: Option<PathBuf>,
    /// Limit set to score against (overrides `active_set` in the norms).
    pub limit_set: Option<String>,
    /// GeoJSON FeatureCollection of low-emission zones loaded at startup (properties: `id`,
    /// `name`, `start_date`); zones can also be added through the API.
    pub zones_file: Option<PathBuf>,
}
