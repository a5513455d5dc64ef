//! Alerts for on-call staff. Owns: the rules ([`rules`]), their evaluation ([`engine`], pure),
//! the alert lifecycle in the store ([`lifecycle`]), who is paged ([`route`]), and delivery
//! through the durable outbox ([`outbox`], [`deliver`], [`channels`]).
//!
//! Only the leader evaluates and delivers ([`Leader`]: always on SQLite; the holder of the
//! PostgreSQL lease among replicas). Its input ([`Input`]): on SQLite the store writer's bounded
//! channel (blocking when full: an alert must never be skipped because the evaluator was busy);
//! on PostgreSQL the commit log of every replica's writer, read from a cursor in `store_meta`
//! that advances in the transaction recording what the entries caused, plus a clock tick.
//! Writes the `alerts`, `alert_events` and `outbox` tables and wakes the delivery worker.
//!
//! A new PostgreSQL leader rebuilds the evaluator as its predecessor had it: it replays the
//! log's last [`engine::MAX_WINDOW_S`] up to the cursor without acting (windows, `for` timers,
//! when each post was last heard), then takes the open alerts from the store and goes on from
//! the cursor. Re-reading an entry cannot page twice: an open alert is unique per (rule, post)
//! in the store and each notification's idempotency key is unique in the outbox. Any store
//! failure while leading rebuilds it the same way, so memory never runs ahead of the store.

pub mod channels;
pub mod deliver;
pub mod engine;
pub mod lifecycle;
pub use taza_store::outbox;
pub mod route;
pub mod rules;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use protocol::{Quantity, UnixSeconds};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use taza_domain::calendar::{self, LocalDay};
use taza_domain::pipeline::Committed;
use taza_domain::registry::Registry;
use taza_score::config::ScoreConfig;
use taza_score::{Norms, NormsError};
use taza_store::alerts;
use taza_store::pg::lease;
pub use taza_store::pg::lease::Leader;
use taza_store::{Store, StoreError};

/// Capacity of store writer -> alert evaluator. Full policy: block (see the module doc).
pub const ALERT_CHANNEL_CAPACITY: usize = 1024;
/// Share of a local day the daily rollup must cover (time-weighted) before its mean may fire a
/// `daily_mean_above` rule. NOTE: not the scorecard's rule (≥ 18 valid hours of 24,
/// `data_capture.toml` `day_min_valid_hours`, mean of the valid hourly means).
const DAILY_MIN_COVERAGE: f64 = 0.75;
/// How often the PostgreSQL leader looks at the commit log (when the last look found less than
/// a full batch).
const LOG_POLL: Duration = Duration::from_millis(250);
/// Commit-log entries read per look.
const LOG_BATCH: i64 = 1000;
/// Wait before rebuilding the evaluator after the store failed.
const STORE_RETRY: Duration = Duration::from_secs(2);

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
    /// Another replica took the leader lease; this one must not write as leader.
    #[error("this replica no longer leads")]
    NotLeader,
}

/// Where the evaluator reads committed readings.
#[derive(Debug)]
pub enum Input {
    /// SQLite: the store writer's bounded channel, in this process.
    Writer(mpsc::Receiver<Arc<Committed>>),
    /// PostgreSQL: the commit log every replica's writer appends to (the writers then get no
    /// alert channel).
    CommitLog,
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

/// Starts the evaluator and the delivery worker; both work while `leader` leads. Rule
/// thresholds that name norms are resolved against the norms `score` configures (shipped
/// files, `norms_dir`, `limit_set`), once, here.
#[allow(clippy::too_many_arguments)]
pub fn spawn(
    cfg: AlertConfig,
    score: &ScoreConfig,
    store: Store,
    leader: Leader,
    registry: Registry,
    default_cadence: Duration,
    metrics: deliver::DeliveryMetrics,
    input: Input,
    shutdown: CancellationToken,
) -> Result<Running, AlertError> {
    let norms = Norms::load_configured(score)?;
    let rules = rules::load(cfg.rules_file.as_deref(), &norms)?;
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
        store.clone(),
        leader.clone(),
        metrics.clone(),
        wake_rx,
        shutdown.clone(),
    );
    if cfg.oncall.contacts.is_empty() {
        tracing::warn!(
            "no on-call contacts configured: alerts are recorded and shown, but nobody is paged"
        );
    }
    let daily_quantities: Vec<Quantity> = rules
        .iter()
        .filter(|r| matches!(r.condition, rules::Condition::DailyMeanAbove { .. }))
        .filter_map(|r| r.quantity)
        .collect();
    let evaluator = Evaluator {
        rules,
        default_cadence,
        max_reading_age: cfg.max_reading_age,
        evaluate_every: cfg.evaluate_every,
        daily_quantities,
        store,
        shared: Arc::clone(&shared),
        metrics,
    };
    let evaluator = tokio::spawn(evaluator.run(leader, input, shutdown));
    Ok(Running {
        shared,
        evaluator,
        deliverer,
    })
}

