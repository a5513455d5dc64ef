//! The alert lifecycle in SQLite: firing -> acknowledged -> resolved, with every step in
//! `alert_events`, at most one open alert per (rule, post) (a unique index, so even a bug cannot
//! open two), and the notifications each step owes written to the durable outbox in the same
//! transaction, so a crash can neither lose a page nor send one for an alert that was not saved.
//! (`pending`, the wait for a rule's `for` duration, lives in the engine's memory.)

use protocol::{PostId, UnixSeconds};
use rusqlite::{params, OptionalExtension, Transaction};

use super::engine::{FireEvent, Transition};
use super::route::{Contact, OnCallConfig};
use super::rules::{Rule, Severity};
use taza_domain::post::PostEntry;
use taza_store::alerts::{event, state_of};
pub use taza_store::alerts::{get, list, open_keys, AlertEvent, AlertRow, Outcome};
use taza_store::outbox::{self, Channel, Notification};

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
