//! The alert log: the `alerts` and `alert_events` tables, their reads and the small writes the
//! lifecycle composes (open, acknowledge, resolve, escalate), the daily means daily alert rules
//! judge, and (PostgreSQL only) the leader's cursor in the commit log. The lifecycle rules
//! (what fires, who is paged) live in `taza_alert::lifecycle`, which writes through these inside
//! its own transaction. Every function takes a [`Db`]: SQLite and PostgreSQL bodies side by side.

use protocol::{PostId, Quantity, UnixSeconds};
use rusqlite::{params, OptionalExtension};
use serde::Serialize;
use taza_domain::calendar::rfc3339;

use crate::db::Db;
use crate::pg::{self, commit_log};
use crate::StoreError;

/// Tables of this module (appended to the store's migrations).
pub const SCHEMA: &str = r#"
    CREATE TABLE alerts (
        id               INTEGER PRIMARY KEY,
        rule             TEXT NOT NULL,
        post             TEXT NOT NULL,
        severity         TEXT NOT NULL,           -- warning | critical
        quantity         TEXT,
        state            TEXT NOT NULL,           -- firing | acknowledged | resolved
        value            REAL NOT NULL,           -- what fired, in the rule's unit
        threshold        REAL NOT NULL,
        message          TEXT NOT NULL,           -- Russian text; other languages are rendered per contact
        fired_at         INTEGER NOT NULL,
        acked_at         INTEGER,
        acked_by         TEXT,
        resolved_at      INTEGER,
        resolved_by      TEXT,
        escalation_level INTEGER NOT NULL DEFAULT 1,
        escalated_at     INTEGER
    );
    CREATE UNIQUE INDEX alerts_one_open ON alerts (rule, post) WHERE state != 'resolved';
    CREATE INDEX alerts_by_state ON alerts (state, fired_at);
    CREATE TABLE alert_events (
        id        INTEGER PRIMARY KEY,
        alert_id  INTEGER NOT NULL REFERENCES alerts (id),
        at        INTEGER NOT NULL,
        event     TEXT NOT NULL,                  -- fired | acknowledged | escalated | resolved
        by        TEXT NOT NULL,                  -- 'rule', a token name, 'escalation'
        detail    TEXT
    );
"#;

/// An alert for the API.
#[derive(Debug, Clone, Serialize)]
pub struct AlertRow {
    /// Id.
    pub id: i64,
    /// Rule id.
    pub rule: String,
    /// Post id.
    pub post: String,
    /// warning | critical.
    pub severity: String,
    /// Quantity, if any.
    pub quantity: Option<String>,
    /// firing | acknowledged | resolved.
    pub state: String,
    /// Value that fired.
    pub value: f64,
    /// Threshold crossed.
    pub threshold: f64,
    /// Russian message.
    pub message: String,
    /// RFC 3339.
    pub fired_at: String,
    /// RFC 3339.
    pub acked_at: Option<String>,
    /// Token name.
    pub acked_by: Option<String>,
    /// RFC 3339.
    pub resolved_at: Option<String>,
    /// 'rule' or a token name.
    pub resolved_by: Option<String>,
    /// Highest level paged.
    pub escalation_level: i64,
}

/// One step in an alert's history.
#[derive(Debug, Clone, Serialize)]
pub struct AlertEvent {
    /// RFC 3339.
    pub at: String,
    /// fired | acknowledged | escalated | resolved.
    pub event: String,
    /// Who.
    pub by: String,
    /// Detail.
    pub detail: Option<String>,
}

/// The columns of an [`AlertRow`], in its field order.
pub const ALERT_COLUMNS: &str =
    "id, rule, post, severity, quantity, state, value, threshold, message, fired_at, \
     acked_at, acked_by, resolved_at, resolved_by, escalation_level";

fn sqlite_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<AlertRow> {
    let t = |i: usize| -> rusqlite::Result<Option<String>> {
        Ok(r.get::<_, Option<i64>>(i)?.map(|s| rfc3339(UnixSeconds(s))))
    };
    Ok(AlertRow {
        id: r.get(0)?,
        rule: r.get(1)?,
        post: r.get(2)?,
        severity: r.get(3)?,
        quantity: r.get(4)?,
        state: r.get(5)?,
        value: r.get(6)?,
        threshold: r.get(7)?,
        message: r.get(8)?,
        fired_at: rfc3339(UnixSeconds(r.get(9)?)),
        acked_at: t(10)?,
        acked_by: r.get(11)?,
        resolved_at: t(12)?,
        resolved_by: r.get(13)?,
        escalation_level: r.get(14)?,
    })
}

