//! Scores through the API: published hourly means become daily exceedances and a city
//! scorecard; a limit edited in the department's norms folder changes the score at once, without
//! a rebuild or restart; zones need an operator token; targets and rivers are served.

use std::time::Duration;

use protocol::{Measurement, QaFlags, Quantity, UnixSeconds};
use taza_api::{ApiToken, Role};
use taza_domain::secret::SecretString;

use crate::support::*;

const OPERATOR: &str = "operator-token-0123456789";
const VIEWER: &str = "viewer-token-0123456789";

/// Ten local days (from local 2025-01-01) of hourly PM2.5 means of 40 µg/m³, 60 records a pack.
fn ten_days_of_pm25(post_id: &str) -> Vec<(String, Vec<u8>)> {
    let start =
        taza_domain::calendar::LocalDay::of(chrono::NaiveDate::from_ymd_opt(2025, 1, 1).unwrap())
            .start;
    let hours: Vec<Measurement> = (1..=240)
        .map(|h| Measurement {
            quantity: Quantity::Pm2_5,
            value: 40.0,
            at: UnixSeconds(start.0 + h * 3600),
            flags: QaFlags::NONE,
            window_s: Some(3600),
        })
        .collect();
    hours
        .chunks(60)
        .map(|c| (telemetry_topic(post_id), cbor(post_id, c)))
        .collect()
}

async fn post_json(
    addr: std::net::SocketAddr,
    path: &str,
    token: Option<&str>,
    body: &str,
) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n{auth}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).await.unwrap();
    let status = raw.split(' ').nth(1).unwrap().parse().unwrap();
    (
        status,
        raw.split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scores_follow_the_departments_norms_and_zones_need_an_operator() {
    let dir = tempfile::tempdir().unwrap();
    let norms_dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path(), vec![air_post("almaty-001")], None);
    config.score.norms_dir = Some(norms_dir.path().to_path_buf());
    config.api.tokens = vec![
        ApiToken {
            name: "duty engineer".into(),
            role: Role::Operator,
            token: SecretString::new(OPERATOR),
        },
        ApiToken {
            name: "analyst".into(),
            role: Role::Viewer,
            token: SecretString::new(VIEWER),
        },
    ];
    let gateway = start_gateway(config).await;
    let addr = gateway.running.http_addr;
    publish_all(gateway.mqtt_port, ten_days_of_pm25("almaty-001")).await;
    wait_until(
        "240 hourly means stored",
        Duration::from_secs(10),
        || async { metric(addr, "taza_store_readings_stored_total").await == 240.0 },
    )
    .await;

    let scores_path = "/api/v1/scores/posts/almaty-001?from=2025-01-01T00:00:00%2B05:00&to=2025-01-11T00:00:00%2B05:00";
    let s = get_json(addr, scores_path).await;
    let pm = s["quantities"]
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["quantity"] == "pm2_5")
        .unwrap()
        .clone();
    // ПДК с.с. 35 µg/m³: ten valid days at 40 all exceed, by 40 / 35 = 1.1429.
    assert_eq!(pm["daily_exceedances"]["valid_days"], 10, "{pm}");
    assert_eq!(pm["daily_exceedances"]["exceedance_days"], 10, "{pm}");

    let city = get_json(addr, "/api/v1/scores/city?year=2025").await;
    let city_pm = city["pollutants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["quantity"] == "pm2_5")
        .unwrap()
        .clone();
    assert_eq!(city_pm["daily_exceedance_days"], 10, "{city_pm}");
    assert_eq!(city_pm["posts_with_data"], 1);
    // Ten days of 365 is far from the 90 % a valid year needs.
    assert_eq!(city_pm["posts_valid"], 0, "{city_pm}");

    // The department raises the PM2.5 daily limit to 45 µg/m³ in its own file: no restart.
    std::fs::write(
        norms_dir.path().join("air.toml"),
        "[limit_sets.kz_dsm70.substances.pm2_5.daily_mg_m3]\nvalue = 0.045\nsource = \"department decision (test)\"\nstatus = \"unconfirmed\"\n",
    )
    .unwrap();
    let s = get_json(addr, scores_path).await;
    let pm = s["quantities"]
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["quantity"] == "pm2_5")
        .unwrap()
        .clone();
    assert_eq!(pm["daily_exceedances"]["exceedance_days"], 0, "{pm}");
    let city = get_json(addr, "/api/v1/scores/city?year=2025").await;
    let city_pm = city["pollutants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["quantity"] == "pm2_5")
        .unwrap()
        .clone();
    assert_eq!(
        city_pm["daily_exceedance_days"], 0,
        "the cached scorecard follows the edited norms: {city_pm}"
    );

    // A broken department file keeps the last good norms (45 µg/m³) in use and is reported in
    // /healthz with its file name, not a silent fallback.
    std::fs::write(
        norms_dir.path().join("air.toml"),
        "[limit_sets.kz_dsm70.substances.pm2_5.daily_mg_m3]\nvalue = \"high\"\n",
    )
    .unwrap();
    let s = get_json(addr, scores_path).await;
    let pm = s["quantities"]
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["quantity"] == "pm2_5")
        .unwrap()
        .clone();
    assert_eq!(
        pm["daily_exceedances"]["exceedance_days"], 0,
        "the last good norms stay in use: {pm}"
    );
    let (_, body) = http_get(addr, "/healthz").await;
    let health: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(health["norms"]["status"], "stale", "{health}");
    assert!(
        health["norms"]["error"]
            .as_str()
            .unwrap()
            .contains("air.toml"),
        "{health}"
    );
    std::fs::remove_file(norms_dir.path().join("air.toml")).unwrap();

    // Zones: the post at 43.2389 N 76.8897 E lies inside this square.
    let zone = r#"{"type":"Feature","properties":{"id":"centre-lez","name":"Центр","start_date":"2025-01-05"},
        "geometry":{"type":"Polygon","coordinates":[[[76.88,43.23],[76.90,43.23],[76.90,43.25],[76.88,43.25],[76.88,43.23]]]}}"#;
    assert_eq!(post_json(addr, "/api/v1/zones", None, zone).await.0, 401);
    assert_eq!(
        post_json(addr, "/api/v1/zones", Some("wrong-token-0123456789"), zone)
            .await
            .0,
        401
    );
    assert_eq!(
        post_json(addr, "/api/v1/zones", Some(VIEWER), zone).await.0,
        403
    );
    let bad = zone.replace("2025-01-05", "5 Jan");
    assert_eq!(
        post_json(addr, "/api/v1/zones", Some(OPERATOR), &bad)
            .await
            .0,
        400
    );
    let (status, body) = post_json(addr, "/api/v1/zones", Some(OPERATOR), zone).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(
        post_json(addr, "/api/v1/zones", Some(OPERATOR), zone)
            .await
            .0,
        200,
        "a second save updates"
    );
    let zones = get_json(addr, "/api/v1/zones").await;
    assert_eq!(zones[0]["id"], "centre-lez");
    assert_eq!(zones[0]["posts_inside"], serde_json::json!(["almaty-001"]));
    assert_eq!(zones[0]["updated_by"], "duty engineer");
    let effect = get_json(addr, "/api/v1/zones/centre-lez/effect?quantity=pm2_5").await;
    assert_eq!(effect[0]["zone"], "centre-lez");
    assert_eq!(http_get(addr, "/api/v1/zones/nowhere/effect").await.0, 404);

    let targets = get_json(addr, "/api/v1/targets").await.to_string();
    assert!(
        targets.contains("002:8883-8901"),
        "targets carry their seed references"
    );
    let rivers = get_json(addr, "/api/v1/rivers").await;
    assert_eq!(rivers, serde_json::json!([]), "no river posts registered");
    gateway.running.stop().await;
}

