//! The single store writer: takes [`Inbound`] messages from ingest in arrival order, commits
//! them in groups (one transaction for everything waiting, up to [`MAX_GROUP`]), then hands
//! their [`AckToken`]s to the acker in the same order and the new readings to the live feed.
//!
//! A failed commit is retried with backoff and nothing is acknowledged meanwhile (the channel
//! fills and ingest stops reading: backpressure up to the broker). At shutdown the writer drains
//! what ingest already sent, commits it, and only then lets go of the ack channel.

use std::sync::Arc;
use std::time::{Duration, Instant};

use protocol::PostId;
use rusqlite::{params, Connection};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::rollup::Rollups;
use crate::metrics::{CommitFailed, MessageCommitted, ReadingsCommitted, StoreMetrics};
use taza_domain::calendar;
use taza_domain::pipeline::{AckToken, Committed, Inbound, LiveSender, Payload};
use taza_domain::registry::Registry;

/// Most messages in one transaction: bounds commit latency under a flood.
pub const MAX_GROUP: usize = 2048;
/// Longest wait between retries of a failing commit.
const MAX_RETRY_BACKOFF: Duration = Duration::from_secs(5);
/// How often raw readings past their retention are pruned.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

/// What the writer needs besides its connection and channels.
pub struct WriterContext {
    /// Cadences for expected counts, and which posts are registered.
    pub registry: Registry,
    /// Metrics.
    pub metrics: StoreMetrics,
    /// Raw readings older than this are pruned (rollups stay).
    pub raw_retention: Option<Duration>,
    /// Cancelled when the gateway stops: failing commits then give up instead of retrying.
    pub shutdown: CancellationToken,
    /// New readings for the alert evaluator (blocking when full: none may be skipped).
    pub alerts: Option<mpsc::Sender<Arc<Committed>>>,
    /// Queue new readings for the long-term store (`sink_queue`); false when no sink is
    /// configured, so such installations write nothing extra.
    pub sink_enabled: bool,
}

/// Starts the writer thread. It ends when `input` is closed and drained.
pub fn spawn(
    conn: Connection,
    ctx: WriterContext,
    input: mpsc::Receiver<Inbound>,
    acks: mpsc::Sender<AckToken>,
    live: LiveSender,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("taza-store-writer".into())
        .spawn(move || run(conn, ctx, input, acks, live))
}

fn run(
    mut conn: Connection,
    ctx: WriterContext,
    mut input: mpsc::Receiver<Inbound>,
    acks: mpsc::Sender<AckToken>,
    live: LiveSender,
) {
    let mut last_prune = Instant::now();
    while let Some(first) = input.blocking_recv() {
        let mut group = Vec::with_capacity(64);
        group.push(first);
        while group.len() < MAX_GROUP {
            match input.try_recv() {
                Ok(next) => group.push(next),
                Err(_) => break,
            }
        }
        let Some(committed) = commit_with_retry(&mut conn, &ctx, &group) else {
            // Shutting down with a store that refuses writes: acknowledge nothing; the broker
            // redelivers these to the next session.
            break;
        };
        for inbound in group {
            MessageCommitted {
                latency: inbound.received.elapsed(),
            }
            .emit(&ctx.metrics);
            if acks.blocking_send(inbound.ack).is_err() {
                tracing::warn!(
                    "acker gone; remaining acknowledgements dropped (broker will redeliver)"
                );
                break;
            }
        }
        for c in committed {
            let c = Arc::new(c);
            if let Some(alerts) = &ctx.alerts {
                if alerts.blocking_send(Arc::clone(&c)).is_err() {
                    tracing::warn!(
                        "alert evaluator stopped; readings are stored but no longer evaluated"
                    );
                }
            }
            // No receivers is fine: nobody is watching live.
            let _ = live.send(c);
        }
        if let Some(retention) = ctx.raw_retention {
            if last_prune.elapsed() >= PRUNE_EVERY {
                last_prune = Instant::now();
                if let Err(e) = prune(&conn, retention) {
                    tracing::error!(error = %e, "pruning raw readings failed");
                }
            }
        }
    }
    tracing::debug!("store writer drained and stopped");
}

fn commit_with_retry(
    conn: &mut Connection,
    ctx: &WriterContext,
    group: &[Inbound],
) -> Option<Vec<Committed>> {
    let mut backoff = Duration::from_millis(50);
    loop {
        let started = Instant::now();
        match commit(conn, &ctx.registry, ctx.sink_enabled, group) {
            Ok((committed, stats)) => {
                ReadingsCommitted {
                    duration: started.elapsed(),
                    ..stats
                }
                .emit(&ctx.metrics);
                return Some(committed);
            }
            Err(e) => {
                CommitFailed {
                    error: &e,
                    retry_in: backoff,
                }
                .emit(&ctx.metrics);
                if ctx.shutdown.is_cancelled() {
                    return None;
                }
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(MAX_RETRY_BACKOFF);
            }
        }
    }
}

