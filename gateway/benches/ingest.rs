//! Ingest benchmark: what a bare QoS 1 subscriber receives from a broker, against what the
//! gateway commits from the same broker and the same publishers, live and draining a queue
//! (including a fleet's 24 h backlog after an outage); publish-to-commit latency at a steady
//! rate; the gateway's peak RSS.
//!
//! Run with `cargo bench -p gateway --bench ingest` (see `benches/README.md` for what each figure
//! means). The gateway runs as its own process (the real `gateway` binary, external-broker mode)
//! so its memory is its own; the broker is a private Mosquitto on a free port.
#![allow(clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use protocol::{Measurement, PostId, QaFlags, Quantity, UnixSeconds};
use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Outgoing, Packet, QoS};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

/// Registered air posts the messages are spread over.
const POSTS: u64 = 40;
/// One air-post record: what a Taza air post sends every minute.
const QUANTITIES: [Quantity; 6] = taza_sim::fleet::AIR_QUANTITIES;
const READINGS_PER_MESSAGE: u64 = QUANTITIES.len() as u64;
/// Spacing of one post's records (its cadence).
const CADENCE_S: i64 = 60;
const TOPIC_FILTER: &str = "taza/v1/posts/+/telemetry";
/// How often the committed counter is read from `/metrics` while waiting.
const SCRAPE_EVERY: Duration = Duration::from_millis(10);
/// Longest wait for one throughput run before it is reported as incomplete.
const RUN_TIMEOUT: Duration = Duration::from_secs(120);

// ---- settings --------------------------------------------------------------------------------

struct Settings {
    messages: u64,
    seconds: u64,
    rate: u64,
    publishers: usize,
    inflight: u16,
    skip_normal: bool,
    /// Posts of the backlog phase (0 skips it).
    backlog_posts: u64,
    /// Hours of one-minute records each of them queued.
    backlog_hours: u64,
    /// Where `perf record` writes the gateway's profile of the backlog drain (None: no perf).
    perf: Option<PathBuf>,
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    match std::env::var(name) {
        Ok(v) => v
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a valid value")),
        Err(_) => default,
    }
}

impl Settings {
    fn from_env() -> Self {
        let s = Self {
            messages: env_or("TAZA_BENCH_MESSAGES", 50_000),
            seconds: env_or("TAZA_BENCH_SECONDS", 10),
            rate: env_or("TAZA_BENCH_RATE", 1_000),
            publishers: env_or("TAZA_BENCH_PUBLISHERS", 2),
            inflight: env_or("TAZA_BENCH_INFLIGHT", 1_000),
            skip_normal: env_or("TAZA_BENCH_SKIP_NORMAL", 0u8) == 1,
            backlog_posts: env_or("TAZA_BENCH_BACKLOG_POSTS", 200),
            backlog_hours: env_or("TAZA_BENCH_BACKLOG_HOURS", 24),
            perf: std::env::var_os("TAZA_BENCH_PERF")
                .filter(|p| !p.is_empty())
                .map(PathBuf::from),
        };
        assert!(
            s.messages > 0 && s.rate > 0 && s.publishers > 0 && s.inflight > 0,
            "TAZA_BENCH_* values must be positive"
        );
        s
    }

    fn steady_messages(&self) -> u64 {
        self.rate * self.seconds
    }

    /// Messages of the backlog phase: one per post and minute.
    fn backlog_messages(&self) -> u64 {
        self.backlog_posts * self.backlog_hours * 60
    }

    /// Posts the gateway's registry holds.
    fn registered_posts(&self) -> u64 {
        POSTS.max(self.backlog_posts)
    }
}

/// (topic, payload).
type Message = (String, Vec<u8>);
/// (post, record time): names one message.
type Key = (String, i64);

// ---- messages --------------------------------------------------------------------------------

/// Sequence numbers: `0..messages` for throughput runs, then the steady run, then warm-up.
struct Plan {
    /// Time of sequence 0's record; every record is in the past and (post, time) is unique.
    base: i64,
    messages: u64,
    steady: u64,
    backlog_posts: u64,
    /// Time of the backlog's first record: its records end before `base`.
    backlog_base: i64,
    /// One reading per quantity, decoded from a JSON pack so that fields this bench does not
    /// set keep the protocol's defaults.
    template: Vec<Measurement>,
}

impl Plan {
    fn new(s: &Settings) -> Self {
        let total = 2 * s.messages + s.steady_messages() + POSTS;
        let now = taza_domain::calendar::now().0;
        let json = QUANTITIES
            .iter()
            .map(|q| format!("{{\"n\":\"{}\",\"v\":1}}", q.as_str()))
            .collect::<Vec<_>>()
            .join(",");
        let post = PostId::parse(&Self::post_name(0)).expect("bench post ids are valid slugs");
        let template =
            protocol::senml::decode(format!("[{json}]").as_bytes(), &post, UnixSeconds(now))
                .expect("template pack decodes")
                .readings
                .to_vec();
        assert_eq!(
            template.len(),
            QUANTITIES.len(),
            "template has every quantity"
        );
        let base = now - CADENCE_S * (total / POSTS + 2) as i64;
        Self {
            base,
            messages: s.messages,
            steady: s.steady_messages(),
            backlog_posts: s.backlog_posts.max(1),
            backlog_base: base - CADENCE_S * (s.backlog_hours * 60 + 2) as i64,
            template,
        }
    }

    /// Messages of throughput run `i` (each run into one store needs fresh records).
    fn throughput_range(&self, i: u64) -> std::ops::Range<u64> {
        i * self.messages..(i + 1) * self.messages
    }

    fn steady_range(&self) -> std::ops::Range<u64> {
        2 * self.messages..2 * self.messages + self.steady
    }

    fn warmup_range(&self) -> std::ops::Range<u64> {
        let start = 2 * self.messages + self.steady;
        start..start + POSTS
    }

    fn post_name(index: u64) -> String {
        format!("bench-{:03}", index + 1)
    }

    /// (post, record time) of a sequence number.
    fn key(&self, seq: u64) -> (String, i64) {
        (
            Self::post_name(seq % POSTS),
            self.base + CADENCE_S * (seq / POSTS) as i64,
        )
    }

    /// Backlog message `seq`: posts take turns (as a fleet replaying its buffers after an
    /// outage does), each post's records one minute apart, oldest first.
    fn backlog_message(&self, seq: u64) -> (String, Vec<u8>) {
        let name = Self::post_name(seq % self.backlog_posts);
        let at = self.backlog_base + CADENCE_S * (seq / self.backlog_posts) as i64;
        self.pack(&name, at, seq)
    }

    fn backlog(&self, messages: u64) -> Vec<(String, Vec<u8>)> {
        (0..messages).map(|seq| self.backlog_message(seq)).collect()
    }

    /// One SenML CBOR pack from a post: six readings at one time.
    fn message(&self, seq: u64) -> (String, Vec<u8>) {
        let (name, at) = self.key(seq);
        self.pack(&name, at, seq)
    }

