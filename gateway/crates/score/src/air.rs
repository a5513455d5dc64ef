//! Kazakh air-quality scores: exceedances of ПДК м.р. (20-minute means) and ПДК с.с. (daily
//! means), СИ, НП, unit indices and ИЗА5, the Kazhydromet pollution-level grade, and ВЗ/ЭВЗ
//! episodes. Pure functions; limits come from the active set in [`super::norms::Norms`].

use protocol::{PostId, UnixSeconds};
use serde::Serialize;

use super::input::{TwentyMinuteMean, TWENTY_MINUTES_S};
use super::means::{twenty_minute_is_valid, DailyMean};
use super::norms::{
    CombinationRule, DataCaptureRules, EpisodeRule, EpisodeRules, Grade, GradeTables, Norms,
};

/// One-time (20-minute) statistics against ПДК м.р. over a period.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OneTimeStats {
    /// ПДК м.р., µg/m³.
    pub limit_ug_m3: f64,
    /// Valid 20-minute means in the period.
    pub valid_means: u32,
    /// 20-minute buckets present but below the capture rule (not counted anywhere else).
    pub invalid_means: u32,
    /// Valid means above ПДК м.р.
    pub exceedances: u32,
    /// НП: exceedances / valid_means × 100, %.
    pub np_percent: Option<f64>,
    /// СИ: largest valid 20-minute mean / ПДК м.р. (the largest multiple).
    pub si: Option<f64>,
    /// The largest valid 20-minute mean, µg/m³.
    pub max_ug_m3: Option<f64>,
    /// Start of that bucket.
    pub max_at: Option<UnixSeconds>,
}

/// СИ and НП of one substance at one post over [from, to).
///
/// СИ = max(c₂₀) / ПДК м.р. (RD 52.04.667-2005, norms-research §2.1); НП = share of valid
/// 20-minute means above ПДК м.р., % (RD 52.04.667-2005, secondary). Only valid means enter.
pub fn one_time_stats(
    buckets: &[TwentyMinuteMean],
    from: UnixSeconds,
    to: UnixSeconds,
    one_time_limit_ug_m3: f64,
    rules: &DataCaptureRules,
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
    for b in buckets.iter().filter(|b| b.start >= from && b.start < to) {
        if !twenty_minute_is_valid(b, rules) {
            s.invalid_means += 1;
            continue;
        }
        s.valid_means += 1;
        if b.mean > one_time_limit_ug_m3 {
            s.exceedances += 1;
        }
        if s.max_ug_m3.is_none_or(|m| b.mean > m) {
            s.max_ug_m3 = Some(b.mean);
            s.max_at = Some(b.start);
        }
    }
    if s.valid_means > 0 {
        s.np_percent = Some(f64::from(s.exceedances) / f64::from(s.valid_means) * 100.0);
        s.si = s.max_ug_m3.map(|m| m / one_time_limit_ug_m3);
    }
    s
}

/// Daily-mean exceedances of ПДК с.с. over a set of days.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DailyExceedances {
    /// ПДК с.с., µg/m³.
    pub limit_ug_m3: f64,
    /// Valid days.
    pub valid_days: u32,
    /// Days with any data that were not valid (not judged).
    pub invalid_days: u32,
    /// Valid days above ПДК с.с.
    pub exceedance_days: u32,
    /// Largest valid daily mean / ПДК с.с.
    pub largest_multiple: Option<f64>,
    /// The date of that day, `YYYY-MM-DD`.
    pub worst_day: Option<String>,
}

/// Counts valid daily means above ПДК с.с. (ДСМ-70; the plan counts PM2.5 days above 35 µg/m³,
/// seeds 002:1330-1336).
pub fn daily_exceedances(days: &[DailyMean], daily_limit_ug_m3: f64) -> DailyExceedances {
    let mut e = DailyExceedances {
        limit_ug_m3: daily_limit_ug_m3,
        valid_days: 0,
        invalid_days: 0,
        exceedance_days: 0,
        largest_multiple: None,
        worst_day: None,
    };
    let mut worst: Option<(f64, &DailyMean)> = None;
    for d in days {
        let Some(mean) = d.mean.filter(|_| d.valid) else {
            e.invalid_days += 1;
            continue;
        };
        e.valid_days += 1;
        if mean > daily_limit_ug_m3 {
            e.exceedance_days += 1;
        }
        if worst.is_none_or(|(m, _)| mean > m) {
            worst = Some((mean, d));
        }
    }
    if let Some((m, d)) = worst {
        e.largest_multiple = Some(m / daily_limit_ug_m3);
        e.worst_day = Some(d.date.format("%Y-%m-%d").to_string());
    }
    e
}

