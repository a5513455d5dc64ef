//! `[sink.influxdb]`: where the long-term store is and how hard to push it.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use taza_domain::secret::SecretString;

/// Long-term stores readings are copied to. Empty: none (the writer then queues nothing).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SinkConfig {
    /// InfluxDB 2 (or anything speaking its `/api/v2/write`).
    pub influxdb: Option<InfluxConfig>,
}

/// An InfluxDB 2 bucket.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InfluxConfig {
    /// Base URL, e.g. `http://influxdb:8086`, without a path ([`PATH_PREFIX_REFUSED`]).
    pub url: String,
    /// Organisation name.
    pub org: String,
    /// Bucket name.
    pub bucket: String,
    /// API token with write access to the bucket. Prefer `token_file`.
    #[serde(default)]
    pub token: Option<SecretString>,
    /// File holding the token (read once at startup; surrounding whitespace ignored).
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// Most points in one write request (InfluxDB advises about 5000).
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    /// Wait between looks at the queue when it held less than a full batch: how long a reading
    /// may sit before it is written.
    #[serde(default = "default_flush_every", with = "humantime_serde")]
    pub flush_every: Duration,
    /// Limit of one write request.
    #[serde(default = "default_request_timeout", with = "humantime_serde")]
    pub request_timeout: Duration,
    /// First wait after a failed write; doubled after each further failure.
    #[serde(default = "default_retry_initial", with = "humantime_serde")]
    pub retry_initial: Duration,
    /// Longest wait between attempts while InfluxDB is down.
    #[serde(default = "default_retry_max", with = "humantime_serde")]
    pub retry_max: Duration,
}

fn default_batch_size() -> usize {
    5000
}
fn default_flush_every() -> Duration {
    Duration::from_secs(1)
}
fn default_request_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_retry_initial() -> Duration {
    Duration::from_millis(500)
}
fn default_retry_max() -> Duration {
    Duration::from_secs(60)
}

/// Why a URL with a path (InfluxDB behind a reverse proxy under `/influx/`) is refused: the
/// `influxdb2` crate replaces the URL's path with `/api/v2/write` (`Url::set_path`), so the
/// prefix would be dropped silently and the writes sent elsewhere.
pub const PATH_PREFIX_REFUSED: &str =
    "must be scheme://host[:port] with no path or query: the influxdb2 client writes to /api/v2/write at the host's root (serve InfluxDB on its own host or port)";

/// Largest accepted `batch_size`: InfluxDB refuses bodies past its own limit (413) long before
/// this, and a larger batch only makes a retry costlier.
pub const MAX_BATCH_SIZE: usize = 100_000;

impl InfluxConfig {
    /// Problems with these settings, each a sentence naming the key.
    pub fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        match influxdb2_reqwest::Url::parse(&self.url) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {
                if !matches!(u.path(), "" | "/") || u.query().is_some() {
                    p.push(format!("sink.influxdb.url: {PATH_PREFIX_REFUSED}"));
                }
                if !u.username().is_empty() || u.password().is_some() {
                    p.push(
                        "sink.influxdb.url must not carry credentials; use token or token_file"
                            .into(),
                    );
                }
            }
            _ => p.push("sink.influxdb.url must be an http:// or https:// URL with a host".into()),
        }
        if self.org.trim().is_empty() {
            p.push("sink.influxdb.org must not be empty".into());
        }
        if self.bucket.trim().is_empty() {
            p.push("sink.influxdb.bucket must not be empty".into());
        }
        match (&self.token, &self.token_file) {
            (Some(_), Some(_)) => {
                p.push("sink.influxdb: set token or token_file, not both".into());
            }
            (None, None) => p.push("sink.influxdb: token or token_file is required".into()),
            (Some(t), None) if t.expose().trim().is_empty() => {
                p.push("sink.influxdb.token must not be empty".into());
            }
            _ => {}
        }
        if !(1..=MAX_BATCH_SIZE).contains(&self.batch_size) {
            p.push(format!(
                "sink.influxdb.batch_size must be between 1 and {MAX_BATCH_SIZE}"
            ));
        }
        if self.flush_every.is_zero() {
            p.push("sink.influxdb.flush_every must be positive".into());
        }
        if self.request_timeout.is_zero() {
            p.push("sink.influxdb.request_timeout must be positive".into());
        }
        if self.retry_initial.is_zero() || self.retry_initial > self.retry_max {
            p.push("sink.influxdb.retry_initial must be positive and at most retry_max".into());
        }
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_fill_in_and_bad_values_are_each_reported() {
        let ok: InfluxConfig = toml::from_str(
            "url = \"http://127.0.0.1:8086\"\norg = \"akimat\"\nbucket = \"taza\"\ntoken_file = \"/run/secrets/influx\"\n",
        )
        .unwrap();
        assert_eq!(ok.batch_size, 5000);
        assert!(ok.problems().is_empty(), "{:?}", ok.problems());

        let bad: InfluxConfig = toml::from_str(
            "url = \"ftp://x\"\norg = \"\"\nbucket = \"b\"\ntoken = \"t\"\ntoken_file = \"/f\"\nbatch_size = 0\nflush_every = \"0s\"\n",
        )
        .unwrap();
        let problems = bad.problems();
        assert_eq!(problems.len(), 5, "{problems:?}");

        for prefixed in ["https://metrics.example/influx/", "http://h:8086/?x=1"] {
            let mut c = ok.clone();
            c.url = prefixed.into();
            assert_eq!(
                c.problems(),
                [format!("sink.influxdb.url: {PATH_PREFIX_REFUSED}")],
                "{prefixed}"
            );
        }
        for root in ["http://h:8086", "http://h:8086/"] {
            let mut c = ok.clone();
            c.url = root.into();
            assert!(c.problems().is_empty(), "{root}");
        }
        assert!(!format!("{bad:?}").contains("token = \"t\""));
    }
}
