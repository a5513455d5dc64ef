//! Plantower PMS5003 / PMS7003 optical particle sensor over UART (9600 8N1).
//!
//! [`PmsFrameParser`] is a byte-at-a-time state machine (after pms-7003's `read_fsm`): it hunts
//! the `0x42 0x4D` start bytes, checks the frame length (28) and the checksum (sum of the 30
//! bytes before it, datasheet "Appendix I"), and after a bad frame replays the bytes it holds so
//! a frame that started inside a truncated one is not lost. [`Pms`] is the [`Sensor`] reading
//! it through embedded-io-async; [`Command`] holds the 7-byte host commands (sleep, wake,
//! passive/active mode, passive read) with their checksums.

use embassy_time::{with_timeout, Duration};
use embedded_io_async::{Read, Write};
use protocol::{QaFlags, Quantity};

use crate::sensor::{Sample, Samples, Sensor};

/// Bytes in one data frame, start bytes and checksum included.
pub const FRAME_LEN: usize = 32;
/// The frame-length field of PMS5003/7003 frames: 13 data words + checksum.
const BODY_LEN: u16 = 28;
const START_1: u8 = 0x42;
const START_2: u8 = 0x4D;
/// The highest mass concentration the sensors report; at or above it a value is saturated
/// (PMS5003 datasheet: maximum range ≥ 1000 µg/m³, effective range 0-500 µg/m³).
pub const SATURATION_UG_M3: u16 = 1000;
/// How long a poll waits for a frame (the sensor sends one every 0.2-2.3 s in active mode).
pub const FRAME_TIMEOUT: Duration = Duration::from_secs(3);

/// Mass concentrations, µg/m³.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MassConcentration {
    /// PM1.0, µg/m³.
    pub pm1_0_ug_m3: u16,
    /// PM2.5, µg/m³.
    pub pm2_5_ug_m3: u16,
    /// PM10, µg/m³.
    pub pm10_ug_m3: u16,
}

/// Particle counts per 0.1 L of air, by lower size bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ParticleCounts {
    /// Particles > 0.3 µm per 0.1 L.
    pub over_0_3um: u16,
    /// Particles > 0.5 µm per 0.1 L.
    pub over_0_5um: u16,
    /// Particles > 1.0 µm per 0.1 L.
    pub over_1_0um: u16,
    /// Particles > 2.5 µm per 0.1 L.
    pub over_2_5um: u16,
    /// Particles > 5.0 µm per 0.1 L.
    pub over_5_0um: u16,
    /// Particles > 10 µm per 0.1 L.
    pub over_10um: u16,
}

/// One decoded frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PmsReading {
    /// "CF=1, standard particle" channel: factory calibration aerosol, what the US EPA
    /// correction takes as input.
    pub cf1: MassConcentration,
    /// "Under atmospheric environment" channel: what the sensor reports for ambient air.
    pub atmospheric: MassConcentration,
    /// Particle counts.
    pub counts: ParticleCounts,
    /// PMS7003: firmware version byte of the reserved word (0 on PMS5003).
    pub version: u8,
    /// PMS7003: error code byte of the reserved word (0 = no error).
    pub error_code: u8,
}

