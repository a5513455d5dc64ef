//! `/healthz` with its outputs failing: a sink pointed at nothing and alert notifications that
//! went dead keep HTTP 200 ("degraded") and say what is wrong; a lost broker is 503 ("failing").

use std::time::Duration;

use protocol::Quantity;
use rusqlite::Connection;
use taza_alert::channels::{RetryConfig, WebhookConfig};
use taza_domain::secret::SecretString;
use taza_store::outbox::{self, Channel, Notification};
use tokio_util::sync::CancellationToken;

use crate::receivers::WebhookReceiver;
use crate::sink::sink_config;
use crate::support::*;

fn note(channel: Channel, recipient: &str) -> Notification {
    Notification {
        key: format!("1:fired:{}:{recipient}", channel.as_str()),
        alert_id: 1,
        channel,
        recipient: recipient.into(),
        subject: "PM2.5 above the one-time limit".into(),
        text: "test".into(),
        payload: serde_json::json!({"alert_id": 1}),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_is_200_degraded_with_a_failing_sink_and_dead_letters_and_names_them() {
    let dir = tempfile::tempdir().unwrap();
    let hook = WebhookReceiver::start().await;
    hook.answer_with(400);
    let nothing = free_port();
    let mut config = sink_config(
        dir.path(),
        vec![air_post("alm-health")],
        format!("http://127.0.0.1:{nothing}"),
    );
    config.alert.channels.webhooks = vec![WebhookConfig {
        name: "ops".into(),
        url: hook.url(),
        secret: SecretString::new("hook-secret-for-tests"),
    }];
    config.alert.channels.retry = RetryConfig {
        initial: Duration::from_millis(100),
        max: Duration::from_millis(400),
        max_attempts: 3,
    };

    // A first start creates the store; the notifications are queued while it is down, and the
    // delivery worker looks at the table as soon as the second start begins.
    start_gateway(config.clone()).await.running.stop().await;
    {
        let mut conn = Connection::open(dir.path().join(taza_store::DB_FILE)).unwrap();
        let tx = conn.transaction().unwrap();
        for n in [note(Channel::Webhook, "ops"), note(Channel::Telegram, "42")] {
            assert!(outbox::enqueue(
                &taza_store::Db::Sqlite(&tx),
                &n,
                taza_domain::calendar::now()
            )
            .unwrap());
        }
        tx.commit().unwrap();
    }
    // The embedded broker keeps its port until the process ends: the second start gets another.
    config.mqtt.listen = std::net::SocketAddr::from(([127, 0, 0, 1], free_port()));
    let gw = start_gateway(config).await;
    let addr = gw.running.http_addr;
    publish_all(
        gw.mqtt_port,
        vec![(
            telemetry_topic("alm-health"),
            cbor(
                "alm-health",
                &[m_at(
                    Quantity::Pm2_5,
                    12.0,
                    taza_domain::calendar::now().offset(-60),
                )],
            ),
        )],
    )
    .await;

    let mut last = serde_json::Value::Null;
    let settled = |h: &serde_json::Value| {
        h["sink"]["last_failure_reason"] == "unreachable"
            && h["sink"]["backlog_points"].as_i64() >= Some(1)
            && h["channels"]
                .as_array()
                .is_some_and(|cs| cs.iter().filter(|c| c["dead"] == 1).count() == 2)
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !settled(&last) {
        assert!(
            std::time::Instant::now() < deadline,
            "healthz never showed the failures: {last}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
        let (status, body) = http_get(addr, "/healthz").await;
        assert_eq!(
            status, 200,
            "outputs failing is not a reason to restart: {body}"
        );
        last = serde_json::from_str(&body).unwrap();
    }
    assert_eq!(last["status"], "degraded", "{last}");
    assert_eq!(last["store"], "ok");
    assert_eq!(last["mqtt"], "connected");

    let sink = &last["sink"];
    assert_eq!(sink["configured"], true);
    assert!(sink["consecutive_failures"].as_i64() >= Some(1), "{sink}");
    assert!(sink["failing_for_s"].as_i64().is_some(), "{sink}");
    assert!(sink["last_failure_age_s"].as_i64().is_some(), "{sink}");
    assert_eq!(sink["last_success_age_s"], serde_json::Value::Null);
    // Failing for seconds, not yet the minute that makes the sink itself degraded.
    assert_eq!(sink["status"], "ok", "{sink}");

    let channels = last["channels"].as_array().unwrap();
    let channel = |name: &str| {
        channels
            .iter()
            .find(|c| c["channel"] == name)
            .unwrap_or_else(|| panic!("no {name} in {channels:?}"))
    };
    let webhook = channel("webhook");
    assert_eq!(webhook["configured"], true);
    assert_eq!(webhook["status"], "degraded");
    assert_eq!(
        (&webhook["pending"], &webhook["dead"]),
        (&0.into(), &1.into())
    );
    assert!(
        webhook["last_error"].as_str().unwrap_or("").contains("400"),
        "{webhook}"
    );
    let telegram = channel("telegram");
    assert_eq!(
        telegram["configured"], false,
        "queued for, though not configured"
    );
    assert!(
        telegram["last_error"]
            .as_str()
            .unwrap_or("")
            .starts_with("not_configured"),
        "{telegram}"
    );
    assert!(
        channels.iter().all(|c| c["channel"] != "email"),
        "an unconfigured channel with nothing queued is not listed: {channels:?}"
    );
    assert!(
        !last.to_string().contains("hook-secret-for-tests"),
        "no secret in /healthz"
    );
    gw.running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_is_503_failing_while_the_broker_is_unreachable() {
    let dir = tempfile::tempdir().unwrap();
    // An external broker nobody runs: the gateway starts but cannot ingest.
    let config = test_config(
        dir.path(),
        vec![air_post("alm-nobroker")],
        Some(free_port()),
    );
    let running = taza_gateway::start(config, CancellationToken::new())
        .await
        .unwrap();
    let (status, body) = http_get(running.http_addr, "/healthz").await;
    assert_eq!(status, 503, "{body}");
    let health: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(health["status"], "failing");
    assert_eq!(health["mqtt"], "disconnected");
    assert_eq!(health["store"], "ok");
    assert_eq!(health["sink"]["configured"], false);
    running.stop().await;
}
