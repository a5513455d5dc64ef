//! Queries the API answers from: the registry with each post's status, raw readings, rollups.
//! Every query is bounded by a time range and a row limit.
//!
//! On SQLite, readings and rollups are keyed post first, then time ([`crate::series`]): a query
//! for one post or series is a range scan of that post's part of a table; a query for every post
//! is one such range per post. On PostgreSQL the tables are the logical ones, keyed (post,
//! quantity, time): a series is a primary-key range, and a query for every post walks the
//! posts of a table by their index (one probe each) and reads each one's range.

use protocol::{PostId, QaFlags, Quantity, UnixSeconds};
use rusqlite::{params, OptionalExtension};
use serde::Serialize;

use super::StoreError;
use crate::db::Db;
use crate::pg::{self, Pg};
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
pub fn posts(db: &Db<'_>) -> Result<Vec<PostSummary>, StoreError> {
    const SQL: &str =
        "SELECT p.id, p.kind, p.name, p.latitude, p.longitude, p.district, p.river, p.sensors, p.cadence_s,
                s.online, s.firmware, s.config_hash, s.dropped, s.reconnects, s.received_at,
                p.retired_at IS NOT NULL
         FROM posts p LEFT JOIN post_status s ON s.post = p.id ORDER BY p.id";
    let rows: Vec<(PostSummary, String)> = match db {
        Db::Sqlite(conn) => {
            let mut stmt = conn.prepare_cached(SQL)?;
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
            rows.collect::<Result<_, _>>()?
        }
        Db::Pg(pg) => {
            // Ids sort bytewise, as on SQLite, whatever the database's collation.
            let sql = SQL.replace("ORDER BY p.id", "ORDER BY p.id COLLATE \"C\"");
            let mut out = Vec::new();
            for r in pg.query(&sql, &[])? {
                const T: &str = "posts";
                let status = match pg::get::<Option<i64>>(&r, T, 9)? {
                    Some(online) => Some(StatusSummary {
                        online: online != 0,
                        firmware: pg::get(&r, T, 10)?,
                        config_hash: pg::get_int_opt(&r, T, 11)?,
                        dropped: pg::get_int(&r, T, 12)?,
                        reconnects: pg::get_int(&r, T, 13)?,
                        received_at: rfc3339(UnixSeconds(pg::get(&r, T, 14)?)),
                    }),
                    None => None,
                };
                let summary = PostSummary {
                    id: pg::get(&r, T, 0)?,
                    kind: pg::get(&r, T, 1)?,
                    name: pg::get(&r, T, 2)?,
                    latitude: pg::get(&r, T, 3)?,
                    longitude: pg::get(&r, T, 4)?,
                    district: pg::get(&r, T, 5)?,
                    river: pg::get(&r, T, 6)?,
                    sensors: Vec::new(),
                    cadence_s: pg::get(&r, T, 8)?,
                    status,
                    retired: pg::get(&r, T, 15)?,
                    config: None,
                };
                out.push((summary, pg::get(&r, T, 7)?));
            }
            out
        }
    };
    let mut out = Vec::with_capacity(rows.len());
    for (mut summary, sensors) in rows {
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
pub fn post_exists(db: &Db<'_>, post: &PostId) -> Result<bool, StoreError> {
    match db {
        Db::Sqlite(conn) => Ok(conn
            .prepare_cached("SELECT 1 FROM posts WHERE id = ?1")?
            .query_row([post.as_str()], |_| Ok(()))
            .optional()?
            .is_some()),
        Db::Pg(pg) => Ok(pg
            .query_opt("SELECT 1 FROM posts WHERE id = $1", &[&post.as_str()])?
            .is_some()),
    }
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
    db: &Db<'_>,
    post: &PostId,
    quantity: Option<Quantity>,
    from: UnixSeconds,
    to: UnixSeconds,
    limit: usize,
) -> Result<Vec<ReadingRow>, StoreError> {
    let rows: Vec<(String, i64, f64, QaFlags)> = match db {
        Db::Sqlite(conn) => {
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
            rows.collect::<Result<_, _>>()?
        }
        Db::Pg(pg) => {
            // The quantities asked for as a list (all this build knows when none is given):
            // one primary-key range each, where `$2 IS NULL OR ...` would scan the post.
            let names: Vec<&str> = match quantity {
                Some(q) => vec![q.as_str()],
                None => Quantity::ALL.iter().map(|q| q.as_str()).collect(),
            };
            let limit = i64::try_from(limit).unwrap_or(i64::MAX);
            let mut out = Vec::new();
            for r in pg.query(
                "SELECT quantity, at, value, flags FROM readings
                 WHERE post = $1 AND quantity = ANY($2) AND at >= $3 AND at < $4
                 ORDER BY at, quantity COLLATE \"C\" LIMIT $5",
                &[&post.as_str(), &names, &from.0, &to.0, &limit],
            )? {
                const T: &str = "readings";
                let flags = QaFlags(pg::get_int(&r, T, 3)?);
                out.push((
                    pg::get(&r, T, 0)?,
                    pg::get(&r, T, 1)?,
                    pg::get(&r, T, 2)?,
                    flags,
                ));
            }
            out
        }
    };
    let mut out = Vec::with_capacity(rows.len());
    for (name, at, value, flags) in rows {
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

/// A stored rollup row, whichever table: start, end, local date (days), count, weighted sum,
/// covered seconds, min, max, expected.
type RawRollup = (i64, i64, Option<String>, i64, f64, i64, f64, f64, i64);

/// Rollups of `post`/`quantity` whose bucket overlaps `[from, to)`.
pub fn rollups(
    db: &Db<'_>,
    post: &PostId,
    quantity: Quantity,
    period: Period,
    from: UnixSeconds,
    to: UnixSeconds,
) -> Result<Vec<RollupRow>, StoreError> {
    // Days are labelled by local date: bounds on the label narrow the key range first.
    let day_bounds = || {
        (
            day_bound(from.0.saturating_sub(90_000), "0000-01-01"),
            day_bound(to.0, "9999-12-31"),
        )
    };
    let rows: Vec<RawRollup> = match db {
        Db::Sqlite(conn) => {
            let Some(series) =
                crate::series::of_post(conn, post.as_str(), Some(quantity.as_str()))?
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
                Period::Day => {
                    let (first, last) = day_bounds();
                    (
                        "SELECT start, end_at, day, count, weighted_sum, covered_s, min, max, expected
                         FROM agg_day
                         WHERE post_key = ?1 AND day >= ?5 AND day <= ?6 AND series = ?2
                           AND start > ?3 - 90000 AND end_at > ?3 AND start < ?4
                         ORDER BY start",
                        Value::Text(first),
                        Value::Text(last),
                    )
                }
            };
            let mut stmt = conn.prepare_cached(sql)?;
            let rows = stmt.query_map(
                params![series.post_key, series.id, from.0, to.0, first, last],
                |r| {
                    Ok((
                        r.get(0)?,
                        r.get(1)?,
                        r.get(2)?,
                        r.get(3)?,
                        r.get(4)?,
                        r.get(5)?,
                        r.get(6)?,
                        r.get(7)?,
                        r.get(8)?,
                    ))
                },
            )?;
            rows.collect::<Result<_, _>>()?
        }
        Db::Pg(pg) => {
            let (post, q) = (post.as_str(), quantity.as_str());
            let (table, rows) = match period {
                Period::Hour => (
                    "rollup_hour",
                    pg.query(
                        "SELECT start, NULL::bigint, NULL::text, count, weighted_sum, covered_s, min, max, expected
                         FROM rollup_hour
                         WHERE post = $1 AND quantity = $2 AND start > $3 AND start < $4
                         ORDER BY start",
                        &[&post, &q, &from.0.saturating_sub(3600), &to.0],
                    )?,
                ),
                Period::Day => {
                    let (first, last) = day_bounds();
                    (
                        "rollup_day",
                        pg.query(
                            "SELECT start, end_at, day, count, weighted_sum, covered_s, min, max, expected
                             FROM rollup_day
                             WHERE post = $1 AND quantity = $2 AND day >= $5 AND day <= $6
                               AND start > $3 AND end_at > $4 AND start < $7
                             ORDER BY start",
                            &[
                                &post,
                                &q,
                                &from.0.saturating_sub(90_000),
                                &from.0,
                                &first,
                                &last,
                                &to.0,
                            ],
                        )?,
                    )
                }
            };
            let mut out = Vec::with_capacity(rows.len());
            for r in rows {
                let start: i64 = pg::get(&r, table, 0)?;
                let end = pg::get::<Option<i64>>(&r, table, 1)?
                    .unwrap_or_else(|| start.saturating_add(3600));
                out.push((
                    start,
                    end,
                    pg::get(&r, table, 2)?,
                    pg::get(&r, table, 3)?,
                    pg::get(&r, table, 4)?,
                    pg::get(&r, table, 5)?,
                    pg::get(&r, table, 6)?,
                    pg::get(&r, table, 7)?,
                    pg::get(&r, table, 8)?,
                ));
            }
            out
        }
    };
    let unit = quantity.unit().as_str();
    Ok(rows
        .into_iter()
        .map(
            |(start, end, day, count, weighted_sum, covered_s, min, max, expected)| RollupRow {
                start: rfc3339(UnixSeconds(start)),
                end: rfc3339(UnixSeconds(end)),
                day,
                mean: weighted_sum / covered_s.max(1) as f64,
                min,
                max,
                count,
                expected,
                covered_s,
                data_capture: (covered_s as f64 / (end - start).max(1) as f64).min(1.0),
                unit,
            },
        )
        .collect())
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
    db: &Db<'_>,
    resolution: Resolution,
    quantities: &[Quantity],
    from: UnixSeconds,
    to: UnixSeconds,
) -> Result<Vec<BucketRow>, StoreError> {
    match db {
        Db::Sqlite(conn) => {
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
        Db::Pg(pg) => {
            let table = match resolution {
                Resolution::TwentyMinutes => "rollup_20min",
                Resolution::Hour => "rollup_hour",
            };
            // Keyed (post, quantity, start), the table has no index leading with the quantity:
            // walk its posts (a probe each), then one primary-key range per post and quantity.
            let mut posts = pg_posts_of(pg, table)?;
            posts.sort_unstable();
            let sql = format!(
                "SELECT start, count, weighted_sum, covered_s, max FROM {table}
                 WHERE post = $1 AND quantity = $2 AND start >= $3 AND start < $4 ORDER BY start"
            );
            let mut out = Vec::new();
            for q in quantities {
                for post in &posts {
                    for r in pg.query(&sql, &[post, &q.as_str(), &from.0, &to.0])? {
                        let covered_s: i64 = pg::get(&r, "rollups", 3)?;
                        let weighted_sum: f64 = pg::get(&r, "rollups", 2)?;
                        out.push(BucketRow {
                            post: post.clone(),
                            quantity: *q,
                            start: UnixSeconds(pg::get(&r, "rollups", 0)?),
                            count: pg::get_int::<u32>(&r, "rollups", 1)?,
                            mean: weighted_sum / covered_s.max(1) as f64,
                            max: pg::get(&r, "rollups", 4)?,
                            covered_s,
                        });
                    }
                }
            }
            Ok(out)
        }
    }
}

/// The distinct posts of a PostgreSQL table keyed post first: a loose index scan (each step
/// one probe for the next post), where `SELECT DISTINCT` would read the whole table.
fn pg_posts_of(pg: &Pg<'_>, table: &str) -> Result<Vec<String>, StoreError> {
    let sql = format!(
        "WITH RECURSIVE p (post) AS (
             (SELECT post FROM {table} ORDER BY post LIMIT 1)
             UNION ALL
             SELECT (SELECT t.post FROM {table} t WHERE t.post > p.post ORDER BY t.post LIMIT 1)
             FROM p WHERE p.post IS NOT NULL
         )
         SELECT post FROM p WHERE post IS NOT NULL"
    );
    pg.query(&sql, &[])?
        .iter()
        .map(|r| pg::get(r, "rollups", 0))
        .collect()
}

/// The distinct (post, quantity) of a PostgreSQL table keyed (post, quantity, ...), by the same
/// loose index scan as [`pg_posts_of`]; a `SELECT` with `{series}` in its FROM clause reads
/// them as `s (post, quantity)`.
fn pg_series_sql(table: &str, select: &str) -> String {
    let series = format!(
        "(WITH RECURSIVE s (post, quantity) AS (
             (SELECT post, quantity FROM {table} ORDER BY post, quantity LIMIT 1)
             UNION ALL
             SELECT n.post, n.quantity FROM s CROSS JOIN LATERAL (
                 SELECT t.post, t.quantity FROM {table} t
                 WHERE (t.post, t.quantity) > (s.post, s.quantity)
                 ORDER BY t.post, t.quantity LIMIT 1
             ) n
         ) SELECT post, quantity FROM s) s"
    );
    select.replace("{series}", &series)
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
pub fn zones(db: &Db<'_>) -> Result<Vec<ZoneRow>, StoreError> {
    // (id, name, start_date, geometry, updated_by, updated_at)
    let rows: Vec<(String, String, String, String, String, i64)> = match db {
        Db::Sqlite(conn) => {
            let mut stmt = conn.prepare_cached(
                "SELECT id, name, start_date, geometry, updated_by, updated_at FROM zones ORDER BY id",
            )?;
            let rows = stmt.query_map([], |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                ))
            })?;
            rows.collect::<Result<_, _>>()?
        }
        Db::Pg(pg) => {
            let mut out = Vec::new();
            for r in pg.query(
                "SELECT id, name, start_date, geometry, updated_by, updated_at FROM zones
                 ORDER BY id COLLATE \"C\"",
                &[],
            )? {
                const T: &str = "zones";
                out.push((
                    pg::get(&r, T, 0)?,
                    pg::get(&r, T, 1)?,
                    pg::get(&r, T, 2)?,
                    pg::get(&r, T, 3)?,
                    pg::get(&r, T, 4)?,
                    pg::get(&r, T, 5)?,
                ));
            }
            out
        }
    };
    Ok(rows
        .into_iter()
        .map(
            |(id, name, start_date, geometry, updated_by, updated_at)| ZoneRow {
                id,
                name,
                start_date,
                geometry: serde_json::from_str(&geometry).unwrap_or(serde_json::Value::Null),
                updated_by,
                updated_at: rfc3339(UnixSeconds(updated_at)),
            },
        )
        .collect())
}