impl PmsReading {
    /// Decodes a whole frame, checking start bytes, length and checksum. Pure.
    pub fn from_bytes(frame: &[u8; FRAME_LEN]) -> Result<Self, PmsError> {
        let [s1, s2, lh, ll, body @ ..] = frame;
        if (*s1, *s2) != (START_1, START_2) {
            return Err(PmsError::BadStart);
        }
        let len = u16::from_be_bytes([*lh, *ll]);
        if len != BODY_LEN {
            return Err(PmsError::BadLength(len));
        }
        let [data @ .., ch, cl] = body;
        let expected = u16::from_be_bytes([*ch, *cl]);
        let actual = frame
            .iter()
            .take(FRAME_LEN - 2)
            .fold(0u16, |s, b| s.wrapping_add(u16::from(*b)));
        if expected != actual {
            return Err(PmsError::Checksum { expected, actual });
        }
        let mut words = [0u16; 13];
        for (w, pair) in words.iter_mut().zip(data.chunks_exact(2)) {
            if let [hi, lo] = pair {
                *w = u16::from_be_bytes([*hi, *lo]);
            }
        }
        let [p1c, p25c, p10c, p1a, p25a, p10a, c03, c05, c10, c25, c50, c100, reserved] = words;
        let [version, error_code] = reserved.to_be_bytes();
        Ok(Self {
            cf1: MassConcentration {
                pm1_0_ug_m3: p1c,
                pm2_5_ug_m3: p25c,
                pm10_ug_m3: p10c,
            },
            atmospheric: MassConcentration {
                pm1_0_ug_m3: p1a,
                pm2_5_ug_m3: p25a,
                pm10_ug_m3: p10a,
            },
            counts: ParticleCounts {
                over_0_3um: c03,
                over_0_5um: c05,
                over_1_0um: c10,
                over_2_5um: c25,
                over_5_0um: c50,
                over_10um: c100,
            },
            version,
            error_code,
        })
    }
}

/// Why a frame was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PmsError {
    /// The first two bytes are not `0x42 0x4D`.
    BadStart,
    /// The length field is not 28.
    BadLength(u16),
    /// The checksum in the frame differs from the sum of its bytes.
    Checksum {
        /// Checksum carried by the frame.
        expected: u16,
        /// Sum computed over the received bytes.
        actual: u16,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Start1,
    Start2,
    Body,
}

/// Byte-at-a-time frame parser that survives garbage, gaps and truncated frames.
#[derive(Debug, Clone)]
pub struct PmsFrameParser {
    state: State,
    buf: [u8; FRAME_LEN],
    len: usize,
    skipped_bytes: u32,
}

impl Default for PmsFrameParser {
    fn default() -> Self {
        Self::new()
    }
}

impl PmsFrameParser {
    /// A parser hunting for a start byte.
    pub const fn new() -> Self {
        Self {
            state: State::Start1,
            buf: [0; FRAME_LEN],
            len: 0,
            skipped_bytes: 0,
        }
    }

    /// Bytes thrown away while hunting for a frame start (garbage, partial frames).
    pub fn skipped_bytes(&self) -> u32 {
        self.skipped_bytes
    }

    /// Feeds one byte; returns a frame (or why the frame just completed was bad) when one ends.
    pub fn push(&mut self, byte: u8) -> Option<Result<PmsReading, PmsError>> {
        match self.step(byte) {
            Some(Err(e)) => {
                self.resync();
                Some(Err(e))
            }
            other => other,
        }
    }

    fn step(&mut self, byte: u8) -> Option<Result<PmsReading, PmsError>> {
        match self.state {
            State::Start1 => {
                if byte == START_1 {
                    self.store(byte);
                    self.state = State::Start2;
                } else {
                    self.skipped_bytes = self.skipped_bytes.saturating_add(1);
                }
                None
            }
            State::Start2 => {
                if byte == START_2 {
                    self.store(byte);
                    self.state = State::Body;
                } else {
                    self.skipped_bytes = self.skipped_bytes.saturating_add(1);
                    self.reset();
                    // This byte may itself start a frame.
                    return self.step(byte);
                }
                None
            }
            State::Body => {
                self.store(byte);
                if self.len == 4 {
                    let [_, _, hi, lo, ..] = self.buf;
                    let len = u16::from_be_bytes([hi, lo]);
                    if len != BODY_LEN {
                        return Some(Err(PmsError::BadLength(len)));
                    }
                }
                if self.len == FRAME_LEN {
                    let result = PmsReading::from_bytes(&self.buf);
                    if result.is_ok() {
                        self.reset();
                    }
                    return Some(result);
                }
                None
            }
        }
    }

    fn store(&mut self, byte: u8) {
        if let Some(slot) = self.buf.get_mut(self.len) {
            *slot = byte;
            self.len += 1;
        }
    }

    fn reset(&mut self) {
        self.state = State::Start1;
        self.len = 0;
    }

