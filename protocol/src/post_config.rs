//! A post's configuration as it travels on the retained config topic (gateway -> post):
//! sampling cadence, averaging window, warm-up, PM humidity correction, per-quantity linear
//! calibration and the NO2 electrochemical sensor's zero offsets and sensitivity.
//!
//! Wire form: a CBOR map with text keys (unknown keys ignored, so an older post accepts a newer
//! gateway's config), at most [`MAX_CONFIG_BYTES`]. Example in CBOR diagnostic notation:
//! `{"sample_s": 10, "window_s": 60, "warm_up_s": 120, "pm_rh_corr": true,
//!   "cal": [["pm2_5", 0.9, 1.5]], "no2": {"we_zero_mv": 295.0, "ae_zero_mv": 282.0,
//!   "sens_mv_ppb": 0.212}}`.
//!
//! [`PostConfig::hash`] is FNV-1a (32 bit) over the canonical encoding from [`encode`], so a
//! post and the gateway agree on it byte for byte; the post reports it in its birth message.
//! Everything here is `no_std` without allocation.

use minicbor::data::Type;
use minicbor::encode::write::Cursor;
use minicbor::{Decoder, Encoder};

use crate::senml::EncodeError;
use crate::{DecodeError, Quantity};

/// Largest config payload decoded (and the buffer [`PostConfig::hash`] encodes into).
pub const MAX_CONFIG_BYTES: usize = 512;
/// Most per-quantity calibrations a config carries.
pub const MAX_CALIBRATIONS: usize = 8;

/// Shortest sampling interval accepted, seconds.
pub const MIN_SAMPLE_S: u32 = 1;
/// Longest sampling interval accepted, seconds.
pub const MAX_SAMPLE_S: u32 = 3_600;
/// Longest averaging window accepted, seconds (one day).
pub const MAX_WINDOW_S: u32 = 86_400;
/// Longest warm-up accepted, seconds (two days: a fresh electrochemical cell needs hours).
pub const MAX_WARM_UP_S: u32 = 172_800;

/// A linear correction `corrected = gain · raw + offset` for one quantity, from co-location
/// against a reference post. `offset` is in the quantity's unit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Calibration {
    /// The quantity it applies to.
    pub quantity: Quantity,
    /// Dimensionless slope.
    pub gain: f32,
    /// Intercept, in `quantity.unit()`.
    pub offset: f32,
}

/// Per-sensor constants of a 4-electrode NO2 cell (Alphasense B43F calibration sheet and the
/// electronics' zero readings).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct No2SensorConfig {
    /// Working-electrode electronic zero (WEe), mV.
    pub we_zero_mv: f32,
    /// Auxiliary-electrode electronic zero (AEe), mV.
    pub ae_zero_mv: f32,
    /// Sensitivity, mV per ppb (negative values are legal for some cells, zero is not).
    pub sensitivity_mv_per_ppb: f32,
}

impl Default for No2SensorConfig {
    /// Typical values from an Alphasense NO2-B43F calibration sheet with an ISB board.
    fn default() -> Self {
        Self {
            we_zero_mv: 295.0,
            ae_zero_mv: 282.0,
            sensitivity_mv_per_ppb: 0.212,
        }
    }
}

/// A post's configuration. Construct it with [`PostConfig::default`] and fields, then call
/// [`PostConfig::validate`]; [`decode`] validates for you.
#[derive(Debug, Clone, PartialEq)]
pub struct PostConfig {
    /// How often each sensor is polled, seconds.
    pub sample_interval_s: u32,
    /// Averaging window, seconds; a whole multiple of the sampling interval.
    pub window_s: u32,
    /// After boot (or sensor wake) readings are flagged warm-up for this long, seconds.
    pub warm_up_s: u32,
    /// Apply the US EPA (Barkjohn 2021) humidity correction to PM2.5 from Plantower sensors.
    pub pm_humidity_correction: bool,
    /// Per-quantity linear calibrations, at most one per quantity.
    pub calibrations: heapless::Vec<Calibration, MAX_CALIBRATIONS>,
    /// NO2 cell constants, for posts with an electrochemical NO2 sensor.
    pub no2: Option<No2SensorConfig>,
}

