//! One simulated post: its devices, the firmware core's tasks joined in one embassy task, and
//! the executor thread all posts run on.
//!
//! The devices follow the post's installed quantities: a PMS5003 for any of pm1/pm2_5/pm10, an
//! SHT3x for temperature/humidity (and for an NO2 cell, whose correction needs the climate), an
//! ADS1115 with the B43F NO2 cell, and two ADS1115s of 4-20 mA river probes. A device measuring
//! more than is installed has its extra quantities filtered out before the sampler.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use embassy_executor::Executor;
use embassy_futures::join::join5;
use embassy_futures::select::select;
use embassy_sync::blocking_mutex::raw::{CriticalSectionRawMutex, NoopRawMutex};
use embassy_sync::channel::Channel;
use embassy_sync::mutex::Mutex;
use embassy_sync::signal::Signal;
use embassy_sync::watch::Watch;
use embassy_time::Delay;
use embedded_storage_async::nor_flash::{ErrorType, MultiwriteNorFlash, NorFlash, ReadNorFlash};
use protocol::post_config::PostConfig;
use protocol::Quantity;
use taza_firmware_core::ads1115::{self, Ads1115, Channel as AdcChannel};
use taza_firmware_core::installed::Installed;
use taza_firmware_core::no2::No2B43f;
use taza_firmware_core::pms::Pms;
use taza_firmware_core::river::{LinearProbe, RiverProbes};
use taza_firmware_core::sampling::{run_sampler, SamplerStats};
use taza_firmware_core::sensor::{run_sensor, SampleBatch, Samples, Sensor, SensorHealth};
use taza_firmware_core::sht3x::{self, LatestClimate, Sht3x};
use taza_firmware_core::store::{RamFlashError, RamNorFlash, RecordQueue};
use taza_firmware_core::uplink::{run_uplink, UplinkIdentity, UplinkStats};
use taza_firmware_core::Clock;

use crate::devices::{Personality, SimI2c, SimPmsUart, SimVitals, World};
use crate::fleet::PostDescriptor;
use crate::model::Model;
use crate::mqtt::{LinkPlan, SimMqtt};
use crate::{PostReport, MAX_POSTS};

/// Flash per post: 64 pages of 4 KiB, about a day of one-minute windows.
pub const FLASH_BYTES: usize = 256 * 1024;
/// Sample batches buffered between sensors and sampler.
const SAMPLE_CHANNEL: usize = 16;
/// Config receivers: up to five sensors and the sampler.
const CONFIG_RECEIVERS: usize = 6;

/// A sensor fault forced on one quantity (single-post mode's `--fault`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SensorFault {
    /// The physical sensor measuring the quantity never answers: it and every other quantity
    /// it measures have no readings (the core's not-answering path).
    Silent,
    /// The quantity's value is physically impossible ([`implausible_value`]).
    Implausible,
}

/// The value an `Implausible` fault reports: beyond `sampling::measuring_range` and beyond
/// physics for Almaty, in `quantity.unit()`. `None` for quantities the sim does not measure.
pub fn implausible_value(q: Quantity) -> Option<f32> {
    Some(match q {
        Quantity::Pm1 | Quantity::Pm2_5 | Quantity::Pm10 => 3000.0,
        Quantity::No2 => -500.0,
        Quantity::Temperature => 95.0,
        Quantity::Humidity => 130.0,
        Quantity::WaterLevel => -500.0,
        Quantity::WaterTemperature => 60.0,
        Quantity::Conductivity => -100.0,
        Quantity::Turbidity => -50.0,
        Quantity::DissolvedOxygen => 40.0,
        Quantity::Ph => 15.5,
        _ => return None,
    })
}

pub(crate) struct PostContext {
    pub post: Arc<PostDescriptor>,
    /// Quantities installed (the status lists them; others are filtered out).
    pub installed: &'static [Quantity],
    pub faults: Vec<(Quantity, SensorFault)>,
    /// MQTT user name and password.
    pub credentials: Option<(String, String)>,
    pub vitals: SimVitals,
    pub model: Arc<Model>,
    pub clock: Clock,
    pub config: PostConfig,
    pub prefix: String,
    pub host: String,
    pub port: u16,
    pub rt: tokio::runtime::Handle,
    pub link_up: LinkPlan,
    pub stop: &'static Signal<CriticalSectionRawMutex, ()>,
    pub done: tokio::sync::mpsc::Sender<PostReport>,
}

