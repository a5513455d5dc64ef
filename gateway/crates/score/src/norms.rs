//! Norms, limit sets, grade tables, targets and reference scales as data.
//!
//! Owns the TOML files in `gateway/crates/score/norms/` (embedded into the binary with `include_str!`) and
//! their loading: a department directory may hold files with the same names whose keys patch the
//! embedded ones (tables merge key by key, scalars and arrays replace), so a changed limit
//! changes the score without a rebuild. Reads files; writes nothing. Every value carries its
//! `source` and `status`; limits are kept in mg/m³ as the documents print them and converted to
//! µg/m³ only by [`mg_m3_to_ug_m3`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use protocol::Quantity;
use serde::{Deserialize, Serialize};

/// How far a value has been checked (norms-research.md status key).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Primary text seen, or two independent sources agree.
    Verified,
    /// One secondary source.
    Secondary,
    /// Not confirmed: general knowledge, memory or a Taza choice.
    Unconfirmed,
}

/// A value with where it comes from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sourced<T> {
    /// The value, in the unit its key names.
    pub value: T,
    /// Document and clause, or seed line refs.
    pub source: String,
    /// How far it has been checked.
    pub status: Status,
}

/// One embedded norms file.
#[derive(Debug, Clone, Copy)]
pub struct NormsFile {
    /// File name, also the name an override file must have.
    pub name: &'static str,
    /// TOML text.
    pub text: &'static str,
}

const AIR: &str = "air.toml";
const CAPTURE: &str = "data_capture.toml";
const TARGETS: &str = "targets.toml";
const INTERNATIONAL: &str = "international.toml";
const WATER: &str = "water.toml";

/// The norms shipped with the gateway.
pub const EMBEDDED: &[NormsFile] = &[
    NormsFile {
        name: AIR,
        text: include_str!("../norms/air.toml"),
    },
    NormsFile {
        name: CAPTURE,
        text: include_str!("../norms/data_capture.toml"),
    },
    NormsFile {
        name: TARGETS,
        text: include_str!("../norms/targets.toml"),
    },
    NormsFile {
        name: INTERNATIONAL,
        text: include_str!("../norms/international.toml"),
    },
    NormsFile {
        name: WATER,
        text: include_str!("../norms/water.toml"),
    },
];

/// Why norms could not be loaded. Each variant names the file; `Invalid` also the key.
#[derive(Debug, thiserror::Error)]
pub enum NormsError {
    /// An override file could not be read.
    #[error("{file}: cannot read: {source}")]
    Io {
        /// The file.
        file: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Not TOML.
    #[error("{file}: not valid TOML: {message}")]
    Syntax {
        /// The file (embedded files are named `embedded:<name>`).
        file: String,
        /// Parser message with line and column.
        message: String,
    },
    /// TOML, but not the expected shape (missing or unknown key, wrong type).
    #[error("{file}: {message}")]
    Schema {
        /// The file.
        file: String,
        /// Deserializer message naming the key.
        message: String,
    },
    /// A value the engine cannot work with.
    #[error("{file}: key `{key}`: {message}")]
    Invalid {
        /// The file.
        file: String,
        /// Dotted key path.
        key: String,
        /// What is wrong.
        message: String,
    },
    /// A `.toml` file in the override directory that is not one of the norms files (a typo
    /// would otherwise be ignored silently).
    #[error("{file}: not a norms file (expected one of air.toml, data_capture.toml, targets.toml, international.toml, water.toml)")]
    UnknownFile {
        /// The file.
        file: PathBuf,
    },
}

/// mg/m³ -> µg/m³. Kazakh ПДК are printed in mg/m³; Taza measures µg/m³. The only place the
/// factor 1000 appears.
pub const fn mg_m3_to_ug_m3(mg_m3: f64) -> f64 {
    mg_m3 * 1000.0
}

// ---------------------------------------------------------------------------------------------
// Air limits.

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AirFile {
    active_set: String,
    limit_sets: BTreeMap<String, LimitSetFile>,
    iza: IzaRules,
    grades: GradeTables,
    episodes: EpisodeRules,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct LimitSetFile {
    description: String,
    #[serde(default)]
    extends: Option<String>,
    #[serde(default)]
    substances: BTreeMap<String, SubstanceFile>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct SubstanceFile {
    #[serde(default)]
    one_time_mg_m3: Option<Sourced<f64>>,
    #[serde(default)]
    daily_mg_m3: Option<Sourced<f64>>,
    #[serde(default)]
    hazard_class: Option<Sourced<u8>>,
}

/// One substance's limits, converted to µg/m³.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AirLimit {
    /// Substance key (`pm2_5`, `no2`, `so2`, ...; measured ones match [`Quantity::as_str`]).
    pub substance: String,
    /// ПДК м.р. (one-time, 20-30 min), µg/m³.
    pub one_time_ug_m3: Option<Sourced<f64>>,
    /// ПДК с.с. (24 h), µg/m³.
    pub daily_ug_m3: Option<Sourced<f64>>,
    /// Hazard class 1..4 (sets the ИЗА exponent).
    pub hazard_class: Option<Sourced<u8>>,
}

/// A named set of limits (ДСМ-70 as quoted, or a variant).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LimitSet {
    /// Set name (`kz_dsm70`).
    pub name: String,
    /// What the set is.
    pub description: String,
    /// Limits by substance key.
    pub substances: BTreeMap<String, AirLimit>,
}

/// ИЗА exponents by hazard class and how many unit indices are summed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IzaRules {
    /// Number of largest unit indices summed (5 for ИЗА5).
    pub substances_summed: Sourced<u32>,
    /// Exponent C for hazard class 1.
    pub class_1: Sourced<f64>,
    /// Class 2.
    pub class_2: Sourced<f64>,
    /// Class 3.
    pub class_3: Sourced<f64>,
    /// Class 4 (0.9 or 0.85; sources disagree).
    pub class_4: Sourced<f64>,
}

