//! Long-term store sink: readings copied to InfluxDB 2 through a durable queue.
//!
//! The store writer queues each new reading in `sink_queue` in the transaction that stores it
//! ([`queue`]); this worker, through the [`Store`] (SQLite or the PostgreSQL server replicas
//! share) and on the leader only ([`Leader`]: always on SQLite; the holder of the lease among
//! replicas, so one replica drains the shared queue), reads the oldest `batch_size` rows,
//! writes them through the `influxdb2` crate ([`schema`]) and deletes them only after a 2xx.
//! An InfluxDB outage therefore loses nothing: the queue grows, the worker retries with
//! exponential backoff (`retry_initial` doubling up to `retry_max`), and when InfluxDB returns
//! the backlog drains in commit order, full batches back to back. A crash between InfluxDB's
//! 2xx and the delete sends that batch again; InfluxDB keeps one point per (series, time), so
//! the repeat overwrites itself. The same holds for the moment two replicas may overlap when the lease changes hands.
//!
//! HTTP: through the `influxdb2` crate (0.5, `default-features = false`, `rustls`), the client
//! the project's brief names. Each batch becomes the crate's `DataPoint`s ([`schema`]), encoded
//! by its line-protocol writer and sent with `Client::write_line_protocol_with_precision`
//! (`POST {url}/api/v2/write?bucket=&org=&precision=s`, `Authorization: Token …`), one request per
//! batch with a known length. The crate's reqwest 0.11 client is handed in built with our
//! timeouts, no redirects (a redirect would resend the token), HTTP/1.1 only and our user
//! agent. Where the
//! crate falls short, and what is done about it:
//! - tag values: it escapes `,`, `=` and space but not a backslash nor a line break, so
//!   [`schema::tag_value`] doubles backslashes and turns line breaks into spaces first;
//! - URL: it replaces the URL's path with `/api/v2/write`, so a base URL with a path (InfluxDB
//!   behind a proxy under `/influx/`) is refused by validation ([`config::PATH_PREFIX_REFUSED`])
//!   instead of being dropped silently;
//! - success is 204 only: any other 2xx is taken as accepted here;
//! - an error answer whose body breaks off loses its status (the crate reads the body first):
//!   it is retried as `unreachable`.
//!
//! Its cost, measured on this tree (`cargo tree -p gateway -e normal`): reqwest was reached only
//! as 0.12 (from taza-alert and taza-sink); now 0.12 from taza-alert alone and 0.11.27 from
//! taza-sink and influxdb2 (`-i reqwest@0.11.27`). `--prefix none | sort -u | wc -l` went from 380
//! to 421 lines, 281 to 312 distinct crates. The 31 new ones: influxdb2 0.5.2, influxdb2-derive
//! 0.1.1, influxdb2-structmap 0.2.0, reqwest 0.11.27, h2 0.3.27, hyper-rustls 0.24.2, tokio-rustls
//! 0.24.1, rustls 0.21.12, rustls-webpki 0.101.7, rustls-pemfile 1.0.4, sct 0.7.1, webpki-roots
//! 0.25.4, sync_wrapper 0.1.2, secrecy 0.8.0, snafu 0.6.10, snafu-derive 0.6.10, syn 1.0.109,
//! base64 0.13.1, csv 1.4.0, csv-core 0.1.13, futures 0.3.34, go-parse-duration 0.1.1,
//! ordered-float 3.9.2, parking_lot 0.11.2, parking_lot_core 0.8.6, instant 0.1.13, itertools
//! 0.10.5, either 1.19.0, doc-comment 0.3.4, regex 1.13.1, aho-corasick 1.1.5 (regex-automata's
//! feature, turned on by regex). hyper 0.14 and http-body 0.4 were already in the tree. Only
//! taza-sink depends on influxdb2 (and on reqwest 0.11, named `influxdb2-reqwest`, to configure
//! the crate's client); the other crates reach it only through taza-sink (taza-api for
//! [`SinkMetrics`]). The old TLS stack (rustls 0.21, rustls-webpki 0.101, ring via rustls 0.21)
//! only ever talks to the configured InfluxDB; its advisories are listed in `.cargo/audit.toml`.
//!
//! A refusal InfluxDB will never take back (400 malformed, 422 outside the bucket's retention)
//! drops that batch, counted and logged: InfluxDB 2 has already written the batch's valid points,
//! and retrying would stop every later reading behind one bad one. Everything else (no answer,
//! 401/403, 404, 413, 429, 5xx) is retried.
//!
//! Telemetry: [`SinkMetrics`] (`taza_sink_influxdb_*`), registered by the caller at wiring time.

