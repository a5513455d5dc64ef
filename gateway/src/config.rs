//! Configuration: built-in defaults, then `taza.toml`, then `TAZA_SECTION__KEY` environment
//! variables, then command-line flags (flags win). [`Config::validate`] reports every problem at
//! once; each stage receives only its own section.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use protocol::{PostId, Quantity};
use serde::{Deserialize, Serialize};

use crate::secret::SecretString;

/// The whole gateway configuration.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// MQTT: embedded broker or an external one, and the ingest client.
    pub mqtt: MqttConfig,
    /// SQLite store.
    pub store: StoreConfig,
    /// HTTP API and dashboard.
    pub api: ApiConfig,
    /// Scoring: norms, limit set, zones.
    pub score: ScoreConfig,
    /// Alerts: rules, on-call rota, channels.
    pub alert: crate::alert::AlertConfig,
    /// Long-term stores readings are copied to (`[sink.influxdb]`).
    pub sink: crate::sink::SinkConfig,
    /// What provisioning writes into posts' device config blobs.
    pub provision: ProvisionConfig,
    /// The post registry.
    pub posts: Vec<PostEntry>,
}

/// Provisioning settings.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProvisionConfig {
    /// The broker address posts dial, e.g. `mqtts://mqtt.taza.almaty.kz:8883` (Mosquitto's TLS
    /// listener). Default: the embedded broker's listen address. Credentials in the URL are
    /// ignored: each post gets its own.
    pub broker: Option<BrokerUrl>,
}

/// Where scoring finds the department's data.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ScoreConfig {
    /// Folder of TOML files that override the shipped norms (same file names as
    /// `gateway/norms/`); read at every computation, so edits apply without a restart.
    pub norms_dir: Option<PathBuf>,
    /// Limit set to score against (overrides `active_set` in the norms).
    pub limit_set: Option<String>,
    /// GeoJSON FeatureCollection of low-emission zones loaded at startup (properties: `id`,
    /// `name`, `start_date`); zones can also be added through the API.
    pub zones_file: Option<PathBuf>,
}

/// MQTT settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MqttConfig {
    /// External broker, `mqtt://user:pass@host:port`. None: start the embedded broker.
    pub broker: Option<BrokerUrl>,
    /// Listen address of the embedded broker.
    pub listen: SocketAddr,
    /// Client id of the gateway's persistent session.
    pub client_id: String,
    /// Topic prefix, `{prefix}/v1/posts/...`.
    pub topic_prefix: String,
    /// MQTT keep-alive.
    #[serde(with = "humantime_serde")]
    pub keep_alive: Duration,
    /// Longest wait between reconnect attempts.
    #[serde(with = "humantime_serde")]
    pub reconnect_max_backoff: Duration,
    /// Accept posts missing from the registry (demos only: anyone could then write data).
    pub allow_unregistered: bool,
    /// Embedded broker only: posts must log in with the credentials `gateway posts provision`
    /// issued, and may publish and subscribe only under their own id (the rules the shipped
    /// Mosquitto ACL applies to an external broker).
    pub embedded_auth: bool,
    /// `mqtts://` only: PEM file of the CA certificate(s) the broker's certificate must chain
    /// to (the city's private CA). None: the Mozilla roots compiled into the gateway
    /// (webpki-roots), for a broker with a publicly issued certificate.
    pub ca_file: Option<PathBuf>,
    /// `mqtts://` only: PEM certificate chain the gateway presents to a broker that requires
    /// mutual TLS; needs `client_key_file`.
    pub client_cert_file: Option<PathBuf>,
    /// `mqtts://` only: PEM private key (PKCS#8, PKCS#1 or SEC1) of `client_cert_file`.
    pub client_key_file: Option<PathBuf>,
    /// Replicas: subscribe as `$share/<group>/<filter>` so that the broker hands each message
    /// to one of the gateways in the group (each with its own `client_id` and store). None:
    /// an ordinary subscription, every message to this gateway.
    pub shared_group: Option<String>,
}

