//! Queries the API answers from: the registry with each post's status, raw readings, rollups.
//! Every query is bounded by a time range and a row limit.
//!
//! Readings and rollups are keyed post first, then time ([`crate::series`]): a query for one
//! post or series is a range scan of that post's part of a table; a query for every post is one
//! such range per post.

use protocol::{PostId, QaFlags, Quantity, UnixSeconds};
use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;

use super::StoreError;
use taza_domain::calendar::{rfc3339, LocalDay};

/// A post as the API lists it.
#[derive(Debug, Clone, Serialize)]
pub struct PostSummary {
    /// Id.
    pub id: String,
    /// air, river or unregistered.
    pub kind: String,
    /// Human name.
    pub name: String,
    /// Degrees.
    pub latitude: Option<f64>,
    /// Degrees.
    pub longitude: Option<f64>,
    /// District.
    pub district: Option<String>,
    /// River.
    pub river: Option<String>,
    /// Installed sensors.
    pub sensors: Vec<String>,
    /// Reporting interval, seconds.
    pub cadence_s: i64,
    /// Last status the post reported.
    pub status: Option<StatusSummary>,
    /// Taken out of service (its history stays).
    pub retired: bool,
    /// Whether the post runs the config the registry wants (filled by the API from the
    /// registry; None for posts outside it).
    pub config: Option<ConfigState>,
}

/// A post's config compared with the registry's.
#[derive(Debug, Clone, Serialize)]
pub struct ConfigState {
    /// Hash of the config the registry wants, hex.
    pub desired: String,
    /// Hash the post reported, hex.
    pub reported: Option<String>,
    /// `current`, `outdated` (the post runs another config) or `unknown` (no status yet).
    pub state: &'static str,
}

impl ConfigState {
    /// Compares `desired` with what the post `reported`.
    pub fn compare(desired: u32, reported: Option<u32>) -> Self {
        Self {
            desired: format!("{desired:08x}"),
            reported: reported.map(|h| format!("{h:08x}")),
            state: match reported {
                None => "unknown",
                Some(h) if h == desired => "current",
                Some(_) => "outdated",
            },
        }
    }
}

/// The last status message.
#[derive(Debug, Clone, Serialize)]
pub struct StatusSummary {
    /// Connected.
    pub online: bool,
    /// Firmware version.
    pub firmware: String,
    /// Config hash the post runs.
    pub config_hash: Option<u32>,
    /// Readings its queue dropped since boot.
    pub dropped: u32,
    /// Reconnects since boot.
    pub reconnects: u32,
    /// When the gateway received it (RFC 3339).
    pub received_at: String,
}

/// Every post, sorted by id.
pub fn posts(conn: &Connection) -> Result<Vec<PostSummary>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT p.id, p.kind, p.name, p.latitude, p.longitude, p.district, p.river, p.sensors, p.cadence_s,
                s.online, s.firmware, s.config_hash, s.dropped, s.reconnects, s.received_at,
                p.retired_at IS NOT NULL
         FROM posts p LEFT JOIN post_status s ON s.post = p.id ORDER BY p.id",
    )?;
    let rows = stmt.query_map([], |r| {
        let sensors: String = r.get(7)?;
        let status = match r.get::<_, Option<bool>>(9)? {
            Some(online) => Some(StatusSummary {
                online,
                firmware: r.get(10)?,
                config_hash: r.get(11)?,
                dropped: r.get(12)?,
                reconnects: r.get(13)?,
                received_at: rfc3339(UnixSeconds(r.get(14)?)),
            }),
            None => None,
        };
        let summary = PostSummary {
            id: r.get(0)?,
            kind: r.get(1)?,
            name: r.get(2)?,
            latitude: r.get(3)?,
            longitude: r.get(4)?,
            district: r.get(5)?,
            river: r.get(6)?,
            sensors: Vec::new(),
            cadence_s: r.get(8)?,
            status,
            retired: r.get(15)?,
            config: None,
        };
        Ok((summary, sensors))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (mut summary, sensors) = row?;
        summary.sensors = serde_json::from_str(&sensors).map_err(|e| StoreError::Corrupt {
            table: "posts",
            key: summary.id.clone(),
            what: format!("sensors: {e}"),
        })?;
        out.push(summary);
    }
    Ok(out)
}