pub mod config;
pub mod history;
pub mod schema;
pub use taza_store::sink_queue as queue;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use config::{InfluxConfig, SinkConfig};

use taza_domain::secret::SecretString;
use taza_store::pg::lease::Leader;
use taza_store::{Db, Store};

/// How long the final flush at shutdown may take in all: the queue keeps the rest.
const SHUTDOWN_FLUSH_DEADLINE: Duration = Duration::from_secs(5);
/// `/healthz` calls the sink degraded once writes have failed for this long (a blip of a few
/// retries is not worth a warning on the dashboard).
pub const DEGRADED_AFTER_FAILING_FOR: Duration = Duration::from_secs(60);
/// `/healthz` calls the sink degraded while this many readings wait: with Almaty's ~40 posts,
/// ~10 quantities each, once a minute, about 25 minutes of the city's data.
pub const DEGRADED_BACKLOG_POINTS: i64 = 10_000;

/// Why the sink could not start.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// The token file could not be read (its path is not a secret; its content is).
    #[error("sink.influxdb.token_file {path}: {source}")]
    TokenFile {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The token file is empty.
    #[error("sink.influxdb.token_file {0} is empty")]
    EmptyToken(PathBuf),
    /// The HTTP client could not be built.
    #[error("sink HTTP client: {0}")]
    Http(String),
}

/// Why a write failed: a metric label from a fixed set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// No connection, reset, or timeout.
    Unreachable,
    /// 401/403: the token is wrong or lacks write access.
    Unauthorized,
    /// Another status InfluxDB may stop sending (404, 413, 429, 5xx).
    Status,
    /// 400/422: InfluxDB refused points for good; the batch was dropped.
    Rejected,
    /// The local queue could not be read or updated.
    Queue,
}

impl FailureKind {
    /// Every kind.
    pub const ALL: [FailureKind; 5] = [
        Self::Unreachable,
        Self::Unauthorized,
        Self::Status,
        Self::Rejected,
        Self::Queue,
    ];

    /// Metric label.
    pub fn as_label(self) -> &'static str {
        match self {
            Self::Unreachable => "unreachable",
            Self::Unauthorized => "unauthorized",
            Self::Status => "status",
            Self::Rejected => "rejected",
            Self::Queue => "queue",
        }
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

/// Sink health. Cheap to clone; register once with [`SinkMetrics::register`].
#[derive(Debug, Clone, Default)]
pub struct SinkMetrics {
    points_written: Counter,
    points_dropped: Counter,
    requests: Counter,
    failures: Family<ReasonLabel, Counter>,
    backlog: Gauge,
    consecutive_failures: Gauge,
    last_success: Gauge,
    /// Health only (not exported): whether a worker runs, when the current failure streak began
    /// and when and why the last failed round failed (Unix seconds, 0 = never).
    enabled: Arc<std::sync::atomic::AtomicBool>,
    failing_since: Gauge,
    last_failure: Gauge,
    /// 1 + index in [`FailureKind::ALL`]; 0 = none.
    last_failure_kind: Arc<std::sync::atomic::AtomicUsize>,
}

/// The sink's state for `/healthz`.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SinkHealth {
    /// `[sink.influxdb]` is configured and its worker runs.
    pub configured: bool,
    /// `ok`, or `degraded` (failing for longer than [`DEGRADED_AFTER_FAILING_FOR`], or
    /// [`DEGRADED_BACKLOG_POINTS`] or more readings waiting).
    pub status: &'static str,
    /// Readings waiting for InfluxDB.
    pub backlog_points: i64,
    /// Failed rounds since the last success.
    pub consecutive_failures: i64,
    /// Seconds since InfluxDB last accepted a write; None: not since start.
    pub last_success_age_s: Option<i64>,
    /// Seconds since the last failed round; None: none since start.
    pub last_failure_age_s: Option<i64>,
    /// Why the last failed round failed (a [`FailureKind`] label).
    pub last_failure_reason: Option<&'static str>,
    /// Seconds the current failure streak has lasted; None: the last round succeeded.
    pub failing_for_s: Option<i64>,
}

