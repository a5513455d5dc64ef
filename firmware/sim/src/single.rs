//! Single-post mode: one simulated post at real time, driven by the device config blob a
//! technician's provisioning produced, so a gateway can be commissioned against it.
//!
//! [`load_device_config`] puts the blob on the post's simulated flash and reads it back through
//! the firmware's own reader (`taza_firmware_core::provisioning`), so the sim refuses exactly
//! what a post would. [`run`] then connects to the blob's broker with its user name and password
//! (client id = post id), under its topic prefix, simulates its installed sensors at its
//! configured cadence, applies configs arriving on the config topic and publishes the status
//! (clock, RSSI about −71 dBm, supply about 12 000 mV) through the firmware core.
//!
//! Faults ([`SensorFault`]):
//! - `silent`: the physical sensor measuring the quantity is dead from boot: it never answers, so
//!   it and every other quantity it measures have no readings (`pm2_5:silent` silences the
//!   PMS5003, so pm1 and pm10 too; `temperature:silent` the SHT3x, so humidity too and the NO2
//!   cell runs on its climate fallback). The status still lists the quantity as installed: the
//!   post's installed sensors come from its device config, not from what answered, which is what
//!   lets the gateway say "installed but not reporting".
//! - `implausible`: the quantity reports a physically impossible value
//!   ([`implausible_value`]: PM 3000 µg/m³, NO2 −500 µg/m³, 95 °C, 130 %RH, level −500 cm, …),
//!   beyond the firmware's measuring ranges, so its records also carry `OUT_OF_RANGE`. It is
//!   injected between the driver and the sampler, as a sensor decoding a valid frame with an
//!   absurd value would.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration as StdDuration, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context};
use embassy_sync::blocking_mutex::raw::CriticalSectionRawMutex;
use embassy_sync::signal::Signal;
use protocol::device_config::DeviceConfig;
use protocol::Quantity;
use taza_firmware_core::provisioning::{read_device_config, write_device_config};
use taza_firmware_core::store::{RamNorFlash, RAM_FLASH_PAGE};
use taza_firmware_core::Clock;

use crate::devices::SimVitals;
use crate::fleet::{Fleet, PostKind, RIVER_QUANTITIES};
use crate::model::Model;
use crate::mqtt::LinkPlan;
use crate::post::{self, simulated};
pub use crate::post::{implausible_value, SensorFault};
use crate::{clock, PostReport};

/// How the single post runs, beyond what its device config says.
#[derive(Debug, Clone, Default)]
pub struct SinglePostOptions {
    /// Connect here instead of the blob's broker host (e.g. a test broker).
    pub broker_host: Option<String>,
    /// Connect to this port instead of the blob's.
    pub broker_port: Option<u16>,
    /// Forced sensor faults, at most one per quantity, each on an installed quantity.
    pub faults: Vec<(Quantity, SensorFault)>,
    /// The post's clock runs this many seconds ahead of true time (negative: behind).
    pub clock_offset_s: f64,
    /// Connect without TLS even if the blob asks for TLS (the simulator has no TLS stack).
    pub plain: bool,
    /// Seed of the simulated environment.
    pub seed: u64,
}

/// Parses a `--fault` argument, `<quantity>:<silent|implausible>`.
pub fn parse_fault(text: &str) -> anyhow::Result<(Quantity, SensorFault)> {
    let (q, kind) = text
        .split_once(':')
        .ok_or_else(|| anyhow!("fault {text:?} is not <quantity>:<silent|implausible>"))?;
    let quantity = Quantity::parse(q).ok_or_else(|| anyhow!("unknown quantity {q:?}"))?;
    let fault = match kind {
        "silent" => SensorFault::Silent,
        "implausible" => SensorFault::Implausible,
        _ => bail!("unknown fault {kind:?} (silent or implausible)"),
    };
    Ok((quantity, fault))
}

