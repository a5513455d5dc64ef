//! The [`Sensor`] trait every driver implements and the one generic loop that runs a sensor:
//! [`run_sensor`] polls at the configured cadence, stamps each poll with the wall clock and
//! `try_send`s a [`SampleBatch`] into the sampler's channel (a full channel drops the batch and
//! counts it: a sensor task never stalls its bus). A failing sensor is retried with exponential
//! backoff, re-initialised after [`REINIT_AFTER_FAILURES`] failures in a row, and reported to the
//! sampler as missed so its window carries `SENSOR_NOT_ANSWERING`.

use core::sync::atomic::{AtomicU32, Ordering};

use embassy_sync::blocking_mutex::raw::RawMutex;
use embassy_sync::channel::Sender;
use embassy_sync::watch::Receiver;
use embassy_time::{Duration, Timer};
use protocol::post_config::PostConfig;
use protocol::{QaFlags, Quantity, UnixSeconds};

use crate::fmt::{debug, warn};
use crate::Clock;

/// Most samples one poll yields (an optical PM sensor gives three, a river ADC up to four).
pub const MAX_SAMPLES_PER_POLL: usize = 6;
/// A sensor that failed this many polls in a row is initialised again.
pub const REINIT_AFTER_FAILURES: u32 = 3;
/// Longest wait between retries of a failing sensor.
pub const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// One value from one poll, in `quantity.unit()`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// What was measured.
    pub quantity: Quantity,
    /// The value reported, in `quantity.unit()`.
    pub value: f32,
    /// The value a correction formula takes as input, same unit. For a Plantower PM2.5 sample
    /// this is the CF=1 channel the US EPA correction was fitted on, while `value` is the
    /// atmospheric channel; for everything else it equals `value`.
    pub basis: f32,
    /// Flags the driver knows about this sample (e.g. `SATURATED` at the sensor's maximum).
    pub flags: QaFlags,
}

impl Sample {
    /// A sample whose correction basis is its value.
    pub const fn new(quantity: Quantity, value: f32) -> Self {
        Self {
            quantity,
            value,
            basis: value,
            flags: QaFlags::NONE,
        }
    }
}

/// The samples of one poll.
pub type Samples = heapless::Vec<Sample, MAX_SAMPLES_PER_POLL>;

/// What one poll of one sensor produced, stamped with the wall clock.
#[derive(Debug, Clone, PartialEq)]
pub struct SampleBatch {
    /// When the poll finished.
    pub at: UnixSeconds,
    /// The samples (empty when the sensor did not answer).
    pub samples: Samples,
    /// The quantities that are missing because the sensor did not answer.
    pub missed: &'static [Quantity],
}

/// A sensor driver as the sampling loop sees it (after eclssd's `Sensor`).
pub trait Sensor {
    /// Short name for logs.
    const NAME: &'static str;
    /// The fastest this sensor can usefully be polled; the configured interval is raised to it.
    const MIN_POLL_INTERVAL: Duration;
    /// Bus or content failure.
    type Error: core::fmt::Debug;

    /// The quantities a successful poll yields.
    fn quantities(&self) -> &'static [Quantity];

    /// Brings the sensor to a known state (wake, mode, soft reset).
    async fn init(&mut self) -> Result<(), Self::Error>;

    /// Takes one measurement and appends its samples to `out`.
    async fn poll(&mut self, out: &mut Samples) -> Result<(), Self::Error>;
}

/// Counters a sensor task publishes for the status message and the simulator's checks.
#[derive(Debug, Default)]
pub struct SensorHealth {
    /// Polls that failed since boot.
    pub errors: AtomicU32,
    /// Polls that succeeded since boot.
    pub polls: AtomicU32,
    /// Batches dropped because the sampler's channel was full.
    pub dropped_batches: AtomicU32,
}

impl SensorHealth {
    /// All counters at zero.
    pub const fn new() -> Self {
        Self {
            errors: AtomicU32::new(0),
            polls: AtomicU32::new(0),
            dropped_batches: AtomicU32::new(0),
        }
    }
}

/// The poll interval for `config`, never below the sensor's minimum.
pub fn poll_interval<S: Sensor>(config: &PostConfig) -> Duration {
    let configured = Duration::from_secs(u64::from(config.sample_interval_s));
    if configured < S::MIN_POLL_INTERVAL {
        S::MIN_POLL_INTERVAL
    } else {
        configured
    }
}

/// Wait before retry number `failures` (1-based): the poll interval doubled per failure,
/// capped at [`MAX_BACKOFF`].
pub fn backoff(interval: Duration, failures: u32) -> Duration {
    let shift = failures.saturating_sub(1).min(16);
    let ticks = interval.as_ticks().saturating_mul(1u64 << shift);
    let d = Duration::from_ticks(ticks);
    if d > MAX_BACKOFF {
        MAX_BACKOFF
    } else {
        d
    }
}

/// Runs `sensor` forever: poll on the configured cadence (from `config`, which may change at
/// run time), stamp with `clock`, send to `out`. Never returns; cancel it by dropping the future.
pub async fn run_sensor<S: Sensor, M: RawMutex, const N: usize, const W: usize>(
    sensor: &mut S,
    clock: Clock,
    mut config: Receiver<'_, M, PostConfig, W>,
    out: Sender<'_, M, SampleBatch, N>,
    health: &SensorHealth,
) -> ! {
    let mut cfg = config.get().await;
    let mut initialised = false;
    let mut failures: u32 = 0;
    loop {
        if let Some(new) = config.try_changed() {
            cfg = new;
        }
        let interval = poll_interval::<S>(&cfg);
        if !initialised {
            match sensor.init().await {
                Ok(()) => initialised = true,
                Err(e) => warn!("{}: init failed: {:?}", S::NAME, e),
            }
        }
        let mut samples = Samples::new();
        let result = if initialised {
            sensor.poll(&mut samples).await
        } else {
            Ok(())
        };
        let ok = initialised && result.is_ok();
        if let Err(e) = &result {
            debug!("{}: poll failed: {:?}", S::NAME, e);
        }
        let batch = if ok {
            failures = 0;
            health.polls.fetch_add(1, Ordering::Relaxed);
            SampleBatch {
                at: clock.now(),
                samples,
                missed: &[],
            }
        } else {
            failures = failures.saturating_add(1);
            health.errors.fetch_add(1, Ordering::Relaxed);
            if failures >= REINIT_AFTER_FAILURES {
                initialised = false;
            }
            SampleBatch {
                at: clock.now(),
                samples: Samples::new(),
                missed: sensor.quantities(),
            }
        };
        if out.try_send(batch).is_err() {
            health.dropped_batches.fetch_add(1, Ordering::Relaxed);
        }
        let wait = if failures == 0 {
            interval
        } else {
            backoff(interval, failures)
        };
        Timer::after(wait).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_per_failure_and_stops_at_five_minutes() {
        let i = Duration::from_secs(10);
        assert_eq!(backoff(i, 1), Duration::from_secs(10));
        assert_eq!(backoff(i, 2), Duration::from_secs(20));
        assert_eq!(backoff(i, 3), Duration::from_secs(40));
        assert_eq!(backoff(i, 6), Duration::from_secs(300));
        assert_eq!(backoff(i, 60), MAX_BACKOFF);
    }
}
