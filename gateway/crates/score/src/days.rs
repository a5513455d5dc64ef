//! Local-day aggregates ([`DayStats`]): the daily means, capture and one-time (20-minute)
//! statistics of a day, computed once from its buckets, so a year's scorecard reads 365 rows
//! per post and pollutant instead of 8 760 hourly and 26 280 20-minute buckets. Scoring from
//! aggregates gives the same figures as scoring from the buckets (tests below, and the store's
//! property test); [`fingerprint`] names the rules an aggregate was computed under, so a norms
//! change recomputes them.

use protocol::{Quantity, UnixSeconds};

use super::air::OneTimeStats;
use super::input::{DayStats, HourlyMean, TwentyMinuteMean};
use super::means::{hour_is_valid, twenty_minute_is_valid, DailyMean};
use super::norms::{DataCaptureRules, Norms};
use taza_domain::calendar::LocalDay;

/// The pollutants the city scorecard scores (and so aggregates).
pub use taza_domain::series::SCORED_POLLUTANTS as SCORED;

/// Aggregates per local day of one quantity's buckets (any order), sorted by date. Days with
/// neither an hourly nor a 20-minute bucket are absent. `one_time_limit` (ПДК м.р., in the
/// quantity's unit) counts exceedances; None counts none.
pub fn day_stats(
    hourly: &[HourlyMean],
    twenty: &[TwentyMinuteMean],
    rules: &DataCaptureRules,
    one_time_limit: Option<f64>,
) -> Vec<DayStats> {
    let mut days: Vec<(LocalDay, DayStats)> = Vec::new();
    let slot = |at: UnixSeconds, days: &mut Vec<(LocalDay, DayStats)>| -> usize {
        // Buckets arrive sorted from the store: the day is usually the last one touched.
        if let Some(i) = days.iter().rposition(|(d, _)| at >= d.start && at < d.end) {
            return i;
        }
        let day = LocalDay::containing(at);
        days.push((day, empty(day)));
        days.len() - 1
    };
    for h in hourly {
        let i = slot(h.start, &mut days);
        if let Some((_, d)) = days.get_mut(i) {
            d.hour_buckets += 1;
            if hour_is_valid(h, rules) {
                d.valid_hours += 1;
                d.sum_valid_hourly += h.mean;
                d.max_valid_hourly = Some(d.max_valid_hourly.map_or(h.mean, |m| m.max(h.mean)));
            }
        }
    }
    let mut sorted_twenty: Vec<&TwentyMinuteMean> = twenty.iter().collect();
    sorted_twenty.sort_by_key(|b| b.start);
    for b in sorted_twenty {
        let i = slot(b.start, &mut days);
        if let Some((_, d)) = days.get_mut(i) {
            if !twenty_minute_is_valid(b, rules) {
                d.invalid_20min += 1;
                continue;
            }
            d.valid_20min += 1;
            if one_time_limit.is_some_and(|l| b.mean > l) {
                d.over_one_time += 1;
            }
            // The first bucket holding the maximum, as `one_time_stats` reports it.
            if d.max_20min.is_none_or(|m| b.mean > m) {
                d.max_20min = Some(b.mean);
                d.max_20min_at = Some(b.start);
            }
        }
    }
    let mut out: Vec<DayStats> = days.into_iter().map(|(_, d)| d).collect();
    out.sort_by_key(|d| d.date);
    out
}

fn empty(day: LocalDay) -> DayStats {
    DayStats {
        date: day.date,
        start: day.start,
        hours: u32::try_from(day.hours().max(1)).unwrap_or(24),
        hour_buckets: 0,
        valid_hours: 0,
        sum_valid_hourly: 0.0,
        max_valid_hourly: None,
        valid_20min: 0,
        invalid_20min: 0,
        over_one_time: 0,
        max_20min: None,
        max_20min_at: None,
    }
}

/// The daily means the aggregates stand for: what [`super::means::daily_means`] gives for the
/// same hourly buckets.
pub fn daily_means_from(days: &[DayStats], rules: &DataCaptureRules) -> Vec<DailyMean> {
    days.iter()
        .filter(|d| d.hour_buckets > 0)
        .map(|d| DailyMean {
            date: d.date,
            start: d.start,
            mean: (d.valid_hours > 0).then(|| d.sum_valid_hourly / f64::from(d.valid_hours)),
            max_hourly: d.max_valid_hourly,
            valid_hours: d.valid_hours,
            hours: d.hours,
            capture: f64::from(d.valid_hours) / f64::from(d.hours.max(1)),
            valid: d.valid_hours >= rules.day_min_valid_hours,
        })
        .collect()
}

