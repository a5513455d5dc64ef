//! Delivery channels: their configuration (`[alert.channels]`), one send attempt per channel, and
//! the start-up / `/healthz` reachability check. Reads no table and keeps no state between
//! attempts; [`crate::deliver`] decides about retries from the [`SendError`] a channel returns.
//!
//! Secrets (HMAC keys, the bot token, the SMTP password) are [`SecretString`]s and never reach a
//! log line or an error text: the Telegram URL contains the token, so errors about it are built
//! without the URL.

pub mod email;
pub mod telegram;
pub mod webhook;

use std::time::Duration;

use futures_util::future::{BoxFuture, FutureExt};
use serde::{Deserialize, Serialize};

use taza_domain::secret::SecretString;
use taza_store::outbox::{Channel, Notification};

/// `[alert.channels]`: where notifications go and how hard to try.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ChannelsConfig {
    /// Named webhooks; a webhook notification's recipient is one of these names.
    pub webhooks: Vec<WebhookConfig>,
    /// Telegram bot; absent: Telegram notifications go dead ("not configured").
    pub telegram: Option<TelegramConfig>,
    /// SMTP relay; absent: e-mail notifications go dead ("not configured").
    pub email: Option<EmailConfig>,
    /// Retry schedule shared by all channels.
    pub retry: RetryConfig,
}

impl ChannelsConfig {
    /// Problems that make the section unusable, all of them (for `Config::validate`).
    pub fn validate(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let mut names = std::collections::HashSet::new();
        for w in &self.webhooks {
            if w.name.is_empty() {
                problems.push("alert.channels.webhooks: a webhook has an empty name".into());
            }
            if !names.insert(w.name.as_str()) {
                problems.push(format!(
                    "alert.channels.webhooks: name {:?} is used twice",
                    w.name
                ));
            }
            if reqwest::Url::parse(&w.url).is_err() {
                problems.push(format!(
                    "alert.channels.webhooks.{}: url is not a valid URL",
                    w.name
                ));
            }
            if w.secret.expose().is_empty() {
                problems.push(format!(
                    "alert.channels.webhooks.{}: secret is empty (receivers could not verify X-Taza-Signature)",
                    w.name
                ));
            }
        }
        if let Some(t) = &self.telegram {
            if t.bot_token.expose().is_empty() {
                problems.push("alert.channels.telegram.bot_token is empty".into());
            }
            if reqwest::Url::parse(&t.base_url).is_err() {
                problems.push("alert.channels.telegram.base_url is not a valid URL".into());
            }
        }
        if let Some(e) = &self.email {
            if e.from.parse::<lettre::message::Mailbox>().is_err() {
                problems.push(format!(
                    "alert.channels.email.from {:?} is not an e-mail address",
                    e.from
                ));
            }
            if e.password.is_some() && e.username.is_none() {
                problems.push("alert.channels.email: password without username".into());
            }
            if e.username.is_some() && e.password.is_none() {
                problems.push("alert.channels.email: username without password".into());
            }
            if e.tls == SmtpTls::None && e.password.is_some() {
                problems.push(
                    "alert.channels.email: tls = \"none\" would send the password in clear text"
                        .into(),
                );
            }
        }
        let r = &self.retry;
        if r.initial.is_zero() || r.max < r.initial {
            problems.push("alert.channels.retry: need 0 < initial <= max".into());
        }
        if r.max_attempts == 0 {
            problems.push("alert.channels.retry.max_attempts must be at least 1".into());
        }
        problems
    }
}

/// One webhook receiver.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// Name that notifications use as their recipient.
    pub name: String,
    /// Where the JSON is POSTed (never logged: it may carry a token in its query).
    pub url: String,
    /// HMAC-SHA256 key for `X-Taza-Signature`.
    pub secret: SecretString,
}

/// The Telegram bot.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelegramConfig {
    /// Bot API base URL (tests point it at a local receiver).
    #[serde(default = "default_telegram_base_url")]
    pub base_url: String,
    /// Bot token from @BotFather.
    pub bot_token: SecretString,
}

fn default_telegram_base_url() -> String {
    "https://api.telegram.org".into()
}

/// The SMTP relay.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailConfig {
    /// Relay host name.
    pub host: String,
    /// Relay port (587 for STARTTLS, 465 for TLS, 25 for none).
    pub port: u16,
    /// Transport security.
    #[serde(default)]
    pub tls: SmtpTls,
    /// SMTP user, if the relay wants one.
    #[serde(default)]
    pub username: Option<String>,
    /// SMTP password.
    #[serde(default)]
    pub password: Option<SecretString>,
    /// Sender, `Taza <alerts@example.kz>` or a bare address.
    pub from: String,
}

/// How the SMTP connection is protected.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpTls {
    /// Plain connection upgraded with STARTTLS (required, never skipped).
    #[default]
    Starttls,
    /// TLS from the first byte (SMTPS, port 465).
    Tls,
    /// No encryption: local relays and tests only.
    None,
}

