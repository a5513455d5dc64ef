//! The engine's entry points: the city scorecard for a year (per-post means and exceedances,
//! city values, ИЗА5, the pollution level, ВЗ/ЭВЗ episodes, the plan trajectory, comparison
//! views), per-post scores over a span, and the plan table. Pure functions over
//! [`super::input::PostSeries`]; outputs serialize as the API's JSON.

use protocol::{PostId, Quantity, UnixSeconds};
use serde::Serialize;

use super::air::{
    daily_exceedances, episodes, iza, one_time_stats, pollution_level, DailyExceedances, Episode,
    Iza, OneTimeStats, PollutionLevel, SubstanceMean,
};
use super::compare::{compare_latest, Comparison};
use super::input::{PostKind, PostSeries, QuantitySeries, HOUR_S, TWENTY_MINUTES_S};
use super::means::{
    annual_mean, capture_fraction, daily_means, days_of_year, hour_is_valid, monthly_means,
    twenty_minute_is_valid, DailyMean, PeriodMean,
};
use super::norms::{DataCaptureRules, Norms, Status, TargetKind, TargetMetric};
use taza_domain::calendar::{local_year, LocalDay};

/// Pollutants the city scorecard covers (Taza's air quantities with Kazakh limits).
pub const SCORED_POLLUTANTS: [Quantity; 3] = [Quantity::Pm2_5, Quantity::Pm10, Quantity::No2];

/// One pollutant's year at one post.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PostPollutantYear {
    /// Pollutant.
    pub quantity: Quantity,
    /// Annual mean with capture.
    pub annual: PeriodMean,
    /// Monthly means with capture.
    pub monthly: Vec<PeriodMean>,
    /// Daily means above ПДК с.с.
    pub daily_exceedances: Option<DailyExceedances>,
    /// 20-minute means above ПДК м.р., СИ, НП.
    pub one_time: Option<OneTimeStats>,
}

/// One post's year.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PostYear {
    /// Post.
    pub post: PostId,
    /// District.
    pub district: Option<String>,
    /// Per pollutant.
    pub pollutants: Vec<PostPollutantYear>,
    /// Pollution level at the post (СИ, НП over its pollutants; ИЗА not per post).
    pub level: PollutionLevel,
}

/// Where a city maximum was seen.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AtPost {
    /// Post.
    pub post: PostId,
    /// Value.
    pub value: f64,
}

/// A pollutant's city values for the year.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CityPollutant {
    /// Pollutant.
    pub quantity: Quantity,
    /// Mean over the posts with a valid annual mean, µg/m³.
    pub annual_mean_ug_m3: Option<f64>,
    /// Posts behind that mean.
    pub posts_valid: usize,
    /// Posts with any data for the pollutant.
    pub posts_with_data: usize,
    /// Mean of those posts' annual data capture.
    pub mean_capture: Option<f64>,
    /// Valid post-days above ПДК с.с., all posts.
    pub daily_exceedance_days: u32,
    /// Valid 20-minute means above ПДК м.р., all posts.
    pub one_time_exceedances: u32,
    /// Largest СИ and its post.
    pub si_max: Option<AtPost>,
    /// Largest НП and its post, %.
    pub np_max_percent: Option<AtPost>,
}

/// Trajectory status of a plan year.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TrajectoryStatus {
    /// Measured ≤ plan value.
    Met,
    /// Measured > plan value.
    NotMet,
    /// No valid annual value.
    NotEnoughData,
    /// The year has not ended: `measured` is the value so far.
    InProgress,
}

/// A plan year against what Taza measured.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TrajectoryRow {
    /// Metric id.
    pub metric: String,
    /// Year.
    pub year: i32,
    /// Plan value.
    pub plan_value: f64,
    /// Baseline or target.
    pub kind: TargetKind,
    /// Measured value (so far, while in progress).
    pub measured: Option<f64>,
    /// Mean annual capture of the posts behind it.
    pub capture: Option<f64>,
    /// Posts behind it.
    pub posts: usize,
    /// Status.
    pub status: TrajectoryStatus,
    /// Source of the plan value.
    pub source: String,
    /// Status of that source.
    pub source_status: Status,
    /// Caveat (e.g. ИЗА from fewer than five substances).
    pub note: Option<String>,
}

/// The plan data itself.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TargetTable {
    /// Metrics with rows by year.
    pub metrics: Vec<TargetMetric>,
}

