//! Raw-reading retention (`[store] raw_retention`): pruning raw readings keeps the rollups and
//! the day aggregates, so the city scorecards computed from them do not change.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use protocol::{PostId, QaFlags, Quantity, UnixSeconds};
use rusqlite::types::Value;
use taza_domain::calendar;
use taza_domain::pipeline::Reading;
use taza_score::Norms;
use taza_store::config::StoreConfig;
use taza_store::Store;

const DAY_S: i64 = 86_400;
/// Raw history written: 500 days up to now.
const HISTORY_DAYS: i64 = 500;
/// What `[store] raw_retention = "400d"` keeps.
const RETENTION: &str = "400d";
const POSTS: [&str; 2] = ["alm-001", "alm-002"];

#[derive(serde::Deserialize)]
struct Section {
    store: StoreConfig,
}

/// Every row of `table`, in key order, as plain values.
fn rows(conn: &rusqlite::Connection, table: &str) -> Vec<Vec<Value>> {
    let mut stmt = conn
        .prepare(&format!("SELECT * FROM {table} ORDER BY 1, 2, 3"))
        .unwrap();
    let columns = stmt.column_count();
    stmt.query_map([], |r| {
        (0..columns)
            .map(|i| r.get::<_, Value>(i))
            .collect::<Result<Vec<_>, _>>()
    })
    .unwrap()
    .collect::<Result<_, _>>()
    .unwrap()
}

fn count(conn: &rusqlite::Connection, sql: &str) -> i64 {
    conn.query_row(sql, [], |r| r.get(0)).unwrap()
}

/// The rollup and day-aggregate tables, whole.
fn kept_tables(conn: &rusqlite::Connection) -> Vec<(&'static str, Vec<Vec<Value>>)> {
    ["agg_20min", "agg_hour", "agg_day", "day_scores_year"]
        .into_iter()
        .map(|t| (t, rows(conn, t)))
        .collect()
}

/// The scorecards of the last two local years, their computation time taken out.
async fn scorecards(store: &Store, norms: &Norms) -> Vec<taza_score::CityScorecard> {
    let year = calendar::local_year(calendar::now());
    let mut cards = Vec::new();
    for y in [year - 1, year] {
        let mut card = taza_api::scoring::city_scorecard_from(store, norms.clone(), y)
            .await
            .unwrap();
        card.generated_at = UnixSeconds(0);
        cards.push(card);
    }
    cards
}

