//! Timing driven by embassy-time's mock driver: the sensor loop's cadence and backoff, the
//! sampler closing a silent window, and the uplink's reconnect backoff and
//! remove-only-after-PUBACK rule, and the status it publishes (clock, vitals, config hash,
//! heartbeat). Futures are polled by hand and time moves only through
//! `MockDriver::advance`; there is one mock clock per test binary, so tests take a lock.

use std::cell::RefCell;
use std::future::Future;
use std::pin::pin;
use std::sync::Mutex as StdMutex;
use std::task::{Context, Poll, Waker};

use embassy_sync::blocking_mutex::raw::NoopRawMutex;
use embassy_sync::channel::Channel;
use embassy_sync::mutex::Mutex;
use embassy_sync::signal::Signal;
use embassy_sync::watch::Watch;
use embassy_time::{Duration, Instant, MockDriver};
use protocol::post_config::PostConfig;
use protocol::{PostId, Quantity, UnixSeconds};
use taza_firmware_core::sampling::{run_sampler, SamplerStats};
use taza_firmware_core::sensor::{run_sensor, Sample, SampleBatch, Samples, Sensor, SensorHealth};
use taza_firmware_core::store::{RamNorFlash, RecordQueue};
use taza_firmware_core::uplink::{
    run_uplink, LastWill, MqttClient, NoVitals, UplinkIdentity, UplinkStats, Vitals,
    STATUS_HEARTBEAT,
};
use taza_firmware_core::Clock;

static MOCK_CLOCK: StdMutex<()> = StdMutex::new(());
const BOOT: UnixSeconds = UnixSeconds(1_767_225_600);

fn poll_once<F: Future>(f: std::pin::Pin<&mut F>) -> Poll<F::Output> {
    f.poll(&mut Context::from_waker(Waker::noop()))
}

/// Polls `f`, then advances time in `step`s `steps` times, polling after each.
fn drive<F: Future>(mut f: std::pin::Pin<&mut F>, step: Duration, steps: u32) {
    let _ = poll_once(f.as_mut());
    for _ in 0..steps {
        MockDriver::get().advance(step);
        let _ = poll_once(f.as_mut());
    }
}

struct FakeSensor {
    fail_polls: RefCell<u32>,
    polled_at: Vec<Instant>,
}

impl Sensor for FakeSensor {
    const NAME: &'static str = "fake";
    const MIN_POLL_INTERVAL: Duration = Duration::from_secs(1);
    type Error = ();
    fn quantities(&self) -> &'static [Quantity] {
        &[Quantity::No2]
    }
    async fn init(&mut self) -> Result<(), ()> {
        Ok(())
    }
    async fn poll(&mut self, out: &mut Samples) -> Result<(), ()> {
        self.polled_at.push(Instant::now());
        let mut fail = self.fail_polls.borrow_mut();
        if *fail > 0 {
            *fail -= 1;
            return Err(());
        }
        out.push(Sample::new(Quantity::No2, 40.0)).map_err(|_| ())
    }
}

#[test]
fn sensor_is_polled_on_the_configured_cadence_and_backs_off_while_failing() {
    let _lock = MOCK_CLOCK.lock().unwrap_or_else(|e| e.into_inner());
    MockDriver::get().reset();
    let config: Watch<NoopRawMutex, PostConfig, 2> = Watch::new_with(PostConfig {
        sample_interval_s: 10,
        ..PostConfig::default()
    });
    let ch: Channel<NoopRawMutex, SampleBatch, 32> = Channel::new();
    let health = SensorHealth::new();
    let mut sensor = FakeSensor {
        fail_polls: RefCell::new(3),
        polled_at: Vec::new(),
    };
    {
        let fut = pin!(run_sensor(
            &mut sensor,
            Clock::new(BOOT),
            config.receiver().unwrap(),
            ch.sender(),
            &health
        ));
        drive(fut, Duration::from_secs(1), 100);
    }
    let secs: Vec<u64> = sensor.polled_at.iter().map(|t| t.as_secs()).collect();
    // Fails at 0 (retry after 10 s), 10 (after 20 s), 30 (after 40 s); then every 10 s.
    assert_eq!(&secs[..6], &[0, 10, 30, 70, 80, 90]);
    assert_eq!(health.errors.load(std::sync::atomic::Ordering::Relaxed), 3);
    let first = ch.try_receive().unwrap();
    assert_eq!(
        (first.at, first.missed),
        (BOOT, &[Quantity::No2][..]),
        "a failed poll reports what is missing"
    );
}

