//! The store's telemetry: each event is a struct whose `emit` writes the log line and bumps its
//! counter together, so logs and `/metrics` never disagree. [`StoreMetrics::register`] adds the
//! series to the registry the gateway builds at wiring time.

use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// The store writer's series. Cheap to clone (handles are `Arc`s inside).
#[derive(Debug, Clone)]
pub struct StoreMetrics {
    readings_stored: Counter,
    readings_duplicate: Counter,
    statuses_stored: Counter,
    commit_duration: Histogram,
    commit_failures: Counter,
    publish_to_commit: Histogram,
}

impl Default for StoreMetrics {
    fn default() -> Self {
        Self {
            readings_stored: Counter::default(),
            readings_duplicate: Counter::default(),
            statuses_stored: Counter::default(),
            commit_duration: Histogram::new(exponential_buckets(0.000_25, 2.0, 14)),
            commit_failures: Counter::default(),
            publish_to_commit: Histogram::new(exponential_buckets(0.000_5, 2.0, 14)),
        }
    }
}

impl StoreMetrics {
    /// Adds every series to `r` (prefix `taza_`).
    pub fn register(&self, r: &mut Registry) {
        r.register(
            "store_readings_stored",
            "Readings committed to the store (new)",
            self.readings_stored.clone(),
        );
        r.register(
            "store_readings_duplicate",
            "Readings absorbed as replays of stored ones (same post, quantity, time)",
            self.readings_duplicate.clone(),
        );
        r.register(
            "store_statuses_stored",
            "Post status messages stored",
            self.statuses_stored.clone(),
        );
        r.register(
            "store_commit_duration_seconds",
            "Duration of one group commit",
            self.commit_duration.clone(),
        );
        r.register(
            "store_commit_failures",
            "Group commits that failed and were retried",
            self.commit_failures.clone(),
        );
        r.register(
            "ingest_receive_to_commit_seconds",
            "Time from receiving a message to its commit",
            self.publish_to_commit.clone(),
        );
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
    pub fn emit(self, m: &StoreMetrics) {
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
    pub fn emit(self, m: &StoreMetrics) {
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
    pub fn emit(self, m: &StoreMetrics) {
        m.commit_failures.inc();
        tracing::error!(error = %self.error, retry_in = ?self.retry_in, "group commit failed; retrying");
    }
}