    /// After a bad frame: replay everything after its first byte, so a real frame that began
    /// inside the bad one is found. Fewer than 32 bytes are replayed, so no frame can complete
    /// (and no second error can occur) during the replay.
    fn resync(&mut self) {
        let held = self.buf;
        let n = self.len;
        self.reset();
        self.skipped_bytes = self.skipped_bytes.saturating_add(1);
        for b in held.iter().take(n).skip(1) {
            if self.step(*b).is_some() {
                // Unreachable by the length argument above; start clean if it ever happens.
                self.reset();
            }
        }
    }
}

/// A 7-byte host command: `0x42 0x4D CMD DATA_H DATA_L LRC_H LRC_L`, LRC = sum of the first
/// five bytes (PMS5003 datasheet, "Appendix II").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// Fan and laser off (extends the laser's life between duty-cycled readings).
    Sleep,
    /// Fan and laser on; readings are stable about 30 s later.
    Wake,
    /// The sensor sends frames only when asked with [`Command::ReadPassive`].
    PassiveMode,
    /// The sensor sends frames on its own (default).
    ActiveMode,
    /// Ask for one frame in passive mode.
    ReadPassive,
}

impl Command {
    /// The bytes to send.
    pub const fn bytes(self) -> [u8; 7] {
        let (cmd, data): (u8, u16) = match self {
            Self::Sleep => (0xE4, 0x0000),
            Self::Wake => (0xE4, 0x0001),
            Self::PassiveMode => (0xE1, 0x0000),
            Self::ActiveMode => (0xE1, 0x0001),
            Self::ReadPassive => (0xE2, 0x0000),
        };
        let [dh, dl] = data.to_be_bytes();
        let lrc = START_1 as u16 + START_2 as u16 + cmd as u16 + dh as u16 + dl as u16;
        let [lh, ll] = lrc.to_be_bytes();
        [START_1, START_2, cmd, dh, dl, lh, ll]
    }
}

/// Driver failure: the UART, a timeout, or frames that kept failing their checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error<E> {
    /// UART read or write failed.
    Bus(E),
    /// No valid frame within [`FRAME_TIMEOUT`].
    Timeout,
    /// The UART reported end of stream.
    Eof,
}

/// A PMS5003/7003 on a UART, used in passive mode: each poll asks for one frame.
pub struct Pms<U> {
    uart: U,
    parser: PmsFrameParser,
    last: Option<PmsReading>,
}

impl<U: Read + Write> Pms<U> {
    /// Wraps the UART (9600 8N1).
    pub fn new(uart: U) -> Self {
        Self {
            uart,
            parser: PmsFrameParser::new(),
            last: None,
        }
    }

    /// The last good frame.
    pub fn last_reading(&self) -> Option<PmsReading> {
        self.last
    }

    /// Sends one command.
    pub async fn command(&mut self, command: Command) -> Result<(), Error<U::Error>> {
        self.uart
            .write_all(&command.bytes())
            .await
            .map_err(Error::Bus)?;
        self.uart.flush().await.map_err(Error::Bus)
    }

    /// Reads until a valid frame arrives (bad frames are skipped, the parser resynchronises).
    pub async fn read_frame(&mut self) -> Result<PmsReading, Error<U::Error>> {
        let mut chunk = [0u8; FRAME_LEN];
        loop {
            let n = self.uart.read(&mut chunk).await.map_err(Error::Bus)?;
            if n == 0 {
                return Err(Error::Eof);
            }
            for b in chunk.iter().take(n) {
                if let Some(Ok(reading)) = self.parser.push(*b) {
                    self.last = Some(reading);
                    return Ok(reading);
                }
            }
        }
    }
}

const PMS_QUANTITIES: [Quantity; 3] = [Quantity::Pm1, Quantity::Pm2_5, Quantity::Pm10];

impl<U: Read + Write> Sensor for Pms<U> {
    const NAME: &'static str = "pms5003";
    const MIN_POLL_INTERVAL: Duration = Duration::from_secs(1);
    type Error = Error<U::Error>;

