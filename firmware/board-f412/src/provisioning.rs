//! The post's identity and network settings, read at boot from the provisioning sector
//! ([`crate::partitions::PROVISIONING`]).
//!
//! TODO(protocol::device_config): the blob format (CBOR with magic and CRC) is being added as
//! `protocol::device_config` on another branch. When it lands, [`BoardConfig::from_blob`]
//! decodes the blob with it and nothing else changes here; until then no blob is decoded and
//! the post runs on the bench settings compiled in from `TAZA_*` environment variables (see
//! firmware/README.md "Provisioning"). Do not add a second blob format in this crate.

use heapless::String;
use protocol::post_config::PostConfig;
use protocol::topic::DEFAULT_PREFIX;
use protocol::PostId;

/// How the cellular link reaches the broker.
#[derive(Debug, Clone)]
pub struct NetworkSettings {
    /// Operator APN (e.g. `internet.beeline.kz`, `internet` for Kcell/Activ, Tele2 `internet.tele2.kz`).
    pub apn: String<48>,
    /// Broker host name or address.
    pub broker_host: String<64>,
    /// Broker port.
    pub broker_port: u16,
    /// MQTT user name (the gateway's ACL maps it to the post).
    pub username: String<48>,
    /// MQTT password.
    pub password: String<64>,
    /// NTP server the modem sets its clock from.
    pub ntp_server: String<48>,
}

/// Everything a post needs to know about itself at boot.
#[derive(Debug, Clone)]
pub struct BoardConfig {
    /// The post.
    pub post: PostId,
    /// Topic prefix.
    pub prefix: String<16>,
    /// Network and broker.
    pub net: NetworkSettings,
    /// Config until the retained config topic says otherwise.
    pub config: PostConfig,
    /// Surveyed height of the inlet above sea level, m (standard-atmosphere pressure for the
    /// NO2 ppb -> µg/m³ conversion; Almaty's posts sit between about 600 and 1 100 m).
    pub elevation_m: f32,
}

/// Why the blob was not used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, defmt::Format)]
pub enum ProvisioningError {
    /// The sector is erased: the post was never provisioned.
    Blank,
    /// A blob is present but this firmware cannot decode it yet (see the module TODO).
    Undecodable,
    /// A compiled-in bench value is invalid (too long, or a bad post id).
    BadBenchValue(&'static str),
}

impl BoardConfig {
    /// Reads the provisioning blob. TODO(protocol::device_config): decode `blob` here.
    pub fn from_blob(blob: &[u8]) -> Result<Self, ProvisioningError> {
        if blob.iter().all(|b| *b == 0xFF) {
            return Err(ProvisioningError::Blank);
        }
        Err(ProvisioningError::Undecodable)
    }

    /// Bench settings compiled in from `TAZA_POST_ID`, `TAZA_APN`, `TAZA_MQTT_HOST`,
    /// `TAZA_MQTT_PORT`, `TAZA_MQTT_USER`, `TAZA_MQTT_PASSWORD`, `TAZA_NTP`, `TAZA_ELEVATION_M`
    /// (defaults: post `bench-1`, APN `internet`, broker `127.0.0.1:1883`, which no post can
    /// reach: a post built without them stays offline and keeps its readings in flash).
    pub fn bench() -> Result<Self, ProvisioningError> {
        fn s<const N: usize>(name: &'static str, v: &str) -> Result<String<N>, ProvisioningError> {
            String::try_from(v).map_err(|_| ProvisioningError::BadBenchValue(name))
        }
        let post = PostId::parse(option_env!("TAZA_POST_ID").unwrap_or("bench-1"))
            .map_err(|_| ProvisioningError::BadBenchValue("TAZA_POST_ID"))?;
        let port = option_env!("TAZA_MQTT_PORT").unwrap_or("1883");
        let elevation = option_env!("TAZA_ELEVATION_M").unwrap_or("800");
        Ok(Self {
            post,
            prefix: s("prefix", DEFAULT_PREFIX)?,
            net: NetworkSettings {
                apn: s("TAZA_APN", option_env!("TAZA_APN").unwrap_or("internet"))?,
                broker_host: s(
                    "TAZA_MQTT_HOST",
                    option_env!("TAZA_MQTT_HOST").unwrap_or("127.0.0.1"),
                )?,
                broker_port: port
                    .parse()
                    .map_err(|_| ProvisioningError::BadBenchValue("TAZA_MQTT_PORT"))?,
                username: s(
                    "TAZA_MQTT_USER",
                    option_env!("TAZA_MQTT_USER").unwrap_or(""),
                )?,
                password: s(
                    "TAZA_MQTT_PASSWORD",
                    option_env!("TAZA_MQTT_PASSWORD").unwrap_or(""),
                )?,
                ntp_server: s(
                    "TAZA_NTP",
                    option_env!("TAZA_NTP").unwrap_or("pool.ntp.org"),
                )?,
            },
            config: PostConfig::default(),
            elevation_m: elevation
                .parse()
                .map_err(|_| ProvisioningError::BadBenchValue("TAZA_ELEVATION_M"))?,
        })
    }
}
