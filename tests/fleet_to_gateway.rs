//! The simulated fleet (the post firmware core on the host) publishes through the gateway's
//! embedded broker into the gateway. One post is cut off the network for an hour of simulated
//! time; afterwards its store-and-forward queue replays the backlog, and the gateway stores
//! every reading exactly once with its original timestamp: the minute series has no gap and no
//! duplicate.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

#[path = "support/ports.rs"]
mod ports;
use ports::free_port;

use std::time::{Duration, Instant};

use protocol::post_config::PostConfig;
use protocol::UnixSeconds;
use taza_gateway::config::Config;
use taza_sim::{Fleet, Outage, SimOptions};
use tokio_util::sync::CancellationToken;

/// (count, first, last) of a post's pm2_5 minute series in the store.
fn series(db: &std::path::Path, post: &str) -> (i64, i64, i64) {
    let Ok(conn) =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
    else {
        return (0, 0, 0);
    };
    conn.query_row(
        "SELECT count(*), coalesce(min(at), 0), coalesce(max(at), 0) FROM readings WHERE post = ?1 AND quantity = 'pm2_5'",
        [post],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )
    .unwrap_or((0, 0, 0))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_cut_off_for_an_hour_replays_its_backlog_and_every_reading_is_stored_once() {
    let fleet = Fleet::default_almaty(7).limit(2, 1);
    let cut = fleet.posts()[0].id.clone();
    let dir = tempfile::tempdir().unwrap();

    let mut config = Config::default();
    config.store.data_dir = dir.path().to_path_buf();
    config.api.listen = "127.0.0.1:0".parse().unwrap();
    config.mqtt.listen = std::net::SocketAddr::from(([127, 0, 0, 1], free_port()));
    config.posts = taza_gateway::demo::registry_entries(&fleet, Duration::from_secs(60));
    let shutdown = CancellationToken::new();
    let gateway = taza_gateway::start(config, shutdown.clone()).await.unwrap();
    let (host, port) = gateway.broker_endpoint();

    // Six hours ago on a whole minute (windows are epoch-aligned); the cut post is offline from
    // 10 minutes in to 70 minutes in.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let start = UnixSeconds((now - 6 * 3600) / 60 * 60);
    let (outage_from, outage_to) = (start.offset(600), start.offset(600 + 3600));
    let options = SimOptions {
        rate: 240.0,
        start: Some(start),
        config: PostConfig {
            sample_interval_s: 10,
            window_s: 60,
            warm_up_s: 60,
            ..PostConfig::default()
        },
        faults: false,
        outages: vec![Outage {
            post: cut.clone(),
            from: outage_from,
            to: outage_to,
        }],
        ..SimOptions::default()
    };
    let sim_stop = shutdown.child_token();
    let sim_fleet = fleet.clone();
    let stopped = sim_stop.clone().cancelled_owned();
    let sim = tokio::spawn(async move {
        taza_sim::run(sim_fleet, &host, port, "taza", options, stopped).await
    });

    let db = dir.path().join(taza_store::DB_FILE);
    let wanted_last = outage_to.offset(600).0;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (_, _, last) = series(&db, cut.as_str());
        if last >= wanted_last {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "cut post reached only {last}, wanted {wanted_last}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    sim_stop.cancel();
    let report = tokio::time::timeout(Duration::from_secs(20), sim)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    gateway.stop().await;

    let (count, first, last) = series(&db, cut.as_str());
    assert!(
        first < outage_from.0 && last >= wanted_last,
        "series spans the outage: {first}..{last}"
    );
    assert_eq!(
        count,
        (last - first) / 60 + 1,
        "one reading per minute from {first} to {last}: no gap, no duplicate"
    );

    let conn = rusqlite::Connection::open(&db).unwrap();
    let during: i64 = conn
        .query_row(
            "SELECT count(*) FROM readings WHERE post = ?1 AND quantity = 'pm2_5' AND at > ?2 AND at <= ?3",
            rusqlite::params![cut.as_str(), outage_from.0, outage_to.0],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(
        during, 60,
        "the hour offline arrived later with its original timestamps"
    );
    // Rollups count each reading once: the hourly counts add up to the raw rows.
    let rolled: i64 = conn
        .query_row(
            "SELECT coalesce(sum(count), 0) FROM rollup_hour WHERE post = ?1 AND quantity = 'pm2_5'",
            [cut.as_str()],
            |r| r.get(0),
        )
        .unwrap();
    let valid: i64 = conn
        .query_row(
            "SELECT count(*) FROM readings WHERE post = ?1 AND quantity = 'pm2_5' AND flags & ?2 = 0",
            rusqlite::params![cut.as_str(), protocol::QaFlags::INVALIDATING.0],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(rolled, valid);

    let cut_report = report.posts.iter().find(|r| r.id == cut).unwrap();
    assert!(
        cut_report.reconnects >= 1,
        "the cut post reconnected: {cut_report:?}"
    );
    assert_eq!(
        cut_report.dropped, 0,
        "its queue held the whole hour: {cut_report:?}"
    );
    for p in fleet.posts() {
        let n: i64 = conn
            .query_row(
                "SELECT count(*) FROM readings WHERE post = ?1",
                [p.id.as_str()],
                |r| r.get(0),
            )
            .unwrap();
        assert!(n > 0, "{} stored nothing", p.id);
    }
}
