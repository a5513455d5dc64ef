//! Taza post firmware on QEMU's mps2-an386 (Cortex-M4): the same `taza-firmware-core` tasks a
//! board runs, on real cross-compiled code, with a simulated PMS5003 on a UART.
//!
//! Tasks, joined in the one embassy task `main` (thread-mode executor, WFE/SEV):
//! - `run_sensor` (core): the PMS5003 driver in passive mode on UART1, one poll per second;
//! - `run_sampler` (core): 5 s epoch-aligned windows with QA flags, each encoded as SenML CBOR
//!   into the store-and-forward `RecordQueue` (on RAM-emulated NOR flash);
//! - [`console_uplink`]: stands in for the MQTT uplink. It prints the oldest queued pack as
//!   `REC <hex>` plus a human line decoded with `protocol`'s SenML decoder, then removes it;
//!   after [`WINDOWS`] packs it prints `DONE`;
//! - [`supervise`]: fails the run if the sensor keeps failing, a window is lost, or no record
//!   appears in time.
//!
//! The run ends with a semihosting exit: status 0 after `DONE`, 1 on any failure (also on panic
//! and hard fault), so QEMU's exit status is the test verdict.
#![no_std]
#![no_main]

mod mmio;
mod time_driver;
mod uart;

use core::fmt::Write as _;
use core::sync::atomic::{AtomicBool, Ordering};

use cortex_m::interrupt::InterruptNumber;
use cortex_m::peripheral::NVIC;
use cortex_m_rt::{entry, exception, ExceptionFrame};
use cortex_m_semihosting::debug;
use embassy_executor::raw;
use embassy_futures::join::join;
use embassy_futures::select::{select3, Either3};
use embassy_sync::blocking_mutex::raw::NoopRawMutex;
use embassy_sync::channel::Channel;
use embassy_sync::mutex::Mutex;
use embassy_sync::signal::Signal;
use embassy_sync::watch::Watch;
use embassy_time::{Duration, Instant, Timer};
use protocol::post_config::PostConfig;
use protocol::{PostId, UnixSeconds};
use taza_firmware_core::pms::Pms;
use taza_firmware_core::sampling::{run_sampler, SamplerStats};
use taza_firmware_core::sensor::{run_sensor, SampleBatch, SensorHealth};
use taza_firmware_core::store::{
    RamFlashError, RamNorFlash, RecordQueue, StoreError, MAX_RECORD_BYTES, RAM_FLASH_PAGE,
};
use taza_firmware_core::{Clock, FIRMWARE_VERSION};

use crate::uart::{Console, SensorUart};

/// The post id in the records' SenML base name.
const POST_ID: &str = "qemu-001";
/// No RTC or network under QEMU: the clock starts at 2026-01-01T00:00:00Z, standing in for the
/// time a real post sets from the network. Printed at boot so the host can decode the records.
const BOOT_UNIX: UnixSeconds = UnixSeconds(1_767_225_600);
/// Windows printed before the run ends successfully.
const WINDOWS: u32 = 3;
/// Poll interval and averaging window, seconds (short so the run takes ~20 s).
const SAMPLE_INTERVAL_S: u32 = 1;
const WINDOW_S: u32 = 5;
/// Failed sensor polls (timeouts: no valid frame within 3 s) tolerated before the run fails.
const MAX_SENSOR_ERRORS: u32 = 3;
/// Without a record by then the sensor is not talking: fail instead of hanging.
const FIRST_RECORD_DEADLINE: Duration = Duration::from_secs(30);
/// The queue's flash: two erase pages, the least sequential-storage's queue takes.
const FLASH_BYTES: usize = 2 * RAM_FLASH_PAGE;

type Flash = RamNorFlash<FLASH_BYTES>;

/// Why the run failed.
enum Failure {
    BadConfig,
    BadPostId,
    Store(StoreError<RamFlashError>),
    Decode(protocol::DecodeError),
    SensorErrors(u32),
    WindowLost,
    NoRecord,
}

impl core::fmt::Display for Failure {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::BadConfig => f.write_str("post config refused"),
            Self::BadPostId => f.write_str("post id refused"),
            Self::Store(e) => write!(f, "record queue: {e:?}"),
            Self::Decode(e) => write!(f, "own record does not decode: {}", e.as_label()),
            Self::SensorErrors(n) => {
                write!(f, "{n} failed sensor polls (budget {MAX_SENSOR_ERRORS})")
            }
            Self::WindowLost => f.write_str("a window could not be encoded or stored"),
            Self::NoRecord => write!(f, "no record within {} s", FIRST_RECORD_DEADLINE.as_secs()),
        }
    }
}

