//! The leader lease: which replica evaluates alerts, drains the outbox and drains the sink
//! queue. Exactly one does at a time; on SQLite (one machine) the replica always leads
//! ([`Leader::always`]).
//!
//! On PostgreSQL the lease is a session advisory lock ([`LEADER_LOCK`]) held on a connection
//! of its own, taken out of the pool ([`PgStore::session`]) so that it can never be handed to
//! another task with the lock still on it. Followers try `pg_try_advisory_lock` on their own
//! dedicated connection every [`TRY_EVERY`]; the leader checks every [`CHECK_EVERY`] that its
//! connection answers and still holds the lock, and steps down when it does not (within
//! [`CHECK_TIMEOUT`]). The lock lives and dies with the connection: a leader that is SIGKILLed,
//! or loses its connection, frees it at once (for a dead host, within the lease connection's
//! TCP keepalive / user timeout, about 15 s), and a follower leads about a second later.
//!
//! Each new leader bumps a term in `store_meta` ([`TERM_KEY`]); leader-only transactions check
//! it ([`still_leader`]), so a leader that has not yet noticed its loss fails its next write
//! instead of racing its successor for longer than one transaction. What overlap is left (one
//! transaction, an attempt in flight) is absorbed by keys: one open alert per (rule, post),
//! idempotency keys on notifications, InfluxDB's one point per series and time.
//!
//! Reads and writes: the lock, `store_meta` (`leader_term`), `pg_locks`.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::PgStore;
use crate::db::Db;
use crate::store::Store;
use crate::StoreError;

/// Advisory lock key of the lease (the migration lock is `0x7A5A_0001`, the commit log's
/// ordering lock `0x7A5A_0002`).
pub const LEADER_LOCK: i64 = 0x7A5A_0003;
/// How often a follower tries to take the lease.
pub const TRY_EVERY: Duration = Duration::from_secs(1);
/// How often the leader checks that it still holds it.
pub const CHECK_EVERY: Duration = Duration::from_secs(1);
/// A try or a check that takes longer than this failed (the server or the network is gone).
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(3);
/// After losing the lease, how long a leader may still take to notice it and stop starting
/// work: a successor gives attempts its predecessor began at least this (plus their own bound)
/// before it repeats them.
pub const STEP_DOWN_WITHIN: Duration =
    Duration::from_secs(CHECK_EVERY.as_secs() + CHECK_TIMEOUT.as_secs());
/// At shutdown, how long the leader keeps the lease for its workers' last flush before it
/// lets go regardless.
const RELEASE_WAIT: Duration = Duration::from_secs(15);
/// `store_meta` key of the current leader's term.
pub const TERM_KEY: &str = "leader_term";

/// This replica's view of the lease: `Some(term)` while it leads. Clone one per task that
/// works only while leading; the lease is released at shutdown once every clone is dropped
/// (their last flushes done), or after [`RELEASE_WAIT`].
#[derive(Debug, Clone)]
pub struct Leader {
    rx: watch::Receiver<Option<i64>>,
    /// [`Leader::always`] keeps its sender here, so the lease never changes.
    _fixed: Option<Arc<watch::Sender<Option<i64>>>>,
}

impl Leader {
    /// A replica that always leads, in term 0 (SQLite: one machine, one replica).
    pub fn always() -> Self {
        let (tx, rx) = watch::channel(Some(0));
        Self {
            rx,
            _fixed: Some(Arc::new(tx)),
        }
    }

    /// The current term while this replica leads.
    pub fn term(&self) -> Option<i64> {
        *self.rx.borrow()
    }

    /// Whether this replica leads now.
    pub fn is_leader(&self) -> bool {
        self.term().is_some()
    }

    /// Waits until this replica leads; returns the term, or None when the lease task ended
    /// (shutdown).
    pub async fn acquired(&mut self) -> Option<i64> {
        match self.rx.wait_for(Option::is_some).await {
            Ok(term) => *term,
            Err(_) => None,
        }
    }

    /// Waits until term `term` is over (the lease was lost, or the lease task ended).
    pub async fn lost(&mut self, term: i64) {
        let _ = self.rx.wait_for(|t| *t != Some(term)).await;
    }
}

/// Starts the lease for `store`: on PostgreSQL a task (returned, for the supervisor) that
/// tries, holds and releases it; on SQLite none, the replica leads.
pub fn start(store: &Store, shutdown: CancellationToken) -> (Leader, Option<JoinHandle<()>>) {
    match store {
        Store::Sqlite { .. } => (Leader::always(), None),
        Store::Pg(pg) => {
            let (leader, task) = spawn(pg.clone(), shutdown);
            (leader, Some(task))
        }
    }
}