    fn quantities(&self) -> &'static [Quantity] {
        &PMS_QUANTITIES
    }

    async fn init(&mut self) -> Result<(), Self::Error> {
        self.parser = PmsFrameParser::new();
        self.command(Command::Wake).await?;
        self.command(Command::PassiveMode).await
    }

    async fn poll(&mut self, out: &mut Samples) -> Result<(), Self::Error> {
        self.command(Command::ReadPassive).await?;
        let r = with_timeout(FRAME_TIMEOUT, self.read_frame())
            .await
            .map_err(|_| Error::Timeout)??;
        let sample = |q, atm: u16, cf1: u16| Sample {
            quantity: q,
            value: f32::from(atm),
            basis: f32::from(cf1),
            flags: if atm >= SATURATION_UG_M3 {
                QaFlags::SATURATED
            } else {
                QaFlags::NONE
            },
        };
        let a = r.atmospheric;
        let c = r.cf1;
        for s in [
            sample(Quantity::Pm1, a.pm1_0_ug_m3, c.pm1_0_ug_m3),
            sample(Quantity::Pm2_5, a.pm2_5_ug_m3, c.pm2_5_ug_m3),
            sample(Quantity::Pm10, a.pm10_ug_m3, c.pm10_ug_m3),
        ] {
            // Capacity is MAX_SAMPLES_PER_POLL (6) and a PMS poll adds three.
            let _ = out.push(s);
        }
        Ok(())
    }
}

