//! embassy-time driver (`embassy_time_driver::Driver`, embassy-time 0.5) on the CMSDK APB
//! timer 0 of QEMU's mps2-an386 (`0x4000_0000`, NVIC line 8; ARM DDI 0479 section 4.4).
//!
//! The timer counts SYSCLK (25 MHz) down from RELOAD and interrupts at zero, then reloads: a
//! 1 kHz tick. Each tick advances a 64-bit millisecond count and, when the earliest alarm is
//! due, hands the expired wakers to the executor (embassy-time-queue-utils' integrated queue,
//! one timer node per task). So time has 1 ms resolution, which is plenty for 1 s sampling,
//! and `now()` is in embassy's default 1 MHz ticks. Why a periodic tick rather than a one-shot
//! compare: the CMSDK timer has no compare register, and a 1 kHz interrupt costs QEMU nothing
//! measurable. SysTick would work too; timer 0 keeps SysTick free and is clocked by the same
//! 25 MHz as on the board.
//!
//! The counters live in critical-section mutexes because Cortex-M4 has no 64-bit atomics and
//! the interrupt writes what thread mode reads.

use core::cell::{Cell, RefCell};
use core::task::Waker;

use critical_section::{CriticalSection, Mutex};
use embassy_time_driver::{Driver, TICK_HZ};
use embassy_time_queue_utils::Queue;

use crate::mmio::Reg;
use crate::uart::SYSCLK_HZ;

const TIMER0_BASE: usize = 0x4000_0000;
const CTRL: Reg = Reg::at(TIMER0_BASE, 0x00);
const RELOAD: Reg = Reg::at(TIMER0_BASE, 0x08);
const INT_CLEAR: Reg = Reg::at(TIMER0_BASE, 0x0C);
const CTRL_ENABLE: u32 = 1 << 0;
const CTRL_INT_ENABLE: u32 = 1 << 3;

/// NVIC line of timer 0 on mps2-an386.
pub const TIMER0_IRQ: u16 = 8;
/// Interrupts per second.
const TICKS_PER_S: u32 = 1_000;
/// embassy-time ticks per timer interrupt.
const EMBASSY_TICKS_PER_TICK: u64 = TICK_HZ / TICKS_PER_S as u64;

/// The driver's state: milliseconds since [`start`], the earliest alarm, the timer queue.
pub struct Mps2Timer {
    elapsed_ms: Mutex<Cell<u64>>,
    /// embassy ticks of the earliest pending wake-up (`u64::MAX`: none).
    alarm_at: Mutex<Cell<u64>>,
    queue: Mutex<RefCell<Queue>>,
}

embassy_time_driver::time_driver_impl!(static DRIVER: Mps2Timer = Mps2Timer {
    elapsed_ms: Mutex::new(Cell::new(0)),
    alarm_at: Mutex::new(Cell::new(u64::MAX)),
    queue: Mutex::new(RefCell::new(Queue::new())),
});

/// Starts timer 0 at 1 kHz. The caller unmasks [`TIMER0_IRQ`] in the NVIC.
pub fn start() {
    CTRL.write(0);
    RELOAD.write(SYSCLK_HZ / TICKS_PER_S - 1);
    INT_CLEAR.write(1);
    CTRL.write(CTRL_ENABLE | CTRL_INT_ENABLE);
}

/// Timer 0's interrupt: one more millisecond; wake whatever is due.
pub fn on_interrupt() {
    INT_CLEAR.write(1);
    critical_section::with(|cs| {
        let ms = DRIVER.elapsed_ms.borrow(cs);
        ms.set(ms.get() + 1);
        if DRIVER.now_in(cs) >= DRIVER.alarm_at.borrow(cs).get() {
            DRIVER.rearm(cs);
        }
    });
}

impl Mps2Timer {
    fn now_in(&self, cs: CriticalSection<'_>) -> u64 {
        self.elapsed_ms.borrow(cs).get() * EMBASSY_TICKS_PER_TICK
    }

    /// Wakes expired timers and records the next expiry (always in the future, so the tick
    /// that reaches it will call this again).
    fn rearm(&self, cs: CriticalSection<'_>) {
        let now = self.now_in(cs);
        let next = self.queue.borrow(cs).borrow_mut().next_expiration(now);
        self.alarm_at.borrow(cs).set(next);
    }
}

impl Driver for Mps2Timer {
    fn now(&self) -> u64 {
        critical_section::with(|cs| self.now_in(cs))
    }

    fn schedule_wake(&self, at: u64, waker: &Waker) {
        critical_section::with(|cs| {
            if self.queue.borrow(cs).borrow_mut().schedule_wake(at, waker) {
                self.rearm(cs);
            }
        });
    }
}