/// A substance's mean over the assessment period (annual for ИЗА5), µg/m³. The key may name any
/// substance of the limit set, so values from manual or Kazhydromet posts can enter too.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SubstanceMean {
    /// Substance key in the limit set.
    pub substance: String,
    /// Mean, µg/m³.
    pub mean_ug_m3: f64,
}

/// A unit index Iᵢ = (q̄ᵢ / ПДК с.с.ᵢ)^Cᵢ.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UnitIndex {
    /// Substance key.
    pub substance: String,
    /// Mean, µg/m³.
    pub mean_ug_m3: f64,
    /// ПДК с.с., µg/m³.
    pub daily_limit_ug_m3: f64,
    /// Hazard class.
    pub hazard_class: u8,
    /// Exponent Cᵢ.
    pub exponent: f64,
    /// Iᵢ.
    pub index: f64,
}

/// ИЗА5 and how it was formed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Iza {
    /// Sum of the largest unit indices (up to `substances_summed`).
    pub value: f64,
    /// The summed indices, largest first (which five).
    pub summed: Vec<UnitIndex>,
    /// Indices computed but not among the largest.
    pub dropped: Vec<UnitIndex>,
    /// Substances that could not enter (no ПДК с.с. or hazard class in the active set).
    pub skipped: Vec<String>,
    /// False when fewer substances than `substances_summed` entered: the value is then not
    /// comparable with Kazhydromet's ИЗА5, which sums five.
    pub complete: bool,
    /// Grade of `value`.
    pub grade: Grade,
}

/// ИЗА5 = Σ of the five largest Iᵢ = (q̄ᵢ / ПДК с.с.ᵢ)^Cᵢ, Cᵢ by hazard class 1.7 / 1.3 / 1.0 /
/// 0.9 (RD 52.04.186-89 via [S8][S7]); q̄ from annual means. How many are summed and the
/// exponents come from `norms.iza`; limits from the active set.
pub fn iza(norms: &Norms, means: &[SubstanceMean]) -> Iza {
    let mut indices = Vec::new();
    let mut skipped = Vec::new();
    for m in means {
        let limit = norms.limit(&m.substance);
        let daily = limit.and_then(|l| l.daily_ug_m3.as_ref()).map(|s| s.value);
        let class = limit.and_then(|l| l.hazard_class.as_ref()).map(|s| s.value);
        let exponent = class.and_then(|c| norms.iza.exponent(c));
        match (daily, class, exponent) {
            (Some(daily), Some(class), Some(exponent)) if m.mean_ug_m3.is_finite() => {
                indices.push(UnitIndex {
                    substance: m.substance.clone(),
                    mean_ug_m3: m.mean_ug_m3,
                    daily_limit_ug_m3: daily,
                    hazard_class: class,
                    exponent,
                    index: (m.mean_ug_m3.max(0.0) / daily).powf(exponent),
                });
            }
            _ => skipped.push(m.substance.clone()),
        }
    }
    indices.sort_by(|a, b| b.index.total_cmp(&a.index));
    let n = usize::try_from(norms.iza.substances_summed.value).unwrap_or(5);
    let dropped = indices.split_off(n.min(indices.len()));
    let value = indices.iter().map(|i| i.index).sum();
    Iza {
        value,
        complete: indices.len() >= n,
        summed: indices,
        dropped,
        skipped,
        grade: norms.grades.iza.grade(value),
    }
}

/// The Kazhydromet pollution level.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PollutionLevel {
    /// СИ (largest over substances).
    pub si: Option<f64>,
    /// Grade of СИ.
    pub si_grade: Option<Grade>,
    /// НП, % (largest over substances).
    pub np_percent: Option<f64>,
    /// Grade of НП.
    pub np_grade: Option<Grade>,
    /// ИЗА5, if computed for the period.
    pub iza: Option<f64>,
    /// Grade of ИЗА5.
    pub iza_grade: Option<Grade>,
    /// The combined level (`None` without СИ or НП).
    pub level: Option<Grade>,
    /// Russian wording of the level.
    pub level_label: Option<&'static str>,
    /// The combination rule applied.
    pub rule: CombinationRule,
}

