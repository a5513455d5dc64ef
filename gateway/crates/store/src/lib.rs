//! The store, on SQLite (the embedded default, one machine) or PostgreSQL (replicas sharing one
//! server, [`pg`]): every store function takes a [`Db`] and holds both engines' SQL side by
//! side, and the stages past the writer hold a [`Store`]. What follows is the SQLite side.
//!
//! The SQLite store (WAL) in the data dir: raw readings keyed by (series, time), a series being
//! a (post, quantity) with an integer id ([`series`]), so replays are idempotent; hourly,
//! 20-minute and local-day rollups maintained as readings commit; the post registry and status;
//! the alert log and outbox ([`alerts`], [`outbox`]) and the sink's durable queue
//! ([`sink_queue`]). Every SQL statement of the gateway lives in this crate.
//!
//! One writer connection lives on a dedicated thread ([`writer`]) and does group commits; the
//! API reads through a small pool of read-only connections ([`ReadPool`]). Pragmas are set in
//! one place, [`open_writer`] / [`ReadPool`], and the schema is versioned ([`schema`]).

pub mod admin;
pub mod alerts;
pub mod checkpoint;
pub mod config;
pub mod day_scores;
pub mod db;
pub mod metrics;
mod multirow;
pub mod outbox;
pub mod pg;
pub mod read;
pub mod registry;
mod rollup;
pub mod schema;
pub mod series;
pub mod sink_queue;
pub mod status;
mod store;
pub mod writer;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The connection type every store function takes (callers hold one, never build SQL).
pub use rusqlite::Connection;
use rusqlite::OpenFlags;

use crate::config::{StoreConfig, Synchronous};
pub use crate::db::Db;
pub use crate::store::{Backend, Store};

/// File name of the database inside the data dir.
pub const DB_FILE: &str = "taza.db";
/// How long a connection waits for a lock before failing.
pub(crate) const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// Read connections kept open between requests.
const MAX_IDLE_READERS: usize = 8;

/// Failures of the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite said no.
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// PostgreSQL said no.
    #[error("postgres: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    /// No PostgreSQL connection could be had (server down, pool exhausted).
    #[error("postgres pool: {0}")]
    Pool(String),
    /// The store's configuration is wrong (a URL that does not parse...).
    #[error("{0}")]
    Config(String),
    /// What was asked exists on the other backend only (named).
    #[error("{0} is not available on this store's backend")]
    Unsupported(&'static str),
    /// The data dir could not be created.
    #[error("cannot create data dir {path}: {source}")]
    DataDir {
        /// The dir.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The database was written by a newer gateway.
    #[error("database schema version {found} is newer than this gateway's {supported}")]
    SchemaTooNew {
        /// Version in the file.
        found: i64,
        /// Newest this build knows.
        supported: i64,
    },
    /// A blocking task panicked or was cancelled.
    #[error("store task failed: {0}")]
    Task(String),
    /// A stored value does not read back as what was written (hand edits, disk damage, a
    /// bug): reported, never replaced by a default.
    #[error("corrupt {what} in {table} row {key}")]
    Corrupt {
        /// The table.
        table: &'static str,
        /// The row's key (a post id...).
        key: String,
        /// Which value and why, e.g. `sensors: expected value at line 1 column 1`.
        what: String,
    },
}

/// Path of the database for `cfg`.
pub fn db_path(cfg: &StoreConfig) -> PathBuf {
    cfg.data_dir.join(DB_FILE)
}

/// Opens (creating and migrating if needed) the writer connection.
pub fn open_writer(cfg: &StoreConfig) -> Result<Connection, StoreError> {
    std::fs::create_dir_all(&cfg.data_dir).map_err(|source| StoreError::DataDir {
        path: cfg.data_dir.clone(),
        source,
    })?;
    let mut conn = open_connection(&db_path(cfg))?;
    conn.pragma_update(None, "journal_mode", "wal")?;
    let sync = match cfg.synchronous {
        Synchronous::Full => "full",
        Synchronous::Normal => "normal",
    };
    conn.pragma_update(None, "synchronous", sync)?;
    // An 8 MB page cache holds a group commit's pages: keyed post first, then time ([`series`]),
    // a commit dirties a page or two per post and table (the old (post, quantity, time) keys
    // dirtied pages per series and needed 16 MB). The 2 MB default spills under a flood. Checkpoints run on their own thread ([`checkpoint`]), not
    // inside the writer's commits.
    conn.pragma_update(None, "cache_size", -8_192)?;
    conn.pragma_update(None, "wal_autocheckpoint", 0)?;
    schema::migrate(&mut conn)?;
    Ok(conn)
}

/// Opens a read-write connection to the database at `path` with the pragmas every connection
/// shares (busy timeout, foreign keys). The one place connections are opened: the writer adds its
/// own pragmas on top, and the outbox worker, the sink, the checkpointer and admin tasks use this
/// as it is.
pub fn open_connection(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.pragma_update(None, "foreign_keys", "on")?;
    Ok(conn)
}

/// Checks that `conn` answers a query (the store half of `/healthz`).
pub fn ping(conn: &Connection) -> Result<(), StoreError> {
    conn.query_row("SELECT 1", [], |r| r.get::<_, i64>(0))?;
    Ok(())
}

/// Read-only connections for the API, opened on demand and reused.
#[derive(Debug)]
pub struct ReadPool {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
}

impl ReadPool {
    /// A pool over the database at `path` (which the writer has created).
    pub fn new(path: &Path) -> Arc<Self> {
        Arc::new(Self {
            path: path.to_path_buf(),
            idle: Mutex::new(Vec::new()),
        })
    }

    fn take(&self) -> Result<Connection, StoreError> {
        if let Some(c) = self.idle.lock().ok().and_then(|mut v| v.pop()) {
            return Ok(c);
        }
        let conn = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_ONLY
                | OpenFlags::SQLITE_OPEN_NO_MUTEX
                | OpenFlags::SQLITE_OPEN_URI,
        )?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        Ok(conn)
    }

    fn put(&self, conn: Connection) {
        if let Ok(mut idle) = self.idle.lock() {
            if idle.len() < MAX_IDLE_READERS {
                idle.push(conn);
            }
        }
    }

    /// The database file the pool reads.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` on a read connection on the blocking pool.
    pub async fn run<T, F>(self: &Arc<Self>, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let pool = Arc::clone(self);
        tokio::task::spawn_blocking(move || {
            let conn = pool.take()?;
            let result = f(&conn);
            pool.put(conn);
            result
        })
        .await
        .map_err(|e| StoreError::Task(e.to_string()))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ping_answers_on_a_store_and_fails_on_a_file_that_is_not_one() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = StoreConfig {
            data_dir: dir.path().to_path_buf(),
            ..Default::default()
        };
        ping(&open_writer(&cfg).unwrap()).unwrap();
        let junk = dir.path().join("junk.db");
        std::fs::write(&junk, "not a database, just text long enough to be read").unwrap();
        assert!(ping(&open_connection(&junk).unwrap()).is_err());
    }
}
