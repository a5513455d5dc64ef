//! The durable notification outbox: the `outbox` table (SQLite in the data dir, or the
//! PostgreSQL server replicas share).
//!
//! The alert lifecycle writes a [`Notification`] with [`enqueue`] in the same transaction that
//! changes the alert, so a notification exists exactly when its alert change committed. The
//! delivery worker (`taza_alert::deliver`, on the leader only) is the only other writer: it
//! claims due `pending` rows, sends them and marks them `delivered`, schedules a retry, or moves
//! them to `dead`. Rows are never deleted here; [`list`] shows them (dead letters included) and
//! [`requeue`] gives a dead letter another round.
//!
//! Delivery is at least once: a row is claimed (attempt counted, lease set) before it is sent, so
//! a crash at any point leaves it `pending` and it is sent again. Every channel carries the row's
//! idempotency key so a receiver can drop that repeat (see `taza_alert::channels`).
//!
//! Claims on PostgreSQL take due rows `FOR UPDATE SKIP LOCKED` and lease them in the same
//! statement, so even two workers (a leader that has not yet noticed it lost its lease, and its
//! successor) never claim one row together.

use protocol::UnixSeconds;
use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSql, ToSqlOutput, ValueRef};
use rusqlite::{params, OptionalExtension};
use serde::{Deserialize, Serialize};

use crate::db::Db;
use crate::pg;
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

fn corrupt(id: i64, what: String) -> StoreError {
    StoreError::Corrupt {
        table: "outbox",
        key: id.to_string(),
        what,
    }
}

fn pg_channel(r: &pg::Row, id: i64, idx: usize) -> Result<Channel, StoreError> {
    let s: String = pg::get(r, "outbox", idx)?;
    Channel::parse(&s).ok_or_else(|| corrupt(id, format!("unknown channel {s:?}")))
}

fn pg_state(r: &pg::Row, id: i64, idx: usize) -> Result<OutboxState, StoreError> {
    let s: String = pg::get(r, "outbox", idx)?;
    OutboxState::parse(&s).ok_or_else(|| corrupt(id, format!("unknown outbox state {s:?}")))
}

/// A stored payload back to JSON; one that no longer parses is still sent, as a JSON string.
fn payload(text: String) -> serde_json::Value {
    serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text))
}

/// Queues `n` inside the caller's transaction. Returns false when a row with the same key is
/// already there (whatever its state): the notification exists once.
pub fn enqueue(db: &Db<'_>, n: &Notification, now: UnixSeconds) -> Result<bool, StoreError> {
    let payload = n.payload.to_string();
    let due_ms = now.0.saturating_mul(1000);
    let inserted = match db {
        Db::Sqlite(c) => c
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
                due_ms,
                now.0
            ])? as u64,
        Db::Pg(p) => p.execute(
            "INSERT INTO outbox (key, alert_id, channel, recipient, subject, text, payload,
                                 next_attempt_ms, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
             ON CONFLICT (key) DO NOTHING",
            &[
                &n.key,
                &n.alert_id,
                &n.channel.as_str(),
                &n.recipient,
                &n.subject,
                &n.text,
                &payload,
                &due_ms,
                &now.0,
            ],
        )?,
    };
    Ok(inserted == 1)
}