impl Default for MqttConfig {
    fn default() -> Self {
        Self {
            broker: None,
            listen: SocketAddr::from(([127, 0, 0, 1], 1883)),
            client_id: "taza-gateway".into(),
            topic_prefix: protocol::topic::DEFAULT_PREFIX.into(),
            keep_alive: Duration::from_secs(30),
            reconnect_max_backoff: Duration::from_secs(30),
            allow_unregistered: false,
            embedded_auth: false,
            ca_file: None,
            client_cert_file: None,
            client_key_file: None,
            shared_group: None,
        }
    }
}

impl MqttConfig {
    /// TLS settings that cannot work together.
    fn tls_problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let tls = self.broker.as_ref().is_some_and(|b| b.tls);
        if !tls {
            for (key, set) in [
                ("ca_file", self.ca_file.is_some()),
                ("client_cert_file", self.client_cert_file.is_some()),
                ("client_key_file", self.client_key_file.is_some()),
            ] {
                if set {
                    problems.push(format!(
                        "mqtt.{key} is set but mqtt.broker is not an mqtts:// (TLS) URL"
                    ));
                }
            }
        }
        if self.client_cert_file.is_some() != self.client_key_file.is_some() {
            problems.push(
                "mqtt.client_cert_file and mqtt.client_key_file go together (mutual TLS)".into(),
            );
        }
        problems
    }
}

/// SQLite settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// Folder holding `taza.db`.
    pub data_dir: PathBuf,
    /// How long raw readings are kept (rollups are kept for ever). None: keep for ever.
    #[serde(with = "humantime_serde")]
    pub raw_retention: Option<Duration>,
    /// `full` survives power loss; `normal` survives a process crash and is faster.
    pub synchronous: Synchronous,
    /// Reporting interval assumed for posts that do not set one (data capture needs it).
    #[serde(with = "humantime_serde")]
    pub default_cadence: Duration,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("taza-data"),
            raw_retention: None,
            synchronous: Synchronous::Full,
            default_cadence: Duration::from_secs(60),
        }
    }
}

/// SQLite `synchronous` pragma.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Synchronous {
    /// fsync on every commit: durable across power loss.
    Full,
    /// WAL fsync at checkpoints only: durable across process crashes.
    Normal,
}

/// HTTP settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApiConfig {
    /// Listen address.
    pub listen: SocketAddr,
    /// How long shutdown waits for in-flight work.
    #[serde(with = "humantime_serde")]
    pub shutdown_deadline: Duration,
    /// Bearer tokens for write endpoints, each with a role.
    pub tokens: Vec<crate::api::ApiToken>,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            shutdown_deadline: Duration::from_secs(10),
            tokens: Vec::new(),
        }
    }
}

/// Air or river post.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PostKind {
    /// Street air-quality post.
    Air,
    /// River gauge and water-quality post.
    River,
}

impl PostKind {
    /// `air` or `river`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Air => "air",
            Self::River => "river",
        }
    }
}

/// One post in the registry.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostEntry {
    /// The post id (slug).
    pub id: PostId,
    /// Air or river.
    pub kind: PostKind,
    /// Human name, e.g. "Райымбека / Сейфуллина".
    pub name: String,
    /// WGS84 latitude, degrees.
    pub latitude: f64,
    /// WGS84 longitude, degrees.
    pub longitude: f64,
    /// City district (air posts).
    #[serde(default)]
    pub district: Option<String>,
    /// River (river posts).
    #[serde(default)]
    pub river: Option<String>,
    /// Installed sensors' quantities.
    #[serde(default)]
    pub sensors: Vec<Quantity>,
    /// Reporting interval of averaged records; default `store.default_cadence`.
    #[serde(default, with = "humantime_serde")]
    pub cadence: Option<Duration>,
    /// River posts: the gauge's critical level (cm above the gauge zero, possibly seasonal).
    #[serde(default)]
    pub critical_level: Option<crate::score::CriticalLevel>,
    /// How often the post polls its sensors; default 10 s. The averaging window is `cadence`.
    #[serde(
        default,
        with = "humantime_serde",
        skip_serializing_if = "Option::is_none"
    )]
    pub sample_interval: Option<Duration>,
    /// How long after boot readings are flagged warm-up; default 2 min (electrochemical cells
    /// may want hours after storage).
    #[serde(
        default,
        with = "humantime_serde",
        skip_serializing_if = "Option::is_none"
    )]
    pub warm_up: Option<Duration>,
    /// Installed instruments with their serial numbers (what a technician reads off the box).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub instruments: Vec<Instrument>,
    /// Corrections from co-location and the sensors' calibration sheets.
    #[serde(default, skip_serializing_if = "PostCalibration::is_empty")]
    pub calibration: PostCalibration,
    /// River posts: height of the gauge zero, metres above the Baltic datum (levels are
    /// reported in cm above it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gauge_zero_m: Option<f64>,
}

