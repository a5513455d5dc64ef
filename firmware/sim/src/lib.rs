//! Taza post simulator: the firmware core (`taza-firmware-core`) running on the host as a fleet
//! of posts at real Almaty locations, with simulated sensors behind the same embedded-hal /
//! embedded-io traits (real PMS frames, SHT3x CRC words, ADS1115 counts) and a real MQTT
//! connection per post.
//!
//! Threads: [`run`] is an async fn for the caller's tokio runtime (rumqttc event loops and the
//! backfill live there). The posts run on one embassy `platform-std` executor on its own
//! thread, one embassy task per post; inside it the post's sensor loops, sampler and uplink are
//! joined futures (one timer-queue entry per post). Time is virtual (see [`clock`]): `rate`
//! simulated seconds per real second. The embassy executor cannot live inside tokio (its
//! `run` never returns and blocks its thread), hence the bridge.
//!
//! Reads and writes the MQTT topics of `protocol::topic`: telemetry (QoS 1), status (retained
//! birth message, last will `offline`), config (subscribed).
//!
//! [`single`] runs one post at real time from a provisioning device config blob, with forced
//! sensor faults and clock skew, for commissioning.

pub mod backfill;
pub mod clock;
pub mod devices;
pub mod fleet;
pub mod model;
pub mod mqtt;
mod post;
pub mod single;

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration as StdDuration, SystemTime, UNIX_EPOCH};

use anyhow::anyhow;
use embassy_sync::blocking_mutex::raw::CriticalSectionRawMutex;
use embassy_sync::signal::Signal;
use protocol::post_config::PostConfig;
use protocol::{PostId, UnixSeconds};
use taza_firmware_core::Clock;

pub use fleet::{Fleet, LowEmissionZone, PostDescriptor, PostKind};
pub use model::Model;

/// Most posts one [`run`] drives (the embassy task pool size).
pub const MAX_POSTS: usize = 64;

/// A behaviour preset: where the clock starts and which events happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Scenario {
    /// Starts now (with `rate` > 1: 30 days ago, so readings never run ahead of the gateway's
    /// clock for a month of simulated time).
    #[default]
    Live,
    /// Mid-January 2026: heating-season smog and night inversions.
    WinterInversion,
    /// Late May 2026: snow-melt floods on all rivers.
    SpringFlood,
    /// 20 July 2026, noon: a mudflow-like surge on Киши Алматы one hour after the start.
    Mudflow,
}

impl Scenario {
    /// Parses `live`, `winter`, `flood`, `mudflow`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "live" => Some(Self::Live),
            "winter" => Some(Self::WinterInversion),
            "flood" => Some(Self::SpringFlood),
            "mudflow" => Some(Self::Mudflow),
            _ => None,
        }
    }

    /// Start of simulated time.
    pub fn start(self, now: UnixSeconds, rate: f64) -> UnixSeconds {
        match self {
            Self::Live if rate > 1.0 => now.offset(-30 * 86_400),
            Self::Live => now,
            // 2026-01-12 00:00 Almaty (Monday).
            Self::WinterInversion => UnixSeconds(1_768_158_000),
            // 2026-05-20 00:00 Almaty.
            Self::SpringFlood => UnixSeconds(1_779_217_200),
            // 2026-07-20 12:00 Almaty.
            Self::Mudflow => UnixSeconds(1_784_530_800),
        }
    }

    fn mudflow(self, start: UnixSeconds) -> Option<UnixSeconds> {
        (self == Self::Mudflow).then(|| start.offset(3600))
    }
}

/// A post cut off the network from `from` to `to` (simulated time).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outage {
    /// The post.
    pub post: PostId,
    /// Start (inclusive).
    pub from: UnixSeconds,
    /// End (exclusive).
    pub to: UnixSeconds,
}

/// How the fleet runs.
#[derive(Debug, Clone)]
pub struct SimOptions {
    /// Simulated seconds per real second (1 = real time). One rate per process.
    pub rate: f64,
    /// Start of simulated time; `None` = the scenario's.
    pub start: Option<UnixSeconds>,
    /// Behaviour preset.
    pub scenario: Scenario,
    /// The config every post boots with (the gateway may replace it on the config topic).
    pub config: PostConfig,
    /// Days of hourly history to publish before the live run (0 = none).
    pub backfill_days: u32,
    /// Seeded random sensor faults and network outages.
    pub faults: bool,
    /// Explicit outages (tests, demos).
    pub outages: Vec<Outage>,
}