    fn pack(&self, name: &str, at: i64, seq: u64) -> (String, Vec<u8>) {
        let post = PostId::parse(name).expect("bench post ids are valid slugs");
        let wobble = (seq % 17) as f64 * 0.5;
        let values = [
            8.0 + wobble,
            14.0 + wobble,
            31.0 + wobble,
            42.0 + wobble,
            -6.5 + wobble / 10.0,
            71.0 + wobble / 5.0,
        ];
        let readings: Vec<Measurement> = self
            .template
            .iter()
            .zip(values)
            .map(|(&template, value)| Measurement {
                value,
                at: UnixSeconds(at),
                flags: QaFlags::NONE,
                ..template
            })
            .collect();
        let mut buf = vec![0u8; protocol::senml::MAX_PAYLOAD_BYTES];
        let n = protocol::senml::encode(&post, &readings, &mut buf).expect("bench pack encodes");
        buf.truncate(n);
        (format!("taza/v1/posts/{name}/telemetry"), buf)
    }

    fn messages(&self, range: std::ops::Range<u64>) -> Vec<(String, Vec<u8>)> {
        range.map(|seq| self.message(seq)).collect()
    }
}

// ---- small helpers ---------------------------------------------------------------------------

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free local port")
        .port()
}

fn unique(tag: &str) -> String {
    format!("bench-{tag}-{}", std::process::id())
}

/// User + system CPU seconds a process has used so far (Linux `/proc`; 0 elsewhere).
fn cpu_seconds(pid: u32) -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    let ticks = *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse::<f64>().ok())
            .unwrap_or(100.0)
    });
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // Fields after the command name (which may hold spaces): state is field 3, utime 14, stime 15.
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return 0.0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (field(11) + field(12)) / ticks
}

/// A `Vm*` line of `/proc/<pid>/status`, in kB.
fn proc_status_kb(pid: u32, key: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|l| {
        l.strip_prefix(key)?
            .strip_prefix(':')?
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .ok()
    })
}

/// CPU used by the processes of a run, per wall second.
struct Cpu {
    pids: Vec<(&'static str, u32)>,
    start: Vec<f64>,
    at: Instant,
}

impl Cpu {
    fn start(pids: Vec<(&'static str, u32)>) -> Self {
        let start = pids.iter().map(|&(_, p)| cpu_seconds(p)).collect();
        Self {
            pids,
            start,
            at: Instant::now(),
        }
    }

    /// "gateway 0.93, mosquitto 0.41, bench 0.52" (CPU-seconds per second; 1.0 = one core).
    fn finish(&self) -> String {
        let wall = self.at.elapsed().as_secs_f64().max(1e-9);
        self.pids
            .iter()
            .zip(&self.start)
            .map(|(&(name, pid), s)| format!("{name} {:.2}", (cpu_seconds(pid) - s) / wall))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

fn rate(n: u64, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64().max(1e-9)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

// ---- the broker ------------------------------------------------------------------------------

enum Broker {
    Mosquitto {
        port: u16,
        child: Child,
        _dir: tempfile::TempDir,
    },
    /// rumqttd inside this process (the gateway's embedded broker code), when Mosquitto is
    /// not installed.
    Embedded { port: u16 },
}

impl Broker {
    fn start() -> Self {
        let binary = ["/usr/sbin/mosquitto", "/usr/bin/mosquitto"]
            .into_iter()
            .map(PathBuf::from)
            .find(|p| p.exists());
        match binary {
            Some(binary) => Self::mosquitto(&binary),
            None => {
                let listen = SocketAddr::from(([127, 0, 0, 1], free_port()));
                let addr = taza_ingest::broker::start(listen).expect("embedded broker starts");
                Self::Embedded { port: addr.port() }
            }
        }
    }

    fn mosquitto(binary: &Path) -> Self {
        let dir = tempfile::tempdir().expect("temp dir for mosquitto");
        let port = free_port();
        let conf = format!(
            "user root\nlistener {port} 127.0.0.1\nallow_anonymous true\n\
             max_inflight_messages 1000\nmax_queued_messages 1000000\n\
             log_dest file {dir}/mosquitto.log\n",
            dir = dir.path().display()
        );
        let conf_path = dir.path().join("mosquitto.conf");
        std::fs::write(&conf_path, conf).expect("write mosquitto.conf");
        let child = Command::new(binary)
            .arg("-c")
            .arg(&conf_path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn mosquitto");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "mosquitto did not listen on {port}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Self::Mosquitto {
            port,
            child,
            _dir: dir,
        }
    }

    fn port(&self) -> u16 {
        match self {
            Self::Mosquitto { port, .. } | Self::Embedded { port } => *port,
        }
    }

    fn pid(&self) -> Option<u32> {
        match self {
            Self::Mosquitto { child, .. } => Some(child.id()),
            Self::Embedded { .. } => None,
        }
    }

    fn describe(&self) -> String {
        match self {
            Self::Mosquitto { port, .. } => format!(
                "Mosquitto ({}) on 127.0.0.1:{port}, no persistence, max_inflight_messages 1000",
                mosquitto_version()
            ),
            Self::Embedded { port } => format!(
                "EMBEDDED rumqttd in the bench process on 127.0.0.1:{port} (Mosquitto is not \
                 installed; figures are not comparable with Mosquitto runs)"
            ),
        }
    }

    /// (name, pid) of the broker's process for CPU accounting.
    fn cpu_entry(&self) -> (&'static str, u32) {
        match self.pid() {
            Some(pid) => ("mosquitto", pid),
            None => ("bench+broker", std::process::id()),
        }
    }
}

fn mosquitto_version() -> String {
    ["/usr/sbin/mosquitto", "/usr/bin/mosquitto"]
        .into_iter()
        .find_map(|b| Command::new(b).arg("-h").output().ok())
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .map(str::to_string)
        })
        .unwrap_or_else(|| "unknown version".into())
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Self::Mosquitto { child, .. } = self {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

// ---- MQTT clients ----------------------------------------------------------------------------

/// A connected rumqttc client (CONNACK received). `nodelay` sets TCP_NODELAY (rumqttc's default,
/// which the gateway's ingest client keeps, is off).
async fn connect(
    port: u16,
    id: &str,
    clean: bool,
    inflight: u16,
    channel: usize,
    nodelay: bool,
) -> (AsyncClient, EventLoop) {
    let mut opts = MqttOptions::new(id, "127.0.0.1", port);
    opts.set_clean_session(clean)
        .set_inflight(inflight)
        .set_keep_alive(Duration::from_secs(60))
        .set_request_channel_capacity(channel)
        .set_max_packet_size(1 << 20, 1 << 20);
    let (client, mut eventloop) = AsyncClient::new(opts, channel);
    let mut network = eventloop.network_options();
    network.set_tcp_nodelay(nodelay);
    eventloop.set_network_options(network);
    let connected = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => return,
                Ok(_) => {}
                Err(e) => panic!("MQTT client {id} cannot connect: {e}"),
            }
        }
    })
    .await;
    assert!(
        connected.is_ok(),
        "MQTT client {id}: no CONNACK within 10 s"
    );
    (client, eventloop)
}

async fn disconnect(client: AsyncClient, mut eventloop: EventLoop) {
    let _ = client.disconnect().await;
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        while let Ok(ev) = eventloop.poll().await {
            if matches!(ev, Event::Outgoing(Outgoing::Disconnect)) {
                break;
            }
        }
    })
    .await;
}

