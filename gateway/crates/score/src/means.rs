//! Valid means and data capture: which hourly and 20-minute buckets count, daily means over
//! Asia/Almaty local days ([`taza_domain::calendar::LocalDay`]), monthly and annual means. Pure
//! functions over [`super::input`] buckets. An invalid mean is returned with `valid: false` and
//! its capture, never folded into a longer mean.

use chrono::{Datelike, NaiveDate};
use protocol::UnixSeconds;
use serde::Serialize;

use super::input::{HourlyMean, TwentyMinuteMean, HOUR_S, TWENTY_MINUTES_S};
use super::norms::DataCaptureRules;
use taza_domain::calendar::LocalDay;

/// Data capture of a bucket: covered seconds / bucket length, capped at 1 (a store that
/// double-counts an overlap must not make a bucket more than complete).
pub fn capture_fraction(covered_s: i64, length_s: i64) -> f64 {
    if length_s <= 0 {
        return 0.0;
    }
    (covered_s.max(0) as f64 / length_s as f64).min(1.0)
}

/// Whether an hourly mean is valid: capture ≥ `hour_min_capture` (75 %, Directive 2008/50/EC
/// Annex VII) and a finite mean.
pub fn hour_is_valid(h: &HourlyMean, rules: &DataCaptureRules) -> bool {
    h.mean.is_finite() && capture_fraction(h.covered_s, HOUR_S) >= rules.hour_min_capture
}

/// Whether a 20-minute mean is valid (the hourly capture rule applied to 20 minutes).
pub fn twenty_minute_is_valid(b: &TwentyMinuteMean, rules: &DataCaptureRules) -> bool {
    b.mean.is_finite()
        && capture_fraction(b.covered_s, TWENTY_MINUTES_S) >= rules.twenty_minute_min_capture
}

/// Serializes a date as `YYYY-MM-DD` (chrono's serde feature is not enabled in the workspace).
pub(crate) fn ser_date<S: serde::Serializer>(d: &NaiveDate, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&d.format("%Y-%m-%d"))
}

/// A local day's mean of one quantity at one post.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct DailyMean {
    /// Local date (Asia/Almaty).
    #[serde(serialize_with = "ser_date")]
    pub date: NaiveDate,
    /// First second of the local day.
    pub start: UnixSeconds,
    /// Mean of the valid hourly means (each hour weighs the same), in the quantity's unit;
    /// `None` when no hour is valid. Present even when the day is invalid.
    pub mean: Option<f64>,
    /// Largest valid hourly mean.
    pub max_hourly: Option<f64>,
    /// Valid hours.
    pub valid_hours: u32,
    /// Hours in the local day (24; 25 on 2024-02-29 when Almaty moved to UTC+5).
    pub hours: u32,
    /// valid_hours / hours.
    pub capture: f64,
    /// valid_hours ≥ `day_min_valid_hours` (18).
    pub valid: bool,
}

#[derive(Default, Clone, Copy)]
struct DayAcc {
    sum: f64,
    valid: u32,
    max: Option<f64>,
}

impl DayAcc {
    fn add(&mut self, v: f64) {
        self.sum += v;
        self.valid += 1;
        self.max = Some(self.max.map_or(v, |m: f64| m.max(v)));
    }
    fn merge(&mut self, o: &DayAcc) {
        self.sum += o.sum;
        self.valid += o.valid;
        self.max = match (self.max, o.max) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
    }
}

/// Daily means over Asia/Almaty local days, one per local day that has any hourly bucket,
/// sorted by date. A day is valid with ≥ `day_min_valid_hours` valid hours (18 of 24,
/// Directive 2008/50/EC Annex XI as cited); its mean is the mean of its valid hourly means.
/// Hours are assigned to the local day containing their start; since Almaty's offset is a whole
/// number of hours, no hour straddles two days.
pub fn daily_means(hourly: &[HourlyMean], rules: &DataCaptureRules) -> Vec<DailyMean> {
    let mut acc: Vec<(LocalDay, DayAcc)> = Vec::new();
    let mut sorted = true;
    for h in hourly {
        // Fast path: sorted input stays in the current day; chrono-tz is consulted once per
        // day rather than once per hour (this dominates the scorecard's cost otherwise).
        let in_current = acc
            .last()
            .is_some_and(|(d, _)| h.start >= d.start && h.start < d.end);
        if !in_current {
            let day = LocalDay::containing(h.start);
            if let Some((last, _)) = acc.last() {
                sorted &= day.date > last.date;
            }
            acc.push((day, DayAcc::default()));
        }
        if hour_is_valid(h, rules) {
            if let Some((_, a)) = acc.last_mut() {
                a.add(h.mean);
            }
        }
    }
    if !sorted {
        acc.sort_by_key(|(d, _)| d.date);
        let mut merged: Vec<(LocalDay, DayAcc)> = Vec::with_capacity(acc.len());
        for (d, a) in acc {
            match merged.last_mut() {
                Some((ld, la)) if ld.date == d.date => la.merge(&a),
                _ => merged.push((d, a)),
            }
        }
        acc = merged;
    }
    acc.into_iter()
        .map(|(day, a)| {
            let hours = u32::try_from(day.hours().max(1)).unwrap_or(24);
            DailyMean {
                date: day.date,
                start: day.start,
                mean: (a.valid > 0).then(|| a.sum / f64::from(a.valid)),
                max_hourly: a.max,
                valid_hours: a.valid,
                hours,
                capture: f64::from(a.valid) / f64::from(hours),
                valid: a.valid >= rules.day_min_valid_hours,
            }
        })
        .collect()
}

