//! Local-day aggregates for scoring: per (post, quantity, local day) the valid hours and their
//! sum and maximum, and the day's 20-minute statistics against the one-time limit
//! ([`DayStats`]). A year's scorecard reads these instead of its hourly and 20-minute buckets.
//! Since migration 9 they are stored a local year of one series per row (`day_scores_year`,
//! packed by [`pack`]): a scorecard reads some 400 rows, not 150 000.
//!
//! Kept exact by data version, not by time: every (post, quantity, day) that a commit touches
//! goes into `day_dirty`, in the same transaction as the readings (so a late reading for a past
//! day marks that day): by triggers on `rollup_day` in migration 7, by the store writer's
//! rollup flush since migration 8 moved the rollups to `agg_day` (`SCORED_POLLUTANTS`), and by
//! the PostgreSQL writer after its `rollup_day` upsert ([`crate::pg::writer`]). [`refresh`] and
//! [`refresh_store`] recompute exactly the dirty days from their buckets, a batch of days per
//! transaction, so that no commit can slip between reading a day and clearing its mark:
//!
//! - SQLite: each batch holds the write lock (IMMEDIATE), so no commit runs meanwhile;
//! - PostgreSQL: replicas refresh one at a time (an advisory transaction lock: year rows are
//!   read, changed and written back), and a batch first locks the `rollup_day` rows of its days
//!   with `SKIP LOCKED`. A writer that has touched a day and not committed holds that row, so the
//!   day is skipped and stays dirty for the next refresh; a writer that comes later waits on the
//!   row until the batch commits, and only then adds its mark, which the batch can no longer
//!   clear. A batch never waits on a writer, so the two cannot deadlock.
//!
//! The arithmetic is the scoring engine's (`taza_score::days::day_stats`), handed in as a
//! function: this crate owns only storage. Aggregates carry the fingerprint of the rules they
//! were computed under; a different fingerprint recomputes them all.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{Datelike, NaiveDate};
use protocol::{PostId, Quantity, UnixSeconds};
use rusqlite::{params, OptionalExtension};

use crate::db::Db;
use crate::pg;
use crate::read::{hourly_means, twenty_minute_means, StoredSeries};
use crate::{Store, StoreError};
use taza_domain::calendar::LocalDay;
use taza_domain::series::{
    DayStats, HourlyMean, PostDescriptor, PostSeries, QuantitySeries, TwentyMinuteMean,
    SCORED_POLLUTANTS,
};

