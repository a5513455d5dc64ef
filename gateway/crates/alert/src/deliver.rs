//! The delivery worker: drains the `outbox` table through the channels, on the leader only
//! ([`Leader`]: always on SQLite; the holder of the lease among PostgreSQL replicas).
//!
//! It works through the [`Store`]'s short transactions on the blocking pool, and loops: claim
//! due `pending` rows oldest first (the claim counts the attempt and sets a lease in one commit,
//! before anything is sent), send up to [`MAX_IN_FLIGHT`] at once, each bounded by
//! [`super::channels::ATTEMPT_TIMEOUT`], then record `delivered`, a retry at [`backoff`] (or the
//! receiver's own `retry_after`, whichever is later), or `dead` after a permanent refusal or
//! `max_attempts`. Between rounds it sleeps until the earliest due row, a `wake` message (sent
//! by the alert lifecycle after each enqueue commit) or shutdown.
//!
//! At least once: a crash after a send and before its record leaves the row leased. When the
//! worker starts leading it ends such leases ([`outbox::release_stale_leases`]): at once on
//! SQLite (one process per database), after [`TAKEOVER_GRACE`] on PostgreSQL (the predecessor
//! may still be finishing an attempt it began), and sends those rows again, with the same
//! idempotency key. Claims check the leader term in their transaction, so a replica that lost
//! the lease claims nothing more. On shutdown, or when the lease is lost, it claims nothing new
//! and lets in-flight attempts finish and be recorded.
//!
//! Telemetry: [`DeliveryMetrics`] (`taza_alert_delivery_*`, and `taza_leader`), registered by
//! the caller.

use std::sync::Arc;
use std::time::Duration;

use futures_util::stream::{FuturesUnordered, StreamExt};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::channels::{
    ChannelsConfig, FailureKind, RetryConfig, SendError, Senders, ATTEMPT_TIMEOUT,
};
use taza_store::outbox::{self, Channel, Claimed, Settle};
use taza_store::pg::lease::{self, Leader};
use taza_store::{Backend, Store, StoreError};

/// Attempts in flight at once: enough that one slow receiver does not hold up the rest, few
/// enough that a burst of alerts does not open dozens of connections to one relay.
pub const MAX_IN_FLIGHT: usize = 4;
/// How long a claimed row stays leased: longer than any attempt, so a live worker never sees its
/// own in-flight row as due.
const LEASE: Duration = Duration::from_secs(60);
/// Longest sleep between looks at the table: rows enqueued by a writer that does not send a
/// `wake` are still picked up.
const IDLE_POLL: Duration = Duration::from_secs(30);
/// The same on PostgreSQL, shorter: a person's resolution through another replica's API
/// queues notifications here without a `wake` (there is none across processes).
const IDLE_POLL_SHARED: Duration = Duration::from_secs(2);
/// Wait before trying the database again after it failed.
const DB_RETRY: Duration = Duration::from_secs(5);
/// On PostgreSQL, how long a new leader leaves its predecessor's in-flight attempts before it
/// repeats them: the predecessor notices its loss within [`lease::STEP_DOWN_WITHIN`], an
/// attempt ends within [`ATTEMPT_TIMEOUT`], and its record takes a moment more.
pub const TAKEOVER_GRACE: Duration = Duration::from_secs(16);
const _: () = assert!(
    TAKEOVER_GRACE.as_secs() > lease::STEP_DOWN_WITHIN.as_secs() + ATTEMPT_TIMEOUT.as_secs()
);
/// Share of a backoff step taken off at random, so notifications that failed together spread.
const JITTER_FRACTION: f64 = 0.2;