/// Starts the lease task on `pg`. It runs until `shutdown`, then releases the lease once every
/// [`Leader`] clone is dropped (or after [`RELEASE_WAIT`]).
pub fn spawn(pg: PgStore, shutdown: CancellationToken) -> (Leader, JoinHandle<()>) {
    let (tx, rx) = watch::channel(None);
    let task = tokio::spawn(run(pg, tx, shutdown));
    (Leader { rx, _fixed: None }, task)
}

/// True when `term` is still the current leader term (always on SQLite). Call first in a
/// leader-only transaction and refuse to go on when false.
pub fn still_leader(db: &Db<'_>, term: i64) -> Result<bool, StoreError> {
    match db {
        Db::Sqlite(_) => Ok(true),
        Db::Pg(p) => {
            let row = p.query_opt("SELECT value FROM store_meta WHERE key = $1", &[&TERM_KEY])?;
            let current = match row {
                Some(r) => super::get::<String>(&r, "store_meta", 0)?,
                None => return Ok(false),
            };
            Ok(current.parse::<i64>().ok() == Some(term))
        }
    }
}

type Session = deadpool_postgres::ClientWrapper;

async fn run(pg: PgStore, tx: watch::Sender<Option<i64>>, shutdown: CancellationToken) {
    let mut session: Option<Session> = None;
    let mut failures: u32 = 0;
    loop {
        match try_lead(&pg, &mut session).await {
            Ok(Some(term)) => {
                failures = 0;
                tracing::info!(term, "this replica leads: alerts, outbox and sink queue");
                tx.send_replace(Some(term));
                // The session is the lease: it goes (closed, the lock with it) when leading ends.
                if let Some(s) = session.take() {
                    hold(&s, &tx, &shutdown).await;
                }
                tx.send_replace(None);
                if shutdown.is_cancelled() {
                    tracing::info!(term, "leader lease released at shutdown");
                    return;
                }
                tracing::warn!(term, "leader lease lost; this replica follows");
            }
            Ok(None) => failures = 0,
            Err(e) => {
                session = None;
                failures = failures.saturating_add(1);
                // First failure, then at powers of two: an outage is a few lines.
                if failures.is_power_of_two() {
                    tracing::warn!(error = %e, failures, "cannot try the leader lease");
                }
            }
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(TRY_EVERY) => {}
        }
    }
}

/// One try on the follower's dedicated session (opened if needed): the new term when the lock
/// was free, None when another replica holds it.
async fn try_lead(pg: &PgStore, session: &mut Option<Session>) -> Result<Option<i64>, StoreError> {
    let s = match session {
        Some(s) => s,
        None => session.insert(open_session(pg).await?),
    };
    let got: bool = bounded(s.query_one("SELECT pg_try_advisory_lock($1)", &[&LEADER_LOCK]))
        .await?
        .try_get(0)?;
    if !got {
        return Ok(None);
    }
    let term: i64 = bounded(s.query_one(
        "INSERT INTO store_meta (key, value) VALUES ($1, '1')
         ON CONFLICT (key) DO UPDATE SET value = (store_meta.value::bigint + 1)::text
         RETURNING value::bigint",
        &[&TERM_KEY],
    ))
    .await?
    .try_get(0)?;
    Ok(Some(term))
}

/// A connection out of the pool (so it is closed, not recycled, when dropped), whose server
/// side notices a dead peer in seconds rather than after the 2 h of default TCP keepalives.
async fn open_session(pg: &PgStore) -> Result<Session, StoreError> {
    let s = deadpool_postgres::Object::take(pg.session().await?);
    bounded(s.batch_execute(
        "SET tcp_keepalives_idle = 5; SET tcp_keepalives_interval = 2;
         SET tcp_keepalives_count = 3; SET tcp_user_timeout = 10000",
    ))
    .await?;
    Ok(s)
}

/// Holds the lease: checks it every [`CHECK_EVERY`] until a check fails or shutdown (then
/// keeps it until the workers are done, at most [`RELEASE_WAIT`], and unlocks).
async fn hold(s: &Session, tx: &watch::Sender<Option<i64>>, shutdown: &CancellationToken) {
    loop {
        tokio::select! {
            () = shutdown.cancelled() => {
                let _ = tokio::time::timeout(RELEASE_WAIT, tx.closed()).await;
                let _ = bounded(s.execute("SELECT pg_advisory_unlock($1)", &[&LEADER_LOCK])).await;
                return;
            }
            () = tokio::time::sleep(CHECK_EVERY) => {}
        }
        let check = bounded(s.query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_locks
                            WHERE locktype = 'advisory' AND pid = pg_backend_pid() AND granted
                              AND ((classid::bigint << 32) | objid::bigint) = $1 AND objsubid = 1)",
            &[&LEADER_LOCK],
        ))
        .await
        .and_then(|row| Ok(row.try_get::<_, bool>(0)?));
        match check {
            Ok(true) => {}
            Ok(false) => {
                tracing::error!("leader lease check: the lock is no longer held");
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, "leader lease check failed; stepping down");
                return;
            }
        }
    }
}