impl SinkMetrics {
    /// Counters with a zero series for every failure reason.
    pub fn new() -> Self {
        let m = Self::default();
        for k in FailureKind::ALL {
            let _ = m.failures.get_or_create(&ReasonLabel {
                reason: k.as_label(),
            });
        }
        m
    }

    /// Registers `sink_influxdb_*` (under the registry's prefix, `taza_` in the gateway).
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "sink_influxdb_points_written",
            "Readings InfluxDB accepted (2xx)",
            self.points_written.clone(),
        );
        registry.register(
            "sink_influxdb_points_dropped",
            "Readings dropped after InfluxDB refused their batch for good (400/422)",
            self.points_dropped.clone(),
        );
        registry.register(
            "sink_influxdb_requests",
            "Write requests sent",
            self.requests.clone(),
        );
        registry.register(
            "sink_influxdb_failures",
            "Failed write rounds, by reason",
            self.failures.clone(),
        );
        registry.register(
            "sink_influxdb_backlog_points",
            "Readings queued for InfluxDB and not yet confirmed",
            self.backlog.clone(),
        );
        registry.register(
            "sink_influxdb_consecutive_failures",
            "Failed write rounds since the last success (0 = healthy)",
            self.consecutive_failures.clone(),
        );
        registry.register(
            "sink_influxdb_last_success_timestamp_seconds",
            "Unix time of the last accepted write (0 = none since start)",
            self.last_success.clone(),
        );
    }

    /// Readings InfluxDB accepted.
    pub fn points_written(&self) -> u64 {
        self.points_written.get()
    }

    /// Readings waiting, as of the worker's last look.
    pub fn backlog(&self) -> i64 {
        self.backlog.get()
    }

    /// Failed rounds since the last success.
    pub fn consecutive_failures(&self) -> i64 {
        self.consecutive_failures.get()
    }

    /// Health at `now`, for `/healthz`.
    pub fn health(&self, now: protocol::UnixSeconds) -> SinkHealth {
        use std::sync::atomic::Ordering;
        let configured = self.enabled.load(Ordering::Relaxed);
        let age = |at: i64| (at > 0).then(|| (now.0 - at).max(0));
        let failing_for_s = if self.consecutive_failures.get() > 0 {
            age(self.failing_since.get())
        } else {
            None
        };
        let backlog_points = self.backlog.get();
        let degraded = configured
            && (failing_for_s.is_some_and(|s| s >= DEGRADED_AFTER_FAILING_FOR.as_secs() as i64)
                || backlog_points >= DEGRADED_BACKLOG_POINTS);
        SinkHealth {
            configured,
            status: if degraded { "degraded" } else { "ok" },
            backlog_points,
            consecutive_failures: self.consecutive_failures.get(),
            last_success_age_s: age(self.last_success.get()),
            last_failure_age_s: age(self.last_failure.get()),
            last_failure_reason: self
                .last_failure_kind
                .load(Ordering::Relaxed)
                .checked_sub(1)
                .and_then(|i| FailureKind::ALL.get(i))
                .map(|k| k.as_label()),
            failing_for_s,
        }
    }

    fn record_failure(&self, kind: FailureKind) {
        use std::sync::atomic::Ordering;
        let now = taza_domain::calendar::now().0;
        self.last_failure.set(now);
        if let Some(i) = FailureKind::ALL.iter().position(|k| *k == kind) {
            self.last_failure_kind.store(i + 1, Ordering::Relaxed);
        }
    }

    /// Failed rounds for `kind`.
    pub fn failures(&self, kind: FailureKind) -> u64 {
        self.failures
            .get_or_create(&ReasonLabel {
                reason: kind.as_label(),
            })
            .get()
    }
}

