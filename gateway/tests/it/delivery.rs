//! The delivery half of alerting against real receivers: notifications enqueued into a temp
//! SQLite outbox, the real delivery worker, and the SMTP / webhook / Telegram receivers from
//! [`crate::receivers`]. Waits are on recorded outcomes with deadlines, never fixed sleeps.

use std::path::PathBuf;
use std::time::Duration;

use rusqlite::Connection;
use taza_alert::channels::{
    self, ChannelsConfig, EmailConfig, FailureKind, RetryConfig, SmtpTls, TelegramConfig,
    WebhookConfig,
};
use taza_alert::deliver::{self, DeliveryMetrics};
use taza_domain::secret::SecretString;
use taza_store::outbox::{self, Channel, Notification, OutboxRow, OutboxState};
use taza_store::Db;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::receivers::{SmtpReceiver, TelegramReceiver, WebhookReceiver};

/// Generous: a loaded CI machine, not the expected time.
const WITHIN: Duration = Duration::from_secs(20);
const HOOK_SECRET: &str = "hook-secret-for-tests";
const BOT_TOKEN: &str = "4242:bot-token-for-tests";

fn retry(max_attempts: u32) -> RetryConfig {
    RetryConfig {
        initial: Duration::from_millis(100),
        max: Duration::from_millis(400),
        max_attempts,
    }
}

fn webhook(name: &str, url: String) -> WebhookConfig {
    WebhookConfig {
        name: name.into(),
        url,
        secret: SecretString::new(HOOK_SECRET),
    }
}

fn smtp(port: u16) -> EmailConfig {
    EmailConfig {
        host: "127.0.0.1".into(),
        port,
        tls: SmtpTls::None,
        username: None,
        password: None,
        from: "Taza <alerts@taza.test>".into(),
    }
}

/// A port nothing listens on.
fn dead_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn note(alert_id: i64, channel: Channel, recipient: &str) -> Notification {
    Notification {
        key: format!("{alert_id}:fired:{}:{recipient}", channel.as_str()),
        alert_id,
        channel,
        recipient: recipient.into(),
        subject: format!("PM2.5 above the one-time limit at almaty-{alert_id:03}"),
        text: format!("Acknowledge: http://127.0.0.1:8080/alerts/{alert_id}"),
        payload: serde_json::json!({"alert_id": alert_id, "event": "fired", "rule": "pm2_5_one_time"}),
    }
}

/// A temp outbox and, once started, the worker over it.
struct Harness {
    _dir: tempfile::TempDir,
    db: PathBuf,
    metrics: DeliveryMetrics,
    wake: Option<mpsc::Sender<()>>,
    shutdown: CancellationToken,
    worker: Option<JoinHandle<()>>,
}