/// A mean over a month or a year, formed from valid daily means.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PeriodMean {
    /// `YYYY-MM` or `YYYY`.
    pub period: String,
    /// Mean of the valid daily means in the period, in the quantity's unit; `None` without any.
    /// Present even when the period is invalid (check `valid`).
    pub mean: Option<f64>,
    /// Days with a valid daily mean.
    pub valid_days: u32,
    /// Days the period has (or has had so far, for a period in progress).
    pub days: u32,
    /// valid_days / days.
    pub capture: f64,
    /// capture ≥ the month or year rule.
    pub valid: bool,
    /// True when the period had not ended at the time of scoring.
    pub in_progress: bool,
}

/// The days of [first, end) that had ended by `now` (all of them for a past period): their
/// count, the exclusive end of that span, and whether the period is still in progress.
fn elapsed_days(first: NaiveDate, end: NaiveDate, now: UnixSeconds) -> (u32, NaiveDate, bool) {
    let total = u32::try_from((end - first).num_days().max(0)).unwrap_or(0);
    let today = LocalDay::containing(now).date;
    if today >= end {
        return (total, end, false);
    }
    // Complete days so far: those before today. Today's partial day is judged tomorrow, so it
    // must count in neither the numerator nor the denominator.
    let done = u32::try_from((today - first).num_days().max(0)).unwrap_or(0);
    (done.min(total), today.max(first), true)
}

fn period_mean(
    label: String,
    days: &[DailyMean],
    first: NaiveDate,
    end: NaiveDate,
    min_capture: f64,
    now: UnixSeconds,
) -> PeriodMean {
    let (n_days, counted_end, in_progress) = elapsed_days(first, end, now);
    let (sum, valid_days) = days
        .iter()
        .filter(|d| d.valid && d.date >= first && d.date < counted_end)
        .filter_map(|d| d.mean)
        .fold((0.0, 0u32), |(s, n), m| (s + m, n + 1));
    let capture = if n_days == 0 {
        0.0
    } else {
        f64::from(valid_days) / f64::from(n_days)
    };
    PeriodMean {
        period: label,
        mean: (valid_days > 0).then(|| sum / f64::from(valid_days)),
        valid_days,
        days: n_days,
        capture,
        valid: n_days > 0 && capture >= min_capture,
        in_progress,
    }
}

/// The annual mean of `year` = mean of the valid daily means of its local days; capture = valid
/// days / days in the year (days elapsed so far while the year is in progress); valid at ≥
/// `year_min_capture` (90 %, the EU data quality objective).
///
/// Formed from daily rather than hourly means so that each day weighs the same: a sensor that
/// works mostly in daytime or in one season would otherwise pull the mean towards those hours,
/// and daily means are also what ПДК с.с. and Kazhydromet's annual figures are built on.
pub fn annual_mean(
    days: &[DailyMean],
    year: i32,
    rules: &DataCaptureRules,
    now: UnixSeconds,
) -> PeriodMean {
    let first = NaiveDate::from_ymd_opt(year, 1, 1);
    let end = year
        .checked_add(1)
        .and_then(|y| NaiveDate::from_ymd_opt(y, 1, 1));
    // A year chrono cannot represent (callers bound it: `taza_api::scoring::YEARS`) is an empty
    // period (no days, no mean, not valid), rather than 1970's.
    let (first, end) = first.zip(end).unwrap_or((NaiveDate::MIN, NaiveDate::MIN));
    period_mean(
        format!("{year}"),
        days,
        first,
        end,
        rules.year_min_capture,
        now,
    )
}

