//! PostgreSQL schema, versioned like SQLite's ([`crate::schema`]): a list of migrations, the
//! version kept in `taza_schema`, each migration in one transaction, and an advisory lock so
//! that replicas starting together migrate once. The layout is SQLite's logical one (text
//! keys, the tables' old names), which PostgreSQL's B-trees and row locks serve well: what
//! SQLite needed integer series ids for (page writes per commit), PostgreSQL's heap and
//! index-only scans do not. Each store module owns its tables' DDL (`PG_SCHEMA` beside its
//! SQLite `SCHEMA`); readings, rollups and day aggregates are here, written by
//! [`crate::pg::writer`] and read by the same modules as on SQLite.

use super::Pg;
use crate::StoreError;

/// Readings, rollups, day aggregates, post status and the commit log.
pub const DATA: &str = r#"
    CREATE TABLE store_meta (
        key   TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
    -- Identity of a reading is (post, quantity, at): a replay, or a second replica handed the
    -- same message after a failover, is the same row (INSERT ... ON CONFLICT DO NOTHING).
    CREATE TABLE readings (
        post        TEXT NOT NULL,
        quantity    TEXT NOT NULL,
        at          BIGINT NOT NULL,           -- unix seconds, UTC
        value       DOUBLE PRECISION NOT NULL, -- in the quantity's unit
        flags       BIGINT NOT NULL,           -- protocol::QaFlags bits
        window_s    BIGINT,                    -- averaging window; NULL = the post's cadence
        received_at BIGINT NOT NULL,
        PRIMARY KEY (post, quantity, at)
    );
    -- What one post received since a moment (commissioning, status::latest_readings_since).
    -- Post first: concurrent group commits insert at each post's own end of the index, where
    -- received_at alone put every writer on one hot page.
    CREATE INDEX readings_received ON readings (post, received_at);
    -- Rollups hold only readings that were inserted (RETURNING of the insert above), merged
    -- additively under the row lock, so concurrent writers keep them exact.
    CREATE TABLE rollup_20min (
        post         TEXT NOT NULL,
        quantity     TEXT NOT NULL,
        start        BIGINT NOT NULL,
        count        BIGINT NOT NULL,
        weighted_sum DOUBLE PRECISION NOT NULL,
        covered_s    BIGINT NOT NULL,
        min          DOUBLE PRECISION NOT NULL,
        max          DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (post, quantity, start)
    );
    CREATE TABLE rollup_hour (
        post         TEXT NOT NULL,
        quantity     TEXT NOT NULL,
        start        BIGINT NOT NULL,
        count        BIGINT NOT NULL,
        weighted_sum DOUBLE PRECISION NOT NULL,
        covered_s    BIGINT NOT NULL,
        min          DOUBLE PRECISION NOT NULL,
        max          DOUBLE PRECISION NOT NULL,
        expected     BIGINT NOT NULL,
        PRIMARY KEY (post, quantity, start)
    );
    CREATE TABLE rollup_day (
        post         TEXT NOT NULL,
        quantity     TEXT NOT NULL,
        day          TEXT NOT NULL,            -- local date, YYYY-MM-DD
        start        BIGINT NOT NULL,
        end_at       BIGINT NOT NULL,
        count        BIGINT NOT NULL,
        weighted_sum DOUBLE PRECISION NOT NULL,
        covered_s    BIGINT NOT NULL,
        min          DOUBLE PRECISION NOT NULL,
        max          DOUBLE PRECISION NOT NULL,
        expected     BIGINT NOT NULL,
        PRIMARY KEY (post, quantity, day)
    );
    -- Day aggregates for scoring, as on SQLite since its migration 9 (day_scores::pack).
    CREATE TABLE day_scores_year (
        post     TEXT NOT NULL,
        quantity TEXT NOT NULL,
        year     BIGINT NOT NULL,
        days     BYTEA NOT NULL,
        PRIMARY KEY (post, quantity, year)
    );
    CREATE TABLE day_dirty (
        post     TEXT NOT NULL,
        quantity TEXT NOT NULL,
        day      TEXT NOT NULL,
        PRIMARY KEY (post, quantity, day)
    );
    CREATE TABLE post_status (
        post        TEXT PRIMARY KEY,
        online      BIGINT NOT NULL,
        firmware    TEXT NOT NULL,
        config_hash BIGINT,
        sensors     TEXT NOT NULL,             -- JSON array of quantity names
        dropped     BIGINT NOT NULL,
        reconnects  BIGINT NOT NULL,
        received_at BIGINT NOT NULL,
        -- What commissioning checks in a post's live status (SQLite: registry migration 6).
        clock_offset_ms BIGINT,
        rssi_dbm        BIGINT,
        supply_mv       BIGINT,
        uptime_s        BIGINT
    );
    -- What every replica committed, in commit order (each writer takes an advisory
    -- transaction lock just before its insert here), for the leader's alert evaluation:
    -- with shared subscriptions each replica commits only part of the fleet's readings.
    CREATE TABLE committed (
        seq         BIGSERIAL PRIMARY KEY,
        post        TEXT NOT NULL,
        readings    JSON NOT NULL,             -- pg::commit_log's encoding of the new readings
                                               -- (JSON: stored as sent, read back whole)
        received_at BIGINT NOT NULL
    );
    -- Readings not yet confirmed by the long-term store (InfluxDB), in commit order per
    -- writer; the leader's sink drains it (crate::sink_queue).
    CREATE TABLE sink_queue (
        id       BIGSERIAL PRIMARY KEY,
        post     TEXT NOT NULL,
        quantity TEXT NOT NULL,
        at       BIGINT NOT NULL,
        value    DOUBLE PRECISION NOT NULL,
        flags    BIGINT NOT NULL
    );
"#;

/// The migrations, oldest first; a released one never changes.
pub const MIGRATIONS: &[&[&str]] = &[
    // 1: everything of SQLite's schema 9, in its logical layout.
    &[
        DATA,
        crate::registry::PG_SCHEMA,
        crate::admin::PG_SCHEMA,
        crate::alerts::PG_SCHEMA,
        crate::outbox::PG_SCHEMA,
    ],
];

/// Newest schema version this build knows.
pub const VERSION: i64 = MIGRATIONS.len() as i64;

/// Key of the advisory lock migrations run under.
const MIGRATION_LOCK: i64 = 0x7A5A_0001;

/// Brings the database to [`VERSION`]; refuses a database written by a newer gateway.
pub fn migrate(pg: &Pg<'_>) -> Result<(), StoreError> {
    pg.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])?;
    pg.batch_execute("CREATE TABLE IF NOT EXISTS taza_schema (version BIGINT NOT NULL)")?;
    let current: i64 = match pg.query_opt("SELECT max(version) FROM taza_schema", &[])? {
        Some(row) => super::get::<Option<i64>>(&row, "taza_schema", 0)?.unwrap_or(0),
        None => 0,
    };
    if current > VERSION {
        return Err(StoreError::SchemaTooNew {
            found: current,
            supported: VERSION,
        });
    }
    for (i, pieces) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        for sql in *pieces {
            pg.batch_execute(sql)?;
        }
        let version = i as i64 + 1;
        pg.execute("INSERT INTO taza_schema (version) VALUES ($1)", &[&version])?;
        tracing::info!(version, "postgres store schema migrated");
    }
    Ok(())
}