#[test]
fn raw_retention_400d_parses_from_the_store_section() {
    let section: Section = toml::from_str(&format!(
        "[store]\ndata_dir = \"/var/lib/taza\"\nraw_retention = \"{RETENTION}\"\n"
    ))
    .unwrap();
    assert_eq!(
        section.store.raw_retention,
        Some(Duration::from_secs(400 * DAY_S as u64))
    );
    // Shown as written (`gateway config`), and read back the same.
    let shown = toml::to_string(&section.store).unwrap();
    assert!(shown.contains("raw_retention = \"400d\""), "{shown}");
    let again: StoreConfig = toml::from_str(&shown).unwrap();
    assert_eq!(again.raw_retention, section.store.raw_retention);
    // The shipped production file says so too, and parses.
    let shipped = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../deploy/taza.toml"
    ))
    .unwrap();
    let value: toml::Table = toml::from_str(&shipped).unwrap();
    let store: StoreConfig = value["store"].clone().try_into().unwrap();
    assert_eq!(
        store.raw_retention,
        Some(Duration::from_secs(400 * DAY_S as u64))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pruning_500_days_of_raw_data_to_400_keeps_rollups_and_the_city_scorecard() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = StoreConfig {
        data_dir: dir.path().to_path_buf(),
        synchronous: taza_store::config::Synchronous::Normal,
        ..Default::default()
    };
    let path = taza_store::db_path(&cfg);
    let now = calendar::now().0;
    // 20-minute means (as posts send them) for 500 days, two posts, two pollutants.
    let start = (now - HISTORY_DAYS * DAY_S) / 1200 * 1200;
    tokio::task::spawn_blocking({
        let cfg = cfg.clone();
        move || {
            let conn = taza_store::open_writer(&cfg).unwrap();
            for (i, id) in POSTS.iter().enumerate() {
                conn.execute(
                    "INSERT INTO posts (id, kind, name, latitude, longitude, district, sensors,
                                        cadence_s, updated_at, managed_by)
                     VALUES (?1, 'air', ?1, ?2, 76.95, 'Алмалинский', '[\"pm2_5\",\"no2\"]',
                             1200, 1767225600, 'registry')",
                    rusqlite::params![id, 43.24 + i as f64 * 0.01],
                )
                .unwrap();
            }
            let writer = taza_store::writer::TestWriter::spawn(
                conn,
                taza_domain::registry::Registry::new(&[], Duration::from_secs(1200), false),
            );
            for (i, id) in POSTS.iter().enumerate() {
                let post = PostId::parse(id).unwrap();
                let mut at = start + 1200;
                let mut k = 0i64;
                while at <= now {
                    // A daily and a yearly swing, a high afternoon now and then (episodes).
                    let hour = (at / 3600) % 24;
                    let season = ((at - start) / DAY_S) as f64 / 365.0 * std::f64::consts::TAU;
                    let pm = 20.0
                        + 12.0 * season.cos()
                        + hour as f64
                        + (k % 7) as f64
                        + if k % 997 < 9 { 400.0 } else { 0.0 }
                        + i as f64 * 3.0;
                    let no2 = 30.0 + (k % 11) as f64 * 2.5 + i as f64;
                    let readings = [(Quantity::Pm2_5, pm), (Quantity::No2, no2)]
                        .into_iter()
                        .map(|(quantity, value)| Reading {
                            quantity,
                            value,
                            at: UnixSeconds(at),
                            flags: if k % 101 == 0 {
                                QaFlags::STUCK
                            } else {
                                QaFlags::NONE
                            },
                            window_s: Some(1200),
                        })
                        .collect();
                    writer.blocking_send(&post, readings);
                    at += 1200;
                    k += 1;
                }
            }
            writer.finish();
        }
    })
    .await
    .unwrap();

    let store = Store::sqlite(&path).unwrap();
    let norms = Norms::load(taza_score::EMBEDDED, None).unwrap();
    taza_api::scoring::refresh_aggregates(&store, Arc::new(norms.clone()))
        .await
        .unwrap();
    let before_cards = scorecards(&store, &norms).await;
    assert!(
        before_cards.iter().all(|c| c.air_posts == POSTS.len()),
        "{before_cards:?}"
    );
    let conn = taza_store::open_connection(&path).unwrap();
    let before_tables = kept_tables(&conn);
    for (table, rows) in &before_tables {
        assert!(!rows.is_empty(), "{table} is empty before pruning");
    }
    let raw_before = count(&conn, "SELECT count(*) FROM samples");
    let oldest_before = count(&conn, "SELECT min(at) FROM samples");
    assert!(oldest_before < now - 499 * DAY_S);

    let section: Section =
        toml::from_str(&format!("[store]\nraw_retention = \"{RETENTION}\"\n")).unwrap();
    let retention = section.store.raw_retention.unwrap();
    let deleted = taza_store::writer::prune(&conn, retention).unwrap();

    // About 100 of the 500 days are gone from the raw readings, and nothing newer.
    let raw_after = count(&conn, "SELECT count(*) FROM samples");
    assert_eq!(raw_before - raw_after, deleted as i64);
    let per_day = 72 * 2 * POSTS.len() as i64;
    assert!(
        (deleted as i64 - 100 * per_day).abs() <= per_day,
        "deleted {deleted}"
    );
    let oldest_after = count(&conn, "SELECT min(at) FROM samples");
    assert!(oldest_after >= now - 400 * DAY_S - 60, "{oldest_after}");
    assert!(oldest_after < now - 399 * DAY_S, "{oldest_after}");

    // Rollups and day aggregates are as they were, row for row.
    let after_tables = kept_tables(&conn);
    for ((table, before), (_, after)) in before_tables.iter().zip(&after_tables) {
        assert_eq!(before, after, "{table} changed by pruning");
    }
    // So are the scorecards, also when every day is aggregated again from what is left.
    assert_eq!(scorecards(&store, &norms).await, before_cards);
    // (Forgetting the rules' fingerprint recomputes every day from its buckets.)
    conn.execute(
        "DELETE FROM store_meta WHERE key = 'day_scores_fingerprint'",
        [],
    )
    .unwrap();
    taza_api::scoring::refresh_aggregates(&store, Arc::new(norms.clone()))
        .await
        .unwrap();
    assert_eq!(scorecards(&store, &norms).await, before_cards);
    assert_eq!(
        rows(&conn, "day_scores_year"),
        before_tables[3].1,
        "day aggregates recomputed from the kept rollups"
    );
}
