//! The `[provision]` section.

use serde::{Deserialize, Serialize};
use taza_ingest::config::BrokerUrl;

/// Provisioning settings.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProvisionConfig {
    /// The broker address posts dial, e.g. `mqtts://mqtt.taza.almaty.kz:8883` (Mosquitto's TLS
    /// listener). Default: the embedded broker's listen address. Credentials in the URL are
    /// ignored: each post gets its own.
    pub broker: Option<BrokerUrl>,
}
