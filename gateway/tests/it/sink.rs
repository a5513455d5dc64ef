//! The InfluxDB 2 sink against a real receiver: Debian's VictoriaMetrics, which accepts
//! InfluxDB's `/api/v2/write` and names each series `<measurement>_<field>`.
//!
//! Without the `victoria-metrics` binary these tests print a loud SKIPPED banner, or fail when
//! `TAZA_REQUIRE_VICTORIA=1` (CI sets it after `apt-get install victoria-metrics`).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use protocol::{Quantity, UnixSeconds};
use taza_domain::post::{PostEntry, PostKind};
use taza_gateway::config::Config;
use taza_sink::InfluxConfig;

use crate::support::*;

/// Finds Debian's victoria-metrics (see [`required_binary`]).
pub(crate) fn victoria_binary(test: &str) -> Option<PathBuf> {
    required_binary(
        test,
        "VICTORIA",
        "victoria-metrics",
        &["/usr/bin/victoria-metrics", "/usr/sbin/victoria-metrics"],
    )
}

/// A VictoriaMetrics process on a free port with its data in a temp dir (kept across restarts).
pub(crate) struct Victoria {
    binary: PathBuf,
    addr: SocketAddr,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl Victoria {
    pub(crate) fn start(binary: &Path) -> Self {
        let mut v = Self {
            binary: binary.to_path_buf(),
            addr: SocketAddr::from(([127, 0, 0, 1], free_port())),
            dir: tempfile::tempdir().unwrap(),
            child: None,
        };
        v.spawn();
        v
    }

    fn spawn(&mut self) {
        let child = Command::new(&self.binary)
            .arg(format!("-httpListenAddr={}", self.addr))
            .arg(format!("-storageDataPath={}", self.dir.path().display()))
            // Data is searchable at once instead of after the default 30 s.
            .arg("-search.latencyOffset=0s")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(s) = std::net::TcpStream::connect(self.addr) {
                drop(s);
                break;
            }
            assert!(
                Instant::now() < deadline,
                "victoria-metrics did not listen on {}",
                self.addr
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Graceful stop (SIGTERM flushes its buffers to disk).
    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            signal(&child, "TERM");
            let _ = child.wait();
        }
    }

    pub(crate) fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `(labels without __name__, [(timestamp ms, value)])` of every series whose name matches
    /// `name_regex`.
    pub(crate) async fn export(
        &self,
        name_regex: &str,
    ) -> Vec<(String, BTreeMap<String, String>, Vec<(i64, f64)>)> {
        let selector = format!("{{__name__=~\"{name_regex}\"}}");
        let path = format!(
            "/api/v1/export?match[]={}&start=0",
            percent_encode(&selector)
        );
        let (status, body) = http_get(self.addr, &path).await;
        assert_eq!(status, 200, "export: {body}");
        body.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                let mut labels: BTreeMap<String, String> = v["metric"]
                    .as_object()
                    .unwrap()
                    .iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
                    .collect();
                let name = labels.remove("__name__").unwrap();
                let ts = v["timestamps"].as_array().unwrap();
                let vals = v["values"].as_array().unwrap();
                let points = ts
                    .iter()
                    .zip(vals)
                    .map(|(t, x)| (t.as_i64().unwrap(), x.as_f64().unwrap()))
                    .collect();
                (name, labels, points)
            })
            .collect()
    }
}

