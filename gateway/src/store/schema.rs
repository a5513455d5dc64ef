//! Versioned schema. Each migration runs once, in order, inside a transaction; the version is
//! SQLite's `user_version`. Add migrations at the end; never edit a shipped one.

use rusqlite::Connection;

use super::StoreError;

/// The migrations, index + 1 = the version each produces.
const MIGRATIONS: &[&str] = &[
    // 1: registry, raw readings, rollups, post status.
    r#"
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
    "#,
];

/// Newest schema version this build knows.
pub const VERSION: i64 = MIGRATIONS.len() as i64;

/// Brings the database to [`VERSION`].
pub fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let current: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if current > VERSION {
        return Err(StoreError::SchemaTooNew {
            found: current,
            supported: VERSION,
        });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", i as i64 + 1)?;
        tx.commit()?;
        tracing::info!(version = i + 1, "store schema migrated");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

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
