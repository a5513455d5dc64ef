//! The layout that makes ingest fast (migration 8). Each (post, quantity) is a row of `series`
//! with an integer id; the series of one post share a `post_key` (an integer naming the post).
//! The tables that grow with every commit are keyed post first, then time:
//!
//! - `samples (post_key, bucket, series, at)`: raw readings; `bucket` is `at` in [`BUCKET_S`]
//!   slices, so a post's readings of one slice (all its quantities) are adjacent;
//! - `agg_20min (post_key, start, series)`, `agg_hour (post_key, start, series)`,
//!   `agg_day (post_key, day, series)`: the rollups. Series after time: a commit's buckets of
//!   one post are then adjacent (one page, where series first gave each of its six series its
//!   own page: the 200-post backlog drained 25 % slower); a read for one series scans its
//!   post's rows of the range, a few times what it keeps;
//! - `sample_arrivals (bucket, series)`: per slice of *receive* time, the span of `at` a series'
//!   readings received then lie in: the sparse index that finds readings received since a moment
//!   ([`crate::status::latest_readings_since`]) without an index entry per reading.
//!
//! So a group commit writes, per post it holds, a run of adjacent rows at the end of that post's
//! part of each B-tree: one or two pages per post and table, whether the group holds a whole
//! fleet's last minutes (live, a fleet's backlog) or one post's month (a history upload). Keyed
//! (post, quantity, time) as before, it dirtied pages per *series* (six per air post per table);
//! keyed time first, pages per *time slice*, which is cheap for a fleet in step but pathological
//! for one post's history (every message its own page). A post's reads are range scans of its
//! part; the city's reads (all posts of a quantity over a year) are one range scan per post.
//!
//! `series.newest_at` is the series' newest reading ever stored, so the map's latest value is one
//! primary-key probe per series; `series.rolled_up` says it has daily rollups (a valid reading).
//! The writer keeps ids and these columns in a [`SeriesCache`].
//!
//! The old tables' names (`readings`, `rollup_20min`, `rollup_hour`, `rollup_day`) remain as
//! views with their old columns, for ad-hoc SQL and tests; rows inserted into the views land in
//! the tables. The gateway's own queries use the tables.

use std::collections::HashMap;

use protocol::{PostId, Quantity};
use rusqlite::{params, Connection, OptionalExtension, Transaction};

/// Width of a `samples` slice, seconds: a post's rows of one slice sort by series then time,
/// so a slice should hold about one commit's worth of a post's minutes (10 minutes of a
/// one-minute post is 60 rows, a page or two).
pub const BUCKET_S: i64 = 600;

/// The slice of `samples` (or `sample_arrivals`) holding time `at`.
pub fn bucket_of(at: i64) -> i64 {
    at.div_euclid(BUCKET_S)
}

/// [`bucket_of`] in SQL, for a column or parameter named `x` (floor division, as in Rust).
macro_rules! bucket_sql {
    ($x:literal) => {
        concat!("((", $x, ") - (((", $x, ") % 600) + 600) % 600) / 600")
    };
}
pub(crate) use bucket_sql;

