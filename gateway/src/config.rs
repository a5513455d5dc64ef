//! Configuration: built-in defaults, then `taza.toml`, then `TAZA_SECTION__KEY` environment
//! variables, then command-line flags (flags win). [`Config::validate`] reports every problem at
//! once; each stage receives only its own section.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use taza_api::config::ApiConfig;
use taza_domain::post::PostEntry;
use taza_ingest::config::MqttConfig;
use taza_registry::config::ProvisionConfig;
use taza_score::config::ScoreConfig;
use taza_store::config::StoreConfig;

/// The whole gateway configuration.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// MQTT: embedded broker or an external one, and the ingest client.
    pub mqtt: MqttConfig,
    /// The store: SQLite in the data dir, or PostgreSQL (`[store] url`).
    pub store: StoreConfig,
    /// HTTP API and dashboard.
    pub api: ApiConfig,
    /// Scoring: norms, limit set, zones.
    pub score: ScoreConfig,
    /// Alerts: rules, on-call rota, channels.
    pub alert: taza_alert::AlertConfig,
    /// Long-term stores readings are copied to (`[sink.influxdb]`).
    pub sink: taza_sink::SinkConfig,
    /// What provisioning writes into posts' device config blobs.
    pub provision: ProvisionConfig,
    /// The post registry.
    pub posts: Vec<PostEntry>,
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
        problems.extend(self.store.problems());
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
    fn the_store_url_comes_from_the_environment_and_is_shown_without_its_password() {
        let env = [(
            "TAZA_STORE__URL".to_string(),
            "postgres://taza:s3cret@db.internal:5432/taza".to_string(),
        )];
        let c = Config::load(None, env).unwrap();
        assert_eq!(
            c.store.location(),
            Ok(taza_store::config::Location::Postgres(
                "postgres://taza:s3cret@db.internal:5432/taza".into()
            ))
        );
        c.validate().unwrap();
        let shown = c.to_redacted_toml();
        assert!(
            shown.contains("url = \"postgres://taza:***@db.internal:5432/taza\""),
            "{shown}"
        );
        assert!(!shown.contains("s3cret"));
        let bad = Config::load(None, [("TAZA_STORE__URL".into(), "mysql://db".into())]).unwrap();
        let ConfigError::Invalid(problems) = bad.validate().unwrap_err() else {
            panic!("expected Invalid")
        };
        assert!(problems[0].contains("store.url"), "{problems:?}");
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