/// The `influxdb2` client with the org and bucket, resolved once at startup.
#[derive(Clone)]
pub struct InfluxClient {
    client: influxdb2::Client,
    org: String,
    bucket: String,
}

impl std::fmt::Debug for InfluxClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The base URL holds no credentials (refused by validation); the token stays out.
        f.debug_struct("InfluxClient")
            .field("url", &self.client.base.as_str())
            .field("org", &self.org)
            .field("bucket", &self.bucket)
            .finish_non_exhaustive()
    }
}

/// Outcome of one write request.
enum WriteOutcome {
    Accepted,
    Retry(FailureKind, String),
    Drop(String),
}

impl InfluxClient {
    /// Reads the token (from `token_file` if set) and builds the client.
    pub fn new(cfg: &InfluxConfig) -> Result<Self, SinkError> {
        let token = read_token(cfg)?;
        // The crate panics on a URL it cannot parse and sends every request to the host's root
        // (`Url::set_path`), so both are refused here rather than met later.
        let base = influxdb2_reqwest::Url::parse(&cfg.url)
            .map_err(|e| SinkError::Http(format!("sink.influxdb.url: {e}")))?;
        if !matches!(base.path(), "" | "/") || base.query().is_some() {
            return Err(SinkError::Http(format!(
                "sink.influxdb.url: {}",
                config::PATH_PREFIX_REFUSED
            )));
        }
        let http = influxdb2_reqwest::Client::builder()
            .timeout(cfg.request_timeout)
            .connect_timeout(cfg.request_timeout / 2)
            // A redirect would resend the token to wherever it points.
            .redirect(influxdb2_reqwest::redirect::Policy::none())
            // HTTP/1.1 only: InfluxDB's write API needs nothing more, and it keeps the crate's
            // h2 0.3 (RUSTSEC-2026-0258, fixed in 0.4 only) out of every connection.
            .http1_only()
            .user_agent(concat!("taza-gateway/", env!("CARGO_PKG_VERSION")));
        let client = influxdb2::ClientBuilder::with_builder(
            http,
            base.as_str(),
            cfg.org.as_str(),
            token.expose(),
        )
        .build()
        .map_err(|e| SinkError::Http(e.to_string()))?;
        Ok(Self {
            client,
            org: cfg.org.clone(),
            bucket: cfg.bucket.clone(),
        })
    }

    /// `GET {url}/health` through the crate: Ok when InfluxDB answers that it passes. Reads
    /// nothing, writes nothing.
    pub async fn healthcheck(&self) -> Result<(), String> {
        use influxdb2::models::Status;
        match self.client.health().await {
            Ok(h) if h.status == Status::Pass => Ok(()),
            Ok(h) => Err(format!(
                "InfluxDB health: {:?}{}",
                h.status,
                h.message.map(|m| format!(" ({m})")).unwrap_or_default()
            )),
            Err(influxdb2::RequestError::Http { status, .. }) => {
                Err(format!("InfluxDB health answered {}", status.as_u16()))
            }
            Err(e) => Err(format!("InfluxDB unreachable: {}", describe(&e))),
        }
    }

