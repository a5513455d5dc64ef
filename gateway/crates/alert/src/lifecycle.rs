//! The alert lifecycle in the store (SQLite or PostgreSQL, through [`Db`]): firing ->
//! acknowledged -> resolved, with every step in `alert_events`, at most one open alert per
//! (rule, post) (a unique index, so even a bug, or two replicas, cannot open two), and the
//! notifications each step owes written to the durable outbox in the same transaction, so a
//! crash can neither lose a page nor send one for an alert that was not saved. (`pending`, the
//! wait for a rule's `for` duration, lives in the engine's memory.)

use protocol::{PostId, UnixSeconds};
use taza_store::{Db, StoreError};

use super::engine::{FireEvent, Transition};
use super::route::{Contact, OnCallConfig};
use super::rules::{Rule, Severity};
use taza_domain::post::PostEntry;
use taza_store::alerts::{self as log, event, state_of, NewAlert};
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
    db: &Db<'_>,
    ctx: &Context<'_>,
    transitions: &[Transition],
    now: UnixSeconds,
) -> Result<usize, StoreError> {
    let mut queued = 0;
    for t in transitions {
        match t {
            Transition::Fire(f) => queued += fire(db, ctx, f, now)?,
            Transition::Clear { rule, post, at } => {
                if let Some(id) = log::open_id(db, rule, post.as_str())? {
                    queued += close(db, ctx, id, "rule", *at)?;
                }
            }
        }
    }
    Ok(queued)
}

fn fire(
    db: &Db<'_>,
    ctx: &Context<'_>,
    f: &FireEvent,
    now: UnixSeconds,
) -> Result<usize, StoreError> {
    let message = render(ctx, &f.rule, &f.post, f.value, f.threshold, "ru");
    let new = NewAlert {
        rule: &f.rule,
        post: f.post.as_str(),
        severity: f.severity.as_str(),
        quantity: f.quantity.map(|q| q.as_str()),
        value: f.value,
        threshold: f.threshold,
        message: &message,
        fired_at: f.at,
    };
    let Some(id) = log::insert_firing(db, &new)? else {
        // Already open (dedupe per rule and post).
        return Ok(0);
    };
    event(
        db,
        id,
        now,
        "fired",
        "rule",
        Some(&format!(
            "value {:.1}, threshold {:.1}",
            f.value, f.threshold
        )),
    )?;
    notify(db, ctx, id, "fired", 1, now)
}

fn close(
    db: &Db<'_>,
    ctx: &Context<'_>,
    id: i64,
    by: &str,
    at: UnixSeconds,
) -> Result<usize, StoreError> {
    let level = log::escalation_level(db, id)?;
    log::mark_resolved(db, id, at, by)?;
    event(db, id, at, "resolved", by, None)?;
    let mut queued = 0;
    for lvl in 1..=u8::try_from(level).unwrap_or(1) {
        queued += notify(db, ctx, id, "resolved", lvl, at)?;
    }
    Ok(queued)
}

/// A person acknowledges: escalation stops; the alert stays open until its condition clears.
pub fn acknowledge(
    db: &Db<'_>,
    id: i64,
    by: &str,
    now: UnixSeconds,
) -> Result<Outcome, StoreError> {
    match state_of(db, id)?.as_deref() {
        None => Ok(Outcome::NotFound),
        Some("firing") => {
            log::mark_acknowledged(db, id, now, by)?;
            event(db, id, now, "acknowledged", by, None)?;
            Ok(Outcome::Done)
        }
        Some(_) => Ok(Outcome::AlreadyDone),
    }
}

/// A person resolves an alert by hand (the engine then stays quiet until the condition clears).
pub fn resolve(
    db: &Db<'_>,
    ctx: &Context<'_>,
    id: i64,
    by: &str,
    now: UnixSeconds,
) -> Result<Outcome, StoreError> {
    match state_of(db, id)?.as_deref() {
        None => Ok(Outcome::NotFound),
        Some("resolved") => Ok(Outcome::AlreadyDone),
        Some(_) => {
            close(db, ctx, id, by, now)?;
            Ok(Outcome::Done)
        }
    }
}

