//! What this board makes of the post's device config: the `protocol::device_config` blob
//! (written by `gateway posts provision <post>` and flashed into the provisioning sector, read
//! at boot by the core's `provisioning::read_device_config`) checked against what this board
//! can do, plus the operator settings the blob does not carry (APN, NTP server, inlet height).
//!
//! A blob this board cannot honour is refused here, at boot, with its reason, instead of
//! failing later on every connect: a broker over TLS (the modem's MQTT client runs in clear in
//! this firmware), a value that cannot travel in a quoted AT argument, or a sensor the board
//! does not have.
//!
//! HAL-free: the host tests (`host-tests/`) compile this file too.

use heapless::{String, Vec};
use protocol::device_config::{DeviceConfig, MAX_CREDENTIAL_LEN, MAX_PREFIX_LEN};
use protocol::post_config::PostConfig;
use protocol::status::MAX_SENSORS;
use protocol::{PostId, Quantity};

use crate::at;

/// The quantities of the PMS5003.
pub const PMS_QUANTITIES: [Quantity; 3] = [Quantity::Pm1, Quantity::Pm2_5, Quantity::Pm10];
/// The quantities of the SHT31.
pub const CLIMATE_QUANTITIES: [Quantity; 2] = [Quantity::Temperature, Quantity::Humidity];
/// The quantity of the NO2-B43F cell (through the ADS1115).
pub const NO2_QUANTITIES: [Quantity; 1] = [Quantity::No2];

/// Settings of the cellular operator and the site that the device config blob has no field
/// for. They are the same for a whole fleet, so they are compiled in.
#[derive(Debug, Clone, Copy)]
pub struct OperatorSettings {
    /// Operator APN (`internet` for Kcell/Activ; Beeline `internet.beeline.kz`, Tele2
    /// `internet.tele2.kz`).
    pub apn: &'static str,
    /// NTP server the modem sets its clock from.
    pub ntp_server: &'static str,
    /// Height of the inlet above sea level, m, for the standard-atmosphere pressure of the NO2
    /// ppb -> µg/m³ conversion (the board has no barometer).
    pub elevation_m: f32,
}

/// The fleet's operator settings. Almaty's posts stand between about 600 and 1 100 m: 850 m is
/// within 3 % of the true pressure at either end.
pub const FLEET: OperatorSettings = OperatorSettings {
    apn: "internet",
    ntp_server: "pool.ntp.org",
    elevation_m: 850.0,
};

/// How the cellular link reaches the broker.
#[derive(Debug, Clone)]
pub struct NetworkSettings {
    /// Operator APN.
    pub apn: &'static str,
    /// Broker host name or address.
    pub broker_host: String<MAX_CREDENTIAL_LEN>,
    /// Broker port (plain MQTT: TLS is refused at boot, see [`Refusal::TlsUnsupported`]).
    pub broker_port: u16,
    /// MQTT user name the gateway issued (empty: anonymous).
    pub username: String<MAX_CREDENTIAL_LEN>,
    /// MQTT password the gateway issued.
    pub password: String<MAX_CREDENTIAL_LEN>,
    /// NTP server the modem sets its clock from.
    pub ntp_server: &'static str,
}

/// Everything a post needs to know about itself at boot.
#[derive(Debug, Clone)]
pub struct BoardConfig {
    /// The post; also its MQTT client id.
    pub post: PostId,
    /// Topic prefix.
    pub prefix: String<MAX_PREFIX_LEN>,
    /// Network and broker.
    pub net: NetworkSettings,
    /// Installed quantities (reported in the status; only these are measured).
    pub sensors: Vec<Quantity, MAX_SENSORS>,
    /// Config until the retained config topic says otherwise.
    pub config: PostConfig,
    /// Height of the inlet above sea level, m.
    pub elevation_m: f32,
}

/// Why an intact device config is not used on this board.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(target_os = "none", derive(defmt::Format))]
pub enum Refusal {
    /// The blob asks for TLS to the broker; this firmware's modem MQTT client has no TLS
    /// (`AT+SMSSL` with a CA is not implemented), and a post never falls back to clear text.
    TlsUnsupported,
    /// A value is not printable ASCII without `"`, so it cannot be sent in a quoted AT
    /// argument; the field is named. Re-issue it rather than mangle it.
    Unquotable(&'static str),
    /// The blob lists a quantity no sensor of this board measures; the quantity is named.
    UnsupportedSensor(&'static str),
}

impl BoardConfig {
    /// Checks `device` against this board and adds `operator`'s settings.
    pub fn from_device(device: DeviceConfig, operator: OperatorSettings) -> Result<Self, Refusal> {
        if device.broker_tls {
            return Err(Refusal::TlsUnsupported);
        }
        let texts = [
            ("host", device.broker_host.as_str()),
            ("user", device.username.as_str()),
            ("password", device.password.as_str()),
            ("prefix", device.topic_prefix.as_str()),
            ("post", device.post.as_str()),
        ];
        if let Some((field, _)) = texts.iter().find(|(_, v)| !at::quotable(v)) {
            return Err(Refusal::Unquotable(field));
        }
        let board_has = |q: &Quantity| {
            PMS_QUANTITIES
                .iter()
                .chain(&CLIMATE_QUANTITIES)
                .chain(&NO2_QUANTITIES)
                .any(|b| b == q)
        };
        if let Some(q) = device.sensors.iter().find(|q| !board_has(q)) {
            return Err(Refusal::UnsupportedSensor(q.as_str()));
        }
        Ok(Self {
            post: device.post,
            prefix: device.topic_prefix,
            net: NetworkSettings {
                apn: operator.apn,
                broker_host: device.broker_host,
                broker_port: device.broker_port,
                username: device.username,
                password: device.password,
                ntp_server: operator.ntp_server,
            },
            sensors: device.sensors,
            config: device.config,
            elevation_m: operator.elevation_m,
        })
    }

    /// Which of `device_quantities` (one sensor's) are installed, in the sensor's order.
    pub fn installed_of<const N: usize>(&self, device_quantities: &[Quantity]) -> Vec<Quantity, N> {
        device_quantities
            .iter()
            .filter(|q| self.sensors.contains(q))
            .take(N)
            .copied()
            .collect()
    }

    /// Whether the SHT31 runs: for its own quantities, or as the NO2 cell's temperature and
    /// humidity compensation.
    pub fn needs_climate(&self) -> bool {
        self.sensors
            .iter()
            .any(|q| CLIMATE_QUANTITIES.contains(q) || NO2_QUANTITIES.contains(q))
    }
}
