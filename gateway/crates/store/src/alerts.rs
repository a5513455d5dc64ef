//! The alert log in SQLite: the `alerts` and `alert_events` tables, their reads and the small
//! writes the lifecycle composes (open, acknowledge, resolve, escalate), plus the daily means
//! daily alert rules judge. The lifecycle rules (what fires, who is paged) live in
//! `taza_alert::lifecycle`, which writes through these inside its own transaction.

use protocol::{PostId, Quantity, UnixSeconds};
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
/// alert (the unique index `alerts_one_open` dedupes).
pub fn insert_firing(tx: &Transaction<'_>, a: &NewAlert<'_>) -> rusqlite::Result<Option<i64>> {
    let inserted = tx
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
    Ok((inserted == 1).then(|| tx.last_insert_rowid()))
}

/// Id of the open (not resolved) alert of (rule, post).
pub fn open_id(conn: &Connection, rule: &str, post: &str) -> rusqlite::Result<Option<i64>> {
    conn.prepare_cached(
        "SELECT id FROM alerts WHERE rule = ?1 AND post = ?2 AND state != 'resolved'",
    )?
    .query_row(params![rule, post], |r| r.get(0))
    .optional()
}

/// Highest escalation level alert `id` reached (1 = first on call).
pub fn escalation_level(conn: &Connection, id: i64) -> rusqlite::Result<i64> {
    conn.prepare_cached("SELECT escalation_level FROM alerts WHERE id = ?1")?
        .query_row([id], |r| r.get(0))
}

/// Marks alert `id` resolved at `at` by `by` ('rule' or a token name).
pub fn mark_resolved(
    tx: &Transaction<'_>,
    id: i64,
    at: UnixSeconds,
    by: &str,
) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "UPDATE alerts SET state = 'resolved', resolved_at = ?2, resolved_by = ?3 WHERE id = ?1",
    )?
    .execute(params![id, at.0, by])
    .map(drop)
}

/// Marks alert `id` acknowledged at `at` by `by` (a token name).
pub fn mark_acknowledged(
    tx: &Transaction<'_>,
    id: i64,
    at: UnixSeconds,
    by: &str,
) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "UPDATE alerts SET state = 'acknowledged', acked_at = ?2, acked_by = ?3 WHERE id = ?1",
    )?
    .execute(params![id, at.0, by])
    .map(drop)
}

/// (id, escalation level) of critical alerts still `firing` (nobody acknowledged) below
/// `below_level` whose last page (escalation, else firing) is at least `after_s` before `now`.
pub fn due_for_escalation(
    conn: &Connection,
    below_level: i64,
    after_s: i64,
    now: UnixSeconds,
) -> rusqlite::Result<Vec<(i64, i64)>> {
    conn.prepare_cached(
        "SELECT id, escalation_level FROM alerts
         WHERE state = 'firing' AND severity = 'critical' AND escalation_level < ?1
           AND coalesce(escalated_at, fired_at) + ?2 <= ?3",
    )?
    .query_map(params![below_level, after_s, now.0], |r| {
        Ok((r.get(0)?, r.get(1)?))
    })?
    .collect()
}

/// Records that alert `id` was escalated to `level` at `at`.
pub fn mark_escalated(
    tx: &Transaction<'_>,
    id: i64,
    level: i64,
    at: UnixSeconds,
) -> rusqlite::Result<()> {
    tx.prepare_cached("UPDATE alerts SET escalation_level = ?2, escalated_at = ?3 WHERE id = ?1")?
        .execute(params![id, level, at.0])
        .map(drop)
}

