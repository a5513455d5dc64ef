//! Shared test harness: gateways in-process and as processes, Mosquitto processes, an MQTT
//! publisher that waits for every PUBACK, and a minimal HTTP/1.1 client.

use std::io::Write as _;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use protocol::{Measurement, PostId, QaFlags, Quantity, UnixSeconds};
use rumqttc::{AsyncClient, Event, MqttOptions, Outgoing, Packet, QoS};
use taza_domain::post::{PostEntry, PostKind};
use taza_gateway::config::Config;
use taza_ingest::config::BrokerUrl;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Writes to the real stderr, past the test harness's capture, so a skip is seen.
pub fn loud(msg: &str) {
    let _ = writeln!(std::io::stderr().lock(), "\n######## {msg} ########\n");
}

pub fn post(id: &str) -> PostId {
    PostId::parse(id).unwrap()
}

/// An air post at Almaty's centre with a 60 s cadence.
pub fn air_post(id: &str) -> PostEntry {
    PostEntry {
        district: Some("Алмалинский".into()),
        sensors: vec![Quantity::Pm2_5, Quantity::No2],
        cadence: Some(Duration::from_secs(60)),
        ..PostEntry::new(
            post(id),
            PostKind::Air,
            format!("test {id}"),
            43.2389,
            76.8897,
        )
    }
}

/// Config for a gateway on free ports with its data in `dir`.
pub fn test_config(dir: &Path, posts: Vec<PostEntry>, broker: Option<u16>) -> Config {
    let mut c = Config::default();
    c.store.data_dir = dir.to_path_buf();
    c.api.listen = "127.0.0.1:0".parse().unwrap();
    c.mqtt.listen = SocketAddr::from(([127, 0, 0, 1], free_port()));
    c.mqtt.broker = broker.map(|p| {
        format!("mqtt://127.0.0.1:{p}")
            .parse::<BrokerUrl>()
            .unwrap()
    });
    // A distinct session per test, so tests sharing a broker never share a queue.
    c.mqtt.client_id = format!("gw-{}", unique());
    c.posts = posts;
    c
}

pub fn unique() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A gateway running inside the test process.
pub struct InProcess {
    pub running: taza_gateway::Running,
    pub mqtt_port: u16,
}

pub async fn start_gateway(config: Config) -> InProcess {
    let mqtt_port = match &config.mqtt.broker {
        Some(b) => b.port,
        None => config.mqtt.listen.port(),
    };
    let running = taza_gateway::start(config, CancellationToken::new())
        .await
        .unwrap();
    wait_until(
        "gateway connected to its broker",
        Duration::from_secs(10),
        || {
            let m = running.metrics.clone();
            async move { m.mqtt_connected() }
        },
    )
    .await;
    InProcess { running, mqtt_port }
}

/// Polls `check` every 20 ms until it holds; panics naming `what` after `timeout`.
pub async fn wait_until<F, Fut>(what: &str, timeout: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while !check().await {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A reading at `at` (RFC 3339).
pub fn m(quantity: Quantity, value: f64, at: &str) -> Measurement {
    let at = taza_domain::calendar::parse_rfc3339(at).unwrap();
    Measurement {
        quantity,
        value,
        at,
        flags: QaFlags::NONE,
        window_s: None,
    }
}

pub fn m_at(quantity: Quantity, value: f64, at: UnixSeconds) -> Measurement {
    Measurement {
        quantity,
        value,
        at,
        flags: QaFlags::NONE,
        window_s: None,
    }
}

pub fn cbor(post_id: &str, readings: &[Measurement]) -> Vec<u8> {
    let mut buf = vec![0u8; protocol::senml::MAX_PAYLOAD_BYTES];
    let n = protocol::senml::encode(&post(post_id), readings, &mut buf).unwrap();
    buf.truncate(n);
    buf
}

pub fn telemetry_topic(post_id: &str) -> String {
    format!("taza/v1/posts/{post_id}/telemetry")
}

/// Publishes every `(topic, payload)` at QoS 1 from a fresh client and returns once the broker
/// has acknowledged them all (reconnecting through broker restarts).
pub async fn publish_all(port: u16, messages: Vec<(String, Vec<u8>)>) {
    Publisher::connect(port).await.send_all(messages).await;
}

pub struct Publisher {
    client: AsyncClient,
    eventloop: rumqttc::EventLoop,
}

impl Publisher {
    pub async fn connect(port: u16) -> Self {
        let mut opts = MqttOptions::new(format!("pub-{}", unique()), "127.0.0.1", port);
        opts.set_clean_session(false)
            .set_inflight(200)
            .set_max_packet_size(1 << 20, 1 << 20);
        let (client, eventloop) = AsyncClient::new(opts, 1024);
        Self { client, eventloop }
    }

    pub async fn send_all(mut self, messages: Vec<(String, Vec<u8>)>) {
        let total = messages.len();
        let client = self.client.clone();
        let feeder = tokio::spawn(async move {
            for (topic, payload) in messages {
                client
                    .publish(topic, QoS::AtLeastOnce, false, payload)
                    .await
                    .unwrap();
            }
        });
        let mut acked = 0;
        let deadline = Instant::now() + Duration::from_secs(120);
        while acked < total {
            assert!(
                Instant::now() < deadline,
                "publisher: only {acked}/{total} acknowledged"
            );
            match tokio::time::timeout(Duration::from_secs(5), self.eventloop.poll()).await {
                Ok(Ok(Event::Incoming(Packet::PubAck(_)))) => acked += 1,
                Ok(Ok(_)) | Err(_) => {}
                // Broker restarting: keep polling, rumqttc reconnects and resends unacked ones.
                Ok(Err(_)) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
        feeder.await.unwrap();
        // Let the last PUBACKs' bookkeeping settle, then leave cleanly.
        let _ = self.client.disconnect().await;
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            while let Ok(ev) = self.eventloop.poll().await {
                if matches!(ev, Event::Outgoing(Outgoing::Disconnect)) {
                    break;
                }
            }
        })
        .await;
    }
}

/// `GET path` over a fresh HTTP/1.1 connection; returns status and body.
pub async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await.unwrap();
    let text = String::from_utf8(raw).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let status: u16 = head.split(' ').nth(1).unwrap().parse().unwrap();
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_string()
    };
    (status, body)
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16).unwrap();
        if size == 0 {
            break;
        }
        out.push_str(&rest[..size]);
        body = &rest[size + 2..];
    }
    out
}

