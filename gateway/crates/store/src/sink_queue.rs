//! The durable sink queue: the `sink_queue` table (SQLite in the data dir, or the PostgreSQL
//! server replicas share).
//!
//! The store writer appends every NEW reading ([`enqueue_many`] on SQLite, [`enqueue`] on
//! PostgreSQL) in the same transaction that stores it, so a reading is queued exactly when it
//! committed (a replay absorbed by reading identity queues nothing). The sink worker (on the
//! leader only) is the only other user: it reads the oldest rows ([`oldest`]) and deletes them
//! ([`remove`]) only after InfluxDB answered 2xx. The queue is thus its own cursor: what is in
//! it is what InfluxDB has not confirmed.
//!
//! SQLite: one writer, so ids follow commit order, rows are only ever deleted from the front,
//! ids stay contiguous and [`backlog`] is `max(id) - min(id) + 1`, two index look-ups instead
//! of a scan of a long outage's backlog. PostgreSQL: several replicas' writers take ids from
//! one sequence and commit in any order, so a lower id can appear after a higher one was read:
//! a batch is deleted by its ids, never as a range, and the backlog is counted.
//!
//! Since SQLite's migration 8 a row names its reading's series by id (`series`, see
//! [`crate::series`]) instead of repeating the post and quantity names: `(id, series, at,
//! value, flags)`. PostgreSQL keeps the names (`crate::pg::schema`).

use protocol::PostId;
use rusqlite::{params, Transaction};
use taza_domain::pipeline::Reading;

use crate::db::Db;
use crate::multirow::Rows;
use crate::pg;
use crate::StoreError;

/// The table as migration 5 created it (migration 8 replaces `post`, `quantity` by `series`).
/// `at` is Unix seconds like every other `_at` column. Registry facts (kind, district, river)
/// are joined at send time, so a post renamed while InfluxDB was down is written with its
/// current names.
pub const SCHEMA: &str = r#"
CREATE TABLE sink_queue (
    id       INTEGER PRIMARY KEY,
    post     TEXT NOT NULL,
    quantity TEXT NOT NULL,
    at       INTEGER NOT NULL,
    value    REAL NOT NULL,
    flags    INTEGER NOT NULL
);
"#;

/// Queues newly stored readings, `(series id, at, value, flags)`, in the given order (ids
/// follow it). The caller's transaction decides whether they stick. The SQLite writer's fast
/// path: series ids exist only in SQLite's layout (and the multi-row statements want its
/// transaction); [`enqueue`] is the same on either engine.
pub fn enqueue_many(
    tx: &Transaction<'_>,
    readings: impl IntoIterator<Item = (i64, i64, f64, u16)>,
) -> rusqlite::Result<()> {
    let rows: Vec<_> = readings.into_iter().collect();
    Rows {
        head: "INSERT INTO sink_queue (series, at, value, flags) VALUES",
        width: 4,
        tail: "",
    }
    .execute(tx, &rows, |s, i, &(series, at, value, flags)| {
        s.raw_bind_parameter(i, series)?;
        s.raw_bind_parameter(i + 1, at)?;
        s.raw_bind_parameter(i + 2, value)?;
        s.raw_bind_parameter(i + 3, flags)
    })?;
    Ok(())
}

