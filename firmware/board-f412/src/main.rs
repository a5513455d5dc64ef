//! Taza air post on an STM32F412RG with a SIMCom SIM7080G LTE-M / NB-IoT modem.
//!
//! `main` takes the peripherals, reads the device config from the provisioning sector with
//! the core's `read_device_config` (a post that is not provisioned, or whose blob is damaged or
//! refused, logs why, blinks a fault code on the status LED and publishes nothing), opens the
//! flash queue and then runs, joined in one embassy task (they share the core's channel, watch
//! and queue by reference, which is what `NoopRawMutex` assumes):
//!
//! - the modem runner (USART6 RX, DMA ring buffer): response lines and URCs;
//! - bring-up: modem power, LTE attach, network time (the post's wall clock);
//! - then the firmware core's loops, wired to this board:
//!   - `run_sensor(Pms)`     PMS5003 on USART1 (9600 8N1, DMA ring-buffered RX, DMA TX)
//!   - `run_sensor(Sht3x)`   SHT31 on I2C1 (DMA), address 0x44
//!   - `run_sensor(No2B43f)` Alphasense NO2-B43F through an ADS1115 on I2C1, address 0x48
//!     (each only if the device config installs one of its quantities; the SHT31 also runs
//!     for the NO2 cell's compensation)
//!   - `run_sampler`         windows -> SenML CBOR -> `RecordQueue` on internal flash sectors 7-11
//!   - `run_uplink`          `CellularMqtt` (the modem's MQTT client) -> broker; the status
//!     carries `BoardStatus` (RSSI, supply) as the core's `Vitals`
//!   - the supply monitor    ADC1 on PA0 through a 100k/22k divider, against VREFINT.
//!
//! Pins and the flash map are in firmware/README.md; `partitions.rs` and memory.x hold the map.
#![no_std]
#![no_main]
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod at;
#[cfg(feature = "bench-config")]
mod bench;
mod cellular;
mod flash;
mod modem;
mod partitions;
mod provisioning;
mod status;
mod status_led;
mod supply;

use embassy_executor::Spawner;
use embassy_futures::join::{join, join3, join4};
use embassy_stm32::flash::Flash;
use embassy_stm32::gpio::{Level, Output, Speed};
use embassy_stm32::i2c::{self, I2c};
use embassy_stm32::mode::Async;
use embassy_stm32::time::Hertz;
use embassy_stm32::usart::{self, RingBufferedUartRx, Uart, UartTx};
use embassy_stm32::{adc::Adc, bind_interrupts, dma, peripherals};
use embassy_sync::blocking_mutex::raw::NoopRawMutex;
use embassy_sync::channel::Channel;
use embassy_sync::mutex::Mutex;
use embassy_sync::signal::Signal;
use embassy_sync::watch::Watch;
use embassy_time::{Delay, Duration, Instant, Timer};
use heapless::Vec;
use protocol::device_config::{DeviceConfig, FORMAT_VERSION};
use protocol::post_config::PostConfig;
use protocol::Quantity;
use static_cell::StaticCell;
use taza_firmware_core::ads1115::{self, Ads1115};
use taza_firmware_core::no2::No2B43f;
use taza_firmware_core::pms::Pms;
use taza_firmware_core::provisioning::{read_device_config, ProvisioningError};
use taza_firmware_core::sampling::{run_sampler, SamplerStats};
use taza_firmware_core::sensor::{run_sensor, SampleBatch, Sensor, SensorHealth};
use taza_firmware_core::sht3x::{self, LatestClimate, Sht3x};
use taza_firmware_core::store::RecordQueue;
use taza_firmware_core::uplink::{run_uplink, UplinkIdentity, UplinkStats};
use taza_firmware_core::Clock;
use {defmt_rtt as _, panic_probe as _};

use crate::cellular::CellularMqtt;
use crate::flash::{FlashPartition, PartitionError};
use crate::modem::{Modem, ModemRunner, ModemShared};
use crate::partitions::{FLASH_BASE, PROVISIONING, QUEUE};
use crate::provisioning::{
    BoardConfig, OperatorSettings, Refusal, CLIMATE_QUANTITIES, FLEET, NO2_QUANTITIES,
    PMS_QUANTITIES,
};
use crate::status::BoardStatus;
use crate::status_led::FaultCode;
use taza_firmware_core::installed::Installed;