/// One physical instrument on a post, e.g. a Plantower PMS5003 that gives PM1, PM2.5 and PM10.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Instrument {
    /// Maker and model, e.g. "Plantower PMS5003".
    pub model: String,
    /// Serial number from the label.
    pub serial: String,
    /// Quantities it measures.
    pub quantities: Vec<Quantity>,
}

/// A post's calibration: linear fits per quantity and the NO2 cell's constants.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PostCalibration {
    /// `corrected = gain · raw + offset`, at most one per quantity.
    pub linear: Vec<LinearFit>,
    /// Alphasense NO2-B43F zero offsets and sensitivity from its calibration sheet.
    pub no2: Option<No2Cell>,
}

impl PostCalibration {
    /// Nothing set.
    pub fn is_empty(&self) -> bool {
        self.linear.is_empty() && self.no2.is_none()
    }
}

/// A linear correction for one quantity.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinearFit {
    /// The quantity.
    pub quantity: Quantity,
    /// Dimensionless slope.
    pub gain: f64,
    /// Intercept in the quantity's unit.
    pub offset: f64,
}

/// The constants of a 4-electrode NO2 cell.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct No2Cell {
    /// Working-electrode electronic zero, mV.
    pub we_zero_mv: f64,
    /// Auxiliary-electrode electronic zero, mV.
    pub ae_zero_mv: f64,
    /// Sensitivity, mV per ppb.
    pub sensitivity_mv_per_ppb: f64,
}

impl PostEntry {
    /// A post with only the required fields set.
    pub fn new(
        id: PostId,
        kind: PostKind,
        name: impl Into<String>,
        latitude: f64,
        longitude: f64,
    ) -> Self {
        Self {
            id,
            kind,
            name: name.into(),
            latitude,
            longitude,
            district: None,
            river: None,
            sensors: Vec::new(),
            cadence: None,
            critical_level: None,
            sample_interval: None,
            warm_up: None,
            instruments: Vec::new(),
            calibration: PostCalibration::default(),
            gauge_zero_m: None,
        }
    }

    /// Every quantity the post measures: `sensors` and the instruments' quantities.
    pub fn quantities(&self) -> Vec<Quantity> {
        let mut all = self.sensors.clone();
        for q in self.instruments.iter().flat_map(|i| &i.quantities) {
            if !all.contains(q) {
                all.push(*q);
            }
        }
        all
    }