/// Pages the next level for critical alerts nobody acknowledged in time. Returns notifications
/// queued.
pub fn escalate(db: &Db<'_>, ctx: &Context<'_>, now: UnixSeconds) -> Result<usize, StoreError> {
    let after_s = ctx.oncall.escalate_after.as_secs() as i64;
    let top = i64::from(ctx.oncall.top_level());
    let mut queued = 0;
    for (id, level) in log::due_for_escalation(db, top, after_s, now)? {
        let next = level + 1;
        log::mark_escalated(db, id, next, now)?;
        event(
            db,
            id,
            now,
            "escalated",
            "escalation",
            Some(&format!("level {next}")),
        )?;
        queued += notify(
            db,
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
    db: &Db<'_>,
    ctx: &Context<'_>,
    id: i64,
    what: &str,
    level: u8,
    now: UnixSeconds,
) -> Result<usize, StoreError> {
    let Some((alert, _)) = get(db, id)? else {
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
            if outbox::enqueue(db, &n, now)? {
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::engine::FireEvent;
    use crate::route::Contact;
    use protocol::Quantity;
    use taza_domain::post::PostKind;

    const T0: i64 = 1_767_225_600;

    fn contact(name: &str, level: u8) -> Contact {
        Contact {
            name: name.into(),
            level,
            lang: "en".into(),
            email: Some(format!("{name}@akimat.kz")),
            telegram_chat: None,
            webhook: None,
            shift: None,
        }
    }

    fn fired(rule: &str, severity: Severity) -> Transition {
        Transition::Fire(FireEvent {
            rule: rule.into(),
            post: PostId::parse("air-1").unwrap(),
            severity,
            quantity: Some(Quantity::Pm2_5),
            value: 170.0,
            threshold: 160.0,
            at: UnixSeconds(T0),
        })
    }

    fn outbox_keys(db: &Db<'_>) -> Vec<String> {
        let mut keys: Vec<String> = outbox::list(db, None, 100)
            .unwrap()
            .into_iter()
            .map(|r| r.key)
            .collect();
        keys.sort();
        keys
    }
    use taza_store::pg::test_server::{on_postgres, on_sqlite};

    #[test]
    fn fire_escalate_and_clear_write_the_alert_its_history_and_each_page_once_on_sqlite() {
        on_sqlite(fire_escalate_and_clear_write_the_alert_its_history_and_each_page_once);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn fire_escalate_and_clear_write_the_alert_its_history_and_each_page_once_on_postgres() {
        on_postgres(
            "lifecycle::fire_escalate_and_clear",
            fire_escalate_and_clear_write_the_alert_its_history_and_each_page_once,
        )
        .await;
    }

    #[test]
    fn a_person_acknowledges_once_and_resolves_once_on_sqlite() {
        on_sqlite(a_person_acknowledges_once_and_resolves_once);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_person_acknowledges_once_and_resolves_once_on_postgres() {
        on_postgres(
            "lifecycle::a_person_acknowledges_once",
            a_person_acknowledges_once_and_resolves_once,
        )
        .await;
    }

    fn fire_escalate_and_clear_write_the_alert_its_history_and_each_page_once(db: &Db<'_>) {
        let norms = taza_score::Norms::embedded().unwrap();
        let rules = crate::rules::load(None, &norms).unwrap();
        let posts = [PostEntry::new(
            PostId::parse("air-1").unwrap(),
            PostKind::Air,
            "Air one",
            43.25,
            76.9,
        )];
        let oncall = OnCallConfig {
            escalate_after: Duration::from_secs(900),
            contacts: vec![contact("duty", 1), contact("chief", 2)],
        };
        let ctx = Context {
            rules: &rules,
            posts: &posts,
            oncall: &oncall,
            public_url: "http://taza/",
        };
        let now = UnixSeconds(T0);
        let fire = [fired("pm2_5_high_pollution", Severity::Critical)];
        assert_eq!(apply(db, &ctx, &fire, now).unwrap(), 1, "level 1 paged");
        assert_eq!(apply(db, &ctx, &fire, now).unwrap(), 0, "deduped");
        let [alert] = list(db, Some("open"), 10).unwrap().try_into().unwrap();
        assert_eq!(
            (
                alert.state.as_str(),
                alert.threshold,
                alert.message.as_str()
            ),
            (
                "firing",
                160.0,
                "ВЗ Air one: PM2.5 170.0 мкг/м³ — 10 ПДК м.р. и выше"
            )
        );

        assert_eq!(escalate(db, &ctx, now.offset(899)).unwrap(), 0);
        assert_eq!(
            escalate(db, &ctx, now.offset(900)).unwrap(),
            1,
            "level 2 paged"
        );
        assert_eq!(
            escalate(db, &ctx, now.offset(9000)).unwrap(),
            0,
            "2 is the top"
        );

        let clear = [Transition::Clear {
            rule: "pm2_5_high_pollution".into(),
            post: PostId::parse("air-1").unwrap(),
            at: now.offset(1000),
        }];
        assert_eq!(
            apply(db, &ctx, &clear, now.offset(1000)).unwrap(),
            2,
            "both levels told"
        );
        assert_eq!(
            apply(db, &ctx, &clear, now.offset(1000)).unwrap(),
            0,
            "nothing open"
        );
        let (row, events) = get(db, alert.id).unwrap().unwrap();
        assert_eq!(
            (
                row.state.as_str(),
                row.resolved_by.as_deref(),
                row.escalation_level
            ),
            ("resolved", Some("rule"), 2)
        );
        let history: Vec<&str> = events.iter().map(|e| e.event.as_str()).collect();
        assert_eq!(history, ["fired", "escalated", "resolved"]);
        let id = alert.id;
        assert_eq!(
            outbox_keys(db),
            [
                format!("{id}:escalated:2:email:chief@akimat.kz"),
                format!("{id}:fired:1:email:duty@akimat.kz"),
                format!("{id}:resolved:1:email:duty@akimat.kz"),
                format!("{id}:resolved:2:email:chief@akimat.kz"),
            ]
        );
    }

    fn a_person_acknowledges_once_and_resolves_once(db: &Db<'_>) {
        let norms = taza_score::Norms::embedded().unwrap();
        let rules = crate::rules::load(None, &norms).unwrap();
        let oncall = OnCallConfig::default();
        let ctx = Context {
            rules: &rules,
            posts: &[],
            oncall: &oncall,
            public_url: "http://taza",
        };
        let now = UnixSeconds(T0);
        apply(
            db,
            &ctx,
            &[fired("pm2_5_one_time_limit", Severity::Warning)],
            now,
        )
        .unwrap();
        let [alert] = list(db, None, 10).unwrap().try_into().unwrap();
        assert_eq!(
            acknowledge(db, alert.id, "ops", now).unwrap(),
            Outcome::Done
        );
        assert_eq!(
            acknowledge(db, alert.id, "ops", now).unwrap(),
            Outcome::AlreadyDone
        );
        assert_eq!(
            resolve(db, &ctx, alert.id, "ops", now).unwrap(),
            Outcome::Done
        );
        assert_eq!(
            resolve(db, &ctx, alert.id, "ops", now).unwrap(),
            Outcome::AlreadyDone
        );
        assert_eq!(acknowledge(db, 999, "ops", now).unwrap(), Outcome::NotFound);
        let (row, _) = get(db, alert.id).unwrap().unwrap();
        assert_eq!(
            (
                row.state.as_str(),
                row.acked_by.as_deref(),
                row.resolved_by.as_deref()
            ),
            ("resolved", Some("ops"), Some("ops"))
        );
    }
}
