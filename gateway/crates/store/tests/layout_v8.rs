//! The store layout of migration 8 (series ids, keys post first then time, `taza_store::series`):
//!
//! - on a database written by the previous release (schema 6), the migration keeps every
//!   reading, rollup, alert, registry and queue row, and the public reads answer exactly what
//!   the previous release's queries (kept here verbatim) answered on the old tables; then the
//!   writer keeps going on the migrated file (a replay of a migrated reading is absorbed, a new
//!   one extends its series);
//! - on data the new writer wrote (late, replayed, flagged, windowed, on and off every grid),
//!   the public reads answer what the previous queries answer through the compatibility views.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::time::Duration;

use protocol::{PostId, QaFlags, Quantity, UnixSeconds};
use rusqlite::types::Value;
use rusqlite::{params, Connection};
use taza_domain::calendar::rfc3339;
use taza_store::read::{self, BucketRow, Period, ReadingRow, Resolution, RollupRow};
use taza_store::{alerts, schema, sink_queue, status, Db};

/// 2026-01-01T00:00:00Z; Almaty is UTC+5.
const T0: i64 = 1_767_225_600;
const DAY: i64 = 86_400;
/// The schema the previous release wrote.
const PREVIOUS: i64 = 6;
/// Tables migration 8 rewrites (compared through reads and views, not dumped as they are).
const REWRITTEN: [&str; 5] = [
    "readings",
    "rollup_20min",
    "rollup_hour",
    "rollup_day",
    "sink_queue",
];