pub async fn get_json(addr: SocketAddr, path: &str) -> serde_json::Value {
    let (status, body) = http_get(addr, path).await;
    assert_eq!(status, 200, "GET {path}: {body}");
    serde_json::from_str(&body).unwrap()
}

/// The value of a Prometheus series line, e.g. `taza_store_readings_stored_total`.
pub async fn metric(addr: SocketAddr, series: &str) -> f64 {
    let (_, body) = http_get(addr, "/metrics").await;
    body.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|v| v.strip_prefix(' ')))
        .unwrap_or_else(|| panic!("no series {series} in /metrics:\n{body}"))
        .trim()
        .parse()
        .unwrap()
}

/// Count of raw readings in a gateway's SQLite file (opened read-only beside the gateway).
pub fn stored_count(data_dir: &Path) -> i64 {
    let path = data_dir.join(taza_store::DB_FILE);
    let Ok(conn) =
        rusqlite::Connection::open_with_flags(&path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
    else {
        return 0;
    };
    conn.query_row("SELECT count(*) FROM readings", [], |r| r.get(0))
        .unwrap_or(0)
}

// ---- Mosquitto ------------------------------------------------------------------------------

/// A Mosquitto broker process of our own, with persistence, on a free port.
pub struct Mosquitto {
    pub port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

/// Finds the first of `paths` installed by Debian's `package`. `None` means skip (after a loud
/// banner), unless CI requires it with `TAZA_REQUIRE_<var>=1`, which makes a missing binary fail.
pub fn required_binary(test: &str, var: &str, package: &str, paths: &[&str]) -> Option<PathBuf> {
    if let Some(p) = paths.iter().map(PathBuf::from).find(|p| p.exists()) {
        return Some(p);
    }
    if std::env::var(format!("TAZA_REQUIRE_{var}")).is_ok_and(|v| v == "1") {
        panic!("{test}: TAZA_REQUIRE_{var}=1 but {package} is not installed (apt-get install {package})");
    }
    loud(&format!(
        "SKIPPED {test}: {package} not installed (CI installs it; apt-get install {package})"
    ));
    None
}

/// Finds Debian's mosquitto (see [`required_binary`]).
pub fn mosquitto_binary(test: &str) -> Option<PathBuf> {
    required_binary(
        test,
        "MOSQUITTO",
        "mosquitto",
        &["/usr/sbin/mosquitto", "/usr/bin/mosquitto"],
    )
}

impl Mosquitto {
    pub fn start(binary: &Path) -> Self {
        let mut dir = tempfile::tempdir().unwrap();
        if std::env::var_os("TAZA_DEBUG_MOSQUITTO").is_some() {
            dir.disable_cleanup(true);
            loud(&format!("mosquitto dir {} kept", dir.path().display()));
        }
        let mut m = Self {
            port: free_port(),
            dir,
            child: None,
        };
        let conf = format!(
            "user root\nlistener {port} 127.0.0.1\nallow_anonymous true\npersistence true\npersistence_location {dir}/\n\
             autosave_interval 1\nmax_inflight_messages 1000\nmax_queued_messages 1000000\n\
             log_dest file {dir}/mosquitto.log\n",
            port = m.port,
            dir = m.dir.path().display()
        );
        std::fs::write(m.dir.path().join("mosquitto.conf"), conf).unwrap();
        m.spawn(binary);
        m
    }

    fn spawn(&mut self, binary: &Path) {
        let child = Command::new(binary)
            .arg("-c")
            .arg(self.dir.path().join("mosquitto.conf"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "mosquitto did not listen on {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Graceful restart (SIGTERM, which saves its persistence file), then start again.
    pub fn restart(&mut self, binary: &Path) {
        self.stop();
        self.spawn(binary);
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            signal(&child, "TERM");
            let _ = child.wait();
        }
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

pub fn signal(child: &Child, sig: &str) {
    let status = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(status.success(), "kill -{sig} failed");
}

// ---- the gateway binary ---------------------------------------------------------------------

/// The `gateway` binary as a child process.
pub struct GatewayProcess {
    child: Child,
}

impl GatewayProcess {
    pub fn start(config_file: &Path) -> Self {
        let child = Command::new(env!("CARGO_BIN_EXE_gateway"))
            .arg("--config")
            .arg(config_file)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        Self { child }
    }

    pub fn kill9(mut self) {
        signal(&self.child, "KILL");
        let _ = self.child.wait();
    }

    pub fn terminate(mut self) -> std::process::ExitStatus {
        signal(&self.child, "TERM");
        self.child.wait().unwrap()
    }
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