/// Tables and triggers of this module (migration 7). The pollutants marked are the city
/// scorecard's ([`SCORED_POLLUTANTS`], spelled out here: a migration is frozen as released);
/// other quantities have no aggregates.
pub const SCHEMA: &str = r#"
    CREATE TABLE day_scores (
        post             TEXT NOT NULL,
        quantity         TEXT NOT NULL,
        day              TEXT NOT NULL,           -- local date, YYYY-MM-DD
        start            INTEGER NOT NULL,        -- unix seconds of local midnight
        hours            INTEGER NOT NULL,
        hour_buckets     INTEGER NOT NULL,
        valid_hours      INTEGER NOT NULL,
        sum_valid_hourly REAL NOT NULL,
        max_valid_hourly REAL,
        valid_20min      INTEGER NOT NULL,
        invalid_20min    INTEGER NOT NULL,
        over_one_time    INTEGER NOT NULL,
        max_20min        REAL,
        max_20min_at     INTEGER,
        PRIMARY KEY (post, quantity, day)
    ) WITHOUT ROWID;
    CREATE TABLE day_dirty (
        post     TEXT NOT NULL,
        quantity TEXT NOT NULL,
        day      TEXT NOT NULL,
        PRIMARY KEY (post, quantity, day)
    ) WITHOUT ROWID;
    CREATE TABLE store_meta (
        key   TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
    -- A rollup_day upsert is an INSERT (new day) or an UPDATE (a day gaining readings). Not
    -- INSERT OR IGNORE: inside a trigger fired by an upsert, the outer statement's conflict
    -- policy (ABORT) replaces the trigger's, and a second commit into a marked day failed.
    CREATE TRIGGER rollup_day_marks_new AFTER INSERT ON rollup_day
        WHEN new.quantity IN ('pm2_5', 'pm10', 'no2')
        BEGIN INSERT INTO day_dirty (post, quantity, day) SELECT new.post, new.quantity, new.day
              WHERE NOT EXISTS (SELECT 1 FROM day_dirty WHERE post = new.post AND quantity = new.quantity AND day = new.day); END;
    CREATE TRIGGER rollup_day_marks_changed AFTER UPDATE ON rollup_day
        WHEN new.quantity IN ('pm2_5', 'pm10', 'no2')
        BEGIN INSERT INTO day_dirty (post, quantity, day) SELECT new.post, new.quantity, new.day
              WHERE NOT EXISTS (SELECT 1 FROM day_dirty WHERE post = new.post AND quantity = new.quantity AND day = new.day); END;
    -- Every day already stored is computed at the first refresh.
    INSERT INTO day_dirty (post, quantity, day)
        SELECT post, quantity, day FROM rollup_day WHERE quantity IN ('pm2_5', 'pm10', 'no2');
"#;

/// Migration 9: a local year of one series' day aggregates per row, packed ([`pack`]). The
/// per-day table goes; every day is computed again from its buckets at the first refresh
/// (forgetting the fingerprint marks them all). Not `WITHOUT ROWID`: rows of some 20 KB are
/// what rowid tables are for.
pub const MIGRATION_9: &str = r#"
    DROP TABLE day_scores;
    CREATE TABLE day_scores_year (
        post     TEXT NOT NULL,
        quantity TEXT NOT NULL,
        year     INTEGER NOT NULL,   -- local year of the days
        days     BLOB NOT NULL,      -- DayStats by date, day_scores::pack
        PRIMARY KEY (post, quantity, year)
    );
    DELETE FROM store_meta WHERE key = 'day_scores_fingerprint';
"#;

/// Days recomputed per transaction: bounds how long a refresh holds the write lock (the
/// ingest writer waits on it).
const BATCH_DAYS: usize = 256;
const FINGERPRINT_KEY: &str = "day_scores_fingerprint";
/// `store_meta` key of a counter every refresh that changed aggregates moves, in its
/// transaction: what a replica's cached scorecards are checked against, whoever refreshed.
const VERSION_KEY: &str = "day_scores_version";

/// The arithmetic of one day: its hourly and 20-minute buckets of one quantity to aggregates.
pub type Aggregate<'a> = &'a dyn Fn(Quantity, &[HourlyMean], &[TwentyMinuteMean]) -> Vec<DayStats>;

/// [`Aggregate`] to hand to [`refresh_store`], whose batches run on the blocking pool.
pub type SharedAggregate =
    Arc<dyn Fn(Quantity, &[HourlyMean], &[TwentyMinuteMean]) -> Vec<DayStats> + Send + Sync>;

/// Key of the advisory lock PostgreSQL refreshes take, one replica at a time.
const REFRESH_LOCK: i64 = 0x7A5A_0D05;

/// Where a refresh has got to in `day_dirty`'s key order (PostgreSQL: days it skipped stay
/// behind it, marked); None before the first batch.
type Cursor = Option<(String, String, String)>;

/// Recomputes every dirty day (all days when `fingerprint` differs from the stored one) with
/// `aggregate`, on a bare SQLite connection; returns how many days were recomputed (0: the
/// aggregates were current). Tests drive stores of earlier schemas with it; the gateway
/// refreshes through [`refresh_store`].
#[cfg(test)]
fn refresh(
    conn: &mut rusqlite::Connection,
    fingerprint: &str,
    aggregate: Aggregate<'_>,
) -> Result<usize, StoreError> {
    {
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        check_fingerprint(&Db::Sqlite(&tx), fingerprint)?;
        tx.commit()?;
    }
    let (mut total, mut cursor) = (0, None);
    loop {
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let done = refresh_batch(&Db::Sqlite(&tx), &mut cursor, aggregate)?;
        tx.commit()?;
        match done {
            Some(n) => total += n,
            None => return Ok(total),
        }
    }
}

/// [`refresh`] through `store`'s write transactions, one per batch (SQLite: IMMEDIATE on the
/// admin connection; PostgreSQL: see the module docs), on either backend. On PostgreSQL a day
/// a writer holds at that moment is skipped and stays dirty: the count leaves it out.
pub async fn refresh_store(
    store: &Store,
    fingerprint: &str,
    aggregate: SharedAggregate,
) -> Result<usize, StoreError> {
    let owned = fingerprint.to_owned();
    store.write(move |db| check_fingerprint(db, &owned)).await?;
    let (mut total, mut cursor) = (0, None);
    loop {
        let aggregate = Arc::clone(&aggregate);
        let (done, next) = store
            .write(move |db| {
                let mut cursor = cursor;
                let done = refresh_batch(db, &mut cursor, &*aggregate)?;
                Ok::<_, StoreError>((done, cursor))
            })
            .await?;
        cursor = next;
        match done {
            Some(n) => total += n,
            None => return Ok(total),
        }
    }
}

/// Marks every stored day dirty and forgets the aggregates when they were computed under
/// another `fingerprint` (in the caller's write transaction).
fn check_fingerprint(db: &Db<'_>, fingerprint: &str) -> Result<(), StoreError> {
    let scored: Vec<&str> = SCORED_POLLUTANTS.iter().map(|q| q.as_str()).collect();
    match db {
        Db::Sqlite(tx) => {
            let stored: Option<String> = tx
                .query_row(
                    "SELECT value FROM store_meta WHERE key = ?1",
                    [FINGERPRINT_KEY],
                    |r| r.get(0),
                )
                .optional()?;
            if stored.as_deref() != Some(fingerprint) {
                tx.execute("DELETE FROM day_scores_year", [])?;
                let scored = scored
                    .iter()
                    .map(|q| format!("'{q}'"))
                    .collect::<Vec<_>>()
                    .join(", ");
                tx.execute(
                    &format!(
                        "INSERT OR IGNORE INTO day_dirty (post, quantity, day)
                         SELECT post, quantity, day FROM rollup_day WHERE quantity IN ({scored})"
                    ),
                    [],
                )?;
                tx.execute(
                    "INSERT INTO store_meta (key, value) VALUES (?1, ?2)
                     ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    params![FINGERPRINT_KEY, fingerprint],
                )?;
                bump_version(db)?;
            }
        }
        Db::Pg(pg) => {
            pg.execute("SELECT pg_advisory_xact_lock($1)", &[&REFRESH_LOCK])?;
            let stored: Option<String> = match pg.query_opt(
                "SELECT value FROM store_meta WHERE key = $1",
                &[&FINGERPRINT_KEY],
            )? {
                Some(r) => Some(pg::get(&r, "store_meta", 0)?),
                None => None,
            };
            if stored.as_deref() != Some(fingerprint) {
                pg.execute("DELETE FROM day_scores_year", &[])?;
                pg.execute(
                    "INSERT INTO day_dirty (post, quantity, day)
                     SELECT post, quantity, day FROM rollup_day WHERE quantity = ANY($1)
                     ON CONFLICT DO NOTHING",
                    &[&scored],
                )?;
                pg.execute(
                    "INSERT INTO store_meta (key, value) VALUES ($1, $2)
                     ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    &[&FINGERPRINT_KEY, &fingerprint],
                )?;
                bump_version(db)?;
            }
        }
    }
    Ok(())
}

/// Moves [`aggregates_version`] (in the caller's write transaction).
fn bump_version(db: &Db<'_>) -> Result<(), StoreError> {
    // The counter is text, as every store_meta value; one that does not parse starts again.
    match db {
        Db::Sqlite(tx) => {
            tx.prepare_cached(
                "INSERT INTO store_meta (key, value) VALUES (?1, '1')
                 ON CONFLICT (key) DO UPDATE SET value = CAST(CAST(value AS INTEGER) + 1 AS TEXT)",
            )?
            .execute([VERSION_KEY])?;
        }
        Db::Pg(pg) => {
            pg.execute(
                "INSERT INTO store_meta (key, value) VALUES ($1, '1')
                 ON CONFLICT (key) DO UPDATE SET value = CASE
                     WHEN store_meta.value ~ '^[0-9]{1,18}$' THEN (store_meta.value::bigint + 1)::text
                     ELSE '1' END",
                &[&VERSION_KEY],
            )?;
        }
    }
    Ok(())
}

/// A number that moves each time a refresh changes the stored aggregates, on any replica (0
/// before the first): scorecards computed at one version are current until it moves.
pub fn aggregates_version(db: &Db<'_>) -> Result<i64, StoreError> {
    let value: Option<String> = match db {
        Db::Sqlite(conn) => conn
            .prepare_cached("SELECT value FROM store_meta WHERE key = ?1")?
            .query_row([VERSION_KEY], |r| r.get(0))
            .optional()?,
        Db::Pg(pg) => match pg.query_opt(
            "SELECT value FROM store_meta WHERE key = $1",
            &[&VERSION_KEY],
        )? {
            Some(r) => Some(pg::get(&r, "store_meta", 0)?),
            None => None,
        },
    };
    value.map_or(Ok(0), |v| {
        v.parse().map_err(|_| StoreError::Corrupt {
            table: "store_meta",
            key: VERSION_KEY.into(),
            what: format!("value {v:?} is not a count"),
        })
    })
}

/// Recomputes the next batch of dirty days in the caller's write transaction; returns how
/// many, or None when no dirty day is left (past `cursor`, on PostgreSQL).
fn refresh_batch(
    db: &Db<'_>,
    cursor: &mut Cursor,
    aggregate: Aggregate<'_>,
) -> Result<Option<usize>, StoreError> {
    let batch: Vec<(String, String, String)> = match db {
        // Under the write lock no commit runs: every mark read is recomputed and cleared, so
        // each batch starts from the first mark left.
        Db::Sqlite(tx) => {
            let mut stmt = tx.prepare_cached(&format!(
                "SELECT post, quantity, day FROM day_dirty ORDER BY post, quantity, day LIMIT {BATCH_DAYS}"
            ))?;
            let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
            let batch: Vec<_> = rows.collect::<Result<_, _>>()?;
            if batch.is_empty() {
                return Ok(None);
            }
            batch
        }
        Db::Pg(pg) => {
            const T: &str = "day_dirty";
            pg.execute("SELECT pg_advisory_xact_lock($1)", &[&REFRESH_LOCK])?;
            let limit = BATCH_DAYS as i64;
            let marks = match cursor {
                None => pg.query(
                    "SELECT post, quantity, day FROM day_dirty
                     ORDER BY post, quantity, day LIMIT $1",
                    &[&limit],
                )?,
                Some((p, q, d)) => pg.query(
                    "SELECT post, quantity, day FROM day_dirty
                     WHERE (post, quantity, day) > ($1, $2, $3)
                     ORDER BY post, quantity, day LIMIT $4",
                    &[p, q, d, &limit],
                )?,
            };
            let marks: Vec<(String, String, String)> = marks
                .iter()
                .map(|r| Ok((pg::get(r, T, 0)?, pg::get(r, T, 1)?, pg::get(r, T, 2)?)))
                .collect::<Result<_, StoreError>>()?;
            let Some(last) = marks.last() else {
                return Ok(None);
            };
            *cursor = Some(last.clone());
            let columns = |i: usize| -> Vec<&str> {
                marks
                    .iter()
                    .map(|m| match i {
                        0 => m.0.as_str(),
                        1 => m.1.as_str(),
                        _ => m.2.as_str(),
                    })
                    .collect()
            };
            let (posts, quantities, days) = (columns(0), columns(1), columns(2));
            let keys = |rows: Vec<pg::Row>| -> Result<Vec<(String, String, String)>, StoreError> {
                rows.iter()
                    .map(|r| {
                        Ok((
                            pg::get(r, "rollup_day", 0)?,
                            pg::get(r, "rollup_day", 1)?,
                            pg::get(r, "rollup_day", 2)?,
                        ))
                    })
                    .collect()
            };
            const DAYS_OF_MARKS: &str = "SELECT post, quantity, day FROM rollup_day
                 WHERE (post, quantity, day) IN
                       (SELECT * FROM unnest($1::text[], $2::text[], $3::text[]))";
            let stored = keys(pg.query(DAYS_OF_MARKS, &[&posts, &quantities, &days])?)?;
            // A day whose row a writer holds (it has not committed) is left marked.
            let locked = keys(pg.query(
                &format!("{DAYS_OF_MARKS} FOR UPDATE SKIP LOCKED"),
                &[&posts, &quantities, &days],
            )?)?;
            let busy: std::collections::HashSet<_> =
                stored.into_iter().filter(|k| !locked.contains(k)).collect();
            marks.into_iter().filter(|m| !busy.contains(m)).collect()
        }
    };
    // Sorted by series and day: each year row is read and written once per batch.
    let mut rest = batch.as_slice();
    while let Some((post, quantity, day)) = rest.first() {
        let year = &day[..4.min(day.len())];
        let n = rest
            .iter()
            .take_while(|(p, q, d)| p == post && q == quantity && d.get(..4) == Some(year))
            .count()
            .max(1);
        let (group, tail) = rest.split_at(n);
        let days: Vec<&str> = group.iter().map(|(_, _, d)| d.as_str()).collect();
        recompute(db, post, quantity, &days, aggregate)?;
        rest = tail;
    }
    if !batch.is_empty() {
        bump_version(db)?;
    }
    Ok(Some(batch.len()))
}

/// Recomputes `days` (local dates of one local year, as labelled in `day_dirty`) of one series
/// and clears their marks.
fn recompute(
    db: &Db<'_>,
    post: &str,
    quantity: &str,
    days: &[&str],
    aggregate: Aggregate<'_>,
) -> Result<(), StoreError> {
    let corrupt = |day: &str, what: String| StoreError::Corrupt {
        table: "day_dirty",
        key: format!("{post}/{quantity}/{day}"),
        what,
    };
    let q = Quantity::parse(quantity).ok_or_else(|| {
        corrupt(
            days.first().copied().unwrap_or(""),
            format!("quantity {quantity:?}"),
        )
    })?;
    let mut dates = Vec::with_capacity(days.len());
    for day in days {
        clear_mark(db, post, quantity, day)?;
        dates.push(
            parse_day(day).ok_or_else(|| corrupt(day, "day is not a YYYY-MM-DD date".into()))?,
        );
    }
    let Some(year) = dates.first().map(Datelike::year) else {
        return Ok(());
    };
    let mut stored = year_of(db, post, quantity, year)?;
    let series = StoredSeries::load(db, post, Some(quantity))?;
    let s = series.get(quantity);
    for date in dates {
        stored.remove(&date);
        if s.is_absent() {
            continue;
        }
        let local = LocalDay::of(date);
        let hourly = hourly_means(db, s, local.start, local.end)?;
        let twenty = twenty_minute_means(db, s, local.start, local.end)?;
        // The buckets were selected by the day's span; nothing else can appear.
        for d in aggregate(q, &hourly, &twenty) {
            if d.date == date {
                stored.insert(date, d);
            }
        }
    }
    let packed = if stored.is_empty() {
        None
    } else {
        Some(pack(stored.values())?)
    };
    write_year(db, post, quantity, year, packed)
}

/// Clears the mark of one day.
fn clear_mark(db: &Db<'_>, post: &str, quantity: &str, day: &str) -> Result<(), StoreError> {
    match db {
        Db::Sqlite(tx) => {
            tx.prepare_cached(
                "DELETE FROM day_dirty WHERE post = ?1 AND quantity = ?2 AND day = ?3",
            )?
            .execute(params![post, quantity, day])?;
        }
        Db::Pg(pg) => {
            pg.execute(
                "DELETE FROM day_dirty WHERE post = $1 AND quantity = $2 AND day = $3",
                &[&post, &quantity, &day],
            )?;
        }
    }
    Ok(())
}

/// Stores one series' local `year` (`packed` by [`pack`]), or removes it (None: no day left).
fn write_year(
    db: &Db<'_>,
    post: &str,
    quantity: &str,
    year: i32,
    packed: Option<Vec<u8>>,
) -> Result<(), StoreError> {
    match (db, packed) {
        (Db::Sqlite(tx), None) => {
            tx.prepare_cached(
                "DELETE FROM day_scores_year WHERE post = ?1 AND quantity = ?2 AND year = ?3",
            )?
            .execute(params![post, quantity, year])?;
        }
        (Db::Sqlite(tx), Some(packed)) => {
            tx.prepare_cached(
                "INSERT INTO day_scores_year (post, quantity, year, days) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (post, quantity, year) DO UPDATE SET days = excluded.days",
            )?
            .execute(params![post, quantity, year, packed])?;
        }
        (Db::Pg(pg), None) => {
            pg.execute(
                "DELETE FROM day_scores_year WHERE post = $1 AND quantity = $2 AND year = $3",
                &[&post, &quantity, &i64::from(year)],
            )?;
        }
        (Db::Pg(pg), Some(packed)) => {
            pg.execute(
                "INSERT INTO day_scores_year (post, quantity, year, days) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (post, quantity, year) DO UPDATE SET days = excluded.days",
                &[&post, &quantity, &i64::from(year), &packed],
            )?;
        }
    }
    Ok(())
}

/// The stored aggregates of one series' local `year`, by date.
fn year_of(
    db: &Db<'_>,
    post: &str,
    quantity: &str,
    year: i32,
) -> Result<BTreeMap<NaiveDate, DayStats>, StoreError> {
    let blob: Option<Vec<u8>> = match db {
        Db::Sqlite(conn) => conn
            .prepare_cached(
                "SELECT days FROM day_scores_year WHERE post = ?1 AND quantity = ?2 AND year = ?3",
            )?
            .query_row(params![post, quantity, year], |r| r.get(0))
            .optional()?,
        Db::Pg(pg) => match pg.query_opt(
            "SELECT days FROM day_scores_year WHERE post = $1 AND quantity = $2 AND year = $3",
            &[&post, &quantity, &i64::from(year)],
        )? {
            Some(r) => Some(pg::get(&r, "day_scores_year", 0)?),
            None => None,
        },
    };
    let Some(blob) = blob else {
        return Ok(BTreeMap::new());
    };
    let days = unpack(&blob, year).map_err(|what| StoreError::Corrupt {
        table: "day_scores_year",
        key: format!("{post}/{quantity}/{year}"),
        what,
    })?;
    Ok(days.into_iter().map(|d| (d.date, d)).collect())
}

/// Format of [`pack`]'s blob; a change is a migration.
const PACK_VERSION: u8 = 1;
/// Bytes per packed day.
const PACKED_DAY: usize = 56;

/// A year's day aggregates as one blob: a version byte, then per day (by date) 56 bytes,
/// little-endian: day of year from 0 (u16), which optional values are present (u8: bit 0
/// `max_valid_hourly`, 1 `max_20min`, 2 `max_20min_at`), a zero byte, the six counts (u16
/// each: hours, hour_buckets, valid_hours, valid_20min, invalid_20min, over_one_time), `start`
/// (i64), then `sum_valid_hourly`, `max_valid_hourly`, `max_20min` (f64) and `max_20min_at`
/// (i64), absent ones as 0. Lossless: every f64 keeps its bits.
pub fn pack<'a>(days: impl ExactSizeIterator<Item = &'a DayStats>) -> Result<Vec<u8>, StoreError> {
    let mut out = Vec::with_capacity(1 + days.len() * PACKED_DAY);
    out.push(PACK_VERSION);
    for d in days {
        let too_large = |field: &str| StoreError::Corrupt {
            table: "day_scores_year",
            key: d.date.to_string(),
            what: format!("{field} does not fit a day's count"),
        };
        let count = |v: u32, field: &str| u16::try_from(v).map_err(|_| too_large(field));
        let ordinal = u16::try_from(d.date.ordinal0()).map_err(|_| too_large("day of year"))?;
        out.extend_from_slice(&ordinal.to_le_bytes());
        let present = u8::from(d.max_valid_hourly.is_some())
            | u8::from(d.max_20min.is_some()) << 1
            | u8::from(d.max_20min_at.is_some()) << 2;
        out.extend_from_slice(&[present, 0]);
        for (v, field) in [
            (d.hours, "hours"),
            (d.hour_buckets, "hour_buckets"),
            (d.valid_hours, "valid_hours"),
            (d.valid_20min, "valid_20min"),
            (d.invalid_20min, "invalid_20min"),
            (d.over_one_time, "over_one_time"),
        ] {
            out.extend_from_slice(&count(v, field)?.to_le_bytes());
        }
        out.extend_from_slice(&d.start.0.to_le_bytes());
        out.extend_from_slice(&d.sum_valid_hourly.to_le_bytes());
        out.extend_from_slice(&d.max_valid_hourly.unwrap_or(0.0).to_le_bytes());
        out.extend_from_slice(&d.max_20min.unwrap_or(0.0).to_le_bytes());
        out.extend_from_slice(&d.max_20min_at.map_or(0, |t| t.0).to_le_bytes());
    }
    Ok(out)
}