fn pg_row(r: &pg::Row) -> Result<AlertRow, StoreError> {
    let g = |i: usize| -> Result<String, StoreError> { pg::get(r, "alerts", i) };
    let t = |i: usize| -> Result<Option<String>, StoreError> {
        Ok(pg::get::<Option<i64>>(r, "alerts", i)?.map(|s| rfc3339(UnixSeconds(s))))
    };
    Ok(AlertRow {
        id: pg::get(r, "alerts", 0)?,
        rule: g(1)?,
        post: g(2)?,
        severity: g(3)?,
        quantity: pg::get(r, "alerts", 4)?,
        state: g(5)?,
        value: pg::get(r, "alerts", 6)?,
        threshold: pg::get(r, "alerts", 7)?,
        message: g(8)?,
        fired_at: rfc3339(UnixSeconds(pg::get(r, "alerts", 9)?)),
        acked_at: t(10)?,
        acked_by: pg::get(r, "alerts", 11)?,
        resolved_at: t(12)?,
        resolved_by: pg::get(r, "alerts", 13)?,
        escalation_level: pg::get(r, "alerts", 14)?,
    })
}

/// Alerts, newest first; `state`: firing, acknowledged, resolved, or `open` (not resolved).
pub fn list(db: &Db<'_>, state: Option<&str>, limit: usize) -> Result<Vec<AlertRow>, StoreError> {
    let filter = match state {
        None => "1 = 1",
        Some("open") => "state != 'resolved'",
        Some(_) => "state = $1",
    };
    match db {
        Db::Sqlite(c) => {
            let filter = filter.replace("$1", "?1");
            let sql = format!("SELECT {ALERT_COLUMNS} FROM alerts WHERE {filter} ORDER BY fired_at DESC, id DESC LIMIT {limit}");
            let mut stmt = c.prepare(&sql)?;
            let rows: rusqlite::Result<Vec<AlertRow>> = match state {
                Some(s) if s != "open" => stmt.query_map([s], sqlite_row)?.collect(),
                _ => stmt.query_map([], sqlite_row)?.collect(),
            };
            Ok(rows?)
        }
        Db::Pg(p) => {
            let sql = format!("SELECT {ALERT_COLUMNS} FROM alerts WHERE {filter} ORDER BY fired_at DESC, id DESC LIMIT {limit}");
            let rows = match state {
                Some(s) if s != "open" => p.query(&sql, &[&s])?,
                _ => p.query(&sql, &[])?,
            };
            rows.iter().map(pg_row).collect()
        }
    }
}

/// One alert with its history.
pub fn get(db: &Db<'_>, id: i64) -> Result<Option<(AlertRow, Vec<AlertEvent>)>, StoreError> {
    match db {
        Db::Sqlite(c) => {
            let Some(alert) = c
                .query_row(
                    &format!("SELECT {ALERT_COLUMNS} FROM alerts WHERE id = ?1"),
                    [id],
                    sqlite_row,
                )
                .optional()?
            else {
                return Ok(None);
            };
            let events = c
                .prepare(
                    "SELECT at, event, by, detail FROM alert_events WHERE alert_id = ?1 ORDER BY id",
                )?
                .query_map([id], |r| {
                    Ok(AlertEvent {
                        at: rfc3339(UnixSeconds(r.get(0)?)),
                        event: r.get(1)?,
                        by: r.get(2)?,
                        detail: r.get(3)?,
                    })
                })?
                .collect::<rusqlite::Result<_>>()?;
            Ok(Some((alert, events)))
        }
        Db::Pg(p) => {
            let sql = format!("SELECT {ALERT_COLUMNS} FROM alerts WHERE id = $1");
            let Some(alert) = p.query_opt(&sql, &[&id])? else {
                return Ok(None);
            };
            let events = p
                .query(
                    "SELECT at, event, by, detail FROM alert_events WHERE alert_id = $1 ORDER BY id",
                    &[&id],
                )?
                .iter()
                .map(|r| {
                    Ok(AlertEvent {
                        at: rfc3339(UnixSeconds(pg::get(r, "alert_events", 0)?)),
                        event: pg::get(r, "alert_events", 1)?,
                        by: pg::get(r, "alert_events", 2)?,
                        detail: pg::get(r, "alert_events", 3)?,
                    })
                })
                .collect::<Result<_, StoreError>>()?;
            Ok(Some((pg_row(&alert)?, events)))
        }
    }
}