impl Harness {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("taza.db");
        let conn = Connection::open(&db).unwrap();
        conn.pragma_update(None, "journal_mode", "wal").unwrap();
        conn.execute_batch(outbox::SCHEMA).unwrap();
        Self {
            _dir: dir,
            db,
            metrics: DeliveryMetrics::new(),
            wake: None,
            shutdown: CancellationToken::new(),
            worker: None,
        }
    }

    async fn started(cfg: ChannelsConfig) -> Self {
        let mut h = Self::new();
        h.start(cfg);
        h
    }

    fn start(&mut self, cfg: ChannelsConfig) {
        let (tx, rx) = mpsc::channel(1);
        self.wake = Some(tx);
        self.worker = Some(deliver::spawn(
            cfg,
            taza_store::Store::sqlite(&self.db).unwrap(),
            taza_store::pg::lease::Leader::always(),
            self.metrics.clone(),
            rx,
            self.shutdown.clone(),
        ));
    }

    /// Enqueues in its own transaction, then wakes the worker (what the lifecycle does).
    fn enqueue(&self, n: &Notification) -> bool {
        let mut conn = Connection::open(&self.db).unwrap();
        conn.busy_timeout(Duration::from_secs(5)).unwrap();
        let tx = conn.transaction().unwrap();
        let fresh = outbox::enqueue(&Db::Sqlite(&tx), n, taza_domain::calendar::now()).unwrap();
        tx.commit().unwrap();
        if let Some(w) = &self.wake {
            let _ = w.try_send(());
        }
        fresh
    }

    fn rows(&self, state: Option<OutboxState>) -> Vec<OutboxRow> {
        let conn = Connection::open(&self.db).unwrap();
        outbox::list(&Db::Sqlite(&conn), state, 100).unwrap()
    }

    fn row(&self, key: &str) -> OutboxRow {
        self.rows(None)
            .into_iter()
            .find(|r| r.key == key)
            .unwrap_or_else(|| panic!("no outbox row {key}"))
    }

    /// Waits until `done` holds for the outbox, re-checking after every recorded outcome.
    async fn wait_until(&self, what: &str, done: impl Fn(&[OutboxRow]) -> bool) -> Vec<OutboxRow> {
        let mut settled = self.metrics.settled();
        let deadline = tokio::time::Instant::now() + WITHIN;
        loop {
            let rows = self.rows(None);
            if done(&rows) {
                return rows;
            }
            if tokio::time::timeout_at(deadline, settled.changed())
                .await
                .is_err()
            {
                panic!("{what}: not reached within {WITHIN:?}; outbox: {rows:#?}");
            }
        }
    }

    async fn wait_state(&self, key: &str, state: OutboxState) -> OutboxRow {
        self.wait_until(&format!("{key} {state:?}"), |rows| {
            rows.iter().any(|r| r.key == key && r.state == state)
        })
        .await;
        self.row(key)
    }

    async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(w) = self.worker.take() {
            tokio::time::timeout(WITHIN, w)
                .await
                .expect("delivery worker did not stop")
                .unwrap();
        }
    }
}

#[tokio::test]
async fn webhook_and_email_are_delivered_signed_and_with_idempotency_keys() {
    let hook = WebhookReceiver::start().await;
    let mail = SmtpReceiver::start().await;
    let h = Harness::started(ChannelsConfig {
        webhooks: vec![webhook("ops", hook.url())],
        email: Some(smtp(mail.port())),
        retry: retry(5),
        ..Default::default()
    })
    .await;
    let to_hook = note(1, Channel::Webhook, "ops");
    let to_mail = note(1, Channel::Email, "duty@akimat.test");
    assert!(h.enqueue(&to_hook));
    assert!(h.enqueue(&to_mail));

    let requests = hook.wait_for(1, WITHIN).await;
    let r = &requests[0];
    assert_eq!(r.method, "POST");
    assert_eq!(r.uri, "/hook");
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.header("idempotency-key"), Some(to_hook.key.as_str()));
    let body = r.json();
    assert_eq!(body["idempotency_key"], to_hook.key.as_str());
    assert_eq!(body["alert_id"], 1);
    assert_eq!(body["rule"], "pm2_5_one_time");
    assert_eq!(
        r.header("x-taza-signature"),
        Some(channels::webhook::signature(HOOK_SECRET.as_bytes(), &r.body).as_str())
    );
    let sent_at: i64 = r.header("x-taza-timestamp").unwrap().parse().unwrap();
    assert!((sent_at - taza_domain::calendar::now().0).abs() < 60);

    let messages = mail.wait_for(1, WITHIN).await;
    let m = &messages[0];
    assert_eq!(m.from, "alerts@taza.test");
    assert_eq!(m.to, ["duty@akimat.test"]);
    assert_eq!(
        m.message_id(),
        Some(channels::email::message_id(&to_mail.key))
    );
    assert_eq!(m.header("Subject"), Some(to_mail.subject.clone()));
    assert!(
        m.data.contains("http://127.0.0.1:8080/alerts/1"),
        "{}",
        m.data
    );

    let hook_row = h.wait_state(&to_hook.key, OutboxState::Delivered).await;
    let mail_row = h.wait_state(&to_mail.key, OutboxState::Delivered).await;
    for row in [hook_row, mail_row] {
        assert_eq!(row.attempts, 1);
        assert!(row.delivered_at.is_some());
        assert_eq!(row.last_error, None);
    }
    assert_eq!(h.metrics.delivered(Channel::Webhook), 1);
    assert_eq!(h.metrics.delivered(Channel::Email), 1);
    h.stop().await;
}

