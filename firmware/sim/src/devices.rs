//! Simulated hardware behind the same traits the real drivers use: a UART that speaks real
//! PMS5003 frames (checksums, the CF=1 channel reading high in wet air, occasional line
//! garbage), and I²C devices that answer like an SHT3x (CRC-8 words) and an ADS1115 (config
//! register selects the channel, conversion register returns counts of the probe's voltage).
//! Faults from the model make a device NACK, fall silent or repeat itself; a device built
//! `dead` never answers at all. [`SimVitals`] is the board's modem RSSI and supply rail.

use std::sync::Arc;

use embedded_hal_async::i2c::{
    ErrorKind, ErrorType as I2cErrorType, I2c, NoAcknowledgeSource, Operation,
};
use embedded_io_async::{ErrorType as IoErrorType, Read, Write};
use protocol::post_config::No2SensorConfig;
use protocol::UnixSeconds;
use taza_firmware_core::ads1115::Counts;
use taza_firmware_core::no2::{b43f_nt, ZERO_CELSIUS_K};
use taza_firmware_core::pms::{encode_frame, MassConcentration, ParticleCounts, PmsReading};
use taza_firmware_core::river::LinearProbe;
use taza_firmware_core::sht3x::crc8;
use taza_firmware_core::Clock;

use crate::fleet::PostDescriptor;
use crate::model::{unit, Fault, Model};

/// Shared by a post's devices.
#[derive(Clone)]
pub struct World {
    /// The environment.
    pub model: Arc<Model>,
    /// The post.
    pub post: Arc<PostDescriptor>,
    /// The post's wall clock.
    pub clock: Clock,
}

impl World {
    fn now(&self) -> UnixSeconds {
        self.clock.now()
    }

    /// The air as this post's sensors see it at `t`: the truth plus each sensor's sample noise
    /// (a real PMS5003 or SHT3x never returns the same value sample after sample; without it
    /// the core rightly flags the window `STUCK`).
    fn air(&self, t: UnixSeconds) -> crate::model::AirTruth {
        let mut a = self.model.air(&self.post, t);
        let n = |channel: u64| 2.0 * unit(self.model_seed(), channel, t.0 as u64, 0xA1) - 1.0;
        a.pm2_5_ug_m3 *= 1.0 + 0.05 * n(1);
        a.pm10_ug_m3 *= 1.0 + 0.05 * n(2);
        a.pm1_ug_m3 *= 1.0 + 0.05 * n(3);
        a.no2_ug_m3 += 2.0 * n(4);
        a.temperature_c += 0.1 * n(5);
        a.humidity_pct = (a.humidity_pct + 0.5 * n(6)).clamp(0.0, 100.0);
        a
    }

    /// The river as this post's probes see it at `t` (truth plus probe noise).
    fn river(&self, t: UnixSeconds) -> crate::model::RiverTruth {
        let mut r = self.model.river(&self.post, t);
        let n = |channel: u64| 2.0 * unit(self.model_seed(), channel, t.0 as u64, 0xB2) - 1.0;
        r.level_cm += 0.3 * n(1);
        r.water_temperature_c += 0.05 * n(2);
        r.conductivity_us_cm *= 1.0 + 0.01 * n(3);
        r.turbidity_ntu *= 1.0 + 0.03 * n(4);
        r.dissolved_oxygen_mg_l += 0.05 * n(5);
        r.ph += 0.02 * n(6);
        r
    }
}

/// Which sensor index a device is, for fault draws.
const PMS: u64 = 0;
const CLIMATE: u64 = 1;
const GAS_OR_RIVER: u64 = 2;

/// Plantower's humidity bias: particles grow in wet air and the sensor over-reads.
fn hygroscopic_growth(rh_pct: f64) -> f64 {
    let aw = (rh_pct / 100.0).clamp(0.0, 0.98);
    1.0 + 0.25 * aw * aw / (1.0 - aw)
}

/// A PMS5003 on a UART.
pub struct SimPmsUart {
    world: World,
    out: Vec<u8>,
    last: Option<PmsReading>,
    frames: u64,
    dead: bool,
}

impl SimPmsUart {
    /// A sensor in `world`.
    pub fn new(world: World) -> Self {
        Self {
            world,
            out: Vec::new(),
            last: None,
            frames: 0,
            dead: false,
        }
    }

    /// When `dead`, the sensor never sends a frame (a broken sensor or cut cable).
    pub fn dead(mut self, dead: bool) -> Self {
        self.dead = dead;
        self
    }