/// (rule, post) of every open alert (rows whose post id does not parse are left out).
pub fn open_keys(db: &Db<'_>) -> Result<Vec<(String, PostId)>, StoreError> {
    let pairs: Vec<(String, String)> = match db {
        Db::Sqlite(c) => c
            .prepare_cached("SELECT rule, post FROM alerts WHERE state != 'resolved'")?
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<rusqlite::Result<_>>()?,
        Db::Pg(p) => p
            .query(
                "SELECT rule, post FROM alerts WHERE state != 'resolved'",
                &[],
            )?
            .iter()
            .map(|r| Ok((pg::get(r, "alerts", 0)?, pg::get(r, "alerts", 1)?)))
            .collect::<Result<_, StoreError>>()?,
    };
    Ok(pairs
        .into_iter()
        .filter_map(|(rule, post)| PostId::parse(&post).ok().map(|p| (rule, p)))
        .collect())
}

/// Appends a step to alert `id`'s history.
pub fn event(
    db: &Db<'_>,
    id: i64,
    at: UnixSeconds,
    what: &str,
    by: &str,
    detail: Option<&str>,
) -> Result<(), StoreError> {
    match db {
        Db::Sqlite(c) => {
            c.prepare_cached(
                "INSERT INTO alert_events (alert_id, at, event, by, detail) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![id, at.0, what, by, detail])?;
        }
        Db::Pg(p) => {
            p.execute(
                "INSERT INTO alert_events (alert_id, at, event, by, detail) VALUES ($1, $2, $3, $4, $5)",
                &[&id, &at.0, &what, &by, &detail],
            )?;
        }
    }
    Ok(())
}

/// Outcome of a person's action on an alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Done.
    Done,
    /// No such alert.
    NotFound,
    /// It was already resolved (or, for an acknowledgement, already acknowledged).
    AlreadyDone,
}

/// State of alert `id` (firing, acknowledged, resolved); call in a write transaction. On
/// PostgreSQL the row stays locked to the end of the transaction, so an acknowledgement and a resolution racing on two
/// replicas are decided one after the other, as SQLite's single writer decides them.
pub fn state_of(db: &Db<'_>, id: i64) -> Result<Option<String>, StoreError> {
    match db {
        Db::Sqlite(c) => Ok(c
            .query_row("SELECT state FROM alerts WHERE id = ?1", [id], |r| r.get(0))
            .optional()?),
        Db::Pg(p) => p
            .query_opt("SELECT state FROM alerts WHERE id = $1 FOR UPDATE", &[&id])?
            .map(|r| pg::get(&r, "alerts", 0))
            .transpose(),
    }
}

/// A new alert in state `firing`.
#[derive(Debug, Clone, Copy)]
pub struct NewAlert<'a> {
    /// Rule id.
    pub rule: &'a str,
    /// Post id.
    pub post: &'a str,
    /// warning | critical.
    pub severity: &'a str,
    /// Quantity, if any.
    pub quantity: Option<&'a str>,
    /// Value that fired, in the rule's unit.
    pub value: f64,
    /// Threshold crossed.
    pub threshold: f64,
    /// Russian message.
    pub message: &'a str,
    /// When it fired.
    pub fired_at: UnixSeconds,
}

/// Opens `a` as a firing alert. Returns its id, or None when (rule, post) already has an open
/// alert (the unique index `alerts_one_open` dedupes, on both engines and across replicas).
pub fn insert_firing(db: &Db<'_>, a: &NewAlert<'_>) -> Result<Option<i64>, StoreError> {
    match db {
        Db::Sqlite(c) => {
            let inserted = c
                .prepare_cached(
                    "INSERT INTO alerts (rule, post, severity, quantity, state, value, threshold, message, fired_at)
                     VALUES (?1, ?2, ?3, ?4, 'firing', ?5, ?6, ?7, ?8)
                     ON CONFLICT DO NOTHING",
                )?
                .execute(params![
                    a.rule,
                    a.post,
                    a.severity,
                    a.quantity,
                    a.value,
                    a.threshold,
                    a.message,
                    a.fired_at.0
                ])?;
            Ok((inserted == 1).then(|| c.last_insert_rowid()))
        }
        Db::Pg(p) => p
            .query_opt(
                "INSERT INTO alerts (rule, post, severity, quantity, state, value, threshold, message, fired_at)
                 VALUES ($1, $2, $3, $4, 'firing', $5, $6, $7, $8)
                 ON CONFLICT DO NOTHING RETURNING id",
                &[
                    &a.rule,
                    &a.post,
                    &a.severity,
                    &a.quantity,
                    &a.value,
                    &a.threshold,
                    &a.message,
                    &a.fired_at.0,
                ],
            )?
            .map(|r| pg::get(&r, "alerts", 0))
            .transpose(),
    }
}

