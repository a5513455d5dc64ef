//! The status topic: a retained birth message when a post connects, and the last will
//! `offline` the broker publishes when it drops off.
//!
//! Birth message: a CBOR (from posts) or JSON map with text keys
//! `{"state":"online","fw":"0.1.0","cfg":3735928559,"sensors":["pm2_5","no2"],"dropped":0,
//!   "reconnects":2,"t_ms":1767225600123,"rssi":-71,"supply_mv":12040,"uptime":3600}`.
//! `cfg` is the hash of the config the post runs; `dropped` counts readings the post's full
//! store-and-forward queue dropped. The optional `t_ms` (the post's UTC clock when it sent the
//! status, unix milliseconds), `rssi` (dBm), `supply_mv` and `uptime` (seconds since boot) are
//! written only when the post knows them, so commissioning can check clock offset and vitals.
//! Unknown keys are ignored, so an older gateway accepts a newer post. The last will is the
//! bare text `offline` (also accepted: a map with `"state":"offline"`).

use minicbor::data::Type;
use minicbor::encode::write::Cursor;
use minicbor::{Decoder, Encoder};

use crate::{DecodeError, Quantity};

/// Largest status payload decoded.
pub const MAX_STATUS_BYTES: usize = 2048;
/// Most sensors a status lists.
pub const MAX_SENSORS: usize = 16;
/// The last-will payload.
pub const OFFLINE: &[u8] = b"offline";

/// A post's reported state.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PostStatus {
    /// Whether the post is connected (false for the last will).
    pub online: bool,
    /// Firmware version.
    pub firmware: heapless::String<24>,
    /// Hash of the configuration the post runs.
    pub config_hash: Option<u32>,
    /// Quantities the post's sensors provide.
    pub sensors: heapless::Vec<Quantity, MAX_SENSORS>,
    /// Readings dropped by a full store-and-forward queue since boot.
    pub dropped: u32,
    /// Reconnects to the broker since boot.
    pub reconnects: u32,
    /// The post's UTC clock when it sent this status, unix milliseconds (key `t_ms`).
    pub clock_ms: Option<i64>,
    /// Radio / network signal strength, dBm (key `rssi`).
    pub rssi_dbm: Option<i16>,
    /// Supply voltage, millivolts (key `supply_mv`).
    pub supply_mv: Option<u16>,
    /// Seconds since the post booted (key `uptime`).
    pub uptime_s: Option<u32>,
}

impl PostStatus {
    /// The status the last will carries.
    pub fn offline() -> Self {
        Self::default()
    }
}

/// Decodes a status payload (the literal `offline`, CBOR or, with `std`, JSON).
pub fn decode(payload: &[u8]) -> Result<PostStatus, DecodeError> {
    if payload.len() > MAX_STATUS_BYTES {
        return Err(DecodeError::TooLarge);
    }
    if payload.trim_ascii() == OFFLINE {
        return Ok(PostStatus::offline());
    }
    match payload.first() {
        None => Err(DecodeError::Empty),
        Some(0xa0..=0xbf) => decode_cbor(payload),
        #[cfg(feature = "std")]
        Some(b'{') => decode_json(payload),
        _ => Err(DecodeError::BadStatus),
    }
}

fn decode_cbor(payload: &[u8]) -> Result<PostStatus, DecodeError> {
    let bad = |_| DecodeError::BadCbor;
    let mut d = Decoder::new(payload);
    let len = d.map().map_err(bad)?.ok_or(DecodeError::BadStatus)?;
    let mut s = PostStatus {
        online: true,
        ..PostStatus::default()
    };
    for _ in 0..len {
        let key = d.str().map_err(bad)?;
        match key {
            "state" => s.online = parse_state(d.str().map_err(bad)?)?,
            "fw" => {
                s.firmware.clear();
                s.firmware
                    .push_str(d.str().map_err(bad)?)
                    .map_err(|()| DecodeError::BadStatus)?;
            }
            "cfg" => s.config_hash = Some(d.u32().map_err(bad)?),
            "dropped" => s.dropped = d.u32().map_err(bad)?,
            "reconnects" => s.reconnects = d.u32().map_err(bad)?,
            "t_ms" => s.clock_ms = Some(d.i64().map_err(bad)?),
            "rssi" => s.rssi_dbm = Some(d.i16().map_err(bad)?),
            "supply_mv" => s.supply_mv = Some(d.u16().map_err(bad)?),
            "uptime" => s.uptime_s = Some(d.u32().map_err(bad)?),
            "sensors" => {
                let n = d.array().map_err(bad)?.ok_or(DecodeError::BadStatus)?;
                for _ in 0..n {
                    if d.datatype().map_err(bad)? != Type::String {
                        return Err(DecodeError::BadStatus);
                    }
                    let q = Quantity::parse(d.str().map_err(bad)?)
                        .ok_or(DecodeError::UnknownQuantity)?;
                    s.sensors.push(q).map_err(|_| DecodeError::BadStatus)?;
                }
            }
            _ => d.skip().map_err(bad)?,
        }
    }
    if d.position() != payload.len() {
        return Err(DecodeError::BadCbor);
    }
    Ok(s)
}

