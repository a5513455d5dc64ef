//! River posts: per-parameter water-quality class against the PROVISIONAL class table, the
//! overall class, ИЗВ where its indicators exist, dissolved-oxygen flags, and the level against
//! the gauge's critical level with the rise rate. Pure functions over hourly means.

use protocol::{PostId, Quantity, UnixSeconds};
use serde::Serialize;

use super::input::{HourlyMean, PostKind, PostSeries, HOUR_S};
use super::means::hour_is_valid;
use super::norms::{IzvScale, Norms, WORSE_THAN_5};
use taza_domain::calendar::LocalDay;

/// One parameter's class.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ParameterClass {
    /// Parameter.
    pub quantity: Quantity,
    /// Mean of the valid hourly means of the last 24 h, in the quantity's unit.
    pub value: f64,
    /// Valid hours behind it.
    pub valid_hours: u32,
    /// Class 1..5, 6 = "> 5".
    pub class: u8,
}

/// ИЗВ or why it is not computed.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum IzvStatus {
    /// Computed.
    Computed {
        /// ИЗВ.
        value: f64,
        /// Class (I..VII).
        class: String,
        /// Name (очень чистая, ...).
        name: String,
        /// Kazhydromet's wording where known.
        kazhydromet: String,
    },
    /// Not computable from this post's sensors.
    NotComputable {
        /// Indicators ИЗВ needs that the post does not measure.
        missing: Vec<&'static str>,
        /// Explanation.
        note: &'static str,
    },
}

/// One ИЗВ indicator: concentration and its ПДК, mg/L.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IzvIndicator {
    /// Indicator key.
    pub name: String,
    /// Measured, mg/L.
    pub concentration_mg_l: f64,
    /// ПДК (or the normative value for oxygen), mg/L.
    pub limit_mg_l: f64,
    /// Oxygen: the ratio is normative / measured.
    pub inverted: bool,
}

/// ИЗВ = (1/6) Σ Cᵢ/ПДКᵢ over dissolved O2 and BOD5 (always) plus the 4 other indicators with
/// the largest ratios (Goskomgidromet 1988, [S23]; oxygen inverted). Needs `dissolved_oxygen`,
/// `bod5` and at least four others; returns `None` otherwise rather than averaging fewer.
pub fn izv(indicators: &[IzvIndicator], scale: &IzvScale) -> Option<IzvStatus> {
    let ratio = |i: &IzvIndicator| {
        if i.inverted {
            i.limit_mg_l / i.concentration_mg_l
        } else {
            i.concentration_mg_l / i.limit_mg_l
        }
    };
    let o2 = indicators.iter().find(|i| i.name == "dissolved_oxygen")?;
    let bod = indicators.iter().find(|i| i.name == "bod5")?;
    let mut others: Vec<f64> = indicators
        .iter()
        .filter(|i| i.name != "dissolved_oxygen" && i.name != "bod5")
        .map(ratio)
        .collect();
    if others.len() < 4 {
        return None;
    }
    others.sort_by(|a, b| b.total_cmp(a));
    let value = (ratio(o2) + ratio(bod) + others.iter().take(4).sum::<f64>()) / 6.0;
    let c = scale.class_of(value);
    Some(IzvStatus::Computed {
        value,
        class: c.class.clone(),
        name: c.name.clone(),
        kazhydromet: c.kazhydromet.clone(),
    })
}

/// Level state against the critical level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LevelState {
    /// Below critical minus the margin.
    Normal,
    /// Within the margin below critical.
    NearCritical,
    /// At or above critical.
    Critical,
    /// No critical level for this gauge.
    NoCriticalLevel,
}

/// Water level against the gauge's critical level.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LevelStatus {
    /// Latest valid hourly mean level, cm.
    pub level_cm: f64,
    /// Its hour.
    pub at: UnixSeconds,
    /// Critical level for that date, cm.
    pub critical_level_cm: Option<f64>,
    /// critical − level, cm (negative: above critical).
    pub below_critical_cm: Option<f64>,
    /// State.
    pub state: LevelState,
    /// Least-squares slope of the valid hourly levels in the rise window, cm/h.
    pub rise_cm_per_h: Option<f64>,
    /// rise ≥ the alert rate.
    pub rising_fast: bool,
}