    /// What is wrong with this entry, in words a technician can act on (empty when valid).
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let id = &self.id;
        if self.name.trim().is_empty() {
            problems.push(format!("post {id}: name is empty"));
        }
        if !(-90.0..=90.0).contains(&self.latitude) || !(-180.0..=180.0).contains(&self.longitude) {
            problems.push(format!("post {id}: latitude/longitude out of range"));
        }
        if self
            .cadence
            .is_some_and(|c| c.is_zero() || c > Duration::from_secs(86_400))
        {
            problems.push(format!("post {id}: cadence must be between 1 s and 1 day"));
        }
        if let (Some(sample), Some(cadence)) = (self.sample_interval, self.cadence) {
            if sample.is_zero()
                || sample > cadence
                || cadence.as_secs() % sample.as_secs().max(1) != 0
            {
                problems.push(format!(
                    "post {id}: cadence must be a whole multiple of sample_interval"
                ));
            }
        }
        let mut fitted = Vec::new();
        for fit in &self.calibration.linear {
            if fitted.contains(&fit.quantity) {
                problems.push(format!(
                    "post {id}: two calibrations for {}",
                    fit.quantity.as_str()
                ));
            }
            fitted.push(fit.quantity);
            if !fit.gain.is_finite() || fit.gain <= 0.0 || !fit.offset.is_finite() {
                problems.push(format!(
                    "post {id}: calibration of {} needs a positive finite gain and a finite offset",
                    fit.quantity.as_str()
                ));
            }
        }
        if let Some(cell) = &self.calibration.no2 {
            if !cell.sensitivity_mv_per_ppb.is_finite() || cell.sensitivity_mv_per_ppb == 0.0 {
                problems.push(format!(
                    "post {id}: NO2 sensitivity must be finite and not zero"
                ));
            }
        }
        for inst in &self.instruments {
            if inst.serial.trim().is_empty() || inst.model.trim().is_empty() {
                problems.push(format!(
                    "post {id}: every instrument needs a model and a serial number"
                ));
            }
        }
        match self.kind {
            PostKind::Air if self.river.is_some() => {
                problems.push(format!("post {id}: an air post has no river"))
            }
            PostKind::River if self.river.is_none() => {
                problems.push(format!("post {id}: a river post needs its river"))
            }
            _ => {}
        }
        problems
    }
}

/// `mqtt://[user[:password]@]host[:port]`; `mqtts://` for TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerUrl {
    /// TLS requested.
    pub tls: bool,
    /// Host name or address.
    pub host: String,
    /// Port (1883 / 8883 by default).
    pub port: u16,
    /// User name.
    pub username: Option<String>,
    /// Password (never printed).
    pub password: Option<SecretString>,
}

impl std::str::FromStr for BrokerUrl {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (tls, rest) = if let Some(r) = s.strip_prefix("mqtt://") {
            (false, r)
        } else if let Some(r) = s.strip_prefix("mqtts://") {
            (true, r)
        } else {
            return Err("broker URL must start with mqtt:// or mqtts://".into());
        };
        let rest = rest.trim_end_matches('/');
        let (userinfo, hostport) = match rest.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, rest),
        };
        let (username, password) = match userinfo {
            None => (None, None),
            Some(u) => match u.split_once(':') {
                Some((user, pass)) => (Some(user.to_string()), Some(SecretString::new(pass))),
                None => (Some(u.to_string()), None),
            },
        };
        let default_port = if tls { 8883 } else { 1883 };
        let (host, port) = match hostport.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || hostport.starts_with('[') => (
                h,
                p.parse::<u16>()
                    .map_err(|_| format!("bad broker port {p:?}"))?,
            ),
            _ => (hostport, default_port),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err("broker URL has no host".into());
        }
        Ok(Self {
            tls,
            host: host.to_string(),
            port,
            username,
            password,
        })
    }
}

impl std::fmt::Display for BrokerUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = if self.tls { "mqtts" } else { "mqtt" };
        write!(f, "{scheme}://")?;
        if let Some(u) = &self.username {
            write!(f, "{u}")?;
            if self.password.is_some() {
                write!(f, ":[redacted]")?;
            }
            write!(f, "@")?;
        }
        write!(f, "{}:{}", self.host, self.port)
    }
}

