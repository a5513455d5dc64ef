//! SenML (RFC 8428) telemetry: one pack per MQTT message, one record per reading.
//!
//! Base name `urn:dev:post:{post_id}:` (must match the topic's post), record names are
//! [`Quantity`] names, times are base time + offset in seconds since the Unix epoch. A bare
//! quantity name with no base name is accepted too (for people typing into `mosquitto_pub`); the
//! post is then the topic's.
//!
//! Taza extensions (neither ends in `_`, so a SenML reader that does not know them may ignore
//! them, RFC 8428 §4.4):
//! - `qa`: an unsigned integer of [`QaFlags`] bits (absent = no flags);
//! - `win`: the averaging window in seconds that the value covers, ending at the record's time
//!   (absent = the post's usual reporting interval). A backfilled hourly mean carries 3600.
//!
//! Any other field ending in `_` is refused as [`DecodeError::MustUnderstand`].
//!
//! Format is decided by the first byte: `0x80..=0x9f` is a CBOR array, `[` (after JSON white
//! space) is JSON.

mod cbor;
#[cfg(feature = "std")]
mod json;

pub use cbor::{encode, EncodeError};
#[cfg(feature = "std")]
pub use json::encode_json;

use crate::{DecodeError, PostId, QaFlags, Quantity, UnixSeconds};

/// Largest payload decoded; larger ones are refused before parsing.
pub const MAX_PAYLOAD_BYTES: usize = 16 * 1024;
/// Most records in one pack (a backfill message of ~10 hours of a six-quantity post).
pub const MAX_RECORDS: usize = 64;
/// How far ahead of the gateway's clock a reading's time may be.
pub const MAX_FUTURE_SKEW_S: i64 = 300;
/// Readings before 2015-01-01 come from posts whose clock was never set.
pub const EARLIEST_TIME: UnixSeconds = UnixSeconds(1_420_070_400);
/// SenML: resolved times below 2^28 are relative to now (RFC 8428 §4.5.3).
const RELATIVE_TIME_LIMIT: f64 = 268_435_456.0;
/// Base-name prefix before the post id.
pub const BASE_NAME_PREFIX: &str = "urn:dev:post:";

/// One reading as decoded: the value is in `quantity.unit()`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Measurement {
    /// What was measured (its unit is `quantity.unit()`).
    pub quantity: Quantity,
    /// The value, in `quantity.unit()`.
    pub value: f64,
    /// When (end of the averaging window), UTC.
    pub at: UnixSeconds,
    /// Data-quality flags.
    pub flags: QaFlags,
    /// Seconds the value averages over, ending at `at`; `None` = the post's reporting interval.
    pub window_s: Option<u32>,
}

/// A decoded telemetry pack: the post and its readings.
#[derive(Debug, Clone, PartialEq)]
pub struct Telemetry {
    /// The post the readings belong to (checked against the topic).
    pub post: PostId,
    /// The readings, in pack order.
    pub readings: heapless::Vec<Measurement, MAX_RECORDS>,
}

/// Decodes a telemetry payload that arrived on `topic_post`'s telemetry topic, judged against
/// the receiver's clock `now`.
pub fn decode(
    payload: &[u8],
    topic_post: &PostId,
    now: UnixSeconds,
) -> Result<Telemetry, DecodeError> {
    if payload.len() > MAX_PAYLOAD_BYTES {
        return Err(DecodeError::TooLarge);
    }
    let first = payload
        .iter()
        .find(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
        .ok_or(DecodeError::Empty)?;
    let mut resolver = Resolver::new(topic_post, now);
    match first {
        0x80..=0x9f => cbor::decode_records(payload, &mut resolver)?,
        b'[' => decode_json(payload, &mut resolver)?,
        _ => return Err(DecodeError::UnknownFormat),
    }
    resolver.finish()
}

#[cfg(feature = "std")]
fn decode_json(payload: &[u8], resolver: &mut Resolver<'_>) -> Result<(), DecodeError> {
    json::decode_records(payload, resolver)
}

#[cfg(not(feature = "std"))]
fn decode_json(_: &[u8], _: &mut Resolver<'_>) -> Result<(), DecodeError> {
    Err(DecodeError::JsonNotSupported)
}

/// One SenML record's fields as they stand on the wire, before base values are applied.
#[derive(Debug, Default, Clone, Copy)]
struct RawRecord<'a> {
    base_name: Option<&'a str>,
    base_time: Option<f64>,
    base_unit: Option<&'a str>,
    base_value: Option<f64>,
    name: Option<&'a str>,
    unit: Option<&'a str>,
    value: Option<f64>,
    time: Option<f64>,
    qa: Option<u16>,
    window_s: Option<u32>,
    /// `vs`, `vb`, `vd` or `s`: a value Taza does not accept.
    other_value: bool,
    /// A field ending in `_` that Taza does not understand.
    unknown_must_understand: bool,
}

/// Applies base fields across records (RFC 8428 §4.6) and validates each resolved reading.
struct Resolver<'t> {
    topic_post: &'t PostId,
    now: UnixSeconds,
    base_name: heapless::String<{ BASE_NAME_PREFIX.len() + PostId::MAX_LEN + 1 }>,
    base_time: f64,
    base_unit: Option<crate::Unit>,
    base_value: f64,
    readings: heapless::Vec<Measurement, MAX_RECORDS>,
}

