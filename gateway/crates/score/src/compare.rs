//! Comparison views of the latest values against international references: WHO 2021 guideline
//! multiples, EU 2024/2881 limits from 2030, the US EPA AQI (with NowCast) and the European AQI.
//! Pure functions over hourly means; scales come from `international.toml`.

use protocol::{Quantity, UnixSeconds};
use serde::Serialize;

use super::input::{HourlyMean, HOUR_S};
use super::means::hour_is_valid;
use super::norms::{Averaging, DataCaptureRules, EaqiScale, International, UsAqi};
use taza_domain::calendar::hour_start;

/// Hours the NowCast looks back over (EPA).
pub const NOWCAST_HOURS: i64 = 12;
/// Hours in the running mean the European AQI uses for PM.
pub const RUNNING_HOURS: i64 = 24;

/// EPA NowCast for PM: with cᵢ the hourly mean i−1 hours before the latest (i = 1..12),
/// w* = min(c)/max(c), w = max(w*, 0.5), NowCast = Σ wⁱ⁻¹ cᵢ / Σ wⁱ⁻¹ over the hours present.
/// Needs at least two of the three most recent hours (AirNow NowCast fact sheet [S42][S53]).
/// `recent[0]` is the most recent hour; `None` marks a missing or invalid hour.
pub fn nowcast(recent: &[Option<f64>]) -> Option<f64> {
    let recent = recent.get(..recent.len().min(12)).unwrap_or(&[]);
    let first3 = recent.iter().take(3).filter(|c| c.is_some()).count();
    if first3 < 2 {
        return None;
    }
    let present = recent.iter().flatten().copied();
    let (min, max) = present.fold((f64::MAX, f64::MIN), |(lo, hi), c| (lo.min(c), hi.max(c)));
    if max <= 0.0 {
        return Some(0.0);
    }
    let w = (min.max(0.0) / max).max(0.5);
    let (mut num, mut den, mut wi) = (0.0, 0.0, 1.0);
    for c in recent {
        if let Some(c) = c {
            num += wi * c;
            den += wi;
        }
        wi *= w;
    }
    (den > 0.0).then(|| num / den)
}

/// A US AQI value.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UsAqiValue {
    /// Index 0..500 (500 also for "beyond the index").
    pub index: u32,
    /// EPA category name.
    pub category: &'static str,
    /// The concentration indexed (truncated), µg/m³ or ppb per `concentration_unit`.
    pub concentration: f64,
    /// `ug/m3` or `ppb`.
    pub concentration_unit: &'static str,
    /// The averaging used.
    pub averaging: Averaging,
}

const US_CATEGORIES: [&str; 6] = [
    "Good",
    "Moderate",
    "Unhealthy for Sensitive Groups",
    "Unhealthy",
    "Very Unhealthy",
    "Hazardous",
];

/// US AQI by linear interpolation within the breakpoint category (40 CFR 58 App. G):
/// I = (I_hi − I_lo) / (BP_hi − BP_lo) · (C − BP_lo) + I_lo, with C truncated to the scale's
/// decimals; BP_lo of a category is the previous upper plus one unit of the last decimal.
pub fn us_aqi(
    scale: &super::norms::AqiScale,
    index_upper: &[u32],
    concentration: f64,
) -> Option<(u32, usize)> {
    if !concentration.is_finite() {
        return None;
    }
    let step = 10f64.powi(i32::try_from(scale.decimals).unwrap_or(0));
    let c = (concentration.max(0.0) * step).floor() / step;
    let unit = 1.0 / step;
    for (i, hi_c) in scale.upper.iter().enumerate() {
        if c <= *hi_c {
            let lo_c = if i == 0 {
                0.0
            } else {
                scale.upper.get(i - 1)? + unit
            };
            let hi_i = f64::from(*index_upper.get(i)?);
            let lo_i = if i == 0 {
                0.0
            } else {
                f64::from(*index_upper.get(i - 1)? + 1)
            };
            let index = if hi_c > &lo_c {
                (hi_i - lo_i) / (hi_c - lo_c) * (c - lo_c).max(0.0) + lo_i
            } else {
                hi_i
            };
            return Some((index.round() as u32, i));
        }
    }
    Some((*index_upper.last()?, index_upper.len().saturating_sub(1)))
}

/// European AQI band names (2024 revision).
const EAQI_BANDS: [&str; 6] = [
    "good",
    "fair",
    "moderate",
    "poor",
    "very_poor",
    "extremely_poor",
];

/// European AQI band of a concentration: first band whose upper bound it does not exceed.
pub fn european_aqi_band(scale: &EaqiScale, concentration_ug_m3: f64) -> &'static str {
    let i = scale
        .upper
        .iter()
        .position(|u| concentration_ug_m3 <= *u)
        .unwrap_or(scale.upper.len());
    EAQI_BANDS.get(i).copied().unwrap_or("extremely_poor")
}

