//! TI ADS1115 16-bit ADC on I²C, single-shot and single-ended (datasheet SBAS444D, §9.6.3 Config
//! register, §9.6.1 Conversion register). Full scale ±4.096 V (PGA = 001), so one code is
//! 125 µV; 128 samples/s, so a conversion is done within 7.8 ms and the driver waits 9 ms.

use embedded_hal_async::delay::DelayNs;
use embedded_hal_async::i2c::I2c;

/// Address with ADDR tied to GND.
pub const ADDRESS_GND: u8 = 0x48;
/// Address with ADDR tied to VDD.
pub const ADDRESS_VDD: u8 = 0x49;
const REG_CONVERSION: u8 = 0x00;
const REG_CONFIG: u8 = 0x01;
/// Microvolts per code at ±4.096 V full scale.
pub const MICROVOLTS_PER_CODE: i32 = 125;
/// The largest code; a reading there is clipped (saturated input).
pub const FULL_SCALE_CODE: i16 = i16::MAX;
const CONVERSION_WAIT_US: u32 = 9_000;

/// A single-ended input, AINx against GND.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    /// AIN0.
    A0,
    /// AIN1.
    A1,
    /// AIN2.
    A2,
    /// AIN3.
    A3,
}

impl Channel {
    /// Config register value: OS=1 (start), MUX=1xx (AINx vs GND), PGA=001 (±4.096 V),
    /// MODE=1 (single shot), DR=100 (128 SPS), comparator off (COMP_QUE=11).
    pub const fn config(self) -> u16 {
        let mux: u16 = match self {
            Self::A0 => 0b100,
            Self::A1 => 0b101,
            Self::A2 => 0b110,
            Self::A3 => 0b111,
        };
        (1 << 15) | (mux << 12) | (0b001 << 9) | (1 << 8) | (0b100 << 5) | 0b11
    }
}

/// A raw conversion result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counts(pub i16);

impl Counts {
    /// The input voltage, millivolts.
    pub fn millivolts(self) -> f32 {
        (i32::from(self.0) * MICROVOLTS_PER_CODE) as f32 / 1000.0
    }

    /// Whether the input was at or beyond full scale.
    pub fn is_saturated(self) -> bool {
        self.0 == FULL_SCALE_CODE || self.0 == i16::MIN
    }

    /// The code for `millivolts` (rounded, clamped): what a simulated ADC returns.
    pub fn from_millivolts(millivolts: f32) -> Self {
        let code = millivolts * 1000.0 / MICROVOLTS_PER_CODE as f32;
        let code = if code >= 0.0 { code + 0.5 } else { code - 0.5 };
        // `as` saturates at the i16 limits, which is what the ADC does.
        Self(code as i16)
    }
}

/// An ADS1115 on an I²C bus.
pub struct Ads1115<I, D> {
    i2c: I,
    delay: D,
    address: u8,
}

impl<I: I2c, D: DelayNs> Ads1115<I, D> {
    /// An ADC at `address`.
    pub fn new(i2c: I, delay: D, address: u8) -> Self {
        Self {
            i2c,
            delay,
            address,
        }
    }

    /// One single-shot conversion of `channel`.
    pub async fn read(&mut self, channel: Channel) -> Result<Counts, I::Error> {
        let [hi, lo] = channel.config().to_be_bytes();
        self.i2c.write(self.address, &[REG_CONFIG, hi, lo]).await?;
        self.delay.delay_us(CONVERSION_WAIT_US).await;
        let mut buf = [0u8; 2];
        self.i2c
            .write_read(self.address, &[REG_CONVERSION], &mut buf)
            .await?;
        Ok(Counts(i16::from_be_bytes(buf)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_words_match_the_datasheet_bit_layout() {
        // 1 100 001 1 | 100 0 0 0 11 = 0xC383 for AIN0; MUX 101/110/111 for AIN1-3.
        assert_eq!(Channel::A0.config(), 0xC383);
        assert_eq!(Channel::A1.config(), 0xD383);
        assert_eq!(Channel::A2.config(), 0xE383);
        assert_eq!(Channel::A3.config(), 0xF383);
    }

    #[test]
    fn counts_convert_at_125_microvolts_each() {
        assert_eq!(Counts(2520).millivolts(), 315.0);
        assert_eq!(Counts(-8).millivolts(), -1.0);
        assert_eq!(Counts::from_millivolts(315.0), Counts(2520));
        assert!(Counts::from_millivolts(5000.0).is_saturated());
    }
}