bind_interrupts!(struct Irqs {
    USART1 => usart::InterruptHandler<peripherals::USART1>;
    USART6 => usart::InterruptHandler<peripherals::USART6>;
    I2C1_EV => i2c::EventInterruptHandler<peripherals::I2C1>;
    I2C1_ER => i2c::ErrorInterruptHandler<peripherals::I2C1>;
    FLASH => embassy_stm32::flash::InterruptHandler;
    // USART1 (PMS5003): TX DMA2 stream 7, RX DMA2 stream 5 (channel 4).
    DMA2_STREAM7 => dma::InterruptHandler<peripherals::DMA2_CH7>;
    DMA2_STREAM5 => dma::InterruptHandler<peripherals::DMA2_CH5>;
    // USART6 (modem): TX DMA2 stream 6, RX DMA2 stream 1 (channel 5).
    DMA2_STREAM6 => dma::InterruptHandler<peripherals::DMA2_CH6>;
    DMA2_STREAM1 => dma::InterruptHandler<peripherals::DMA2_CH1>;
    // I2C1: TX DMA1 stream 6, RX DMA1 stream 0 (channel 1).
    DMA1_STREAM6 => dma::InterruptHandler<peripherals::DMA1_CH6>;
    DMA1_STREAM0 => dma::InterruptHandler<peripherals::DMA1_CH0>;
});

/// Sample batches buffered between sensors and sampler.
const SAMPLE_CHANNEL: usize = 16;
/// Config receivers: three sensors and the sampler.
const CONFIG_RECEIVERS: usize = 4;
/// DMA ring buffer of the PMS5003 UART: a few 32-byte frames.
const PMS_RX_RING: usize = 128;
/// DMA ring buffer of the modem UART: a `+SMSUB` URC with a full hex config (~1.2 KiB) fits
/// while the runner is busy.
const MODEM_RX_RING: usize = 2048;
/// Modem UART speed (the SIM7080G autobauds up to 115200 on the first `AT`s).
const MODEM_BAUD: u32 = 115_200;
/// Longest wait between bring-up attempts.
const MAX_BRING_UP_BACKOFF: Duration = Duration::from_secs(300);

/// The PMS5003's UART as one embedded-io-async port: DMA ring-buffered RX (frames keep
/// arriving between polls without overruns) and DMA TX for its commands.
struct PmsPort<'d> {
    tx: UartTx<'d, Async>,
    rx: RingBufferedUartRx<'d>,
}

impl embedded_io_async::ErrorType for PmsPort<'_> {
    type Error = usart::Error;
}

impl embedded_io_async::Read for PmsPort<'_> {
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, Self::Error> {
        embedded_io_async::Read::read(&mut self.rx, buf).await
    }
}

impl embedded_io_async::Write for PmsPort<'_> {
    async fn write(&mut self, buf: &[u8]) -> Result<usize, Self::Error> {
        embedded_io_async::Write::write(&mut self.tx, buf).await
    }

    async fn flush(&mut self) -> Result<(), Self::Error> {
        embedded_io_async::Write::flush(&mut self.tx).await
    }
}

/// DMA buffers and the board config live in statics: the DMA rings must not move, and this
/// keeps the large buffers out of the task future.
static BOARD_STATUS: BoardStatus = BoardStatus::new();
static MODEM_RING: StaticCell<[u8; MODEM_RX_RING]> = StaticCell::new();
static PMS_RING: StaticCell<[u8; PMS_RX_RING]> = StaticCell::new();
static BOARD: StaticCell<BoardConfig> = StaticCell::new();
/// Each sensor's installed quantities (`Sensor::quantities` hands out `'static` lists).
static PMS_INSTALLED: StaticCell<Vec<Quantity, 3>> = StaticCell::new();
static CLIMATE_INSTALLED: StaticCell<Vec<Quantity, 2>> = StaticCell::new();
static NO2_INSTALLED: StaticCell<Vec<Quantity, 1>> = StaticCell::new();