/// Builds a valid frame for the given readings (the simulator's sensor speaks real frames).
pub fn encode_frame(r: &PmsReading) -> [u8; FRAME_LEN] {
    let words: [u16; 13] = [
        r.cf1.pm1_0_ug_m3,
        r.cf1.pm2_5_ug_m3,
        r.cf1.pm10_ug_m3,
        r.atmospheric.pm1_0_ug_m3,
        r.atmospheric.pm2_5_ug_m3,
        r.atmospheric.pm10_ug_m3,
        r.counts.over_0_3um,
        r.counts.over_0_5um,
        r.counts.over_1_0um,
        r.counts.over_2_5um,
        r.counts.over_5_0um,
        r.counts.over_10um,
        u16::from_be_bytes([r.version, r.error_code]),
    ];
    let mut f = [0u8; FRAME_LEN];
    let [s1, s2, lh, ll, body @ ..] = &mut f;
    (*s1, *s2) = (START_1, START_2);
    [*lh, *ll] = BODY_LEN.to_be_bytes();
    for (pair, w) in body.chunks_exact_mut(2).zip(words) {
        pair.copy_from_slice(&w.to_be_bytes());
    }
    let sum = f
        .iter()
        .take(FRAME_LEN - 2)
        .fold(0u16, |s, b| s.wrapping_add(u16::from(*b)));
    let [.., ch, cl] = &mut f;
    [*ch, *cl] = sum.to_be_bytes();
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A PMS5003 frame laid out as in the datasheet's "Appendix I": PM1/PM2.5/PM10 (CF=1) 5, 8, 9;
    /// atmospheric 5, 8, 9; counts 945, 285, 60, 6, 2, 2; reserved 0x9700 (version 0x97).
    /// Checksum by hand: 0x42+0x4D+0x00+0x1C = 171; data bytes 5+8+9+5+8+9 = 44 -> 215;
    /// 0x03+0xB1 = 180 -> 395; 0x01+0x1D = 30 -> 425; 60 -> 485; 6 -> 491; 2 -> 493; 2 -> 495;
    /// 0x97 = 151 -> 646 = 0x0286.
    const FRAME: [u8; 32] = [
        0x42, 0x4D, 0x00, 0x1C, 0x00, 0x05, 0x00, 0x08, 0x00, 0x09, 0x00, 0x05, 0x00, 0x08, 0x00,
        0x09, 0x03, 0xB1, 0x01, 0x1D, 0x00, 0x3C, 0x00, 0x06, 0x00, 0x02, 0x00, 0x02, 0x97, 0x00,
        0x02, 0x86,
    ];

    fn expected() -> PmsReading {
        let m = MassConcentration {
            pm1_0_ug_m3: 5,
            pm2_5_ug_m3: 8,
            pm10_ug_m3: 9,
        };
        PmsReading {
            cf1: m,
            atmospheric: m,
            counts: ParticleCounts {
                over_0_3um: 945,
                over_0_5um: 285,
                over_1_0um: 60,
                over_2_5um: 6,
                over_5_0um: 2,
                over_10um: 2,
            },
            version: 0x97,
            error_code: 0,
        }
    }

    fn feed(
        p: &mut PmsFrameParser,
        bytes: &[u8],
    ) -> heapless::Vec<Result<PmsReading, PmsError>, 8> {
        bytes.iter().filter_map(|b| p.push(*b)).collect()
    }

    #[test]
    fn valid_datasheet_frame_decodes_every_field() {
        let mut p = PmsFrameParser::new();
        assert_eq!(feed(&mut p, &FRAME).as_slice(), &[Ok(expected())]);
        assert_eq!(encode_frame(&expected()), FRAME);
    }

    #[test]
    fn frame_with_bad_checksum_is_refused_with_both_sums() {
        let mut bad = FRAME;
        bad[31] = 0x87;
        let mut p = PmsFrameParser::new();
        assert_eq!(
            feed(&mut p, &bad).as_slice(),
            &[Err(PmsError::Checksum {
                expected: 0x0287,
                actual: 0x0286
            })]
        );
        // The parser recovers: the next good frame decodes.
        assert_eq!(feed(&mut p, &FRAME).as_slice(), &[Ok(expected())]);
    }

    #[test]
    fn garbage_before_the_start_bytes_is_skipped() {
        let mut p = PmsFrameParser::new();
        let garbage = [0x00, 0x42, 0x42, 0xFF, 0x4D, 0x13];
        assert!(feed(&mut p, &garbage).is_empty());
        assert_eq!(feed(&mut p, &FRAME).as_slice(), &[Ok(expected())]);
        assert!(p.skipped_bytes() >= 5);
    }

    #[test]
    fn truncated_frame_followed_by_a_full_one_still_yields_the_full_one() {
        let mut p = PmsFrameParser::new();
        let mut stream: heapless::Vec<u8, 64> = heapless::Vec::new();
        stream.extend_from_slice(&FRAME[..17]).unwrap(); // cut mid-frame
        stream.extend_from_slice(&FRAME).unwrap();
        let out = feed(&mut p, &stream);
        assert_eq!(out.last(), Some(&Ok(expected())));
        assert!(matches!(out.first(), Some(Err(PmsError::Checksum { .. }))));
    }

    #[test]
    fn truncated_frame_alone_yields_nothing() {
        let mut p = PmsFrameParser::new();
        assert!(feed(&mut p, &FRAME[..31]).is_empty());
    }

    #[test]
    fn wrong_length_field_is_refused_early() {
        let mut p = PmsFrameParser::new();
        // PMS1003-style length 0x0014 is not ours.
        assert_eq!(
            feed(&mut p, &[0x42, 0x4D, 0x00, 0x14]).as_slice(),
            &[Err(PmsError::BadLength(0x14))]
        );
    }

    #[test]
    fn commands_match_the_datasheet_bytes() {
        // LRC = 0x42 + 0x4D + CMD + DATAH + DATAL: 0x8F + 0xE4 = 0x173, +1 for wake.
        assert_eq!(
            Command::Sleep.bytes(),
            [0x42, 0x4D, 0xE4, 0x00, 0x00, 0x01, 0x73]
        );
        assert_eq!(
            Command::Wake.bytes(),
            [0x42, 0x4D, 0xE4, 0x00, 0x01, 0x01, 0x74]
        );
        assert_eq!(
            Command::PassiveMode.bytes(),
            [0x42, 0x4D, 0xE1, 0x00, 0x00, 0x01, 0x70]
        );
        assert_eq!(
            Command::ActiveMode.bytes(),
            [0x42, 0x4D, 0xE1, 0x00, 0x01, 0x01, 0x71]
        );
        assert_eq!(
            Command::ReadPassive.bytes(),
            [0x42, 0x4D, 0xE2, 0x00, 0x00, 0x01, 0x71]
        );
    }
}
