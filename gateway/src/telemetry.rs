//! The gateway's own telemetry: each event is a struct whose `emit` writes the log line and
//! bumps its counter together, so logs and `/metrics` never disagree. Labels come from bounded
//! sets (reasons, stages), never from payloads, topics or error text.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use protocol::{DecodeError, PostId};

/// Why ingest refused a message: a wire-level [`DecodeError`] or a gateway-level reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectReason {
    /// The payload or topic did not decode.
    Decode(DecodeError),
    /// The post is not in the registry.
    UnknownPost,
}

impl RejectReason {
    /// Metric label.
    pub fn as_label(self) -> &'static str {
        match self {
            Self::Decode(e) => e.as_label(),
            Self::UnknownPost => "unknown_post",
        }
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

/// Every metric the gateway exports. Cheap to clone (all handles are `Arc`s inside).
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    messages_received: Counter,
    readings_stored: Counter,
    readings_duplicate: Counter,
    statuses_stored: Counter,
    payloads_rejected: Family<ReasonLabel, Counter>,
    commit_duration: Histogram,
    commit_failures: Counter,
    publish_to_commit: Histogram,
    mqtt_connected: Gauge,
    mqtt_reconnects: Counter,
    sse_lagged: Counter,
    broker_refused: Family<ReasonLabel, Counter>,
    delivery: crate::alert::deliver::DeliveryMetrics,
    sink: crate::sink::SinkMetrics,
    last_warn_second: Arc<AtomicI64>,
    suppressed_warnings: Arc<AtomicU64>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every series (rejection reasons too, so absent reasons read 0, not missing).
    pub fn new() -> Self {
        let mut r = Registry::with_prefix("taza");
        let m = Self {
            registry: Arc::new(Registry::default()),
            messages_received: Counter::default(),
            readings_stored: Counter::default(),
            readings_duplicate: Counter::default(),
            statuses_stored: Counter::default(),
            payloads_rejected: Family::default(),
            commit_duration: Histogram::new(exponential_buckets(0.000_25, 2.0, 14)),
            commit_failures: Counter::default(),
            publish_to_commit: Histogram::new(exponential_buckets(0.000_5, 2.0, 14)),
            mqtt_connected: Gauge::default(),
            mqtt_reconnects: Counter::default(),
            sse_lagged: Counter::default(),
            broker_refused: Family::default(),
            delivery: crate::alert::deliver::DeliveryMetrics::new(),
            sink: crate::sink::SinkMetrics::new(),
            last_warn_second: Arc::new(AtomicI64::new(0)),
            suppressed_warnings: Arc::new(AtomicU64::new(0)),
        };
        r.register(
            "ingest_messages_received",
            "MQTT messages received on post topics",
            m.messages_received.clone(),
        );
        r.register(
            "store_readings_stored",
            "Readings committed to the store (new)",
            m.readings_stored.clone(),
        );
        r.register(
            "store_readings_duplicate",
            "Readings absorbed as replays of stored ones (same post, quantity, time)",
            m.readings_duplicate.clone(),
        );
        r.register(
            "store_statuses_stored",
            "Post status messages stored",
            m.statuses_stored.clone(),
        );
        r.register(
            "ingest_payloads_rejected",
            "Messages refused, by reason",
            m.payloads_rejected.clone(),
        );
        r.register(
            "store_commit_duration_seconds",
            "Duration of one group commit",
            m.commit_duration.clone(),
        );
        r.register(
            "store_commit_failures",
            "Group commits that failed and were retried",
            m.commit_failures.clone(),
        );
        r.register(
            "ingest_receive_to_commit_seconds",
            "Time from receiving a message to its commit",
            m.publish_to_commit.clone(),
        );
        r.register(
            "mqtt_connected",
            "1 while the ingest client is connected",
            m.mqtt_connected.clone(),
        );
        r.register(
            "mqtt_reconnects",
            "Reconnections of the ingest client",
            m.mqtt_reconnects.clone(),
        );
        r.register(
            "api_live_lagged",
            "Live-feed events dropped for slow SSE clients",
            m.sse_lagged.clone(),
        );
        for reason in BrokerRefused::REASONS {
            m.broker_refused
                .get_or_create(&ReasonLabel { reason })
                .get();
        }
        r.register(
            "broker_refused",
            "Embedded broker: connections closed for bad credentials or topics outside a post's own",
            m.broker_refused.clone(),
        );
        m.delivery.register(&mut r);
        m.sink.register(&mut r);
        for reason in DecodeError::ALL
            .map(RejectReason::Decode)
            .into_iter()
            .chain([RejectReason::UnknownPost])
        {
            let _series = m.payloads_rejected.get_or_create(&ReasonLabel {
                reason: reason.as_label(),
            });
        }
        Self {
            registry: Arc::new(r),
            ..m
        }
    }