/// Drops a persistent session at the broker (so it stops queueing for a client that is gone).
async fn forget_session(port: u16, id: &str) {
    let (client, eventloop) = connect(port, id, true, 10, 10, false).await;
    disconnect(client, eventloop).await;
}

/// Publishers connected and ready; `flood` sends everything as fast as the clients allow.
struct Publishers {
    clients: Vec<(AsyncClient, EventLoop)>,
}

struct FloodResult {
    started: Instant,
    /// When the last PUBACK (from the broker) arrived.
    all_acked: Instant,
}

impl Publishers {
    async fn connect(port: u16, count: usize, inflight: u16) -> Self {
        let mut clients = Vec::with_capacity(count);
        for i in 0..count {
            clients.push(
                connect(
                    port,
                    &unique(&format!("pub{i}")),
                    true,
                    inflight,
                    8192,
                    true,
                )
                .await,
            );
        }
        Self { clients }
    }

    /// Spawns the flood; the returned handle resolves when the broker has acknowledged all.
    fn flood(self, messages: Vec<(String, Vec<u8>)>) -> tokio::task::JoinHandle<FloodResult> {
        let k = self.clients.len();
        let mut chunks: Vec<Vec<(String, Vec<u8>)>> = (0..k).map(|_| Vec::new()).collect();
        for (i, m) in messages.into_iter().enumerate() {
            chunks[i % k].push(m);
        }
        tokio::spawn(async move {
            let started = Instant::now();
            let mut tasks = Vec::new();
            for ((client, mut eventloop), chunk) in self.clients.into_iter().zip(chunks) {
                let total = chunk.len();
                let feeder_client = client.clone();
                let feeder = tokio::spawn(async move {
                    for (topic, payload) in chunk {
                        feeder_client
                            .publish(topic, QoS::AtLeastOnce, false, payload)
                            .await
                            .expect("publisher request channel open");
                    }
                });
                tasks.push(tokio::spawn(async move {
                    let mut acked = 0;
                    while acked < total {
                        match eventloop.poll().await {
                            Ok(Event::Incoming(Packet::PubAck(_))) => acked += 1,
                            Ok(_) => {}
                            Err(e) => panic!("publisher lost its connection: {e}"),
                        }
                    }
                    let done = Instant::now();
                    feeder.await.expect("feeder task");
                    disconnect(client, eventloop).await;
                    done
                }));
            }
            let mut all_acked = started;
            for t in tasks {
                all_acked = all_acked.max(t.await.expect("publisher task"));
            }
            FloodResult { started, all_acked }
        })
    }
}

// ---- HTTP and the gateway's metrics ----------------------------------------------------------

async fn http_get(addr: SocketAddr, path: &str) -> String {
    let mut s = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connect to gateway HTTP");
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.expect("send request");
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await.expect("read response");
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_string()
    }
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if size == 0 || rest.len() < size {
            break;
        }
        out.push_str(&rest[..size]);
        body = rest.get(size + 2..).unwrap_or("");
    }
    out
}

/// One scrape of `/metrics`: series (with labels) -> value.
struct Scrape(HashMap<String, f64>);

impl Scrape {
    async fn take(addr: SocketAddr) -> Self {
        let body = http_get(addr, "/metrics").await;
        Self(
            body.lines()
                .filter(|l| !l.starts_with('#'))
                .filter_map(|l| {
                    let (k, v) = l.rsplit_once(' ')?;
                    Some((k.to_string(), v.trim().parse().ok()?))
                })
                .collect(),
        )
    }

    fn get(&self, series: &str) -> f64 {
        self.0.get(series).copied().unwrap_or(0.0)
    }

    fn stored(&self) -> u64 {
        self.get("taza_store_readings_stored_total") as u64
    }

    /// Buckets of a histogram as (upper bound, cumulative count), sorted.
    fn buckets(&self, name: &str) -> Vec<(f64, f64)> {
        let prefix = format!("{name}_bucket{{le=\"");
        let mut b: Vec<(f64, f64)> = self
            .0
            .iter()
            .filter_map(|(k, &v)| {
                let le = k.strip_prefix(&prefix)?.strip_suffix("\"}")?;
                let le = if le == "+Inf" {
                    f64::INFINITY
                } else {
                    le.parse().ok()?
                };
                Some((le, v))
            })
            .collect();
        b.sort_by(|x, y| x.0.total_cmp(&y.0));
        b
    }
}

/// What a histogram gained between two scrapes.
struct HistogramDelta {
    count: f64,
    sum: f64,
    buckets: Vec<(f64, f64)>,
}

impl HistogramDelta {
    fn between(before: &Scrape, after: &Scrape, name: &str) -> Self {
        let b0 = before.buckets(name);
        let buckets = after
            .buckets(name)
            .into_iter()
            .map(|(le, v)| {
                let v0 = b0
                    .iter()
                    .find(|(l, _)| *l == le)
                    .map(|&(_, v)| v)
                    .unwrap_or(0.0);
                (le, v - v0)
            })
            .collect();
        Self {
            count: after.get(&format!("{name}_count")) - before.get(&format!("{name}_count")),
            sum: after.get(&format!("{name}_sum")) - before.get(&format!("{name}_sum")),
            buckets,
        }
    }

    fn mean_ms(&self) -> f64 {
        if self.count > 0.0 {
            self.sum / self.count * 1e3
        } else {
            0.0
        }
    }

    /// Upper bound of the bucket holding quantile `q`, in ms ("<= x ms").
    fn quantile_bound_ms(&self, q: f64) -> f64 {
        let target = self.count * q;
        self.buckets
            .iter()
            .find(|(_, c)| *c >= target && *c > 0.0)
            .map(|&(le, _)| le * 1e3)
            .unwrap_or(f64::NAN)
    }
}

// ---- the gateway process ---------------------------------------------------------------------

struct Gateway {
    child: Child,
    http: SocketAddr,
    client_id: String,
    _dir: tempfile::TempDir,
}

