//! Supply (battery) voltage through a resistor divider on ADC1, ratioed against the internal
//! reference so the 3.3 V regulator's tolerance drops out. Writes [`BoardStatus::set_supply_mv`].
//!
//! The post runs from a 12.8 V LiFePO4 pack charged while the street lights are on (a lamppost
//! feeds its luminaire only at night), so the voltage is the post's fuel gauge.

use embassy_stm32::adc::{Adc, AdcChannel, Instance, SampleTime, VrefInt};
use embassy_stm32::peripherals::ADC1;
use embassy_time::{Duration, Timer};

use crate::status::BoardStatus;

/// Divider from the supply to the ADC pin: 100 kΩ on top, 22 kΩ to ground (+100 nF at the pin):
/// 14.6 V (LiFePO4 charge end) gives 2.63 V, inside the 3.3 V range with headroom.
pub const DIVIDER_TOP_OHM: u32 = 100_000;
/// See [`DIVIDER_TOP_OHM`].
pub const DIVIDER_BOTTOM_OHM: u32 = 22_000;
/// Internal reference voltage, typical (STM32F412 datasheet, "Embedded reference voltage":
/// 1.18-1.24 V). The F4 stores no VREFINT calibration the HAL exposes, so the typical value is
/// used: ±2.5 % on the supply reading, enough for a battery gauge.
pub const VREFINT_TYPICAL_MV: u32 = 1_210;
/// How often the supply is measured.
pub const SUPPLY_PERIOD: Duration = Duration::from_secs(60);
/// Below this a LiFePO4 pack is nearly empty (about 10 % state of charge at 12.0 V).
pub const LOW_SUPPLY_MV: u16 = 12_000;
/// The 480-cycle sample time: long enough for the divider's 18 kΩ source and for VREFINT's
/// 10 µs minimum sampling time.
const SAMPLE_TIME: SampleTime = SampleTime::CYCLES480;

/// Supply voltage from the divider reading and the VREFINT reading (both raw 12-bit codes).
/// `None` when the reference reads zero (ADC not working).
pub fn supply_mv(divider_raw: u16, vrefint_raw: u16) -> Option<u16> {
    if vrefint_raw == 0 {
        return None;
    }
    // pin_mv = raw · VDDA / 4095 with VDDA = VREFINT · 4095 / vref_raw.
    let pin_mv = u32::from(divider_raw) * VREFINT_TYPICAL_MV / u32::from(vrefint_raw);
    let mv = pin_mv * (DIVIDER_TOP_OHM + DIVIDER_BOTTOM_OHM) / DIVIDER_BOTTOM_OHM;
    u16::try_from(mv).ok()
}

/// Measures forever, every [`SUPPLY_PERIOD`].
pub async fn run_supply_monitor<P: AdcChannel<ADC1>>(
    adc: &mut Adc<'_, ADC1>,
    pin: &mut P,
    status: &BoardStatus,
) -> !
where
    ADC1: Instance,
{
    let mut vrefint: VrefInt = adc.enable_vrefint();
    // VREFINT start-up time (datasheet: 10 µs).
    Timer::after_micros(10).await;
    loop {
        let vref = adc.blocking_read(&mut vrefint, SAMPLE_TIME);
        let raw = adc.blocking_read(pin, SAMPLE_TIME);
        match supply_mv(raw, vref) {
            Some(mv) => {
                status.set_supply_mv(mv);
                // The status message carries both; the probe log shows them between statuses.
                defmt::debug!("health: supply {} mV, rssi {} dBm", mv, status.rssi_dbm());
                if mv < LOW_SUPPLY_MV {
                    defmt::warn!("supply low: {} mV", mv);
                }
            }
            None => defmt::warn!("supply: VREFINT reads 0"),
        }
        Timer::after(SUPPLY_PERIOD).await;
    }
}