/// Migration 8: the tables above, filled from the old ones (every reading, rollup and queued
/// sink row keeps its values; sink ids keep their order), then the old tables dropped and
/// replaced by views of the same names and columns. `day_dirty` marks are kept; the triggers
/// on the old `rollup_day` go with it (the writer marks touched days itself).
pub const MIGRATION_8: &str = r#"
    CREATE TABLE series (
        id        INTEGER PRIMARY KEY,
        post      TEXT NOT NULL,
        quantity  TEXT NOT NULL,
        post_key  INTEGER NOT NULL,   -- the same for every series of the post
        newest_at INTEGER,            -- its newest reading ever stored (NULL: none)
        rolled_up INTEGER NOT NULL DEFAULT 0, -- it has daily rollups (a valid reading)
        UNIQUE (post, quantity)
    );
    -- Every (post, quantity) any table names, a post's series numbered together.
    INSERT INTO series (post, quantity, post_key, newest_at, rolled_up)
        SELECT post, quantity, 0, max(newest), max(rolled)
        FROM (
            SELECT post, quantity, max(at) AS newest, 0 AS rolled FROM readings GROUP BY post, quantity
            UNION ALL SELECT DISTINCT post, quantity, NULL, 0 FROM rollup_20min
            UNION ALL SELECT DISTINCT post, quantity, NULL, 0 FROM rollup_hour
            UNION ALL SELECT DISTINCT post, quantity, NULL, 1 FROM rollup_day
            UNION ALL SELECT DISTINCT post, quantity, NULL, 0 FROM sink_queue
        )
        GROUP BY post, quantity
        ORDER BY post, quantity;
    UPDATE series SET post_key = (SELECT min(id) FROM series s WHERE s.post = series.post);

    CREATE TABLE samples (
        post_key    INTEGER NOT NULL,
        bucket      INTEGER NOT NULL,  -- at in 600 s slices (series::BUCKET_S)
        series      INTEGER NOT NULL,
        at          INTEGER NOT NULL,  -- unix seconds, UTC
        value       REAL NOT NULL,     -- in the quantity's unit
        flags       INTEGER NOT NULL,  -- protocol::QaFlags bits
        window_s    INTEGER,           -- averaging window; NULL = the post's cadence
        received_at INTEGER NOT NULL,
        PRIMARY KEY (post_key, bucket, series, at)
    ) WITHOUT ROWID;
    INSERT INTO samples (post_key, bucket, series, at, value, flags, window_s, received_at)
        SELECT s.post_key, (r.at - ((r.at % 600) + 600) % 600) / 600, s.id, r.at, r.value, r.flags,
               r.window_s, r.received_at
        FROM readings r JOIN series s ON s.post = r.post AND s.quantity = r.quantity
        ORDER BY 1, 2, 3, 4;

    CREATE TABLE sample_arrivals (
        bucket INTEGER NOT NULL,       -- received_at in 600 s slices
        series INTEGER NOT NULL,
        min_at INTEGER NOT NULL,       -- span of `at` of the readings received in the slice
        max_at INTEGER NOT NULL,
        PRIMARY KEY (bucket, series)
    ) WITHOUT ROWID;
    INSERT INTO sample_arrivals (bucket, series, min_at, max_at)
        SELECT (received_at - ((received_at % 600) + 600) % 600) / 600, series, min(at), max(at)
        FROM samples GROUP BY 1, 2 ORDER BY 1, 2;

    CREATE TABLE agg_20min (
        post_key     INTEGER NOT NULL,
        start        INTEGER NOT NULL,  -- unix seconds, multiple of 1200
        series       INTEGER NOT NULL,
        count        INTEGER NOT NULL,
        weighted_sum REAL NOT NULL,
        covered_s    INTEGER NOT NULL,
        min          REAL NOT NULL,
        max          REAL NOT NULL,
        PRIMARY KEY (post_key, start, series)
    ) WITHOUT ROWID;
    INSERT INTO agg_20min (post_key, start, series, count, weighted_sum, covered_s, min, max)
        SELECT s.post_key, r.start, s.id, r.count, r.weighted_sum, r.covered_s, r.min, r.max
        FROM rollup_20min r JOIN series s ON s.post = r.post AND s.quantity = r.quantity
        ORDER BY 1, 2, 3;
    CREATE TABLE agg_hour (
        post_key     INTEGER NOT NULL,
        start        INTEGER NOT NULL,  -- unix seconds, start of the UTC hour
        series       INTEGER NOT NULL,
        count        INTEGER NOT NULL,
        weighted_sum REAL NOT NULL,
        covered_s    INTEGER NOT NULL,
        min          REAL NOT NULL,
        max          REAL NOT NULL,
        expected     INTEGER NOT NULL,
        PRIMARY KEY (post_key, start, series)
    ) WITHOUT ROWID;
    INSERT INTO agg_hour (post_key, start, series, count, weighted_sum, covered_s, min, max, expected)
        SELECT s.post_key, r.start, s.id, r.count, r.weighted_sum, r.covered_s, r.min, r.max, r.expected
        FROM rollup_hour r JOIN series s ON s.post = r.post AND s.quantity = r.quantity
        ORDER BY 1, 2, 3;
    CREATE TABLE agg_day (
        post_key     INTEGER NOT NULL,
        day          TEXT NOT NULL,     -- local date in Asia/Almaty, YYYY-MM-DD
        series       INTEGER NOT NULL,
        start        INTEGER NOT NULL,  -- unix seconds of local midnight
        end_at       INTEGER NOT NULL,  -- unix seconds of the next local midnight
        count        INTEGER NOT NULL,
        weighted_sum REAL NOT NULL,
        covered_s    INTEGER NOT NULL,
        min          REAL NOT NULL,
        max          REAL NOT NULL,
        expected     INTEGER NOT NULL,
        PRIMARY KEY (post_key, day, series)
    ) WITHOUT ROWID;
    INSERT INTO agg_day (post_key, day, series, start, end_at, count, weighted_sum, covered_s, min, max, expected)
        SELECT s.post_key, r.day, s.id, r.start, r.end_at, r.count, r.weighted_sum, r.covered_s,
               r.min, r.max, r.expected
        FROM rollup_day r JOIN series s ON s.post = r.post AND s.quantity = r.quantity
        ORDER BY 1, 2, 3;

    CREATE TABLE sink_queue_v8 (
        id       INTEGER PRIMARY KEY,
        series   INTEGER NOT NULL,
        at       INTEGER NOT NULL,
        value    REAL NOT NULL,
        flags    INTEGER NOT NULL
    );
    INSERT INTO sink_queue_v8 (id, series, at, value, flags)
        SELECT q.id, s.id, q.at, q.value, q.flags
        FROM sink_queue q JOIN series s ON s.post = q.post AND s.quantity = q.quantity
        ORDER BY q.id;
    DROP TABLE sink_queue;
    ALTER TABLE sink_queue_v8 RENAME TO sink_queue;

    DROP TABLE readings;
    DROP TABLE rollup_20min;
    DROP TABLE rollup_hour;
    DROP TABLE rollup_day;
    CREATE VIEW readings (post, quantity, at, value, flags, window_s, received_at) AS
        SELECT s.post, s.quantity, r.at, r.value, r.flags, r.window_s, r.received_at
        FROM samples r JOIN series s ON s.id = r.series;
    CREATE VIEW rollup_20min (post, quantity, start, count, weighted_sum, covered_s, min, max) AS
        SELECT s.post, s.quantity, a.start, a.count, a.weighted_sum, a.covered_s, a.min, a.max
        FROM agg_20min a JOIN series s ON s.id = a.series;
    CREATE VIEW rollup_hour (post, quantity, start, count, weighted_sum, covered_s, min, max, expected) AS
        SELECT s.post, s.quantity, a.start, a.count, a.weighted_sum, a.covered_s, a.min, a.max,
               a.expected
        FROM agg_hour a JOIN series s ON s.id = a.series;
    CREATE VIEW rollup_day (post, quantity, day, start, end_at, count, weighted_sum, covered_s, min, max, expected) AS
        SELECT s.post, s.quantity, a.day, a.start, a.end_at, a.count, a.weighted_sum, a.covered_s,
               a.min, a.max, a.expected
        FROM agg_day a JOIN series s ON s.id = a.series;

    -- Rows inserted through the views land in the tables (fixtures, hand repairs), with the
    -- series row, and, for days of scored quantities, the day_dirty mark. NOT EXISTS rather
    -- than OR IGNORE: the outer statement's conflict policy overrides a trigger's own.
    CREATE TRIGGER readings_insert INSTEAD OF INSERT ON readings BEGIN
        INSERT INTO series (id, post, quantity, post_key)
            SELECT n.id, new.post, new.quantity,
                   coalesce((SELECT post_key FROM series WHERE post = new.post LIMIT 1), n.id)
            FROM (SELECT coalesce(max(id), 0) + 1 AS id FROM series) n
            WHERE NOT EXISTS (SELECT 1 FROM series WHERE post = new.post AND quantity = new.quantity);
        UPDATE series SET newest_at = max(coalesce(newest_at, new.at), new.at)
            WHERE post = new.post AND quantity = new.quantity;
        INSERT INTO samples (post_key, bucket, series, at, value, flags, window_s, received_at)
            SELECT post_key, (new.at - ((new.at % 600) + 600) % 600) / 600, id, new.at, new.value,
                   new.flags, new.window_s, new.received_at
            FROM series WHERE post = new.post AND quantity = new.quantity;
        INSERT INTO sample_arrivals (bucket, series, min_at, max_at)
            SELECT (new.received_at - ((new.received_at % 600) + 600) % 600) / 600, id, new.at, new.at
            FROM series WHERE post = new.post AND quantity = new.quantity
            ON CONFLICT (bucket, series) DO UPDATE SET min_at = min(min_at, excluded.min_at),
                                                      max_at = max(max_at, excluded.max_at);
    END;
    CREATE TRIGGER rollup_20min_insert INSTEAD OF INSERT ON rollup_20min BEGIN
        INSERT INTO series (id, post, quantity, post_key)
            SELECT n.id, new.post, new.quantity,
                   coalesce((SELECT post_key FROM series WHERE post = new.post LIMIT 1), n.id)
            FROM (SELECT coalesce(max(id), 0) + 1 AS id FROM series) n
            WHERE NOT EXISTS (SELECT 1 FROM series WHERE post = new.post AND quantity = new.quantity);
        INSERT INTO agg_20min (post_key, start, series, count, weighted_sum, covered_s, min, max)
            SELECT post_key, new.start, id, new.count, new.weighted_sum, new.covered_s, new.min, new.max
            FROM series WHERE post = new.post AND quantity = new.quantity;
    END;
    CREATE TRIGGER rollup_hour_insert INSTEAD OF INSERT ON rollup_hour BEGIN
        INSERT INTO series (id, post, quantity, post_key)
            SELECT n.id, new.post, new.quantity,
                   coalesce((SELECT post_key FROM series WHERE post = new.post LIMIT 1), n.id)
            FROM (SELECT coalesce(max(id), 0) + 1 AS id FROM series) n
            WHERE NOT EXISTS (SELECT 1 FROM series WHERE post = new.post AND quantity = new.quantity);
        INSERT INTO agg_hour (post_key, start, series, count, weighted_sum, covered_s, min, max, expected)
            SELECT post_key, new.start, id, new.count, new.weighted_sum, new.covered_s, new.min,
                   new.max, new.expected
            FROM series WHERE post = new.post AND quantity = new.quantity;
    END;
    CREATE TRIGGER rollup_day_insert INSTEAD OF INSERT ON rollup_day BEGIN
        INSERT INTO series (id, post, quantity, post_key)
            SELECT n.id, new.post, new.quantity,
                   coalesce((SELECT post_key FROM series WHERE post = new.post LIMIT 1), n.id)
            FROM (SELECT coalesce(max(id), 0) + 1 AS id FROM series) n
            WHERE NOT EXISTS (SELECT 1 FROM series WHERE post = new.post AND quantity = new.quantity);
        UPDATE series SET rolled_up = 1 WHERE post = new.post AND quantity = new.quantity;
        INSERT INTO agg_day (post_key, day, series, start, end_at, count, weighted_sum, covered_s, min, max, expected)
            SELECT post_key, new.day, id, new.start, new.end_at, new.count, new.weighted_sum,
                   new.covered_s, new.min, new.max, new.expected
            FROM series WHERE post = new.post AND quantity = new.quantity;
        INSERT INTO day_dirty (post, quantity, day) SELECT new.post, new.quantity, new.day
            WHERE new.quantity IN ('pm2_5', 'pm10', 'no2') AND NOT EXISTS
                (SELECT 1 FROM day_dirty WHERE post = new.post AND quantity = new.quantity AND day = new.day);
    END;
