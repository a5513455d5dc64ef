//! Local-day aggregates for scoring (`day_scores`): per (post, quantity, local day) the valid
//! hours and their sum and maximum, and the day's 20-minute statistics against the one-time
//! limit ([`DayStats`]). A year's scorecard reads these (365 rows per series) instead of its
//! hourly and 20-minute buckets.
//!
//! Kept exact by data version, not by time: every (post, quantity, day) that a commit touches
//! goes into `day_dirty`, in the same transaction as the readings (so a late reading for a past
//! day marks that day): by triggers on `rollup_day` in migration 7, by the store writer's
//! rollup flush since migration 8 moved the rollups to `agg_day` ([`MARKED`]). [`refresh`]
//! recomputes exactly the dirty days from their buckets, under a write lock so no commit can
//! slip between reading a day and clearing its mark. The arithmetic is the scoring engine's
//! (`taza_score::days::day_stats`), handed in as a function: this crate owns only storage.
//! Aggregates carry the fingerprint of the rules they were computed under; a different
//! fingerprint recomputes them all.

use chrono::NaiveDate;
use protocol::{PostId, Quantity, UnixSeconds};
use rusqlite::{params, Connection, OptionalExtension, Transaction, TransactionBehavior};

use crate::StoreError;
use taza_domain::calendar::LocalDay;
use taza_domain::series::{
    DayStats, HourlyMean, PostDescriptor, PostSeries, QuantitySeries, TwentyMinuteMean,
};

/// The quantities whose touched days are marked: the city scorecard's
/// (`taza_score::days::SCORED`), as spelled in [`SCHEMA`]'s triggers.
pub const MARKED: [Quantity; 3] = [Quantity::Pm2_5, Quantity::Pm10, Quantity::No2];

/// Tables and triggers of this module (migration 7). The pollutants marked are the city
/// scorecard's (`taza_score::days::SCORED`); other quantities have no aggregates.
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

/// Days recomputed per transaction: bounds how long a refresh holds the write lock (the
/// ingest writer waits on it).
const BATCH_DAYS: usize = 256;
const FINGERPRINT_KEY: &str = "day_scores_fingerprint";

/// The arithmetic of one day: its hourly and 20-minute buckets of one quantity to aggregates.
pub type Aggregate<'a> = &'a dyn Fn(Quantity, &[HourlyMean], &[TwentyMinuteMean]) -> Vec<DayStats>;

/// Recomputes every dirty day (all days when `fingerprint` differs from the stored one) with
/// `aggregate`; returns how many days were recomputed (0: the aggregates were current).
pub fn refresh(
    conn: &mut Connection,
    fingerprint: &str,
    aggregate: Aggregate<'_>,
) -> Result<usize, StoreError> {
    {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let stored: Option<String> = tx
            .query_row(
                "SELECT value FROM store_meta WHERE key = ?1",
                [FINGERPRINT_KEY],
                |r| r.get(0),
            )
            .optional()?;
        if stored.as_deref() != Some(fingerprint) {
            tx.execute("DELETE FROM day_scores", [])?;
            tx.execute(
                "INSERT OR IGNORE INTO day_dirty (post, quantity, day)
                 SELECT post, quantity, day FROM rollup_day WHERE quantity IN ('pm2_5', 'pm10', 'no2')",
                [],
            )?;
            tx.execute(
                "INSERT INTO store_meta (key, value) VALUES (?1, ?2)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                params![FINGERPRINT_KEY, fingerprint],
            )?;
        }
        tx.commit()?;
    }
    let mut total = 0;
    loop {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let batch = dirty_batch(&tx)?;
        if batch.is_empty() {
            tx.commit()?;
            return Ok(total);
        }
        for (post, quantity, day) in &batch {
            recompute(&tx, post, quantity, day, aggregate)?;
        }
        tx.commit()?;
        total += batch.len();
    }
}

