//! Single-post mode against Debian's Mosquitto: a post provisioned with a device config blob
//! connects with the issued credentials (the broker refuses anonymous clients), reports its
//! status with firmware, clock, signal and supply, publishes every installed sensor at the
//! configured window, takes a new retained config and reports its hash; forced faults silence
//! one sensor, make others implausible, and skew the clock. A bare rumqttc client watches, as
//! the gateway would. Waits on events with deadlines; never sleeps for a fixed time.

use std::collections::BTreeMap;
use std::time::Duration;

use protocol::device_config::{self, DeviceConfig, MAX_DEVICE_CONFIG_BYTES};
use protocol::post_config::PostConfig;
use protocol::status::PostStatus;
use protocol::topic::{self, TopicKind};
use protocol::{Measurement, PostId, QaFlags, Quantity, UnixSeconds};
use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Packet, QoS};
use taza_sim::single::{self, SensorFault, SinglePostOptions};

mod support;
use support::{mosquitto_available, unix_now, unix_now_ms, Broker};

/// What an air post measures, as the fleet's air posts do.
const AIR: [Quantity; 6] = taza_sim::fleet::AIR_QUANTITIES;

fn text<const N: usize>(t: &str) -> heapless::String<N> {
    let mut s = heapless::String::new();
    s.push_str(t).unwrap();
    s
}

fn device(post: &str, host: &str, port: u16, sensors: &[Quantity]) -> DeviceConfig {
    DeviceConfig {
        post: PostId::parse(post).unwrap(),
        broker_host: text(host),
        broker_port: port,
        broker_tls: false,
        username: text(post),
        password: text("issued-Secret-7f3a"),
        topic_prefix: text("commission"),
        sensors: sensors.iter().copied().collect(),
        config: PostConfig {
            sample_interval_s: 1,
            window_s: 5,
            warm_up_s: 0,
            ..PostConfig::default()
        },
    }
}

/// The blob as provisioning writes it, read back the way the post reads its flash.
fn through_blob(d: &DeviceConfig) -> DeviceConfig {
    let mut buf = [0u8; MAX_DEVICE_CONFIG_BYTES];
    let n = device_config::encode(d, &mut buf).unwrap();
    single::load_device_config(&buf[..n]).unwrap()
}

/// A gateway-like client subscribed to every post's telemetry and status.
async fn watcher(
    port: u16,
    credentials: Option<(&str, &str)>,
    prefix: &str,
) -> (AsyncClient, EventLoop) {
    let mut opts = MqttOptions::new(
        format!("watch-{}-{port}", std::process::id()),
        "127.0.0.1",
        port,
    );
    opts.set_max_packet_size(64 * 1024, 64 * 1024);
    if let Some((u, p)) = credentials {
        opts.set_credentials(u, p);
    }
    let (client, mut events) = AsyncClient::new(opts, 100);
    for kind in [TopicKind::Telemetry, TopicKind::Status] {
        client
            .subscribe(
                topic::filter(prefix, kind).unwrap().as_str(),
                QoS::AtLeastOnce,
            )
            .await
            .unwrap();
    }
    let mut subacks = 0;
    while subacks < 2 {
        let ev = tokio::time::timeout(Duration::from_secs(10), events.poll())
            .await
            .unwrap()
            .unwrap();
        if let Event::Incoming(Packet::SubAck(_)) = ev {
            subacks += 1;
        }
    }
    (client, events)
}

/// What the watcher saw of one post.
#[derive(Default)]
struct Seen {
    /// Online statuses with the watcher's clock (Unix ms) when each arrived.
    statuses: Vec<(i64, PostStatus)>,
    readings: BTreeMap<Quantity, Vec<Measurement>>,
}

impl Seen {
    fn take(&mut self, prefix: &str, ev: Event) {
        let Event::Incoming(Packet::Publish(p)) = ev else {
            return;
        };
        let (post, kind) = topic::parse(prefix, &p.topic).unwrap();
        match kind {
            TopicKind::Status => {
                let s = protocol::status::decode(&p.payload).unwrap();
                if s.online {
                    self.statuses.push((unix_now_ms(), s));
                }
            }
            TopicKind::Telemetry => {
                // A skewed post stamps readings seconds ahead; the gateway allows minutes.
                let t = protocol::senml::decode(&p.payload, &post, UnixSeconds(unix_now() + 60))
                    .unwrap();
                for r in t.readings {
                    self.readings.entry(r.quantity).or_default().push(r);
                }
            }
            TopicKind::Config => {}
        }
    }

