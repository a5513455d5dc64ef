//! The city's calendar: hours and local days in Asia/Almaty, where days, months and years are
//! judged (Kazakhstan moved Almaty from UTC+6 to UTC+5 on 2024-03-01; chrono-tz knows both).

use chrono::{DateTime, Datelike, NaiveDate, NaiveTime, TimeZone, Utc};
use chrono_tz::Asia::Almaty;
use protocol::UnixSeconds;

/// The time zone days are judged in.
pub const CITY_TZ: chrono_tz::Tz = Almaty;

/// Start of the UTC hour containing `at` (Almaty's offset is a whole number of hours, so UTC
/// hours are local hours too).
pub fn hour_start(at: UnixSeconds) -> UnixSeconds {
    UnixSeconds(at.0.div_euclid(3600) * 3600)
}

/// Seconds [`utc`] keeps inside chrono's range, so that Almaty's local date of the clamped
/// instant exists too (chrono panics on a local time past its ends).
const CHRONO_MARGIN_S: i64 = 86_400;
/// Earliest instant [`utc`] returns.
const EARLIEST: DateTime<Utc> =
    match DateTime::from_timestamp(DateTime::<Utc>::MIN_UTC.timestamp() + CHRONO_MARGIN_S, 0) {
        Some(t) => t,
        None => DateTime::<Utc>::MIN_UTC,
    };
/// Latest instant [`utc`] returns.
const LATEST: DateTime<Utc> =
    match DateTime::from_timestamp(DateTime::<Utc>::MAX_UTC.timestamp() - CHRONO_MARGIN_S, 0) {
        Some(t) => t,
        None => DateTime::<Utc>::MAX_UTC,
    };

/// `at` as a chrono instant. chrono's range ends near the years ±262 000, far beyond any reading
/// or request; an instant past either end is clamped to a day inside it, so it still sorts and
/// prints on its side of every real time instead of as 1970-01-01.
fn utc(at: UnixSeconds) -> DateTime<Utc> {
    if at.0 <= EARLIEST.timestamp() {
        EARLIEST
    } else if at.0 >= LATEST.timestamp() {
        LATEST
    } else {
        // In range by the two checks above; the fallback is never taken.
        DateTime::from_timestamp(at.0, 0).unwrap_or(LATEST)
    }
}

/// A local calendar day in Almaty and its bounds as instants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LocalDay {
    /// The local date.
    pub date: NaiveDate,
    /// First second of the day.
    pub start: UnixSeconds,
    /// First second of the next day.
    pub end: UnixSeconds,
}

impl LocalDay {
    /// The local day containing `at`.
    pub fn containing(at: UnixSeconds) -> Self {
        let date = utc(at).with_timezone(&CITY_TZ).date_naive();
        Self::of(date)
    }

    /// The local day `date`.
    pub fn of(date: NaiveDate) -> Self {
        let start = local_midnight(date);
        let end = local_midnight(date.succ_opt().unwrap_or(date));
        Self { date, start, end }
    }

    /// Length of the day in hours (always 24 in Almaty since DST ended in 2005; kept general).
    pub fn hours(&self) -> i64 {
        (self.end.0 - self.start.0) / 3600
    }

    /// `YYYY-MM-DD`.
    pub fn label(&self) -> String {
        self.date.format("%Y-%m-%d").to_string()
    }
}

/// First instant of a local date (the earliest if midnight is ambiguous or skipped).
fn local_midnight(date: NaiveDate) -> UnixSeconds {
    // Midnight exists on every date: `and_time` cannot fail.
    let naive = date.and_time(NaiveTime::MIN);
    let instant = CITY_TZ
        .from_local_datetime(&naive)
        .earliest()
        // A skipped midnight (a DST jump at 00:00) starts the day at 01:00.
        .or_else(|| {
            CITY_TZ
                .from_local_datetime(&(naive + chrono::Duration::hours(1)))
                .earliest()
        });
    UnixSeconds(instant.map_or(0, |t| t.timestamp()))
}

/// The local calendar year containing `at`.
pub fn local_year(at: UnixSeconds) -> i32 {
    LocalDay::containing(at).date.year()
}

/// Now, as wire time.
pub fn now() -> UnixSeconds {
    UnixSeconds(Utc::now().timestamp())
}

/// Now, unix milliseconds (clock offsets of posts).
pub fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

/// Formats an instant as RFC 3339 in UTC.
pub fn rfc3339(at: UnixSeconds) -> String {
    utc(at).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Formats an instant as RFC 3339 in Almaty's local time (`2026-01-15T08:30:00+05:00`), for
/// people in the city: technicians' reports.
pub fn rfc3339_local(at: UnixSeconds) -> String {
    utc(at)
        .with_timezone(&CITY_TZ)
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Parses RFC 3339 into wire time.
pub fn parse_rfc3339(text: &str) -> Option<UnixSeconds> {
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| UnixSeconds(t.timestamp()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> UnixSeconds {
        parse_rfc3339(s).unwrap()
    }

    #[test]
    fn almaty_day_since_march_2024_runs_from_19_utc_to_19_utc() {
        let day = LocalDay::containing(utc("2025-01-14T20:00:00Z"));
        assert_eq!(day.label(), "2025-01-15");
        assert_eq!(day.start, utc("2025-01-14T19:00:00Z"));
        assert_eq!(day.end, utc("2025-01-15T19:00:00Z"));
        // 01:00 UTC on the 15th is the same local day: it crosses UTC midnight.
        assert_eq!(LocalDay::containing(utc("2025-01-15T01:00:00Z")), day);
        assert_eq!(
            LocalDay::containing(utc("2025-01-14T18:59:59Z")).label(),
            "2025-01-14"
        );
    }

    #[test]
    fn almaty_day_before_march_2024_was_utc_plus_6() {
        let day = LocalDay::containing(utc("2023-06-01T12:00:00Z"));
        assert_eq!(day.start, utc("2023-05-31T18:00:00Z"));
        assert_eq!(day.hours(), 24);
        // The switch day, 2024-03-01, lasted 25 hours: clocks went back from 00:00 to 23:00.
        let switch = LocalDay::of(NaiveDate::from_ymd_opt(2024, 2, 29).unwrap());
        assert_eq!(switch.start, utc("2024-02-28T18:00:00Z"));
        assert_eq!(switch.hours(), 25);
    }

    #[test]
    fn hours_start_on_the_hour_for_negative_and_positive_times() {
        assert_eq!(hour_start(UnixSeconds(7199)), UnixSeconds(3600));
        assert_eq!(hour_start(UnixSeconds(-1)), UnixSeconds(-3600));
    }

    #[test]
    fn instants_beyond_chronos_range_clamp_to_its_ends_instead_of_becoming_1970() {
        let late = UnixSeconds(i64::MAX);
        let early = UnixSeconds(i64::MIN);
        assert!(LocalDay::containing(late).date.year() > 200_000);
        assert!(LocalDay::containing(early).date.year() < -200_000);
        assert!(local_year(late) > 200_000);
        for text in [
            rfc3339(late),
            rfc3339_local(late),
            rfc3339(early),
            rfc3339_local(early),
        ] {
            assert!(!text.starts_with("1970"), "{text}");
        }
        assert!(rfc3339(late).starts_with("+262"), "{}", rfc3339(late));
    }
}
