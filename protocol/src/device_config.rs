//! The device config blob: what a technician's provisioning writes into a post's flash and the
//! firmware reads at boot — who the post is, which broker it talks to with which credentials,
//! which sensors are installed, and the [`PostConfig`] it starts with.
//!
//! Layout (all integers little-endian):
//!
//! | bytes      | field                                                      |
//! |------------|------------------------------------------------------------|
//! | 0..4       | [`MAGIC`] `"TZDC"`                                         |
//! | 4          | format version, [`FORMAT_VERSION`]                         |
//! | 5..7       | body length `n`, `u16`                                     |
//! | 7..7+n     | body: a CBOR map with text keys (below)                    |
//! | 7+n..11+n  | CRC-32 (IEEE 802.3, reflected, as zlib's `crc32`) of 0..7+n |
//!
//! Bytes after the CRC are ignored, so a whole flash page (erased flash reads `0xFF`) can be
//! handed to [`decode`]. The whole blob is at most [`MAX_DEVICE_CONFIG_BYTES`].
//!
//! Body, in CBOR diagnostic notation (unknown keys are ignored, so an older post reads a newer
//! gateway's blob):
//! `{"post": "almaty-001", "host": "mqtt.taza.kz", "port": 8883, "tls": true,
//!   "user": "almaty-001", "password": "…", "prefix": "taza", "sensors": ["pm2_5", "no2"],
//!   "config": {"sample_s": 10, "window_s": 60, …}}`.
//! `"config"` is exactly the map [`post_config::encode`] writes, so the config's
//! [`PostConfig::hash`] is the same whether it came from flash or from the config topic.
//! Required keys: `post`, `host`, `port`, `sensors`, `config`; `tls` defaults to false, `user`,
//! `password` to empty and `prefix` to [`topic::DEFAULT_PREFIX`].
//!
//! Everything here is `no_std` without allocation.

use core::fmt;

use minicbor::data::Type;
use minicbor::encode::write::{Cursor, Write};
use minicbor::{Decoder, Encoder};

use crate::post_config::{self, ConfigError, PostConfig, MAX_CONFIG_BYTES};
use crate::senml::EncodeError;
use crate::status::MAX_SENSORS;
use crate::topic;
use crate::{DecodeError, PostId, Quantity};

/// First four bytes of every blob.
pub const MAGIC: [u8; 4] = *b"TZDC";
/// The layout version this crate writes and reads.
pub const FORMAT_VERSION: u8 = 1;
/// Largest blob, header and CRC included.
pub const MAX_DEVICE_CONFIG_BYTES: usize = 1024;
/// Magic, version and body length.
const HEADER_BYTES: usize = 7;
/// The trailing CRC-32.
const CRC_BYTES: usize = 4;

/// Longest broker host name, user name and password.
pub const MAX_CREDENTIAL_LEN: usize = 64;
/// Longest topic prefix.
pub const MAX_PREFIX_LEN: usize = 32;

/// Everything a post needs to start: identity, broker, credentials, installed sensors and its
/// initial sampling configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceConfig {
    /// The post's id; also its MQTT client id.
    pub post: PostId,
    /// Broker host name or IP address.
    pub broker_host: heapless::String<MAX_CREDENTIAL_LEN>,
    /// Broker TCP port.
    pub broker_port: u16,
    /// Whether the broker connection uses TLS.
    pub broker_tls: bool,
    /// MQTT user name the gateway issued (empty: anonymous).
    pub username: heapless::String<MAX_CREDENTIAL_LEN>,
    /// MQTT password the gateway issued.
    pub password: heapless::String<MAX_CREDENTIAL_LEN>,
    /// Topic prefix, `{prefix}/v1/posts/{post}/…`.
    pub topic_prefix: heapless::String<MAX_PREFIX_LEN>,
    /// Quantities of the sensors installed on the post, no duplicates, at least one.
    pub sensors: heapless::Vec<Quantity, MAX_SENSORS>,
    /// The sampling configuration the post starts with (until one arrives on the config topic).
    pub config: PostConfig,
}

