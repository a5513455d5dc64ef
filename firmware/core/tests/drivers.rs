//! Drivers on scripted buses: embedded-hal-mock's I²C for the SHT3x and the ADS1115 + B43F
//! chain, a scripted UART for the PMS5003. Each mock's `done()` checks that exactly the
//! datasheet's transactions happened.

use embassy_futures::block_on;
use embassy_sync::blocking_mutex::raw::NoopRawMutex;
use embedded_hal_mock::eh1::delay::NoopDelay;
use embedded_hal_mock::eh1::i2c::{Mock as I2cMock, Transaction};
use protocol::post_config::No2SensorConfig;
use protocol::{QaFlags, Quantity};
use taza_firmware_core::ads1115::Ads1115;
use taza_firmware_core::no2::No2B43f;
use taza_firmware_core::pms::{Command, Pms};
use taza_firmware_core::sensor::{Samples, Sensor};
use taza_firmware_core::sht3x::{ClimateReading, LatestClimate, Sht3x};

#[test]
fn sht3x_measures_with_single_shot_command_and_shares_the_reading() {
    let mut i2c = I2cMock::new(&[
        Transaction::write(0x44, vec![0x24, 0x00]),
        // Datasheet CRC example word 0xBEEF -> 0x92 for both values.
        Transaction::read(0x44, vec![0xBE, 0xEF, 0x92, 0xBE, 0xEF, 0x92]),
    ]);
    let climate: LatestClimate<NoopRawMutex> = LatestClimate::new();
    let mut s = Sht3x::new(i2c.clone(), NoopDelay, 0x44, &climate);
    let mut out = Samples::new();
    block_on(s.poll(&mut out)).unwrap();
    // T = −45 + 175 · 48879 / 65535 = 85.5226 °C; RH = 100 · 48879 / 65535 = 74.5846 %.
    assert_eq!(out[0].quantity, Quantity::Temperature);
    assert!((out[0].value - 85.5226).abs() < 1e-3);
    assert!((out[1].value - 74.5846).abs() < 1e-3);
    assert!((climate.get().unwrap().humidity_pct - 74.5846).abs() < 1e-3);
    i2c.done();
}

#[test]
fn sht3x_with_corrupted_crc_fails_the_poll() {
    let mut i2c = I2cMock::new(&[
        Transaction::write(0x44, vec![0x24, 0x00]),
        Transaction::read(0x44, vec![0xBE, 0xEF, 0x00, 0xBE, 0xEF, 0x92]),
    ]);
    let climate: LatestClimate<NoopRawMutex> = LatestClimate::new();
    let mut s = Sht3x::new(i2c.clone(), NoopDelay, 0x44, &climate);
    let err = block_on(s.poll(&mut Samples::new())).unwrap_err();
    assert_eq!(
        err,
        taza_firmware_core::sht3x::Error::Crc {
            expected: 0x00,
            actual: 0x92
        }
    );
    assert!(climate.get().is_none(), "a bad reading is not shared");
    i2c.done();
}

#[test]
fn no2_reads_we_and_ae_through_the_adc_and_converts_with_measured_climate() {
    // AIN0 (WE): config 0xC383, conversion 2520 = 0x09D8 -> 315 mV.
    // AIN1 (AE): config 0xD383, conversion 2272 = 0x08E0 -> 284 mV.
    let mut i2c = I2cMock::new(&[
        Transaction::write(0x48, vec![0x01, 0xC3, 0x83]),
        Transaction::write_read(0x48, vec![0x00], vec![0x09, 0xD8]),
        Transaction::write(0x48, vec![0x01, 0xD3, 0x83]),
        Transaction::write_read(0x48, vec![0x00], vec![0x08, 0xE0]),
    ]);
    let climate: LatestClimate<NoopRawMutex> = LatestClimate::new();
    climate.set(ClimateReading {
        temperature_c: 25.0,
        humidity_pct: 40.0,
        pressure_pa: Some(101_325.0),
    });
    let cell = No2SensorConfig {
        we_zero_mv: 295.0,
        ae_zero_mv: 282.0,
        sensitivity_mv_per_ppb: 0.25,
    };
    let mut s = No2B43f::new(
        Ads1115::new(i2c.clone(), NoopDelay, 0x48),
        cell,
        &climate,
        92_000.0,
    );
    let mut out = Samples::new();
    block_on(s.poll(&mut out)).unwrap();
    // WEc = (315 − 295) − 0.5 · (284 − 282) = 19 mV; 19 / 0.25 = 76 ppb; · 1.88043 = 142.91 µg/m³.
    assert_eq!(out[0].quantity, Quantity::No2);
    assert!((out[0].value - 142.91).abs() < 0.01, "{}", out[0].value);
    assert_eq!(out[0].flags, QaFlags::NONE);
    i2c.done();
}