impl<'t> Resolver<'t> {
    fn new(topic_post: &'t PostId, now: UnixSeconds) -> Self {
        Self {
            topic_post,
            now,
            base_name: heapless::String::new(),
            base_time: 0.0,
            base_unit: None,
            base_value: 0.0,
            readings: heapless::Vec::new(),
        }
    }

    fn push(&mut self, r: RawRecord<'_>) -> Result<(), DecodeError> {
        if r.unknown_must_understand {
            return Err(DecodeError::MustUnderstand);
        }
        if let Some(bn) = r.base_name {
            self.base_name.clear();
            self.base_name
                .push_str(bn)
                .map_err(|()| DecodeError::BadName)?;
        }
        if let Some(bt) = r.base_time {
            self.base_time = finite(bt)?;
        }
        if let Some(bu) = r.base_unit {
            self.base_unit = Some(parse_unit(bu)?);
        }
        if let Some(bv) = r.base_value {
            self.base_value = finite(bv)?;
        }
        let is_base_only = r.name.is_none() && r.value.is_none() && !r.other_value;
        if is_base_only && (r.base_name.is_some() || r.base_time.is_some() || r.base_unit.is_some())
        {
            // A record that only sets base fields (allowed by RFC 8428 §4.1).
            return Ok(());
        }
        let quantity = self.quantity(r.name.unwrap_or(""))?;
        if r.other_value {
            return Err(DecodeError::UnsupportedValue);
        }
        let value = finite(self.base_value + finite(r.value.ok_or(DecodeError::MissingValue)?)?)?;
        let unit = match r.unit {
            Some(u) => Some(parse_unit(u)?),
            None => self.base_unit,
        };
        if unit.is_some_and(|u| u != quantity.unit()) {
            return Err(DecodeError::UnitMismatch);
        }
        let at = self.time(finite(r.time.unwrap_or(0.0))?)?;
        let flags = QaFlags(r.qa.unwrap_or(0));
        if r.window_s == Some(0) {
            return Err(DecodeError::BadWindow);
        }
        self.readings
            .push(Measurement {
                quantity,
                value,
                at,
                flags,
                window_s: r.window_s,
            })
            .map_err(|_| DecodeError::BadRecordCount)
    }

    /// Resolves `bn + n` to a quantity of the topic's post.
    fn quantity(&self, name: &str) -> Result<Quantity, DecodeError> {
        let full_len = self.base_name.len() + name.len();
        if full_len == 0 {
            return Err(DecodeError::MissingName);
        }
        // The concatenation is examined in its two parts so nothing needs to be copied.
        let (post_part, quantity_name) = if self.base_name.is_empty() {
            match name.strip_prefix(BASE_NAME_PREFIX) {
                Some(rest) => rest.split_once(':').ok_or(DecodeError::BadName)?,
                None => return Quantity::parse(name).ok_or(DecodeError::UnknownQuantity),
            }
        } else {
            let rest = self
                .base_name
                .strip_prefix(BASE_NAME_PREFIX)
                .ok_or(DecodeError::BadName)?;
            match rest.split_once(':') {
                Some((post, "")) => (post, name),
                Some((post, tail)) if name.is_empty() => (post, tail),
                _ => return Err(DecodeError::BadName),
            }
        };
        let post = PostId::parse(post_part).map_err(|_| DecodeError::BadName)?;
        if &post != self.topic_post {
            return Err(DecodeError::PostMismatch);
        }
        Quantity::parse(quantity_name).ok_or(DecodeError::UnknownQuantity)
    }

    fn time(&self, offset: f64) -> Result<UnixSeconds, DecodeError> {
        let t = self.base_time + offset;
        let resolved = if t.abs() < RELATIVE_TIME_LIMIT {
            self.now.0 as f64 + t
        } else {
            t
        };
        // Round half away from zero without libm; `as` saturates, so far-off values then fail
        // the range checks below instead of wrapping.
        let half = if resolved < 0.0 { -0.5 } else { 0.5 };
        let at = UnixSeconds((resolved + half) as i64);
        if at.0 > self.now.0.saturating_add(MAX_FUTURE_SKEW_S) {
            return Err(DecodeError::TimeInFuture);
        }
        if at < EARLIEST_TIME {
            return Err(DecodeError::TimeTooOld);
        }
        Ok(at)
    }

    fn finish(self) -> Result<Telemetry, DecodeError> {
        if self.readings.is_empty() {
            return Err(DecodeError::BadRecordCount);
        }
        Ok(Telemetry {
            post: self.topic_post.clone(),
            readings: self.readings,
        })
    }
}

fn finite(v: f64) -> Result<f64, DecodeError> {
    if v.is_finite() {
        Ok(v)
    } else {
        Err(DecodeError::NotFinite)
    }
}

fn parse_unit(text: &str) -> Result<crate::Unit, DecodeError> {
    Quantity::ALL
        .into_iter()
        .map(Quantity::unit)
        .find(|u| u.as_str() == text)
        .ok_or(DecodeError::UnitMismatch)
}

// The tests compare against the JSON encoder, so they need `std`.
#[cfg(all(test, feature = "std"))]
mod tests;
