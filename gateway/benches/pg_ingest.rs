//! PostgreSQL ingest benchmark: the rate at which one and two gateway replicas on one
//! PostgreSQL server commit what a Mosquitto shared subscription (`[mqtt] shared_group`) hands
//! them, against what a bare QoS 1 subscriber receives from the same broker and publishers in
//! the same run; a gateway on SQLite as a second reference.
//!
//! Run with `cargo bench -p gateway --bench pg_ingest` (see `benches/README.md`). The gateways
//! are the real `gateway` binary, each its own process; the broker is a private Mosquitto, the
//! database server a private cluster of Debian's PostgreSQL with its durable defaults (fsync,
//! synchronous_commit on), a fresh database per gateway run.
#![allow(clippy::expect_used, clippy::panic, clippy::unwrap_used)]

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use protocol::{Measurement, PostId, QaFlags, Quantity, UnixSeconds};
use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Outgoing, Packet, QoS};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Registered air posts the messages are spread over.
const POSTS: u64 = 40;
/// One air-post record: what a Taza air post sends every minute.
const QUANTITIES: [Quantity; 6] = taza_sim::fleet::AIR_QUANTITIES;
const READINGS_PER_MESSAGE: u64 = QUANTITIES.len() as u64;
const CADENCE_S: i64 = 60;
const TOPIC_FILTER: &str = "taza/v1/posts/+/telemetry";
/// The replicas' shared subscription group.
const GROUP: &str = "taza-bench";
const SCRAPE_EVERY: Duration = Duration::from_millis(10);
const RUN_TIMEOUT: Duration = Duration::from_secs(300);

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Settings {
    messages: u64,
    publishers: usize,
    inflight: u16,
    /// `synchronous_commit` of the PostgreSQL server (`on` is its default).
    synchronous_commit: String,
    sqlite: bool,
}

impl Settings {
    fn from_env() -> Self {
        Self {
            messages: env_or("TAZA_BENCH_MESSAGES", 50_000),
            publishers: env_or("TAZA_BENCH_PUBLISHERS", 2),
            inflight: env_or("TAZA_BENCH_INFLIGHT", 1000),
            synchronous_commit: env_or("TAZA_BENCH_PG_SYNCHRONOUS_COMMIT", "on".to_string()),
            sqlite: env_or("TAZA_BENCH_SKIP_SQLITE", 0u8) == 0,
        }
    }
}

// ---- messages --------------------------------------------------------------------------------

type Message = (String, Vec<u8>);

/// Records: sequence `seq` is post `seq % POSTS` at `base + 60 s * (seq / POSTS)`; warm-up
/// round `r` is every post at `base - 60 s * (r + 1)`. Each gateway run has a fresh store, so
/// runs reuse the same records.
struct Plan {
    base: i64,
    template: Vec<Measurement>,
}

impl Plan {
    fn new(messages: u64) -> Self {
        let now = taza_domain::calendar::now().0;
        let json = QUANTITIES
            .iter()
            .map(|q| format!("{{\"n\":\"{}\",\"v\":1}}", q.as_str()))
            .collect::<Vec<_>>()
            .join(",");
        let post = PostId::parse(&post_name(0)).unwrap();
        let template =
            protocol::senml::decode(format!("[{json}]").as_bytes(), &post, UnixSeconds(now))
                .expect("template pack decodes")
                .readings
                .to_vec();
        Self {
            base: now - CADENCE_S * (messages / POSTS + 2) as i64,
            template,
        }
    }

    fn pack(&self, post: u64, at: i64, seq: u64) -> Message {
        let name = post_name(post);
        let id = PostId::parse(&name).unwrap();
        let wobble = (seq % 17) as f64 * 0.5;
        let values = [8.0, 14.0, 31.0, 42.0, -6.5, 71.0].map(|v| v + wobble);
        let readings: Vec<Measurement> = self
            .template
            .iter()
            .zip(values)
            .map(|(&t, value)| Measurement {
                value,
                at: UnixSeconds(at),
                flags: QaFlags::NONE,
                ..t
            })
            .collect();
        let mut buf = vec![0u8; protocol::senml::MAX_PAYLOAD_BYTES];
        let n = protocol::senml::encode(&id, &readings, &mut buf).expect("pack encodes");
        buf.truncate(n);
        (format!("taza/v1/posts/{name}/telemetry"), buf)
    }

