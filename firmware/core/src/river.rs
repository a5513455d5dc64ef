//! River probes read as voltages through an ADS1115: water level from a 4-20 mA pressure
//! transducer across a 165 Ω shunt (0.66-3.30 V), and analog conditioning boards for water
//! temperature, conductivity, turbidity, dissolved oxygen and pH. Each channel is a
//! [`LinearProbe`] (two-point transfer function from the probe's sheet or a field calibration);
//! one [`RiverProbes`] sensor polls up to four channels of one ADC, so a post with six
//! quantities uses two ADCs (addresses 0x48 and 0x49) and two sensor tasks.

use embassy_time::Duration;
use embedded_hal_async::delay::DelayNs;
use embedded_hal_async::i2c::I2c;
use protocol::{QaFlags, Quantity};

use crate::ads1115::{Ads1115, Channel};
use crate::sensor::{Sample, Samples, Sensor};

/// Most channels of one ADC.
pub const MAX_CHANNELS: usize = 4;

/// A straight-line probe: `value = low + (mV − zero_mv) / span_mv · (high − low)`, with a loop
/// fault below `fault_below_mv` (a broken 4-20 mA loop reads ~0 V).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LinearProbe {
    /// The quantity, value in `quantity.unit()`.
    pub quantity: Quantity,
    /// Input at the low end of the range, mV.
    pub zero_mv: f32,
    /// Input change from low to high end, mV.
    pub span_mv: f32,
    /// Value at `zero_mv`, in `quantity.unit()`.
    pub low: f32,
    /// Value at `zero_mv + span_mv`, in `quantity.unit()`.
    pub high: f32,
    /// Below this input the loop is broken and the probe is not answering.
    pub fault_below_mv: f32,
}

impl LinearProbe {
    /// A 4-20 mA level transducer over 165 Ω measuring `0..=range_cm` above the gauge zero
    /// (minus `gauge_zero_cm` when the transducer sits below the gauge zero).
    pub const fn level_4_20ma(range_cm: f32, gauge_zero_cm: f32) -> Self {
        Self {
            quantity: Quantity::WaterLevel,
            zero_mv: 660.0,
            span_mv: 2640.0,
            low: -gauge_zero_cm,
            high: range_cm - gauge_zero_cm,
            // 3.6 mA · 165 Ω: below NAMUR NE 43's failure limit.
            fault_below_mv: 594.0,
        }
    }

    /// A 4-20 mA transmitter over 165 Ω spanning `low..=high` of `quantity`.
    pub const fn loop_4_20ma(quantity: Quantity, low: f32, high: f32) -> Self {
        Self {
            quantity,
            zero_mv: 660.0,
            span_mv: 2640.0,
            low,
            high,
            fault_below_mv: 594.0,
        }
    }

    /// Converts an input voltage; `None` when the loop is broken.
    pub fn convert(&self, millivolts: f32) -> Option<f32> {
        if millivolts < self.fault_below_mv {
            return None;
        }
        Some(self.low + (millivolts - self.zero_mv) / self.span_mv * (self.high - self.low))
    }

    /// The input voltage for `value` (what a simulated probe puts on the ADC).
    pub fn millivolts_for(&self, value: f32) -> f32 {
        self.zero_mv + (value - self.low) / (self.high - self.low) * self.span_mv
    }
}

/// Driver failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error<E> {
    /// I²C failure.
    Bus(E),
    /// Every probe's loop is broken.
    AllProbesFaulted,
}

/// Up to four [`LinearProbe`]s on one ADS1115.
pub struct RiverProbes<I, D> {
    adc: Ads1115<I, D>,
    probes: heapless::Vec<(Channel, LinearProbe), MAX_CHANNELS>,
    quantities: &'static [Quantity],
}

impl<I: I2c, D: DelayNs> RiverProbes<I, D> {
    /// Probes on `adc`. `quantities` lists the probes' quantities in order (a `'static` slice so
    /// a failed poll can name what is missing without allocating).
    pub fn new(
        adc: Ads1115<I, D>,
        probes: heapless::Vec<(Channel, LinearProbe), MAX_CHANNELS>,
        quantities: &'static [Quantity],
    ) -> Self {
        Self {
            adc,
            probes,
            quantities,
        }
    }
}

impl<I: I2c, D: DelayNs> Sensor for RiverProbes<I, D> {
    const NAME: &'static str = "river-adc";
    const MIN_POLL_INTERVAL: Duration = Duration::from_secs(1);
    type Error = Error<I::Error>;

    fn quantities(&self) -> &'static [Quantity] {
        self.quantities
    }

    async fn init(&mut self) -> Result<(), Self::Error> {
        Ok(())
    }

    async fn poll(&mut self, out: &mut Samples) -> Result<(), Self::Error> {
        let mut answered = 0;
        for (channel, probe) in &self.probes {
            let counts = self.adc.read(*channel).await.map_err(Error::Bus)?;
            if let Some(value) = probe.convert(counts.millivolts()) {
                let mut s = Sample::new(probe.quantity, value);
                if counts.is_saturated() {
                    s.flags = QaFlags::SATURATED;
                }
                let _ = out.push(s);
                answered += 1;
            }
        }
        if answered == 0 && !self.probes.is_empty() {
            return Err(Error::AllProbesFaulted);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn level_transducer_converts_loop_voltage_to_centimetres() {
        // 14520 codes · 0.125 mV = 1815 mV; (1815 − 660) / 2640 = 0.4375; · 500 cm = 218.75 cm.
        let p = LinearProbe::level_4_20ma(500.0, 0.0);
        let mv = crate::ads1115::Counts(14520).millivolts();
        assert_eq!(p.convert(mv), Some(218.75));
        // 20 mA = 3300 mV is the top of the range.
        assert_eq!(p.convert(3300.0), Some(500.0));
        // A broken loop reads near 0 V.
        assert_eq!(p.convert(12.0), None);
        assert!((p.millivolts_for(218.75) - 1815.0).abs() < 1e-3);
    }
}