/// One transaction for the whole group.
fn commit(
    conn: &mut Connection,
    registry: &Registry,
    sink_enabled: bool,
    group: &[Inbound],
) -> rusqlite::Result<(Vec<Committed>, ReadingsCommitted)> {
    let received_at = calendar::now().0;
    // IMMEDIATE: wait on the busy timeout for the write lock instead of failing on a stale snapshot.
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let mut stats = ReadingsCommitted {
        stored: 0,
        duplicates: 0,
        statuses: 0,
        duration: Duration::ZERO,
    };
    let mut committed: Vec<Committed> = Vec::new();
    let mut rollups = Rollups::default();
    {
        let mut insert = tx.prepare_cached(
            "INSERT OR IGNORE INTO readings (post, quantity, at, value, flags, window_s, received_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )?;
        let mut seen_unregistered: Vec<&PostId> = Vec::new();
        for inbound in group {
            match &inbound.payload {
                Payload::Readings { post, readings } => {
                    let cadence = registry.cadence(post);
                    if registry.admit(post) == taza_domain::registry::Admission::Unregistered
                        && !seen_unregistered.contains(&post)
                    {
                        seen_unregistered.push(post);
                        record_unregistered(&tx, post, cadence)?;
                    }
                    let mut new = Vec::with_capacity(readings.len());
                    for r in readings {
                        let inserted = insert.execute(params![
                            post.as_str(),
                            r.quantity.as_str(),
                            r.at.0,
                            r.value,
                            r.flags.0,
                            r.window_s,
                            received_at
                        ])?;
                        if inserted == 0 {
                            stats.duplicates += 1;
                            continue;
                        }
                        stats.stored += 1;
                        // Same transaction: queued exactly when stored.
                        if sink_enabled {
                            crate::sink_queue::enqueue(
                                &tx,
                                post.as_str(),
                                r.quantity.as_str(),
                                r.at.0,
                                r.value,
                                r.flags.0,
                            )?;
                        }
                        if r.flags.is_valid_for_means() {
                            rollups.add(post, r, cadence);
                        }
                        new.push(*r);
                    }
                    if !new.is_empty() {
                        committed.push(Committed {
                            post: post.clone(),
                            readings: new,
                        });
                    }
                }
                Payload::Status {
                    post,
                    status,
                    clock_offset_ms,
                } => {
                    stats.statuses += 1;
                    let sensors: Vec<&str> = status.sensors.iter().map(|q| q.as_str()).collect();
                    tx.prepare_cached(
                        "INSERT INTO post_status (post, online, firmware, config_hash, sensors, dropped, reconnects, received_at,
                                                  clock_offset_ms, rssi_dbm, supply_mv, uptime_s)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)
                         ON CONFLICT (post) DO UPDATE SET online = excluded.online,
                           firmware = CASE WHEN excluded.online THEN excluded.firmware ELSE firmware END,
                           config_hash = CASE WHEN excluded.online THEN excluded.config_hash ELSE config_hash END,
                           sensors = CASE WHEN excluded.online THEN excluded.sensors ELSE sensors END,
                           dropped = CASE WHEN excluded.online THEN excluded.dropped ELSE dropped END,
                           reconnects = CASE WHEN excluded.online THEN excluded.reconnects ELSE reconnects END,
                           clock_offset_ms = CASE WHEN excluded.online THEN coalesce(excluded.clock_offset_ms, clock_offset_ms) ELSE clock_offset_ms END,
                           rssi_dbm = CASE WHEN excluded.online THEN excluded.rssi_dbm ELSE rssi_dbm END,
                           supply_mv = CASE WHEN excluded.online THEN excluded.supply_mv ELSE supply_mv END,
                           uptime_s = CASE WHEN excluded.online THEN excluded.uptime_s ELSE uptime_s END,
                           received_at = excluded.received_at",
                    )?
                    .execute(params![
                        post.as_str(),
                        status.online,
                        status.firmware.as_str(),
                        status.config_hash,
                        serde_json::to_string(&sensors).unwrap_or_else(|_| "[]".into()),
                        status.dropped,
                        status.reconnects,
                        received_at,
                        clock_offset_ms,
                        status.rssi_dbm,
                        status.supply_mv,
                        status.uptime_s
                    ])?;
                }
                Payload::Refused => {}
            }
        }
    }
    rollups.flush(&tx)?;
    tx.commit()?;
    Ok((committed, stats))
}

/// A post seen in demo mode (`allow_unregistered`) gets a registry row so the API lists it.
fn record_unregistered(
    tx: &rusqlite::Transaction<'_>,
    post: &PostId,
    cadence: Duration,
) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "INSERT OR IGNORE INTO posts (id, kind, name, cadence_s, updated_at) VALUES (?1, 'unregistered', ?1, ?2, ?3)",
    )?
    .execute(params![post.as_str(), cadence.as_secs() as i64, calendar::now().0])?;
    Ok(())
}

/// Deletes raw readings older than `retention`, one (post, quantity) series at a time through
/// the primary key (no extra index on time is kept just for this).
fn prune(conn: &Connection, retention: Duration) -> rusqlite::Result<usize> {
    let cutoff = calendar::now().0 - retention.as_secs() as i64;
    let series: Vec<(String, String)> = conn
        .prepare("SELECT DISTINCT post, quantity FROM rollup_day")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    let mut deleted = 0;
    let mut delete =
        conn.prepare_cached("DELETE FROM readings WHERE post = ?1 AND quantity = ?2 AND at < ?3")?;
    for (post, quantity) in series {
        deleted += delete.execute(params![post, quantity, cutoff])?;
    }
    tracing::info!(deleted, "pruned raw readings past retention");
    Ok(deleted)
}