impl IzaRules {
    /// The exponent for `hazard_class` (1..=4).
    pub fn exponent(&self, hazard_class: u8) -> Option<f64> {
        match hazard_class {
            1 => Some(self.class_1.value),
            2 => Some(self.class_2.value),
            3 => Some(self.class_3.value),
            4 => Some(self.class_4.value),
            _ => None,
        }
    }
}

/// Kazhydromet pollution-level grade.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Grade {
    /// низкий.
    Low,
    /// повышенный.
    Elevated,
    /// высокий.
    High,
    /// очень высокий.
    VeryHigh,
}

impl Grade {
    /// Russian wording with the English in parentheses.
    pub const fn label(self) -> &'static str {
        match self {
            Self::Low => "низкий (low)",
            Self::Elevated => "повышенный (elevated)",
            Self::High => "высокий (high)",
            Self::VeryHigh => "очень высокий (very high)",
        }
    }
}

/// One band of a grade table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GradeBand {
    /// The grade.
    pub grade: Grade,
    /// Upper bound of the band (index value, multiple, or percent for НП).
    pub upper: f64,
    /// Whether `upper` itself is in the band.
    pub inclusive: bool,
}

/// A grade table: first band the value does not pass; above all bands: very high.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GradeTable {
    /// Source of the edges.
    pub source: String,
    /// Status of the edges.
    pub status: Status,
    /// Bands in ascending order.
    pub bands: Vec<GradeBand>,
}

impl GradeTable {
    /// The grade of `value`.
    pub fn grade(&self, value: f64) -> Grade {
        self.bands
            .iter()
            .find(|b| {
                if b.inclusive {
                    value <= b.upper
                } else {
                    value < b.upper
                }
            })
            .map_or(Grade::VeryHigh, |b| b.grade)
    }
}

/// How СИ, НП and ИЗА grades combine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CombinationRule {
    /// The higher of the СИ and НП grades; ИЗА shown beside it.
    MaxSiNp,
    /// The highest of all three.
    MaxAll,
}

/// The combination rule with its source.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Combination {
    /// The rule.
    pub rule: CombinationRule,
    /// Source.
    pub source: String,
    /// Status.
    pub status: Status,
}

/// Grade tables for ИЗА, СИ, НП.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GradeTables {
    /// ИЗА edges.
    pub iza: GradeTable,
    /// СИ edges (multiples of ПДК м.р.).
    pub si: GradeTable,
    /// НП edges (percent).
    pub np: GradeTable,
    /// How the grades combine.
    pub combination: Combination,
}

/// Which ЭВЗ rule applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EpisodeRule {
    /// ЭВЗ = more than 20 ПДК (Kazhydromet notes).
    Kazhydromet,
    /// RF duration-based criteria.
    Russian,
}

/// Kazhydromet ЭВЗ rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KazhydrometEpisodes {
    /// ЭВЗ when a one-time mean is above this multiple of ПДК м.р.
    pub extreme_above_multiple: f64,
    /// Source.
    pub source: String,
    /// Status.
    pub status: Status,
}

