//! Alerts for on-call staff. Owns: the rules ([`rules`]), their evaluation ([`engine`], pure),
//! the alert lifecycle in SQLite ([`lifecycle`]), who is paged ([`route`]), and delivery
//! through the durable outbox ([`outbox`], [`deliver`], [`channels`]).
//!
//! Reads committed readings from the store writer (a bounded channel, blocking when full: an
//! alert must never be skipped because the evaluator was busy) and a clock tick; writes the
//! `alerts`, `alert_events` and `outbox` tables and wakes the delivery worker.

pub mod channels;
pub mod deliver;
pub mod engine;
pub mod lifecycle;
pub use taza_store::outbox;
pub mod route;
pub mod rules;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use protocol::{PostId, Quantity};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use taza_domain::calendar::{self, LocalDay};
use taza_domain::pipeline::Committed;
use taza_domain::registry::Registry;
use taza_store::admin::AdminWriter;
use taza_store::StoreError;

/// Capacity of store writer -> alert evaluator. Full policy: block (see the module doc).
pub const ALERT_CHANNEL_CAPACITY: usize = 1024;

/// `[alert]` settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AlertConfig {
    /// The department's rules file (replaces the shipped rules whole).
    pub rules_file: Option<PathBuf>,
    /// Readings older than this when committed (backfill, store-and-forward replay) update
    /// scores but never page anyone.
    #[serde(with = "humantime_serde")]
    pub max_reading_age: Duration,
    /// How often silence, `for` durations, escalation and day ends are checked.
    #[serde(with = "humantime_serde")]
    pub evaluate_every: Duration,
    /// Dashboard address used in links inside messages.
    pub public_url: String,
    /// Who is paged, and escalation.
    pub oncall: route::OnCallConfig,
    /// Delivery channels.
    pub channels: channels::ChannelsConfig,
}

impl Default for AlertConfig {
    fn default() -> Self {
        Self {
            rules_file: None,
            max_reading_age: Duration::from_secs(30 * 60),
            evaluate_every: Duration::from_secs(15),
            public_url: "http://127.0.0.1:8080".into(),
            oncall: route::OnCallConfig::default(),
            channels: channels::ChannelsConfig::default(),
        }
    }
}

