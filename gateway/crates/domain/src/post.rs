//! A post as the registry holds it: what it is, where it stands, what it measures and how its
//! sensors are corrected. Config files, the store and the API all refer to these types.

use std::time::Duration;

use protocol::{PostId, Quantity};
use serde::{Deserialize, Serialize};

use crate::series::CriticalLevel;

/// Air or river post.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PostKind {
    /// Street air-quality post.
    Air,
    /// River gauge and water-quality post.
    River,
}

impl PostKind {
    /// Every kind.
    pub const ALL: [Self; 2] = [Self::Air, Self::River];

    /// `air` or `river`: the one spelling config files, the store, the API and the CLI use.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Air => "air",
            Self::River => "river",
        }
    }
}

impl std::fmt::Display for PostKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A post kind that is neither `air` nor `river`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown post kind {0:?} (air or river)")]
pub struct UnknownPostKind(pub String);

impl std::str::FromStr for PostKind {
    type Err = UnknownPostKind;

    /// The inverse of [`PostKind::as_str`].
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| UnknownPostKind(s.to_string()))
    }
}

/// One post in the registry.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostEntry {
    /// The post id (slug).
    pub id: PostId,
    /// Air or river.
    pub kind: PostKind,
    /// Human name, e.g. "Райымбека / Сейфуллина".
    pub name: String,
    /// WGS84 latitude, degrees.
    pub latitude: f64,
    /// WGS84 longitude, degrees.
    pub longitude: f64,
    /// City district (air posts).
    #[serde(default)]
    pub district: Option<String>,
    /// River (river posts).
    #[serde(default)]
    pub river: Option<String>,
    /// Installed sensors' quantities.
    #[serde(default)]
    pub sensors: Vec<Quantity>,
    /// Reporting interval of averaged records; default `store.default_cadence`.
    #[serde(default, with = "humantime_serde")]
    pub cadence: Option<Duration>,
    /// River posts: the gauge's critical level (cm above the gauge zero, possibly seasonal).
    #[serde(default)]
    pub critical_level: Option<CriticalLevel>,
    /// How often the post polls its sensors; default 10 s. The averaging window is `cadence`.
    #[serde(
        default,
        with = "humantime_serde",
        skip_serializing_if = "Option::is_none"
    )]
    pub sample_interval: Option<Duration>,
    /// How long after boot readings are flagged warm-up; default 2 min (electrochemical cells
    /// may want hours after storage).
    #[serde(
        default,
        with = "humantime_serde",
        skip_serializing_if = "Option::is_none"
    )]
    pub warm_up: Option<Duration>,
    /// Installed instruments with their serial numbers (what a technician reads off the box).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub instruments: Vec<Instrument>,
    /// Corrections from co-location and the sensors' calibration sheets.
    #[serde(default, skip_serializing_if = "PostCalibration::is_empty")]
    pub calibration: PostCalibration,
    /// River posts: height of the gauge zero, metres above the Baltic datum (levels are
    /// reported in cm above it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gauge_zero_m: Option<f64>,
}

/// One physical instrument on a post, e.g. a Plantower PMS5003 that gives PM1, PM2.5 and PM10.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Instrument {
    /// Maker and model, e.g. "Plantower PMS5003".
    pub model: String,
    /// Serial number from the label.
    pub serial: String,
    /// Quantities it measures.
    pub quantities: Vec<Quantity>,
}

/// A post's calibration: linear fits per quantity and the NO2 cell's constants.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PostCalibration {
    /// `corrected = gain · raw + offset`, at most one per quantity.
    pub linear: Vec<LinearFit>,
    /// Alphasense NO2-B43F zero offsets and sensitivity from its calibration sheet.
    pub no2: Option<No2Cell>,
}

impl PostCalibration {
    /// Nothing set.
    pub fn is_empty(&self) -> bool {
        self.linear.is_empty() && self.no2.is_none()
    }
}

/// A linear correction for one quantity.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinearFit {
    /// The quantity.
    pub quantity: Quantity,
    /// Dimensionless slope.
    pub gain: f64,
    /// Intercept in the quantity's unit.
    pub offset: f64,
}