/// Rows newest first, optionally of one state.
pub fn list(
    db: &Db<'_>,
    state: Option<OutboxState>,
    limit: usize,
) -> Result<Vec<OutboxRow>, StoreError> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    match db {
        Db::Sqlite(c) => {
            let mut stmt = c.prepare_cached(
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
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        }
        Db::Pg(p) => p
            .query(
                "SELECT id, key, alert_id, channel, recipient, state, attempts, next_attempt_ms,
                        last_error, created_at, delivered_at
                 FROM outbox WHERE $1::text IS NULL OR state = $1 ORDER BY id DESC LIMIT $2",
                &[&state.map(OutboxState::as_str), &limit],
            )?
            .iter()
            .map(|r| {
                let id: i64 = pg::get(r, "outbox", 0)?;
                Ok(OutboxRow {
                    id,
                    key: pg::get(r, "outbox", 1)?,
                    alert_id: pg::get(r, "outbox", 2)?,
                    channel: pg_channel(r, id, 3)?,
                    recipient: pg::get(r, "outbox", 4)?,
                    state: pg_state(r, id, 5)?,
                    attempts: pg::get_int::<u32>(r, "outbox", 6)?,
                    next_attempt_at: pg::get::<i64>(r, "outbox", 7)?.div_euclid(1000),
                    last_error: pg::get(r, "outbox", 8)?,
                    created_at: pg::get(r, "outbox", 9)?,
                    delivered_at: pg::get(r, "outbox", 10)?,
                })
            })
            .collect(),
    }
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
pub fn backlog(db: &Db<'_>, channel: Channel) -> Result<ChannelBacklog, StoreError> {
    match db {
        Db::Sqlite(c) => {
            let (pending, retrying, dead) = c
                .prepare_cached(
                    "SELECT coalesce(sum(state = 'pending'), 0),
                            coalesce(sum(state = 'pending' AND last_error IS NOT NULL), 0),
                            coalesce(sum(state = 'dead'), 0)
                     FROM outbox WHERE channel = ?1 AND state IN ('pending', 'dead')",
                )?
                .query_row([channel], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
            let last_error = c
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
        Db::Pg(p) => {
            let counts = p.query_one(
                "SELECT count(*) FILTER (WHERE state = 'pending'),
                        count(*) FILTER (WHERE state = 'pending' AND last_error IS NOT NULL),
                        count(*) FILTER (WHERE state = 'dead')
                 FROM outbox WHERE channel = $1 AND state IN ('pending', 'dead')",
                &[&channel.as_str()],
            )?;
            let last_error = p
                .query_opt(
                    "SELECT last_error FROM outbox
                     WHERE channel = $1 AND state IN ('pending', 'dead') AND last_error IS NOT NULL
                     ORDER BY id DESC LIMIT 1",
                    &[&channel.as_str()],
                )?
                .map(|r| pg::get(&r, "outbox", 0))
                .transpose()?;
            Ok(ChannelBacklog {
                pending: pg::get(&counts, "outbox", 0)?,
                retrying: pg::get(&counts, "outbox", 1)?,
                dead: pg::get(&counts, "outbox", 2)?,
                last_error,
            })
        }
    }
}

/// Gives a dead letter a fresh round of attempts, due now (an operator fixed the receiver).
/// Returns false when `id` is not a dead row.
pub fn requeue(db: &Db<'_>, id: i64, now: UnixSeconds) -> Result<bool, StoreError> {
    let due_ms = now.0.saturating_mul(1000);
    let changed = match db {
        Db::Sqlite(c) => c.execute(
            "UPDATE outbox SET state = 'pending', attempts = 0, next_attempt_ms = ?2,
                    lease_until_ms = NULL
             WHERE id = ?1 AND state = 'dead'",
            params![id, due_ms],
        )? as u64,
        Db::Pg(p) => p.execute(
            "UPDATE outbox SET state = 'pending', attempts = 0, next_attempt_ms = $2,
                    lease_until_ms = NULL
             WHERE id = $1 AND state = 'dead'",
            &[&id, &due_ms],
        )?,
    };
    Ok(changed == 1)
}

// ---- The delivery worker's side (only `taza_alert::deliver` moves rows). ----

/// A claimed row with what a channel needs to send it.
#[derive(Debug, Clone)]
pub struct Claimed {
    /// Row id.
    pub id: i64,
    /// Attempts started, this one included.
    pub attempts: u32,
    /// What to send.
    pub n: Notification,
}

/// Ends the leases of a worker that is gone, at `now_ms + grace_ms` at the latest, so its
/// in-flight rows become due again. A new delivery worker calls this when it starts (SQLite:
/// one worker per database, so every lease seen then is stale and `grace_ms` is 0) or takes
/// over from another replica (PostgreSQL: the predecessor may still be finishing an attempt
/// until it notices it lost the lease, so `grace_ms` covers that and one attempt). Returns how
/// many leases were shortened.
pub fn release_stale_leases(db: &Db<'_>, now_ms: i64, grace_ms: i64) -> Result<u64, StoreError> {
    let until = now_ms.saturating_add(grace_ms);
    match db {
        Db::Sqlite(c) => Ok(c.execute(
            "UPDATE outbox SET lease_until_ms = ?1, next_attempt_ms = MIN(next_attempt_ms, ?1)
             WHERE state = 'pending' AND lease_until_ms > ?1",
            params![until],
        )? as u64),
        Db::Pg(p) => p.execute(
            "UPDATE outbox SET lease_until_ms = $1, next_attempt_ms = LEAST(next_attempt_ms, $1)
             WHERE state = 'pending' AND lease_until_ms > $1",
            &[&until],
        ),
    }
}

/// Claims up to `limit` due rows, oldest first: counts the attempt and sets a lease (in the
/// caller's transaction, which must commit before anything is sent), so the attempt survives a
/// crash.
pub fn claim_due(
    db: &Db<'_>,
    now_ms: i64,
    lease_ms: i64,
    limit: usize,
) -> Result<Vec<Claimed>, StoreError> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let lease_until = now_ms.saturating_add(lease_ms);
    match db {
        Db::Sqlite(c) => {
            let mut claimed = Vec::new();
            let mut select = c.prepare_cached(
                "SELECT id, attempts, key, alert_id, channel, recipient, subject, text, payload
                 FROM outbox
                 WHERE state = 'pending' AND next_attempt_ms <= ?1
                   AND (lease_until_ms IS NULL OR lease_until_ms <= ?1)
                 ORDER BY next_attempt_ms, id LIMIT ?2",
            )?;
            let rows = select.query_map(params![now_ms, limit], |r| {
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
                        payload: payload(r.get(8)?),
                    },
                })
            })?;
            for row in rows {
                claimed.push(row?);
            }
            let mut lease = c.prepare_cached(
                "UPDATE outbox SET attempts = ?2, lease_until_ms = ?3 WHERE id = ?1",
            )?;
            for row in &claimed {
                lease.execute(params![row.id, row.attempts, lease_until])?;
            }
            Ok(claimed)
        }
        Db::Pg(p) => {
            // Rows another worker holds locked are skipped, not waited for; its lease then
            // keeps them out of later claims.
            let rows = p.query(
                "UPDATE outbox o SET attempts = o.attempts + 1, lease_until_ms = $3
                 FROM (SELECT id FROM outbox
                       WHERE state = 'pending' AND next_attempt_ms <= $1
                         AND (lease_until_ms IS NULL OR lease_until_ms <= $1)
                       ORDER BY next_attempt_ms, id LIMIT $2
                       FOR UPDATE SKIP LOCKED) due
                 WHERE o.id = due.id
                 RETURNING o.id, o.attempts, o.key, o.alert_id, o.channel, o.recipient, o.subject,
                           o.text, o.payload, o.next_attempt_ms",
                &[&now_ms, &limit, &lease_until],
            )?;
            let mut claimed = rows
                .iter()
                .map(|r| {
                    let id: i64 = pg::get(r, "outbox", 0)?;
                    let due: i64 = pg::get(r, "outbox", 9)?;
                    let c = Claimed {
                        id,
                        attempts: pg::get_int::<u32>(r, "outbox", 1)?,
                        n: Notification {
                            key: pg::get(r, "outbox", 2)?,
                            alert_id: pg::get(r, "outbox", 3)?,
                            channel: pg_channel(r, id, 4)?,
                            recipient: pg::get(r, "outbox", 5)?,
                            subject: pg::get(r, "outbox", 6)?,
                            text: pg::get(r, "outbox", 7)?,
                            payload: payload(pg::get(r, "outbox", 8)?),
                        },
                    };
                    Ok((due, c))
                })
                .collect::<Result<Vec<_>, StoreError>>()?;
            // RETURNING keeps no order: oldest due first, as on SQLite.
            claimed.sort_by_key(|(due, c)| (*due, c.id));
            Ok(claimed.into_iter().map(|(_, c)| c).collect())
        }
    }
}