/// A river post's status.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RiverStatus {
    /// Post.
    pub post: PostId,
    /// River.
    pub river: Option<String>,
    /// True while the class table is provisional (unverified): say so wherever shown.
    pub provisional: bool,
    /// Per-parameter classes (parameters with a class table and enough data).
    pub parameters: Vec<ParameterClass>,
    /// Worst parameter class.
    pub overall_class: Option<u8>,
    /// Wording of the overall class.
    pub overall_wording: Option<String>,
    /// ИЗВ.
    pub izv: IzvStatus,
    /// Latest dissolved oxygen below the fishery minimum (6 mg/L).
    pub oxygen_below_fishery_min: Option<bool>,
    /// ВЗ by oxygen (≤ 3 mg/L) / ЭВЗ (≤ 2 mg/L): "high" / "extreme".
    pub oxygen_pollution: Option<&'static str>,
    /// Level.
    pub level: Option<LevelStatus>,
}

fn last_hours(
    hourly: &[HourlyMean],
    now: UnixSeconds,
    hours: i64,
) -> impl Iterator<Item = &HourlyMean> {
    let from = now.offset(-hours * HOUR_S);
    let lo = hourly.partition_point(|h| h.start < from);
    hourly
        .get(lo..)
        .unwrap_or(&[])
        .iter()
        .take_while(move |h| h.start.offset(HOUR_S) <= now)
}

/// Status of every river post in `posts` at `now`. Parameter classes use the mean of the valid
/// hourly means of the last 24 h (at least `day_min_valid_hours` of them), so one odd hour does
/// not reclassify a river; Kazhydromet classes per sampling period.
pub fn river_statuses(norms: &Norms, posts: &[PostSeries], now: UnixSeconds) -> Vec<RiverStatus> {
    let rules = norms.capture_rules();
    let w = &norms.water;
    posts
        .iter()
        .filter(|p| p.post.kind == PostKind::River)
        .map(|p| {
            let mut parameters = Vec::new();
            for table in &w.unified_classes.parameter {
                let Some(s) = p.quantity(table.quantity) else {
                    continue;
                };
                let valid: Vec<f64> = last_hours(&s.hourly, now, 24)
                    .filter(|h| hour_is_valid(h, &rules))
                    .map(|h| h.mean)
                    .collect();
                let n = u32::try_from(valid.len()).unwrap_or(0);
                if n < rules.day_min_valid_hours {
                    continue;
                }
                let value = valid.iter().sum::<f64>() / f64::from(n);
                parameters.push(ParameterClass {
                    quantity: table.quantity,
                    value,
                    valid_hours: n,
                    class: table.class_of(value),
                });
            }
            let overall_class = parameters.iter().map(|c| c.class).max();
            let overall_wording = overall_class.and_then(|c| {
                w.unified_classes
                    .wording
                    .iter()
                    .find(|x| x.class == c.min(WORSE_THAN_5))
                    .map(|x| format!("{} ({})", x.ru, x.en))
            });
            let latest_do = p
                .quantity(Quantity::DissolvedOxygen)
                .and_then(|s| {
                    last_hours(&s.hourly, now, 24)
                        .filter(|h| hour_is_valid(h, &rules))
                        .last()
                })
                .map(|h| h.mean);
            let ox = &w.dissolved_oxygen;
            let oxygen_pollution = latest_do.and_then(|d| {
                if d <= ox.extreme_pollution_max_mg_l.value {
                    Some("extreme")
                } else if d <= ox.high_pollution_max_mg_l.value {
                    Some("high")
                } else {
                    None
                }
            });
            RiverStatus {
                post: p.post.id.clone(),
                river: p.post.river.clone(),
                provisional: w.unified_classes.provisional,
                parameters,
                overall_class,
                overall_wording,
                izv: IzvStatus::NotComputable {
                    missing: vec![
                        "bod5",
                        "ammonium_n",
                        "nitrite_n",
                        "nitrate_n",
                        "oil_products",
                    ],
                    note: "ИЗВ needs BOD5 and laboratory indicators (fishery ПДК); the post's \
                           sensors measure only dissolved oxygen of the six, so ИЗВ is not \
                           computed rather than formed from fewer indicators",
                },
                oxygen_below_fishery_min: latest_do.map(|d| d < ox.fishery_summer_min_mg_l.value),
                oxygen_pollution,
                level: level_status(norms, p, now),
            }
        })
        .collect()
}

