//! The durable sink queue: the `sink_queue` table in the gateway's SQLite file.
//!
//! The store writer appends every NEW reading ([`enqueue_many`]) in the same transaction that
//! stores it, so a reading is queued exactly when it committed (a replay absorbed by reading
//! identity queues nothing). The sink worker is the only other user: it reads the oldest rows
//! ([`oldest`]) and deletes them ([`remove_through`]) only after InfluxDB answered 2xx. The
//! queue is thus its own cursor: what is in it is what InfluxDB has not confirmed, in id order.
//!
//! Rows are only ever deleted from the front, so ids stay contiguous and [`backlog`] is
//! `max(id) - min(id) + 1`, two index look-ups instead of a scan of a long outage's backlog.
//!
//! Since migration 8 a row names its reading's series by id (`series`, see [`crate::series`])
//! instead of repeating the post and quantity names: `(id, series, at, value, flags)`.

use rusqlite::{params, Connection, Transaction};

use crate::multirow::Rows;

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
/// follow it). The caller's transaction decides whether they stick.
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
pub fn oldest(conn: &Connection, limit: usize) -> rusqlite::Result<Vec<Queued>> {
    let mut stmt = conn.prepare_cached(
        "SELECT q.id, s.post, s.quantity, q.at, q.value, q.flags, p.kind, p.district, p.river
         FROM sink_queue q JOIN series s ON s.id = q.series LEFT JOIN posts p ON p.id = s.post
         ORDER BY q.id LIMIT ?1",
    )?;
    let rows = stmt.query_map(params![i64::try_from(limit).unwrap_or(i64::MAX)], |r| {
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
    rows.collect()
}

/// Deletes every row up to and including `last_id` (InfluxDB confirmed them).
pub fn remove_through(conn: &Connection, last_id: i64) -> rusqlite::Result<usize> {
    conn.prepare_cached("DELETE FROM sink_queue WHERE id <= ?1")?
        .execute(params![last_id])
}

/// Readings waiting for InfluxDB.
pub fn backlog(conn: &Connection) -> rusqlite::Result<u64> {
    let n: Option<i64> =
        conn.query_row("SELECT max(id) - min(id) + 1 FROM sink_queue", [], |r| {
            r.get(0)
        })?;
    Ok(n.and_then(|n| u64::try_from(n).ok()).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_come_oldest_first_and_leave_only_when_confirmed() {
        let mut conn = Connection::open_in_memory().unwrap();
        crate::schema::migrate(&mut conn).unwrap();
        conn.execute_batch(
            "INSERT INTO posts (id, kind, name, district, cadence_s, updated_at)
             VALUES ('a', 'air', 'A', 'Алмалинский', 60, 0)",
        )
        .unwrap();
        conn.execute_batch(
            "INSERT INTO series (id, post, quantity, post_key) VALUES (1, 'a', 'pm10', 1);
             INSERT INTO series (id, post, quantity, post_key) VALUES (2, 'ghost', 'no2', 2);",
        )
        .unwrap();
        let tx = conn.transaction().unwrap();
        enqueue_many(&tx, (0..7).map(|i| (1, 100 + i, i as f64, 0))).unwrap();
        // A post the registry does not know still goes out (with no district).
        enqueue_many(&tx, [(2, 1, 2.0, 4)]).unwrap();
        tx.commit().unwrap();
        assert_eq!(backlog(&conn).unwrap(), 8);

        let first = oldest(&conn, 3).unwrap();
        assert_eq!(
            first.iter().map(|q| q.at_s).collect::<Vec<_>>(),
            [100, 101, 102]
        );
        assert_eq!(first[0].district.as_deref(), Some("Алмалинский"));
        // Not confirmed: the same batch again.
        assert_eq!(oldest(&conn, 3).unwrap(), first);
        assert_eq!(remove_through(&conn, first[2].id).unwrap(), 3);
        assert_eq!(backlog(&conn).unwrap(), 5);
        let rest = oldest(&conn, 100).unwrap();
        assert_eq!(rest.len(), 5);
        assert_eq!(rest[0].at_s, 103);
        assert_eq!(rest[4].kind, None);
        remove_through(&conn, rest[4].id).unwrap();
        assert_eq!(backlog(&conn).unwrap(), 0);
    }
}