impl Gateway {
    fn start(broker_port: u16, tag: &str, synchronous_normal: bool, posts: u64) -> Self {
        let dir = tempfile::tempdir().expect("temp dir for the gateway");
        let http = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let client_id = unique(&format!("gw-{tag}"));
        let mut toml = format!(
            "[mqtt]\nbroker = \"mqtt://127.0.0.1:{broker_port}\"\nclient_id = \"{client_id}\"\n\n\
             [store]\ndata_dir = \"{data}\"\nsynchronous = \"full\"\n\n[api]\nlisten = \"{http}\"\n",
            data = dir.path().join("data").display()
        );
        for i in 0..posts {
            let name = Plan::post_name(i);
            toml.push_str(&format!(
                "\n[[posts]]\nid = \"{name}\"\nkind = \"air\"\nname = \"Bench {name}\"\n\
                 latitude = {lat:.4}\nlongitude = {lon:.4}\ncadence = \"60s\"\n",
                lat = 43.20 + (i % 100) as f64 * 0.002,
                lon = 76.85 + (i / 100) as f64 * 0.003,
            ));
        }
        let config = dir.path().join("taza.toml");
        std::fs::write(&config, toml).expect("write gateway config");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_gateway"));
        cmd.arg("--config")
            .arg(&config)
            .env("RUST_LOG", "warn")
            .env_remove("TAZA_STORE__SYNCHRONOUS")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        if synchronous_normal {
            cmd.env("TAZA_STORE__SYNCHRONOUS", "normal");
        }
        let child = cmd.spawn().expect("spawn the gateway binary");
        Self {
            child,
            http,
            client_id,
            _dir: dir,
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for the HTTP API and the MQTT connection, then pushes one message per post
    /// through the whole pipeline (subscription active, statements prepared, pages warm).
    async fn ready(&self, broker_port: u16, plan: &Plan) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            assert!(
                Instant::now() < deadline,
                "gateway did not connect to the broker within 20 s"
            );
            if tokio::net::TcpStream::connect(self.http).await.is_ok()
                && Scrape::take(self.http).await.get("taza_mqtt_connected") >= 1.0
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let warmup = plan.messages(plan.warmup_range());
        let want = Scrape::take(self.http).await.stored() + POSTS * READINGS_PER_MESSAGE;
        // The subscription is sent right after CONNACK; give it a moment to land, then re-send
        // the warm-up until it is committed (a message sent before SUBACK is simply not routed).
        for _ in 0..20 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let publishers = Publishers::connect(broker_port, 1, 100).await;
            let _ = publishers
                .flood(warmup.clone())
                .await
                .expect("warm-up publisher");
            for _ in 0..50 {
                if Scrape::take(self.http).await.stored() >= want {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        panic!("gateway never committed the warm-up messages");
    }

    /// SIGTERM and wait, then drop its session at the broker.
    async fn stop(mut self, broker_port: u16) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        forget_session(broker_port, &self.client_id).await;
    }
}

// ---- runs ------------------------------------------------------------------------------------

fn signal(pid: u32, sig: &str) {
    let ok = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "kill -{sig} {pid} failed");
}

/// One throughput run of a consumer.
struct Throughput {
    /// Publish rate: all messages acknowledged by the broker.
    publish_rate: f64,
    /// Messages the consumer received (bare) or committed (gateway).
    done: u64,
    /// Of `done` messages, per second of the run.
    rate: f64,
    /// CPU-seconds per second of each process during the run.
    cpu: String,
    /// Gateway runs: what its own metrics say about the run.
    commits: Option<CommitStats>,
}

struct CommitStats {
    commits: f64,
    mean_ms: f64,
    p99_bound_ms: f64,
    receive_to_commit_mean_ms: f64,
}

/// The bare reference: a rumqttc subscriber, QoS 1, auto-ack, persistent session, rumqttc's
/// default socket options (as the gateway's client), counting messages and nothing else.
struct Bare {
    id: String,
    client: AsyncClient,
    eventloop: EventLoop,
}

impl Bare {
    async fn connect(port: u16) -> Self {
        let id = unique("bare");
        let (client, mut eventloop) = connect(port, &id, false, 100, 64, false).await;
        client
            .subscribe(TOPIC_FILTER, QoS::AtLeastOnce)
            .await
            .expect("queue subscribe");
        loop {
            if let Event::Incoming(Packet::SubAck(_)) =
                eventloop.poll().await.expect("subscriber connection")
            {
                break;
            }
        }
        Self {
            id,
            client,
            eventloop,
        }
    }

    /// Polls until `n` messages arrived (or the run times out); returns how many and when the
    /// last one came.
    async fn receive(
        &mut self,
        n: u64,
        mut on_message: impl FnMut(&rumqttc::Publish),
    ) -> (u64, Instant) {
        let mut received = 0u64;
        let mut last = Instant::now();
        let deadline = tokio::time::Instant::now() + RUN_TIMEOUT;
        while received < n {
            match tokio::time::timeout_at(deadline, self.eventloop.poll()).await {
                Ok(Ok(Event::Incoming(Packet::Publish(p)))) => {
                    last = Instant::now();
                    on_message(&p);
                    received += 1;
                }
                Ok(Ok(_)) => {}
                Ok(Err(e)) => panic!("bare subscriber lost its connection: {e}"),
                Err(_) => break,
            }
        }
        (received, last)
    }