    /// Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// Logs at warn at most once a second, counting what it held back, so a flood of bad
    /// payloads cannot flood the log.
    fn warn_limited(&self, emit: impl FnOnce(u64)) {
        let now = crate::calendar::now().0;
        let last = self.last_warn_second.swap(now, Ordering::Relaxed);
        if last != now {
            emit(self.suppressed_warnings.swap(0, Ordering::Relaxed));
        } else {
            self.suppressed_warnings.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Alert delivery counters.
    pub fn delivery(&self) -> &crate::alert::deliver::DeliveryMetrics {
        &self.delivery
    }

    /// InfluxDB sink health.
    pub fn sink(&self) -> &crate::sink::SinkMetrics {
        &self.sink
    }

    /// Whether the ingest client is connected.
    pub fn mqtt_connected(&self) -> bool {
        self.mqtt_connected.get() > 0
    }
}

/// A message arrived on a post topic.
pub struct MessageReceived;

impl MessageReceived {
    /// Count it.
    pub fn emit(self, m: &Metrics) {
        m.messages_received.inc();
    }
}

/// A message was refused.
pub struct PayloadRejected<'a> {
    /// Why.
    pub reason: RejectReason,
    /// The topic's post, when the topic named one.
    pub post: Option<&'a PostId>,
}

impl PayloadRejected<'_> {
    /// Count and log it (rate-limited).
    pub fn emit(self, m: &Metrics) {
        m.payloads_rejected
            .get_or_create(&ReasonLabel {
                reason: self.reason.as_label(),
            })
            .inc();
        let post = self.post.map(PostId::as_str).unwrap_or("-");
        m.warn_limited(|suppressed| {
            tracing::warn!(
                reason = self.reason.as_label(),
                post,
                suppressed,
                "payload rejected"
            );
        });
    }
}

/// A group commit finished.
pub struct ReadingsCommitted {
    /// New readings.
    pub stored: u64,
    /// Replays absorbed.
    pub duplicates: u64,
    /// Status messages.
    pub statuses: u64,
    /// How long the commit took.
    pub duration: Duration,
}

impl ReadingsCommitted {
    /// Count it.
    pub fn emit(self, m: &Metrics) {
        m.readings_stored.inc_by(self.stored);
        m.readings_duplicate.inc_by(self.duplicates);
        m.statuses_stored.inc_by(self.statuses);
        m.commit_duration.observe(self.duration.as_secs_f64());
        tracing::trace!(
            stored = self.stored,
            duplicates = self.duplicates,
            "group commit"
        );
    }
}

/// Receive-to-commit latency of one message.
pub struct MessageCommitted {
    /// Time since the message was received.
    pub latency: Duration,
}

impl MessageCommitted {
    /// Record it.
    pub fn emit(self, m: &Metrics) {
        m.publish_to_commit.observe(self.latency.as_secs_f64());
    }
}

/// A group commit failed; it will be retried and nothing is acknowledged meanwhile.
pub struct CommitFailed<'a> {
    /// The store error.
    pub error: &'a dyn std::fmt::Display,
    /// Wait before the retry.
    pub retry_in: Duration,
}

impl CommitFailed<'_> {
    /// Count and log it.
    pub fn emit(self, m: &Metrics) {
        m.commit_failures.inc();
        tracing::error!(error = %self.error, retry_in = ?self.retry_in, "group commit failed; retrying");
    }
}

/// The ingest client connected (or lost its connection).
pub struct MqttConnection {
    /// Connected now.
    pub connected: bool,
    /// Whether the broker kept our session.
    pub session_present: bool,
    /// The gateway is stopping: a lost connection is expected, not news.
    pub stopping: bool,
}

impl MqttConnection {
    /// Update the gauge and log the change.
    pub fn emit(self, m: &Metrics) {
        let was = m.mqtt_connected.set(i64::from(self.connected));
        if self.connected {
            if was == 0 {
                m.mqtt_reconnects.inc();
            }
            tracing::info!(
                session_present = self.session_present,
                "connected to broker"
            );
        } else if was != 0 && !self.stopping {
            tracing::warn!("lost connection to broker; reconnecting with backoff");
        }
    }
}

/// An SSE client lagged and missed events.
pub struct LiveLagged {
    /// Events it missed.
    pub missed: u64,
}

impl LiveLagged {
    /// Count it.
    pub fn emit(self, m: &Metrics) {
        m.sse_lagged.inc_by(self.missed);
    }
}

/// The embedded broker's front door closed a connection (see `broker::guard`).
pub struct BrokerRefused<'a> {
    /// One of [`BrokerRefused::REASONS`].
    pub reason: &'static str,
    /// Who connected.
    pub peer: std::net::SocketAddr,
    /// The user name it gave, if any.
    pub username: Option<&'a str>,
    /// What it tried (a topic or filter), for the log only.
    pub detail: &'a str,
}

impl BrokerRefused<'_> {
    /// Every reason label.
    pub const REASONS: [&'static str; 7] = [
        "no_credentials",
        "bad_credentials",
        "not_in_service",
        "client_id_mismatch",
        "foreign_topic",
        "foreign_filter",
        "malformed",
    ];

    /// Logs and counts.
    pub fn emit(self, m: &Metrics) {
        m.broker_refused
            .get_or_create(&ReasonLabel {
                reason: self.reason,
            })
            .inc();
        tracing::warn!(
            reason = self.reason,
            peer = %self.peer,
            username = self.username.unwrap_or("-"),
            detail = self.detail,
            "embedded broker refused a client"
        );
    }
}
