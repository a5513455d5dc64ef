//! Time on the wire: whole seconds since the Unix epoch, UTC.

/// Seconds since 1970-01-01T00:00:00Z. A reading's identity is (post, quantity, time), so the
/// resolution is one second: two readings of one quantity in the same second are one reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(transparent))]
pub struct UnixSeconds(pub i64);

impl UnixSeconds {
    /// The seconds as a plain integer.
    pub const fn get(self) -> i64 {
        self.0
    }

    /// This time moved by `seconds` (saturating).
    pub const fn offset(self, seconds: i64) -> Self {
        Self(self.0.saturating_add(seconds))
    }
}