    async fn close(mut self, port: u16) {
        // Let the last PUBACKs out, then leave and drop the session.
        let _ = tokio::time::timeout(Duration::from_millis(200), async {
            while self.eventloop.poll().await.is_ok() {}
        })
        .await;
        disconnect(self.client, self.eventloop).await;
        forget_session(port, &self.id).await;
    }
}

/// Live: publishers flood while the bare subscriber receives.
async fn bare_live(broker: &Broker, s: &Settings, plan: &Plan) -> Throughput {
    let port = broker.port();
    let mut bare = Bare::connect(port).await;
    let publishers = Publishers::connect(port, s.publishers, s.inflight).await;
    let cpu = Cpu::start(vec![broker.cpu_entry(), ("bench", std::process::id())]);
    let flood = publishers.flood(plan.messages(plan.throughput_range(0)));
    let (done, last) = bare.receive(s.messages, |_| {}).await;
    let cpu = cpu.finish();
    let flood = flood.await.expect("flood task");
    bare.close(port).await;
    Throughput {
        publish_rate: rate(s.messages, flood.all_acked - flood.started),
        done,
        rate: rate(done, last.saturating_duration_since(flood.started)),
        cpu,
        commits: None,
    }
}

/// Drain: the subscriber is connected but not reading while the broker takes all N messages;
/// then it reads, timed from that moment. Only the broker -> subscriber path is measured.
async fn bare_drain(broker: &Broker, s: &Settings, plan: &Plan) -> Throughput {
    let port = broker.port();
    let mut bare = Bare::connect(port).await;
    let publishers = Publishers::connect(port, s.publishers, s.inflight).await;
    let flood = publishers
        .flood(plan.messages(plan.throughput_range(0)))
        .await
        .expect("flood task");
    let cpu = Cpu::start(vec![broker.cpu_entry(), ("bench", std::process::id())]);
    let started = Instant::now();
    let (done, last) = bare.receive(s.messages, |_| {}).await;
    let cpu = cpu.finish();
    bare.close(port).await;
    Throughput {
        publish_rate: rate(s.messages, flood.all_acked - flood.started),
        done,
        rate: rate(done, last.saturating_duration_since(started)),
        cpu,
        commits: None,
    }
}

/// Scrapes `/metrics` every [`SCRAPE_EVERY`] until `target` readings are stored.
async fn wait_stored(gw: &Gateway, target: u64) -> (Scrape, Instant) {
    let started = Instant::now();
    loop {
        tokio::time::sleep(SCRAPE_EVERY).await;
        let now = Scrape::take(gw.http).await;
        if now.stored() >= target || started.elapsed() > RUN_TIMEOUT {
            return (now, Instant::now());
        }
    }
}

fn commit_stats(before: &Scrape, after: &Scrape) -> CommitStats {
    let commit = HistogramDelta::between(before, after, "taza_store_commit_duration_seconds");
    let r2c = HistogramDelta::between(before, after, "taza_ingest_receive_to_commit_seconds");
    CommitStats {
        commits: commit.count,
        mean_ms: commit.mean_ms(),
        p99_bound_ms: commit.quantile_bound_ms(0.99),
        receive_to_commit_mean_ms: r2c.mean_ms(),
    }
}

/// Live: publishers flood while the gateway ingests; done when `/metrics` shows every reading
/// committed, timed from the first publish.
async fn gateway_live(
    broker: &Broker,
    gw: &Gateway,
    s: &Settings,
    messages: Vec<Message>,
) -> Throughput {
    let n = messages.len() as u64;
    let publishers = Publishers::connect(broker.port(), s.publishers, s.inflight).await;
    let before = Scrape::take(gw.http).await;
    let cpu = Cpu::start(vec![
        ("gateway", gw.pid()),
        broker.cpu_entry(),
        ("bench", std::process::id()),
    ]);
    let flood = publishers.flood(messages);
    let (after, done_at) = wait_stored(gw, before.stored() + n * READINGS_PER_MESSAGE).await;
    let cpu = cpu.finish();
    let flood = flood.await.expect("flood task");
    let done = (after.stored() - before.stored()) / READINGS_PER_MESSAGE;
    Throughput {
        publish_rate: rate(n, flood.all_acked - flood.started),
        done,
        rate: rate(done, done_at.saturating_duration_since(flood.started)),
        cpu,
        commits: Some(commit_stats(&before, &after)),
    }
}

/// Drain: the gateway process is paused (SIGSTOP) while the broker takes all N messages, then
/// resumed (SIGCONT); timed from the resume to the last commit.
async fn gateway_drain(
    broker: &Broker,
    gw: &Gateway,
    s: &Settings,
    messages: Vec<Message>,
) -> Throughput {
    let n = messages.len() as u64;
    let publishers = Publishers::connect(broker.port(), s.publishers, s.inflight).await;
    let before = Scrape::take(gw.http).await;
    signal(gw.pid(), "STOP");
    let flood = publishers.flood(messages).await.expect("flood task");
    let cpu = Cpu::start(vec![
        ("gateway", gw.pid()),
        broker.cpu_entry(),
        ("bench", std::process::id()),
    ]);
    let started = Instant::now();
    signal(gw.pid(), "CONT");
    let (after, done_at) = wait_stored(gw, before.stored() + n * READINGS_PER_MESSAGE).await;
    let cpu = cpu.finish();
    let done = (after.stored() - before.stored()) / READINGS_PER_MESSAGE;
    Throughput {
        publish_rate: rate(n, flood.all_acked - flood.started),
        done,
        rate: rate(done, done_at.saturating_duration_since(started)),
        cpu,
        commits: Some(commit_stats(&before, &after)),
    }
}

/// A profiler attached to the gateway for one run (`TAZA_BENCH_PERF`).
struct Perf(Child);

impl Perf {
    /// `perf record -g -p <pid>` into `out`, if `out` is set and perf starts.
    fn attach(out: Option<&Path>, pid: u32) -> Option<Self> {
        let out = out?;
        let child = Command::new("perf")
            .args([
                "record",
                "-e",
                "cpu-clock",
                "-F",
                "999",
                "-g",
                "--call-graph",
                "dwarf,16384",
            ])
            .arg("-o")
            .arg(out)
            .arg("-p")
            .arg(pid.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        match child {
            Ok(c) => {
                // perf needs a moment to open its buffers before the run starts.
                std::thread::sleep(Duration::from_millis(500));
                Some(Self(c))
            }
            Err(e) => {
                println!("      (perf not started: {e})");
                None
            }
        }
    }

    /// SIGINT (perf writes its file on it) and wait.
    fn finish(mut self) {
        signal(self.0.id(), "INT");
        let _ = self.0.wait();
    }
}

/// A 24 h backlog for the bare subscriber: queued at the broker while it is connected but not
/// polled (more than the socket buffers hold, so the broker queues nearly all of it), then read.
async fn bare_backlog(broker: &Broker, s: &Settings, plan: &Plan) -> Throughput {
    let port = broker.port();
    let n = s.backlog_messages();
    let mut bare = Bare::connect(port).await;
    let publishers = Publishers::connect(port, s.publishers, s.inflight).await;
    let flood = publishers.flood(plan.backlog(n)).await.expect("flood task");
    let cpu = Cpu::start(vec![broker.cpu_entry(), ("bench", std::process::id())]);
    let started = Instant::now();
    let (done, last) = bare.receive(n, |_| {}).await;
    let cpu = cpu.finish();
    bare.close(port).await;
    Throughput {
        publish_rate: rate(n, flood.all_acked - flood.started),
        done,
        rate: rate(done, last.saturating_duration_since(started)),
        cpu,
        commits: None,
    }
}

/// The same backlog for the gateway: queued while the process is stopped (SIGSTOP, as if the
/// gateway were down for the day), drained after SIGCONT, timed to the last commit.
async fn gateway_backlog(broker: &Broker, gw: &Gateway, s: &Settings, plan: &Plan) -> Throughput {
    let n = s.backlog_messages();
    let messages = plan.backlog(n);
    let publishers = Publishers::connect(broker.port(), s.publishers, s.inflight).await;
    let before = Scrape::take(gw.http).await;
    signal(gw.pid(), "STOP");
    let flood = publishers.flood(messages).await.expect("flood task");
    let perf = Perf::attach(s.perf.as_deref(), gw.pid());
    let cpu = Cpu::start(vec![
        ("gateway", gw.pid()),
        broker.cpu_entry(),
        ("bench", std::process::id()),
    ]);
    let started = Instant::now();
    signal(gw.pid(), "CONT");
    let (after, done_at) = wait_stored(gw, before.stored() + n * READINGS_PER_MESSAGE).await;
    let cpu = cpu.finish();
    if let Some(perf) = perf {
        perf.finish();
    }
    let done = (after.stored() - before.stored()) / READINGS_PER_MESSAGE;
    Throughput {
        publish_rate: rate(n, flood.all_acked - flood.started),
        done,
        rate: rate(done, done_at.saturating_duration_since(started)),
        cpu,
        commits: Some(commit_stats(&before, &after)),
    }
}

/// Publishes `items` at `s.rate` (tokio interval) from one client; returns when each was
/// handed to the client, and the rate achieved.
fn steady_publish<K>(
    port: u16,
    s: &Settings,
    items: Vec<(K, Message)>,
) -> tokio::task::JoinHandle<(HashMap<K, Instant>, f64)>
where
    K: std::hash::Hash + Eq + Send + 'static,
{
    let period = Duration::from_secs_f64(1.0 / s.rate as f64);
    let inflight = s.inflight;
    tokio::spawn(async move {
        let total = items.len();
        let (client, mut eventloop) =
            connect(port, &unique("steady"), true, inflight, 8192, true).await;
        let acks = tokio::spawn(async move {
            let mut acked = 0;
            while acked < total {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::PubAck(_))) => acked += 1,
                    Ok(_) => {}
                    Err(e) => panic!("steady publisher lost its connection: {e}"),
                }
            }
            eventloop
        });
        let mut published = HashMap::with_capacity(total);
        let mut tick = tokio::time::interval(period);
        let started = Instant::now();
        for (key, (topic, payload)) in items {
            tick.tick().await;
            published.insert(key, Instant::now());
            client
                .publish(topic, QoS::AtLeastOnce, false, payload)
                .await
                .expect("publisher request channel open");
        }
        let achieved = rate(total as u64, started.elapsed());
        let eventloop = acks.await.expect("steady publisher acks");
        disconnect(client, eventloop).await;
        (published, achieved)
    })
}