/// Every registered post as the scoring engine describes it (unregistered demo posts are left
/// out: nobody vouched for where they stand).
pub fn post_descriptors(
    db: &Db<'_>,
) -> Result<Vec<taza_domain::series::PostDescriptor>, StoreError> {
    use taza_domain::series::{PostDescriptor, PostKind};
    const SQL: &str =
        "SELECT id, kind, latitude, longitude, district, river, critical_level FROM posts
         WHERE kind IN ('air', 'river') ORDER BY id";
    type Raw = (
        String,
        String,
        Option<f64>,
        Option<f64>,
        Option<String>,
        Option<String>,
        Option<String>,
    );
    let rows: Vec<Raw> = match db {
        Db::Sqlite(conn) => {
            let mut stmt = conn.prepare_cached(SQL)?;
            let rows = stmt.query_map([], |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                    r.get(6)?,
                ))
            })?;
            rows.collect::<Result<_, _>>()?
        }
        Db::Pg(pg) => {
            let sql = SQL.replace("ORDER BY id", "ORDER BY id COLLATE \"C\"");
            let mut out = Vec::new();
            for r in pg.query(&sql, &[])? {
                const T: &str = "posts";
                out.push((
                    pg::get(&r, T, 0)?,
                    pg::get(&r, T, 1)?,
                    pg::get(&r, T, 2)?,
                    pg::get(&r, T, 3)?,
                    pg::get(&r, T, 4)?,
                    pg::get(&r, T, 5)?,
                    pg::get(&r, T, 6)?,
                ));
            }
            out
        }
    };
    let mut out = Vec::new();
    for (id, kind, lat, lon, district, river, critical) in rows {
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
    db: &Db<'_>,
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
    for b in buckets(db, Resolution::Hour, quantities, from, to)? {
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
    for b in buckets(db, Resolution::TwentyMinutes, quantities, from, to)? {
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
    db: &Db<'_>,
    post: taza_domain::series::PostDescriptor,
    quantities: &[Quantity],
    from: UnixSeconds,
    to: UnixSeconds,
) -> Result<taza_domain::series::PostSeries, StoreError> {
    use taza_domain::series::QuantitySeries;
    let mut series = Vec::new();
    let stored = StoredSeries::of_post(db, post.id.as_str())?;
    for q in quantities {
        let s = stored.get(q.as_str());
        let hourly = hourly_means(db, s, from, to)?;
        let twenty_minute = twenty_minute_means(db, s, from, to)?;
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

/// One post's series as the range reads below address them: PostgreSQL by (post, quantity);
/// SQLite by the series' ids ([`crate::series`]), looked up once per post.
pub(crate) struct StoredSeries<'a> {
    post: &'a str,
    /// SQLite's rows of the post's series; None on PostgreSQL.
    ids: Option<Vec<crate::series::Series>>,
}

impl<'a> StoredSeries<'a> {
    /// The series of `post` (all of them, or only `quantity`'s).
    pub(crate) fn load(
        db: &Db<'_>,
        post: &'a str,
        quantity: Option<&str>,
    ) -> Result<Self, StoreError> {
        let ids = match db {
            Db::Sqlite(conn) => Some(crate::series::of_post(conn, post, quantity)?),
            Db::Pg(_) => None,
        };
        Ok(Self { post, ids })
    }

    /// Every series of `post`.
    pub(crate) fn of_post(db: &Db<'_>, post: &'a str) -> Result<Self, StoreError> {
        Self::load(db, post, None)
    }

    /// The series of `quantity`.
    pub(crate) fn get<'s>(&'s self, quantity: &'s str) -> SeriesRef<'s> {
        SeriesRef {
            post: self.post,
            quantity,
            sqlite: self
                .ids
                .as_ref()
                .and_then(|ids| ids.iter().find(|s| s.quantity == quantity)),
            on_sqlite: self.ids.is_some(),
        }
    }
}

/// One series for the range reads: its names, and on SQLite its ids (None there: it has no
/// rows).
#[derive(Debug, Clone, Copy)]
pub(crate) struct SeriesRef<'a> {
    post: &'a str,
    quantity: &'a str,
    sqlite: Option<&'a crate::series::Series>,
    on_sqlite: bool,
}

impl SeriesRef<'_> {
    /// Known to have no rows (SQLite: the post has no such series).
    pub(crate) fn is_absent(&self) -> bool {
        self.sqlite.is_none() && self.on_sqlite
    }
}

/// One series' hourly buckets with start in [from, to), by start: a range scan of the post's
/// part of `agg_hour` on SQLite (crate::series), of the series' part of `rollup_hour` on
/// PostgreSQL.
pub(crate) fn hourly_means(
    db: &Db<'_>,
    s: SeriesRef<'_>,
    from: UnixSeconds,
    to: UnixSeconds,
) -> Result<Vec<taza_domain::series::HourlyMean>, StoreError> {
    match db {
        Db::Sqlite(conn) => {
            let Some(s) = s.sqlite else {
                return Ok(Vec::new());
            };
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
        Db::Pg(pg) => {
            const T: &str = "rollup_hour";
            pg.query(
                "SELECT start, count, weighted_sum, covered_s, max FROM rollup_hour
                 WHERE post = $1 AND quantity = $2 AND start >= $3 AND start < $4 ORDER BY start",
                &[&s.post, &s.quantity, &from.0, &to.0],
            )?
            .iter()
            .map(|r| {
                let covered_s: i64 = pg::get(r, T, 3)?;
                Ok(taza_domain::series::HourlyMean {
                    start: UnixSeconds(pg::get(r, T, 0)?),
                    count: pg::get_int::<u32>(r, T, 1)?,
                    mean: time_weighted_mean(pg::get(r, T, 2)?, covered_s),
                    covered_s,
                    max: pg::get(r, T, 4)?,
                })
            })
            .collect()
        }
    }
}

/// One series' 20-minute buckets with start in [from, to), by start.
pub(crate) fn twenty_minute_means(
    db: &Db<'_>,
    s: SeriesRef<'_>,
    from: UnixSeconds,
    to: UnixSeconds,
) -> Result<Vec<taza_domain::series::TwentyMinuteMean>, StoreError> {
    match db {
        Db::Sqlite(conn) => {
            let Some(s) = s.sqlite else {
                return Ok(Vec::new());
            };
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
        Db::Pg(pg) => {
            const T: &str = "rollup_20min";
            pg.query(
                "SELECT start, weighted_sum, covered_s FROM rollup_20min
                 WHERE post = $1 AND quantity = $2 AND start >= $3 AND start < $4 ORDER BY start",
                &[&s.post, &s.quantity, &from.0, &to.0],
            )?
            .iter()
            .map(|r| {
                let covered_s: i64 = pg::get(r, T, 2)?;
                Ok(taza_domain::series::TwentyMinuteMean {
                    start: UnixSeconds(pg::get(r, T, 0)?),
                    mean: time_weighted_mean(pg::get(r, T, 1)?, covered_s),
                    covered_s,
                })
            })
            .collect()
        }
    }
}

/// A bucket's time-weighted mean; 0 for a bucket that covers no time (never valid, so never
/// scored, and JSON has no NaN).
fn time_weighted_mean(weighted_sum: f64, covered_s: i64) -> f64 {
    weighted_sum / covered_s.max(1) as f64
}

/// Start of the earliest hourly rollup, if any.
pub fn earliest_rollup(db: &Db<'_>) -> Result<Option<UnixSeconds>, StoreError> {
    let earliest: Option<i64> = match db {
        // The first start of each post's part of the table: one primary-key probe each.
        Db::Sqlite(conn) => conn.query_row(
            "SELECT min((SELECT min(start) FROM agg_hour WHERE post_key = p.post_key))
             FROM (SELECT DISTINCT post_key FROM series) p",
            [],
            |r| r.get::<_, Option<i64>>(0),
        )?,
        // The first start of each series: one primary-key probe each.
        Db::Pg(pg) => {
            let sql = pg_series_sql(
                "rollup_hour",
                "SELECT min(earliest) FROM (
                     SELECT (SELECT min(h.start) FROM rollup_hour h
                             WHERE h.post = s.post AND h.quantity = s.quantity) AS earliest
                     FROM {series}
                 ) f",
            );
            pg::get(&pg.query_one(&sql, &[])?, "rollup_hour", 0)?
        }
    };
    Ok(earliest.map(UnixSeconds))
}

/// The newest reading of every (post, quantity), for maps and live panels on first load.
pub fn latest(db: &Db<'_>) -> Result<Vec<serde_json::Value>, StoreError> {
    // (post, quantity, at, value, flags)
    let rows: Vec<(String, String, i64, f64, u16)> = match db {
        Db::Sqlite(conn) => {
            // One primary-key probe per series that has daily rollups (as when the series were
            // taken from rollup_day): its newest reading, if not pruned.
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
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
            })?;
            rows.collect::<Result<_, _>>()?
        }
        Db::Pg(pg) => {
            // The series with daily rollups (a valid reading ever), walked by the index of
            // rollup_day; for each, the last entry of its primary-key range in readings.
            let sql = pg_series_sql(
                "rollup_day",
                "SELECT s.post, s.quantity, r.at, r.value, r.flags
                 FROM {series} CROSS JOIN LATERAL (
                     SELECT at, value, flags FROM readings
                     WHERE post = s.post AND quantity = s.quantity ORDER BY at DESC LIMIT 1
                 ) r
                 ORDER BY s.post COLLATE \"C\", s.quantity COLLATE \"C\"",
            );
            let mut out = Vec::new();
            for r in pg.query(&sql, &[])? {
                const T: &str = "readings";
                out.push((
                    pg::get(&r, T, 0)?,
                    pg::get(&r, T, 1)?,
                    pg::get(&r, T, 2)?,
                    pg::get(&r, T, 3)?,
                    pg::get_int(&r, T, 4)?,
                ));
            }
            out
        }
    };
    let mut out = Vec::with_capacity(rows.len());
    for (post, quantity, at, value, flags) in rows {
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

/// Both backends for tests: a SQLite store in a temporary dir and, where a PostgreSQL server
/// runs (`pg::test_server`), a fresh database on it; the same assertions run on each.
#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(crate) mod both {
    use super::*;
    use crate::pg::{test_server, PgStore};
    use crate::Store;

    /// The stores, and the dir the SQLite one lives in.
    pub(crate) struct Stores {
        /// SQLite first, then PostgreSQL if a server runs here.
        pub list: Vec<Store>,
        _dir: tempfile::TempDir,
    }

    /// A fresh store of each backend.
    pub(crate) async fn stores(test: &str) -> Stores {
        let dir = tempfile::tempdir().unwrap();
        let cfg = crate::config::StoreConfig {
            data_dir: dir.path().to_path_buf(),
            ..Default::default()
        };
        drop(crate::open_writer(&cfg).unwrap());
        let mut list = vec![Store::sqlite(&crate::db_path(&cfg)).unwrap()];
        if let Some(url) = test_server::database(test) {
            list.push(Store::Pg(PgStore::connect(&url).await.unwrap()));
        }
        Stores { list, _dir: dir }
    }

    /// Runs `sql` (statements without parameters, in SQL both engines take). On SQLite the
    /// logical tables are views whose inserts land in the tables ([`crate::series`]).
    pub(crate) fn exec(db: &Db<'_>, sql: &str) -> Result<(), StoreError> {
        match db {
            Db::Sqlite(c) => Ok(c.execute_batch(sql)?),
            Db::Pg(pg) => pg.batch_execute(sql),
        }
    }

    /// Runs `sql` in a write transaction of `store`.
    pub(crate) async fn write(store: &Store, sql: String) {
        store.write(move |db| exec(db, &sql)).await.unwrap();
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(crate) mod tests {
    use super::*;
    use crate::Store;

    /// 2026-01-01T00:00:00Z, 05:00 in Almaty (the local day began at T0 - 18000).
    pub(crate) const T0: i64 = 1_767_225_600;
    const DAY: i64 = 86_400;

    /// Posts, a status, readings and rollups in the logical layout. `alm-b` and `alm_a` sort
    /// differently bytewise ('-' < '_') and in linguistic collations (which skip punctuation).
    pub(crate) fn fixture() -> String {
        let (h0, d0) = (T0 - DAY - 3600, T0 - 18_000);
        format!(
            "INSERT INTO posts (id, kind, name, latitude, longitude, district, river, sensors,
                                cadence_s, updated_at, critical_level, retired_at) VALUES
                 ('demo-x', 'unregistered', 'demo-x', NULL, NULL, NULL, NULL, '[]', 60, 0, NULL, NULL),
                 ('alm_a', 'river', 'A', NULL, NULL, NULL, 'Есентай', '[]', 300, 0, NULL, {T0}),
                 ('alm-b', 'air', 'B', 43.25, 76.95, 'Алмалинский', NULL, '[\"pm2_5\",\"no2\"]',
                  60, 0, NULL, NULL);
             INSERT INTO post_status (post, online, firmware, config_hash, sensors, dropped,
                                      reconnects, received_at, clock_offset_ms, rssi_dbm, supply_mv)
                 VALUES ('alm-b', 1, '1.2.0', 3735928559, '[\"pm2_5\",\"no2\"]', 2, 1, {T0}, -40,
                         -71, 12100);
             INSERT INTO readings (post, quantity, at, value, flags, window_s, received_at) VALUES
                 ('alm-b', 'pm2_5', {T0} + 60, 10.0, 0, NULL, {T0} + 60),
                 ('alm-b', 'pm2_5', {T0} + 120, 20.0, 0, NULL, {T0} + 120),
                 ('alm-b', 'no2', {T0} + 120, 30.0, 0, NULL, {T0} + 125),
                 ('alm-b', 'pm2_5', {T0} + 180, 99.0, 1, NULL, {T0} + 185),
                 ('alm-b', 'pm2_5', {T0} - {DAY}, 5.0, 0, 3600, {T0} + 200),
                 ('alm-b', 'smog', {T0} + 120, 1.0, 0, NULL, {T0} + 120);
             INSERT INTO rollup_hour (post, quantity, start, count, weighted_sum, covered_s, min,
                                      max, expected) VALUES
                 ('alm-b', 'pm2_5', {h0}, 1, 18000.0, 3600, 5.0, 5.0, 60),
                 ('alm-b', 'pm2_5', {T0}, 2, 1800.0, 120, 10.0, 20.0, 60),
                 ('alm-b', 'no2', {T0}, 1, 1800.0, 60, 30.0, 30.0, 60),
                 ('alm_a', 'pm2_5', {T0}, 1, 600.0, 60, 10.0, 10.0, 12);
             INSERT INTO rollup_20min (post, quantity, start, count, weighted_sum, covered_s, min,
                                       max) VALUES
                 ('alm-b', 'pm2_5', {T0} - {DAY} - 1200, 1, 6000.0, 1200, 5.0, 5.0),
                 ('alm-b', 'pm2_5', {T0}, 2, 1800.0, 120, 10.0, 20.0),
                 ('alm-b', 'no2', {T0}, 1, 1800.0, 60, 30.0, 30.0);
             INSERT INTO rollup_day (post, quantity, day, start, end_at, count, weighted_sum,
                                     covered_s, min, max, expected) VALUES
                 ('alm-b', 'pm2_5', '2025-12-31', {d0} - {DAY}, {d0}, 1, 18000.0, 3600, 5.0, 5.0, 1440),
                 ('alm-b', 'pm2_5', '2026-01-01', {d0}, {d0} + {DAY}, 2, 1800.0, 120, 10.0, 20.0, 1440),
                 ('alm-b', 'no2', '2026-01-01', {d0}, {d0} + {DAY}, 1, 1800.0, 60, 30.0, 30.0, 1440);
             INSERT INTO zones (id, name, start_date, geometry, updated_at, updated_by) VALUES
                 ('lez_b', 'Б', '2025-01-01', '{{\"type\":\"Point\",\"coordinates\":[76.9,43.2]}}', {T0}, 'op'),
                 ('lez-a', 'А', '2024-06-01', 'not json', {T0}, 'config');"
        )
    }

    fn at(t: i64) -> String {
        rfc3339(UnixSeconds(t))
    }

    fn id(s: &str) -> PostId {
        PostId::parse(s).unwrap()
    }

    /// What the API and the scoring engine read from [`fixture`].
    fn check_reads(db: &Db<'_>) {
        use Quantity::{No2, Pm2_5};
        let b = id("alm-b");

        let posts = posts(db).unwrap();
        let ids: Vec<&str> = posts.iter().map(|p| p.id.as_str()).collect();
        assert_eq!(ids, ["alm-b", "alm_a", "demo-x"], "{db:?}");
        let status = posts[0].status.as_ref().unwrap();
        assert!(status.online);
        assert_eq!(
            (status.config_hash, status.dropped, status.reconnects),
            (Some(0xDEAD_BEEF), 2, 1)
        );
        assert_eq!(
            (status.firmware.as_str(), status.received_at.as_str()),
            ("1.2.0", at(T0).as_str())
        );
        assert_eq!(posts[0].sensors, ["pm2_5", "no2"]);
        assert_eq!(posts[0].district.as_deref(), Some("Алмалинский"));
        assert_eq!((posts[0].latitude, posts[0].cadence_s), (Some(43.25), 60));
        assert!(posts[1].status.is_none() && posts[1].retired && !posts[0].retired);
        assert!(post_exists(db, &b).unwrap());
        assert!(!post_exists(db, &id("alm-zz")).unwrap());

        let rows = readings(db, &b, None, UnixSeconds(T0), UnixSeconds(T0 + 200), 10).unwrap();
        let got: Vec<(Quantity, String, f64)> = rows
            .iter()
            .map(|r| (r.quantity, r.time.clone(), r.value))
            .collect();
        assert_eq!(
            got,
            [
                (Pm2_5, at(T0 + 60), 10.0),
                (No2, at(T0 + 120), 30.0),
                (Pm2_5, at(T0 + 120), 20.0),
                (Pm2_5, at(T0 + 180), 99.0),
            ],
            "{db:?}: by time then quantity, the unknown quantity left out"
        );
        assert!(rows[0].flags.is_empty());
        assert_eq!(rows[3].flags, QaFlags(1).names().collect::<Vec<_>>());
        assert!(!rows[3].flags.is_empty());
        assert_eq!(rows[1].unit, No2.unit().as_str());
        let two = readings(db, &b, None, UnixSeconds(T0), UnixSeconds(T0 + 200), 2).unwrap();
        assert_eq!(two.len(), 2);
        assert_eq!(two[1].quantity, No2);
        let pm = readings(
            db,
            &b,
            Some(Pm2_5),
            UnixSeconds(0),
            UnixSeconds(T0 + 180),
            10,
        )
        .unwrap();
        let times: Vec<&str> = pm.iter().map(|r| r.time.as_str()).collect();
        assert_eq!(
            times,
            [at(T0 - DAY), at(T0 + 60), at(T0 + 120)],
            "to is exclusive"
        );
        assert!(readings(
            db,
            &id("alm-zz"),
            None,
            UnixSeconds(0),
            UnixSeconds(T0 * 2),
            9
        )
        .unwrap()
        .is_empty());

        // An hour overlapping the range's start is in; the one ending at it is not.
        let hours = rollups(
            db,
            &b,
            Pm2_5,
            Period::Hour,
            UnixSeconds(T0 + 1),
            UnixSeconds(T0 + 3600),
        )
        .unwrap();
        assert_eq!(hours.len(), 1, "{db:?}");
        let h = &hours[0];
        assert_eq!(
            (h.start.as_str(), h.end.as_str()),
            (at(T0).as_str(), at(T0 + 3600).as_str())
        );
        assert_eq!(
            (h.mean, h.min, h.max, h.count, h.expected, h.covered_s),
            (15.0, 10.0, 20.0, 2, 60, 120)
        );
        assert_eq!((h.day.as_deref(), h.unit), (None, Pm2_5.unit().as_str()));
        assert!((h.data_capture - 120.0 / 3600.0).abs() < 1e-12);
        let all = rollups(
            db,
            &b,
            Pm2_5,
            Period::Hour,
            UnixSeconds(0),
            UnixSeconds(T0 + 3601),
        )
        .unwrap();
        assert_eq!(
            all.iter().map(|r| r.start.clone()).collect::<Vec<_>>(),
            [at(T0 - DAY - 3600), at(T0)]
        );
        let days = rollups(
            db,
            &b,
            Pm2_5,
            Period::Day,
            UnixSeconds(T0),
            UnixSeconds(T0 + 1),
        )
        .unwrap();
        assert_eq!(
            days.len(),
            1,
            "{db:?}: the day that ended at 00:00 local is out"
        );
        assert_eq!(days[0].day.as_deref(), Some("2026-01-01"));
        assert_eq!(
            (days[0].start.as_str(), days[0].end.as_str()),
            (at(T0 - 18_000).as_str(), at(T0 + 68_400).as_str())
        );
        let both_days = rollups(
            db,
            &b,
            Pm2_5,
            Period::Day,
            UnixSeconds(T0 - 18_001),
            UnixSeconds(T0 + 1),
        )
        .unwrap();
        assert_eq!(both_days.len(), 2);
        assert!(rollups(
            db,
            &b,
            No2,
            Period::Day,
            UnixSeconds(T0 + DAY),
            UnixSeconds(T0 + 2 * DAY)
        )
        .unwrap()
        .is_empty());

        let from = UnixSeconds(T0 - 2 * DAY);
        let to = UnixSeconds(T0 + DAY);
        let hourly = buckets(db, Resolution::Hour, &[Pm2_5, No2], from, to).unwrap();
        let got: Vec<(&str, Quantity, i64, u32, f64)> = hourly
            .iter()
            .map(|b| (b.post.as_str(), b.quantity, b.start.0, b.count, b.mean))
            .collect();
        assert_eq!(
            got,
            [
                ("alm-b", Pm2_5, T0 - DAY - 3600, 1, 5.0),
                ("alm-b", Pm2_5, T0, 2, 15.0),
                ("alm_a", Pm2_5, T0, 1, 10.0),
                ("alm-b", No2, T0, 1, 30.0),
            ],
            "{db:?}"
        );
        let twenty = buckets(db, Resolution::TwentyMinutes, &[Pm2_5], UnixSeconds(T0), to).unwrap();
        assert_eq!(twenty.len(), 1);
        assert_eq!((twenty[0].max, twenty[0].covered_s), (20.0, 120));

        let descriptors = post_descriptors(db).unwrap();
        let ids: Vec<&str> = descriptors.iter().map(|d| d.id.as_str()).collect();
        assert_eq!(
            ids,
            ["alm-b", "alm_a"],
            "{db:?}: the unregistered post is left out"
        );
        assert_eq!(descriptors[1].kind, taza_domain::series::PostKind::River);
        assert!(descriptors[1].lat_deg.is_nan());
        assert_eq!(descriptors[1].river.as_deref(), Some("Есентай"));

        let series = post_series(db, descriptors.clone(), &[Pm2_5, No2], from, to).unwrap();
        type Shape<'a> = (&'a str, Vec<(Quantity, usize, usize)>);
        let shape: Vec<Shape<'_>> = series
            .iter()
            .map(|p| {
                let qs = p
                    .series
                    .iter()
                    .map(|s| (s.quantity, s.hourly.len(), s.twenty_minute.len()))
                    .collect();
                (p.post.id.as_str(), qs)
            })
            .collect();
        assert_eq!(
            shape,
            [
                ("alm-b", vec![(Pm2_5, 2, 2), (No2, 1, 1)]),
                ("alm_a", vec![(Pm2_5, 1, 0)])
            ]
        );
        let one = one_post_series(
            db,
            descriptors[0].clone(),
            &[No2, Pm2_5, Quantity::Pm10],
            UnixSeconds(T0),
            to,
        )
        .unwrap();
        let shape: Vec<(Quantity, usize, usize)> = one
            .series
            .iter()
            .map(|s| (s.quantity, s.hourly.len(), s.twenty_minute.len()))
            .collect();
        assert_eq!(shape, [(No2, 1, 1), (Pm2_5, 1, 1)], "{db:?}");
        let h = &one.series[1].hourly[0];
        assert_eq!(
            (h.start, h.count, h.mean, h.covered_s, h.max),
            (UnixSeconds(T0), 2, 15.0, 120, 20.0)
        );
        assert_eq!(one.series[1].twenty_minute[0].mean, 15.0);

        let zones = zones(db).unwrap();
        let got: Vec<(&str, &str, &str, &str, &str)> = zones
            .iter()
            .map(|z| {
                (
                    z.id.as_str(),
                    z.name.as_str(),
                    z.start_date.as_str(),
                    z.updated_by.as_str(),
                    z.updated_at.as_str(),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                ("lez-a", "А", "2024-06-01", "config", at(T0).as_str()),
                ("lez_b", "Б", "2025-01-01", "op", at(T0).as_str()),
            ],
            "{db:?}"
        );
        assert_eq!(
            zones[0].geometry,
            serde_json::Value::Null,
            "what does not parse is null"
        );
        assert_eq!(zones[1].geometry["coordinates"][1], 43.2);

        assert_eq!(
            earliest_rollup(db).unwrap(),
            Some(UnixSeconds(T0 - DAY - 3600))
        );
        let latest = latest(db).unwrap();
        assert_eq!(
            latest,
            [
                serde_json::json!({"post": "alm-b", "quantity": "no2", "time": at(T0 + 120),
                    "value": 30.0, "unit": No2.unit().as_str(), "flags": []}),
                serde_json::json!({"post": "alm-b", "quantity": "pm2_5", "time": at(T0 + 180),
                    "value": 99.0, "unit": Pm2_5.unit().as_str(), "flags": QaFlags(1).names().collect::<Vec<_>>()}),
            ],
            "{db:?}: the newest reading of each series with daily rollups, valid or not"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_reads_answer_the_same_on_sqlite_and_postgres() {
        let stores = super::both::stores("read::the_reads_answer_the_same").await;
        for store in &stores.list {
            super::both::write(store, fixture()).await;
            store
                .read(|db| {
                    check_reads(db);
                    Ok(())
                })
                .await
                .unwrap();
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn empty_stores_answer_nothing_on_both_backends() {
        let stores = super::both::stores("read::empty_stores_answer_nothing").await;
        for store in &stores.list {
            let (latest, earliest, hours, posts) = store
                .read(|db| {
                    let hours = buckets(
                        db,
                        Resolution::Hour,
                        &Quantity::ALL,
                        UnixSeconds(0),
                        UnixSeconds(i64::MAX),
                    )?;
                    Ok((latest(db)?, earliest_rollup(db)?, hours, posts(db)?))
                })
                .await
                .unwrap();
            assert!(
                latest.is_empty() && earliest.is_none() && hours.is_empty() && posts.is_empty()
            );
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_corrupt_count_on_postgres_is_an_error_naming_the_table_not_a_panic() {
        let Some(url) = crate::pg::test_server::database("read::a_corrupt_count_on_postgres")
        else {
            return;
        };
        let store = Store::Pg(crate::pg::PgStore::connect(&url).await.unwrap());
        super::both::write(&store, fixture()).await;
        super::both::write(&store, "UPDATE post_status SET dropped = -1".into()).await;
        super::both::write(
            &store,
            format!("UPDATE readings SET flags = 70000 WHERE at = {T0} + 60"),
        )
        .await;
        let (posts, readings) = store
            .read(|db| {
                Ok((
                    posts(db).map(drop),
                    readings(
                        db,
                        &id("alm-b"),
                        None,
                        UnixSeconds(T0),
                        UnixSeconds(T0 + 100),
                        9,
                    )
                    .map(drop),
                ))
            })
            .await
            .unwrap();
        assert!(
            matches!(posts, Err(StoreError::Corrupt { table: "posts", .. })),
            "{posts:?}"
        );
        assert!(
            matches!(
                readings,
                Err(StoreError::Corrupt {
                    table: "readings",
                    ..
                })
            ),
            "{readings:?}"
        );
    }

    /// Copies the logical tables of a SQLite store into PostgreSQL's, value for value.
    fn copy_to_pg(
        conn: &rusqlite::Connection,
        store: &crate::pg::PgStore,
    ) -> impl std::future::Future<Output = ()> {
        use rusqlite::types::Value;
        let mut statements = Vec::new();
        for (table, columns) in [
            ("readings", "post, quantity, at, value, flags, window_s, received_at"),
            ("rollup_20min", "post, quantity, start, count, weighted_sum, covered_s, min, max"),
            ("rollup_hour", "post, quantity, start, count, weighted_sum, covered_s, min, max, expected"),
            ("rollup_day", "post, quantity, day, start, end_at, count, weighted_sum, covered_s, min, max, expected"),
        ] {
            let mut stmt = conn.prepare(&format!("SELECT {columns} FROM {table}")).unwrap();
            let n = stmt.column_count();
            let rows: Vec<String> = stmt
                .query_map([], |r| {
                    let values: Vec<String> = (0..n)
                        .map(|i| match r.get::<_, Value>(i).unwrap() {
                            Value::Null => "NULL".into(),
                            Value::Integer(v) => v.to_string(),
                            // Debug prints the shortest text that parses back to the same bits.
                            Value::Real(v) => format!("{v:?}::float8"),
                            Value::Text(t) => format!("'{}'", t.replace('\'', "''")),
                            Value::Blob(_) => unreachable!("no blobs in these tables"),
                        })
                        .collect();
                    Ok(format!("({})", values.join(", ")))
                })
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            for chunk in rows.chunks(500) {
                statements.push(format!("INSERT INTO {table} ({columns}) VALUES {}", chunk.join(", ")));
            }
        }
        let store = store.clone();
        async move {
            store
                .run(false, move |pg| {
                    for sql in &statements {
                        pg.batch_execute(sql)?;
                    }
                    Ok::<_, StoreError>(())
                })
                .await
                .unwrap();
        }
    }

    /// Every read's answer for `posts` over a grid of ranges, as text.
    fn answers(
        db: &Db<'_>,
        posts: &[&str],
        ranges: &[(i64, i64)],
        since: &[i64],
    ) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let qs = [
            Quantity::Pm2_5,
            Quantity::No2,
            Quantity::Temperature,
            Quantity::Pm10,
        ];
        for &p in posts {
            let post = id(p);
            for &(from, to) in ranges {
                let (from, to) = (UnixSeconds(from), UnixSeconds(to));
                for q in std::iter::once(None).chain(qs.iter().copied().map(Some)) {
                    for limit in [100_000, 7] {
                        let rows = readings(db, &post, q, from, to, limit).unwrap();
                        out.push((
                            format!("readings {p} {q:?} {from:?} {to:?} {limit}"),
                            format!("{rows:?}"),
                        ));
                    }
                }
                for q in qs {
                    for period in [Period::Hour, Period::Day] {
                        let rows = rollups(db, &post, q, period, from, to).unwrap();
                        out.push((
                            format!("rollups {p} {q:?} {period:?} {from:?} {to:?}"),
                            format!("{rows:?}"),
                        ));
                    }
                }
                let descriptor = taza_domain::series::PostDescriptor {
                    id: post.clone(),
                    kind: taza_domain::series::PostKind::Air,
                    lat_deg: 0.0,
                    lon_deg: 0.0,
                    district: None,
                    river: None,
                    critical_level: None,
                };
                let series = one_post_series(db, descriptor, &qs, from, to).unwrap();
                out.push((
                    format!("one post {p} {from:?} {to:?}"),
                    format!("{series:?}"),
                ));
            }
            for &t in since {
                let mut got: Vec<_> =
                    crate::status::latest_readings_since(db, &post, UnixSeconds(t))
                        .unwrap()
                        .into_iter()
                        .map(|(q, r)| (q, r.at, r.value, r.flags, r.count))
                        .collect();
                got.sort_by_key(|g| g.0.as_str());
                out.push((format!("received since {p} {t}"), format!("{got:?}")));
            }
        }
        for &(from, to) in ranges {
            for resolution in [Resolution::Hour, Resolution::TwentyMinutes] {
                let rows =
                    buckets(db, resolution, &qs, UnixSeconds(from), UnixSeconds(to)).unwrap();
                out.push((
                    format!("buckets {resolution:?} {from} {to}"),
                    format!("{rows:?}"),
                ));
            }
        }
        out.push(("latest".into(), format!("{:?}", latest(db).unwrap())));
        out.push((
            "earliest".into(),
            format!("{:?}", earliest_rollup(db).unwrap()),
        ));
        out
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_read_answers_on_postgres_what_it_answers_on_sqlite_for_data_the_writer_wrote() {
        use taza_domain::pipeline::Reading;
        let Some(url) = crate::pg::test_server::database("read::every_read_answers_on_postgres")
        else {
            return;
        };
        let dir = tempfile::tempdir().unwrap();
        let cfg = crate::config::StoreConfig {
            data_dir: dir.path().to_path_buf(),
            ..Default::default()
        };
        let registry =
            taza_domain::registry::Registry::new(&[], std::time::Duration::from_secs(60), true);
        let writer = crate::writer::TestWriter::spawn(crate::open_writer(&cfg).unwrap(), registry);
        // Three posts, four quantities, five days around T0: random values, windows, flags,
        // replays and late arrivals (a deterministic LCG).
        let mut seed = 0x5eed_u64;
        let mut next = |n: u64| {
            seed = seed
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (seed >> 33) % n
        };
        let posts = ["p-1", "p_2", "q-3"];
        let qs = [
            Quantity::Pm2_5,
            Quantity::No2,
            Quantity::Temperature,
            Quantity::Pm10,
        ];
        for round in 0..60 {
            for p in posts {
                let readings: Vec<Reading> = (0..40)
                    .map(|_| Reading {
                        quantity: qs[next(4) as usize],
                        value: next(20_000) as f64 / 7.0 - 100.0,
                        at: UnixSeconds(
                            T0 - 2 * DAY
                                + next(5 * 1440) as i64 * 60
                                + if round % 7 == 0 { 30 } else { 0 },
                        ),
                        flags: if next(12) == 0 {
                            QaFlags(1)
                        } else {
                            QaFlags::NONE
                        },
                        window_s: [None, Some(60), Some(300), Some(3600)][next(4) as usize],
                    })
                    .collect();
                writer.send(&id(p), readings).await;
            }
        }
        tokio::task::spawn_blocking(move || writer.finish())
            .await
            .unwrap();
        let conn = crate::open_connection(&crate::db_path(&cfg)).unwrap();
        let sqlite = Store::sqlite(&crate::db_path(&cfg)).unwrap();
        let pg = crate::pg::PgStore::connect(&url).await.unwrap();
        copy_to_pg(&conn, &pg).await;
        let received: Vec<i64> = conn
            .prepare("SELECT DISTINCT received_at FROM readings ORDER BY 1")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let since = vec![
            0,
            received[received.len() / 2],
            received[received.len() - 1],
            i64::MAX,
        ];
        let ranges = vec![
            (0, i64::MAX / 2),
            (T0, T0 + DAY),
            (T0 + 3599, T0 + 3601),
            (T0 + 3600, T0 + 7200),
            (T0 + 1234, T0 + 2 * DAY + 777),
            (T0 - 18_000, T0 + DAY - 18_000),
            (T0 - DAY - 1, T0 - DAY + 1),
            (T0 + 10 * DAY, T0 + 11 * DAY),
        ];
        let args = (posts.map(String::from).to_vec(), ranges, since);
        let ask =
            |store: Store, (posts, ranges, since): (Vec<String>, Vec<(i64, i64)>, Vec<i64>)| async move {
                store
                    .read(move |db| {
                        let posts: Vec<&str> = posts.iter().map(String::as_str).collect();
                        Ok(answers(db, &posts, &ranges, &since))
                    })
                    .await
                    .unwrap()
            };
        let expected = ask(sqlite, args.clone()).await;
        let actual = ask(Store::Pg(pg), args).await;
        assert_eq!(expected.len(), actual.len());
        let mut nonempty = 0;
        for (e, a) in expected.iter().zip(&actual) {
            assert_eq!(e.0, a.0);
            assert_eq!(e.1, a.1, "{}", e.0);
            nonempty += usize::from(e.1.len() > 20);
        }
        assert!(
            nonempty > expected.len() / 2,
            "the grid reads data: {nonempty} of {}",
            expected.len()
        );
    }
}