/// Why a blob is refused. Header and integrity problems come first, so a blank or damaged
/// flash page is told apart from a blob with a wrong field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceConfigError {
    /// Every byte is `0xFF` (or there are none): erased flash, the post was never provisioned.
    Erased,
    /// The first four bytes are not [`MAGIC`].
    BadMagic,
    /// A layout version this build does not read.
    UnsupportedVersion(u8),
    /// The blob ends before its declared body and CRC.
    Truncated,
    /// The declared body makes the blob larger than [`MAX_DEVICE_CONFIG_BYTES`].
    TooLarge,
    /// The CRC does not match the bytes: the blob was damaged.
    BadCrc,
    /// The body is not the expected CBOR (malformed, wrong type, unknown quantity, bad post id).
    Decode(DecodeError),
    /// The nested post config is invalid.
    Config(ConfigError),
    /// A required key is absent; the key is named.
    Missing(&'static str),
    /// A text field is longer than its limit; the key is named.
    TooLong(&'static str),
    /// The broker host is empty.
    EmptyHost,
    /// The broker port is zero or not a `u16`.
    BadPort,
    /// The topic prefix is empty, starts or ends with `/`, or holds `+`, `#` or whitespace.
    BadPrefix,
    /// No sensors are listed.
    NoSensors,
    /// More than [`MAX_SENSORS`] sensors.
    TooManySensors,
    /// One quantity is listed twice.
    DuplicateSensor(Quantity),
}

impl fmt::Display for DeviceConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Erased => f.write_str("no device config: the flash is erased (not provisioned)"),
            Self::BadMagic => f.write_str("not a device config blob (bad magic)"),
            Self::UnsupportedVersion(v) => write!(
                f,
                "device config format version {v} is not supported (this build reads {FORMAT_VERSION})"
            ),
            Self::Truncated => f.write_str("device config blob is truncated"),
            Self::TooLarge => write!(
                f,
                "device config blob is larger than {MAX_DEVICE_CONFIG_BYTES} bytes"
            ),
            Self::BadCrc => f.write_str("device config blob is corrupt (CRC mismatch)"),
            Self::Decode(e) => write!(f, "device config body: {e}"),
            Self::Config(e) => write!(f, "device config holds an invalid post config: {e:?}"),
            Self::Missing(key) => write!(f, "device config lacks the required key {key:?}"),
            Self::TooLong(key) => write!(f, "device config key {key:?} is too long"),
            Self::EmptyHost => f.write_str("device config broker host is empty"),
            Self::BadPort => f.write_str("device config broker port must be 1..=65535"),
            Self::BadPrefix => f.write_str(
                "device config topic prefix must be non-empty, not start or end with '/', \
                 and hold no '+', '#' or whitespace",
            ),
            Self::NoSensors => f.write_str("device config lists no sensors"),
            Self::TooManySensors => write!(f, "device config lists more than {MAX_SENSORS} sensors"),
            Self::DuplicateSensor(q) => {
                write!(f, "device config lists sensor {} twice", q.as_str())
            }
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for DeviceConfigError {}

impl DeviceConfig {
    /// Checks every field (the nested config included); the first problem found is returned.
    pub fn validate(&self) -> Result<(), DeviceConfigError> {
        if self.broker_host.is_empty() {
            return Err(DeviceConfigError::EmptyHost);
        }
        if self.broker_port == 0 {
            return Err(DeviceConfigError::BadPort);
        }
        let p = self.topic_prefix.as_str();
        if p.is_empty()
            || p.starts_with('/')
            || p.ends_with('/')
            || p.chars().any(|c| c == '+' || c == '#' || c.is_whitespace())
        {
            return Err(DeviceConfigError::BadPrefix);
        }
        if self.sensors.is_empty() {
            return Err(DeviceConfigError::NoSensors);
        }
        for (i, q) in self.sensors.iter().enumerate() {
            if self.sensors.iter().skip(i + 1).any(|o| o == q) {
                return Err(DeviceConfigError::DuplicateSensor(*q));
            }
        }
        self.config.validate().map_err(DeviceConfigError::Config)
    }
}

/// Encodes `config` as a blob into `buf`, returning the bytes written. It does not validate:
/// call [`DeviceConfig::validate`] first (the post's [`decode`] will).
pub fn encode(config: &DeviceConfig, buf: &mut [u8]) -> Result<usize, EncodeError> {
    let limit = buf.len().min(MAX_DEVICE_CONFIG_BYTES);
    let area = buf.get_mut(..limit).ok_or(EncodeError::BufferTooSmall)?;
    if area.len() < HEADER_BYTES + CRC_BYTES {
        return Err(EncodeError::BufferTooSmall);
    }
    let body_end = area.len() - CRC_BYTES;
    let body_len = {
        let body = area
            .get_mut(HEADER_BYTES..body_end)
            .ok_or(EncodeError::BufferTooSmall)?;
        encode_body(config, body)?
    };
    let len16 = u16::try_from(body_len).map_err(|_| EncodeError::BufferTooSmall)?;
    let header = area
        .get_mut(..HEADER_BYTES)
        .ok_or(EncodeError::BufferTooSmall)?;
    header.copy_from_slice(&[
        MAGIC[0],
        MAGIC[1],
        MAGIC[2],
        MAGIC[3],
        FORMAT_VERSION,
        len16.to_le_bytes()[0],
        len16.to_le_bytes()[1],
    ]);
    let crc_at = HEADER_BYTES + body_len;
    let crc = crc32(area.get(..crc_at).ok_or(EncodeError::BufferTooSmall)?);
    area.get_mut(crc_at..crc_at + CRC_BYTES)
        .ok_or(EncodeError::BufferTooSmall)?
        .copy_from_slice(&crc.to_le_bytes());
    Ok(crc_at + CRC_BYTES)
}

fn encode_body(c: &DeviceConfig, buf: &mut [u8]) -> Result<usize, EncodeError> {
    let mut inner = [0u8; MAX_CONFIG_BYTES];
    let inner_len = post_config::encode(&c.config, &mut inner)?;
    let mut e = Encoder::new(Cursor::new(buf));
    e.map(9)?;
    e.str("post")?.str(c.post.as_str())?;
    e.str("host")?.str(&c.broker_host)?;
    e.str("port")?.u16(c.broker_port)?;
    e.str("tls")?.bool(c.broker_tls)?;
    e.str("user")?.str(&c.username)?;
    e.str("password")?.str(&c.password)?;
    e.str("prefix")?.str(&c.topic_prefix)?;
    e.str("sensors")?.array(c.sensors.len() as u64)?;
    for q in &c.sensors {
        e.str(q.as_str())?;
    }
    e.str("config")?;
    // The nested map is written verbatim so it is byte for byte what the config topic carries.
    e.writer_mut()
        .write_all(inner.get(..inner_len).ok_or(EncodeError::BufferTooSmall)?)
        .map_err(|_| EncodeError::BufferTooSmall)?;
    Ok(e.into_writer().position())
}

/// Checks the header and CRC of `blob` (trailing bytes ignored), decodes the body and validates
/// it.
pub fn decode(blob: &[u8]) -> Result<DeviceConfig, DeviceConfigError> {
    if blob.iter().all(|b| *b == 0xFF) {
        return Err(DeviceConfigError::Erased);
    }
    let header = blob
        .get(..HEADER_BYTES)
        .ok_or(DeviceConfigError::Truncated)?;
    let (magic, rest) = header.split_at(MAGIC.len());
    if magic != MAGIC {
        return Err(DeviceConfigError::BadMagic);
    }
    let (version, len) = rest.split_first().ok_or(DeviceConfigError::Truncated)?;
    if *version != FORMAT_VERSION {
        return Err(DeviceConfigError::UnsupportedVersion(*version));
    }
    let body_len = match len {
        [lo, hi] => usize::from(u16::from_le_bytes([*lo, *hi])),
        _ => return Err(DeviceConfigError::Truncated),
    };
    let crc_at = HEADER_BYTES + body_len;
    if crc_at + CRC_BYTES > MAX_DEVICE_CONFIG_BYTES {
        return Err(DeviceConfigError::TooLarge);
    }
    let covered = blob.get(..crc_at).ok_or(DeviceConfigError::Truncated)?;
    let stored = match blob.get(crc_at..crc_at + CRC_BYTES) {
        Some([a, b, c, d]) => u32::from_le_bytes([*a, *b, *c, *d]),
        _ => return Err(DeviceConfigError::Truncated),
    };
    if crc32(covered) != stored {
        return Err(DeviceConfigError::BadCrc);
    }
    let body = covered
        .get(HEADER_BYTES..)
        .ok_or(DeviceConfigError::Truncated)?;
    let config = decode_body(body)?;
    config.validate()?;
    Ok(config)
}

fn decode_body(body: &[u8]) -> Result<DeviceConfig, DeviceConfigError> {
    let bad = |_| DeviceConfigError::Decode(DecodeError::BadCbor);
    let mut d = Decoder::new(body);
    let len = d
        .map()
        .map_err(bad)?
        .ok_or(DeviceConfigError::Decode(DecodeError::BadCbor))?;
    let mut post = None;
    let mut host = None;
    let mut port = None;
    let mut tls = false;
    let mut username = heapless::String::new();
    let mut password = heapless::String::new();
    let mut prefix = heapless::String::new();
    prefix
        .push_str(topic::DEFAULT_PREFIX)
        .map_err(|()| DeviceConfigError::TooLong("prefix"))?;
    let mut sensors = None;
    let mut config = None;
    for _ in 0..len {
        match d.str().map_err(bad)? {
            "post" => {
                post =
                    Some(PostId::parse(d.str().map_err(bad)?).map_err(DeviceConfigError::Decode)?)
            }
            "host" => host = Some(text(&mut d, "host")?),
            "port" => {
                let p = d.u32().map_err(bad)?;
                port = Some(u16::try_from(p).map_err(|_| DeviceConfigError::BadPort)?);
            }
            "tls" => tls = d.bool().map_err(bad)?,
            "user" => username = text(&mut d, "user")?,
            "password" => password = text(&mut d, "password")?,
            "prefix" => prefix = text(&mut d, "prefix")?,
            "sensors" => {
                let n = d
                    .array()
                    .map_err(bad)?
                    .ok_or(DeviceConfigError::Decode(DecodeError::BadCbor))?;
                let mut list = heapless::Vec::new();
                for _ in 0..n {
                    if d.datatype().map_err(bad)? != Type::String {
                        return Err(DeviceConfigError::Decode(DecodeError::BadCbor));
                    }
                    let q = Quantity::parse(d.str().map_err(bad)?)
                        .ok_or(DeviceConfigError::Decode(DecodeError::UnknownQuantity))?;
                    list.push(q)
                        .map_err(|_| DeviceConfigError::TooManySensors)?;
                }
                sensors = Some(list);
            }
            "config" => {
                let start = d.position();
                d.skip().map_err(bad)?;
                let nested = body
                    .get(start..d.position())
                    .ok_or(DeviceConfigError::Decode(DecodeError::BadCbor))?;
                config = Some(post_config::decode(nested).map_err(DeviceConfigError::Config)?);
            }
            _ => d.skip().map_err(bad)?,
        }
    }
    if d.position() != body.len() {
        return Err(DeviceConfigError::Decode(DecodeError::BadCbor));
    }
    Ok(DeviceConfig {
        post: post.ok_or(DeviceConfigError::Missing("post"))?,
        broker_host: host.ok_or(DeviceConfigError::Missing("host"))?,
        broker_port: port.ok_or(DeviceConfigError::Missing("port"))?,
        broker_tls: tls,
        username,
        password,
        topic_prefix: prefix,
        sensors: sensors.ok_or(DeviceConfigError::Missing("sensors"))?,
        config: config.ok_or(DeviceConfigError::Missing("config"))?,
    })
}

/// A CBOR text string into a bounded string; `key` names the field if it does not fit.
fn text<const N: usize>(
    d: &mut Decoder<'_>,
    key: &'static str,
) -> Result<heapless::String<N>, DeviceConfigError> {
    let s = d
        .str()
        .map_err(|_| DeviceConfigError::Decode(DecodeError::BadCbor))?;
    let mut out = heapless::String::new();
    out.push_str(s)
        .map_err(|()| DeviceConfigError::TooLong(key))?;
    Ok(out)
}

/// CRC-32 as zlib computes it (IEEE 802.3 polynomial, reflected, init and final xor `!0`).
pub fn crc32(bytes: &[u8]) -> u32 {
    !bytes.iter().fold(!0u32, |crc, b| {
        let i = usize::from((crc as u8) ^ *b);
        // `i` is below 256 by construction; the fallback is never taken.
        CRC_TABLE.get(i).copied().unwrap_or(0) ^ (crc >> 8)
    })
}

/// The 256-entry table for the reflected polynomial 0xEDB88320, built at compile time.
// Indexing is evaluated by the compiler: an out-of-range index fails the build, not the post.
#[allow(clippy::indexing_slicing)]
const CRC_TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
            k += 1;
        }
        table[i] = c;
        i += 1;
    }
    table
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::post_config::Calibration;
    use proptest::prelude::*;

    fn s<const N: usize>(t: &str) -> heapless::String<N> {
        let mut out = heapless::String::new();
        out.push_str(t).unwrap();
        out
    }

    fn sample() -> DeviceConfig {
        let mut config = PostConfig::default();
        config
            .calibrations
            .push(Calibration {
                quantity: Quantity::Pm2_5,
                gain: 0.9,
                offset: 1.5,
            })
            .unwrap();
        let mut sensors = heapless::Vec::new();
        for q in [Quantity::Pm2_5, Quantity::Pm10, Quantity::No2] {
            sensors.push(q).unwrap();
        }
        DeviceConfig {
            post: PostId::parse("almaty-007").unwrap(),
            broker_host: s("mqtt.taza.kz"),
            broker_port: 8883,
            broker_tls: true,
            username: s("almaty-007"),
            password: s("Zq8t-3vX_long-random-secret"),
            topic_prefix: s("taza"),
            sensors,
            config,
        }
    }

    fn blob(c: &DeviceConfig) -> std::vec::Vec<u8> {
        let mut buf = [0u8; MAX_DEVICE_CONFIG_BYTES];
        let n = encode(c, &mut buf).unwrap();
        buf[..n].to_vec()
    }

    #[test]
    fn crc32_matches_the_zlib_check_value() {
        // The standard check value: CRC-32 of "123456789" is 0xCBF43926.
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b""), 0);
    }

    #[test]
    fn blob_round_trips_and_keeps_the_config_hash() {
        let c = sample();
        let b = blob(&c);
        assert_eq!(&b[..4], b"TZDC");
        assert_eq!(b[4], FORMAT_VERSION);
        assert_eq!(usize::from(u16::from_le_bytes([b[5], b[6]])), b.len() - 11);
        let back = decode(&b).unwrap();
        assert_eq!(back, c);
        assert_eq!(back.config.hash(), c.config.hash());
    }

    #[test]
    fn flipping_any_single_byte_is_caught() {
        let b = blob(&sample());
        for i in 0..b.len() {
            for flip in [0x01u8, 0x80, 0xFF] {
                let mut bad = b.clone();
                bad[i] ^= flip;
                let err = decode(&bad).unwrap_err();
                // Header bytes fail on their own checks, everything else on the CRC.
                let expected_class = match i {
                    0..=3 => matches!(err, DeviceConfigError::BadMagic),
                    4 => matches!(err, DeviceConfigError::UnsupportedVersion(_)),
                    5 | 6 => matches!(
                        err,
                        DeviceConfigError::Truncated
                            | DeviceConfigError::TooLarge
                            | DeviceConfigError::BadCrc
                    ),
                    _ => err == DeviceConfigError::BadCrc,
                };
                assert!(expected_class, "byte {i} ^ {flip:#x}: {err:?}");
            }
        }
    }

    #[test]
    fn truncated_blobs_are_refused_as_truncated() {
        let b = blob(&sample());
        for n in 1..b.len() {
            assert_eq!(decode(&b[..n]), Err(DeviceConfigError::Truncated), "{n}");
        }
    }

    #[test]
    fn a_whole_erased_flash_page_around_the_blob_decodes() {
        let b = blob(&sample());
        let mut page = [0xFFu8; 4096];
        page[..b.len()].copy_from_slice(&b);
        assert_eq!(decode(&page), Ok(sample()));
        assert_eq!(decode(&[0xFF; 4096]), Err(DeviceConfigError::Erased));
        assert_eq!(decode(&[]), Err(DeviceConfigError::Erased));
        assert_eq!(decode(&[0u8; 64]), Err(DeviceConfigError::BadMagic));
    }

    /// Wraps a hand-written body in a valid header and CRC.
    fn frame(body: &[u8]) -> std::vec::Vec<u8> {
        let mut out = std::vec::Vec::from(MAGIC);
        out.push(FORMAT_VERSION);
        out.extend_from_slice(&(body.len() as u16).to_le_bytes());
        out.extend_from_slice(body);
        let crc = crc32(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }

    /// The body with one extra key `extra` (given as a closure writing its key and value).
    fn body_with(
        c: &DeviceConfig,
        skip: &str,
        extra: impl Fn(&mut Encoder<Cursor<&mut [u8]>>),
    ) -> std::vec::Vec<u8> {
        let mut inner = [0u8; MAX_CONFIG_BYTES];
        let inner_len = post_config::encode(&c.config, &mut inner).unwrap();
        let mut buf = [0u8; MAX_DEVICE_CONFIG_BYTES];
        let mut e = Encoder::new(Cursor::new(&mut buf[..]));
        let keys = 9 - u64::from(!skip.is_empty()) + 1;
        e.map(keys).unwrap();
        extra(&mut e);
        let put = |k: &str, e: &mut Encoder<Cursor<&mut [u8]>>| -> bool {
            if k == skip {
                return false;
            }
            e.str(k).unwrap();
            true
        };
        if put("post", &mut e) {
            e.str(c.post.as_str()).unwrap();
        }
        if put("host", &mut e) {
            e.str(&c.broker_host).unwrap();
        }
        if put("port", &mut e) {
            e.u16(c.broker_port).unwrap();
        }
        if put("tls", &mut e) {
            e.bool(c.broker_tls).unwrap();
        }
        if put("user", &mut e) {
            e.str(&c.username).unwrap();
        }
        if put("password", &mut e) {
            e.str(&c.password).unwrap();
        }
        if put("prefix", &mut e) {
            e.str(&c.topic_prefix).unwrap();
        }
        if put("sensors", &mut e) {
            e.array(c.sensors.len() as u64).unwrap();
            for q in &c.sensors {
                e.str(q.as_str()).unwrap();
            }
        }
        if put("config", &mut e) {
            e.writer_mut().write_all(&inner[..inner_len]).unwrap();
        }
        let n = e.into_writer().position();
        buf[..n].to_vec()
    }

    #[test]
    fn unknown_keys_are_ignored() {
        let body = body_with(&sample(), "", |e| {
            e.str("antenna").unwrap().map(1).unwrap();
            e.str("gain_dbi").unwrap().f32(3.0).unwrap();
        });
        assert_eq!(decode(&frame(&body)), Ok(sample()));
    }

    #[test]
    fn missing_required_keys_are_named() {
        for key in ["post", "host", "port", "sensors", "config"] {
            let body = body_with(&sample(), key, |e| {
                e.str("x").unwrap().u8(0).unwrap();
            });
            assert_eq!(
                decode(&frame(&body)),
                Err(DeviceConfigError::Missing(key)),
                "{key}"
            );
        }
    }

    #[test]
    fn bad_fields_are_refused_with_their_reason() {
        type Edit = fn(&mut DeviceConfig);
        let cases: [(Edit, DeviceConfigError); 7] = [
            (|c| c.broker_host.clear(), DeviceConfigError::EmptyHost),
            (|c| c.broker_port = 0, DeviceConfigError::BadPort),
            (
                |c| c.topic_prefix = s("taza/"),
                DeviceConfigError::BadPrefix,
            ),
            (|c| c.topic_prefix = s("a+b"), DeviceConfigError::BadPrefix),
            (|c| c.sensors.clear(), DeviceConfigError::NoSensors),
            (
                |c| c.sensors.push(Quantity::No2).unwrap(),
                DeviceConfigError::DuplicateSensor(Quantity::No2),
            ),
            (
                |c| c.config.window_s = 65,
                DeviceConfigError::Config(ConfigError::Window),
            ),
        ];
        for (edit, want) in cases {
            let mut c = sample();
            edit(&mut c);
            assert_eq!(c.validate(), Err(want));
            assert_eq!(decode(&blob(&c)), Err(want));
        }
        // A port beyond u16 can only come from a hand-written body.
        let body = body_with(&sample(), "port", |e| {
            e.str("port").unwrap().u32(70_000).unwrap();
        });
        assert_eq!(decode(&frame(&body)), Err(DeviceConfigError::BadPort));
    }

    #[test]
    fn header_problems_are_told_apart() {
        let mut b = blob(&sample());
        b[4] = 2;
        assert_eq!(decode(&b), Err(DeviceConfigError::UnsupportedVersion(2)));
        let mut b = blob(&sample());
        b[5] = 0x00;
        b[6] = 0x04;
        assert_eq!(decode(&b), Err(DeviceConfigError::TooLarge));
        let mut tiny = [0u8; 16];
        assert_eq!(
            encode(&sample(), &mut tiny),
            Err(EncodeError::BufferTooSmall)
        );
    }

    fn any_text(max: usize) -> impl Strategy<Value = std::string::String> {
        prop::string::string_regex(&std::format!("[ -~]{{0,{max}}}")).unwrap()
    }

    proptest! {
        #[test]
        fn any_valid_device_config_round_trips(
            host in "[a-z0-9.-]{1,64}",
            port in 1u16..,
            tls in any::<bool>(),
            user in any_text(64),
            password in any_text(64),
            prefix in "[a-z]{1,10}(/[a-z]{1,10})?",
            sensors in prop::sample::subsequence(Quantity::ALL.to_vec(), 1..Quantity::ALL.len()),
            sample_s in 1u32..600,
            windows in 1u32..20,
        ) {
            let mut c = sample();
            c.broker_host = s(&host);
            c.broker_port = port;
            c.broker_tls = tls;
            c.username = s(&user);
            c.password = s(&password);
            c.topic_prefix = s(&prefix);
            c.sensors = sensors.into_iter().collect();
            c.config.sample_interval_s = sample_s;
            c.config.window_s = sample_s * windows;
            let b = blob(&c);
            prop_assert!(b.len() <= MAX_DEVICE_CONFIG_BYTES);
            prop_assert_eq!(decode(&b), Ok(c));
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..1200)) {
            let _ = decode(&bytes);
            let mut framed = bytes.clone();
            framed.truncate(1000);
            let _ = decode(&frame(&framed));
        }
    }
}