fn parse_state(text: &str) -> Result<bool, DecodeError> {
    match text {
        "online" => Ok(true),
        "offline" => Ok(false),
        _ => Err(DecodeError::BadStatus),
    }
}

#[cfg(feature = "std")]
fn decode_json(payload: &[u8]) -> Result<PostStatus, DecodeError> {
    use serde_json::Value;
    let v: serde_json::Map<std::string::String, Value> =
        serde_json::from_slice(payload).map_err(|_| DecodeError::BadJson)?;
    let mut s = PostStatus {
        online: true,
        ..PostStatus::default()
    };
    let as_u32 = |v: &Value| {
        v.as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .ok_or(DecodeError::BadStatus)
    };
    for (key, value) in &v {
        match key.as_str() {
            "state" => s.online = parse_state(value.as_str().ok_or(DecodeError::BadStatus)?)?,
            "fw" => {
                s.firmware.clear();
                let fw = value.as_str().ok_or(DecodeError::BadStatus)?;
                s.firmware
                    .push_str(fw)
                    .map_err(|()| DecodeError::BadStatus)?;
            }
            "cfg" => s.config_hash = Some(as_u32(value)?),
            "dropped" => s.dropped = as_u32(value)?,
            "reconnects" => s.reconnects = as_u32(value)?,
            "t_ms" => s.clock_ms = Some(value.as_i64().ok_or(DecodeError::BadStatus)?),
            "rssi" => {
                let v = value.as_i64().and_then(|n| i16::try_from(n).ok());
                s.rssi_dbm = Some(v.ok_or(DecodeError::BadStatus)?);
            }
            "supply_mv" => {
                let v = value.as_u64().and_then(|n| u16::try_from(n).ok());
                s.supply_mv = Some(v.ok_or(DecodeError::BadStatus)?);
            }
            "uptime" => s.uptime_s = Some(as_u32(value)?),
            "sensors" => {
                for q in value.as_array().ok_or(DecodeError::BadStatus)? {
                    let q = Quantity::parse(q.as_str().ok_or(DecodeError::BadStatus)?)
                        .ok_or(DecodeError::UnknownQuantity)?;
                    s.sensors.push(q).map_err(|_| DecodeError::BadStatus)?;
                }
            }
            _ => {}
        }
    }
    Ok(s)
}

