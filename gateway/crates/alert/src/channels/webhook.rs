//! Webhook channel: one HTTP POST of JSON per notification.
//!
//! The body is the notification's `payload` with an `idempotency_key` field added (a payload
//! that is not a JSON object is wrapped as `{"data": ..., "idempotency_key": ...}`). Headers:
//! `Idempotency-Key: <key>` (the same key on every attempt, so a receiver drops repeats),
//! `X-Taza-Timestamp: <unix seconds>` and `X-Taza-Signature: sha256=<hex>` where the hex is
//! HMAC-SHA256 over the exact body bytes with the webhook's `secret`.
//!
//! 2xx is delivered; 408, 429 and 5xx, timeouts and refused connections are retried; any other
//! status is a permanent refusal (the receiver will not change its mind on a retry).

use protocol::UnixSeconds;

use super::{error_chain, SendError, WebhookConfig};
use taza_store::outbox::Notification;

/// Header carrying the idempotency key.
pub const IDEMPOTENCY_HEADER: &str = "Idempotency-Key";
/// Header carrying `sha256=<hex HMAC-SHA256(secret, body)>`.
pub const SIGNATURE_HEADER: &str = "X-Taza-Signature";
/// Header carrying the send time, Unix seconds.
pub const TIMESTAMP_HEADER: &str = "X-Taza-Timestamp";
/// Longest receiver answer quoted in `last_error`.
const MAX_QUOTED_BODY_BYTES: usize = 200;

/// The body bytes a webhook receives for `n`.
pub fn body(n: &Notification) -> Vec<u8> {
    let value = match &n.payload {
        serde_json::Value::Object(map) => {
            let mut map = map.clone();
            map.insert(
                "idempotency_key".into(),
                serde_json::Value::String(n.key.clone()),
            );
            serde_json::Value::Object(map)
        }
        other => serde_json::json!({ "data": other, "idempotency_key": n.key }),
    };
    // `Value`'s Display is its compact JSON (the bytes `to_vec` gives) and cannot fail.
    value.to_string().into_bytes()
}

/// `sha256=<lower-case hex of HMAC-SHA256(secret, body)>`.
pub fn signature(secret: &[u8], body: &[u8]) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
    format!("sha256={}", hex(ring::hmac::sign(&key, body).as_ref()))
}

/// Lower-case hex.
pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