/// RF ЭВЗ rule: any ≥ `any_multiple`; ≥ `long_multiple` for `long_min_hours`; ≥
/// `persistent_multiple` for more than `persistent_over_hours`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RussianEpisodes {
    /// Multiple that is extreme at once (50).
    pub any_multiple: f64,
    /// Multiple that is extreme when it lasts `long_min_hours` (30).
    pub long_multiple: f64,
    /// Hours (8).
    pub long_min_hours: f64,
    /// Multiple that is extreme when it lasts more than `persistent_over_hours` (20).
    pub persistent_multiple: f64,
    /// Hours (48).
    pub persistent_over_hours: f64,
    /// Source.
    pub source: String,
    /// Status.
    pub status: Status,
}

/// ВЗ/ЭВЗ rules.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EpisodeRules {
    /// The active ЭВЗ rule.
    pub rule: EpisodeRule,
    /// ВЗ threshold, multiple of ПДК м.р.
    pub high_multiple: Sourced<f64>,
    /// Kazhydromet rule parameters.
    pub kazhydromet: KazhydrometEpisodes,
    /// RF rule parameters.
    pub russian: RussianEpisodes,
}

// ---------------------------------------------------------------------------------------------
// Data capture.

/// Data-capture rules as loaded, with sources.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataCaptureFile {
    /// Fraction of an hour covered for a valid hourly mean.
    pub hour_min_capture: Sourced<f64>,
    /// Fraction of 20 minutes covered for a valid one-time mean.
    pub twenty_minute_min_capture: Sourced<f64>,
    /// Valid hours for a valid daily mean.
    pub day_min_valid_hours: Sourced<u32>,
    /// Fraction of days with valid daily means for a valid monthly mean.
    pub month_min_capture: Sourced<f64>,
    /// Fraction of days with valid daily means for a valid annual mean.
    pub year_min_capture: Sourced<f64>,
}

/// The data-capture rules the engine applies (plain numbers; sources in [`DataCaptureFile`]).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct DataCaptureRules {
    /// Fraction of an hour covered for a valid hourly mean.
    pub hour_min_capture: f64,
    /// Fraction of 20 minutes covered for a valid one-time mean.
    pub twenty_minute_min_capture: f64,
    /// Valid hours for a valid daily mean.
    pub day_min_valid_hours: u32,
    /// Fraction of days for a valid monthly mean.
    pub month_min_capture: f64,
    /// Fraction of days for a valid annual mean.
    pub year_min_capture: f64,
}

impl Default for DataCaptureRules {
    /// The values of the embedded `data_capture.toml` (a test keeps them equal).
    fn default() -> Self {
        Self {
            hour_min_capture: 0.75,
            twenty_minute_min_capture: 0.75,
            day_min_valid_hours: 18,
            month_min_capture: 0.9,
            year_min_capture: 0.9,
        }
    }
}

impl From<&DataCaptureFile> for DataCaptureRules {
    fn from(f: &DataCaptureFile) -> Self {
        Self {
            hour_min_capture: f.hour_min_capture.value,
            twenty_minute_min_capture: f.twenty_minute_min_capture.value,
            day_min_valid_hours: f.day_min_valid_hours.value,
            month_min_capture: f.month_min_capture.value,
            year_min_capture: f.year_min_capture.value,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Targets.

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TargetsFile {
    metric: Vec<TargetMetric>,
}

/// Whether a plan row reports a past value or asks for one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TargetKind {
    /// A value the plan reports for that year.
    Baseline,
    /// What the plan asks for that year.
    Target,
}

/// One plan row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetRow {
    /// Calendar year.
    pub year: i32,
    /// Plan value in the metric's unit.
    pub value: f64,
    /// Baseline or target.
    pub kind: TargetKind,
    /// Row source when it differs from the metric's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Row status when it differs from the metric's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<Status>,
}

/// A plan metric with its rows by year.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetMetric {
    /// Metric id (`pm2_5_city_annual_mean`, `no2_city_annual_mean`, `iza5_city`).
    pub id: String,
    /// Display name.
    pub name: String,
    /// The measured quantity, for mean metrics.
    #[serde(default)]
    pub quantity: Option<Quantity>,
    /// Unit of `value` (`ug/m3`, `index`).
    pub unit: String,
    /// Source for the rows.
    pub source: String,
    /// Status for the rows.
    pub status: Status,
    /// Rows by year.
    pub rows: Vec<TargetRow>,
}

// ---------------------------------------------------------------------------------------------
// International references.

/// Reference values for one pollutant, µg/m³.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReferenceValues {
    /// Annual mean.
    #[serde(default)]
    pub annual_ug_m3: Option<f64>,
    /// 24-h mean.
    #[serde(default)]
    pub daily_ug_m3: Option<f64>,
    /// 1-h mean.
    #[serde(default)]
    pub hourly_ug_m3: Option<f64>,
}