#[test]
fn no2_before_any_climate_reading_uses_fallbacks_and_flags_warm_up() {
    let mut i2c = I2cMock::new(&[
        Transaction::write(0x48, vec![0x01, 0xC3, 0x83]),
        Transaction::write_read(0x48, vec![0x00], vec![0x7F, 0xFF]),
        Transaction::write(0x48, vec![0x01, 0xD3, 0x83]),
        Transaction::write_read(0x48, vec![0x00], vec![0x08, 0xE0]),
    ]);
    let climate: LatestClimate<NoopRawMutex> = LatestClimate::new();
    let mut s = No2B43f::new(
        Ads1115::new(i2c.clone(), NoopDelay, 0x48),
        No2SensorConfig::default(),
        &climate,
        92_000.0,
    );
    let mut out = Samples::new();
    block_on(s.poll(&mut out)).unwrap();
    assert_eq!(out[0].flags, QaFlags::WARM_UP.union(QaFlags::SATURATED));
    i2c.done();
}

/// A UART that records what is written and hands out scripted bytes.
struct ScriptedUart {
    rx: Vec<u8>,
    tx: Vec<u8>,
}

impl embedded_io_async::ErrorType for ScriptedUart {
    type Error = embedded_io_async::ErrorKind;
}

impl embedded_io_async::Read for ScriptedUart {
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, Self::Error> {
        // Deliver in small pieces, as a UART FIFO would.
        let n = buf.len().min(self.rx.len()).min(5);
        buf[..n].copy_from_slice(&self.rx[..n]);
        self.rx.drain(..n);
        Ok(n)
    }
}

impl embedded_io_async::Write for ScriptedUart {
    async fn write(&mut self, buf: &[u8]) -> Result<usize, Self::Error> {
        self.tx.extend_from_slice(buf);
        Ok(buf.len())
    }
    async fn flush(&mut self) -> Result<(), Self::Error> {
        Ok(())
    }
}

#[test]
fn pms_poll_requests_a_passive_frame_and_skips_line_noise() {
    // Noise, then the frame from the datasheet layout (see pms.rs tests; checksum 0x0286).
    let mut rx = vec![0x00, 0x42, 0x13, 0xFF];
    rx.extend_from_slice(&[
        0x42, 0x4D, 0x00, 0x1C, 0x00, 0x05, 0x00, 0x08, 0x00, 0x09, 0x00, 0x05, 0x00, 0x08, 0x00,
        0x09, 0x03, 0xB1, 0x01, 0x1D, 0x00, 0x3C, 0x00, 0x06, 0x00, 0x02, 0x00, 0x02, 0x97, 0x00,
        0x02, 0x86,
    ]);
    let mut pms = Pms::new(ScriptedUart { rx, tx: Vec::new() });
    let mut out = Samples::new();
    block_on(async {
        pms.init().await.unwrap();
        pms.poll(&mut out).await.unwrap();
    });
    let values: Vec<(Quantity, f32, f32)> =
        out.iter().map(|s| (s.quantity, s.value, s.basis)).collect();
    assert_eq!(
        values,
        vec![
            (Quantity::Pm1, 5.0, 5.0),
            (Quantity::Pm2_5, 8.0, 8.0),
            (Quantity::Pm10, 9.0, 9.0)
        ]
    );
    assert_eq!(pms.last_reading().unwrap().counts.over_0_3um, 945);
}

#[test]
fn pms_init_wakes_the_sensor_and_selects_passive_mode() {
    let mut uart = ScriptedUart {
        rx: Vec::new(),
        tx: Vec::new(),
    };
    {
        let mut pms = Pms::new(&mut uart);
        block_on(pms.init()).unwrap();
    }
    let mut want = Command::Wake.bytes().to_vec();
    want.extend_from_slice(&Command::PassiveMode.bytes());
    assert_eq!(uart.tx, want);
}
