//! The ingest writer on PostgreSQL, with the contract of the SQLite one ([`crate::writer`]):
//! takes [`Inbound`] messages from ingest in arrival order, commits them in groups (one
//! transaction for everything waiting, up to [`MAX_GROUP`]), and only after the COMMIT hands
//! their [`AckToken`]s to the acker in the same order and the new readings to the live feed.
//! A failed commit is retried with backoff and nothing is acknowledged meanwhile.
//!
//! One transaction writes `readings` (`ON CONFLICT DO NOTHING RETURNING`: the rows that were
//! really inserted), `post_status`, `sink_queue` when a sink is configured, then, from the
//! inserted rows only, the rollups (`rollup_20min`, `rollup_hour`, `rollup_day`, merged
//! additively under the row lock) and the `day_dirty` marks, and last the commit log
//! ([`crate::pg::commit_log`], the leader's alert input). So a replay, or the same reading
//! written by two replicas at once, is counted once: the second insert waits for the first's
//! commit and then inserts nothing.
//!
//! Every statement takes its rows in one key order (post, quantity, time), and every commit
//! writes the tables in the same order, so concurrent writers on one database wait for each
//! other but do not deadlock.
//!
//! The writer is a task on the runtime; each group commit runs on the blocking pool through
//! [`PgStore::run`] (the store functions' synchronous [`Pg`] session).

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use protocol::status::PostStatus;
use protocol::{PostId, Quantity, UnixSeconds};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{commit_log, Pg, PgStore};
use crate::metrics::{CommitFailed, MessageCommitted, ReadingsCommitted, StoreMetrics};
use crate::rollup::{marks_days, Agg, Place};
use crate::{Db, StoreError};
use taza_domain::calendar::{self, LocalDay};
use taza_domain::pipeline::{AckToken, Committed, Inbound, LiveSender, Payload, Reading};
use taza_domain::registry::{Admission, Registry};

/// Most messages in one transaction, as on SQLite: what the ingest channel holds.
pub const MAX_GROUP: usize = crate::writer::MAX_GROUP;
/// Longest wait between retries of a failing commit.
const MAX_RETRY_BACKOFF: Duration = Duration::from_secs(5);
/// How often raw readings past their retention are pruned.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);
/// Group commits under way at once, each on its own connection: the next group's readings
/// go in while the previous one's rollups and COMMIT finish (about 60 % of a commit is the
/// readings insert, which concurrent groups do not contend on).
const IN_FLIGHT: usize = 2;
/// How often the writer looks whether enough messages wait for a second group.
const SECOND_GROUP_POLL: Duration = Duration::from_millis(2);

/// What the writer needs besides its store and channels.
pub struct WriterContext {
    /// Cadences for expected counts, and which posts are registered.
    pub registry: Registry,
    /// Metrics.
    pub metrics: StoreMetrics,
    /// Raw readings older than this are pruned (rollups stay).
    pub raw_retention: Option<Duration>,
    /// Cancelled when the gateway stops: failing commits then give up instead of retrying.
    pub shutdown: CancellationToken,
    /// New readings for an in-process alert evaluator (blocking when full). None where the
    /// leader reads the fleet's readings from the commit log instead.
    pub alerts: Option<mpsc::Sender<Arc<Committed>>>,
    /// Queue new readings for the long-term store (`sink_queue`); false without a sink.
    pub sink_enabled: bool,
}

/// Starts the writer task (call within the gateway's runtime). It ends when `input` is
/// closed and drained, or when the store refuses writes at shutdown.
pub fn spawn(
    store: PgStore,
    ctx: WriterContext,
    input: mpsc::Receiver<Inbound>,
    acks: mpsc::Sender<AckToken>,
    live: LiveSender,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(run(store, ctx, input, acks, live))
}

/// A group commit under way: its messages' tokens (kept here, acknowledged in order) and the
/// task committing its payloads.
struct InFlight {
    tokens: Vec<(AckToken, Instant)>,
    task: tokio::task::JoinHandle<Option<Vec<Committed>>>,
}