    fn windows(&self, q: Quantity) -> usize {
        self.readings.get(&q).map_or(0, Vec::len)
    }
}

#[test]
fn provisioned_post_reports_clock_vitals_every_sensor_at_its_window_and_a_new_config_hash() {
    if !mosquitto_available("provisioned_post_reports_clock_vitals") {
        return;
    }
    let post = "almaty-new-01";
    let broker = Broker::start_with_users(&[(post, "issued-Secret-7f3a"), ("gateway", "gw-pass")]);
    let rt = support::runtime();
    rt.block_on(async {
        let d = through_blob(&device(post, "127.0.0.1", broker.port, &AIR));
        let prefix = d.topic_prefix.to_string();
        let (gateway, mut events) =
            watcher(broker.port, Some(("gateway", "gw-pass")), &prefix).await;
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let sim = tokio::spawn(single::run(
            d.clone(),
            SinglePostOptions::default(),
            async {
                let _ = stop_rx.await;
            },
        ));

        // Phase 1: the birth status and three windows of every installed quantity.
        let mut seen = Seen::default();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while seen.statuses.is_empty() || AIR.iter().any(|q| seen.windows(*q) < 3) {
            let Ok(ev) = tokio::time::timeout_at(deadline, events.poll()).await else {
                panic!(
                    "no birth and 3 windows of each sensor within 60 s: statuses {}, windows {:?}",
                    seen.statuses.len(),
                    AIR.map(|q| (q.as_str(), seen.windows(q)))
                );
            };
            seen.take(&prefix, ev.unwrap());
        }
        let (received_ms, birth) = seen.statuses[0].clone();
        assert_eq!(
            birth.firmware.as_str(),
            taza_firmware_core::FIRMWARE_VERSION
        );
        assert_eq!(birth.config_hash, Some(d.config.hash()));
        assert_eq!(birth.sensors.as_slice(), d.sensors.as_slice());
        let t_ms = birth.clock_ms.expect("status carries t_ms");
        assert!(
            (t_ms - received_ms).abs() < 2_000,
            "clock offset {} ms",
            t_ms - received_ms
        );
        let rssi = birth.rssi_dbm.expect("status carries rssi");
        assert!((-80..=-60).contains(&rssi), "rssi {rssi}");
        let supply = birth.supply_mv.expect("status carries supply_mv");
        assert!((11_500..=12_500).contains(&supply), "supply {supply} mV");
        assert!(birth.uptime_s.is_some());
        for q in AIR {
            let times: Vec<i64> = seen.readings[&q].iter().map(|r| r.at.0).collect();
            for pair in times.windows(2) {
                assert_eq!(pair[1] - pair[0], 5, "{} windows at {times:?}", q.as_str());
            }
            for r in &seen.readings[&q] {
                assert_eq!(r.at.0 % 5, 0, "windows are epoch-aligned");
                assert!(!r.flags.contains(QaFlags::OUT_OF_RANGE), "{r:?}");
            }
        }

        // Phase 2: the gateway publishes a new retained config; the post reports its hash.
        let new = PostConfig {
            sample_interval_s: 2,
            window_s: 10,
            warm_up_s: 0,
            ..PostConfig::default()
        };
        let mut payload = [0u8; 512];
        let n = protocol::post_config::encode(&new, &mut payload).unwrap();
        let config_topic = topic::format(&prefix, &d.post, TopicKind::Config).unwrap();
        gateway
            .publish(
                config_topic.as_str(),
                QoS::AtLeastOnce,
                true,
                payload[..n].to_vec(),
            )
            .await
            .unwrap();
        let published_at = unix_now_ms();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        while !seen
            .statuses
            .iter()
            .any(|(_, s)| s.config_hash == Some(new.hash()))
        {
            let Ok(ev) = tokio::time::timeout_at(deadline, events.poll()).await else {
                panic!("no status with the new config hash within 15 s");
            };
            seen.take(&prefix, ev.unwrap());
        }
        let (at, _) = seen
            .statuses
            .iter()
            .find(|(_, s)| s.config_hash == Some(new.hash()))
            .unwrap();
        assert!(
            at - published_at < 5_000,
            "status {} ms after the config",
            at - published_at
        );

        let _ = stop_tx.send(());
        let report = tokio::time::timeout(Duration::from_secs(20), sim)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(report.id.as_str(), post);
        assert_eq!(report.sensor_errors, 0);
        assert!(report.published >= 3);
    });
}

