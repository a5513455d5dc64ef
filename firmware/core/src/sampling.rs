//! Averaging windows and QA flags, then the sampler task that turns closed windows into SenML
//! CBOR records in the store-and-forward queue.
//!
//! [`Averager`] is pure: it is fed [`SampleBatch`]es stamped with the wall clock and told the
//! time when asked to close a window, so every QA rule is a table test. Windows are aligned to
//! the Unix epoch (`[k·window, (k+1)·window)`), and a record's time is its window's end.
//!
//! QA rules for each quantity in a window:
//! - `WARM_UP`: a sample taken before boot + `warm_up_s`, or flagged by its driver;
//! - `OUT_OF_RANGE`: the mean outside the quantity's measuring range ([`measuring_range`]);
//! - `STUCK`: at least [`STUCK_MIN_SAMPLES`] samples, all identical and non-zero;
//! - `SATURATED`: any sample at the sensor's full scale (set by the driver);
//! - `HIGH_HUMIDITY`: on PM records when the window's mean humidity is above 95 %RH;
//! - `SENSOR_NOT_ANSWERING`: any poll of the sensor failed during the window (a window where
//!   it never answered has no record at all: a gap, not a made-up value);
//! - `CORRECTED`: the EPA humidity correction or a linear calibration changed the value; the
//!   uncorrected mean is kept in [`WindowRecord::raw_value`].

use embassy_futures::select::{select, Either};
use embassy_sync::blocking_mutex::raw::RawMutex;
use embassy_sync::channel::Receiver as ChannelReceiver;
use embassy_sync::mutex::Mutex;
use embassy_sync::signal::Signal;
use embassy_sync::watch::Receiver;
use embassy_time::Timer;
use embedded_storage_async::nor_flash::MultiwriteNorFlash;
use protocol::post_config::PostConfig;
use protocol::{Measurement, PostId, QaFlags, Quantity, UnixSeconds};

use crate::correction::{calibrate, epa_pm2_5_ug_m3};
use crate::fmt::warn;
use crate::sensor::SampleBatch;
use crate::store::{RecordQueue, MAX_RECORD_BYTES};
use crate::Clock;

/// Most quantities one post averages.
pub const MAX_QUANTITIES: usize = 10;
/// Fewest identical samples that count as a stuck sensor.
pub const STUCK_MIN_SAMPLES: u32 = 3;
/// Above this relative humidity (%) optical PM readings are unreliable.
pub const HIGH_HUMIDITY_PCT: f32 = 95.0;

/// The range a mean must fall in, in `quantity.unit()` (sensor measuring ranges and physical
/// limits for Almaty; electrochemical NO2 may read slightly negative near zero).
pub const fn measuring_range(q: Quantity) -> (f32, f32) {
    match q {
        Quantity::Pm1 | Quantity::Pm2_5 | Quantity::Pm10 => (0.0, 1000.0),
        Quantity::No2 => (-20.0, 2000.0),
        Quantity::Temperature => (-40.0, 50.0),
        Quantity::Humidity => (0.0, 100.0),
        Quantity::Pressure => (60_000.0, 110_000.0),
        Quantity::WaterLevel => (-100.0, 1000.0),
        Quantity::WaterTemperature => (-1.0, 35.0),
        Quantity::Conductivity => (0.0, 5000.0),
        Quantity::Turbidity => (0.0, 4000.0),
        Quantity::DissolvedOxygen => (0.0, 20.0),
        Quantity::Ph => (0.0, 14.0),
        Quantity::Rssi => (-140.0, 0.0),
        Quantity::SupplyVoltage => (0.0, 30.0),
        _ => (f32::MIN, f32::MAX),
    }
}

const fn is_optical_pm(q: Quantity) -> bool {
    matches!(q, Quantity::Pm1 | Quantity::Pm2_5 | Quantity::Pm10)
}

#[derive(Debug, Clone, Copy)]
struct Accumulator {
    quantity: Quantity,
    n: u32,
    sum: f32,
    basis_sum: f32,
    min: f32,
    max: f32,
    flags: QaFlags,
    missed: u32,
}

impl Accumulator {
    const fn new(quantity: Quantity) -> Self {
        Self {
            quantity,
            n: 0,
            sum: 0.0,
            basis_sum: 0.0,
            min: f32::MAX,
            max: f32::MIN,
            flags: QaFlags::NONE,
            missed: 0,
        }
    }
}