/// The days [`pack`] packed for local `year`; what is wrong with the blob otherwise.
pub fn unpack(blob: &[u8], year: i32) -> Result<Vec<DayStats>, String> {
    let Some((&version, body)) = blob.split_first() else {
        return Err("empty blob".into());
    };
    if version != PACK_VERSION {
        return Err(format!(
            "packed with format {version}, this build reads {PACK_VERSION}"
        ));
    }
    if body.len() % PACKED_DAY != 0 {
        return Err(format!("{} bytes is not whole days", body.len()));
    }
    let january_1 =
        NaiveDate::from_ymd_opt(year, 1, 1).ok_or_else(|| format!("year {year} out of range"))?;
    let mut out = Vec::with_capacity(body.len() / PACKED_DAY);
    for day in body.chunks_exact(PACKED_DAY) {
        // chunks_exact gives PACKED_DAY bytes: every fixed range below is inside.
        let u16_at = |i: usize| u16::from_le_bytes([day[i], day[i + 1]]);
        let u64_at = |i: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&day[i..i + 8]);
            u64::from_le_bytes(b)
        };
        let ordinal = u16_at(0);
        let date = january_1
            .checked_add_days(chrono::Days::new(u64::from(ordinal)))
            .filter(|d| d.year() == year)
            .ok_or_else(|| format!("day {ordinal} is not in {year}"))?;
        let present = day[2];
        let f64_at = |i: usize| f64::from_bits(u64_at(i));
        let i64_at = |i: usize| i64::from_le_bytes(u64_at(i).to_le_bytes());
        out.push(DayStats {
            date,
            hours: u32::from(u16_at(4)),
            hour_buckets: u32::from(u16_at(6)),
            valid_hours: u32::from(u16_at(8)),
            valid_20min: u32::from(u16_at(10)),
            invalid_20min: u32::from(u16_at(12)),
            over_one_time: u32::from(u16_at(14)),
            start: UnixSeconds(i64_at(16)),
            sum_valid_hourly: f64_at(24),
            max_valid_hourly: (present & 1 != 0).then(|| f64_at(32)),
            max_20min: (present & 2 != 0).then(|| f64_at(40)),
            max_20min_at: (present & 4 != 0).then(|| UnixSeconds(i64_at(48))),
        });
    }
    Ok(out)
}