impl Serialize for BrokerUrl {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for BrokerUrl {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Why configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file or an environment variable is not valid TOML for the config.
    #[error("invalid configuration: {0}")]
    Parse(String),
    /// Values that parse but do not make sense, all of them.
    #[error("invalid configuration:\n  - {}", .0.join("\n  - "))]
    Invalid(Vec<String>),
}

/// Prefix of environment overrides: `TAZA_STORE__DATA_DIR=/var/lib/taza`.
pub const ENV_PREFIX: &str = "TAZA_";

impl Config {
    /// Defaults, then the file (if any), then `TAZA_*` variables from `env`.
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let mut table = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.to_path_buf(),
                    source,
                })?;
                text.parse::<toml::Table>()
                    .map_err(|e| ConfigError::Parse(format!("{}: {e}", path.display())))?
            }
            None => toml::Table::new(),
        };
        for (key, value) in env {
            let Some(path) = key.strip_prefix(ENV_PREFIX) else {
                continue;
            };
            let segments: Vec<String> = path.split("__").map(str::to_ascii_lowercase).collect();
            // Only keys that name a config section are overrides; other TAZA_ variables
            // (test switches, for instance) are left alone.
            if !matches!(
                segments.first().map(String::as_str),
                Some("mqtt" | "store" | "api" | "score" | "alert" | "sink" | "provision")
            ) || segments.len() < 2
            {
                continue;
            }
            set_path(&mut table, &segments, env_value(&value))
                .map_err(|e| ConfigError::Parse(format!("{key}: {e}")))?;
        }
        Config::deserialize(toml::Value::Table(table))
            .map_err(|e| ConfigError::Parse(e.to_string()))
    }

    /// Every problem at once.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut problems = Vec::new();
        if self.mqtt.topic_prefix.is_empty() || self.mqtt.topic_prefix.contains(['+', '#']) {
            problems
                .push("mqtt.topic_prefix must be non-empty and contain no MQTT wildcards".into());
        }
        if self.mqtt.client_id.is_empty() {
            problems.push("mqtt.client_id must not be empty".into());
        }
        problems.extend(self.mqtt.tls_problems());
        if let Some(group) = &self.mqtt.shared_group {
            if group.is_empty() || group.contains(['/', '+', '#']) {
                problems.push(
                    "mqtt.shared_group must be non-empty and contain no '/', '+' or '#'".into(),
                );
            }
        }
        if self.mqtt.embedded_auth && self.mqtt.broker.is_some() {
            problems.push(
                "mqtt.embedded_auth applies to the embedded broker only; an external broker checks \
                 its own password file and ACL (`gateway posts broker-auth` writes them)"
                    .into(),
            );
        }
        if self.store.default_cadence.is_zero() {
            problems.push("store.default_cadence must be positive".into());
        }
        for t in &self.api.tokens {
            if t.token.expose().len() < 16 {
                problems.push(format!(
                    "api token {:?} is shorter than 16 characters",
                    t.name
                ));
            }
        }
        problems.extend(self.alert.oncall.problems());
        problems.extend(self.alert.channels.validate());
        if let Some(influx) = &self.sink.influxdb {
            problems.extend(influx.problems());
        }
        let mut seen = std::collections::HashSet::new();
        for p in &self.posts {
            if !seen.insert(p.id.clone()) {
                problems.push(format!("post {} is listed twice", p.id));
            }
            problems.extend(p.problems());
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::Invalid(problems))
        }
    }

    /// The effective configuration as TOML, secrets redacted.
    pub fn to_redacted_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot render config: {e}\n"))
    }
}