/// Grades СИ, НП and ИЗА and combines them per `grades.combination` (default: the higher of
/// the СИ and НП grades, ИЗА beside it; RD 52.04.667-2005 from memory, unconfirmed).
pub fn pollution_level(
    grades: &GradeTables,
    si: Option<f64>,
    np_percent: Option<f64>,
    iza: Option<f64>,
) -> PollutionLevel {
    let si_grade = si.map(|v| grades.si.grade(v));
    let np_grade = np_percent.map(|v| grades.np.grade(v));
    let iza_grade = iza.map(|v| grades.iza.grade(v));
    let rule = grades.combination.rule;
    let level = match rule {
        CombinationRule::MaxSiNp => si_grade.max(np_grade),
        CombinationRule::MaxAll => si_grade.max(np_grade).max(iza_grade),
    };
    PollutionLevel {
        si,
        si_grade,
        np_percent,
        np_grade,
        iza,
        iza_grade,
        level,
        level_label: level.map(Grade::label),
        rule,
    }
}

/// ВЗ (high) or ЭВЗ (extreme).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EpisodeClass {
    /// ВЗ.
    High,
    /// ЭВЗ.
    Extreme,
}

/// A run of consecutive valid 20-minute means at or above the ВЗ multiple of ПДК м.р.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Episode {
    /// Post.
    pub post: PostId,
    /// Substance key.
    pub substance: String,
    /// Start of the first bucket.
    pub start: UnixSeconds,
    /// End of the last bucket.
    pub end: UnixSeconds,
    /// Length, hours.
    pub duration_h: f64,
    /// Largest 20-minute mean / ПДК м.р.
    pub max_multiple: f64,
    /// ВЗ or ЭВЗ.
    pub class: EpisodeClass,
    /// The ЭВЗ rule applied.
    pub rule: EpisodeRule,
}

/// ВЗ/ЭВЗ episodes in [from, to): runs of consecutive valid 20-minute means (no gap, no
/// invalid bucket) ≥ `high_multiple` × ПДК м.р. (10, ВЗ). A run is ЭВЗ under the Kazhydromet
/// rule when any mean is > 20 ПДК [S15]; under the RF rule when any mean is ≥ 50 ПДК, or a
/// sub-run ≥ 30 ПДК lasts ≥ 8 h, or a sub-run ≥ 20 ПДК lasts > 48 h [S16][S17].
#[allow(clippy::too_many_arguments)]
pub fn episodes(
    post: &PostId,
    substance: &str,
    buckets: &[TwentyMinuteMean],
    from: UnixSeconds,
    to: UnixSeconds,
    one_time_limit_ug_m3: f64,
    rules: &EpisodeRules,
    capture: &DataCaptureRules,
) -> Vec<Episode> {
    let high = rules.high_multiple.value;
    let mut out = Vec::new();
    // Multiples of the current run.
    let mut run: Vec<f64> = Vec::new();
    let mut run_start = UnixSeconds(0);
    let mut last_start: Option<UnixSeconds> = None;
    let close = |run: &mut Vec<f64>, start: UnixSeconds, out: &mut Vec<Episode>| {
        if run.is_empty() {
            return;
        }
        let n = i64::try_from(run.len()).unwrap_or(i64::MAX);
        let max_multiple = run.iter().copied().fold(f64::MIN, f64::max);
        let extreme = match rules.rule {
            EpisodeRule::Kazhydromet => max_multiple > rules.kazhydromet.extreme_above_multiple,
            EpisodeRule::Russian => {
                let r = &rules.russian;
                max_multiple >= r.any_multiple
                    || longest_run_h(run, r.long_multiple) >= r.long_min_hours
                    || longest_run_h(run, r.persistent_multiple) > r.persistent_over_hours
            }
        };
        out.push(Episode {
            post: post.clone(),
            substance: substance.to_string(),
            start,
            end: start.offset(n.saturating_mul(TWENTY_MINUTES_S)),
            duration_h: n as f64 * TWENTY_MINUTES_S as f64 / 3600.0,
            max_multiple,
            class: if extreme {
                EpisodeClass::Extreme
            } else {
                EpisodeClass::High
            },
            rule: rules.rule,
        });
        run.clear();
    };
    for b in buckets.iter().filter(|b| b.start >= from && b.start < to) {
        let multiple = b.mean / one_time_limit_ug_m3;
        let contiguous = last_start.is_some_and(|l| b.start.0 == l.0 + TWENTY_MINUTES_S);
        if !contiguous {
            close(&mut run, run_start, &mut out);
        }
        last_start = Some(b.start);
        if twenty_minute_is_valid(b, capture) && multiple >= high {
            if run.is_empty() {
                run_start = b.start;
            }
            run.push(multiple);
        } else {
            close(&mut run, run_start, &mut out);
        }
    }
    close(&mut run, run_start, &mut out);
    out
}