/// One quantity's averaged value over a window.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WindowRecord {
    /// What.
    pub quantity: Quantity,
    /// The value to publish (corrected when `flags` has `CORRECTED`), in `quantity.unit()`.
    pub value: f32,
    /// The uncorrected mean, in `quantity.unit()`.
    pub raw_value: f32,
    /// QA flags.
    pub flags: QaFlags,
    /// Samples averaged.
    pub samples: u32,
}

/// A closed window's records, all stamped with the window's end.
#[derive(Debug, Clone, PartialEq)]
pub struct ClosedWindow {
    /// End of the window (exclusive), the records' time.
    pub end: UnixSeconds,
    /// One record per quantity that answered at least once.
    pub records: heapless::Vec<WindowRecord, MAX_QUANTITIES>,
}

impl ClosedWindow {
    /// The records as wire measurements.
    pub fn measurements(&self) -> heapless::Vec<Measurement, MAX_QUANTITIES> {
        self.records
            .iter()
            .map(|r| Measurement {
                quantity: r.quantity,
                value: f64::from(r.value),
                at: self.end,
                flags: r.flags,
                // The window is the post's reporting interval, which the gateway knows.
                window_s: None,
            })
            .collect()
    }

    /// The record for `q`.
    pub fn get(&self, q: Quantity) -> Option<&WindowRecord> {
        self.records.iter().find(|r| r.quantity == q)
    }
}

/// Accumulates samples into epoch-aligned windows.
#[derive(Debug, Clone)]
pub struct Averager {
    config: PostConfig,
    warm_up_until: UnixSeconds,
    window_start: Option<i64>,
    acc: heapless::Vec<Accumulator, MAX_QUANTITIES>,
}

impl Averager {
    /// An averager for a post that booted at `boot`.
    pub fn new(config: PostConfig, boot: UnixSeconds) -> Self {
        let warm_up_until = boot.offset(i64::from(config.warm_up_s));
        Self {
            config,
            warm_up_until,
            window_start: None,
            acc: heapless::Vec::new(),
        }
    }

    /// Uses `config` from the next window on (warm-up keeps its boot-time end).
    pub fn set_config(&mut self, config: PostConfig) {
        self.config = config;
    }

    fn window_s(&self) -> i64 {
        i64::from(self.config.window_s.max(1))
    }

    /// End of the open window, if one is open.
    pub fn window_end(&self) -> Option<UnixSeconds> {
        self.window_start.map(|s| UnixSeconds(s + self.window_s()))
    }

    /// Adds one poll's samples; if they belong to a later window, the open one is closed and
    /// returned first.
    pub fn add(&mut self, batch: &SampleBatch) -> Option<ClosedWindow> {
        let w = self.window_s();
        let start = batch.at.0.div_euclid(w) * w;
        let closed = match self.window_start {
            Some(open) if start > open => self.close(),
            // A sample older than the open window (clock stepped back) joins the open window.
            _ => None,
        };
        if self.window_start.is_none() {
            self.window_start = Some(start);
        }
        let warm = batch.at < self.warm_up_until;
        for s in &batch.samples {
            let Some(a) = self.slot(s.quantity) else {
                continue;
            };
            a.n += 1;
            a.sum += s.value;
            a.basis_sum += s.basis;
            a.min = a.min.min(s.value);
            a.max = a.max.max(s.value);
            a.flags = a.flags.union(s.flags);
            if warm {
                a.flags = a.flags.union(QaFlags::WARM_UP);
            }
        }
        for q in batch.missed {
            if let Some(a) = self.slot(*q) {
                a.missed += 1;
            }
        }
        closed
    }

    /// Closes the open window if `now` is at or past its end.
    pub fn close_if_due(&mut self, now: UnixSeconds) -> Option<ClosedWindow> {
        match self.window_end() {
            Some(end) if now >= end => self.close(),
            _ => None,
        }
    }

    fn slot(&mut self, q: Quantity) -> Option<&mut Accumulator> {
        let i = match self.acc.iter().position(|a| a.quantity == q) {
            Some(i) => i,
            None => {
                self.acc.push(Accumulator::new(q)).ok()?;
                self.acc.len() - 1
            }
        };
        self.acc.get_mut(i)
    }

