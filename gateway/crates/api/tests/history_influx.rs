//! Reading history back from InfluxDB (`gateway report --source influxdb`): the Flux read path
//! (`taza_sink::history::read_series`) against a local HTTP server answering `/api/v2/query`
//! with annotated CSV in InfluxDB 2's documented format, built from the same readings a
//! SQLite store holds; the scorecard from it (`taza_api::scoring::city_scorecard_from_buckets`)
//! equals the store's (`city_scorecard_from`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use protocol::{PostId, QaFlags, Quantity, UnixSeconds};
use taza_domain::calendar::{self, LocalDay};
use taza_domain::pipeline::Reading;
use taza_score::Norms;
use taza_sink::history::{read_series, CheckError, HistoryPost};
use taza_sink::{InfluxClient, InfluxConfig};
use taza_store::config::StoreConfig;
use taza_store::Store;

const TOKEN: &str = "history-token-0123456789";
const CADENCE_S: i64 = 1200;
const POSTS: [&str; 2] = ["alm-001", "alm-002"];
const YEAR: i32 = 2019;

/// Readings of one post: 20-minute means (cadence 1200 s, no window given) of PM2.5, PM10 and
/// NO2 over the first 75 days of 2019, values in halves (sums are exact in any order, as
/// InfluxDB and SQLite add in different orders), some flagged STUCK, some afternoons high
/// enough for ВЗ episodes.
fn readings(post: usize) -> Vec<(Quantity, Reading)> {
    let start = LocalDay::of(chrono::NaiveDate::from_ymd_opt(YEAR, 1, 1).unwrap())
        .start
        .0;
    let mut out = Vec::new();
    for k in 0..75 * 72i64 {
        let at = start + (k + 1) * CADENCE_S;
        let hour = (at / 3600 + 5) % 24;
        for (qi, q) in [Quantity::Pm2_5, Quantity::Pm10, Quantity::No2]
            .into_iter()
            .enumerate()
        {
            // Gaps: some hours of some days missing (data capture below the rule).
            if (k / 72) % 9 == 4 && hour < 10 && qi == 0 {
                continue;
            }
            let base = [18.0, 40.0, 30.0][qi] + post as f64 * 2.5;
            let spike = if (k / 72) % 13 == 6 && (14..17).contains(&hour) {
                [2000.0, 4000.0, 2500.0][qi]
            } else {
                0.0
            };
            let value =
                base + (hour as f64) * 0.5 + ((k * 7 + qi as i64) % 11) as f64 * 1.5 + spike;
            let flags = if (k + qi as i64) % 97 == 0 {
                QaFlags::STUCK
            } else {
                QaFlags::NONE
            };
            out.push((
                q,
                Reading {
                    quantity: q,
                    value,
                    at: UnixSeconds(at),
                    flags,
                    window_s: None,
                },
            ));
        }
    }
    out
}