/// The constants of a 4-electrode NO2 cell.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct No2Cell {
    /// Working-electrode electronic zero, mV.
    pub we_zero_mv: f64,
    /// Auxiliary-electrode electronic zero, mV.
    pub ae_zero_mv: f64,
    /// Sensitivity, mV per ppb.
    pub sensitivity_mv_per_ppb: f64,
}

impl PostEntry {
    /// A post with only the required fields set.
    pub fn new(
        id: PostId,
        kind: PostKind,
        name: impl Into<String>,
        latitude: f64,
        longitude: f64,
    ) -> Self {
        Self {
            id,
            kind,
            name: name.into(),
            latitude,
            longitude,
            district: None,
            river: None,
            sensors: Vec::new(),
            cadence: None,
            critical_level: None,
            sample_interval: None,
            warm_up: None,
            instruments: Vec::new(),
            calibration: PostCalibration::default(),
            gauge_zero_m: None,
        }
    }

    /// Every quantity the post measures: `sensors` and the instruments' quantities.
    pub fn quantities(&self) -> Vec<Quantity> {
        let mut all = self.sensors.clone();
        for q in self.instruments.iter().flat_map(|i| &i.quantities) {
            if !all.contains(q) {
                all.push(*q);
            }
        }
        all
    }

    /// What is wrong with this entry, in words a technician can act on (empty when valid).
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let id = &self.id;
        if self.name.trim().is_empty() {
            problems.push(format!("post {id}: name is empty"));
        }
        if !(-90.0..=90.0).contains(&self.latitude) || !(-180.0..=180.0).contains(&self.longitude) {
            problems.push(format!("post {id}: latitude/longitude out of range"));
        }
        if self
            .cadence
            .is_some_and(|c| c.is_zero() || c > Duration::from_secs(86_400))
        {
            problems.push(format!("post {id}: cadence must be between 1 s and 1 day"));
        }
        if let (Some(sample), Some(cadence)) = (self.sample_interval, self.cadence) {
            if sample.is_zero()
                || sample > cadence
                || cadence.as_secs() % sample.as_secs().max(1) != 0
            {
                problems.push(format!(
                    "post {id}: cadence must be a whole multiple of sample_interval"
                ));
            }
        }
        let mut fitted = Vec::new();
        for fit in &self.calibration.linear {
            if fitted.contains(&fit.quantity) {
                problems.push(format!(
                    "post {id}: two calibrations for {}",
                    fit.quantity.as_str()
                ));
            }
            fitted.push(fit.quantity);
            if !fit.gain.is_finite() || fit.gain <= 0.0 || !fit.offset.is_finite() {
                problems.push(format!(
                    "post {id}: calibration of {} needs a positive finite gain and a finite offset",
                    fit.quantity.as_str()
                ));
            }
        }
        if let Some(cell) = &self.calibration.no2 {
            if !cell.sensitivity_mv_per_ppb.is_finite() || cell.sensitivity_mv_per_ppb == 0.0 {
                problems.push(format!(
                    "post {id}: NO2 sensitivity must be finite and not zero"
                ));
            }
        }
        for inst in &self.instruments {
            if inst.serial.trim().is_empty() || inst.model.trim().is_empty() {
                problems.push(format!(
                    "post {id}: every instrument needs a model and a serial number"
                ));
            }
        }
        match self.kind {
            PostKind::Air if self.river.is_some() => {
                problems.push(format!("post {id}: an air post has no river"))
            }
            PostKind::River if self.river.is_none() => {
                problems.push(format!("post {id}: a river post needs its river"))
            }
            _ => {}
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_post_kind_parses_from_what_it_displays_and_serialises_as() {
        for kind in PostKind::ALL {
            assert_eq!(kind.to_string().parse::<PostKind>(), Ok(kind));
            assert_eq!(
                serde_json::to_value(kind).unwrap(),
                serde_json::Value::String(kind.as_str().into())
            );
        }
        assert_eq!(
            "lake".parse::<PostKind>(),
            Err(UnknownPostKind("lake".into()))
        );
        assert!("Air".parse::<PostKind>().is_err(), "spelling is exact");
    }
}