fn dirty_batch(tx: &Transaction<'_>) -> Result<Vec<(String, String, String)>, StoreError> {
    let mut stmt = tx.prepare_cached(&format!(
        "SELECT post, quantity, day FROM day_dirty LIMIT {BATCH_DAYS}"
    ))?;
    let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

fn recompute(
    tx: &Transaction<'_>,
    post: &str,
    quantity: &str,
    day: &str,
    aggregate: Aggregate<'_>,
) -> Result<(), StoreError> {
    tx.prepare_cached("DELETE FROM day_dirty WHERE post = ?1 AND quantity = ?2 AND day = ?3")?
        .execute(params![post, quantity, day])?;
    let corrupt = |what: String| StoreError::Corrupt {
        table: "rollup_day",
        key: format!("{post}/{quantity}/{day}"),
        what,
    };
    let q = Quantity::parse(quantity).ok_or_else(|| corrupt(format!("quantity {quantity:?}")))?;
    let date = parse_day(day).ok_or_else(|| corrupt("day is not a YYYY-MM-DD date".into()))?;
    let local = LocalDay::of(date);
    let (hourly, twenty) = buckets(tx, post, quantity, local.start, local.end)?;
    tx.prepare_cached("DELETE FROM day_scores WHERE post = ?1 AND quantity = ?2 AND day = ?3")?
        .execute(params![post, quantity, day])?;
    for d in aggregate(q, &hourly, &twenty) {
        if d.date != date {
            continue; // the buckets were selected by the day's span; nothing else can appear
        }
        tx.prepare_cached(
            "INSERT INTO day_scores (post, quantity, day, start, hours, hour_buckets, valid_hours,
                 sum_valid_hourly, max_valid_hourly, valid_20min, invalid_20min, over_one_time,
                 max_20min, max_20min_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
        )?
        .execute(params![
            post,
            quantity,
            day,
            d.start.0,
            d.hours,
            d.hour_buckets,
            d.valid_hours,
            d.sum_valid_hourly,
            d.max_valid_hourly,
            d.valid_20min,
            d.invalid_20min,
            d.over_one_time,
            d.max_20min,
            d.max_20min_at.map(|t| t.0),
        ])?;
    }
    Ok(())
}

/// One series' hourly and 20-minute buckets with start in [from, to), by start.
fn buckets(
    conn: &Connection,
    post: &str,
    quantity: &str,
    from: UnixSeconds,
    to: UnixSeconds,
) -> Result<(Vec<HourlyMean>, Vec<TwentyMinuteMean>), StoreError> {
    let mut hourly = Vec::new();
    // A range of the post's part of the table (crate::series).
    let Some(s) = series(conn, post, quantity)? else {
        return Ok((hourly, Vec::new()));
    };
    let mut stmt = conn.prepare_cached(
        "SELECT start, weighted_sum, covered_s, count, max FROM agg_hour
         WHERE post_key = ?1 AND start >= ?3 AND start < ?4 AND series = ?2 ORDER BY start",
    )?;
    let rows = stmt.query_map(params![s.post_key, s.id, from.0, to.0], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, f64>(1)?,
            r.get::<_, i64>(2)?,
            r.get::<_, i64>(3)?,
            r.get::<_, f64>(4)?,
        ))
    })?;
    for row in rows {
        let (start, weighted_sum, covered_s, count, max) = row?;
        hourly.push(HourlyMean {
            start: UnixSeconds(start),
            mean: mean(weighted_sum, covered_s),
            covered_s,
            count: u32::try_from(count).unwrap_or(u32::MAX),
            max,
        });
    }
    let twenty = twenty_minutes_of(conn, &s, from, to)?;
    Ok((hourly, twenty))
}

fn twenty_minutes(
    conn: &Connection,
    post: &str,
    quantity: &str,
    from: UnixSeconds,
    to: UnixSeconds,
) -> Result<Vec<TwentyMinuteMean>, StoreError> {
    match series(conn, post, quantity)? {
        Some(s) => twenty_minutes_of(conn, &s, from, to),
        None => Ok(Vec::new()),
    }
}

fn twenty_minutes_of(
    conn: &Connection,
    s: &crate::series::Series,
    from: UnixSeconds,
    to: UnixSeconds,
) -> Result<Vec<TwentyMinuteMean>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT start, weighted_sum, covered_s FROM agg_20min
         WHERE post_key = ?1 AND start >= ?3 AND start < ?4 AND series = ?2 ORDER BY start",
    )?;
    let rows = stmt.query_map(params![s.post_key, s.id, from.0, to.0], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, f64>(1)?,
            r.get::<_, i64>(2)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (start, weighted_sum, covered_s) = row?;
        out.push(TwentyMinuteMean {
            start: UnixSeconds(start),
            mean: mean(weighted_sum, covered_s),
            covered_s,
        });
    }
    Ok(out)
}

