//! [`Store`]: what the stages past the writer (API, registry, alerts, sink) hold instead of a
//! database: reads and short write transactions over either backend, each run on the blocking
//! pool with a [`Db`] handed to a store function.

use std::path::Path;
use std::sync::Arc;

use crate::admin::AdminWriter;
use crate::db::Db;
use crate::pg::PgStore;
use crate::{ReadPool, StoreError};

/// Which engine a store runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// SQLite in the data dir (one machine).
    Sqlite,
    /// A PostgreSQL server shared by replicas.
    Postgres,
}

/// The store as the stages past the writer see it.
#[derive(Debug, Clone)]
pub enum Store {
    /// SQLite: a pool of read-only connections and one write connection for people's changes
    /// (the ingest writer has its own).
    Sqlite {
        /// Read-only connections.
        reads: Arc<ReadPool>,
        /// The write connection for API changes.
        admin: Arc<AdminWriter>,
    },
    /// PostgreSQL: one pool for everything.
    Pg(PgStore),
}

impl Store {
    /// A SQLite store over the database at `path` (created and migrated by the writer's
    /// connection, [`crate::open_writer`]).
    pub fn sqlite(path: &Path) -> Result<Self, StoreError> {
        Ok(Self::Sqlite {
            reads: ReadPool::new(path),
            admin: AdminWriter::open(path)?,
        })
    }

    /// Which engine this is.
    pub fn backend(&self) -> Backend {
        match self {
            Self::Sqlite { .. } => Backend::Sqlite,
            Self::Pg(_) => Backend::Postgres,
        }
    }

    /// The SQLite database file, if this is SQLite.
    pub fn sqlite_path(&self) -> Option<&Path> {
        match self {
            Self::Sqlite { reads, .. } => Some(reads.path()),
            Self::Pg(_) => None,
        }
    }

    /// Runs `f` on a read connection (SQLite: a read-only connection; PostgreSQL: a read-only
    /// transaction, so several reads in `f` see one snapshot).
    pub async fn read<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Db<'_>) -> Result<T, StoreError> + Send + 'static,
    {
        match self {
            Self::Sqlite { reads, .. } => reads.run(move |c| f(&Db::Sqlite(c))).await,
            Self::Pg(pg) => pg.run(true, move |p| f(&Db::Pg(p))).await,
        }
    }

    /// Runs `f` in a write transaction that commits only when `f` succeeds, so a refused
    /// change leaves nothing behind (SQLite: IMMEDIATE on the admin connection).
    pub async fn write<T, E, F>(&self, f: F) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
        F: FnOnce(&Db<'_>) -> Result<T, E> + Send + 'static,
    {
        match self {
            Self::Sqlite { admin, .. } => admin.run_checked(move |tx| f(&Db::Sqlite(tx))).await,
            Self::Pg(pg) => pg.run(false, move |p| f(&Db::Pg(p))).await,
        }
    }

    /// Checks that the store answers (the store half of `/healthz`).
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.read(|db| match db {
            Db::Sqlite(c) => crate::ping(c),
            Db::Pg(p) => p.query_one("SELECT 1", &[]).map(drop),
        })
        .await
    }
}
