//! What the embedded broker's guard (`[mqtt] embedded_auth`) costs. Prints figures; asserts
//! nothing. One rumqttd, reached two ways in the same run: directly, and through the guard that
//! checks credentials at CONNECT and every PUBLISH's topic. Reported as ratios guard / direct.
//!
//! - flood: N QoS 1 publishes from one post, counted at a bare subscriber on rumqttd, msg/s;
//! - connects: CONNECT -> CONNACK round trips per second (the guard verifies a PBKDF2 hash).
//!
//! `cargo bench -p gateway --bench guard` (TAZA_BENCH_MESSAGES, default 50 000).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use protocol::PostId;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use taza_domain::post::{PostEntry, PostKind};
use taza_registry::manage;
use tokio_util::sync::CancellationToken;

const POST: &str = "bench-guard-01";
const TOPIC: &str = "taza/v1/posts/bench-guard-01/telemetry";

fn options(id: &str, addr: SocketAddr, password: Option<&str>) -> MqttOptions {
    let mut o = MqttOptions::new(id, addr.ip().to_string(), addr.port());
    o.set_keep_alive(Duration::from_secs(30))
        .set_inflight(1000)
        .set_max_packet_size(64 * 1024, 64 * 1024);
    if let Some(p) = password {
        o.set_credentials(POST, p);
    }
    o
}

/// Publishes `n` QoS 1 messages through `via`; returns msg/s seen by a subscriber on rumqttd.
async fn flood(via: SocketAddr, direct: SocketAddr, password: Option<&str>, n: usize) -> f64 {
    let (sub, mut sub_events) = AsyncClient::new(options("bench-sub", direct, None), 10_000);
    sub.subscribe(TOPIC, QoS::AtMostOnce).await.unwrap();
    loop {
        if let Event::Incoming(Packet::SubAck(_)) = sub_events.poll().await.unwrap() {
            break;
        }
    }
    let (publisher, mut pub_events) = AsyncClient::new(options(POST, via, password), 10_000);
    let driver = tokio::spawn(async move {
        loop {
            if pub_events.poll().await.is_err() {
                break;
            }
        }
    });
    let payload = vec![0xa5u8; 158]; // the size of a 6-reading CBOR pack
    let start = Instant::now();
    let sender = tokio::spawn(async move {
        for _ in 0..n {
            publisher
                .publish(TOPIC, QoS::AtLeastOnce, false, payload.clone())
                .await
                .unwrap();
        }
        publisher
    });
    let mut seen = 0;
    while seen < n {
        match tokio::time::timeout(Duration::from_secs(30), sub_events.poll()).await {
            Ok(Ok(Event::Incoming(Packet::Publish(_)))) => seen += 1,
            Ok(Ok(_)) => {}
            other => panic!("subscriber stopped after {seen} messages: {other:?}"),
        }
    }
    let rate = n as f64 / start.elapsed().as_secs_f64();
    let publisher = sender.await.unwrap();
    let _ = publisher.disconnect().await;
    let _ = sub.disconnect().await;
    driver.abort();
    rate
}

/// CONNECT -> CONNACK round trips per second, `n` sequential connections.
async fn connects(via: SocketAddr, password: Option<&str>, n: usize) -> f64 {
    let start = Instant::now();
    for i in 0..n {
        let id = if password.is_some() {
            POST.to_string()
        } else {
            format!("c{i}")
        };
        let (client, mut events) = AsyncClient::new(options(&id, via, password), 10);
        loop {
            match events.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => break,
                Ok(_) => {}
                Err(e) => panic!("connect failed: {e}"),
            }
        }
        let _ = client.disconnect().await;
        let _ = tokio::time::timeout(Duration::from_millis(50), events.poll()).await;
    }
    n as f64 / start.elapsed().as_secs_f64()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let n: usize = std::env::var("TAZA_BENCH_MESSAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50_000);
    // A registry with one provisioned post, in a real SQLite file.
    let dir = tempfile::tempdir().unwrap();
    let mut conn = rusqlite::Connection::open(dir.path().join("taza.db")).unwrap();
    taza_store::schema::migrate(&mut conn).unwrap();
    let mut entry = PostEntry::new(
        PostId::parse(POST).unwrap(),
        PostKind::Air,
        "bench",
        43.25,
        76.9,
    );
    entry.sensors = vec![protocol::Quantity::Pm2_5];
    let tx = conn.transaction().unwrap();
    let db = taza_store::Db::Sqlite(&tx);
    manage::add(&db, &entry, "bench", Duration::from_secs(60)).unwrap();
    let issued = manage::issue_credentials(&db, &entry.id, "bench").unwrap();
    tx.commit().unwrap();
    let registry = taza_registry::refresh::load_from(
        &taza_store::Db::Sqlite(&conn),
        Duration::from_secs(60),
        false,
    )
    .unwrap();
    let password = issued.password.expose().to_string();

    let direct = tokio::task::spawn_blocking(|| {
        taza_ingest::broker::start(SocketAddr::from(([127, 0, 0, 1], 0)))
    })
    .await
    .unwrap()
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let guarded = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    let _guard = taza_ingest::broker::guard::spawn(
        listener,
        direct,
        taza_ingest::broker::guard::Policy {
            prefix: "taza".into(),
            registry,
            metrics: taza_ingest::metrics::IngestMetrics::default(),
        },
        shutdown.clone(),
    );

    // Warm both paths, then alternate so neither profits from running second.
    flood(direct, direct, None, n / 10).await;
    flood(guarded, direct, Some(&password), n / 10).await;
    let mut rows = Vec::new();
    for round in 0..2 {
        let d = flood(direct, direct, None, n).await;
        let g = flood(guarded, direct, Some(&password), n).await;
        rows.push(("flood msg/s", round, d, g));
    }
    for round in 0..2 {
        let d = connects(direct, None, 200).await;
        let g = connects(guarded, Some(&password), 200).await;
        rows.push(("connects/s", round, d, g));
    }
    println!(
        "embedded broker guard: {n} QoS 1 messages of 158 B per flood run, 200 connects per run"
    );
    println!(
        "{:<12} {:>5} {:>12} {:>12} {:>14}",
        "figure", "round", "direct", "guarded", "guard/direct"
    );
    for (what, round, d, g) in rows {
        println!("{what:<12} {round:>5} {d:>12.0} {g:>12.0} {:>14.2}", g / d);
    }
    shutdown.cancel();
}