struct Latency {
    sent: u64,
    matched: usize,
    achieved_rate: f64,
    p50: Duration,
    p99: Duration,
    max: Duration,
    cpu: String,
}

impl Latency {
    fn new<K: std::hash::Hash + Eq>(
        published: &HashMap<K, Instant>,
        seen: &[(K, Instant)],
        achieved_rate: f64,
        cpu: String,
    ) -> Self {
        let mut l: Vec<Duration> = seen
            .iter()
            .filter_map(|(k, at)| published.get(k).map(|p| at.saturating_duration_since(*p)))
            .collect();
        l.sort();
        Self {
            sent: published.len() as u64,
            matched: l.len(),
            achieved_rate,
            p50: percentile(&l, 0.50),
            p99: percentile(&l, 0.99),
            max: l.last().copied().unwrap_or_default(),
            cpu,
        }
    }

    fn line(&self) -> String {
        format!(
            "sent {} at {:.0} msg/s, matched {}, p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms  (CPU/s: {})",
            self.sent,
            self.achieved_rate,
            self.matched,
            ms(self.p50),
            ms(self.p99),
            ms(self.max),
            self.cpu
        )
    }
}

/// Reference latency: publish -> bare subscriber receive at the steady rate.
async fn bare_steady(broker: &Broker, s: &Settings, plan: &Plan) -> Latency {
    let port = broker.port();
    let mut bare = Bare::connect(port).await;
    let items: Vec<(Vec<u8>, Message)> = plan
        .messages(plan.steady_range())
        .into_iter()
        .map(|m| (m.1.clone(), m))
        .collect();
    let total = items.len() as u64;
    let cpu = Cpu::start(vec![broker.cpu_entry(), ("bench", std::process::id())]);
    let publisher = steady_publish(port, s, items);
    let mut seen = Vec::with_capacity(total as usize);
    bare.receive(total, |p| seen.push((p.payload.to_vec(), Instant::now())))
        .await;
    let cpu = cpu.finish();
    let (published, achieved) = publisher.await.expect("steady publisher");
    bare.close(port).await;
    Latency::new(&published, &seen, achieved, cpu)
}

/// Observations from the SSE feed: (post, record time) -> when this process saw the event.
struct SseLog {
    seen: Vec<(Key, Instant)>,
    lagged: u64,
}

/// Reads `GET /api/v1/live` until `want` readings events arrived or `stop` fires.
async fn read_sse(
    mut reader: BufReader<tokio::net::TcpStream>,
    chunked: bool,
    want: usize,
    stop: tokio::sync::oneshot::Receiver<()>,
) -> SseLog {
    let mut log = SseLog {
        seen: Vec::with_capacity(want),
        lagged: 0,
    };
    let mut buf = String::new();
    let read = async {
        loop {
            // One read: a chunk (chunked) or whatever arrived (close-delimited).
            let mut piece = Vec::new();
            if chunked {
                let mut size_line = String::new();
                if reader.read_line(&mut size_line).await.unwrap_or(0) == 0 {
                    return;
                }
                let Ok(size) = usize::from_str_radix(size_line.trim(), 16) else {
                    continue;
                };
                if size == 0 {
                    return;
                }
                piece.resize(size + 2, 0);
                if reader.read_exact(&mut piece).await.is_err() {
                    return;
                }
                piece.truncate(size);
            } else {
                piece.resize(64 * 1024, 0);
                match reader.read(&mut piece).await {
                    Ok(0) | Err(_) => return,
                    Ok(k) => piece.truncate(k),
                }
            }
            let now = Instant::now();
            buf.push_str(&String::from_utf8_lossy(&piece));
            while let Some(end) = buf.find("\n\n") {
                let block: String = buf.drain(..end + 2).collect();
                let mut event = "";
                let mut data = String::new();
                for line in block.lines() {
                    if let Some(e) = line.strip_prefix("event:") {
                        event = e.trim();
                    } else if let Some(d) = line.strip_prefix("data:") {
                        data.push_str(d.trim_start());
                    }
                }
                match event {
                    "readings" => {
                        let Ok(v) = serde_json::from_str::<serde_json::Value>(&data) else {
                            continue;
                        };
                        let post = v["post"].as_str().unwrap_or_default().to_string();
                        let at = v["readings"][0]["time"]
                            .as_str()
                            .and_then(taza_domain::calendar::parse_rfc3339);
                        if let Some(at) = at {
                            log.seen.push(((post, at.0), now));
                        }
                    }
                    "lagged" => log.lagged += data.trim().parse::<u64>().unwrap_or(1),
                    _ => {}
                }
            }
            if log.seen.len() >= want {
                return;
            }
        }
    };
    tokio::select! {
        _ = read => {}
        _ = stop => {}
    }
    log
}

