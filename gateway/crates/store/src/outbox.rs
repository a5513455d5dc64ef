//! The durable notification outbox: the `outbox` table in the gateway's SQLite file.
//!
//! The alert lifecycle writes a [`Notification`] with [`enqueue`] in the same transaction that
//! changes the alert, so a notification exists exactly when its alert change committed. The
//! delivery worker ([`super::deliver`]) is the only other writer: it claims due `pending` rows,
//! sends them and marks them `delivered`, schedules a retry, or moves them to `dead`. Rows are
//! never deleted here; [`list`] shows them (dead letters included) and [`requeue`] gives a dead
//! letter another round.
//!
//! Delivery is at least once: a row is claimed (attempt counted, lease set) before it is sent, so
//! a crash at any point leaves it `pending` and it is sent again. Every channel carries the row's
//! idempotency key so a receiver can drop that repeat (see [`super::channels`]).

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use protocol::UnixSeconds;
use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSql, ToSqlOutput, ValueRef};
use rusqlite::{params, Connection, OptionalExtension, Transaction};
use serde::{Deserialize, Serialize};

use crate::StoreError;

/// The table. Times ending in `_ms` are Unix milliseconds (retries in tests are 100 ms apart);
/// `created_at`/`delivered_at` are Unix seconds like every other `_at` column in the store.
pub const SCHEMA: &str = r#"
CREATE TABLE outbox (
    id              INTEGER PRIMARY KEY,
    key             TEXT NOT NULL UNIQUE,      -- idempotency key, sent with every attempt
    alert_id        INTEGER NOT NULL,
    channel         TEXT NOT NULL,             -- webhook | telegram | email
    recipient       TEXT NOT NULL,             -- webhook name | Telegram chat id | e-mail address
    subject         TEXT NOT NULL,
    text            TEXT NOT NULL,
    payload         TEXT NOT NULL,             -- JSON body for webhooks
    state           TEXT NOT NULL DEFAULT 'pending', -- pending | delivered | dead
    attempts        INTEGER NOT NULL DEFAULT 0,      -- attempts started (counted at claim)
    next_attempt_ms INTEGER NOT NULL,          -- due time of the next attempt
    lease_until_ms  INTEGER,                   -- set while an attempt is in flight
    last_error      TEXT,                      -- why the last attempt failed (never a secret)
    created_at      INTEGER NOT NULL,
    delivered_at    INTEGER
);
CREATE INDEX outbox_due ON outbox (state, next_attempt_ms, id);
"#;

/// A delivery channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Channel {
    /// HTTP POST of JSON to a configured URL.
    Webhook,
    /// Telegram Bot API `sendMessage`.
    Telegram,
    /// E-mail over SMTP.
    Email,
}

impl Channel {
    /// Every channel (metrics register a series for each).
    pub const ALL: [Channel; 3] = [Channel::Webhook, Channel::Telegram, Channel::Email];

    /// Column value and metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Webhook => "webhook",
            Self::Telegram => "telegram",
            Self::Email => "email",
        }
    }

    /// From its column value / label.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

impl ToSql for Channel {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(self.as_str().into())
    }
}

impl FromSql for Channel {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        let s = value.as_str()?;
        Self::parse(s).ok_or_else(|| FromSqlError::Other(format!("unknown channel {s:?}").into()))
    }
}

/// Where a row is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OutboxState {
    /// Waiting for its first attempt or a retry (or in flight).
    Pending,
    /// A receiver accepted it.
    Delivered,
    /// Given up: a permanent refusal or `max_attempts` failures. `last_error` says why.
    Dead,
}

impl OutboxState {
    /// Every state.
    pub const ALL: [OutboxState; 3] = [Self::Pending, Self::Delivered, Self::Dead];

    /// From its column value (`pending`, `delivered`, `dead`).
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == s)
    }

    /// Column value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Delivered => "delivered",
            Self::Dead => "dead",
        }
    }
}

impl ToSql for OutboxState {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(self.as_str().into())
    }
}