/// Id of the open (not resolved) alert of (rule, post).
pub fn open_id(db: &Db<'_>, rule: &str, post: &str) -> Result<Option<i64>, StoreError> {
    match db {
        Db::Sqlite(c) => Ok(c
            .prepare_cached(
                "SELECT id FROM alerts WHERE rule = ?1 AND post = ?2 AND state != 'resolved'",
            )?
            .query_row(params![rule, post], |r| r.get(0))
            .optional()?),
        Db::Pg(p) => p
            .query_opt(
                "SELECT id FROM alerts WHERE rule = $1 AND post = $2 AND state != 'resolved'",
                &[&rule, &post],
            )?
            .map(|r| pg::get(&r, "alerts", 0))
            .transpose(),
    }
}

/// Highest escalation level alert `id` reached (1 = first on call).
pub fn escalation_level(db: &Db<'_>, id: i64) -> Result<i64, StoreError> {
    match db {
        Db::Sqlite(c) => Ok(c
            .prepare_cached("SELECT escalation_level FROM alerts WHERE id = ?1")?
            .query_row([id], |r| r.get(0))?),
        Db::Pg(p) => pg::get(
            &p.query_one("SELECT escalation_level FROM alerts WHERE id = $1", &[&id])?,
            "alerts",
            0,
        ),
    }
}

/// Marks alert `id` resolved at `at` by `by` ('rule' or a token name).
pub fn mark_resolved(db: &Db<'_>, id: i64, at: UnixSeconds, by: &str) -> Result<(), StoreError> {
    match db {
        Db::Sqlite(c) => {
            c.prepare_cached(
                "UPDATE alerts SET state = 'resolved', resolved_at = ?2, resolved_by = ?3 WHERE id = ?1",
            )?
            .execute(params![id, at.0, by])?;
        }
        Db::Pg(p) => {
            p.execute(
                "UPDATE alerts SET state = 'resolved', resolved_at = $2, resolved_by = $3 WHERE id = $1",
                &[&id, &at.0, &by],
            )?;
        }
    }
    Ok(())
}

/// Marks alert `id` acknowledged at `at` by `by` (a token name).
pub fn mark_acknowledged(
    db: &Db<'_>,
    id: i64,
    at: UnixSeconds,
    by: &str,
) -> Result<(), StoreError> {
    match db {
        Db::Sqlite(c) => {
            c.prepare_cached(
                "UPDATE alerts SET state = 'acknowledged', acked_at = ?2, acked_by = ?3 WHERE id = ?1",
            )?
            .execute(params![id, at.0, by])?;
        }
        Db::Pg(p) => {
            p.execute(
                "UPDATE alerts SET state = 'acknowledged', acked_at = $2, acked_by = $3 WHERE id = $1",
                &[&id, &at.0, &by],
            )?;
        }
    }
    Ok(())
}

/// (id, escalation level) of critical alerts still `firing` (nobody acknowledged) below
/// `below_level` whose last page (escalation, else firing) is at least `after_s` before `now`.
pub fn due_for_escalation(
    db: &Db<'_>,
    below_level: i64,
    after_s: i64,
    now: UnixSeconds,
) -> Result<Vec<(i64, i64)>, StoreError> {
    match db {
        Db::Sqlite(c) => Ok(c
            .prepare_cached(
                "SELECT id, escalation_level FROM alerts
                 WHERE state = 'firing' AND severity = 'critical' AND escalation_level < ?1
                   AND coalesce(escalated_at, fired_at) + ?2 <= ?3",
            )?
            .query_map(params![below_level, after_s, now.0], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })?
            .collect::<rusqlite::Result<_>>()?),
        Db::Pg(p) => p
            .query(
                "SELECT id, escalation_level FROM alerts
                 WHERE state = 'firing' AND severity = 'critical' AND escalation_level < $1
                   AND coalesce(escalated_at, fired_at) + $2 <= $3
                 ORDER BY id",
                &[&below_level, &after_s, &now.0],
            )?
            .iter()
            .map(|r| Ok((pg::get(r, "alerts", 0)?, pg::get(r, "alerts", 1)?)))
            .collect(),
    }
}