"#;

/// A series as the writer knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SeriesRow {
    pub id: i64,
    pub post_key: i64,
    pub newest_at: Option<i64>,
    pub rolled_up: bool,
}

/// The writer's copy of `series`, by post (a post has a handful of series, so a message's
/// readings cost one lookup of its post). Only the writer changes the table, so the copy stays
/// exact as long as a failed transaction's changes are not applied to it: a commit works on
/// [`SeriesCache::stage`] and applies it with [`Staged::apply`] after COMMIT.
#[derive(Debug, Default)]
pub(crate) struct SeriesCache {
    rows: HashMap<PostId, Vec<(Quantity, SeriesRow)>>,
}

/// What one transaction did to `series` (new rows, newer readings), not yet in the cache.
#[derive(Debug, Default)]
pub(crate) struct Staged {
    changed: HashMap<PostId, Vec<(Quantity, SeriesRow)>>,
}

fn find(rows: Option<&Vec<(Quantity, SeriesRow)>>, q: Quantity) -> Option<SeriesRow> {
    rows?.iter().find(|(k, _)| *k == q).map(|(_, s)| *s)
}

fn put(rows: &mut Vec<(Quantity, SeriesRow)>, q: Quantity, s: SeriesRow) {
    match rows.iter_mut().find(|(k, _)| *k == q) {
        Some(slot) => slot.1 = s,
        None => rows.push((q, s)),
    }
}