impl FromSql for OutboxState {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        match value.as_str()? {
            "pending" => Ok(Self::Pending),
            "delivered" => Ok(Self::Delivered),
            "dead" => Ok(Self::Dead),
            s => Err(FromSqlError::Other(
                format!("unknown outbox state {s:?}").into(),
            )),
        }
    }
}

/// One message to one recipient on one channel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notification {
    /// Idempotency key, unique in the outbox: `"{alert_id}:{event}:{channel}:{recipient}"`.
    pub key: String,
    /// The alert it is about.
    pub alert_id: i64,
    /// How it travels.
    pub channel: Channel,
    /// Webhook name (from config) | Telegram chat id | e-mail address.
    pub recipient: String,
    /// One line: the e-mail subject, the first line of the Telegram message.
    pub subject: String,
    /// Human text in the recipient's language, with the acknowledge link.
    pub text: String,
    /// What a webhook receives (an object gets an `idempotency_key` field added).
    pub payload: serde_json::Value,
}

/// A row as the API and tests see it (the message body is left out: it can be long).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OutboxRow {
    /// Row id.
    pub id: i64,
    /// Idempotency key.
    pub key: String,
    /// The alert.
    pub alert_id: i64,
    /// Channel.
    pub channel: Channel,
    /// Recipient.
    pub recipient: String,
    /// State.
    pub state: OutboxState,
    /// Attempts started so far.
    pub attempts: u32,
    /// When the next attempt is due, Unix seconds (rounded down); meaningful while pending.
    pub next_attempt_at: i64,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
    /// When it was enqueued, Unix seconds.
    pub created_at: i64,
    /// When a receiver accepted it, Unix seconds.
    pub delivered_at: Option<i64>,
}

/// Queues `n` inside the caller's transaction. Returns false when a row with the same key is
/// already there (whatever its state): the notification exists once.
pub fn enqueue(tx: &Transaction<'_>, n: &Notification, now: UnixSeconds) -> rusqlite::Result<bool> {
    let payload = n.payload.to_string();
    let inserted = tx
        .prepare_cached(
            "INSERT INTO outbox (key, alert_id, channel, recipient, subject, text, payload,
                                 next_attempt_ms, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
             ON CONFLICT (key) DO NOTHING",
        )?
        .execute(params![
            n.key,
            n.alert_id,
            n.channel,
            n.recipient,
            n.subject,
            n.text,
            payload,
            now.0.saturating_mul(1000),
            now.0
        ])?;
    Ok(inserted == 1)
}

/// Rows newest first, optionally of one state.
pub fn list(
    conn: &Connection,
    state: Option<OutboxState>,
    limit: usize,
) -> rusqlite::Result<Vec<OutboxRow>> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let mut stmt = conn.prepare_cached(
        "SELECT id, key, alert_id, channel, recipient, state, attempts, next_attempt_ms,
                last_error, created_at, delivered_at
         FROM outbox WHERE ?1 IS NULL OR state = ?1 ORDER BY id DESC LIMIT ?2",
    )?;
    let rows = stmt.query_map(params![state, limit], |r| {
        Ok(OutboxRow {
            id: r.get(0)?,
            key: r.get(1)?,
            alert_id: r.get(2)?,
            channel: r.get(3)?,
            recipient: r.get(4)?,
            state: r.get(5)?,
            attempts: r.get(6)?,
            next_attempt_at: r.get::<_, i64>(7)?.div_euclid(1000),
            last_error: r.get(8)?,
            created_at: r.get(9)?,
            delivered_at: r.get(10)?,
        })
    })?;
    rows.collect()
}

/// One channel's undelivered notifications, for `/healthz`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ChannelBacklog {
    /// Waiting for a first or a further attempt.
    pub pending: i64,
    /// Of those, how many already failed at least once (retrying).
    pub retrying: i64,
    /// Given up on: dead letters waiting for an operator (`GET /api/v1/outbox?state=dead`).
    pub dead: i64,
    /// The error of the newest undelivered row that has one (never a secret).
    pub last_error: Option<String>,
}