    /// One write of `body` (line protocol from [`body`]) through the crate.
    async fn write(&self, body: Vec<u8>) -> WriteOutcome {
        let sent = self
            .client
            .write_line_protocol_with_precision(
                &self.org,
                &self.bucket,
                body,
                influxdb2::api::write::TimestampPrecision::Seconds,
            )
            .await;
        let (status, text) = match sent {
            Ok(()) => return WriteOutcome::Accepted,
            Err(influxdb2::RequestError::Http { status, text }) => (status.as_u16(), text),
            // No answer, a reset, a timeout, or an error answer whose body broke off (the
            // crate reads it before it reports the status, so that status is lost).
            Err(e) => return WriteOutcome::Retry(FailureKind::Unreachable, describe(&e)),
        };
        // The crate takes only 204 as success; any other 2xx was accepted all the same.
        if (200..300).contains(&status) {
            return WriteOutcome::Accepted;
        }
        // InfluxDB's error body is JSON {code, message}; keep a short prefix for the log.
        let text: String = text.chars().take(300).collect();
        let what = format!("HTTP {status}: {text}");
        match status {
            400 | 422 => WriteOutcome::Drop(what),
            401 | 403 => WriteOutcome::Retry(FailureKind::Unauthorized, what),
            _ => WriteOutcome::Retry(FailureKind::Status, what),
        }
    }
}

/// The token: `token_file`'s content, trimmed, if set; else `token`; else none.
fn read_token(cfg: &InfluxConfig) -> Result<SecretString, SinkError> {
    match (&cfg.token, &cfg.token_file) {
        (_, Some(path)) => {
            let text = std::fs::read_to_string(path).map_err(|source| SinkError::TokenFile {
                path: path.clone(),
                source,
            })?;
            let t = text.trim();
            if t.is_empty() {
                return Err(SinkError::EmptyToken(path.clone()));
            }
            Ok(SecretString::new(t))
        }
        (Some(t), None) => Ok(t.clone()),
        (None, None) => Ok(SecretString::default()),
    }
}

/// A crate error for the log, without the URL (ours, already known; the token is a header,
/// which reqwest errors never hold).
fn describe(e: &influxdb2::RequestError) -> String {
    match e {
        // reqwest's text already ends with its cause.
        influxdb2::RequestError::ReqwestProcessing { source } => match source.url() {
            Some(url) => source.to_string().replace(&format!(" for url ({url})"), ""),
            None => source.to_string(),
        },
        other => other.to_string(),
    }
}

/// Builds the request body from queued rows: one line per reading, each a
/// [`schema::data_point`] in the crate's line protocol. Returns the body, the ids it covers and
/// the points in it (rows with an unknown quantity or a non-finite value are covered but left
/// out: they can never be written).
pub fn body(rows: &[queue::Queued]) -> (Vec<u8>, Vec<i64>, usize) {
    use influxdb2::models::WriteDataPoint;
    let mut out = Vec::with_capacity(rows.len() * 96);
    let mut ids = Vec::with_capacity(rows.len());
    let mut points = 0;
    for r in rows {
        ids.push(r.id);
        let Some(quantity) = protocol::Quantity::parse(&r.quantity) else {
            continue;
        };
        // The tag keeps the registry's word, `unregistered` included (posts seen in demo mode).
        let kind = r.kind.as_deref().unwrap_or("unregistered");
        let is_river = kind.parse::<taza_domain::post::PostKind>().ok()
            == Some(taza_domain::post::PostKind::River);
        let p = schema::Point {
            post: &r.post,
            quantity,
            kind,
            district: if is_river {
                None
            } else {
                r.district.as_deref()
            },
            river: if is_river { r.river.as_deref() } else { None },
            at_s: r.at_s,
            value: r.value,
            flags: r.flags,
        };
        if let Some(dp) = schema::data_point(&p) {
            // Writing to a Vec cannot fail.
            if dp.write_data_point_to(&mut out).is_ok() {
                points += 1;
            }
        }
    }
    (out, ids, points)
}

/// The running worker.
struct Worker {
    cfg: InfluxConfig,
    client: InfluxClient,
    store: Store,
    metrics: SinkMetrics,
}