impl Default for SimOptions {
    fn default() -> Self {
        Self {
            rate: 1.0,
            start: None,
            scenario: Scenario::Live,
            config: PostConfig::default(),
            backfill_days: 0,
            faults: true,
            outages: Vec::new(),
        }
    }
}

/// What one post did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostReport {
    /// The post.
    pub id: PostId,
    /// Averaging windows queued.
    pub windows: u32,
    /// Packs acknowledged by the broker.
    pub published: u32,
    /// Reconnects after the first connection.
    pub reconnects: u32,
    /// Packs dropped by a full queue.
    pub dropped: u32,
    /// Failed sensor polls.
    pub sensor_errors: u32,
    /// Successful sensor polls.
    pub sensor_polls: u32,
}

/// What the fleet did.
#[derive(Debug, Clone, Default)]
pub struct SimReport {
    /// Backfill packs published.
    pub backfill_packs: usize,
    /// One entry per post that reported before the shutdown deadline.
    pub posts: Vec<PostReport>,
}

fn unix_now() -> UnixSeconds {
    UnixSeconds(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64),
    )
}

/// Runs `fleet` against the broker at `broker_host:broker_port` under topic `prefix` until
/// `shutdown` completes. Call it from a tokio runtime (multi-thread). Backfill (if asked) is
/// published first, then the posts start on their embassy thread.
pub async fn run(
    fleet: Fleet,
    broker_host: &str,
    broker_port: u16,
    prefix: &str,
    options: SimOptions,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<SimReport> {
    options
        .config
        .validate()
        .map_err(|e| anyhow!("invalid post config: {e:?}"))?;
    if fleet.posts().len() > MAX_POSTS {
        return Err(anyhow!(
            "at most {MAX_POSTS} posts, got {}",
            fleet.posts().len()
        ));
    }
    clock::start(options.rate).map_err(|e| anyhow!(e))?;
    let rt = tokio::runtime::Handle::current();
    let start = options
        .start
        .unwrap_or_else(|| options.scenario.start(unix_now(), options.rate));
    let model = Arc::new(Model::new(
        fleet.seed,
        fleet.lez,
        options.scenario.mudflow(start),
        options.faults,
    ));
    let mut report = SimReport::default();
    if options.backfill_days > 0 {
        report.backfill_packs = backfill::publish(
            fleet.posts(),
            &model,
            broker_host,
            broker_port,
            prefix,
            start,
            options.backfill_days,
        )
        .await?;
        log::info!("backfill: {} packs published", report.backfill_packs);
    }
    // Unix time = start at this instant of the (shared, virtual) embassy clock.
    let since_boot = embassy_time::Instant::now().as_secs() as i64;
    let clock = Clock::new(UnixSeconds(start.0 - since_boot));
    let (done_tx, mut done_rx) = tokio::sync::mpsc::channel(MAX_POSTS);
    let mut stops = Vec::new();
    let mut contexts = Vec::new();
    for p in fleet.posts() {
        let stop: &'static Signal<CriticalSectionRawMutex, ()> = Box::leak(Box::new(Signal::new()));
        stops.push(stop);
        let outages: Vec<Outage> = options
            .outages
            .iter()
            .filter(|o| o.post == p.id)
            .cloned()
            .collect();
        let post = Arc::new(p.clone());
        let link_model = model.clone();
        let link_post = post.clone();
        let link_up: mqtt::LinkPlan = Arc::new(move |t: UnixSeconds| {
            !outages.iter().any(|o| (o.from..o.to).contains(&t))
                && !link_model.random_outage(&link_post, t)
        });
        contexts.push(post::PostContext {
            installed: post.quantities,
            faults: Vec::new(),
            credentials: None,
            vitals: devices::SimVitals::new(&post),
            post,
            model: model.clone(),
            clock,
            config: options.config.clone(),
            prefix: prefix.to_owned(),
            host: broker_host.to_owned(),
            port: broker_port,
            rt: rt.clone(),
            link_up,
            stop,
            done: done_tx.clone(),
        });
    }
    drop(done_tx);
    let n = contexts.len();
    post::spawn_executor(contexts, rt)?;
    shutdown.await;
    for s in &stops {
        s.signal(());
    }
    let deadline = tokio::time::Instant::now() + StdDuration::from_secs(10);
    while report.posts.len() < n {
        match tokio::time::timeout_at(deadline, done_rx.recv()).await {
            Ok(Some(r)) => report.posts.push(r),
            Ok(None) | Err(_) => break,
        }
    }
    Ok(report)
}
