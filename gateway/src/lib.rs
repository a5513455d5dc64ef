//! Taza gateway: MQTT ingest -> SQLite store -> HTTP API.
//!
//! Data flows one way through bounded channels (see [`pipeline`]):
//! `ingest` (rumqttc, manual acks) -> `store::writer` (group commits, rollups) -> acker (PUBACK
//! after commit) and the live feed -> `api` (axum, SSE). [`start`] wires the stages and is the
//! only place that spawns them.

pub mod config;
pub mod demo;

use std::future::IntoFuture;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::sync::{broadcast, mpsc};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use taza_api::telemetry::Metrics;
use taza_domain::pipeline::{ACK_CHANNEL_CAPACITY, INGEST_CHANNEL_CAPACITY, LIVE_CHANNEL_CAPACITY};
use taza_domain::registry::Registry;

/// Why the gateway could not start or stop cleanly.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// Bad configuration.
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    /// The embedded broker failed.
    #[error(transparent)]
    Broker(#[from] taza_ingest::broker::BrokerError),
    /// The store failed to open.
    #[error(transparent)]
    Store(#[from] taza_store::StoreError),
    /// The norms or the zones file cannot be used.
    #[error(transparent)]
    Scoring(#[from] taza_api::scoring::ScoringError),
    /// The alert rules cannot be used.
    #[error(transparent)]
    Alert(#[from] taza_alert::AlertError),
    /// The config file's posts could not be registered.
    #[error(transparent)]
    Registry(#[from] taza_registry::manage::RegistryError),
    /// The broker TLS files cannot be used.
    #[error(transparent)]
    MqttTls(#[from] taza_ingest::tls::TlsError),
    /// The InfluxDB sink could not start.
    #[error(transparent)]
    Sink(#[from] taza_sink::SinkError),
    /// The HTTP listener or a thread could not start.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: &'static str,
        /// Why it failed.
        source: std::io::Error,
    },
}

/// A started gateway.
pub struct Running {
    /// Where the HTTP API listens.
    pub http_addr: SocketAddr,
    /// The broker ingest connects to (the embedded one's address when embedded).
    pub mqtt_addr: String,
    broker: (String, u16),
    /// Metrics handle (tests and benchmarks read counters from it).
    pub metrics: Metrics,
    shutdown: CancellationToken,
    supervisor: JoinHandle<()>,
}

impl Running {
    /// Requests shutdown and waits for it: ingest stops, the store commits what it holds,
    /// acknowledgements go out, then HTTP stops.
    pub async fn stop(self) {
        self.shutdown.cancel();
        self.wait().await;
    }

    /// Host and port of the broker, for clients that publish beside the gateway (the demo
    /// fleet).
    pub fn broker_endpoint(&self) -> (String, u16) {
        self.broker.clone()
    }

    /// Waits until the gateway has stopped (after the shutdown token is cancelled).
    pub async fn wait(self) {
        if let Err(e) = self.supervisor.await {
            tracing::error!(error = %e, "gateway supervisor failed");
        }
    }
}

/// Starts every stage. Cancelling `shutdown` stops them in order.
pub async fn start(config: Config, shutdown: CancellationToken) -> Result<Running, RunError> {
    config.validate()?;
    let mut conn = taza_store::open_writer(&config.store)?;
    {
        let tx = conn.transaction().map_err(taza_store::StoreError::from)?;
        taza_registry::manage::apply_config_posts(
            &tx,
            &config.posts,
            config.store.default_cadence,
        )?;
        tx.commit().map_err(taza_store::StoreError::from)?;
    }
    if let Some(path) = &config.score.zones_file {
        let zones = taza_api::scoring::zones_from_file(path)?;
        let tx = conn.transaction().map_err(taza_store::StoreError::from)?;
        for z in &zones {
            taza_store::admin::upsert_zone(&tx, z, "config")?;
        }
        tx.commit().map_err(taza_store::StoreError::from)?;
    }
    let registry = taza_registry::refresh::load(
        &conn,
        config.store.default_cadence,
        config.mqtt.allow_unregistered,
    )?;
    let metrics = Metrics::new();
    let (endpoint, mqtt_addr, broker) =
        connect_broker(&config, &registry, &metrics, &shutdown).await?;

    let (inbound_tx, inbound_rx) = mpsc::channel(INGEST_CHANNEL_CAPACITY);
    let (ack_tx, ack_rx) = mpsc::channel(ACK_CHANNEL_CAPACITY);
    let (live_tx, _) = broadcast::channel(LIVE_CHANNEL_CAPACITY);
    let (alert_tx, alert_rx) = mpsc::channel(taza_alert::ALERT_CHANNEL_CAPACITY);
    let taza_alert::Running {
        shared: alerts,
        evaluator,
        deliverer,
    } = taza_alert::spawn(
        config.alert.clone(),
        &taza_store::db_path(&config.store),
        registry.clone(),
        config.store.default_cadence,
        metrics.delivery.clone(),
        alert_rx,
        shutdown.clone(),
    )?;
    // They stop with the shutdown token; the outbox keeps whatever is undelivered.
    drop((evaluator, deliverer));

    // Before the writer: a missing token file stops the start here, with nothing yet queued.
    let sink = match &config.sink.influxdb {
        Some(influx) => Some(taza_sink::spawn(
            influx.clone(),
            &taza_store::db_path(&config.store),
            metrics.sink.clone(),
            shutdown.clone(),
        )?),
        None => None,
    };
    let writer = taza_store::writer::spawn(
        conn,
        taza_store::writer::WriterContext {
            registry: registry.clone(),
            metrics: metrics.store.clone(),
            raw_retention: config.store.raw_retention,
            shutdown: shutdown.clone(),
            alerts: Some(alert_tx),
            sink_enabled: config.sink.influxdb.is_some(),
        },
        inbound_rx,
        ack_tx,
        live_tx.clone(),
    )
    .map_err(|source| RunError::Io {
        context: "starting store writer",
        source,
    })?;
    // It stops with the shutdown token; retained configs stay with the broker.
    drop(taza_registry::config_push::spawn(
        config.mqtt.clone(),
        endpoint.clone(),
        registry.clone(),
        shutdown.clone(),
    ));
    let ingest = taza_ingest::spawn(
        config.mqtt.clone(),
        endpoint,
        registry.clone(),
        metrics.ingest.clone(),
        inbound_tx,
        ack_rx,
        shutdown.clone(),
    );

    let listener = tokio::net::TcpListener::bind(config.api.listen)
        .await
        .map_err(|source| RunError::Io {
            context: "binding HTTP listener",
            source,
        })?;
    let http_addr = listener.local_addr().map_err(|source| RunError::Io {
        context: "HTTP listener",
        source,
    })?;
    let http_stop = CancellationToken::new();

    // A broken department norms folder is reported now, not at the first request.
    taza_api::scoring::load_norms(&config.score).map_err(taza_api::scoring::ScoringError::from)?;
    let pool = taza_store::ReadPool::new(&taza_store::db_path(&config.store));
    drop(taza_registry::refresh::spawn(
        registry.clone(),
        pool.clone(),
        shutdown.clone(),
    )); // it stops with the shutdown token
    let app = taza_api::router(taza_api::AppState {
        scoring: taza_api::scoring::Scoring::new(config.score.clone(), pool.clone()),
        admin: taza_store::admin::AdminWriter::open(&taza_store::db_path(&config.store))?,
        pool,
        metrics: metrics.clone(),
        live: live_tx,
        tokens: std::sync::Arc::new(config.api.tokens.clone()),
        alerts,
        registry: registry.clone(),
        technician: std::sync::Arc::new(taza_api::TechnicianContext {
            broker: taza_registry::provision::post_broker(&config.provision, &config.mqtt),
            topic_prefix: config.mqtt.topic_prefix.clone(),
            default_cadence: config.store.default_cadence,
            ranges: std::sync::Arc::new(
                taza_registry::commission::PlausibleRanges::shipped().map_err(|e| {
                    RunError::Io {
                        context: "reading commissioning/plausible.toml",
                        source: std::io::Error::other(e),
                    }
                })?,
            ),
        }),
        shutdown: http_stop.clone(),
    });
    // Live events are small writes: without TCP_NODELAY, Nagle plus the client's delayed ACK
    // held each one back by up to 40 ms.
    let listener = axum::serve::ListenerExt::tap_io(listener, |s| {
        let _ = s.set_nodelay(true);
    });
    let server = tokio::spawn(
        axum::serve(listener, app)
            .with_graceful_shutdown(http_stop.clone().cancelled_owned())
            .into_future(),
    );
    tracing::info!(%http_addr, mqtt = %mqtt_addr, "gateway started");

    let deadline = config.api.shutdown_deadline;
    let checkpointer =
        taza_store::checkpoint::spawn(taza_store::db_path(&config.store), shutdown.clone())
            .map_err(|source| RunError::Io {
                context: "starting the checkpointer",
                source,
            })?;
    drop(checkpointer); // it stops by itself with the shutdown token
    let supervisor = tokio::spawn(supervise(
        shutdown.clone(),
        deadline,
        ingest,
        writer,
        sink,
        http_stop,
        server,
    ));
    Ok(Running {
        http_addr,
        mqtt_addr,
        broker,
        metrics,
        shutdown,
        supervisor,
    })
}

/// Where ingest connects, what to print as the broker's address, and where posts beside the
/// gateway (the demo fleet) publish: the external broker, or the embedded one (behind its guard
/// when `embedded_auth` is on).
async fn connect_broker(
    config: &Config,
    registry: &Registry,
    metrics: &Metrics,
    shutdown: &CancellationToken,
) -> Result<(taza_ingest::Endpoint, String, (String, u16)), RunError> {
    if let Some(b) = &config.mqtt.broker {
        let credentials = b.username.clone().map(|u| {
            (
                u,
                b.password
                    .as_ref()
                    .map(|p| p.expose().to_string())
                    .unwrap_or_default(),
            )
        });
        let tls = if b.tls {
            Some(taza_ingest::tls::client_config(&config.mqtt)?)
        } else {
            None
        };
        let endpoint = taza_ingest::Endpoint {
            host: b.host.clone(),
            port: b.port,
            credentials,
            tls,
        };
        let broker = (b.host.clone(), b.port);
        return Ok((endpoint, b.to_string(), broker));
    }
    let start = |listen| async move {
        tokio::task::spawn_blocking(move || taza_ingest::broker::start(listen))
            .await
            .map_err(|e| RunError::Io {
                context: "starting embedded broker",
                source: std::io::Error::other(e),
            })?
            .map_err(RunError::from)
    };
    if !config.mqtt.embedded_auth {
        let addr = start(config.mqtt.listen).await?;
        let endpoint = taza_ingest::Endpoint {
            host: addr.ip().to_string(),
            port: addr.port(),
            credentials: None,
            tls: None,
        };
        let broker = (endpoint.host.clone(), addr.port());
        return Ok((endpoint, addr.to_string(), broker));
    }
    // rumqttd on a loopback port only the gateway uses; posts reach it through the guard.
    let inner = start(std::net::SocketAddr::from(([127, 0, 0, 1], 0))).await?;
    let listener = tokio::net::TcpListener::bind(config.mqtt.listen)
        .await
        .map_err(|source| taza_ingest::broker::BrokerError::Bind {
            addr: config.mqtt.listen,
            source,
        })?;
    let outer = listener.local_addr().map_err(|source| RunError::Io {
        context: "embedded broker guard",
        source,
    })?;
    drop(taza_ingest::broker::guard::spawn(
        listener,
        inner,
        taza_ingest::broker::guard::Policy {
            prefix: config.mqtt.topic_prefix.clone(),
            registry: registry.clone(),
            metrics: metrics.ingest.clone(),
        },
        shutdown.clone(),
    )); // it stops with the shutdown token
    tracing::info!(%outer, "embedded broker requires post credentials");
    let endpoint = taza_ingest::Endpoint {
        host: inner.ip().to_string(),
        port: inner.port(),
        credentials: None,
        tls: None,
    };
    Ok((
        endpoint,
        outer.to_string(),
        (outer.ip().to_string(), outer.port()),
    ))
}

/// Waits for shutdown, then stops the stages in data-flow order under `deadline`.
async fn supervise(
    shutdown: CancellationToken,
    deadline: Duration,
    ingest: JoinHandle<()>,
    writer: std::thread::JoinHandle<()>,
    sink: Option<JoinHandle<()>>,
    http_stop: CancellationToken,
    server: JoinHandle<std::io::Result<()>>,
) {
    shutdown.cancelled().await;
    if tokio::time::timeout(deadline, ingest).await.is_err() {
        tracing::warn!("ingest did not stop within the deadline");
    }
    let joined = tokio::task::spawn_blocking(move || writer.join());
    if tokio::time::timeout(deadline, joined).await.is_err() {
        tracing::warn!("store writer did not stop within the deadline");
    }
    // After the writer, so its last commit is in the sink's final flush.
    if let Some(sink) = sink {
        if tokio::time::timeout(deadline, sink).await.is_err() {
            tracing::warn!("InfluxDB sink did not stop within the deadline");
        }
    }
    http_stop.cancel();
    match tokio::time::timeout(deadline, server).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(e))) => tracing::error!(error = %e, "HTTP server failed"),
        Ok(Err(e)) => tracing::error!(error = %e, "HTTP server task failed"),
        Err(_) => tracing::warn!("HTTP server did not stop within the deadline"),
    }
    tracing::info!("gateway stopped");
}