/// A reference set (WHO 2021 guidelines, EU 2030 limits).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReferenceSet {
    /// Source.
    pub source: String,
    /// Status.
    pub status: Status,
    /// PM2.5.
    #[serde(default)]
    pub pm2_5: Option<ReferenceValues>,
    /// PM10.
    #[serde(default)]
    pub pm10: Option<ReferenceValues>,
    /// NO2.
    #[serde(default)]
    pub no2: Option<ReferenceValues>,
}

impl ReferenceSet {
    /// Values for `q`, if the set has them.
    pub fn for_quantity(&self, q: Quantity) -> Option<&ReferenceValues> {
        match q {
            Quantity::Pm2_5 => self.pm2_5.as_ref(),
            Quantity::Pm10 => self.pm10.as_ref(),
            Quantity::No2 => self.no2.as_ref(),
            _ => None,
        }
    }
}

/// The averaging an index is computed on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Averaging {
    /// EPA NowCast over the last 12 hourly means.
    Nowcast,
    /// The latest hourly mean.
    Hourly,
    /// Mean of the last 24 hourly means.
    #[serde(rename = "24h_running")]
    Running24h,
}

/// One pollutant's US AQI breakpoints.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AqiScale {
    /// Averaging.
    pub averaging: Averaging,
    /// Upper concentration of each category (µg/m³, or ppb when `unit = "ppb"`).
    pub upper: Vec<f64>,
    /// Decimals the concentration is truncated to before indexing.
    pub decimals: u32,
    /// `ppb` for gases; absent means µg/m³.
    #[serde(default)]
    pub unit: Option<String>,
}

/// US EPA AQI (2024).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsAqi {
    /// Source.
    pub source: String,
    /// Status.
    pub status: Status,
    /// Upper index of each category.
    pub index_upper: Vec<u32>,
    /// µg/m³ per ppb of NO2 at 25 °C.
    pub no2_ug_m3_per_ppb: f64,
    /// PM2.5.
    pub pm2_5: AqiScale,
    /// PM10.
    pub pm10: AqiScale,
    /// NO2.
    pub no2: AqiScale,
}

/// One pollutant's European AQI bands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EaqiScale {
    /// Averaging.
    pub averaging: Averaging,
    /// Upper µg/m³ of good, fair, moderate, poor, very poor.
    pub upper: Vec<f64>,
}

/// European AQI (2024 revision).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EuropeanAqi {
    /// Source.
    pub source: String,
    /// Status.
    pub status: Status,
    /// PM2.5.
    pub pm2_5: EaqiScale,
    /// PM10.
    pub pm10: EaqiScale,
    /// NO2.
    pub no2: EaqiScale,
}

/// All international references.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct International {
    /// WHO 2021 guidelines.
    pub who_2021: ReferenceSet,
    /// EU 2024/2881 limits from 2030.
    pub eu_2030: ReferenceSet,
    /// US EPA AQI 2024.
    pub us_aqi_2024: UsAqi,
    /// European AQI 2024.
    pub european_aqi_2024: EuropeanAqi,
}

// ---------------------------------------------------------------------------------------------
// Water.

/// Wording of a water-quality class.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClassWording {
    /// Class 1..6 (6 = "> 5").
    pub class: u8,
    /// Russian wording.
    pub ru: String,
    /// English.
    pub en: String,
}

/// One class band of a parameter; bounds in the quantity's unit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClassBand {
    /// Class 1..5.
    pub class: u8,
    /// Lowest value in the band.
    #[serde(default)]
    pub min: Option<f64>,
    /// Highest value in the band.
    #[serde(default)]
    pub max: Option<f64>,
}

/// Class bands of one measured parameter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParameterClasses {
    /// The parameter.
    pub quantity: Quantity,
    /// Bands, best class first.
    pub bands: Vec<ClassBand>,
}

impl ParameterClasses {
    /// Class of `value`: the first band it satisfies, else 6 ("> 5").
    pub fn class_of(&self, value: f64) -> u8 {
        self.bands
            .iter()
            .find(|b| b.min.is_none_or(|m| value >= m) && b.max.is_none_or(|m| value <= m))
            .map_or(WORSE_THAN_5, |b| b.class)
    }
}

/// The class reported as "> 5".
pub const WORSE_THAN_5: u8 = 6;

/// The Unified Classification table (provisional).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UnifiedClasses {
    /// True until the 2016 table is verified: results say so.
    pub provisional: bool,
    /// Source.
    pub source: String,
    /// Status.
    pub status: Status,
    /// Wording per class.
    pub wording: Vec<ClassWording>,
    /// Bands per parameter.
    pub parameter: Vec<ParameterClasses>,
}

