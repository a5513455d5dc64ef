//! Shared by the sim's integration tests: Debian's Mosquitto on a free port (optionally with a
//! password file, as production brokers run), and the loud skip when it is not installed.
#![allow(dead_code)] // each test binary uses part of it

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub const MOSQUITTO: &str = "/usr/sbin/mosquitto";
const MOSQUITTO_PASSWD: &str = "/usr/bin/mosquitto_passwd";

/// False (after a loud banner on stderr) when Mosquitto is missing, unless
/// TAZA_REQUIRE_MOSQUITTO=1, which makes it a failure. CI installs Mosquitto and sets it.
pub fn mosquitto_available(test: &str) -> bool {
    if std::path::Path::new(MOSQUITTO).exists() && std::path::Path::new(MOSQUITTO_PASSWD).exists() {
        return true;
    }
    assert!(
        std::env::var("TAZA_REQUIRE_MOSQUITTO").as_deref() != Ok("1"),
        "TAZA_REQUIRE_MOSQUITTO=1 but {MOSQUITTO} is missing (apt-get install mosquitto)"
    );
    use std::io::Write as _;
    let _ = writeln!(
        std::io::stderr().lock(),
        "\n######## SKIPPED {test}: {MOSQUITTO} not installed ########\n"
    );
    false
}

pub struct Broker {
    child: Child,
    pub port: u16,
    dir: Option<PathBuf>,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap()
}

impl Broker {
    /// Anonymous access on a free port.
    pub fn start() -> Self {
        let port = free_port();
        Self::spawn(port, &["-p", &port.to_string()], None)
    }

    /// Only `users` (name, password) may connect.
    pub fn start_with_users(users: &[(&str, &str)]) -> Self {
        let port = free_port();
        let dir =
            std::env::temp_dir().join(format!("taza-sim-broker-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let passwd = dir.join("passwd");
        for (i, (user, password)) in users.iter().enumerate() {
            let mut cmd = Command::new(MOSQUITTO_PASSWD);
            cmd.arg("-b");
            if i == 0 {
                cmd.arg("-c");
            }
            let status = cmd.arg(&passwd).args([user, password]).status().unwrap();
            assert!(status.success(), "mosquitto_passwd failed");
        }
        let conf = dir.join("mosquitto.conf");
        // `user root` keeps a root-started broker able to read its 0600 password file.
        std::fs::write(
            &conf,
            format!(
                "listener {port} 127.0.0.1\nallow_anonymous false\npassword_file {}\nuser root\n",
                passwd.display()
            ),
        )
        .unwrap();
        Self::spawn(port, &["-c", conf.to_str().unwrap()], Some(dir))
    }

    fn spawn(port: u16, args: &[&str], dir: Option<PathBuf>) -> Self {
        let child = Command::new(MOSQUITTO)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("this test needs Mosquitto at {MOSQUITTO}: {e}"));
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "mosquitto did not listen on {port} within 10 s"
            );
            std::thread::yield_now();
        }
        Self { child, port, dir }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(d) = &self.dir {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

/// The runtime a test drives its posts and clients on (the sim's executor runs on its own thread).
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

pub fn unix_now() -> i64 {
    unix_now_ms() / 1000
}

pub fn unix_now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}