#[tokio::test]
async fn webhook_that_is_down_is_retried_with_backoff_and_delivered_when_it_returns() {
    let mut hook = WebhookReceiver::start().await;
    hook.stop().await;
    let h = Harness::started(ChannelsConfig {
        webhooks: vec![webhook("ops", hook.url())],
        retry: retry(1000),
        ..Default::default()
    })
    .await;
    let n = note(2, Channel::Webhook, "ops");
    h.enqueue(&n);

    // Two refused attempts: the row is still pending, its error says why.
    h.wait_until("two refused attempts", |rows| {
        rows.iter().any(|r| r.key == n.key && r.attempts >= 2)
    })
    .await;
    let row = h.row(&n.key);
    assert_eq!(row.state, OutboxState::Pending);
    let error = row.last_error.unwrap_or_default();
    assert!(error.starts_with("connect:"), "{error}");
    assert!(h.metrics.failures(Channel::Webhook, FailureKind::Connect) >= 2);

    hook.restart().await;
    let row = h.wait_state(&n.key, OutboxState::Delivered).await;
    assert!(row.attempts >= 3, "{row:?}");
    let requests = hook.wait_for(1, WITHIN).await;
    assert_eq!(requests.len(), 1, "only the successful attempt reached it");
    assert_eq!(requests[0].header("idempotency-key"), Some(n.key.as_str()));
    h.stop().await;
}

#[tokio::test]
async fn webhook_answering_4xx_goes_dead_at_once_and_is_listed_as_dead() {
    let hook = WebhookReceiver::start().await;
    hook.answer_with(400);
    let h = Harness::started(ChannelsConfig {
        webhooks: vec![webhook("ops", hook.url())],
        retry: retry(5),
        ..Default::default()
    })
    .await;
    let n = note(3, Channel::Webhook, "ops");
    let unknown = note(3, Channel::Webhook, "nobody");
    h.enqueue(&n);
    h.enqueue(&unknown);

    let row = h.wait_state(&n.key, OutboxState::Dead).await;
    assert_eq!(row.attempts, 1);
    let error = row.last_error.clone().unwrap_or_default();
    assert!(error.contains("400"), "{error}");
    let row = h.wait_state(&unknown.key, OutboxState::Dead).await;
    assert!(
        row.last_error
            .unwrap_or_default()
            .starts_with("not_configured"),
        "a webhook name missing from config is a dead letter, not a retry loop"
    );

    let dead = h.rows(Some(OutboxState::Dead));
    assert_eq!(dead.len(), 2);
    assert!(h.rows(Some(OutboxState::Pending)).is_empty());
    assert_eq!(hook.messages().len(), 1, "a 400 is not retried");
    assert_eq!(h.metrics.dead(Channel::Webhook), 2);
    h.stop().await;
}

#[tokio::test]
async fn webhook_answering_5xx_is_retried_then_dead_after_max_attempts() {
    let hook = WebhookReceiver::start().await;
    hook.answer_with(503);
    let h = Harness::started(ChannelsConfig {
        webhooks: vec![webhook("ops", hook.url())],
        retry: retry(3),
        ..Default::default()
    })
    .await;
    let n = note(4, Channel::Webhook, "ops");
    h.enqueue(&n);
    let row = h.wait_state(&n.key, OutboxState::Dead).await;
    assert_eq!(row.attempts, 3);
    assert!(
        row.last_error
            .as_deref()
            .unwrap_or_default()
            .starts_with("gave up after 3 attempts"),
        "{row:?}"
    );
    let requests = hook.messages();
    assert_eq!(requests.len(), 3);
    assert!(requests
        .iter()
        .all(|r| r.answered == 503 && r.header("idempotency-key") == Some(n.key.as_str())));

    // An operator fixes the receiver and gives the dead letter another round.
    hook.answer_with(200);
    {
        let mut conn = Connection::open(&h.db).unwrap();
        let tx = conn.transaction().unwrap();
        assert!(outbox::requeue(&Db::Sqlite(&tx), row.id, taza_domain::calendar::now()).unwrap());
        tx.commit().unwrap();
    }
    h.wake.as_ref().unwrap().try_send(()).ok();
    h.wait_state(&n.key, OutboxState::Delivered).await;
    h.stop().await;
}