/// Records that alert `id` was escalated to `level` at `at`.
pub fn mark_escalated(db: &Db<'_>, id: i64, level: i64, at: UnixSeconds) -> Result<(), StoreError> {
    match db {
        Db::Sqlite(c) => {
            c.prepare_cached(
                "UPDATE alerts SET escalation_level = ?2, escalated_at = ?3 WHERE id = ?1",
            )?
            .execute(params![id, level, at.0])?;
        }
        Db::Pg(p) => {
            p.execute(
                "UPDATE alerts SET escalation_level = $2, escalated_at = $3 WHERE id = $1",
                &[&id, &level, &at.0],
            )?;
        }
    }
    Ok(())
}

/// Time-weighted means of local day `day` (YYYY-MM-DD) per (post, quantity) of `quantities`,
/// from the daily rollups, for rows covering at least `min_coverage` of the day's seconds. Rows
/// whose post id does not parse are skipped with a warning.
pub fn covered_daily_means(
    db: &Db<'_>,
    day: &str,
    quantities: &[Quantity],
    min_coverage: f64,
) -> Result<Vec<(PostId, Quantity, f64)>, StoreError> {
    let mut out = Vec::new();
    for q in quantities {
        let rows: Vec<(String, f64)> = match db {
            Db::Sqlite(c) => c
                .prepare_cached(
                    "SELECT s.post, a.weighted_sum / a.covered_s FROM series s CROSS JOIN agg_day a
                     WHERE s.quantity = ?2 AND a.post_key = s.post_key AND a.day = ?1 AND a.series = s.id
                       AND a.covered_s >= ?3 * (a.end_at - a.start)
                     ORDER BY s.post",
                )?
                .query_map(params![day, q.as_str(), min_coverage], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })?
                .collect::<rusqlite::Result<_>>()?,
            Db::Pg(p) => p
                .query(
                    "SELECT post, weighted_sum / covered_s FROM rollup_day
                     WHERE quantity = $2 AND day = $1 AND covered_s > 0
                       AND covered_s >= $3::float8 * (end_at - start)
                     ORDER BY post",
                    &[&day, &q.as_str(), &min_coverage],
                )?
                .iter()
                .map(|r| Ok((pg::get(r, "rollup_day", 0)?, pg::get(r, "rollup_day", 1)?)))
                .collect::<Result<_, StoreError>>()?,
        };
        for (post, mean) in rows {
            match PostId::parse(&post) {
                Ok(p) => out.push((p, *q, mean)),
                Err(_) => tracing::warn!(
                    post,
                    day,
                    "daily rollup row with an invalid post id skipped"
                ),
            }
        }
    }
    Ok(out)
}

// ---- The leader's place in the commit log (PostgreSQL only: SQLite's evaluator reads the
// writer's channel in the same process, and there is no log). ----

/// `store_meta` key of the last commit-log entry the leader's evaluation handled.
pub const LOG_CURSOR_KEY: &str = "alert_log_cursor";

/// The last commit-log sequence number alert evaluation handled; None before any leader ran.
pub fn log_cursor(db: &Db<'_>) -> Result<Option<i64>, StoreError> {
    let Db::Pg(p) = db else {
        return Err(StoreError::Unsupported("the commit log cursor"));
    };
    let Some(row) = p.query_opt(
        "SELECT value FROM store_meta WHERE key = $1",
        &[&LOG_CURSOR_KEY],
    )?
    else {
        return Ok(None);
    };
    let text: String = pg::get(&row, "store_meta", 0)?;
    text.parse().map(Some).map_err(|_| StoreError::Corrupt {
        table: "store_meta",
        key: LOG_CURSOR_KEY.into(),
        what: format!("value {text:?} is not a sequence number"),
    })
}

/// Moves the cursor to `seq` (in the transaction that recorded what the entries up to `seq`
/// caused, so the two commit together). Never moves it back: a leader that lost its lease
/// without noticing cannot rewind its successor.
pub fn set_log_cursor(db: &Db<'_>, seq: i64) -> Result<(), StoreError> {
    let Db::Pg(p) = db else {
        return Err(StoreError::Unsupported("the commit log cursor"));
    };
    p.execute(
        "INSERT INTO store_meta (key, value) VALUES ($1, $2::bigint::text)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value
         WHERE store_meta.value::bigint < excluded.value::bigint",
        &[&LOG_CURSOR_KEY, &seq],
    )?;
    Ok(())
}