fn level_status(norms: &Norms, p: &PostSeries, now: UnixSeconds) -> Option<LevelStatus> {
    let rules = norms.capture_rules();
    let lv = &norms.water.level;
    let s = p.quantity(Quantity::WaterLevel)?;
    let window = i64::from(lv.rise_window_hours.value.max(1));
    let points: Vec<(f64, f64)> = last_hours(&s.hourly, now, window)
        .filter(|h| hour_is_valid(h, &rules))
        .map(|h| (h.start.0 as f64 / HOUR_S as f64, h.mean))
        .collect();
    let latest = last_hours(&s.hourly, now, 24)
        .filter(|h| hour_is_valid(h, &rules))
        .last()?;
    let rise_cm_per_h = slope(&points);
    let critical = p
        .post
        .critical_level
        .as_ref()
        .map(|c| c.level_cm_on(LocalDay::containing(latest.start).date));
    let margin = lv.warning_margin_cm.value;
    let state = match critical {
        None => LevelState::NoCriticalLevel,
        Some(c) if latest.mean >= c => LevelState::Critical,
        Some(c) if latest.mean >= c - margin => LevelState::NearCritical,
        Some(_) => LevelState::Normal,
    };
    Some(LevelStatus {
        level_cm: latest.mean,
        at: latest.start,
        critical_level_cm: critical,
        below_critical_cm: critical.map(|c| c - latest.mean),
        state,
        rise_cm_per_h,
        rising_fast: rise_cm_per_h.is_some_and(|r| r >= lv.rise_alert_cm_per_h.value),
    })
}

/// Least-squares slope of (x, y); needs two distinct x.
fn slope(points: &[(f64, f64)]) -> Option<f64> {
    if points.len() < 2 {
        return None;
    }
    let n = points.len() as f64;
    let mx = points.iter().map(|p| p.0).sum::<f64>() / n;
    let my = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = points.iter().map(|p| (p.0 - mx).powi(2)).sum();
    let sxy: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    (sxx > 0.0).then(|| sxy / sxx)
}

#[cfg(test)]
mod tests {
    use super::*;
    use taza_domain::calendar::parse_rfc3339;
    use taza_domain::series::{CriticalLevel, PostDescriptor, QuantitySeries, SeasonalLevel};

    fn hours(start: UnixSeconds, values: &[f64]) -> Vec<HourlyMean> {
        values
            .iter()
            .enumerate()
            .map(|(i, v)| HourlyMean {
                start: start.offset(i as i64 * HOUR_S),
                mean: *v,
                covered_s: HOUR_S,
                count: 60,
                max: *v,
            })
            .collect()
    }

    fn river_post(series: Vec<QuantitySeries>) -> PostSeries {
        PostSeries {
            post: PostDescriptor {
                id: PostId::parse("kishi-almaty-medeu").unwrap(),
                kind: PostKind::River,
                lat_deg: 43.157,
                lon_deg: 77.058,
                district: Some("Медеуский".into()),
                river: Some("Киши Алматы".into()),
                critical_level: Some(CriticalLevel {
                    level_cm: 180.0,
                    seasons: vec![SeasonalLevel {
                        first_month: 11,
                        last_month: 3,
                        level_cm: 136.0,
                    }],
                    source: "zakon.kz 12 Dec 2024 [S54]".into(),
                }),
            },
            series,
        }
    }