/// What the scorecard reads for `posts`: per scored quantity the aggregates of the local days
/// in [from, to), the 20-minute buckets of the days `detail` asks for, and the hourly buckets
/// from `recent_from` on (the comparison views).
pub fn day_series(
    db: &Db<'_>,
    posts: Vec<PostDescriptor>,
    quantities: &[Quantity],
    from: NaiveDate,
    to: NaiveDate,
    recent_from: UnixSeconds,
    detail: &dyn Fn(Quantity, &DayStats) -> bool,
) -> Result<Vec<PostSeries>, StoreError> {
    let mut out = Vec::with_capacity(posts.len());
    for post in posts {
        let stored = StoredSeries::of_post(db, post.id.as_str())?;
        let mut series = Vec::new();
        for q in quantities {
            let days = days_of(db, &post.id, *q, from, to)?;
            if days.is_empty() {
                continue;
            }
            let mut twenty_minute = Vec::new();
            let s = stored.get(q.as_str());
            for d in days.iter().filter(|d| detail(*q, d)) {
                let end = d.start.offset(i64::from(d.hours) * 3600);
                twenty_minute.extend(twenty_minute_means(db, s, d.start, end)?);
            }
            let hourly = hourly_means(db, s, recent_from, UnixSeconds(i64::MAX))?;
            series.push(QuantitySeries {
                quantity: *q,
                hourly,
                twenty_minute,
                days,
            });
        }
        out.push(PostSeries { post, series });
    }
    Ok(out)
}