/// The wait before retry number `retry` (0 = the first retry): `initial * 2^retry` capped at
/// `max`, less `jitter_unit * 20 %` (`jitter_unit` in `[0, 1)`, random in the worker).
pub fn backoff(cfg: &RetryConfig, retry: u32, jitter_unit: f64) -> Duration {
    let factor = 2u32.checked_pow(retry).unwrap_or(u32::MAX);
    let step = cfg
        .initial
        .checked_mul(factor)
        .unwrap_or(cfg.max)
        .min(cfg.max);
    let jitter = jitter_unit.clamp(0.0, 1.0) * JITTER_FRACTION;
    step.mul_f64(1.0 - jitter)
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ChannelLabel {
    channel: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FailureLabel {
    channel: &'static str,
    reason: &'static str,
}

/// Delivery counters. Cheap to clone; register once with [`DeliveryMetrics::register`].
#[derive(Debug, Clone)]
pub struct DeliveryMetrics {
    attempts: Family<ChannelLabel, Counter>,
    delivered: Family<ChannelLabel, Counter>,
    failures: Family<FailureLabel, Counter>,
    dead: Family<FailureLabel, Counter>,
    /// 1 while this replica leads (evaluates alerts, drains the outbox and the sink queue).
    leader: Gauge,
    /// Bumped after every recorded outcome, so health checks and tests can wait for progress
    /// instead of sleeping.
    settled: Arc<watch::Sender<u64>>,
}

impl Default for DeliveryMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl DeliveryMetrics {
    /// Counters with a zero series for every channel and failure reason.
    pub fn new() -> Self {
        let m = Self {
            attempts: Family::default(),
            delivered: Family::default(),
            failures: Family::default(),
            dead: Family::default(),
            leader: Gauge::default(),
            settled: Arc::new(watch::channel(0).0),
        };
        for channel in Channel::ALL {
            let c = ChannelLabel {
                channel: channel.as_str(),
            };
            let _ = m.attempts.get_or_create(&c);
            let _ = m.delivered.get_or_create(&c);
            for reason in FailureKind::ALL {
                let f = FailureLabel {
                    channel: channel.as_str(),
                    reason: reason.as_label(),
                };
                let _ = m.failures.get_or_create(&f);
                let _ = m.dead.get_or_create(&f);
            }
        }
        m
    }

    /// Registers `alert_delivery_{attempts,delivered,failures,dead}_total` (under the
    /// registry's prefix, `taza_` in the gateway).
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "alert_delivery_attempts",
            "Notification send attempts, by channel",
            self.attempts.clone(),
        );
        registry.register(
            "alert_delivery_delivered",
            "Notifications a receiver accepted, by channel",
            self.delivered.clone(),
        );
        registry.register(
            "alert_delivery_failures",
            "Failed send attempts (retried or not), by channel and reason",
            self.failures.clone(),
        );
        registry.register(
            "alert_delivery_dead",
            "Notifications given up (dead letters), by channel and the last failure's reason",
            self.dead.clone(),
        );
        registry.register(
            "leader",
            "1 while this replica holds the leader lease: it evaluates alerts and drains the \
             outbox and the sink queue (always 1 on SQLite)",
            self.leader.clone(),
        );
    }

    /// Whether this replica leads (for `/healthz`).
    pub fn is_leader(&self) -> bool {
        self.leader.get() == 1
    }

    /// Records whether this replica leads (the alert evaluator follows the lease).
    pub fn set_leader(&self, leading: bool) {
        self.leader.set(i64::from(leading));
    }

    /// Attempts started on `channel`.
    pub fn attempts(&self, channel: Channel) -> u64 {
        self.attempts
            .get_or_create(&ChannelLabel {
                channel: channel.as_str(),
            })
            .get()
    }

    /// Notifications delivered on `channel`.
    pub fn delivered(&self, channel: Channel) -> u64 {
        self.delivered
            .get_or_create(&ChannelLabel {
                channel: channel.as_str(),
            })
            .get()
    }

    /// Failed attempts on `channel` for `reason`.
    pub fn failures(&self, channel: Channel, reason: FailureKind) -> u64 {
        self.failures
            .get_or_create(&FailureLabel {
                channel: channel.as_str(),
                reason: reason.as_label(),
            })
            .get()
    }

    /// Dead letters on `channel`, all reasons.
    pub fn dead(&self, channel: Channel) -> u64 {
        FailureKind::ALL
            .into_iter()
            .map(|reason| {
                self.dead
                    .get_or_create(&FailureLabel {
                        channel: channel.as_str(),
                        reason: reason.as_label(),
                    })
                    .get()
            })
            .sum()
    }

    /// Outcomes recorded so far; `changed()` on the receiver wakes after each one.
    pub fn settled(&self) -> watch::Receiver<u64> {
        self.settled.subscribe()
    }

    fn bump_settled(&self) {
        self.settled.send_modify(|n| *n += 1);
    }
}

