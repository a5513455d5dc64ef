//! Keeps the running gateway's in-memory [`Registry`] in step with the store: loaded at start,
//! swapped whole when the registry's version moves (a change through the API, or
//! `gateway posts ...` run beside the gateway).

use std::sync::Arc;
use std::time::Duration;

use taza_domain::registry::Registry;
use taza_store::{ReadPool, StoreError};
use tokio_util::sync::CancellationToken;

/// How often a running gateway looks for registry changes made outside it (the CLI).
pub const REFRESH_INTERVAL: Duration = Duration::from_secs(2);

/// The registry as the store holds it.
pub fn load(
    conn: &rusqlite::Connection,
    default_cadence: Duration,
    allow_unregistered: bool,
) -> Result<Registry, StoreError> {
    let registry = Registry::new(&[], default_cadence, allow_unregistered);
    registry.replace(taza_store::registry::snapshot(conn)?);
    Ok(registry)
}

/// Re-reads the store if its registry changed since `registry` was loaded; returns whether it did.
pub fn reload_if_changed(
    registry: &Registry,
    conn: &rusqlite::Connection,
) -> Result<bool, StoreError> {
    if taza_store::registry::version(conn)? == registry.version() {
        return Ok(false);
    }
    registry.replace(taza_store::registry::snapshot(conn)?);
    Ok(true)
}

/// Keeps `registry` in step with the store until `shutdown`.
pub fn spawn(
    registry: Registry,
    pool: Arc<ReadPool>,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(REFRESH_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tick.tick() => {}
            }
            let r = registry.clone();
            match pool.run(move |conn| reload_if_changed(&r, conn)).await {
                Ok(true) => tracing::info!("post registry reloaded"),
                Ok(false) => {}
                Err(e) => tracing::warn!(error = %e, "cannot reload the post registry"),
            }
        }
    })
}