    fn reading(&mut self) -> PmsReading {
        let t = self.world.now();
        let a = self.world.air(t);
        let growth = hygroscopic_growth(a.humidity_pct);
        // Plantower over-reads by ~40 % (Barkjohn 2021) and more in humid air.
        let atm = |v: f64| (v * 1.25 * growth).round().clamp(0.0, 1000.0) as u16;
        let cf1 = |v: f64| {
            let atm = v * 1.25 * growth;
            // CF=1 equals ATM below ~30 µg/m³ and reads higher above.
            let c = if atm < 30.0 {
                atm
            } else {
                atm * (1.0 + (atm - 30.0) / 150.0).min(1.5)
            };
            c.round().clamp(0.0, 1000.0) as u16
        };
        let pm = a.pm2_5_ug_m3;
        let counts = (pm * 60.0).min(65_535.0) as u16;
        PmsReading {
            cf1: MassConcentration {
                pm1_0_ug_m3: cf1(a.pm1_ug_m3),
                pm2_5_ug_m3: cf1(pm),
                pm10_ug_m3: cf1(a.pm10_ug_m3),
            },
            atmospheric: MassConcentration {
                pm1_0_ug_m3: atm(a.pm1_ug_m3),
                pm2_5_ug_m3: atm(pm),
                pm10_ug_m3: atm(a.pm10_ug_m3),
            },
            counts: ParticleCounts {
                over_0_3um: counts.saturating_mul(3),
                over_0_5um: counts,
                over_1_0um: counts / 4,
                over_2_5um: counts / 40,
                over_5_0um: counts / 200,
                over_10um: counts / 1000,
            },
            version: 0x97,
            error_code: 0,
        }
    }
}

impl IoErrorType for SimPmsUart {
    type Error = embedded_io_async::ErrorKind;
}

impl Write for SimPmsUart {
    async fn write(&mut self, buf: &[u8]) -> Result<usize, Self::Error> {
        // A passive-mode read request: 42 4D E2 00 00 01 71.
        if buf.get(2) == Some(&0xE2) {
            let t = self.world.now();
            let fault = if self.dead {
                Fault::NotAnswering
            } else {
                self.world.model.fault(&self.world.post, PMS, t)
            };
            match fault {
                Fault::NotAnswering => {}
                Fault::Stuck => {
                    let r = *self.last.get_or_insert_with(PmsReading::default);
                    self.out.extend_from_slice(&encode_frame(&r));
                }
                Fault::None => {
                    self.frames += 1;
                    // Now and then the line carries noise before a frame (the parser must resync).
                    if unit(self.world.model_seed(), self.frames, 77, 0) < 0.05 {
                        self.out.extend_from_slice(&[0x00, 0x42, 0x13, 0xFF]);
                    }
                    let r = self.reading();
                    self.last = Some(r);
                    self.out.extend_from_slice(&encode_frame(&r));
                }
            }
        }
        Ok(buf.len())
    }

    async fn flush(&mut self) -> Result<(), Self::Error> {
        Ok(())
    }
}

impl World {
    fn model_seed(&self) -> u64 {
        crate::model::post_key(&self.post)
    }
}

impl Read for SimPmsUart {
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, Self::Error> {
        if self.out.is_empty() {
            // A silent sensor: the driver's timeout ends the wait.
            std::future::pending::<()>().await;
        }
        let n = buf.len().min(self.out.len());
        buf[..n].copy_from_slice(&self.out[..n]);
        self.out.drain(..n);
        Ok(n)
    }
}

/// What an I²C device on the simulated bus is.
pub enum Personality {
    /// An SHT3x.
    Sht3x,
    /// An ADS1115 carrying the NO2 cell's WE (AIN0) and AE (AIN1).
    No2Adc(No2SensorConfig),
    /// An ADS1115 carrying 4-20 mA river probes on AIN0..3.
    RiverAdc(Vec<LinearProbe>),
}

/// One device on its own simulated I²C bus.
pub struct SimI2c {
    world: World,
    personality: Personality,
    fault_index: u64,
    channel: usize,
    pending: Vec<u8>,
    stuck: Option<Vec<u8>>,
    dead: bool,
}

impl SimI2c {
    /// A device in `world`.
    pub fn new(world: World, personality: Personality) -> Self {
        let fault_index = match personality {
            Personality::Sht3x => CLIMATE,
            _ => GAS_OR_RIVER,
        };
        Self {
            world,
            personality,
            fault_index,
            channel: 0,
            pending: Vec::new(),
            stuck: None,
            dead: false,
        }
    }

    /// When `dead`, the device never acknowledges its address.
    pub fn dead(mut self, dead: bool) -> Self {
        self.dead = dead;
        self
    }