/// The city scorecard of a year.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CityScorecard {
    /// Year.
    pub year: i32,
    /// When it was computed.
    pub generated_at: UnixSeconds,
    /// True while the year has not ended.
    pub in_progress: bool,
    /// Active limit set.
    pub limit_set: String,
    /// Air posts given.
    pub air_posts: usize,
    /// City values per pollutant.
    pub pollutants: Vec<CityPollutant>,
    /// ИЗА from the city annual means of the measured pollutants.
    pub iza: Iza,
    /// City pollution level (СИ, НП maxima over posts; ИЗА beside).
    pub level: PollutionLevel,
    /// Per post.
    pub posts: Vec<PostYear>,
    /// ВЗ/ЭВЗ episodes.
    pub episodes: Vec<Episode>,
    /// Plan years against measurements.
    pub trajectory: Vec<TrajectoryRow>,
    /// Latest values against international references, per post and pollutant.
    pub comparisons: Vec<PostComparison>,
    /// Caveats.
    pub notes: Vec<String>,
}

/// A post's comparison views.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PostComparison {
    /// Post.
    pub post: PostId,
    /// Per pollutant.
    pub values: Vec<Comparison>,
}

fn one_time_limit(norms: &Norms, q: Quantity) -> Option<f64> {
    norms
        .limit(q.as_str())
        .and_then(|l| l.one_time_ug_m3.as_ref())
        .map(|s| s.value)
}

fn daily_limit(norms: &Norms, q: Quantity) -> Option<f64> {
    norms
        .limit(q.as_str())
        .and_then(|l| l.daily_ug_m3.as_ref())
        .map(|s| s.value)
}

fn year_bounds(year: i32) -> (UnixSeconds, UnixSeconds) {
    let first = chrono::NaiveDate::from_ymd_opt(year, 1, 1);
    let next = year
        .checked_add(1)
        .and_then(|y| chrono::NaiveDate::from_ymd_opt(y, 1, 1));
    match (first, next) {
        (Some(first), Some(next)) => (LocalDay::of(first).start, LocalDay::of(next).start),
        // A year chrono cannot represent (callers bound it: `taza_api::scoring::YEARS`) has an
        // empty span, so nothing is counted in it, rather than 1970's.
        _ => (UnixSeconds(0), UnixSeconds(0)),
    }
}

/// Daily means of one post's pollutant, computed once and shared by every year's figures.
struct Prepared<'a> {
    post: &'a PostSeries,
    quantity: Quantity,
    series: &'a QuantitySeries,
    days: Vec<DailyMean>,
}

fn prepare<'a>(posts: &'a [PostSeries], rules: &DataCaptureRules) -> Vec<Prepared<'a>> {
    let mut out = Vec::new();
    for p in posts.iter().filter(|p| p.post.kind == PostKind::Air) {
        for q in SCORED_POLLUTANTS {
            if let Some(s) = p.quantity(q) {
                // Aggregates when the store has them (the fast path), else the buckets.
                let days = if s.days.is_empty() {
                    daily_means(&s.hourly, rules)
                } else {
                    crate::days::daily_means_from(&s.days, rules)
                };
                out.push(Prepared {
                    post: p,
                    quantity: q,
                    series: s,
                    days,
                });
            }
        }
    }
    out
}

