//! Pure parsers for the SIM7080G's AT responses and URCs (no I/O, no time): signal quality
//! (`+CSQ`), network clock (`+CCLK`), incoming MQTT messages (`+SMSUB` with `SUBHEX` on), and
//! the check that a string may be sent inside a quoted AT argument.
//!
//! Sources: SIM7070/SIM7080/SIM7090 Series AT Command Manual (AT+CSQ, AT+CCLK, AT+SMCONF,
//! AT+SMSUB). The modem reports `+SMSUB: "topic","payload"` on one line; with
//! `AT+SMCONF="SUBHEX",1` the payload is hex, which keeps binary CBOR intact.
//!
//! Tested on the host by firmware/board-f412/host-tests (this file has no HAL dependency).

use heapless::Vec;
use protocol::post_config::MAX_CONFIG_BYTES;

/// Why a response or URC could not be read.
// defmt only on the target: the host tests (firmware/board-f412/host-tests) build this module
// without it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(target_os = "none", derive(defmt::Format))]
pub enum ParseError {
    /// The line does not have the expected shape.
    Malformed,
    /// A number is out of its range.
    OutOfRange,
    /// The payload is longer than the buffer.
    TooLong,
}

/// `+CSQ: <rssi>,<ber>` -> received signal strength in dBm (27.007 §8.5: 0 = −113 dBm or less,
/// 1 = −111, 2..30 = −109..−53 in 2 dB steps, 31 = −51 or more). `None` for 99 (not known).
pub fn csq_rssi_dbm(line: &str) -> Result<Option<i16>, ParseError> {
    let rest = line
        .strip_prefix("+CSQ:")
        .ok_or(ParseError::Malformed)?
        .trim();
    let rssi = rest.split(',').next().ok_or(ParseError::Malformed)?.trim();
    let rssi: i16 = rssi.parse().map_err(|_| ParseError::Malformed)?;
    match rssi {
        99 => Ok(None),
        0..=31 => Ok(Some(-113 + 2 * rssi)),
        _ => Err(ParseError::OutOfRange),
    }
}

/// Earliest clock accepted from the modem: before this the modem has not synchronised (it
/// boots at 1980-01-06).
pub const EARLIEST_PLAUSIBLE_UNIX_S: i64 = 1_767_225_600; // 2026-01-01T00:00:00Z

/// `+CCLK: "yy/MM/dd,hh:mm:ss±zz"` (local time, `zz` quarter hours east of UTC) -> Unix seconds.
pub fn cclk_unix_s(line: &str) -> Result<i64, ParseError> {
    let rest = line
        .strip_prefix("+CCLK:")
        .ok_or(ParseError::Malformed)?
        .trim()
        .trim_matches('"');
    let b = rest.as_bytes();
    // yy/MM/dd,hh:mm:ss±zz is 20 bytes.
    if b.len() != 20 || b.get(2) != Some(&b'/') || b.get(8) != Some(&b',') {
        return Err(ParseError::Malformed);
    }
    let num = |from: usize| -> Result<i64, ParseError> {
        let s = rest.get(from..from + 2).ok_or(ParseError::Malformed)?;
        s.parse::<i64>().map_err(|_| ParseError::Malformed)
    };
    let (yy, mo, dd, hh, mi, ss, zz) = (
        num(0)?,
        num(3)?,
        num(6)?,
        num(9)?,
        num(12)?,
        num(15)?,
        num(18)?,
    );
    let sign = match b.get(17) {
        Some(b'+') => 1,
        Some(b'-') => -1,
        _ => return Err(ParseError::Malformed),
    };
    if !(1..=12).contains(&mo) || !(1..=31).contains(&dd) || hh > 23 || mi > 59 || ss > 60 {
        return Err(ParseError::OutOfRange);
    }
    // Two-digit years: the modem's own epoch is 1980, so 80-99 are 1980-1999 (an unsynchronised
    // modem's "80/01/06" must not read as 2080).
    let year = if yy >= 80 { 1900 + yy } else { 2000 + yy };
    let days = days_from_civil(year, mo, dd);
    let local = days * 86_400 + hh * 3_600 + mi * 60 + ss;
    Ok(local - sign * zz * 15 * 60)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant, "chrono-compatible
/// low-level date algorithms").
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// An incoming MQTT message.
pub struct Incoming<'a> {
    /// The topic it arrived on.
    pub topic: &'a str,
    /// The decoded payload.
    pub payload: Vec<u8, MAX_CONFIG_BYTES>,
}

/// `+SMSUB: "topic","48656C6C6F"` (hex payload) -> topic and bytes.
pub fn smsub(line: &str) -> Result<Incoming<'_>, ParseError> {
    let rest = line
        .strip_prefix("+SMSUB:")
        .ok_or(ParseError::Malformed)?
        .trim_start();
    let rest = rest.strip_prefix('"').ok_or(ParseError::Malformed)?;
    let (topic, rest) = rest.split_once('"').ok_or(ParseError::Malformed)?;
    let hex = rest
        .strip_prefix(',')
        .ok_or(ParseError::Malformed)?
        .trim()
        .trim_matches('"');
    Ok(Incoming {
        topic,
        payload: hex_decode(hex)?,
    })
}

fn hex_digit(c: u8) -> Result<u8, ParseError> {
    match c {
        b'0'..=b'9' => Ok(c - b'0'),
        b'a'..=b'f' => Ok(c - b'a' + 10),
        b'A'..=b'F' => Ok(c - b'A' + 10),
        _ => Err(ParseError::Malformed),
    }
}

fn hex_decode(hex: &str) -> Result<Vec<u8, MAX_CONFIG_BYTES>, ParseError> {
    let b = hex.as_bytes();
    if b.len() % 2 != 0 {
        return Err(ParseError::Malformed);
    }
    let mut out = Vec::new();
    for pair in b.chunks_exact(2) {
        let [hi, lo] = pair else {
            return Err(ParseError::Malformed);
        };
        out.push(hex_digit(*hi)? << 4 | hex_digit(*lo)?)
            .map_err(|_| ParseError::TooLong)?;
    }
    Ok(out)
}

/// Whether `s` can travel inside a quoted AT argument: printable ASCII without `"` (the AT
/// parser has no escape for it). Credentials that fail this must be re-issued, not mangled.
pub fn quotable(s: &str) -> bool {
    s.bytes().all(|b| (0x20..0x7F).contains(&b) && b != b'"')
}