/// Up to `limit` commit-log entries after `after`, oldest first: the leader's evaluator input
/// ([`commit_log::tail`]).
pub fn log_tail(
    db: &Db<'_>,
    after: i64,
    limit: i64,
) -> Result<Vec<(i64, taza_domain::pipeline::Committed)>, StoreError> {
    match db {
        Db::Pg(p) => commit_log::tail(p, after, limit),
        Db::Sqlite(_) => Err(StoreError::Unsupported("the commit log")),
    }
}

/// What a new leader replays to rebuild its evaluator ([`commit_log::history`]).
pub fn log_history(
    db: &Db<'_>,
    after: i64,
    upto: i64,
    since: UnixSeconds,
    limit: i64,
) -> Result<Vec<(i64, UnixSeconds, taza_domain::pipeline::Committed)>, StoreError> {
    match db {
        Db::Pg(p) => commit_log::history(p, after, upto, since, limit),
        Db::Sqlite(_) => Err(StoreError::Unsupported("the commit log")),
    }
}

/// Trims the commit log: entries up to `upto` (handled) received before `before` (older than
/// what a new leader replays, [`log_history`]). Returns how many went.
pub fn trim_log(db: &Db<'_>, upto: i64, before: UnixSeconds) -> Result<u64, StoreError> {
    let Db::Pg(p) = db else {
        return Err(StoreError::Unsupported("the commit log"));
    };
    p.execute(
        "DELETE FROM committed WHERE seq <= $1 AND received_at < $2",
        &[&upto, &before.0],
    )
}

/// This module's tables on PostgreSQL ([`crate::pg::schema`]): SQLite's, with BIGSERIAL ids.
pub const PG_SCHEMA: &str = r#"
    CREATE TABLE alerts (
        id               BIGSERIAL PRIMARY KEY,
        rule             TEXT NOT NULL,
        post             TEXT NOT NULL,
        severity         TEXT NOT NULL,
        quantity         TEXT,
        state            TEXT NOT NULL,
        value            DOUBLE PRECISION NOT NULL,
        threshold        DOUBLE PRECISION NOT NULL,
        message          TEXT NOT NULL,
        fired_at         BIGINT NOT NULL,
        acked_at         BIGINT,
        acked_by         TEXT,
        resolved_at      BIGINT,
        resolved_by      TEXT,
        escalation_level BIGINT NOT NULL DEFAULT 1,
        escalated_at     BIGINT
    );
    -- One open alert per (rule, post), whichever replica leads: a replayed firing is a no-op.
    CREATE UNIQUE INDEX alerts_one_open ON alerts (rule, post) WHERE state != 'resolved';
    CREATE INDEX alerts_by_state ON alerts (state, fired_at);
    CREATE TABLE alert_events (
        id        BIGSERIAL PRIMARY KEY,
        alert_id  BIGINT NOT NULL REFERENCES alerts (id),
        at        BIGINT NOT NULL,
        event     TEXT NOT NULL,
        by        TEXT NOT NULL,
        detail    TEXT
    );
    CREATE INDEX alert_events_by_alert ON alert_events (alert_id, id);
