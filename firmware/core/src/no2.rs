//! NO2 from an Alphasense NO2-B43F 4-electrode cell on an ISB board, read through an ADS1115
//! (WE on AIN0, AE on AIN1).
//!
//! Alphasense AAN 803-05, algorithm 1: WEu = WE − WEe, AEu = AE − AEe (electronic zeros from
//! config), WEc = WEu − nT·AEu with nT from the B43F table (−30..50 °C in 10 °C steps: 1.3, 1.3,
//! 1.3, 1.3, 1.0, 0.6, 0.4, 0.2, −1.5, linear in between, held at the ends), ppb = WEc /
//! sensitivity (mV/ppb, from the cell's calibration sheet). ppb -> µg/m³ uses the measured
//! temperature and pressure: µg/m³ = ppb · M · P / (R · T) / 1000 with M = 46.0055 g/mol; at
//! Almaty's 700-1700 m the pressure is 15-20 % below sea level and so is the factor.

use embassy_sync::blocking_mutex::raw::RawMutex;
use embassy_time::Duration;
use embedded_hal_async::delay::DelayNs;
use embedded_hal_async::i2c::I2c;
use protocol::post_config::No2SensorConfig;
use protocol::{QaFlags, Quantity};

use crate::ads1115::{Ads1115, Channel};
use crate::sensor::{Sample, Samples, Sensor};
use crate::sht3x::LatestClimate;

/// Molar mass of NO2, g/mol.
pub const NO2_MOLAR_MASS_G_MOL: f32 = 46.0055;
/// Molar gas constant, J/(mol·K).
pub const GAS_CONSTANT_J_MOL_K: f32 = 8.314_463;
/// 0 °C in kelvin.
pub const ZERO_CELSIUS_K: f32 = 273.15;
/// B43F nT at −30, −20, ..., 50 °C (AAN 803-05; two independent implementations agree).
pub const B43F_NT: [f32; 9] = [1.3, 1.3, 1.3, 1.3, 1.0, 0.6, 0.4, 0.2, -1.5];
const NT_FIRST_C: f32 = -30.0;
const NT_STEP_C: f32 = 10.0;

/// The B43F temperature factor nT at `temperature_c`, interpolated linearly between the 10 °C
/// points and held at the table's ends.
pub fn b43f_nt(temperature_c: f32) -> f32 {
    let pos = (temperature_c - NT_FIRST_C) / NT_STEP_C;
    let last = (B43F_NT.len() - 1) as f32;
    let pos = if pos.is_nan() {
        0.0
    } else {
        pos.clamp(0.0, last)
    };
    let i = pos as usize; // floor, pos >= 0
    let frac = pos - i as f32;
    let lo = B43F_NT.get(i).copied().unwrap_or(-1.5);
    let hi = B43F_NT.get(i + 1).copied().unwrap_or(lo);
    lo + (hi - lo) * frac
}

/// NO2 in ppb from the electrode voltages (mV), algorithm 1.
pub fn no2_ppb(we_mv: f32, ae_mv: f32, temperature_c: f32, cell: &No2SensorConfig) -> f32 {
    let we_u = we_mv - cell.we_zero_mv;
    let ae_u = ae_mv - cell.ae_zero_mv;
    let we_c = we_u - b43f_nt(temperature_c) * ae_u;
    we_c / cell.sensitivity_mv_per_ppb
}

/// ppb -> µg/m³ at the given temperature and pressure.
pub fn ppb_to_ug_m3(ppb: f32, temperature_c: f32, pressure_pa: f32) -> f32 {
    ppb * NO2_MOLAR_MASS_G_MOL * pressure_pa
        / (GAS_CONSTANT_J_MOL_K * (temperature_c + ZERO_CELSIUS_K))
        / 1000.0
}

/// An NO2-B43F on an ADS1115, corrected with the post's latest climate reading.
pub struct No2B43f<'a, I, D, M: RawMutex> {
    adc: Ads1115<I, D>,
    cell: No2SensorConfig,
    climate: &'a LatestClimate<M>,
    /// Used until the post has measured pressure: the standard atmosphere at the post's
    /// altitude (a board computes it once from its surveyed height).
    fallback_pressure_pa: f32,
}

impl<'a, I: I2c, D: DelayNs, M: RawMutex> No2B43f<'a, I, D, M> {
    /// A sensor with `cell` constants that reads temperature and pressure from `climate`.
    pub fn new(
        adc: Ads1115<I, D>,
        cell: No2SensorConfig,
        climate: &'a LatestClimate<M>,
        fallback_pressure_pa: f32,
    ) -> Self {
        Self {
            adc,
            cell,
            climate,
            fallback_pressure_pa,
        }
    }

    /// Replaces the cell constants (after a config update).
    pub fn set_cell(&mut self, cell: No2SensorConfig) {
        self.cell = cell;
    }
}

