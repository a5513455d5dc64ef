//! Replicas: two gateway processes (own client ids, own data dirs) in one `[mqtt] shared_group`
//! behind Mosquitto's shared subscriptions. Every reading is stored by exactly one of them, both
//! store a real share, and (with VictoriaMetrics installed) the long-term store both feed holds
//! every reading once: the city-wide view.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use protocol::{Quantity, UnixSeconds};

use crate::sink::{recent_start, sink_config, victoria_binary, Victoria};
use crate::support::*;

const POSTS: usize = 40;
const PER_POST: usize = 50;
const GROUP: &str = "taza-gateways";
const PROBE_POST: &str = "probe-0";

/// Every stored (post, quantity, time) in a replica's store.
fn identities(data_dir: &Path) -> Vec<(String, String, i64)> {
    let path = data_dir.join(taza_store::DB_FILE);
    let Ok(conn) =
        rusqlite::Connection::open_with_flags(&path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
    else {
        return Vec::new();
    };
    let Ok(mut stmt) = conn.prepare("SELECT post, quantity, at FROM readings") else {
        return Vec::new();
    };
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .and_then(Iterator::collect)
        .unwrap_or_default()
}

fn probes(data_dir: &Path) -> usize {
    identities(data_dir)
        .iter()
        .filter(|(p, _, _)| p == PROBE_POST)
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_in_a_shared_group_store_every_reading_exactly_once_between_them() {
    let test = "two_replicas_in_a_shared_group_store_every_reading_exactly_once_between_them";
    let Some(bin) = mosquitto_binary(test) else {
        return;
    };
    let broker = Mosquitto::start(&bin);
    // The long-term store both replicas feed, when VictoriaMetrics is installed.
    let victoria =
        victoria_binary(&format!("{test} (its VictoriaMetrics part)")).map(|b| Victoria::start(&b));

    let mut posts: Vec<_> = (0..POSTS)
        .map(|i| air_post(&format!("rep-{i:02}")))
        .collect();
    posts.push(air_post(PROBE_POST));
    let t0 = recent_start() - 3600;
    let mut messages = Vec::with_capacity(POSTS * PER_POST);
    for k in 0..PER_POST {
        for p in posts.iter().take(POSTS) {
            let at = UnixSeconds(t0 + k as i64 * 60);
            messages.push((
                telemetry_topic(p.id.as_str()),
                cbor(p.id.as_str(), &[m_at(Quantity::Pm2_5, k as f64, at)]),
            ));
        }
    }
    let total = messages.len();
    assert_eq!(total, 2_000);

    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let mut replicas = Vec::new();
    for (i, dir) in dirs.iter().enumerate() {
        let mut config = match &victoria {
            Some(vm) => {
                let mut c = sink_config(dir.path(), posts.clone(), vm.url());
                c.mqtt.broker = test_config(dir.path(), Vec::new(), Some(broker.port))
                    .mqtt
                    .broker;
                c
            }
            None => test_config(dir.path(), posts.clone(), Some(broker.port)),
        };
        config.mqtt.client_id = format!("gw-replica-{i}-{}", unique());
        config.mqtt.shared_group = Some(GROUP.into());
        config.api.listen = std::net::SocketAddr::from(([127, 0, 0, 1], free_port()));
        let file = dir.path().join("taza.toml");
        std::fs::write(&file, config.to_redacted_toml()).unwrap();
        let http = config.api.listen;
        replicas.push((GatewayProcess::start(&file), http));
    }
    for (_, http) in &replicas {
        let http = *http;
        wait_until("replica healthy", Duration::from_secs(20), || async move {
            tokio::net::TcpStream::connect(http).await.is_ok()
                && http_get(http, "/healthz").await.0 == 200
        })
        .await;
    }

    // Connected is not yet subscribed: probe readings (from a post outside the checked set)
    // until each replica has stored one, so both are in the group before the stream starts.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut probe = 0;
    while probes(dirs[0].path()) == 0 || probes(dirs[1].path()) == 0 {
        assert!(
            Instant::now() < deadline,
            "both replicas did not join the shared subscription"
        );
        probe += 1;
        publish_all(
            broker.port,
            vec![(
                telemetry_topic(PROBE_POST),
                cbor(
                    PROBE_POST,
                    &[m_at(Quantity::Pm2_5, 1.0, UnixSeconds(t0 - probe * 60))],
                ),
            )],
        )
        .await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    publish_all(broker.port, messages).await;
    let stored = |dir: &Path| {
        identities(dir)
            .into_iter()
            .filter(|(p, _, _)| p != PROBE_POST)
            .collect::<Vec<_>>()
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let n = stored(dirs[0].path()).len() + stored(dirs[1].path()).len();
        if n >= total {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "only {n} of {total} readings stored across the replicas"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A clean stop drains anything still in flight, which would show up as a duplicate below.
    for (process, _) in replicas {
        assert!(
            process.terminate().success(),
            "a replica did not stop cleanly"
        );
    }

    let shares = [stored(dirs[0].path()), stored(dirs[1].path())];
    let mut seen: BTreeMap<(String, String, i64), usize> = BTreeMap::new();
    for id in shares.iter().flatten() {
        *seen.entry(id.clone()).or_default() += 1;
    }
    let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "stored by both replicas: {twice:?}");
    let mut expected = BTreeMap::new();
    for p in posts.iter().take(POSTS) {
        for k in 0..PER_POST {
            expected.insert(
                (
                    p.id.as_str().to_string(),
                    "pm2_5".to_string(),
                    t0 + k as i64 * 60,
                ),
                1,
            );
        }
    }
    assert_eq!(
        seen, expected,
        "every (post, quantity, time) stored exactly once across the two stores"
    );
    let (a, b) = (shares[0].len(), shares[1].len());
    eprintln!("replica shares of {total}: {a} and {b}");
    assert!(
        a >= total / 10 && b >= total / 10,
        "both replicas take a real share: {a} and {b}"
    );

    let Some(vm) = victoria else { return };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let series = vm.export("air_value").await;
        let mut points: BTreeMap<(String, i64), usize> = BTreeMap::new();
        for (_, labels, samples) in &series {
            let Some(post) = labels.get("post").filter(|p| *p != PROBE_POST) else {
                continue;
            };
            for (ms, _) in samples {
                *points.entry((post.clone(), ms / 1000)).or_default() += 1;
            }
        }
        let want: BTreeMap<(String, i64), usize> = expected
            .keys()
            .map(|(p, _, at)| ((p.clone(), *at), 1))
            .collect();
        if points == want {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "VictoriaMetrics holds {} of {} readings once (or some twice)",
            points.values().filter(|n| **n == 1).count(),
            want.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