impl Default for PostConfig {
    fn default() -> Self {
        Self {
            sample_interval_s: 10,
            window_s: 60,
            warm_up_s: 120,
            pm_humidity_correction: true,
            calibrations: heapless::Vec::new(),
            no2: Some(No2SensorConfig::default()),
        }
    }
}

/// Why a config is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigError {
    /// The payload could not be decoded.
    Decode(DecodeError),
    /// Sampling interval outside [`MIN_SAMPLE_S`]..=[`MAX_SAMPLE_S`].
    SampleInterval,
    /// Window shorter than the sampling interval, longer than [`MAX_WINDOW_S`], or not a
    /// whole multiple of the sampling interval.
    Window,
    /// Warm-up longer than [`MAX_WARM_UP_S`].
    WarmUp,
    /// A calibration gain outside 0.1..=10, an offset beyond ±1000 or a non-finite number.
    Calibration,
    /// Two calibrations for one quantity.
    DuplicateCalibration,
    /// NO2 sensitivity zero or non-finite, or zero offsets outside ±5000 mV.
    No2Sensor,
}

impl PostConfig {
    /// Checks every field; the first problem found is returned.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(MIN_SAMPLE_S..=MAX_SAMPLE_S).contains(&self.sample_interval_s) {
            return Err(ConfigError::SampleInterval);
        }
        if self.window_s < self.sample_interval_s
            || self.window_s > MAX_WINDOW_S
            || self.window_s % self.sample_interval_s != 0
        {
            return Err(ConfigError::Window);
        }
        if self.warm_up_s > MAX_WARM_UP_S {
            return Err(ConfigError::WarmUp);
        }
        for (i, c) in self.calibrations.iter().enumerate() {
            let gain_ok = c.gain.is_finite() && (0.1..=10.0).contains(&c.gain);
            let offset_ok = c.offset.is_finite() && c.offset.abs() <= 1000.0;
            if !gain_ok || !offset_ok {
                return Err(ConfigError::Calibration);
            }
            if self
                .calibrations
                .iter()
                .skip(i + 1)
                .any(|o| o.quantity == c.quantity)
            {
                return Err(ConfigError::DuplicateCalibration);
            }
        }
        if let Some(n) = &self.no2 {
            let s = n.sensitivity_mv_per_ppb;
            let zeros_ok = [n.we_zero_mv, n.ae_zero_mv]
                .iter()
                .all(|z| z.is_finite() && z.abs() <= 5000.0);
            if !s.is_finite() || s == 0.0 || !zeros_ok {
                return Err(ConfigError::No2Sensor);
            }
        }
        Ok(())
    }

    /// The calibration for `quantity`, if any.
    pub fn calibration(&self, quantity: Quantity) -> Option<&Calibration> {
        self.calibrations.iter().find(|c| c.quantity == quantity)
    }

    /// Stable 32-bit hash: FNV-1a over the canonical CBOR encoding.
    pub fn hash(&self) -> u32 {
        let mut buf = [0u8; MAX_CONFIG_BYTES];
        // A config that does not fit the buffer cannot be decoded either; hashing the prefix
        // still gives a stable value, and `encode` refuses it where it matters.
        let n = encode(self, &mut buf).unwrap_or(buf.len());
        fnv1a(buf.get(..n).unwrap_or(&buf))
    }
}

/// FNV-1a, 32 bit: tiny, stable across platforms and versions.
fn fnv1a(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(*b)).wrapping_mul(0x0100_0193)
    })
}