/// Earliest time a pending row becomes due (its lease included), Unix milliseconds.
pub fn next_due_ms(db: &Db<'_>) -> Result<Option<i64>, StoreError> {
    match db {
        Db::Sqlite(c) => Ok(c
            .prepare_cached(
                "SELECT MIN(MAX(next_attempt_ms, COALESCE(lease_until_ms, 0)))
                 FROM outbox WHERE state = 'pending'",
            )?
            .query_row([], |r| r.get::<_, Option<i64>>(0))
            .optional()?
            .flatten()),
        Db::Pg(p) => pg::get(
            &p.query_one(
                "SELECT min(greatest(next_attempt_ms, coalesce(lease_until_ms, 0)))
                 FROM outbox WHERE state = 'pending'",
                &[],
            )?,
            "outbox",
            0,
        ),
    }
}

/// What became of one attempt.
#[derive(Debug, Clone)]
pub enum Settle {
    /// A receiver accepted it.
    Delivered {
        /// When.
        at: UnixSeconds,
    },
    /// Try again at `next_attempt_ms`.
    Retry {
        /// When the next attempt is due, Unix milliseconds.
        next_attempt_ms: i64,
        /// Why this one failed.
        error: String,
    },
    /// Given up.
    Dead {
        /// Why.
        error: String,
    },
}

