//! The `[mqtt]` section: which broker (embedded or external), the ingest client's session, TLS.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use taza_domain::secret::SecretString;

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
    pub fn tls_problems(&self) -> Vec<String> {
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
}