#[test]
fn forced_faults_silence_a_sensor_make_values_implausible_and_skew_the_clock() {
    if !mosquitto_available("forced_faults_silence_a_sensor") {
        return;
    }
    let broker = Broker::start();
    let rt = support::runtime();
    rt.block_on(async {
        let sensors = [AIR.as_slice(), &[Quantity::WaterLevel, Quantity::Ph]].concat();
        // Provisioned for production (TLS to the real host); the test overrides host and port.
        let mut d = device("almaty-new-02", "mqtt.taza.kz", 8883, &sensors);
        d.broker_tls = true;
        let d = through_blob(&d);
        let prefix = d.topic_prefix.to_string();
        let (_client, mut events) = watcher(broker.port, None, &prefix).await;
        let options = SinglePostOptions {
            broker_host: Some("127.0.0.1".into()),
            broker_port: Some(broker.port),
            faults: vec![
                (Quantity::No2, SensorFault::Silent),
                (Quantity::Pm2_5, SensorFault::Implausible),
                (Quantity::WaterLevel, SensorFault::Implausible),
            ],
            clock_offset_s: 3.5,
            plain: true,
            seed: 7,
        };
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let sim = tokio::spawn(single::run(d.clone(), options, async {
            let _ = stop_rx.await;
        }));
        let answering: Vec<Quantity> = sensors
            .iter()
            .copied()
            .filter(|q| *q != Quantity::No2)
            .collect();
        let mut seen = Seen::default();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while seen.statuses.is_empty() || answering.iter().any(|q| seen.windows(*q) < 3) {
            let Ok(ev) = tokio::time::timeout_at(deadline, events.poll()).await else {
                panic!("no birth and 3 windows of each answering sensor within 60 s");
            };
            seen.take(&prefix, ev.unwrap());
        }
        let _ = stop_tx.send(());

        let (received_ms, birth) = &seen.statuses[0];
        let offset_ms = birth.clock_ms.unwrap() - received_ms;
        assert!(
            (2_500..5_500).contains(&offset_ms),
            "a clock 3.5 s ahead shows as {offset_ms} ms"
        );
        assert!(
            birth.sensors.contains(&Quantity::No2),
            "a dead sensor is still installed"
        );
        assert_eq!(
            seen.windows(Quantity::No2),
            0,
            "a silent sensor has no readings"
        );
        let values = |q: Quantity| -> Vec<&Measurement> { seen.readings[&q].iter().collect() };
        for r in values(Quantity::Pm2_5) {
            assert!(r.value > 1000.0, "implausible PM2.5 {r:?}");
            assert!(r.flags.contains(QaFlags::OUT_OF_RANGE), "{r:?}");
        }
        for r in values(Quantity::WaterLevel) {
            assert!(r.value < -100.0, "implausible level {r:?}");
            assert!(r.flags.contains(QaFlags::OUT_OF_RANGE), "{r:?}");
        }
        for (q, lo, hi) in [
            (Quantity::Pm10, 0.0, 1000.0),
            (Quantity::Temperature, -40.0, 50.0),
            (Quantity::Ph, 0.0, 14.0),
        ] {
            for r in values(q) {
                assert!(
                    (lo..=hi).contains(&r.value),
                    "untouched {} {r:?}",
                    q.as_str()
                );
            }
        }
        let report = tokio::time::timeout(Duration::from_secs(20), sim)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert!(report.sensor_errors > 0, "the dead NO2 cell's polls failed");
    });
}