/// A v6 store holding what the previous gateway would have written: three posts with registry
/// details, credentials and audit rows; readings with flags and windows, a quantity this build
/// does not know and a series whose readings are all flagged; rollups built by the previous
/// writer's rules, plus rollups whose raw readings were pruned; post status, a zone, an alert
/// with its events and notification, and queued sink rows.
fn previous_release_store(path: &std::path::Path) -> Connection {
    let mut conn = Connection::open(path).unwrap();
    schema::migrate_to(&mut conn, PREVIOUS).unwrap();
    let v: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap();
    assert_eq!(v, PREVIOUS);
    let tx = conn.transaction().unwrap();
    tx.execute_batch(
        r#"
        INSERT INTO posts (id, kind, name, latitude, longitude, district, river, sensors, cadence_s, updated_at,
                           critical_level, details, retired_at, managed_by)
        VALUES ('air-1', 'air', 'Абая / Досмухамедова', 43.2389, 76.9286, 'Алмалинский', NULL,
                '["pm2_5","pm10","no2","temperature"]', 60, 1767000000, NULL, '{"id":"air-1"}', NULL, 'registry'),
               ('air-2', 'air', 'Аль-Фараби', 43.21, 76.90, 'Бостандыкский', NULL, '["pm2_5","humidity"]',
                60, 1767000000, NULL, NULL, NULL, 'config'),
               ('river-1', 'river', 'Есентай', 43.20, 76.93, NULL, 'Есентай', '["water_level"]', 300,
                1767000000, '{"level_cm":180.0}', NULL, 1767100000, 'registry');
        INSERT INTO post_credentials VALUES ('air-1', 'air-1', '$7$101$abc$def', 1767000000, 'admin');
        INSERT INTO post_audit (at, actor, post, action, detail)
            VALUES (1767000000, 'admin', 'air-1', 'add', '{}'), (1767100000, 'admin', 'river-1', 'retire', '{}');
        INSERT INTO post_status VALUES ('air-1', 1, '1.4.0', 305419896, '["pm2_5"]', 3, 1, 1767300000, -120, -71, 4980, 3600);
        INSERT INTO zones VALUES ('lez-1', 'LEZ центр', '2026-03-01', '{"type":"Polygon","coordinates":[]}', 1767000000, 'admin');
        INSERT INTO alerts (id, rule, post, severity, quantity, state, value, threshold, message, fired_at,
                            acked_at, acked_by, escalation_level)
            VALUES (1, 'pm25-one-time', 'air-1', 'critical', 'pm2_5', 'acknowledged', 180.0, 160.0,
                    'ПДК м.р. превышена', 1767230000, 1767230100, 'operator', 2);
        INSERT INTO alert_events (alert_id, at, event, by, detail)
            VALUES (1, 1767230000, 'fired', 'rule', NULL), (1, 1767230100, 'acknowledged', 'operator', 'on it');
        INSERT INTO outbox (key, alert_id, channel, recipient, subject, text, payload, state, attempts,
                            next_attempt_ms, created_at)
            VALUES ('1-fired-ops', 1, 'webhook', 'ops', 'PM2.5', 'text', '{}', 'pending', 1, 1767230000000, 1767230000);
        "#,
    )
    .unwrap();
    {
        let mut insert = tx
            .prepare(
                "INSERT INTO readings (post, quantity, at, value, flags, window_s, received_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )
            .unwrap();
        let mut put =
            |post: &str, q: &str, at: i64, value: f64, flags: u16, window: Option<i64>| {
                insert
                    .execute(params![post, q, at, value, flags, window, at + 7])
                    .unwrap();
            };
        // air-1: three days of minute means; warm-up flags at the start, a stuck stretch, some
        // 5-minute windows, a value changing with time so every bucket differs.
        for k in 1..=3 * 1440 {
            let at = T0 + k * 60;
            let x = (k % 97) as f64;
            let warmup = if k <= 10 { QaFlags::WARM_UP.0 } else { 0 };
            put("air-1", "pm2_5", at, 20.0 + x, warmup, None);
            put(
                "air-1",
                "pm10",
                at,
                35.0 + x * 1.5,
                warmup,
                (k % 5 == 0).then_some(300),
            );
            put(
                "air-1",
                "no2",
                at,
                40.0 + (k % 13) as f64,
                if k % 400 < 20 { 4 } else { 0 },
                None,
            );
            if k % 10 == 0 {
                put(
                    "air-1",
                    "temperature",
                    at,
                    -7.5 + (k % 20) as f64 * 0.1,
                    0,
                    Some(600),
                );
            }
        }
        // air-2: a day and a half with a gap, humidity always flagged (no rollups), and a
        // quantity a newer gateway wrote.
        for k in (1..=2160).filter(|k| !(600..900).contains(k)) {
            let at = T0 + DAY / 2 + k * 60;
            put("air-2", "pm2_5", at, 12.0 + (k % 31) as f64, 0, None);
            put("air-2", "humidity", at, 96.0, QaFlags::OUT_OF_RANGE.0, None);
        }
        for k in 1..=10 {
            put("air-2", "smog", T0 + k * 60, 1.0, 0, None);
        }
        // river-1: a day of 5-minute levels, hourly means backfilled for the day before.
        for k in 1..=288 {
            put(
                "river-1",
                "water_level",
                T0 + k * 300,
                120.0 + (k % 50) as f64,
                0,
                None,
            );
        }
        for h in 1..=24 {
            put(
                "river-1",
                "water_level",
                T0 - DAY + h * 3600,
                110.0 + h as f64,
                0,
                Some(3600),
            );
        }
    }
    // Rollups as the previous writer made them: valid readings only, each covering its window or
    // its post's cadence capped at the bucket, time-weighted; local days of Asia/Almaty (UTC+5).
    tx.execute_batch(
        r#"
        CREATE TEMP VIEW valid AS
            SELECT r.post, r.quantity, r.at, r.value, coalesce(r.window_s, p.cadence_s, 60) AS win,
                   coalesce(p.cadence_s, 60) AS cadence
            FROM readings r LEFT JOIN posts p ON p.id = r.post WHERE r.flags & 47 = 0;
        INSERT INTO rollup_20min
            SELECT post, quantity, ((at - 1) / 1200) * 1200, count(*), sum(value * min(win, 1200)),
                   sum(min(win, 1200)), min(value), max(value)
            FROM valid GROUP BY post, quantity, (at - 1) / 1200;
        INSERT INTO rollup_hour
            SELECT post, quantity, ((at - 1) / 3600) * 3600, count(*), sum(value * min(win, 3600)),
                   sum(min(win, 3600)), min(value), max(value), max(3600 / cadence, 1)
            FROM valid GROUP BY post, quantity, (at - 1) / 3600;
        INSERT INTO rollup_day
            SELECT post, quantity, strftime('%Y-%m-%d', ((at - 1) / 3600) * 3600 + 18000, 'unixepoch'),
                   (((at - 1) / 3600 * 3600 + 18000) / 86400) * 86400 - 18000,
                   (((at - 1) / 3600 * 3600 + 18000) / 86400) * 86400 - 18000 + 86400,
                   count(*), sum(value * min(win, 86400)), sum(min(win, 86400)), min(value), max(value),
                   max(86400 / cadence, 1)
            FROM valid GROUP BY post, quantity, (((at - 1) / 3600 * 3600 + 18000) / 86400);
        DROP VIEW valid;
        "#,
    )
    .unwrap();
    // A week before: air-1's pm2_5 rollups whose raw readings were pruned, and a row with a post
    // id no current build accepts.
    let week = T0 - 7 * DAY;
    tx.execute(
        "INSERT INTO rollup_20min VALUES ('air-1', 'pm2_5', ?1, 3, 3600.0, 180, 10, 30)",
        [week],
    )
    .unwrap();
    tx.execute(
        "INSERT INTO rollup_hour VALUES ('air-1', 'pm2_5', ?1, 3, 3600.0, 180, 10, 30, 60)",
        [week],
    )
    .unwrap();
    tx.execute(
        "INSERT INTO rollup_day VALUES ('air-1', 'pm2_5', '2025-12-25', ?1, ?2, 3, 3600.0, 180, 10, 30, 1440)",
        params![week - 5 * 3600, week - 5 * 3600 + DAY],
    )
    .unwrap();
    tx.execute(
        "INSERT INTO rollup_day VALUES ('Not An Id', 'pm2_5', '2026-01-02', ?1, ?2, 1, 2764800.0, 69120, 1, 90, 1440)",
        params![T0 + DAY - 18000, T0 + 2 * DAY - 18000],
    )
    .unwrap();
    // Not yet confirmed by InfluxDB: the last readings of air-1 and one long pruned.
    tx.execute_batch(&format!(
        "INSERT INTO sink_queue (post, quantity, at, value, flags)
             SELECT post, quantity, at, value, flags FROM readings
             WHERE post = 'air-1' AND at > {} ORDER BY at, quantity;
         INSERT INTO sink_queue (post, quantity, at, value, flags) VALUES ('air-1', 'pm2_5', {week}, 17.0, 0);",
        T0 + 3 * DAY - 600
    ))
    .unwrap();
    tx.commit().unwrap();
    conn
}

/// Every row of every table the migration does not rewrite, by table name.
fn untouched_tables(conn: &Connection) -> BTreeMap<String, Vec<Vec<Value>>> {
    let names: Vec<String> = conn
        .prepare(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'
             ORDER BY name",
        )
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let mut out = BTreeMap::new();
    for name in names
        .into_iter()
        .filter(|n| !REWRITTEN.contains(&n.as_str()))
    {
        out.insert(name.clone(), dump(conn, &format!("SELECT * FROM {name}")));
    }
    out
}

fn dump(conn: &Connection, sql: &str) -> Vec<Vec<Value>> {
    let mut stmt = conn.prepare(sql).unwrap();
    let width = stmt.column_count();
    let mut rows: Vec<Vec<Value>> = stmt
        .query_map([], |r| (0..width).map(|i| r.get::<_, Value>(i)).collect())
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    rows.sort_by(|a, b| format!("{a:?}").cmp(&format!("{b:?}")));
    rows
}

/// The rewritten tables as rows with their old columns (the old tables, or the views and the
/// sink queue joined to its series).
fn rewritten_rows(conn: &Connection, migrated: bool) -> Vec<Vec<Vec<Value>>> {
    let sink = if migrated {
        "SELECT q.id, s.post, s.quantity, q.at, q.value, q.flags FROM sink_queue q JOIN series s ON s.id = q.series"
    } else {
        "SELECT id, post, quantity, at, value, flags FROM sink_queue"
    };
    [
        "SELECT post, quantity, at, value, flags, window_s, received_at FROM readings",
        "SELECT post, quantity, start, count, weighted_sum, covered_s, min, max FROM rollup_20min",
        "SELECT post, quantity, start, count, weighted_sum, covered_s, min, max, expected FROM rollup_hour",
        "SELECT post, quantity, day, start, end_at, count, weighted_sum, covered_s, min, max, expected FROM rollup_day",
        sink,
    ]
    .iter()
    .map(|sql| dump(conn, sql))
    .collect()
}

// ---- the previous release's reads, verbatim --------------------------------------------------

fn old_readings(
    conn: &Connection,
    post: &str,
    quantity: Option<Quantity>,
    from: i64,
    to: i64,
    limit: usize,
) -> Vec<ReadingRow> {
    let mut stmt = conn
        .prepare(
            "SELECT quantity, at, value, flags FROM readings
             WHERE post = ?1 AND (?2 IS NULL OR quantity = ?2) AND at >= ?3 AND at < ?4
             ORDER BY at, quantity LIMIT ?5",
        )
        .unwrap();
    let rows = stmt
        .query_map(
            params![post, quantity.map(Quantity::as_str), from, to, limit as i64],
            |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, f64>(2)?,
                    r.get::<_, u16>(3)?,
                ))
            },
        )
        .unwrap();
    rows.map(|r| r.unwrap())
        .filter_map(|(name, at, value, flags)| {
            let q = Quantity::parse(&name)?;
            Some(ReadingRow {
                quantity: q,
                time: rfc3339(UnixSeconds(at)),
                value,
                unit: q.unit().as_str(),
                flags: QaFlags(flags).names().collect(),
            })
        })
        .collect()
}