#[embassy_executor::main]
async fn main(_spawner: Spawner) {
    // Default clocks: 16 MHz HSI, no crystal to fail in the cold; the post is I/O-bound.
    let p = embassy_stm32::init(Default::default());
    defmt::info!("taza post {}", taza_firmware_core::FIRMWARE_VERSION);

    // Status LED on PA5, free on the LQFP64 (on the Nucleo-F412ZG: see firmware/README.md).
    let mut led = Output::new(p.PA5, Level::Low, Speed::Low);
    status_led::boot_flash(&mut led).await;

    // The device config, through the partition adapter the queue uses too.
    let mut partition = FlashPartition::new(Flash::new(p.FLASH, Irqs), PROVISIONING);
    let read = read_device_config(&mut partition, 0..PROVISIONING.end - PROVISIONING.start).await;
    let flash = partition.into_inner();
    let board = match board_config(read) {
        Ok(b) => BOARD.init(b),
        Err(problem) => status_led::show_fault(&mut led, problem.code(), || problem.log()).await,
    };
    let board: &'static BoardConfig = board;
    defmt::info!(
        "provisioned: post {}, broker {}:{} (plain MQTT), user {}, prefix {}, {} sensors, apn {}",
        board.post.as_str(),
        board.net.broker_host.as_str(),
        board.net.broker_port,
        board.net.username.as_str(),
        board.prefix.as_str(),
        board.sensors.len(),
        board.net.apn,
    );
    let pms_installed: &'static [Quantity] =
        PMS_INSTALLED.init(board.installed_of(&PMS_QUANTITIES));
    let climate_installed: &'static [Quantity] =
        CLIMATE_INSTALLED.init(board.installed_of(&CLIMATE_QUANTITIES));
    let no2_installed: &'static [Quantity] =
        NO2_INSTALLED.init(board.installed_of(&NO2_QUANTITIES));

    let queue_len = QUEUE.end - QUEUE.start;
    let queue = match RecordQueue::open(FlashPartition::new(flash, QUEUE), 0..queue_len) {
        Ok(q) => Mutex::<NoopRawMutex, _>::new(q),
        Err(e) => halt(&mut led, "flash queue", e).await,
    };

    // Modem on USART6: PC6 TX, PC7 RX; PWRKEY through an NPN on PB0 (high = key pressed).
    let mut modem_cfg = usart::Config::default();
    modem_cfg.baudrate = MODEM_BAUD;
    let modem_uart = match Uart::new(
        p.USART6, p.PC7, p.PC6, p.DMA2_CH6, p.DMA2_CH1, Irqs, modem_cfg,
    ) {
        Ok(u) => u,
        Err(e) => halt(&mut led, "modem uart", e).await,
    };
    let (modem_tx, modem_rx) = modem_uart.split();
    // Local, not static: `NoopRawMutex` state is not `Sync`; `main` never returns, so it lives
    // as long as the post.
    let modem_shared = ModemShared::new();
    let mut runner = ModemRunner::new(
        modem_rx.into_ring_buffered(MODEM_RING.init([0; MODEM_RX_RING])),
        &modem_shared,
    );
    let mut pwrkey = Output::new(p.PB0, Level::Low, Speed::Low);
    let mut mqtt = CellularMqtt::new(
        Modem::new(modem_tx, &modem_shared),
        &board.net,
        &BOARD_STATUS,
    );

    // PMS5003 on USART1: PA9 TX -> sensor RX, PA10 RX <- sensor TX, 9600 8N1.
    let mut pms_cfg = usart::Config::default();
    pms_cfg.baudrate = 9_600;
    let pms_uart = match Uart::new(
        p.USART1, p.PA10, p.PA9, p.DMA2_CH7, p.DMA2_CH5, Irqs, pms_cfg,
    ) {
        Ok(u) => u,
        Err(e) => halt(&mut led, "pms uart", e).await,
    };
    let (pms_tx, pms_rx) = pms_uart.split();
    let pms_port = PmsPort {
        tx: pms_tx,
        rx: pms_rx.into_ring_buffered(PMS_RING.init([0; PMS_RX_RING])),
    };

    // SHT31 and ADS1115 on I2C1: PB8 SCL, PB9 SDA, 100 kHz (long cable run up the post).
    let mut i2c_cfg = i2c::Config::default();
    i2c_cfg.frequency = Hertz(100_000);
    let i2c = I2c::new(p.I2C1, p.PB8, p.PB9, p.DMA1_CH6, p.DMA1_CH0, Irqs, i2c_cfg);
    let i2c_bus: Mutex<NoopRawMutex, _> = Mutex::new(i2c);

    // Supply divider on PA0 (ADC1_IN0).
    let mut adc = Adc::new(p.ADC1);
    let mut supply_pin = p.PA0;

    let post = async {
        let clock = bring_up(&mut mqtt, &mut pwrkey).await;
        let boot = clock.now();
        let stats = PostStats::default();
        let config: Watch<NoopRawMutex, PostConfig, CONFIG_RECEIVERS> =
            Watch::new_with(board.config.clone());
        let samples: Channel<NoopRawMutex, SampleBatch, SAMPLE_CHANNEL> = Channel::new();
        let queued: Signal<NoopRawMutex, ()> = Signal::new();
        let climate: LatestClimate<NoopRawMutex> = LatestClimate::new();
        let (Some(r1), Some(r2), Some(r3), Some(r4)) = (
            config.receiver(),
            config.receiver(),
            config.receiver(),
            config.receiver(),
        ) else {
            halt(&mut led, "config receivers", ()).await
        };

        // Only the sensors the device config installs run (a missing one would only fail).
        let mut pms =
            (!pms_installed.is_empty()).then(|| Installed::new(Pms::new(pms_port), pms_installed));
        let mut sht = board.needs_climate().then(|| {
            let i2c = embassy_embedded_hal::shared_bus::asynch::i2c::I2cDevice::new(&i2c_bus);
            let sht = Sht3x::new(i2c, Delay, sht3x::DEFAULT_ADDRESS, &climate);
            Installed::new(sht, climate_installed)
        });
        let mut no2 = (!no2_installed.is_empty()).then(|| {
            let adc_no2 = Ads1115::new(
                embassy_embedded_hal::shared_bus::asynch::i2c::I2cDevice::new(&i2c_bus),
                Delay,
                ads1115::ADDRESS_GND,
            );
            // SHT31 has no barometer: the standard atmosphere at the post's height.
            let p_pa = standard_pressure_pa(board.elevation_m);
            let cell = board.config.no2.unwrap_or_default();
            Installed::new(No2B43f::new(adc_no2, cell, &climate, p_pa), no2_installed)
        });
        let [h0, h1, h2] = &stats.sensors;
        let id = UplinkIdentity {
            post: &board.post,
            prefix: &board.prefix,
            sensors: &board.sensors,
            clock,
        };
        join4(
            maybe_run(pms.as_mut(), clock, r1, &samples, h0),
            maybe_run(sht.as_mut(), clock, r2, &samples, h1),
            maybe_run(no2.as_mut(), clock, r3, &samples, h2),
            join3(
                run_sampler(
                    &board.post,
                    clock,
                    boot,
                    r4,
                    samples.receiver(),
                    &queue,
                    &queued,
                    &stats.sampler,
                ),
                run_uplink(
                    &mut mqtt,
                    id,
                    &BOARD_STATUS,
                    &queue,
                    &queued,
                    config.sender(),
                    &stats.uplink,
                ),
                supply::run_supply_monitor(&mut adc, &mut supply_pin, &BOARD_STATUS),
            ),
        )
        .await;
    };
    join(runner.run(), post).await;
}