/// `f` within [`CHECK_TIMEOUT`].
async fn bounded<T>(
    f: impl std::future::Future<Output = Result<T, tokio_postgres::Error>>,
) -> Result<T, StoreError> {
    match tokio::time::timeout(CHECK_TIMEOUT, f).await {
        Ok(r) => Ok(r?),
        Err(_) => Err(StoreError::Pool(format!(
            "no answer within {CHECK_TIMEOUT:?}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    const TAKEOVER: Duration = Duration::from_secs(5);

    /// Waits until `f` holds, at most `within`; panics naming `what` otherwise.
    async fn until(what: &str, within: Duration, f: impl Fn() -> bool) -> Duration {
        let start = Instant::now();
        while !f() {
            assert!(start.elapsed() < within, "{what}: not within {within:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        start.elapsed()
    }

    async fn leader_pid(pg: &PgStore) -> Option<i32> {
        pg.run(true, |p| {
            p.query_opt(
                "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted
                   AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
                   AND ((classid::bigint << 32) | objid::bigint) = $1 AND objsubid = 1",
                &[&LEADER_LOCK],
            )?
            .map(|r| super::super::get::<i32>(&r, "pg_locks", 0))
            .transpose()
        })
        .await
        .unwrap()
    }

    async fn term_is_current(pg: &PgStore, term: i64) -> bool {
        pg.run(true, move |p| still_leader(&Db::Pg(p), term))
            .await
            .unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_of_two_replicas_leads_and_the_other_takes_over_when_it_goes() {
        let Some(url) = super::super::test_server::database("lease::one_of_two_replicas") else {
            return;
        };
        let (a, b) = (
            PgStore::connect(&url).await.unwrap(),
            PgStore::connect(&url).await.unwrap(),
        );
        let (stop_a, stop_b) = (CancellationToken::new(), CancellationToken::new());
        let (la, task_a) = spawn(a.clone(), stop_a.clone());
        let (lb, task_b) = spawn(b.clone(), stop_b.clone());
        until("a leader", TAKEOVER, || la.is_leader() || lb.is_leader()).await;
        // Let the follower try a few times: it must keep following.
        tokio::time::sleep(TRY_EVERY * 3).await;
        assert!(
            la.is_leader() ^ lb.is_leader(),
            "exactly one leads: a {:?}, b {:?}",
            la.term(),
            lb.term()
        );
        let (leader, follower, stop_leader, task_leader, stop_follower, task_follower) =
            if la.is_leader() {
                (la, lb, stop_a, task_a, stop_b, task_b)
            } else {
                (lb, la, stop_b, task_b, stop_a, task_a)
            };
        let first = leader.term().unwrap();
        assert!(term_is_current(&a, first).await);

        // 1. The leader's lease connection is killed (what a SIGKILL or a broken connection
        // does): the follower leads within seconds, in a new term, and the old leader sees it
        // lost the lease.
        let pid = leader_pid(&a).await.unwrap();
        a.run(false, move |p| {
            p.execute("SELECT pg_terminate_backend($1)", &[&pid])
                .map(drop)
        })
        .await
        .unwrap();
        let took = until("the follower leads", TAKEOVER, || follower.is_leader()).await;
        until("the old leader steps down", TAKEOVER, || {
            !leader.is_leader()
        })
        .await;
        let second = follower.term().unwrap();
        assert!(second > first, "{second} > {first}");
        assert!(
            !term_is_current(&a, first).await,
            "the old term is fenced off"
        );
        assert!(term_is_current(&b, second).await);
        eprintln!("takeover after a killed connection: {took:?}");
        // The old leader keeps trying and follows.
        tokio::time::sleep(TRY_EVERY * 3).await;
        assert!(follower.is_leader() && !leader.is_leader());

        // 2. The new leader shuts down (its workers gone): the other leads again.
        let (now_leader, now_follower) = (follower, leader);
        stop_follower.cancel();
        drop(now_leader);
        task_follower.await.unwrap();
        let took = until("the first replica leads again", TAKEOVER, || {
            now_follower.is_leader()
        })
        .await;
        eprintln!("takeover after a shutdown: {took:?}");
        assert!(now_follower.term().unwrap() > second);
        stop_leader.cancel();
        drop(now_follower);
        task_leader.await.unwrap();
        assert_eq!(leader_pid(&a).await, None, "released at shutdown");
    }

    #[tokio::test]
    async fn a_sqlite_replica_always_leads_in_term_zero() {
        let mut l = Leader::always();
        assert_eq!(l.term(), Some(0));
        assert_eq!(l.acquired().await, Some(0));
        // Never lost.
        let lost = tokio::time::timeout(Duration::from_millis(50), l.lost(0)).await;
        assert!(lost.is_err());
        let conn = crate::schema::in_memory();
        assert!(still_leader(&Db::Sqlite(&conn), 0).unwrap());
    }
}
