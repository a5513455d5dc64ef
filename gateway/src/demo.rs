//! `--demo`: the simulated Almaty fleet (`taza-sim`: the post firmware core on the host) runs
//! beside the gateway, against its broker, so a fresh install shows a living city: a year of
//! hourly history first (for annual scores), then live readings every minute.
//!
//! Reads the fleet's descriptors into the registry; writes nothing itself (the fleet publishes
//! over MQTT like real posts).

use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use taza_domain::post::{PostEntry, PostKind};

/// Demo settings.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Seed of the deterministic fleet.
    pub seed: u64,
    /// Days of hourly history to publish first.
    pub backfill_days: u32,
}

/// The demo fleet.
pub fn fleet(options: &DemoOptions) -> taza_sim::Fleet {
    taza_sim::Fleet::default_almaty(options.seed)
}

/// Registry entries for the fleet's posts, reporting every `cadence`.
pub fn registry_entries(fleet: &taza_sim::Fleet, cadence: Duration) -> Vec<PostEntry> {
    fleet
        .posts()
        .iter()
        .map(|p| PostEntry {
            district: Some(p.district.to_string()),
            river: p.river.map(str::to_string),
            sensors: p.quantities.to_vec(),
            cadence: Some(cadence),
            critical_level: p
                .critical_level_cm
                .map(|level_cm| taza_score::CriticalLevel {
                    level_cm,
                    seasons: Vec::new(),
                    source: "simulated gauge (taza-sim fleet)".into(),
                }),
            ..PostEntry::new(
                p.id.clone(),
                match p.kind {
                    taza_sim::PostKind::Air => PostKind::Air,
                    taza_sim::PostKind::River => PostKind::River,
                },
                p.name,
                p.lat,
                p.lon,
            )
        })
        .collect()
}

/// Runs the fleet against the broker at `host:port` until `shutdown`.
pub fn spawn(
    fleet: taza_sim::Fleet,
    options: DemoOptions,
    host: String,
    port: u16,
    prefix: String,
    shutdown: CancellationToken,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let sim = taza_sim::SimOptions {
            backfill_days: options.backfill_days,
            ..taza_sim::SimOptions::default()
        };
        tracing::info!(
            posts = fleet.posts().len(),
            backfill_days = options.backfill_days,
            "demo fleet starting (history first, then live)"
        );
        match taza_sim::run(fleet, &host, port, &prefix, sim, shutdown.cancelled_owned()).await {
            Ok(report) => tracing::info!(
                backfill_packs = report.backfill_packs,
                posts = report.posts.len(),
                "demo fleet stopped"
            ),
            Err(e) => tracing::error!(error = %e, "demo fleet failed"),
        }
    })
}

/// The reporting interval the fleet's posts use (their averaging window).
pub fn cadence() -> Duration {
    Duration::from_secs(u64::from(
        protocol::post_config::PostConfig::default().window_s,
    ))
}
