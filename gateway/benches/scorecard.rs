//! Benchmark: the city scorecard through the real HTTP API, on a real store.
//!
//! Builds a SQLite store with the gateway's own writer (the same group commits, rollups and
//! day-aggregate triggers as in production): 43 air posts (one per 50 000 people, targets.md) ×
//! 3 years of 20-minute means of PM2.5, PM10 and NO2, about 10 M readings. Then starts the
//! release `gateway` binary on it and times, over HTTP:
//! - the first request after start (the day aggregates computed for every stored day: what a
//!   store migrated from an earlier release pays once);
//! - one year's city scorecard uncached (after a late reading into a past day, so the data
//!   version moved and the aggregates of that day are recomputed first), and cached;
//! - the three-year view (`from_year`/`to_year`), uncached and cached;
//! - the post page's data (a month of scores and a week of hourly rollups).
//!
//! As the reference in the same run it computes the scorecard the way it was before the day
//! aggregates: from every hourly and 20-minute bucket read out of the same store.
//! Run: `cargo bench -p gateway --bench scorecard` (TAZA_BENCH_YEARS, default 3).
// A benchmark, not a service: anything unexpected ends the run with its message.
#![allow(clippy::expect_used, clippy::panic)]

use std::hint::black_box;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use protocol::{PostId, QaFlags, Quantity, UnixSeconds};
use taza_domain::calendar::LocalDay;
use taza_domain::pipeline::Reading;
use taza_domain::post::{PostEntry, PostKind as RegistryKind};
use taza_score::{HourlyMean, Norms, QuantitySeries, TwentyMinuteMean};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const POSTS: usize = 43;
const LAST_YEAR: i32 = 2025;
const RUNS: usize = 9;
const QUANTITIES: [Quantity; 3] = [Quantity::Pm2_5, Quantity::Pm10, Quantity::No2];

/// xorshift64*: deterministic synthetic noise without a rand dependency.
struct Rng(u64);