/// A European AQI value.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EuropeanAqiValue {
    /// Band name.
    pub band: &'static str,
    /// Concentration banded, µg/m³.
    pub concentration_ug_m3: f64,
    /// The averaging used.
    pub averaging: Averaging,
}

/// A value and its multiple of a reference.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Multiple {
    /// Reference value, µg/m³.
    pub reference_ug_m3: f64,
    /// Measured value, µg/m³.
    pub value_ug_m3: f64,
    /// value / reference.
    pub multiple: f64,
}

fn multiple(value: Option<f64>, reference: Option<f64>) -> Option<Multiple> {
    let (v, r) = (value?, reference?);
    (r > 0.0).then(|| Multiple {
        reference_ug_m3: r,
        value_ug_m3: v,
        multiple: v / r,
    })
}

/// Latest values of one pollutant at one post and how they compare.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Comparison {
    /// Pollutant.
    pub quantity: Quantity,
    /// Start of the last complete hour before `now` (the reference hour).
    pub hour_start: UnixSeconds,
    /// Its valid hourly mean, µg/m³ (`None`: missing or invalid).
    pub hourly_ug_m3: Option<f64>,
    /// Mean of the valid hourly means of the last 24 h, µg/m³, when ≥ the day rule's hours.
    pub running_24h_ug_m3: Option<f64>,
    /// Valid hours behind it.
    pub running_24h_valid_hours: u32,
    /// NowCast, µg/m³ (PM only).
    pub nowcast_ug_m3: Option<f64>,
    /// Annual mean so far (passed in by the caller), µg/m³.
    pub annual_ug_m3: Option<f64>,
    /// WHO 2021: running 24-h mean vs the 24-h guideline.
    pub who_daily: Option<Multiple>,
    /// WHO 2021: annual mean vs the annual guideline.
    pub who_annual: Option<Multiple>,
    /// EU 2030: hourly limit (NO2).
    pub eu_2030_hourly: Option<Multiple>,
    /// EU 2030: daily limit.
    pub eu_2030_daily: Option<Multiple>,
    /// EU 2030: annual limit.
    pub eu_2030_annual: Option<Multiple>,
    /// US AQI 2024.
    pub us_aqi: Option<UsAqiValue>,
    /// European AQI 2024.
    pub european_aqi: Option<EuropeanAqiValue>,
}

/// Compares the latest values of `q` with WHO, EU 2030, US AQI and European AQI.
/// The reference hour is the last complete hour before `now`; NowCast uses the 12 hours ending
/// there, the running mean the 24 hours ending there.
pub fn compare_latest(
    intl: &International,
    q: Quantity,
    hourly: &[HourlyMean],
    annual_ug_m3: Option<f64>,
    now: UnixSeconds,
    capture: &DataCaptureRules,
) -> Comparison {
    let reference = hour_start(now).offset(-HOUR_S);
    let window_start = reference.offset(-(RUNNING_HOURS - 1) * HOUR_S);
    // recent[i] = valid mean of the hour i hours before the reference hour.
    let mut recent: Vec<Option<f64>> = vec![None; usize::try_from(RUNNING_HOURS).unwrap_or(24)];
    // Hourly buckets are sorted; start the scan at the window.
    let lo = hourly.partition_point(|h| h.start < window_start);
    for h in hourly.get(lo..).unwrap_or(&[]) {
        if h.start > reference {
            break;
        }
        let back = (reference.0 - h.start.0) / HOUR_S;
        if let Some(slot) = usize::try_from(back).ok().and_then(|i| recent.get_mut(i)) {
            if hour_is_valid(h, capture) {
                *slot = Some(h.mean);
            }
        }
    }
    let hourly_ug_m3 = recent.first().copied().flatten();
    let valid_24: Vec<f64> = recent.iter().flatten().copied().collect();
    let running_24h_valid_hours = u32::try_from(valid_24.len()).unwrap_or(0);
    let running_24h_ug_m3 = (running_24h_valid_hours >= capture.day_min_valid_hours)
        .then(|| valid_24.iter().sum::<f64>() / valid_24.len().max(1) as f64);
    let is_pm = matches!(q, Quantity::Pm2_5 | Quantity::Pm10);
    let nowcast_ug_m3 = if is_pm {
        nowcast(recent.get(..12).unwrap_or(&[]))
    } else {
        None
    };

    let who = intl.who_2021.for_quantity(q);
    let eu = intl.eu_2030.for_quantity(q);
    let pick = |a: Averaging| match a {
        Averaging::Nowcast => nowcast_ug_m3,
        Averaging::Hourly => hourly_ug_m3,
        Averaging::Running24h => running_24h_ug_m3,
    };
    let us = us_value(&intl.us_aqi_2024, q, &pick);
    let eaqi_scale = match q {
        Quantity::Pm2_5 => Some(&intl.european_aqi_2024.pm2_5),
        Quantity::Pm10 => Some(&intl.european_aqi_2024.pm10),
        Quantity::No2 => Some(&intl.european_aqi_2024.no2),
        _ => None,
    };
    let european_aqi = eaqi_scale.and_then(|s| {
        pick(s.averaging).map(|c| EuropeanAqiValue {
            band: european_aqi_band(s, c),
            concentration_ug_m3: c,
            averaging: s.averaging,
        })
    });
    Comparison {
        quantity: q,
        hour_start: reference,
        hourly_ug_m3,
        running_24h_ug_m3,
        running_24h_valid_hours,
        nowcast_ug_m3,
        annual_ug_m3,
        who_daily: multiple(running_24h_ug_m3, who.and_then(|w| w.daily_ug_m3)),
        who_annual: multiple(annual_ug_m3, who.and_then(|w| w.annual_ug_m3)),
        eu_2030_hourly: multiple(hourly_ug_m3, eu.and_then(|w| w.hourly_ug_m3)),
        eu_2030_daily: multiple(running_24h_ug_m3, eu.and_then(|w| w.daily_ug_m3)),
        eu_2030_annual: multiple(annual_ug_m3, eu.and_then(|w| w.annual_ug_m3)),
        us_aqi: us,
        european_aqi,
    }
}

