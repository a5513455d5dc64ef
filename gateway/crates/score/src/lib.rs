//! The scoring engine: pure functions over rollups (hourly and 20-minute time-weighted means
//! with coverage) that score Almaty's air and rivers against Kazakh norms, the city plans'
//! targets and international references. Reads norms files (`norms/` beside this crate, embedded, with a
//! department override directory); no other I/O, no state.
//!
//! - [`norms`]: norms, limit sets, targets and reference scales as data, with source and status.
//! - [`input`]: what the store fills in ([`PostSeries`]; the types live in `taza_domain::series`).
//! - [`config`]: the `[score]` section.
//! - [`means`]: valid hourly, daily (Asia/Almaty), monthly and annual means with data capture.
//! - [`air`]: ПДК exceedances, СИ, НП, ИЗА5, grades, ВЗ/ЭВЗ.
//! - [`compare`]: WHO, EU 2030, US AQI (NowCast), European AQI.
//! - [`river`]: water classes (provisional), ИЗВ, level vs critical level.
//! - [`zone`]: low-emission zones and their difference-in-differences effect.
//! - [`scorecard`]: the entry points; [`report`]: Markdown and CSV.

pub mod air;
pub mod compare;
pub mod config;
pub mod days;
pub use taza_domain::series as input;
pub mod means;
pub mod norms;
pub mod report;
pub mod river;
pub mod scorecard;
pub mod zone;

pub use norms::{Norms, NormsError, NormsFile, EMBEDDED};
pub use report::{scorecard_csv, scorecard_markdown};
pub use river::{river_statuses, RiverStatus};
pub use scorecard::{city_scorecard, post_scores, targets, CityScorecard, PostScores, TargetTable};
pub use taza_domain::series::{
    CriticalLevel, DayStats, HourlyMean, PostDescriptor, PostKind, PostSeries, QuantitySeries,
    SeasonalLevel, TwentyMinuteMean,
};
pub use zone::{zone_effect, Zone, ZoneEffect};

#[cfg(test)]
mod tests;