const NO2_QUANTITIES: [Quantity; 1] = [Quantity::No2];
/// Used when no climate reading exists yet; the sample is flagged `WARM_UP` then.
const FALLBACK_TEMPERATURE_C: f32 = 20.0;

impl<I: I2c, D: DelayNs, M: RawMutex> Sensor for No2B43f<'_, I, D, M> {
    const NAME: &'static str = "no2-b43f";
    const MIN_POLL_INTERVAL: Duration = Duration::from_secs(1);
    type Error = I::Error;

    fn quantities(&self) -> &'static [Quantity] {
        &NO2_QUANTITIES
    }

    async fn init(&mut self) -> Result<(), Self::Error> {
        Ok(())
    }

    async fn poll(&mut self, out: &mut Samples) -> Result<(), Self::Error> {
        let we = self.adc.read(Channel::A0).await?;
        let ae = self.adc.read(Channel::A1).await?;
        let climate = self.climate.get();
        let t = climate.map_or(FALLBACK_TEMPERATURE_C, |c| c.temperature_c);
        let p = climate
            .and_then(|c| c.pressure_pa)
            .unwrap_or(self.fallback_pressure_pa);
        let ppb = no2_ppb(we.millivolts(), ae.millivolts(), t, &self.cell);
        let mut sample = Sample::new(Quantity::No2, ppb_to_ug_m3(ppb, t, p));
        if we.is_saturated() || ae.is_saturated() {
            sample.flags = sample.flags.union(QaFlags::SATURATED);
        }
        if climate.is_none() {
            sample.flags = sample.flags.union(QaFlags::WARM_UP);
        }
        let _ = out.push(sample);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CELL: No2SensorConfig = No2SensorConfig {
        we_zero_mv: 295.0,
        ae_zero_mv: 282.0,
        sensitivity_mv_per_ppb: 0.25,
    };

    fn close(a: f32, b: f32, tol: f32) -> bool {
        (a - b).abs() <= tol
    }

    #[test]
    fn nt_follows_the_b43f_table_and_interpolates() {
        assert_eq!(b43f_nt(-40.0), 1.3); // held below −30 °C
        assert_eq!(b43f_nt(0.0), 1.3);
        assert!(close(b43f_nt(5.0), 1.15, 1e-6)); // halfway 1.3 -> 1.0
        assert!(close(b43f_nt(25.0), 0.5, 1e-6)); // halfway 0.6 -> 0.4
        assert!(close(b43f_nt(45.0), -0.65, 1e-6)); // halfway 0.2 -> −1.5
        assert_eq!(b43f_nt(60.0), -1.5); // held above 50 °C
    }

    #[test]
    fn electrode_voltages_at_25_c_sea_level_give_hand_computed_concentration() {
        // WE = 2520 codes · 0.125 mV = 315 mV, AE = 2272 codes · 0.125 mV = 284 mV.
        // WEu = 315 − 295 = 20 mV; AEu = 284 − 282 = 2 mV; nT(25 °C) = 0.5;
        // WEc = 20 − 0.5 · 2 = 19 mV; ppb = 19 / 0.25 = 76 ppb.
        // µg/m³ = 76 · 46.0055 · 101325 / (8.3144626 · 298.15) / 1000 = 76 · 1.88043 = 142.91
        let we = crate::ads1115::Counts(2520).millivolts();
        let ae = crate::ads1115::Counts(2272).millivolts();
        let ppb = no2_ppb(we, ae, 25.0, &CELL);
        assert!(close(ppb, 76.0, 1e-3), "{ppb}");
        assert!(close(ppb_to_ug_m3(1.0, 25.0, 101_325.0), 1.880_43, 1e-4));
        assert!(close(ppb_to_ug_m3(ppb, 25.0, 101_325.0), 142.91, 0.01));
    }

    #[test]
    fn cold_almaty_winter_night_uses_full_aux_correction_and_low_pressure() {
        // −10 °C: nT = 1.3. WEc = 20 − 1.3 · 2 = 17.4 mV; ppb = 17.4 / 0.25 = 69.6.
        // 850 hPa, 263.15 K: factor = 46.0055 · 85000 / (8.3144626 · 263.15) / 1000
        //   = 3 910 467.5 / 2187.9599 / 1000 = 1.787267; 69.6 · 1.787267 = 124.39 µg/m³.
        let ppb = no2_ppb(315.0, 284.0, -10.0, &CELL);
        assert!(close(ppb, 69.6, 1e-3), "{ppb}");
        assert!(close(ppb_to_ug_m3(ppb, -10.0, 85_000.0), 124.39, 0.01));
    }

    #[test]
    fn hot_summer_afternoon_flips_the_aux_correction_sign() {
        // 45 °C: nT = −0.65. WEc = 20 + 0.65 · 2 = 21.3 mV; ppb = 21.3 / 0.25 = 85.2.
        assert!(close(no2_ppb(315.0, 284.0, 45.0, &CELL), 85.2, 1e-3));
    }
}
