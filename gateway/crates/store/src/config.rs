//! The `[store]` section: which engine ([`StoreConfig::location`]: SQLite in the data dir, or
//! a PostgreSQL server named by `url`), and SQLite's settings.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Store settings.
#[derive(Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// Where the store is: `postgres://user:password@host:port/db` selects PostgreSQL (several
    /// replicas share it); absent, or `sqlite://DIR`, SQLite in a folder (`data_dir`, or DIR).
    /// Shown without its password (`gateway config`, logs).
    #[serde(serialize_with = "serialize_redacted")]
    pub url: Option<String>,
    /// Folder holding `taza.db`.
    pub data_dir: PathBuf,
    /// How long raw readings are kept (rollups and day aggregates are kept for ever, so
    /// scores do not change), e.g. `"400d"`. None: keep for ever. Shown in whole days when it
    /// is whole days (humantime would print 400 days as `1year 1month 4days 7h 26m 24s`).
    #[serde(
        deserialize_with = "humantime_serde::deserialize",
        serialize_with = "serialize_retention"
    )]
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
            url: None,
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

/// Where a store lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// SQLite in this folder (`taza.db` inside).
    Sqlite(PathBuf),
    /// A PostgreSQL server, by its connection URL.
    Postgres(String),
}

impl Location {
    /// `postgres://...` (or `postgresql://...`), or `sqlite://DIR` (a folder: `sqlite://taza-data`
    /// is relative, `sqlite:///var/lib/taza` absolute).
    pub fn parse(url: &str) -> Result<Self, String> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(Self::Postgres(url.to_owned()));
        }
        match url.strip_prefix("sqlite://") {
            Some("") => Err("store url sqlite:// names no folder (sqlite://DIR)".into()),
            Some(dir) => Ok(Self::Sqlite(PathBuf::from(dir))),
            None => Err(format!(
                "store url {} is neither postgres://... nor sqlite://DIR",
                crate::pg::redact(url)
            )),
        }
    }
}

impl StoreConfig {
    /// Where the store is: `url` when set, else SQLite in `data_dir`.
    pub fn location(&self) -> Result<Location, String> {
        match &self.url {
            Some(url) => Location::parse(url),
            None => Ok(Location::Sqlite(self.data_dir.clone())),
        }
    }

    /// The settings for SQLite in `dir` (what a `sqlite://DIR` url means).
    pub fn sqlite_in(&self, dir: PathBuf) -> Self {
        Self {
            url: None,
            data_dir: dir,
            ..self.clone()
        }
    }

    /// What is wrong with these settings, all of it.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if let Err(e) = self.location() {
            problems.push(format!("store.url: {e}"));
        }
        if self.default_cadence.is_zero() {
            problems.push("store.default_cadence must be positive".into());
        }
        problems
    }
}

// By hand: the url may hold a password.
impl std::fmt::Debug for StoreConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreConfig")
            .field("url", &self.url.as_deref().map(crate::pg::redact))
            .field("data_dir", &self.data_dir)
            .field("raw_retention", &self.raw_retention)
            .field("synchronous", &self.synchronous)
            .field("default_cadence", &self.default_cadence)
            .finish()
    }
}

fn serialize_retention<S: serde::Serializer>(
    d: &Option<Duration>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) if d.as_secs() > 0 && d.as_secs() % 86_400 == 0 && d.subsec_nanos() == 0 => {
            s.serialize_some(&format!("{}d", d.as_secs() / 86_400))
        }
        other => humantime_serde::serialize(other, s),
    }
}

fn serialize_redacted<S: serde::Serializer>(url: &Option<String>, s: S) -> Result<S::Ok, S::Error> {
    match url {
        Some(url) => s.serialize_some(&crate::pg::redact(url)),
        None => s.serialize_none(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_url_picks_the_engine_and_sqlite_is_the_default() {
        let mut c = StoreConfig::default();
        assert_eq!(
            c.location(),
            Ok(Location::Sqlite(PathBuf::from("taza-data")))
        );
        c.url = Some("sqlite:///var/lib/taza".into());
        assert_eq!(
            c.location(),
            Ok(Location::Sqlite(PathBuf::from("/var/lib/taza")))
        );
        c.url = Some("postgres://taza:pw@db:5432/taza".into());
        assert_eq!(
            c.location(),
            Ok(Location::Postgres("postgres://taza:pw@db:5432/taza".into()))
        );
        assert!(!format!("{c:?}").contains("pw"));
        c.url = Some("mysql://db/taza".into());
        assert_eq!(c.problems().len(), 1, "{:?}", c.problems());
        c.url = Some("sqlite://".into());
        assert_eq!(c.problems().len(), 1);
    }
}
