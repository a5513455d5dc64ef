//! Versioned schema. Each migration runs once, in order, inside a transaction; the version is
//! SQLite's `user_version`. Add migrations at the end; never edit a shipped one.

use rusqlite::Connection;

use super::StoreError;

/// The migrations, index + 1 = the version each produces; each is one or more SQL pieces run
/// in one transaction (a stage that owns tables exports its SQL, like `alert::lifecycle::SCHEMA`).
const MIGRATIONS: &[&[&str]] = &[
    // 1: registry, raw readings, rollups, post status.
    &[r#"
    CREATE TABLE posts (
        id          TEXT PRIMARY KEY,
        kind        TEXT NOT NULL,             -- air | river | unregistered
        name        TEXT NOT NULL,
        latitude    REAL,
        longitude   REAL,
        district    TEXT,
        river       TEXT,
        sensors     TEXT NOT NULL DEFAULT '[]', -- JSON array of quantity names
        cadence_s   INTEGER NOT NULL,
        updated_at  INTEGER NOT NULL
    );
    -- Identity of a reading is (post, quantity, at): a replay is the same row.
    CREATE TABLE readings (
        post        TEXT NOT NULL,
        quantity    TEXT NOT NULL,
        at          INTEGER NOT NULL,          -- unix seconds, UTC
        value       REAL NOT NULL,             -- in the quantity's unit
                flags       INTEGER NOT NULL,          -- protocol::QaFlags bits
        window_s    INTEGER,                   -- averaging window; NULL = the post's cadence
        received_at INTEGER NOT NULL,
        PRIMARY KEY (post, quantity, at)
    ) WITHOUT ROWID;
        -- Rollups hold only readings valid for means (no invalidating QA flag). A reading stamped
    -- at the end of its averaging window belongs to the period that window lies in. Means are
    -- time-weighted: weighted_sum = sum(value * covered seconds), covered_s = sum(covered
    -- seconds), so an hourly mean (win = 3600) and sixty 1-minute means weigh the same.
    CREATE TABLE rollup_hour (
        post         TEXT NOT NULL,
        quantity     TEXT NOT NULL,
        start        INTEGER NOT NULL,         -- unix seconds, start of the UTC hour
        count        INTEGER NOT NULL,
        weighted_sum REAL NOT NULL,
        covered_s    INTEGER NOT NULL,
        min          REAL NOT NULL,
        max          REAL NOT NULL,
        expected     INTEGER NOT NULL,         -- readings the post's cadence promises
        PRIMARY KEY (post, quantity, start)
    ) WITHOUT ROWID;
    CREATE TABLE rollup_day (
        post        TEXT NOT NULL,
        quantity    TEXT NOT NULL,
        day         TEXT NOT NULL,             -- local date in Asia/Almaty, YYYY-MM-DD
        start       INTEGER NOT NULL,          -- unix seconds of local midnight
                end_at      INTEGER NOT NULL,          -- unix seconds of the next local midnight
        count        INTEGER NOT NULL,
        weighted_sum REAL NOT NULL,
        covered_s    INTEGER NOT NULL,
        min          REAL NOT NULL,
        max          REAL NOT NULL,
        expected     INTEGER NOT NULL,
        PRIMARY KEY (post, quantity, day)
    ) WITHOUT ROWID;
    CREATE TABLE post_status (
        post        TEXT PRIMARY KEY,
        online      INTEGER NOT NULL,
        firmware    TEXT NOT NULL,
        config_hash INTEGER,
        sensors     TEXT NOT NULL,             -- JSON array of quantity names
        dropped     INTEGER NOT NULL,
        reconnects  INTEGER NOT NULL,
                received_at INTEGER NOT NULL
    );
    "#],
    // 2: 20-minute rollups (one-time limits, ПДК м.р., are judged on 20-minute means) and
    // low-emission zones drawn by the department.
    &[r#"
    CREATE TABLE rollup_20min (
        post         TEXT NOT NULL,
        quantity     TEXT NOT NULL,
        start        INTEGER NOT NULL,         -- unix seconds, multiple of 1200
        count        INTEGER NOT NULL,
        weighted_sum REAL NOT NULL,
        covered_s    INTEGER NOT NULL,
        min          REAL NOT NULL,
        max          REAL NOT NULL,
        PRIMARY KEY (post, quantity, start)
    ) WITHOUT ROWID;
        -- Existing readings roll up as the writer would have: valid ones only (47 = the
    -- INVALIDATING QA bits), each covering its window or its post's cadence, capped at 20 min.
    INSERT INTO rollup_20min (post, quantity, start, count, weighted_sum, covered_s, min, max)
        SELECT r.post, r.quantity, ((r.at - 1) / 1200) * 1200, count(*),
               sum(r.value * min(coalesce(r.window_s, p.cadence_s, 60), 1200)),
               sum(min(coalesce(r.window_s, p.cadence_s, 60), 1200)), min(r.value), max(r.value)
        FROM readings r LEFT JOIN posts p ON p.id = r.post
        WHERE r.flags & 47 = 0
        GROUP BY r.post, r.quantity, ((r.at - 1) / 1200);
    CREATE TABLE zones (
        id          TEXT PRIMARY KEY,
        name        TEXT NOT NULL,
        start_date  TEXT NOT NULL,             -- local date the zone took effect, YYYY-MM-DD
        geometry    TEXT NOT NULL,             -- GeoJSON Polygon or MultiPolygon, WGS84
        updated_at  INTEGER NOT NULL,
                updated_by  TEXT NOT NULL
    );
    "#],
    // 3: river gauges' critical levels travel with the registry (JSON of
    // score::input::CriticalLevel), so scores need no config file to judge a river.
    &[r#"
    ALTER TABLE posts ADD COLUMN critical_level TEXT;
    "#],
    // 4: alerts with their history, and the durable notification outbox.
    &[crate::alerts::SCHEMA, crate::outbox::SCHEMA],
    // 5: the queue of readings not yet confirmed by the long-term store (InfluxDB).
    &[crate::sink_queue::SCHEMA],
    // 6: the registry managed by technicians: full post details, retirement, MQTT credentials
    // and the audit trail.
    &[super::registry::SCHEMA],
    // 7: local-day aggregates for scoring, marked dirty by triggers on rollup_day.
    &[crate::day_scores::SCHEMA],
    // 8: the layout for ingest speed: series ids, keys post first then time, the old tables
    // as views (crate::series).
    &[crate::series::MIGRATION_8],
    // 9: day aggregates a year of one series per row (crate::day_scores), for scorecard reads.
    &[crate::day_scores::MIGRATION_9],
];

/// Newest schema version this build knows.
pub const VERSION: i64 = MIGRATIONS.len() as i64;

/// Brings the database to [`VERSION`].
pub fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    migrate_to(conn, VERSION)
}

/// Brings the database to `version` (at most [`VERSION`]): what an older gateway would have
/// made of it, for tests of later migrations on the previous releases' layouts.
pub fn migrate_to(conn: &mut Connection, version: i64) -> Result<(), StoreError> {
    let current: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if current > VERSION {
        return Err(StoreError::SchemaTooNew {
            found: current,
            supported: VERSION,
        });
    }
    let wanted = version.clamp(0, VERSION) as usize;
    for (i, pieces) in MIGRATIONS
        .iter()
        .enumerate()
        .take(wanted)
        .skip(current as usize)
    {
        let tx = conn.transaction()?;
        for sql in *pieces {
            tx.execute_batch(sql)?;
        }
        tx.pragma_update(None, "user_version", i as i64 + 1)?;
        tx.commit()?;
        tracing::info!(version = i + 1, "store schema migrated");
    }
    Ok(())
}

/// A migrated in-memory database, for unit tests of the stages that own tables (feature
/// `test-support` for other crates' tests).
#[cfg(any(test, feature = "test-support"))]
#[allow(clippy::unwrap_used)]
pub fn in_memory() -> Connection {
    let mut conn = Connection::open_in_memory().unwrap();
    migrate(&mut conn).unwrap();
    conn
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migration_2_rolls_up_existing_readings_into_20_minute_buckets() {
        let mut conn = Connection::open_in_memory().unwrap();
        let tx = conn.transaction().unwrap();
        for sql in MIGRATIONS[0] {
            tx.execute_batch(sql).unwrap();
        }
        tx.pragma_update(None, "user_version", 1).unwrap();
        tx.commit().unwrap();
        // A 60 s post: 10 and 20 at 00:01 and 00:20 (both end inside 00:00-00:20), 99 flagged
        // warm-up, and an hourly mean of 40 stamped 01:00 (window 3600, capped at 1200).
        conn.execute_batch(
            "INSERT INTO posts (id, kind, name, cadence_s, updated_at) VALUES ('p', 'air', 'p', 60, 0);
             INSERT INTO readings VALUES ('p', 'pm2_5', 1767225660, 10.0, 0, NULL, 0);
             INSERT INTO readings VALUES ('p', 'pm2_5', 1767226800, 20.0, 0, NULL, 0);
             INSERT INTO readings VALUES ('p', 'pm2_5', 1767226000, 99.0, 1, NULL, 0);
             INSERT INTO readings VALUES ('p', 'pm2_5', 1767229200, 40.0, 0, 3600, 0);",
        )
        .unwrap();
        assert_eq!(
            protocol::QaFlags::INVALIDATING.0,
            47,
            "migration 2's SQL spells these bits out"
        );
        migrate(&mut conn).unwrap();
        let rows: Vec<(i64, i64, f64, i64)> = conn
            .prepare(
                "SELECT start, count, weighted_sum, covered_s FROM rollup_20min ORDER BY start",
            )
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        // 10*60 + 20*60 = 1800 over 120 s; 40*1200 = 48000 over 1200 s in the 00:40 bucket.
        assert_eq!(
            rows,
            [
                (1_767_225_600, 2, 1800.0, 120),
                (1_767_228_000, 1, 48_000.0, 1200)
            ]
        );
    }

    #[test]
    fn migrating_twice_is_a_no_op_and_newer_files_are_refused() {
        let mut conn = Connection::open_in_memory().unwrap();
        migrate(&mut conn).unwrap();
        migrate(&mut conn).unwrap();
        let v: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(v, VERSION);
        conn.pragma_update(None, "user_version", VERSION + 1)
            .unwrap();
        assert!(matches!(
            migrate(&mut conn),
            Err(StoreError::SchemaTooNew { .. })
        ));
    }
}
