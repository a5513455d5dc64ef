//! Provisioning: turns a registry entry into what a box needs to become that post. It issues the
//! post's MQTT credentials (only the hash stays here), derives the post's sampling config from
//! the registry ([`desired_config`], also what the gateway publishes on the config topic), and
//! writes the device config blob in the format the firmware reads from flash
//! (`protocol::device_config`), with a short summary for the paper log and its QR code.

use std::time::Duration;

use protocol::device_config::{self, DeviceConfig, MAX_DEVICE_CONFIG_BYTES};
use protocol::post_config::{Calibration, No2SensorConfig, PostConfig, MAX_CALIBRATIONS};
use protocol::{PostId, Quantity};
use serde_json::json;

use crate::config::ProvisionConfig;
use crate::manage::{self, RegistryError};
use taza_domain::post::{PostEntry, PostKind};
use taza_ingest::config::{BrokerUrl, MqttConfig};
use taza_store::Db;

/// Sampling interval when the registry sets none, seconds.
const DEFAULT_SAMPLE_S: u32 = 10;

/// Why a post could not be provisioned.
#[derive(Debug, thiserror::Error)]
pub enum ProvisionError {
    /// The registry refused (unknown or retired post...).
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// The entry cannot be expressed as a post config.
    #[error("post {post}: {reason}")]
    Config {
        /// The post.
        post: PostId,
        /// Why.
        reason: String,
    },
}

impl From<taza_store::StoreError> for ProvisionError {
    fn from(e: taza_store::StoreError) -> Self {
        Self::Registry(RegistryError::Store(e))
    }
}

/// What the technician takes away.
#[derive(Debug, Clone)]
pub struct Provisioned {
    /// The post.
    pub post: PostId,
    /// The device config blob to write to the post's config flash page (holds the password).
    pub blob: Vec<u8>,
    /// Hash of the sampling config in the blob (the post reports it in its status).
    pub config_hash: u32,
    /// One line for the paper log (no password): fits a small QR code.
    pub summary: String,
}

/// The broker address posts dial, for their device configs: `[provision] broker`, else the
/// external broker the gateway uses, else the embedded broker's listen address.
pub fn post_broker(provision: &ProvisionConfig, mqtt: &MqttConfig) -> BrokerUrl {
    let mut url = provision
        .broker
        .clone()
        .or_else(|| mqtt.broker.clone())
        .unwrap_or_else(|| BrokerUrl {
            tls: false,
            host: mqtt.listen.ip().to_string(),
            port: mqtt.listen.port(),
            username: None,
            password: None,
        });
    if provision.broker.is_none() && mqtt.listen.ip().is_unspecified() && mqtt.broker.is_none() {
        tracing::warn!("set [provision] broker: posts cannot dial the unspecified address the embedded broker listens on");
    }
    // Each post gets its own credentials; the gateway's are never written into a device.
    url.username = None;
    url.password = None;
    url
}

/// The sampling config the registry asks of `entry`'s post.
pub fn desired_config(
    entry: &PostEntry,
    default_cadence: Duration,
) -> Result<PostConfig, ProvisionError> {
    let bad = |reason: String| ProvisionError::Config {
        post: entry.id.clone(),
        reason,
    };
    let window_s = u32::try_from(entry.cadence.unwrap_or(default_cadence).as_secs())
        .map_err(|_| bad("cadence too long".into()))?;
    let sample_s = entry
        .sample_interval
        .map(|d| u32::try_from(d.as_secs()).unwrap_or(u32::MAX))
        .unwrap_or(DEFAULT_SAMPLE_S.min(window_s));
    let quantities = entry.quantities();
    let mut calibrations = heapless::Vec::<Calibration, MAX_CALIBRATIONS>::new();
    for fit in &entry.calibration.linear {
        calibrations
            .push(Calibration {
                quantity: fit.quantity,
                gain: fit.gain as f32,
                offset: fit.offset as f32,
            })
            .map_err(|_| bad(format!("at most {MAX_CALIBRATIONS} calibrations")))?;
    }
    let no2 = quantities.contains(&Quantity::No2).then(|| {
        entry
            .calibration
            .no2
            .map(|c| No2SensorConfig {
                we_zero_mv: c.we_zero_mv as f32,
                ae_zero_mv: c.ae_zero_mv as f32,
                sensitivity_mv_per_ppb: c.sensitivity_mv_per_ppb as f32,
            })
            // Without its calibration sheet the cell runs on the typical constants; the
            // commissioning report's NO2 range check is the safety net.
            .unwrap_or_default()
    });
    let config = PostConfig {
        sample_interval_s: sample_s,
        window_s,
        warm_up_s: match entry.warm_up {
            Some(w) => u32::try_from(w.as_secs()).map_err(|_| bad("warm_up too long".into()))?,
            None => PostConfig::default().warm_up_s,
        },
        pm_humidity_correction: entry.kind == PostKind::Air
            && quantities.iter().any(|q| matches!(q, Quantity::Pm2_5)),
        calibrations,
        no2,
    };
    config
        .validate()
        .map_err(|e| bad(format!("sampling config refused: {e:?}")))?;
    Ok(config)
}

