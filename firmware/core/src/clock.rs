//! The post's wall clock: Unix seconds derived from embassy-time's monotonic [`Instant`] and
//! the Unix time at boot (set from the network or an RTC). Readings are stamped with it; all
//! pure logic (QA, averaging) takes the time as an argument instead of asking for it.

use embassy_time::Instant;
use protocol::UnixSeconds;

/// Unix time = `unix_at_boot_s` + seconds since boot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Clock {
    unix_at_boot_s: i64,
}

impl Clock {
    /// A clock whose [`Instant`] zero is `unix_at_boot`.
    pub const fn new(unix_at_boot: UnixSeconds) -> Self {
        Self {
            unix_at_boot_s: unix_at_boot.0,
        }
    }

    /// The Unix time at `instant`.
    pub fn at(&self, instant: Instant) -> UnixSeconds {
        // `as_secs` fits an i64 for 292 billion years.
        UnixSeconds(self.unix_at_boot_s.saturating_add(instant.as_secs() as i64))
    }

    /// The Unix time now.
    pub fn now(&self) -> UnixSeconds {
        self.at(Instant::now())
    }

    /// The [`Instant`] at which the clock reads `t` (boot if `t` is before boot).
    pub fn instant_of(&self, t: UnixSeconds) -> Instant {
        let since_boot = t.0.saturating_sub(self.unix_at_boot_s).max(0);
        Instant::from_secs(since_boot as u64)
    }
}