/// Encodes `config` as canonical CBOR (fixed key order, `f32` numbers) into `buf`.
pub fn encode(config: &PostConfig, buf: &mut [u8]) -> Result<usize, EncodeError> {
    let mut e = Encoder::new(Cursor::new(buf));
    e.map(5 + u64::from(config.no2.is_some()))?;
    e.str("sample_s")?.u32(config.sample_interval_s)?;
    e.str("window_s")?.u32(config.window_s)?;
    e.str("warm_up_s")?.u32(config.warm_up_s)?;
    e.str("pm_rh_corr")?.bool(config.pm_humidity_correction)?;
    e.str("cal")?.array(config.calibrations.len() as u64)?;
    for c in &config.calibrations {
        e.array(3)?
            .str(c.quantity.as_str())?
            .f32(c.gain)?
            .f32(c.offset)?;
    }
    if let Some(n) = &config.no2 {
        e.str("no2")?.map(3)?;
        e.str("we_zero_mv")?.f32(n.we_zero_mv)?;
        e.str("ae_zero_mv")?.f32(n.ae_zero_mv)?;
        e.str("sens_mv_ppb")?.f32(n.sensitivity_mv_per_ppb)?;
    }
    Ok(e.into_writer().position())
}

/// Decodes and validates a config payload. Missing keys keep their [`PostConfig::default`]
/// values, except `no2`, which is absent unless given.
pub fn decode(payload: &[u8]) -> Result<PostConfig, ConfigError> {
    let bad = |_| ConfigError::Decode(DecodeError::BadCbor);
    if payload.len() > MAX_CONFIG_BYTES {
        return Err(ConfigError::Decode(DecodeError::TooLarge));
    }
    if payload.is_empty() {
        return Err(ConfigError::Decode(DecodeError::Empty));
    }
    let mut d = Decoder::new(payload);
    let len = d
        .map()
        .map_err(bad)?
        .ok_or(ConfigError::Decode(DecodeError::BadCbor))?;
    let mut c = PostConfig {
        no2: None,
        ..PostConfig::default()
    };
    for _ in 0..len {
        match d.str().map_err(bad)? {
            "sample_s" => c.sample_interval_s = d.u32().map_err(bad)?,
            "window_s" => c.window_s = d.u32().map_err(bad)?,
            "warm_up_s" => c.warm_up_s = d.u32().map_err(bad)?,
            "pm_rh_corr" => c.pm_humidity_correction = d.bool().map_err(bad)?,
            "cal" => {
                let n = d
                    .array()
                    .map_err(bad)?
                    .ok_or(ConfigError::Decode(DecodeError::BadCbor))?;
                for _ in 0..n {
                    if d.array().map_err(bad)? != Some(3) {
                        return Err(ConfigError::Calibration);
                    }
                    let quantity = Quantity::parse(d.str().map_err(bad)?)
                        .ok_or(ConfigError::Decode(DecodeError::UnknownQuantity))?;
                    let gain = number(&mut d)?;
                    let offset = number(&mut d)?;
                    c.calibrations
                        .push(Calibration {
                            quantity,
                            gain,
                            offset,
                        })
                        .map_err(|_| ConfigError::Calibration)?;
                }
            }
            "no2" => {
                let n = d
                    .map()
                    .map_err(bad)?
                    .ok_or(ConfigError::Decode(DecodeError::BadCbor))?;
                let mut s = No2SensorConfig::default();
                for _ in 0..n {
                    match d.str().map_err(bad)? {
                        "we_zero_mv" => s.we_zero_mv = number(&mut d)?,
                        "ae_zero_mv" => s.ae_zero_mv = number(&mut d)?,
                        "sens_mv_ppb" => s.sensitivity_mv_per_ppb = number(&mut d)?,
                        _ => d.skip().map_err(bad)?,
                    }
                }
                c.no2 = Some(s);
            }
            _ => d.skip().map_err(bad)?,
        }
    }
    if d.position() != payload.len() {
        return Err(ConfigError::Decode(DecodeError::BadCbor));
    }
    c.validate()?;
    Ok(c)
}