    fn close(&mut self) -> Option<ClosedWindow> {
        let end = self.window_end()?;
        self.window_start = None;
        let humidity = self
            .acc
            .iter()
            .find(|a| a.quantity == Quantity::Humidity && a.n > 0)
            .map(|a| a.sum / a.n as f32);
        let mut records = heapless::Vec::new();
        for a in &self.acc {
            if a.n == 0 {
                continue;
            }
            let mean = a.sum / a.n as f32;
            let mut flags = a.flags;
            let (lo, hi) = measuring_range(a.quantity);
            if !(lo..=hi).contains(&mean) {
                flags = flags.union(QaFlags::OUT_OF_RANGE);
            }
            if a.n >= STUCK_MIN_SAMPLES && a.min == a.max && a.min != 0.0 {
                flags = flags.union(QaFlags::STUCK);
            }
            if a.missed > 0 {
                flags = flags.union(QaFlags::SENSOR_NOT_ANSWERING);
            }
            let humid = humidity.is_some_and(|h| h > HIGH_HUMIDITY_PCT);
            if humid && is_optical_pm(a.quantity) {
                flags = flags.union(QaFlags::HIGH_HUMIDITY);
            }
            let mut value = mean;
            if a.quantity == Quantity::Pm2_5 && self.config.pm_humidity_correction {
                if let Some(rh) = humidity {
                    value = epa_pm2_5_ug_m3(a.basis_sum / a.n as f32, rh);
                    flags = flags.union(QaFlags::CORRECTED);
                }
            }
            if let Some(cal) = self.config.calibration(a.quantity) {
                value = calibrate(value, cal);
                flags = flags.union(QaFlags::CORRECTED);
            }
            let _ = records.push(WindowRecord {
                quantity: a.quantity,
                value,
                raw_value: mean,
                flags,
                samples: a.n,
            });
        }
        self.acc.clear();
        Some(ClosedWindow { end, records })
    }
}

/// Counters of the sampler task.
#[derive(Debug, Default)]
pub struct SamplerStats {
    /// Windows encoded and queued.
    pub windows: core::sync::atomic::AtomicU32,
    /// Windows lost to an encoding or flash error.
    pub lost: core::sync::atomic::AtomicU32,
}

impl SamplerStats {
    /// Zeroed counters.
    pub const fn new() -> Self {
        Self {
            windows: core::sync::atomic::AtomicU32::new(0),
            lost: core::sync::atomic::AtomicU32::new(0),
        }
    }
}

/// Encodes a closed window as one SenML CBOR pack into `buf`.
pub fn encode_window(
    post: &PostId,
    w: &ClosedWindow,
    buf: &mut [u8],
) -> Result<usize, protocol::senml::EncodeError> {
    protocol::senml::encode(post, &w.measurements(), buf)
}