"#;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pg::PgStore;

    fn firing<'a>(rule: &'a str, severity: &'a str, at: i64) -> NewAlert<'a> {
        NewAlert {
            rule,
            post: "air-1",
            severity,
            quantity: Some("pm2_5"),
            value: 170.0,
            threshold: 160.0,
            message: "m",
            fired_at: UnixSeconds(at),
        }
    }
    use crate::pg::test_server::{on_postgres, on_sqlite};

    fn an_alert_opens_once_per_rule_and_post_until_it_is_resolved(db: &Db<'_>) {
        let a = firing("r", "warning", 100);
        let id = insert_firing(db, &a).unwrap().unwrap();
        assert_eq!(
            insert_firing(db, &a).unwrap(),
            None,
            "second open is deduped"
        );
        assert_eq!(open_id(db, "r", "air-1").unwrap(), Some(id));
        assert_eq!(open_keys(db).unwrap().len(), 1);

        mark_acknowledged(db, id, UnixSeconds(110), "ops").unwrap();
        event(db, id, UnixSeconds(110), "acknowledged", "ops", None).unwrap();
        assert_eq!(state_of(db, id).unwrap().as_deref(), Some("acknowledged"));
        assert_eq!(escalation_level(db, id).unwrap(), 1);
        mark_resolved(db, id, UnixSeconds(120), "rule").unwrap();
        event(
            db,
            id,
            UnixSeconds(120),
            "resolved",
            "rule",
            Some("cleared"),
        )
        .unwrap();
        let (row, events) = get(db, id).unwrap().unwrap();
        assert_eq!(
            (
                row.state.as_str(),
                row.acked_by.as_deref(),
                row.resolved_by.as_deref(),
                row.resolved_at.as_deref(),
            ),
            (
                "resolved",
                Some("ops"),
                Some("rule"),
                Some(rfc3339(UnixSeconds(120)).as_str())
            )
        );
        let history: Vec<(&str, &str, Option<&str>)> = events
            .iter()
            .map(|e| (e.event.as_str(), e.by.as_str(), e.detail.as_deref()))
            .collect();
        assert_eq!(
            history,
            [
                ("acknowledged", "ops", None),
                ("resolved", "rule", Some("cleared"))
            ]
        );
        assert_eq!(open_id(db, "r", "air-1").unwrap(), None);
        assert_eq!(state_of(db, id + 1000).unwrap(), None);
        assert!(get(db, id + 1000).unwrap().is_none());
        // Resolved: the next episode opens a new alert.
        let next = insert_firing(db, &a).unwrap().unwrap();
        assert_ne!(next, id);
        let ids =
            |state| -> Vec<i64> { list(db, state, 10).unwrap().iter().map(|r| r.id).collect() };
        assert_eq!(ids(None), [next, id], "newest first");
        assert_eq!(ids(Some("open")), [next]);
        assert_eq!(ids(Some("resolved")), [id]);
        assert_eq!(ids(Some("acknowledged")), Vec::<i64>::new());
        assert_eq!(list(db, None, 1).unwrap().len(), 1);
    }

    #[test]
    fn an_alert_opens_once_per_rule_and_post_until_it_is_resolved_on_sqlite() {
        on_sqlite(an_alert_opens_once_per_rule_and_post_until_it_is_resolved);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_alert_opens_once_per_rule_and_post_until_it_is_resolved_on_postgres() {
        on_postgres(
            "alerts::an_alert_opens_once",
            an_alert_opens_once_per_rule_and_post_until_it_is_resolved,
        )
        .await;
    }

    fn escalation_is_due_for_unacknowledged_critical_alerts_after_the_wait(db: &Db<'_>) {
        let critical = insert_firing(db, &firing("c", "critical", 1000))
            .unwrap()
            .unwrap();
        let acked = insert_firing(db, &firing("a", "critical", 1000))
            .unwrap()
            .unwrap();
        insert_firing(db, &firing("w", "warning", 1000))
            .unwrap()
            .unwrap();
        mark_acknowledged(db, acked, UnixSeconds(1001), "ops").unwrap();
        let due = |now| due_for_escalation(db, 3, 900, UnixSeconds(now)).unwrap();
        assert_eq!(due(1899), []);
        assert_eq!(due(1900), [(critical, 1)]);
        mark_escalated(db, critical, 2, UnixSeconds(1900)).unwrap();
        // The wait restarts from the escalation; level 3 is the top.
        assert_eq!(due(2799), []);
        assert_eq!(due(2800), [(critical, 2)]);
        mark_escalated(db, critical, 3, UnixSeconds(2800)).unwrap();
        assert_eq!(due(99_999), []);
        assert_eq!(escalation_level(db, critical).unwrap(), 3);
    }

    #[test]
    fn escalation_is_due_for_unacknowledged_critical_alerts_after_the_wait_on_sqlite() {
        on_sqlite(escalation_is_due_for_unacknowledged_critical_alerts_after_the_wait);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn escalation_is_due_for_unacknowledged_critical_alerts_after_the_wait_on_postgres() {
        on_postgres(
            "alerts::escalation_is_due",
            escalation_is_due_for_unacknowledged_critical_alerts_after_the_wait,
        )
        .await;
    }

    fn daily_means_leave_out_days_covered_less_than_asked(db: &Db<'_>) {
        // A 86 400 s day: air-1 covered 80 % (mean 40), air-2 covered 50 %, bad id skipped.
        let rows = "INSERT INTO rollup_day VALUES ('air-1', 'pm2_5', '2026-01-01', 0, 86400, 1, 2764800.0, 69120, 1, 90, 1440);
             INSERT INTO rollup_day VALUES ('air-2', 'pm2_5', '2026-01-01', 0, 86400, 1, 1728000.0, 43200, 1, 90, 1440);
             INSERT INTO rollup_day VALUES ('Not An Id', 'pm2_5', '2026-01-01', 0, 86400, 1, 2764800.0, 69120, 1, 90, 1440);
             INSERT INTO rollup_day VALUES ('air-1', 'no2', '2026-01-01', 0, 86400, 1, 2764800.0, 69120, 1, 90, 1440);";
        match db {
            Db::Sqlite(c) => c.execute_batch(rows).unwrap(),
            Db::Pg(p) => p.batch_execute(rows).unwrap(),
        }
        let means = covered_daily_means(db, "2026-01-01", &[Quantity::Pm2_5], 0.75).unwrap();
        assert_eq!(
            means,
            [(PostId::parse("air-1").unwrap(), Quantity::Pm2_5, 40.0)]
        );
        assert_eq!(
            covered_daily_means(db, "2026-01-01", &[Quantity::Pm2_5], 0.5)
                .unwrap()
                .len(),
            2
        );
        assert_eq!(
            covered_daily_means(db, "2026-01-01", &[Quantity::Pm2_5, Quantity::No2], 0.75)
                .unwrap()
                .len(),
            2
        );
        assert_eq!(
            covered_daily_means(db, "2026-01-02", &[Quantity::Pm2_5], 0.5).unwrap(),
            []
        );
    }

    #[test]
    fn daily_means_leave_out_days_covered_less_than_asked_on_sqlite() {
        on_sqlite(daily_means_leave_out_days_covered_less_than_asked);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn daily_means_leave_out_days_covered_less_than_asked_on_postgres() {
        on_postgres(
            "alerts::daily_means",
            daily_means_leave_out_days_covered_less_than_asked,
        )
        .await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_log_cursor_only_moves_forward_and_trimming_keeps_what_a_new_leader_replays() {
        let Some(url) = crate::pg::test_server::database("alerts::the_log_cursor") else {
            return;
        };
        let store = PgStore::connect(&url).await.unwrap();
        store
            .run(false, |pg| {
                let db = Db::Pg(pg);
                assert_eq!(log_cursor(&db)?, None, "no leader ran yet");
                let post = PostId::parse("air-1").unwrap();
                let reading = |at| taza_domain::pipeline::Reading {
                    quantity: Quantity::Pm2_5,
                    value: 12.0,
                    at: UnixSeconds(at),
                    flags: protocol::QaFlags(0),
                    window_s: None,
                };
                for (i, received) in [100, 200, 300, 400].into_iter().enumerate() {
                    commit_log::append(pg, &post, &[reading(i as i64)], UnixSeconds(received))?;
                }
                let all = log_tail(&db, 0, 10)?;
                let seqs: Vec<i64> = all.iter().map(|(s, _)| *s).collect();
                assert_eq!(seqs.len(), 4);
                set_log_cursor(&db, seqs[2])?;
                set_log_cursor(&db, seqs[1])?;
                assert_eq!(log_cursor(&db)?, Some(seqs[2]), "never moves back");
                // The replay: handled entries received since 200.
                let replay = log_history(&db, 0, seqs[2], UnixSeconds(200), 10)?;
                let got: Vec<(i64, i64)> = replay.iter().map(|(s, t, _)| (*s, t.0)).collect();
                assert_eq!(got, [(seqs[1], 200), (seqs[2], 300)]);
                assert_eq!(replay[0].2.readings, [reading(1)]);
                // Trimming keeps those and everything not yet handled.
                assert_eq!(trim_log(&db, seqs[2], UnixSeconds(200))?, 1);
                let left: Vec<i64> = log_tail(&db, 0, 10)?.iter().map(|(s, _)| *s).collect();
                assert_eq!(left, seqs[1..]);
                Ok::<_, StoreError>(())
            })
            .await
            .unwrap();
    }

    #[test]
    fn the_commit_log_is_refused_on_sqlite() {
        let conn = crate::schema::in_memory();
        let db = Db::Sqlite(&conn);
        assert!(matches!(log_cursor(&db), Err(StoreError::Unsupported(_))));
        assert!(matches!(
            log_tail(&db, 0, 1),
            Err(StoreError::Unsupported(_))
        ));
    }
}
