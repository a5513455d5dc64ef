//! Real receivers for the alert channels, on loopback ports chosen by the OS: a small SMTP server
//! (plain text, enough of RFC 5321 for lettre), an HTTP webhook receiver (axum) that can answer
//! any status or be stopped and restarted on the same port, and a Telegram Bot API stand-in.
//! Each records what arrived; `wait_for(n, within)` waits on the recording, never on a clock.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::IntoResponse;
use axum::routing::{any, get, post};
use axum::Router;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// What a receiver recorded so far, with a counter to wait on.
struct Log<T> {
    items: Mutex<Vec<T>>,
    count: watch::Sender<usize>,
}

impl<T: Clone> Log<T> {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            items: Mutex::new(Vec::new()),
            count: watch::channel(0).0,
        })
    }

    fn push(&self, item: T) {
        let n = {
            let mut items = self.items.lock().unwrap();
            items.push(item);
            items.len()
        };
        self.count.send_replace(n);
    }

    fn all(&self) -> Vec<T> {
        self.items.lock().unwrap().clone()
    }

    async fn wait_for(&self, n: usize, within: Duration, what: &str) -> Vec<T> {
        let mut rx = self.count.subscribe();
        let reached = tokio::time::timeout(within, rx.wait_for(|c| *c >= n)).await;
        assert!(
            matches!(reached, Ok(Ok(_))),
            "{what}: expected {n} within {within:?}, got {}",
            self.items.lock().unwrap().len()
        );
        self.all()
    }
}

// ---------------------------------------------------------------------------------------------
// SMTP

/// One message as the SMTP server received it.
#[derive(Debug, Clone)]
pub struct SmtpMessage {
    /// MAIL FROM address (without angle brackets).
    pub from: String,
    /// RCPT TO addresses.
    pub to: Vec<String>,
    /// The DATA section, dot-unstuffed, CRLF line ends.
    pub data: String,
}

impl SmtpMessage {
    /// A header's value (unfolded), by case-insensitive name.
    pub fn header(&self, name: &str) -> Option<String> {
        let head = self.data.split("\r\n\r\n").next().unwrap_or("");
        let mut found: Option<String> = None;
        for line in head.split("\r\n") {
            if line.starts_with([' ', '\t']) {
                if let Some(v) = found.as_mut() {
                    v.push(' ');
                    v.push_str(line.trim());
                }
                continue;
            }
            if found.is_some() {
                break;
            }
            if let Some((n, v)) = line.split_once(':') {
                if n.eq_ignore_ascii_case(name) {
                    found = Some(v.trim().to_string());
                }
            }
        }
        found
    }

    /// `Message-ID` header.
    pub fn message_id(&self) -> Option<String> {
        self.header("Message-ID")
    }
}

/// A plain-text SMTP server that accepts every message.
pub struct SmtpReceiver {
    /// Where it listens.
    pub addr: SocketAddr,
    log: Arc<Log<SmtpMessage>>,
    task: JoinHandle<()>,
}

impl SmtpReceiver {
    /// Listens on a free loopback port.
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let log = Log::new();
        let task_log = Arc::clone(&log);
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let log = Arc::clone(&task_log);
                tokio::spawn(async move {
                    // A client that hangs up mid-session is its own business.
                    let _ = smtp_session(stream, &log).await;
                });
            }
        });
        Self { addr, log, task }
    }

    /// Port to configure in `[alert.channels.email]`.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Messages received so far.
    pub fn messages(&self) -> Vec<SmtpMessage> {
        self.log.all()
    }

    /// Waits until `n` messages arrived; panics after `within`.
    pub async fn wait_for(&self, n: usize, within: Duration) -> Vec<SmtpMessage> {
        self.log.wait_for(n, within, "SMTP messages").await
    }
}

impl Drop for SmtpReceiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn address(arg: &str) -> String {
    let a = arg.split_once(':').map(|(_, a)| a).unwrap_or(arg).trim();
    let a = a.split_whitespace().next().unwrap_or("");
    a.trim_start_matches('<').trim_end_matches('>').to_string()
}

