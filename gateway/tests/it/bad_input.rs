//! Bad input: each bad message is refused with its reason counted in /metrics, nothing of it is
//! stored, and the gateway keeps running (a good message after them is stored).

use std::time::Duration;

use minicbor::Encoder;
use protocol::Quantity;

use crate::support::*;

fn cbor_with(value: f64) -> Vec<u8> {
    let mut buf = Vec::new();
    let mut e = Encoder::new(&mut buf);
    e.array(1).unwrap().map(4).unwrap();
    e.i64(-2).unwrap().str("urn:dev:post:almaty-001:").unwrap();
    e.i64(-3).unwrap().i64(1_767_225_600).unwrap();
    e.i64(0).unwrap().str("pm2_5").unwrap();
    e.i64(2).unwrap().f64(value).unwrap();
    buf
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bad_message_is_refused_with_its_reason_and_nothing_else_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    let gateway = start_gateway(test_config(
        dir.path(),
        vec![air_post("almaty-001"), air_post("almaty-002")],
        None,
    ))
    .await;
    let addr = gateway.running.http_addr;
    let now = taza_domain::calendar::now();
    let good = cbor(
        "almaty-001",
        &[m_at(Quantity::Pm2_5, 12.0, now.offset(-60))],
    );
    let t1 = telemetry_topic("almaty-001");
    let cases: Vec<(&str, String, Vec<u8>)> = vec![
        ("bad_cbor", t1.clone(), good[..good.len() - 4].to_vec()),
        ("too_large", t1.clone(), vec![0x9f; 20 * 1024]),
        (
            "bad_json",
            t1.clone(),
            br#"[{"n":"pm2_5","v":12,}]"#.to_vec(),
        ),
        ("not_finite", t1.clone(), cbor_with(f64::NAN)),
        (
            "unknown_quantity",
            t1.clone(),
            br#"[{"n":"radon","u":"Bq/m3","v":3,"t":-5}]"#.to_vec(),
        ),
        (
            "unit_mismatch",
            t1.clone(),
            br#"[{"n":"pm2_5","u":"mg/m3","v":0.012,"t":-5}]"#.to_vec(),
        ),
        (
            "time_in_future",
            t1.clone(),
            cbor(
                "almaty-001",
                &[m_at(Quantity::Pm2_5, 12.0, now.offset(301 + 60))],
            ),
        ),
        (
            "post_mismatch",
            telemetry_topic("almaty-002"),
            cbor("almaty-001", &[m_at(Quantity::Pm2_5, 9.0, now.offset(-60))]),
        ),
        (
            "unknown_post",
            telemetry_topic("stranger-9"),
            cbor("stranger-9", &[m_at(Quantity::Pm2_5, 9.0, now.offset(-60))]),
        ),
        (
            "bad_post_id",
            "taza/v1/posts/Not-A-Slug/telemetry".into(),
            good.clone(),
        ),
    ];
    let mut messages: Vec<(String, Vec<u8>)> = cases
        .iter()
        .map(|(_, t, p)| (t.clone(), p.clone()))
        .collect();
    // NaN and infinity both count as not_finite.
    messages.push((t1.clone(), cbor_with(f64::INFINITY)));
    messages.push((t1.clone(), good));
    publish_all(gateway.mqtt_port, messages).await;

    wait_until(
        "the good message after the bad ones is stored",
        Duration::from_secs(10),
        || async { metric(addr, "taza_store_readings_stored_total").await == 1.0 },
    )
    .await;
    for (reason, _, _) in &cases {
        let want = if *reason == "not_finite" { 2.0 } else { 1.0 };
        let got = metric(
            addr,
            &format!("taza_ingest_payloads_rejected_total{{reason=\"{reason}\"}}"),
        )
        .await;
        assert_eq!(got, want, "rejections counted for {reason}");
    }
    assert_eq!(
        stored_count(dir.path()),
        1,
        "only the good reading is stored"
    );
    assert_eq!(
        metric(addr, "taza_ingest_messages_received_total").await,
        12.0
    );
    let (status, _) = http_get(addr, "/healthz").await;
    assert_eq!(status, 200, "the gateway keeps running");
    gateway.running.stop().await;
}
