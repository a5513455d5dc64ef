//! SenML JSON (RFC 8428 §5), for people and third-party devices. Allocation is bounded by the
//! payload size limit checked before this runs.

use std::borrow::Cow;
use std::fmt;
use std::format;
use std::string::{String, ToString};
use std::vec::Vec;

use serde::de::{Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::{Measurement, RawRecord, Resolver, BASE_NAME_PREFIX, MAX_RECORDS};
use crate::{DecodeError, PostId};

pub(super) fn decode_records(
    payload: &[u8],
    resolver: &mut Resolver<'_>,
) -> Result<(), DecodeError> {
    let mut de = serde_json::Deserializer::from_slice(payload);
    let records = de
        .deserialize_seq(PackVisitor)
        .map_err(|_| DecodeError::BadJson)?;
    de.end().map_err(|_| DecodeError::BadJson)?;
    let records = records?;
    for r in &records {
        resolver.push(r.as_raw())?;
    }
    Ok(())
}

/// A record with its strings owned only where JSON escapes forced a copy.
#[derive(Default)]
struct JsonRecord<'a> {
    bn: Option<Cow<'a, str>>,
    bt: Option<f64>,
    bu: Option<Cow<'a, str>>,
    bv: Option<f64>,
    n: Option<Cow<'a, str>>,
    u: Option<Cow<'a, str>>,
    v: Option<f64>,
    t: Option<f64>,
    qa: Option<u16>,
    win: Option<u32>,
    other_value: bool,
    unknown_must_understand: bool,
}

impl JsonRecord<'_> {
    fn as_raw(&self) -> RawRecord<'_> {
        RawRecord {
            base_name: self.bn.as_deref(),
            base_time: self.bt,
            base_unit: self.bu.as_deref(),
            base_value: self.bv,
            name: self.n.as_deref(),
            unit: self.u.as_deref(),
            value: self.v,
            time: self.t,
            qa: self.qa,
            window_s: self.win,
            other_value: self.other_value,
            unknown_must_understand: self.unknown_must_understand,
        }
    }
}

/// The pack: the outer `Result` is a JSON syntax error, the inner one a SenML-level refusal
/// found while reading (too many records), which must keep its own reason.
struct PackVisitor;

impl<'de> Visitor<'de> for PackVisitor {
    type Value = Result<Vec<JsonRecord<'de>>, DecodeError>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a SenML pack (array of records)")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut records = Vec::new();
        while let Some(r) = seq.next_element_seed(RecordSeed)? {
            if records.len() >= MAX_RECORDS {
                return Ok(Err(DecodeError::BadRecordCount));
            }
            records.push(r);
        }
        Ok(Ok(records))
    }
}

struct RecordSeed;

impl<'de> serde::de::DeserializeSeed<'de> for RecordSeed {
    type Value = JsonRecord<'de>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(RecordVisitor)
    }
}

struct RecordVisitor;

/// A string field that borrows from the input when it has no escapes.
struct Text<'a>(Cow<'a, str>);

impl<'de> serde::Deserialize<'de> for Text<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(String::from(v))))
            }
        }
        d.deserialize_str(V)
    }
}

impl<'de> Visitor<'de> for RecordVisitor {
    type Value = JsonRecord<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a SenML record (object)")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut r = JsonRecord::default();
        while let Some(Text(key)) = map.next_key::<Text<'de>>()? {
            match key.as_ref() {
                "bn" => r.bn = Some(map.next_value::<Text<'de>>()?.0),
                "bt" => r.bt = Some(map.next_value()?),
                "bu" => r.bu = Some(map.next_value::<Text<'de>>()?.0),
                "bv" => r.bv = Some(map.next_value()?),
                "n" => r.n = Some(map.next_value::<Text<'de>>()?.0),
                "u" => r.u = Some(map.next_value::<Text<'de>>()?.0),
                "v" => r.v = Some(map.next_value()?),
                "t" => r.t = Some(map.next_value()?),
                "qa" => r.qa = Some(map.next_value()?),
                "win" => r.win = Some(map.next_value()?),
                "vs" | "vb" | "vd" | "s" => {
                    r.other_value = true;
                    map.next_value::<IgnoredAny>()?;
                }
                other => {
                    r.unknown_must_understand |= other.ends_with('_');
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(r)
    }
}

/// Encodes readings as SenML JSON (the same shape as the CBOR from [`super::encode`]).
pub fn encode_json(post: &PostId, readings: &[Measurement]) -> String {
    let base_time = readings.first().map_or(0, |m| m.at.0);
    let records: Vec<serde_json::Value> = readings
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let mut o = serde_json::Map::new();
            if i == 0 {
                o.insert("bn".into(), format!("{BASE_NAME_PREFIX}{post}:").into());
                o.insert("bt".into(), base_time.into());
            }
            o.insert("n".into(), m.quantity.as_str().into());
            o.insert("u".into(), m.quantity.unit().as_str().into());
            o.insert("v".into(), m.value.into());
            if m.at.0 != base_time {
                o.insert("t".into(), (m.at.0 - base_time).into());
            }
            if !m.flags.is_empty() {
                o.insert("qa".into(), m.flags.0.into());
            }
            if let Some(w) = m.window_s {
                o.insert("win".into(), w.into());
            }
            serde_json::Value::Object(o)
        })
        .collect();
    serde_json::Value::Array(records).to_string()
}