    fn messages(&self, n: u64) -> Vec<Message> {
        (0..n)
            .map(|seq| {
                self.pack(
                    seq % POSTS,
                    self.base + CADENCE_S * (seq / POSTS) as i64,
                    seq,
                )
            })
            .collect()
    }

    fn warmup(&self, round: u64) -> Vec<Message> {
        (0..POSTS)
            .map(|p| self.pack(p, self.base - CADENCE_S * (round as i64 + 1), p))
            .collect()
    }
}

fn post_name(index: u64) -> String {
    format!("bench-{:03}", index + 1)
}

// ---- small helpers ---------------------------------------------------------------------------

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free local port")
        .port()
}

fn unique(tag: &str) -> String {
    format!("pgbench-{tag}-{}", std::process::id())
}

fn rate(n: u64, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64().max(1e-9)
}

/// User + system CPU seconds a process has used so far (Linux `/proc`).
fn cpu_seconds(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
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
    // utime and stime, in clock ticks (100 per second on Linux).
    (field(11) + field(12)) / 100.0
}

/// The PostgreSQL server's processes: the postmaster and its children (backends, WAL writer,
/// checkpointer...).
fn postgres_pids(postmaster: u32) -> Vec<u32> {
    let mut pids = vec![postmaster];
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for e in dir.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                continue;
            };
            let ppid = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<u32>().ok());
            if ppid == Some(postmaster) {
                pids.push(pid);
            }
        }
    }
    pids
}

/// CPU used by groups of processes during a run, per wall second.
struct Cpu {
    groups: Vec<(String, Vec<u32>, f64)>,
    at: Instant,
}

impl Cpu {
    fn start(groups: Vec<(String, Vec<u32>)>) -> Self {
        Self {
            groups: groups
                .into_iter()
                .map(|(name, pids)| {
                    let s = pids.iter().map(|&p| cpu_seconds(p)).sum();
                    (name, pids, s)
                })
                .collect(),
            at: Instant::now(),
        }
    }