/// What InfluxDB answers to the bucket query of `every_s`: the valid readings folded per (post,
/// quantity, bucket holding `at - 1 s`), as one table of annotated CSV.
fn buckets_csv(every_s: i64) -> String {
    let mut buckets: BTreeMap<(String, &'static str, i64), (i64, f64, f64)> = BTreeMap::new();
    for (i, id) in POSTS.iter().enumerate() {
        for (q, r) in readings(i) {
            if !r.flags.is_valid_for_means() {
                continue;
            }
            let start = (r.at.0 - 1).div_euclid(every_s) * every_s;
            let b = buckets
                .entry((id.to_string(), q.as_str(), start))
                .or_insert((0, 0.0, f64::NEG_INFINITY));
            b.0 += 1;
            b.1 += r.value;
            b.2 = b.2.max(r.value);
        }
    }
    let mut csv = String::from(
        "#datatype,string,long,dateTime:RFC3339,long,double,string,string,double\r\n\
         #group,false,false,false,false,false,false,false,false\r\n\
         #default,_result,,,,,,,\r\n\
         ,result,table,_start,count,max,post,quantity,sum\r\n",
    );
    for ((post, q, start), (count, sum, max)) in buckets {
        writeln!(
            csv,
            ",,0,{},{count},{max},{post},{q},{sum}\r",
            calendar::rfc3339(UnixSeconds(start))
        )
        .unwrap();
    }
    csv.push_str("\r\n");
    csv
}

#[derive(Clone)]
struct Answers {
    hourly: String,
    twenty: String,
}

async fn query(
    State(answers): State<Answers>,
    headers: axum::http::HeaderMap,
    body: String,
) -> Response {
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(&format!("Token {TOKEN}"))
    {
        return (
            StatusCode::UNAUTHORIZED,
            r#"{"code":"unauthorized","message":"unauthorized access"}"#,
        )
            .into_response();
    }
    let asked: serde_json::Value = serde_json::from_str(&body).unwrap();
    let flux = asked["query"].as_str().unwrap().to_owned();
    assert!(flux.contains(r#"from(bucket: "taza")"#), "{flux}");
    assert!(flux.contains("timeShift(duration: -1s)"), "{flux}");
    let csv = if flux.contains("window(every: 20m)") {
        answers.twenty
    } else if flux.contains("window(every: 1h)")
        && flux.contains("range(start: 2018-12-31T18:00:01Z")
    {
        answers.hourly
    } else {
        // The recent hours (comparison views): nothing there. An empty result is an empty body.
        "\r\n".to_owned()
    };
    (
        StatusCode::OK,
        [("content-type", "text/csv; charset=utf-8")],
        csv,
    )
        .into_response()
}

async fn serve(answers: Answers) -> SocketAddr {
    let app = Router::new()
        .route("/api/v2/query", post(query))
        .with_state(answers);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

fn client(addr: SocketAddr) -> InfluxClient {
    let cfg: InfluxConfig = toml::from_str(&format!(
        "url = \"http://{addr}\"\norg = \"akimat\"\nbucket = \"taza\"\ntoken = \"{TOKEN}\"\n"
    ))
    .unwrap();
    InfluxClient::new(&cfg).unwrap()
}

/// The SQLite store with the same readings, and the posts as the history reader needs them.
async fn sqlite_store() -> (tempfile::TempDir, Store, Vec<HistoryPost>) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = StoreConfig {
        data_dir: dir.path().to_path_buf(),
        synchronous: taza_store::config::Synchronous::Normal,
        ..Default::default()
    };
    let path = taza_store::db_path(&cfg);
    tokio::task::spawn_blocking(move || {
        let conn = taza_store::open_writer(&cfg).unwrap();
        for (i, id) in POSTS.iter().enumerate() {
            conn.execute(
                "INSERT INTO posts (id, kind, name, latitude, longitude, district, sensors,
                                    cadence_s, updated_at, managed_by)
                 VALUES (?1, 'air', ?1, ?2, 76.95, 'Алмалинский', '[\"pm2_5\",\"pm10\",\"no2\"]',
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
            let all = readings(i);
            for chunk in all.chunks(3) {
                writer.blocking_send(&post, chunk.iter().map(|(_, r)| *r).collect());
            }
        }
        writer.finish();
    })
    .await
    .unwrap();
    let store = Store::sqlite(&path).unwrap();
    let descriptors = store
        .read(taza_store::read::post_descriptors)
        .await
        .unwrap();
    let posts = descriptors
        .into_iter()
        .map(|descriptor| HistoryPost {
            descriptor,
            cadence: Duration::from_secs(CADENCE_S as u64),
        })
        .collect();
    (dir, store, posts)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scorecard_from_influxdb_equals_the_one_from_sqlite_for_the_same_readings() {
    let norms = Norms::load(taza_score::EMBEDDED, None).unwrap();
    let (_dir, store, posts) = sqlite_store().await;
    let mut from_sqlite = taza_api::scoring::city_scorecard_from(&store, norms.clone(), YEAR)
        .await
        .unwrap();

    let addr = serve(Answers {
        hourly: buckets_csv(3600),
        twenty: buckets_csv(1200),
    })
    .await;
    let (from, to) = taza_api::scoring::scorecard_span(YEAR).unwrap();
    // Almaty was UTC+6 until March 2024.
    assert_eq!(calendar::rfc3339(from), "2018-12-31T18:00:00Z");
    let now = calendar::now();
    let series = read_series(
        &client(addr),
        &posts,
        &taza_score::days::SCORED,
        from,
        to,
        now.offset(-26 * 3600),
    )
    .await
    .unwrap();
    assert_eq!(series.len(), POSTS.len());
    assert!(series.iter().all(|p| p.series.len() == 3), "{series:?}");
    let mut from_influx =
        taza_api::scoring::city_scorecard_from_buckets(&norms, YEAR, series, now).unwrap();

    from_sqlite.generated_at = UnixSeconds(0);
    from_influx.generated_at = UnixSeconds(0);
    assert_eq!(from_sqlite.air_posts, POSTS.len());
    assert!(
        !from_sqlite.episodes.is_empty(),
        "the data has episodes (20-minute detail is compared too)"
    );
    assert!(from_sqlite
        .pollutants
        .iter()
        .any(|p| p.quantity == Quantity::Pm2_5));
    assert_eq!(from_influx, from_sqlite);
}

#[tokio::test]
async fn a_bucket_answer_that_is_not_the_documented_csv_is_a_clear_error() {
    let posts = vec![HistoryPost {
        descriptor: taza_score::PostDescriptor {
            id: PostId::parse("alm-001").unwrap(),
            kind: taza_score::PostKind::Air,
            lat_deg: 43.24,
            lon_deg: 76.95,
            district: None,
            river: None,
            critical_level: None,
        },
        cadence: Duration::from_secs(1200),
    }];
    let header = "#datatype,string,long,dateTime:RFC3339,long,double,string,string,double\r\n\
                  #group,false,false,false,false,false,false,false,false\r\n\
                  #default,_result,,,,,,,\r\n";
    for (csv, says) in [
        (
            format!("{header},result,table,_start,count,max,post,quantity,total\r\n,,0,2019-01-01T00:00:00Z,3,20,alm-001,pm2_5,60\r\n"),
            "no column \"sum\"",
        ),
        (
            format!("{header},result,table,_start,count,max,post,quantity,sum\r\n,,0,2019-01-01T00:00:00Z,3,20,alm-001,ozone,60\r\n"),
            "unknown quantity \"ozone\"",
        ),
        (
            format!("{header},result,table,_start,count,max,post,quantity,sum\r\n,,0,2019-01-01T00:00:00Z,0,20,alm-001,pm2_5,60\r\n"),
            "count 0",
        ),
        (
            format!("{header},result,table,_start,count,max,post,quantity,sum\r\n,,0,2019-01-01T00:00:00Z,three,20,alm-001,pm2_5,60\r\n"),
            "malformed",
        ),
    ] {
        let addr = serve(Answers {
            hourly: csv.clone(),
            twenty: csv,
        })
        .await;
        let (from, to) = taza_api::scoring::scorecard_span(YEAR).unwrap();
        let e = read_series(&client(addr), &posts, &taza_score::days::SCORED, from, to, to)
            .await
            .unwrap_err();
        assert!(matches!(e, CheckError::BadAnswer { .. }), "{e:?}");
        assert!(e.to_string().contains(says), "{says}: {e}");
    }
}