/// An ИЗВ class.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IzvClass {
    /// Roman numeral.
    pub class: String,
    /// Inclusive upper ИЗВ (absent for the last class).
    #[serde(default)]
    pub upper: Option<f64>,
    /// Name (очень чистая, ...).
    pub name: String,
    /// Kazhydromet's wording where known (нормативно-чистая, ...), else empty.
    pub kazhydromet: String,
}

/// The ИЗВ scale.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IzvScale {
    /// Source.
    pub source: String,
    /// Status.
    pub status: Status,
    /// Classes I..VI in order.
    pub classes: Vec<IzvClass>,
    /// Class VII.
    pub above_last: IzvClass,
}

impl IzvScale {
    /// Class of an ИЗВ value.
    pub fn class_of(&self, izv: f64) -> &IzvClass {
        self.classes
            .iter()
            .find(|c| c.upper.is_some_and(|u| izv <= u))
            .unwrap_or(&self.above_last)
    }
}

/// Dissolved-oxygen thresholds, mg/L.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OxygenThresholds {
    /// Fishery minimum, summer.
    pub fishery_summer_min_mg_l: Sourced<f64>,
    /// Household and cultural use minimum.
    pub household_min_mg_l: Sourced<f64>,
    /// ВЗ at or below.
    pub high_pollution_max_mg_l: Sourced<f64>,
    /// ЭВЗ at or below.
    pub extreme_pollution_max_mg_l: Sourced<f64>,
    /// Normative divided by the measured value in ИЗВ.
    pub izv_normative_mg_l: Sourced<f64>,
}

/// River-level alert choices (the critical level itself is per gauge).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LevelRules {
    /// Warn at critical level minus this.
    pub warning_margin_cm: Sourced<f64>,
    /// Hours of hourly means the rise rate is fitted over.
    pub rise_window_hours: Sourced<u32>,
    /// Rise rate that alerts.
    pub rise_alert_cm_per_h: Sourced<f64>,
}

/// Water norms.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WaterNorms {
    /// Provisional class table.
    pub unified_classes: UnifiedClasses,
    /// ИЗВ scale.
    pub izv: IzvScale,
    /// Fishery limits used for ИЗВ, mg/L, by indicator.
    pub fishery_limits_mg_l: BTreeMap<String, Sourced<f64>>,
    /// Dissolved-oxygen thresholds.
    pub dissolved_oxygen: OxygenThresholds,
    /// Level alert choices.
    pub level: LevelRules,
}

// ---------------------------------------------------------------------------------------------
// The whole.

/// All norms the engine scores against.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Norms {
    /// Name of the active limit set.
    pub active_set: String,
    /// Every limit set, resolved (`extends` applied), µg/m³.
    pub limit_sets: BTreeMap<String, LimitSet>,
    /// ИЗА exponents.
    pub iza: IzaRules,
    /// Grade tables.
    pub grades: GradeTables,
    /// ВЗ/ЭВЗ rules.
    pub episodes: EpisodeRules,
    /// Data-capture rules with sources.
    pub capture: DataCaptureFile,
    /// Plan targets.
    pub targets: Vec<TargetMetric>,
    /// International references.
    pub international: International,
    /// Water norms.
    pub water: WaterNorms,
}

impl Norms {
    /// The norms shipped in the binary.
    pub fn embedded() -> Result<Self, NormsError> {
        Self::load(EMBEDDED, None)
    }

    /// Loads `default_embedded`, patched by same-named files in `override_dir`: tables merge
    /// key by key, scalars and arrays replace, so an override may hold one changed limit or a
    /// whole file. Unknown `.toml` names in the directory are an error; other files are ignored.
    pub fn load(
        default_embedded: &[NormsFile],
        override_dir: Option<&Path>,
    ) -> Result<Self, NormsError> {
        let mut tables: BTreeMap<&str, toml::Table> = BTreeMap::new();
        for f in default_embedded {
            let table: toml::Table =
                f.text
                    .parse()
                    .map_err(|e: toml::de::Error| NormsError::Syntax {
                        file: format!("embedded:{}", f.name),
                        message: e.to_string(),
                    })?;
            tables.insert(f.name, table);
        }
        if let Some(dir) = override_dir {
            let entries = std::fs::read_dir(dir).map_err(|source| NormsError::Io {
                file: dir.to_path_buf(),
                source,
            })?;
            for entry in entries {
                let path = entry
                    .map_err(|source| NormsError::Io {
                        file: dir.to_path_buf(),
                        source,
                    })?
                    .path();
                if path.extension().and_then(|e| e.to_str()) != Some("toml") {
                    continue;
                }
                let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
                let Some(base) = tables.get_mut(name) else {
                    return Err(NormsError::UnknownFile { file: path });
                };
                let text = std::fs::read_to_string(&path).map_err(|source| NormsError::Io {
                    file: path.clone(),
                    source,
                })?;
                let patch: toml::Table =
                    text.parse()
                        .map_err(|e: toml::de::Error| NormsError::Syntax {
                            file: path.display().to_string(),
                            message: e.to_string(),
                        })?;
                merge(base, patch);
            }
        }
        let air: AirFile = typed(&mut tables, AIR)?;
        let capture: DataCaptureFile = typed(&mut tables, CAPTURE)?;
        let targets: TargetsFile = typed(&mut tables, TARGETS)?;
        let international: International = typed(&mut tables, INTERNATIONAL)?;
        let water: WaterNorms = typed(&mut tables, WATER)?;

        let limit_sets = resolve_limit_sets(&air.limit_sets)?;
        let norms = Self {
            active_set: air.active_set,
            limit_sets,
            iza: air.iza,
            grades: air.grades,
            episodes: air.episodes,
            capture,
            targets: targets.metric,
            international,
            water,
        };
        norms.validate()?;
        Ok(norms)
    }