/// The evaluator task: follows until this replica leads, then evaluates for the term.
struct Evaluator {
    rules: Vec<rules::Rule>,
    default_cadence: Duration,
    max_reading_age: Duration,
    evaluate_every: Duration,
    daily_quantities: Vec<Quantity>,
    store: Store,
    shared: Arc<Shared>,
    metrics: deliver::DeliveryMetrics,
}

/// What one turn of the evaluator's loop saw.
enum Event {
    Readings(Arc<Committed>),
    Poll,
    Tick,
    Stop(Ended),
}

/// Why a term of evaluation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ended {
    /// The gateway stops.
    Shutdown,
    /// The writer's channel closed (SQLite): the writer stopped.
    InputClosed,
    /// Another replica leads.
    Lost,
    /// The store failed (PostgreSQL): rebuild from it.
    StoreFailed,
}

/// The writer channel's next batch; never, for the commit log.
async fn from_writer(input: &mut Input) -> Option<Arc<Committed>> {
    match input {
        Input::Writer(rx) => rx.recv().await,
        Input::CommitLog => std::future::pending().await,
    }
}

impl Evaluator {
    async fn run(self, mut leader: Leader, mut input: Input, shutdown: CancellationToken) {
        loop {
            let term = tokio::select! {
                () = shutdown.cancelled() => break,
                term = leader.acquired() => match term {
                    Some(t) => t,
                    None => break,
                },
            };
            self.metrics.set_leader(true);
            tracing::info!(term, "alert evaluation runs on this replica");
            let ended = self.lead(term, &mut leader, &mut input, &shutdown).await;
            self.metrics.set_leader(false);
            match ended {
                Ended::Shutdown | Ended::InputClosed => break,
                Ended::Lost => {
                    tracing::info!(term, "alert evaluation stopped here: no longer the leader")
                }
                // Rebuilt from the store on the next turn, after a pause.
                Ended::StoreFailed => tokio::select! {
                    () = shutdown.cancelled() => break,
                    () = tokio::time::sleep(STORE_RETRY) => {}
                },
            }
        }
        tracing::debug!("alert evaluator stopped");
    }