/// Encodes a birth message (or an offline status) as CBOR into `buf`.
pub fn encode(status: &PostStatus, buf: &mut [u8]) -> Result<usize, crate::senml::EncodeError> {
    let mut e = Encoder::new(Cursor::new(buf));
    let fields = 5
        + u64::from(status.config_hash.is_some())
        + u64::from(status.clock_ms.is_some())
        + u64::from(status.rssi_dbm.is_some())
        + u64::from(status.supply_mv.is_some())
        + u64::from(status.uptime_s.is_some());
    e.map(fields)?;
    e.str("state")?
        .str(if status.online { "online" } else { "offline" })?;
    e.str("fw")?.str(&status.firmware)?;
    if let Some(h) = status.config_hash {
        e.str("cfg")?.u32(h)?;
    }
    e.str("sensors")?.array(status.sensors.len() as u64)?;
    for q in &status.sensors {
        e.str(q.as_str())?;
    }
    e.str("dropped")?.u32(status.dropped)?;
    e.str("reconnects")?.u32(status.reconnects)?;
    if let Some(t) = status.clock_ms {
        e.str("t_ms")?.i64(t)?;
    }
    if let Some(r) = status.rssi_dbm {
        e.str("rssi")?.i16(r)?;
    }
    if let Some(v) = status.supply_mv {
        e.str("supply_mv")?.u16(v)?;
    }
    if let Some(u) = status.uptime_s {
        e.str("uptime")?.u32(u)?;
    }
    Ok(e.into_writer().position())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn birth_message_round_trips_and_offline_is_understood() {
        let mut s = PostStatus {
            online: true,
            config_hash: Some(0xdead_beef),
            dropped: 3,
            reconnects: 1,
            ..Default::default()
        };
        s.firmware.push_str("0.1.0").unwrap();
        s.sensors.push(Quantity::Pm2_5).unwrap();
        s.sensors.push(Quantity::No2).unwrap();
        let mut buf = [0u8; 128];
        let n = encode(&s, &mut buf).unwrap();
        assert_eq!(decode(&buf[..n]), Ok(s));
        assert_eq!(decode(b"offline"), Ok(PostStatus::offline()));
        assert_eq!(decode(b"online?"), Err(DecodeError::BadStatus));
        assert_eq!(decode(b""), Err(DecodeError::Empty));
    }

    #[test]
    fn clock_and_vitals_round_trip() {
        let mut s = PostStatus {
            online: true,
            config_hash: Some(7),
            clock_ms: Some(1_767_225_600_123),
            rssi_dbm: Some(-71),
            supply_mv: Some(12_040),
            uptime_s: Some(3_600),
            ..Default::default()
        };
        s.firmware.push_str("0.2.0").unwrap();
        s.sensors.push(Quantity::WaterLevel).unwrap();
        let mut buf = [0u8; 256];
        let n = encode(&s, &mut buf).unwrap();
        assert_eq!(decode(&buf[..n]), Ok(s));
    }

    #[test]
    fn status_from_an_older_post_has_no_clock_or_vitals() {
        // What a post before the vitals fields sent: {"state":"online","fw":"0.1.0","sensors":[],
        // "dropped":0,"reconnects":0}, written byte by byte so the encoder cannot hide a change.
        let mut old = std::vec::Vec::new();
        old.push(0xa5);
        for (k, v) in [("state", "online"), ("fw", "0.1.0")] {
            old.push(0x60 + k.len() as u8);
            old.extend_from_slice(k.as_bytes());
            old.push(0x60 + v.len() as u8);
            old.extend_from_slice(v.as_bytes());
        }
        old.extend_from_slice(b"\x67sensors\x80\x67dropped\x00\x6areconnects\x00");
        let s = decode(&old).unwrap();
        assert!(s.online);
        assert_eq!(s.firmware.as_str(), "0.1.0");
        assert_eq!(
            (s.clock_ms, s.rssi_dbm, s.supply_mv, s.uptime_s),
            (None, None, None, None)
        );
        // And an encoder without them writes none of the new keys.
        let mut buf = [0u8; 128];
        let n = encode(&s, &mut buf).unwrap();
        assert_eq!(&buf[..n], old.as_slice());
    }

    #[cfg(feature = "std")]
    #[test]
    fn json_status_with_clock_and_vitals_is_accepted() {
        let s = decode(
            br#"{"state":"online","fw":"1.2","t_ms":1767225600123,"rssi":-80,"supply_mv":11900,"uptime":5}"#,
        )
        .unwrap();
        assert_eq!(s.clock_ms, Some(1_767_225_600_123));
        assert_eq!(s.rssi_dbm, Some(-80));
        assert_eq!(s.supply_mv, Some(11_900));
        assert_eq!(s.uptime_s, Some(5));
        assert_eq!(decode(br#"{"rssi":-40000}"#), Err(DecodeError::BadStatus));
    }

    #[cfg(feature = "std")]
    #[test]
    fn json_birth_message_is_accepted() {
        let s = decode(br#"{"state":"online","fw":"1.2","sensors":["pm10"],"extra":1}"#).unwrap();
        assert!(s.online);
        assert_eq!(s.firmware.as_str(), "1.2");
        assert_eq!(s.sensors.as_slice(), &[Quantity::Pm10]);
        assert_eq!(
            decode(br#"{"sensors":["radon"]}"#),
            Err(DecodeError::UnknownQuantity)
        );
    }
}