/// Longest stretch of consecutive multiples ≥ `threshold`, hours.
fn longest_run_h(multiples: &[f64], threshold: f64) -> f64 {
    let (mut best, mut cur) = (0u32, 0u32);
    for m in multiples {
        cur = if *m >= threshold { cur + 1 } else { 0 };
        best = best.max(cur);
    }
    f64::from(best) * TWENTY_MINUTES_S as f64 / 3600.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::norms::{Sourced, Status, EMBEDDED};
    use taza_domain::calendar::parse_rfc3339;

    fn at(s: &str) -> UnixSeconds {
        parse_rfc3339(s).unwrap()
    }

    fn b(start: UnixSeconds, mean: f64) -> TwentyMinuteMean {
        TwentyMinuteMean {
            start,
            mean,
            covered_s: TWENTY_MINUTES_S,
        }
    }

    fn sm(s: &str, v: f64) -> SubstanceMean {
        SubstanceMean {
            substance: s.into(),
            mean_ug_m3: v,
        }
    }

    #[test]
    fn iza5_of_six_pollutants_sums_the_five_largest_and_drops_the_sixth() {
        let n = Norms::embedded().unwrap();
        // Annual means, µg/m³, against kz_dsm70 ПДК с.с. and classes:
        // pm2_5 52.5 / 35  = 1.5,  class 3, C 1.0 -> I = 1.5
        // pm10  90   / 60  = 1.5,  class 3, C 1.0 -> I = 1.5
        // no2   80   / 40  = 2.0,  class 2, C 1.3 -> I = 2^1.3 = 2.462289
        // so2   25   / 50  = 0.5,  class 3, C 1.0 -> I = 0.5
        // co  1500   / 3000 = 0.5, class 4, C 0.9 -> I = 0.5^0.9 = 0.535887
        // o3    15   / 30  = 0.5,  class 1, C 1.7 -> I = 0.5^1.7 = 0.307786
        // Five largest: 2.462289 + 1.5 + 1.5 + 0.535887 + 0.5 = 6.498176; o3 is dropped.
        let means = [
            sm("pm2_5", 52.5),
            sm("pm10", 90.0),
            sm("no2", 80.0),
            sm("so2", 25.0),
            sm("co", 1500.0),
            sm("o3", 15.0),
        ];
        let i = iza(&n, &means);
        assert!((i.value - 6.498176).abs() < 1e-5, "{}", i.value);
        let summed: Vec<_> = i.summed.iter().map(|u| u.substance.as_str()).collect();
        assert_eq!(summed[0], "no2");
        assert_eq!(summed.len(), 5);
        assert!(!summed.contains(&"o3"));
        assert_eq!(i.dropped.len(), 1);
        assert_eq!(i.dropped[0].substance, "o3");
        assert!(i.complete);
        // 6.498 falls in 5..7: elevated.
        assert_eq!(i.grade, Grade::Elevated);
    }

    #[test]
    fn iza_from_three_measured_pollutants_is_marked_incomplete() {
        let n = Norms::embedded().unwrap();
        // 35/35 = 1 -> 1; 60/60 = 1 -> 1; 40/40 = 1 -> 1^1.3 = 1; sum 3.
        let i = iza(
            &n,
            &[
                sm("pm2_5", 35.0),
                sm("pm10", 60.0),
                sm("no2", 40.0),
                sm("pm1", 9.0),
            ],
        );
        assert!((i.value - 3.0).abs() < 1e-12);
        assert!(!i.complete);
        assert_eq!(i.skipped, vec!["pm1".to_string()]);
    }

    #[test]
    fn class_4_exponent_is_configurable() {
        let mut n = Norms::load(EMBEDDED, None).unwrap();
        n.iza.class_4 = Sourced {
            value: 0.85,
            source: "test".into(),
            status: Status::Unconfirmed,
        };
        // co 6000 / 3000 = 2; 2^0.85 = 1.802501.
        let i = iza(&n, &[sm("co", 6000.0)]);
        assert!((i.value - 1.802501).abs() < 1e-5);
    }

    #[test]
    fn si_and_np_over_a_month_with_known_exceedances() {
        let n = Norms::embedded().unwrap();
        let rules = n.capture_rules();
        let limit = n
            .limit("pm2_5")
            .unwrap()
            .one_time_ug_m3
            .as_ref()
            .unwrap()
            .value;
        // January 2025 (31 days × 72 = 2232 twenty-minute means) at 50 µg/m³, except:
        // 3 means at 200 (1.25 ПДК), 1 at 480 (3 ПДК), 1 exactly at 160 (not above),
        // 2 means at 900 with only 10 min coverage (invalid, must not count).
        let from = at("2024-12-31T19:00:00Z");
        let to = at("2025-01-31T19:00:00Z");
        let mut v: Vec<_> = (0..2232)
            .map(|i| b(from.offset(i * TWENTY_MINUTES_S), 50.0))
            .collect();
        for i in [10, 500, 1500] {
            v[i].mean = 200.0;
        }
        v[2000].mean = 480.0;
        v[7].mean = 160.0;
        for i in [100, 101] {
            v[i].mean = 900.0;
            v[i].covered_s = 600;
        }
        let s = one_time_stats(&v, from, to, limit, &rules);
        assert_eq!(s.valid_means, 2230);
        assert_eq!(s.invalid_means, 2);
        assert_eq!(s.exceedances, 4);
        // НП = 4 / 2230 × 100 = 0.179372 %; СИ = 480 / 160 = 3.
        assert!((s.np_percent.unwrap() - 0.179372).abs() < 1e-5);
        assert!((s.si.unwrap() - 3.0).abs() < 1e-12);
        let level = pollution_level(&n.grades, s.si, s.np_percent, None);
        // СИ 3 -> elevated (1 < 3 < 5); НП 0.18 % -> elevated (0 < НП < 20).
        assert_eq!(level.level, Some(Grade::Elevated));
    }

    #[test]
    fn daily_exceedances_count_only_valid_days() {
        let day = |d: u32, mean: f64, valid: bool| DailyMean {
            date: chrono::NaiveDate::from_ymd_opt(2025, 1, d).unwrap(),
            start: UnixSeconds(0),
            mean: Some(mean),
            max_hourly: None,
            valid_hours: if valid { 24 } else { 10 },
            hours: 24,
            capture: 1.0,
            valid,
        };
        // Limit 35: 40 and 70 exceed; 35 does not; the invalid 500 is not judged.
        let e = daily_exceedances(
            &[
                day(1, 40.0, true),
                day(2, 35.0, true),
                day(3, 70.0, true),
                day(4, 500.0, false),
            ],
            35.0,
        );
        assert_eq!((e.valid_days, e.invalid_days, e.exceedance_days), (3, 1, 2));
        // 70 / 35 = 2.
        assert_eq!(e.largest_multiple, Some(2.0));
        assert_eq!(e.worst_day.as_deref(), Some("2025-01-03"));
    }

    #[test]
    fn episodes_follow_the_selected_extreme_rule() {
        let mut n = Norms::embedded().unwrap();
        let rules = n.capture_rules();
        let post = PostId::parse("alm-01").unwrap();
        let t0 = at("2025-01-10T00:00:00Z");
        // ПДК м.р. NO2 = 200. 30 means (10 h) at 25 ПДК (5000), then 3 at 50 (below ВЗ), then
        // 2 means at 12 ПДК (2400).
        let mut v: Vec<_> = (0..30)
            .map(|i| b(t0.offset(i * TWENTY_MINUTES_S), 5000.0))
            .collect();
        v.extend((30..33).map(|i| b(t0.offset(i * TWENTY_MINUTES_S), 50.0)));
        v.extend((33..35).map(|i| b(t0.offset(i * TWENTY_MINUTES_S), 2400.0)));
        let to = t0.offset(86400);
        let e = episodes(&post, "no2", &v, t0, to, 200.0, &n.episodes, &rules);
        assert_eq!(e.len(), 2);
        // Kazhydromet: 25 > 20 -> ЭВЗ; 12 -> ВЗ.
        assert_eq!(e[0].class, EpisodeClass::Extreme);
        assert!((e[0].duration_h - 10.0).abs() < 1e-12);
        assert_eq!(e[1].class, EpisodeClass::High);
        // RF: 25x is in 20-29x, lasts 10 h, not > 48 h; not ≥ 30x; not ≥ 50x -> only ВЗ.
        n.episodes.rule = EpisodeRule::Russian;
        let e = episodes(&post, "no2", &v, t0, to, 200.0, &n.episodes, &rules);
        assert_eq!(e[0].class, EpisodeClass::High);
        // RF: 8 h (24 means) at 30x is ЭВЗ.
        let v: Vec<_> = (0..24)
            .map(|i| b(t0.offset(i * TWENTY_MINUTES_S), 6000.0))
            .collect();
        let e = episodes(&post, "no2", &v, t0, to, 200.0, &n.episodes, &rules);
        assert_eq!(e[0].class, EpisodeClass::Extreme);
        // A gap of one bucket splits runs.
        let mut v = v;
        v.remove(12);
        let e = episodes(&post, "no2", &v, t0, to, 200.0, &n.episodes, &rules);
        assert_eq!(e.len(), 2);
        assert!(e.iter().all(|e| e.class == EpisodeClass::High));
    }
}
