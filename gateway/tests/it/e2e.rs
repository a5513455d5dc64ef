//! A real MQTT client publishes SenML CBOR and JSON; readings and rollups come back through the
//! HTTP API, through the embedded broker and through Mosquitto.

use std::time::Duration;

use protocol::Quantity;

use crate::support::*;

/// Publishes a known set of readings and checks what the API returns: raw readings, an hour's
/// rollup, and a local Almaty day (UTC+5) that spans UTC midnight. A reading's time is the end
/// of its averaging window, so one stamped exactly on a boundary belongs to the period it ends.
async fn readings_and_rollups_round_trip(gateway: &InProcess) {
    let addr = gateway.running.http_addr;
    // Local day 2025-01-15 in Almaty runs 2025-01-14T19:00Z .. 2025-01-15T19:00Z.
    let mut hourly_no2 = m(Quantity::No2, 81.0, "2025-01-14T23:00:00Z");
    hourly_no2.window_s = Some(3600); // a backfilled mean for 22:00-23:00
    let cbor_pack = cbor(
        "almaty-001",
        &[
            m(Quantity::Pm2_5, 5.0, "2025-01-14T18:30:00Z"), // 23:30 local on the 14th
            m(Quantity::Pm2_5, 10.0, "2025-01-14T20:10:00Z"), // 01:10 local on the 15th
            m(Quantity::Pm2_5, 20.0, "2025-01-14T20:20:00Z"), // same UTC hour as above
            hourly_no2,
        ],
    );
    let json_pack = protocol::senml::encode_json(
        &post("almaty-001"),
        &[
            m(Quantity::Pm2_5, 30.0, "2025-01-14T21:00:00Z"), // ends the 20:00 hour: it belongs there
            m(Quantity::Pm2_5, 100.0, "2025-01-15T01:00:30Z"), // after UTC midnight, same local day
            m(Quantity::Pm2_5, 7.0, "2025-01-15T19:00:30Z"),  // 00:00:30 local on the 16th
        ],
    );
    publish_all(
        gateway.mqtt_port,
        vec![
            (telemetry_topic("almaty-001"), cbor_pack),
            (telemetry_topic("almaty-001"), json_pack.into_bytes()),
        ],
    )
    .await;
    let path = "/api/v1/posts/almaty-001/readings?quantity=pm2_5&from=2025-01-14T00:00:00Z&to=2025-01-17T00:00:00Z";
    wait_until(
        "six pm2_5 readings visible in the API",
        Duration::from_secs(10),
        || async {
            get_json(addr, path).await["readings"]
                .as_array()
                .unwrap()
                .len()
                == 6
        },
    )
    .await;

    let body = get_json(addr, path).await;
    let values: Vec<f64> = body["readings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["value"].as_f64().unwrap())
        .collect();
    assert_eq!(values, [5.0, 10.0, 20.0, 30.0, 100.0, 7.0]);
    assert_eq!(body["readings"][1]["time"], "2025-01-14T20:10:00Z");
    assert_eq!(body["readings"][1]["unit"], "ug/m3");
    assert_eq!(body["readings"][1]["flags"], serde_json::json!([]));

    // The 20:00Z hour holds 10, 20 and 30 (stamped 21:00:00): mean 20; at a 60 s cadence each
    // covers 60 s, so data capture is 180 / 3600.
    let hours = get_json(
        addr,
        "/api/v1/posts/almaty-001/rollups?quantity=pm2_5&period=hour&from=2025-01-14T20:00:00Z&to=2025-01-14T21:00:00Z",
    )
    .await;
    let h = &hours["rollups"][0];
    assert_eq!(hours["rollups"].as_array().unwrap().len(), 1, "{hours}");
    assert_eq!(h["start"], "2025-01-14T20:00:00Z");
    assert_eq!(
        (h["count"].as_i64(), h["mean"].as_f64()),
        (Some(3), Some(20.0))
    );
    assert_eq!(
        (h["min"].as_f64(), h["max"].as_f64(), h["expected"].as_i64()),
        (Some(10.0), Some(30.0), Some(60))
    );
    assert_eq!(h["covered_s"], 180);
    assert!((h["data_capture"].as_f64().unwrap() - 180.0 / 3600.0).abs() < 1e-12);

    // The backfilled hourly NO2 mean covers its whole hour.
    let no2 = get_json(
        addr,
        "/api/v1/posts/almaty-001/rollups?quantity=no2&period=hour&from=2025-01-14T00:00:00Z&to=2025-01-15T00:00:00Z",
    )
    .await;
    assert_eq!(no2["rollups"][0]["start"], "2025-01-14T22:00:00Z");
    assert_eq!(no2["rollups"][0]["data_capture"], 1.0);

    // Local 2025-01-15 holds 10, 20, 30, 100 (across UTC midnight): mean 40.
    let days = get_json(
        addr,
        "/api/v1/posts/almaty-001/rollups?quantity=pm2_5&period=day&from=2025-01-14T00:00:00Z&to=2025-01-17T00:00:00Z",
    )
    .await;
    let by_day: Vec<(String, i64, f64)> = days["rollups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["day"].as_str().unwrap().to_string(),
                d["count"].as_i64().unwrap(),
                d["mean"].as_f64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        by_day,
        [
            ("2025-01-14".to_string(), 1, 5.0),
            ("2025-01-15".to_string(), 4, 40.0),
            ("2025-01-16".to_string(), 1, 7.0)
        ]
    );
    assert_eq!(days["rollups"][1]["start"], "2025-01-14T19:00:00Z");
    assert_eq!(days["rollups"][1]["end"], "2025-01-15T19:00:00Z");
    assert_eq!(days["rollups"][1]["expected"], 1440);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readings_published_through_the_embedded_broker_come_back_through_the_api() {
    let dir = tempfile::tempdir().unwrap();
    let gateway = start_gateway(test_config(dir.path(), vec![air_post("almaty-001")], None)).await;
    readings_and_rollups_round_trip(&gateway).await;

    let posts = get_json(gateway.running.http_addr, "/api/v1/posts").await;
    assert_eq!(posts[0]["id"], "almaty-001");
    assert_eq!(posts[0]["district"], "Алмалинский");
    let (status, _) = http_get(gateway.running.http_addr, "/healthz").await;
    assert_eq!(status, 200);
    gateway.running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readings_published_through_mosquitto_come_back_through_the_api() {
    let Some(bin) =
        mosquitto_binary("readings_published_through_mosquitto_come_back_through_the_api")
    else {
        return;
    };
    let broker = Mosquitto::start(&bin);
    let dir = tempfile::tempdir().unwrap();
    let gateway = start_gateway(test_config(
        dir.path(),
        vec![air_post("almaty-001")],
        Some(broker.port),
    ))
    .await;
    readings_and_rollups_round_trip(&gateway).await;
    gateway.running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replayed_reading_is_stored_once_and_counted_as_duplicate() {
    let dir = tempfile::tempdir().unwrap();
    let gateway = start_gateway(test_config(dir.path(), vec![air_post("almaty-001")], None)).await;
    let addr = gateway.running.http_addr;
    let pack = cbor(
        "almaty-001",
        &[m(Quantity::No2, 40.0, "2025-03-01T10:00:00Z")],
    );
    let topic = telemetry_topic("almaty-001");
    publish_all(
        gateway.mqtt_port,
        vec![
            (topic.clone(), pack.clone()),
            (topic.clone(), pack.clone()),
            (topic, pack),
        ],
    )
    .await;
    wait_until(
        "two duplicates absorbed",
        Duration::from_secs(10),
        || async { metric(addr, "taza_store_readings_duplicate_total").await == 2.0 },
    )
    .await;
    assert_eq!(metric(addr, "taza_store_readings_stored_total").await, 1.0);
    let hours = get_json(addr, "/api/v1/posts/almaty-001/rollups?quantity=no2&from=2025-03-01T00:00:00Z&to=2025-03-02T00:00:00Z").await;
    assert_eq!(
        hours["rollups"][0]["count"], 1,
        "a replay must not count twice in rollups"
    );
    gateway.running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_feed_streams_committed_readings_as_server_sent_events() {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let dir = tempfile::tempdir().unwrap();
    let gateway = start_gateway(test_config(dir.path(), vec![air_post("almaty-001")], None)).await;
    let addr = gateway.running.http_addr;
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(
        format!("GET /api/v1/live?post=almaty-001 HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut lines = BufReader::new(s).lines();
    // The response head arrives as soon as the subscription exists.
    while let Some(line) = lines.next_line().await.unwrap() {
        if line.is_empty() {
            break;
        }
    }
    let at = taza_domain::calendar::now().offset(-5);
    publish_all(
        gateway.mqtt_port,
        vec![(
            telemetry_topic("almaty-001"),
            cbor("almaty-001", &[m_at(Quantity::Pm10, 55.5, at)]),
        )],
    )
    .await;
    let data = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let line = lines.next_line().await.unwrap().unwrap();
            if let Some(d) = line.strip_prefix("data: ") {
                break d.to_string();
            }
        }
    })
    .await
    .expect("an SSE event within 10 s");
    let event: serde_json::Value = serde_json::from_str(&data).unwrap();
    assert_eq!(event["post"], "almaty-001");
    assert_eq!(event["readings"][0]["quantity"], "pm10");
    assert_eq!(event["readings"][0]["value"], 55.5);
    gateway.running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_refuses_bad_queries_with_json_errors() {
    let dir = tempfile::tempdir().unwrap();
    let gateway = start_gateway(test_config(dir.path(), vec![air_post("almaty-001")], None)).await;
    let addr = gateway.running.http_addr;
    for (path, want) in [
        ("/api/v1/posts/nope/readings", 404),
        ("/api/v1/posts/NOT%20A%20SLUG/readings", 404),
        ("/api/v1/posts/almaty-001/readings?quantity=radon", 400),
        ("/api/v1/posts/almaty-001/readings?from=yesterday", 400),
        (
            "/api/v1/posts/almaty-001/readings?from=2025-01-02T00:00:00Z&to=2025-01-01T00:00:00Z",
            400,
        ),
        ("/api/v1/posts/almaty-001/rollups", 400),
        (
            "/api/v1/posts/almaty-001/rollups?quantity=pm2_5&period=week",
            400,
        ),
        ("/api/v1/posts/almaty-001/readings?colour=red", 400),
        ("/api/v1/nothing", 404),
    ] {
        let (status, body) = http_get(addr, path).await;
        assert_eq!(status, want, "{path}: {body}");
        let v: serde_json::Value =
            serde_json::from_str(&body).unwrap_or_else(|_| panic!("{path}: not JSON: {body}"));
        assert!(v["error"].is_string(), "{path}: {body}");
    }
    gateway.running.stop().await;
}