/// Queues `post`'s newly stored `readings`, in the given order, in the caller's transaction
/// (the PostgreSQL writer's; on SQLite through the post's series ids, which the writer has
/// created by then: a reading of an unknown series is not queued).
pub fn enqueue(db: &Db<'_>, post: &PostId, readings: &[Reading]) -> Result<(), StoreError> {
    if readings.is_empty() {
        return Ok(());
    }
    match db {
        Db::Sqlite(c) => {
            let mut stmt = c.prepare_cached(
                "INSERT INTO sink_queue (series, at, value, flags)
                 SELECT id, ?3, ?4, ?5 FROM series WHERE post = ?1 AND quantity = ?2",
            )?;
            for r in readings {
                stmt.execute(params![
                    post.as_str(),
                    r.quantity.as_str(),
                    r.at.0,
                    r.value,
                    r.flags.0
                ])?;
            }
        }
        Db::Pg(p) => {
            let quantities: Vec<&str> = readings.iter().map(|r| r.quantity.as_str()).collect();
            let at: Vec<i64> = readings.iter().map(|r| r.at.0).collect();
            let values: Vec<f64> = readings.iter().map(|r| r.value).collect();
            let flags: Vec<i64> = readings.iter().map(|r| i64::from(r.flags.0)).collect();
            // One statement for the post's readings; unnest keeps the arrays' order.
            p.execute(
                "INSERT INTO sink_queue (post, quantity, at, value, flags)
                 SELECT $1, q, a, v, f
                 FROM unnest($2::text[], $3::bigint[], $4::float8[], $5::bigint[]) AS t (q, a, v, f)",
                &[&post.as_str(), &quantities, &at, &values, &flags],
            )?;
        }
    }
    Ok(())
}

/// A queued reading with its post's registry facts.
#[derive(Debug, Clone, PartialEq)]
pub struct Queued {
    /// Queue id (order of commit).
    pub id: i64,
    /// Post id.
    pub post: String,
    /// Quantity name.
    pub quantity: String,
    /// Unix seconds.
    pub at_s: i64,
    /// Value.
    pub value: f64,
    /// QA bits.
    pub flags: u16,
    /// `air` | `river` | `unregistered`; `None` if the post left the registry.
    pub kind: Option<String>,
    /// District (air posts).
    pub district: Option<String>,
    /// River (river posts).
    pub river: Option<String>,
}

