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

use protocol::Quantity;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use taza_domain::calendar::{self, LocalDay};
use taza_domain::pipeline::Committed;
use taza_domain::registry::Registry;
use taza_score::config::ScoreConfig;
use taza_score::{Norms, NormsError};
use taza_store::admin::AdminWriter;
use taza_store::alerts;
use taza_store::StoreError;

/// Capacity of store writer -> alert evaluator. Full policy: block (see the module doc).
pub const ALERT_CHANNEL_CAPACITY: usize = 1024;
/// Share of a local day the daily rollup must cover (time-weighted) before its mean may fire a
/// `daily_mean_above` rule. NOTE: not the scorecard's rule (≥ 18 valid hours of 24,
/// `data_capture.toml` `day_min_valid_hours`, mean of the valid hourly means).
const DAILY_MIN_COVERAGE: f64 = 0.75;

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
    /// Bad rules (an unknown norm name among them, with its rule id).
    #[error(transparent)]
    Rules(#[from] rules::RulesError),
    /// The norms the rules' thresholds name could not be loaded.
    #[error("norms for alert thresholds: {0}")]
    Norms(#[from] NormsError),
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

/// Starts the evaluator and the delivery worker. Rule thresholds that name norms are resolved
/// against the norms `score` configures (shipped files, `norms_dir`, `limit_set`), once, here.
#[allow(clippy::too_many_arguments)]
pub fn spawn(
    cfg: AlertConfig,
    score: &ScoreConfig,
    db: &Path,
    registry: Registry,
    default_cadence: Duration,
    metrics: deliver::DeliveryMetrics,
    mut input: mpsc::Receiver<Arc<Committed>>,
    shutdown: CancellationToken,
) -> Result<Running, AlertError> {
    let norms = Norms::load_configured(score)?;
    let rules = rules::load(cfg.rules_file.as_deref(), &norms)?;
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
                        let read = conn.run(move |tx| {
                            let coverage = DAILY_MIN_COVERAGE;
                            Ok(alerts::covered_daily_means(tx, &finished, &qs, coverage)?)
                        });
                        match read.await {
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

#[cfg(test)]
mod tests {
    /// Non-test source of this crate, file by file (everything before a `#[cfg(test)]`).
    fn sources(dir: &std::path::Path, out: &mut Vec<(String, String)>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                sources(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs")
                && path.file_name().is_some_and(|n| n != "tests.rs")
            {
                let text = std::fs::read_to_string(&path).unwrap();
                let code = text.split("#[cfg(test)]").next().unwrap_or("").to_string();
                out.push((path.display().to_string(), code));
            }
        }
    }

    #[test]
    fn no_sql_text_outside_the_store_crate() {
        let mut files = Vec::new();
        sources(
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
            &mut files,
        );
        assert!(files.len() > 5, "{files:?}");
        for (path, code) in files {
            for sql in ["SELECT ", "INSERT INTO", "UPDATE ", "DELETE FROM"] {
                assert!(
                    !code.contains(sql),
                    "{path} holds SQL ({sql:?}): move it to taza-store"
                );
            }
        }
    }
}