async fn open_sse(addr: SocketAddr) -> (BufReader<tokio::net::TcpStream>, bool) {
    let mut s = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connect to gateway HTTP");
    s.set_nodelay(true).expect("TCP_NODELAY");
    let req =
        format!("GET /api/v1/live HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n\r\n");
    s.write_all(req.as_bytes()).await.expect("send SSE request");
    let mut reader = BufReader::new(s);
    let mut chunked = false;
    let mut status = String::new();
    reader
        .read_line(&mut status)
        .await
        .expect("SSE status line");
    assert!(status.contains(" 200"), "GET /api/v1/live: {status}");
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).await.expect("SSE headers");
        if line.trim().is_empty() {
            break;
        }
        if line
            .to_ascii_lowercase()
            .starts_with("transfer-encoding: chunked")
        {
            chunked = true;
        }
    }
    (reader, chunked)
}

struct GatewayLatency {
    sse: Latency,
    lagged: u64,
    /// The gateway's own receive -> commit histogram over the run: p50 and p99 bucket bounds.
    internal_p50_ms: f64,
    internal_p99_ms: f64,
}

/// Publish -> readings event on the gateway's SSE feed, as seen by this process.
async fn gateway_steady(
    broker: &Broker,
    gw: &Gateway,
    s: &Settings,
    plan: &Plan,
) -> GatewayLatency {
    let items: Vec<(Key, Message)> = plan
        .steady_range()
        .map(|seq| (plan.key(seq), plan.message(seq)))
        .collect();
    let total = items.len();
    let (reader, chunked) = open_sse(gw.http).await;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel();
    let sse = tokio::spawn(read_sse(reader, chunked, total, stop_rx));
    let before = Scrape::take(gw.http).await;
    let cpu = Cpu::start(vec![
        ("gateway", gw.pid()),
        broker.cpu_entry(),
        ("bench", std::process::id()),
    ]);
    let (published, achieved) = steady_publish(broker.port(), s, items)
        .await
        .expect("steady publisher");
    // Give the last commits time to reach the feed.
    let grace = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(10)).await;
        let _ = stop_tx.send(());
    });
    let log = sse.await.expect("SSE reader");
    grace.abort();
    let cpu = cpu.finish();
    let after = Scrape::take(gw.http).await;
    let r2c = HistogramDelta::between(&before, &after, "taza_ingest_receive_to_commit_seconds");
    GatewayLatency {
        sse: Latency::new(&published, &log.seen, achieved, cpu),
        lagged: log.lagged,
        internal_p50_ms: r2c.quantile_bound_ms(0.50),
        internal_p99_ms: r2c.quantile_bound_ms(0.99),
    }
}

// ---- main ------------------------------------------------------------------------------------

fn main() {
    // `cargo bench` passes `--bench` (and maybe a filter); this benchmark has one fixed plan.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(run());
}

fn print_throughput(label: &str, t: &Throughput, n: u64) {
    println!(
        "      {label:<6} publish {:>6.0} msg/s | {:>6.0} msg/s ({}/{})  CPU/s: {}",
        t.publish_rate, t.rate, t.done, n, t.cpu
    );
    if let Some(c) = &t.commits {
        println!(
            "             {} group commits of ~{:.0} messages; commit mean {:.2} ms (p99 <= {} ms); \
             receive->commit mean {:.1} ms",
            c.commits,
            t.done as f64 / c.commits.max(1.0),
            c.mean_ms,
            c.p99_bound_ms,
            c.receive_to_commit_mean_ms
        );
    }
}