    fn finish(&self) -> String {
        let wall = self.at.elapsed().as_secs_f64().max(1e-9);
        self.groups
            .iter()
            .map(|(name, pids, s)| {
                let now: f64 = pids.iter().map(|&p| cpu_seconds(p)).sum();
                format!("{name} {:.2}", (now - s) / wall)
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

// ---- the broker and the database server ------------------------------------------------------

struct Mosquitto {
    port: u16,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Mosquitto {
    fn start() -> Self {
        let binary = ["/usr/sbin/mosquitto", "/usr/bin/mosquitto"]
            .into_iter()
            .map(PathBuf::from)
            .find(|p| p.exists())
            .expect(
                "this benchmark needs Mosquitto (shared subscriptions): apt-get install mosquitto",
            );
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
        wait_listening(port, "mosquitto");
        Self {
            port,
            child,
            _dir: dir,
        }
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_listening(port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "{what} did not listen on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A private PostgreSQL cluster with the server's durable defaults.
struct Postgres {
    server: Child,
    bin: PathBuf,
    port: u16,
    dir: PathBuf,
    next_db: u32,
}

impl Postgres {
    fn start(synchronous_commit: &str) -> Self {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .ok()
            .and_then(|d| {
                d.flatten()
                    .map(|e| e.path().join("bin"))
                    .filter(|p| p.join("postgres").exists())
                    .max()
            })
            .expect("this benchmark needs Debian's postgresql (/usr/lib/postgresql/*/bin)");
        let root = is_root();
        let dir = std::env::temp_dir().join(format!("taza-pgbench-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        if root {
            assert!(Command::new("chown")
                .arg("postgres:postgres")
                .arg(&dir)
                .status()
                .unwrap()
                .success());
        }
        let data = dir.join("data");
        let out = as_server_user(root, &bin.join("initdb"))
            .arg("-D")
            .arg(&data)
            .args([
                "-A",
                "trust",
                "-U",
                "taza",
                "-E",
                "UTF8",
                "--no-instructions",
            ])
            .output()
            .expect("initdb runs");
        assert!(
            out.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let port = free_port();
        let mut server = as_server_user(root, &bin.join("postgres"));
        server
            .arg("-D")
            .arg(&data)
            .args(["-p", &port.to_string(), "-k"])
            .arg(&dir)
            .args([
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "max_connections=100",
            ])
            .args(["-c", &format!("synchronous_commit={synchronous_commit}")])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("server.log")).unwrap());
        let server = server.spawn().expect("postgres starts");
        wait_listening(port, "postgres");
        Self {
            server,
            bin,
            port,
            dir,
            next_db: 0,
        }
    }

    /// The postmaster's pid (from its pid file: runuser does not pass it on).
    fn pid(&self) -> u32 {
        std::fs::read_to_string(self.dir.join("data/postmaster.pid"))
            .ok()
            .and_then(|s| s.lines().next()?.trim().parse().ok())
            .expect("postmaster.pid")
    }

    fn version(&self) -> String {
        Command::new(self.bin.join("postgres"))
            .arg("--version")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default()
    }

    /// A fresh database's URL.
    fn database(&mut self) -> String {
        self.next_db += 1;
        let name = format!("bench_{}", self.next_db);
        let mut ok = false;
        for _ in 0..50 {
            ok = Command::new(self.bin.join("psql"))
                .args([
                    "-h",
                    "127.0.0.1",
                    "-p",
                    &self.port.to_string(),
                    "-U",
                    "taza",
                ])
                .args([
                    "-d",
                    "postgres",
                    "-qAtc",
                    &format!("CREATE DATABASE {name}"),
                ])
                .status()
                .is_ok_and(|s| s.success());
            if ok {
                break;
            }
            // The server accepts connections a moment after it listens.
            std::thread::sleep(Duration::from_millis(100));
        }
        assert!(ok, "CREATE DATABASE {name} failed");
        format!("postgres://taza@127.0.0.1:{}/{name}", self.port)
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg("-INT")
            .arg(self.pid().to_string())
            .status();
        let _ = self.server.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// The server refuses to run as root: as the `postgres` user then.
fn as_server_user(root: bool, program: &Path) -> Command {
    if root {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

// ---- MQTT clients ----------------------------------------------------------------------------

async fn connect(
    port: u16,
    id: &str,
    clean: bool,
    inflight: u16,
    nodelay: bool,
) -> (AsyncClient, EventLoop) {
    let mut opts = MqttOptions::new(id, "127.0.0.1", port);
    opts.set_clean_session(clean)
        .set_inflight(inflight)
        .set_keep_alive(Duration::from_secs(60))
        .set_request_channel_capacity(8192)
        .set_max_packet_size(1 << 20, 1 << 20);
    let (client, mut eventloop) = AsyncClient::new(opts, 8192);
    let mut network = eventloop.network_options();
    network.set_tcp_nodelay(nodelay);
    eventloop.set_network_options(network);
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => return,
                Ok(_) => {}
                Err(e) => panic!("MQTT client {id} cannot connect: {e}"),
            }
        }
    })
    .await
    .expect("CONNACK within 10 s");
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

/// Floods `messages` over `publishers` connections; resolves when the broker acknowledged all.
async fn flood(
    port: u16,
    publishers: usize,
    inflight: u16,
    messages: Vec<Message>,
) -> (Instant, Instant) {
    let mut clients = Vec::with_capacity(publishers);
    for i in 0..publishers {
        clients.push(connect(port, &unique(&format!("pub{i}")), true, inflight, true).await);
    }
    let mut chunks: Vec<Vec<Message>> = (0..publishers).map(|_| Vec::new()).collect();
    for (i, m) in messages.into_iter().enumerate() {
        chunks[i % publishers].push(m);
    }
    let started = Instant::now();
    let mut tasks = Vec::new();
    for ((client, mut eventloop), chunk) in clients.into_iter().zip(chunks) {
        let total = chunk.len();
        let feeder = client.clone();
        let feed = tokio::spawn(async move {
            for (topic, payload) in chunk {
                feeder
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
            feed.await.unwrap();
            disconnect(client, eventloop).await;
            done
        }));
    }
    let mut all_acked = started;
    for t in tasks {
        all_acked = all_acked.max(t.await.unwrap());
    }
    (started, all_acked)
}

/// The bare reference: one rumqttc subscriber, QoS 1, auto-ack, counting messages.
async fn bare(broker: &Mosquitto, s: &Settings, plan: &Plan, drain: bool) -> Run {
    let port = broker.port;
    let groups = || {
        vec![
            ("mosquitto".to_string(), vec![broker.child.id()]),
            ("bench".to_string(), vec![std::process::id()]),
        ]
    };
    let id = unique(if drain { "bare-drain" } else { "bare-live" });
    let (client, mut eventloop) = connect(port, &id, false, 100, false).await;
    client
        .subscribe(TOPIC_FILTER, QoS::AtLeastOnce)
        .await
        .unwrap();
    loop {
        if let Event::Incoming(Packet::SubAck(_)) = eventloop.poll().await.unwrap() {
            break;
        }
    }
    let messages = plan.messages(s.messages);
    let publish = flood(port, s.publishers, s.inflight, messages);
    let (from, cpu) = if drain {
        // The broker takes every message while the subscriber is not reading.
        publish.await;
        (Instant::now(), Cpu::start(groups()))
    } else {
        let cpu = Cpu::start(groups());
        let handle = tokio::spawn(publish);
        // Receive while the publishers flood.
        let started = Instant::now();
        let (n, last) = receive(&mut eventloop, s.messages).await;
        let (flood_started, _) = handle.await.unwrap();
        let cpu = cpu.finish();
        disconnect(client, eventloop).await;
        return Run {
            done: n * READINGS_PER_MESSAGE,
            rate: rate(
                n,
                last.saturating_duration_since(flood_started.min(started)),
            ),
            cpu,
            commits: String::new(),
        };
    };
    let (n, last) = receive(&mut eventloop, s.messages).await;
    let cpu = cpu.finish();
    disconnect(client, eventloop).await;
    Run {
        done: n * READINGS_PER_MESSAGE,
        rate: rate(n, last.saturating_duration_since(from)),
        cpu,
        commits: String::new(),
    }
}

async fn receive(eventloop: &mut EventLoop, n: u64) -> (u64, Instant) {
    let (mut received, mut last) = (0, Instant::now());
    let deadline = tokio::time::Instant::now() + RUN_TIMEOUT;
    while received < n {
        match tokio::time::timeout_at(deadline, eventloop.poll()).await {
            Ok(Ok(Event::Incoming(Packet::Publish(_)))) => {
                received += 1;
                last = Instant::now();
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => panic!("bare subscriber lost its connection: {e}"),
            Err(_) => break,
        }
    }
    (received, last)
}

// ---- the gateway processes -------------------------------------------------------------------

async fn http_get(addr: SocketAddr, path: &str) -> String {
    let Ok(mut s) = tokio::net::TcpStream::connect(addr).await else {
        return String::new();
    };
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    if s.write_all(req.as_bytes()).await.is_err() {
        return String::new();
    }
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw).await;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    if !head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        return body.to_string();
    }
    let (mut out, mut body) = (String::new(), body);
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

/// One scrape of `/metrics`.
struct Scrape(HashMap<String, f64>);

impl Scrape {
    async fn take(addr: SocketAddr) -> Self {
        Self(
            http_get(addr, "/metrics")
                .await
                .lines()
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
}

struct Gateway {
    child: Child,
    http: SocketAddr,
    client_id: String,
    _dir: tempfile::TempDir,
}

impl Gateway {
    /// A gateway on `store` (a PostgreSQL url, or None: SQLite in its temp dir), in the
    /// shared subscription `group` if any.
    fn start(broker: u16, tag: &str, store: Option<&str>, group: Option<&str>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let http = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let client_id = unique(&format!("gw-{tag}"));
        let mut toml = format!(
            "[mqtt]\nbroker = \"mqtt://127.0.0.1:{broker}\"\nclient_id = \"{client_id}\"\n{group}\n\
             [store]\ndata_dir = \"{data}\"\n{url}\n[api]\nlisten = \"{http}\"\n",
            group = group
                .map(|g| format!("shared_group = \"{g}\"\n"))
                .unwrap_or_default(),
            data = dir.path().join("data").display(),
            url = store.map(|u| format!("url = \"{u}\"\n")).unwrap_or_default(),
        );
        for i in 0..POSTS {
            let name = post_name(i);
            toml.push_str(&format!(
                "\n[[posts]]\nid = \"{name}\"\nkind = \"air\"\nname = \"Bench {name}\"\n\
                 latitude = {lat:.4}\nlongitude = 76.9\ncadence = \"60s\"\n",
                lat = 43.20 + i as f64 * 0.002,
            ));
        }
        let config = dir.path().join("taza.toml");
        std::fs::write(&config, toml).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_gateway"))
            .arg("--config")
            .arg(&config)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn the gateway binary");
        Self {
            child,
            http,
            client_id,
            _dir: dir,
        }
    }

    async fn connected(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Scrape::take(self.http).await.get("taza_mqtt_connected") < 1.0 {
            assert!(
                Instant::now() < deadline,
                "gateway not connected within 60 s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM and wait, then drop its persistent session at the broker (a session left there
    /// would go on taking its share of the group's messages).
    async fn stop(mut self, broker: u16) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.pid().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let (client, eventloop) = connect(broker, &self.client_id, true, 10, false).await;
        disconnect(client, eventloop).await;
    }
}

async fn stored(gws: &[Gateway]) -> Vec<Scrape> {
    let mut out = Vec::with_capacity(gws.len());
    for g in gws {
        out.push(Scrape::take(g.http).await);
    }
    out
}

fn total(scrapes: &[Scrape]) -> u64 {
    scrapes.iter().map(Scrape::stored).sum()
}

/// Waits until the replicas are connected and every one of them commits a warm-up round (the
/// shared subscription in place on each, statements prepared).
async fn warm_up(port: u16, gws: &[Gateway], plan: &Plan) {
    for g in gws {
        g.connected().await;
    }
    for round in 0..200 {
        let before = stored(gws).await;
        flood(port, 1, 100, plan.warmup(round)).await;
        let want = total(&before) + POSTS * READINGS_PER_MESSAGE;
        let deadline = Instant::now() + Duration::from_secs(5);
        while total(&stored(gws).await) < want && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let now = stored(gws).await;
        if total(&now) >= want && now.iter().all(|s| s.stored() > 0) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the gateways never all committed a warm-up round");
}

fn signal(pids: &[u32], sig: &str) {
    for pid in pids {
        assert!(Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(pid.to_string())
            .status()
            .is_ok_and(|s| s.success()));
    }
}

/// One run's figures.
struct Run {
    /// Readings committed (bare: received).
    done: u64,
    /// Messages per second.
    rate: f64,
    cpu: String,
    commits: String,
}

/// Group commits per replica during a run: count, messages per commit, mean duration.
fn commits(before: &[Scrape], after: &[Scrape]) -> String {
    before
        .iter()
        .zip(after)
        .map(|(b, a)| {
            let n = a.get("taza_store_commit_duration_seconds_count")
                - b.get("taza_store_commit_duration_seconds_count");
            let sum = a.get("taza_store_commit_duration_seconds_sum")
                - b.get("taza_store_commit_duration_seconds_sum");
            let readings = (a.stored() - b.stored()) as f64;
            format!(
                "{n:.0} commits of ~{:.0} msgs, mean {:.1} ms",
                readings / READINGS_PER_MESSAGE as f64 / n.max(1.0),
                sum / n.max(1.0) * 1e3
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// Floods the gateways (`drain`: while they are stopped, timed from their resume) until every
/// reading is committed.
async fn gateways(
    broker: &Mosquitto,
    gws: &[Gateway],
    pg: Option<&Postgres>,
    s: &Settings,
    plan: &Plan,
    drain: bool,
) -> Run {
    let port = broker.port;
    let want_new = s.messages * READINGS_PER_MESSAGE;
    let before = stored(gws).await;
    let want = total(&before) + want_new;
    let mut groups: Vec<(String, Vec<u32>)> = gws
        .iter()
        .enumerate()
        .map(|(i, g)| (format!("gateway{}", i + 1), vec![g.pid()]))
        .collect();
    if let Some(pg) = pg {
        groups.push(("postgres".into(), postgres_pids(pg.pid())));
    }
    groups.push(("mosquitto".into(), vec![broker.child.id()]));
    groups.push(("bench".into(), vec![std::process::id()]));
    let pids: Vec<u32> = gws.iter().map(Gateway::pid).collect();
    let messages = plan.messages(s.messages);
    let (from, cpu, publish) = if drain {
        signal(&pids, "STOP");
        flood(port, s.publishers, s.inflight, messages).await;
        let cpu = Cpu::start(groups);
        signal(&pids, "CONT");
        (Instant::now(), cpu, None)
    } else {
        let cpu = Cpu::start(groups);
        let started = Instant::now();
        let publish = tokio::spawn(flood(port, s.publishers, s.inflight, messages));
        (started, cpu, Some(publish))
    };
    let mut now;
    loop {
        tokio::time::sleep(SCRAPE_EVERY).await;
        now = stored(gws).await;
        if total(&now) >= want || from.elapsed() > RUN_TIMEOUT {
            break;
        }
    }
    let end = Instant::now();
    let cpu = cpu.finish();
    if let Some(publish) = publish {
        publish.await.unwrap();
    }
    let done = total(&now) - total(&before);
    Run {
        done,
        rate: rate(done / READINGS_PER_MESSAGE, end - from),
        cpu,
        commits: commits(&before, &now),
    }
}

// ---- the run ---------------------------------------------------------------------------------

fn print(label: &str, r: &Run, n: u64) {
    println!(
        "      {label:<26} {:>8.0} msg/s  ({}/{} readings)  CPU/s: {}",
        r.rate,
        r.done,
        n * READINGS_PER_MESSAGE,
        r.cpu
    );
    if !r.commits.is_empty() {
        println!("      {:<26} {}", "", r.commits);
    }
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run());
}

async fn run() {
    let s = Settings::from_env();
    let plan = Plan::new(s.messages);
    let broker = Mosquitto::start();
    let mut pg = Postgres::start(&s.synchronous_commit);
    let port = broker.port;
    println!("taza PostgreSQL ingest benchmark");
    println!("  broker     : Mosquitto on 127.0.0.1:{port}, shared group {GROUP}");
    println!(
        "  database   : {} on 127.0.0.1:{}, synchronous_commit={}, a fresh database per run",
        pg.version(),
        pg.port,
        s.synchronous_commit
    );
    println!(
        "  messages   : {} per run; SenML CBOR, {READINGS_PER_MESSAGE} readings, {POSTS} posts; \
         {} publisher(s), QoS 1, inflight {}",
        s.messages, s.publishers, s.inflight
    );
    println!(
        "  machine    : {} core(s), shared by broker, database, gateways and this bench",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let mut rows: Vec<(String, f64, f64)> = Vec::new();

    println!("\n  1. bare subscriber");
    let live = bare(&broker, &s, &plan, false).await;
    print("live", &live, s.messages);
    let drain = bare(&broker, &s, &plan, true).await;
    print("drain", &drain, s.messages);
    rows.push(("bare subscriber".into(), live.rate, drain.rate));

    let mut configs: Vec<(String, usize, bool)> = Vec::new();
    if s.sqlite {
        configs.push(("1 gateway, SQLite".into(), 1, false));
    }
    configs.push(("1 replica, PostgreSQL".into(), 1, true));
    configs.push(("2 replicas, PostgreSQL".into(), 2, true));
    for (k, (label, replicas, on_pg)) in configs.into_iter().enumerate() {
        println!("\n  {}. {label}", k + 2);
        let mut rates = [0.0; 2];
        for (j, drain) in [false, true].into_iter().enumerate() {
            // A fresh store (and group) for each run: the records repeat between runs.
            let url = on_pg.then(|| pg.database());
            let group = on_pg.then(|| format!("{GROUP}-{k}-{j}"));
            let gws: Vec<Gateway> = (0..replicas)
                .map(|i| {
                    Gateway::start(
                        port,
                        &format!("{k}-{j}-{i}"),
                        url.as_deref(),
                        group.as_deref(),
                    )
                })
                .collect();
            warm_up(port, &gws, &plan).await;
            let r = gateways(&broker, &gws, on_pg.then_some(&pg), &s, &plan, drain).await;
            print(if drain { "drain" } else { "live" }, &r, s.messages);
            rates[j] = r.rate;
            for g in gws {
                g.stop(port).await;
            }
        }
        rows.push((label, rates[0], rates[1]));
    }

    let (bare_live, bare_drain) = (rows[0].1, rows[0].2);
    println!("\n  committed msg/s (ratio to the bare subscriber of this run)");
    println!("      {:<28} {:>18} {:>18}", "", "live", "drain");
    for (label, live, drain) in &rows {
        println!(
            "      {label:<28} {:>10.0} ({:>4.2}) {:>10.0} ({:>4.2})",
            live,
            live / bare_live,
            drain,
            drain / bare_drain
        );
    }
}
