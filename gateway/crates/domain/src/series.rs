//! What the scoring engine reads: plain data the store layer fills from its rollups (hourly and
//! 20-minute time-weighted means with their coverage) plus post descriptors. No I/O here.

use chrono::{Datelike, NaiveDate};
use protocol::{PostId, Quantity, UnixSeconds};
use serde::{Deserialize, Serialize};

/// Seconds in an hourly bucket.
pub const HOUR_S: i64 = 3600;
/// Seconds in a 20-minute (one-time, ПДК м.р.) bucket.
pub const TWENTY_MINUTES_S: i64 = 1200;

/// The pollutants the city scorecard scores: the store keeps day aggregates of these, the
/// engine and the API score these. The one list (migration 7's SQL spells it out, frozen).
pub const SCORED_POLLUTANTS: [Quantity; 3] = [Quantity::Pm2_5, Quantity::Pm10, Quantity::No2];

/// A time-weighted hourly mean of one post and quantity.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct HourlyMean {
    /// Start of the UTC hour (= local hour in Almaty).
    pub start: UnixSeconds,
    /// Time-weighted mean, in the quantity's unit ([`Quantity::unit`]).
    pub mean: f64,
    /// Seconds of the hour covered by valid readings (data capture = covered_s / 3600).
    pub covered_s: i64,
    /// Number of valid readings.
    pub count: u32,
    /// Largest valid reading, in the quantity's unit.
    pub max: f64,
}

/// A time-weighted 20-minute mean (the "one-time" concentration compared with ПДК м.р.).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TwentyMinuteMean {
    /// Start of the bucket (aligned to :00, :20, :40).
    pub start: UnixSeconds,
    /// Time-weighted mean, in the quantity's unit.
    pub mean: f64,
    /// Seconds of the 20 minutes covered by valid readings.
    pub covered_s: i64,
}

pub use crate::post::PostKind;

/// A critical level valid in some months (e.g. winter), cm above the gauge zero.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeasonalLevel {
    /// First month (1..=12) the level applies.
    pub first_month: u32,
    /// Last month (1..=12); may be smaller than `first_month` for a season across new year.
    pub last_month: u32,
    /// Critical level, cm.
    pub level_cm: f64,
}

/// A gauge's critical level (критический уровень), per post and possibly seasonal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CriticalLevel {
    /// Level outside any season, cm.
    pub level_cm: f64,
    /// Seasonal levels; the first whose months contain the date wins.
    #[serde(default)]
    pub seasons: Vec<SeasonalLevel>,
    /// Where the level comes from (Kazhydromet post card, bulletin).
    pub source: String,
}

impl CriticalLevel {
    /// The critical level on local date `date`, cm.
    pub fn level_cm_on(&self, date: NaiveDate) -> f64 {
        let m = date.month();
        self.seasons
            .iter()
            .find(|s| {
                if s.first_month <= s.last_month {
                    (s.first_month..=s.last_month).contains(&m)
                } else {
                    m >= s.first_month || m <= s.last_month
                }
            })
            .map_or(self.level_cm, |s| s.level_cm)
    }
}

/// Who a post is and where.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PostDescriptor {
    /// Post id.
    pub id: PostId,
    /// Air or river.
    pub kind: PostKind,
    /// Latitude, degrees north (WGS 84).
    pub lat_deg: f64,
    /// Longitude, degrees east (WGS 84).
    pub lon_deg: f64,
    /// City district (Алмалинский, ...).
    pub district: Option<String>,
    /// River name, for river posts.
    pub river: Option<String>,
    /// The gauge's critical level, for river posts.
    pub critical_level: Option<CriticalLevel>,
}

/// One quantity's buckets at one post. Buckets are expected sorted by start without duplicates
/// (the store's order); the engine stays correct but slower otherwise.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QuantitySeries {
    /// The quantity; means are in its unit.
    pub quantity: Quantity,
    /// Hourly means.
    pub hourly: Vec<HourlyMean>,
    /// 20-minute means (may be empty when the rollup is not available). When `days` is set,
    /// only the detail the aggregates cannot give: the days whose largest 20-minute mean
    /// reaches a ВЗ multiple (episodes are runs of consecutive buckets).
    pub twenty_minute: Vec<TwentyMinuteMean>,
    /// Precomputed local-day aggregates (`taza_store::day_scores`). When not empty the
    /// scorecard takes daily means and one-time statistics from these, and `hourly` need only
    /// hold the recent hours the comparison views read.
    #[serde(skip)]
    pub days: Vec<DayStats>,
}

/// What the scorecard needs of one local day of one quantity at one post, computed once from
/// its hourly and 20-minute buckets under the data-capture rules and the one-time limit in force
/// (`taza_score::day_stats`), and kept up to date as readings commit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DayStats {
    /// Local date (Asia/Almaty).
    pub date: NaiveDate,
    /// First second of the local day.
    pub start: UnixSeconds,
    /// Hours the local day has (24; 25 on the day Almaty changed offset).
    pub hours: u32,
    /// Hourly buckets present (valid or not); a day without any has no daily mean at all.
    pub hour_buckets: u32,
    /// Valid hourly means.
    pub valid_hours: u32,
    /// Sum of the valid hourly means, in the quantity's unit.
    pub sum_valid_hourly: f64,
    /// Largest valid hourly mean.
    pub max_valid_hourly: Option<f64>,
    /// Valid 20-minute means.
    pub valid_20min: u32,
    /// 20-minute buckets present but below the capture rule.
    pub invalid_20min: u32,
    /// Valid 20-minute means above the one-time limit (ПДК м.р.) in force when computed.
    pub over_one_time: u32,
    /// Largest valid 20-minute mean.
    pub max_20min: Option<f64>,
    /// Start of that bucket (the first, if several share the maximum).
    pub max_20min_at: Option<UnixSeconds>,
}

/// A post with its buckets for the span being scored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PostSeries {
    /// The post.
    pub post: PostDescriptor,
    /// Buckets per quantity.
    pub series: Vec<QuantitySeries>,
}

impl PostSeries {
    /// The buckets of `q`, if any.
    pub fn quantity(&self, q: Quantity) -> Option<&QuantitySeries> {
        self.series.iter().find(|s| s.quantity == q)
    }
}