/// Monthly means of `year` (12 entries), each the mean of its valid daily means, valid at ≥
/// `month_min_capture` of its days.
pub fn monthly_means(
    days: &[DailyMean],
    year: i32,
    rules: &DataCaptureRules,
    now: UnixSeconds,
) -> Vec<PeriodMean> {
    (1..=12u32)
        .filter_map(|m| {
            let first = NaiveDate::from_ymd_opt(year, m, 1)?;
            let end = if m == 12 {
                NaiveDate::from_ymd_opt(year + 1, 1, 1)?
            } else {
                NaiveDate::from_ymd_opt(year, m + 1, 1)?
            };
            Some(period_mean(
                format!("{year}-{m:02}"),
                days,
                first,
                end,
                rules.month_min_capture,
                now,
            ))
        })
        .collect()
}

/// The daily means of one year (by local date).
pub fn days_of_year(days: &[DailyMean], year: i32) -> &[DailyMean] {
    let lo = days.partition_point(|d| d.date.year() < year);
    let hi = days.partition_point(|d| d.date.year() <= year);
    days.get(lo..hi).unwrap_or(&[])
}

#[cfg(test)]
mod tests {
    use super::*;
    use taza_domain::calendar::parse_rfc3339;

    fn at(s: &str) -> UnixSeconds {
        parse_rfc3339(s).unwrap()
    }

    fn hour(start: UnixSeconds, mean: f64, covered_s: i64) -> HourlyMean {
        HourlyMean {
            start,
            mean,
            covered_s,
            count: 1,
            max: mean,
        }
    }

    /// `n` full hours from `start`, each with mean `mean`.
    fn hours(start: UnixSeconds, n: i64, mean: f64) -> Vec<HourlyMean> {
        (0..n)
            .map(|i| hour(start.offset(i * HOUR_S), mean, HOUR_S))
            .collect()
    }

    #[test]
    fn hour_is_valid_from_75_percent_capture() {
        let r = DataCaptureRules::default();
        let t = at("2025-01-15T00:00:00Z");
        // 2700 s / 3600 s = 0.75 -> valid; 2699 s -> 0.7497 -> invalid.
        assert!(hour_is_valid(&hour(t, 1.0, 2700), &r));
        assert!(!hour_is_valid(&hour(t, 1.0, 2699), &r));
        assert!(!hour_is_valid(&hour(t, f64::NAN, 3600), &r));
    }

    #[test]
    fn day_with_17_valid_hours_is_invalid_and_18_is_valid() {
        let r = DataCaptureRules::default();
        // Local day 2025-01-15 starts 2025-01-14T19:00Z (UTC+5).
        let start = at("2025-01-14T19:00:00Z");
        let d17 = daily_means(&hours(start, 17, 40.0), &r);
        assert_eq!(d17.len(), 1);
        assert_eq!(d17[0].valid_hours, 17);
        assert!(!d17[0].valid);
        // Reported with its capture: 17 / 24 = 0.7083.
        assert!((d17[0].capture - 17.0 / 24.0).abs() < 1e-12);
        assert_eq!(d17[0].mean, Some(40.0));

        let d18 = daily_means(&hours(start, 18, 40.0), &r);
        assert!(d18[0].valid);
        // 18 / 24 = 0.75.
        assert!((d18[0].capture - 0.75).abs() < 1e-12);

        // 18 buckets of which one covers only 30 min: 17 valid hours again.
        let mut h = hours(start, 18, 40.0);
        h[5].covered_s = 1800;
        assert!(!daily_means(&h, &r)[0].valid);
    }

    #[test]
    fn local_day_crossing_utc_midnight_collects_its_hours() {
        let r = DataCaptureRules::default();
        // Local 2025-01-15 = 2025-01-14T19:00Z .. 2025-01-15T19:00Z. Hours 19:00..23:00Z on the
        // 14th (5 hours at 10) and 00:00..18:00Z on the 15th (19 hours at 34) are one day:
        // mean = (5·10 + 19·34) / 24 = (50 + 646) / 24 = 696 / 24 = 29.
        let mut h = hours(at("2025-01-14T19:00:00Z"), 5, 10.0);
        h.extend(hours(at("2025-01-15T00:00:00Z"), 19, 34.0));
        // One more hour, 19:00Z on the 15th, already belongs to local 2025-01-16.
        h.push(hour(at("2025-01-15T19:00:00Z"), 99.0, HOUR_S));
        let d = daily_means(&h, &r);
        assert_eq!(d.len(), 2);
        assert_eq!(d[0].date, NaiveDate::from_ymd_opt(2025, 1, 15).unwrap());
        assert_eq!(d[0].valid_hours, 24);
        assert!((d[0].mean.unwrap() - 29.0).abs() < 1e-12);
        assert_eq!(d[1].date, NaiveDate::from_ymd_opt(2025, 1, 16).unwrap());
        assert_eq!(d[1].valid_hours, 1);
    }

