//! Writes people make through the API (zones now; the registry and alert acknowledgements
//! later), on a connection of their own: they are rare, and SQLite's busy timeout lets them
//! interleave with ingest's group commits without a queue between the two.

use std::path::Path;
use std::sync::{Arc, Mutex};

use rusqlite::{params, Connection};

use super::StoreError;

/// The API's write connection.
#[derive(Debug)]
pub struct AdminWriter {
    conn: Mutex<Connection>,
}

impl AdminWriter {
    /// Opens a write connection to the database the writer created.
    pub fn open(path: &Path) -> Result<Arc<Self>, StoreError> {
        let conn = crate::open_connection(path)?;
        Ok(Arc::new(Self {
            conn: Mutex::new(conn),
        }))
    }

    /// Runs `f` in a transaction on the blocking pool.
    pub async fn run<T, F>(self: &Arc<Self>, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&rusqlite::Transaction<'_>) -> Result<T, StoreError> + Send + 'static,
    {
        self.run_checked(f).await
    }

    /// Like [`Self::run`] for changes with their own refusals (the registry's): the transaction
    /// commits only when `f` succeeds, so a refused change leaves nothing behind.
    pub async fn run_checked<T, E, F>(self: &Arc<Self>, f: F) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
        F: FnOnce(&rusqlite::Transaction<'_>) -> Result<T, E> + Send + 'static,
    {
        let this = Arc::clone(self);
        tokio::task::spawn_blocking(move || {
            let mut conn = this
                .conn
                .lock()
                .map_err(|_| E::from(StoreError::Task("admin connection poisoned".into())))?;
            // IMMEDIATE: take the write lock before the first read. A deferred transaction that
            // reads and then writes fails at once with SQLITE_BUSY (no busy timeout) when another
            // connection committed in between, which is exactly what ingest does all day.
            let tx = conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(|e| E::from(e.into()))?;
            let out = f(&tx)?;
            tx.commit().map_err(|e| E::from(e.into()))?;
            Ok(out)
        })
        .await
        .map_err(|e| E::from(StoreError::Task(e.to_string())))?
    }
}

/// A zone to store (its geometry already validated by the caller).
#[derive(Debug, Clone)]
pub struct NewZone {
    /// Id (slug).
    pub id: String,
    /// Name.
    pub name: String,
    /// Local date it took effect, YYYY-MM-DD.
    pub start_date: String,
    /// GeoJSON geometry, as text.
    pub geometry: String,
}

/// Adds or replaces a zone; returns true when it was new.
pub fn upsert_zone(
    tx: &rusqlite::Transaction<'_>,
    zone: &NewZone,
    by: &str,
) -> Result<bool, StoreError> {
    let existed = tx
        .prepare_cached("SELECT 1 FROM zones WHERE id = ?1")?
        .exists([zone.id.as_str()])?;
    tx.prepare_cached(
        "INSERT INTO zones (id, name, start_date, geometry, updated_at, updated_by) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT (id) DO UPDATE SET name = excluded.name, start_date = excluded.start_date,
           geometry = excluded.geometry, updated_at = excluded.updated_at, updated_by = excluded.updated_by",
    )?
    .execute(params![zone.id, zone.name, zone.start_date, zone.geometry, taza_domain::calendar::now().0, by])?;
    Ok(!existed)
}
