//! Telegram channel: Bot API `sendMessage` to a chat id.
//!
//! `POST {base_url}/bot{token}/sendMessage` with `{"chat_id", "text", "disable_web_page_preview":
//! true}`; the text is the subject line, a blank line, then the body. `ok: true` is delivered;
//! 429 waits `parameters.retry_after` seconds; 5xx and network failures retry; any other
//! `ok: false` (unknown chat, bot blocked, bad token) is permanent.
//!
//! The URL holds the bot token, so it never reaches a log or an error: errors are built from
//! reqwest errors with the URL removed.
//!
//! Warning: the Bot API has no idempotency key. If the gateway dies after Telegram accepted a
//! message but before the outbox recorded it, the message is sent again on restart (at least
//! once); on-call staff may see it twice.

use std::time::Duration;

use serde::Deserialize;

use super::{error_chain, FailureKind, SendError, TelegramConfig};
use taza_store::outbox::Notification;

/// Telegram's limit on one message, in UTF-16 code units; we cut at this many chars, which is
/// never more code units than Telegram counts for the Cyrillic and Latin text we send.
const MAX_TEXT_CHARS: usize = 4096;

/// The Bot API's answer (only what we read).
#[derive(Debug, Deserialize)]
struct ApiReply {
    ok: bool,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    parameters: Option<ReplyParameters>,
}

#[derive(Debug, Deserialize)]
struct ReplyParameters {
    #[serde(default)]
    retry_after: Option<u64>,
}

/// The message text: subject, blank line, body, cut to Telegram's limit.
pub fn message_text(n: &Notification) -> String {
    let full = if n.text.is_empty() {
        n.subject.clone()
    } else {
        format!("{}\n\n{}", n.subject, n.text)
    };
    if full.chars().count() <= MAX_TEXT_CHARS {
        full
    } else {
        full.chars().take(MAX_TEXT_CHARS).collect()
    }
}

fn method_url(cfg: &TelegramConfig, method: &str) -> String {
    format!(
        "{}/bot{}/{method}",
        cfg.base_url.trim_end_matches('/'),
        cfg.bot_token.expose()
    )
}

/// One attempt.
pub async fn send(
    http: &reqwest::Client,
    cfg: &TelegramConfig,
    n: &Notification,
) -> Result<(), SendError> {
    let body = serde_json::json!({
        "chat_id": n.recipient,
        "text": message_text(n),
        "disable_web_page_preview": true,
    });
    let response = http
        .post(method_url(cfg, "sendMessage"))
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body.to_string())
        .send()
        .await
        .map_err(SendError::from_reqwest)?;
    let status = response.status();
    let bytes = response.bytes().await.map_err(SendError::from_reqwest)?;
    let reply: Option<ApiReply> = serde_json::from_slice(&bytes).ok();
    match reply {
        Some(ApiReply { ok: true, .. }) if status.is_success() => Ok(()),
        Some(r) => {
            let retry_after_s = r.parameters.and_then(|p| p.retry_after);
            let detail = format!(
                "telegram answered {status}: {}",
                r.description.as_deref().unwrap_or("no description")
            );
            let mut err = if retry_after_s.is_some() {
                SendError::transient(FailureKind::RateLimited, detail)
            } else if status.is_success() {
                // ok: false with 200 does not happen in the documented API; treat it as a refusal.
                SendError::permanent(FailureKind::Refused, detail)
            } else {
                SendError::from_http_status(status, detail)
            };
            err.retry_after = retry_after_s.map(Duration::from_secs);
            Err(err)
        }
        None if status.is_success() => Err(SendError::transient(
            FailureKind::Transport,
            format!("telegram answered {status} with a body that is not a Bot API reply"),
        )),
        None => Err(SendError::from_http_status(
            status,
            format!("telegram answered {status}"),
        )),
    }
}

/// Reachable when `getMe` accepts the token.
pub async fn healthcheck(http: &reqwest::Client, cfg: &TelegramConfig) -> Result<(), String> {
    let response = http
        .get(method_url(cfg, "getMe"))
        .send()
        .await
        .map_err(|e| format!("telegram: {}", error_chain(&e.without_url())))?;
    let status = response.status();
    let bytes = response
        .bytes()
        .await
        .map_err(|e| format!("telegram: {}", error_chain(&e.without_url())))?;
    match serde_json::from_slice::<ApiReply>(&bytes) {
        Ok(ApiReply { ok: true, .. }) => Ok(()),
        Ok(r) => Err(format!(
            "telegram getMe answered {status}: {}",
            r.description.as_deref().unwrap_or("no description")
        )),
        Err(_) => Err(format!("telegram getMe answered {status}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use taza_store::outbox::Channel;

    #[test]
    fn text_is_subject_then_body_and_cut_to_the_limit() {
        let mut n = Notification {
            key: "k".into(),
            alert_id: 1,
            channel: Channel::Telegram,
            recipient: "-100".into(),
            subject: "PM2.5 > ПДК".into(),
            text: "подробнее".into(),
            payload: serde_json::Value::Null,
        };
        assert_eq!(message_text(&n), "PM2.5 > ПДК\n\nподробнее");
        n.text = "ж".repeat(5000);
        assert_eq!(message_text(&n).chars().count(), MAX_TEXT_CHARS);
    }

    #[test]
    fn rate_limit_reply_parses_retry_after() {
        let r: ApiReply = serde_json::from_str(
            r#"{"ok":false,"error_code":429,"description":"Too Many Requests: retry after 3","parameters":{"retry_after":3}}"#,
        )
        .unwrap();
        assert!(!r.ok);
        assert_eq!(r.parameters.and_then(|p| p.retry_after), Some(3));
    }
}