fn old_rollups(
    conn: &Connection,
    post: &str,
    quantity: Quantity,
    period: Period,
    from: i64,
    to: i64,
) -> Vec<RollupRow> {
    let sql = match period {
        Period::Hour => {
            "SELECT start, start + 3600, NULL, count, weighted_sum, covered_s, min, max, expected FROM rollup_hour
             WHERE post = ?1 AND quantity = ?2 AND start > ?3 - 3600 AND start < ?4 ORDER BY start"
        }
        Period::Day => {
            "SELECT start, end_at, day, count, weighted_sum, covered_s, min, max, expected FROM rollup_day
             WHERE post = ?1 AND quantity = ?2 AND start > ?3 - 90000 AND end_at > ?3 AND start < ?4
             ORDER BY start"
        }
    };
    let unit = quantity.unit().as_str();
    let mut stmt = conn.prepare(sql).unwrap();
    let rows = stmt
        .query_map(params![post, quantity.as_str(), from, to], |r| {
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
        })
        .unwrap();
    rows.map(|r| r.unwrap()).collect()
}

fn old_buckets(
    conn: &Connection,
    table: &str,
    quantities: &[Quantity],
    from: i64,
    to: i64,
) -> Vec<BucketRow> {
    let mut stmt = conn
        .prepare(&format!(
            "SELECT post, quantity, start, count, weighted_sum, covered_s, max FROM {table}
             WHERE quantity = ?1 AND start >= ?2 AND start < ?3 ORDER BY post, start"
        ))
        .unwrap();
    let mut out = Vec::new();
    for q in quantities {
        let rows = stmt
            .query_map(params![q.as_str(), from, to], |r| {
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
            })
            .unwrap();
        out.extend(rows.map(|r| r.unwrap()));
    }
    out
}

/// Per quantity: hourly (start, count, mean, covered, max) and 20-minute (start, mean, covered).
type PostBuckets = Vec<(
    Quantity,
    Vec<(i64, u32, f64, i64, f64)>,
    Vec<(i64, f64, i64)>,
)>;

