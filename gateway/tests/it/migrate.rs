//! `gateway migrate --from sqlite://DIR --to postgres://...`, the real binary against a real
//! PostgreSQL server: a one-machine store (readings through the SQLite writer, so its rollups;
//! a post; an alert with its events and notification) arrives whole, a second run copies
//! nothing twice, and a database holding other values for the same reading is refused.

use std::process::Command;
use std::time::Duration;

use protocol::{PostId, QaFlags, Quantity, UnixSeconds};
use taza_domain::pipeline::Reading;

/// 2026-01-01T00:00:00Z.
const T0: i64 = 1_767_225_600;

/// The binary's `migrate`, its exit status and its output.
fn migrate(dir: &std::path::Path, url: &str) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_gateway"))
        .arg("migrate")
        .arg("--from")
        .arg(format!("sqlite://{}", dir.display()))
        .arg("--to")
        .arg(url)
        .args(["--batch", "500"])
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// `(source, copied, present, target)` of `table` in the printed table.
fn row(out: &str, table: &str) -> (u64, u64, u64, u64) {
    let line = out
        .lines()
        .find(|l| l.split_whitespace().next() == Some(table))
        .unwrap_or_else(|| panic!("no line for {table} in:\n{out}"));
    let n: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|v| v.parse().unwrap())
        .collect();
    (n[0], n[1], n[2], n[3])
}

type ReadingRow = (String, String, i64, f64, i64, Option<i64>, i64);
type HourRow = (String, String, i64, i64, f64, i64, f64, f64, i64);
type AlertRow = (i64, String, String, String, f64, f64, String);

const READINGS: &str = "SELECT post, quantity, at, value, flags, window_s, received_at
                        FROM readings ORDER BY post, quantity, at";
const HOURS: &str =
    "SELECT post, quantity, start, count, weighted_sum, covered_s, min, max, expected
                     FROM rollup_hour ORDER BY post, quantity, start";
const ALERTS: &str =
    "SELECT id, rule, post, state, value, threshold, message FROM alerts ORDER BY id";

/// Readings, hourly rollups and alerts of the SQLite store.
fn sqlite_rows(db: &std::path::Path) -> (Vec<ReadingRow>, Vec<HourRow>, Vec<AlertRow>) {
    let c = rusqlite::Connection::open(db).unwrap();
    let readings = c
        .prepare(READINGS)
        .unwrap()
        .query_map([], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
                r.get(6)?,
            ))
        })
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let hours = c
        .prepare(HOURS)
        .unwrap()
        .query_map([], |r| {
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
        })
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let alerts = c
        .prepare(ALERTS)
        .unwrap()
        .query_map([], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
                r.get(6)?,
            ))
        })
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    (readings, hours, alerts)
}