/// City annual mean of `q` in `year` = mean over posts with a valid annual mean (each post
/// weighs the same); returns (mean, posts behind it, mean capture of those posts).
fn city_annual(
    prepared: &[Prepared<'_>],
    q: Quantity,
    year: i32,
    rules: &DataCaptureRules,
    now: UnixSeconds,
) -> (Option<f64>, usize, Option<f64>) {
    let annuals: Vec<PeriodMean> = prepared
        .iter()
        .filter(|p| p.quantity == q)
        .map(|p| annual_mean(days_of_year(&p.days, year), year, rules, now))
        .filter(|a| a.valid)
        .collect();
    let n = annuals.len();
    if n == 0 {
        return (None, 0, None);
    }
    let mean = annuals.iter().filter_map(|a| a.mean).sum::<f64>() / n as f64;
    let capture = annuals.iter().map(|a| a.capture).sum::<f64>() / n as f64;
    (Some(mean), n, Some(capture))
}

/// The city scorecard of `year`: per post and pollutant the annual and monthly means (from
/// valid daily means over Almaty local days), daily exceedances of ПДК с.с., СИ/НП from 20-minute
/// means, ВЗ/ЭВЗ episodes; city values as the mean over posts with valid annual data; ИЗА from
/// those city means; the plan trajectory for every plan year found in `posts`; and comparison
/// views of the latest values at `now`.
pub fn city_scorecard(
    norms: &Norms,
    year: i32,
    posts: &[PostSeries],
    now: UnixSeconds,
) -> CityScorecard {
    let rules = norms.capture_rules();
    let (from, to) = year_bounds(year);
    let prepared = prepare(posts, &rules);
    let air_posts: Vec<&PostSeries> = posts
        .iter()
        .filter(|p| p.post.kind == PostKind::Air)
        .collect();

    let mut post_years = Vec::new();
    let mut all_episodes = Vec::new();
    let mut comparisons = Vec::new();
    for p in &air_posts {
        let mut pollutants = Vec::new();
        let mut values = Vec::new();
        for prep in prepared.iter().filter(|x| x.post.post.id == p.post.id) {
            let q = prep.quantity;
            let days = days_of_year(&prep.days, year);
            let annual = annual_mean(days, year, &rules, now);
            let has_one_time_data =
                !prep.series.twenty_minute.is_empty() || !prep.series.days.is_empty();
            let one_time = one_time_limit(norms, q).filter(|_| has_one_time_data);
            if let Some(limit) = one_time {
                all_episodes.extend(episodes(
                    &p.post.id,
                    q.as_str(),
                    &prep.series.twenty_minute,
                    from,
                    to,
                    limit,
                    &norms.episodes,
                    &rules,
                ));
            }
            values.push(compare_latest(
                &norms.international,
                q,
                &prep.series.hourly,
                annual.mean,
                now,
                &rules,
            ));
            pollutants.push(PostPollutantYear {
                quantity: q,
                monthly: monthly_means(days, year, &rules, now),
                annual,
                daily_exceedances: daily_limit(norms, q).map(|l| daily_exceedances(days, l)),
                one_time: one_time.map(|l| {
                    if prep.series.days.is_empty() {
                        one_time_stats(&prep.series.twenty_minute, from, to, l, &rules)
                    } else {
                        crate::days::one_time_from(&prep.series.days, from, to, l)
                    }
                }),
            });
        }
        let si = pollutants
            .iter()
            .filter_map(|x| x.one_time.as_ref().and_then(|o| o.si))
            .reduce(f64::max);
        let np = pollutants
            .iter()
            .filter_map(|x| x.one_time.as_ref().and_then(|o| o.np_percent))
            .reduce(f64::max);
        post_years.push(PostYear {
            post: p.post.id.clone(),
            district: p.post.district.clone(),
            level: pollution_level(&norms.grades, si, np, None),
            pollutants,
        });
        comparisons.push(PostComparison {
            post: p.post.id.clone(),
            values,
        });
    }

    let mut city = Vec::new();
    for q in SCORED_POLLUTANTS {
        let (annual_mean_ug_m3, posts_valid, mean_capture) =
            city_annual(&prepared, q, year, &rules, now);
        let rows: Vec<(&PostId, &PostPollutantYear)> = post_years
            .iter()
            .flat_map(|p| p.pollutants.iter().map(move |x| (&p.post, x)))
            .filter(|(_, x)| x.quantity == q)
            .collect();
        let best = |f: &dyn Fn(&PostPollutantYear) -> Option<f64>| {
            rows.iter()
                .filter_map(|(post, x)| f(x).map(|v| (*post, v)))
                .max_by(|a, b| a.1.total_cmp(&b.1))
                .map(|(post, value)| AtPost {
                    post: post.clone(),
                    value,
                })
        };
        city.push(CityPollutant {
            quantity: q,
            annual_mean_ug_m3,
            posts_valid,
            posts_with_data: rows.len(),
            mean_capture,
            daily_exceedance_days: rows
                .iter()
                .filter_map(|(_, x)| x.daily_exceedances.as_ref())
                .map(|d| d.exceedance_days)
                .sum(),
            one_time_exceedances: rows
                .iter()
                .filter_map(|(_, x)| x.one_time.as_ref())
                .map(|o| o.exceedances)
                .sum(),
            si_max: best(&|x| x.one_time.as_ref().and_then(|o| o.si)),
            np_max_percent: best(&|x| x.one_time.as_ref().and_then(|o| o.np_percent)),
        });
    }
    let city_iza = iza(norms, &city_means_for_iza(&city));
    let level = pollution_level(
        &norms.grades,
        city.iter()
            .filter_map(|c| c.si_max.as_ref().map(|a| a.value))
            .reduce(f64::max),
        city.iter()
            .filter_map(|c| c.np_max_percent.as_ref().map(|a| a.value))
            .reduce(f64::max),
        Some(city_iza.value).filter(|_| !city_iza.summed.is_empty()),
    );

    let mut notes = Vec::new();
    if !city_iza.complete {
        notes.push(format!(
            "ИЗА formed from {} substance(s) Taza measures, not five: not comparable with \
             Kazhydromet's ИЗА5 (index from fewer substances)",
            city_iza.summed.len()
        ));
    }
    if post_years
        .iter()
        .all(|p| p.pollutants.iter().all(|x| x.one_time.is_none()))
    {
        notes.push("no 20-minute means: СИ, НП and ВЗ/ЭВЗ not computed".into());
    }
    let in_progress = local_year(now) <= year;
    CityScorecard {
        year,
        generated_at: now,
        in_progress,
        limit_set: norms.active_set.clone(),
        air_posts: air_posts.len(),
        trajectory: trajectory(norms, &prepared, &rules, now),
        pollutants: city,
        iza: city_iza,
        level,
        posts: post_years,
        episodes: all_episodes,
        comparisons,
        notes,
    }
}

fn city_means_for_iza(city: &[CityPollutant]) -> Vec<SubstanceMean> {
    city.iter()
        .filter_map(|c| {
            c.annual_mean_ug_m3.map(|m| SubstanceMean {
                substance: c.quantity.as_str().to_string(),
                mean_ug_m3: m,
            })
        })
        .collect()
}

/// Each plan row against the measured annual value of its year: met when measured ≤ plan,
/// not_met above, not_enough_data without a valid value; the current year is in_progress with
/// the value so far.
fn trajectory(
    norms: &Norms,
    prepared: &[Prepared<'_>],
    rules: &DataCaptureRules,
    now: UnixSeconds,
) -> Vec<TrajectoryRow> {
    let current = local_year(now);
    let mut out = Vec::new();
    for m in &norms.targets {
        for r in &m.rows {
            if r.year > current {
                continue;
            }
            let (measured, posts, capture, note) = if let Some(q) = m.quantity {
                let (v, n, c) = city_annual(prepared, q, r.year, rules, now);
                (v, n, c, None)
            } else if m.id.starts_with("iza") {
                let city: Vec<SubstanceMean> = SCORED_POLLUTANTS
                    .iter()
                    .filter_map(|q| {
                        let (v, _, _) = city_annual(prepared, *q, r.year, rules, now);
                        v.map(|v| SubstanceMean {
                            substance: q.as_str().to_string(),
                            mean_ug_m3: v,
                        })
                    })
                    .collect();
                let i = iza(norms, &city);
                let note = (!i.complete)
                    .then(|| format!("from {} measured substance(s), not five", i.summed.len()));
                (
                    (!i.summed.is_empty()).then_some(i.value),
                    i.summed.len(),
                    None,
                    note,
                )
            } else {
                (
                    None,
                    0,
                    None,
                    Some("metric not measured by Taza".to_string()),
                )
            };
            let status = match measured {
                _ if r.year == current => TrajectoryStatus::InProgress,
                None => TrajectoryStatus::NotEnoughData,
                Some(v) if v <= r.value => TrajectoryStatus::Met,
                Some(_) => TrajectoryStatus::NotMet,
            };
            out.push(TrajectoryRow {
                metric: m.id.clone(),
                year: r.year,
                plan_value: r.value,
                kind: r.kind,
                measured: if r.year == current {
                    measured.or_else(|| so_far(prepared, m.quantity, r.year, rules, now))
                } else {
                    measured
                },
                capture,
                posts,
                status,
                source: r.source.clone().unwrap_or_else(|| m.source.clone()),
                source_status: r.status.unwrap_or(m.status),
                note,
            });
        }
    }
    out
}

/// The current year's city value so far even when no post has reached 90 % of elapsed days
/// (mean over posts of their means of valid days).
fn so_far(
    prepared: &[Prepared<'_>],
    q: Option<Quantity>,
    year: i32,
    rules: &DataCaptureRules,
    now: UnixSeconds,
) -> Option<f64> {
    let q = q?;
    let means: Vec<f64> = prepared
        .iter()
        .filter(|p| p.quantity == q)
        .filter_map(|p| annual_mean(days_of_year(&p.days, year), year, rules, now).mean)
        .collect();
    (!means.is_empty()).then(|| means.iter().sum::<f64>() / means.len() as f64)
}

/// The plan data itself (targets.toml), for the API.
pub fn targets(norms: &Norms) -> TargetTable {
    TargetTable {
        metrics: norms.targets.clone(),
    }
}

/// An hourly mean with its capture and validity.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BucketScore {
    /// Bucket start.
    pub start: UnixSeconds,
    /// Mean in the quantity's unit (reported even when invalid).
    pub mean: f64,
    /// covered_s / bucket length.
    pub capture: f64,
    /// Meets the capture rule.
    pub valid: bool,
}

/// One quantity's scores at a post over a span.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QuantityScores {
    /// Quantity.
    pub quantity: Quantity,
    /// Unit of every mean.
    pub unit: &'static str,
    /// 20-minute means.
    pub twenty_minute: Vec<BucketScore>,
    /// Hourly means.
    pub hourly: Vec<BucketScore>,
    /// Daily means of the local days touching the span.
    pub daily: Vec<DailyMean>,
    /// Mean of the valid daily means.
    pub mean_of_valid_days: Option<f64>,
    /// Valid days.
    pub valid_days: u32,
    /// ПДК с.с. exceedances (pollutants with a limit).
    pub daily_exceedances: Option<DailyExceedances>,
    /// ПДК м.р. exceedances, СИ, НП.
    pub one_time: Option<OneTimeStats>,
}

/// Scores of one post over [from, to).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PostScores {
    /// Post.
    pub post: PostId,
    /// Span start.
    pub from: UnixSeconds,
    /// Span end.
    pub to: UnixSeconds,
    /// Per quantity.
    pub quantities: Vec<QuantityScores>,
    /// Pollution level (СИ, НП).
    pub level: PollutionLevel,
    /// ВЗ/ЭВЗ episodes.
    pub episodes: Vec<Episode>,
}