/// The sampler task: receives sample batches, closes windows (on the next window's first
/// sample, or one sampling interval after the window's end when sensors are silent), encodes
/// them and pushes them into `queue`, then raises `queued`. Never waits on the network.
#[allow(clippy::too_many_arguments)]
pub async fn run_sampler<M: RawMutex, F: MultiwriteNorFlash, const N: usize, const W: usize>(
    post: &PostId,
    clock: Clock,
    boot: UnixSeconds,
    mut config: Receiver<'_, M, PostConfig, W>,
    samples: ChannelReceiver<'_, M, SampleBatch, N>,
    queue: &Mutex<M, RecordQueue<F>>,
    queued: &Signal<M, ()>,
    stats: &SamplerStats,
) -> ! {
    let mut averager = Averager::new(config.get().await, boot);
    let mut buf = [0u8; MAX_RECORD_BYTES];
    loop {
        if let Some(cfg) = config.try_changed() {
            averager.set_config(cfg);
        }
        let grace = i64::from(averager.config.sample_interval_s);
        let closed = match averager.window_end() {
            Some(end) => {
                let deadline = clock.instant_of(end.offset(grace));
                match select(samples.receive(), Timer::at(deadline)).await {
                    Either::First(batch) => averager.add(&batch),
                    Either::Second(()) => averager.close_if_due(clock.now()),
                }
            }
            None => averager.add(&samples.receive().await),
        };
        let Some(window) = closed else { continue };
        if window.records.is_empty() {
            continue;
        }
        let stored = match encode_window(post, &window, &mut buf) {
            Ok(n) => queue
                .lock()
                .await
                .push(buf.get(..n).unwrap_or(&[]))
                .await
                .is_ok(),
            Err(_) => false,
        };
        if stored {
            stats
                .windows
                .fetch_add(1, core::sync::atomic::Ordering::Relaxed);
            queued.signal(());
        } else {
            warn!("window at {} lost", window.end.0);
            stats
                .lost
                .fetch_add(1, core::sync::atomic::Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sensor::{Sample, Samples};

    const BOOT: UnixSeconds = UnixSeconds(1_767_225_600); // 2026-01-01T00:00:00Z

    fn config() -> PostConfig {
        PostConfig {
            sample_interval_s: 10,
            window_s: 60,
            warm_up_s: 30,
            pm_humidity_correction: false,
            ..Default::default()
        }
    }

    fn batch(at_s: i64, samples: &[(Quantity, f32)]) -> SampleBatch {
        let samples: Samples = samples.iter().map(|(q, v)| Sample::new(*q, *v)).collect();
        SampleBatch {
            at: BOOT.offset(at_s),
            samples,
            missed: &[],
        }
    }

    /// Feeds batches and returns the first closed window.
    fn run(cfg: PostConfig, batches: &[SampleBatch]) -> ClosedWindow {
        let mut a = Averager::new(cfg, BOOT);
        let mut out = None;
        for b in batches {
            if let Some(w) = a.add(b) {
                out.get_or_insert(w);
            }
        }
        out.or_else(|| a.close_if_due(BOOT.offset(1_000_000)))
            .expect("a window closes")
    }

    #[test]
    fn window_mean_is_stamped_with_the_window_end() {
        let w = run(
            config(),
            &[
                batch(60, &[(Quantity::No2, 40.0)]),
                batch(70, &[(Quantity::No2, 50.0)]),
                batch(80, &[(Quantity::No2, 60.0)]),
                batch(120, &[(Quantity::No2, 99.0)]),
            ],
        );
        assert_eq!(w.end, BOOT.offset(120));
        let r = w.get(Quantity::No2).unwrap();
        assert_eq!((r.value, r.samples, r.flags), (50.0, 3, QaFlags::NONE));
    }

    #[test]
    fn samples_during_warm_up_flag_the_window() {
        let w = run(
            config(),
            &[
                batch(0, &[(Quantity::No2, 1.0)]),
                batch(40, &[(Quantity::No2, 2.0)]),
            ],
        );
        assert!(w
            .get(Quantity::No2)
            .unwrap()
            .flags
            .contains(QaFlags::WARM_UP));
    }

    #[test]
    fn qa_flags_table() {
        struct Case {
            name: &'static str,
            samples: &'static [(Quantity, f32)],
            quantity: Quantity,
            want: QaFlags,
        }
        let cases = [
            Case {
                name: "varying in range",
                samples: &[
                    (Quantity::Pm10, 20.0),
                    (Quantity::Pm10, 21.0),
                    (Quantity::Pm10, 22.0),
                ],
                quantity: Quantity::Pm10,
                want: QaFlags::NONE,
            },
            Case {
                name: "three identical non-zero",
                samples: &[
                    (Quantity::Temperature, 3.5),
                    (Quantity::Temperature, 3.5),
                    (Quantity::Temperature, 3.5),
                ],
                quantity: Quantity::Temperature,
                want: QaFlags::STUCK,
            },
            Case {
                name: "identical zeros are clean air, not stuck",
                samples: &[
                    (Quantity::Pm1, 0.0),
                    (Quantity::Pm1, 0.0),
                    (Quantity::Pm1, 0.0),
                ],
                quantity: Quantity::Pm1,
                want: QaFlags::NONE,
            },
            Case {
                name: "two identical are too few",
                samples: &[(Quantity::Temperature, 3.5), (Quantity::Temperature, 3.5)],
                quantity: Quantity::Temperature,
                want: QaFlags::NONE,
            },
            Case {
                name: "humidity above 100",
                samples: &[(Quantity::Humidity, 101.0), (Quantity::Humidity, 103.0)],
                quantity: Quantity::Humidity,
                want: QaFlags::OUT_OF_RANGE,
            },
            Case {
                name: "pH above 14",
                samples: &[(Quantity::Ph, 14.5)],
                quantity: Quantity::Ph,
                want: QaFlags::OUT_OF_RANGE,
            },
            Case {
                name: "PM in fog",
                samples: &[
                    (Quantity::Humidity, 96.0),
                    (Quantity::Humidity, 97.0),
                    (Quantity::Pm2_5, 80.0),
                    (Quantity::Pm2_5, 90.0),
                ],
                quantity: Quantity::Pm2_5,
                want: QaFlags::HIGH_HUMIDITY,
            },
            Case {
                name: "humidity of exactly 95 is not high",
                samples: &[(Quantity::Humidity, 95.0), (Quantity::Pm2_5, 80.0)],
                quantity: Quantity::Pm2_5,
                want: QaFlags::NONE,
            },
            Case {
                name: "fog does not flag NO2",
                samples: &[(Quantity::Humidity, 99.0), (Quantity::No2, 30.0)],
                quantity: Quantity::No2,
                want: QaFlags::NONE,
            },
        ];
        for c in cases {
            let batches: heapless::Vec<SampleBatch, 8> = c
                .samples
                .iter()
                .enumerate()
                .map(|(i, s)| batch(60 + 10 * i as i64, &[*s]))
                .collect();
            let w = run(config(), &batches);
            assert_eq!(w.get(c.quantity).unwrap().flags, c.want, "{}", c.name);
        }
    }

    #[test]
    fn driver_flags_and_missed_polls_carry_into_the_record() {
        let mut a = Averager::new(config(), BOOT);
        let mut saturated = batch(60, &[(Quantity::Pm10, 1000.0)]);
        saturated.samples[0].flags = QaFlags::SATURATED;
        a.add(&saturated);
        a.add(&SampleBatch {
            at: BOOT.offset(70),
            samples: Samples::new(),
            missed: &[Quantity::Pm10, Quantity::No2],
        });
        let w = a.close_if_due(BOOT.offset(120)).unwrap();
        let r = w.get(Quantity::Pm10).unwrap();
        assert_eq!(
            r.flags,
            QaFlags::SATURATED.union(QaFlags::SENSOR_NOT_ANSWERING)
        );
        // NO2 never answered: no record, a gap.
        assert!(w.get(Quantity::No2).is_none());
    }

    #[test]
    fn window_does_not_close_before_its_end() {
        let mut a = Averager::new(config(), BOOT);
        a.add(&batch(60, &[(Quantity::No2, 1.0)]));
        assert!(a.close_if_due(BOOT.offset(119)).is_none());
        assert!(a.close_if_due(BOOT.offset(120)).is_some());
        assert!(
            a.close_if_due(BOOT.offset(200)).is_none(),
            "nothing open any more"
        );
    }

    #[test]
    fn epa_correction_uses_cf1_and_humidity_and_keeps_the_raw_mean() {
        let cfg = PostConfig {
            pm_humidity_correction: true,
            ..config()
        };
        let mut a = Averager::new(cfg, BOOT);
        let mut b = batch(60, &[(Quantity::Humidity, 80.0)]);
        b.samples
            .push(Sample {
                quantity: Quantity::Pm2_5,
                value: 90.0,
                basis: 100.0,
                flags: QaFlags::NONE,
            })
            .unwrap();
        a.add(&b);
        let w = a.close_if_due(BOOT.offset(120)).unwrap();
        let r = w.get(Quantity::Pm2_5).unwrap();
        // CF=1 100 at 80 %RH: 0.786·100 − 0.0862·80 + 5.75 = 78.6 − 6.896 + 5.75 = 77.454
        assert!((r.value - 77.454).abs() < 1e-3);
        assert_eq!(r.raw_value, 90.0);
        assert!(r.flags.contains(QaFlags::CORRECTED));
    }

    #[test]
    fn linear_calibration_from_config_is_applied_and_flagged() {
        let mut cfg = config();
        cfg.calibrations
            .push(protocol::post_config::Calibration {
                quantity: Quantity::No2,
                gain: 0.5,
                offset: 2.0,
            })
            .unwrap();
        let w = run(cfg, &[batch(60, &[(Quantity::No2, 40.0)])]);
        let r = w.get(Quantity::No2).unwrap();
        assert_eq!((r.value, r.raw_value), (22.0, 40.0));
        assert_eq!(r.flags, QaFlags::CORRECTED);
    }
}
