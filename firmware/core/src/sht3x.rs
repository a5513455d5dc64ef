//! Sensirion SHT3x temperature and humidity sensor on I²C (datasheet v7, §4.3 single-shot
//! measurement, §4.12 CRC, §4.13 conversion).
//!
//! One poll: write `0x24 0x00` (single shot, high repeatability, no clock stretching), wait the
//! 15.5 ms maximum measurement time, read six bytes `T_msb T_lsb CRC RH_msb RH_lsb CRC`. Each
//! word is checked with CRC-8 (polynomial 0x31, init 0xFF). The latest reading is also written
//! to a [`LatestClimate`] cell, which the NO2 sensor reads for its temperature correction and
//! its ppb -> µg/m³ conversion.

use core::cell::Cell;

use embassy_sync::blocking_mutex::raw::RawMutex;
use embassy_sync::blocking_mutex::Mutex;
use embassy_time::Duration;
use embedded_hal_async::delay::DelayNs;
use embedded_hal_async::i2c::I2c;
use protocol::Quantity;

use crate::sensor::{Sample, Samples, Sensor};

/// Default I²C address (ADDR pin low).
pub const DEFAULT_ADDRESS: u8 = 0x44;
const MEASURE_HIGH_REPEATABILITY: [u8; 2] = [0x24, 0x00];
const SOFT_RESET: [u8; 2] = [0x30, 0xA2];
/// Maximum measurement time at high repeatability (datasheet Table 4), rounded up.
const MEASURE_TIME_US: u32 = 15_500;

/// Temperature and humidity at one instant (and pressure when the post has a barometer).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClimateReading {
    /// Air temperature, °C.
    pub temperature_c: f32,
    /// Relative humidity, %.
    pub humidity_pct: f32,
    /// Air pressure, Pa, when measured.
    pub pressure_pa: Option<f32>,
}

/// The latest climate reading, shared between the climate sensor task and the NO2 task (one
/// executor: a `NoopRawMutex` suffices; it is locked only to copy the value).
pub struct LatestClimate<M: RawMutex>(Mutex<M, Cell<Option<ClimateReading>>>);

impl<M: RawMutex> LatestClimate<M> {
    /// Empty until the first reading.
    pub const fn new() -> Self {
        Self(Mutex::new(Cell::new(None)))
    }

    /// The latest reading, if any.
    pub fn get(&self) -> Option<ClimateReading> {
        self.0.lock(Cell::get)
    }

    /// Replaces the latest reading.
    pub fn set(&self, r: ClimateReading) {
        self.0.lock(|c| c.set(Some(r)));
    }
}

impl<M: RawMutex> Default for LatestClimate<M> {
    fn default() -> Self {
        Self::new()
    }
}