/// One post's hourly and 20-minute buckets, as `read::one_post_series` read them on schema 7.
fn old_one_post_series(
    conn: &Connection,
    post: &str,
    quantities: &[Quantity],
    from: i64,
    to: i64,
) -> PostBuckets {
    let mut out = Vec::new();
    for q in quantities {
        let hourly: Vec<(i64, u32, f64, i64, f64)> = conn
            .prepare(
                "SELECT start, count, weighted_sum, covered_s, max FROM rollup_hour
                 WHERE post = ?1 AND quantity = ?2 AND start >= ?3 AND start < ?4 ORDER BY start",
            )
            .unwrap()
            .query_map(params![post, q.as_str(), from, to], |r| {
                let covered_s: i64 = r.get(3)?;
                let weighted_sum: f64 = r.get(2)?;
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    weighted_sum / covered_s.max(1) as f64,
                    covered_s,
                    r.get(4)?,
                ))
            })
            .unwrap()
            .map(|r| r.unwrap())
            .collect();
        let twenty: Vec<(i64, f64, i64)> = conn
            .prepare(
                "SELECT start, weighted_sum, covered_s FROM rollup_20min
                 WHERE post = ?1 AND quantity = ?2 AND start >= ?3 AND start < ?4 ORDER BY start",
            )
            .unwrap()
            .query_map(params![post, q.as_str(), from, to], |r| {
                let covered_s: i64 = r.get(2)?;
                let weighted_sum: f64 = r.get(1)?;
                Ok((r.get(0)?, weighted_sum / covered_s.max(1) as f64, covered_s))
            })
            .unwrap()
            .map(|r| r.unwrap())
            .collect();
        if !(hourly.is_empty() && twenty.is_empty()) {
            out.push((*q, hourly, twenty));
        }
    }
    out
}

fn new_one_post_series(
    conn: &Connection,
    post: &str,
    quantities: &[Quantity],
    from: i64,
    to: i64,
) -> PostBuckets {
    let descriptor = taza_domain::series::PostDescriptor {
        id: PostId::parse(post).unwrap(),
        kind: taza_domain::series::PostKind::Air,
        lat_deg: f64::NAN,
        lon_deg: f64::NAN,
        district: None,
        river: None,
        critical_level: None,
    };
    read::one_post_series(
        &Db::Sqlite(conn),
        descriptor,
        quantities,
        UnixSeconds(from),
        UnixSeconds(to),
    )
    .unwrap()
    .series
    .into_iter()
    .map(|s| {
        (
            s.quantity,
            s.hourly
                .iter()
                .map(|h| (h.start.0, h.count, h.mean, h.covered_s, h.max))
                .collect(),
            s.twenty_minute
                .iter()
                .map(|t| (t.start.0, t.mean, t.covered_s))
                .collect(),
        )
    })
    .collect()
}

fn old_latest(conn: &Connection) -> Vec<serde_json::Value> {
    let mut stmt = conn
        .prepare(
            "SELECT s.post, s.quantity, r.at, r.value, r.flags
             FROM (SELECT DISTINCT post, quantity FROM rollup_day) s
             JOIN readings r ON r.post = s.post AND r.quantity = s.quantity
              AND r.at = (SELECT max(at) FROM readings WHERE post = s.post AND quantity = s.quantity)
             ORDER BY s.post, s.quantity",
        )
        .unwrap();
    let rows = stmt
        .query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, f64>(3)?,
                r.get::<_, u16>(4)?,
            ))
        })
        .unwrap();
    rows.map(|r| r.unwrap())
        .filter_map(|(post, quantity, at, value, flags)| {
            let q = Quantity::parse(&quantity)?;
            Some(serde_json::json!({
                "post": post,
                "quantity": q,
                "time": rfc3339(UnixSeconds(at)),
                "value": value,
                "unit": q.unit().as_str(),
                "flags": QaFlags(flags).names().collect::<Vec<_>>(),
            }))
        })
        .collect()
}

/// (quantity, at, value, flags, count) per quantity received since `since`.
type Newest = BTreeMap<&'static str, (i64, f64, u16, u32)>;

fn old_latest_readings_since(conn: &Connection, post: &str, since: i64) -> Newest {
    let mut stmt = conn
        .prepare(
            "SELECT quantity, at, value, flags FROM readings
             WHERE post = ?1 AND received_at >= ?2 ORDER BY at",
        )
        .unwrap();
    let rows = stmt
        .query_map(params![post, since], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, f64>(2)?,
                r.get::<_, u16>(3)?,
            ))
        })
        .unwrap();
    let mut out = Newest::new();
    for (q, at, value, flags) in rows.map(|r| r.unwrap()) {
        let Some(q) = Quantity::parse(&q) else {
            continue;
        };
        let count = out.get(q.as_str()).map_or(0, |e| e.3);
        out.insert(q.as_str(), (at, value, flags, count + 1));
    }
    out
}

fn new_latest_readings_since(conn: &Connection, post: &str, since: i64) -> Newest {
    status::latest_readings_since(
        &Db::Sqlite(conn),
        &PostId::parse(post).unwrap(),
        UnixSeconds(since),
    )
    .unwrap()
    .into_iter()
    .map(|(q, r)| (q.as_str(), (r.at.0, r.value, r.flags.0, r.count)))
    .collect()
}