/// Pending, retrying and dead counts of `channel`, and its newest delivery error.
pub fn backlog(conn: &Connection, channel: Channel) -> rusqlite::Result<ChannelBacklog> {
    let (pending, retrying, dead) = conn
        .prepare_cached(
            "SELECT coalesce(sum(state = 'pending'), 0),
                    coalesce(sum(state = 'pending' AND last_error IS NOT NULL), 0),
                    coalesce(sum(state = 'dead'), 0)
             FROM outbox WHERE channel = ?1 AND state IN ('pending', 'dead')",
        )?
        .query_row([channel], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
    let last_error = conn
        .prepare_cached(
            "SELECT last_error FROM outbox
             WHERE channel = ?1 AND state IN ('pending', 'dead') AND last_error IS NOT NULL
             ORDER BY id DESC LIMIT 1",
        )?
        .query_row([channel], |r| r.get(0))
        .optional()?;
    Ok(ChannelBacklog {
        pending,
        retrying,
        dead,
        last_error,
    })
}

/// Gives a dead letter a fresh round of attempts, due now (an operator fixed the receiver).
/// Returns false when `id` is not a dead row.
pub fn requeue(tx: &Transaction<'_>, id: i64, now: UnixSeconds) -> rusqlite::Result<bool> {
    let changed = tx.execute(
        "UPDATE outbox SET state = 'pending', attempts = 0, next_attempt_ms = ?2,
                lease_until_ms = NULL
         WHERE id = ?1 AND state = 'dead'",
        params![id, now.0.saturating_mul(1000)],
    )?;
    Ok(changed == 1)
}

// ---- The delivery worker's side (crate-private: only `deliver` moves rows). ----

/// A claimed row with what a channel needs to send it.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub id: i64,
    pub attempts: u32,
    pub n: Notification,
}

/// Clears leases left by a process that died mid-attempt, so those rows are due at once: only
/// one delivery worker runs per database, so a lease seen at start-up is stale.
pub fn release_stale_leases(conn: &Connection) -> rusqlite::Result<usize> {
    conn.execute(
        "UPDATE outbox SET lease_until_ms = NULL, next_attempt_ms = MIN(next_attempt_ms, ?1)
         WHERE state = 'pending' AND lease_until_ms IS NOT NULL",
        params![taza_domain::calendar::now().0.saturating_mul(1000)],
    )
}

/// Claims up to `limit` due rows, oldest first: counts the attempt and sets a lease (in one
/// transaction) before anything is sent, so the attempt survives a crash.
pub fn claim_due(
    conn: &mut Connection,
    now_ms: i64,
    lease_ms: i64,
    limit: usize,
) -> rusqlite::Result<Vec<Claimed>> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let mut claimed = Vec::new();
    {
        let mut select = tx.prepare_cached(
            "SELECT id, attempts, key, alert_id, channel, recipient, subject, text, payload
             FROM outbox
             WHERE state = 'pending' AND next_attempt_ms <= ?1
               AND (lease_until_ms IS NULL OR lease_until_ms <= ?1)
             ORDER BY next_attempt_ms, id LIMIT ?2",
        )?;
        let rows = select.query_map(
            params![now_ms, i64::try_from(limit).unwrap_or(i64::MAX)],
            |r| {
                let payload: String = r.get(8)?;
                Ok(Claimed {
                    id: r.get(0)?,
                    attempts: r.get::<_, u32>(1)?.saturating_add(1),
                    n: Notification {
                        key: r.get(2)?,
                        alert_id: r.get(3)?,
                        channel: r.get(4)?,
                        recipient: r.get(5)?,
                        subject: r.get(6)?,
                        text: r.get(7)?,
                        // A payload that no longer parses is still sent, as a JSON string.
                        payload: serde_json::from_str(&payload)
                            .unwrap_or(serde_json::Value::String(payload)),
                    },
                })
            },
        )?;
        for row in rows {
            claimed.push(row?);
        }
        let mut lease = tx
            .prepare_cached("UPDATE outbox SET attempts = ?2, lease_until_ms = ?3 WHERE id = ?1")?;
        for c in &claimed {
            lease.execute(params![c.id, c.attempts, now_ms.saturating_add(lease_ms)])?;
        }
    }
    tx.commit()?;
    Ok(claimed)
}