fn row(r: &rusqlite::Row<'_>, at: usize) -> rusqlite::Result<SeriesRow> {
    Ok(SeriesRow {
        id: r.get(at)?,
        post_key: r.get(at + 1)?,
        newest_at: r.get(at + 2)?,
        rolled_up: r.get(at + 3)?,
    })
}

impl SeriesCache {
    /// Loads every series. Rows whose post id or quantity this build does not know are left
    /// out: the writer only ever looks up decoded ones.
    pub fn load(conn: &Connection) -> rusqlite::Result<Self> {
        let mut stmt =
            conn.prepare("SELECT post, quantity, id, post_key, newest_at, rolled_up FROM series")?;
        let rows = stmt.query_map([], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, row(r, 2)?))
        })?;
        let mut cache = Self::default();
        for r in rows {
            let (post, quantity, s) = r?;
            if let (Ok(post), Some(q)) = (PostId::parse(&post), Quantity::parse(&quantity)) {
                put(cache.rows.entry(post).or_default(), q, s);
            }
        }
        Ok(cache)
    }

    /// A fresh staging area for one transaction.
    pub fn stage(&self) -> Staged {
        Staged::default()
    }

    /// The series of `post`'s `readings` into `out`, as `staged` sees them, creating the rows
    /// in `tx` for series that have none.
    pub fn resolve(
        &self,
        staged: &mut Staged,
        tx: &Transaction<'_>,
        post: &PostId,
        readings: &[taza_domain::pipeline::Reading],
        out: &mut Vec<SeriesRow>,
    ) -> rusqlite::Result<()> {
        out.clear();
        let known = self.rows.get(post);
        for r in readings {
            let s = match find(staged.changed.get(post), r.quantity)
                .or_else(|| find(known, r.quantity))
            {
                Some(s) => s,
                None => self.create(staged, tx, post, r.quantity)?,
            };
            out.push(s);
        }
        Ok(())
    }

    fn create(
        &self,
        staged: &mut Staged,
        tx: &Transaction<'_>,
        post: &PostId,
        quantity: Quantity,
    ) -> rusqlite::Result<SeriesRow> {
        // A row the cache lacks can still exist if a migration or a hand edit made it.
        let existing = tx
            .prepare_cached(
                "SELECT id, post_key, newest_at, rolled_up FROM series WHERE post = ?1 AND quantity = ?2",
            )?
            .query_row(params![post.as_str(), quantity.as_str()], |r| row(r, 0))
            .optional()?;
        let s = match existing {
            Some(s) => s,
            None => tx
                .prepare_cached(
                    "INSERT INTO series (id, post, quantity, post_key)
                     SELECT n.id, ?1, ?2, coalesce((SELECT post_key FROM series WHERE post = ?1 LIMIT 1), n.id)
                     FROM (SELECT coalesce(max(id), 0) + 1 AS id FROM series) n
                     RETURNING id, post_key, newest_at, rolled_up",
                )?
                .query_row(params![post.as_str(), quantity.as_str()], |r| row(r, 0))?,
        };
        put(staged.changed.entry(post.clone()).or_default(), quantity, s);
        Ok(s)
    }

    /// Records that `post`'s `quantity` stored readings up to `newest` (and a valid one if
    /// `rolled_up`), in `staged` only; returns the row if it differs from the cache's.
    pub fn touch(
        &self,
        staged: &mut Staged,
        post: &PostId,
        quantity: Quantity,
        newest: i64,
        rolled_up: bool,
    ) -> Option<SeriesRow> {
        let current = find(staged.changed.get(post), quantity)
            .or_else(|| find(self.rows.get(post), quantity))?;
        let next = SeriesRow {
            newest_at: Some(current.newest_at.map_or(newest, |n| n.max(newest))),
            rolled_up: current.rolled_up || rolled_up,
            ..current
        };
        let was = find(self.rows.get(post), quantity);
        put(
            staged.changed.entry(post.clone()).or_default(),
            quantity,
            next,
        );
        (Some(next) != was).then_some(next)
    }
}

