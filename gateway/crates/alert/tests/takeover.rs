//! Two replicas on one PostgreSQL database, each with its leader lease, alert evaluator and
//! delivery worker (as two gateway processes have), against a real local webhook receiver.
//! A replica "dies" as a SIGKILLed process does: its tasks stop at once, its lease connection
//! closes (the lock goes with it), nothing is flushed. Waits are on observed state with
//! deadlines, never fixed sleeps.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use protocol::{PostId, QaFlags, Quantity, UnixSeconds};
use taza_alert::channels::{ChannelsConfig, RetryConfig, WebhookConfig};
use taza_alert::deliver::{self, DeliveryMetrics};
use taza_alert::route::{Contact, OnCallConfig};
use taza_alert::{AlertConfig, Input, Leader};
use taza_domain::pipeline::Reading;
use taza_domain::post::{PostEntry, PostKind};
use taza_domain::registry::Registry;
use taza_domain::secret::SecretString;
use taza_store::outbox::{self, Channel, Notification, OutboxState};
use taza_store::pg::{commit_log, lease, PgStore};
use taza_store::{alerts, Db, Store, StoreError};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Generous: a loaded machine, not the expected time (a takeover takes about a second, a
/// repeat of an attempt in flight at the kill [`deliver::TAKEOVER_GRACE`]).
const WITHIN: Duration = Duration::from_secs(40);
const POST: &str = "air-1";

/// A webhook receiver that records every request's idempotency key and the status it gave.
#[derive(Clone, Default)]
struct Receiver {
    seen: Arc<Mutex<Vec<(String, u16)>>>,
    answer: Arc<Mutex<u16>>,
}

impl Receiver {
    async fn start(answer: u16) -> (Self, String) {
        let r = Self::default();
        *r.answer.lock().unwrap() = answer;
        let app = axum::Router::new()
            .route("/hook", axum::routing::post(Self::hook))
            .with_state(r.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (r, url)
    }

    async fn hook(State(r): State<Self>, headers: HeaderMap) -> StatusCode {
        let key = headers
            .get(taza_alert::channels::webhook::IDEMPOTENCY_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let status = *r.answer.lock().unwrap();
        r.seen.lock().unwrap().push((key, status));
        StatusCode::from_u16(status).unwrap()
    }

    fn answer(&self, status: u16) {
        *self.answer.lock().unwrap() = status;
    }

    fn seen(&self) -> Vec<(String, u16)> {
        self.seen.lock().unwrap().clone()
    }

    /// Requests for `key` that were accepted (2xx).
    fn accepted(&self, key: &str) -> usize {
        self.seen()
            .iter()
            .filter(|(k, s)| k == key && (200..300).contains(s))
            .count()
    }
}

fn channels(url: String) -> ChannelsConfig {
    ChannelsConfig {
        webhooks: vec![WebhookConfig {
            name: "ops".into(),
            url,
            secret: SecretString::new("hook-secret-for-tests"),
        }],
        retry: RetryConfig {
            initial: Duration::from_millis(100),
            max: Duration::from_millis(400),
            max_attempts: 1000,
        },
        ..Default::default()
    }
}

async fn until<F: std::future::Future<Output = bool>>(what: &str, mut f: impl FnMut() -> F) {
    let start = Instant::now();
    while !f().await {
        assert!(start.elapsed() < WITHIN, "{what}: not within {WITHIN:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One replica: its pool, lease and leader-only workers.
struct Replica {
    store: Store,
    metrics: DeliveryMetrics,
    stop: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

impl Replica {
    async fn connect(url: &str) -> (PgStore, Store) {
        let pg = PgStore::connect(url).await.unwrap();
        (pg.clone(), Store::Pg(pg))
    }

    /// The lease and a delivery worker alone.
    async fn delivering(url: &str, channels: ChannelsConfig) -> Self {
        let (pg, store) = Self::connect(url).await;
        let stop = CancellationToken::new();
        let metrics = DeliveryMetrics::new();
        let (leader, lease) = lease::spawn(pg, stop.clone());
        let (_wake, wake_rx) = tokio::sync::mpsc::channel(1);
        let worker = deliver::spawn(
            channels,
            store.clone(),
            leader,
            metrics.clone(),
            wake_rx,
            stop.clone(),
        );
        Self {
            store,
            metrics,
            stop,
            tasks: vec![lease, worker],
        }
    }

    /// The lease, the evaluator on the commit log and the delivery worker: the alert stage of
    /// a gateway on PostgreSQL.
    async fn alerting(url: &str, channels: ChannelsConfig) -> Self {
        let (pg, store) = Self::connect(url).await;
        let stop = CancellationToken::new();
        let metrics = DeliveryMetrics::new();
        let (leader, lease): (Leader, _) = lease::spawn(pg, stop.clone());
        let mut post = PostEntry::new(
            PostId::parse(POST).unwrap(),
            PostKind::Air,
            "Air one",
            43.2,
            76.9,
        );
        post.sensors = vec![Quantity::Pm2_5];
        let registry = Registry::new(&[post], Duration::from_secs(60), false);
        let cfg = AlertConfig {
            oncall: OnCallConfig {
                escalate_after: Duration::from_secs(900),
                contacts: vec![Contact {
                    name: "duty".into(),
                    level: 1,
                    lang: "en".into(),
                    email: None,
                    telegram_chat: None,
                    webhook: Some("ops".into()),
                    shift: None,
                }],
            },
            channels,
            ..Default::default()
        };
        let running = taza_alert::spawn(
            cfg,
            &Default::default(),
            store.clone(),
            leader,
            registry,
            Duration::from_secs(60),
            metrics.clone(),
            Input::CommitLog,
            stop.clone(),
        )
        .unwrap();
        Self {
            store,
            metrics,
            stop,
            tasks: vec![lease, running.evaluator, running.deliverer],
        }
    }

    fn leads(&self) -> bool {
        self.metrics.is_leader()
    }

    /// Dies like a SIGKILLed process: every task stops where it is; the lease connection closes.
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

async fn lease_holder(store: &Store) -> bool {
    store
        .read(|db| {
            let Db::Pg(p) = db else { unreachable!() };
            // Advisory locks are per database; other tests' databases have their own.
            Ok(p.query_opt(
                "SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted
                   AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
                   AND ((classid::bigint << 32) | objid::bigint) = $1",
                &[&lease::LEADER_LOCK],
            )?
            .is_some())
        })
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_notification_pending_when_the_leader_dies_is_delivered_once_by_the_next_leader() {
    let Some(url) = taza_store::pg::test_server::database("takeover::a_notification_pending")
    else {
        return;
    };
    let (hook, hook_url) = Receiver::start(503).await;
    let first = Replica::delivering(&url, channels(hook_url.clone())).await;
    let n = Notification {
        key: "41:fired:1:webhook:ops".into(),
        alert_id: 41,
        channel: Channel::Webhook,
        recipient: "ops".into(),
        subject: "PM2.5 above the one-time limit".into(),
        text: "t".into(),
        payload: serde_json::json!({"alert_id": 41}),
    };
    let queued = n.clone();
    first
        .store
        .write(move |db| outbox::enqueue(db, &queued, taza_domain::calendar::now()))
        .await
        .unwrap();
    // The first replica leads and keeps failing against the receiver: the page is pending.
    until("the first replica tries the webhook", || async {
        hook.seen().len() >= 2
    })
    .await;
    let second = Replica::delivering(&url, channels(hook_url)).await;
    let failed_before = hook.seen().len();
    assert_eq!(hook.accepted(&n.key), 0);

    first.kill().await;
    hook.answer(200);
    until("the page is delivered", || async {
        hook.accepted(&n.key) >= 1
    })
    .await;
    assert!(hook.seen().len() > failed_before);
    let store = second.store.clone();
    until("the delivery is recorded", || {
        let store = store.clone();
        async move {
            let rows = store
                .read(|db| outbox::list(db, Some(OutboxState::Delivered), 10))
                .await
                .unwrap();
            rows.len() == 1
        }
    })
    .await;
    assert_eq!(
        second.metrics.delivered(Channel::Webhook),
        1,
        "by the new leader"
    );
    second.stop().await;
    // Stopped: every request there will be is in.
    assert_eq!(
        hook.accepted(&n.key),
        1,
        "delivered once: {:?}",
        hook.seen()
    );
    assert!(hook.seen().iter().all(|(k, _)| *k == n.key));
    assert!(
        !lease_holder(&store).await,
        "the lease is released at shutdown"
    );
}

fn pm2_5(at: i64, value: f64) -> Reading {
    Reading {
        quantity: Quantity::Pm2_5,
        value,
        at: UnixSeconds(at),
        flags: QaFlags(0),
        window_s: None,
    }
}

/// What every replica's writer does: the readings into the commit log. Returns the entry's
/// sequence number.
async fn commit(store: &Store, readings: Vec<Reading>) -> i64 {
    store
        .write(move |db| {
            let Db::Pg(p) = db else { unreachable!() };
            let post = PostId::parse(POST).unwrap();
            commit_log::append(p, &post, &readings, taza_domain::calendar::now())?;
            commit_log::head(p)
        })
        .await
        .unwrap()
}

async fn cursor(store: &Store) -> i64 {
    store.read(alerts::log_cursor).await.unwrap().unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_episode_begun_under_one_leader_pages_once_and_resolves_once_under_the_next() {
    let Some(url) = taza_store::pg::test_server::database("takeover::an_episode_begun") else {
        return;
    };
    let (hook, hook_url) = Receiver::start(200).await;
    let a = Replica::alerting(&url, channels(hook_url.clone())).await;
    let b = Replica::alerting(&url, channels(hook_url)).await;
    until("a leader", || async { a.leads() || b.leads() }).await;
    let (leader, follower) = if a.leads() { (a, b) } else { (b, a) };
    assert!(!follower.leads());
    let store = follower.store.clone();

    // Sixteen minutes of 200 µg/m³ (ПДК м.р. 160, window 20 min): the one-time limit fires.
    let now = taza_domain::calendar::now().0;
    let high: Vec<Reading> = (0..16)
        .map(|i| pm2_5(now - 19 * 60 + i * 60, 200.0))
        .collect();
    commit(&store, high).await;
    until("the alert fires and its page is delivered", || async {
        hook.seen().len() == 1
    })
    .await;
    let open = store
        .read(|db| alerts::list(db, Some("open"), 10))
        .await
        .unwrap();
    let [alert] = open.try_into().unwrap();
    assert_eq!(alert.rule, "pm2_5_one_time_limit");
    let fired_key = format!("{}:fired:1:webhook:ops", alert.id);
    assert_eq!(hook.seen(), [(fired_key.clone(), 200)]);

    leader.kill().await;
    until("the follower leads", || async { follower.leads() }).await;

    // Four low readings: the 20-minute mean is still above the clear level (140) because the
    // new leader replayed the episode's readings. It must neither clear nor page again.
    let seq = commit(
        &store,
        (0..4).map(|i| pm2_5(now - 3 * 60 + i * 30, 10.0)).collect(),
    )
    .await;
    until("the new leader handled the entry", || async {
        cursor(&store).await >= seq
    })
    .await;
    let open = store
        .read(|db| alerts::list(db, Some("open"), 10))
        .await
        .unwrap();
    assert_eq!(open.len(), 1, "no premature clear: {open:?}");
    assert_eq!(open[0].id, alert.id);

    // Enough low readings to bring the mean down: the alert resolves, once.
    commit(
        &store,
        (0..30).map(|i| pm2_5(now - 60 + i * 2, 10.0)).collect(),
    )
    .await;
    let resolved_key = format!("{}:resolved:1:webhook:ops", alert.id);
    until("the alert resolves and its page is delivered", || async {
        hook.accepted(&resolved_key) == 1
    })
    .await;
    follower.stop().await;

    let all = store.read(|db| alerts::list(db, None, 10)).await.unwrap();
    assert_eq!(all.len(), 1, "one alert for the episode: {all:?}");
    assert_eq!(all[0].state, "resolved");
    let (_, events) = store
        .read(move |db| alerts::get(db, alert.id))
        .await
        .unwrap()
        .unwrap();
    let history: Vec<&str> = events.iter().map(|e| e.event.as_str()).collect();
    assert_eq!(history, ["fired", "resolved"]);
    assert_eq!(
        hook.seen(),
        [(fired_key, 200), (resolved_key, 200)],
        "paged once, told once"
    );
    let keys: Vec<String> = store
        .read(|db| outbox::list(db, None, 10))
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.key)
        .collect();
    assert_eq!(keys.len(), 2, "{keys:?}");
    // The log is kept for a next leader's replay (trimmed only past its window).
    let kept: Result<usize, StoreError> = store
        .read(|db| Ok(alerts::log_tail(db, 0, 100)?.len()))
        .await;
    assert_eq!(kept.unwrap(), 3);
}