/// Retry schedule: the n-th retry (n from 0) waits `initial * 2^n`, capped at `max`, less up to
/// 20 % jitter so notifications that failed together do not retry together.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetryConfig {
    /// Wait before the first retry.
    #[serde(with = "humantime_serde")]
    pub initial: Duration,
    /// Longest wait between attempts.
    #[serde(with = "humantime_serde")]
    pub max: Duration,
    /// Attempts (the first one included) before a notification goes dead.
    pub max_attempts: u32,
}

impl Default for RetryConfig {
    fn default() -> Self {
        // 2 s doubling to 10 min: 12 attempts span about 40 minutes, long enough to ride out a
        // relay restart, short enough that escalation notices a channel that stays down.
        Self {
            initial: Duration::from_secs(2),
            max: Duration::from_secs(600),
            max_attempts: 12,
        }
    }
}

/// Why an attempt failed, as a bounded metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FailureKind {
    /// The channel or the named webhook is not configured.
    NotConfigured,
    /// The recipient or the message cannot be sent at all (bad address, bad chat id).
    BadMessage,
    /// Could not connect (refused, DNS, TLS handshake).
    Connect,
    /// No answer within the attempt timeout.
    Timeout,
    /// The receiver asked us to slow down (HTTP 429, Telegram `retry_after`).
    RateLimited,
    /// The receiver failed (HTTP 5xx, SMTP 4xx).
    ServerError,
    /// The receiver refused the message (HTTP 4xx, SMTP 5xx, Telegram `ok: false`).
    Refused,
    /// Anything else on the way (broken connection mid-request, odd reply).
    Transport,
}

impl FailureKind {
    /// Every kind (metrics register a series for each).
    pub const ALL: [FailureKind; 8] = [
        Self::NotConfigured,
        Self::BadMessage,
        Self::Connect,
        Self::Timeout,
        Self::RateLimited,
        Self::ServerError,
        Self::Refused,
        Self::Transport,
    ];

    /// Metric label.
    pub fn as_label(self) -> &'static str {
        match self {
            Self::NotConfigured => "not_configured",
            Self::BadMessage => "bad_message",
            Self::Connect => "connect",
            Self::Timeout => "timeout",
            Self::RateLimited => "rate_limited",
            Self::ServerError => "server_error",
            Self::Refused => "refused",
            Self::Transport => "transport",
        }
    }
}

/// A failed attempt.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{}: {detail}", kind.as_label())]
pub struct SendError {
    /// Label.
    pub kind: FailureKind,
    /// Whether another attempt can succeed (false: dead at once).
    pub retryable: bool,
    /// The receiver's own wait request, if it made one.
    pub retry_after: Option<Duration>,
    /// What happened, without secrets or URLs.
    pub detail: String,
}

impl SendError {
    /// Another attempt may succeed.
    pub fn transient(kind: FailureKind, detail: impl Into<String>) -> Self {
        Self {
            kind,
            retryable: true,
            retry_after: None,
            detail: detail.into(),
        }
    }

    /// No attempt will succeed until someone changes something.
    pub fn permanent(kind: FailureKind, detail: impl Into<String>) -> Self {
        Self {
            kind,
            retryable: false,
            retry_after: None,
            detail: detail.into(),
        }
    }

    /// From an HTTP status that is not 2xx: 408/429/5xx retry, other 4xx are permanent.
    pub(crate) fn from_http_status(status: reqwest::StatusCode, detail: String) -> Self {
        match status.as_u16() {
            429 => Self::transient(FailureKind::RateLimited, detail),
            408 => Self::transient(FailureKind::Timeout, detail),
            s if s >= 500 => Self::transient(FailureKind::ServerError, detail),
            _ => Self::permanent(FailureKind::Refused, detail),
        }
    }

    /// From a reqwest error, with the URL stripped (it may hold the bot token).
    pub(crate) fn from_reqwest(e: reqwest::Error) -> Self {
        let kind = if e.is_timeout() {
            FailureKind::Timeout
        } else if e.is_connect() {
            FailureKind::Connect
        } else {
            FailureKind::Transport
        };
        Self::transient(kind, error_chain(&e.without_url()))
    }
}

/// `error: cause: cause`, the way `{:#}` prints an anyhow error.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        // hyper and reqwest repeat their cause in their own text; keep the line short.
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

/// Per-attempt limit: a hung receiver must not hold a delivery slot for long.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);

/// The channels built from config, shared by all attempts (one HTTP client, one SMTP transport).
#[derive(Clone)]
pub struct Senders {
    http: reqwest::Client,
    webhooks: std::collections::HashMap<String, WebhookConfig>,
    telegram: Option<TelegramConfig>,
    email: Option<email::EmailSender>,
}

impl std::fmt::Debug for Senders {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Senders")
            .field("webhooks", &self.webhooks.keys().collect::<Vec<_>>())
            .field("telegram", &self.telegram.is_some())
            .field("email", &self.email.is_some())
            .finish()
    }
}

