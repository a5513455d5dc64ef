//! The built-in dashboard in real headless Chromium (Debian's chromium + chromedriver), with
//! the demo fleet running through the gateway's embedded broker: every post on the map, a live
//! value changing within 2 s of a reading being published, the Kazakh switch, a post page with
//! its chart drawn, no request leaving the gateway, and the overview under 300 KB. Screenshots
//! of every page go to `target/tmp/dashboard-screenshots/`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

#[path = "support/webdriver.rs"]
mod webdriver;

#[path = "support/ports.rs"]
mod ports;
use ports::free_port;

use std::time::{Duration, Instant};

use protocol::{Measurement, QaFlags, Quantity};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::json;
use taza_domain::post::{PostEntry, PostKind};
use taza_gateway::config::Config;
use tokio_util::sync::CancellationToken;
use webdriver::{browser_available, Browser};

const TEST_POST: &str = "test-post-1";
const OPERATOR_TOKEN: &str = "operator-token-for-the-browser";

/// Publishes one PM2.5 reading at QoS 1 and returns when the broker has acknowledged it.
async fn publish_pm25(port: u16, value: f64) {
    publish_pm25_series(port, &[value], 60).await;
}

/// Publishes PM2.5 readings `step_s` apart ending now, in one message, and waits for the PUBACK.
async fn publish_pm25_series(port: u16, values: &[f64], step_s: i64) {
    let mut opts = MqttOptions::new(
        format!("dash-test-{}", std::process::id()),
        "127.0.0.1",
        port,
    );
    opts.set_clean_session(true);
    let (client, mut events) = AsyncClient::new(opts, 10);
    let now = taza_domain::calendar::now();
    let n_values = values.len() as i64;
    let readings: Vec<Measurement> = values
        .iter()
        .enumerate()
        .map(|(k, v)| Measurement {
            quantity: Quantity::Pm2_5,
            value: *v,
            at: now.offset(-(n_values - 1 - k as i64) * step_s),
            flags: QaFlags::NONE,
            window_s: None,
        })
        .collect();
    let mut buf = vec![0u8; protocol::senml::MAX_PAYLOAD_BYTES];
    let n = protocol::senml::encode(
        &protocol::PostId::parse(TEST_POST).unwrap(),
        &readings,
        &mut buf,
    )
    .unwrap();
    client
        .publish(
            format!("taza/v1/posts/{TEST_POST}/telemetry"),
            QoS::AtLeastOnce,
            false,
            buf[..n].to_vec(),
        )
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        assert!(Instant::now() < deadline, "no PUBACK for the test reading");
        if let Ok(Ok(Event::Incoming(Packet::PubAck(_)))) =
            tokio::time::timeout(Duration::from_secs(1), events.poll()).await
        {
            break;
        }
    }
    let _ = client.disconnect().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn department_sees_every_post_live_values_and_charts_in_three_languages() {
    if !browser_available("department_sees_every_post_live_values_and_charts_in_three_languages") {
        return;
    }
    let shots = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard-screenshots");
    let dir = tempfile::tempdir().unwrap();
    let fleet = taza_gateway::demo::fleet(&taza_gateway::demo::DemoOptions {
        seed: 11,
        backfill_days: 3,
    });
    let mut config = Config::default();
    config.store.data_dir = dir.path().to_path_buf();
    config.api.listen = "127.0.0.1:0".parse().unwrap();
    config.mqtt.listen = std::net::SocketAddr::from(([127, 0, 0, 1], free_port()));
    config.posts = taza_gateway::demo::registry_entries(&fleet, taza_gateway::demo::cadence());
    // A post outside the fleet, so no simulated reading can overwrite the test's value.
    config.posts.push(PostEntry {
        district: Some("Алмалинский".into()),
        sensors: vec![Quantity::Pm2_5],
        cadence: Some(Duration::from_secs(60)),
        ..PostEntry::new(
            protocol::PostId::parse(TEST_POST).unwrap(),
            PostKind::Air,
            "Тестовый пост",
            43.25,
            76.93,
        )
    });
    // A post the technician is about to commission: registered, never powered up.
    let mut unpowered = PostEntry::new(
        protocol::PostId::parse("alm-air-new").unwrap(),
        PostKind::Air,
        "Новый пост",
        43.26,
        76.95,
    );
    unpowered.district = Some("Медеуский".into());
    unpowered.sensors = vec![Quantity::Pm2_5];
    unpowered.cadence = Some(Duration::from_secs(1));
    config.posts.push(unpowered);
    config.api.tokens = vec![taza_api::ApiToken {
        name: "дежурный".into(),
        role: taza_api::Role::Operator,
        token: taza_domain::secret::SecretString::new(OPERATOR_TOKEN),
    }];
    let post_count = config.posts.len();
    let shutdown = CancellationToken::new();
    let gateway = taza_gateway::start(config, shutdown.clone()).await.unwrap();
    let (host, mqtt_port) = gateway.broker_endpoint();
    let options = taza_gateway::demo::DemoOptions {
        seed: 11,
        backfill_days: 3,
    };
    let fleet_task = taza_gateway::demo::spawn(
        fleet,
        options,
        host,
        mqtt_port,
        "taza".into(),
        shutdown.child_token(),
    );
    publish_pm25(mqtt_port, 42.0).await;
    let base = format!("http://{}", gateway.http_addr);

    let browser = Browser::start().await;
    browser.goto(&format!("{base}/#/")).await;
    let loaded = "return !!document.querySelector('[data-page=\"' + arguments[0] + '\"][data-loaded=\"true\"]')";
    browser
        .wait_for(
            "the overview to load",
            Duration::from_secs(30),
            loaded,
            json!(["overview"]),
        )
        .await;
    browser
        .wait_for(
            "every post on the map",
            Duration::from_secs(30),
            "return document.querySelectorAll('svg#map [data-post]').length === arguments[0]",
            json!([post_count]),
        )
        .await;
    let lang = browser
        .eval("return document.documentElement.lang", json!([]))
        .await;
    assert_eq!(lang, "ru", "Russian by default");
    browser.screenshot(&shots, "1-overview-ru").await;

    // A live value changes within 2 s of a reading being published (and acknowledged).
    let live = format!("[data-live=\"{TEST_POST}:pm2_5\"]");
    browser
        .wait_for(
            "the test post's first live value",
            // It is committed behind the fleet's three days of backfill.
            Duration::from_secs(30),
            "const e = document.querySelector(arguments[0]); return !!e && e.textContent.includes('42')",
            json!([live]),
        )
        .await;
    publish_pm25(mqtt_port, 137.0).await;
    let published = Instant::now();
    browser
        .wait_for(
            "the live value to show 137",
            Duration::from_secs(2),
            "const e = document.querySelector(arguments[0]); return !!e && e.textContent.includes('137')",
            json!([live]),
        )
        .await;
    eprintln!(
        "live value shown {:?} after the PUBACK",
        published.elapsed()
    );

    // Every request stayed on the gateway, and the overview weighs under 300 KB.
    let origins = browser
        .eval(
            "return performance.getEntriesByType('resource').map(r => new URL(r.name).origin).filter(o => o !== location.origin)",
            json!([]),
        )
        .await;
    assert_eq!(origins, json!([]), "requests left the gateway");
    let weight = browser
        .eval(
            "const n = performance.getEntriesByType('navigation')[0]; \
             return n.transferSize + performance.getEntriesByType('resource') \
               .filter(r => !r.name.includes('/api/v1/live')).reduce((a, r) => a + r.transferSize, 0)",
            json!([]),
        )
        .await
        .as_f64()
        .unwrap();
    eprintln!("overview page weight: {:.1} KB", weight / 1024.0);
    assert!(weight < 300.0 * 1024.0, "overview weighs {weight} bytes");

    // Kazakh: the language attribute and the navigation labels change.
    let nav = "return document.querySelector('[data-nav=\"overview\"]').textContent.trim()";
    let russian = browser.eval(nav, json!([])).await;
    browser.click("button[data-lang=\"kk\"]").await;
    browser
        .wait_for(
            "Kazakh labels",
            Duration::from_secs(5),
            "return document.documentElement.lang === 'kk'",
            json!([]),
        )
        .await;
    let kazakh = browser.eval(nav, json!([])).await;
    assert_ne!(
        kazakh, russian,
        "the overview label changed from {russian} to {kazakh}"
    );
    browser.screenshot(&shots, "2-overview-kk").await;
    browser.click("button[data-lang=\"ru\"]").await;

    // A post page draws its day chart.
    browser.goto(&format!("{base}/#/post/almaty-air-01")).await;
    browser
        .wait_for(
            "the post page's day chart",
            Duration::from_secs(30),
            "const c = document.querySelector('[data-page=\"post\"] svg[data-chart=\"day\"]'); \
             return !!c && c.getAttribute('data-ready') === 'true' && c.querySelectorAll('path.series').length > 0",
            json!([]),
        )
        .await;
    browser.screenshot(&shots, "3-post").await;
    let config_state = browser
        .eval(
            "const e = document.querySelector('[data-page=\"post\"] [data-config-state]'); return e ? e.dataset.configState : null",
            json!([]),
        )
        .await;
    assert!(
        ["current", "outdated", "unknown"].contains(&config_state.as_str().unwrap_or("")),
        "the post page shows no config state: {config_state}"
    );

    // The technician commissions a post from the post page with the operator token: the box is
    // not powered yet, and the report says so.
    browser.goto(&format!("{base}/#/post/alm-air-new")).await;
    browser
        .wait_for(
            "the new post's page",
            Duration::from_secs(30),
            loaded,
            json!(["post"]),
        )
        .await;
    browser
        .eval(
            "const i = document.getElementById('commission-token'); i.value = arguments[0]; \
             i.dispatchEvent(new Event('change')); return true",
            json!([OPERATOR_TOKEN]),
        )
        .await;
    browser.click("#commission-run").await;
    browser
        .wait_for(
            "the commissioning report",
            Duration::from_secs(60),
            "const r = document.querySelector('.commission-report'); return !!r && r.dataset.verdict === 'fail'",
            json!([]),
        )
        .await;
    let report = browser
        .eval(
            "return document.querySelector('.commission-report').textContent",
            json!([]),
        )
        .await;
    let report = report.as_str().unwrap_or_default();
    assert!(report.starts_with("FAIL alm-air-new"), "{report}");
    // In the dashboard's language (Russian by default).
    assert!(report.contains("статуса ещё не было"), "{report}");
    assert!(report.contains("pm2_5"), "{report}");
    browser.screenshot(&shots, "3b-commissioning").await;

    // An episode at the test post pages; the operator acknowledges it from the alerts page.
    publish_pm25_series(mqtt_port, &[250.0; 20], 60).await;
    let firing =
        "const b = document.querySelector('button[data-ack]'); return b ? b.dataset.ack : null";
    let mut id = serde_json::Value::Null;
    for _ in 0..100 {
        // Re-entering the same hash does not reload a page: go through the overview.
        browser.goto(&format!("{base}/#/")).await;
        browser.goto(&format!("{base}/#/alerts")).await;
        browser
            .wait_for(
                "the alerts page",
                Duration::from_secs(30),
                loaded,
                json!(["alerts"]),
            )
            .await;
        id = browser.eval(firing, json!([])).await;
        if !id.is_null() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let id = id
        .as_str()
        .expect("a firing alert with an acknowledge button")
        .to_string();
    browser
        .eval(
            "const i = document.getElementById('operator-token'); i.value = arguments[0]; \
             i.dispatchEvent(new Event('change')); return true",
            json!([OPERATOR_TOKEN]),
        )
        .await;
    browser.screenshot(&shots, "8-alert-firing").await;
    browser.click(&format!("button[data-ack=\"{id}\"]")).await;
    browser
        .wait_for(
            "the alert shown as acknowledged",
            Duration::from_secs(10),
            "return !!document.querySelector('[data-alert-id=\"' + arguments[0] + '\"][data-alert-state=\"acknowledged\"]')",
            json!([id]),
        )
        .await;
    browser.screenshot(&shots, "9-alert-acknowledged").await;

    for (n, page) in ["targets", "zones", "rivers", "alerts"].iter().enumerate() {
        browser.goto(&format!("{base}/#/{page}")).await;
        browser
            .wait_for(
                &format!("the {page} page"),
                Duration::from_secs(30),
                loaded,
                json!([page]),
            )
            .await;
        browser
            .screenshot(&shots, &format!("{}-{page}", n + 4))
            .await;
    }
    eprintln!("screenshots in {}", shots.display());
    browser.quit().await;
    shutdown.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(15), fleet_task).await;
    gateway.stop().await;
}