type ConfigRx<'a> = embassy_sync::watch::Receiver<'a, NoopRawMutex, PostConfig, CONFIG_RECEIVERS>;

/// Runs `sensor` if the post has it; otherwise never completes.
async fn maybe_run<S: Sensor>(
    sensor: Option<&mut S>,
    clock: Clock,
    config: ConfigRx<'_>,
    samples: &Channel<NoopRawMutex, SampleBatch, SAMPLE_CHANNEL>,
    health: &SensorHealth,
) {
    match sensor {
        Some(s) => run_sensor(s, clock, config, samples.sender(), health).await,
        None => core::future::pending().await,
    }
}

/// Why the post cannot run from its provisioning sector.
enum BootProblem {
    /// The core's reader found no usable blob.
    Unreadable(ProvisioningError<PartitionError>),
    /// The blob is intact but this board cannot honour it.
    Refused(Refusal),
    /// A `TAZA_*` bench value is invalid (only with the `bench-config` feature).
    #[cfg_attr(not(feature = "bench-config"), allow(dead_code))]
    BadBenchValue(&'static str),
}

impl BootProblem {
    fn code(&self) -> FaultCode {
        match self {
            Self::Unreadable(ProvisioningError::NotProvisioned) => FaultCode::NotProvisioned,
            Self::Unreadable(
                ProvisioningError::Corrupt(_)
                | ProvisioningError::UnsupportedVersion(_)
                | ProvisioningError::TooLarge,
            ) => FaultCode::Damaged,
            Self::Unreadable(ProvisioningError::Invalid(_))
            | Self::Refused(_)
            | Self::BadBenchValue(_) => FaultCode::Refused,
            Self::Unreadable(ProvisioningError::Flash(_) | ProvisioningError::BadRange) => {
                FaultCode::Hardware
            }
        }
    }