/// Records the outcome of an attempt and releases the lease. Only a `pending` row is changed:
/// a late record from a worker that lost its lease cannot undo its successor's delivery.
pub fn settle(db: &Db<'_>, id: i64, outcome: &Settle) -> Result<(), StoreError> {
    match (db, outcome) {
        (Db::Sqlite(c), Settle::Delivered { at }) => c.execute(
            "UPDATE outbox SET state = 'delivered', delivered_at = ?2, lease_until_ms = NULL,
                    last_error = NULL
             WHERE id = ?1 AND state = 'pending'",
            params![id, at.0],
        )?,
        (
            Db::Sqlite(c),
            Settle::Retry {
                next_attempt_ms,
                error,
            },
        ) => c.execute(
            "UPDATE outbox SET next_attempt_ms = ?2, last_error = ?3, lease_until_ms = NULL
             WHERE id = ?1 AND state = 'pending'",
            params![id, next_attempt_ms, error],
        )?,
        (Db::Sqlite(c), Settle::Dead { error }) => c.execute(
            "UPDATE outbox SET state = 'dead', last_error = ?2, lease_until_ms = NULL
             WHERE id = ?1 AND state = 'pending'",
            params![id, error],
        )?,
        (Db::Pg(p), Settle::Delivered { at }) => p.execute(
            "UPDATE outbox SET state = 'delivered', delivered_at = $2, lease_until_ms = NULL,
                    last_error = NULL
             WHERE id = $1 AND state = 'pending'",
            &[&id, &at.0],
        )? as usize,
        (
            Db::Pg(p),
            Settle::Retry {
                next_attempt_ms,
                error,
            },
        ) => p.execute(
            "UPDATE outbox SET next_attempt_ms = $2, last_error = $3, lease_until_ms = NULL
             WHERE id = $1 AND state = 'pending'",
            &[&id, next_attempt_ms, error],
        )? as usize,
        (Db::Pg(p), Settle::Dead { error }) => p.execute(
            "UPDATE outbox SET state = 'dead', last_error = $2, lease_until_ms = NULL
             WHERE id = $1 AND state = 'pending'",
            &[&id, error],
        )? as usize,
    };
    Ok(())
}

/// This module's table on PostgreSQL ([`crate::pg::schema`]): SQLite's, with a BIGSERIAL id.
pub const PG_SCHEMA: &str = r#"
    CREATE TABLE outbox (
        id              BIGSERIAL PRIMARY KEY,
        key             TEXT NOT NULL UNIQUE,
        alert_id        BIGINT NOT NULL,
        channel         TEXT NOT NULL,
        recipient       TEXT NOT NULL,
        subject         TEXT NOT NULL,
        text            TEXT NOT NULL,
        payload         TEXT NOT NULL,
        state           TEXT NOT NULL DEFAULT 'pending',
        attempts        BIGINT NOT NULL DEFAULT 0,
        next_attempt_ms BIGINT NOT NULL,
        lease_until_ms  BIGINT,
        last_error      TEXT,
        created_at      BIGINT NOT NULL,
        delivered_at    BIGINT
    );
    CREATE INDEX outbox_due ON outbox (state, next_attempt_ms, id);
