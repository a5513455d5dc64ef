//! A minimal W3C WebDriver client for Debian's chromedriver and headless chromium: sessions,
//! navigation, element queries, clicks, script execution and screenshots, over plain HTTP/1.1.
//! Only what the dashboard test needs; every call has a deadline.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub const CHROMIUM: &str = "/usr/bin/chromium";
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

/// Whether the browser is installed; when it is not, panics if CI requires it
/// (`TAZA_REQUIRE_BROWSER=1`), else prints a loud SKIPPED banner and returns false.
pub fn browser_available(test: &str) -> bool {
    if Path::new(CHROMIUM).exists() && Path::new(CHROMEDRIVER).exists() {
        return true;
    }
    assert!(
        std::env::var("TAZA_REQUIRE_BROWSER").as_deref() != Ok("1"),
        "{test}: TAZA_REQUIRE_BROWSER=1 but {CHROMIUM} or {CHROMEDRIVER} is missing (apt-get install chromium chromium-driver)"
    );
    use std::io::Write as _;
    let _ = writeln!(
        std::io::stderr().lock(),
        "\n######## SKIPPED {test}: chromium / chromium-driver not installed (CI installs them) ########\n"
    );
    false
}

/// chromedriver plus one headless chromium session.
pub struct Browser {
    driver: Child,
    port: u16,
    session: String,
    _profile: tempfile::TempDir,
}

impl Browser {
    pub async fn start() -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "chromedriver did not listen on {port}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let profile = tempfile::tempdir().unwrap();
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
                    "--window-size=1400,900", format!("--user-data-dir={}", profile.path().display()),
                ],
            },
        }}});
        let mut b = Self {
            driver,
            port,
            session: String::new(),
            _profile: profile,
        };
        let v = b.call("POST", "/session", Some(caps)).await;
        b.session = v["sessionId"]
            .as_str()
            .expect("a WebDriver session")
            .to_string();
        b
    }

    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            self.port,
            body.len()
        );
        // chromedriver keeps connections open whatever the request says: read the head, then
        // exactly Content-Length bytes.
        let exchange = async {
            let mut s = tokio::net::TcpStream::connect(("127.0.0.1", self.port))
                .await
                .unwrap();
            s.write_all(req.as_bytes()).await.unwrap();
            let mut raw = Vec::new();
            let mut chunk = vec![0u8; 64 * 1024];
            loop {
                let n = s.read(&mut chunk).await.unwrap();
                assert!(n > 0, "WebDriver closed the connection mid-response");
                raw.extend_from_slice(&chunk[..n]);
                let Some(head_end) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
                    continue;
                };
                let head = String::from_utf8_lossy(&raw[..head_end]).to_ascii_lowercase();
                let length: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse().ok())
                    .expect("WebDriver responses carry Content-Length");
                if raw.len() >= head_end + 4 + length {
                    break raw[head_end + 4..head_end + 4 + length].to_vec();
                }
            }
        };
        let raw = tokio::time::timeout(Duration::from_secs(60), exchange)
            .await
            .expect("WebDriver answered within 60 s");
        let body = String::from_utf8_lossy(&raw);
        let v: Value = serde_json::from_str(&body)
            .unwrap_or_else(|e| panic!("WebDriver {method} {path}: {e}: {body}"));
        assert!(
            v["value"]["error"].is_null(),
            "WebDriver {method} {path}: {}",
            v["value"]
        );
        v["value"].clone()
    }

    fn at(&self, rest: &str) -> String {
        format!("/session/{}{rest}", self.session)
    }

    pub async fn goto(&self, url: &str) {
        self.call("POST", &self.at("/url"), Some(json!({ "url": url })))
            .await;
    }

    /// Runs `script` (a function body; `arguments` available) and returns its value.
    pub async fn eval(&self, script: &str, args: Value) -> Value {
        self.call(
            "POST",
            &self.at("/execute/sync"),
            Some(json!({ "script": script, "args": args })),
        )
        .await
    }

    /// Element ids matching a CSS selector.
    pub async fn find_all(&self, css: &str) -> Vec<String> {
        let v = self
            .call(
                "POST",
                &self.at("/elements"),
                Some(json!({"using": "css selector", "value": css})),
            )
            .await;
        v.as_array()
            .unwrap()
            .iter()
            .filter_map(|e| e[ELEMENT_KEY].as_str().map(str::to_string))
            .collect()
    }

    pub async fn click(&self, css: &str) {
        let ids = self.find_all(css).await;
        let id = ids
            .first()
            .unwrap_or_else(|| panic!("no element {css} to click"));
        self.call(
            "POST",
            &self.at(&format!("/element/{id}/click")),
            Some(json!({})),
        )
        .await;
    }

    /// Polls `script` until it returns true; panics naming `what` after `timeout`.
    pub async fn wait_for(&self, what: &str, timeout: Duration, script: &str, args: Value) {
        let deadline = Instant::now() + timeout;
        loop {
            if self.eval(script, args.clone()).await == Value::Bool(true) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "browser: timed out after {timeout:?} waiting for {what}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Saves a PNG screenshot of the viewport to `dir/name.png`.
    pub async fn screenshot(&self, dir: &Path, name: &str) -> PathBuf {
        use base64::Engine as _;
        let v = self.call("GET", &self.at("/screenshot"), None).await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(v.as_str().unwrap())
            .unwrap();
        std::fs::create_dir_all(dir).unwrap();
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png).unwrap();
        path
    }

    /// Ends the session (best effort: chromedriver can take long to close the browser, and
    /// killing it ends the browser too).
    pub async fn quit(mut self) {
        let path = self.at("");
        let _ =
            tokio::time::timeout(Duration::from_secs(5), self.call("DELETE", &path, None)).await;
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