/// The post's flash, on the heap (a `RamNorFlash` inside the task would make every task-pool
/// slot 256 KiB).
pub struct HeapFlash(Box<RamNorFlash<FLASH_BYTES>>);

impl ErrorType for HeapFlash {
    type Error = RamFlashError;
}

impl ReadNorFlash for HeapFlash {
    const READ_SIZE: usize = RamNorFlash::<FLASH_BYTES>::READ_SIZE;
    async fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), Self::Error> {
        self.0.read(offset, bytes).await
    }
    fn capacity(&self) -> usize {
        self.0.capacity()
    }
}

impl NorFlash for HeapFlash {
    const WRITE_SIZE: usize = RamNorFlash::<FLASH_BYTES>::WRITE_SIZE;
    const ERASE_SIZE: usize = RamNorFlash::<FLASH_BYTES>::ERASE_SIZE;
    async fn erase(&mut self, from: u32, to: u32) -> Result<(), Self::Error> {
        self.0.erase(from, to).await
    }
    async fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), Self::Error> {
        self.0.write(offset, bytes).await
    }
}

impl MultiwriteNorFlash for HeapFlash {}

/// The river probes of a river post: four on the first ADC, two on the second.
pub fn river_probes() -> ([LinearProbe; 4], [LinearProbe; 2]) {
    (
        [
            LinearProbe::level_4_20ma(500.0, 0.0),
            LinearProbe::loop_4_20ma(Quantity::WaterTemperature, -5.0, 45.0),
            LinearProbe::loop_4_20ma(Quantity::Conductivity, 0.0, 2000.0),
            LinearProbe::loop_4_20ma(Quantity::Turbidity, 0.0, 1000.0),
        ],
        [
            LinearProbe::loop_4_20ma(Quantity::DissolvedOxygen, 0.0, 20.0),
            LinearProbe::loop_4_20ma(Quantity::Ph, 0.0, 14.0),
        ],
    )
}

const RIVER_ADC1: [Quantity; 4] = [
    Quantity::WaterLevel,
    Quantity::WaterTemperature,
    Quantity::Conductivity,
    Quantity::Turbidity,
];
const RIVER_ADC2: [Quantity; 2] = [Quantity::DissolvedOxygen, Quantity::Ph];
const PMS_QUANTITIES: [Quantity; 3] = [Quantity::Pm1, Quantity::Pm2_5, Quantity::Pm10];
const CLIMATE_QUANTITIES: [Quantity; 2] = [Quantity::Temperature, Quantity::Humidity];

/// Quantities the simulator's devices can measure.
pub fn simulated(q: Quantity) -> bool {
    implausible_value(q).is_some()
}

const CHANNELS: [AdcChannel; 4] = [
    AdcChannel::A0,
    AdcChannel::A1,
    AdcChannel::A2,
    AdcChannel::A3,
];

#[embassy_executor::task(pool_size = MAX_POSTS)]
async fn post_task(ctx: PostContext) {
    let stats = PostStats::default();
    let queue = match RecordQueue::open(
        HeapFlash(Box::new(RamNorFlash::new())),
        0..FLASH_BYTES as u32,
    ) {
        Ok(q) => Mutex::<NoopRawMutex, _>::new(q),
        Err(e) => {
            log::error!("{}: flash queue: {e:?}", ctx.post.id);
            return;
        }
    };
    select(post_main(&ctx, &stats, &queue), ctx.stop.wait()).await;
    let dropped = queue.try_lock().map_or(0, |q| q.dropped());
    let report = PostReport {
        id: ctx.post.id.clone(),
        windows: stats.sampler.windows.load(Ordering::Relaxed),
        published: stats.uplink.published.load(Ordering::Relaxed),
        reconnects: stats.uplink.reconnects.load(Ordering::Relaxed),
        dropped,
        sensor_errors: stats
            .sensors
            .iter()
            .map(|s| s.errors.load(Ordering::Relaxed))
            .sum(),
        sensor_polls: stats
            .sensors
            .iter()
            .map(|s| s.polls.load(Ordering::Relaxed))
            .sum(),
    };
    let _ = ctx.done.try_send(report);
}

