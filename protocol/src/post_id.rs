//! Post identifiers.

use core::fmt;
use core::str::FromStr;

use crate::DecodeError;

/// A post's id: 1 to [`PostId::MAX_LEN`] characters of `a-z`, `0-9`, `-` and `_`, starting with
/// a letter or digit. It appears in MQTT topics and SenML base names, so it must never contain
/// `/`, `+`, `#` or `:`; it exists only through [`PostId::parse`].
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PostId(heapless::String<{ PostId::MAX_LEN }>);

impl PostId {
    /// Longest id accepted.
    pub const MAX_LEN: usize = 32;

    /// Checks that `text` is a slug and makes it a `PostId`.
    pub fn parse(text: &str) -> Result<Self, DecodeError> {
        let bytes = text.as_bytes();
        let first_ok = bytes
            .first()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
        let all_ok = bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-' || *b == b'_');
        if !first_ok || !all_ok || bytes.len() > Self::MAX_LEN {
            return Err(DecodeError::BadPostId);
        }
        let mut s = heapless::String::new();
        s.push_str(text).map_err(|()| DecodeError::BadPostId)?;
        Ok(Self(s))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
}

impl FromStr for PostId {
    type Err = DecodeError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Display for PostId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for PostId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PostId({})", self.as_str())
    }
}

#[cfg(feature = "serde")]
impl serde::Serialize for PostId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

#[cfg(feature = "serde")]
impl<'de> serde::Deserialize<'de> for PostId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = PostId;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a post id: 1-32 of a-z, 0-9, '-', '_'")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<PostId, E> {
                PostId::parse(v).map_err(|_| E::invalid_value(serde::de::Unexpected::Str(v), &self))
            }
        }
        d.deserialize_str(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_are_accepted_and_everything_else_refused() {
        for ok in ["almaty-001", "a", "river_esentai_2", "0abc"] {
            assert_eq!(
                PostId::parse(ok).map(|p| p.as_str() == ok),
                Ok(true),
                "{ok}"
            );
        }
        for bad in [
            "",
            "-lead",
            "_lead",
            "Upper",
            "has space",
            "a/b",
            "a+b",
            "a#",
            "urn:x",
            "é",
            "abcdefghijklmnopqrstuvwxyz0123456",
        ] {
            assert_eq!(PostId::parse(bad), Err(DecodeError::BadPostId), "{bad:?}");
        }
    }
}