/// Issues credentials for `post` and builds its blob, in the caller's transaction (credentials
/// and the audit row commit together). `broker` is the address the post dials.
pub fn provision(
    db: &Db<'_>,
    post: &PostId,
    actor: &str,
    broker: &BrokerUrl,
    topic_prefix: &str,
    default_cadence: Duration,
) -> Result<Provisioned, ProvisionError> {
    let entry = taza_store::registry::get(db, post)
        .map_err(RegistryError::from)?
        .filter(|r| r.active())
        .map(|r| r.entry)
        .ok_or_else(|| RegistryError::NotFound(post.clone()))?;
    let config = desired_config(&entry, default_cadence)?;
    let bad = |reason: String| ProvisionError::Config {
        post: post.clone(),
        reason,
    };
    let mut sensors = heapless::Vec::new();
    for q in entry.quantities() {
        sensors
            .push(q)
            .map_err(|_| bad("too many sensors for the device config".into()))?;
    }
    if sensors.is_empty() {
        return Err(bad(
            "no installed sensors in the registry; add them before provisioning".into(),
        ));
    }
    let issued = manage::issue_credentials(db, post, actor)?;
    fn text<const N: usize>(s: &str, what: &str) -> Result<heapless::String<N>, String> {
        heapless::String::try_from(s).map_err(|_| format!("{what} too long for the device config"))
    }
    let device = DeviceConfig {
        post: post.clone(),
        broker_host: text(&broker.host, "broker host").map_err(bad)?,
        broker_port: broker.port,
        broker_tls: broker.tls,
        username: text(&issued.username, "user name").map_err(bad)?,
        password: text(issued.password.expose(), "password").map_err(bad)?,
        topic_prefix: text(topic_prefix, "topic prefix").map_err(bad)?,
        sensors,
        config: config.clone(),
    };
    let mut buf = [0u8; MAX_DEVICE_CONFIG_BYTES];
    let n = device_config::encode(&device, &mut buf)
        .map_err(|e| bad(format!("device config does not encode: {e:?}")))?;
    let blob = buf.get(..n).unwrap_or(&[]).to_vec();
    let config_hash = config.hash();
    let scheme = if broker.tls { "mqtts" } else { "mqtt" };
    let summary = format!(
        "TAZA1;{post};{scheme}://{}:{};cfg={config_hash:08x};blob={:08x};{}",
        broker.host,
        broker.port,
        device_config::crc32(&blob),
        taza_domain::calendar::rfc3339(taza_domain::calendar::now()),
    );
    taza_store::registry::audit(db, actor, post, "provision", &json!({ "summary": summary }))
        .map_err(RegistryError::from)?;
    Ok(Provisioned {
        post: post.clone(),
        blob,
        config_hash,
        summary,
    })
}