/// Time-weighted means of local day `day` (YYYY-MM-DD) per (post, quantity) of `quantities`,
/// from the daily rollups, for rows covering at least `min_coverage` of the day's seconds. Rows
/// whose post id does not parse are skipped with a warning.
pub fn covered_daily_means(
    conn: &Connection,
    day: &str,
    quantities: &[Quantity],
    min_coverage: f64,
) -> rusqlite::Result<Vec<(PostId, Quantity, f64)>> {
    let mut out = Vec::new();
    let mut stmt = conn.prepare_cached(
        "SELECT s.post, a.weighted_sum / a.covered_s FROM series s CROSS JOIN agg_day a
         WHERE s.quantity = ?2 AND a.post_key = s.post_key AND a.day = ?1 AND a.series = s.id
           AND a.covered_s >= ?3 * (a.end_at - a.start)
         ORDER BY s.post",
    )?;
    for q in quantities {
        let rows = stmt.query_map(params![day, q.as_str(), min_coverage], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, f64>(1)?))
        })?;
        for row in rows {
            let (post, mean) = row?;
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

/// This module's tables on PostgreSQL ([`crate::pg::schema`]).
pub const PG_SCHEMA: &str = "";

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn an_alert_opens_once_per_rule_and_post_until_it_is_resolved() {
        let mut conn = crate::schema::in_memory();
        let tx = conn.transaction().unwrap();
        let a = firing("r", "warning", 100);
        let id = insert_firing(&tx, &a).unwrap().unwrap();
        assert_eq!(
            insert_firing(&tx, &a).unwrap(),
            None,
            "second open is deduped"
        );
        assert_eq!(open_id(&tx, "r", "air-1").unwrap(), Some(id));
        assert_eq!(open_keys(&tx).unwrap().len(), 1);

        mark_acknowledged(&tx, id, UnixSeconds(110), "ops").unwrap();
        assert_eq!(state_of(&tx, id).unwrap().as_deref(), Some("acknowledged"));
        assert_eq!(escalation_level(&tx, id).unwrap(), 1);
        mark_resolved(&tx, id, UnixSeconds(120), "rule").unwrap();
        let (row, _) = get(&tx, id).unwrap().unwrap();
        assert_eq!(
            (
                row.state.as_str(),
                row.acked_by.as_deref(),
                row.resolved_by.as_deref()
            ),
            ("resolved", Some("ops"), Some("rule"))
        );
        assert_eq!(open_id(&tx, "r", "air-1").unwrap(), None);
        // Resolved: the next episode opens a new alert.
        assert!(insert_firing(&tx, &a)
            .unwrap()
            .is_some_and(|next| next != id));
    }

    #[test]
    fn escalation_is_due_for_unacknowledged_critical_alerts_after_the_wait() {
        let mut conn = crate::schema::in_memory();
        let tx = conn.transaction().unwrap();
        let critical = insert_firing(&tx, &firing("c", "critical", 1000))
            .unwrap()
            .unwrap();
        let acked = insert_firing(&tx, &firing("a", "critical", 1000))
            .unwrap()
            .unwrap();
        insert_firing(&tx, &firing("w", "warning", 1000))
            .unwrap()
            .unwrap();
        mark_acknowledged(&tx, acked, UnixSeconds(1001), "ops").unwrap();
        let due = |now| due_for_escalation(&tx, 3, 900, UnixSeconds(now)).unwrap();
        assert_eq!(due(1899), []);
        assert_eq!(due(1900), [(critical, 1)]);
        mark_escalated(&tx, critical, 2, UnixSeconds(1900)).unwrap();
        // The wait restarts from the escalation; level 3 is the top.
        assert_eq!(due(2799), []);
        assert_eq!(due(2800), [(critical, 2)]);
        mark_escalated(&tx, critical, 3, UnixSeconds(2800)).unwrap();
        assert_eq!(due(99_999), []);
        assert_eq!(escalation_level(&tx, critical).unwrap(), 3);
    }

    #[test]
    fn daily_means_leave_out_days_covered_less_than_asked() {
        let conn = crate::schema::in_memory();
        // A 86 400 s day: air-1 covered 80 % (mean 40), air-2 covered 50 %, bad id skipped.
        conn.execute_batch(
            "INSERT INTO rollup_day VALUES ('air-1', 'pm2_5', '2026-01-01', 0, 86400, 1, 2764800.0, 69120, 1, 90, 1440);
             INSERT INTO rollup_day VALUES ('air-2', 'pm2_5', '2026-01-01', 0, 86400, 1, 1728000.0, 43200, 1, 90, 1440);
             INSERT INTO rollup_day VALUES ('Not An Id', 'pm2_5', '2026-01-01', 0, 86400, 1, 2764800.0, 69120, 1, 90, 1440);
             INSERT INTO rollup_day VALUES ('air-1', 'no2', '2026-01-01', 0, 86400, 1, 2764800.0, 69120, 1, 90, 1440);",
        )
        .unwrap();
        let means = covered_daily_means(&conn, "2026-01-01", &[Quantity::Pm2_5], 0.75).unwrap();
        assert_eq!(
            means,
            [(PostId::parse("air-1").unwrap(), Quantity::Pm2_5, 40.0)]
        );
        assert_eq!(
            covered_daily_means(&conn, "2026-01-01", &[Quantity::Pm2_5], 0.5)
                .unwrap()
                .len(),
            2
        );
        assert_eq!(
            covered_daily_means(&conn, "2026-01-02", &[Quantity::Pm2_5], 0.5).unwrap(),
            []
        );
    }
}
