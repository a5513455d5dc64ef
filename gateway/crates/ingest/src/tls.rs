//! TLS to an external broker (`mqtts://`): builds the rustls client configuration ingest hands
//! to rumqttc. Reads the files `[mqtt] ca_file`, `client_cert_file` and `client_key_file` name,
//! once, at start. The ring provider is used explicitly (the one reqwest and lettre already use),
//! so no process-wide default provider and no second crypto library are involved.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore};

use crate::config::MqttConfig;

/// Why the broker TLS configuration cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file is missing, unreadable or malformed.
    #[error("mqtt.{key} {}: {source}", path.display())]
    Pem {
        /// The config key naming the file.
        key: &'static str,
        /// The file.
        path: PathBuf,
        /// What went wrong.
        source: pem::Error,
    },
    /// The CA file holds no certificate rustls accepts as a trust anchor.
    #[error("mqtt.ca_file {}: no usable CA certificate ({rejected} rejected)", path.display())]
    NoTrustAnchor {
        /// The file.
        path: PathBuf,
        /// Certificates in it that were not valid trust anchors.
        rejected: usize,
    },
    /// rustls refused the combination (e.g. a key that does not match the certificate).
    #[error("mqtt TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
}

/// The client configuration for `cfg`: trust `ca_file` (or the compiled-in Mozilla roots when
/// none is given), present the client certificate when one is configured.
pub fn client_config(cfg: &MqttConfig) -> Result<Arc<ClientConfig>, TlsError> {
    let roots = match &cfg.ca_file {
        Some(path) => {
            let mut roots = RootCertStore::empty();
            let (added, rejected) = roots.add_parsable_certificates(certificates("ca_file", path)?);
            if added == 0 {
                return Err(TlsError::NoTrustAnchor {
                    path: path.clone(),
                    rejected,
                });
            }
            roots
        }
        None => RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        },
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots);
    let config = match (&cfg.client_cert_file, &cfg.client_key_file) {
        (Some(cert), Some(key)) => {
            let chain = certificates("client_cert_file", cert)?;
            let key = PrivateKeyDer::from_pem_file(key).map_err(|source| TlsError::Pem {
                key: "client_key_file",
                path: key.clone(),
                source,
            })?;
            builder.with_client_auth_cert(chain, key)?
        }
        // Config::validate refuses one without the other.
        _ => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

/// Every certificate in a PEM file; none at all is an error.
fn certificates(key: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let err = |source| TlsError::Pem {
        key,
        path: path.to_path_buf(),
        source,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(err)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(err)?;
    if certs.is_empty() {
        return Err(err(pem::Error::NoItemsFound));
    }
    Ok(certs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(ca: Option<PathBuf>) -> MqttConfig {
        MqttConfig {
            broker: Some("mqtts://gw:pw@127.0.0.1:8883".parse().unwrap()),
            ca_file: ca,
            ..MqttConfig::default()
        }
    }

    #[test]
    fn without_a_ca_file_the_compiled_in_roots_are_trusted() {
        assert!(client_config(&cfg(None)).is_ok());
    }

    #[test]
    fn missing_empty_or_garbage_ca_files_are_refused_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.pem");
        let err = client_config(&cfg(Some(missing.clone()))).unwrap_err();
        assert!(
            err.to_string().contains("mqtt.ca_file") && err.to_string().contains("nope.pem"),
            "{err}"
        );

        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "just text, no PEM\n").unwrap();
        assert!(matches!(
            client_config(&cfg(Some(empty))),
            Err(TlsError::Pem {
                source: pem::Error::NoItemsFound,
                ..
            })
        ));

        let garbage = dir.path().join("garbage.pem");
        std::fs::write(
            &garbage,
            "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        assert!(matches!(
            client_config(&cfg(Some(garbage))),
            Err(TlsError::NoTrustAnchor { rejected: 1, .. })
        ));
    }
}