/// `hours` hourly PM2.5 means of `value` ending at the given hours after local midnight of
/// 2025-03-10 (hour h covers h-1..h).
fn hours_of_march_10(
    post_id: &str,
    hours: std::ops::RangeInclusive<i64>,
    value: f64,
) -> Vec<(String, Vec<u8>)> {
    let start =
        taza_domain::calendar::LocalDay::of(chrono::NaiveDate::from_ymd_opt(2025, 3, 10).unwrap())
            .start;
    let readings: Vec<Measurement> = hours
        .map(|h| Measurement {
            quantity: Quantity::Pm2_5,
            value,
            at: UnixSeconds(start.0 + h * 3600),
            flags: QaFlags::NONE,
            window_s: Some(3600),
        })
        .collect();
    vec![(telemetry_topic(post_id), cbor(post_id, &readings))]
}

fn march_mean(card: &serde_json::Value) -> serde_json::Value {
    let post = &card["posts"][0];
    let pm = post["pollutants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["quantity"] == "pm2_5")
        .unwrap();
    pm["monthly"][2]["mean"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_reading_for_a_past_day_changes_the_scorecard_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let config = test_config(dir.path(), vec![air_post("almaty-001")], None);
    let gateway = start_gateway(config).await;
    let addr = gateway.running.http_addr;
    // Publishes hours of March 10, waits until the store holds `total` readings, and asks for
    // the 2025 scorecard.
    let port = gateway.mqtt_port;
    let score_after = |hours: std::ops::RangeInclusive<i64>, value: f64, total: f64| async move {
        publish_all(port, hours_of_march_10("almaty-001", hours, value)).await;
        wait_until("readings stored", Duration::from_secs(10), || async {
            metric(addr, "taza_store_readings_stored_total").await == total
        })
        .await;
        get_json(addr, "/api/v1/scores/city?year=2025").await
    };
    // 18 hours of 20 µg/m³: a valid day (18 valid hours), so March's mean is 20.
    let card = score_after(1..=18, 20.0, 18.0).await;
    assert_eq!(march_mean(&card), 20.0, "{}", card["posts"]);

    // The other six hours arrive late (a post back from an outage), at 80: the day's mean is
    // (18·20 + 6·80) / 24 = 35, and the very next request says so (no cache lifetime to wait).
    let card = score_after(19..=24, 80.0, 24.0).await;
    assert_eq!(march_mean(&card), 35.0, "{}", card["posts"]);

    // The multi-year view reads the same aggregates.
    let years = get_json(addr, "/api/v1/scores/city?from_year=2024&to_year=2026").await;
    let years = years["years"].as_array().unwrap();
    assert_eq!(
        years
            .iter()
            .map(|y| y["year"].as_i64().unwrap())
            .collect::<Vec<_>>(),
        [2024, 2025, 2026]
    );
    let pm_2025 = years[1]["posts"][0]["pollutants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["quantity"] == "pm2_5")
        .unwrap()
        .clone();
    assert_eq!(pm_2025["annual"]["valid_days"], 1, "{pm_2025}");
    assert_eq!(pm_2025["annual"]["mean"], 35.0, "{pm_2025}");
    let (status, _) = http_get(addr, "/api/v1/scores/city?from_year=2026&to_year=2024").await;
    assert_eq!(status, 400);
    gateway.running.stop().await;
}