/// Earliest time a pending row becomes due (its lease included), Unix milliseconds.
pub fn next_due_ms(conn: &Connection) -> rusqlite::Result<Option<i64>> {
    conn.prepare_cached(
        "SELECT MIN(MAX(next_attempt_ms, COALESCE(lease_until_ms, 0)))
         FROM outbox WHERE state = 'pending'",
    )?
    .query_row([], |r| r.get::<_, Option<i64>>(0))
    .optional()
    .map(Option::flatten)
}

/// What became of one attempt.
#[derive(Debug, Clone)]
pub enum Settle {
    Delivered { at: UnixSeconds },
    Retry { next_attempt_ms: i64, error: String },
    Dead { error: String },
}

/// Records the outcome of an attempt and releases the lease.
pub fn settle(conn: &Connection, id: i64, outcome: &Settle) -> rusqlite::Result<()> {
    match outcome {
        Settle::Delivered { at } => conn.execute(
            "UPDATE outbox SET state = 'delivered', delivered_at = ?2, lease_until_ms = NULL,
                    last_error = NULL
             WHERE id = ?1",
            params![id, at.0],
        ),
        Settle::Retry {
            next_attempt_ms,
            error,
        } => conn.execute(
            "UPDATE outbox SET next_attempt_ms = ?2, last_error = ?3, lease_until_ms = NULL
             WHERE id = ?1",
            params![id, next_attempt_ms, error],
        ),
        Settle::Dead { error } => conn.execute(
            "UPDATE outbox SET state = 'dead', last_error = ?2, lease_until_ms = NULL
             WHERE id = ?1",
            params![id, error],
        ),
    }
    .map(drop)
}

/// The delivery worker's write connection (the pragmas of [`crate::open_connection`]), used on
/// the blocking pool: the worker's every outbox step as one async call.
#[derive(Clone)]
pub struct DeliveryDb(Arc<Mutex<Connection>>);

impl std::fmt::Debug for DeliveryDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeliveryDb").finish_non_exhaustive()
    }
}

impl DeliveryDb {
    /// Opens the database at `path` and releases the leases a dead process left
    /// ([`release_stale_leases`]): call once per worker start.
    pub async fn open(path: PathBuf) -> Result<Self, StoreError> {
        tokio::task::spawn_blocking(move || {
            let conn = crate::open_connection(&path)?;
            release_stale_leases(&conn)?;
            Ok(Self(Arc::new(Mutex::new(conn))))
        })
        .await
        .map_err(|e| StoreError::Task(e.to_string()))?
    }

    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, StoreError> {
        let conn = Arc::clone(&self.0);
        tokio::task::spawn_blocking(move || {
            let mut conn = conn
                .lock()
                .map_err(|_| StoreError::Task("outbox connection poisoned".into()))?;
            Ok(f(&mut conn)?)
        })
        .await
        .map_err(|e| StoreError::Task(e.to_string()))?
    }

    /// [`claim_due`] on the blocking pool.
    pub async fn claim_due(
        &self,
        now_ms: i64,
        lease_ms: i64,
        limit: usize,
    ) -> Result<Vec<Claimed>, StoreError> {
        self.run(move |c| claim_due(c, now_ms, lease_ms, limit))
            .await
    }

    /// [`next_due_ms`] on the blocking pool.
    pub async fn next_due_ms(&self) -> Result<Option<i64>, StoreError> {
        self.run(|c| next_due_ms(c)).await
    }

    /// [`settle`] on the blocking pool.
    pub async fn settle(&self, id: i64, outcome: Settle) -> Result<(), StoreError> {
        self.run(move |c| settle(c, id, &outcome)).await
    }
}

/// This module's tables on PostgreSQL ([`crate::pg::schema`]).
pub const PG_SCHEMA: &str = "";
