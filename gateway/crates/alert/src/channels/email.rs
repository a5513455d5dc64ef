//! E-mail channel: one plain-text message per notification through an SMTP relay (lettre).
//!
//! `Message-ID: <{hex sha256(idempotency key)}@taza>` is the same on every attempt, so a mail
//! system or client that de-duplicates by Message-ID shows a crash-repeat once. The subject is
//! the notification's subject; the body its text (UTF-8, quoted-printable as lettre chooses).
//!
//! SMTP replies 4xx and connection failures retry; 5xx replies (unknown mailbox, relay denied)
//! and unparseable addresses are permanent.

use lettre::message::header::ContentType;
use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use super::{
    error_chain, BuildError, EmailConfig, FailureKind, SendError, SmtpTls, ATTEMPT_TIMEOUT,
};
use taza_store::outbox::Notification;

/// The relay connection settings and sender, built once.
#[derive(Clone)]
pub struct EmailSender {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

/// `<{hex sha256(key)}@taza>`: stable per notification, and it does not leak the key's contents
/// (the recipient's address is part of the key).
pub fn message_id(key: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, key.as_bytes());
    format!("<{}@taza>", super::webhook::hex(digest.as_ref()))
}

impl EmailSender {
    /// Builds the transport (no connection is made yet).
    pub fn new(cfg: &EmailConfig) -> Result<Self, BuildError> {
        let from: Mailbox = cfg
            .from
            .parse()
            .map_err(|e| BuildError::Smtp(format!("from {:?}: {e}", cfg.from)))?;
        let tls = match cfg.tls {
            SmtpTls::None => Tls::None,
            SmtpTls::Starttls | SmtpTls::Tls => {
                let params = TlsParameters::new(cfg.host.clone())
                    .map_err(|e| BuildError::Smtp(error_chain(&e)))?;
                if cfg.tls == SmtpTls::Tls {
                    Tls::Wrapper(params)
                } else {
                    Tls::Required(params)
                }
            }
        };
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(cfg.host.clone())
            .port(cfg.port)
            .tls(tls)
            .timeout(Some(ATTEMPT_TIMEOUT));
        if let Some(user) = &cfg.username {
            // A missing password is a config mistake, not an empty password to try on the relay.
            let password = cfg.password.as_ref().ok_or_else(|| {
                BuildError::Smtp("alert.channels.email: username without password".into())
            })?;
            builder = builder.credentials(Credentials::new(
                user.clone(),
                password.expose().to_string(),
            ));
        }
        Ok(Self {
            transport: builder.build(),
            from,
        })
    }

    /// The message for `n` (public so tests and previews see exactly what is sent).
    pub fn message(&self, n: &Notification) -> Result<Message, SendError> {
        let to: Mailbox = n.recipient.parse().map_err(|e| {
            SendError::permanent(
                FailureKind::BadMessage,
                format!("recipient is not an e-mail address: {e}"),
            )
        })?;
        Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(n.subject.clone())
            .message_id(Some(message_id(&n.key)))
            .header(ContentType::TEXT_PLAIN)
            .body(n.text.clone())
            .map_err(|e| SendError::permanent(FailureKind::BadMessage, e.to_string()))
    }

    /// One attempt.
    pub async fn send(&self, n: &Notification) -> Result<(), SendError> {
        let message = self.message(n)?;
        self.transport
            .send(message)
            .await
            .map(drop)
            .map_err(classify)
    }

    /// Reachable when the relay greets and answers EHLO (no message, no login).
    pub async fn healthcheck(self) -> Result<(), String> {
        match self.transport.test_connection().await {
            Ok(true) => Ok(()),
            Ok(false) => Err("SMTP relay did not answer NOOP".into()),
            Err(e) => Err(format!("SMTP: {}", error_chain(&e))),
        }
    }
}

fn classify(e: lettre::transport::smtp::Error) -> SendError {
    let detail = format!("SMTP: {}", error_chain(&e));
    if e.is_permanent() {
        SendError::permanent(FailureKind::Refused, detail)
    } else if e.is_transient() {
        SendError::transient(FailureKind::ServerError, detail)
    } else if e.is_timeout() {
        SendError::transient(FailureKind::Timeout, detail)
    } else if e.is_tls() {
        SendError::transient(FailureKind::Connect, detail)
    } else {
        // Connection refused, reset, or an unexpected reply: the relay may be back soon.
        SendError::transient(FailureKind::Transport, detail)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_id_is_the_sha256_of_the_key() {
        // sha256("abc") from FIPS 180-2, appendix B.1.
        assert_eq!(
            message_id("abc"),
            "<ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad@taza>"
        );
    }

    #[test]
    fn a_username_without_a_password_is_refused_not_sent_with_an_empty_one() {
        let cfg = EmailConfig {
            host: "127.0.0.1".into(),
            port: 25,
            tls: SmtpTls::None,
            username: Some("taza".into()),
            password: None,
            from: "alerts@example.kz".into(),
        };
        let e = EmailSender::new(&cfg).err().expect("refused");
        assert!(e.to_string().contains("username without password"), "{e}");
        let channels = super::super::ChannelsConfig {
            email: Some(cfg),
            ..Default::default()
        };
        assert_eq!(
            channels.validate(),
            ["alert.channels.email: username without password"]
        );
    }
}