#[tokio::test]
async fn repeated_enqueue_with_the_same_key_sends_once() {
    let hook = WebhookReceiver::start().await;
    let mail = SmtpReceiver::start().await;
    let h = Harness::started(ChannelsConfig {
        webhooks: vec![webhook("ops", hook.url())],
        email: Some(smtp(mail.port())),
        retry: retry(5),
        ..Default::default()
    })
    .await;
    let to_hook = note(5, Channel::Webhook, "ops");
    let to_mail = note(5, Channel::Email, "duty@akimat.test");
    assert!(h.enqueue(&to_hook));
    assert!(!h.enqueue(&to_hook), "same key while pending");
    assert!(h.enqueue(&to_mail));
    h.wait_state(&to_hook.key, OutboxState::Delivered).await;
    h.wait_state(&to_mail.key, OutboxState::Delivered).await;
    assert!(!h.enqueue(&to_hook), "same key after delivery");
    assert!(!h.enqueue(&to_mail), "same key after delivery");

    // A later, different notification is delivered; by then any repeat would have gone out.
    let later = note(6, Channel::Webhook, "ops");
    assert!(h.enqueue(&later));
    h.wait_state(&later.key, OutboxState::Delivered).await;
    let keys: Vec<String> = hook
        .messages()
        .iter()
        .map(|r| r.header("idempotency-key").unwrap().to_string())
        .collect();
    assert_eq!(keys, [to_hook.key.clone(), later.key.clone()]);
    assert_eq!(mail.messages().len(), 1);
    assert_eq!(h.rows(None).len(), 3);
    h.stop().await;
}

#[tokio::test]
async fn telegram_message_is_delivered_after_waiting_out_a_rate_limit() {
    let tg = TelegramReceiver::start(BOT_TOKEN).await;
    tg.rate_limit_next(1, 1);
    let h = Harness::started(ChannelsConfig {
        telegram: Some(TelegramConfig {
            base_url: tg.base_url(),
            bot_token: SecretString::new(BOT_TOKEN),
        }),
        retry: retry(5),
        ..Default::default()
    })
    .await;
    let n = note(7, Channel::Telegram, "-1001234567890");
    h.enqueue(&n);
    let row = h.wait_state(&n.key, OutboxState::Delivered).await;
    assert_eq!(row.attempts, 2);
    let calls = tg.wait_for(2, WITHIN).await;
    assert_eq!(calls.len(), 2);
    assert!(calls.iter().all(|c| c.token == BOT_TOKEN));
    assert!(calls[0].rate_limited && !calls[1].rate_limited);
    let m = &calls[1];
    assert_eq!(m.chat_id(), "-1001234567890");
    assert_eq!(m.text(), format!("{}\n\n{}", n.subject, n.text));
    assert_eq!(m.body["disable_web_page_preview"], true);
    assert_eq!(
        h.metrics
            .failures(Channel::Telegram, FailureKind::RateLimited),
        1
    );
    h.stop().await;
}

