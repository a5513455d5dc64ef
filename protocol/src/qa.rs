//! Data-quality flags a post attaches to an averaged record.

/// Bit set of QA flags, carried in the SenML extension field `qa` (an unsigned integer; absent
/// means no flags). Unknown bits are preserved so a newer post's flags survive an older gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(transparent))]
pub struct QaFlags(pub u16);

impl QaFlags {
    /// No flags: a clean record.
    pub const NONE: Self = Self(0);
    /// The sensor was still warming up during the window.
    pub const WARM_UP: Self = Self(1 << 0);
    /// The value is outside the sensor's measuring range.
    pub const OUT_OF_RANGE: Self = Self(1 << 1);
    /// The value did not change over a window where it should have (stuck sensor).
    pub const STUCK: Self = Self(1 << 2);
    /// The sensor reported its maximum (saturated).
    pub const SATURATED: Self = Self(1 << 3);
    /// Relative humidity above 95 %: optical PM readings are unreliable.
    pub const HIGH_HUMIDITY: Self = Self(1 << 4);
    /// The sensor did not answer for part of the window.
    pub const SENSOR_NOT_ANSWERING: Self = Self(1 << 5);
    /// A correction (humidity, calibration) was applied; the raw value travels separately.
    pub const CORRECTED: Self = Self(1 << 6);

    /// Flags whose presence makes the value unusable for means and scores. High humidity and
    /// corrections are informative only: the value is still the post's best estimate.
    pub const INVALIDATING: Self = Self(
        Self::WARM_UP.0
            | Self::OUT_OF_RANGE.0
            | Self::STUCK.0
            | Self::SATURATED.0
            | Self::SENSOR_NOT_ANSWERING.0,
    );

    /// Names of the known flags, in bit order, for APIs and dashboards.
    pub const NAMES: [(QaFlags, &'static str); 7] = [
        (Self::WARM_UP, "warm_up"),
        (Self::OUT_OF_RANGE, "out_of_range"),
        (Self::STUCK, "stuck"),
        (Self::SATURATED, "saturated"),
        (Self::HIGH_HUMIDITY, "high_humidity"),
        (Self::SENSOR_NOT_ANSWERING, "sensor_not_answering"),
        (Self::CORRECTED, "corrected"),
    ];

    /// Whether every flag in `other` is set here.
    pub const fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }

    /// Both sets together.
    #[must_use]
    pub const fn union(self, other: Self) -> Self {
        Self(self.0 | other.0)
    }

    /// Whether a mean may include this value.
    pub const fn is_valid_for_means(self) -> bool {
        self.0 & Self::INVALIDATING.0 == 0
    }

    /// Whether no flag is set.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The names of the known flags that are set.
    pub fn names(self) -> impl Iterator<Item = &'static str> {
        Self::NAMES
            .into_iter()
            .filter(move |(flag, _)| self.contains(*flag))
            .map(|(_, name)| name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn high_humidity_is_informative_but_warm_up_invalidates() {
        assert!(QaFlags::HIGH_HUMIDITY.is_valid_for_means());
        assert!(!QaFlags::WARM_UP.is_valid_for_means());
        assert!(!QaFlags::HIGH_HUMIDITY
            .union(QaFlags::STUCK)
            .is_valid_for_means());
        let names: heapless::Vec<&str, 8> =
            QaFlags::WARM_UP.union(QaFlags::CORRECTED).names().collect();
        assert_eq!(names.as_slice(), &["warm_up", "corrected"]);
    }
}