async fn run() {
    let started = Instant::now();
    let s = Settings::from_env();
    let plan = Plan::new(&s);
    let broker = Broker::start();
    let port = broker.port();
    let n = s.messages;
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!("taza ingest benchmark");
    println!("  broker     : {}", broker.describe());
    println!(
        "  messages   : {n} per throughput run; SenML CBOR, {READINGS_PER_MESSAGE} readings, \
         {POSTS} posts, {} B each",
        plan.message(0).1.len()
    );
    println!(
        "  publishers : {} rumqttc client(s), QoS 1, inflight {} each, TCP_NODELAY",
        s.publishers, s.inflight
    );
    println!("  steady     : {} msg/s for {} s", s.rate, s.seconds);
    if s.backlog_posts > 0 {
        println!(
            "  backlog    : {} posts x {} h of 1-minute records = {} messages ({} readings)",
            s.backlog_posts,
            s.backlog_hours,
            s.backlog_messages(),
            s.backlog_messages() * READINGS_PER_MESSAGE
        );
    }
    println!("  machine    : {cores} core(s), shared by broker, gateway and this bench");
    println!(
        "  gateway    : {} (own process)",
        env!("CARGO_BIN_EXE_gateway")
    );
    println!();

    let nb = s.backlog_messages();
    println!("[1/5] bare subscriber");
    let bare_l = bare_live(&broker, &s, &plan).await;
    print_throughput("live", &bare_l, n);
    let bare_d = bare_drain(&broker, &s, &plan).await;
    print_throughput("drain", &bare_d, n);
    let bare_b = if nb > 0 {
        let t = bare_backlog(&broker, &s, &plan).await;
        print_throughput("backlg", &t, nb);
        Some(t)
    } else {
        None
    };

    println!("[2/5] bare subscriber, steady {} msg/s", s.rate);
    let bare_lat = bare_steady(&broker, &s, &plan).await;
    println!("      {}", bare_lat.line());

    println!("[3/5] gateway, synchronous=full");
    let gw = Gateway::start(port, "full", false, s.registered_posts());
    gw.ready(port, &plan).await;
    let full_l = gateway_live(&broker, &gw, &s, plan.messages(plan.throughput_range(0))).await;
    print_throughput("live", &full_l, n);
    let full_d = gateway_drain(&broker, &gw, &s, plan.messages(plan.throughput_range(1))).await;
    print_throughput("drain", &full_d, n);
    let full_b = if nb > 0 {
        let t = gateway_backlog(&broker, &gw, &s, &plan).await;
        print_throughput("backlg", &t, nb);
        if let Some(p) = &s.perf {
            println!(
                "             perf profile of the backlog drain: {}",
                p.display()
            );
        }
        Some(t)
    } else {
        None
    };
    let hwm_3_kb = proc_status_kb(gw.pid(), "VmHWM");

    println!("[4/5] gateway, steady {} msg/s, observed on SSE", s.rate);
    let gw_lat = gateway_steady(&broker, &gw, &s, &plan).await;
    println!("      {} (SSE lagged {})", gw_lat.sse.line(), gw_lat.lagged);
    let hwm_kb = proc_status_kb(gw.pid(), "VmHWM");
    let rss_kb = proc_status_kb(gw.pid(), "VmRSS");
    gw.stop(port).await;

    let normal = if s.skip_normal {
        None
    } else {
        println!("[5/5] gateway, TAZA_STORE__SYNCHRONOUS=normal");
        let gw = Gateway::start(port, "normal", true, s.registered_posts());
        gw.ready(port, &plan).await;
        let l = gateway_live(&broker, &gw, &s, plan.messages(plan.throughput_range(0))).await;
        print_throughput("live", &l, n);
        let d = gateway_drain(&broker, &gw, &s, plan.messages(plan.throughput_range(1))).await;
        print_throughput("drain", &d, n);
        gw.stop(port).await;
        Some((l, d))
    };

    // ---- the table ----
    let ratio = |g: &Throughput, b: &Throughput| g.rate / b.rate.max(1e-9);
    let verdict = |ok: bool| if ok { "meets aim" } else { "MISSES aim" };
    let mb = |kb: Option<u64>| {
        kb.map_or("n/a".to_string(), |k| {
            format!("{:.1} MB", k as f64 / 1024.0)
        })
    };
    println!();
    println!(
        "== results: {n} messages x {READINGS_PER_MESSAGE} readings, {} publisher(s), {} ==",
        s.publishers,
        broker.describe()
    );
    println!(
        "{:<52} {:>12} {:>12} {:>12}  aim",
        "throughput (msg/s)", "live", "drain", "backlog 24h"
    );
    let row = |name: &str, live: String, drain: String, backlog: String, aim: &str| {
        println!("{name:<52} {live:>12} {drain:>12} {backlog:>12}  {aim}");
    };
    let opt = |t: &Option<Throughput>, f: &dyn Fn(&Throughput) -> String| {
        t.as_ref().map_or("-".to_string(), f)
    };
    let backlog_ratio = match (&full_b, &bare_b) {
        (Some(g), Some(b)) => Some(ratio(g, b)),
        _ => None,
    };
    row(
        "publishers, bare run (all PUBACKs from broker)",
        format!("{:.0}", bare_l.publish_rate),
        format!("{:.0}", bare_d.publish_rate),
        opt(&bare_b, &|t| format!("{:.0}", t.publish_rate)),
        "",
    );
    row(
        "1. bare subscriber received",
        format!("{:.0}", bare_l.rate),
        format!("{:.0}", bare_d.rate),
        opt(&bare_b, &|t| format!("{:.0}", t.rate)),
        "",
    );
    row(
        "publishers, gateway run",
        format!("{:.0}", full_l.publish_rate),
        format!("{:.0}", full_d.publish_rate),
        opt(&full_b, &|t| format!("{:.0}", t.publish_rate)),
        "",
    );
    row(
        "2. gateway committed (synchronous=full)",
        format!("{:.0}", full_l.rate),
        format!("{:.0}", full_d.rate),
        opt(&full_b, &|t| format!("{:.0}", t.rate)),
        "",
    );
    row(
        "3. ratio gateway / bare",
        format!("{:.2}", ratio(&full_l, &bare_l)),
        format!("{:.2}", ratio(&full_d, &bare_d)),
        backlog_ratio.map_or("-".to_string(), |r| format!("{r:.2}")),
        &format!(
            "live >= 0.90 ({}); draining >= 0.50 (drain: {}; backlog: {})",
            verdict(ratio(&full_l, &bare_l) >= 0.9),
            verdict(ratio(&full_d, &bare_d) >= 0.5),
            backlog_ratio.map_or("not run", |r| verdict(r >= 0.5))
        ),
    );
    if let Some((l, d)) = &normal {
        row(
            "   gateway committed (synchronous=normal)",
            format!("{:.0}", l.rate),
            format!("{:.0}", d.rate),
            "-".into(),
            "",
        );
        row(
            "   ratio gateway (normal) / bare",
            format!("{:.2}", ratio(l, &bare_l)),
            format!("{:.2}", ratio(d, &bare_d)),
            "-".into(),
            "",
        );
    }
    println!();
    println!(
        "{:<52} {:>8} {:>8} {:>8} {:>9}  aim",
        format!("latency at {} msg/s for {} s (ms)", s.rate, s.seconds),
        "p50",
        "p99",
        "max",
        "matched"
    );
    let lat_row = |name: &str, l: &Latency, aim: &str| {
        println!(
            "{name:<52} {:>8.1} {:>8.1} {:>8.1} {:>9}  {aim}",
            ms(l.p50),
            ms(l.p99),
            ms(l.max),
            format!("{}/{}", l.matched, l.sent)
        );
    };
    lat_row("   bare subscriber: publish -> receive", &bare_lat, "");
    lat_row(
        "4. gateway: publish -> SSE readings event",
        &gw_lat.sse,
        &format!(
            "p99 < 50 ({})",
            verdict(gw_lat.sse.p99 < Duration::from_millis(50))
        ),
    );
    println!(
        "{:<52} {:>8} {:>8}",
        "   gateway's own receive->commit (bucket bound)",
        format!("<={}", gw_lat.internal_p50_ms),
        format!("<={}", gw_lat.internal_p99_ms)
    );
    println!();
    println!("{:<52} {:>12}", "memory", "");
    println!(
        "{:<52} {:>12}",
        "   gateway peak RSS after run 3 (floods, backlog)",
        mb(hwm_3_kb)
    );
    println!(
        "{:<52} {:>12}  < 64 MB ({})",
        "5. gateway peak RSS (VmHWM over runs 3-4)",
        mb(hwm_kb),
        verdict(hwm_kb.is_some_and(|k| k < 64 * 1024))
    );
    println!(
        "{:<52} {:>12}",
        "   gateway RSS at the end (VmRSS)",
        mb(rss_kb)
    );
    println!();
    println!(
        "live: timed from the first publish to the last message received / the committed counter \
         (taza_store_readings_stored_total, /metrics every {} ms) reaching the total.",
        SCRAPE_EVERY.as_millis()
    );
    println!(
        "drain: consumer paused (bare: not polled; gateway: SIGSTOP) while the broker takes all \
         messages, timed from resume; no publisher competes for CPU. backlog 24h: the same with a \
         fleet's day of one-minute records from every post (see the header)."
    );
    println!(
        "latency: publish = message handed to the publisher's client (paced by tokio interval); \
         gateway commit = readings event read by this process from GET /api/v1/live (SSE over \
         HTTP, so it includes broadcast, JSON and HTTP delivery)."
    );
    if bare_l.rate < 1.15 * bare_l.publish_rate {
        println!(
            "NOTE: in the live bare run the subscriber kept up with the publishers ({:.0} vs {:.0} \
             msg/s): that reference is publisher-limited on this machine, a lower bound of the \
             broker -> subscriber path. The drain column measures that path alone.",
            bare_l.rate, bare_l.publish_rate
        );
    }
    if full_l.done < n || full_d.done < n {
        println!(
            "WARNING: the gateway committed only {}/{n} (live) and {}/{n} (drain) within {:?}",
            full_l.done, full_d.done, RUN_TIMEOUT
        );
    }
    if let Some(b) = full_b.as_ref().filter(|b| b.done < nb) {
        println!(
            "WARNING: the gateway committed only {}/{nb} of the backlog within {:?}",
            b.done, RUN_TIMEOUT
        );
    }
    println!("total bench time {:.0} s", started.elapsed().as_secs_f64());
}