/// CRC-8 of the SHT3x: polynomial 0x31 (x⁸ + x⁵ + x⁴ + 1), init 0xFF, no reflection, no final XOR.
pub fn crc8(data: &[u8]) -> u8 {
    let mut crc = 0xFFu8;
    for b in data {
        crc ^= b;
        for _ in 0..8 {
            crc = if crc & 0x80 != 0 {
                (crc << 1) ^ 0x31
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// Driver failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error<E> {
    /// I²C transfer failed (including NACK while measuring).
    Bus(E),
    /// A word's CRC did not match.
    Crc {
        /// CRC carried by the sensor.
        expected: u8,
        /// CRC computed over the received word.
        actual: u8,
    },
}

/// Converts the six measurement bytes; pure.
pub fn decode(bytes: &[u8; 6]) -> Result<ClimateReading, Error<core::convert::Infallible>> {
    let [t0, t1, tc, h0, h1, hc] = *bytes;
    for (word, expected) in [([t0, t1], tc), ([h0, h1], hc)] {
        let actual = crc8(&word);
        if actual != expected {
            return Err(Error::Crc { expected, actual });
        }
    }
    let t_raw = f32::from(u16::from_be_bytes([t0, t1]));
    let h_raw = f32::from(u16::from_be_bytes([h0, h1]));
    Ok(ClimateReading {
        temperature_c: -45.0 + 175.0 * t_raw / 65535.0,
        humidity_pct: 100.0 * h_raw / 65535.0,
        pressure_pa: None,
    })
}

/// An SHT3x on an I²C bus.
pub struct Sht3x<'a, I, D, M: RawMutex> {
    i2c: I,
    delay: D,
    address: u8,
    latest: &'a LatestClimate<M>,
}

impl<'a, I: I2c, D: DelayNs, M: RawMutex> Sht3x<'a, I, D, M> {
    /// A sensor at `address` that publishes its readings to `latest`.
    pub fn new(i2c: I, delay: D, address: u8, latest: &'a LatestClimate<M>) -> Self {
        Self {
            i2c,
            delay,
            address,
            latest,
        }
    }

    /// One single-shot measurement.
    pub async fn measure(&mut self) -> Result<ClimateReading, Error<I::Error>> {
        self.i2c
            .write(self.address, &MEASURE_HIGH_REPEATABILITY)
            .await
            .map_err(Error::Bus)?;
        self.delay.delay_us(MEASURE_TIME_US).await;
        let mut buf = [0u8; 6];
        self.i2c
            .read(self.address, &mut buf)
            .await
            .map_err(Error::Bus)?;
        decode(&buf).map_err(|e| match e {
            Error::Crc { expected, actual } => Error::Crc { expected, actual },
            Error::Bus(never) => match never {},
        })
    }
}

const CLIMATE_QUANTITIES: [Quantity; 2] = [Quantity::Temperature, Quantity::Humidity];

impl<I: I2c, D: DelayNs, M: RawMutex> Sensor for Sht3x<'_, I, D, M> {
    const NAME: &'static str = "sht3x";
    const MIN_POLL_INTERVAL: Duration = Duration::from_secs(1);
    type Error = Error<I::Error>;

    fn quantities(&self) -> &'static [Quantity] {
        &CLIMATE_QUANTITIES
    }

    async fn init(&mut self) -> Result<(), Self::Error> {
        self.i2c
            .write(self.address, &SOFT_RESET)
            .await
            .map_err(Error::Bus)?;
        // Soft reset takes at most 1.5 ms (datasheet Table 5).
        self.delay.delay_us(1_500).await;
        Ok(())
    }

    async fn poll(&mut self, out: &mut Samples) -> Result<(), Self::Error> {
        let r = self.measure().await?;
        self.latest.set(r);
        let _ = out.push(Sample::new(Quantity::Temperature, r.temperature_c));
        let _ = out.push(Sample::new(Quantity::Humidity, r.humidity_pct));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc_matches_the_datasheet_example() {
        // Datasheet §4.12: CRC(0xBEEF) = 0x92.
        assert_eq!(crc8(&[0xBE, 0xEF]), 0x92);
    }

    #[test]
    fn measurement_bytes_convert_to_celsius_and_percent() {
        // T_raw = RH_raw = 0xBEEF = 48879.
        // T = -45 + 175 · 48879 / 65535 = -45 + 130.5226 = 85.5226 °C
        // RH = 100 · 48879 / 65535 = 74.5846 %
        let r = decode(&[0xBE, 0xEF, 0x92, 0xBE, 0xEF, 0x92]).unwrap();
        assert!(
            (r.temperature_c - 85.5226).abs() < 1e-3,
            "{}",
            r.temperature_c
        );
        assert!(
            (r.humidity_pct - 74.5846).abs() < 1e-3,
            "{}",
            r.humidity_pct
        );
    }

    #[test]
    fn corrupted_humidity_word_is_refused() {
        assert_eq!(
            decode(&[0xBE, 0xEF, 0x92, 0xBE, 0xEF, 0x93]),
            Err(Error::Crc {
                expected: 0x93,
                actual: 0x92
            })
        );
    }
}