impl Drop for Victoria {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

pub(crate) fn sink_config(dir: &Path, posts: Vec<PostEntry>, url: String) -> Config {
    let mut c = test_config(dir, posts, None);
    c.sink.influxdb = Some(InfluxConfig {
        url,
        org: "akimat".into(),
        bucket: "taza".into(),
        token: Some(taza_domain::secret::SecretString::new("test-token")),
        token_file: None,
        batch_size: 50,
        flush_every: Duration::from_millis(100),
        request_timeout: Duration::from_secs(5),
        retry_initial: Duration::from_millis(100),
        retry_max: Duration::from_millis(500),
    });
    c
}

fn river_post(id: &str) -> PostEntry {
    PostEntry {
        river: Some("Малая Алматинка".into()),
        sensors: vec![Quantity::WaterLevel],
        cadence: Some(Duration::from_secs(60)),
        ..PostEntry::new(post(id), PostKind::River, format!("test {id}"), 43.2, 76.95)
    }
}

/// A recent minute boundary: VictoriaMetrics keeps a month by default.
pub(crate) fn recent_start() -> i64 {
    let now = taza_domain::calendar::now().0;
    now - now % 60 - 6 * 3600
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readings_arrive_with_the_documented_schema() {
    let Some(bin) = victoria_binary("readings_arrive_with_the_documented_schema") else {
        return;
    };
    let vm = Victoria::start(&bin);
    let dir = tempfile::tempdir().unwrap();
    let mut air = air_post("alm-sink-1");
    air.district = Some("Алмалинский район".into());
    let config = sink_config(dir.path(), vec![air, river_post("mal-1")], vm.url());
    let gw = start_gateway(config).await;
    let t0 = recent_start();
    let mut humid = m_at(Quantity::Humidity, 40.0, UnixSeconds(t0 + 60));
    humid.flags = protocol::QaFlags(4);
    publish_all(
        gw.mqtt_port,
        vec![
            (
                telemetry_topic("alm-sink-1"),
                cbor(
                    "alm-sink-1",
                    &[
                        m_at(Quantity::Pm2_5, 12.5, UnixSeconds(t0)),
                        m_at(Quantity::No2, 81.0, UnixSeconds(t0)),
                        humid,
                        m_at(Quantity::SupplyVoltage, 3.7, UnixSeconds(t0)),
                    ],
                ),
            ),
            (
                telemetry_topic("mal-1"),
                cbor(
                    "mal-1",
                    &[m_at(Quantity::WaterLevel, 102.0, UnixSeconds(t0))],
                ),
            ),
        ],
    )
    .await;

    let metrics = gw.running.metrics.clone();
    wait_until("five points written", Duration::from_secs(20), || {
        let m = metrics.clone();
        async move { m.sink().points_written() == 5 }
    })
    .await;
    let deadline = Instant::now() + Duration::from_secs(20);
    let all = loop {
        let all = vm.export("(air|climate|water|device)_.*").await;
        if all.len() == 10 {
            break all;
        }
        assert!(Instant::now() < deadline, "expected 10 series, got {all:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let find = |name: &str, quantity: &str| {
        all.iter()
            .find(|(n, l, _)| n == name && l.get("quantity").map(String::as_str) == Some(quantity))
            .unwrap_or_else(|| panic!("no {name} for {quantity} in {all:?}"))
    };
    let (_, labels, points) = find("air_value", "pm2_5");
    assert_eq!(labels.get("post").map(String::as_str), Some("alm-sink-1"));
    assert_eq!(labels.get("kind").map(String::as_str), Some("air"));
    assert_eq!(
        labels.get("district").map(String::as_str),
        Some("Алмалинский район"),
        "escaped space survives"
    );
    assert!(!labels.contains_key("river"));
    assert_eq!(points, &[(t0 * 1000, 12.5)]);
    assert_eq!(find("air_value", "no2").2, [(t0 * 1000, 81.0)]);
    assert_eq!(find("air_flags", "pm2_5").2, [(t0 * 1000, 0.0)]);
    assert_eq!(
        find("climate_value", "humidity").2,
        [((t0 + 60) * 1000, 40.0)]
    );
    assert_eq!(
        find("climate_flags", "humidity").2,
        [((t0 + 60) * 1000, 4.0)]
    );
    assert_eq!(find("device_value", "supply_voltage").2, [(t0 * 1000, 3.7)]);
    let (_, labels, points) = find("water_value", "water_level");
    assert_eq!(
        labels.get("river").map(String::as_str),
        Some("Малая Алматинка")
    );
    assert_eq!(labels.get("kind").map(String::as_str), Some("river"));
    assert!(!labels.contains_key("district"));
    assert_eq!(points, &[(t0 * 1000, 102.0)]);

    let body = http_get(gw.running.http_addr, "/metrics").await.1;
    assert!(
        body.contains("taza_sink_influxdb_points_written_total 5"),
        "{body}"
    );
    assert!(!body.contains("test-token"));
    gw.running.stop().await;
}

/// Tag values the `influxdb2` crate alone would break: a backslash before the next tag's comma
/// (it escapes `,`, `=` and space, not `\`), a line break, and all of them together. Each must
/// arrive as typed (a line break as a space), with the tags after it intact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tag_value_ending_in_a_backslash_survives() {
    let Some(bin) = victoria_binary("a_tag_value_ending_in_a_backslash_survives") else {
        return;
    };
    let vm = Victoria::start(&bin);
    let dir = tempfile::tempdir().unwrap();
    let districts = [
        ("bs-1", "Алмалы\\"),
        ("bs-2", "a\\,b=c d\\"),
        ("bs-3", "\\\\ \\=\\"),
        ("bs-4", "two\nlines\\"),
    ];
    let mut posts: Vec<PostEntry> = districts
        .iter()
        .map(|(id, d)| PostEntry {
            district: Some((*d).into()),
            ..air_post(id)
        })
        .collect();
    posts.push(PostEntry {
        river: Some("Есентай\\".into()),
        ..river_post("bs-river")
    });
    let config = sink_config(dir.path(), posts, vm.url());
    let gw = start_gateway(config).await;
    let t0 = recent_start();
    let mut msgs: Vec<(String, Vec<u8>)> = districts
        .iter()
        .enumerate()
        .map(|(i, (id, _))| {
            (
                telemetry_topic(id),
                cbor(
                    id,
                    &[m_at(Quantity::Pm2_5, i as f64 + 1.0, UnixSeconds(t0))],
                ),
            )
        })
        .collect();
    msgs.push((
        telemetry_topic("bs-river"),
        cbor(
            "bs-river",
            &[m_at(Quantity::WaterLevel, 55.0, UnixSeconds(t0))],
        ),
    ));
    publish_all(gw.mqtt_port, msgs).await;
    let metrics = gw.running.metrics.clone();
    wait_until("five points written", Duration::from_secs(20), || {
        let m = metrics.clone();
        async move { m.sink().points_written() == 5 }
    })
    .await;
    assert_eq!(metrics.sink().failures(taza_sink::FailureKind::Rejected), 0);
    let deadline = Instant::now() + Duration::from_secs(20);
    let all = loop {
        let all = vm.export("(air|water)_value").await;
        if all.len() == 5 {
            break all;
        }
        assert!(Instant::now() < deadline, "expected 5 series, got {all:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    for (i, (id, district)) in districts.iter().enumerate() {
        let (_, labels, points) = all
            .iter()
            .find(|(_, l, _)| l.get("post").map(String::as_str) == Some(*id))
            .unwrap_or_else(|| panic!("no series for {id} in {all:?}"));
        let want: BTreeMap<String, String> = [
            ("district", district.replace('\n', " ")),
            ("kind", "air".into()),
            ("post", (*id).into()),
            ("quantity", "pm2_5".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        assert_eq!(labels, &want, "{district:?}");
        assert_eq!(points, &[(t0 * 1000, i as f64 + 1.0)]);
    }
    let (name, labels, points) = all
        .iter()
        .find(|(_, l, _)| l.get("post").map(String::as_str) == Some("bs-river"))
        .unwrap_or_else(|| panic!("no river series in {all:?}"));
    assert_eq!(name, "water_value");
    assert_eq!(labels.get("river").map(String::as_str), Some("Есентай\\"));
    assert_eq!(labels.get("kind").map(String::as_str), Some("river"));
    assert_eq!(points, &[(t0 * 1000, 55.0)]);
    gw.running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_loses_nothing_and_duplicates_nothing() {
    let Some(bin) = victoria_binary("an_outage_loses_nothing_and_duplicates_nothing") else {
        return;
    };
    let mut vm = Victoria::start(&bin);
    let dir = tempfile::tempdir().unwrap();
    let posts: Vec<_> = (0..3).map(|i| air_post(&format!("out-{i}"))).collect();
    let config = sink_config(dir.path(), posts, vm.url());
    let gw = start_gateway(config).await;
    let t0 = recent_start();
    // 3 posts x 2 quantities x 120 minutes, published in 4 waves of 30 minutes.
    let wave = |w: i64| -> Vec<(String, Vec<u8>)> {
        let mut msgs = Vec::new();
        for p in 0..3 {
            let id = format!("out-{p}");
            for minute in (w * 30)..(w * 30 + 30) {
                let at = UnixSeconds(t0 + minute * 60);
                let readings = [
                    m_at(Quantity::Pm2_5, (p * 1000 + minute) as f64, at),
                    m_at(Quantity::No2, (p * 1000 + minute) as f64 + 0.5, at),
                ];
                msgs.push((telemetry_topic(&id), cbor(&id, &readings)));
            }
        }
        msgs
    };
    let total = 3 * 2 * 120;
    let metrics = gw.running.metrics.clone();

    publish_all(gw.mqtt_port, wave(0)).await;
    wait_until("first wave written", Duration::from_secs(20), || {
        let m = metrics.clone();
        async move { m.sink().points_written() >= 180 }
    })
    .await;
    // Mid-stream: the second wave is in flight to InfluxDB while it goes away.
    let publishing = tokio::spawn(publish_all(gw.mqtt_port, wave(1)));
    tokio::time::sleep(Duration::from_millis(50)).await;
    vm.stop();
    publishing.await.unwrap();
    publish_all(gw.mqtt_port, wave(2)).await;
    wait_until(
        "writes failing and readings queued",
        Duration::from_secs(20),
        || {
            let m = metrics.clone();
            async move { m.sink().consecutive_failures() >= 2 && m.sink().backlog() > 0 }
        },
    )
    .await;
    assert!(metrics.sink().points_written() < total as u64);
    publish_all(gw.mqtt_port, wave(3)).await;

    vm.spawn();
    wait_until("backlog drained", Duration::from_secs(60), || {
        let m = metrics.clone();
        async move { m.sink().backlog() == 0 && m.sink().points_written() >= total as u64 }
    })
    .await;
    assert_eq!(metrics.sink().consecutive_failures(), 0);

    // Every (post, quantity, time) exactly once, with its value.
    let deadline = Instant::now() + Duration::from_secs(20);
    let seen = loop {
        let mut seen: BTreeMap<(String, String, i64), Vec<f64>> = BTreeMap::new();
        for (_, labels, points) in vm.export("air_value").await {
            for (t, v) in points {
                seen.entry((labels["post"].clone(), labels["quantity"].clone(), t))
                    .or_default()
                    .push(v);
            }
        }
        if seen.len() == total {
            break seen;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {total} readings searchable",
            seen.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    for ((post, quantity, t), values) in &seen {
        let p: i64 = post.trim_start_matches("out-").parse().unwrap();
        let minute = (t / 1000 - t0) / 60;
        let want = (p * 1000 + minute) as f64 + if quantity == "no2" { 0.5 } else { 0.0 };
        assert_eq!(values, &[want], "{post} {quantity} at {t}");
    }
    gw.running.stop().await;
}

/// Every Flux query in `dashboards/*.json` filters on measurements, fields, tags and quantities
/// the sink really writes: taken from the sink's own mapping, not a copied list.
#[test]
fn dashboards_query_only_what_the_sink_writes() {
    use taza_sink::schema::{measurement, FIELDS, TAGS};

    fn queries(v: &serde_json::Value, out: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(map) => {
                for (k, v) in map {
                    match v.as_str() {
                        Some(s)
                            if k == "query"
                                && (s.contains("from(bucket") || s.contains("schema.")) =>
                        {
                            out.push(s.to_string());
                        }
                        _ => queries(v, out),
                    }
                }
            }
            serde_json::Value::Array(items) => items.iter().for_each(|i| queries(i, out)),
            _ => {}
        }
    }
    /// The string literals compared with `r.{key}` (`r.{key} == "…"`).
    fn literals(query: &str, key: &str) -> Vec<String> {
        let needle = format!("r.{key} == \"");
        query
            .match_indices(&needle)
            .map(|(i, _)| {
                let rest = &query[i + needle.len()..];
                rest[..rest.find('"').unwrap()].to_string()
            })
            .collect()
    }

    let measurements: Vec<&str> = Quantity::ALL.iter().map(|q| measurement(*q)).collect();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../dashboards");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    let names: Vec<String> = files
        .iter()
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["overview", "post", "targets"]);
    let mut checked = 0;
    for file in &files {
        let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(file).unwrap())
            .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let mut qs = Vec::new();
        queries(&json, &mut qs);
        assert!(!qs.is_empty(), "{} has no Flux query", file.display());
        for q in qs {
            let what = format!("{}: {q}", file.display());
            // Bracket access would slip past the checks below.
            assert!(!q.contains("r[\""), "use r.key in {what}");
            // Tag-value lookups (schema.tagValues) name a tag, not a measurement.
            if q.contains("schema.tagValues") {
                for tag in literals(&q.replace("tag: \"", "r.tag == \""), "tag") {
                    assert!(TAGS.contains(&tag.as_str()), "tag {tag} in {what}");
                }
                checked += 1;
                continue;
            }
            let ms = literals(&q, "_measurement");
            assert!(!ms.is_empty(), "no _measurement filter in {what}");
            for m in &ms {
                assert!(
                    measurements.contains(&m.as_str()),
                    "measurement {m} in {what}"
                );
            }
            let fields = literals(&q, "_field");
            assert!(!fields.is_empty(), "no _field filter in {what}");
            for f in &fields {
                assert!(FIELDS.contains(&f.as_str()), "field {f} in {what}");
            }
            for quantity in literals(&q, "quantity") {
                let parsed = Quantity::parse(&quantity)
                    .unwrap_or_else(|| panic!("quantity {quantity} in {what}"));
                assert!(
                    ms.iter().any(|m| m == measurement(parsed)),
                    "{quantity} is written under {}, not {ms:?}: {what}",
                    measurement(parsed)
                );
            }
            // Every `r.x` a filter reads is a tag, a field pivoted into a column, or a
            // Flux column.
            for (i, _) in q.match_indices("r.") {
                let key: String = q[i + 2..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                let known = TAGS.contains(&key.as_str())
                    || FIELDS.contains(&key.as_str())
                    || ["_measurement", "_field", "_value", "_time"].contains(&key.as_str());
                if i > 0 && q.as_bytes()[i - 1].is_ascii_alphanumeric() {
                    continue; // part of a longer word (e.g. "bitwise.uand(... r.flags")
                }
                assert!(known, "r.{key} in {what}");
            }
            checked += 1;
        }
    }
    assert!(checked >= 20, "only {checked} queries checked");
}