/// Whether `post` is in the registry table.
pub fn post_exists(conn: &Connection, post: &PostId) -> Result<bool, StoreError> {
    Ok(conn
        .prepare_cached("SELECT 1 FROM posts WHERE id = ?1")?
        .query_row([post.as_str()], |_| Ok(()))
        .optional()?
        .is_some())
}

/// One raw reading for the API.
#[derive(Debug, Clone, Serialize)]
pub struct ReadingRow {
    /// Quantity name.
    pub quantity: Quantity,
    /// RFC 3339, UTC.
    pub time: String,
    /// Value in `unit`.
    pub value: f64,
    /// SenML unit.
    pub unit: &'static str,
    /// QA flag names.
    pub flags: Vec<&'static str>,
}

/// Raw readings of `post` in `[from, to)`, oldest first, at most `limit`.
pub fn readings(
    conn: &Connection,
    post: &PostId,
    quantity: Option<Quantity>,
    from: UnixSeconds,
    to: UnixSeconds,
    limit: usize,
) -> Result<Vec<ReadingRow>, StoreError> {
    let Some(post_key) = crate::series::of_post(conn, post.as_str(), None)?
        .first()
        .map(|s| s.post_key)
    else {
        return Ok(Vec::new());
    };
    let mut stmt = conn.prepare_cached(
        "SELECT s.quantity, r.at, r.value, r.flags FROM samples r CROSS JOIN series s
         WHERE r.post_key = ?1 AND r.bucket >= ?6 AND r.bucket <= ?7 AND r.at >= ?3 AND r.at < ?4
           AND s.id = r.series AND (?2 IS NULL OR s.quantity = ?2)
         ORDER BY r.at, s.quantity LIMIT ?5",
    )?;
    let rows = stmt.query_map(
        params![
            post_key,
            quantity.map(Quantity::as_str),
            from.0,
            to.0,
            limit as i64,
            crate::series::bucket_of(from.0),
            crate::series::bucket_of(to.0.saturating_sub(1))
        ],
        |r| {
            let name: String = r.get(0)?;
            let flags = QaFlags(r.get(3)?);
            Ok((name, r.get::<_, i64>(1)?, r.get::<_, f64>(2)?, flags))
        },
    )?;
    let mut out = Vec::new();
    for row in rows {
        let (name, at, value, flags) = row?;
        // Rows are written only from decoded quantities, so an unknown name means a newer
        // gateway wrote it; skip it rather than fail the whole answer.
        let Some(q) = Quantity::parse(&name) else {
            continue;
        };
        out.push(ReadingRow {
            quantity: q,
            time: rfc3339(UnixSeconds(at)),
            value,
            unit: q.unit().as_str(),
            flags: flags.names().collect(),
        });
    }
    Ok(out)
}

/// Rollup period.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Period {
    /// UTC (= local) hours.
    Hour,
    /// Local days in Asia/Almaty.
    Day,
}

/// One rollup bucket for the API.
#[derive(Debug, Clone, Serialize)]
pub struct RollupRow {
    /// Bucket start, RFC 3339 UTC.
    pub start: String,
    /// Bucket end (exclusive), RFC 3339 UTC.
    pub end: String,
    /// Local date (daily buckets).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub day: Option<String>,
    /// Time-weighted mean of valid readings, in `unit`.
    pub mean: f64,
    /// Smallest valid reading.
    pub min: f64,
    /// Largest valid reading.
    pub max: f64,
    /// Valid readings.
    pub count: i64,
    /// Readings the post's cadence promises.
    pub expected: i64,
    /// Seconds of the bucket covered by valid readings.
    pub covered_s: i64,
    /// covered_s / bucket length, capped at 1.
    pub data_capture: f64,
    /// SenML unit.
    pub unit: &'static str,
}