async fn run(
    store: PgStore,
    ctx: WriterContext,
    mut input: mpsc::Receiver<Inbound>,
    acks: mpsc::Sender<AckToken>,
    live: LiveSender,
) {
    let ctx = Arc::new(ctx);
    let mut in_flight: VecDeque<InFlight> = VecDeque::new();
    let mut open = true;
    let mut last_prune = Instant::now();
    loop {
        if in_flight.is_empty() {
            // Nothing under way: the next group starts with the next message.
            match input.recv().await {
                Some(first) => in_flight.push_back(start(&store, &ctx, first, &mut input)),
                None => break,
            }
            continue;
        }
        // A second group starts once half as many messages as the last one holds are waiting:
        // the two then overlap, where a group of a few would only wait on the other's row
        // locks. Acknowledgements still go out in arrival order, group by group.
        let half = in_flight.back().map_or(1, |f| f.tokens.len() / 2).max(1);
        let room = open && in_flight.len() < IN_FLIGHT;
        if room && input.len() >= half {
            match input.try_recv() {
                Ok(first) => {
                    in_flight.push_back(start(&store, &ctx, first, &mut input));
                    continue;
                }
                Err(mpsc::error::TryRecvError::Disconnected) => open = false,
                Err(mpsc::error::TryRecvError::Empty) => {}
            }
        }
        let Some(oldest) = in_flight.front_mut() else {
            continue;
        };
        let done = tokio::select! {
            biased;
            done = &mut oldest.task => done,
            () = tokio::time::sleep(SECOND_GROUP_POLL), if room => continue,
        };
        let Some(InFlight { tokens, .. }) = in_flight.pop_front() else {
            break;
        };
        let committed = match done {
            Ok(Some(committed)) => committed,
            // Shutting down with a store that refuses writes: acknowledge nothing more; the
            // broker redelivers these to the next session.
            Ok(None) => break,
            Err(e) => {
                tracing::error!(error = %e, "group commit task failed; writer stops");
                break;
            }
        };
        let mut acker_gone = false;
        for (ack, received) in tokens {
            MessageCommitted {
                latency: received.elapsed(),
            }
            .emit(&ctx.metrics);
            if !acker_gone && acks.send(ack).await.is_err() {
                tracing::warn!(
                    "acker gone; remaining acknowledgements dropped (broker will redeliver)"
                );
                acker_gone = true;
            }
        }
        for c in committed {
            let c = Arc::new(c);
            if let Some(alerts) = &ctx.alerts {
                if alerts.send(Arc::clone(&c)).await.is_err() {
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
                match store.run(false, move |pg| prune(pg, retention)).await {
                    Ok(deleted) => tracing::info!(deleted, "pruned raw readings past retention"),
                    Err(e) => tracing::error!(error = %e, "pruning raw readings failed"),
                }
            }
        }
    }
    tracing::debug!("store writer drained and stopped");
}

/// Takes `first` and what else is waiting (up to [`MAX_GROUP`]) as a group and starts its
/// commit. The payloads go to the commit task (and back to the store for a retry); the tokens
/// stay with the writer.
fn start(
    store: &PgStore,
    ctx: &Arc<WriterContext>,
    first: Inbound,
    input: &mut mpsc::Receiver<Inbound>,
) -> InFlight {
    let mut group = Vec::with_capacity(64);
    group.push(first);
    while group.len() < MAX_GROUP {
        match input.try_recv() {
            Ok(next) => group.push(next),
            Err(_) => break,
        }
    }
    let mut tokens = Vec::with_capacity(group.len());
    let mut payloads = Vec::with_capacity(group.len());
    for Inbound {
        payload,
        ack,
        received,
    } in group
    {
        payloads.push(payload);
        tokens.push((ack, received));
    }
    let (store, ctx) = (store.clone(), Arc::clone(ctx));
    let task =
        tokio::spawn(async move { commit_with_retry(&store, &ctx, Arc::new(payloads)).await });
    InFlight { tokens, task }
}

/// Commits `payloads`, retrying with backoff until it succeeds; None if the gateway is
/// stopping and the store still refuses.
async fn commit_with_retry(
    store: &PgStore,
    ctx: &WriterContext,
    payloads: Arc<Vec<Payload>>,
) -> Option<Vec<Committed>> {
    let mut backoff = Duration::from_millis(50);
    loop {
        let started = Instant::now();
        let (payloads, registry, sink) = (
            Arc::clone(&payloads),
            ctx.registry.clone(),
            ctx.sink_enabled,
        );
        match store
            .run(false, move |pg| commit(pg, &payloads, &registry, sink))
            .await
        {
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
                // A stop during the wait cuts it short: one more try, then give up.
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {}
                    () = ctx.shutdown.cancelled() => {}
                }
                backoff = (backoff * 2).min(MAX_RETRY_BACKOFF);
            }
        }
    }
}

/// One reading of the group.
struct Candidate<'a> {
    /// Index of its message in the group.
    message: usize,
    post: &'a PostId,
    reading: &'a Reading,
}

impl Candidate<'_> {
    /// The reading's identity, in the order every writer takes row locks in.
    fn key(&self) -> (&str, &str, i64) {
        (
            self.post.as_str(),
            self.reading.quantity.as_str(),
            self.reading.at.0,
        )
    }
}

/// A post's status message of the group.
struct StatusUpdate<'a> {
    post: &'a PostId,
    status: &'a PostStatus,
    clock_offset_ms: Option<i64>,
}