/// Why alerting could not start or act.
#[derive(Debug, thiserror::Error)]
pub enum AlertError {
    /// Bad rules.
    #[error(transparent)]
    Rules(#[from] rules::RulesError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What the API shares with the alert task.
pub struct Shared {
    /// Rules in force.
    pub rules: Vec<rules::Rule>,
    /// Rota.
    pub oncall: route::OnCallConfig,
    /// Link base.
    pub public_url: String,
    /// Registry (names for messages).
    pub registry: Registry,
    /// Wakes the delivery worker after notifications were queued.
    pub wake: mpsc::Sender<()>,
    /// Channels `[alert.channels]` configures (for `/healthz`).
    pub channels: Vec<outbox::Channel>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("alert::Shared")
            .field("rules", &self.rules.len())
            .finish_non_exhaustive()
    }
}

impl Shared {
    /// Runs `f` with a lifecycle context.
    pub fn with_context<T>(&self, f: impl FnOnce(&lifecycle::Context<'_>) -> T) -> T {
        let posts = self.registry.all();
        let ctx = lifecycle::Context {
            rules: &self.rules,
            posts: &posts,
            oncall: &self.oncall,
            public_url: &self.public_url,
        };
        f(&ctx)
    }

    /// Nudges the delivery worker (a full channel means it is already awake).
    pub fn wake_delivery(&self) {
        let _ = self.wake.try_send(());
    }
}

/// The started alert stages.
pub struct Running {
    /// What the API needs.
    pub shared: Arc<Shared>,
    /// The evaluator task.
    pub evaluator: JoinHandle<()>,
    /// The delivery worker.
    pub deliverer: JoinHandle<()>,
}

/// Starts the evaluator and the delivery worker.
pub fn spawn(
    cfg: AlertConfig,
    db: &Path,
    registry: Registry,
    default_cadence: Duration,
    metrics: deliver::DeliveryMetrics,
    mut input: mpsc::Receiver<Arc<Committed>>,
    shutdown: CancellationToken,
) -> Result<Running, AlertError> {
    let rules = rules::load(cfg.rules_file.as_deref())?;
    let conn = AdminWriter::open(db)?;
    let (wake_tx, wake_rx) = mpsc::channel(1);
    let shared = Arc::new(Shared {
        rules: rules.clone(),
        oncall: cfg.oncall.clone(),
        public_url: cfg.public_url.clone(),
        registry: registry.clone(),
        wake: wake_tx,
        channels: outbox::Channel::ALL
            .into_iter()
            .filter(|c| match c {
                outbox::Channel::Webhook => !cfg.channels.webhooks.is_empty(),
                outbox::Channel::Telegram => cfg.channels.telegram.is_some(),
                outbox::Channel::Email => cfg.channels.email.is_some(),
            })
            .collect(),
    });
    let deliverer = deliver::spawn(
        cfg.channels.clone(),
        db.to_path_buf(),
        metrics,
        wake_rx,
        shutdown.clone(),
    );
    if cfg.oncall.contacts.is_empty() {
        tracing::warn!(
            "no on-call contacts configured: alerts are recorded and shown, but nobody is paged"
        );
    }
    let now = calendar::now();
    let mut engine = engine::Engine::new(
        rules,
        &registry.all(),
        default_cadence,
        cfg.max_reading_age,
        now,
    );
    let task_shared = Arc::clone(&shared);
    let evaluator = tokio::spawn(async move {
        let shared = task_shared;
        match conn.run(|tx| Ok(lifecycle::open_keys(tx)?)).await {
            Ok(open) => {
                for (rule, post) in &open {
                    engine.restore_open(rule, post);
                }
            }
            Err(e) => tracing::error!(error = %e, "cannot read open alerts; they may fire again"),
        }
        let daily_quantities: Vec<Quantity> = engine
            .rules()
            .iter()
            .filter(|r| matches!(r.condition, rules::Condition::DailyMeanAbove { .. }))
            .filter_map(|r| r.quantity)
            .collect();
        let mut today = LocalDay::containing(now).date;
        let mut tick = tokio::time::interval(cfg.evaluate_every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let now = calendar::now();
            // A tick also runs escalation, in the same transaction as its transitions.
            let (transitions, escalate) = tokio::select! {
                _ = shutdown.cancelled() => break,
                batch = input.recv() => match batch {
                    Some(c) => (engine.on_readings(&c.post, &c.readings, now), false),
                    None => break,
                },
                _ = tick.tick() => {
                    if let Ok(open) = conn.run(|tx| Ok(lifecycle::open_keys(tx)?)).await {
                        engine.sync_open(&open);
                    }
                    engine.set_posts(&shared.registry.all());
                    let mut t = engine.on_tick(now);
                    let day = LocalDay::containing(now).date;
                    if day != today && !daily_quantities.is_empty() {
                        let finished = LocalDay::containing(now.offset(-86_400)).label();
                        let qs = daily_quantities.clone();
                        match conn.run(move |tx| daily_means(tx, &finished, &qs)).await {
                            Ok(means) => t.extend(engine.on_daily_means(&means, now)),
                            Err(e) => tracing::error!(error = %e, "cannot read yesterday's daily means"),
                        }
                    }
                    today = day;
                    (t, true)
                }
            };
            if transitions.is_empty() && !escalate {
                continue;
            }
            let s = Arc::clone(&shared);
            let result = conn
                .run(move |tx| {
                    let queued = s.with_context(|ctx| -> rusqlite::Result<usize> {
                        let mut n = lifecycle::apply(tx, ctx, &transitions, now)?;
                        if escalate {
                            n += lifecycle::escalate(tx, ctx, now)?;
                        }
                        Ok(n)
                    })?;
                    Ok(queued)
                })
                .await;
            match result {
                Ok(0) => {}
                Ok(_) => shared.wake_delivery(),
                Err(e) => tracing::error!(error = %e, "recording alert transitions failed"),
            }
        }
        tracing::debug!("alert evaluator stopped");
    });
    Ok(Running {
        shared,
        evaluator,
        deliverer,
    })
}

/// Means of local day `day` per (post, quantity) from the daily rollups, for days with at least
/// 75 % coverage (the daily-alert counterpart of the 18-valid-hours rule).
fn daily_means(
    tx: &rusqlite::Transaction<'_>,
    day: &str,
    quantities: &[Quantity],
) -> Result<Vec<(PostId, Quantity, f64)>, StoreError> {
    let mut out = Vec::new();
    let mut stmt = tx.prepare_cached(
        "SELECT post, weighted_sum / covered_s FROM rollup_day
         WHERE day = ?1 AND quantity = ?2 AND covered_s >= 0.75 * (end_at - start)",
    )?;
    for q in quantities {
        let rows = stmt.query_map(rusqlite::params![day, q.as_str()], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, f64>(1)?))
        })?;
        for row in rows {
            let (post, mean) = row?;
            if let Ok(p) = PostId::parse(&post) {
                out.push((p, *q, mean));
            }
        }
    }
    Ok(out)
}
