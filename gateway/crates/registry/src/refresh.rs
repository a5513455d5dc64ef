//! Keeps the running gateway's in-memory [`Registry`] in step with the store: loaded at start,
//! swapped whole when the registry's version moves (a change through this gateway's API, the
//! API of another replica sharing the PostgreSQL store, or `gateway posts ...` run beside it).

use std::time::Duration;

use taza_domain::registry::Registry;
use taza_store::{Db, Store, StoreError};
use tokio_util::sync::CancellationToken;

/// How often a running gateway looks for registry changes made outside it (another replica,
/// the CLI). Each look is one index lookup (`max(id)` of the audit trail); the registry is
/// read only when that moved. A post added on one replica is admitted by every other within
/// this interval plus one reload.
pub const REFRESH_INTERVAL: Duration = Duration::from_secs(1);

/// The registry as the store holds it.
pub async fn load(
    store: &Store,
    default_cadence: Duration,
    allow_unregistered: bool,
) -> Result<Registry, StoreError> {
    store
        .read(move |db| load_from(db, default_cadence, allow_unregistered))
        .await
}

/// [`load`] on a connection the caller holds (tests, benches).
pub fn load_from(
    db: &Db<'_>,
    default_cadence: Duration,
    allow_unregistered: bool,
) -> Result<Registry, StoreError> {
    let registry = Registry::new(&[], default_cadence, allow_unregistered);
    registry.replace(taza_store::registry::snapshot(db)?);
    Ok(registry)
}

/// Re-reads the store if its registry changed since `registry` was loaded; returns whether it did.
pub fn reload_if_changed(registry: &Registry, db: &Db<'_>) -> Result<bool, StoreError> {
    if taza_store::registry::version(db)? == registry.version() {
        return Ok(false);
    }
    registry.replace(taza_store::registry::snapshot(db)?);
    Ok(true)
}

/// Keeps `registry` in step with the store until `shutdown`.
pub fn spawn(
    registry: Registry,
    store: Store,
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
            match store.read(move |db| reload_if_changed(&r, db)).await {
                Ok(true) => tracing::info!("post registry reloaded"),
                Ok(false) => {}
                Err(e) => tracing::warn!(error = %e, "cannot reload the post registry"),
            }
        }
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use protocol::PostId;
    use taza_domain::post::{PostEntry, PostKind};
    use taza_domain::registry::Admission;

    use crate::testing::{postgres_at, sqlite};

    const MIN: Duration = Duration::from_secs(60);

    async fn a_change_in_the_store_reaches_a_running_copy_within_two_seconds(
        writer: &Store,
        reader: &Store,
    ) {
        let registry = load(reader, MIN, false).await.unwrap();
        let stop = CancellationToken::new();
        let task = spawn(registry.clone(), reader.clone(), stop.clone());
        let id = PostId::parse("alm-air-500").unwrap();
        assert_eq!(registry.admit(&id), Admission::Refused);
        let mut e = PostEntry::new(id.clone(), PostKind::Air, "x", 43.2, 76.9);
        e.sensors = vec![protocol::Quantity::Pm2_5];
        writer
            .write(move |db| crate::manage::add(db, &e, "other", MIN))
            .await
            .unwrap();
        let added = tokio::time::Instant::now();
        while registry.admit(&id) != Admission::Registered {
            assert!(
                added.elapsed() < Duration::from_secs(2),
                "not admitted 2 s after the change"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        stop.cancel();
        task.await.unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_change_by_the_cli_reaches_the_running_gateway_within_two_seconds_on_sqlite() {
        let dir = tempfile::tempdir().unwrap();
        // The CLI's store and the gateway's: two handles on one file.
        let (cli, gateway) = (sqlite(dir.path()), sqlite(dir.path()));
        a_change_in_the_store_reaches_a_running_copy_within_two_seconds(&cli, &gateway).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_change_on_one_replica_reaches_another_within_two_seconds_on_postgres() {
        let Some(url) = taza_store::pg::test_server::database("refresh::other_replica") else {
            return;
        };
        let (a, b) = (postgres_at(&url).await, postgres_at(&url).await);
        a_change_in_the_store_reaches_a_running_copy_within_two_seconds(&a, &b).await;
    }
}