/// An attempt began.
struct AttemptStarted {
    channel: Channel,
}

impl AttemptStarted {
    fn emit(self, m: &DeliveryMetrics) {
        m.attempts
            .get_or_create(&ChannelLabel {
                channel: self.channel.as_str(),
            })
            .inc();
    }
}

/// A receiver accepted a notification.
struct NotificationDelivered<'a> {
    c: &'a Claimed,
}

impl NotificationDelivered<'_> {
    fn emit(self, m: &DeliveryMetrics) {
        m.delivered
            .get_or_create(&ChannelLabel {
                channel: self.c.n.channel.as_str(),
            })
            .inc();
        // Row and alert ids only: recipients are personal data and keys contain them.
        tracing::info!(
            outbox_id = self.c.id,
            alert_id = self.c.n.alert_id,
            channel = self.c.n.channel.as_str(),
            attempts = self.c.attempts,
            "notification delivered"
        );
        m.bump_settled();
    }
}

/// An attempt failed; `retry_in` is None when the notification is now dead.
struct DeliveryFailed<'a> {
    c: &'a Claimed,
    error: &'a SendError,
    retry_in: Option<Duration>,
}

impl DeliveryFailed<'_> {
    fn emit(self, m: &DeliveryMetrics) {
        let label = FailureLabel {
            channel: self.c.n.channel.as_str(),
            reason: self.error.kind.as_label(),
        };
        m.failures.get_or_create(&label).inc();
        match self.retry_in {
            Some(retry_in) => tracing::warn!(
                outbox_id = self.c.id,
                alert_id = self.c.n.alert_id,
                channel = label.channel,
                reason = label.reason,
                attempts = self.c.attempts,
                ?retry_in,
                error = %self.error.detail,
                "notification attempt failed; will retry"
            ),
            None => {
                m.dead.get_or_create(&label).inc();
                tracing::error!(
                    outbox_id = self.c.id,
                    alert_id = self.c.n.alert_id,
                    channel = label.channel,
                    reason = label.reason,
                    attempts = self.c.attempts,
                    error = %self.error.detail,
                    "notification is dead (listed in the outbox as dead)"
                );
            }
        }
        m.bump_settled();
    }
}

/// Starts the worker on the current tokio runtime. It delivers while `leader` leads and stops
/// after `shutdown` once its in-flight attempts are recorded.
pub fn spawn(
    cfg: ChannelsConfig,
    store: Store,
    leader: Leader,
    metrics: DeliveryMetrics,
    wake: mpsc::Receiver<()>,
    shutdown: CancellationToken,
) -> JoinHandle<()> {
    tokio::spawn(run(cfg, store, leader, metrics, wake, shutdown))
}

async fn run(
    cfg: ChannelsConfig,
    store: Store,
    mut leader: Leader,
    metrics: DeliveryMetrics,
    mut wake: mpsc::Receiver<()>,
    shutdown: CancellationToken,
) {
    let senders = match Senders::new(&cfg) {
        Ok(s) => Arc::new(s),
        Err(e) => {
            // Nothing can be sent; rows stay pending in the outbox for a fixed config.
            tracing::error!(error = %e, "alert delivery cannot start");
            return;
        }
    };
    let (grace, idle_poll) = match store.backend() {
        Backend::Sqlite => (Duration::ZERO, IDLE_POLL),
        Backend::Postgres => (TAKEOVER_GRACE, IDLE_POLL_SHARED),
    };
    tracing::info!("alert delivery started");
    loop {
        let term = tokio::select! {
            () = shutdown.cancelled() => break,
            term = leader.acquired() => match term {
                Some(t) => t,
                None => break,
            },
        };
        if !release_leases(&store, grace, &mut leader, term, &shutdown).await {
            continue;
        }
        tracing::info!(term, "alert delivery drains the outbox");
        let job = Job {
            cfg: &cfg,
            store: &store,
            senders: &senders,
            metrics: &metrics,
            term,
            idle_poll,
        };
        job.deliver(&mut leader, &mut wake, &shutdown).await;
        if shutdown.is_cancelled() {
            break;
        }
        tracing::info!(
            term,
            "alert delivery stopped draining: no longer the leader"
        );
    }
    tracing::info!("alert delivery stopped");
}