    fn on_write(&mut self, bytes: &[u8]) {
        let t = self.world.now();
        match (&self.personality, bytes) {
            (Personality::Sht3x, [0x24, 0x00]) => {
                let a = self.world.air(t);
                let traw = (((a.temperature_c + 45.0) / 175.0 * 65535.0).round())
                    .clamp(0.0, 65535.0) as u16;
                let hraw = ((a.humidity_pct / 100.0 * 65535.0).round()).clamp(0.0, 65535.0) as u16;
                let [t0, t1] = traw.to_be_bytes();
                let [h0, h1] = hraw.to_be_bytes();
                self.pending = vec![t0, t1, crc8(&[t0, t1]), h0, h1, crc8(&[h0, h1])];
            }
            (Personality::No2Adc(_) | Personality::RiverAdc(_), [0x01, hi, _lo]) => {
                self.channel = usize::from((hi >> 4) & 0b11);
            }
            (Personality::No2Adc(cell), [0x00]) => {
                let a = self.world.air(t);
                let tk = a.temperature_c + f64::from(ZERO_CELSIUS_K);
                // Invert the conversion the firmware does: µg/m³ -> ppb at this T and P.
                let ppb = a.no2_ug_m3 * 8.314_462_6 * tk / (46.0055 * a.pressure_pa) * 1000.0;
                // The auxiliary electrode drifts with temperature; the WE carries the same
                // baseline scaled by nT, which the firmware's correction removes.
                let ae_u = 2.0 + 0.15 * a.temperature_c;
                let we_u = ppb * f64::from(cell.sensitivity_mv_per_ppb)
                    + f64::from(b43f_nt(a.temperature_c as f32)) * ae_u;
                let mv = if self.channel == 0 {
                    f64::from(cell.we_zero_mv) + we_u
                } else {
                    f64::from(cell.ae_zero_mv) + ae_u
                };
                self.pending = Counts::from_millivolts(mv as f32).0.to_be_bytes().to_vec();
            }
            (Personality::RiverAdc(probes), [0x00]) => {
                let r = self.world.river(t);
                let value = |p: &LinearProbe| match p.quantity {
                    protocol::Quantity::WaterLevel => r.level_cm,
                    protocol::Quantity::WaterTemperature => r.water_temperature_c,
                    protocol::Quantity::Conductivity => r.conductivity_us_cm,
                    protocol::Quantity::Turbidity => r.turbidity_ntu,
                    protocol::Quantity::DissolvedOxygen => r.dissolved_oxygen_mg_l,
                    protocol::Quantity::Ph => r.ph,
                    _ => 0.0,
                };
                let mv = probes
                    .get(self.channel)
                    .map_or(0.0, |p| p.millivolts_for(value(p) as f32));
                self.pending = Counts::from_millivolts(mv).0.to_be_bytes().to_vec();
            }
            _ => {}
        }
    }
}

impl I2cErrorType for SimI2c {
    type Error = ErrorKind;
}

impl I2c for SimI2c {
    async fn transaction(
        &mut self,
        _address: u8,
        operations: &mut [Operation<'_>],
    ) -> Result<(), Self::Error> {
        let fault = self
            .world
            .model
            .fault(&self.world.post, self.fault_index, self.world.now());
        if self.dead || fault == Fault::NotAnswering {
            return Err(ErrorKind::NoAcknowledge(NoAcknowledgeSource::Address));
        }
        for op in operations {
            match op {
                Operation::Write(bytes) => self.on_write(bytes),
                Operation::Read(buf) => {
                    let data = match (&fault, &self.stuck) {
                        (Fault::Stuck, Some(s)) if s.len() == buf.len() => s.clone(),
                        _ => std::mem::take(&mut self.pending),
                    };
                    if data.len() != buf.len() {
                        return Err(ErrorKind::NoAcknowledge(NoAcknowledgeSource::Data));
                    }
                    buf.copy_from_slice(&data);
                    if !matches!(
                        self.personality,
                        Personality::RiverAdc(_) | Personality::No2Adc(_)
                    ) {
                        self.stuck = Some(data);
                    }
                }
            }
        }
        Ok(())
    }
}

/// The board's vitals: a cellular modem's RSSI around −71 dBm and a 12 V supply rail, each with
/// a little deterministic noise per reading.
#[derive(Debug, Clone)]
pub struct SimVitals {
    key: u64,
    readings: u64,
}

impl SimVitals {
    /// Vitals whose noise derives from `post`.
    pub fn new(post: &PostDescriptor) -> Self {
        Self {
            key: crate::model::post_key(post),
            readings: 0,
        }
    }

    fn noise(&mut self, salt: u64) -> f64 {
        self.readings += 1;
        unit(self.key, self.readings, salt, 0) * 2.0 - 1.0
    }
}

impl taza_firmware_core::uplink::Vitals for SimVitals {
    fn rssi_dbm(&mut self) -> Option<i16> {
        Some((-71.0 + 3.0 * self.noise(901)).round() as i16)
    }
    fn supply_mv(&mut self) -> Option<u16> {
        Some((12_000.0 + 150.0 * self.noise(902)).round() as u16)
    }
}