/// One attempt.
pub async fn send(
    http: &reqwest::Client,
    hook: &WebhookConfig,
    n: &Notification,
    now: UnixSeconds,
) -> Result<(), SendError> {
    let body = body(n);
    let sig = signature(hook.secret.expose().as_bytes(), &body);
    let response = http
        .post(&hook.url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header(IDEMPOTENCY_HEADER, &n.key)
        .header(TIMESTAMP_HEADER, now.0.to_string())
        .header(SIGNATURE_HEADER, sig)
        .body(body)
        .send()
        .await
        .map_err(|e| {
            let mut err = SendError::from_reqwest(e);
            err.detail = format!("webhook {:?}: {}", hook.name, err.detail);
            err
        })?;
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    let retry_after = retry_after(response.headers());
    // The status decides; the answer is only quoted, and a body that breaks off is said so.
    let quoted = match response.bytes().await {
        Ok(text) => String::from_utf8_lossy(text.get(..MAX_QUOTED_BODY_BYTES).unwrap_or(&text))
            .trim()
            .to_string(),
        Err(e) => format!("(answer unreadable: {})", error_chain(&e.without_url())),
    };
    let mut err = SendError::from_http_status(
        status,
        format!("webhook {:?} answered {status}: {quoted}", hook.name),
    );
    err.retry_after = retry_after;
    Err(err)
}

/// `Retry-After` in seconds (the HTTP-date form is rare for webhooks and ignored).
fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<std::time::Duration> {
    let retry_after_s: u64 = headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(std::time::Duration::from_secs(retry_after_s))
}

/// Reachable when the server answers a HEAD with any status (sending a POST would page someone).
pub async fn healthcheck(http: &reqwest::Client, hook: &WebhookConfig) -> Result<(), String> {
    match http.head(&hook.url).send().await {
        Ok(_) => Ok(()),
        Err(e) => Err(format!(
            "webhook {:?}: {}",
            hook.name,
            error_chain(&e.without_url())
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use taza_store::outbox::Channel;

    #[test]
    fn signature_matches_rfc_4231_test_case_2() {
        // RFC 4231 §4.3: key "Jefe", data "what do ya want for nothing?".
        assert_eq!(
            signature(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn signature_matches_rfc_4231_test_case_1() {
        // RFC 4231 §4.2: key 0x0b * 20, data "Hi There".
        assert_eq!(
            signature(&[0x0b; 20], b"Hi There"),
            "sha256=b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"
        );
    }

    fn note(payload: serde_json::Value) -> Notification {
        Notification {
            key: "7:fired:webhook:ops".into(),
            alert_id: 7,
            channel: Channel::Webhook,
            recipient: "ops".into(),
            subject: "s".into(),
            text: "t".into(),
            payload,
        }
    }

    #[test]
    fn body_adds_the_idempotency_key_to_an_object_payload() {
        let b: serde_json::Value =
            serde_json::from_slice(&body(&note(serde_json::json!({"alert": 7})))).unwrap();
        assert_eq!(
            b,
            serde_json::json!({"alert": 7, "idempotency_key": "7:fired:webhook:ops"})
        );
    }

    #[test]
    fn body_wraps_a_payload_that_is_not_an_object() {
        let b: serde_json::Value =
            serde_json::from_slice(&body(&note(serde_json::json!([1, 2])))).unwrap();
        assert_eq!(
            b,
            serde_json::json!({"data": [1, 2], "idempotency_key": "7:fired:webhook:ops"})
        );
    }

    #[tokio::test]
    async fn an_answer_that_breaks_off_is_reported_not_quoted_as_empty() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            // Read the whole request (headers, then Content-Length bytes) before answering.
            let mut req = Vec::new();
            let mut buf = [0u8; 4096];
            loop {
                let n = s.read(&mut buf).await.unwrap();
                req.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&req).to_ascii_lowercase();
                if let Some(end) = text.find("\r\n\r\n") {
                    let len: usize = text
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .map_or(0, |v| v.trim().parse().unwrap());
                    if req.len() >= end + 4 + len {
                        break;
                    }
                }
            }
            // 503 promising 100 bytes, then 5 and a close.
            s.write_all(b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 100\r\n\r\nshort")
                .await
                .unwrap();
        });
        let hook = WebhookConfig {
            name: "ops".into(),
            url,
            secret: taza_domain::secret::SecretString::new("s"),
        };
        let e = send(
            &reqwest::Client::new(),
            &hook,
            &note(serde_json::json!({})),
            UnixSeconds(0),
        )
        .await
        .unwrap_err();
        server.await.unwrap();
        assert!(e.retryable, "{e}");
        assert!(
            e.detail.starts_with(
                "webhook \"ops\" answered 503 Service Unavailable: (answer unreadable:"
            ),
            "{}",
            e.detail
        );
    }

    #[test]
    fn statuses_split_into_retry_and_permanent() {
        use reqwest::StatusCode as S;
        for (status, retryable) in [
            (S::INTERNAL_SERVER_ERROR, true),
            (S::BAD_GATEWAY, true),
            (S::REQUEST_TIMEOUT, true),
            (S::TOO_MANY_REQUESTS, true),
            (S::BAD_REQUEST, false),
            (S::UNAUTHORIZED, false),
            (S::NOT_FOUND, false),
            (S::GONE, false),
        ] {
            assert_eq!(
                SendError::from_http_status(status, String::new()).retryable,
                retryable,
                "{status}"
            );
        }
    }
}