    /// Says what is wrong and what the technician does about it.
    fn log(&self) {
        let at = FLASH_BASE + PROVISIONING.start;
        match self {
            Self::Unreadable(ProvisioningError::NotProvisioned) => defmt::error!(
                "NOT PROVISIONED (LED: 1 flash): the provisioning sector at {=u32:#x} is erased. \
                 Run `gateway posts provision <post>` and flash its <post>.taza-device.bin: \
                 probe-rs download --chip STM32F412RGTx --binary-format bin --base-address {=u32:#x} \
                 <post>.taza-device.bin; then reset. Publishing nothing.",
                at,
                at
            ),
            Self::Unreadable(ProvisioningError::Corrupt(e)) => defmt::error!(
                "DEVICE CONFIG DAMAGED (LED: 2 flashes) at {=u32:#x}: {}. Flash the post's \
                 .taza-device.bin again (gateway posts provision <post>). Publishing nothing.",
                at,
                defmt::Display2Format(e)
            ),
            Self::Unreadable(ProvisioningError::UnsupportedVersion(v)) => defmt::error!(
                "DEVICE CONFIG FROM A NEWER GATEWAY (LED: 2 flashes): format version {}, this \
                 firmware reads {}. Update the firmware. Publishing nothing.",
                v,
                FORMAT_VERSION
            ),
            Self::Unreadable(ProvisioningError::TooLarge) => defmt::error!(
                "DEVICE CONFIG DAMAGED (LED: 2 flashes): blob too large. Publishing nothing."
            ),
            Self::Unreadable(ProvisioningError::Invalid(e)) => defmt::error!(
                "DEVICE CONFIG REFUSED (LED: 3 flashes): {}. Fix the post in the gateway and \
                 provision it again. Publishing nothing.",
                defmt::Display2Format(e)
            ),
            Self::Unreadable(ProvisioningError::Flash(e)) => defmt::error!(
                "PROVISIONING SECTOR UNREADABLE (LED: 4 flashes) at {=u32:#x}: {}. Hardware \
                 fault. Publishing nothing.",
                at,
                e
            ),
            Self::Unreadable(ProvisioningError::BadRange) => defmt::error!(
                "PROVISIONING RANGE INVALID (LED: 4 flashes): firmware bug (partitions.rs). \
                 Publishing nothing."
            ),
            Self::Refused(Refusal::TlsUnsupported) => defmt::error!(
                "DEVICE CONFIG REFUSED (LED: 3 flashes): it asks for TLS to the broker, and this \
                 firmware's modem MQTT client has no TLS yet. Not connecting in clear. Provision \
                 the post for the broker's plain listener, or update the firmware. Publishing \
                 nothing."
            ),
            Self::Refused(Refusal::Unquotable(field)) => defmt::error!(
                "DEVICE CONFIG REFUSED (LED: 3 flashes): `{}` is not printable ASCII without \
                 '\"' and cannot be sent to the modem. Re-issue it in the gateway and provision \
                 again. Publishing nothing.",
                field
            ),
            Self::Refused(Refusal::UnsupportedSensor(q)) => defmt::error!(
                "DEVICE CONFIG REFUSED (LED: 3 flashes): it installs `{}`, which this air post \
                 board does not measure (pm1, pm2_5, pm10, temperature, humidity, no2). Fix the \
                 post's sensors in the gateway and provision again. Publishing nothing.",
                q
            ),
            Self::BadBenchValue(name) => defmt::error!(
                "BENCH CONFIG INVALID (LED: 3 flashes): {} (bench-config feature). Publishing \
                 nothing.",
                name
            ),
        }
    }
}

/// The board config from what the core read out of the provisioning sector. With the
/// `bench-config` feature, an erased sector falls back to the `TAZA_*` bench settings.
fn board_config(
    read: Result<DeviceConfig, ProvisioningError<PartitionError>>,
) -> Result<BoardConfig, BootProblem> {
    let (device, operator): (DeviceConfig, OperatorSettings) = match read {
        Ok(device) => (device, FLEET),
        #[cfg(feature = "bench-config")]
        Err(ProvisioningError::NotProvisioned) => {
            defmt::warn!("provisioning sector erased: BENCH settings (bench-config feature)");
            bench::bench_device().map_err(BootProblem::BadBenchValue)?
        }
        Err(e) => return Err(BootProblem::Unreadable(e)),
    };
    BoardConfig::from_device(device, operator).map_err(BootProblem::Refused)
}

#[derive(Default)]
struct PostStats {
    sensors: [SensorHealth; 3],
    sampler: SamplerStats,
    uplink: UplinkStats,
}

/// Powers the modem, attaches to the network and reads network time, retrying with backoff
/// until all three work. Returns the post's wall clock. Sampling starts only after this: a
/// reading needs a true time (TODO: keep time across power loss with the RTC on LSE + VBAT).
async fn bring_up<W: embedded_io_async::Write>(
    mqtt: &mut CellularMqtt<'_, W>,
    pwrkey: &mut Output<'_>,
) -> Clock {
    let mut wait = Duration::from_secs(5);
    loop {
        if !mqtt.modem().alive().await {
            defmt::info!("modem: power key");
            // SIM7080G hardware design: PWRKEY low for > 1 s powers it on (a second pulse would
            // power it off, hence the AT check first).
            pwrkey.set_high();
            Timer::after_millis(1_500).await;
            pwrkey.set_low();
            Timer::after_secs(5).await;
        }
        match mqtt.attach().await {
            Ok(()) => match mqtt.unix_time_s().await {
                Ok(now_s) => {
                    let since_boot_ms = i64::try_from(Instant::now().as_millis()).unwrap_or(0);
                    defmt::info!("network time {}", now_s);
                    return Clock::from_unix_ms(now_s.saturating_mul(1000) - since_boot_ms);
                }
                Err(e) => defmt::warn!("network time: {}", defmt::Debug2Format(&e)),
            },
            Err(e) => defmt::warn!("attach: {}", defmt::Debug2Format(&e)),
        }
        Timer::after(wait).await;
        wait = (wait * 2).min(MAX_BRING_UP_BACKOFF);
    }
}

/// ICAO standard atmosphere at `elevation_m`, Pa: 101 325 · x^5.25588 with
/// x = 1 − 2.25577e-5 · h. `core` has no `powf`, so x^5 is multiplied out and x^0.25588 taken
/// to first order in (1 − x): within 0.01 % up to 1 500 m (Almaty's posts: 600-1 100 m).
fn standard_pressure_pa(elevation_m: f32) -> f32 {
    let x = 1.0 - 2.255_77e-5 * elevation_m;
    let x5 = x * x * x * x * x;
    101_325.0 * x5 * (1.0 - 0.255_88 * (1.0 - x))
}

/// Logs `what` and parks with the hardware fault code on the LED: the post cannot run, but
/// the probe can still read the log.
async fn halt<E: core::fmt::Debug>(led: &mut Output<'_>, what: &str, e: E) -> ! {
    status_led::show_fault(led, FaultCode::Hardware, || {
        defmt::error!(
            "{} failed (LED: 4 flashes): {}",
            what,
            defmt::Debug2Format(&e)
        )
    })
    .await
}