fn old_daily_means(conn: &Connection, day: &str, q: Quantity, min: f64) -> Vec<(String, f64)> {
    let mut out: Vec<(String, f64)> = conn
        .prepare(
            "SELECT post, weighted_sum / covered_s FROM rollup_day
             WHERE day = ?1 AND quantity = ?2 AND covered_s >= ?3 * (end_at - start)",
        )
        .unwrap()
        .query_map(params![day, q.as_str(), min], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap()
        .map(|r| r.unwrap())
        .filter(|(p, _): &(String, f64)| PostId::parse(p).is_ok())
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

fn old_sink_oldest(conn: &Connection, limit: i64) -> Vec<sink_queue::Queued> {
    conn.prepare(
        "SELECT q.id, q.post, q.quantity, q.at, q.value, q.flags, p.kind, p.district, p.river
         FROM sink_queue q LEFT JOIN posts p ON p.id = q.post
         ORDER BY q.id LIMIT ?1",
    )
    .unwrap()
    .query_map([limit], |r| {
        Ok(sink_queue::Queued {
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
    })
    .unwrap()
    .map(|r| r.unwrap())
    .collect()
}

// ---- the comparison --------------------------------------------------------------------------

/// Everything the reads answer, as JSON (one value per query, in a fixed order).
struct Answers(Vec<(String, serde_json::Value)>);

const POSTS: [&str; 4] = ["air-1", "air-2", "river-1", "nobody"];
const ALL: [Quantity; 8] = [
    Quantity::Pm2_5,
    Quantity::Pm10,
    Quantity::No2,
    Quantity::Temperature,
    Quantity::Humidity,
    Quantity::WaterLevel,
    Quantity::Pm1,
    Quantity::Ph,
];

/// Ranges with edges on and off the grids, before, inside and after the data.
fn ranges() -> Vec<(i64, i64)> {
    vec![
        (0, i64::MAX / 2),
        (T0 - 8 * DAY, T0 + 10 * DAY),
        (T0, T0 + DAY),
        (T0 + 3599, T0 + 3601),
        (T0 + 3600, T0 + 7200),
        (T0 + 1234, T0 + 2 * DAY + 777),
        (T0 + DAY - 18_000, T0 + 2 * DAY - 18_000),
        (T0 - DAY, T0),
        (T0 + 5 * DAY, T0 + 6 * DAY),
        (T0 - 7 * DAY - 3600, T0 - 7 * DAY + 3600),
    ]
}

/// The answers of the previous queries (`old`) or of today's read functions, for `posts` and
/// `ranges`; the sink queue's too when `sink` (the previous sink query needs the old table).
fn answers(
    conn: &Connection,
    old: bool,
    posts: &[&str],
    ranges: &[(i64, i64)],
    sink: bool,
) -> Answers {
    let mut out = Vec::new();
    let json = |v: &dyn erased::Ser| v.value();
    let receipt_times: Vec<i64> = {
        let newest: i64 = conn
            .query_row(
                "SELECT coalesce(max(received_at), 0) FROM readings",
                [],
                |r| r.get(0),
            )
            .unwrap();
        vec![
            0,
            T0,
            T0 + DAY,
            T0 + 3 * DAY,
            T0 + 3 * DAY + 8,
            T0 + 9 * DAY,
            newest,
            newest + 1,
        ]
    };
    for &post in posts {
        let id = PostId::parse(post).unwrap();
        for q in std::iter::once(None).chain(ALL.iter().copied().map(Some)) {
            for &(from, to) in ranges {
                for limit in [100_000, 50, 1] {
                    let rows = if old {
                        old_readings(conn, post, q, from, to, limit)
                    } else {
                        read::readings(
                            &Db::Sqlite(conn),
                            &id,
                            q,
                            UnixSeconds(from),
                            UnixSeconds(to),
                            limit,
                        )
                        .unwrap()
                    };
                    out.push((
                        format!("readings {post} {q:?} {from}..{to} limit {limit}"),
                        json(&rows),
                    ));
                }
            }
        }
        for q in ALL {
            for period in [Period::Hour, Period::Day] {
                for &(from, to) in ranges {
                    let rows = if old {
                        old_rollups(conn, post, q, period, from, to)
                    } else {
                        read::rollups(
                            &Db::Sqlite(conn),
                            &id,
                            q,
                            period,
                            UnixSeconds(from),
                            UnixSeconds(to),
                        )
                        .unwrap()
                    };
                    out.push((
                        format!("rollups {post} {q:?} {period:?} {from}..{to}"),
                        json(&rows),
                    ));
                }
            }
        }
        for &(from, to) in ranges {
            let series = if old {
                old_one_post_series(conn, post, &ALL, from, to)
            } else {
                new_one_post_series(conn, post, &ALL, from, to)
            };
            out.push((
                format!("one post series {post} {from}..{to}"),
                serde_json::json!(format!("{series:?}")),
            ));
        }
        for &since in &receipt_times {
            let newest = if old {
                old_latest_readings_since(conn, post, since)
            } else {
                new_latest_readings_since(conn, post, since)
            };
            out.push((
                format!("received since {post} {since}"),
                serde_json::json!(format!("{newest:?}")),
            ));
        }
    }
    for (table, resolution) in [
        ("rollup_hour", Resolution::Hour),
        ("rollup_20min", Resolution::TwentyMinutes),
    ] {
        for &(from, to) in ranges {
            let rows = if old {
                old_buckets(conn, table, &ALL, from, to)
            } else {
                read::buckets(
                    &Db::Sqlite(conn),
                    resolution,
                    &ALL,
                    UnixSeconds(from),
                    UnixSeconds(to),
                )
                .unwrap()
            };
            out.push((
                format!("buckets {table} {from}..{to}"),
                serde_json::json!(format!("{rows:?}")),
            ));
        }
    }
    let latest = if old {
        old_latest(conn)
    } else {
        read::latest(&Db::Sqlite(conn)).unwrap()
    };
    out.push(("latest".into(), serde_json::json!(latest)));
    let earliest = if old {
        conn.query_row("SELECT min(start) FROM rollup_hour", [], |r| {
            r.get::<_, Option<i64>>(0)
        })
        .unwrap()
    } else {
        read::earliest_rollup(&Db::Sqlite(conn))
            .unwrap()
            .map(|t| t.0)
    };
    out.push(("earliest rollup".into(), serde_json::json!(earliest)));
    for day in [
        "2025-12-25",
        "2026-01-01",
        "2026-01-02",
        "2026-01-03",
        "2026-01-04",
    ] {
        for q in [Quantity::Pm2_5, Quantity::No2, Quantity::WaterLevel] {
            for min in [0.0, 0.5, 0.75] {
                let means = if old {
                    old_daily_means(conn, day, q, min)
                } else {
                    let mut m: Vec<(String, f64)> =
                        alerts::covered_daily_means(&Db::Sqlite(conn), day, &[q], min)
                            .unwrap()
                            .into_iter()
                            .map(|(p, _, mean)| (p.to_string(), mean))
                            .collect();
                    m.sort_by(|a, b| a.0.cmp(&b.0));
                    m
                };
                out.push((
                    format!("daily means {day} {q:?} {min}"),
                    serde_json::json!(means),
                ));
            }
        }
    }
    if sink {
        for limit in [1, 7, 1000] {
            let rows = if old {
                old_sink_oldest(conn, limit)
            } else {
                sink_queue::oldest(&Db::Sqlite(conn), limit as usize).unwrap()
            };
            out.push((
                format!("sink oldest {limit}"),
                serde_json::json!(format!("{rows:?}")),
            ));
        }
        let backlog = sink_queue::backlog(&Db::Sqlite(conn)).unwrap();
        out.push(("sink backlog".into(), serde_json::json!(backlog)));
    }
    Answers(out)
}

/// Asserts that two sets of answers agree, naming the first query that differs and where;
/// returns how many were compared.
fn same_answers(expected: &Answers, actual: &Answers) -> usize {
    assert_eq!(actual.0.len(), expected.0.len());
    for ((name, want), (name_got, got)) in expected.0.iter().zip(&actual.0) {
        assert_eq!(name, name_got);
        if got != want {
            let w: Vec<char> = want.to_string().chars().collect();
            let g: Vec<char> = got.to_string().chars().collect();
            let at = w.iter().zip(&g).take_while(|(a, b)| a == b).count();
            let around = |v: &[char]| -> String {
                v[at.saturating_sub(200)..(at + 200).min(v.len())]
                    .iter()
                    .collect()
            };
            panic!(
                "{name}: answers differ at char {at} (lengths {} / {}):\n  expected ...{}\n  actual   ...{}",
                w.len(),
                g.len(),
                around(&w),
                around(&g)
            );
        }
    }
    expected.0.len()
}

/// Serialises the read functions' row types, which are Serialize but not all PartialEq.
mod erased {
    pub trait Ser {
        fn value(&self) -> serde_json::Value;
    }
    impl<T: serde::Serialize> Ser for T {
        fn value(&self) -> serde_json::Value {
            serde_json::to_value(self).unwrap()
        }
    }
}

#[test]
fn migration_keeps_every_row_and_every_read_of_a_previous_release_store() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("taza.db");
    let mut conn = previous_release_store(&path);
    let tables_before = untouched_tables(&conn);
    let rows_before = rewritten_rows(&conn, false);
    let answers_before = answers(&conn, true, &POSTS, &ranges(), true);
    let answers_before_no_sink = answers(&conn, true, &POSTS, &ranges(), false);
    let readings: i64 = conn
        .query_row("SELECT count(*) FROM readings", [], |r| r.get(0))
        .unwrap();
    assert!(readings > 15_000, "a real amount of data: {readings}");

    schema::migrate(&mut conn).unwrap();
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap();
    assert_eq!(version, schema::VERSION);

    // Every row, with its old columns, through the views.
    assert_eq!(rewritten_rows(&conn, true), rows_before);
    // Tables the migration does not rewrite are as they were (migration 7 adds its own).
    let mut tables_after = untouched_tables(&conn);
    for added in [
        "day_dirty",
        "day_scores",
        "day_scores_year",
        "store_meta",
        "series",
        "samples",
        "sample_arrivals",
    ] {
        tables_after.remove(added);
    }
    for added in ["agg_20min", "agg_hour", "agg_day"] {
        tables_after.remove(added);
    }
    assert_eq!(tables_after, tables_before);
    // Every scored day is waiting for its aggregates (migration 7's marks survive migration 8).
    let dirty: i64 = conn
        .query_row("SELECT count(*) FROM day_dirty", [], |r| r.get(0))
        .unwrap();
    let scored_days: i64 = conn
        .query_row(
            "SELECT count(*) FROM rollup_day WHERE quantity IN ('pm2_5', 'pm10', 'no2')",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!((dirty, scored_days > 5), (scored_days, true));

    // Every public read answers what the previous release's query answered.
    let checked = same_answers(
        &answers_before,
        &answers(&conn, false, &POSTS, &ranges(), true),
    );
    // The previous queries give the same answers through the compatibility views too.
    same_answers(
        &answers_before_no_sink,
        &answers(&conn, true, &POSTS, &ranges(), false),
    );
    assert!(checked > 1500, "{checked} reads compared");
    drop(conn);

    writer_continues_on_the_migrated_store(&path);
}

/// The writer on the migrated file: a replay of a migrated reading is absorbed, a new reading
/// of a migrated series and one of a new post are stored, rolled up and readable.
fn writer_continues_on_the_migrated_store(path: &std::path::Path) {
    use taza_domain::pipeline::{AckToken, Inbound, Payload, Reading};
    let cfg = taza_store::config::StoreConfig {
        data_dir: path.parent().unwrap().to_path_buf(),
        ..Default::default()
    };
    let conn = taza_store::open_writer(&cfg).unwrap();
    let registry = taza_domain::registry::Registry::new(&[], Duration::from_secs(60), true);
    let metrics = taza_store::metrics::StoreMetrics::default();
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    let (ack_tx, mut ack_rx) = tokio::sync::mpsc::channel(16);
    let writer = taza_store::writer::spawn(
        conn,
        taza_store::writer::WriterContext {
            registry,
            metrics,
            raw_retention: None,
            shutdown: tokio_util::sync::CancellationToken::new(),
            alerts: None,
            sink_enabled: true,
            wal_restart: Default::default(),
        },
        rx,
        ack_tx,
        tokio::sync::broadcast::channel(4).0,
    )
    .unwrap();
    let reading = |q: Quantity, at: i64, value: f64| Reading {
        quantity: q,
        value,
        at: UnixSeconds(at),
        flags: QaFlags::NONE,
        window_s: None,
    };
    let last = T0 + 3 * 1440 * 60;
    let mut send = |post: &str, readings: Vec<Reading>| {
        tx.blocking_send(Inbound {
            payload: Payload::Readings {
                post: PostId::parse(post).unwrap(),
                readings,
            },
            ack: AckToken {
                packet: None,
                connection: 0,
            },
            received: std::time::Instant::now(),
        })
        .unwrap();
        ack_rx.blocking_recv().unwrap();
    };
    // A replay of air-1's last migrated pm2_5 reading with another value, and a new one.
    send(
        "air-1",
        vec![
            reading(Quantity::Pm2_5, last, 999.0),
            reading(Quantity::Pm2_5, last + 60, 50.0),
        ],
    );
    send("air-9", vec![reading(Quantity::No2, last, 33.0)]);
    drop(tx);
    writer.join().unwrap();

    let conn = Connection::open(path).unwrap();
    let air1 = PostId::parse("air-1").unwrap();
    let rows = read::readings(
        &Db::Sqlite(&conn),
        &air1,
        Some(Quantity::Pm2_5),
        UnixSeconds(last),
        UnixSeconds(last + 61),
        10,
    )
    .unwrap();
    let values: Vec<f64> = rows.iter().map(|r| r.value).collect();
    let expected_last = 20.0 + (3 * 1440 % 97) as f64;
    assert_eq!(
        values,
        [expected_last, 50.0],
        "the replay kept the stored value"
    );
    let hour = read::rollups(
        &Db::Sqlite(&conn),
        &air1,
        Quantity::Pm2_5,
        Period::Hour,
        UnixSeconds(last),
        UnixSeconds(last + 1),
    )
    .unwrap();
    assert_eq!(hour.len(), 1);
    assert_eq!(
        (hour[0].count, hour[0].max),
        (1, 50.0),
        "the new hour holds the new reading"
    );
    let latest = read::latest(&Db::Sqlite(&conn)).unwrap();
    let newest = |post: &str, q: &str| {
        latest
            .iter()
            .find(|v| v["post"] == post && v["quantity"] == q)
            .map(|v| v["value"].as_f64().unwrap())
    };
    assert_eq!(newest("air-1", "pm2_5"), Some(50.0));
    assert_eq!(newest("air-9", "no2"), Some(33.0));
    // Queued for InfluxDB after the migrated rows, in order.
    let queued = sink_queue::oldest(&Db::Sqlite(&conn), 10_000).unwrap();
    let tail: Vec<(&str, &str, f64)> = queued
        .iter()
        .rev()
        .take(2)
        .map(|q| (q.post.as_str(), q.quantity.as_str(), q.value))
        .collect();
    assert_eq!(tail, [("air-9", "no2", 33.0), ("air-1", "pm2_5", 50.0)]);
    assert!(queued.windows(2).all(|w| w[0].id < w[1].id));
}

/// A deterministic stream of pseudo-random numbers (64-bit LCG, high bits).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % n
    }
}

#[test]
fn reads_answer_what_the_previous_queries_answer_on_data_the_writer_wrote() {
    use taza_domain::pipeline::{AckToken, Inbound, Payload, Reading};
    let dir = tempfile::tempdir().unwrap();
    let cfg = taza_store::config::StoreConfig {
        data_dir: dir.path().to_path_buf(),
        ..Default::default()
    };
    let conn = taza_store::open_writer(&cfg).unwrap();
    let registry = taza_domain::registry::Registry::new(&[], Duration::from_secs(60), true);
    let (tx, rx) = tokio::sync::mpsc::channel(8192);
    let (ack_tx, mut ack_rx) = tokio::sync::mpsc::channel(8192);
    let writer = taza_store::writer::spawn(
        conn,
        taza_store::writer::WriterContext {
            registry,
            metrics: taza_store::metrics::StoreMetrics::default(),
            raw_retention: None,
            shutdown: tokio_util::sync::CancellationToken::new(),
            alerts: None,
            sink_enabled: true,
            wal_restart: Default::default(),
        },
        rx,
        ack_tx,
        tokio::sync::broadcast::channel(4).0,
    )
    .unwrap();
    let acks = std::thread::spawn(move || {
        let mut n = 0;
        while ack_rx.blocking_recv().is_some() {
            n += 1;
        }
        n
    });
    // Five posts over five days, in no particular order: times on and off the 20-minute, hour,
    // slice and local-day grids, windows, invalidating and harmless flags, readings replayed
    // with other values (in the same group and later), and bursts that make groups of many.
    let mut rng = Lcg(13);
    let posts = ["p-1", "p-2", "p-3", "p-4", "p-5"];
    let quantities = [
        Quantity::Pm2_5,
        Quantity::Pm10,
        Quantity::No2,
        Quantity::Temperature,
        Quantity::WaterLevel,
    ];
    let mut sent: Vec<(usize, Vec<Reading>)> = Vec::new();
    for m in 0..6000u64 {
        let (post, readings) = if m > 100 && rng.next(10) == 0 {
            // A replay of an earlier message, values changed (the store keeps the first).
            let (p, mut rs) = sent[rng.next(sent.len() as u64) as usize].clone();
            for r in &mut rs {
                r.value += 1000.0;
            }
            (p, rs)
        } else {
            let at = match rng.next(4) {
                0 => T0 + rng.next(5 * 24) as i64 * 3600,
                1 => T0 + rng.next(5 * 72) as i64 * 1200 + rng.next(3) as i64 - 1,
                2 => T0 - 18_000 + rng.next(5) as i64 * DAY + rng.next(3) as i64 - 1,
                _ => T0 + rng.next(5 * DAY as u64) as i64,
            };
            let readings = (0..1 + rng.next(4))
                .map(|_| Reading {
                    quantity: quantities[rng.next(quantities.len() as u64) as usize],
                    value: rng.next(5000) as f64 / 10.0,
                    at: UnixSeconds(at),
                    flags: match rng.next(10) {
                        0 => QaFlags::STUCK,
                        1 => QaFlags::HIGH_HUMIDITY,
                        _ => QaFlags::NONE,
                    },
                    window_s: match rng.next(6) {
                        0 => Some(3600),
                        1 => Some(300),
                        2 => Some(7200),
                        _ => None,
                    },
                })
                .collect();
            (rng.next(posts.len() as u64) as usize, readings)
        };
        sent.push((post, readings.clone()));
        tx.blocking_send(Inbound {
            payload: Payload::Readings {
                post: PostId::parse(posts[post]).unwrap(),
                readings,
            },
            ack: AckToken {
                packet: None,
                connection: 0,
            },
            received: std::time::Instant::now(),
        })
        .unwrap();
        if m % 500 == 0 {
            // Let the writer catch up now and then, so groups are both small and large.
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    drop(tx);
    writer.join().unwrap();
    assert_eq!(acks.join().unwrap(), 6000, "every message acknowledged");

    let conn = Connection::open(dir.path().join(taza_store::DB_FILE)).unwrap();
    let stored: i64 = conn
        .query_row("SELECT count(*) FROM samples", [], |r| r.get(0))
        .unwrap();
    let distinct: std::collections::HashSet<(usize, Quantity, i64)> = sent
        .iter()
        .flat_map(|(p, rs)| rs.iter().map(move |r| (*p, r.quantity, r.at.0)))
        .collect();
    assert_eq!(stored as usize, distinct.len(), "each reading stored once");
    let mut ranges = ranges();
    ranges.extend([
        (T0 + 3 * DAY - 1, T0 + 3 * DAY + 1),
        (T0 + 4 * DAY + 1199, T0 + 4 * DAY + 2401),
        (T0 + 2 * DAY - 18_001, T0 + 2 * DAY - 17_999),
    ]);
    let mut posts_asked = posts.to_vec();
    posts_asked.push("nobody");
    let checked = same_answers(
        &answers(&conn, true, &posts_asked, &ranges, false),
        &answers(&conn, false, &posts_asked, &ranges, false),
    );
    assert!(checked > 2000, "{checked} reads compared");
    // The sink queue holds each stored reading once, in commit order.
    let queued = sink_queue::oldest(&Db::Sqlite(&conn), 1_000_000).unwrap();
    assert_eq!(queued.len(), distinct.len());
}
