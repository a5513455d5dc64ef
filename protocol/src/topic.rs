//! MQTT topics: `{prefix}/v1/posts/{post_id}/{telemetry|status|config}`.
//!
//! Telemetry is QoS 1 from the post; status is retained (birth message, last will `offline`);
//! config is retained, gateway -> post.

use core::fmt::Write;

use crate::{DecodeError, PostId};

/// Default topic prefix.
pub const DEFAULT_PREFIX: &str = "taza";
/// Longest topic this crate formats (prefix included).
pub const MAX_TOPIC_LEN: usize = 128;

/// The last segment of a post topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TopicKind {
    /// Readings, post -> gateway, QoS 1.
    Telemetry,
    /// Birth message and last will, post -> gateway, retained.
    Status,
    /// Desired configuration, gateway -> post, retained.
    Config,
}

impl TopicKind {
    /// The topic segment.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Telemetry => "telemetry",
            Self::Status => "status",
            Self::Config => "config",
        }
    }
}

/// A formatted topic.
pub type TopicString = heapless::String<MAX_TOPIC_LEN>;

/// `{prefix}/v1/posts/{post}/{kind}`.
pub fn format(prefix: &str, post: &PostId, kind: TopicKind) -> Result<TopicString, DecodeError> {
    let mut s = TopicString::new();
    write!(s, "{prefix}/v1/posts/{post}/{}", kind.as_str()).map_err(|_| DecodeError::BadTopic)?;
    Ok(s)
}

/// `{prefix}/v1/posts/+/{kind}`: the filter the gateway subscribes with.
pub fn filter(prefix: &str, kind: TopicKind) -> Result<TopicString, DecodeError> {
    let mut s = TopicString::new();
    write!(s, "{prefix}/v1/posts/+/{}", kind.as_str()).map_err(|_| DecodeError::BadTopic)?;
    Ok(s)
}

/// Splits a topic under `prefix` into its post and kind.
pub fn parse(prefix: &str, topic: &str) -> Result<(PostId, TopicKind), DecodeError> {
    let rest = topic
        .strip_prefix(prefix)
        .and_then(|r| r.strip_prefix("/v1/posts/"))
        .ok_or(DecodeError::BadTopic)?;
    let (post, kind) = rest.split_once('/').ok_or(DecodeError::BadTopic)?;
    let kind = match kind {
        "telemetry" => TopicKind::Telemetry,
        "status" => TopicKind::Status,
        "config" => TopicKind::Config,
        _ => return Err(DecodeError::BadTopic),
    };
    Ok((PostId::parse(post)?, kind))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_parse_and_format_back() {
        let post = PostId::parse("almaty-001").unwrap();
        for kind in [TopicKind::Telemetry, TopicKind::Status, TopicKind::Config] {
            let t = format("taza", &post, kind).unwrap();
            assert_eq!(parse("taza", &t), Ok((post.clone(), kind)));
        }
        assert_eq!(
            filter("city/air", TopicKind::Telemetry).unwrap().as_str(),
            "city/air/v1/posts/+/telemetry"
        );
    }

    #[test]
    fn foreign_and_malformed_topics_are_refused() {
        for bad in [
            "taza/v2/posts/a/telemetry",
            "other/v1/posts/a/telemetry",
            "taza/v1/posts/a/readings",
            "taza/v1/posts/a/telemetry/extra",
            "taza/v1/posts//telemetry",
            "taza/v1/posts/telemetry",
            "tazax/v1/posts/a/telemetry",
        ] {
            assert!(parse("taza", bad).is_err(), "{bad}");
        }
        assert_eq!(
            parse("taza", "taza/v1/posts/Bad/telemetry"),
            Err(DecodeError::BadPostId)
        );
    }
}