/// Writes `blob` to a simulated flash partition and reads it back with the firmware's reader.
pub fn load_device_config(blob: &[u8]) -> anyhow::Result<DeviceConfig> {
    const PARTITION: std::ops::Range<u32> = 0..RAM_FLASH_PAGE as u32;
    let mut flash = RamNorFlash::<RAM_FLASH_PAGE>::new();
    embassy_futures::block_on(async {
        write_device_config(&mut flash, PARTITION, blob)
            .await
            .map_err(|e| anyhow!("device config refused: {e:?}"))?;
        read_device_config(&mut flash, PARTITION)
            .await
            .map_err(|e| anyhow!("device config unreadable from flash: {e:?}"))
    })
}

/// Checks that the simulator can run `device` with `options`.
fn check(device: &DeviceConfig, options: &SinglePostOptions) -> anyhow::Result<()> {
    device
        .validate()
        .map_err(|e| anyhow!("invalid device config: {e}"))?;
    let unsupported: Vec<&str> = device
        .sensors
        .iter()
        .filter(|q| !simulated(**q))
        .map(|q| q.as_str())
        .collect();
    if !unsupported.is_empty() {
        bail!(
            "the simulator has no sensor for {} (it simulates pm1, pm2_5, pm10, no2, \
             temperature, humidity and the river probes)",
            unsupported.join(", ")
        );
    }
    for (i, (q, _)) in options.faults.iter().enumerate() {
        if !device.sensors.contains(q) {
            bail!(
                "fault on {}, which the device config does not install",
                q.as_str()
            );
        }
        if options.faults.iter().skip(i + 1).any(|(o, _)| o == q) {
            bail!("two faults on {}", q.as_str());
        }
    }
    if device.broker_tls && !options.plain {
        bail!(
            "the device config asks for TLS to {}:{}; the simulator speaks plain MQTT only \
             (pass --plain to connect without TLS, e.g. to a local test broker)",
            device.broker_host,
            device.broker_port
        );
    }
    if !options.clock_offset_s.is_finite() || options.clock_offset_s.abs() > 86_400.0 {
        bail!(
            "clock offset must be within a day, got {} s",
            options.clock_offset_s
        );
    }
    Ok(())
}

