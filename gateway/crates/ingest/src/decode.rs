//! Topic + payload -> [`Payload`], or the reason it was refused. Pure: no I/O, no clock.

use protocol::topic::TopicKind;
use protocol::{PostId, UnixSeconds};

use crate::metrics::RejectReason;
use taza_domain::pipeline::{Payload, Reading};
use taza_domain::registry::{Admission, Registry};

/// Decodes one message. On refusal, returns the reason and the topic's post if it had one.
pub fn decode(
    prefix: &str,
    registry: &Registry,
    topic: &str,
    payload: &[u8],
    now: UnixSeconds,
) -> Result<Payload, (RejectReason, Option<PostId>)> {
    let (post, kind) =
        protocol::topic::parse(prefix, topic).map_err(|e| (RejectReason::Decode(e), None))?;
    if registry.admit(&post) == Admission::Refused {
        return Err((RejectReason::UnknownPost, Some(post)));
    }
    match kind {
        TopicKind::Telemetry => match protocol::senml::decode(payload, &post, now) {
            Ok(t) => Ok(Payload::Readings {
                readings: t
                    .readings
                    .iter()
                    .map(|m| Reading {
                        quantity: m.quantity,
                        value: m.value,
                        at: m.at,
                        flags: m.flags,
                        window_s: m.window_s,
                    })
                    .collect(),
                post,
            }),
            Err(e) => Err((RejectReason::Decode(e), Some(post))),
        },
        TopicKind::Status => match protocol::status::decode(payload) {
            Ok(status) => Ok(Payload::Status {
                post,
                status,
                clock_offset_ms: None,
            }),
            Err(e) => Err((RejectReason::Decode(e), Some(post))),
        },
        // The gateway publishes config; it does not subscribe to it.
        TopicKind::Config => Err((
            RejectReason::Decode(protocol::DecodeError::BadTopic),
            Some(post),
        )),
    }
}
