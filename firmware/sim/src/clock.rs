//! Virtual time for the fleet. The simulator drives embassy-time's mock driver from one clock
//! thread, `rate` simulated seconds per real second, instead of using embassy-time's `std`
//! driver: a simulator wants accelerated, seed-reproducible time, and the `std` and
//! `mock-driver` features define the same driver symbols, so the firmware core's mock-time
//! tests and the sim could not otherwise be built in one `cargo test` invocation.
//!
//! The driver is one per process: the first `start` fixes the rate; a later call with another
//! rate is refused.

use std::sync::OnceLock;
use std::time::{Duration as StdDuration, Instant as StdInstant};

use embassy_time::{Duration, MockDriver};

static RATE: OnceLock<f64> = OnceLock::new();

/// How often the clock thread advances time (real time).
const TICK: StdDuration = StdDuration::from_millis(1);

/// Starts the clock thread at `rate` (once per process). Fails if it already runs at another
/// rate.
pub fn start(rate: f64) -> Result<(), String> {
    if !(rate.is_finite() && rate > 0.0) {
        return Err(format!("rate must be positive, got {rate}"));
    }
    let running = *RATE.get_or_init(|| {
        std::thread::Builder::new()
            .name("taza-sim-clock".into())
            .spawn(move || {
                let t0 = StdInstant::now();
                let mut advanced_us: u64 = 0;
                loop {
                    std::thread::sleep(TICK);
                    let target_us = (t0.elapsed().as_secs_f64() * rate * 1e6) as u64;
                    if target_us > advanced_us {
                        MockDriver::get().advance(Duration::from_micros(target_us - advanced_us));
                        advanced_us = target_us;
                    }
                }
            })
            .map(|_| ())
            .unwrap_or(());
        rate
    });
    if (running - rate).abs() > f64::EPSILON {
        return Err(format!(
            "the simulator clock already runs at rate {running}; one rate per process"
        ));
    }
    Ok(())
}

/// The rate the clock runs at, if started.
pub fn rate() -> Option<f64> {
    RATE.get().copied()
}
