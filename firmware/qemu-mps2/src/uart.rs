//! CMSDK APB UART (ARM DDI 0479, "Cortex-M System Design Kit", section 4.3), as QEMU's
//! mps2-an386 wires five of them: UART0 at `0x4000_4000` (QEMU's first `-serial`, the console),
//! UART1 at `0x4000_5000` (the second `-serial`, the PM sensor), RX interrupt = 2·n, TX = 2·n+1.
//!
//! [`Console`] writes blocking (`core::fmt::Write`); it is what the panic handler uses too.
//! [`SensorUart`] implements embedded-io-async `Read` + `Write` for the core's PMS driver:
//! reads sleep on the RX interrupt (an `AtomicWaker` woken from [`on_rx_interrupt`]); writes
//! poll the TX-full bit and yield, because the sensor's 7-byte commands leave at once.
//!
//! The UART holds one received byte; QEMU stops feeding the chardev while it is full, so
//! nothing is lost however slowly the firmware reads (real 9600-baud hardware would overrun
//! after ~1 ms; a board crate would use the RX interrupt to fill a ring buffer).

use core::future::poll_fn;
use core::task::Poll;

use embassy_sync::waitqueue::AtomicWaker;
use embedded_io_async::{ErrorKind, ErrorType, Read, Write};

use crate::mmio::Reg;

/// QEMU's mps2 SYSCLK, which clocks the APB UARTs and timers (hw/arm/mps2.c `SYSCLK_FRQ`).
pub const SYSCLK_HZ: u32 = 25_000_000;

const STATE_TX_FULL: u32 = 1 << 0;
const STATE_RX_FULL: u32 = 1 << 1;
const STATE_RX_OVERRUN: u32 = 1 << 3;
const CTRL_TX_EN: u32 = 1 << 0;
const CTRL_RX_EN: u32 = 1 << 1;
const CTRL_RX_INT_EN: u32 = 1 << 3;
const INT_RX: u32 = 1 << 1;

/// Register block of one UART.
#[derive(Clone, Copy)]
struct Regs {
    data: Reg,
    state: Reg,
    ctrl: Reg,
    int_clear: Reg,
    bauddiv: Reg,
}

impl Regs {
    const fn at(base: usize) -> Self {
        Self {
            data: Reg::at(base, 0x00),
            state: Reg::at(base, 0x04),
            ctrl: Reg::at(base, 0x08),
            int_clear: Reg::at(base, 0x0C),
            bauddiv: Reg::at(base, 0x10),
        }
    }

    /// QEMU refuses to move bytes while BAUDDIV < 16, so it is set as on hardware.
    fn enable(self, baud: u32, ctrl: u32) {
        self.bauddiv.write(SYSCLK_HZ / baud);
        self.ctrl.write(ctrl);
    }

    fn write_byte_blocking(self, byte: u8) {
        while self.state.read() & STATE_TX_FULL != 0 {}
        self.data.write(u32::from(byte));
    }
}

const UART0: Regs = Regs::at(0x4000_4000);
const UART1: Regs = Regs::at(0x4000_5000);
/// NVIC line of UART1's RX interrupt on mps2-an386.
pub const UART1_RX_IRQ: u16 = 2;

/// The console: UART0, 115200 8N1, blocking writes.
#[derive(Clone, Copy)]
pub struct Console(());

impl Console {
    /// Enables UART0's transmitter. Idempotent, so the panic handler may call it again.
    pub fn init() -> Self {
        UART0.enable(115_200, CTRL_TX_EN);
        Self(())
    }
}

impl core::fmt::Write for Console {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        for b in s.bytes() {
            UART0.write_byte_blocking(b);
        }
        Ok(())
    }
}

static RX_WAKER: AtomicWaker = AtomicWaker::new();

/// Called from the UART1 RX interrupt: acknowledge it and wake the reader.
pub fn on_rx_interrupt() {
    UART1.int_clear.write(INT_RX);
    RX_WAKER.wake();
}

/// The PM sensor's UART: UART1, 9600 8N1 (PMS5003 datasheet), RX interrupt enabled.
pub struct SensorUart(());

/// The sensor UART lost a byte (cannot happen under QEMU, see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RxOverrun;

impl core::fmt::Display for RxOverrun {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("UART receive overrun")
    }
}

impl core::error::Error for RxOverrun {}

impl embedded_io_async::Error for RxOverrun {
    fn kind(&self) -> ErrorKind {
        ErrorKind::Other
    }
}

impl SensorUart {
    /// Enables UART1 for the sensor. The caller unmasks [`UART1_RX_IRQ`] in the NVIC.
    pub fn init() -> Self {
        UART1.enable(9_600, CTRL_TX_EN | CTRL_RX_EN | CTRL_RX_INT_EN);
        Self(())
    }
}

impl ErrorType for SensorUart {
    type Error = RxOverrun;
}

impl Read for SensorUart {
    /// Waits for at least one byte, then returns every byte already received (up to `buf.len()`).
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, RxOverrun> {
        if buf.is_empty() {
            return Ok(0);
        }
        poll_fn(|cx| {
            // Register before looking, so a byte arriving in between still wakes us.
            RX_WAKER.register(cx.waker());
            let mut n = 0;
            for slot in buf.iter_mut() {
                let state = UART1.state.read();
                if state & STATE_RX_OVERRUN != 0 {
                    UART1.state.write(STATE_RX_OVERRUN); // write-one-to-clear
                    return Poll::Ready(Err(RxOverrun));
                }
                if state & STATE_RX_FULL == 0 {
                    break;
                }
                // The data register holds one byte in bits 7:0.
                *slot = (UART1.data.read() & 0xFF) as u8;
                n += 1;
            }
            if n == 0 {
                Poll::Pending
            } else {
                Poll::Ready(Ok(n))
            }
        })
        .await
    }
}

impl Write for SensorUart {
    async fn write(&mut self, buf: &[u8]) -> Result<usize, RxOverrun> {
        for b in buf {
            while UART1.state.read() & STATE_TX_FULL != 0 {
                embassy_futures::yield_now().await;
            }
            UART1.data.write(u32::from(*b));
        }
        Ok(buf.len())
    }

    async fn flush(&mut self) -> Result<(), RxOverrun> {
        while UART1.state.read() & STATE_TX_FULL != 0 {
            embassy_futures::yield_now().await;
        }
        Ok(())
    }
}