fn us_value(
    us: &UsAqi,
    q: Quantity,
    pick: &dyn Fn(Averaging) -> Option<f64>,
) -> Option<UsAqiValue> {
    let scale = match q {
        Quantity::Pm2_5 => &us.pm2_5,
        Quantity::Pm10 => &us.pm10,
        Quantity::No2 => &us.no2,
        _ => return None,
    };
    let c_ug = pick(scale.averaging)?;
    let ppb = scale.unit.as_deref() == Some("ppb");
    // NO2 breakpoints are in ppb; convert at EPA's 25 °C convention.
    let c = if ppb {
        c_ug / us.no2_ug_m3_per_ppb
    } else {
        c_ug
    };
    let (index, cat) = us_aqi(scale, &us.index_upper, c)?;
    Some(UsAqiValue {
        index,
        category: US_CATEGORIES.get(cat).copied().unwrap_or("Hazardous"),
        concentration: c,
        concentration_unit: if ppb { "ppb" } else { "ug/m3" },
        averaging: scale.averaging,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::norms::Norms;

    #[test]
    fn nowcast_weights_recent_hours_when_concentrations_vary() {
        // c = 40, 20, 10 (most recent first): w* = 10/40 = 0.25 -> w = 0.5.
        // NowCast = (40 + 0.5·20 + 0.25·10) / (1 + 0.5 + 0.25) = 52.5 / 1.75 = 30.
        let v = nowcast(&[Some(40.0), Some(20.0), Some(10.0)]).unwrap();
        assert!((v - 30.0).abs() < 1e-12);
        // Steady values: w* = 1, NowCast = plain mean.
        assert_eq!(nowcast(&[Some(12.0); 12]), Some(12.0));
        // Two of the three latest missing: no NowCast.
        assert_eq!(nowcast(&[Some(12.0), None, None, Some(5.0)]), None);
    }

    #[test]
    fn us_aqi_interpolates_2024_pm25_breakpoints() {
        let n = Norms::embedded().unwrap();
        let us = &n.international.us_aqi_2024;
        // 35.4 is the top of Moderate: 100. 9.0 -> 50. 12.0 in 9.1..35.4 -> (100-51)/(35.4-9.1)
        // · (12.0-9.1) + 51 = 49/26.3 · 2.9 + 51 = 5.4030 + 51 = 56.40 -> 56.
        assert_eq!(us_aqi(&us.pm2_5, &us.index_upper, 35.4), Some((100, 1)));
        assert_eq!(us_aqi(&us.pm2_5, &us.index_upper, 9.0), Some((50, 0)));
        assert_eq!(us_aqi(&us.pm2_5, &us.index_upper, 12.0), Some((56, 1)));
        // Truncation: 9.05 -> 9.0 -> 50.
        assert_eq!(us_aqi(&us.pm2_5, &us.index_upper, 9.05), Some((50, 0)));
        assert_eq!(us_aqi(&us.pm2_5, &us.index_upper, 900.0), Some((500, 5)));
    }

    #[test]
    fn european_aqi_bands_follow_2024_edges() {
        let n = Norms::embedded().unwrap();
        let s = &n.international.european_aqi_2024.pm2_5;
        for (c, band) in [
            (5.0, "good"),
            (5.1, "fair"),
            (15.0, "fair"),
            (49.0, "moderate"),
            (90.0, "poor"),
            (140.0, "very_poor"),
            (141.0, "extremely_poor"),
        ] {
            assert_eq!(european_aqi_band(s, c), band, "{c}");
        }
    }
}