/// One-time statistics over the days starting in [from, to) (whole local days): what
/// [`super::air::one_time_stats`] gives for the same buckets, provided the aggregates were
/// computed with `one_time_limit_ug_m3` (their [`fingerprint`] says so).
pub fn one_time_from(
    days: &[DayStats],
    from: UnixSeconds,
    to: UnixSeconds,
    one_time_limit_ug_m3: f64,
) -> OneTimeStats {
    let mut s = OneTimeStats {
        limit_ug_m3: one_time_limit_ug_m3,
        valid_means: 0,
        invalid_means: 0,
        exceedances: 0,
        np_percent: None,
        si: None,
        max_ug_m3: None,
        max_at: None,
    };
    for d in days.iter().filter(|d| d.start >= from && d.start < to) {
        s.valid_means += d.valid_20min;
        s.invalid_means += d.invalid_20min;
        s.exceedances += d.over_one_time;
        if let Some(m) = d.max_20min {
            if s.max_ug_m3.is_none_or(|cur| m > cur) {
                s.max_ug_m3 = Some(m);
                s.max_at = d.max_20min_at;
            }
        }
    }
    if s.valid_means > 0 {
        s.np_percent = Some(f64::from(s.exceedances) / f64::from(s.valid_means) * 100.0);
        s.si = s.max_ug_m3.map(|m| m / one_time_limit_ug_m3);
    }
    s
}

/// Whether a day's 20-minute buckets are needed beside its aggregate: its largest valid mean
/// reaches the ВЗ multiple of ПДК м.р., so it may hold (part of) an episode.
pub fn needs_detail(day: &DayStats, one_time_limit_ug_m3: f64, high_multiple: f64) -> bool {
    day.max_20min
        .is_some_and(|m| m / one_time_limit_ug_m3 >= high_multiple)
}

/// The rules aggregates depend on, as one string: the capture rules of hours and 20-minute
/// means and each scored pollutant's one-time limit. Aggregates computed under another
/// fingerprint are recomputed.
pub fn fingerprint(norms: &Norms) -> String {
    let rules = norms.capture_rules();
    let mut fp = format!(
        "hour>={};20min>={}",
        rules.hour_min_capture, rules.twenty_minute_min_capture
    );
    for q in SCORED {
        let limit = one_time_limit(norms, q);
        fp.push_str(&format!(";{}:{limit:?}", q.as_str()));
    }
    fp
}

