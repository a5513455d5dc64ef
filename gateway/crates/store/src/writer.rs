//! The single store writer: takes [`Inbound`] messages from ingest in arrival order, commits
//! them in groups (one transaction for everything waiting, up to [`MAX_GROUP`]), then hands
//! their [`AckToken`]s to the acker in the same order and the new readings to the live feed.
//!
//! A commit writes `samples`, the rollups, `sample_arrivals`, the newest times in `series` and
//! the sink queue with multi-row statements in key order (layout in [`crate::series`]); the
//! series ids come from a cache that is only updated after a successful COMMIT.
//!
//! A failed commit is retried with backoff and nothing is acknowledged meanwhile (the channel
//! fills and ingest stops reading: backpressure up to the broker). At shutdown the writer drains
//! what ingest already sent, commits it, and only then lets go of the ack channel.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use protocol::status::PostStatus;
use protocol::{PostId, Quantity};
use rusqlite::{params, Connection, Statement, Transaction};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::rollup::Rollups;
use crate::metrics::{CommitFailed, MessageCommitted, ReadingsCommitted, StoreMetrics};
use crate::multirow::Rows;
use crate::series::{bucket_of, SeriesCache};
use taza_domain::calendar;
use taza_domain::pipeline::{AckToken, Committed, Inbound, LiveSender, Payload, Reading};
use taza_domain::registry::Registry;

/// Most messages in one transaction: bounds commit latency under a flood. As many as the
/// ingest channel holds: a draining backlog then commits about 4000 messages at a time, and the
/// pages a commit dirties per post are shared by twice the messages of a 2048 cap (25 % more
/// throughput in `benches/ingest.rs`' backlog, at about 45 ms per commit).
pub const MAX_GROUP: usize = taza_domain::pipeline::INGEST_CHANNEL_CAPACITY;
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
    /// WAL restarts the checkpointer found due, run between group commits.
    pub wal_restart: crate::checkpoint::WalRestart,
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

/// The store's writer thread with nothing around it, for other crates' tests and benches
/// (feature `test-support`): deliveries in through [`Self::send`] or [`Self::blocking_send`],
/// acks drained and dropped, no alerts, no sink, no live listeners.
#[cfg(any(test, feature = "test-support"))]
pub struct TestWriter {
    input: Option<mpsc::Sender<Inbound>>,
    writer: std::thread::JoinHandle<()>,
    drain: std::thread::JoinHandle<()>,
}

#[cfg(any(test, feature = "test-support"))]
#[allow(clippy::unwrap_used, clippy::expect_used)]
impl TestWriter {
    /// Starts a writer on `conn` (an open, migrated store) for the posts of `registry`.
    pub fn spawn(conn: Connection, registry: Registry) -> Self {
        let (input, rx) = mpsc::channel(4096);
        let (ack_tx, mut ack_rx) = mpsc::channel::<AckToken>(4096);
        let writer = spawn(
            conn,
            WriterContext {
                registry,
                metrics: StoreMetrics::default(),
                raw_retention: None,
                shutdown: CancellationToken::new(),
                alerts: None,
                sink_enabled: false,
                wal_restart: crate::checkpoint::WalRestart::default(),
            },
            rx,
            ack_tx,
            tokio::sync::broadcast::channel(16).0,
        )
        .expect("writer thread");
        let drain = std::thread::spawn(move || while ack_rx.blocking_recv().is_some() {});
        Self {
            input: Some(input),
            writer,
            drain,
        }
    }

    /// One delivery of `readings` from `post`, as ingest hands it over.
    fn delivery(post: &PostId, readings: Vec<Reading>) -> Inbound {
        Inbound {
            payload: Payload::Readings {
                post: post.clone(),
                readings,
            },
            ack: AckToken {
                packet: None,
                connection: 0,
            },
            received: Instant::now(),
        }
    }

    /// Hands `readings` of `post` to the writer (from async code).
    pub async fn send(&self, post: &PostId, readings: Vec<Reading>) {
        let input = self.input.as_ref().expect("writer open");
        input
            .send(Self::delivery(post, readings))
            .await
            .expect("writer alive");
    }

