//! One simulated post: its devices, the firmware core's tasks joined in one embassy task, and
//! the executor thread all posts run on.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use embassy_executor::Executor;
use embassy_futures::join::{join4, join5};
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
use taza_firmware_core::no2::No2B43f;
use taza_firmware_core::pms::Pms;
use taza_firmware_core::river::{LinearProbe, RiverProbes};
use taza_firmware_core::sampling::{run_sampler, SamplerStats};
use taza_firmware_core::sensor::{run_sensor, SampleBatch, SensorHealth};
use taza_firmware_core::sht3x::{self, LatestClimate, Sht3x};
use taza_firmware_core::store::{RamFlashError, RamNorFlash, RecordQueue};
use taza_firmware_core::uplink::{run_uplink, UplinkIdentity, UplinkStats};
use taza_firmware_core::Clock;

use crate::devices::{Personality, SimI2c, SimPmsUart, World};
use crate::fleet::{PostDescriptor, PostKind};
use crate::model::Model;
use crate::mqtt::{LinkPlan, SimMqtt};
use crate::{PostReport, MAX_POSTS};

/// Flash per post: 64 pages of 4 KiB, about a day of one-minute windows.
pub const FLASH_BYTES: usize = 256 * 1024;
/// Sample batches buffered between sensors and sampler.
const SAMPLE_CHANNEL: usize = 16;
/// Config receivers: up to three sensors and the sampler.
const CONFIG_RECEIVERS: usize = 4;

pub(crate) struct PostContext {
    pub post: Arc<PostDescriptor>,
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
    };
    let _ = ctx.done.try_send(report);
}

#[derive(Default)]
struct PostStats {
    sensors: [SensorHealth; 3],
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
    let id = UplinkIdentity {
        post: &ctx.post.id,
        prefix: &ctx.prefix,
        sensors: ctx.post.quantities,
    };
    let (Some(r1), Some(r2), Some(r3)) = (config.receiver(), config.receiver(), config.receiver())
    else {
        return;
    };
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
        queue,
        &queued,
        config.sender(),
        &stats.uplink,
    );
    let [h0, h1, h2] = &stats.sensors;
    match ctx.post.kind {
        PostKind::Air => {
            let climate: LatestClimate<NoopRawMutex> = LatestClimate::new();
            let mut pms = Pms::new(SimPmsUart::new(world.clone()));
            let mut sht = Sht3x::new(
                SimI2c::new(world.clone(), Personality::Sht3x),
                Delay,
                sht3x::DEFAULT_ADDRESS,
                &climate,
            );
            let cell = ctx.config.no2.unwrap_or_default();
            let adc = Ads1115::new(
                SimI2c::new(world.clone(), Personality::No2Adc(cell)),
                Delay,
                ads1115::ADDRESS_GND,
            );
            // SHT3x has no barometer: the standard atmosphere at the post's height.
            let p_pa = 101_325.0 * (1.0 - 2.255_77e-5 * ctx.post.elevation_m).powf(5.255_88);
            let mut no2 = No2B43f::new(adc, cell, &climate, p_pa as f32);
            join5(
                run_sensor(&mut pms, clock, r1, samples.sender(), h0),
                run_sensor(&mut sht, clock, r2, samples.sender(), h1),
                run_sensor(&mut no2, clock, r3, samples.sender(), h2),
                sampler,
                uplink,
            )
            .await;
        }
        PostKind::River => {
            let (first, second) = river_probes();
            let probes =
                |ps: &[LinearProbe]| ps.iter().zip(CHANNELS).map(|(p, c)| (c, *p)).collect();
            let adc1 = Ads1115::new(
                SimI2c::new(world.clone(), Personality::RiverAdc(first.to_vec())),
                Delay,
                ads1115::ADDRESS_GND,
            );
            let adc2 = Ads1115::new(
                SimI2c::new(world.clone(), Personality::RiverAdc(second.to_vec())),
                Delay,
                ads1115::ADDRESS_VDD,
            );
            let mut s1 = RiverProbes::new(adc1, probes(&first), &RIVER_ADC1);
            let mut s2 = RiverProbes::new(adc2, probes(&second), &RIVER_ADC2);
            join4(
                run_sensor(&mut s1, clock, r1, samples.sender(), h0),
                run_sensor(&mut s2, clock, r2, samples.sender(), h1),
                sampler,
                uplink,
            )
            .await;
        }
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