#[derive(Default)]
struct PostStats {
    sensors: [SensorHealth; 5],
    sampler: SamplerStats,
    uplink: UplinkStats,
}

async fn post_main(
    ctx: &PostContext,
    stats: &PostStats,
    queue: &Mutex<NoopRawMutex, RecordQueue<HeapFlash>>,
) {
    let clock = ctx.clock;
    let boot = clock.now();
    let world = World {
        model: ctx.model.clone(),
        post: ctx.post.clone(),
        clock,
    };
    let config: Watch<NoopRawMutex, PostConfig, CONFIG_RECEIVERS> =
        Watch::new_with(ctx.config.clone());
    let samples: Channel<NoopRawMutex, SampleBatch, SAMPLE_CHANNEL> = Channel::new();
    let queued: Signal<NoopRawMutex, ()> = Signal::new();
    let mut mqtt = SimMqtt::new(
        ctx.rt.clone(),
        &ctx.host,
        ctx.port,
        clock,
        ctx.link_up.clone(),
    );
    if let Some((user, password)) = &ctx.credentials {
        mqtt = mqtt.with_credentials(user, password);
    }
    let id = UplinkIdentity {
        post: &ctx.post.id,
        prefix: &ctx.prefix,
        sensors: ctx.installed,
        clock,
    };
    let installed = |qs: &[Quantity]| qs.iter().any(|q| ctx.installed.contains(q));
    let dead = |qs: &[Quantity]| {
        ctx.faults
            .iter()
            .any(|(q, f)| *f == SensorFault::Silent && qs.contains(q))
    };
    let mut receivers = core::array::from_fn::<_, 5, _>(|_| config.receiver());
    let sampler = async {
        let Some(rx) = config.receiver() else { return };
        run_sampler(
            &ctx.post.id,
            clock,
            boot,
            rx,
            samples.receiver(),
            queue,
            &queued,
            &stats.sampler,
        )
        .await
    };
    let uplink = run_uplink(
        &mut mqtt,
        id,
        ctx.vitals.clone(),
        queue,
        &queued,
        config.sender(),
        &stats.uplink,
    );
    let [h0, h1, h2, h3, h4] = &stats.sensors;
    let climate: LatestClimate<NoopRawMutex> = LatestClimate::new();
    let cell = ctx.config.no2.unwrap_or_default();
    let mut pms = installed(&PMS_QUANTITIES).then(|| {
        let uart = SimPmsUart::new(world.clone()).dead(dead(&PMS_QUANTITIES));
        as_installed(Pms::new(uart), ctx)
    });
    let mut sht =
        installed(&[Quantity::Temperature, Quantity::Humidity, Quantity::No2]).then(|| {
            let i2c =
                SimI2c::new(world.clone(), Personality::Sht3x).dead(dead(&CLIMATE_QUANTITIES));
            as_installed(
                Sht3x::new(i2c, Delay, sht3x::DEFAULT_ADDRESS, &climate),
                ctx,
            )
        });
    let mut no2 = installed(&[Quantity::No2]).then(|| {
        let i2c =
            SimI2c::new(world.clone(), Personality::No2Adc(cell)).dead(dead(&[Quantity::No2]));
        let adc = Ads1115::new(i2c, Delay, ads1115::ADDRESS_GND);
        // SHT3x has no barometer: the standard atmosphere at the post's height.
        let p_pa = 101_325.0 * (1.0 - 2.255_77e-5 * ctx.post.elevation_m).powf(5.255_88);
        as_installed(No2B43f::new(adc, cell, &climate, p_pa as f32), ctx)
    });
    let (first, second) = river_probes();
    let probes = |ps: &[LinearProbe]| ps.iter().zip(CHANNELS).map(|(p, c)| (c, *p)).collect();
    let mut river1 = installed(&RIVER_ADC1).then(|| {
        let i2c = SimI2c::new(world.clone(), Personality::RiverAdc(first.to_vec()))
            .dead(dead(&RIVER_ADC1));
        let adc = Ads1115::new(i2c, Delay, ads1115::ADDRESS_GND);
        as_installed(RiverProbes::new(adc, probes(&first), &RIVER_ADC1), ctx)
    });
    let mut river2 = installed(&RIVER_ADC2).then(|| {
        let i2c = SimI2c::new(world.clone(), Personality::RiverAdc(second.to_vec()))
            .dead(dead(&RIVER_ADC2));
        let adc = Ads1115::new(i2c, Delay, ads1115::ADDRESS_VDD);
        as_installed(RiverProbes::new(adc, probes(&second), &RIVER_ADC2), ctx)
    });
    let [r0, r1, r2, r3, r4] = &mut receivers;
    let sensors = join5(
        maybe_run(pms.as_mut(), clock, r0.take(), &samples, h0),
        maybe_run(sht.as_mut(), clock, r1.take(), &samples, h1),
        maybe_run(no2.as_mut(), clock, r2.take(), &samples, h2),
        maybe_run(river1.as_mut(), clock, r3.take(), &samples, h3),
        maybe_run(river2.as_mut(), clock, r4.take(), &samples, h4),
    );
    embassy_futures::join::join3(sensors, sampler, uplink).await;
}