/// Any CBOR number as `f32` (configs written by people may use integers or doubles).
fn number(d: &mut Decoder<'_>) -> Result<f32, ConfigError> {
    let bad = |_| ConfigError::Decode(DecodeError::BadCbor);
    match d.datatype().map_err(bad)? {
        Type::U8 | Type::U16 | Type::U32 | Type::U64 => Ok(d.u64().map_err(bad)? as f32),
        Type::I8 | Type::I16 | Type::I32 | Type::I64 => Ok(d.i64().map_err(bad)? as f32),
        Type::F16 | Type::F32 | Type::F64 => Ok(d.f64().map_err(bad)? as f32),
        _ => Err(ConfigError::Decode(DecodeError::BadCbor)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> PostConfig {
        let mut c = PostConfig::default();
        c.calibrations
            .push(Calibration {
                quantity: Quantity::Pm2_5,
                gain: 0.9,
                offset: 1.5,
            })
            .unwrap();
        c
    }

    #[test]
    fn config_round_trips_through_cbor_and_keeps_its_hash() {
        let c = sample();
        let mut buf = [0u8; MAX_CONFIG_BYTES];
        let n = encode(&c, &mut buf).unwrap();
        let back = decode(&buf[..n]).unwrap();
        assert_eq!(back, c);
        assert_eq!(back.hash(), c.hash());
    }

    #[test]
    fn hash_changes_when_the_window_changes() {
        let a = sample();
        let b = PostConfig {
            window_s: 300,
            ..sample()
        };
        assert_ne!(a.hash(), b.hash());
    }

    #[test]
    fn fnv1a_matches_the_published_test_vector() {
        // FNV-1a 32-bit of "a" is 0xe40c292c (IETF draft-eastlake-fnv test vectors).
        assert_eq!(fnv1a(b"a"), 0xe40c_292c);
    }

    #[test]
    fn invalid_configs_are_refused_with_their_reason() {
        let cases: [(PostConfig, ConfigError); 5] = [
            (
                PostConfig {
                    sample_interval_s: 0,
                    ..sample()
                },
                ConfigError::SampleInterval,
            ),
            (
                PostConfig {
                    window_s: 65,
                    ..sample()
                },
                ConfigError::Window,
            ),
            (
                PostConfig {
                    window_s: 5,
                    ..sample()
                },
                ConfigError::Window,
            ),
            (
                PostConfig {
                    warm_up_s: MAX_WARM_UP_S + 1,
                    ..sample()
                },
                ConfigError::WarmUp,
            ),
            (
                PostConfig {
                    no2: Some(No2SensorConfig {
                        sensitivity_mv_per_ppb: 0.0,
                        ..No2SensorConfig::default()
                    }),
                    ..sample()
                },
                ConfigError::No2Sensor,
            ),
        ];
        for (c, want) in cases {
            assert_eq!(c.validate(), Err(want));
        }
        let mut dup = sample();
        dup.calibrations
            .push(Calibration {
                quantity: Quantity::Pm2_5,
                gain: 1.0,
                offset: 0.0,
            })
            .unwrap();
        assert_eq!(dup.validate(), Err(ConfigError::DuplicateCalibration));
    }

    #[test]
    fn garbage_and_unknown_keys_are_handled() {
        assert_eq!(decode(&[]), Err(ConfigError::Decode(DecodeError::Empty)));
        assert_eq!(
            decode(&[0xa1, 0x61]),
            Err(ConfigError::Decode(DecodeError::BadCbor))
        );
        // {"future": 1, "window_s": 120}: the unknown key is skipped.
        let payload = [
            0xa2, 0x66, b'f', b'u', b't', b'u', b'r', b'e', 0x01, 0x68, b'w', b'i', b'n', b'd',
            b'o', b'w', b'_', b's', 0x18, 120,
        ];
        let c = decode(&payload).unwrap();
        assert_eq!(c.window_s, 120);
        assert_eq!(c.no2, None);
    }
}
