//! Alerts end to end with real receivers (an SMTP server and a webhook endpoint in the test):
//! an episode pages once and resolves, a hovering signal pages once, escalation runs until
//! someone acknowledges, a replayed backlog pages nobody, and a gateway killed with deliveries
//! pending delivers each notification once after restart.

use std::time::Duration;

use protocol::{Measurement, QaFlags, Quantity, UnixSeconds};
use taza_alert::channels::{ChannelsConfig, EmailConfig, RetryConfig, SmtpTls, WebhookConfig};
use taza_alert::route::{Contact, OnCallConfig};
use taza_api::{ApiToken, Role};
use taza_domain::secret::SecretString;

use crate::receivers::{SmtpReceiver, WebhookReceiver};
use crate::support::*;

const OPERATOR: &str = "duty-operator-token-123";

fn contact(name: &str, level: u8, webhook: bool) -> Contact {
    Contact {
        name: name.into(),
        level,
        lang: "ru".into(),
        email: Some(format!("{name}@akimat.kz")),
        telegram_chat: None,
        webhook: webhook.then(|| "ops".into()),
        shift: None,
    }
}

fn channels(smtp: &SmtpReceiver, webhook_url: String) -> ChannelsConfig {
    ChannelsConfig {
        webhooks: vec![WebhookConfig {
            name: "ops".into(),
            url: webhook_url,
            secret: SecretString::new("hmac-key"),
        }],
        telegram: None,
        email: Some(EmailConfig {
            host: "127.0.0.1".into(),
            port: smtp.port(),
            tls: SmtpTls::None,
            username: None,
            password: None,
            from: "Taza <alerts@taza.test>".into(),
        }),
        retry: RetryConfig {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(1),
            max_attempts: 50,
        },
    }
}

/// A gateway with three on-call levels (duty with the webhook, chief, director) paging fast.
async fn gateway_with_alerts(
    dir: &std::path::Path,
    smtp: &SmtpReceiver,
    webhook: &WebhookReceiver,
) -> InProcess {
    let mut config = test_config(
        dir,
        vec![air_post("almaty-001"), air_post("almaty-002")],
        None,
    );
    config.alert.evaluate_every = Duration::from_millis(100);
    config.alert.oncall = OnCallConfig {
        escalate_after: Duration::from_secs(2),
        contacts: vec![
            contact("duty", 1, true),
            contact("chief", 2, false),
            contact("director", 3, false),
        ],
    };
    config.alert.channels = channels(smtp, webhook.url());
    config.api.tokens = vec![ApiToken {
        name: "duty".into(),
        role: Role::Operator,
        token: SecretString::new(OPERATOR),
    }];
    start_gateway(config).await
}

/// One reading a `step_s` apart, the last at `end`, for each value.
fn series(post_id: &str, end: UnixSeconds, step_s: i64, values: &[f64]) -> (String, Vec<u8>) {
    let n = values.len() as i64;
    let readings: Vec<Measurement> = values
        .iter()
        .enumerate()
        .map(|(k, v)| Measurement {
            quantity: Quantity::Pm2_5,
            value: *v,
            at: end.offset(-(n - 1 - k as i64) * step_s),
            flags: QaFlags::NONE,
            window_s: None,
        })
        .collect();
    (telemetry_topic(post_id), cbor(post_id, &readings))
}

async fn alerts(addr: std::net::SocketAddr, query: &str) -> Vec<serde_json::Value> {
    get_json(addr, &format!("/api/v1/alerts{query}"))
        .await
        .as_array()
        .unwrap()
        .clone()
}