/// The series of (`post`, `quantity`), if it has one.
fn series(
    conn: &Connection,
    post: &str,
    quantity: &str,
) -> Result<Option<crate::series::Series>, StoreError> {
    Ok(crate::series::of_post(conn, post, Some(quantity))?
        .into_iter()
        .next())
}

/// A time-weighted mean; NaN (never valid) for a bucket that covers no time.
fn mean(weighted_sum: f64, covered_s: i64) -> f64 {
    if covered_s > 0 {
        weighted_sum / covered_s as f64
    } else {
        f64::NAN
    }
}

/// What the scorecard reads for `posts`: per scored quantity the aggregates of the local days
/// in [from, to), the 20-minute buckets of the days `detail` asks for, and the hourly buckets
/// from `recent_from` on (the comparison views).
pub fn day_series(
    conn: &Connection,
    posts: Vec<PostDescriptor>,
    quantities: &[Quantity],
    from: NaiveDate,
    to: NaiveDate,
    recent_from: UnixSeconds,
    detail: &dyn Fn(Quantity, &DayStats) -> bool,
) -> Result<Vec<PostSeries>, StoreError> {
    let (from_label, to_label) = (
        from.format("%Y-%m-%d").to_string(),
        to.format("%Y-%m-%d").to_string(),
    );
    let mut out = Vec::with_capacity(posts.len());
    for post in posts {
        let mut series = Vec::new();
        for q in quantities {
            let days = days_of(conn, &post.id, *q, &from_label, &to_label)?;
            if days.is_empty() {
                continue;
            }
            let mut twenty_minute = Vec::new();
            for d in days.iter().filter(|d| detail(*q, d)) {
                let end = d.start.offset(i64::from(d.hours) * 3600);
                twenty_minute.extend(twenty_minutes(
                    conn,
                    post.id.as_str(),
                    q.as_str(),
                    d.start,
                    end,
                )?);
            }
            let (hourly, _) = buckets(
                conn,
                post.id.as_str(),
                q.as_str(),
                recent_from,
                UnixSeconds(i64::MAX),
            )?;
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

fn days_of(
    conn: &Connection,
    post: &PostId,
    q: Quantity,
    from: &str,
    to: &str,
) -> Result<Vec<DayStats>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT day, start, hours, hour_buckets, valid_hours, sum_valid_hourly, max_valid_hourly,
                valid_20min, invalid_20min, over_one_time, max_20min, max_20min_at
         FROM day_scores WHERE post = ?1 AND quantity = ?2 AND day >= ?3 AND day < ?4 ORDER BY day",
    )?;
    let rows = stmt.query_map(params![post.as_str(), q.as_str(), from, to], |r| {
        Ok((
            r.get::<_, String>(0)?,
            DayStats {
                date: NaiveDate::MIN,
                start: UnixSeconds(r.get(1)?),
                hours: r.get(2)?,
                hour_buckets: r.get(3)?,
                valid_hours: r.get(4)?,
                sum_valid_hourly: r.get(5)?,
                max_valid_hourly: r.get(6)?,
                valid_20min: r.get(7)?,
                invalid_20min: r.get(8)?,
                over_one_time: r.get(9)?,
                max_20min: r.get(10)?,
                max_20min_at: r.get::<_, Option<i64>>(11)?.map(UnixSeconds),
            },
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (label, mut d) = row?;
        d.date = parse_day(&label).ok_or_else(|| StoreError::Corrupt {
            table: "day_scores",
            key: format!("{post}/{}/{label}", q.as_str()),
            what: "day is not a YYYY-MM-DD date".into(),
        })?;
        out.push(d);
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

/// Days waiting to be recomputed (for `/metrics` and tests).
pub fn dirty_days(conn: &Connection) -> Result<i64, StoreError> {
    Ok(conn.query_row("SELECT count(*) FROM day_dirty", [], |r| r.get(0))?)
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(dirty_days(&conn).unwrap(), 1);
        let count: i64 = conn
            .query_row("SELECT count FROM rollup_day", [], |r| r.get(0))
            .unwrap();
        assert_eq!(count, 6);
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
}