async fn smtp_session(stream: TcpStream, log: &Log<SmtpMessage>) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read);
    write.write_all(b"220 taza-test ESMTP ready\r\n").await?;
    let mut from = String::new();
    let mut to = Vec::new();
    let mut line = String::new();
    loop {
        line.clear();
        if lines.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let cmd = line.trim_end();
        let verb = cmd
            .split([' ', ':'])
            .next()
            .unwrap_or("")
            .to_ascii_uppercase();
        let reply: &[u8] = match verb.as_str() {
            "EHLO" => b"250-taza-test\r\n250 8BITMIME\r\n",
            "HELO" => b"250 taza-test\r\n",
            "MAIL" => {
                from = address(cmd);
                to.clear();
                b"250 OK\r\n"
            }
            "RCPT" => {
                to.push(address(cmd));
                b"250 OK\r\n"
            }
            "DATA" => {
                write.write_all(b"354 end with <CRLF>.<CRLF>\r\n").await?;
                let mut data = String::new();
                loop {
                    line.clear();
                    if lines.read_line(&mut line).await? == 0 {
                        return Ok(());
                    }
                    if line == ".\r\n" || line == ".\n" {
                        break;
                    }
                    // RFC 5321 §4.5.2: a leading dot was doubled by the client.
                    let l = line.strip_prefix('.').unwrap_or(&line);
                    data.push_str(l.trim_end_matches(['\r', '\n']));
                    data.push_str("\r\n");
                }
                log.push(SmtpMessage {
                    from: std::mem::take(&mut from),
                    to: std::mem::take(&mut to),
                    data,
                });
                b"250 OK queued\r\n"
            }
            "RSET" => {
                from.clear();
                to.clear();
                b"250 OK\r\n"
            }
            "NOOP" => b"250 OK\r\n",
            "QUIT" => {
                write.write_all(b"221 bye\r\n").await?;
                return Ok(());
            }
            _ => b"502 command not implemented\r\n",
        };
        write.write_all(reply).await?;
    }
}

// ---------------------------------------------------------------------------------------------
// Webhook

/// One HTTP request as the webhook receiver got it.
#[derive(Debug, Clone)]
pub struct WebhookRequest {
    /// Method.
    pub method: String,
    /// Path and query.
    pub uri: String,
    /// Headers, names lower-case.
    pub headers: Vec<(String, String)>,
    /// Body bytes.
    pub body: Vec<u8>,
    /// Status the receiver answered.
    pub answered: u16,
}

impl WebhookRequest {
    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

struct WebhookState {
    log: Arc<Log<WebhookRequest>>,
    status: AtomicU16,
}

/// An HTTP server that records every request and answers a settable status (200 by default).
pub struct WebhookReceiver {
    /// Where it listens (kept across stop/restart).
    pub addr: SocketAddr,
    state: Arc<WebhookState>,
    server: Option<(CancellationToken, JoinHandle<()>)>,
}

impl WebhookReceiver {
    /// Listens on a free loopback port.
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut r = Self {
            addr,
            state: Arc::new(WebhookState {
                log: Log::new(),
                status: AtomicU16::new(200),
            }),
            server: None,
        };
        r.serve(listener);
        r
    }

    fn serve(&mut self, listener: TcpListener) {
        let app = Router::new()
            .fallback(any(webhook_handler))
            .with_state(Arc::clone(&self.state));
        let stop = CancellationToken::new();
        let signal = stop.clone().cancelled_owned();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(signal)
                .await;
        });
        self.server = Some((stop, task));
    }

    /// The URL to configure (`/hook`).
    pub fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    /// Status for the next requests (e.g. 500 or 400).
    pub fn answer_with(&self, status: u16) {
        self.state.status.store(status, Ordering::SeqCst);
    }

    /// Requests received so far.
    pub fn messages(&self) -> Vec<WebhookRequest> {
        self.state.log.all()
    }

    /// Waits until `n` requests arrived; panics after `within`.
    pub async fn wait_for(&self, n: usize, within: Duration) -> Vec<WebhookRequest> {
        self.state.log.wait_for(n, within, "webhook requests").await
    }

    /// Closes the listener and every connection: clients now get "connection refused".
    pub async fn stop(&mut self) {
        if let Some((stop, task)) = self.server.take() {
            stop.cancel();
            tokio::time::timeout(Duration::from_secs(5), task)
                .await
                .expect("webhook receiver did not stop")
                .unwrap();
        }
    }

    /// Listens again on the same port.
    pub async fn restart(&mut self) {
        self.stop().await;
        let listener = TcpListener::bind(self.addr).await.unwrap();
        self.serve(listener);
    }
}

impl Drop for WebhookReceiver {
    fn drop(&mut self) {
        if let Some((stop, task)) = self.server.take() {
            stop.cancel();
            task.abort();
        }
    }
}