    #[test]
    fn river_post_class_is_its_worst_parameter_and_marked_provisional() {
        let n = Norms::embedded().unwrap();
        let start = parse_rfc3339("2025-01-10T00:00:00Z").unwrap();
        let now = start.offset(24 * HOUR_S);
        // DO: 24 hours at 5.0 mg/L -> mean 5.0: not ≥ 8 (1), not ≥ 6 (2), ≥ 4 -> class 3.
        // pH: 24 hours at 7.5 -> within 6.5..8.5 -> class 1. Overall = worst = 3.
        // Level: 120, 124, 128, 132 cm in the last 4 hours; rise window 3 h covers the hours
        // starting at now-3h .. now-1h: 124, 128, 132 -> slope 4 cm/h (< 5: not fast).
        // January -> winter critical level 136: 136 - 132 = 4 cm ≤ 20 margin -> near critical.
        let mut level = vec![100.0; 20];
        level.extend([120.0, 124.0, 128.0, 132.0]);
        let p = river_post(vec![
            QuantitySeries {
                days: Vec::new(),
                quantity: Quantity::DissolvedOxygen,
                hourly: hours(start, &[5.0; 24]),
                twenty_minute: vec![],
            },
            QuantitySeries {
                days: Vec::new(),
                quantity: Quantity::Ph,
                hourly: hours(start, &[7.5; 24]),
                twenty_minute: vec![],
            },
            QuantitySeries {
                days: Vec::new(),
                quantity: Quantity::WaterLevel,
                hourly: hours(start, &level),
                twenty_minute: vec![],
            },
        ]);
        let s = river_statuses(&n, &[p], now);
        assert_eq!(s.len(), 1);
        let s = &s[0];
        assert!(s.provisional);
        let class = |q| s.parameters.iter().find(|c| c.quantity == q).unwrap().class;
        assert_eq!(class(Quantity::DissolvedOxygen), 3);
        assert_eq!(class(Quantity::Ph), 1);
        assert_eq!(s.overall_class, Some(3));
        assert!(s.overall_wording.as_deref().unwrap().contains("умеренно"));
        assert_eq!(s.oxygen_below_fishery_min, Some(true));
        assert_eq!(s.oxygen_pollution, None);
        assert!(matches!(s.izv, IzvStatus::NotComputable { .. }));
        let l = s.level.as_ref().unwrap();
        assert_eq!(l.level_cm, 132.0);
        assert_eq!(l.critical_level_cm, Some(136.0));
        assert_eq!(l.state, LevelState::NearCritical);
        assert!((l.rise_cm_per_h.unwrap() - 4.0).abs() < 1e-9);
        assert!(!l.rising_fast);
    }

    #[test]
    fn izv_of_six_indicators_matches_hand_arithmetic() {
        let n = Norms::embedded().unwrap();
        let ind = |name: &str, c: f64, l: f64, inv: bool| IzvIndicator {
            name: name.into(),
            concentration_mg_l: c,
            limit_mg_l: l,
            inverted: inv,
        };
        // O2: 6 / 8 = 0.75 (inverted); BOD5 3.6 / 3 = 1.2; NH4 0.6/0.4 = 1.5; NO2 0.02/0.02 =
        // 1.0; NO3 4.55/9.1 = 0.5; oil 0.05/0.05 = 1.0; Fe 0.01/0.1 = 0.1 (fifth other: dropped).
        // ИЗВ = (0.75 + 1.2 + 1.5 + 1.0 + 1.0 + 0.5) / 6 = 5.95 / 6 = 0.991667 -> II чистая.
        let v = izv(
            &[
                ind("dissolved_oxygen", 8.0, 6.0, true),
                ind("bod5", 3.6, 3.0, false),
                ind("ammonium_n", 0.6, 0.4, false),
                ind("nitrite_n", 0.02, 0.02, false),
                ind("nitrate_n", 4.55, 9.1, false),
                ind("oil_products", 0.05, 0.05, false),
                ind("iron", 0.01, 0.1, false),
            ],
            &n.water.izv,
        )
        .unwrap();
        match v {
            IzvStatus::Computed {
                value,
                class,
                kazhydromet,
                ..
            } => {
                assert!((value - 0.991667).abs() < 1e-5);
                assert_eq!(class, "II");
                assert_eq!(kazhydromet, "нормативно-чистая");
            }
            other => panic!("{other:?}"),
        }
        // Without BOD5: not computed.
        assert!(izv(&[ind("dissolved_oxygen", 8.0, 6.0, true)], &n.water.izv).is_none());
    }
}
