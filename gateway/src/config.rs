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
    /// The post registry.
    pub posts: Vec<PostEntry>,
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
                Some("mqtt" | "store" | "api" | "score" | "alert" | "sink")
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
            if !(-90.0..=90.0).contains(&p.latitude) || !(-180.0..=180.0).contains(&p.longitude) {
                problems.push(format!("post {}: latitude/longitude out of range", p.id));
            }
            if p.cadence
                .is_some_and(|c| c.is_zero() || c > Duration::from_secs(86_400))
            {
                problems.push(format!(
                    "post {}: cadence must be between 1 s and 1 day",
                    p.id
                ));
            }
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
        assert_eq!(problems.len(), 3, "{problems:?}");
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