type ConfigRx<'a> = embassy_sync::watch::Receiver<'a, NoopRawMutex, PostConfig, CONFIG_RECEIVERS>;

/// Runs `sensor` if the post has it; otherwise never completes.
async fn maybe_run<S: Sensor>(
    sensor: Option<&mut S>,
    clock: Clock,
    config: Option<ConfigRx<'_>>,
    samples: &Channel<NoopRawMutex, SampleBatch, SAMPLE_CHANNEL>,
    health: &SensorHealth,
) {
    match (sensor, config) {
        (Some(s), Some(rx)) => run_sensor(s, clock, rx, samples.sender(), health).await,
        _ => core::future::pending().await,
    }
}

/// The device as installed on this post ([`Installed`]: quantities it measures that are not
/// installed are dropped), with forced `Implausible` faults replacing their quantity's value.
fn as_installed<S: Sensor>(inner: S, ctx: &PostContext) -> Tampered<Installed<S>> {
    let keep: Vec<Quantity> = inner
        .quantities()
        .iter()
        .copied()
        .filter(|q| ctx.installed.contains(q))
        .collect();
    let implausible = ctx
        .faults
        .iter()
        .filter(|(q, f)| *f == SensorFault::Implausible && keep.contains(q))
        .map(|(q, _)| *q)
        .collect();
    // Once per device per post run: the core wants a 'static list of installed quantities.
    let keep: &'static [Quantity] = Box::leak(keep.into_boxed_slice());
    Tampered {
        inner: Installed::new(inner, keep),
        implausible,
    }
}

/// A sensor whose `implausible` quantities read physically impossible values (a broken cell).
struct Tampered<S> {
    inner: S,
    implausible: Vec<Quantity>,
}

impl<S: Sensor> Sensor for Tampered<S> {
    const NAME: &'static str = S::NAME;
    const MIN_POLL_INTERVAL: embassy_time::Duration = S::MIN_POLL_INTERVAL;
    type Error = S::Error;

    fn quantities(&self) -> &'static [Quantity] {
        self.inner.quantities()
    }

    async fn init(&mut self) -> Result<(), Self::Error> {
        self.inner.init().await
    }

    async fn poll(&mut self, out: &mut Samples) -> Result<(), Self::Error> {
        self.inner.poll(out).await?;
        for sample in out.iter_mut() {
            if self.implausible.contains(&sample.quantity) {
                if let Some(v) = implausible_value(sample.quantity) {
                    sample.value = v;
                    sample.basis = v;
                }
            }
        }
        Ok(())
    }
}

/// Starts the embassy executor thread with one task per post. The thread parks forever after
/// the tasks end (embassy's `Executor::run` never returns).
pub(crate) fn spawn_executor(
    contexts: Vec<PostContext>,
    rt: tokio::runtime::Handle,
) -> anyhow::Result<()> {
    std::thread::Builder::new()
        .name("taza-sim-posts".into())
        .spawn(move || {
            // tokio types built on this thread (rumqttc clients) find the caller's runtime.
            let _tokio = rt.enter();
            let executor: &'static mut Executor = Box::leak(Box::new(Executor::new()));
            executor.run(move |spawner| {
                for ctx in contexts {
                    let id = ctx.post.id.clone();
                    match post_task(ctx) {
                        Ok(token) => spawner.spawn(token),
                        Err(e) => log::error!("{id}: no task slot: {e:?}"),
                    }
                }
            })
        })?;
    Ok(())
}