#[tokio::test]
async fn telegram_bot_token_never_appears_in_errors() {
    // Wrong token: Telegram answers 401, a permanent refusal.
    let tg = TelegramReceiver::start("other:token").await;
    let h = Harness::started(ChannelsConfig {
        telegram: Some(TelegramConfig {
            base_url: tg.base_url(),
            bot_token: SecretString::new(BOT_TOKEN),
        }),
        retry: retry(5),
        ..Default::default()
    })
    .await;
    let n = note(8, Channel::Telegram, "42");
    h.enqueue(&n);
    let row = h.wait_state(&n.key, OutboxState::Dead).await;
    let error = row.last_error.unwrap_or_default();
    assert!(error.contains("401"), "{error}");
    assert!(!error.contains("bot-token-for-tests"), "{error}");
    h.stop().await;

    // Nobody listening: the connection error must not quote the URL (it holds the token).
    let h = Harness::started(ChannelsConfig {
        telegram: Some(TelegramConfig {
            base_url: format!("http://127.0.0.1:{}", dead_port()),
            bot_token: SecretString::new(BOT_TOKEN),
        }),
        retry: retry(1),
        ..Default::default()
    })
    .await;
    h.enqueue(&n);
    let row = h.wait_state(&n.key, OutboxState::Dead).await;
    let error = row.last_error.unwrap_or_default();
    assert!(error.contains("connect"), "{error}");
    assert!(!error.contains("bot-token-for-tests"), "{error}");
    let health = channels::healthcheck(&ChannelsConfig {
        telegram: Some(TelegramConfig {
            base_url: format!("http://127.0.0.1:{}", dead_port()),
            bot_token: SecretString::new(BOT_TOKEN),
        }),
        ..Default::default()
    })
    .await;
    let error = health[0].error.clone().unwrap_or_default();
    assert!(
        !error.is_empty() && !error.contains("bot-token-for-tests"),
        "{error}"
    );
    h.stop().await;
}

#[tokio::test]
async fn notification_leased_by_a_crashed_worker_is_sent_again_with_the_same_key() {
    let hook = WebhookReceiver::start().await;
    let mut h = Harness::new();
    let n = note(9, Channel::Webhook, "ops");
    h.enqueue(&n);
    // What a worker killed mid-attempt leaves behind: the attempt counted, a lease far ahead.
    Connection::open(&h.db)
        .unwrap()
        .execute(
            "UPDATE outbox SET attempts = 1, lease_until_ms = next_attempt_ms + 3600000",
            [],
        )
        .unwrap();
    h.start(ChannelsConfig {
        webhooks: vec![webhook("ops", hook.url())],
        retry: retry(5),
        ..Default::default()
    });
    let row = h.wait_state(&n.key, OutboxState::Delivered).await;
    assert_eq!(row.attempts, 2);
    assert_eq!(
        hook.messages()[0].header("idempotency-key"),
        Some(n.key.as_str())
    );
    h.stop().await;
}

#[tokio::test]
async fn healthcheck_reports_each_channel() {
    let hook = WebhookReceiver::start().await;
    let mail = SmtpReceiver::start().await;
    let tg = TelegramReceiver::start(BOT_TOKEN).await;
    let health = channels::healthcheck(&ChannelsConfig {
        webhooks: vec![
            webhook("ops", hook.url()),
            webhook("down", format!("http://127.0.0.1:{}/hook", dead_port())),
        ],
        telegram: Some(TelegramConfig {
            base_url: tg.base_url(),
            bot_token: SecretString::new(BOT_TOKEN),
        }),
        email: Some(smtp(mail.port())),
        retry: RetryConfig::default(),
    })
    .await;
    let by_target = |t: &str| health.iter().find(|c| c.target == t).unwrap().clone();
    assert!(by_target("ops").is_ok(), "{health:?}");
    assert!(!by_target("down").is_ok(), "{health:?}");
    assert!(by_target("telegram").is_ok(), "{health:?}");
    assert!(
        by_target(&format!("127.0.0.1:{}", mail.port())).is_ok(),
        "{health:?}"
    );
    assert!(mail.messages().is_empty(), "a health check sends no mail");
    assert!(tg.messages().is_empty(), "a health check sends no message");
}
