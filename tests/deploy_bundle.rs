//! The deployment bundle in `deploy/`, checked with the real tools: Debian's Mosquitto runs the
//! shipped ACL and a password file made by the shipped script, `systemd-analyze verify` reads the
//! unit, `kubectl` parses the manifests, `docker-compose` validates the compose file, and the
//! shipped `taza.toml` loads and validates with the gateway's own config code.
//!
//! A check whose tool is missing prints a loud SKIPPED banner, or fails when
//! `TAZA_REQUIRE_DEPLOY_TOOLS=1` (CI: `apt-get install mosquitto systemd docker-compose`, plus
//! kubectl).
// Test code: a failed expectation is the report.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

#[path = "support/ports.rs"]
mod ports;
use ports::free_port;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rumqttc::{
    AsyncClient, ConnectReturnCode, ConnectionError, Event, EventLoop, MqttOptions, Packet, QoS,
    SubscribeReasonCode, TlsConfiguration, Transport,
};
use tokio::sync::mpsc;

const MOSQUITTO: &str = "/usr/sbin/mosquitto";
const SYSTEMD_ANALYZE: &str = "/usr/bin/systemd-analyze";
const KUBECTL: &str = "/usr/bin/kubectl";
const DOCKER_COMPOSE: &str = "/usr/bin/docker-compose";
const OPENSSL: &str = "/usr/bin/openssl";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