impl Rng {
    fn unit(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn series(q: Quantity, start: UnixSeconds, hours: i64, rng: &mut Rng) -> QuantitySeries {
    let base = match q {
        Quantity::Pm2_5 => 35.0,
        Quantity::Pm10 => 55.0,
        _ => 45.0,
    };
    let mut hourly = Vec::with_capacity(hours as usize);
    let mut twenty = Vec::with_capacity(hours as usize * 3);
    for h in 0..hours {
        let t = start.offset(h * 3600);
        // Winter heating season and evening peaks, with a few missing hours (about 3 %).
        let season = 1.0 + 0.8 * ((h as f64 / 8760.0) * std::f64::consts::TAU).cos();
        let diurnal = 1.0 + 0.4 * ((h % 24) as f64 / 24.0 * std::f64::consts::TAU).sin();
        let covered_s = if rng.unit() < 0.03 { 1200 } else { 3600 };
        let mut sum = 0.0;
        let mut max = f64::MIN;
        for k in 0..3 {
            let v = base
                * season
                * diurnal
                * (0.6 + 0.8 * rng.unit())
                * if rng.unit() < 0.002 { 6.0 } else { 1.0 };
            sum += v;
            max = max.max(v);
            twenty.push(TwentyMinuteMean {
                start: t.offset(k * 1200),
                mean: v,
                covered_s: covered_s / 3,
            });
        }
        hourly.push(HourlyMean {
            start: t,
            mean: sum / 3.0,
            covered_s,
            count: 60,
            max,
        });
    }
    QuantitySeries {
        days: Vec::new(),
        quantity: q,
        hourly,
        twenty_minute: twenty,
    }
}

fn rss_kib(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find(|l| l.starts_with(field))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn post_id(i: usize) -> String {
    format!("alm-{i:02}")
}

fn entries() -> Vec<PostEntry> {
    (0..POSTS)
        .map(|i| {
            let mut e = PostEntry::new(
                PostId::parse(&post_id(i)).expect("post id"),
                RegistryKind::Air,
                format!("Bench {i}"),
                43.2 + i as f64 * 0.003,
                76.85 + i as f64 * 0.004,
            );
            e.sensors = QUANTITIES.to_vec();
            e.cadence = Some(Duration::from_secs(1200));
            e
        })
        .collect()
}

/// Writes `years` of 20-minute means for every post through the store's own writer thread.
fn build_store(data_dir: &Path, first_year: i32, years: i32) -> usize {
    let cfg = taza_store::config::StoreConfig {
        data_dir: data_dir.to_path_buf(),
        synchronous: taza_store::config::Synchronous::Normal,
        ..Default::default()
    };
    let conn = taza_store::open_writer(&cfg).expect("open store");
    // The gateway registers the posts from its config file when it starts on this store.
    let registry =
        taza_domain::registry::Registry::new(&entries(), Duration::from_secs(1200), false);
    let writer = taza_store::writer::TestWriter::spawn(conn, registry);
    let start =
        LocalDay::of(chrono::NaiveDate::from_ymd_opt(first_year, 1, 1).expect("date")).start;
    let end =
        LocalDay::of(chrono::NaiveDate::from_ymd_opt(first_year + years, 1, 1).expect("date"))
            .start;
    let hours = (end.0 - start.0) / 3600;
    let mut rng = Rng(0x5EED_1234_ABCD_0001);
    let mut readings = 0;
    for i in 0..POSTS {
        let post = PostId::parse(&post_id(i)).expect("post id");
        let series: Vec<QuantitySeries> = QUANTITIES
            .iter()
            .map(|q| series(*q, start, hours, &mut rng))
            .collect();
        // One message per 20 minutes with the three pollutants, as a post would send them.
        for k in 0..series[0].twenty_minute.len() {
            let batch: Vec<Reading> = series
                .iter()
                .map(|s| {
                    let b = s.twenty_minute[k];
                    Reading {
                        quantity: s.quantity,
                        value: b.mean,
                        at: b.start.offset(1200),
                        flags: QaFlags::NONE,
                        window_s: Some(u32::try_from(b.covered_s).unwrap_or(1200)),
                    }
                })
                .collect();
            readings += batch.len();
            writer.blocking_send(&post, batch);
        }
    }
    writer.finish();
    readings
}

async fn http_get(addr: SocketAddr, path: &str) -> (u16, usize) {
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.expect("send");
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await.expect("read");
    let text = String::from_utf8_lossy(&raw);
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, raw.len())
}

async fn timed(addr: SocketAddr, path: &str) -> Duration {
    let t = Instant::now();
    let (status, _) = http_get(addr, path).await;
    let d = t.elapsed();
    assert_eq!(status, 200, "GET {path}");
    d
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

/// Publishes one late PM2.5 reading for a day of `LAST_YEAR` (a new time each call) and waits
/// until the gateway stored it, so the next scorecard request finds the data version moved.
async fn late_reading(addr: SocketAddr, client: &rumqttc::AsyncClient, stored: &mut f64, n: i64) {
    let day = LocalDay::of(chrono::NaiveDate::from_ymd_opt(LAST_YEAR, 6, 1).expect("date")).start;
    let m = protocol::Measurement {
        quantity: Quantity::Pm2_5,
        value: 50.0,
        // Between two 20-minute means: a new reading, not a replay.
        at: day.offset(n * 1200 + 600),
        flags: QaFlags::NONE,
        window_s: Some(60),
    };
    let mut buf = vec![0u8; protocol::senml::MAX_PAYLOAD_BYTES];
    let len = protocol::senml::encode(&PostId::parse(&post_id(0)).expect("id"), &[m], &mut buf)
        .expect("encode");
    buf.truncate(len);
    client
        .publish(
            format!("taza/v1/posts/{}/telemetry", post_id(0)),
            rumqttc::QoS::AtLeastOnce,
            false,
            buf,
        )
        .await
        .expect("publish");
    let want = *stored + 1.0;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let v = metric(addr, "taza_store_readings_stored_total").await;
        if v >= want {
            *stored = v;
            return;
        }
        assert!(Instant::now() < deadline, "late reading not stored");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn metric(addr: SocketAddr, series: &str) -> f64 {
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let req = format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.expect("send");
    let mut raw = String::new();
    s.read_to_string(&mut raw).await.expect("read");
    raw.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|v| v.trim().parse().ok()))
        .unwrap_or(0.0)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let years: i32 = std::env::var("TAZA_BENCH_YEARS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3)
        .clamp(1, 10);
    let first_year = LAST_YEAR - years + 1;
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    let t = Instant::now();
    let readings = build_store(&data, first_year, years);
    let built = t.elapsed();
    let db_mib = std::fs::metadata(data.join(taza_store::DB_FILE))?.len() as f64 / 1048576.0;
    println!(
        "store: {POSTS} posts x 3 pollutants x {years} years ({first_year}-{LAST_YEAR}) of 20-minute means: {readings} readings, {db_mib:.0} MiB, written by the store writer in {:.1} s ({:.0} readings/s)",
        built.as_secs_f64(),
        readings as f64 / built.as_secs_f64()
    );

    let runtime = tokio::runtime::Runtime::new()?;
    // Reference, same store, same process: the scorecard as computed before the day aggregates,
    // from every hourly and 20-minute bucket of the plan years.
    let norms = Norms::embedded()?;
    let pool = taza_store::ReadPool::new(&data.join(taza_store::DB_FILE));
    let reference = runtime.block_on(async {
        let mut times = Vec::new();
        for _ in 0..3 {
            let t = Instant::now();
            let posts = pool
                .run(move |c| {
                    let from =
                        LocalDay::of(chrono::NaiveDate::from_ymd_opt(2019, 1, 1).expect("date"))
                            .start;
                    let to = LocalDay::of(
                        chrono::NaiveDate::from_ymd_opt(LAST_YEAR + 1, 1, 1).expect("date"),
                    )
                    .start;
                    let db = taza_store::Db::Sqlite(c);
                    let d = taza_store::read::post_descriptors(&db)?;
                    taza_store::read::post_series(&db, d, &QUANTITIES, from, to)
                })
                .await
                .expect("read buckets");
            black_box(taza_score::city_scorecard(
                &norms,
                LAST_YEAR,
                &posts,
                taza_domain::calendar::now(),
            ));
            times.push(t.elapsed());
        }
        median(times)
    });
    println!(
        "reference (buckets, in process): {:.1} ms per scorecard of {LAST_YEAR}",
        ms(reference)
    );

    let http_port = free_port();
    let mqtt_port = free_port();
    let http: SocketAddr = format!("127.0.0.1:{http_port}").parse()?;
    let mut toml = format!(
        "[store]\ndata_dir = \"{}\"\n[api]\nlisten = \"{http}\"\n[mqtt]\nlisten = \"127.0.0.1:{mqtt_port}\"\n",
        data.display()
    );
    for e in entries() {
        toml.push_str(&format!(
            "\n[[posts]]\nid = \"{}\"\nkind = \"air\"\nname = \"{}\"\nlatitude = {}\nlongitude = {}\nsensors = [\"pm2_5\", \"pm10\", \"no2\"]\ncadence = \"20m\"\n",
            e.id, e.name, e.latitude, e.longitude
        ));
    }
    let config = dir.path().join("taza.toml");
    std::fs::write(&config, toml)?;
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_gateway"));
    cmd.arg("--config")
        .arg(&config)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    let mut child = cmd.spawn()?;
    let result = runtime.block_on(async {
        let deadline = Instant::now() + Duration::from_secs(30);
        while tokio::net::TcpStream::connect(http).await.is_err() {
            assert!(Instant::now() < deadline, "gateway did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let mut options = rumqttc::MqttOptions::new("bench-late", "127.0.0.1", mqtt_port);
        options.set_keep_alive(Duration::from_secs(30));
        let (client, mut eventloop) = rumqttc::AsyncClient::new(options, 64);
        tokio::spawn(async move { while eventloop.poll().await.is_ok() {} });

        let year = format!("/api/v1/scores/city?year={LAST_YEAR}");
        let span = format!("/api/v1/scores/city?from_year={first_year}&to_year={LAST_YEAR}");
        let first = timed(http, &year).await;
        println!("first request after start (day aggregates of every stored day computed): {:.0} ms", ms(first));

        // Where an uncached scorecard's time goes, in this process on the same store: reading the
        // aggregates (and the last day of hours) versus the engine.
        let (read_t, engine_t) = {
            let mut reads = Vec::new();
            let mut engines = Vec::new();
            for _ in 0..5 {
                let t = Instant::now();
                let posts = pool
                    .run(move |c| {
                        let db = taza_store::Db::Sqlite(c);
                        let d = taza_store::read::post_descriptors(&db)?;
                        taza_store::day_scores::day_series(
                            &db,
                            d,
                            &QUANTITIES,
                            chrono::NaiveDate::from_ymd_opt(2019, 1, 1).expect("date"),
                            chrono::NaiveDate::from_ymd_opt(LAST_YEAR + 1, 1, 1).expect("date"),
                            taza_domain::calendar::now().offset(-26 * 3600),
                            &|_, _| false,
                        )
                    })
                    .await
                    .expect("read aggregates");
                reads.push(t.elapsed());
                let t = Instant::now();
                black_box(taza_score::city_scorecard(&norms, LAST_YEAR, &posts, taza_domain::calendar::now()));
                engines.push(t.elapsed());
            }
            (median(reads), median(engines))
        };
        println!(
            "in process: reading the aggregates {:.1} ms, the engine on them {:.1} ms",
            ms(read_t),
            ms(engine_t)
        );
        let mut stored = metric(http, "taza_store_readings_stored_total").await;
        let (mut one_cold, mut one_warm, mut all_cold, mut all_warm) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for n in 0..RUNS as i64 {
            late_reading(http, &client, &mut stored, 2 * n).await;
            one_cold.push(timed(http, &year).await);
            one_warm.push(timed(http, &year).await);
            late_reading(http, &client, &mut stored, 2 * n + 1).await;
            all_cold.push(timed(http, &span).await);
            all_warm.push(timed(http, &span).await);
        }
        let post = post_id(1);
        let month = format!("/api/v1/scores/posts/{post}?from={LAST_YEAR}-12-01T00:00:00%2B05:00&to={}-01-01T00:00:00%2B05:00", LAST_YEAR + 1);
        let week = format!("/api/v1/posts/{post}/rollups?quantity=pm2_5&period=hour&from={LAST_YEAR}-12-24T00:00:00%2B05:00");
        let mut page = Vec::new();
        for _ in 0..RUNS {
            page.push(timed(http, &month).await + timed(http, &week).await);
        }
        let (one_cold, one_warm, all_cold, all_warm, page) =
            (median(one_cold), median(one_warm), median(all_cold), median(all_warm), median(page));
        let verdict = |d: Duration, aim_ms: f64| if ms(d) < aim_ms { "met" } else { "MISSED" };
        println!();
        println!("| through HTTP (median of {RUNS})                  | ms     | aim     | x reference |");
        println!("|-----------------------------------------------|--------|---------|-------------|");
        println!("| city scorecard {LAST_YEAR}, uncached (after a late reading) | {:6.1} | < 50 {} | {:6.3}      |", ms(one_cold), verdict(one_cold, 50.0), ms(one_cold) / ms(reference));
        println!("| city scorecard {LAST_YEAR}, cached                 | {:6.1} |         | {:6.3}      |", ms(one_warm), ms(one_warm) / ms(reference));
        println!("| {first_year}-{LAST_YEAR} view, uncached                     | {:6.1} | < 150 {} |             |", ms(all_cold), verdict(all_cold, 150.0));
        println!("| {first_year}-{LAST_YEAR} view, cached (aggregates read again) | {:6.1} |         |             |", ms(all_warm));
        println!("| post page data (month of scores + week of hours) | {:6.1} | < 20 {} |             |", ms(page), verdict(page, 20.0));
        println!("reference: {:.1} ms, the {LAST_YEAR} scorecard from every bucket (before day aggregates), same store", ms(reference));
        Ok::<(), Box<dyn std::error::Error>>(())
    });
    let _ = child.kill();
    let _ = child.wait();
    if let Some(kib) = rss_kib("VmHWM:") {
        println!("bench process peak RSS: {} MiB", kib / 1024);
    }
    result
}
