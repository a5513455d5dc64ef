//! The alert log in SQLite: the `alerts` and `alert_events` tables and their reads. The
//! lifecycle rules (what fires, who is paged) live in `taza_alert::lifecycle`, which writes
//! through these.

use protocol::{PostId, UnixSeconds};
use rusqlite::{params, Connection, OptionalExtension, Transaction};
use serde::Serialize;
use taza_domain::calendar::rfc3339;

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

pub const ALERT_COLUMNS: &str =
    "id, rule, post, severity, quantity, state, value, threshold, message, fired_at, \
     acked_at, acked_by, resolved_at, resolved_by, escalation_level";

pub fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<AlertRow> {
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

/// Alerts, newest first; `state`: firing, acknowledged, resolved, or `open` (not resolved).
pub fn list(
    conn: &Connection,
    state: Option<&str>,
    limit: usize,
) -> rusqlite::Result<Vec<AlertRow>> {
    let filter = match state {
        None => "1 = 1",
        Some("open") => "state != 'resolved'",
        Some(_) => "state = ?1",
    };
    let sql = format!("SELECT {ALERT_COLUMNS} FROM alerts WHERE {filter} ORDER BY fired_at DESC, id DESC LIMIT {limit}");
    let mut stmt = conn.prepare(&sql)?;
    let rows = match state {
        Some(s) if s != "open" => stmt.query_map([s], row)?.collect(),
        _ => stmt.query_map([], row)?.collect(),
    };
    rows
}

/// One alert with its history.
pub fn get(conn: &Connection, id: i64) -> rusqlite::Result<Option<(AlertRow, Vec<AlertEvent>)>> {
    let Some(alert) = conn
        .query_row(
            &format!("SELECT {ALERT_COLUMNS} FROM alerts WHERE id = ?1"),
            [id],
            row,
        )
        .optional()?
    else {
        return Ok(None);
    };
    let events = conn
        .prepare("SELECT at, event, by, detail FROM alert_events WHERE alert_id = ?1 ORDER BY id")?
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

/// (rule, post) of every open alert.
pub fn open_keys(conn: &Connection) -> rusqlite::Result<Vec<(String, PostId)>> {
    let mut stmt =
        conn.prepare_cached("SELECT rule, post FROM alerts WHERE state != 'resolved'")?;
    let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
    let mut out = Vec::new();
    for r in rows {
        let (rule, post) = r?;
        if let Ok(p) = PostId::parse(&post) {
            out.push((rule, p));
        }
    }
    Ok(out)
}

pub fn event(
    tx: &Transaction<'_>,
    id: i64,
    at: UnixSeconds,
    what: &str,
    by: &str,
    detail: Option<&str>,
) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "INSERT INTO alert_events (alert_id, at, event, by, detail) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![id, at.0, what, by, detail])?;
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

pub fn state_of(tx: &Transaction<'_>, id: i64) -> rusqlite::Result<Option<String>> {
    tx.query_row("SELECT state FROM alerts WHERE id = ?1", [id], |r| r.get(0))
        .optional()
}