    /// Hands `readings` of `post` to the writer (from a plain thread).
    pub fn blocking_send(&self, post: &PostId, readings: Vec<Reading>) {
        let input = self.input.as_ref().expect("writer open");
        input
            .blocking_send(Self::delivery(post, readings))
            .expect("writer alive");
    }

    /// Closes the input and waits until everything handed over is committed (blocking).
    pub fn finish(mut self) {
        self.input = None;
        self.writer.join().expect("writer thread");
        self.drain.join().expect("ack drain");
    }
}

fn run(
    mut conn: Connection,
    ctx: WriterContext,
    mut input: mpsc::Receiver<Inbound>,
    acks: mpsc::Sender<AckToken>,
    live: LiveSender,
) {
    conn.set_prepared_statement_cache_capacity(crate::multirow::STATEMENT_CACHE);
    let mut series = load_series(&conn, &ctx);
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
        let Some(committed) = commit_with_retry(&mut conn, &mut series, &ctx, &group) else {
            // Shutting down with a store that refuses writes: acknowledge nothing; the broker
            // redelivers these to the next session.
            break;
        };
        for inbound in group {
            MessageCommitted {
                latency: inbound.received.elapsed(),
            }
            .emit(&ctx.metrics);
            if send(&acks, inbound.ack).is_err() {
                tracing::warn!(
                    "acker gone; remaining acknowledgements dropped (broker will redeliver)"
                );
                break;
            }
        }
        for c in committed {
            let c = Arc::new(c);
            if let Some(alerts) = &ctx.alerts {
                if send(alerts, Arc::clone(&c)).is_err() {
                    tracing::warn!(
                        "alert evaluator stopped; readings are stored but no longer evaluated"
                    );
                }
            }
            // No receivers is fine: nobody is watching live.
            let _ = live.send(c);
        }
        ctx.wal_restart.run_if_due(&conn);
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

/// Sends without parking the thread when there is room (thousands of tokens per commit), and
/// blocks only when the channel is full.
fn send<T>(tx: &mpsc::Sender<T>, value: T) -> Result<(), ()> {
    match tx.try_send(value) {
        Ok(()) => Ok(()),
        Err(mpsc::error::TrySendError::Full(value)) => tx.blocking_send(value).map_err(drop),
        Err(mpsc::error::TrySendError::Closed(_)) => Err(()),
    }
}

/// The series cache, retried like a commit (the store may be briefly locked at start).
fn load_series(conn: &Connection, ctx: &WriterContext) -> SeriesCache {
    let mut backoff = Duration::from_millis(50);
    loop {
        match SeriesCache::load(conn) {
            Ok(cache) => return cache,
            Err(e) => {
                CommitFailed {
                    error: &e,
                    retry_in: backoff,
                }
                .emit(&ctx.metrics);
                if ctx.shutdown.is_cancelled() {
                    // Each commit then looks its series up in the table.
                    return SeriesCache::default();
                }
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(MAX_RETRY_BACKOFF);
            }
        }
    }
}

fn commit_with_retry(
    conn: &mut Connection,
    series: &mut SeriesCache,
    ctx: &WriterContext,
    group: &[Inbound],
) -> Option<Vec<Committed>> {
    let mut backoff = Duration::from_millis(50);
    // Replays of stored readings are rare: a group is first written assuming none, and only
    // when some turn up, written again learning which ([`insert_samples`]).
    let mut learn_replays = false;
    loop {
        let started = Instant::now();
        match commit(
            conn,
            series,
            &ctx.registry,
            ctx.sink_enabled,
            group,
            learn_replays,
        ) {
            Ok(None) => learn_replays = true,
            Ok(Some((committed, stats))) => {
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

/// One reading of the group, with its series.
struct Candidate<'a> {
    /// Index of its message in the group.
    message: usize,
    post: &'a PostId,
    reading: &'a Reading,
    series: i64,
    post_key: i64,
}

/// What a commit adds to one series: the span of its new readings and whether any is valid.
struct Touched<'a> {
    post: &'a PostId,
    quantity: Quantity,
    lo: i64,
    hi: i64,
    rolled_up: bool,
}

/// What a commit returns: the new readings per message and the counts; None when the group
/// replays stored readings and `learn_replays` was off (nothing was written).
type CommitOutcome = Option<(Vec<Committed>, ReadingsCommitted)>;

/// One transaction for the whole group.
fn commit(
    conn: &mut Connection,
    cache: &mut SeriesCache,
    registry: &Registry,
    sink_enabled: bool,
    group: &[Inbound],
    learn_replays: bool,
) -> rusqlite::Result<CommitOutcome> {
    let received_at = calendar::now().0;
    // IMMEDIATE: wait on the busy timeout for the write lock instead of failing on a stale snapshot.
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let mut stats = ReadingsCommitted {
        stored: 0,
        duplicates: 0,
        statuses: 0,
        duration: Duration::ZERO,
    };
    let mut staged = cache.stage();
    let mut seen_unregistered: Vec<&PostId> = Vec::new();
    // Every reading in arrival order, with its series.
    let mut candidates: Vec<Candidate<'_>> = Vec::new();
    let mut ids = Vec::new();
    for (message, inbound) in group.iter().enumerate() {
        match &inbound.payload {
            Payload::Readings { post, readings } => {
                if registry.admit(post) == taza_domain::registry::Admission::Unregistered
                    && !seen_unregistered.contains(&post)
                {
                    seen_unregistered.push(post);
                    record_unregistered(&tx, post, registry.cadence(post))?;
                }
                cache.resolve(&mut staged, &tx, post, readings, &mut ids)?;
                for (reading, s) in readings.iter().zip(&ids) {
                    candidates.push(Candidate {
                        message,
                        post,
                        reading,
                        series: s.id,
                        post_key: s.post_key,
                    });
                }
            }
            Payload::Status {
                post,
                status,
                clock_offset_ms,
            } => {
                stats.statuses += 1;
                store_status(&tx, post, status, *clock_offset_ms, received_at)?;
            }
            Payload::Refused => {}
        }
    }
    let Some(inserted) = insert_samples(&tx, &candidates, received_at, learn_replays)? else {
        // Dropping the transaction rolls it back, new series rows included; the cache never
        // saw them.
        return Ok(None);
    };

    let mut rollups = Rollups::default();
    let mut committed: Vec<(usize, Committed)> = Vec::new();
    let mut sink: Vec<&Candidate<'_>> = Vec::new();
    let mut touched: HashMap<i64, Touched<'_>> = HashMap::new();
    for (c, &fate) in candidates.iter().zip(&inserted) {
        if fate != Fate::New {
            stats.duplicates += 1;
            continue;
        }
        stats.stored += 1;
        let r = c.reading;
        let valid = r.flags.is_valid_for_means();
        if valid {
            rollups.add((c.post_key, c.series), c.post, r, registry.cadence(c.post));
        }
        if sink_enabled {
            sink.push(c);
        }
        let t = touched.entry(c.series).or_insert(Touched {
            post: c.post,
            quantity: r.quantity,
            lo: r.at.0,
            hi: r.at.0,
            rolled_up: false,
        });
        t.lo = t.lo.min(r.at.0);
        t.hi = t.hi.max(r.at.0);
        t.rolled_up |= valid;
        // Candidates come in message order: a message's new readings are consecutive.
        match committed.last_mut() {
            Some((m, last)) if *m == c.message => last.readings.push(*r),
            _ => committed.push((
                c.message,
                Committed {
                    post: c.post.clone(),
                    readings: vec![*r],
                },
            )),
        }
    }
    rollups.flush(&tx)?;
    update_series(&tx, cache, &mut staged, &touched, received_at)?;
    if sink_enabled {
        // Same transaction: queued exactly when stored, in arrival order.
        crate::sink_queue::enqueue_many(
            &tx,
            sink.iter()
                .map(|c| (c.series, c.reading.at.0, c.reading.value, c.reading.flags.0)),
        )?;
    }
    tx.commit()?;
    staged.apply(cache);
    Ok(Some((
        committed.into_iter().map(|(_, c)| c).collect(),
        stats,
    )))
}

/// What became of a reading of the group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    /// Stored now.
    New,
    /// Same (series, at) as an earlier reading of the group, or as a stored one.
    Replay,
}

/// Inserts the candidates into `samples` in key order; returns each one's [`Fate`]. A reading
/// repeated inside the group is a replay of its first copy, as row-by-row `INSERT OR IGNORE`
/// in arrival order would find. A multi-row `INSERT OR IGNORE` only says how many rows went
/// in, so without `learn_replays` it returns None when that is fewer than it was given (a
/// replay of a stored reading, rare: the caller rolls back and comes again); with it, the rows
/// go in with `RETURNING`, which names the new ones (about 15 % slower).
fn insert_samples(
    tx: &Transaction<'_>,
    candidates: &[Candidate<'_>],
    received_at: i64,
    learn_replays: bool,
) -> rusqlite::Result<Option<Vec<Fate>>> {
    // Key order with arrival order last: the first of each run of equal keys is the original.
    let mut keyed: Vec<(i64, i64, i64, i64, usize)> = candidates
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let at = c.reading.at.0;
            (c.post_key, bucket_of(at), c.series, at, i)
        })
        .collect();
    keyed.sort_unstable();
    let mut fate = vec![Fate::New; candidates.len()];
    keyed.dedup_by(|later, first| {
        let same = (later.2, later.3) == (first.2, first.3);
        if same {
            fate[later.4] = Fate::Replay;
        }
        same
    });
    let order: Vec<usize> = keyed.iter().map(|k| k.4).collect();
    const HEAD: &str = "INSERT OR IGNORE INTO samples \
         (post_key, bucket, series, at, value, flags, window_s, received_at) VALUES";
    let bind = |s: &mut Statement<'_>, i: usize, &k: &usize| {
        let c = &candidates[k];
        let r = c.reading;
        s.raw_bind_parameter(i, c.post_key)?;
        s.raw_bind_parameter(i + 1, bucket_of(r.at.0))?;
        s.raw_bind_parameter(i + 2, c.series)?;
        s.raw_bind_parameter(i + 3, r.at.0)?;
        s.raw_bind_parameter(i + 4, r.value)?;
        s.raw_bind_parameter(i + 5, r.flags.0)?;
        s.raw_bind_parameter(i + 6, r.window_s)?;
        s.raw_bind_parameter(i + 7, received_at)
    };
    if !learn_replays {
        let plain = Rows {
            head: HEAD,
            width: 8,
            tail: "",
        };
        let changed = plain.execute(tx, &order, bind)?;
        return Ok((changed == order.len()).then_some(fate));
    }
    let mut new: HashSet<(i64, i64)> = HashSet::with_capacity(order.len());
    Rows {
        head: HEAD,
        width: 8,
        tail: "RETURNING series, at",
    }
    .run(tx, &order, bind, |stmt| {
        let mut rows = stmt.raw_query();
        let mut n = 0;
        while let Some(row) = rows.next()? {
            new.insert((row.get(0)?, row.get(1)?));
            n += 1;
        }
        Ok(n)
    })?;
    for &i in &order {
        let c = &candidates[i];
        if !new.contains(&(c.series, c.reading.at.0)) {
            fate[i] = Fate::Replay;
        }
    }
    Ok(Some(fate))
}

