//! The alert lifecycle in SQLite: firing -> acknowledged -> resolved, with every step in
//! `alert_events`, at most one open alert per (rule, post) (a unique index, so even a bug cannot
//! open two), and the notifications each step owes written to the durable outbox in the same
//! transaction, so a crash can neither lose a page nor send one for an alert that was not saved.
//! (`pending`, the wait for a rule's `for` duration, lives in the engine's memory.)

use protocol::{PostId, UnixSeconds};
use rusqlite::{params, Connection, OptionalExtension, Transaction};
use serde::Serialize;

use super::engine::{FireEvent, Transition};
use super::outbox::{self, Channel, Notification};
use super::route::{Contact, OnCallConfig};
use super::rules::{Rule, Severity};
use crate::calendar::rfc3339;
use crate::config::PostEntry;

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

/// What the lifecycle needs to word and route notifications.
pub struct Context<'a> {
    /// Rules in force.
    pub rules: &'a [Rule],
    /// Registry snapshot (names).
    pub posts: &'a [PostEntry],
    /// Who is paged.
    pub oncall: &'a OnCallConfig,
    /// Base URL of the dashboard, for links in messages.
    pub public_url: &'a str,
}

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

const ALERT_COLUMNS: &str =
    "id, rule, post, severity, quantity, state, value, threshold, message, fired_at, \
     acked_at, acked_by, resolved_at, resolved_by, escalation_level";

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<AlertRow> {
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

fn event(
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

/// Records the engine's transitions and queues their notifications. Returns how many
/// notifications were queued.
pub fn apply(
    tx: &Transaction<'_>,
    ctx: &Context<'_>,
    transitions: &[Transition],
    now: UnixSeconds,
) -> rusqlite::Result<usize> {
    let mut queued = 0;
    for t in transitions {
        match t {
            Transition::Fire(f) => queued += fire(tx, ctx, f, now)?,
            Transition::Clear { rule, post, at } => {
                let open: Option<i64> = tx
                    .query_row(
                        "SELECT id FROM alerts WHERE rule = ?1 AND post = ?2 AND state != 'resolved'",
                        params![rule, post.as_str()],
                        |r| r.get(0),
                    )
                    .optional()?;
                if let Some(id) = open {
                    queued += close(tx, ctx, id, "rule", *at)?;
                }
            }
        }
    }
    Ok(queued)
}

fn fire(
    tx: &Transaction<'_>,
    ctx: &Context<'_>,
    f: &FireEvent,
    now: UnixSeconds,
) -> rusqlite::Result<usize> {
    let message = render(ctx, &f.rule, &f.post, f.value, f.threshold, "ru");
    let inserted = tx
        .prepare_cached(
            "INSERT INTO alerts (rule, post, severity, quantity, state, value, threshold, message, fired_at)
             VALUES (?1, ?2, ?3, ?4, 'firing', ?5, ?6, ?7, ?8)
             ON CONFLICT DO NOTHING",
        )?
        .execute(params![
            f.rule,
            f.post.as_str(),
            f.severity.as_str(),
            f.quantity.map(|q| q.as_str()),
            f.value,
            f.threshold,
            message,
            f.at.0
        ])?;
    if inserted == 0 {
        // Already open (dedupe per rule and post).
        return Ok(0);
    }
    let id = tx.last_insert_rowid();
    event(
        tx,
        id,
        now,
        "fired",
        "rule",
        Some(&format!(
            "value {:.1}, threshold {:.1}",
            f.value, f.threshold
        )),
    )?;
    notify(tx, ctx, id, "fired", 1, now)
}

fn close(
    tx: &Transaction<'_>,
    ctx: &Context<'_>,
    id: i64,
    by: &str,
    at: UnixSeconds,
) -> rusqlite::Result<usize> {
    let level: i64 = tx.query_row(
        "SELECT escalation_level FROM alerts WHERE id = ?1",
        [id],
        |r| r.get(0),
    )?;
    tx.execute(
        "UPDATE alerts SET state = 'resolved', resolved_at = ?2, resolved_by = ?3 WHERE id = ?1",
        params![id, at.0, by],
    )?;
    event(tx, id, at, "resolved", by, None)?;
    let mut queued = 0;
    for lvl in 1..=u8::try_from(level).unwrap_or(1) {
        queued += notify(tx, ctx, id, "resolved", lvl, at)?;
    }
    Ok(queued)
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

fn state_of(tx: &Transaction<'_>, id: i64) -> rusqlite::Result<Option<String>> {
    tx.query_row("SELECT state FROM alerts WHERE id = ?1", [id], |r| r.get(0))
        .optional()
}

/// A person acknowledges: escalation stops; the alert stays open until its condition clears.
pub fn acknowledge(
    tx: &Transaction<'_>,
    id: i64,
    by: &str,
    now: UnixSeconds,
) -> rusqlite::Result<Outcome> {
    match state_of(tx, id)?.as_deref() {
        None => Ok(Outcome::NotFound),
        Some("firing") => {
            tx.execute("UPDATE alerts SET state = 'acknowledged', acked_at = ?2, acked_by = ?3 WHERE id = ?1", params![id, now.0, by])?;
            event(tx, id, now, "acknowledged", by, None)?;
            Ok(Outcome::Done)
        }
        Some(_) => Ok(Outcome::AlreadyDone),
    }
}

/// A person resolves an alert by hand (the engine then stays quiet until the condition clears).
pub fn resolve(
    tx: &Transaction<'_>,
    ctx: &Context<'_>,
    id: i64,
    by: &str,
    now: UnixSeconds,
) -> rusqlite::Result<Outcome> {
    match state_of(tx, id)?.as_deref() {
        None => Ok(Outcome::NotFound),
        Some("resolved") => Ok(Outcome::AlreadyDone),
        Some(_) => {
            close(tx, ctx, id, by, now)?;
            Ok(Outcome::Done)
        }
    }
}

/// Pages the next level for critical alerts nobody acknowledged in time. Returns notifications
/// queued.
pub fn escalate(
    tx: &Transaction<'_>,
    ctx: &Context<'_>,
    now: UnixSeconds,
) -> rusqlite::Result<usize> {
    let after_s = ctx.oncall.escalate_after.as_secs() as i64;
    let top = i64::from(ctx.oncall.top_level());
    let due: Vec<(i64, i64)> = tx
        .prepare_cached(
            "SELECT id, escalation_level FROM alerts
             WHERE state = 'firing' AND severity = 'critical' AND escalation_level < ?1
               AND coalesce(escalated_at, fired_at) + ?2 <= ?3",
        )?
        .query_map(params![top, after_s, now.0], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    let mut queued = 0;
    for (id, level) in due {
        let next = level + 1;
        tx.execute(
            "UPDATE alerts SET escalation_level = ?2, escalated_at = ?3 WHERE id = ?1",
            params![id, next, now.0],
        )?;
        event(
            tx,
            id,
            now,
            "escalated",
            "escalation",
            Some(&format!("level {next}")),
        )?;
        queued += notify(
            tx,
            ctx,
            id,
            "escalated",
            u8::try_from(next).unwrap_or(u8::MAX),
            now,
        )?;
    }
    Ok(queued)
}

/// Queues the notifications `what` owes the contacts at `level`.
fn notify(
    tx: &Transaction<'_>,
    ctx: &Context<'_>,
    id: i64,
    what: &str,
    level: u8,
    now: UnixSeconds,
) -> rusqlite::Result<usize> {
    let Some((alert, _)) = get(tx, id)? else {
        return Ok(0);
    };
    let Ok(post) = PostId::parse(&alert.post) else {
        return Ok(0);
    };
    let mut queued = 0;
    for contact in ctx.oncall.recipients(level, now) {
        for (channel, recipient) in channels(contact) {
            let text = render(
                ctx,
                &alert.rule,
                &post,
                alert.value,
                alert.threshold,
                &contact.lang,
            );
            let n = notification(ctx, &alert, what, level, contact, channel, recipient, &text);
            if outbox::enqueue(tx, &n, now)? {
                queued += 1;
            }
        }
    }
    Ok(queued)
}

fn channels(c: &Contact) -> Vec<(Channel, String)> {
    let mut out = Vec::new();
    if let Some(e) = &c.email {
        out.push((Channel::Email, e.clone()));
    }
    if let Some(t) = &c.telegram_chat {
        out.push((Channel::Telegram, t.clone()));
    }
    if let Some(w) = &c.webhook {
        out.push((Channel::Webhook, w.clone()));
    }
    out
}

#[allow(clippy::too_many_arguments)]
fn notification(
    ctx: &Context<'_>,
    alert: &AlertRow,
    what: &str,
    level: u8,
    contact: &Contact,
    channel: Channel,
    recipient: String,
    text: &str,
) -> Notification {
    let link = format!(
        "{}/#/alerts/{}",
        ctx.public_url.trim_end_matches('/'),
        alert.id
    );
    // (critical, warning, resolved, acknowledge link, open link) per language.
    let (critical, warning, resolved, acknowledge, open) = match contact.lang.as_str() {
        "kk" => ("ШҰҒЫЛ", "Ескерту", "Шешілді", "Растау", "Ашу"),
        "en" => ("CRITICAL", "Warning", "Resolved", "Acknowledge", "Open"),
        _ => (
            "КРИТИЧНО",
            "Предупреждение",
            "Решено",
            "Подтвердить",
            "Открыть",
        ),
    };
    let (head, open) = if what == "resolved" {
        (resolved, open)
    } else if alert.severity == Severity::Critical.as_str() {
        (critical, acknowledge)
    } else {
        (warning, acknowledge)
    };
    let subject = format!("[Taza] {head}: {text}");
    let body = format!("{subject}\n\n{open}: {link}\n");
    Notification {
        key: format!(
            "{}:{what}:{level}:{}:{recipient}",
            alert.id,
            channel.as_str()
        ),
        alert_id: alert.id,
        channel,
        recipient,
        subject,
        text: body,
        payload: serde_json::json!({
            "alert_id": alert.id,
            "event": what,
            "rule": alert.rule,
            "post": alert.post,
            "severity": alert.severity,
            "quantity": alert.quantity,
            "value": alert.value,
            "threshold": alert.threshold,
            "message": text,
            "lang": contact.lang,
            "fired_at": alert.fired_at,
            "escalation_level": level,
            "url": link,
        }),
    }
}

/// A rule's message in `lang` with its placeholders filled.
pub fn render(
    ctx: &Context<'_>,
    rule_id: &str,
    post: &PostId,
    value: f64,
    threshold: f64,
    lang: &str,
) -> String {
    let Some(rule) = ctx.rules.iter().find(|r| r.id == rule_id) else {
        return format!("{rule_id} at {post}");
    };
    let name = ctx
        .posts
        .iter()
        .find(|p| &p.id == post)
        .map_or(post.as_str(), |p| p.name.as_str());
    let quantity = rule.quantity.map_or("", |q| q.as_str());
    let unit = rule.quantity.map_or("", |q| q.unit().as_str());
    rule.message
        .get(lang)
        .replace("{post_name}", name)
        .replace("{post}", post.as_str())
        .replace("{value}", &format!("{value:.1}"))
        .replace("{threshold}", &format!("{threshold:.1}"))
        .replace("{unit}", unit)
        .replace("{quantity}", quantity)
}
