//! Zones, and SQLite's write connection for the changes people make through the API and the
//! CLI ([`AdminWriter`], inside [`crate::Store::Sqlite`]): they are rare, and SQLite's busy
//! timeout lets them interleave with ingest's group commits without a queue between the two.
//! On PostgreSQL those changes are transactions of the shared pool ([`crate::Store::write`]).

use std::path::Path;
use std::sync::{Arc, Mutex};

use rusqlite::{params, Connection};

use crate::db::Db;
use crate::StoreError;

/// SQLite's write connection for people's changes (API, CLI); reached through
/// [`crate::Store::write`].
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

    /// Runs `f` in an IMMEDIATE transaction on the blocking pool; it commits only when `f`
    /// succeeds, so a refused change leaves nothing behind ([`crate::Store::write`] on SQLite).
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
pub fn upsert_zone(db: &Db<'_>, zone: &NewZone, by: &str) -> Result<bool, StoreError> {
    let now = taza_domain::calendar::now().0;
    match db {
        Db::Sqlite(c) => {
            let existed = c
                .prepare_cached("SELECT 1 FROM zones WHERE id = ?1")?
                .exists([zone.id.as_str()])?;
            c.prepare_cached(
                "INSERT INTO zones (id, name, start_date, geometry, updated_at, updated_by) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (id) DO UPDATE SET name = excluded.name, start_date = excluded.start_date,
                   geometry = excluded.geometry, updated_at = excluded.updated_at, updated_by = excluded.updated_by",
            )?
            .execute(params![zone.id, zone.name, zone.start_date, zone.geometry, now, by])?;
            Ok(!existed)
        }
        Db::Pg(pg) => {
            // Whether this statement inserted the row (xmax is 0 for a row version no one has
            // updated): exact when two replicas save the same new zone at once, where a look
            // before the upsert would tell both it was new.
            let row = pg.query_one(
                "INSERT INTO zones (id, name, start_date, geometry, updated_at, updated_by)
                 VALUES ($1, $2, $3, $4, $5, $6)
                 ON CONFLICT (id) DO UPDATE SET name = excluded.name, start_date = excluded.start_date,
                   geometry = excluded.geometry, updated_at = excluded.updated_at, updated_by = excluded.updated_by
                 RETURNING xmax = 0",
                &[&zone.id, &zone.name, &zone.start_date, &zone.geometry, &now, &by],
            )?;
            crate::pg::get(&row, "zones", 0)
        }
    }
}

/// Zones on PostgreSQL ([`crate::pg::schema`]), as SQLite's migration 2 made them.
pub const PG_SCHEMA: &str = r#"
    CREATE TABLE zones (
        id         TEXT PRIMARY KEY,
        name       TEXT NOT NULL,
        start_date TEXT NOT NULL,                    -- local date the zone took effect, YYYY-MM-DD
        geometry   TEXT NOT NULL,                    -- GeoJSON Polygon or MultiPolygon, WGS84
        updated_at BIGINT NOT NULL,
        updated_by TEXT NOT NULL
    );
"#;

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::pg::{test_server, PgStore};
    use crate::Store;

    fn zone(name: &str) -> NewZone {
        NewZone {
            id: "centre-lez".into(),
            name: name.into(),
            start_date: "2026-01-05".into(),
            geometry: r#"{"type":"Polygon","coordinates":[[[76.88,43.23],[76.90,43.23],[76.90,43.25],[76.88,43.23]]]}"#.into(),
        }
    }

    /// Saving a zone twice: new, then a replacement of the same row.
    async fn a_zone_is_added_then_replaced(store: &Store) {
        let created = store
            .write(|db| upsert_zone(db, &zone("Центр"), "config"))
            .await
            .unwrap();
        assert!(created);
        let created = store
            .write(|db| upsert_zone(db, &zone("Центр (расширенная)"), "token:admin"))
            .await
            .unwrap();
        assert!(!created, "the same id is a replacement");
        let zones = store.read(crate::read::zones).await.unwrap();
        assert_eq!(zones.len(), 1);
        assert_eq!(zones[0].name, "Центр (расширенная)");
        assert_eq!(zones[0].updated_by, "token:admin");
        assert_eq!(zones[0].start_date, "2026-01-05");
        assert_eq!(zones[0].geometry["type"], "Polygon");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_zone_is_added_then_replaced_on_sqlite() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = crate::config::StoreConfig {
            data_dir: dir.path().to_path_buf(),
            ..Default::default()
        };
        drop(crate::open_writer(&cfg).unwrap());
        a_zone_is_added_then_replaced(&Store::sqlite(&crate::db_path(&cfg)).unwrap()).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_zone_is_added_then_replaced_on_postgres() {
        let Some(url) = test_server::database("admin::a_zone_is_added_then_replaced") else {
            return;
        };
        let store = Store::Pg(PgStore::connect(&url).await.unwrap());
        a_zone_is_added_then_replaced(&store).await;
    }
}