/// ПДК м.р. of `q` in µg/m³ under the active limit set.
pub fn one_time_limit(norms: &Norms, q: Quantity) -> Option<f64> {
    norms
        .limit(q.as_str())
        .and_then(|l| l.one_time_ug_m3.as_ref())
        .map(|s| s.value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::air::one_time_stats;
    use crate::input::{HOUR_S, TWENTY_MINUTES_S};
    use crate::means::daily_means;
    use crate::norms::EMBEDDED;

    /// Random buckets over `days` local days from 2025-01-01, with gaps, partial coverage and
    /// some high values, from a seeded generator.
    fn random_buckets(seed: u64, days: i64) -> (Vec<HourlyMean>, Vec<TwentyMinuteMean>) {
        let mut rng = fastrand::Rng::with_seed(seed);
        let start = taza_domain::calendar::parse_rfc3339("2024-12-31T19:00:00Z").unwrap();
        let mut hourly = Vec::new();
        let mut twenty = Vec::new();
        for h in 0..days * 24 {
            if rng.u8(..10) == 0 {
                continue; // a gap
            }
            let at = start.offset(h * HOUR_S);
            let base = rng.f64() * 120.0 + if rng.u8(..50) == 0 { 2000.0 } else { 0.0 };
            let mut covered = 0;
            for k in 0..3 {
                if rng.u8(..8) == 0 {
                    continue;
                }
                let c = if rng.u8(..6) == 0 {
                    rng.i64(0..900)
                } else {
                    TWENTY_MINUTES_S
                };
                covered += c;
                twenty.push(TwentyMinuteMean {
                    start: at.offset(k * TWENTY_MINUTES_S),
                    mean: base + rng.f64() * 40.0,
                    covered_s: c,
                });
            }
            hourly.push(HourlyMean {
                start: at,
                mean: base + 20.0,
                covered_s: covered,
                count: 3,
                max: base + 40.0,
            });
        }
        (hourly, twenty)
    }

    #[test]
    fn aggregates_give_the_daily_means_and_one_time_statistics_of_their_buckets() {
        let norms = Norms::load(EMBEDDED, None).unwrap();
        let rules = norms.capture_rules();
        let limit = one_time_limit(&norms, Quantity::Pm2_5).unwrap();
        for seed in 0..40 {
            let (hourly, twenty) = random_buckets(seed, 31);
            let days = day_stats(&hourly, &twenty, &rules, Some(limit));
            assert_eq!(
                daily_means_from(&days, &rules),
                daily_means(&hourly, &rules),
                "seed {seed}"
            );
            let from = days.first().unwrap().start;
            let to = days.last().unwrap().start.offset(86_400);
            // Whole days, and a span that starts mid-month.
            for (f, t) in [(from, to), (days[10].start, days[20].start)] {
                assert_eq!(
                    one_time_from(&days, f, t, limit),
                    one_time_stats(&twenty, f, t, limit, &rules),
                    "seed {seed}"
                );
            }
        }
    }

    #[test]
    fn a_day_reaching_ten_times_the_limit_keeps_its_detail() {
        let norms = Norms::load(EMBEDDED, None).unwrap();
        let rules = norms.capture_rules();
        let (hourly, twenty) = random_buckets(7, 31);
        let days = day_stats(&hourly, &twenty, &rules, Some(160.0));
        let flagged = days.iter().filter(|d| needs_detail(d, 160.0, 10.0)).count();
        assert!(
            flagged > 0 && flagged < days.len(),
            "{flagged} of {}",
            days.len()
        );
    }

    #[test]
    fn the_fingerprint_moves_with_the_one_time_limit_and_the_capture_rules() {
        let norms = Norms::load(EMBEDDED, None).unwrap();
        let before = fingerprint(&norms);
        assert_eq!(before, fingerprint(&norms));
        let mut stricter = norms.clone();
        let active = stricter.active_set.clone();
        let pm = stricter
            .limit_sets
            .get_mut(&active)
            .and_then(|s| s.substances.get_mut("pm2_5"))
            .and_then(|l| l.one_time_ug_m3.as_mut())
            .unwrap();
        pm.value = 120.0;
        assert_ne!(fingerprint(&stricter), before);
        let mut capture = norms.clone();
        capture.capture.hour_min_capture.value = 0.5;
        assert_ne!(fingerprint(&capture), before);
    }

    /// What the store's scoring adapter hands the engine: aggregates, the 20-minute detail of
    /// the days that need it, and the hours the comparison views read.
    fn as_aggregates(
        s: &crate::input::QuantitySeries,
        norms: &Norms,
        now: UnixSeconds,
    ) -> crate::input::QuantitySeries {
        let rules = norms.capture_rules();
        let limit = one_time_limit(norms, s.quantity);
        let days = day_stats(&s.hourly, &s.twenty_minute, &rules, limit);
        let high = norms.episodes.high_multiple.value;
        let detail_days: Vec<&DayStats> = days
            .iter()
            .filter(|d| limit.is_some_and(|l| needs_detail(d, l, high)))
            .collect();
        let twenty_minute = s
            .twenty_minute
            .iter()
            .filter(|b| {
                detail_days.iter().any(|d| {
                    b.start >= d.start && b.start < d.start.offset(i64::from(d.hours) * HOUR_S)
                })
            })
            .copied()
            .collect();
        let recent = now.offset(-26 * HOUR_S);
        crate::input::QuantitySeries {
            quantity: s.quantity,
            hourly: s
                .hourly
                .iter()
                .filter(|h| h.start >= recent)
                .copied()
                .collect(),
            twenty_minute,
            days,
        }
    }

    #[test]
    fn a_scorecard_from_aggregates_equals_the_scorecard_from_buckets() {
        use crate::input::{PostDescriptor, PostKind, PostSeries};
        let norms = Norms::load(EMBEDDED, None).unwrap();
        let post = |i: u64| PostSeries {
            post: PostDescriptor {
                id: protocol::PostId::parse(&format!("p{i}")).unwrap(),
                kind: PostKind::Air,
                lat_deg: 43.2,
                lon_deg: 76.9,
                district: Some("Алмалинский".into()),
                river: None,
                critical_level: None,
            },
            series: SCORED
                .iter()
                .enumerate()
                .map(|(k, q)| {
                    let (hourly, twenty_minute) = random_buckets(i * 10 + k as u64, 400);
                    crate::input::QuantitySeries {
                        quantity: *q,
                        hourly,
                        twenty_minute,
                        days: Vec::new(),
                    }
                })
                .collect(),
        };
        let raw: Vec<PostSeries> = (0..3).map(post).collect();
        // Mid-January 2026: the comparison views look at data; 2025 is a whole year.
        let now = taza_domain::calendar::parse_rfc3339("2026-01-20T09:30:00Z").unwrap();
        let aggregated: Vec<PostSeries> = raw
            .iter()
            .map(|p| PostSeries {
                post: p.post.clone(),
                series: p
                    .series
                    .iter()
                    .map(|s| as_aggregates(s, &norms, now))
                    .collect(),
            })
            .collect();
        assert!(aggregated
            .iter()
            .flat_map(|p| &p.series)
            .any(|s| !s.twenty_minute.is_empty()));
        for year in [2025, 2026] {
            let from_buckets = crate::city_scorecard(&norms, year, &raw, now);
            let from_days = crate::city_scorecard(&norms, year, &aggregated, now);
            assert_eq!(
                serde_json::to_value(&from_days).unwrap(),
                serde_json::to_value(&from_buckets).unwrap(),
                "{year}"
            );
        }
    }
}