    /// The norms as `[score]` configures them: the shipped files patched by `norms_dir`, with
    /// `limit_set` (when set) made the active limit set. Scoring and alerting both load norms
    /// through this, so a changed limit set moves scores and alert thresholds together.
    pub fn load_configured(cfg: &crate::config::ScoreConfig) -> Result<Self, NormsError> {
        let mut norms = Self::load(EMBEDDED, cfg.norms_dir.as_deref())?;
        if let Some(set) = &cfg.limit_set {
            norms.select_limit_set(set)?;
        }
        Ok(norms)
    }

    /// Makes `name` the active limit set.
    pub fn select_limit_set(&mut self, name: &str) -> Result<(), NormsError> {
        if !self.limit_sets.contains_key(name) {
            return Err(invalid(AIR, "active_set", format!("no limit set `{name}`")));
        }
        name.clone_into(&mut self.active_set);
        Ok(())
    }

    /// The active limit set.
    pub fn active(&self) -> &LimitSet {
        // validate() guarantees the key exists; an empty fallback keeps this panic-free.
        static EMPTY: std::sync::OnceLock<LimitSet> = std::sync::OnceLock::new();
        self.limit_sets.get(&self.active_set).unwrap_or_else(|| {
            EMPTY.get_or_init(|| LimitSet {
                name: String::new(),
                description: String::new(),
                substances: BTreeMap::new(),
            })
        })
    }

    /// The active limits of `substance`.
    pub fn limit(&self, substance: &str) -> Option<&AirLimit> {
        self.active().substances.get(substance)
    }

    /// The engine's data-capture rules.
    pub fn capture_rules(&self) -> DataCaptureRules {
        DataCaptureRules::from(&self.capture)
    }

    fn validate(&self) -> Result<(), NormsError> {
        if !self.limit_sets.contains_key(&self.active_set) {
            return Err(invalid(
                AIR,
                "active_set",
                format!("no limit set `{}`", self.active_set),
            ));
        }
        for set in self.limit_sets.values() {
            for l in set.substances.values() {
                let key =
                    |k: &str| format!("limit_sets.{}.substances.{}.{k}", set.name, l.substance);
                for (k, v) in [
                    ("one_time_mg_m3", &l.one_time_ug_m3),
                    ("daily_mg_m3", &l.daily_ug_m3),
                ] {
                    if let Some(v) = v {
                        if !(v.value.is_finite() && v.value > 0.0) {
                            return Err(invalid(AIR, &key(k), "must be a positive number".into()));
                        }
                    }
                }
                if let Some(c) = &l.hazard_class {
                    if !(1..=4).contains(&c.value) {
                        return Err(invalid(AIR, &key("hazard_class"), "must be 1..=4".into()));
                    }
                }
            }
        }
        for (name, t) in [
            ("grades.iza", &self.grades.iza),
            ("grades.si", &self.grades.si),
            ("grades.np", &self.grades.np),
        ] {
            if !t.bands.windows(2).all(|w| w[0].upper <= w[1].upper) {
                return Err(invalid(AIR, &format!("{name}.bands"), "must ascend".into()));
            }
        }
        let c = &self.capture;
        for (k, v) in [
            ("hour_min_capture", c.hour_min_capture.value),
            (
                "twenty_minute_min_capture",
                c.twenty_minute_min_capture.value,
            ),
            ("month_min_capture", c.month_min_capture.value),
            ("year_min_capture", c.year_min_capture.value),
        ] {
            if !(v > 0.0 && v <= 1.0) {
                return Err(invalid(CAPTURE, k, "must be a fraction in (0, 1]".into()));
            }
        }
        if !(1..=24).contains(&c.day_min_valid_hours.value) {
            return Err(invalid(
                CAPTURE,
                "day_min_valid_hours",
                "must be 1..=24".into(),
            ));
        }
        let us = &self.international.us_aqi_2024;
        for (k, s) in [("pm2_5", &us.pm2_5), ("pm10", &us.pm10), ("no2", &us.no2)] {
            if s.upper.len() != us.index_upper.len() || !ascending(&s.upper) {
                return Err(invalid(
                    INTERNATIONAL,
                    &format!("us_aqi_2024.{k}.upper"),
                    "must ascend and match index_upper in length".into(),
                ));
            }
        }
        let eu = &self.international.european_aqi_2024;
        for (k, s) in [("pm2_5", &eu.pm2_5), ("pm10", &eu.pm10), ("no2", &eu.no2)] {
            if s.upper.len() != 5 || !ascending(&s.upper) {
                return Err(invalid(
                    INTERNATIONAL,
                    &format!("european_aqi_2024.{k}.upper"),
                    "must be 5 ascending bounds".into(),
                ));
            }
        }
        Ok(())
    }
}

