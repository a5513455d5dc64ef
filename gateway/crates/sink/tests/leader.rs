//! Two replicas' sinks on one PostgreSQL queue (each with its leader lease, as two gateway
//! processes have), against a fake InfluxDB that records every point it accepts: only the
//! leader drains, and when it dies (its tasks stop where they are, its lease connection
//! closes) the other finishes the queue. Waits are on observed state with deadlines.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use protocol::{PostId, QaFlags, Quantity, UnixSeconds};
use taza_domain::pipeline::Reading;
use taza_sink::{InfluxConfig, SinkMetrics};
use taza_store::pg::{lease, PgStore};
use taza_store::{sink_queue, Store};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

const WITHIN: Duration = Duration::from_secs(30);

/// Lines InfluxDB accepted, in arrival order.
#[derive(Clone, Default)]
struct Influx(Arc<Mutex<Vec<String>>>);

impl Influx {
    async fn start() -> (Self, String) {
        let influx = Self::default();
        let app = axum::Router::new()
            .route(
                "/api/v2/write",
                axum::routing::post(|State(i): State<Self>, body: String| async move {
                    i.0.lock().unwrap().extend(body.lines().map(String::from));
                    axum::http::StatusCode::NO_CONTENT
                }),
            )
            .route("/health", axum::routing::get(|| async { "ok" }))
            .with_state(influx.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (influx, url)
    }

    fn lines(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
}

struct Replica {
    store: Store,
    metrics: SinkMetrics,
    stop: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

impl Replica {
    async fn start(url: &str, influx: &str) -> Self {
        let pg = PgStore::connect(url).await.unwrap();
        let cfg: InfluxConfig = toml::from_str(&format!(
            "url = \"{influx}\"\norg = \"o\"\nbucket = \"b\"\ntoken = \"t\"\n\
             batch_size = 10\nflush_every = \"100ms\"\n"
        ))
        .unwrap();
        let stop = CancellationToken::new();
        let metrics = SinkMetrics::new();
        let (leader, lease) = lease::spawn(pg.clone(), stop.clone());
        let store = Store::Pg(pg);
        let sink =
            taza_sink::spawn(cfg, store.clone(), leader, metrics.clone(), stop.clone()).unwrap();
        Self {
            store,
            metrics,
            stop,
            tasks: vec![lease, sink],
        }
    }

    async fn kill(self) {
        for t in &self.tasks {
            t.abort();
        }
        for t in self.tasks {
            let _ = t.await;
        }
    }

    async fn stop(self) {
        self.stop.cancel();
        for t in self.tasks {
            t.await.unwrap();
        }
    }
}

async fn queue(store: &Store, from: i64, n: i64) {
    let readings: Vec<Reading> = (from..from + n)
        .map(|i| Reading {
            quantity: Quantity::Pm10,
            value: i as f64,
            at: UnixSeconds(1_767_225_600 + i),
            flags: QaFlags(0),
            window_s: None,
        })
        .collect();
    store
        .write(move |db| sink_queue::enqueue(db, &PostId::parse("air-1").unwrap(), &readings))
        .await
        .unwrap();
}

async fn until<F: std::future::Future<Output = bool>>(what: &str, mut f: impl FnMut() -> F) {
    let start = Instant::now();
    while !f().await {
        assert!(start.elapsed() < WITHIN, "{what}: not within {WITHIN:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn drained(store: &Store) -> bool {
    store.read(sink_queue::backlog).await.unwrap() == 0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn only_the_leader_drains_the_shared_queue_and_the_next_one_finishes_it() {
    let Some(url) = taza_store::pg::test_server::database("sink::only_the_leader_drains") else {
        return;
    };
    let (influx, influx_url) = Influx::start().await;
    let a = Replica::start(&url, &influx_url).await;
    let b = Replica::start(&url, &influx_url).await;
    let store = a.store.clone();
    queue(&store, 0, 25).await;
    until("the queue drains", || drained(&store)).await;
    until("InfluxDB has every point", || async {
        influx.lines().len() >= 25
    })
    .await;
    let (wa, wb) = (a.metrics.points_written(), b.metrics.points_written());
    assert!(
        (wa, wb) == (25, 0) || (wa, wb) == (0, 25),
        "one replica wrote everything: {wa} + {wb}"
    );
    let (leader, follower) = if wa == 25 { (a, b) } else { (b, a) };

    leader.kill().await;
    queue(&store, 25, 15).await;
    until("the queue drains again", || drained(&store)).await;
    until("InfluxDB has the rest", || async {
        influx.lines().len() >= 40
    })
    .await;
    assert_eq!(follower.metrics.points_written(), 15, "by the new leader");
    follower.stop().await;

    let lines = influx.lines();
    assert_eq!(lines.len(), 40, "each point once: {lines:?}");
    for i in 0..40 {
        let at = format!(" {}", 1_767_225_600 + i);
        assert_eq!(lines.iter().filter(|l| l.ends_with(&at)).count(), 1, "{at}");
    }
}