    #[test]
    fn unsorted_hours_give_the_same_days_as_sorted() {
        let r = DataCaptureRules::default();
        let mut h = hours(at("2025-01-14T19:00:00Z"), 48, 5.0);
        let sorted = daily_means(&h, &r);
        h.reverse();
        assert_eq!(daily_means(&h, &r), sorted);
    }

    #[test]
    fn annual_mean_needs_90_percent_of_days() {
        let r = DataCaptureRules::default();
        let year_end = at("2026-06-01T00:00:00Z");
        let day = |i: u32, v: f64| DailyMean {
            date: NaiveDate::from_ymd_opt(2025, 1, 1).unwrap() + chrono::Days::new(u64::from(i)),
            start: UnixSeconds(0),
            mean: Some(v),
            max_hourly: Some(v),
            valid_hours: 24,
            hours: 24,
            capture: 1.0,
            valid: true,
        };
        // 329 valid days of 365: 329 / 365 = 0.9014 -> valid; 328 / 365 = 0.8986 -> invalid.
        let days: Vec<_> = (0..329).map(|i| day(i, 20.0)).collect();
        let a = annual_mean(&days, 2025, &r, year_end);
        assert!(a.valid);
        assert_eq!((a.valid_days, a.days), (329, 365));
        let a = annual_mean(&days[..328], 2025, &r, year_end);
        assert!(!a.valid);
        assert_eq!(a.mean, Some(20.0));
        // Invalid days do not enter: one invalid day at 1000 leaves the mean at 20.
        let mut days = days;
        days.push(DailyMean {
            valid: false,
            ..day(340, 1000.0)
        });
        assert_eq!(annual_mean(&days, 2025, &r, year_end).mean, Some(20.0));
    }

    #[test]
    fn a_valid_partial_today_counts_in_neither_numerator_nor_denominator() {
        // 2025-03-10 12:00 local; 68 complete days (Jan 1 .. Mar 9) all valid, plus today,
        // already valid at noon. Capture must be 68/68 = 1, never 69/68.
        let rules = DataCaptureRules::default();
        let now = LocalDay::of(NaiveDate::from_ymd_opt(2025, 3, 10).unwrap())
            .start
            .offset(12 * 3600);
        let days: Vec<DailyMean> = (0..=68)
            .map(|i| {
                let date = NaiveDate::from_ymd_opt(2025, 1, 1).unwrap() + chrono::Duration::days(i);
                DailyMean {
                    date,
                    start: LocalDay::of(date).start,
                    mean: Some(10.0),
                    max_hourly: Some(10.0),
                    valid_hours: 24,
                    hours: 24,
                    capture: 1.0,
                    valid: true,
                }
            })
            .collect();
        let m = annual_mean(&days, 2025, &rules, now);
        assert_eq!((m.valid_days, m.days, m.capture), (68, 68, 1.0));
    }

    #[test]
    fn year_in_progress_counts_days_elapsed() {
        let r = DataCaptureRules::default();
        // Now = local 2025-01-11 10:00: 10 complete days (Jan 1..10).
        let now = at("2025-01-11T05:00:00Z");
        let days: Vec<_> = daily_means(&hours(at("2024-12-31T19:00:00Z"), 24 * 10, 7.0), &r);
        let a = annual_mean(&days, 2025, &r, now);
        assert!(a.in_progress);
        assert_eq!((a.valid_days, a.days), (10, 10));
        assert!(a.valid);
    }

    #[test]
    fn a_year_chrono_cannot_represent_is_an_empty_period_not_1970_or_a_panic() {
        let r = DataCaptureRules::default();
        let now = at("2025-06-01T00:00:00Z");
        // Days of 1970 must not be counted for a year that has no calendar.
        let days: Vec<_> = daily_means(&hours(at("1969-12-31T18:00:00Z"), 24 * 3, 7.0), &r);
        for year in [999_999, i32::MAX, i32::MIN] {
            let a = annual_mean(&days, year, &r, now);
            assert_eq!((a.valid_days, a.days, a.mean, a.valid), (0, 0, None, false));
            assert_eq!(a.period, year.to_string());
        }
    }
}