fn ascending(v: &[f64]) -> bool {
    v.windows(2).all(|w| w[0] < w[1])
}

fn invalid(file: &str, key: &str, message: String) -> NormsError {
    NormsError::Invalid {
        file: file.to_string(),
        key: key.to_string(),
        message,
    }
}

/// Deep merge: tables merge key by key; anything else in `patch` replaces.
fn merge(base: &mut toml::Table, patch: toml::Table) {
    for (k, v) in patch {
        match (base.get_mut(&k), v) {
            (Some(toml::Value::Table(b)), toml::Value::Table(p)) => merge(b, p),
            (_, v) => {
                base.insert(k, v);
            }
        }
    }
}

fn typed<T: serde::de::DeserializeOwned>(
    tables: &mut BTreeMap<&str, toml::Table>,
    name: &'static str,
) -> Result<T, NormsError> {
    let table = tables.remove(name).ok_or_else(|| NormsError::Schema {
        file: name.to_string(),
        message: "file missing from the embedded set".into(),
    })?;
    toml::Value::Table(table)
        .try_into()
        .map_err(|e: toml::de::Error| NormsError::Schema {
            file: name.to_string(),
            message: e.to_string(),
        })
}

/// Applies `extends` (a set inherits its parent's substances and overrides per key) and
/// converts mg/m³ to µg/m³.
fn resolve_limit_sets(
    sets: &BTreeMap<String, LimitSetFile>,
) -> Result<BTreeMap<String, LimitSet>, NormsError> {
    let mut out = BTreeMap::new();
    for (name, _) in sets.iter() {
        // Walk the chain child -> root, bounded so a cycle is an error, not a hang.
        let mut chain = vec![name.as_str()];
        let mut current = name.as_str();
        while let Some(parent) = sets.get(current).and_then(|s| s.extends.as_deref()) {
            if !sets.contains_key(parent) {
                return Err(invalid(
                    AIR,
                    &format!("limit_sets.{name}.extends"),
                    format!("no limit set `{parent}`"),
                ));
            }
            if chain.len() > sets.len() {
                return Err(invalid(
                    AIR,
                    &format!("limit_sets.{name}.extends"),
                    "cycle".into(),
                ));
            }
            chain.push(parent);
            current = parent;
        }
        let mut merged: BTreeMap<String, SubstanceFile> = BTreeMap::new();
        for set_name in chain.iter().rev() {
            let Some(set) = sets.get(*set_name) else {
                continue;
            };
            for (sub, f) in &set.substances {
                let e = merged.entry(sub.clone()).or_default();
                if f.one_time_mg_m3.is_some() {
                    e.one_time_mg_m3.clone_from(&f.one_time_mg_m3);
                }
                if f.daily_mg_m3.is_some() {
                    e.daily_mg_m3.clone_from(&f.daily_mg_m3);
                }
                if f.hazard_class.is_some() {
                    e.hazard_class.clone_from(&f.hazard_class);
                }
            }
        }
        let to_ug = |s: &Option<Sourced<f64>>| {
            s.as_ref().map(|s| Sourced {
                value: mg_m3_to_ug_m3(s.value),
                source: s.source.clone(),
                status: s.status,
            })
        };
        let substances = merged
            .into_iter()
            .map(|(sub, f)| {
                let limit = AirLimit {
                    substance: sub.clone(),
                    one_time_ug_m3: to_ug(&f.one_time_mg_m3),
                    daily_ug_m3: to_ug(&f.daily_mg_m3),
                    hazard_class: f.hazard_class,
                };
                (sub, limit)
            })
            .collect();
        let description = sets
            .get(name)
            .map(|s| s.description.clone())
            .unwrap_or_default();
        out.insert(
            name.clone(),
            LimitSet {
                name: name.clone(),
                description,
                substances,
            },
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_norms_load_and_convert_limits_to_micrograms() {
        let n = Norms::embedded().unwrap();
        assert_eq!(n.active_set, "kz_dsm70");
        let pm = n.limit("pm2_5").unwrap();
        // 0.16 mg/m³ × 1000 = 160 µg/m³; 0.035 × 1000 = 35.
        assert!((pm.one_time_ug_m3.as_ref().unwrap().value - 160.0).abs() < 1e-9);
        assert!((pm.daily_ug_m3.as_ref().unwrap().value - 35.0).abs() < 1e-9);
    }

    #[test]
    fn alternative_set_changes_only_the_no2_daily_limit() {
        let mut n = Norms::embedded().unwrap();
        n.select_limit_set("kz_dsm70_no2_daily_0_1").unwrap();
        let no2 = n.limit("no2").unwrap();
        assert!((no2.daily_ug_m3.as_ref().unwrap().value - 100.0).abs() < 1e-9);
        assert!((no2.one_time_ug_m3.as_ref().unwrap().value - 200.0).abs() < 1e-9);
        assert_eq!(no2.hazard_class.as_ref().unwrap().value, 2);
        assert!(n.select_limit_set("nope").is_err());
    }

    #[test]
    fn configured_limit_set_is_active_and_an_unknown_one_is_refused() {
        let cfg = crate::config::ScoreConfig {
            limit_set: Some("kz_dsm70_no2_daily_0_1".into()),
            ..Default::default()
        };
        let n = Norms::load_configured(&cfg).unwrap();
        assert_eq!(n.active().name, "kz_dsm70_no2_daily_0_1");
        let n = Norms::load_configured(&crate::config::ScoreConfig::default()).unwrap();
        assert_eq!(n.active().name, "kz_dsm70");
        let cfg = crate::config::ScoreConfig {
            limit_set: Some("nope".into()),
            ..Default::default()
        };
        assert!(Norms::load_configured(&cfg).is_err());
    }

    #[test]
    fn default_capture_rules_equal_the_embedded_file() {
        let n = Norms::embedded().unwrap();
        assert_eq!(n.capture_rules(), DataCaptureRules::default());
    }

    #[test]
    fn grade_tables_put_edges_where_norms_md_says() {
        let n = Norms::embedded().unwrap();
        let g = &n.grades;
        for (v, want) in [
            (4.99, Grade::Low),
            (5.0, Grade::Elevated),
            (6.9, Grade::Elevated),
            (7.0, Grade::High),
            (13.9, Grade::High),
            (14.0, Grade::VeryHigh),
        ] {
            assert_eq!(g.iza.grade(v), want, "ИЗА {v}");
        }
        for (v, want) in [
            (1.0, Grade::Low),
            (1.01, Grade::Elevated),
            (4.99, Grade::Elevated),
            (5.0, Grade::High),
            (10.0, Grade::High),
            (10.01, Grade::VeryHigh),
        ] {
            assert_eq!(g.si.grade(v), want, "СИ {v}");
        }
        for (v, want) in [
            (0.0, Grade::Low),
            (0.5, Grade::Elevated),
            (19.9, Grade::Elevated),
            (20.0, Grade::High),
            (50.0, Grade::VeryHigh),
        ] {
            assert_eq!(g.np.grade(v), want, "НП {v}");
        }
    }

    #[test]
    fn unknown_override_file_and_bad_value_are_typed_errors_naming_file_and_key() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("air_limits.toml"), "x = 1").unwrap();
        let e = Norms::load(EMBEDDED, Some(dir.path())).unwrap_err();
        assert!(matches!(e, NormsError::UnknownFile { .. }), "{e}");

        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("air.toml"),
            "[limit_sets.kz_dsm70.substances.no2.daily_mg_m3]\nvalue = -1.0\n",
        )
        .unwrap();
        let e = Norms::load(EMBEDDED, Some(dir.path())).unwrap_err();
        match e {
            NormsError::Invalid { file, key, .. } => {
                assert_eq!(file, "air.toml");
                assert_eq!(key, "limit_sets.kz_dsm70.substances.no2.daily_mg_m3");
            }
            other => panic!("{other}"),
        }

        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("water.toml"), "[izv\n").unwrap();
        let e = Norms::load(EMBEDDED, Some(dir.path())).unwrap_err();
        assert!(matches!(e, NormsError::Syntax { .. }), "{e}");
    }
}
