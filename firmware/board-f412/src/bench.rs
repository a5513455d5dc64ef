//! Bench settings compiled in from `TAZA_*` environment variables, only with the
//! `bench-config` cargo feature (off by default): for a board on the desk whose provisioning
//! sector is still erased. A production image never contains them; a provisioned sector always
//! wins, and a damaged or refused blob is never replaced by them.
//!
//! `TAZA_POST_ID` (default `bench-1`), `TAZA_MQTT_HOST` (`127.0.0.1`, which no post can reach),
//! `TAZA_MQTT_PORT` (1883), `TAZA_MQTT_USER`, `TAZA_MQTT_PASSWORD` (empty), `TAZA_APN`
//! (`internet`), `TAZA_NTP` (`pool.ntp.org`), `TAZA_ELEVATION_M` (850). All six air quantities
//! are installed, the config is `PostConfig::default()`, no TLS.

use heapless::{String, Vec};
use protocol::device_config::DeviceConfig;
use protocol::post_config::PostConfig;
use protocol::topic::DEFAULT_PREFIX;
use protocol::PostId;

use crate::provisioning::{OperatorSettings, CLIMATE_QUANTITIES, NO2_QUANTITIES, PMS_QUANTITIES};

/// The bench device config and operator settings; `Err` names the bad variable.
pub fn bench_device() -> Result<(DeviceConfig, OperatorSettings), &'static str> {
    fn s<const N: usize>(name: &'static str, v: &str) -> Result<String<N>, &'static str> {
        String::try_from(v).map_err(|_| name)
    }
    let post = PostId::parse(option_env!("TAZA_POST_ID").unwrap_or("bench-1"))
        .map_err(|_| "TAZA_POST_ID")?;
    let sensors: Vec<_, { protocol::status::MAX_SENSORS }> = PMS_QUANTITIES
        .iter()
        .chain(&CLIMATE_QUANTITIES)
        .chain(&NO2_QUANTITIES)
        .copied()
        .collect();
    let device = DeviceConfig {
        post,
        broker_host: s(
            "TAZA_MQTT_HOST",
            option_env!("TAZA_MQTT_HOST").unwrap_or("127.0.0.1"),
        )?,
        broker_port: option_env!("TAZA_MQTT_PORT")
            .unwrap_or("1883")
            .parse()
            .map_err(|_| "TAZA_MQTT_PORT")?,
        broker_tls: false,
        username: s(
            "TAZA_MQTT_USER",
            option_env!("TAZA_MQTT_USER").unwrap_or(""),
        )?,
        password: s(
            "TAZA_MQTT_PASSWORD",
            option_env!("TAZA_MQTT_PASSWORD").unwrap_or(""),
        )?,
        topic_prefix: s("prefix", DEFAULT_PREFIX)?,
        sensors,
        config: PostConfig::default(),
    };
    // The same checks a blob gets from the core's reader.
    device
        .validate()
        .map_err(|_| "TAZA_* (invalid device config)")?;
    let operator = OperatorSettings {
        apn: option_env!("TAZA_APN").unwrap_or("internet"),
        ntp_server: option_env!("TAZA_NTP").unwrap_or("pool.ntp.org"),
        elevation_m: option_env!("TAZA_ELEVATION_M")
            .unwrap_or("850")
            .parse()
            .map_err(|_| "TAZA_ELEVATION_M")?,
    };
    Ok((device, operator))
}
