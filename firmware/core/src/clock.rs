//! The post's wall clock: Unix time derived from embassy-time's monotonic [`Instant`] and
//! the Unix time at boot (set from the network or an RTC), kept in milliseconds so the status
//! message can report the clock precisely enough for a commissioning offset check. Readings are
//! stamped with it; all pure logic (QA, averaging) takes the time as an argument instead of
//! asking for it.

use embassy_time::Instant;
use protocol::UnixSeconds;

/// Unix time = `unix_at_boot_ms` + time since boot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Clock {
    unix_at_boot_ms: i64,
}

impl Clock {
    /// A clock whose [`Instant`] zero is `unix_at_boot`.
    pub const fn new(unix_at_boot: UnixSeconds) -> Self {
        Self {
            unix_at_boot_ms: unix_at_boot.0.saturating_mul(1000),
        }
    }

    /// A clock whose [`Instant`] zero is `unix_at_boot_ms` Unix milliseconds.
    pub const fn from_unix_ms(unix_at_boot_ms: i64) -> Self {
        Self { unix_at_boot_ms }
    }

    /// The Unix time at `instant`, milliseconds.
    pub fn at_ms(&self, instant: Instant) -> i64 {
        // `as_millis` fits an i64 for 292 million years.
        self.unix_at_boot_ms
            .saturating_add(instant.as_millis() as i64)
    }

    /// The Unix time at `instant` (whole seconds, rounded down).
    pub fn at(&self, instant: Instant) -> UnixSeconds {
        UnixSeconds(self.at_ms(instant).div_euclid(1000))
    }

    /// The Unix time now.
    pub fn now(&self) -> UnixSeconds {
        self.at(Instant::now())
    }

    /// The Unix time now, milliseconds.
    pub fn now_ms(&self) -> i64 {
        self.at_ms(Instant::now())
    }

    /// The [`Instant`] at which the clock reads `t` (boot if `t` is before boot).
    pub fn instant_of(&self, t: UnixSeconds) -> Instant {
        let since_boot_ms =
            t.0.saturating_mul(1000)
                .saturating_sub(self.unix_at_boot_ms)
                .max(0);
        Instant::from_millis(since_boot_ms as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_clock_booted_mid_second_reads_whole_seconds_down_and_milliseconds_exactly() {
        let c = Clock::from_unix_ms(1_767_225_600_750);
        assert_eq!(c.at_ms(Instant::from_millis(500)), 1_767_225_601_250);
        assert_eq!(c.at(Instant::from_millis(200)), UnixSeconds(1_767_225_600));
        assert_eq!(c.at(Instant::from_millis(250)), UnixSeconds(1_767_225_601));
        // The first instant the clock reads a whole second is that second's start, not later.
        assert_eq!(
            c.instant_of(UnixSeconds(1_767_225_601)),
            Instant::from_millis(250)
        );
        assert_eq!(c.instant_of(UnixSeconds(0)), Instant::from_millis(0));
    }
}