"#;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pg::PgStore;

    fn note(alert_id: i64, channel: Channel, recipient: &str) -> Notification {
        Notification {
            key: format!("{alert_id}:fired:1:{}:{recipient}", channel.as_str()),
            alert_id,
            channel,
            recipient: recipient.into(),
            subject: "s".into(),
            text: "t".into(),
            payload: serde_json::json!({"alert_id": alert_id}),
        }
    }
    use crate::pg::test_server::{on_postgres, on_sqlite};

    const NOW: i64 = 1_767_225_600;

    fn a_notification_is_queued_once_claimed_leased_and_settled(db: &Db<'_>) {
        let now = UnixSeconds(NOW);
        let ms = NOW * 1000;
        assert!(enqueue(db, &note(1, Channel::Webhook, "ops"), now).unwrap());
        assert!(
            !enqueue(db, &note(1, Channel::Webhook, "ops"), now).unwrap(),
            "same key: queued once"
        );
        assert!(enqueue(db, &note(2, Channel::Email, "a@b.kz"), now).unwrap());
        assert!(enqueue(db, &note(3, Channel::Webhook, "ops"), UnixSeconds(NOW + 5)).unwrap());
        assert_eq!(next_due_ms(db).unwrap(), Some(ms));

        // Oldest due first; the one due later is left.
        let claimed = claim_due(db, ms, 60_000, 10).unwrap();
        let ids: Vec<i64> = claimed.iter().map(|c| c.n.alert_id).collect();
        assert_eq!(ids, [1, 2]);
        assert_eq!(claimed[0].attempts, 1);
        assert_eq!(claimed[0].n, note(1, Channel::Webhook, "ops"));
        // Leased: not claimed again, and due when the lease ends.
        assert!(claim_due(db, ms + 1, 60_000, 10).unwrap().is_empty());
        assert_eq!(next_due_ms(db).unwrap(), Some(ms + 5000));
        let third = claim_due(db, ms + 5000, 60_000, 1).unwrap();
        assert_eq!(third.len(), 1);
        assert_eq!(next_due_ms(db).unwrap(), Some(ms + 60_000));

        let (hook, mail) = (claimed[0].id, claimed[1].id);
        settle(db, hook, &Settle::Delivered { at: now }).unwrap();
        settle(
            db,
            mail,
            &Settle::Retry {
                next_attempt_ms: ms + 2000,
                error: "connect: refused".into(),
            },
        )
        .unwrap();
        let b = backlog(db, Channel::Email).unwrap();
        assert_eq!(
            b,
            ChannelBacklog {
                pending: 1,
                retrying: 1,
                dead: 0,
                last_error: Some("connect: refused".into())
            }
        );
        let again = claim_due(db, ms + 2000, 60_000, 10).unwrap();
        assert_eq!(
            again.iter().map(|c| (c.id, c.attempts)).collect::<Vec<_>>(),
            [(mail, 2)]
        );
        settle(
            db,
            mail,
            &Settle::Dead {
                error: "gave up".into(),
            },
        )
        .unwrap();
        // A late record of an earlier attempt changes nothing once a row left `pending`.
        settle(
            db,
            hook,
            &Settle::Dead {
                error: "late".into(),
            },
        )
        .unwrap();

        let rows = list(db, None, 10).unwrap();
        let states: Vec<(i64, OutboxState, u32)> = rows
            .iter()
            .map(|r| (r.alert_id, r.state, r.attempts))
            .collect();
        assert_eq!(
            states,
            [
                (3, OutboxState::Pending, 1),
                (2, OutboxState::Dead, 2),
                (1, OutboxState::Delivered, 1)
            ]
        );
        assert_eq!(rows[2].delivered_at, Some(NOW));
        assert_eq!(rows[0].next_attempt_at, NOW + 5);
        assert_eq!(list(db, Some(OutboxState::Dead), 10).unwrap().len(), 1);
        assert_eq!(list(db, None, 1).unwrap().len(), 1);
        assert_eq!(
            backlog(db, Channel::Email).unwrap(),
            ChannelBacklog {
                pending: 0,
                retrying: 0,
                dead: 1,
                last_error: Some("gave up".into())
            }
        );
        assert_eq!(
            backlog(db, Channel::Telegram).unwrap(),
            ChannelBacklog::default()
        );

        // An operator gives the dead letter another round; a pending row is not "requeued".
        assert!(requeue(db, mail, UnixSeconds(NOW + 10)).unwrap());
        assert!(!requeue(db, mail, UnixSeconds(NOW + 10)).unwrap());
        assert!(!requeue(db, hook, UnixSeconds(NOW + 10)).unwrap());
        let round = claim_due(db, ms + 10_000, 60_000, 10).unwrap();
        assert_eq!(
            round.iter().map(|c| (c.id, c.attempts)).collect::<Vec<_>>(),
            [(mail, 1)]
        );
    }

    #[test]
    fn a_notification_is_queued_once_claimed_leased_and_settled_on_sqlite() {
        on_sqlite(a_notification_is_queued_once_claimed_leased_and_settled);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_notification_is_queued_once_claimed_leased_and_settled_on_postgres() {
        on_postgres(
            "outbox::a_notification_is_queued_once",
            a_notification_is_queued_once_claimed_leased_and_settled,
        )
        .await;
    }

    fn leases_of_a_gone_worker_end_after_the_grace(db: &Db<'_>) {
        let ms = NOW * 1000;
        enqueue(db, &note(1, Channel::Webhook, "ops"), UnixSeconds(NOW)).unwrap();
        let [c] = claim_due(db, ms, 60_000, 10).unwrap().try_into().unwrap();
        // A successor 1 s later: the row may still be in flight for the grace, then it is due.
        assert_eq!(release_stale_leases(db, ms + 1000, 15_000).unwrap(), 1);
        assert_eq!(next_due_ms(db).unwrap(), Some(ms + 16_000));
        assert!(claim_due(db, ms + 15_999, 60_000, 10).unwrap().is_empty());
        // Releasing again never lengthens a lease.
        assert_eq!(release_stale_leases(db, ms + 2000, 15_000).unwrap(), 0);
        assert_eq!(next_due_ms(db).unwrap(), Some(ms + 16_000));
        let [again] = claim_due(db, ms + 16_000, 60_000, 10)
            .unwrap()
            .try_into()
            .unwrap();
        assert_eq!((again.id, again.attempts), (c.id, 2));
        // No grace (SQLite's start-up): due at once.
        assert_eq!(release_stale_leases(db, ms + 17_000, 0).unwrap(), 1);
        assert_eq!(next_due_ms(db).unwrap(), Some(ms + 17_000));
    }

    #[test]
    fn leases_of_a_gone_worker_end_after_the_grace_on_sqlite() {
        on_sqlite(leases_of_a_gone_worker_end_after_the_grace);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn leases_of_a_gone_worker_end_after_the_grace_on_postgres() {
        on_postgres(
            "outbox::leases_of_a_gone_worker",
            leases_of_a_gone_worker_end_after_the_grace,
        )
        .await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn two_workers_claiming_at_once_on_postgres_never_share_a_row() {
        let Some(url) = crate::pg::test_server::database("outbox::two_workers_claiming") else {
            return;
        };
        let store = PgStore::connect(&url).await.unwrap();
        store
            .run(false, |pg| {
                for i in 0..40 {
                    enqueue(
                        &Db::Pg(pg),
                        &note(i, Channel::Webhook, "ops"),
                        UnixSeconds(NOW),
                    )?;
                }
                Ok::<_, StoreError>(())
            })
            .await
            .unwrap();
        // Each claim holds its rows locked while the other runs (a barrier inside both
        // transactions), so SKIP LOCKED, not timing, keeps them apart.
        let barrier = std::sync::Arc::new(std::sync::Barrier::new(2));
        let claim = |barrier: std::sync::Arc<std::sync::Barrier>| {
            let store = store.clone();
            async move {
                store
                    .run(false, move |pg| {
                        let got = claim_due(&Db::Pg(pg), NOW * 1000, 60_000, 25)?;
                        barrier.wait();
                        Ok::<_, StoreError>(got)
                    })
                    .await
                    .unwrap()
            }
        };
        let (a, b) = tokio::join!(claim(barrier.clone()), claim(barrier));
        let mut ids: Vec<i64> = a.iter().chain(&b).map(|c| c.id).collect();
        assert_eq!(a.len() + b.len(), 40, "{} + {}", a.len(), b.len());
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), 40, "no row claimed twice");
    }
}