/// Rollups of `post`/`quantity` whose bucket overlaps `[from, to)`.
pub fn rollups(
    conn: &Connection,
    post: &PostId,
    quantity: Quantity,
    period: Period,
    from: UnixSeconds,
    to: UnixSeconds,
) -> Result<Vec<RollupRow>, StoreError> {
    let Some(series) = crate::series::of_post(conn, post.as_str(), Some(quantity.as_str()))?
        .into_iter()
        .next()
    else {
        return Ok(Vec::new());
    };
    // Bounds on the key after the post (hour starts; local dates), then the range itself.
    use rusqlite::types::Value;
    let (sql, first, last) = match period {
        Period::Hour => (
            "SELECT start, start + 3600, NULL, count, weighted_sum, covered_s, min, max, expected
             FROM agg_hour
             WHERE post_key = ?1 AND start >= ?5 AND start <= ?6 AND series = ?2
               AND start > ?3 - 3600 AND start < ?4
             ORDER BY start",
            Value::Integer(from.0.saturating_sub(3599)),
            Value::Integer(to.0.saturating_sub(1)),
        ),
        Period::Day => (
            "SELECT start, end_at, day, count, weighted_sum, covered_s, min, max, expected
             FROM agg_day
             WHERE post_key = ?1 AND day >= ?5 AND day <= ?6 AND series = ?2
               AND start > ?3 - 90000 AND end_at > ?3 AND start < ?4
             ORDER BY start",
            Value::Text(day_bound(from.0.saturating_sub(90_000), "0000-01-01")),
            Value::Text(day_bound(to.0, "9999-12-31")),
        ),
    };
    let unit = quantity.unit().as_str();
    let mut stmt = conn.prepare_cached(sql)?;
    let rows = stmt.query_map(
        params![series.post_key, series.id, from.0, to.0, first, last],
        |r| {
            let start: i64 = r.get(0)?;
            let end: i64 = r.get(1)?;
            let weighted_sum: f64 = r.get(4)?;
            let covered_s: i64 = r.get(5)?;
            Ok(RollupRow {
                start: rfc3339(UnixSeconds(start)),
                end: rfc3339(UnixSeconds(end)),
                day: r.get(2)?,
                mean: weighted_sum / covered_s.max(1) as f64,
                min: r.get(6)?,
                max: r.get(7)?,
                count: r.get(3)?,
                expected: r.get(8)?,
                covered_s,
                data_capture: (covered_s as f64 / (end - start).max(1) as f64).min(1.0),
                unit,
            })
        },
    )?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The local date containing `at` as stored in `day` (YYYY-MM-DD), or `beyond` when `at` is
/// outside the years such labels spell (the calendar clamps, and its label would not sort).
fn day_bound(at: i64, beyond: &str) -> String {
    let label = LocalDay::containing(UnixSeconds(at)).label();
    if label.len() == 10 && label.starts_with(|c: char| c.is_ascii_digit()) {
        label
    } else {
        beyond.to_string()
    }
}

/// One rollup bucket as the scoring engine takes it: a time-weighted mean with its coverage.
#[derive(Debug, Clone, PartialEq)]
pub struct BucketRow {
    /// The post.
    pub post: String,
    /// The quantity.
    pub quantity: Quantity,
    /// Bucket start.
    pub start: UnixSeconds,
    /// Valid readings in it.
    pub count: u32,
    /// Time-weighted mean, in the quantity's unit.
    pub mean: f64,
    /// Largest valid reading.
    pub max: f64,
    /// Seconds covered by valid readings.
    pub covered_s: i64,
}

/// Which rollup table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolution {
    /// `rollup_20min`.
    TwentyMinutes,
    /// `rollup_hour`.
    Hour,
}