/// Why the channels could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The HTTP client (TLS roots) failed to build.
    #[error("HTTP client: {0}")]
    Http(String),
    /// The SMTP settings are unusable.
    #[error("SMTP: {0}")]
    Smtp(String),
}

impl Senders {
    /// Builds the HTTP client and SMTP transport.
    pub fn new(cfg: &ChannelsConfig) -> Result<Self, BuildError> {
        let http = reqwest::Client::builder()
            .timeout(ATTEMPT_TIMEOUT)
            .connect_timeout(ATTEMPT_TIMEOUT / 2)
            // A webhook that redirects is misconfigured; following could leak the body elsewhere.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("taza-gateway/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| BuildError::Http(error_chain(&e.without_url())))?;
        let email = cfg
            .email
            .as_ref()
            .map(email::EmailSender::new)
            .transpose()?;
        Ok(Self {
            http,
            webhooks: cfg
                .webhooks
                .iter()
                .map(|w| (w.name.clone(), w.clone()))
                .collect(),
            telegram: cfg.telegram.clone(),
            email,
        })
    }

    /// One attempt to deliver `n`, bounded by [`ATTEMPT_TIMEOUT`].
    pub async fn send(&self, n: &Notification) -> Result<(), SendError> {
        let attempt = async {
            match n.channel {
                Channel::Webhook => {
                    let Some(hook) = self.webhooks.get(&n.recipient) else {
                        return Err(SendError::permanent(
                            FailureKind::NotConfigured,
                            format!("no webhook named {:?} in alert.channels", n.recipient),
                        ));
                    };
                    webhook::send(&self.http, hook, n, taza_domain::calendar::now()).await
                }
                Channel::Telegram => {
                    let Some(tg) = &self.telegram else {
                        return Err(SendError::permanent(
                            FailureKind::NotConfigured,
                            "alert.channels.telegram is not configured",
                        ));
                    };
                    telegram::send(&self.http, tg, n).await
                }
                Channel::Email => {
                    let Some(mail) = &self.email else {
                        return Err(SendError::permanent(
                            FailureKind::NotConfigured,
                            "alert.channels.email is not configured",
                        ));
                    };
                    mail.send(n).await
                }
            }
        };
        match tokio::time::timeout(ATTEMPT_TIMEOUT, attempt).await {
            Ok(result) => result,
            Err(_) => Err(SendError::transient(
                FailureKind::Timeout,
                format!("no answer within {ATTEMPT_TIMEOUT:?}"),
            )),
        }
    }
}

/// Reachability of one configured channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChannelHealth {
    /// Channel.
    pub channel: Channel,
    /// Which one: the webhook's name, `telegram`, or the SMTP host.
    pub target: String,
    /// None: reachable. Some: why not (no secrets).
    pub error: Option<String>,
}

impl ChannelHealth {
    /// Reachable.
    pub fn is_ok(&self) -> bool {
        self.error.is_none()
    }
}

/// Checks every configured channel without sending a notification: webhooks answer a HEAD (any
/// HTTP status counts: the server is there), Telegram's `getMe` accepts the token, the SMTP relay
/// greets and answers EHLO. Each check is bounded by [`ATTEMPT_TIMEOUT`].
pub async fn healthcheck(cfg: &ChannelsConfig) -> Vec<ChannelHealth> {
    let senders = match Senders::new(cfg) {
        Ok(s) => s,
        Err(e) => {
            return vec![ChannelHealth {
                channel: Channel::Webhook,
                target: "all".into(),
                error: Some(e.to_string()),
            }];
        }
    };
    let mut checks: Vec<BoxFuture<'static, ChannelHealth>> = Vec::new();
    for w in &cfg.webhooks {
        let http = senders.http.clone();
        let w = w.clone();
        checks.push(
            async move {
                ChannelHealth {
                    channel: Channel::Webhook,
                    target: w.name.clone(),
                    error: bounded(webhook::healthcheck(&http, &w)).await.err(),
                }
            }
            .boxed(),
        );
    }
    if let Some(tg) = &cfg.telegram {
        let http = senders.http.clone();
        let tg = tg.clone();
        checks.push(
            async move {
                ChannelHealth {
                    channel: Channel::Telegram,
                    target: "telegram".into(),
                    error: bounded(telegram::healthcheck(&http, &tg)).await.err(),
                }
            }
            .boxed(),
        );
    }
    if let (Some(mail), Some(ecfg)) = (senders.email.clone(), &cfg.email) {
        let target = format!("{}:{}", ecfg.host, ecfg.port);
        checks.push(
            async move {
                ChannelHealth {
                    channel: Channel::Email,
                    target,
                    error: bounded(mail.healthcheck()).await.err(),
                }
            }
            .boxed(),
        );
    }
    futures_util::future::join_all(checks).await
}

async fn bounded(
    check: impl std::future::Future<Output = Result<(), String>>,
) -> Result<(), String> {
    tokio::time::timeout(ATTEMPT_TIMEOUT, check)
        .await
        .unwrap_or_else(|_| Err(format!("no answer within {ATTEMPT_TIMEOUT:?}")))
}