/// `text` as a QR code drawn with Unicode half blocks, for a terminal or a phone's screen.
pub fn qr_code(text: &str) -> Option<String> {
    let code = qrcode::QrCode::new(text.as_bytes()).ok()?;
    Some(
        code.render::<qrcode::render::unicode::Dense1x2>()
            .quiet_zone(true)
            .build(),
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use taza_domain::post::{LinearFit, No2Cell};

    use taza_store::schema::in_memory as db;

    #[test]
    fn the_blob_decodes_to_the_registry_entry_and_the_issued_credentials() {
        let mut conn = db();
        let id = PostId::parse("alm-air-200").unwrap();
        let mut e = PostEntry::new(
            id.clone(),
            PostKind::Air,
            "Сатпаева / Ауэзова",
            43.23,
            76.90,
        );
        e.sensors = vec![Quantity::Pm2_5, Quantity::No2];
        e.cadence = Some(Duration::from_secs(60));
        e.sample_interval = Some(Duration::from_secs(5));
        e.calibration.linear.push(LinearFit {
            quantity: Quantity::Pm2_5,
            gain: 0.8,
            offset: 1.5,
        });
        e.calibration.no2 = Some(No2Cell {
            we_zero_mv: 300.0,
            ae_zero_mv: 280.0,
            sensitivity_mv_per_ppb: 0.25,
        });
        let tx = conn.transaction().unwrap();
        manage::add(&Db::Sqlite(&tx), &e, "test", Duration::from_secs(60)).unwrap();
        let broker: BrokerUrl = "mqtts://mqtt.example.kz:8883".parse().unwrap();
        let p = provision(
            &Db::Sqlite(&tx),
            &id,
            "test",
            &broker,
            "taza",
            Duration::from_secs(60),
        )
        .unwrap();
        tx.commit().unwrap();

        let d = device_config::decode(&p.blob).unwrap();
        assert_eq!(d.post, id);
        assert_eq!(
            (d.broker_host.as_str(), d.broker_port, d.broker_tls),
            ("mqtt.example.kz", 8883, true)
        );
        assert_eq!(d.username.as_str(), "alm-air-200");
        assert_eq!(d.config.sample_interval_s, 5);
        assert_eq!(d.config.window_s, 60);
        assert_eq!(d.config.calibrations[0].gain, 0.8);
        assert_eq!(d.config.no2.unwrap().sensitivity_mv_per_ppb, 0.25);
        assert_eq!(d.config.hash(), p.config_hash);
        // The password in the blob is the one the registry now accepts, and only its hash is kept.
        let registry =
            crate::refresh::load_from(&Db::Sqlite(&conn), Duration::from_secs(60), false).unwrap();
        assert_eq!(
            registry.authenticate("alm-air-200", d.password.as_str()),
            Some(id.clone())
        );
        assert!(!p.summary.contains(d.password.as_str()));
        assert!(p
            .summary
            .starts_with("TAZA1;alm-air-200;mqtts://mqtt.example.kz:8883;cfg="));
        assert!(qr_code(&p.summary).unwrap().lines().count() > 10);
        // Provisioning again rotates the password: the old blob stops working.
        let tx = conn.transaction().unwrap();
        let again = provision(
            &Db::Sqlite(&tx),
            &id,
            "test",
            &broker,
            "taza",
            Duration::from_secs(60),
        )
        .unwrap();
        tx.commit().unwrap();
        crate::refresh::reload_if_changed(&registry, &Db::Sqlite(&conn)).unwrap();
        assert_eq!(
            registry.authenticate("alm-air-200", d.password.as_str()),
            None
        );
        let d2 = device_config::decode(&again.blob).unwrap();
        assert_eq!(
            registry.authenticate("alm-air-200", d2.password.as_str()),
            Some(id)
        );
    }

    #[test]
    fn a_post_without_sensors_or_a_retired_one_is_not_provisioned() {
        let mut conn = db();
        let id = PostId::parse("alm-air-201").unwrap();
        let e = PostEntry::new(id.clone(), PostKind::Air, "x", 43.2, 76.9);
        let tx = conn.transaction().unwrap();
        manage::add(&Db::Sqlite(&tx), &e, "test", Duration::from_secs(60)).unwrap();
        let broker: BrokerUrl = "mqtt://127.0.0.1:1883".parse().unwrap();
        let err = provision(
            &Db::Sqlite(&tx),
            &id,
            "t",
            &broker,
            "taza",
            Duration::from_secs(60),
        )
        .unwrap_err();
        assert!(err.to_string().contains("no installed sensors"), "{err}");
        manage::retire(&Db::Sqlite(&tx), &id, "t", "test").unwrap();
        assert!(matches!(
            provision(
                &Db::Sqlite(&tx),
                &id,
                "t",
                &broker,
                "taza",
                Duration::from_secs(60)
            ),
            Err(ProvisionError::Registry(RegistryError::NotFound(_)))
        ));
    }
}