/// Every bucket starting in `[from, to)` for `quantities` (all posts), ordered by post,
/// quantity, start: one pass for the whole city, so a year's scorecard is one query per table.
pub fn buckets(
    conn: &Connection,
    resolution: Resolution,
    quantities: &[Quantity],
    from: UnixSeconds,
    to: UnixSeconds,
) -> Result<Vec<BucketRow>, StoreError> {
    let table = match resolution {
        Resolution::TwentyMinutes => "agg_20min",
        Resolution::Hour => "agg_hour",
    };
    // One range of each post's part of the table per series of the quantity.
    let sql = format!(
        "SELECT s.post, s.quantity, a.start, a.count, a.weighted_sum, a.covered_s, a.max
         FROM series s CROSS JOIN {table} a
         WHERE s.quantity = ?1 AND a.post_key = s.post_key AND a.start >= ?2 AND a.start < ?3
           AND a.series = s.id
         ORDER BY s.post, a.start"
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let mut out = Vec::new();
    for q in quantities {
        let rows = stmt.query_map(params![q.as_str(), from.0, to.0], |r| {
            let covered_s: i64 = r.get(5)?;
            let weighted_sum: f64 = r.get(4)?;
            Ok(BucketRow {
                post: r.get(0)?,
                quantity: *q,
                start: UnixSeconds(r.get(2)?),
                count: r.get(3)?,
                mean: weighted_sum / covered_s.max(1) as f64,
                max: r.get(6)?,
                covered_s,
            })
        })?;
        for row in rows {
            out.push(row?);
        }
    }
    Ok(out)
}

/// A zone as stored.
#[derive(Debug, Clone, Serialize)]
pub struct ZoneRow {
    /// Id (slug).
    pub id: String,
    /// Name.
    pub name: String,
    /// Local date it took effect.
    pub start_date: String,
    /// GeoJSON geometry.
    pub geometry: serde_json::Value,
    /// Who last changed it.
    pub updated_by: String,
    /// When (RFC 3339).
    pub updated_at: String,
}

/// Every zone.
pub fn zones(conn: &Connection) -> Result<Vec<ZoneRow>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, name, start_date, geometry, updated_by, updated_at FROM zones ORDER BY id",
    )?;
    let rows = stmt.query_map([], |r| {
        let geometry: String = r.get(3)?;
        Ok(ZoneRow {
            id: r.get(0)?,
            name: r.get(1)?,
            start_date: r.get(2)?,
            geometry: serde_json::from_str(&geometry).unwrap_or(serde_json::Value::Null),
            updated_by: r.get(4)?,
            updated_at: rfc3339(UnixSeconds(r.get(5)?)),
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Every registered post as the scoring engine describes it (unregistered demo posts are left
/// out: nobody vouched for where they stand).
pub fn post_descriptors(
    conn: &Connection,
) -> Result<Vec<taza_domain::series::PostDescriptor>, StoreError> {
    use taza_domain::series::{PostDescriptor, PostKind};
    let mut stmt = conn.prepare_cached(
        "SELECT id, kind, latitude, longitude, district, river, critical_level FROM posts
         WHERE kind IN ('air', 'river') ORDER BY id",
    )?;
    let rows = stmt.query_map([], |r| {
        let id: String = r.get(0)?;
        let kind: String = r.get(1)?;
        let critical: Option<String> = r.get(6)?;
        Ok((
            id,
            kind,
            r.get::<_, Option<f64>>(2)?,
            r.get::<_, Option<f64>>(3)?,
            r.get(4)?,
            r.get(5)?,
            critical,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (id, kind, lat, lon, district, river, critical) = row?;
        // Ids in the table were validated on the way in; skip anything a newer gateway wrote.
        let Ok(id) = PostId::parse(&id) else { continue };
        let kind = kind.parse::<PostKind>().map_err(|e| StoreError::Corrupt {
            table: "posts",
            key: id.to_string(),
            what: format!("kind: {e}"),
        })?;
        let critical_level = match critical {
            None => None,
            Some(c) => Some(serde_json::from_str(&c).map_err(|e| StoreError::Corrupt {
                table: "posts",
                key: id.to_string(),
                what: format!("critical_level: {e}"),
            })?),
        };
        out.push(PostDescriptor {
            id,
            kind,
            lat_deg: lat.unwrap_or(f64::NAN),
            lon_deg: lon.unwrap_or(f64::NAN),
            district,
            river,
            critical_level,
        });
    }
    Ok(out)
}

/// The posts' hourly and 20-minute buckets of `quantities` in `[from, to)`, ready for scoring.
pub fn post_series(
    conn: &Connection,
    posts: Vec<taza_domain::series::PostDescriptor>,
    quantities: &[Quantity],
    from: UnixSeconds,
    to: UnixSeconds,
) -> Result<Vec<taza_domain::series::PostSeries>, StoreError> {
    use std::collections::HashMap;

    use taza_domain::series::{HourlyMean, QuantitySeries, TwentyMinuteMean};
    let mut by_key: HashMap<(String, Quantity), QuantitySeries> = HashMap::new();
    fn series(
        by_key: &mut HashMap<(String, Quantity), QuantitySeries>,
        post: String,
        quantity: Quantity,
    ) -> &mut QuantitySeries {
        by_key
            .entry((post, quantity))
            .or_insert_with(|| QuantitySeries {
                days: Vec::new(),
                quantity,
                hourly: Vec::new(),
                twenty_minute: Vec::new(),
            })
    }
    for b in buckets(conn, Resolution::Hour, quantities, from, to)? {
        series(&mut by_key, b.post, b.quantity)
            .hourly
            .push(HourlyMean {
                start: b.start,
                mean: b.mean,
                covered_s: b.covered_s,
                count: b.count,
                max: b.max,
            });
    }
    for b in buckets(conn, Resolution::TwentyMinutes, quantities, from, to)? {
        series(&mut by_key, b.post, b.quantity)
            .twenty_minute
            .push(TwentyMinuteMean {
                start: b.start,
                mean: b.mean,
                covered_s: b.covered_s,
            });
    }
    Ok(posts
        .into_iter()
        .map(|post| {
            let series = quantities
                .iter()
                .filter_map(|q| by_key.remove(&(post.id.as_str().to_string(), *q)))
                .collect();
            taza_domain::series::PostSeries { post, series }
        })
        .collect())
}

/// One post's hourly and 20-minute buckets of `quantities` in `[from, to)`: primary-key range
/// reads of that post's series only (a post page must not scan the city's rollups).
pub fn one_post_series(
    conn: &Connection,
    post: taza_domain::series::PostDescriptor,
    quantities: &[Quantity],
    from: UnixSeconds,
    to: UnixSeconds,
) -> Result<taza_domain::series::PostSeries, StoreError> {
    use taza_domain::series::QuantitySeries;
    let mut series = Vec::new();
    let stored = crate::series::of_post(conn, post.id.as_str(), None)?;
    for q in quantities {
        let Some(s) = stored.iter().find(|s| s.quantity == q.as_str()) else {
            continue;
        };
        let hourly = hourly_means(conn, s, from, to)?;
        let twenty_minute = twenty_minute_means(conn, s, from, to)?;
        if hourly.is_empty() && twenty_minute.is_empty() {
            continue;
        }
        series.push(QuantitySeries {
            quantity: *q,
            hourly,
            twenty_minute,
            days: Vec::new(),
        });
    }
    Ok(taza_domain::series::PostSeries { post, series })
}

/// One series' hourly buckets with start in [from, to), by start: a range scan of the post's
/// part of `agg_hour` (crate::series).
pub(crate) fn hourly_means(
    conn: &Connection,
    s: &crate::series::Series,
    from: UnixSeconds,
    to: UnixSeconds,
) -> Result<Vec<taza_domain::series::HourlyMean>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT start, count, weighted_sum, covered_s, max FROM agg_hour
         WHERE post_key = ?1 AND start >= ?3 AND start < ?4 AND series = ?2 ORDER BY start",
    )?;
    let rows = stmt.query_map(params![s.post_key, s.id, from.0, to.0], |r| {
        let covered_s: i64 = r.get(3)?;
        Ok(taza_domain::series::HourlyMean {
            start: UnixSeconds(r.get(0)?),
            count: r.get(1)?,
            mean: time_weighted_mean(r.get(2)?, covered_s),
            covered_s,
            max: r.get(4)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// One series' 20-minute buckets with start in [from, to), by start.
pub(crate) fn twenty_minute_means(
    conn: &Connection,
    s: &crate::series::Series,
    from: UnixSeconds,
    to: UnixSeconds,
) -> Result<Vec<taza_domain::series::TwentyMinuteMean>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT start, weighted_sum, covered_s FROM agg_20min
         WHERE post_key = ?1 AND start >= ?3 AND start < ?4 AND series = ?2 ORDER BY start",
    )?;
    let rows = stmt.query_map(params![s.post_key, s.id, from.0, to.0], |r| {
        let covered_s: i64 = r.get(2)?;
        Ok(taza_domain::series::TwentyMinuteMean {
            start: UnixSeconds(r.get(0)?),
            mean: time_weighted_mean(r.get(1)?, covered_s),
            covered_s,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// A bucket's time-weighted mean; 0 for a bucket that covers no time (never valid, so never
/// scored, and JSON has no NaN).
fn time_weighted_mean(weighted_sum: f64, covered_s: i64) -> f64 {
    weighted_sum / covered_s.max(1) as f64
}

/// Start of the earliest hourly rollup, if any.
pub fn earliest_rollup(conn: &Connection) -> Result<Option<UnixSeconds>, StoreError> {
    Ok(conn
        // The first start of each post's part of the table: one primary-key probe each.
        .query_row(
            "SELECT min((SELECT min(start) FROM agg_hour WHERE post_key = p.post_key))
             FROM (SELECT DISTINCT post_key FROM series) p",
            [],
            |r| r.get::<_, Option<i64>>(0),
        )?
        .map(UnixSeconds))
}

/// The newest reading of every (post, quantity), for maps and live panels on first load.
pub fn latest(conn: &Connection) -> Result<Vec<serde_json::Value>, StoreError> {
    // One primary-key probe per series that has daily rollups (as when the series were taken
    // from rollup_day): its newest reading, if not pruned.
    let mut stmt = conn.prepare_cached(concat!(
        "SELECT s.post, s.quantity, r.at, r.value, r.flags
         FROM series s CROSS JOIN samples r
         WHERE s.rolled_up AND s.newest_at IS NOT NULL AND r.post_key = s.post_key
           AND r.bucket = ",
        crate::series::bucket_sql!("s.newest_at"),
        " AND r.series = s.id AND r.at = s.newest_at
         ORDER BY s.post, s.quantity"
    ))?;
    let rows = stmt.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, i64>(2)?,
            r.get::<_, f64>(3)?,
            r.get::<_, u16>(4)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (post, quantity, at, value, flags) = row?;
        let Some(q) = Quantity::parse(&quantity) else {
            continue;
        };
        out.push(serde_json::json!({
            "post": post,
            "quantity": q,
            "time": rfc3339(UnixSeconds(at)),
            "value": value,
            "unit": q.unit().as_str(),
            "flags": QaFlags(flags).names().collect::<Vec<_>>(),
        }));
    }
    Ok(out)
}