/// One transaction for the whole group (on the blocking pool, in [`PgStore::run`]'s
/// transaction): the new readings per message, and the counts.
fn commit(
    pg: &Pg<'_>,
    group: &[Payload],
    registry: &Registry,
    sink_enabled: bool,
) -> Result<(Vec<Committed>, ReadingsCommitted), StoreError> {
    let received_at = calendar::now().0;
    let mut stats = ReadingsCommitted {
        stored: 0,
        duplicates: 0,
        statuses: 0,
        duration: Duration::ZERO,
    };
    let mut unregistered: Vec<&PostId> = Vec::new();
    let mut candidates: Vec<Candidate<'_>> = Vec::new();
    let mut statuses: Vec<StatusUpdate<'_>> = Vec::new();
    for (message, payload) in group.iter().enumerate() {
        match payload {
            Payload::Readings { post, readings } => {
                if registry.admit(post) == Admission::Unregistered && !unregistered.contains(&post)
                {
                    unregistered.push(post);
                }
                candidates.extend(readings.iter().map(|reading| Candidate {
                    message,
                    post,
                    reading,
                }));
            }
            Payload::Status {
                post,
                status,
                clock_offset_ms,
            } => statuses.push(StatusUpdate {
                post,
                status,
                clock_offset_ms: *clock_offset_ms,
            }),
            Payload::Refused => {}
        }
    }
    unregistered.sort_unstable();
    for post in unregistered {
        record_unregistered(pg, post, registry.cadence(post))?;
    }

    let new = insert_readings(pg, &candidates, received_at)?;
    let mut rollups = PgRollups::default();
    let mut committed: Vec<(usize, Committed)> = Vec::new();
    for (c, &is_new) in candidates.iter().zip(&new) {
        if !is_new {
            stats.duplicates += 1;
            continue;
        }
        stats.stored += 1;
        let r = c.reading;
        if r.flags.is_valid_for_means() {
            rollups.add(c.post, r, registry.cadence(c.post));
        }
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

    // Several statuses of one post in a group apply in arrival order (a stable sort).
    statuses.sort_by(|a, b| a.post.cmp(b.post));
    for s in &statuses {
        store_status(pg, s, received_at)?;
        stats.statuses += 1;
    }
    // Each post's new readings in arrival order, for the sink queue and the commit log.
    let mut by_post: Vec<(&PostId, Vec<Reading>)> = Vec::new();
    let mut index: HashMap<&PostId, usize> = HashMap::new();
    for (_, c) in &committed {
        let i = *index.entry(&c.post).or_insert_with(|| {
            by_post.push((&c.post, Vec::new()));
            by_post.len() - 1
        });
        by_post[i].1.extend_from_slice(&c.readings);
    }
    if sink_enabled {
        for (post, readings) in &by_post {
            crate::sink_queue::enqueue(&Db::Pg(pg), post, readings)?;
        }
    }
    // The rollup rows are the ones concurrent writers share (every post's current hour and
    // day): upserted late, so their row locks are held only to the commit.
    rollups.flush(pg)?;
    // Last: the log's ordering lock is held from here to the COMMIT.
    let entries: Vec<(&PostId, &[Reading])> = by_post
        .iter()
        .map(|(post, readings)| (*post, readings.as_slice()))
        .collect();
    commit_log::append_many(pg, &entries, UnixSeconds(received_at))?;
    Ok((committed.into_iter().map(|(_, c)| c).collect(), stats))
}

/// Inserts the candidates' readings; returns, per candidate, whether it is new. A reading
/// repeated inside the group is a replay of its first copy in arrival order; one already
/// stored (or being stored by another writer, whose commit the insert waits for) is not
/// returned by the insert. One statement for the whole group, the rows as arrays (`UNNEST`),
/// in key order.
fn insert_readings(
    pg: &Pg<'_>,
    candidates: &[Candidate<'_>],
    received_at: i64,
) -> Result<Vec<bool>, StoreError> {
    let mut order: Vec<usize> = (0..candidates.len()).collect();
    order.sort_unstable_by(|&a, &b| {
        candidates[a]
            .key()
            .cmp(&candidates[b].key())
            .then(a.cmp(&b))
    });
    order.dedup_by(|later, first| candidates[*later].key() == candidates[*first].key());
    let mut new = vec![false; candidates.len()];
    if order.is_empty() {
        return Ok(new);
    }
    let n = order.len();
    let (mut posts, mut quantities, mut ats) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    let (mut values, mut flags, mut windows) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    for &i in &order {
        let (post, quantity, at) = candidates[i].key();
        let r = candidates[i].reading;
        posts.push(post);
        quantities.push(quantity);
        ats.push(at);
        values.push(r.value);
        flags.push(i64::from(r.flags.0));
        windows.push(r.window_s.map(i64::from));
    }
    let rows = pg.query(
        "INSERT INTO readings (post, quantity, at, value, flags, window_s, received_at)
         SELECT p, q, a, v, f, w, $7
         FROM unnest($1::text[], $2::text[], $3::int8[], $4::float8[], $5::int8[], $6::int8[])
              AS t(p, q, a, v, f, w)
         ON CONFLICT (post, quantity, at) DO NOTHING
         RETURNING post, quantity, at",
        &[
            &posts,
            &quantities,
            &ats,
            &values,
            &flags,
            &windows,
            &received_at,
        ],
    )?;
    // The inserted rows come back in the order they went in: walk both lists together, and
    // only if that ever fails to account for every row, match them by key instead.
    let mut returned = rows.iter().peekable();
    for &i in &order {
        let Some(row) = returned.peek() else { break };
        if returned_key(row)? == candidates[i].key() {
            new[i] = true;
            returned.next();
        }
    }
    if returned.peek().is_some() {
        let mut inserted = HashSet::with_capacity(rows.len());
        for row in &rows {
            inserted.insert(returned_key(row)?);
        }
        for &i in &order {
            new[i] = inserted.contains(&candidates[i].key());
        }
    }
    Ok(new)
}

fn returned_key(row: &super::Row) -> Result<(&str, &str, i64), StoreError> {
    Ok((
        super::get(row, "readings", 0)?,
        super::get(row, "readings", 1)?,
        super::get(row, "readings", 2)?,
    ))
}

/// A day's aggregate and whether its day is marked for scoring.
struct DayAgg {
    agg: Agg,
    marked: bool,
}

/// The group's new readings folded into buckets ([`Place`], the SQLite writer's arithmetic),
/// keyed (post, quantity, start) as the tables.
#[derive(Default)]
struct PgRollups<'a> {
    twenty_minutes: HashMap<(&'a str, Quantity, i64), Agg>,
    hours: HashMap<(&'a str, Quantity, i64), Agg>,
    days: HashMap<(&'a str, Quantity, LocalDay), DayAgg>,
    day_of_hour: HashMap<i64, LocalDay>,
}

/// How a stored bucket absorbs a group's aggregate: counts and sums add, extremes widen (the
/// SQLite writer's rule, `rollup::MERGE`). `expected` stays what the first commit set.
macro_rules! merge {
    ($t:literal) => {
        concat!(
            "count = ",
            $t,
            ".count + excluded.count, ",
            "weighted_sum = ",
            $t,
            ".weighted_sum + excluded.weighted_sum, ",
            "covered_s = ",
            $t,
            ".covered_s + excluded.covered_s, ",
            "min = least(",
            $t,
            ".min, excluded.min), max = greatest(",
            $t,
            ".max, excluded.max)"
        )
    };
}

/// A bucket table's rows as arrays, in key order.
#[derive(Default)]
struct Columns<'a> {
    posts: Vec<&'a str>,
    quantities: Vec<&'static str>,
    count: Vec<i64>,
    weighted_sum: Vec<f64>,
    covered_s: Vec<i64>,
    min: Vec<f64>,
    max: Vec<f64>,
    expected: Vec<i64>,
}

impl<'a> Columns<'a> {
    fn push(&mut self, post: &'a str, quantity: Quantity, a: &Agg) {
        self.posts.push(post);
        self.quantities.push(quantity.as_str());
        self.count.push(a.count);
        self.weighted_sum.push(a.weighted_sum);
        self.covered_s.push(a.covered_s);
        self.min.push(a.min);
        self.max.push(a.max);
        self.expected.push(a.expected);
    }
}

impl<'a> PgRollups<'a> {
    fn add(&mut self, post: &'a PostId, r: &Reading, cadence: Duration) {
        let place = Place::of(r, cadence, &mut self.day_of_hour);
        let post = post.as_str();
        self.twenty_minutes
            .entry((post, r.quantity, place.twenty.start))
            .or_insert_with(|| Agg::new(place.twenty.expected))
            .add(r.value, place.twenty.covered_s);
        self.hours
            .entry((post, r.quantity, place.hour.start))
            .or_insert_with(|| Agg::new(place.hour.expected))
            .add(r.value, place.hour.covered_s);
        self.days
            .entry((post, r.quantity, place.day.start))
            .or_insert_with(|| DayAgg {
                agg: Agg::new(place.day.expected),
                marked: marks_days(r.quantity),
            })
            .agg
            .add(r.value, place.day.covered_s);
    }

    /// Upserts every touched bucket (one statement per table) and marks the touched days.
    fn flush(self, pg: &Pg<'_>) -> Result<(), StoreError> {
        let order = |&(p, q, s): &(&'a str, Quantity, i64)| (p, q.as_str(), s);
        for (table, buckets) in [
            ("rollup_20min", self.twenty_minutes),
            ("rollup_hour", self.hours),
        ] {
            if buckets.is_empty() {
                continue;
            }
            let mut rows: Vec<_> = buckets.into_iter().collect();
            rows.sort_unstable_by(|(a, _), (b, _)| order(a).cmp(&order(b)));
            let mut cols = Columns::default();
            let mut starts = Vec::with_capacity(rows.len());
            for ((post, quantity, start), a) in &rows {
                cols.push(post, *quantity, a);
                starts.push(*start);
            }
            if table == "rollup_20min" {
                pg.execute(
                    concat!(
                        "INSERT INTO rollup_20min (post, quantity, start, count, weighted_sum, covered_s, min, max)
                         SELECT * FROM unnest($1::text[], $2::text[], $3::int8[], $4::int8[],
                                              $5::float8[], $6::int8[], $7::float8[], $8::float8[])
                         ON CONFLICT (post, quantity, start) DO UPDATE SET ",
                        merge!("rollup_20min")
                    ),
                    &[
                        &cols.posts,
                        &cols.quantities,
                        &starts,
                        &cols.count,
                        &cols.weighted_sum,
                        &cols.covered_s,
                        &cols.min,
                        &cols.max,
                    ],
                )?;
            } else {
                pg.execute(
                    concat!(
                        "INSERT INTO rollup_hour (post, quantity, start, count, weighted_sum, covered_s, min, max, expected)
                         SELECT * FROM unnest($1::text[], $2::text[], $3::int8[], $4::int8[],
                                              $5::float8[], $6::int8[], $7::float8[], $8::float8[], $9::int8[])
                         ON CONFLICT (post, quantity, start) DO UPDATE SET ",
                        merge!("rollup_hour")
                    ),
                    &[
                        &cols.posts,
                        &cols.quantities,
                        &starts,
                        &cols.count,
                        &cols.weighted_sum,
                        &cols.covered_s,
                        &cols.min,
                        &cols.max,
                        &cols.expected,
                    ],
                )?;
            }
        }
        if self.days.is_empty() {
            return Ok(());
        }
        let mut days: Vec<_> = self.days.into_iter().collect();
        days.sort_unstable_by(|((p, q, d), _), ((p2, q2, d2), _)| {
            order(&(p, *q, d.start.0)).cmp(&order(&(p2, *q2, d2.start.0)))
        });
        let mut cols = Columns::default();
        let (mut labels, mut starts, mut ends) = (Vec::new(), Vec::new(), Vec::new());
        let mut marks = Columns::default();
        let mut mark_days = Vec::new();
        for ((post, quantity, day), d) in &days {
            cols.push(post, *quantity, &d.agg);
            labels.push(day.label());
            starts.push(day.start.0);
            ends.push(day.end.0);
            if d.marked {
                marks.posts.push(post);
                marks.quantities.push(quantity.as_str());
                mark_days.push(day.label());
            }
        }
        pg.execute(
            concat!(
                "INSERT INTO rollup_day (post, quantity, day, start, end_at, count, weighted_sum, covered_s, min, max, expected)
                 SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::int8[], $5::int8[], $6::int8[],
                                      $7::float8[], $8::int8[], $9::float8[], $10::float8[], $11::int8[])
                 ON CONFLICT (post, quantity, day) DO UPDATE SET ",
                merge!("rollup_day")
            ),
            &[
                &cols.posts,
                &cols.quantities,
                &labels,
                &starts,
                &ends,
                &cols.count,
                &cols.weighted_sum,
                &cols.covered_s,
                &cols.min,
                &cols.max,
                &cols.expected,
            ],
        )?;
        if !mark_days.is_empty() {
            pg.execute(
                "INSERT INTO day_dirty (post, quantity, day)
                 SELECT * FROM unnest($1::text[], $2::text[], $3::text[])
                 ON CONFLICT DO NOTHING",
                &[&marks.posts, &marks.quantities, &mark_days],
            )?;
        }
        Ok(())
    }
}

/// The newest status of a post; a last will (offline) keeps what the post last reported.
fn store_status(pg: &Pg<'_>, s: &StatusUpdate<'_>, received_at: i64) -> Result<(), StoreError> {
    let status = s.status;
    let sensors: Vec<&str> = status.sensors.iter().map(|q| q.as_str()).collect();
    let sensors = serde_json::to_string(&sensors).unwrap_or_else(|_| "[]".into());
    pg.execute(
        "INSERT INTO post_status (post, online, firmware, config_hash, sensors, dropped, reconnects,
                                  received_at, clock_offset_ms, rssi_dbm, supply_mv, uptime_s)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
         ON CONFLICT (post) DO UPDATE SET online = excluded.online,
           firmware = CASE WHEN excluded.online <> 0 THEN excluded.firmware ELSE post_status.firmware END,
           config_hash = CASE WHEN excluded.online <> 0 THEN excluded.config_hash ELSE post_status.config_hash END,
           sensors = CASE WHEN excluded.online <> 0 THEN excluded.sensors ELSE post_status.sensors END,
           dropped = CASE WHEN excluded.online <> 0 THEN excluded.dropped ELSE post_status.dropped END,
           reconnects = CASE WHEN excluded.online <> 0 THEN excluded.reconnects ELSE post_status.reconnects END,
           clock_offset_ms = CASE WHEN excluded.online <> 0
               THEN coalesce(excluded.clock_offset_ms, post_status.clock_offset_ms)
               ELSE post_status.clock_offset_ms END,
           rssi_dbm = CASE WHEN excluded.online <> 0 THEN excluded.rssi_dbm ELSE post_status.rssi_dbm END,
           supply_mv = CASE WHEN excluded.online <> 0 THEN excluded.supply_mv ELSE post_status.supply_mv END,
           uptime_s = CASE WHEN excluded.online <> 0 THEN excluded.uptime_s ELSE post_status.uptime_s END,
           received_at = excluded.received_at",
        &[
            &s.post.as_str(),
            &i64::from(status.online),
            &status.firmware.as_str(),
            &status.config_hash.map(i64::from),
            &sensors,
            &i64::from(status.dropped),
            &i64::from(status.reconnects),
            &received_at,
            &s.clock_offset_ms,
            &status.rssi_dbm.map(i64::from),
            &status.supply_mv.map(i64::from),
            &status.uptime_s.map(i64::from),
        ],
    )?;
    Ok(())
}

/// A post seen in demo mode (`allow_unregistered`) gets a registry row so the API lists it.
fn record_unregistered(pg: &Pg<'_>, post: &PostId, cadence: Duration) -> Result<(), StoreError> {
    let cadence_s = i64::try_from(cadence.as_secs()).unwrap_or(i64::MAX);
    pg.execute(
        "INSERT INTO posts (id, kind, name, cadence_s, updated_at)
         VALUES ($1, 'unregistered', $1, $2, $3) ON CONFLICT (id) DO NOTHING",
        &[&post.as_str(), &cadence_s, &calendar::now().0],
    )?;
    Ok(())
}

/// Deletes raw readings older than `retention`: one range delete per series, the series found
/// by skipping through the primary key (a seek per series, not a scan of the table).
fn prune(pg: &Pg<'_>, retention: Duration) -> Result<u64, StoreError> {
    let cutoff = calendar::now().0 - i64::try_from(retention.as_secs()).unwrap_or(i64::MAX);
    pg.execute(
        "WITH RECURSIVE s (post, quantity) AS (
             (SELECT post, quantity FROM readings ORDER BY post, quantity LIMIT 1)
             UNION ALL
             SELECT n.post, n.quantity FROM s, LATERAL (
                 SELECT post, quantity FROM readings r
                 WHERE (r.post, r.quantity) > (s.post, s.quantity)
                 ORDER BY post, quantity LIMIT 1) n
         )
         DELETE FROM readings r USING s
         WHERE r.post = s.post AND r.quantity = s.quantity AND r.at < $1",
        &[&cutoff],
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use crate::pg::test_server;
    use protocol::QaFlags;
    use tokio::sync::broadcast;

    /// A running writer with its channels and metrics.
    struct Harness {
        store: PgStore,
        input: Option<mpsc::Sender<Inbound>>,
        acks: mpsc::Receiver<AckToken>,
        live: broadcast::Receiver<Arc<Committed>>,
        metrics: prometheus_client::registry::Registry,
        task: tokio::task::JoinHandle<()>,
        shutdown: CancellationToken,
    }

    impl Harness {
        async fn start(url: &str, sink_enabled: bool) -> Self {
            let store = PgStore::connect(url).await.unwrap();
            let metrics = StoreMetrics::default();
            let mut registry = prometheus_client::registry::Registry::default();
            metrics.register(&mut registry);
            let (input, rx) = mpsc::channel(MAX_GROUP);
            let (ack_tx, acks) = mpsc::channel(MAX_GROUP);
            let (live_tx, live) = broadcast::channel(16_384);
            let shutdown = CancellationToken::new();
            let task = spawn(
                store.clone(),
                WriterContext {
                    registry: Registry::new(&[], Duration::from_secs(60), false),
                    metrics,
                    raw_retention: None,
                    shutdown: shutdown.clone(),
                    alerts: None,
                    sink_enabled,
                },
                rx,
                ack_tx,
                live_tx,
            );
            Self {
                store,
                input: Some(input),
                acks,
                live,
                metrics: registry,
                task,
                shutdown,
            }
        }

        async fn send(&self, payload: Payload) {
            self.input
                .as_ref()
                .unwrap()
                .send(Inbound {
                    payload,
                    ack: AckToken {
                        packet: None,
                        connection: 0,
                    },
                    received: Instant::now(),
                })
                .await
                .unwrap();
        }

        async fn acked(&mut self, n: usize) {
            for _ in 0..n {
                tokio::time::timeout(Duration::from_secs(30), self.acks.recv())
                    .await
                    .expect("acknowledged within 30 s")
                    .expect("writer alive");
            }
        }

        fn counter(&self, name: &str) -> f64 {
            let mut text = String::new();
            prometheus_client::encoding::text::encode(&mut text, &self.metrics).unwrap();
            text.lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
                .unwrap_or(0.0)
        }

        async fn finish(mut self) -> PgStore {
            self.input = None;
            tokio::time::timeout(Duration::from_secs(30), self.task)
                .await
                .expect("writer drains")
                .unwrap();
            self.store
        }
    }

    fn readings(post: &str, readings: Vec<Reading>) -> Payload {
        Payload::Readings {
            post: PostId::parse(post).unwrap(),
            readings,
        }
    }

    fn r(quantity: Quantity, at: i64, value: f64) -> Reading {
        Reading {
            quantity,
            value,
            at: UnixSeconds(at),
            flags: QaFlags::NONE,
            window_s: None,
        }
    }

    async fn count(store: &PgStore, sql: &'static str) -> i64 {
        store
            .run(true, move |pg| {
                super::super::get::<i64>(&pg.query_one(sql, &[])?, "test", 0)
            })
            .await
            .unwrap()
    }

    /// 2026-01-01T00:00:00Z.
    const T0: i64 = 1_767_225_600;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn replayed_readings_are_stored_once_and_rolled_up_once() {
        let Some(url) = test_server::database("pg::writer::replayed_readings_are_stored_once")
        else {
            return;
        };
        let mut w = Harness::start(&url, true).await;
        // A message repeating one of its own readings with another value (the first stays).
        w.send(readings(
            "p-1",
            vec![
                r(Quantity::Pm2_5, T0 + 60, 10.0),
                r(Quantity::Pm2_5, T0 + 120, 20.0),
                r(Quantity::No2, T0 + 60, 40.0),
                r(Quantity::Pm2_5, T0 + 60, 99.0),
            ],
        ))
        .await;
        w.acked(1).await;
        // The whole message again (a redelivery), then one with a replay and a new reading,
        // and another post's, back to back (in one group or two: the outcome is the same).
        w.send(readings(
            "p-1",
            vec![
                r(Quantity::Pm2_5, T0 + 60, 11.0),
                r(Quantity::Pm2_5, T0 + 120, 21.0),
                r(Quantity::No2, T0 + 60, 41.0),
            ],
        ))
        .await;
        w.send(readings(
            "p-1",
            vec![
                r(Quantity::Pm2_5, T0 + 120, 22.0),
                r(Quantity::Pm2_5, T0 + 180, 30.0),
            ],
        ))
        .await;
        w.send(readings("p-2", vec![r(Quantity::Pm2_5, T0 + 60, 5.0)]))
            .await;
        w.acked(3).await;
        assert_eq!(w.counter("store_readings_stored_total"), 5.0);
        assert_eq!(w.counter("store_readings_duplicate_total"), 5.0);
        // Live: only new readings, per message.
        let mut live = Vec::new();
        // The live feed follows the acknowledgements.
        while live.len() < 3 {
            let c = tokio::time::timeout(Duration::from_secs(30), w.live.recv())
                .await
                .unwrap()
                .unwrap();
            live.push((
                c.post.to_string(),
                c.readings.iter().map(|r| r.value).collect::<Vec<_>>(),
            ));
        }
        assert_eq!(
            live,
            [
                ("p-1".to_string(), vec![10.0, 20.0, 40.0]),
                ("p-1".to_string(), vec![30.0]),
                ("p-2".to_string(), vec![5.0]),
            ]
        );
        let store = w.finish().await;
        let stored = store
            .run(true, |pg| {
                let rows = pg.query(
                    "SELECT post, quantity, at, value FROM readings ORDER BY post, quantity, at",
                    &[],
                )?;
                rows.iter()
                    .map(|row| {
                        Ok((
                            crate::pg::get::<String>(row, "readings", 0)?,
                            crate::pg::get::<String>(row, "readings", 1)?,
                            crate::pg::get::<i64>(row, "readings", 2)? - T0,
                            crate::pg::get::<f64>(row, "readings", 3)?,
                        ))
                    })
                    .collect::<Result<Vec<_>, StoreError>>()
            })
            .await
            .unwrap();
        let s = |p: &str, q: &str, at, v| (p.to_string(), q.to_string(), at, v);
        assert_eq!(
            stored,
            [
                s("p-1", "no2", 60, 40.0),
                s("p-1", "pm2_5", 60, 10.0),
                s("p-1", "pm2_5", 120, 20.0),
                s("p-1", "pm2_5", 180, 30.0),
                s("p-2", "pm2_5", 60, 5.0),
            ]
        );
        // Rollups hold each reading once: p-1's pm2_5 hour 00:00 has 10, 20, 30.
        let hour = store
            .run(true, |pg| {
                let row = pg.query_one(
                    "SELECT count, weighted_sum, covered_s, min, max, expected FROM rollup_hour
                     WHERE post = 'p-1' AND quantity = 'pm2_5'",
                    &[],
                )?;
                Ok::<_, StoreError>((
                    crate::pg::get::<i64>(&row, "rollup_hour", 0)?,
                    crate::pg::get::<f64>(&row, "rollup_hour", 1)?,
                    crate::pg::get::<i64>(&row, "rollup_hour", 2)?,
                    crate::pg::get::<f64>(&row, "rollup_hour", 3)?,
                    crate::pg::get::<f64>(&row, "rollup_hour", 4)?,
                    crate::pg::get::<i64>(&row, "rollup_hour", 5)?,
                ))
            })
            .await
            .unwrap();
        assert_eq!(hour, (3, 3600.0, 180, 10.0, 30.0, 60));
        assert_eq!(
            count(&store, "SELECT sum(count)::int8 FROM rollup_20min").await,
            5
        );
        assert_eq!(
            count(&store, "SELECT sum(count)::int8 FROM rollup_day").await,
            5
        );
        // 2026-01-01 05:00 Almaty: day 2026-01-01, marked for p-1's pm2_5 and no2 and p-2's.
        assert_eq!(
            count(
                &store,
                "SELECT count(*) FROM day_dirty WHERE day = '2026-01-01'"
            )
            .await,
            3
        );
        // The sink queue and the commit log got exactly the new readings, in commit order.
        assert_eq!(count(&store, "SELECT count(*) FROM sink_queue").await, 5);
        let log = store
            .run(true, |pg| commit_log::tail(pg, 0, 100))
            .await
            .unwrap();
        let logged: Vec<(String, usize)> = log
            .iter()
            .map(|(_, c)| (c.post.to_string(), c.readings.len()))
            .collect();
        assert_eq!(
            logged,
            [
                ("p-1".to_string(), 3),
                ("p-1".to_string(), 1),
                ("p-2".to_string(), 1)
            ]
        );
    }

    /// A deterministic stream of pseudo-random numbers (64-bit LCG, high bits).
    struct Lcg(u64);

    impl Lcg {
        fn next(&mut self, n: u64) -> u64 {
            self.0 = self
                .0
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (self.0 >> 33) % n
        }
    }

    type Bucket = (String, String, String);

    /// Every rollup row, keyed (table, post, quantity, start or day).
    async fn rollup_rows(store: &PgStore) -> HashMap<(&'static str, Bucket), Agg> {
        store
            .run(true, |pg| {
                let mut out = HashMap::new();
                for (table, sql) in [
                    ("rollup_20min", "SELECT post, quantity, start::text, count, weighted_sum, covered_s, min, max, 0::int8 FROM rollup_20min"),
                    ("rollup_hour", "SELECT post, quantity, start::text, count, weighted_sum, covered_s, min, max, expected FROM rollup_hour"),
                    ("rollup_day", "SELECT post, quantity, day, count, weighted_sum, covered_s, min, max, expected FROM rollup_day"),
                ] {
                    for row in pg.query(sql, &[])? {
                        let g = |i| crate::pg::get::<String>(&row, table, i);
                        let agg = Agg {
                            count: crate::pg::get(&row, table, 3)?,
                            weighted_sum: crate::pg::get(&row, table, 4)?,
                            covered_s: crate::pg::get(&row, table, 5)?,
                            min: crate::pg::get(&row, table, 6)?,
                            max: crate::pg::get(&row, table, 7)?,
                            expected: crate::pg::get(&row, table, 8)?,
                        };
                        out.insert((table, (g(0)?, g(1)?, g(2)?)), agg);
                    }
                }
                Ok::<_, StoreError>(out)
            })
            .await
            .unwrap()
    }

    /// The rollups recomputed from the `readings` table in one pass.
    async fn recomputed(store: &PgStore) -> HashMap<(&'static str, Bucket), Agg> {
        let rows = store
            .run(true, |pg| {
                let rows = pg.query(
                    "SELECT post, quantity, at, value, flags, window_s FROM readings",
                    &[],
                )?;
                rows.iter()
                    .map(|row| {
                        let post: String = crate::pg::get(row, "readings", 0)?;
                        let quantity: String = crate::pg::get(row, "readings", 1)?;
                        let window_s: Option<i64> = crate::pg::get(row, "readings", 5)?;
                        Ok((
                            PostId::parse(&post).unwrap(),
                            Reading {
                                quantity: Quantity::parse(&quantity).unwrap(),
                                at: UnixSeconds(crate::pg::get(row, "readings", 2)?),
                                value: crate::pg::get(row, "readings", 3)?,
                                flags: QaFlags(
                                    u16::try_from(crate::pg::get::<i64>(row, "readings", 4)?)
                                        .unwrap(),
                                ),
                                window_s: window_s.map(|w| u32::try_from(w).unwrap()),
                            },
                        ))
                    })
                    .collect::<Result<Vec<_>, StoreError>>()
            })
            .await
            .unwrap();
        let mut all = PgRollups::default();
        for (post, reading) in &rows {
            if reading.flags.is_valid_for_means() {
                all.add(post, reading, Duration::from_secs(60));
            }
        }
        let mut out = HashMap::new();
        let key = |p: &str, q: Quantity, s: String| (p.to_string(), q.as_str().to_string(), s);
        for ((p, q, s), mut a) in all.twenty_minutes {
            a.expected = 0;
            out.insert(("rollup_20min", key(p, q, s.to_string())), a);
        }
        for ((p, q, s), a) in all.hours {
            out.insert(("rollup_hour", key(p, q, s.to_string())), a);
        }
        for ((p, q, d), a) in all.days {
            out.insert(("rollup_day", key(p, q, d.label())), a.agg);
        }
        out
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_writers_fed_overlapping_readings_keep_rollups_exact() {
        let Some(url) = test_server::database("pg::writer::two_writers_keep_rollups_exact") else {
            return;
        };
        let (mut a, mut b) = tokio::join!(Harness::start(&url, true), Harness::start(&url, true));
        // Eight posts, three quantities, 600 minutes: each writer gets about two thirds of the
        // messages (so a third go to both, as after a failover), some of its own twice, in
        // bursts that make groups of many; values are multiples of 1/4 and windows whole
        // seconds, so every sum is exact and rollups can be compared for equality.
        let posts: Vec<String> = (1..=8).map(|i| format!("w-{i}")).collect();
        let mut rng = Lcg(7);
        let message = |rng: &mut Lcg, post: &str, minute: i64| {
            let at = T0 + minute * 60;
            let quantities = [Quantity::Pm2_5, Quantity::No2, Quantity::Temperature];
            let rs: Vec<Reading> = quantities
                .iter()
                .map(|&q| Reading {
                    quantity: q,
                    value: rng.next(400) as f64 * 0.25,
                    at: UnixSeconds(at),
                    flags: if rng.next(20) == 0 {
                        QaFlags::STUCK
                    } else {
                        QaFlags::NONE
                    },
                    window_s: (rng.next(10) == 0).then_some(3600),
                })
                .collect();
            readings(post, rs)
        };
        let (mut to_a, mut to_b) = (Vec::new(), Vec::new());
        let mut distinct = 0;
        for minute in 0..600 {
            for post in &posts {
                distinct += 3;
                // Values differ per copy: the store keeps whichever copy committed first.
                match rng.next(3) {
                    0 => to_a.push(message(&mut rng, post, minute)),
                    1 => to_b.push(message(&mut rng, post, minute)),
                    _ => {
                        to_a.push(message(&mut rng, post, minute));
                        to_b.push(message(&mut rng, post, minute));
                    }
                }
                if rng.next(10) == 0 {
                    to_a.push(message(&mut rng, post, minute));
                }
            }
        }
        let (na, nb) = (to_a.len(), to_b.len());
        let feed = |w: &Harness, msgs: Vec<Payload>| {
            let input = w.input.clone().unwrap();
            async move {
                for p in msgs {
                    input
                        .send(Inbound {
                            payload: p,
                            ack: AckToken {
                                packet: None,
                                connection: 0,
                            },
                            received: Instant::now(),
                        })
                        .await
                        .unwrap();
                }
            }
        };
        let (fa, fb) = (feed(&a, to_a), feed(&b, to_b));
        let (ack_a, ack_b) = (a.acked(na), b.acked(nb));
        tokio::join!(fa, fb, ack_a, ack_b);
        let stored =
            a.counter("store_readings_stored_total") + b.counter("store_readings_stored_total");
        let both_stored = (
            a.counter("store_readings_stored_total"),
            b.counter("store_readings_stored_total"),
        );
        let (a_store, _) = tokio::join!(a.finish(), b.finish());
        let store = a_store;
        assert_eq!(
            count(&store, "SELECT count(*) FROM readings").await,
            distinct
        );
        // Each reading was stored by exactly one of the writers, and logged once.
        assert_eq!(stored, distinct as f64, "{both_stored:?}");
        assert!(
            both_stored.0 > 0.0 && both_stored.1 > 0.0,
            "{both_stored:?}"
        );
        let logged = store
            .run(true, |pg| commit_log::tail(pg, 0, 1_000_000))
            .await
            .unwrap();
        let logged: usize = logged.iter().map(|(_, c)| c.readings.len()).sum();
        assert_eq!(logged as i64, distinct);
        assert_eq!(
            count(&store, "SELECT count(*) FROM sink_queue").await,
            distinct
        );
        // Rollups equal their recomputation from the stored readings, bucket for bucket.
        let (have, want) = (rollup_rows(&store).await, recomputed(&store).await);
        assert_eq!(have.len(), want.len());
        for (k, w) in &want {
            assert_eq!(have.get(k), Some(w), "{k:?}");
        }
        let total: i64 = have
            .iter()
            .filter(|((t, _), _)| *t == "rollup_hour")
            .map(|(_, a)| a.count)
            .sum();
        let valid = count(&store, "SELECT count(*) FROM readings WHERE flags & 4 = 0").await;
        assert_eq!(total, valid);
        assert!(valid < distinct, "some readings are flagged invalid");
        // Every local day of every scored series is marked (pm2_5 and no2, not temperature).
        assert_eq!(
            count(&store, "SELECT count(*) FROM day_dirty").await,
            count(
                &store,
                "SELECT count(*) FROM rollup_day WHERE quantity IN ('pm2_5', 'no2')"
            )
            .await
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn nothing_is_acknowledged_until_its_commit() {
        let Some(url) = test_server::database("pg::writer::nothing_is_acknowledged_until_commit")
        else {
            return;
        };
        let mut w = Harness::start(&url, false).await;
        // The store refuses the reading until the constraint goes.
        w.store
            .run(false, |pg| {
                pg.batch_execute(
                    "ALTER TABLE readings ADD CONSTRAINT refuse_big CHECK (value < 1000)",
                )
            })
            .await
            .unwrap();
        w.send(readings("p-1", vec![r(Quantity::Pm10, T0 + 60, 5000.0)]))
            .await;
        tokio::time::timeout(Duration::from_secs(30), async {
            while w.counter("store_commit_failures_total") < 2.0 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .expect("the commit fails and is retried");
        assert!(matches!(
            w.acks.try_recv(),
            Err(mpsc::error::TryRecvError::Empty)
        ));
        assert_eq!(count(&w.store, "SELECT count(*) FROM readings").await, 0);
        w.store
            .run(false, |pg| {
                pg.batch_execute("ALTER TABLE readings DROP CONSTRAINT refuse_big")
            })
            .await
            .unwrap();
        w.acked(1).await;
        // Acknowledged means committed: visible to any other session now.
        assert_eq!(count(&w.store, "SELECT count(*) FROM readings").await, 1);
        assert_eq!(w.counter("store_readings_stored_total"), 1.0);

        // Stopping with a store that refuses: the writer gives up without acknowledging.
        w.store
            .run(false, |pg| {
                pg.batch_execute(
                    "ALTER TABLE readings ADD CONSTRAINT refuse_7777 CHECK (value <> 7777)",
                )
            })
            .await
            .unwrap();
        w.send(readings("p-1", vec![r(Quantity::Pm10, T0 + 120, 7777.0)]))
            .await;
        w.shutdown.cancel();
        let Harness { task, mut acks, .. } = w;
        tokio::time::timeout(Duration::from_secs(30), task)
            .await
            .expect("the writer gives up at shutdown")
            .unwrap();
        assert!(acks.recv().await.is_none(), "no acknowledgement");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn pruning_deletes_only_raw_readings_past_their_retention() {
        let Some(url) = test_server::database("pg::writer::pruning_deletes_only_old_readings")
        else {
            return;
        };
        let mut w = Harness::start(&url, false).await;
        let now = calendar::now().0;
        let day = 86_400;
        for post in ["p-1", "p-2"] {
            w.send(readings(
                post,
                vec![
                    r(Quantity::Pm2_5, now - 10 * day, 1.0),
                    r(Quantity::Pm2_5, now - day, 2.0),
                    r(Quantity::No2, now - 10 * day, 3.0),
                    r(Quantity::No2, now - 60, 4.0),
                ],
            ))
            .await;
        }
        w.acked(2).await;
        let store = w.finish().await;
        let deleted = store
            .run(false, |pg| prune(pg, Duration::from_secs(7 * 86_400)))
            .await
            .unwrap();
        assert_eq!(deleted, 4);
        assert_eq!(count(&store, "SELECT count(*) FROM readings").await, 4);
        assert_eq!(
            count(&store, "SELECT min(value)::int8 FROM readings").await,
            2
        );
        // Rollups stay.
        assert_eq!(
            count(&store, "SELECT sum(count)::int8 FROM rollup_hour").await,
            8
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn acknowledgements_keep_arrival_order_when_group_commits_overlap() {
        let Some(url) = test_server::database("pg::writer::acknowledgements_keep_arrival_order")
        else {
            return;
        };
        let mut w = Harness::start(&url, false).await;
        let input = w.input.clone().unwrap();
        const N: u16 = 20_000;
        // As fast as the channel takes them: groups of thousands, the next one starting while
        // the previous commits.
        let feed = tokio::spawn(async move {
            for n in 0..N {
                let post = format!("o-{}", n % 40);
                let at = T0 + i64::from(n / 40) * 60;
                input
                    .send(Inbound {
                        payload: readings(
                            &post,
                            vec![r(Quantity::Pm2_5, at, 1.0), r(Quantity::No2, at, 2.0)],
                        ),
                        ack: AckToken {
                            packet: Some(taza_domain::pipeline::PacketRef {
                                pkid: n,
                                exactly_once: false,
                            }),
                            connection: 0,
                        },
                        received: Instant::now(),
                    })
                    .await
                    .unwrap();
            }
        });
        for n in 0..N {
            let ack = tokio::time::timeout(Duration::from_secs(60), w.acks.recv())
                .await
                .expect("acknowledged within 60 s")
                .expect("writer alive");
            assert_eq!(ack.packet.map(|p| p.pkid), Some(n));
        }
        feed.await.unwrap();
        assert_eq!(w.counter("store_readings_stored_total"), 2.0 * f64::from(N));
        let store = w.finish().await;
        assert_eq!(
            count(&store, "SELECT count(*) FROM readings").await,
            2 * i64::from(N)
        );
        assert_eq!(
            count(&store, "SELECT sum(count)::int8 FROM rollup_day").await,
            2 * i64::from(N)
        );
    }
}