impl Staged {
    /// Makes the committed transaction's changes part of `cache`.
    pub fn apply(self, cache: &mut SeriesCache) {
        for (post, rows) in self.changed {
            let into = cache.rows.entry(post).or_default();
            for (q, s) in rows {
                put(into, q, s);
            }
        }
    }
}

/// A series as reads see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Series {
    /// Row id.
    pub id: i64,
    /// Quantity name as stored.
    pub quantity: String,
    /// The post's key in the tables.
    pub post_key: i64,
}

/// The series of `post` (all, or only `quantity`'s), by quantity name.
pub fn of_post(
    conn: &Connection,
    post: &str,
    quantity: Option<&str>,
) -> rusqlite::Result<Vec<Series>> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, quantity, post_key FROM series
         WHERE post = ?1 AND (?2 IS NULL OR quantity = ?2) ORDER BY quantity",
    )?;
    let rows = stmt.query_map(params![post, quantity], |r| {
        Ok(Series {
            id: r.get(0)?,
            quantity: r.get(1)?,
            post_key: r.get(2)?,
        })
    })?;
    rows.collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_floor_like_rust_in_sql_too() {
        let conn = Connection::open_in_memory().unwrap();
        for at in [
            -1_201_i64,
            -600,
            -1,
            0,
            1,
            599,
            600,
            1_767_225_600,
            1_767_226_199,
        ] {
            let sql: i64 = conn
                .query_row(concat!("SELECT ", bucket_sql!("?1")), [at], |r| r.get(0))
                .unwrap();
            assert_eq!(sql, bucket_of(at), "at = {at}");
        }
    }

    #[test]
    fn a_posts_series_share_its_key_whoever_creates_them() {
        let mut conn = crate::schema::in_memory();
        let tx = conn.transaction().unwrap();
        let cache = SeriesCache::default();
        let mut staged = cache.stage();
        let p = PostId::parse("p").unwrap();
        let q = PostId::parse("q").unwrap();
        let reading = |quantity| taza_domain::pipeline::Reading {
            quantity,
            value: 1.0,
            at: protocol::UnixSeconds(100),
            flags: protocol::QaFlags::NONE,
            window_s: None,
        };
        let mut out = Vec::new();
        cache
            .resolve(&mut staged, &tx, &p, &[reading(Quantity::Pm10)], &mut out)
            .unwrap();
        let first = out[0];
        // Through a view, as a fixture would, then through the writer again.
        tx.execute_batch(
            "INSERT INTO readings (post, quantity, at, value, flags, received_at) VALUES ('p', 'no2', 5, 1, 0, 5);
             INSERT INTO readings (post, quantity, at, value, flags, received_at) VALUES ('q', 'no2', 5, 1, 0, 5);",
        )
        .unwrap();
        cache
            .resolve(
                &mut staged,
                &tx,
                &p,
                &[reading(Quantity::Pm10), reading(Quantity::Pm2_5)],
                &mut out,
            )
            .unwrap();
        assert_eq!(out[0], first);
        assert_eq!(out[1].post_key, first.post_key);
        cache
            .resolve(&mut staged, &tx, &q, &[reading(Quantity::Pm1)], &mut out)
            .unwrap();
        assert_ne!(out[0].post_key, first.post_key);
        let keys: Vec<(String, i64)> = tx
            .prepare(
                "SELECT post, count(DISTINCT post_key) FROM series GROUP BY post ORDER BY post",
            )
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(keys, [("p".to_string(), 1), ("q".to_string(), 1)]);
    }
}