/// Moves the touched series' newest times in `series` (multi-row upsert of the rows that
/// changed) and records, for this receive slice, the span of times each received
/// (`sample_arrivals`).
fn update_series(
    tx: &Transaction<'_>,
    cache: &SeriesCache,
    staged: &mut crate::series::Staged,
    touched: &HashMap<i64, Touched<'_>>,
    received_at: i64,
) -> rusqlite::Result<()> {
    let mut moved = Vec::new();
    let mut arrivals = Vec::with_capacity(touched.len());
    for (&id, t) in touched {
        if let Some(row) = cache.touch(staged, t.post, t.quantity, t.hi, t.rolled_up) {
            moved.push((row, t.post, t.quantity));
        }
        arrivals.push((id, t.lo, t.hi));
    }
    moved.sort_unstable_by_key(|(row, ..)| row.id);
    Rows {
        head: "INSERT INTO series (id, post, quantity, post_key, newest_at, rolled_up) VALUES",
        width: 6,
        tail: "ON CONFLICT (id) DO UPDATE SET \
               newest_at = max(coalesce(newest_at, excluded.newest_at), excluded.newest_at), \
               rolled_up = max(rolled_up, excluded.rolled_up)",
    }
    .execute(tx, &moved, |s, i, (row, post, q)| {
        s.raw_bind_parameter(i, row.id)?;
        s.raw_bind_parameter(i + 1, post.as_str())?;
        s.raw_bind_parameter(i + 2, q.as_str())?;
        s.raw_bind_parameter(i + 3, row.post_key)?;
        s.raw_bind_parameter(i + 4, row.newest_at)?;
        s.raw_bind_parameter(i + 5, row.rolled_up)
    })?;
    arrivals.sort_unstable();
    let slice = bucket_of(received_at);
    Rows {
        head: "INSERT INTO sample_arrivals (bucket, series, min_at, max_at) VALUES",
        width: 4,
        tail: "ON CONFLICT (bucket, series) DO UPDATE SET min_at = min(min_at, excluded.min_at), \
               max_at = max(max_at, excluded.max_at)",
    }
    .execute(tx, &arrivals, |s, i, (id, lo, hi)| {
        s.raw_bind_parameter(i, slice)?;
        s.raw_bind_parameter(i + 1, id)?;
        s.raw_bind_parameter(i + 2, lo)?;
        s.raw_bind_parameter(i + 3, hi)
    })?;
    Ok(())
}