/// What one round did.
enum Round {
    /// Nothing queued.
    Empty,
    /// A batch was accepted (or dropped for good); `full` = there may be more right away.
    Done { full: bool },
    /// It failed; try again later.
    Failed,
}

impl Worker {
    async fn round(&self) -> Round {
        let limit = self.cfg.batch_size;
        let rows = match self.store.read(move |db| queue::oldest(db, limit)).await {
            Ok(rows) => rows,
            Err(e) => return self.failed(FailureKind::Queue, &e.to_string()),
        };
        if rows.is_empty() {
            self.metrics.backlog.set(0);
            return Round::Empty;
        }
        let full = rows.len() >= limit;
        let (body, ids, points) = body(&rows);
        let outcome = if points == 0 {
            WriteOutcome::Accepted
        } else {
            self.metrics.requests.inc();
            self.client.write(body).await
        };
        match outcome {
            WriteOutcome::Accepted => {
                self.metrics.points_written.inc_by(points as u64);
                self.metrics.consecutive_failures.set(0);
                self.metrics.failing_since.set(0);
                self.metrics
                    .last_success
                    .set(taza_domain::calendar::now().0);
            }
            WriteOutcome::Drop(what) => {
                self.metrics.points_dropped.inc_by(points as u64);
                self.count_failure(FailureKind::Rejected);
                tracing::error!(points, error = %what, "InfluxDB refused a batch for good; dropped it");
            }
            WriteOutcome::Retry(kind, what) => return self.failed(kind, &what),
        }
        match self
            .store
            .write(move |db: &Db<'_>| {
                queue::remove(db, &ids)?;
                queue::backlog(db)
            })
            .await
        {
            Ok(n) => {
                self.metrics
                    .backlog
                    .set(i64::try_from(n).unwrap_or(i64::MAX));
                Round::Done { full }
            }
            // Written but still queued: the next round sends it again and InfluxDB overwrites
            // the same points.
            Err(e) => self.failed(FailureKind::Queue, &e.to_string()),
        }
    }

    fn count_failure(&self, kind: FailureKind) {
        self.metrics.record_failure(kind);
        self.metrics
            .failures
            .get_or_create(&ReasonLabel {
                reason: kind.as_label(),
            })
            .inc();
    }

    fn failed(&self, kind: FailureKind, what: &str) -> Round {
        self.count_failure(kind);
        let n = self.metrics.consecutive_failures.inc() + 1;
        if n == 1 {
            self.metrics
                .failing_since
                .set(taza_domain::calendar::now().0);
        }
        // One line at the first failure, then at powers of two: an outage of hours is a few
        // lines, not thousands.
        if n.count_ones() == 1 {
            tracing::warn!(reason = kind.as_label(), consecutive = n, error = %what, "InfluxDB write failed; readings stay queued");
        }
        Round::Failed
    }

    async fn refresh_backlog(&self) {
        if let Ok(n) = self.store.read(queue::backlog).await {
            self.metrics
                .backlog
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
    }

    /// Drains while this replica leads; at shutdown, a last flush if it still does.
    async fn run(self, mut leader: Leader, shutdown: CancellationToken) {
        loop {
            let term = tokio::select! {
                () = shutdown.cancelled() => break,
                term = leader.acquired() => match term {
                    Some(t) => t,
                    None => break,
                },
            };
            tracing::info!(term, "InfluxDB sink drains the queue on this replica");
            self.drain(term, &mut leader, &shutdown).await;
            if shutdown.is_cancelled() {
                if leader.is_leader() {
                    self.final_flush().await;
                }
                break;
            }
            tracing::info!(term, "InfluxDB sink stopped draining: no longer the leader");
        }
        tracing::debug!("InfluxDB sink stopped");
    }

    /// Rounds until shutdown or the end of `term`.
    async fn drain(&self, term: i64, leader: &mut Leader, shutdown: &CancellationToken) {
        self.refresh_backlog().await;
        let mut backoff = self.cfg.retry_initial;
        while !shutdown.is_cancelled() && leader.term() == Some(term) {
            let wait = match self.round().await {
                Round::Done { full: true } => {
                    backoff = self.cfg.retry_initial;
                    continue;
                }
                Round::Done { full: false } | Round::Empty => {
                    backoff = self.cfg.retry_initial;
                    self.cfg.flush_every
                }
                Round::Failed => {
                    // The gauge must grow through an outage, when no batch leaves the queue.
                    self.refresh_backlog().await;
                    let w = backoff;
                    backoff = (backoff * 2).min(self.cfg.retry_max);
                    w
                }
            };
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = leader.lost(term) => break,
                () = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// One more pass at shutdown (the writer's last commit included), without retries.
    async fn final_flush(&self) {
        let pass = async { while let Round::Done { full: true } = self.round().await {} };
        if tokio::time::timeout(SHUTDOWN_FLUSH_DEADLINE, pass)
            .await
            .is_err()
        {
            tracing::info!("InfluxDB sink: unsent readings stay queued for the next start");
        }
    }
}

/// Starts the worker over `store`; it drains while `leader` leads. It stops with `shutdown`
/// after a last flush; await the handle to wait for that.
pub fn spawn(
    cfg: InfluxConfig,
    store: Store,
    leader: Leader,
    metrics: SinkMetrics,
    shutdown: CancellationToken,
) -> Result<JoinHandle<()>, SinkError> {
    let client = InfluxClient::new(&cfg)?;
    metrics
        .enabled
        .store(true, std::sync::atomic::Ordering::Relaxed);
    let health = client.clone();
    tokio::spawn(async move {
        // Startup health check: a warning only; the queue holds readings until InfluxDB is up.
        match health.healthcheck().await {
            Ok(()) => tracing::info!("InfluxDB sink healthy"),
            Err(e) => {
                tracing::warn!(error = %e, "InfluxDB not healthy at startup; readings are queued")
            }
        }
    });
    let worker = Worker {
        cfg,
        client,
        store,
        metrics,
    };
    Ok(tokio::spawn(worker.run(leader, shutdown)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_is_degraded_after_a_minute_of_failures_or_a_large_backlog() {
        use protocol::UnixSeconds;
        let now = UnixSeconds(1_800_000_000);
        let m = SinkMetrics::new();
        assert!(!m.health(now).configured);
        m.enabled.store(true, std::sync::atomic::Ordering::Relaxed);
        let h = m.health(now);
        assert_eq!(
            (h.status, h.failing_for_s, h.last_failure_reason),
            ("ok", None, None)
        );

        m.consecutive_failures.set(3);
        m.failing_since.set(now.0 - 59);
        m.record_failure(FailureKind::Unauthorized);
        let h = m.health(now);
        assert_eq!(h.status, "ok", "{h:?}");
        assert_eq!(h.failing_for_s, Some(59));
        assert_eq!(h.last_failure_reason, Some("unauthorized"));
        m.failing_since.set(now.0 - 60);
        assert_eq!(m.health(now).status, "degraded");

        // Recovered, but far behind: still degraded until the backlog drains.
        m.consecutive_failures.set(0);
        m.last_success.set(now.0 - 2);
        m.backlog.set(DEGRADED_BACKLOG_POINTS);
        let h = m.health(now);
        assert_eq!(
            (h.status, h.failing_for_s, h.last_success_age_s),
            ("degraded", None, Some(2))
        );
        m.backlog.set(DEGRADED_BACKLOG_POINTS - 1);
        assert_eq!(m.health(now).status, "ok");
    }

    fn row(id: i64, quantity: &str, kind: Option<&str>) -> queue::Queued {
        queue::Queued {
            id,
            post: "p-1".into(),
            quantity: quantity.into(),
            at_s: 1000 + id,
            value: 1.5,
            flags: 0,
            kind: kind.map(String::from),
            district: Some("Медеуский район".into()),
            river: Some("Малая Алматинка".into()),
        }
    }

    #[test]
    fn a_batch_is_one_line_per_reading_covering_every_row() {
        let rows = [
            row(7, "pm10", Some("air")),
            row(8, "water_level", Some("river")),
            row(9, "no_such_quantity", Some("air")),
            row(10, "rssi", None),
        ];
        let (bytes, ids, points) = body(&rows);
        assert_eq!((ids, points), (vec![7, 8, 9, 10], 3));
        let text = String::from_utf8(bytes).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines,
            [
                "air,district=Медеуский\\ район,kind=air,post=p-1,quantity=pm10 flags=0i,value=1.5 1007",
                "water,kind=river,post=p-1,quantity=water_level,river=Малая\\ Алматинка flags=0i,value=1.5 1008",
                "device,district=Медеуский\\ район,kind=unregistered,post=p-1,quantity=rssi flags=0i,value=1.5 1010",
            ]
        );
        assert_eq!(body(&[]), (Vec::new(), Vec::new(), 0));
    }

    #[test]
    fn a_url_with_a_path_is_refused_and_the_token_stays_out_of_debug() {
        let cfg: InfluxConfig = toml::from_str(
            "url = \"https://metrics.example/\"\norg = \"Алматы акимат\"\nbucket = \"taza\"\ntoken = \"secret-token\"\n",
        )
        .unwrap();
        let c = InfluxClient::new(&cfg).unwrap();
        let debug = format!("{c:?}");
        assert!(debug.contains("Алматы акимат"), "{debug}");
        assert!(!debug.contains("secret-token"), "{debug}");
        let mut prefixed = cfg.clone();
        prefixed.url = "https://metrics.example/influx/".into();
        assert!(
            matches!(InfluxClient::new(&prefixed), Err(SinkError::Http(e)) if e.contains("no path"))
        );
    }

    #[test]
    fn the_token_file_is_read_and_trimmed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "  abc123\n").unwrap();
        let mut cfg: InfluxConfig =
            toml::from_str("url = \"http://127.0.0.1:1\"\norg = \"o\"\nbucket = \"b\"\n").unwrap();
        cfg.token_file = Some(path.clone());
        assert_eq!(read_token(&cfg).unwrap().expose(), "abc123");
        assert!(InfluxClient::new(&cfg).is_ok());
        std::fs::write(&path, "\n").unwrap();
        assert!(matches!(
            InfluxClient::new(&cfg),
            Err(SinkError::EmptyToken(_))
        ));
        cfg.token_file = Some(dir.path().join("missing"));
        assert!(matches!(
            InfluxClient::new(&cfg),
            Err(SinkError::TokenFile { .. })
        ));
    }

    #[tokio::test]
    async fn an_error_body_that_breaks_off_is_retried_and_said_so() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut conn, _) = listener.accept().await.unwrap();
            let mut buf = vec![0u8; 4096];
            let _ = conn.read(&mut buf).await.unwrap();
            // Promises 100 bytes of body, sends 5, hangs up.
            conn.write_all(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 100\r\n\r\nshort")
                .await
                .unwrap();
        });
        let cfg: InfluxConfig = toml::from_str(&format!(
            "url = \"http://{addr}\"\norg = \"o\"\nbucket = \"b\"\ntoken = \"t\"\n"
        ))
        .unwrap();
        let outcome = InfluxClient::new(&cfg)
            .unwrap()
            .write(b"m v=1 1".to_vec())
            .await;
        server.await.unwrap();
        // The crate reads the body before it reports the status, so the 503 itself is lost:
        // still retried, and said to be a broken body rather than logged as empty.
        let WriteOutcome::Retry(FailureKind::Unreachable, what) = outcome else {
            panic!("a broken answer is retried");
        };
        assert!(what.contains("body"), "{what}");
        assert!(!what.contains("127.0.0.1"), "no URL in {what}");
    }
}
