//! A technician's day, end to end, against the real gateway (embedded broker with post
//! credentials enforced) and the post firmware core in the simulator:
//!
//! 1. register a post through the API (admin token), provision it (credentials + device config
//!    blob), boot the simulated post from that blob, commission it: PASS; change its calibration
//!    in the registry and see the running post take the new config;
//! 2. a second post with a dead PMS5003 and a broken NO2 cell: commissioning FAILS and names each
//!    sensor and why;
//! 3. wrong credentials, a post that borrows another's id, and a retired post cannot publish:
//!    the broker refuses them and the store never sees their readings.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

#[path = "support/ports.rs"]
mod ports;
use ports::free_port;

use std::net::SocketAddr;
use std::time::Duration;

use base64::Engine as _;
use protocol::device_config::{self, DeviceConfig};
use protocol::{Quantity, UnixSeconds};
use rumqttc::{AsyncClient, ConnectReturnCode, Event, MqttOptions, Packet, QoS};
use serde_json::{json, Value};
use taza_api::{ApiToken, Role};
use taza_domain::secret::SecretString;
use taza_gateway::config::Config;
use taza_sim::single::{SensorFault, SinglePostOptions};
use tokio_util::sync::CancellationToken;

const ADMIN: &str = "admin-token-0123456789";
const TECHNICIAN: &str = "technician-token-0123456789";

async fn gateway(dir: &std::path::Path) -> (taza_gateway::Running, CancellationToken) {
    let mut config = Config::default();
    config.store.data_dir = dir.to_path_buf();
    config.api.listen = "127.0.0.1:0".parse().unwrap();
    config.mqtt.listen = SocketAddr::from(([127, 0, 0, 1], free_port()));
    config.mqtt.embedded_auth = true;
    config.api.tokens = vec![
        ApiToken {
            name: "registry-admin".into(),
            role: Role::Admin,
            token: SecretString::new(ADMIN),
        },
        ApiToken {
            name: "technician-phone".into(),
            role: Role::Operator,
            token: SecretString::new(TECHNICIAN),
        },
    ];
    let shutdown = CancellationToken::new();
    let running = taza_gateway::start(config, shutdown.clone()).await.unwrap();
    (running, shutdown)
}