fn read(rel: &str) -> String {
    let path = repo().join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Whether every tool exists; when one does not, panics if CI requires the tools
/// (`TAZA_REQUIRE_DEPLOY_TOOLS=1`), else prints a loud SKIPPED banner and returns false.
fn tools_available(test: &str, tools: &[&str], install: &str) -> bool {
    let missing: Vec<&str> = tools
        .iter()
        .copied()
        .filter(|t| !Path::new(t).exists())
        .collect();
    if missing.is_empty() {
        return true;
    }
    assert!(
        std::env::var("TAZA_REQUIRE_DEPLOY_TOOLS").as_deref() != Ok("1"),
        "{test}: TAZA_REQUIRE_DEPLOY_TOOLS=1 but {missing:?} missing ({install})"
    );
    use std::io::Write as _;
    let _ = writeln!(
        std::io::stderr().lock(),
        "\n######## SKIPPED {test}: {missing:?} not installed ({install}; CI installs it) ########\n"
    );
    false
}

struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs `gateway ...` with the data dir `dir/gateway-data`; panics with its output on failure.
fn gateway_cli(dir: &Path, args: &[&str]) -> String {
    let out = Command::new(gateway_binary())
        .arg("--data-dir")
        .arg(dir.join("gateway-data"))
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run the gateway binary");
    assert!(
        out.status.success(),
        "gateway {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Registers and provisions `posts` with the gateway's own commands, then writes Mosquitto's
/// password file and ACL from the registry with `gateway posts broker-auth`; returns (user,
/// password) pairs, the gateway's first, each post's read from its device config blob.
fn make_passwords(dir: &Path, posts: &[&str]) -> Vec<(String, String)> {
    let gateway_password = "gw-Secret-for-the-test-3f9a";
    std::fs::write(
        dir.join("gateway-password"),
        format!("{gateway_password}\n"),
    )
    .unwrap();
    let mut creds = vec![("gateway".to_string(), gateway_password.to_string())];
    for post in posts {
        gateway_cli(
            dir,
            &[
                "posts",
                "add",
                "--id",
                post,
                "--kind",
                "air",
                "--name",
                post,
                "--lat",
                "43.25",
                "--lon",
                "76.93",
                "--instrument",
                "Plantower PMS5003:SN-1:pm2_5",
            ],
        );
        let blobs = dir.join("blobs");
        gateway_cli(
            dir,
            &[
                "posts",
                "provision",
                post,
                "--out",
                blobs.to_str().unwrap(),
                "--post-broker",
                "mqtts://127.0.0.1:8883",
            ],
        );
        let blob = std::fs::read(blobs.join(format!("{post}.taza-device.bin"))).unwrap();
        let device = protocol::device_config::decode(&blob).unwrap();
        assert_eq!(device.username.as_str(), *post);
        assert!(device.password.len() >= 24, "password for {post} too short");
        creds.push((post.to_string(), device.password.to_string()));
    }
    write_broker_auth(dir);
    let file = std::fs::read_to_string(dir.join("passwd")).unwrap();
    let users: Vec<&str> = file.lines().filter_map(|l| l.split(':').next()).collect();
    let mut expected = vec!["gateway"];
    expected.extend_from_slice(posts);
    assert_eq!(users, expected);
    for (u, p) in &creds {
        assert!(file.contains(&format!("{u}:$7$")), "{u} has no PBKDF2 hash");
        assert!(!file.contains(p.as_str()), "clear-text password in passwd");
    }
    creds
}

/// `gateway posts broker-auth` into `dir/passwd` and `dir/acl`.
fn write_broker_auth(dir: &Path) {
    gateway_cli(
        dir,
        &[
            "posts",
            "broker-auth",
            "--password-file",
            dir.join("passwd").to_str().unwrap(),
            "--acl-file",
            dir.join("acl").to_str().unwrap(),
            "--gateway-password-file",
            dir.join("gateway-password").to_str().unwrap(),
        ],
    );
}

/// A test CA and a broker certificate for 127.0.0.1 and localhost, made with the openssl CLI as
/// deploy/README.md makes the real ones (EC keys here, for speed). Returns the folder holding
/// `ca.crt`, `broker.crt` and `broker.key`, the names the shipped `mosquitto.conf` uses.
fn make_certs(dir: &Path) -> PathBuf {
    let certs = dir.join("certs");
    std::fs::create_dir_all(&certs).unwrap();
    std::fs::write(
        certs.join("broker.ext"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    let ec = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
    let steps = [
        format!(
            "req -x509 -new {ec} -sha256 -days 2 -keyout ca.key -out ca.crt -subj /CN=taza-test-ca"
        ),
        format!("req -new {ec} -keyout broker.key -out broker.csr -subj /CN=localhost"),
        "x509 -req -in broker.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 -sha256 \
         -extfile broker.ext -out broker.crt"
            .to_string(),
    ];
    for args in steps {
        let out = Command::new(OPENSSL)
            .args(args.split_whitespace())
            .current_dir(&certs)
            .output()
            .expect("run openssl");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // Started as root, Mosquitto drops to its own user before it loads the key; README has the
    // operator do the same chmod for the container's uid.
    use std::os::unix::fs::PermissionsExt as _;
    for path in [dir, certs.as_path(), certs.join("broker.key").as_path()] {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    certs
}

/// Ports of the two listeners the shipped `mosquitto.conf` declares.
#[derive(Clone, Copy)]
struct Ports {
    /// The internal plain listener (1883 as shipped).
    plain: u16,
    /// The TLS listener (8883 as shipped).
    tls: u16,
}

/// The shipped `mosquitto.conf` with its listeners moved to loopback on free ports, its
/// certificate paths pointing at `certs` (same file names) and its data paths in `dir`;
/// everything else (TLS version, authentication, ACL, queue limits, persistence) as shipped.
fn test_conf(dir: &Path, certs: &Path, ports: Ports, acl: &Path) -> String {
    let shipped = read("deploy/mosquitto/mosquitto.conf");
    for needed in [
        "persistence true",
        "max_queued_messages 1000000",
        "max_inflight_messages 1000",
        "allow_anonymous false",
        "listener 1883",
        "listener 8883",
        "cafile ",
        "certfile ",
        "keyfile ",
        "tls_version ",
        "password_file ",
        "acl_file ",
    ] {
        assert!(
            shipped.lines().any(|l| l.trim_start().starts_with(needed)),
            "mosquitto.conf lacks `{needed}`"
        );
    }
    let mut conf = String::new();
    for line in shipped.lines() {
        let mut words = line.split_whitespace();
        let key = words.next().unwrap_or("");
        let value = words.next().unwrap_or("");
        match (key, value) {
            ("listener", "1883") => conf.push_str(&format!("listener {} 127.0.0.1\n", ports.plain)),
            ("listener", "8883") => conf.push_str(&format!("listener {} 127.0.0.1\n", ports.tls)),
            ("listener", other) => {
                panic!("mosquitto.conf has a listener the test does not know: {other}")
            }
            ("cafile" | "certfile" | "keyfile", path) => {
                let name = Path::new(path).file_name().expect("a file name");
                conf.push_str(&format!("{key} {}\n", certs.join(name).display()));
            }
            ("password_file" | "acl_file" | "persistence_location" | "log_dest", _) => {}
            _ => conf.push_str(&format!("{line}\n")),
        }
    }
    conf.push_str(&format!(
        "log_dest file {}\npersistence_location {}/\npassword_file {}\nacl_file {}\n",
        dir.join("mosquitto.log").display(),
        dir.display(),
        dir.join("passwd").display(),
        acl.display()
    ));
    conf
}

/// Mosquitto from Debian on the shipped configuration (see [`test_conf`]), with test
/// certificates and a password file made by the shipped script for `posts`.
struct ShippedBroker {
    ports: Ports,
    certs: PathBuf,
    creds: Vec<(String, String)>,
    _process: KillOnDrop,
}

impl ShippedBroker {
    fn start(dir: &Path, posts: &[&str]) -> Self {
        let creds = make_passwords(dir, posts);
        let certs = make_certs(dir);
        let ports = Ports {
            plain: free_port(),
            tls: free_port(),
        };
        let conf = dir.join("mosquitto.conf");
        std::fs::write(&conf, test_conf(dir, &certs, ports, &dir.join("acl"))).unwrap();
        let process = start_mosquitto(&conf, &[ports.plain, ports.tls]);
        Self {
            ports,
            certs,
            creds,
            _process: process,
        }
    }

    /// The password provisioning gave `user`.
    fn password(&self, user: &str) -> String {
        self.creds
            .iter()
            .find(|(u, _)| u == user)
            .map(|(_, p)| p.clone())
            .unwrap_or_else(|| panic!("no account {user}"))
    }
}

fn start_mosquitto(conf_path: &Path, ports: &[u16]) -> KillOnDrop {
    let child = Command::new(MOSQUITTO)
        .arg("-c")
        .arg(conf_path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start mosquitto");
    let guard = KillOnDrop(child);
    let deadline = Instant::now() + Duration::from_secs(10);
    for &port in ports {
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "mosquitto did not listen on {port}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    guard
}

fn options(id: &str, port: u16, user: &str, password: &str) -> MqttOptions {
    let mut o = MqttOptions::new(id, "127.0.0.1", port);
    o.set_credentials(user, password);
    o.set_keep_alive(Duration::from_secs(5));
    o
}

/// [`options`] over TLS, trusting the CA in `ca` (what a post has flashed) or, with `None`, only
/// the public roots the gateway compiles in. The same configuration code the gateway uses.
fn tls_options(id: &str, port: u16, user: &str, password: &str, ca: Option<&Path>) -> MqttOptions {
    let mut o = options(id, port, user, password);
    let cfg = taza_ingest::config::MqttConfig {
        broker: Some(format!("mqtts://127.0.0.1:{port}").parse().unwrap()),
        ca_file: ca.map(Path::to_path_buf),
        ..Default::default()
    };
    let tls = taza_ingest::tls::client_config(&cfg).unwrap();
    o.set_transport(Transport::Tls(TlsConfiguration::Rustls(tls)));
    o
}

/// The `gateway` binary cargo built beside this test binary (`cargo test --workspace` builds it
/// for the gateway's own integration tests; alone: `cargo build -p gateway`).
fn gateway_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    // target/<profile>/deps/deploy_bundle-<hash> -> target/<profile>/gateway
    exe.parent()
        .and_then(Path::parent)
        .expect("test binary in target/<profile>/deps")
        .join("gateway")
}

/// `GET path` on the gateway; status and body, or None while it does not answer.
async fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .ok()?;
    let req = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.ok()?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await.ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head.split(' ').nth(1)?.parse().ok()?;
    Some((status, body.to_string()))
}

/// Polls `eventloop` until the broker answers the CONNECT: Ok, or the refusal.
async fn connect(eventloop: &mut EventLoop) -> Result<(), ConnectionError> {
    loop {
        match tokio::time::timeout(Duration::from_secs(10), eventloop.poll())
            .await
            .expect("broker answers CONNECT within 10 s")?
        {
            Event::Incoming(Packet::ConnAck(_)) => return Ok(()),
            _ => continue,
        }
    }
}

/// A connected client whose incoming packets arrive on a channel.
async fn client(opts: MqttOptions) -> (AsyncClient, mpsc::UnboundedReceiver<Packet>) {
    let (client, mut eventloop) = AsyncClient::new(opts, 100);
    connect(&mut eventloop).await.expect("connect");
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok(event) = eventloop.poll().await {
            if let Event::Incoming(p) = event {
                if tx.send(p).is_err() {
                    break;
                }
            }
        }
    });
    (client, rx)
}

async fn next_matching<T>(
    rx: &mut mpsc::UnboundedReceiver<Packet>,
    what: &str,
    mut f: impl FnMut(Packet) -> Option<T>,
) -> T {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let p = tokio::time::timeout_at(deadline, rx.recv())
            .await
            .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
            .unwrap_or_else(|| panic!("connection closed waiting for {what}"));
        if let Some(t) = f(p) {
            return t;
        }
    }
}

async fn suback(rx: &mut mpsc::UnboundedReceiver<Packet>) -> Vec<SubscribeReasonCode> {
    next_matching(rx, "SUBACK", |p| match p {
        Packet::SubAck(s) => Some(s.return_codes),
        _ => None,
    })
    .await
}

/// (topic, payload) of the next PUBLISH.
async fn publish(rx: &mut mpsc::UnboundedReceiver<Packet>) -> (String, Vec<u8>) {
    next_matching(rx, "PUBLISH", |p| match p {
        Packet::Publish(p) => Some((p.topic, p.payload.to_vec())),
        _ => None,
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mosquitto_acl_confines_each_post_to_its_own_topics() {
    if !tools_available(
        "mosquitto_acl_confines_each_post_to_its_own_topics",
        &[MOSQUITTO, OPENSSL, gateway_binary().to_str().unwrap()],
        "apt-get install mosquitto openssl; the gateway binary: cargo build -p gateway",
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let broker = ShippedBroker::start(dir.path(), &["alm-001", "alm-002"]);
    let pw = |user: &str| broker.password(user);
    let port = broker.ports.plain;

    // Wrong password, someone else's password, and no credentials: refused at CONNECT.
    for (user, password) in [
        ("alm-001", "wrong-password".to_string()),
        ("alm-001", pw("alm-002")),
        ("gateway", pw("alm-001")),
    ] {
        let (_c, mut el) = AsyncClient::new(options("intruder", port, user, &password), 10);
        match connect(&mut el).await {
            Err(ConnectionError::ConnectionRefused(code)) => assert!(
                matches!(
                    code,
                    ConnectReturnCode::NotAuthorized | ConnectReturnCode::BadUserNamePassword
                ),
                "{user}: refused with {code:?}"
            ),
            other => panic!("{user} with a wrong password: expected a refusal, got {other:?}"),
        }
    }
    let (_c, mut el) = AsyncClient::new(MqttOptions::new("anonymous", "127.0.0.1", port), 10);
    assert!(
        matches!(
            connect(&mut el).await,
            Err(ConnectionError::ConnectionRefused(_))
        ),
        "anonymous client accepted"
    );

    // The gateway's account subscribes exactly as the gateway does.
    let mut gw_opts = options("taza-gateway", port, "gateway", &pw("gateway"));
    gw_opts.set_clean_session(false);
    let (gateway, mut gw_rx) = client(gw_opts).await;
    gateway
        .subscribe("taza/v1/posts/+/telemetry", QoS::AtLeastOnce)
        .await
        .unwrap();
    gateway
        .subscribe("taza/v1/posts/+/status", QoS::AtLeastOnce)
        .await
        .unwrap();
    for _ in 0..2 {
        assert_eq!(
            suback(&mut gw_rx).await,
            vec![SubscribeReasonCode::Success(QoS::AtLeastOnce)],
            "the gateway may read every post's telemetry and status"
        );
    }

    let (post_a, mut a_rx) = client(options("alm-001", port, "alm-001", &pw("alm-001"))).await;
    // Mosquitto 2.0 acknowledges every SUBSCRIBE; the ACL decides what is delivered. Post A asks
    // for its own config, another post's config and everyone's telemetry, and (below) receives
    // only its own config.
    for filter in [
        "taza/v1/posts/alm-001/config",
        "taza/v1/posts/alm-002/config",
        "taza/v1/posts/+/telemetry",
        "taza/v1/posts/+/status",
    ] {
        post_a.subscribe(filter, QoS::AtLeastOnce).await.unwrap();
        suback(&mut a_rx).await;
    }

    // Post A: its own telemetry, then a forgery under post B's id, then its own again. The
    // broker keeps one connection's messages in order, so once the last one arrives the forgery
    // would have arrived before it if it had been delivered at all.
    for (topic, payload) in [
        ("taza/v1/posts/alm-001/telemetry", "own-1"),
        ("taza/v1/posts/alm-002/telemetry", "forged"),
        ("taza/v1/posts/alm-002/status", "forged-status"),
        ("taza/v1/posts/alm-001/config", "self-config"),
        ("taza/v1/posts/alm-001/telemetry", "own-2"),
    ] {
        post_a
            .publish(topic, QoS::AtLeastOnce, false, payload)
            .await
            .unwrap();
    }
    let first = publish(&mut gw_rx).await;
    assert_eq!(
        first,
        (
            "taza/v1/posts/alm-001/telemetry".to_string(),
            b"own-1".to_vec()
        )
    );
    let second = publish(&mut gw_rx).await;
    assert_eq!(
        second,
        (
            "taza/v1/posts/alm-001/telemetry".to_string(),
            b"own-2".to_vec()
        ),
        "a post's publish under another post's id reached the gateway"
    );

    // Post B may publish its own status, and it reaches the gateway.
    let (post_b, mut b_rx) = client(options("alm-002", port, "alm-002", &pw("alm-002"))).await;
    post_b
        .subscribe("taza/v1/posts/alm-002/config", QoS::AtLeastOnce)
        .await
        .unwrap();
    suback(&mut b_rx).await;
    post_b
        .publish(
            "taza/v1/posts/alm-002/status",
            QoS::AtLeastOnce,
            true,
            "online",
        )
        .await
        .unwrap();
    assert_eq!(
        publish(&mut gw_rx).await,
        (
            "taza/v1/posts/alm-002/status".to_string(),
            b"online".to_vec()
        )
    );

    // The gateway writes each post's config; each post reads its own and only its own.
    for (post, cfg) in [("alm-002", "cfg-b"), ("alm-001", "cfg-a")] {
        gateway
            .publish(
                format!("taza/v1/posts/{post}/config"),
                QoS::AtLeastOnce,
                true,
                cfg,
            )
            .await
            .unwrap();
    }
    assert_eq!(
        publish(&mut b_rx).await,
        (
            "taza/v1/posts/alm-002/config".to_string(),
            b"cfg-b".to_vec()
        )
    );
    // Published after B's config on the same connection: had A been allowed B's config (or
    // anyone's telemetry or status), those would have arrived first.
    assert_eq!(
        publish(&mut a_rx).await,
        (
            "taza/v1/posts/alm-001/config".to_string(),
            b"cfg-a".to_vec()
        ),
        "post A received a message it may not read"
    );
    for (name, rx) in [
        ("gateway", &mut gw_rx),
        ("alm-001", &mut a_rx),
        ("alm-002", &mut b_rx),
    ] {
        let extra = tokio::time::timeout(Duration::from_millis(300), publish(rx)).await;
        assert!(extra.is_err(), "{name} received {extra:?}");
    }

    // Retiring a post in the registry, rewriting the files and reloading Mosquitto (SIGHUP, as
    // the runbook says) locks it out; the other post still logs in.
    gateway_cli(
        dir.path(),
        &["posts", "retire", "alm-002", "--reason", "stolen"],
    );
    write_broker_auth(dir.path());
    let passwd = std::fs::read_to_string(dir.path().join("passwd")).unwrap();
    assert!(!passwd.contains("alm-002:"), "{passwd}");
    let reloaded = Command::new("kill")
        .args(["-HUP", &broker._process.0.id().to_string()])
        .status()
        .unwrap();
    assert!(reloaded.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_c, mut el) =
            AsyncClient::new(options("alm-002", port, "alm-002", &pw("alm-002")), 10);
        match connect(&mut el).await {
            Err(ConnectionError::ConnectionRefused(_)) => break,
            other => assert!(
                Instant::now() < deadline,
                "a retired post still logs in after the reload: {other:?}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (_c, mut el) = AsyncClient::new(options("alm-001", port, "alm-001", &pw("alm-001")), 10);
    assert!(connect(&mut el).await.is_ok(), "alm-001 lost its login");
}

/// (post, value) of every stored reading, ordered by post and time.
fn stored_readings(db: &Path) -> Vec<(String, f64)> {
    let Ok(conn) =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
    else {
        return Vec::new();
    };
    let Ok(mut stmt) = conn.prepare("SELECT post, value FROM readings ORDER BY post, at") else {
        return Vec::new();
    };
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .and_then(Iterator::collect)
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_over_tls_stores_each_posts_own_readings_and_never_a_forgery() {
    let test = "gateway_over_tls_stores_each_posts_own_readings_and_never_a_forgery";
    let gateway_bin = gateway_binary();
    if !tools_available(
        test,
        &[MOSQUITTO, OPENSSL, gateway_bin.to_str().unwrap()],
        "apt-get install mosquitto openssl; the gateway binary: cargo build -p gateway",
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let broker = ShippedBroker::start(dir.path(), &["alm-001", "alm-002"]);
    let tls = broker.ports.tls;
    let ca = broker.certs.join("ca.crt");

    // Over TLS as over plain TCP: wrong passwords are refused at CONNECT.
    for (user, password) in [
        ("alm-001", "wrong-password".to_string()),
        ("gateway", broker.password("alm-001")),
    ] {
        let opts = tls_options("intruder", tls, user, &password, Some(&ca));
        let (_c, mut el) = AsyncClient::new(opts, 10);
        assert!(
            matches!(
                connect(&mut el).await,
                Err(ConnectionError::ConnectionRefused(
                    ConnectReturnCode::NotAuthorized | ConnectReturnCode::BadUserNamePassword
                ))
            ),
            "{user} with a wrong password over TLS was not refused"
        );
    }
    // A client that does not trust the city's CA stops at the handshake, password or not.
    let opts = tls_options("no-ca", tls, "alm-001", &broker.password("alm-001"), None);
    let (_c, mut el) = AsyncClient::new(opts, 10);
    let untrusted = connect(&mut el).await;
    assert!(
        matches!(untrusted, Err(ConnectionError::Tls(_))),
        "a broker certificate from an unknown CA was accepted: {untrusted:?}"
    );

    // The gateway: its password only in the environment, as compose and systemd pass it.
    let http = free_port();
    let data_dir = dir.path().join("gateway-data");
    let config_file = dir.path().join("taza.toml");
    std::fs::write(
        &config_file,
        format!(
            r#"[mqtt]
broker = "mqtts://gateway:CHANGE-ME@127.0.0.1:{tls}"
client_id = "taza-gateway"
ca_file = "{ca}"
[store]
data_dir = "{data}"
[api]
listen = "127.0.0.1:{http}"
[[posts]]
id = "alm-001"
kind = "air"
name = "A"
latitude = 43.258
longitude = 76.944
sensors = ["pm2_5"]
[[posts]]
id = "alm-002"
kind = "air"
name = "B"
latitude = 43.227
longitude = 76.918
sensors = ["pm2_5"]
"#,
            ca = ca.display(),
            data = data_dir.display(),
        ),
    )
    .unwrap();
    let gateway_password = broker.password("gateway");
    let broker_env = format!("mqtts://gateway:{gateway_password}@127.0.0.1:{tls}");

    // `gateway config` shows the TLS settings and never the password.
    let out = Command::new(&gateway_bin)
        .arg("--config")
        .arg(&config_file)
        .arg("config")
        .env("TAZA_MQTT__BROKER", &broker_env)
        .output()
        .unwrap();
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "gateway config: {printed}");
    assert!(
        printed.contains(&format!("mqtts://gateway:[redacted]@127.0.0.1:{tls}"))
            && printed.contains(&format!("ca_file = \"{}\"", ca.display())),
        "{printed}"
    );
    assert!(!printed.contains(&gateway_password), "password printed");

    let _gateway = KillOnDrop(
        Command::new(&gateway_bin)
            .arg("--config")
            .arg(&config_file)
            .env("TAZA_MQTT__BROKER", &broker_env)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some((200, body)) = http_get(http, "/healthz").await {
            let health: serde_json::Value = serde_json::from_str(&body).unwrap();
            if health["mqtt"] == "connected" {
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "the gateway did not connect to the broker over TLS"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Posts over TLS with their own credentials. Post A sends its reading, a forgery under
    // post B's id, and another of its own; post B sends its own.
    let now = taza_domain::calendar::now();
    let pack = |post: &str, value: f64, minutes_ago: i64| {
        let reading = protocol::Measurement {
            quantity: protocol::Quantity::Pm2_5,
            value,
            at: now.offset(-60 * minutes_ago),
            flags: protocol::QaFlags::NONE,
            window_s: None,
        };
        protocol::senml::encode_json(&protocol::PostId::parse(post).unwrap(), &[reading])
    };
    let (post_a, _a_rx) = client(tls_options(
        "alm-001",
        tls,
        "alm-001",
        &broker.password("alm-001"),
        Some(&ca),
    ))
    .await;
    for (topic, payload) in [
        ("taza/v1/posts/alm-001/telemetry", pack("alm-001", 11.0, 9)),
        ("taza/v1/posts/alm-002/telemetry", pack("alm-002", 666.0, 8)),
        ("taza/v1/posts/alm-001/telemetry", pack("alm-001", 12.0, 7)),
    ] {
        post_a
            .publish(topic, QoS::AtLeastOnce, false, payload)
            .await
            .unwrap();
    }
    let (post_b, _b_rx) = client(tls_options(
        "alm-002",
        tls,
        "alm-002",
        &broker.password("alm-002"),
        Some(&ca),
    ))
    .await;
    post_b
        .publish(
            "taza/v1/posts/alm-002/telemetry",
            QoS::AtLeastOnce,
            false,
            pack("alm-002", 21.0, 6),
        )
        .await
        .unwrap();

    // The broker keeps one connection's messages in order and the gateway commits in arrival
    // order, so once A's second reading is stored the forgery would have been too.
    let db = data_dir.join(taza_store::DB_FILE);
    let expected = vec![
        ("alm-001".to_string(), 11.0),
        ("alm-001".to_string(), 12.0),
        ("alm-002".to_string(), 21.0),
    ];
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let stored = stored_readings(&db);
        let has = |p: &str, v: f64| stored.iter().any(|(q, w)| q == p && *w == v);
        if has("alm-001", 12.0) && has("alm-002", 21.0) {
            assert_eq!(
                stored, expected,
                "the gateway stored exactly each post's own readings"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "readings sent over TLS not stored: {stored:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[test]
fn systemd_unit_verifies() {
    if !tools_available(
        "systemd_unit_verifies",
        &[SYSTEMD_ANALYZE],
        "apt-get install systemd",
    ) {
        return;
    }
    let unit = read("deploy/systemd/taza-gateway.service");
    let exec = "ExecStart=/usr/local/bin/gateway --config /etc/taza/taza.toml";
    assert!(
        unit.lines().any(|l| l == exec),
        "the unit runs `{exec}` (the binary the Dockerfile installs)"
    );
    for hardening in [
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "NoNewPrivileges=yes",
        "CapabilityBoundingSet=",
        "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
        "SystemCallFilter=@system-service",
        "LockPersonality=yes",
        "MemoryDenyWriteExecute=yes",
        "Restart=on-failure",
        "KillSignal=SIGTERM",
        "StateDirectory=taza",
    ] {
        assert!(
            unit.lines().any(|l| l.trim() == hardening),
            "unit lacks `{hardening}`"
        );
    }
    // The stop timeout outlasts the gateway's default shutdown deadline (api.shutdown_deadline).
    let deadline = taza_gateway::config::Config::default()
        .api
        .shutdown_deadline
        .as_secs();
    let stop: u64 = unit
        .lines()
        .find_map(|l| l.strip_prefix("TimeoutStopSec="))
        .expect("TimeoutStopSec set")
        .trim_end_matches('s')
        .parse()
        .expect("TimeoutStopSec in seconds");
    assert!(
        stop > deadline + 5,
        "TimeoutStopSec={stop} vs deadline {deadline}"
    );

    // Verify a copy whose ExecStart points at a binary that exists on this machine, so that
    // any complaint systemd-analyze makes is about the unit itself.
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("taza-gateway.service");
    std::fs::write(
        &copy,
        unit.replace(
            "ExecStart=/usr/local/bin/gateway",
            "ExecStart=/usr/bin/true",
        ),
    )
    .unwrap();
    let out = Command::new(SYSTEMD_ANALYZE)
        .arg("verify")
        .arg(&copy)
        .output()
        .expect("run systemd-analyze");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "systemd-analyze verify failed: {stderr}"
    );
    let complaints: Vec<&str> = stderr
        .lines()
        .filter(|l| !l.trim().is_empty())
        // Outside a booted systemd (containers, CI) verify notes that it cannot reach the
        // manager; that is about the machine, not the unit.
        .filter(|l| !l.contains("System has not been booted with systemd"))
        .collect();
    assert!(
        complaints.is_empty(),
        "systemd-analyze verify complains:\n{}",
        complaints.join("\n")
    );
}

#[test]
fn kubernetes_manifests_parse() {
    if !tools_available("kubernetes_manifests_parse", &[KUBECTL], "install kubectl") {
        return;
    }
    // `--local` builds the objects without a cluster (no discovery, no server).
    let out = Command::new(KUBECTL)
        .args(["annotate", "--local", "-o", "name", "-f"])
        .arg(repo().join("deploy/k8s"))
        .arg("taza.almaty.kz/checked=true")
        .env("KUBECONFIG", "/dev/null")
        .output()
        .expect("run kubectl");
    assert!(
        out.status.success(),
        "kubectl could not parse deploy/k8s: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut names: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    names.sort();
    for expected in [
        "configmap/taza-gateway-config",
        "deployment.apps/taza-gateway",
        "persistentvolumeclaim/taza-gateway-data",
        "secret/taza-gateway-secrets",
        "service/taza-gateway",
    ] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} missing from {names:?}"
        );
    }

    let deployment = read("deploy/k8s/deployment.yaml");
    for needed in [
        "replicas: 1",
        "type: Recreate",
        "path: /healthz",
        "runAsNonRoot: true",
        "readOnlyRootFilesystem: true",
        "claimName: taza-gateway-data",
        "mountPath: /var/lib/taza",
    ] {
        assert!(deployment.contains(needed), "deployment lacks `{needed}`");
    }
    // The ConfigMap carries the same taza.toml as deploy/taza.toml.
    let out = Command::new(KUBECTL)
        .args([
            "annotate",
            "--local",
            "-o",
            "jsonpath={.data.taza\\.toml}",
            "-f",
        ])
        .arg(repo().join("deploy/k8s/configmap.yaml"))
        .arg("x=y")
        .env("KUBECONFIG", "/dev/null")
        .output()
        .expect("run kubectl");
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8(out.stdout).unwrap().trim(),
        read("deploy/taza.toml").trim(),
        "the ConfigMap's taza.toml is deploy/taza.toml"
    );
}

/// Relative host paths the compose file mounts or builds from (`./x:/y`, `../x:/y`,
/// `context:`, `dockerfile:`, `file:`), resolved against `deploy/`.
fn compose_host_paths(compose: &str) -> Vec<String> {
    let mut paths = Vec::new();
    for line in compose.lines() {
        let t = line.trim();
        if t.starts_with('#') {
            continue;
        }
        let value = if let Some(v) = t.strip_prefix("- ") {
            v.split(':').next().unwrap_or("")
        } else if let Some((key, v)) = t.split_once(": ") {
            if matches!(key, "context" | "file" | "dockerfile") {
                v
            } else {
                ""
            }
        } else {
            ""
        };
        let value = value.trim().trim_matches('"');
        if value.starts_with("./") || value.starts_with("../") || value == ".." {
            paths.push(value.to_string());
        }
    }
    paths
}

#[test]
fn compose_file_is_valid() {
    let compose = read("deploy/compose.yaml");
    let deploy = repo().join("deploy");
    let paths = compose_host_paths(&compose);
    for needed in [
        "./mosquitto/mosquitto.conf",
        "./mosquitto/acl",
        "./grafana/provisioning",
        "../dashboards",
        "./taza.toml",
    ] {
        assert!(paths.iter().any(|p| p == needed), "compose mounts {needed}");
    }
    // Files the operator creates (README: certificates, passwords, secrets) are the only
    // mounts allowed not to exist in the repository.
    let created_by_operator = [
        "./mosquitto/passwd",
        "./mosquitto/certs",
        "./secrets/influxdb-token",
    ];
    for p in &paths {
        if created_by_operator.contains(&p.as_str()) {
            continue;
        }
        assert!(
            deploy.join(p).exists(),
            "compose mounts {p}, which is missing"
        );
    }
    // Every service a depends_on names exists.
    let services: Vec<&str> = compose
        .lines()
        .skip_while(|l| *l != "services:")
        .skip(1)
        .take_while(|l| l.is_empty() || l.starts_with(' ') || l.starts_with('#'))
        .filter_map(|l| {
            l.strip_prefix("  ")
                .filter(|s| !s.starts_with(' ') && !s.starts_with('#'))
                .and_then(|s| s.strip_suffix(':'))
        })
        .collect();
    assert_eq!(services, ["mosquitto", "influxdb", "grafana", "gateway"]);

    if !tools_available(
        "compose_file_is_valid (docker-compose config)",
        &[DOCKER_COMPOSE],
        "apt-get install docker-compose",
    ) {
        return;
    }
    // Schema, interpolation of every ${VAR} from env.example, depends_on targets. No daemon.
    let out = Command::new(DOCKER_COMPOSE)
        .arg("--env-file")
        .arg(deploy.join("env.example"))
        .arg("-f")
        .arg(deploy.join("compose.yaml"))
        .args(["config", "-q"])
        .env_remove("DOCKER_HOST")
        .output()
        .expect("run docker-compose");
    assert!(
        out.status.success(),
        "docker-compose config: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let warnings = String::from_utf8_lossy(&out.stderr);
    assert!(
        !warnings.contains("WARNING"),
        "docker-compose config warns: {warnings}"
    );
}

#[test]
fn dockerfile_builds_the_binary_the_readme_runs() {
    let readme = read("README.md");
    assert!(
        readme.contains("cargo run -p gateway"),
        "README.md's run command is `cargo run -p gateway`"
    );
    let dockerfile = read("deploy/Dockerfile");
    // Instructions, with `\` continuations joined.
    let joined = dockerfile.replace("\\\n", " ");
    let lines: Vec<&str> = joined.lines().map(str::trim).collect();
    assert!(
        lines.iter().any(
            |l| l.starts_with("RUN") && l.contains("cargo build --release --locked -p gateway")
        ),
        "Dockerfile builds with `cargo build --release --locked -p gateway`"
    );
    assert!(
        lines.iter().any(|l| l.starts_with("COPY --from=")
            && l.contains("target/release/gateway")
            && l.ends_with("/usr/local/bin/gateway")),
        "Dockerfile copies target/release/gateway to /usr/local/bin/gateway"
    );
    let from: Vec<&&str> = lines.iter().filter(|l| l.starts_with("FROM ")).collect();
    assert_eq!(from.len(), 2, "two stages: {from:?}");
    assert!(from[0].starts_with("FROM rust:1") && from[0].contains("bookworm"));
    assert!(from[1].starts_with("FROM debian:bookworm-slim"));
    for needed in [
        "USER 10001",
        "EXPOSE 8080",
        "VOLUME [\"/var/lib/taza\"]",
        "HEALTHCHECK",
        "ENTRYPOINT [\"/usr/local/bin/gateway\", \"--config\", \"/etc/taza/taza.toml\"]",
    ] {
        assert!(
            lines.iter().any(|l| l.starts_with(needed)),
            "Dockerfile lacks `{needed}`"
        );
    }
    let ignore = read("deploy/Dockerfile.dockerignore");
    assert!(ignore.lines().any(|l| l.trim() == "target"));
}

#[test]
fn shipped_taza_toml_is_a_valid_gateway_config() {
    use taza_gateway::config::Config;
    let path = repo().join("deploy/taza.toml");
    // The secrets the file leaves to the environment, as compose.yaml passes them (an e-mail
    // account without its password is refused, not sent an empty one).
    let env = [(
        "TAZA_ALERT__CHANNELS__EMAIL__PASSWORD".to_string(),
        "placeholder-smtp-password".to_string(),
    )];
    let cfg = Config::load(Some(&path), env).expect("deploy/taza.toml loads");
    cfg.validate().expect("deploy/taza.toml validates");
    let broker = cfg.mqtt.broker.as_ref().expect("an external broker");
    assert!(
        !broker.tls,
        "compose keeps the gateway on the internal listener by default"
    );
    assert_eq!((broker.host.as_str(), broker.port), ("mosquitto", 1883));
    assert_eq!(broker.username.as_deref(), Some("gateway"));
    assert_eq!(cfg.store.data_dir, Path::new("/var/lib/taza"));
    assert!(!cfg.mqtt.allow_unregistered);
    assert!(!cfg.api.tokens.is_empty());
    let influx = cfg.sink.influxdb.as_ref().expect("[sink.influxdb]");
    assert!(influx.token_file.is_some() && influx.token.is_none());

    // The environment compose gives the gateway overrides the placeholders and still validates.
    let env = [
        (
            "TAZA_MQTT__BROKER",
            "mqtt://gateway:s3cret-From-env@mosquitto:1883",
        ),
        ("TAZA_ALERT__CHANNELS__WEBHOOKS", "[]"),
        ("TAZA_ALERT__CHANNELS__EMAIL__PASSWORD", "smtp-From-env"),
        (
            "TAZA_API__TOKENS",
            r#"[{name="ops",role="admin",token="0123456789abcdef0123"}]"#,
        ),
    ]
    .map(|(k, v)| (k.to_string(), v.to_string()));
    let cfg = Config::load(Some(&path), env).expect("loads with overrides");
    cfg.validate().expect("validates with overrides");
    assert_eq!(cfg.api.tokens.len(), 1);

    // The ConfigMap's copy is the same file.
    let configmap = read("deploy/k8s/configmap.yaml");
    let shipped = read("deploy/taza.toml");
    for line in shipped.lines().filter(|l| !l.trim().is_empty()) {
        assert!(
            configmap.contains(&format!("    {line}")),
            "configmap.yaml differs from deploy/taza.toml at `{line}`"
        );
    }
}

#[test]
fn kubernetes_replica_manifests_parse_and_share_only_the_database() {
    if !tools_available(
        "kubernetes_replica_manifests_parse_and_share_only_the_database",
        &[KUBECTL],
        "install kubectl",
    ) {
        return;
    }
    let out = Command::new(KUBECTL)
        .args(["annotate", "--local", "-o", "name", "-f"])
        .arg(repo().join("deploy/k8s-replicas"))
        .arg("taza.almaty.kz/checked=true")
        .env("KUBECONFIG", "/dev/null")
        .output()
        .expect("run kubectl");
    assert!(
        out.status.success(),
        "kubectl could not parse deploy/k8s-replicas: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let names = String::from_utf8(out.stdout).unwrap();
    for expected in [
        "deployment.apps/taza-gateway-replicas",
        "statefulset.apps/taza-postgres",
        "service/taza-postgres",
        "secret/taza-gateway-replica-secrets",
    ] {
        assert!(
            names.lines().any(|n| n == expected),
            "{expected} missing from {names}"
        );
    }
    let gateway = read("deploy/k8s-replicas/gateway.yaml");
    for needed in [
        "replicas: 2",
        "type: RollingUpdate",
        "name: TAZA_STORE__URL",
        "name: TAZA_MQTT__SHARED_GROUP",
        "fieldPath: metadata.name",
        "readOnlyRootFilesystem: true",
    ] {
        assert!(
            gateway.contains(needed),
            "replica deployment lacks `{needed}`"
        );
    }
    // No replica has a volume of its own for the store: a shared SQLite file is never an option.
    assert!(
        !gateway.contains("persistentVolumeClaim"),
        "replicas must not mount a store volume"
    );
}

#[test]
fn compose_replicas_override_is_valid() {
    let replicas = read("deploy/compose.replicas.yaml");
    for needed in [
        "postgres:",
        "gateway-b:",
        "TAZA_STORE__URL: postgres://",
        "TAZA_MQTT__SHARED_GROUP",
    ] {
        assert!(
            replicas.contains(needed),
            "compose.replicas.yaml lacks `{needed}`"
        );
    }
    if !tools_available(
        "compose_replicas_override_is_valid (docker-compose config)",
        &[DOCKER_COMPOSE],
        "apt-get install docker-compose",
    ) {
        return;
    }
    let deploy = repo().join("deploy");
    let out = Command::new(DOCKER_COMPOSE)
        .arg("--env-file")
        .arg(deploy.join("env.example"))
        .arg("-f")
        .arg(deploy.join("compose.yaml"))
        .arg("-f")
        .arg(deploy.join("compose.replicas.yaml"))
        .args(["config"])
        .env_remove("DOCKER_HOST")
        .output()
        .expect("run docker-compose");
    assert!(
        out.status.success(),
        "docker-compose config: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Both replicas end up in one shared group, on one database, with their own client ids.
    let merged = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        merged
            .matches("TAZA_MQTT__SHARED_GROUP: taza-gateways")
            .count(),
        2,
        "{merged}"
    );
    assert!(merged.contains("TAZA_MQTT__CLIENT_ID: taza-gateway-a"));
    assert!(merged.contains("TAZA_MQTT__CLIENT_ID: taza-gateway-b"));
}