/// Runs the provisioned post until `shutdown` completes; returns what it did. Call it from a
/// tokio runtime (multi-thread). Real time: the process's simulator clock must run at rate 1.
pub async fn run(
    device: DeviceConfig,
    options: SinglePostOptions,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<PostReport> {
    check(&device, &options)?;
    clock::start(1.0).map_err(|e| anyhow!(e))?;
    let fleet = Fleet::default_almaty(options.seed);
    // Where the post stands: a river gauge if it has river probes, else a central air post.
    let river = device.sensors.iter().any(|q| RIVER_QUANTITIES.contains(q));
    let want = if river {
        PostKind::River
    } else {
        PostKind::Air
    };
    let mut descriptor = fleet
        .posts()
        .iter()
        .find(|p| p.kind == want)
        .cloned()
        .context("the default fleet has no post of that kind")?;
    descriptor.id = device.post.clone();
    // Once per run: the firmware wants 'static lists.
    let installed: &'static [Quantity] = Box::leak(device.sensors.to_vec().into_boxed_slice());
    descriptor.quantities = installed;
    let model = Arc::new(Model::new(options.seed, fleet.lez, None, false));
    // The post's Unix clock at the embassy clock's zero, to the millisecond, plus the skew.
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let since_boot_ms = embassy_time::Instant::now().as_millis() as i64;
    let offset_ms = (options.clock_offset_s * 1000.0).round() as i64;
    let clock = Clock::from_unix_ms(now_ms - since_boot_ms + offset_ms);
    let stop: &'static Signal<CriticalSectionRawMutex, ()> = Box::leak(Box::new(Signal::new()));
    let (done_tx, mut done_rx) = tokio::sync::mpsc::channel(1);
    let credentials = (!device.username.is_empty())
        .then(|| (device.username.to_string(), device.password.to_string()));
    let link_up: LinkPlan = Arc::new(|_| true);
    let descriptor = Arc::new(descriptor);
    let rt = tokio::runtime::Handle::current();
    let ctx = post::PostContext {
        installed,
        faults: options.faults.clone(),
        credentials,
        vitals: SimVitals::new(&descriptor),
        post: descriptor,
        model,
        clock,
        config: device.config.clone(),
        prefix: device.topic_prefix.to_string(),
        host: options
            .broker_host
            .clone()
            .unwrap_or_else(|| device.broker_host.to_string()),
        port: options.broker_port.unwrap_or(device.broker_port),
        rt: rt.clone(),
        link_up,
        stop,
        done: done_tx,
    };
    post::spawn_executor(vec![ctx], rt)?;
    shutdown.await;
    stop.signal(());
    match tokio::time::timeout(StdDuration::from_secs(10), done_rx.recv()).await {
        Ok(Some(report)) => Ok(report),
        _ => Err(anyhow!("the post did not stop within 10 s")),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use protocol::post_config::PostConfig;
    use protocol::PostId;

    fn device(sensors: &[Quantity]) -> DeviceConfig {
        fn text<const N: usize>(t: &str) -> heapless::String<N> {
            let mut s = heapless::String::new();
            s.push_str(t).unwrap();
            s
        }
        DeviceConfig {
            post: PostId::parse("almaty-new-01").unwrap(),
            broker_host: text("127.0.0.1"),
            broker_port: 1883,
            broker_tls: false,
            username: text("almaty-new-01"),
            password: text("pw"),
            topic_prefix: text("taza"),
            sensors: sensors.iter().copied().collect(),
            config: PostConfig::default(),
        }
    }

    #[test]
    fn faults_parse_and_bad_ones_say_why() {
        assert_eq!(
            parse_fault("pm2_5:silent").unwrap(),
            (Quantity::Pm2_5, SensorFault::Silent)
        );
        assert_eq!(
            parse_fault("no2:implausible").unwrap(),
            (Quantity::No2, SensorFault::Implausible)
        );
        for (bad, why) in [
            ("pm2_5", "not <quantity>"),
            ("radon:silent", "unknown quantity"),
            ("pm2_5:flaky", "unknown fault"),
        ] {
            let e = parse_fault(bad).unwrap_err().to_string();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn what_the_simulator_cannot_do_is_refused_before_connecting() {
        let ok = SinglePostOptions::default();
        assert!(check(&device(&[Quantity::Pm2_5, Quantity::WaterLevel]), &ok).is_ok());
        let e = check(&device(&[Quantity::Pm2_5, Quantity::Pressure]), &ok).unwrap_err();
        assert!(e.to_string().contains("no sensor for pressure"), "{e}");
        let faulty = SinglePostOptions {
            faults: vec![(Quantity::No2, SensorFault::Silent)],
            ..SinglePostOptions::default()
        };
        let e = check(&device(&[Quantity::Pm2_5]), &faulty).unwrap_err();
        assert!(e.to_string().contains("does not install"), "{e}");
        let mut tls = device(&[Quantity::Pm2_5]);
        tls.broker_tls = true;
        assert!(check(&tls, &ok)
            .unwrap_err()
            .to_string()
            .contains("--plain"));
        let plain = SinglePostOptions {
            plain: true,
            ..SinglePostOptions::default()
        };
        assert!(check(&tls, &plain).is_ok());
    }

    #[test]
    fn a_blob_is_read_through_the_firmware_flash_reader() {
        let d = device(&[Quantity::Ph]);
        let mut buf = [0u8; protocol::device_config::MAX_DEVICE_CONFIG_BYTES];
        let n = protocol::device_config::encode(&d, &mut buf).unwrap();
        assert_eq!(load_device_config(&buf[..n]).unwrap(), d);
        buf[n - 1] ^= 1;
        let e = load_device_config(&buf[..n]).unwrap_err().to_string();
        assert!(e.contains("BadCrc"), "{e}");
        assert!(load_device_config(&[0xFF; 64])
            .unwrap_err()
            .to_string()
            .contains("NotProvisioned"));
    }
}