/// Ends the leases a gone worker left ([`outbox::release_stale_leases`]), retrying while the
/// store fails. False when leadership or the process ended first.
async fn release_leases(
    store: &Store,
    grace: Duration,
    leader: &mut Leader,
    term: i64,
    shutdown: &CancellationToken,
) -> bool {
    loop {
        let grace_ms = duration_ms(grace);
        let released = store
            .write(move |db| outbox::release_stale_leases(db, now_ms(), grace_ms))
            .await;
        match released {
            Ok(0) => return true,
            Ok(n) => {
                tracing::info!(
                    leases = n,
                    ?grace,
                    "notifications left in flight by the previous worker will be sent again"
                );
                return true;
            }
            Err(e) => {
                tracing::error!(error = %e, "alert delivery cannot read the outbox; retrying")
            }
        }
        tokio::select! {
            () = shutdown.cancelled() => return false,
            () = leader.lost(term) => return false,
            () = tokio::time::sleep(DB_RETRY) => {}
        }
    }
}

/// One term of delivery.
struct Job<'a> {
    cfg: &'a ChannelsConfig,
    store: &'a Store,
    senders: &'a Arc<Senders>,
    metrics: &'a DeliveryMetrics,
    term: i64,
    /// Longest sleep between looks at the table.
    idle_poll: Duration,
}

impl Job<'_> {
    /// Delivers until shutdown or the end of the term, then lets in-flight attempts finish.
    async fn deliver(
        &self,
        leader: &mut Leader,
        wake: &mut mpsc::Receiver<()>,
        shutdown: &CancellationToken,
    ) {
        let mut in_flight = FuturesUnordered::new();
        let mut stopping = false;
        let mut wake_open = true;
        let term = self.term;
        loop {
            let mut next_due_ms = None;
            if !stopping {
                let free = MAX_IN_FLIGHT.saturating_sub(in_flight.len());
                let now_ms = now_ms();
                if free > 0 {
                    let lease_ms = duration_ms(LEASE);
                    let claim = self
                        .store
                        .write(move |db| {
                            // A replica that lost the lease claims nothing, even before it
                            // noticed.
                            if !lease::still_leader(db, term)? {
                                return Ok(None);
                            }
                            outbox::claim_due(db, now_ms, lease_ms, free).map(Some)
                        })
                        .await;
                    match claim {
                        Ok(Some(claimed)) => {
                            for c in claimed {
                                AttemptStarted {
                                    channel: c.n.channel,
                                }
                                .emit(self.metrics);
                                let senders = Arc::clone(self.senders);
                                in_flight.push(async move {
                                    let result = senders.send(&c.n).await;
                                    (c, result)
                                });
                            }
                        }
                        Ok(None) => {
                            tracing::warn!(term, "outbox claim refused: another replica leads");
                            stopping = true;
                        }
                        Err(e) => tracing::error!(error = %e, "claiming due notifications failed"),
                    }
                }
                if !stopping && in_flight.len() < MAX_IN_FLIGHT {
                    next_due_ms = self.store.read(outbox::next_due_ms).await.unwrap_or_else(
                        |e: StoreError| {
                            tracing::error!(error = %e, "reading the outbox failed");
                            Some(now_ms.saturating_add(duration_ms(DB_RETRY)))
                        },
                    );
                }
            }
            if stopping && in_flight.is_empty() {
                break;
            }
            // Sleep until the next due row (never longer than the idle poll); with every slot busy, a
            // finishing attempt is what wakes us.
            let sleep_for = match next_due_ms {
                Some(due) => Duration::from_millis(u64::try_from(due - now_ms()).unwrap_or(0)),
                None => self.idle_poll,
            }
            .min(self.idle_poll);
            let timer_armed = !stopping && in_flight.len() < MAX_IN_FLIGHT;
            tokio::select! {
                () = shutdown.cancelled(), if !stopping => {
                    stopping = true;
                }
                () = leader.lost(term), if !stopping => {
                    stopping = true;
                }
                Some((claimed, result)) = in_flight.next(), if !in_flight.is_empty() => {
                    record(self.store, &self.cfg.retry, self.metrics, claimed, result).await;
                }
                msg = wake.recv(), if wake_open && !stopping => {
                    if msg.is_none() {
                        wake_open = false;
                    }
                    // One look at the table serves every enqueue so far.
                    while wake.try_recv().is_ok() {}
                }
                () = tokio::time::sleep(sleep_for), if timer_armed => {}
            }
        }
    }
}