fn to(m: &crate::receivers::SmtpMessage) -> String {
    m.to.join(",")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pm2_5_episode_pages_once_by_email_and_webhook_and_resolves_when_clear() {
    let smtp = SmtpReceiver::start().await;
    let webhook = WebhookReceiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let gateway = gateway_with_alerts(dir.path(), &smtp, &webhook).await;
    let addr = gateway.running.http_addr;
    let now = taza_domain::calendar::now();

    // Twenty minutes of 200 µg/m³: the 20-minute mean 200 > 160 (ПДК м.р.).
    publish_all(
        gateway.mqtt_port,
        vec![series("almaty-001", now, 60, &[200.0; 20])],
    )
    .await;
    let mails = smtp.wait_for(1, Duration::from_secs(10)).await;
    let hooks = webhook.wait_for(1, Duration::from_secs(10)).await;
    assert_eq!(to(&mails[0]), "duty@akimat.kz");
    // The text is MIME-encoded UTF-8; the webhook carries the same message in plain JSON.
    assert!(
        mails[0].message_id().is_some() && mails[0].data.contains("Subject: [Taza]"),
        "{}",
        mails[0].data
    );
    let fired = hooks[0].json();
    assert!(
        fired["message"]
            .as_str()
            .is_some_and(|m| m.contains("ПДК м.р. 160.0")),
        "{fired}"
    );
    assert_eq!(
        (fired["event"].as_str(), fired["rule"].as_str()),
        (Some("fired"), Some("pm2_5_one_time_limit"))
    );
    assert!(hooks[0]
        .header("x-taza-signature")
        .is_some_and(|s| s.starts_with("sha256=")));
    let open = alerts(addr, "?state=open").await;
    assert_eq!(open.len(), 1, "{open:?}");

    // Forty readings of 20 between them: the window's mean (20·200 + 40·20) / 60 = 80 < 140.
    let clear: Vec<f64> = vec![20.0; 40];
    publish_all(
        gateway.mqtt_port,
        vec![series("almaty-001", now.offset(-15), 30, &clear)],
    )
    .await;
    let hooks = webhook.wait_for(2, Duration::from_secs(10)).await;
    assert_eq!(hooks[1].json()["event"], "resolved");
    let all = alerts(addr, "").await;
    assert_eq!(all.len(), 1, "one alert in all: {all:?}");
    assert_eq!(
        (all[0]["state"].as_str(), all[0]["resolved_by"].as_str()),
        (Some("resolved"), Some("rule"))
    );
    let detail = get_json(addr, &format!("/api/v1/alerts/{}", all[0]["id"])).await;
    let events: Vec<&str> = detail["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(events, ["fired", "resolved"]);
    assert_eq!(
        smtp.wait_for(2, Duration::from_secs(10)).await.len(),
        2,
        "fired and resolved e-mails"
    );
    gateway.running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signal_hovering_around_160_pages_once() {
    let smtp = SmtpReceiver::start().await;
    let webhook = WebhookReceiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let gateway = gateway_with_alerts(dir.path(), &smtp, &webhook).await;
    let now = taza_domain::calendar::now();
    // 150, 175, 150, ... every 30 s for 20 minutes, sent one message per reading: the rolling
    // mean crosses 160 back and forth but never falls below the 140 clear threshold.
    let messages: Vec<(String, Vec<u8>)> = (0..40)
        .map(|k| {
            let v = if k % 2 == 0 { 150.0 } else { 175.0 };
            series("almaty-001", now.offset(-(39 - k) * 30), 30, &[v])
        })
        .collect();
    publish_all(gateway.mqtt_port, messages).await;
    webhook.wait_for(1, Duration::from_secs(10)).await;
    // A second post's episode afterwards proves the evaluator has seen everything before it.
    publish_all(
        gateway.mqtt_port,
        vec![series("almaty-002", now, 60, &[200.0; 20])],
    )
    .await;
    let hooks = webhook.wait_for(2, Duration::from_secs(10)).await;
    let first_post: Vec<_> = hooks
        .iter()
        .filter(|h| h.json()["post"] == "almaty-001")
        .collect();
    assert_eq!(first_post.len(), 1, "one page, not a storm: {hooks:?}");
    gateway.running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unacknowledged_critical_alert_escalates_and_acknowledging_stops_it() {
    let smtp = SmtpReceiver::start().await;
    let webhook = WebhookReceiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let gateway = gateway_with_alerts(dir.path(), &smtp, &webhook).await;
    let addr = gateway.running.http_addr;
    let now = taza_domain::calendar::now();
    // 2000 µg/m³ at both posts: ВЗ (≥ 1600, critical) plus the one-time limit (warning).
    publish_all(
        gateway.mqtt_port,
        vec![
            series("almaty-001", now, 60, &[2000.0; 20]),
            series("almaty-002", now, 60, &[2000.0; 20]),
        ],
    )
    .await;
    // The duty engineer acknowledges post 1's critical alert as soon as it shows; post 2's is
    // left alone. (Acknowledging within escalate_after, 2 s, of the firing: the API call follows
    // the firing by one poll.)
    let critical_a = loop {
        let open = alerts(addr, "?state=firing").await;
        if let Some(a) = open
            .iter()
            .find(|a| a["post"] == "almaty-001" && a["severity"] == "critical")
        {
            break a["id"].as_i64().unwrap();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let (status, body) = post_empty(
        addr,
        &format!("/api/v1/alerts/{critical_a}/ack"),
        Some(OPERATOR),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        post_empty(addr, &format!("/api/v1/alerts/{critical_a}/ack"), None)
            .await
            .0,
        401
    );
    assert_eq!(
        post_empty(
            addr,
            &format!("/api/v1/alerts/{critical_a}/ack"),
            Some(OPERATOR)
        )
        .await
        .0,
        409
    );

    // Post 2's alert climbs to the chief (level 2) and then the director (level 3); by the time
    // the director is paged, post 1's would have climbed twice had the acknowledgement not
    // stopped it.
    wait_until(
        "director paged for the unacknowledged post",
        Duration::from_secs(20),
        || async {
            smtp.messages()
                .iter()
                .any(|m| to(m) == "director@akimat.kz")
        },
    )
    .await;
    let paged = |who: &str| smtp.messages().into_iter().filter(|m| to(m) == who).count();
    assert_eq!(
        paged("chief@akimat.kz"),
        1,
        "only the unacknowledged alert reached level 2"
    );
    assert_eq!(
        paged("director@akimat.kz"),
        1,
        "only the unacknowledged alert reached level 3"
    );
    let a = get_json(addr, &format!("/api/v1/alerts/{critical_a}")).await;
    assert_eq!(
        (
            a["alert"]["state"].as_str(),
            a["alert"]["escalation_level"].as_i64()
        ),
        (Some("acknowledged"), Some(1))
    );
    let b = alerts(addr, "?state=firing").await;
    let critical_b = b
        .iter()
        .find(|a| a["post"] == "almaty-002" && a["severity"] == "critical")
        .unwrap();
    assert_eq!(critical_b["escalation_level"], 3);
    gateway.running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_replayed_after_an_outage_pages_nobody() {
    let smtp = SmtpReceiver::start().await;
    let webhook = WebhookReceiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let gateway = gateway_with_alerts(dir.path(), &smtp, &webhook).await;
    let addr = gateway.running.http_addr;
    let now = taza_domain::calendar::now();
    // An hour of 500 µg/m³ recorded two to three hours ago, replayed now.
    publish_all(
        gateway.mqtt_port,
        vec![series(
            "almaty-001",
            now.offset(-2 * 3600),
            60,
            &[500.0; 60],
        )],
    )
    .await;
    // Then a live episode at the other post: once it pages, the backlog has been judged too.
    publish_all(
        gateway.mqtt_port,
        vec![series("almaty-002", now, 60, &[200.0; 20])],
    )
    .await;
    webhook.wait_for(1, Duration::from_secs(10)).await;
    assert_eq!(
        metric(addr, "taza_store_readings_stored_total").await,
        80.0,
        "the backlog is stored"
    );
    let all = alerts(addr, "").await;
    assert!(
        all.iter().all(|a| a["post"] == "almaty-002"),
        "the backlog fired: {all:?}"
    );
    assert!(webhook
        .messages()
        .iter()
        .all(|h| h.json()["post"] == "almaty-002"));
    gateway.running.stop().await;
}

async fn post_empty(addr: std::net::SocketAddr, path: &str, token: Option<&str>) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let req = format!("POST {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Content-Length: 0\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).await.unwrap();
    (
        raw.split(' ').nth(1).unwrap().parse().unwrap(),
        raw.split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_killed_with_deliveries_pending_delivers_each_once_after_restart() {
    let smtp = SmtpReceiver::start().await;
    let mut webhook = WebhookReceiver::start().await;
    let webhook_url = webhook.url();
    webhook.stop().await; // the channel is down: deliveries stay pending
    let dir = tempfile::tempdir().unwrap();
    let mqtt_port = free_port();
    let http_port = free_port();
    let config = format!(
        r#"
[mqtt]
listen = "127.0.0.1:{mqtt_port}"
client_id = "gw-kill-{id}"
[store]
data_dir = "{data}"
[api]
listen = "127.0.0.1:{http_port}"
[alert]
evaluate_every = "100ms"
[alert.oncall]
escalate_after = "1h"
contacts = [{{ name = "duty", level = 1, email = "duty@akimat.kz", webhook = "ops" }}]
[alert.channels]
webhooks = [{{ name = "ops", url = "{webhook_url}", secret = "hmac-key" }}]
email = {{ host = "127.0.0.1", port = {smtp_port}, tls = "none", from = "alerts@taza.test" }}
retry = {{ initial = "100ms", max = "500ms", max_attempts = 1000 }}
[[posts]]
id = "almaty-001"
kind = "air"
name = "Абая / Назарбаева"
latitude = 43.24
longitude = 76.95
cadence = "60s"
"#,
        id = unique(),
        data = dir.path().display(),
        smtp_port = smtp.port(),
    );
    let config_file = dir.path().join("taza.toml");
    std::fs::write(&config_file, config).unwrap();
    let gateway = GatewayProcess::start(&config_file);
    let http: std::net::SocketAddr = ([127, 0, 0, 1], http_port).into();
    wait_until("gateway up", Duration::from_secs(20), || async {
        tokio::net::TcpStream::connect(http).await.is_ok()
            && http_get(http, "/healthz").await.0 == 200
    })
    .await;
    let now = taza_domain::calendar::now();
    publish_all(mqtt_port, vec![series("almaty-001", now, 60, &[200.0; 20])]).await;
    // The e-mail goes out; the webhook keeps failing and stays pending in the outbox.
    smtp.wait_for(1, Duration::from_secs(10)).await;
    wait_until(
        "webhook delivery pending with failed attempts",
        Duration::from_secs(10),
        || async {
            get_json(http, "/api/v1/outbox?state=pending")
                .await
                .as_array()
                .unwrap()
                .iter()
                .any(|r| r["attempts"].as_i64() > Some(1))
        },
    )
    .await;
    gateway.kill9();

    webhook.restart().await;
    let gateway = GatewayProcess::start(&config_file);
    let hooks = webhook.wait_for(1, Duration::from_secs(20)).await;
    wait_until("outbox drained", Duration::from_secs(10), || async {
        tokio::net::TcpStream::connect(http).await.is_ok()
            && get_json(http, "/api/v1/outbox?state=pending")
                .await
                .as_array()
                .unwrap()
                .is_empty()
    })
    .await;
    let status = gateway.terminate();
    assert!(status.success());
    let hooks_after = webhook.messages();
    assert_eq!(hooks_after.len(), hooks.len(), "no late duplicate");
    assert_eq!(
        hooks_after.len(),
        1,
        "the webhook was delivered once: {hooks_after:?}"
    );
    let ids: Vec<Option<String>> = smtp.messages().iter().map(|m| m.message_id()).collect();
    assert_eq!(
        ids.len(),
        1,
        "the e-mail was not sent again after the restart: {ids:?}"
    );
    assert_eq!(hooks_after[0].json()["event"], "fired");
}
