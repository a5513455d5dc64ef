//! The status LED on PA5 (active high; a board LED + 1 kΩ to ground, see firmware/README.md),
//! for the technician on the ladder who has no probe attached: one short flash at boot shows
//! the image runs; a post that cannot run repeats a fault code of N flashes every few seconds.

use embassy_stm32::gpio::Output;
use embassy_time::{Duration, Timer};

/// Why the post does not run, as a number of flashes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, defmt::Format)]
pub enum FaultCode {
    /// One flash: the provisioning sector is erased (never provisioned).
    NotProvisioned = 1,
    /// Two flashes: the blob is damaged (bad magic, truncated, CRC mismatch) or written in a
    /// format version this firmware does not read.
    Damaged = 2,
    /// Three flashes: the blob is intact but refused (a bad field, TLS asked for, a sensor
    /// this board does not have).
    Refused = 3,
    /// Four flashes: the flash or a peripheral failed (hardware).
    Hardware = 4,
}

const FLASH_ON: Duration = Duration::from_millis(200);
const FLASH_OFF: Duration = Duration::from_millis(300);
const CODE_PAUSE: Duration = Duration::from_secs(2);

/// One short flash: the image booted.
pub async fn boot_flash(led: &mut Output<'_>) {
    led.set_high();
    Timer::after(FLASH_ON).await;
    led.set_low();
}

/// Repeats `code` on `led` forever, calling `log` about once a minute (a probe attached later
/// still sees why).
pub async fn show_fault(led: &mut Output<'_>, code: FaultCode, mut log: impl FnMut()) -> ! {
    let flashes = code as u32;
    let cycle = (FLASH_ON + FLASH_OFF) * flashes + CODE_PAUSE;
    let cycles_per_log = (60_000 / cycle.as_millis()).max(1);
    let mut cycle_no = 0u64;
    loop {
        if cycle_no % cycles_per_log == 0 {
            log();
        }
        cycle_no = cycle_no.wrapping_add(1);
        for _ in 0..flashes {
            led.set_high();
            Timer::after(FLASH_ON).await;
            led.set_low();
            Timer::after(FLASH_OFF).await;
        }
        Timer::after(CODE_PAUSE).await;
    }
}