/// Up to `limit` oldest rows, in id order.
pub fn oldest(db: &Db<'_>, limit: usize) -> Result<Vec<Queued>, StoreError> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    match db {
        Db::Sqlite(c) => {
            let mut stmt = c.prepare_cached(
                "SELECT q.id, s.post, s.quantity, q.at, q.value, q.flags, p.kind, p.district, p.river
                 FROM sink_queue q JOIN series s ON s.id = q.series LEFT JOIN posts p ON p.id = s.post
                 ORDER BY q.id LIMIT ?1",
            )?;
            let rows = stmt.query_map(params![limit], |r| {
                Ok(Queued {
                    id: r.get(0)?,
                    post: r.get(1)?,
                    quantity: r.get(2)?,
                    at_s: r.get(3)?,
                    value: r.get(4)?,
                    flags: r.get(5)?,
                    kind: r.get(6)?,
                    district: r.get(7)?,
                    river: r.get(8)?,
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        }
        Db::Pg(p) => p
            .query(
                "SELECT q.id, q.post, q.quantity, q.at, q.value, q.flags, p.kind, p.district, p.river
                 FROM sink_queue q LEFT JOIN posts p ON p.id = q.post
                 ORDER BY q.id LIMIT $1",
                &[&limit],
            )?
            .iter()
            .map(|r| {
                let id: i64 = pg::get(r, "sink_queue", 0)?;
                let flags: i64 = pg::get(r, "sink_queue", 5)?;
                Ok(Queued {
                    id,
                    post: pg::get(r, "sink_queue", 1)?,
                    quantity: pg::get(r, "sink_queue", 2)?,
                    at_s: pg::get(r, "sink_queue", 3)?,
                    value: pg::get(r, "sink_queue", 4)?,
                    flags: u16::try_from(flags).map_err(|_| StoreError::Corrupt {
                        table: "sink_queue",
                        key: id.to_string(),
                        what: format!("flags {flags} are not QA bits"),
                    })?,
                    kind: pg::get(r, "sink_queue", 6)?,
                    district: pg::get(r, "sink_queue", 7)?,
                    river: pg::get(r, "sink_queue", 8)?,
                })
            })
            .collect(),
    }
}

/// Deletes the rows `ids` of one [`oldest`] batch (InfluxDB confirmed them). SQLite: the batch
/// is the queue's front, deleted as the range up to its last id; PostgreSQL: exactly those
/// rows (see the module doc).
pub fn remove(db: &Db<'_>, ids: &[i64]) -> Result<u64, StoreError> {
    let Some(&last) = ids.iter().max() else {
        return Ok(0);
    };
    match db {
        Db::Sqlite(c) => Ok(c
            .prepare_cached("DELETE FROM sink_queue WHERE id <= ?1")?
            .execute(params![last])? as u64),
        Db::Pg(p) => p.execute("DELETE FROM sink_queue WHERE id = ANY($1)", &[&ids]),
    }
}

/// Readings waiting for InfluxDB.
pub fn backlog(db: &Db<'_>) -> Result<u64, StoreError> {
    let n: Option<i64> = match db {
        Db::Sqlite(c) => c.query_row("SELECT max(id) - min(id) + 1 FROM sink_queue", [], |r| {
            r.get(0)
        })?,
        Db::Pg(p) => pg::get(
            &p.query_one("SELECT count(*) FROM sink_queue", &[])?,
            "sink_queue",
            0,
        )?,
    };
    Ok(n.and_then(|n| u64::try_from(n).ok()).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pg::PgStore;
    use protocol::{QaFlags, Quantity, UnixSeconds};

    fn reading(quantity: Quantity, at: i64, value: f64, flags: u16) -> Reading {
        Reading {
            quantity,
            value,
            at: UnixSeconds(at),
            flags: QaFlags(flags),
            window_s: None,
        }
    }

    /// A post the registry knows, with its series (SQLite's writer creates those first).
    fn registered(db: &Db<'_>) {
        let post = "INSERT INTO posts (id, kind, name, district, cadence_s, updated_at)
                    VALUES ('a', 'air', 'A', 'Алмалинский', 60, 0)";
        match db {
            Db::Sqlite(c) => c
                .execute_batch(&format!(
                    "{post};
                     INSERT INTO series (id, post, quantity, post_key) VALUES (1, 'a', 'pm10', 1);
                     INSERT INTO series (id, post, quantity, post_key) VALUES (2, 'ghost', 'no2', 2);"
                ))
                .unwrap(),
            Db::Pg(p) => p.batch_execute(post).unwrap(),
        }
    }

    fn batches_come_oldest_first_and_leave_only_when_confirmed(db: &Db<'_>) {
        registered(db);
        let a = PostId::parse("a").unwrap();
        let readings: Vec<Reading> = (0..7)
            .map(|i| reading(Quantity::Pm10, 100 + i, i as f64, 0))
            .collect();
        enqueue(db, &a, &readings).unwrap();
        // A post the registry does not know still goes out (with no district).
        enqueue(
            db,
            &PostId::parse("ghost").unwrap(),
            &[reading(Quantity::No2, 1, 2.0, 4)],
        )
        .unwrap();
        enqueue(db, &a, &[]).unwrap();
        assert_eq!(backlog(db).unwrap(), 8);

        let first = oldest(db, 3).unwrap();
        assert_eq!(
            first.iter().map(|q| q.at_s).collect::<Vec<_>>(),
            [100, 101, 102]
        );
        assert_eq!(first[0].district.as_deref(), Some("Алмалинский"));
        assert_eq!(
            (
                first[1].post.as_str(),
                first[1].quantity.as_str(),
                first[1].value
            ),
            ("a", "pm10", 1.0)
        );
        // Not confirmed: the same batch again.
        assert_eq!(oldest(db, 3).unwrap(), first);
        let ids: Vec<i64> = first.iter().map(|q| q.id).collect();
        assert_eq!(remove(db, &ids).unwrap(), 3);
        assert_eq!(remove(db, &[]).unwrap(), 0);
        assert_eq!(backlog(db).unwrap(), 5);
        let rest = oldest(db, 100).unwrap();
        assert_eq!(rest.len(), 5);
        assert_eq!(rest[0].at_s, 103);
        assert_eq!((rest[4].kind.as_deref(), rest[4].flags), (None, 4));
        let ids: Vec<i64> = rest.iter().map(|q| q.id).collect();
        remove(db, &ids).unwrap();
        assert_eq!(backlog(db).unwrap(), 0);
        assert_eq!(oldest(db, 10).unwrap(), []);
    }

    #[test]
    fn batches_come_oldest_first_and_leave_only_when_confirmed_on_sqlite() {
        let mut conn = crate::schema::in_memory();
        let tx = conn.transaction().unwrap();
        batches_come_oldest_first_and_leave_only_when_confirmed(&Db::Sqlite(&tx));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn batches_come_oldest_first_and_leave_only_when_confirmed_on_postgres() {
        let Some(url) = crate::pg::test_server::database("sink_queue::batches_come_oldest_first")
        else {
            return;
        };
        let store = PgStore::connect(&url).await.unwrap();
        store
            .run(false, |pg| {
                batches_come_oldest_first_and_leave_only_when_confirmed(&Db::Pg(pg));
                Ok::<_, StoreError>(())
            })
            .await
            .unwrap();
    }

    #[test]
    fn the_writers_fast_path_queues_by_series_id() {
        let mut conn = crate::schema::in_memory();
        registered(&Db::Sqlite(&conn));
        let tx = conn.transaction().unwrap();
        enqueue_many(&tx, (0..3).map(|i| (1, 100 + i, i as f64, 0))).unwrap();
        tx.commit().unwrap();
        let db = Db::Sqlite(&conn);
        let rows = oldest(&db, 10).unwrap();
        assert_eq!(
            rows.iter()
                .map(|q| (q.post.as_str(), q.at_s))
                .collect::<Vec<_>>(),
            [("a", 100), ("a", 101), ("a", 102)]
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_lower_id_committed_late_on_postgres_is_not_removed_with_a_later_batch() {
        let Some(url) = crate::pg::test_server::database("sink_queue::a_lower_id_committed_late")
        else {
            return;
        };
        let store = PgStore::connect(&url).await.unwrap();
        let a = PostId::parse("a").unwrap();
        // Writer 1 takes an id and holds its transaction open while writer 2 commits a higher
        // one and the sink sends and removes what it sees.
        let (took, held) = (
            std::sync::Arc::new(std::sync::Barrier::new(2)),
            std::sync::Arc::new(std::sync::Barrier::new(2)),
        );
        let slow = {
            let (store, a, took, held) = (store.clone(), a.clone(), took.clone(), held.clone());
            tokio::spawn(async move {
                store
                    .run(false, move |pg| {
                        enqueue(&Db::Pg(pg), &a, &[reading(Quantity::Pm10, 1, 1.0, 0)])?;
                        took.wait();
                        held.wait();
                        Ok::<_, StoreError>(())
                    })
                    .await
                    .unwrap()
            })
        };
        let waited = tokio::task::spawn_blocking(move || took.wait());
        waited.await.unwrap();
        store
            .run(false, move |pg| {
                enqueue(&Db::Pg(pg), &a, &[reading(Quantity::Pm10, 2, 2.0, 0)])
            })
            .await
            .unwrap();
        let sent = store
            .run(false, |pg| {
                let db = Db::Pg(pg);
                let batch = oldest(&db, 10)?;
                let ids: Vec<i64> = batch.iter().map(|q| q.id).collect();
                remove(&db, &ids)?;
                Ok::<_, StoreError>(batch)
            })
            .await
            .unwrap();
        assert_eq!(sent.iter().map(|q| q.at_s).collect::<Vec<_>>(), [2]);
        tokio::task::spawn_blocking(move || held.wait())
            .await
            .unwrap();
        slow.await.unwrap();
        let left = store.run(true, |pg| oldest(&Db::Pg(pg), 10)).await.unwrap();
        assert_eq!(
            left.iter().map(|q| q.at_s).collect::<Vec<_>>(),
            [1],
            "still queued"
        );
        assert!(left[0].id < sent[0].id);
    }
}