#[test]
fn sampler_closes_a_window_when_its_sensors_fall_silent() {
    let _lock = MOCK_CLOCK.lock().unwrap_or_else(|e| e.into_inner());
    MockDriver::get().reset();
    let cfg = PostConfig {
        sample_interval_s: 10,
        window_s: 60,
        warm_up_s: 0,
        ..PostConfig::default()
    };
    let config: Watch<NoopRawMutex, PostConfig, 2> = Watch::new_with(cfg);
    let ch: Channel<NoopRawMutex, SampleBatch, 8> = Channel::new();
    let queue = Mutex::<NoopRawMutex, _>::new(
        RecordQueue::open(RamNorFlash::<16_384>::new(), 0..16_384).unwrap(),
    );
    let queued: Signal<NoopRawMutex, ()> = Signal::new();
    let stats = SamplerStats::new();
    let post = PostId::parse("almaty-air-01").unwrap();
    let clock = Clock::new(BOOT);
    // One sample at boot + 5 s, then silence.
    let mut samples = Samples::new();
    samples.push(Sample::new(Quantity::No2, 40.0)).unwrap();
    ch.try_send(SampleBatch {
        at: BOOT.offset(5),
        samples,
        missed: &[],
    })
    .unwrap();
    let fut = pin!(run_sampler(
        &post,
        clock,
        BOOT,
        config.receiver().unwrap(),
        ch.receiver(),
        &queue,
        &queued,
        &stats
    ));
    let mut fut = fut;
    drive(fut.as_mut(), Duration::from_secs(1), 69);
    assert_eq!(
        stats.windows.load(std::sync::atomic::Ordering::Relaxed),
        0,
        "window [0, 60) waits one interval of grace"
    );
    drive(fut.as_mut(), Duration::from_secs(1), 1);
    assert_eq!(stats.windows.load(std::sync::atomic::Ordering::Relaxed), 1);
    assert!(queued.signaled());
    let mut buf = [0u8; 512];
    let pack = embassy_futures::block_on(async {
        queue
            .lock()
            .await
            .peek(&mut buf)
            .await
            .unwrap()
            .unwrap()
            .to_vec()
    });
    let t = protocol::senml::decode(&pack, &post, BOOT.offset(3600)).unwrap();
    assert_eq!(t.readings[0].at, BOOT.offset(60));
    assert_eq!(t.readings[0].value, 40.0);
}

#[derive(Default)]
struct FakeBroker {
    connect_failures: u32,
    connects_at: Vec<Instant>,
    publish_failures: u32,
    published: Vec<(String, Vec<u8>, bool)>,
    /// A message waiting on the config topic (what the broker would deliver).
    inbox: Option<Vec<u8>>,
}

/// The client handle; the test reads the broker's record after the uplink future is dropped.
struct FakeClient<'a>(&'a RefCell<FakeBroker>);

impl MqttClient for FakeClient<'_> {
    type Error = &'static str;
    async fn connect(&mut self, _id: &str, will: LastWill<'_>) -> Result<(), Self::Error> {
        let mut b = self.0.borrow_mut();
        assert_eq!(will.payload, b"offline");
        b.connects_at.push(Instant::now());
        if b.connect_failures > 0 {
            b.connect_failures -= 1;
            return Err("refused");
        }
        Ok(())
    }
    async fn subscribe(&mut self, topic: &str) -> Result<(), Self::Error> {
        assert!(topic.ends_with("/config"));
        Ok(())
    }
    async fn publish(
        &mut self,
        topic: &str,
        payload: &[u8],
        retain: bool,
    ) -> Result<(), Self::Error> {
        let mut b = self.0.borrow_mut();
        if topic.ends_with("/telemetry") && b.publish_failures > 0 {
            b.publish_failures -= 1;
            return Err("connection lost before PUBACK");
        }
        b.published
            .push((topic.to_owned(), payload.to_vec(), retain));
        Ok(())
    }
    fn try_receive(&mut self, buf: &mut [u8]) -> Option<usize> {
        let msg = self.0.borrow_mut().inbox.take()?;
        buf.get_mut(..msg.len())?.copy_from_slice(&msg);
        Some(msg.len())
    }
}

#[test]
fn uplink_backs_off_between_failed_connects_and_keeps_a_pack_until_it_is_acknowledged() {
    let _lock = MOCK_CLOCK.lock().unwrap_or_else(|e| e.into_inner());
    MockDriver::get().reset();
    let broker = RefCell::new(FakeBroker {
        connect_failures: 2,
        publish_failures: 1,
        ..FakeBroker::default()
    });
    let queue = Mutex::<NoopRawMutex, _>::new(
        RecordQueue::open(RamNorFlash::<16_384>::new(), 0..16_384).unwrap(),
    );
    embassy_futures::block_on(async { queue.lock().await.push(b"pack-1").await.unwrap() });
    let queued: Signal<NoopRawMutex, ()> = Signal::new();
    let config: Watch<NoopRawMutex, PostConfig, 2> = Watch::new_with(PostConfig::default());
    let stats = UplinkStats::new();
    let post = PostId::parse("almaty-air-01").unwrap();
    let id = UplinkIdentity {
        post: &post,
        prefix: "taza",
        sensors: &[Quantity::No2],
        clock: Clock::new(BOOT),
    };
    let mut client = FakeClient(&broker);
    {
        let fut = pin!(run_uplink(
            &mut client,
            id,
            NoVitals,
            &queue,
            &queued,
            config.sender(),
            &stats
        ));
        drive(fut, Duration::from_millis(500), 20);
    }
    let b = broker.borrow();
    let connects: Vec<u64> = b.connects_at.iter().map(|t| t.as_millis()).collect();
    // Refused at 0 -> wait 1 s; refused at 1 s -> wait 2 s; connected at 3 s; the telemetry
    // publish fails (no PUBACK) -> reconnect after 1 s at 4 s.
    assert_eq!(connects, vec![0, 1000, 3000, 4000]);
    let telemetry: Vec<&Vec<u8>> = b
        .published
        .iter()
        .filter(|p| p.0.ends_with("/telemetry"))
        .map(|p| &p.1)
        .collect();
    assert_eq!(
        telemetry,
        vec![&b"pack-1".to_vec()],
        "sent again after the failed attempt, once acknowledged"
    );
    let births = b
        .published
        .iter()
        .filter(|p| p.0 == "taza/v1/posts/almaty-air-01/status" && p.2)
        .count();
    assert_eq!(births, 2, "a retained birth message per session");
    let mut buf = [0u8; 64];
    assert!(embassy_futures::block_on(async {
        queue.lock().await.peek(&mut buf).await.unwrap().is_none()
    }));
    assert_eq!(
        stats.reconnects.load(std::sync::atomic::Ordering::Relaxed),
        1
    );
}