/// Means with capture at every level, exceedances, СИ/НП and episodes for one post over
/// [from, to). Daily means cover the whole local days touching the span (a day is judged whole).
pub fn post_scores(
    norms: &Norms,
    post: &PostSeries,
    from: UnixSeconds,
    to: UnixSeconds,
) -> PostScores {
    let rules = norms.capture_rules();
    let mut quantities = Vec::new();
    let mut eps = Vec::new();
    let day_from = LocalDay::containing(from).start;
    let day_to = LocalDay::containing(to.offset(-1)).end;
    for s in &post.series {
        let q = s.quantity;
        let in_span = |start: UnixSeconds| start >= from && start < to;
        let hours_of_days: Vec<_> = s
            .hourly
            .iter()
            .filter(|h| h.start >= day_from && h.start < day_to)
            .copied()
            .collect();
        let daily = daily_means(&hours_of_days, &rules);
        let valid: Vec<f64> = daily
            .iter()
            .filter(|d| d.valid)
            .filter_map(|d| d.mean)
            .collect();
        let one_limit = one_time_limit(norms, q).filter(|_| !s.twenty_minute.is_empty());
        if let Some(l) = one_limit {
            eps.extend(episodes(
                &post.post.id,
                q.as_str(),
                &s.twenty_minute,
                from,
                to,
                l,
                &norms.episodes,
                &rules,
            ));
        }
        quantities.push(QuantityScores {
            quantity: q,
            unit: q.unit().as_str(),
            twenty_minute: s
                .twenty_minute
                .iter()
                .filter(|b| in_span(b.start))
                .map(|b| BucketScore {
                    start: b.start,
                    mean: b.mean,
                    capture: capture_fraction(b.covered_s, TWENTY_MINUTES_S),
                    valid: twenty_minute_is_valid(b, &rules),
                })
                .collect(),
            hourly: s
                .hourly
                .iter()
                .filter(|h| in_span(h.start))
                .map(|h| BucketScore {
                    start: h.start,
                    mean: h.mean,
                    capture: capture_fraction(h.covered_s, HOUR_S),
                    valid: hour_is_valid(h, &rules),
                })
                .collect(),
            mean_of_valid_days: (!valid.is_empty())
                .then(|| valid.iter().sum::<f64>() / valid.len() as f64),
            valid_days: u32::try_from(valid.len()).unwrap_or(u32::MAX),
            daily_exceedances: daily_limit(norms, q).map(|l| daily_exceedances(&daily, l)),
            one_time: one_limit.map(|l| one_time_stats(&s.twenty_minute, from, to, l, &rules)),
            daily,
        });
    }
    let si = quantities
        .iter()
        .filter_map(|x| x.one_time.as_ref().and_then(|o| o.si))
        .reduce(f64::max);
    let np = quantities
        .iter()
        .filter_map(|x| x.one_time.as_ref().and_then(|o| o.np_percent))
        .reduce(f64::max);
    PostScores {
        post: post.post.id.clone(),
        from,
        to,
        quantities,
        level: pollution_level(&norms.grades, si, np, None),
        episodes: eps,
    }
}