/// The NVIC lines this firmware uses (mps2-an386 numbering, hw/arm/mps2.c).
#[derive(Clone, Copy)]
struct Irq(u16);

// SAFETY: `number` returns a valid NVIC line of this machine (it has 32), which is all the
// trait requires.
unsafe impl InterruptNumber for Irq {
    fn number(self) -> u16 {
        self.0
    }
}

/// Set by the executor's pender (a task was woken, from a task or an interrupt); cleared by
/// the idle loop in [`main`].
static WOKEN: AtomicBool = AtomicBool::new(false);

/// embassy-executor's hook for "a task is ready": note it for the idle loop.
#[unsafe(export_name = "__pender")]
fn pender(_context: *mut ()) {
    WOKEN.store(true, Ordering::Release);
}

#[entry]
fn main() -> ! {
    let mut console = Console::init();
    let sensor_uart = SensorUart::init();
    time_driver::start();
    for irq in [time_driver::TIMER0_IRQ, uart::UART1_RX_IRQ] {
        // SAFETY: unmasking can break a critical section that relies on masked interrupts;
        // none is open here (we are at the top of `main`), and both handlers only touch their
        // own device and state guarded by critical sections.
        unsafe { NVIC::unmask(Irq(irq)) };
    }
    let _ = writeln!(
        console,
        "taza-firmware-qemu {FIRMWARE_VERSION} on mps2-an386; post {POST_ID}"
    );
    let _ = writeln!(console, "BOOT unix={}", BOOT_UNIX.0);

    let Some(executor) =
        cortex_m::singleton!(: raw::Executor = raw::Executor::new(core::ptr::null_mut()))
    else {
        fail("executor", "created twice")
    };
    let executor: &'static raw::Executor = executor;
    match post(console, sensor_uart) {
        Ok(task) => executor.spawner().spawn(task),
        Err(e) => fail("spawn", e),
    }
    // embassy's thread-mode executor idles with WFE, which QEMU runs as a busy loop; WFI really
    // halts the emulated CPU until the next interrupt. Interrupts are masked between the check
    // and the WFI so a wake-up in between is not slept through (a pending interrupt ends WFI
    // even while masked, and is taken once unmasked).
    loop {
        // SAFETY: `poll` is only called here, never re-entrantly and never from the pender.
        unsafe { executor.poll() };
        cortex_m::interrupt::free(|_| {
            if !WOKEN.swap(false, Ordering::AcqRel) {
                cortex_m::asm::wfi();
            }
        });
    }
}

/// The post: runs the firmware and ends QEMU with its verdict.
#[embassy_executor::task]
async fn post(mut console: Console, sensor_uart: SensorUart) {
    match run(console, sensor_uart).await {
        Ok(()) => {
            let _ = writeln!(console, "DONE");
            debug::exit(debug::EXIT_SUCCESS);
        }
        Err(e) => fail("run", e),
    }
}

/// Wires the core's sensor and sampler tasks to the console uplink and the supervisor; returns
/// when [`WINDOWS`] records were printed or something failed.
async fn run(console: Console, sensor_uart: SensorUart) -> Result<(), Failure> {
    let config = PostConfig {
        sample_interval_s: SAMPLE_INTERVAL_S,
        window_s: WINDOW_S,
        warm_up_s: 0,
        // No humidity sensor here, so no correction; the published PM is the sensor's own.
        pm_humidity_correction: false,
        calibrations: heapless::Vec::new(),
        no2: None,
    };
    config.validate().map_err(|_| Failure::BadConfig)?;
    let post = PostId::parse(POST_ID).map_err(|_| Failure::BadPostId)?;
    let clock = Clock::new(BOOT_UNIX);
    let boot = clock.now();

    let config: Watch<NoopRawMutex, PostConfig, 2> = Watch::new_with(config);
    let (Some(sensor_config), Some(sampler_config)) = (config.receiver(), config.receiver()) else {
        return Err(Failure::BadConfig);
    };
    let samples: Channel<NoopRawMutex, SampleBatch, 4> = Channel::new();
    let queue = RecordQueue::open(Flash::new(), 0..FLASH_BYTES as u32).map_err(Failure::Store)?;
    let queue: Mutex<NoopRawMutex, _> = Mutex::new(queue);
    let queued: Signal<NoopRawMutex, ()> = Signal::new();
    let health = SensorHealth::new();
    let stats = SamplerStats::new();
    let mut pms = Pms::new(sensor_uart);

    let firmware = join(
        run_sensor(&mut pms, clock, sensor_config, samples.sender(), &health),
        run_sampler(
            &post,
            clock,
            boot,
            sampler_config,
            samples.receiver(),
            &queue,
            &queued,
            &stats,
        ),
    );
    match select3(
        firmware,
        console_uplink(console, &post, clock, &queue, &queued),
        supervise(&health, &stats),
    )
    .await
    {
        // Both core tasks loop forever (`-> !`).
        Either3::First((never, _)) => match never {},
        Either3::Second(result) | Either3::Third(result) => result,
    }
}

