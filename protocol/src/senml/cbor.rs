//! SenML CBOR (RFC 8428 §6): integer labels, borrowed strings, no allocation.

use minicbor::data::Type;
use minicbor::encode::write::{Cursor, EndOfSlice};
use minicbor::{Decoder, Encoder};

use super::{Measurement, RawRecord, Resolver, BASE_NAME_PREFIX, MAX_RECORDS};
use crate::{DecodeError, PostId};

// RFC 8428 Table 6 labels.
const BVER: i64 = -1;
const BN: i64 = -2;
const BT: i64 = -3;
const BU: i64 = -4;
const BV: i64 = -5;
const BS: i64 = -6;
const N: i64 = 0;
const U: i64 = 1;
const V: i64 = 2;
const VS: i64 = 3;
const VB: i64 = 4;
const S: i64 = 5;
const T: i64 = 6;
const UT: i64 = 7;
const VD: i64 = 8;
/// Taza's QA-flags extension, a text label in CBOR as in JSON.
const QA: &str = "qa";
/// Taza's averaging-window extension (seconds), a text label too.
const WIN: &str = "win";

pub(super) fn decode_records(
    payload: &[u8],
    resolver: &mut Resolver<'_>,
) -> Result<(), DecodeError> {
    let mut d = Decoder::new(payload);
    let len = d.array().map_err(|_| DecodeError::BadCbor)?;
    let mut seen = 0usize;
    loop {
        match len {
            Some(n) if seen as u64 >= n => break,
            None if d.datatype().map_err(|_| DecodeError::BadCbor)? == Type::Break => {
                d.set_position(d.position() + 1);
                break;
            }
            _ => {}
        }
        if seen >= MAX_RECORDS {
            return Err(DecodeError::BadRecordCount);
        }
        let record = decode_record(&mut d)?;
        resolver.push(record)?;
        seen += 1;
    }
    if d.position() != payload.len() {
        return Err(DecodeError::BadCbor);
    }
    Ok(())
}

fn decode_record<'b>(d: &mut Decoder<'b>) -> Result<RawRecord<'b>, DecodeError> {
    let bad = |_| DecodeError::BadCbor;
    let len = d.map().map_err(bad)?;
    let mut r = RawRecord::default();
    let mut seen = 0u64;
    loop {
        match len {
            Some(n) if seen >= n => break,
            None if d.datatype().map_err(bad)? == Type::Break => {
                d.set_position(d.position() + 1);
                break;
            }
            _ => {}
        }
        seen += 1;
        match d.datatype().map_err(bad)? {
            Type::String => {
                let key = d.str().map_err(bad)?;
                if key == QA {
                    r.qa = Some(d.u16().map_err(bad)?);
                } else if key == WIN {
                    r.window_s = Some(d.u32().map_err(bad)?);
                } else {
                    r.unknown_must_understand |= key.ends_with('_');
                    d.skip().map_err(bad)?;
                }
            }
            _ => {
                let label = d.i64().map_err(bad)?;
                match label {
                    BN => r.base_name = Some(d.str().map_err(bad)?),
                    BT => r.base_time = Some(number(d)?),
                    BU => r.base_unit = Some(d.str().map_err(bad)?),
                    BV => r.base_value = Some(number(d)?),
                    N => r.name = Some(d.str().map_err(bad)?),
                    U => r.unit = Some(d.str().map_err(bad)?),
                    V => r.value = Some(number(d)?),
                    T => r.time = Some(number(d)?),
                    VS | VB | VD | S => {
                        r.other_value = true;
                        d.skip().map_err(bad)?;
                    }
                    BVER | BS | UT => d.skip().map_err(bad)?,
                    _ => d.skip().map_err(bad)?,
                }
            }
        }
    }
    Ok(r)
}

/// Any CBOR number (integer or float of any width) as `f64`.
fn number(d: &mut Decoder<'_>) -> Result<f64, DecodeError> {
    let bad = |_| DecodeError::BadCbor;
    match d.datatype().map_err(bad)? {
        Type::U8 | Type::U16 | Type::U32 | Type::U64 => Ok(d.u64().map_err(bad)? as f64),
        Type::I8 | Type::I16 | Type::I32 | Type::I64 | Type::Int => {
            let i: i128 = d.int().map_err(bad)?.into();
            Ok(i as f64)
        }
        Type::F16 | Type::F32 | Type::F64 => d.f64().map_err(bad),
        _ => Err(DecodeError::BadCbor),
    }
}

/// Why a pack could not be encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EncodeError {
    /// The output buffer is too small.
    BufferTooSmall,
    /// No readings, or more than [`MAX_RECORDS`].
    BadRecordCount,
}

impl From<minicbor::encode::Error<EndOfSlice>> for EncodeError {
    fn from(_: minicbor::encode::Error<EndOfSlice>) -> Self {
        Self::BufferTooSmall
    }
}

/// Encodes `readings` of `post` as a SenML CBOR pack into `buf`, returning the bytes written.
///
/// The first record carries the base name and base time (the first reading's time); later
/// records carry a time offset only when it differs. Values exactly representable as `f32`
/// (everything a post measures in `f32`) take 5 bytes instead of 9.
pub fn encode(
    post: &PostId,
    readings: &[Measurement],
    buf: &mut [u8],
) -> Result<usize, EncodeError> {
    let first = readings.first().ok_or(EncodeError::BadRecordCount)?;
    if readings.len() > MAX_RECORDS {
        return Err(EncodeError::BadRecordCount);
    }
    let base_time = first.at.0;
    let mut e = Encoder::new(Cursor::new(buf));
    e.array(readings.len() as u64)?;
    for (i, m) in readings.iter().enumerate() {
        let offset = m.at.0 - base_time;
        let fields = 3
            + u64::from(i == 0) * 2
            + u64::from(offset != 0)
            + u64::from(!m.flags.is_empty())
            + u64::from(m.window_s.is_some());
        e.map(fields)?;
        if i == 0 {
            e.i64(BN)?;
            // bn is written in two pieces so no intermediate string is built.
            let mut bn: heapless::String<{ BASE_NAME_PREFIX.len() + PostId::MAX_LEN + 1 }> =
                heapless::String::new();
            bn.push_str(BASE_NAME_PREFIX)
                .and_then(|()| bn.push_str(post.as_str()))
                .and_then(|()| bn.push(':'))
                .map_err(|()| EncodeError::BufferTooSmall)?;
            e.str(&bn)?;
            e.i64(BT)?.i64(base_time)?;
        }
        e.i64(N)?.str(m.quantity.as_str())?;
        e.i64(U)?.str(m.quantity.unit().as_str())?;
        e.i64(V)?;
        let narrow = m.value as f32;
        if f64::from(narrow) == m.value {
            e.f32(narrow)?;
        } else {
            e.f64(m.value)?;
        }
        if offset != 0 {
            e.i64(T)?.i64(offset)?;
        }
        if !m.flags.is_empty() {
            e.str(QA)?.u16(m.flags.0)?;
        }
        if let Some(w) = m.window_s {
            e.str(WIN)?.u32(w)?;
        }
    }
    Ok(e.into_writer().position())
}