/// Records one attempt's outcome.
async fn record(
    store: &Store,
    retry: &RetryConfig,
    metrics: &DeliveryMetrics,
    c: Claimed,
    result: Result<(), SendError>,
) {
    let (settle, retry_in) = match &result {
        Ok(()) => (
            Settle::Delivered {
                at: taza_domain::calendar::now(),
            },
            None,
        ),
        Err(e) if e.retryable && c.attempts < retry.max_attempts => {
            let wait = backoff(retry, c.attempts.saturating_sub(1), fastrand::f64())
                // No Retry-After from the receiver: the backoff alone sets the wait.
                .max(e.retry_after.unwrap_or(Duration::ZERO));
            (
                Settle::Retry {
                    next_attempt_ms: now_ms().saturating_add(duration_ms(wait)),
                    error: e.to_string(),
                },
                Some(wait),
            )
        }
        Err(e) => (
            Settle::Dead {
                error: if e.retryable {
                    format!("gave up after {} attempts: {e}", c.attempts)
                } else {
                    e.to_string()
                },
            },
            None,
        ),
    };
    let id = c.id;
    // A failed record is not retried here: the row keeps its lease and is sent again when the
    // lease runs out (a repeat, which the idempotency key absorbs, rather than a loss).
    let settled = store.write(move |db| outbox::settle(db, id, &settle)).await;
    if let Err(e) = settled {
        tracing::error!(outbox_id = id, error = %e, "recording a delivery outcome failed");
    }
    match &result {
        Ok(()) => NotificationDelivered { c: &c }.emit(metrics),
        Err(error) => DeliveryFailed {
            c: &c,
            error,
            retry_in,
        }
        .emit(metrics),
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn duration_ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> RetryConfig {
        RetryConfig {
            initial: Duration::from_secs(2),
            max: Duration::from_secs(600),
            max_attempts: 12,
        }
    }

    #[test]
    fn backoff_doubles_from_initial_and_caps_at_max() {
        let c = cfg();
        let waits: Vec<u64> = (0..11).map(|n| backoff(&c, n, 0.0).as_secs()).collect();
        assert_eq!(waits, [2, 4, 8, 16, 32, 64, 128, 256, 512, 600, 600]);
    }

    #[test]
    fn backoff_survives_huge_retry_numbers() {
        assert_eq!(backoff(&cfg(), 40, 0.0), Duration::from_secs(600));
        assert_eq!(backoff(&cfg(), u32::MAX, 0.0), Duration::from_secs(600));
    }

    #[test]
    fn jitter_takes_at_most_a_fifth_off() {
        let c = cfg();
        assert_eq!(backoff(&c, 2, 0.5), Duration::from_secs_f64(8.0 * 0.9));
        assert_eq!(backoff(&c, 2, 1.0), Duration::from_secs_f64(8.0 * 0.8));
        // Out-of-range jitter is clamped, never a negative or longer wait.
        assert_eq!(backoff(&c, 2, 7.0), Duration::from_secs_f64(8.0 * 0.8));
        assert_eq!(backoff(&c, 2, -1.0), Duration::from_secs(8));
    }

    #[test]
    fn default_schedule_gives_up_after_about_forty_minutes() {
        let c = RetryConfig::default();
        let total: Duration = (0..c.max_attempts - 1).map(|n| backoff(&c, n, 0.0)).sum();
        assert!(
            total > Duration::from_secs(30 * 60) && total < Duration::from_secs(50 * 60),
            "{total:?}"
        );
    }
}
