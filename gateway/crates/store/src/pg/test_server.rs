//! A real PostgreSQL server for tests (feature `test-support`): Debian's `postgresql` binaries
//! (`/usr/lib/postgresql/*/bin`), one private cluster per test process on a free loopback
//! port, a fresh database per caller. The cluster lives under a temporary directory and is
//! stopped and removed by a small shell watchdog when the test process exits, however it exits
//! (the watchdog waits on a pipe only this process holds open).
//!
//! Without the binaries, [`database`] returns None and prints why on stderr, and the caller
//! skips; with `TAZA_REQUIRE_POSTGRES=1` (CI) it panics instead, so a missing server can never
//! pass silently there.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Set to `1` where a PostgreSQL server must be available (CI).
pub const REQUIRE_ENV: &str = "TAZA_REQUIRE_POSTGRES";

struct Server {
    port: u16,
    /// The watchdog; its stdin is the pipe whose closing stops the cluster.
    _watchdog: Mutex<Child>,
}

static SERVER: OnceLock<Result<Server, String>> = OnceLock::new();
static NEXT_DB: AtomicU32 = AtomicU32::new(0);

/// The URL of a new, empty database on this process's test server, or None (after saying why
/// on stderr) when no PostgreSQL server can run here and `TAZA_REQUIRE_POSTGRES` is not set.
pub fn database(test: &str) -> Option<String> {
    let server = SERVER.get_or_init(start);
    let server = match server {
        Ok(s) => s,
        Err(why) => {
            if std::env::var(REQUIRE_ENV).as_deref() == Ok("1") {
                panic!("{REQUIRE_ENV}=1 but no PostgreSQL server: {why}");
            }
            eprintln!(
                "SKIPPED {test}: no PostgreSQL server ({why}); install Debian's postgresql \
                 (CI does, and sets {REQUIRE_ENV}=1)"
            );
            return None;
        }
    };
    let name = format!(
        "t{}_{}",
        std::process::id(),
        NEXT_DB.fetch_add(1, Ordering::Relaxed)
    );
    let out = Command::new(bin_dir().unwrap().join("psql"))
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &server.port.to_string(),
            "-U",
            "taza",
        ])
        .args([
            "-d",
            "postgres",
            "-qAtc",
            &format!("CREATE DATABASE {name}"),
        ])
        .output()
        .expect("psql runs");
    assert!(
        out.status.success(),
        "CREATE DATABASE failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(format!("postgres://taza@127.0.0.1:{}/{name}", server.port))
}

/// The port of this process's test server (starting it), for tests that stop and start
/// clients; None as [`database`].
pub fn port() -> Option<u16> {
    SERVER.get_or_init(start).as_ref().ok().map(|s| s.port)
}

fn bin_dir() -> Option<PathBuf> {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|p| p.join("postgres").exists() && p.join("initdb").exists())
        .collect();
    versions.sort();
    versions.pop()
}

/// Runs `cmd` as the `postgres` user when this process is root (the server refuses to run as
/// root), else as ourselves.
fn as_server_user(program: &Path) -> Command {
    let root = std::fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false);
    if root {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

fn start() -> Result<Server, String> {
    let bin = bin_dir().ok_or("no /usr/lib/postgresql/*/bin/postgres")?;
    let dir = std::env::temp_dir().join(format!("taza-pg-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let root = std::fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false);
    if root {
        let ok = Command::new("chown")
            .args(["postgres:postgres"])
            .arg(&dir)
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if !ok {
            return Err("cannot hand the cluster dir to the postgres user".into());
        }
    }
    let data = dir.join("data");
    let out = as_server_user(&bin.join("initdb"))
        .arg("-D")
        .arg(&data)
        .args([
            "--no-sync",
            "-A",
            "trust",
            "-U",
            "taza",
            "-E",
            "UTF8",
            "--no-instructions",
        ])
        .output()
        .map_err(|e| format!("initdb: {e}"))?;
    if !out.status.success() {
        return Err(format!("initdb: {}", String::from_utf8_lossy(&out.stderr)));
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| e.to_string())?
        .port();
    // The watchdog starts the server, waits for its stdin to close (this process exiting),
    // then stops the server at once and removes the cluster.
    let postgres = format!(
        "{} -D {} -p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off \
         -c synchronous_commit=off -c full_page_writes=off -c max_connections=200",
        bin.join("postgres").display(),
        data.display(),
        dir.display()
    );
    // runuser does not pass signals on: the server's own pid comes from its pid file.
    let script = format!(
        "{launch} > {log} 2>&1 & pid=$!; cat > /dev/null; \
         kill -QUIT $(head -n 1 {pidfile}) 2>/dev/null; wait $pid; rm -rf {dir}",
        pidfile = data.join("postmaster.pid").display(),
        launch = if root {
            format!("runuser -u postgres -- {postgres}")
        } else {
            postgres
        },
        log = dir.join("server.log").display(),
        dir = dir.display(),
    );
    let mut watchdog = Command::new("sh")
        .args(["-c", &script])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("sh: {e}"))?;
    // Keep the pipe open for the life of the process: the Child keeps its stdin handle.
    if let Some(stdin) = watchdog.stdin.as_mut() {
        let _ = stdin.flush();
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ready = Command::new(bin.join("pg_isready"))
            .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-q"])
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if ready {
            break;
        }
        if Instant::now() > deadline {
            let log = std::fs::read_to_string(dir.join("server.log")).unwrap_or_default();
            return Err(format!("server did not start in 30 s: {log}"));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(Server {
        port,
        _watchdog: Mutex::new(watchdog),
    })
}

/// Runs `body` in a transaction of a migrated in-memory SQLite store: the SQLite half of a
/// test written once for both backends.
pub fn on_sqlite(body: fn(&crate::Db<'_>)) {
    let mut conn = crate::schema::in_memory();
    let tx = conn.transaction().unwrap();
    body(&crate::Db::Sqlite(&tx));
}

/// Runs `body` in a transaction on a fresh, migrated PostgreSQL database: the PostgreSQL half
/// (skips, saying so, as [`database`] does).
pub async fn on_postgres(test: &str, body: fn(&crate::Db<'_>)) {
    let Some(url) = database(test) else {
        return;
    };
    let store = super::PgStore::connect(&url).await.unwrap();
    store
        .run(false, move |pg| {
            body(&crate::Db::Pg(pg));
            Ok::<_, crate::StoreError>(())
        })
        .await
        .unwrap();
}