/// The same of the PostgreSQL store.
async fn pg_rows(pg: &tokio_postgres::Client) -> (Vec<ReadingRow>, Vec<HourRow>, Vec<AlertRow>) {
    let readings = pg
        .query(READINGS, &[])
        .await
        .unwrap()
        .iter()
        .map(|r| {
            (
                r.get(0),
                r.get(1),
                r.get(2),
                r.get(3),
                r.get(4),
                r.get(5),
                r.get(6),
            )
        })
        .collect();
    let hours = pg
        .query(HOURS, &[])
        .await
        .unwrap()
        .iter()
        .map(|r| {
            (
                r.get(0),
                r.get(1),
                r.get(2),
                r.get(3),
                r.get(4),
                r.get(5),
                r.get(6),
                r.get(7),
                r.get(8),
            )
        })
        .collect();
    let alerts = pg
        .query(ALERTS, &[])
        .await
        .unwrap()
        .iter()
        .map(|r| {
            (
                r.get(0),
                r.get(1),
                r.get(2),
                r.get(3),
                r.get(4),
                r.get(5),
                r.get(6),
            )
        })
        .collect();
    (readings, hours, alerts)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_moves_a_one_machine_store_to_postgres_without_losing_a_reading() {
    let test = "migrate_moves_a_one_machine_store_to_postgres_without_losing_a_reading";
    let Some(url) = taza_store::pg::test_server::database(test) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let cfg = taza_store::config::StoreConfig {
        data_dir: dir.path().to_path_buf(),
        ..Default::default()
    };
    let db = taza_store::db_path(&cfg);
    // The SQLite writer is a thread fed by blocking sends: build the store off the runtime.
    tokio::task::spawn_blocking(move || {
        let conn = taza_store::open_writer(&cfg).unwrap();
        conn.execute_batch(
            r#"
            INSERT INTO posts (id, kind, name, latitude, longitude, district, sensors, cadence_s,
                               updated_at, managed_by)
                VALUES ('almaty-001', 'air', 'Абай', 43.24, 76.95, 'Алмалинский', '["pm2_5","no2"]',
                        60, 1767225600, 'registry');
            INSERT INTO alerts (rule, post, severity, quantity, state, value, threshold, message, fired_at)
                VALUES ('pm25-high', 'almaty-001', 'critical', 'pm2_5', 'firing', 180.5, 160,
                        'PM2.5 выше порога', 1767229200);
            INSERT INTO alert_events (alert_id, at, event, by) VALUES (1, 1767229200, 'fired', 'rule');
            INSERT INTO outbox (key, alert_id, channel, recipient, subject, text, payload,
                                next_attempt_ms, created_at)
                VALUES ('alert-1-fired-duty', 1, 'webhook', 'ops', 'PM2.5', 'PM2.5 выше порога',
                        '{"alert":1}', 1767229200000, 1767229200);
            "#,
        )
        .unwrap();
        let writer = taza_store::writer::TestWriter::spawn(
            conn,
            taza_domain::registry::Registry::new(&[], Duration::from_secs(60), false),
        );
        let post = PostId::parse("almaty-001").unwrap();
        for m in 0..3 * 24 * 60i64 {
            let readings = [(Quantity::Pm2_5, 12.5), (Quantity::No2, 40.25)]
                .into_iter()
                .map(|(quantity, base)| Reading {
                    quantity,
                    value: base + (m % 53) as f64 * 0.5,
                    at: UnixSeconds(T0 + m * 60),
                    flags: if m % 37 == 0 {
                        QaFlags::STUCK
                    } else {
                        QaFlags::NONE
                    },
                    window_s: None,
                })
                .collect();
            writer.blocking_send(&post, readings);
        }
        writer.finish();
    })
    .await
    .unwrap();

    let (ok, out) = migrate(dir.path(), &url);
    assert!(ok, "{out}");
    assert_eq!(row(&out, "readings"), (8640, 8640, 0, 8640), "{out}");
    for table in [
        "posts",
        "alerts",
        "alert_events",
        "outbox",
        "rollup_hour",
        "rollup_day",
    ] {
        let (source, copied, present, target) = row(&out, table);
        assert!(source > 0, "{table}: {out}");
        assert_eq!(
            (copied, present, target),
            (source, 0, source),
            "{table}: {out}"
        );
    }

    // What PostgreSQL holds is what SQLite held: readings, rollups, the alert.
    let (pg, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let (readings, hours, alerts) = pg_rows(&pg).await;
    let source = sqlite_rows(&db);
    assert_eq!(readings.len(), 8640);
    assert_eq!(readings, source.0);
    assert_eq!(hours, source.1);
    assert!(hours.iter().all(|h| h.3 > 50), "hours of many readings");
    assert_eq!(alerts, source.2);

    // Again: nothing copied twice.
    let (ok, out) = migrate(dir.path(), &url);
    assert!(ok, "{out}");
    assert_eq!(row(&out, "readings"), (8640, 0, 8640, 8640), "{out}");
    assert_eq!(row(&out, "alerts").1, 0);

    // A database holding another value for a reading the source has: refused, named.
    pg.execute(
        "UPDATE readings SET value = value + 1 WHERE quantity = 'no2' AND at = $1",
        &[&(T0 + 120)],
    )
    .await
    .unwrap();
    let (ok, out) = migrate(dir.path(), &url);
    assert!(!ok, "{out}");
    assert!(
        out.contains("readings") && out.contains(&format!("almaty-001/no2/{}", T0 + 120)),
        "{out}"
    );
}