async fn call(
    method: &str,
    addr: SocketAddr,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let client = reqwest::Client::new();
    let url = format!("http://{addr}{path}");
    let mut req = match method {
        "POST" => client.post(&url),
        "PUT" => client.put(&url),
        _ => client.get(&url),
    }
    .bearer_auth(token)
    .timeout(Duration::from_secs(120));
    if let Some(b) = body {
        req = req
            .header("content-type", "application/json")
            .body(b.to_string());
    }
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    let text = res.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

fn air_post(id: &str) -> Value {
    json!({
        "id": id,
        "kind": "air",
        "name": "Абая / Байтурсынова",
        "latitude": 43.2389,
        "longitude": 76.9286,
        "district": "Алмалинский",
        "cadence": "5s",
        "sample_interval": "1s",
        "warm_up": "0s",
        "instruments": [
            { "model": "Plantower PMS5003", "serial": "PMS-22-0481", "quantities": ["pm1", "pm2_5", "pm10"] },
            { "model": "Sensirion SHT31", "serial": "SHT-991", "quantities": ["temperature", "humidity"] },
            { "model": "Alphasense NO2-B43F", "serial": "162-741", "quantities": ["no2"] }
        ],
        "calibration": {
            "linear": [{ "quantity": "pm2_5", "gain": 0.82, "offset": 1.4 }],
            "no2": { "we_zero_mv": 295.0, "ae_zero_mv": 282.0, "sensitivity_mv_per_ppb": 0.212 }
        }
    })
}

/// Provisions `id` (admin token): the response and the device config blob it carries.
async fn provision(http: SocketAddr, id: &str) -> (Value, Vec<u8>) {
    let path = format!("/api/v1/posts/{id}/provision");
    let (status, body) = call("POST", http, &path, ADMIN, None).await;
    assert_eq!(status, 200, "{body}");
    let blob = base64::engine::general_purpose::STANDARD
        .decode(body["device_config_base64"].as_str().unwrap())
        .unwrap();
    (body, blob)
}

/// Registers and provisions `id`; returns the device config the post boots from.
async fn register_and_provision(http: SocketAddr, id: &str) -> DeviceConfig {
    let (status, body) = call("POST", http, "/api/v1/posts", ADMIN, Some(air_post(id))).await;
    assert_eq!(status, 201, "{body}");
    // A technician's operator token may not provision.
    let (status, _) = call(
        "POST",
        http,
        &format!("/api/v1/posts/{id}/provision"),
        TECHNICIAN,
        None,
    )
    .await;
    assert_eq!(status, 403);
    let (body, blob) = provision(http, id).await;
    // Read back the way the post reads its flash page.
    let device = taza_sim::single::load_device_config(&blob).unwrap();
    assert_eq!(device.post.as_str(), id);
    assert_eq!(
        format!("{:08x}", device.config.hash()),
        body["config_hash"].as_str().unwrap()
    );
    assert!(body["summary"]
        .as_str()
        .unwrap()
        .starts_with(&format!("TAZA1;{id};mqtt://127.0.0.1:")));
    device_config::decode(&blob).unwrap()
}

async fn commission(http: SocketAddr, id: &str, wait: &str) -> Value {
    let (status, report) = call(
        "POST",
        http,
        &format!("/api/v1/posts/{id}/commission?wait={wait}"),
        TECHNICIAN,
        None,
    )
    .await;
    assert_eq!(status, 200, "{report}");
    report
}

fn failed(report: &Value) -> Vec<(String, String)> {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["passed"] == false)
        .map(|c| {
            (
                c["name"].as_str().unwrap().to_string(),
                c["detail"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn value_count(dir: &std::path::Path, post: &str, value: f64) -> i64 {
    let conn = rusqlite::Connection::open(dir.join("taza.db")).unwrap();
    conn.query_row(
        "SELECT count(*) FROM readings WHERE post = ?1 AND value = ?2",
        rusqlite::params![post, value],
        |r| r.get(0),
    )
    .unwrap()
}

fn readings_of(dir: &std::path::Path, post: &str) -> i64 {
    let conn = rusqlite::Connection::open(dir.join("taza.db")).unwrap();
    conn.query_row(
        "SELECT count(*) FROM readings WHERE post = ?1",
        [post],
        |r| r.get(0),
    )
    .unwrap()
}

/// Connects with `user`/`password` as client `client_id`; the broker's CONNACK code, or None
/// when the connection was closed without one.
async fn connack(
    port: u16,
    client_id: &str,
    user: &str,
    password: &str,
) -> Option<ConnectReturnCode> {
    let mut opts = MqttOptions::new(client_id, "127.0.0.1", port);
    opts.set_credentials(user, password);
    let (_client, mut events) = AsyncClient::new(opts, 10);
    loop {
        match tokio::time::timeout(Duration::from_secs(10), events.poll())
            .await
            .unwrap()
        {
            Ok(Event::Incoming(Packet::ConnAck(c))) => return Some(c.code),
            Ok(_) => {}
            Err(rumqttc::ConnectionError::ConnectionRefused(code)) => return Some(code),
            Err(_) => return None,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn provision_boot_commission_then_broken_sensors_and_foreign_credentials_are_caught() {
    let dir = tempfile::tempdir().unwrap();
    let (gw, shutdown) = gateway(dir.path()).await;
    let http = gw.http_addr;

    // 1. A healthy post: provision, boot from the blob, commission.
    let good = register_and_provision(http, "alm-air-701").await;
    let stop_good = CancellationToken::new();
    let sim_stop = stop_good.clone();
    let good_post = tokio::spawn(taza_sim::single::run(
        good.clone(),
        SinglePostOptions {
            seed: 1,
            ..SinglePostOptions::default()
        },
        async move { sim_stop.cancelled().await },
    ));
    let report = commission(http, "alm-air-701", "60s").await;
    assert_eq!(report["passed"], true, "{report:#}");
    let names: Vec<&str> = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "status",
            "config",
            "clock",
            "signal",
            "supply",
            "pm1",
            "pm2_5",
            "pm10",
            "temperature",
            "humidity",
            "no2"
        ]
    );
    // The post list shows it online and running the registry's config.
    let (_, posts) = call("GET", http, "/api/v1/posts", TECHNICIAN, None).await;
    let listed = posts
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["id"] == "alm-air-701")
        .unwrap();
    assert_eq!(listed["config"]["state"], "current", "{listed}");

    // Remote configuration: a new calibration in the registry reaches the running post on its
    // config topic; the post applies it and reports the new hash, and the list follows.
    let mut changed = air_post("alm-air-701");
    changed["calibration"]["linear"][0]["gain"] = json!(0.9);
    let old_hash = listed["config"]["desired"].as_str().unwrap().to_string();
    let (status, body) = call(
        "PUT",
        http,
        "/api/v1/posts/alm-air-701",
        ADMIN,
        Some(changed),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (_, posts) = call("GET", http, "/api/v1/posts", TECHNICIAN, None).await;
        let p = posts
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["id"] == "alm-air-701")
            .unwrap()
            .clone();
        if p["config"]["state"] == "current" && p["config"]["desired"] != old_hash.as_str() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the post never ran the new config: {p}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // 2. Another box: its PMS5003 is dead and its NO2 cell reads nonsense.
    let broken = register_and_provision(http, "alm-air-702").await;
    let stop_broken = CancellationToken::new();
    let sim_stop = stop_broken.clone();
    let broken_post = tokio::spawn(taza_sim::single::run(
        broken,
        SinglePostOptions {
            seed: 2,
            faults: vec![
                (Quantity::Pm2_5, SensorFault::Silent),
                (Quantity::No2, SensorFault::Implausible),
            ],
            ..SinglePostOptions::default()
        },
        async move { sim_stop.cancelled().await },
    ));
    let report = commission(http, "alm-air-702", "20s").await;
    assert_eq!(report["passed"], false, "{report:#}");
    let failures = failed(&report);
    let failed_names: Vec<&str> = failures.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(failed_names, ["pm1", "pm2_5", "pm10", "no2"], "{report:#}");
    assert!(failures[1].1.contains("no reading in"), "{failures:?}");
    assert!(
        failures[3].1.contains("outside the plausible"),
        "{failures:?}"
    );
    // The same report as text, for the technician's phone.
    let text = reqwest::Client::new()
        .post(format!(
            "http://{http}/api/v1/posts/alm-air-702/commission?wait=1s&format=text"
        ))
        .bearer_auth(TECHNICIAN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(text.starts_with("FAIL alm-air-702"), "{text}");
    assert!(text.contains("FAIL pm2_5"), "{text}");
    stop_broken.cancel();
    broken_post.await.unwrap().unwrap();

    // 3. Credentials. The good post's password under a wrong one, another post's id, anonymous.
    let port = gw.broker_endpoint().1;
    assert_eq!(
        connack(port, "alm-air-701", "alm-air-701", "guessed-password").await,
        Some(ConnectReturnCode::BadUserNamePassword)
    );
    assert_eq!(
        connack(port, "alm-air-702", "alm-air-701", good.password.as_str()).await,
        Some(ConnectReturnCode::NotAuthorized),
        "client id must be the post's own id"
    );
    // A correctly logged-in post (the broken box, now switched off) publishing under the good
    // post's id is cut off, and its forgery is never stored.
    let broken_password = device_config::decode(&provision(http, "alm-air-702").await.1)
        .unwrap()
        .password;
    let mut opts = MqttOptions::new("alm-air-702", "127.0.0.1", port);
    opts.set_credentials("alm-air-702", broken_password.as_str());
    let (client, mut events) = AsyncClient::new(opts, 10);
    let now = UnixSeconds(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64,
    );
    let forged = {
        let mut buf = vec![0u8; protocol::senml::MAX_PAYLOAD_BYTES];
        let m = [protocol::Measurement {
            quantity: Quantity::Pm2_5,
            value: 999.0,
            at: now,
            flags: protocol::QaFlags::NONE,
            window_s: None,
        }];
        let n = protocol::senml::encode(
            &protocol::PostId::parse("alm-air-701").unwrap(),
            &m,
            &mut buf,
        )
        .unwrap();
        buf.truncate(n);
        buf
    };
    client
        .publish(
            "taza/v1/posts/alm-air-701/telemetry",
            QoS::AtLeastOnce,
            false,
            forged,
        )
        .await
        .unwrap();
    let closed = loop {
        match tokio::time::timeout(Duration::from_secs(10), events.poll())
            .await
            .unwrap()
        {
            Ok(Event::Incoming(Packet::PubAck(_))) => break false,
            Ok(_) => {}
            Err(_) => break true,
        }
    };
    assert!(
        closed,
        "the broker must close a post that publishes under another id"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        value_count(dir.path(), "alm-air-701", 999.0),
        0,
        "the forgery was stored"
    );

    // Retire the good post while it is publishing: it is cut off and cannot log in again.
    let (status, body) = call(
        "POST",
        http,
        "/api/v1/posts/alm-air-701/retire",
        ADMIN,
        Some(json!({ "reason": "box moved to Medeu" })),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    tokio::time::sleep(Duration::from_secs(6)).await; // one window: its next publish is refused
    let after_retire = readings_of(dir.path(), "alm-air-701");
    tokio::time::sleep(Duration::from_secs(11)).await; // two more windows
    assert_eq!(
        readings_of(dir.path(), "alm-air-701"),
        after_retire,
        "a retired post's readings are not stored"
    );
    assert_eq!(
        connack(port, "alm-air-701", "alm-air-701", good.password.as_str()).await,
        Some(ConnectReturnCode::BadUserNamePassword)
    );
    let metrics = reqwest::get(format!("http://{http}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for reason in [
        "bad_credentials",
        "client_id_mismatch",
        "foreign_topic",
        "not_in_service",
    ] {
        let line = metrics
            .lines()
            .find(|l| l.starts_with("taza_broker_refused_total") && l.contains(reason))
            .unwrap_or_else(|| panic!("no {reason} series"));
        assert!(!line.ends_with(" 0"), "{line}");
    }
    // The registry remembers who did what.
    let (_, shown) = call("GET", http, "/api/v1/posts/alm-air-701", TECHNICIAN, None).await;
    let actions: Vec<(&str, &str)> = shown["audit"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["action"].as_str().unwrap(), a["actor"].as_str().unwrap()))
        .collect();
    assert_eq!(
        actions,
        [
            ("add", "token:registry-admin"),
            ("credentials", "token:registry-admin"),
            ("provision", "token:registry-admin"),
            ("commission", "token:technician-phone"),
            ("update", "token:registry-admin"),
            ("retire", "token:registry-admin"),
        ]
    );

    stop_good.cancel();
    let _ = good_post.await.unwrap();
    shutdown.cancel();
    gw.wait().await.unwrap();
}