/// An environment value: TOML if it parses as a value (numbers, booleans, arrays), else a string.
fn env_value(raw: &str) -> toml::Value {
    format!("v = {raw}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_string()))
}

fn set_path(table: &mut toml::Table, path: &[String], value: toml::Value) -> Result<(), String> {
    match path {
        [] => Err("empty key".into()),
        [last] => {
            table.insert(last.clone(), value);
            Ok(())
        }
        [first, rest @ ..] => {
            let entry = table
                .entry(first.clone())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            match entry {
                toml::Value::Table(t) => set_path(t, rest, value),
                _ => Err(format!("{first} is not a section")),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_urls_parse_and_never_print_their_password() {
        let b: BrokerUrl = "mqtt://gw:s3cret@broker.local:1884".parse().unwrap();
        assert_eq!(
            (b.host.as_str(), b.port, b.username.as_deref()),
            ("broker.local", 1884, Some("gw"))
        );
        assert_eq!(
            b.password.as_ref().map(SecretString::expose),
            Some("s3cret")
        );
        assert_eq!(b.to_string(), "mqtt://gw:[redacted]@broker.local:1884");
        assert!(!format!("{b:?}").contains("s3cret"));
        let plain: BrokerUrl = "mqtt://127.0.0.1".parse().unwrap();
        assert_eq!(plain.port, 1883);
        assert!("http://x".parse::<BrokerUrl>().is_err());
        assert!("mqtt://h:notaport".parse::<BrokerUrl>().is_err());
    }

    #[test]
    fn env_overrides_file_and_unknown_keys_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("taza.toml");
        std::fs::write(
            &path,
            "[store]\ndata_dir = \"/from/file\"\n[mqtt]\ntopic_prefix = \"city\"\n",
        )
        .unwrap();
        let env = [
            ("TAZA_STORE__DATA_DIR".to_string(), "/from/env".to_string()),
            (
                "TAZA_MQTT__ALLOW_UNREGISTERED".to_string(),
                "true".to_string(),
            ),
            ("TAZA_TEST_MOSQUITTO".to_string(), "1".to_string()),
        ];
        let c = Config::load(Some(&path), env).unwrap();
        assert_eq!(c.store.data_dir, PathBuf::from("/from/env"));
        assert_eq!(c.mqtt.topic_prefix, "city");
        assert!(c.mqtt.allow_unregistered);

        std::fs::write(&path, "[store]\ndata_dri = \"typo\"\n").unwrap();
        let err = Config::load(Some(&path), []).unwrap_err().to_string();
        assert!(err.contains("data_dri"), "{err}");
    }

    #[test]
    fn validation_reports_every_problem_at_once() {
        let toml = r#"
            [mqtt]
            topic_prefix = "a/#"
            [[posts]]
            id = "p1"
            kind = "air"
            name = "one"
            latitude = 95.0
            longitude = 76.9
            [[posts]]
            id = "p1"
            kind = "river"
            name = "again"
            latitude = 43.2
            longitude = 76.9
        "#;
        let c = Config::deserialize(toml::Value::Table(toml.parse().unwrap())).unwrap();
        let ConfigError::Invalid(problems) = c.validate().unwrap_err() else {
            panic!("expected Invalid")
        };
        // Prefix, latitude, the duplicate id, and a river post without its river.
        assert_eq!(problems.len(), 4, "{problems:?}");
        assert!(
            problems.iter().any(|p| p.contains("needs its river")),
            "{problems:?}"
        );
    }

    #[test]
    fn tls_files_need_an_mqtts_broker_and_come_in_pairs() {
        let problems = |toml: &str| -> Vec<String> {
            let c = Config::deserialize(toml::Value::Table(toml.parse().unwrap())).unwrap();
            match c.validate() {
                Ok(()) => Vec::new(),
                Err(ConfigError::Invalid(p)) => p,
                Err(e) => panic!("{e}"),
            }
        };
        let ok = problems(
            "[mqtt]\nbroker = \"mqtts://gw:pw@mqtt.example:8883\"\nca_file = \"/etc/taza/ca.pem\"\n\
             client_cert_file = \"/etc/taza/gw.crt\"\nclient_key_file = \"/etc/taza/gw.key\"\n\
             shared_group = \"taza-gateways\"\n",
        );
        assert!(ok.is_empty(), "{ok:?}");
        let bad = problems(
            "[mqtt]\nbroker = \"mqtt://gw:pw@mqtt.example\"\nca_file = \"/etc/taza/ca.pem\"\n\
             client_cert_file = \"/etc/taza/gw.crt\"\nshared_group = \"a/b\"\n",
        );
        assert_eq!(bad.len(), 4, "{bad:?}");
        assert!(bad.iter().any(|p| p.contains("mqtt.ca_file is set")));
        assert!(bad.iter().any(|p| p.contains("go together")));
        assert!(bad.iter().any(|p| p.contains("shared_group")));
    }
}