async fn webhook_handler(
    State(state): State<Arc<WebhookState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> impl IntoResponse {
    let status = state.status.load(Ordering::SeqCst);
    state.log.push(WebhookRequest {
        method: method.to_string(),
        uri: uri.to_string(),
        headers: headers
            .iter()
            .map(|(n, v)| {
                (
                    n.as_str().to_string(),
                    v.to_str().unwrap_or_default().to_string(),
                )
            })
            .collect(),
        body: body.to_vec(),
        answered: status,
    });
    StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

// ---------------------------------------------------------------------------------------------
// Telegram

/// One `sendMessage` call.
#[derive(Debug, Clone)]
pub struct TelegramMessage {
    /// The token from the path (`/bot{token}/sendMessage`).
    pub token: String,
    /// The JSON body.
    pub body: serde_json::Value,
    /// Whether it was answered with a rate limit.
    pub rate_limited: bool,
}

impl TelegramMessage {
    /// `chat_id` as sent.
    pub fn chat_id(&self) -> String {
        match &self.body["chat_id"] {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        }
    }

    /// `text`.
    pub fn text(&self) -> String {
        self.body["text"].as_str().unwrap_or_default().to_string()
    }
}

struct TelegramState {
    log: Arc<Log<TelegramMessage>>,
    token: String,
    /// Answer this many next calls with 429 and `retry_after`.
    rate_limit_next: AtomicU64,
    retry_after_s: AtomicU64,
}

/// A stand-in for the Bot API at `base_url()`: accepts `sendMessage` and `getMe` for one token.
pub struct TelegramReceiver {
    /// Where it listens.
    pub addr: SocketAddr,
    state: Arc<TelegramState>,
    stop: CancellationToken,
}

impl TelegramReceiver {
    /// Listens on a free loopback port and accepts `token`.
    pub async fn start(token: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(TelegramState {
            log: Log::new(),
            token: token.to_string(),
            rate_limit_next: AtomicU64::new(0),
            retry_after_s: AtomicU64::new(1),
        });
        let app = Router::new()
            .route("/{bot}/sendMessage", post(telegram_send))
            .route("/{bot}/getMe", get(telegram_get_me))
            .with_state(Arc::clone(&state));
        let stop = CancellationToken::new();
        let signal = stop.clone().cancelled_owned();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(signal)
                .await;
        });
        Self { addr, state, stop }
    }

    /// `base_url` for `[alert.channels.telegram]`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Answers the next `n` calls with 429 and `retry_after = retry_after_s`.
    pub fn rate_limit_next(&self, n: u64, retry_after_s: u64) {
        self.state
            .retry_after_s
            .store(retry_after_s, Ordering::SeqCst);
        self.state.rate_limit_next.store(n, Ordering::SeqCst);
    }

    /// Calls received so far (rate-limited ones included).
    pub fn messages(&self) -> Vec<TelegramMessage> {
        self.state.log.all()
    }

    /// Waits until `n` calls arrived; panics after `within`.
    pub async fn wait_for(&self, n: usize, within: Duration) -> Vec<TelegramMessage> {
        self.state.log.wait_for(n, within, "Telegram calls").await
    }
}

impl Drop for TelegramReceiver {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

fn bot_token(bot: &str) -> Option<&str> {
    bot.strip_prefix("bot")
}

fn unauthorized() -> (StatusCode, axum::Json<serde_json::Value>) {
    (
        StatusCode::UNAUTHORIZED,
        axum::Json(
            serde_json::json!({"ok": false, "error_code": 401, "description": "Unauthorized"}),
        ),
    )
}

async fn telegram_send(
    State(state): State<Arc<TelegramState>>,
    Path(bot): Path<String>,
    body: Bytes,
) -> (StatusCode, axum::Json<serde_json::Value>) {
    let token = bot_token(&bot).unwrap_or_default().to_string();
    if token != state.token {
        return unauthorized();
    }
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    let rate_limited = state
        .rate_limit_next
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok();
    state.log.push(TelegramMessage {
        token,
        body,
        rate_limited,
    });
    if rate_limited {
        let retry_after_s = state.retry_after_s.load(Ordering::SeqCst);
        return (
            StatusCode::TOO_MANY_REQUESTS,
            axum::Json(serde_json::json!({
                "ok": false,
                "error_code": 429,
                "description": format!("Too Many Requests: retry after {retry_after_s}"),
                "parameters": {"retry_after": retry_after_s},
            })),
        );
    }
    (
        StatusCode::OK,
        axum::Json(serde_json::json!({"ok": true, "result": {"message_id": 1}})),
    )
}

async fn telegram_get_me(
    State(state): State<Arc<TelegramState>>,
    Path(bot): Path<String>,
) -> (StatusCode, axum::Json<serde_json::Value>) {
    if bot_token(&bot) != Some(state.token.as_str()) {
        return unauthorized();
    }
    (
        StatusCode::OK,
        axum::Json(
            serde_json::json!({"ok": true, "result": {"id": 1, "is_bot": true, "username": "taza_test_bot"}}),
        ),
    )
}