fn store_status(
    tx: &Transaction<'_>,
    post: &PostId,
    status: &PostStatus,
    clock_offset_ms: Option<i64>,
    received_at: i64,
) -> rusqlite::Result<()> {
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
    Ok(())
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

/// Deletes raw readings older than `retention` (`[store] raw_retention`): the front of each
/// post's part of `samples` (one range delete per post), and the arrival slices that can only
/// name deleted readings. The rollups (`agg_20min`, `agg_hour`, `agg_day`) and the day
/// aggregates scores read are kept for ever, so scorecards do not change. Returns how many
/// readings were deleted. The writer runs it hourly; public for tests and tools.
pub fn prune(conn: &Connection, retention: Duration) -> rusqlite::Result<usize> {
    let cutoff = calendar::now().0 - retention.as_secs() as i64;
    let slice = bucket_of(cutoff);
    let posts: Vec<i64> = conn
        .prepare("SELECT DISTINCT post_key FROM series")?
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    let mut deleted = 0;
    for post_key in posts {
        deleted += conn
            .prepare_cached("DELETE FROM samples WHERE post_key = ?1 AND bucket < ?2")?
            .execute(params![post_key, slice])?;
        deleted += conn
            .prepare_cached("DELETE FROM samples WHERE post_key = ?1 AND bucket = ?2 AND at < ?3")?
            .execute(params![post_key, slice, cutoff])?;
    }
    // A reading received in slice b has at <= received_at + the allowed clock skew; slices
    // older than that margin before the cutoff hold only deleted readings.
    let margin = protocol::senml::MAX_FUTURE_SKEW_S + crate::series::BUCKET_S;
    conn.prepare_cached("DELETE FROM sample_arrivals WHERE bucket < ?1")?
        .execute([bucket_of(cutoff - margin)])?;
    tracing::info!(deleted, "pruned raw readings past retention");
    Ok(deleted)
}