    /// Evaluates for `term` until it ends, the input closes, shutdown, or (PostgreSQL) the
    /// store fails.
    async fn lead(
        &self,
        term: i64,
        leader: &mut Leader,
        input: &mut Input,
        shutdown: &CancellationToken,
    ) -> Ended {
        let from_log = matches!(input, Input::CommitLog);
        let now = calendar::now();
        let mut engine = engine::Engine::new(
            self.rules.clone(),
            &self.shared.registry.all(),
            self.default_cadence,
            self.max_reading_age,
            now,
        );
        let mut cursor = None;
        if from_log {
            match self.replay(&mut engine).await {
                Ok(c) => cursor = Some(c),
                Err(e) => {
                    tracing::error!(error = %e, "cannot resume alert evaluation from the commit log");
                    return Ended::StoreFailed;
                }
            }
        }
        match self.store.read(lifecycle::open_keys).await {
            Ok(open) => engine.sync_open(&open),
            Err(e) if from_log => {
                tracing::error!(error = %e, "cannot read open alerts");
                return Ended::StoreFailed;
            }
            Err(e) => tracing::error!(error = %e, "cannot read open alerts; they may fire again"),
        }
        let mut today = LocalDay::containing(now).date;
        let mut tick = tokio::time::interval(self.evaluate_every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // A deadline, not a fresh sleep per pass: the evaluation tick (often shorter than the
        // log poll) would otherwise restart the wait every time and the log was never read.
        let mut next_poll = tokio::time::Instant::now();
        loop {
            let event = tokio::select! {
                () = shutdown.cancelled() => Event::Stop(Ended::Shutdown),
                () = leader.lost(term) => Event::Stop(Ended::Lost),
                batch = from_writer(input) => {
                    batch.map_or(Event::Stop(Ended::InputClosed), Event::Readings)
                }
                () = tokio::time::sleep_until(next_poll), if from_log => Event::Poll,
                _ = tick.tick() => Event::Tick,
            };
            let now = calendar::now();
            // A tick also runs escalation, in the same transaction as its transitions.
            let mut escalate = false;
            let mut advance = None;
            let mut trim = None;
            let transitions = match event {
                Event::Stop(why) => return why,
                Event::Readings(c) => engine.on_readings(&c.post, &c.readings, now),
                Event::Poll => {
                    let after = cursor.unwrap_or(0);
                    let batch = self
                        .store
                        .read(move |db| alerts::log_tail(db, after, LOG_BATCH))
                        .await;
                    let batch = match batch {
                        Ok(b) => b,
                        Err(e) => {
                            tracing::error!(error = %e, "cannot read the commit log");
                            return Ended::StoreFailed;
                        }
                    };
                    next_poll = tokio::time::Instant::now()
                        + if batch.len() as i64 >= LOG_BATCH {
                            Duration::ZERO
                        } else {
                            LOG_POLL
                        };
                    advance = batch.last().map(|(seq, _)| *seq);
                    batch
                        .iter()
                        .flat_map(|(_, c)| engine.on_readings(&c.post, &c.readings, now))
                        .collect()
                }
                Event::Tick => {
                    if let Ok(open) = self.store.read(lifecycle::open_keys).await {
                        engine.sync_open(&open);
                    }
                    engine.set_posts(&self.shared.registry.all());
                    let mut t = engine.on_tick(now);
                    let day = LocalDay::containing(now).date;
                    if day != today && !self.daily_quantities.is_empty() {
                        let finished = LocalDay::containing(now.offset(-86_400)).label();
                        let qs = self.daily_quantities.clone();
                        let read = self.store.read(move |db| {
                            alerts::covered_daily_means(db, &finished, &qs, DAILY_MIN_COVERAGE)
                        });
                        match read.await {
                            Ok(means) => t.extend(engine.on_daily_means(&means, now)),
                            Err(e) => {
                                tracing::error!(error = %e, "cannot read yesterday's daily means")
                            }
                        }
                    }
                    today = day;
                    escalate = true;
                    // The log behind the cursor, older than a new leader replays.
                    trim = cursor.map(|c| (c, now.offset(-engine::MAX_WINDOW_S)));
                    t
                }
            };
            if transitions.is_empty() && !escalate && advance.is_none() {
                continue;
            }
            let s = Arc::clone(&self.shared);
            let result = self
                .store
                .write(move |db| -> Result<usize, AlertError> {
                    if !lease::still_leader(db, term)? {
                        return Err(AlertError::NotLeader);
                    }
                    let queued = s.with_context(|ctx| -> Result<usize, StoreError> {
                        let mut n = lifecycle::apply(db, ctx, &transitions, now)?;
                        if escalate {
                            n += lifecycle::escalate(db, ctx, now)?;
                        }
                        Ok(n)
                    })?;
                    if let Some(seq) = advance {
                        alerts::set_log_cursor(db, seq)?;
                    }
                    if let Some((upto, before)) = trim {
                        alerts::trim_log(db, upto, before)?;
                    }
                    Ok(queued)
                })
                .await;
            match result {
                Ok(queued) => {
                    if advance.is_some() {
                        cursor = advance;
                    }
                    if queued > 0 {
                        self.shared.wake_delivery();
                    }
                }
                Err(AlertError::NotLeader) => {
                    tracing::warn!(
                        term,
                        "alert transitions not recorded: another replica leads"
                    );
                    return Ended::Lost;
                }
                // On SQLite the engine goes on (as it always has); on PostgreSQL it is rebuilt
                // from the store, so it does not believe in transitions that were not saved.
                Err(e) if from_log => {
                    tracing::error!(error = %e, "recording alert transitions failed");
                    return Ended::StoreFailed;
                }
                Err(e) => tracing::error!(error = %e, "recording alert transitions failed"),
            }
        }
    }

    /// Replays the commit log's recent past up to the cursor into `engine` without acting on
    /// it, at the times the entries were received; returns the cursor (0 before any leader).
    async fn replay(&self, engine: &mut engine::Engine) -> Result<i64, StoreError> {
        let cursor = self.store.read(alerts::log_cursor).await?.unwrap_or(0);
        let since = UnixSeconds(calendar::now().0 - engine::MAX_WINDOW_S);
        let mut after = 0;
        let mut replayed = 0usize;
        loop {
            let batch = self
                .store
                .read(move |db| alerts::log_history(db, after, cursor, since, LOG_BATCH))
                .await?;
            for (_, received_at, c) in &batch {
                // What these caused is in the store already.
                let _ = engine.on_readings(&c.post, &c.readings, *received_at);
            }
            replayed += batch.len();
            match batch.last() {
                Some((seq, _, _)) if batch.len() as i64 >= LOG_BATCH => after = *seq,
                _ => break,
            }
        }
        tracing::info!(
            cursor,
            replayed,
            "alert evaluation resumes from the commit log"
        );
        Ok(cursor)
    }
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