/// Prints each queued pack as `REC <hex>` and a human line, then removes it (as the MQTT
/// uplink does after PUBACK). Returns after [`WINDOWS`] packs.
async fn console_uplink(
    mut console: Console,
    post: &PostId,
    clock: Clock,
    queue: &Mutex<NoopRawMutex, RecordQueue<Flash>>,
    queued: &Signal<NoopRawMutex, ()>,
) -> Result<(), Failure> {
    let mut printed = 0;
    let mut buf = [0u8; MAX_RECORD_BYTES];
    loop {
        queued.wait().await;
        loop {
            let pack = queue.lock().await.peek(&mut buf).await;
            let Some(pack) = pack.map_err(Failure::Store)? else {
                break;
            };
            let _ = write!(console, "REC ");
            for b in pack {
                let _ = write!(console, "{b:02x}");
            }
            let _ = writeln!(console);
            // What the gateway would see: decode the very bytes just printed.
            let telemetry =
                protocol::senml::decode(pack, post, clock.now()).map_err(Failure::Decode)?;
            let at = telemetry.readings.first().map_or(0, |m| m.at.0);
            let _ = write!(console, "window end={at} (boot+{}s)", at - BOOT_UNIX.0);
            for m in &telemetry.readings {
                let _ = write!(
                    console,
                    " {}={:.2} {}",
                    m.quantity.as_str(),
                    m.value,
                    m.quantity.unit().as_str()
                );
                for flag in m.flags.names() {
                    let _ = write!(console, " qa:{flag}");
                }
            }
            let _ = writeln!(console);
            queue
                .lock()
                .await
                .remove_if_oldest(pack)
                .await
                .map_err(Failure::Store)?;
            printed += 1;
            if printed == WINDOWS {
                return Ok(());
            }
        }
    }
}

/// Fails the run when the sensor keeps failing, a window is lost, or no record shows up.
async fn supervise(health: &SensorHealth, stats: &SamplerStats) -> Result<(), Failure> {
    loop {
        Timer::after_secs(1).await;
        let errors = health.errors.load(Ordering::Relaxed);
        if errors > MAX_SENSOR_ERRORS {
            return Err(Failure::SensorErrors(errors));
        }
        if stats.lost.load(Ordering::Relaxed) > 0 {
            return Err(Failure::WindowLost);
        }
        let since_boot = Instant::now().duration_since(Instant::from_ticks(0));
        if stats.windows.load(Ordering::Relaxed) == 0 && since_boot > FIRST_RECORD_DEADLINE {
            return Err(Failure::NoRecord);
        }
    }
}

/// Unused interrupt lines land here (cortex-m-rt's default vector table without a PAC); the two
/// this firmware enables are dispatched to their drivers.
#[exception]
unsafe fn DefaultHandler(irqn: i16) {
    match u16::try_from(irqn) {
        Ok(time_driver::TIMER0_IRQ) => time_driver::on_interrupt(),
        Ok(uart::UART1_RX_IRQ) => uart::on_rx_interrupt(),
        _ => fail("unexpected exception", irqn),
    }
}

#[exception]
unsafe fn HardFault(frame: &ExceptionFrame) -> ! {
    fail("hard fault at pc", frame.pc())
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    fail("panic", info)
}

/// Reports on the console and ends QEMU with a failure status (a hung guest would only show up
/// as the host test's timeout).
fn fail(what: &str, detail: impl core::fmt::Display) -> ! {
    let mut console = Console::init();
    let _ = writeln!(console, "FAILED {what}: {detail}");
    loop {
        debug::exit(debug::EXIT_FAILURE);
    }
}