/// The aggregates of one series' local days in [from, to), by date.
fn days_of(
    db: &Db<'_>,
    post: &PostId,
    q: Quantity,
    from: NaiveDate,
    to: NaiveDate,
) -> Result<Vec<DayStats>, StoreError> {
    let last_year = to.pred_opt().unwrap_or(to).year();
    let rows: Vec<(i32, Vec<u8>)> = match db {
        Db::Sqlite(conn) => {
            let mut stmt = conn.prepare_cached(
                "SELECT year, days FROM day_scores_year
                 WHERE post = ?1 AND quantity = ?2 AND year >= ?3 AND year <= ?4 ORDER BY year",
            )?;
            let rows = stmt.query_map(
                params![post.as_str(), q.as_str(), from.year(), last_year],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?;
            rows.collect::<Result<_, _>>()?
        }
        Db::Pg(pg) => {
            const T: &str = "day_scores_year";
            pg.query(
                "SELECT year, days FROM day_scores_year
                 WHERE post = $1 AND quantity = $2 AND year >= $3 AND year <= $4 ORDER BY year",
                &[
                    &post.as_str(),
                    &q.as_str(),
                    &i64::from(from.year()),
                    &i64::from(last_year),
                ],
            )?
            .iter()
            .map(|r| Ok((pg::get_int(r, T, 0)?, pg::get(r, T, 1)?)))
            .collect::<Result<_, StoreError>>()?
        }
    };
    let mut out = Vec::new();
    for (year, blob) in rows {
        let days = unpack(&blob, year).map_err(|what| StoreError::Corrupt {
            table: "day_scores_year",
            key: format!("{post}/{}/{year}", q.as_str()),
            what,
        })?;
        out.extend(days.into_iter().filter(|d| d.date >= from && d.date < to));
    }
    Ok(out)
}

/// `YYYY-MM-DD` without chrono's format machinery: a year's scorecard parses some 150 000 of
/// these, and the general parser was a visible share of its time.
fn parse_day(label: &str) -> Option<NaiveDate> {
    let b = label.as_bytes();
    if b.len() != 10 || b.get(4) != Some(&b'-') || b.get(7) != Some(&b'-') {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<u32> {
        b.get(r)?.iter().try_fold(0u32, |n, c| {
            c.is_ascii_digit().then(|| n * 10 + u32::from(c - b'0'))
        })
    };
    NaiveDate::from_ymd_opt(i32::try_from(num(0..4)?).ok()?, num(5..7)?, num(8..10)?)
}

/// Whether [`refresh`] under `fingerprint` has work: a dirty day, or aggregates computed under
/// other rules. Read-only (a read connection): asking never takes the write lock.
pub fn needs_refresh(db: &Db<'_>, fingerprint: &str) -> Result<bool, StoreError> {
    match db {
        Db::Sqlite(conn) => Ok(conn.query_row(
            "SELECT EXISTS (SELECT 1 FROM day_dirty)
                 OR coalesce((SELECT value FROM store_meta WHERE key = ?1), '') IS NOT ?2",
            params![FINGERPRINT_KEY, fingerprint],
            |r| r.get(0),
        )?),
        Db::Pg(pg) => pg::get(
            &pg.query_one(
                "SELECT EXISTS (SELECT 1 FROM day_dirty)
                     OR coalesce((SELECT value FROM store_meta WHERE key = $1), '')
                        IS DISTINCT FROM $2::text",
                &[&FINGERPRINT_KEY, &fingerprint],
            )?,
            "day_dirty",
            0,
        ),
    }
}

/// Days waiting to be recomputed (for `/metrics` and tests).
pub fn dirty_days(db: &Db<'_>) -> Result<i64, StoreError> {
    match db {
        Db::Sqlite(conn) => Ok(conn.query_row("SELECT count(*) FROM day_dirty", [], |r| r.get(0))?),
        Db::Pg(pg) => pg::get(
            &pg.query_one("SELECT count(*) FROM day_dirty", &[])?,
            "day_dirty",
            0,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rusqlite::Connection;

    /// The writer's upsert of a day, as rollup.rs issued it on schema 7 (since schema 8 it
    /// writes `agg_day` and marks days itself: `rollup::tests`).
    fn upsert_day(conn: &Connection, count: i64) -> rusqlite::Result<usize> {
        conn.execute(
            "INSERT INTO rollup_day (post, quantity, day, start, end_at, count, weighted_sum, covered_s, min, max, expected)
             VALUES ('p', 'pm2_5', '2025-03-10', 0, 86400, ?1, 10.0, 60, 1.0, 1.0, 1440)
             ON CONFLICT (post, quantity, day) DO UPDATE SET count = count + excluded.count",
            [count],
        )
    }

    #[test]
    fn a_day_marked_dirty_takes_further_commits_and_is_marked_once() {
        // A store still on schema 7, where the triggers on rollup_day mark the days.
        let mut conn = Connection::open_in_memory().unwrap();
        crate::schema::migrate_to(&mut conn, 7).unwrap();
        upsert_day(&conn, 1).unwrap();
        // Before the trigger guarded its insert, this second commit into a day already marked
        // failed with a constraint error (the upsert's conflict policy reaches the trigger).
        upsert_day(&conn, 2).unwrap();
        upsert_day(&conn, 3).unwrap();
        assert_eq!(dirty_days(&Db::Sqlite(&conn)).unwrap(), 1);
        let count: i64 = conn
            .query_row("SELECT count FROM rollup_day", [], |r| r.get(0))
            .unwrap();
        assert_eq!(count, 6);
    }

    fn day(date: NaiveDate, seed: u32) -> DayStats {
        DayStats {
            date,
            start: LocalDay::of(date).start,
            hours: 24 + seed % 2,
            hour_buckets: 20 + seed % 5,
            valid_hours: 18,
            sum_valid_hourly: 0.1 + f64::from(seed) * 1e-7,
            max_valid_hourly: (seed % 3 != 0).then_some(-0.0),
            valid_20min: 72,
            invalid_20min: seed % 4,
            over_one_time: seed % 7,
            max_20min: (seed % 2 == 0).then_some(f64::from(seed) / 3.0),
            max_20min_at: (seed % 5 != 0).then(|| UnixSeconds(-1 - i64::from(seed))),
        }
    }

    #[test]
    fn a_packed_year_unpacks_to_the_same_days_bit_for_bit() {
        let dates: Vec<NaiveDate> = (0..366)
            .filter_map(|n| NaiveDate::from_yo_opt(2024, n + 1))
            .collect();
        let days: Vec<DayStats> = dates.iter().zip(0..).map(|(d, s)| day(*d, s)).collect();
        let blob = pack(days.iter()).unwrap();
        assert_eq!(blob.len(), 1 + 366 * PACKED_DAY);
        let back = unpack(&blob, 2024).unwrap();
        assert_eq!(back.len(), days.len());
        for (a, b) in days.iter().zip(&back) {
            assert_eq!(a, b);
            // -0.0 == 0.0, so compare the bits too: nothing is rounded on the way.
            assert_eq!(
                a.max_valid_hourly.map(f64::to_bits),
                b.max_valid_hourly.map(f64::to_bits)
            );
            assert_eq!(a.sum_valid_hourly.to_bits(), b.sum_valid_hourly.to_bits());
        }
    }

    #[test]
    fn a_damaged_packed_year_is_an_error_not_wrong_days() {
        let date = NaiveDate::from_ymd_opt(2025, 12, 31).unwrap();
        let blob = pack([day(date, 1)].iter()).unwrap();
        assert!(unpack(&blob[..blob.len() - 1], 2025)
            .unwrap_err()
            .contains("whole days"));
        assert!(unpack(&[], 2025).unwrap_err().contains("empty"));
        let mut newer = blob.clone();
        newer[0] = PACK_VERSION + 1;
        assert!(unpack(&newer, 2025).unwrap_err().contains("format"));
        // Day 365 (from 0) of a leap year does not exist in a common year.
        let leap = NaiveDate::from_ymd_opt(2024, 12, 31).unwrap();
        let blob = pack([day(leap, 2)].iter()).unwrap();
        assert!(unpack(&blob, 2025).unwrap_err().contains("not in 2025"));
        let too_many = DayStats {
            valid_20min: 70_000,
            ..day(date, 3)
        };
        assert!(pack([too_many].iter()).is_err());
    }

    /// A stand-in for the engine's arithmetic: one day per date with buckets, counting them.
    fn count_buckets(
        _: Quantity,
        hourly: &[HourlyMean],
        twenty: &[TwentyMinuteMean],
    ) -> Vec<DayStats> {
        let Some(first) = hourly.first() else {
            return Vec::new();
        };
        let local = LocalDay::containing(first.start);
        vec![DayStats {
            hour_buckets: u32::try_from(hourly.len()).unwrap(),
            valid_20min: u32::try_from(twenty.len()).unwrap(),
            sum_valid_hourly: hourly.iter().map(|h| h.mean).sum(),
            ..day(local.date, 0)
        }]
    }

    #[test]
    fn a_schema_8_store_gets_its_days_again_in_year_rows_after_migration_9() {
        let mut conn = Connection::open_in_memory().unwrap();
        crate::schema::migrate_to(&mut conn, 8).unwrap();
        let date = NaiveDate::from_ymd_opt(2025, 3, 10).unwrap();
        let local = LocalDay::of(date);
        for h in 0..3 {
            conn.execute(
                "INSERT INTO rollup_hour (post, quantity, start, count, weighted_sum, covered_s, min, max, expected)
                 VALUES ('p', 'pm2_5', ?1, 1, 36000.0, 3600, 10.0, 10.0, 60)",
                [local.start.0 + h * 3600],
            )
            .unwrap();
        }
        conn.execute(
            "INSERT INTO rollup_day (post, quantity, day, start, end_at, count, weighted_sum, covered_s, min, max, expected)
             VALUES ('p', 'pm2_5', '2025-03-10', ?1, ?2, 3, 108000.0, 10800, 10.0, 10.0, 1440)",
            [local.start.0, local.end.0],
        )
        .unwrap();
        // As a schema-8 gateway left it: the day computed, nothing dirty, the rules recorded.
        conn.execute_batch(
            "DELETE FROM day_dirty;
             INSERT INTO day_scores (post, quantity, day, start, hours, hour_buckets, valid_hours,
                 sum_valid_hourly, valid_20min, invalid_20min, over_one_time)
                 VALUES ('p', 'pm2_5', '2025-03-10', 0, 24, 3, 3, 30.0, 0, 0, 0);
             INSERT INTO store_meta (key, value) VALUES ('day_scores_fingerprint', 'rules');",
        )
        .unwrap();
        assert!(!needs_refresh(&Db::Sqlite(&conn), "rules").unwrap());

        crate::schema::migrate(&mut conn).unwrap();
        assert!(
            needs_refresh(&Db::Sqlite(&conn), "rules").unwrap(),
            "the days must be computed again"
        );
        assert_eq!(refresh(&mut conn, "rules", &count_buckets).unwrap(), 1);
        assert!(!needs_refresh(&Db::Sqlite(&conn), "rules").unwrap());
        let post = PostId::parse("p").unwrap();
        let days = days_of(
            &Db::Sqlite(&conn),
            &post,
            Quantity::Pm2_5,
            date,
            date.succ_opt().unwrap(),
        )
        .unwrap();
        assert_eq!(days.len(), 1);
        assert_eq!((days[0].date, days[0].hour_buckets), (date, 3));
        assert_eq!(days[0].sum_valid_hourly, 30.0);

        // A late bucket into that day marks it, and the refresh rewrites the year's row.
        conn.execute(
            "INSERT INTO rollup_day (post, quantity, day, start, end_at, count, weighted_sum, covered_s, min, max, expected)
             VALUES ('p', 'pm2_5', '2025-03-11', ?1, ?2, 1, 1.0, 60, 1.0, 1.0, 1440)",
            [local.end.0, local.end.0 + 86_400],
        )
        .unwrap();
        conn.execute(
            "INSERT INTO rollup_hour (post, quantity, start, count, weighted_sum, covered_s, min, max, expected)
             VALUES ('p', 'pm2_5', ?1, 1, 72000.0, 3600, 20.0, 20.0, 60)",
            [local.start.0 + 5 * 3600],
        )
        .unwrap();
        conn.execute(
            "INSERT INTO day_dirty (post, quantity, day) VALUES ('p', 'pm2_5', '2025-03-10')",
            [],
        )
        .unwrap();
        assert_eq!(refresh(&mut conn, "rules", &count_buckets).unwrap(), 2);
        let year = year_of(&Db::Sqlite(&conn), "p", "pm2_5", 2025).unwrap();
        assert_eq!(
            year.len(),
            1,
            "11 March has no hourly bucket, so no aggregate"
        );
        assert_eq!(year[&date].hour_buckets, 4);
        assert_eq!(year[&date].sum_valid_hourly, 50.0);
    }

    #[test]
    fn day_labels_parse_as_chrono_would_and_nothing_else_does() {
        for label in ["2025-01-01", "2024-02-29", "1999-12-31"] {
            assert_eq!(
                parse_day(label),
                NaiveDate::parse_from_str(label, "%Y-%m-%d").ok(),
                "{label}"
            );
        }
        for bad in [
            "2025-02-30",
            "2025-1-01",
            "20250101xx",
            "2025-01-0a",
            "",
            "2025/01/01",
        ] {
            assert_eq!(parse_day(bad), None, "{bad}");
        }
    }

    /// [`count_buckets`] for [`refresh_store`].
    fn counting() -> SharedAggregate {
        Arc::new(count_buckets)
    }

    /// The days of `q` at `alm-b` in December 2025 and January 2026 from [`day_series`], with
    /// the 20-minute buckets of 1 January: (date, hour buckets, sum of means, 20-minute buckets).
    async fn alm_b_days(store: &Store, q: Quantity) -> (Vec<(NaiveDate, u32, f64, u32)>, usize) {
        store
            .read(move |db| {
                let posts = crate::read::post_descriptors(db)?;
                let new_year = NaiveDate::from_ymd_opt(2026, 1, 1).unwrap();
                let series = day_series(
                    db,
                    posts,
                    &[q],
                    NaiveDate::from_ymd_opt(2025, 12, 1).unwrap(),
                    NaiveDate::from_ymd_opt(2026, 2, 1).unwrap(),
                    UnixSeconds(i64::MAX),
                    &|_, d| d.date == new_year,
                )?;
                let b = series
                    .iter()
                    .find(|p| p.post.id.as_str() == "alm-b")
                    .unwrap();
                let a = series
                    .iter()
                    .find(|p| p.post.id.as_str() == "alm_a")
                    .unwrap();
                assert!(
                    a.series.is_empty(),
                    "alm_a has no daily rollup, so no aggregates"
                );
                let Some(s) = b.series.first() else {
                    return Ok((Vec::new(), 0));
                };
                let days = s
                    .days
                    .iter()
                    .map(|d| (d.date, d.hour_buckets, d.sum_valid_hourly, d.valid_20min))
                    .collect();
                Ok((days, s.twenty_minute.len()))
            })
            .await
            .unwrap()
    }

    fn date(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap()
    }

    /// A late hour of PM2.5 at `alm-b` on 1 January (mean 40, starting `after` seconds after
    /// T0), and its day's mark.
    fn late_hour(after: i64) -> String {
        use crate::read::tests::T0;
        format!(
            "INSERT INTO rollup_hour (post, quantity, start, count, weighted_sum, covered_s, min, max, expected)
                 VALUES ('alm-b', 'pm2_5', {T0} + {after}, 1, 144000.0, 3600, 40.0, 40.0, 60);
             INSERT INTO day_dirty (post, quantity, day) VALUES ('alm-b', 'pm2_5', '2026-01-01')
                 ON CONFLICT DO NOTHING;"
        )
    }

    /// [`late_hour`] as the PostgreSQL writer commits it: the day's rollup upserted first (its
    /// row lock is what a refresh checks), then the bucket and the mark.
    fn pg_late_hour(after: i64) -> String {
        format!(
            "INSERT INTO rollup_day (post, quantity, day, start, end_at, count, weighted_sum, covered_s,
                                     min, max, expected)
                 VALUES ('alm-b', 'pm2_5', '2026-01-01', 0, 0, 1, 144000.0, 3600, 40.0, 40.0, 1440)
                 ON CONFLICT (post, quantity, day) DO UPDATE SET count = rollup_day.count + 1;
             {}",
            late_hour(after)
        )
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn day_aggregates_refresh_and_read_the_same_on_both_backends() {
        let stores = crate::read::both::stores("day_scores::day_aggregates_refresh").await;
        for store in &stores.list {
            crate::read::both::write(store, crate::read::tests::fixture()).await;
            // As the writers mark (SQLite's view of rollup_day marks by itself).
            crate::read::both::write(
                store,
                "INSERT INTO day_dirty (post, quantity, day)
                     SELECT post, quantity, day FROM rollup_day WHERE quantity IN ('pm2_5', 'no2')
                     ON CONFLICT DO NOTHING"
                    .into(),
            )
            .await;
            let state = |store: &Store| {
                let store = store.clone();
                async move {
                    store
                        .read(|db| {
                            Ok((
                                needs_refresh(db, "rules")?,
                                dirty_days(db)?,
                                aggregates_version(db)?,
                            ))
                        })
                        .await
                        .unwrap()
                }
            };
            assert_eq!(state(store).await, (true, 3, 0), "{store:?}");
            // The first refresh computes every stored day of the scored pollutants.
            assert_eq!(refresh_store(store, "rules", counting()).await.unwrap(), 3);
            let (pending, dirty, v1) = state(store).await;
            assert!(!pending && dirty == 0 && v1 > 0, "{store:?}");
            assert_eq!(refresh_store(store, "rules", counting()).await.unwrap(), 0);
            assert_eq!(
                state(store).await.2,
                v1,
                "nothing changed, the version stays"
            );
            let (days, twenty) = alm_b_days(store, Quantity::Pm2_5).await;
            assert_eq!(
                days,
                [
                    (date(2025, 12, 31), 1, 5.0, 1),
                    (date(2026, 1, 1), 1, 15.0, 1)
                ],
                "{store:?}"
            );
            assert_eq!(twenty, 1, "the detail of 1 January");
            let (no2, _) = alm_b_days(store, Quantity::No2).await;
            assert_eq!(no2, [(date(2026, 1, 1), 1, 30.0, 1)]);

            // A late hour marks its day; the refresh rewrites that day only.
            crate::read::both::write(store, late_hour(7200)).await;
            assert_eq!(state(store).await.1, 1);
            assert_eq!(refresh_store(store, "rules", counting()).await.unwrap(), 1);
            let (pending, dirty, v2) = state(store).await;
            assert!(!pending && dirty == 0 && v2 > v1);
            let (days, _) = alm_b_days(store, Quantity::Pm2_5).await;
            assert_eq!(
                days,
                [
                    (date(2025, 12, 31), 1, 5.0, 1),
                    (date(2026, 1, 1), 2, 55.0, 1)
                ]
            );

            // Other rules recompute everything.
            assert!(store.read(|db| needs_refresh(db, "rules-2")).await.unwrap());
            assert_eq!(
                refresh_store(store, "rules-2", counting()).await.unwrap(),
                3
            );
            assert_eq!(alm_b_days(store, Quantity::Pm2_5).await.0.len(), 2);
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn on_postgres_a_day_a_writer_holds_during_a_refresh_stays_dirty() {
        use std::time::Duration;
        let Some(url) = crate::pg::test_server::database("day_scores::a_day_a_writer_holds") else {
            return;
        };
        let pg = crate::pg::PgStore::connect(&url).await.unwrap();
        let store = Store::Pg(pg.clone());
        crate::read::both::write(&store, crate::read::tests::fixture()).await;
        refresh_store(&store, "rules", counting()).await.unwrap();

        // 1. The writer has touched 1 January and not committed when the refresh runs: its
        // mark is a no-op on the one an earlier commit left, so clearing that mark now would
        // lose its hour. The refresh skips the day (without waiting for the writer).
        crate::read::both::write(
            &store,
            "INSERT INTO day_dirty (post, quantity, day) VALUES ('alm-b', 'pm2_5', '2026-01-01'),
                 ('alm-b', 'no2', '2026-01-01')"
                .into(),
        )
        .await;
        let mut client = pg.session().await.unwrap();
        let tx = client.transaction().await.unwrap();
        tx.batch_execute(&pg_late_hour(7200)).await.unwrap();
        let done = tokio::time::timeout(
            Duration::from_secs(20),
            refresh_store(&store, "rules", counting()),
        )
        .await
        .expect("a refresh never waits for a writer");
        assert_eq!(done.unwrap(), 1, "NO2's day is recomputed, PM2.5's is left");
        assert_eq!(store.read(dirty_days).await.unwrap(), 1);
        tx.commit().await.unwrap();
        assert_eq!(refresh_store(&store, "rules", counting()).await.unwrap(), 1);
        let (days, _) = alm_b_days(&store, Quantity::Pm2_5).await;
        assert_eq!(
            days[1],
            (date(2026, 1, 1), 2, 55.0, 1),
            "the held hour is in"
        );

        // 2. A writer that comes while the day is being recomputed waits for the refresh to
        // commit, and its mark then stays.
        crate::read::both::write(
            &store,
            "INSERT INTO day_dirty (post, quantity, day) VALUES ('alm-b', 'pm2_5', '2026-01-01')"
                .into(),
        )
        .await;
        let writer: Arc<std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>> = Arc::default();
        let during = {
            let (writer, pg) = (Arc::clone(&writer), pg.clone());
            move |q: Quantity, hourly: &[HourlyMean], twenty: &[TwentyMinuteMean]| {
                let mut slot = writer.lock().unwrap();
                if slot.is_none() {
                    let pg = pg.clone();
                    *slot = Some(tokio::runtime::Handle::current().spawn(async move {
                        let mut client = pg.session().await.unwrap();
                        let tx = client.transaction().await.unwrap();
                        tx.batch_execute(&pg_late_hour(10_800)).await.unwrap();
                        tx.commit().await.unwrap();
                    }));
                    drop(slot);
                    // Long enough for the writer to reach the day's row and wait on it.
                    std::thread::sleep(Duration::from_millis(300));
                }
                count_buckets(q, hourly, twenty)
            }
        };
        assert_eq!(
            refresh_store(&store, "rules", Arc::new(during))
                .await
                .unwrap(),
            1
        );
        let handle = writer.lock().unwrap().take().unwrap();
        handle.await.unwrap();
        assert_eq!(
            store.read(dirty_days).await.unwrap(),
            1,
            "the writer's mark survived the refresh"
        );
        assert_eq!(refresh_store(&store, "rules", counting()).await.unwrap(), 1);
        let (days, _) = alm_b_days(&store, Quantity::Pm2_5).await;
        assert_eq!(days[1], (date(2026, 1, 1), 3, 95.0, 1));
    }
}