/// A board with a modem and a supply ADC.
struct BoardVitals;

impl Vitals for BoardVitals {
    fn rssi_dbm(&mut self) -> Option<i16> {
        Some(-71)
    }
    fn supply_mv(&mut self) -> Option<u16> {
        Some(12_050)
    }
}

#[test]
fn status_carries_clock_and_vitals_then_the_new_config_hash_at_once_then_a_heartbeat() {
    let _lock = MOCK_CLOCK.lock().unwrap_or_else(|e| e.into_inner());
    MockDriver::get().reset();
    let broker = RefCell::new(FakeBroker::default());
    let queue = Mutex::<NoopRawMutex, _>::new(
        RecordQueue::open(RamNorFlash::<16_384>::new(), 0..16_384).unwrap(),
    );
    let queued: Signal<NoopRawMutex, ()> = Signal::new();
    let boot_config = PostConfig::default();
    let config: Watch<NoopRawMutex, PostConfig, 2> = Watch::new_with(boot_config.clone());
    let stats = UplinkStats::new();
    let post = PostId::parse("almaty-air-01").unwrap();
    // Booted half a second into a Unix second: the status must keep the milliseconds.
    let clock = Clock::from_unix_ms(BOOT.0 * 1000 + 500);
    let id = UplinkIdentity {
        post: &post,
        prefix: "taza",
        sensors: &[Quantity::Pm2_5, Quantity::No2],
        clock,
    };
    let new_config = PostConfig {
        sample_interval_s: 5,
        window_s: 300,
        ..PostConfig::default()
    };
    let mut payload = [0u8; 512];
    let n = protocol::post_config::encode(&new_config, &mut payload).unwrap();
    let mut client = FakeClient(&broker);
    {
        let mut fut = pin!(run_uplink(
            &mut client,
            id,
            BoardVitals,
            &queue,
            &queued,
            config.sender(),
            &stats
        ));
        drive(fut.as_mut(), Duration::from_secs(1), 10);
        // The gateway publishes a new retained config at 10 s.
        broker.borrow_mut().inbox = Some(payload[..n].to_vec());
        drive(fut.as_mut(), Duration::from_secs(1), 5);
        // Then nothing happens for a quarter of an hour.
        drive(fut.as_mut(), Duration::from_secs(1), 15 * 60);
    }
    let b = broker.borrow();
    let s: Vec<(u64, protocol::status::PostStatus)> = b
        .published
        .iter()
        .filter(|p| p.0.ends_with("/status"))
        .map(|p| {
            assert!(p.2, "status is retained");
            let s = protocol::status::decode(&p.1).unwrap();
            (s.uptime_s.unwrap().into(), s)
        })
        .collect();
    let at: Vec<u64> = s.iter().map(|(t, _)| *t).collect();
    assert_eq!(
        at,
        vec![0, 11, 11 + STATUS_HEARTBEAT.as_secs()],
        "birth; after the config (picked up at the next idle poll, 1 s); heartbeat"
    );
    let (_, birth) = &s[0];
    assert_eq!(birth.clock_ms, Some(BOOT.0 * 1000 + 500));
    assert_eq!((birth.rssi_dbm, birth.supply_mv), (Some(-71), Some(12_050)));
    assert_eq!(birth.config_hash, Some(boot_config.hash()));
    assert_eq!(
        birth.firmware.as_str(),
        taza_firmware_core::FIRMWARE_VERSION
    );
    let (_, after) = &s[1];
    assert_eq!(after.config_hash, Some(new_config.hash()));
    assert_ne!(new_config.hash(), boot_config.hash());
    assert_eq!(after.clock_ms, Some(BOOT.0 * 1000 + 500 + 11_000));
    assert_eq!(
        config.try_get(),
        Some(new_config.clone()),
        "the config was applied"
    );
    let (_, heartbeat) = &s[2];
    assert_eq!(heartbeat.config_hash, Some(new_config.hash()));
    assert_eq!(
        stats
            .configs_applied
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
}
