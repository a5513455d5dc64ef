//! Ingest's telemetry (the MQTT client, decoding and the embedded broker's guard): each event is
//! a struct whose `emit` writes the log line and bumps its counter together, so logs and
//! `/metrics` never disagree. Labels come from bounded sets (reasons), never from payloads,
//! topics or error text. [`IngestMetrics::register`] adds the series to the registry the gateway
//! builds at wiring time.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
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

/// Ingest's series. Cheap to clone (handles are `Arc`s inside).
#[derive(Debug, Clone, Default)]
pub struct IngestMetrics {
    messages_received: Counter,
    payloads_rejected: Family<ReasonLabel, Counter>,
    mqtt_connected: Gauge,
    mqtt_reconnects: Counter,
    broker_refused: Family<ReasonLabel, Counter>,
    last_warn_second: Arc<AtomicI64>,
    suppressed_warnings: Arc<AtomicU64>,
}

impl IngestMetrics {
    /// Adds every series to `r` (prefix `taza_`), rejection reasons too, so absent reasons read
    /// 0, not missing.
    pub fn register(&self, r: &mut Registry) {
        r.register(
            "ingest_messages_received",
            "MQTT messages received on post topics",
            self.messages_received.clone(),
        );
        r.register(
            "ingest_payloads_rejected",
            "Messages refused, by reason",
            self.payloads_rejected.clone(),
        );
        r.register(
            "mqtt_connected",
            "1 while the ingest client is connected",
            self.mqtt_connected.clone(),
        );
        r.register(
            "mqtt_reconnects",
            "Reconnections of the ingest client",
            self.mqtt_reconnects.clone(),
        );
        for reason in BrokerRefused::REASONS {
            self.broker_refused
                .get_or_create(&ReasonLabel { reason })
                .get();
        }
        r.register(
            "broker_refused",
            "Embedded broker: connections closed for bad credentials or topics outside a post's own",
            self.broker_refused.clone(),
        );
        for reason in DecodeError::ALL
            .map(RejectReason::Decode)
            .into_iter()
            .chain([RejectReason::UnknownPost])
        {
            let _series = self.payloads_rejected.get_or_create(&ReasonLabel {
                reason: reason.as_label(),
            });
        }
    }

    /// Whether the ingest client is connected.
    pub fn mqtt_connected(&self) -> bool {
        self.mqtt_connected.get() > 0
    }

    /// Logs at warn at most once a second, counting what it held back, so a flood of bad
    /// payloads cannot flood the log.
    fn warn_limited(&self, emit: impl FnOnce(u64)) {
        let now = taza_domain::calendar::now().0;
        let last = self.last_warn_second.swap(now, Ordering::Relaxed);
        if last != now {
            emit(self.suppressed_warnings.swap(0, Ordering::Relaxed));
        } else {
            self.suppressed_warnings.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// A message arrived on a post topic.
pub struct MessageReceived;

impl MessageReceived {
    /// Count it.
    pub fn emit(self, m: &IngestMetrics) {
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
    pub fn emit(self, m: &IngestMetrics) {
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
    pub fn emit(self, m: &IngestMetrics) {
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
    pub fn emit(self, m: &IngestMetrics) {
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
