//! Taza gateway: configuration ([`config`]), the wiring of the pipeline crates ([`start`]) and
//! the one supervisor of their tasks ([`supervisor`]). The stages live in their own crates
//! (`gateway/ARCHITECTURE.md`); data flows one way through the bounded channels named in
//! `taza_domain::pipeline`: `taza_ingest` (rumqttc, manual acks) -> `taza_store::writer` (group
//! commits, rollups) -> acks after commit, the live feed, alerts and the sink -> `taza_api`.
//! [`start`] is the only place that spawns stages.

pub mod config;
#[cfg(feature = "demo")]
pub mod demo;
pub mod supervisor;

use std::future::IntoFuture;
use std::net::SocketAddr;

use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use taza_api::tasks::{TaskFailure, TaskHealth};
use taza_api::telemetry::Metrics;
use taza_domain::pipeline::{ACK_CHANNEL_CAPACITY, INGEST_CHANNEL_CAPACITY, LIVE_CHANNEL_CAPACITY};
use taza_domain::registry::Registry;

use crate::supervisor::{StopPhase, Supervisor};

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
    /// A task stopped while the gateway ran (the gateway stopped with it).
    #[error("gateway task {} stopped: {}", .0.task, .0.reason)]
    TaskFailed(TaskFailure),
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
    stop: CancellationToken,
    supervisor: tokio::task::JoinHandle<Result<(), TaskFailure>>,
}

impl Running {
    /// Requests shutdown and waits for it: ingest stops, the store commits what it holds,
    /// acknowledgements go out, then HTTP stops.
    pub async fn stop(self) {
        self.stop.cancel();
        if let Err(e) = self.wait().await {
            tracing::error!(error = %e, "gateway stopped after a failure");
        }
    }

    /// Host and port of the broker, for clients that publish beside the gateway (the demo
    /// fleet).
    pub fn broker_endpoint(&self) -> (String, u16) {
        self.broker.clone()
    }

    /// Cancelled when the gateway begins to stop: on shutdown, or by the supervisor when a task
    /// failed (then [`Running::wait`] returns that failure).
    pub fn stopping(&self) -> CancellationToken {
        self.stop.clone()
    }

    /// Waits until the gateway has stopped; the error names the task whose failure stopped it.
    pub async fn wait(self) -> Result<(), RunError> {
        match self.supervisor.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(failure)) => Err(RunError::TaskFailed(failure)),
            Err(e) => Err(RunError::TaskFailed(TaskFailure {
                task: "supervisor",
                reason: e.to_string(),
            })),
        }
    }
}

/// Starts every stage. Cancelling `shutdown` stops them in order.
///
/// Everything that can fail and leaves nothing running (config, store, registry, norms, zones,
/// TLS files, the HTTP and guard listeners) is done first. Then the stages start, the embedded
/// broker last (rumqttd cannot be stopped once started); if one of those fails, what already
/// started is stopped before the error returns. From then on one [`Supervisor`] owns every task.
pub async fn start(config: Config, shutdown: CancellationToken) -> Result<Running, RunError> {
    // -- Fallible, nothing running yet.
    config.validate()?;
    let (store, ingest_store) = open_store(&config.store).await?;
    let (posts, cadence) = (config.posts.clone(), config.store.default_cadence);
    store
        .write(move |db| taza_registry::manage::apply_config_posts(db, &posts, cadence))
        .await?;
    if let Some(path) = &config.score.zones_file {
        let zones = taza_api::scoring::zones_from_file(path)?;
        store
            .write(move |db| {
                for z in &zones {
                    taza_store::admin::upsert_zone(db, z, "config")?;
                }
                Ok::<_, taza_store::StoreError>(())
            })
            .await?;
    }
    let registry = taza_registry::refresh::load(
        &store,
        config.store.default_cadence,
        config.mqtt.allow_unregistered,
    )
    .await?;
    let ranges =
        taza_registry::commission::PlausibleRanges::shipped().map_err(|e| RunError::Io {
            context: "reading commissioning/plausible.toml",
            source: std::io::Error::other(e),
        })?;
    let broker_plan = plan_broker(&config).await?;
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
    // A broken department norms folder is reported now, not at the first request.
    let scoring = taza_api::scoring::Scoring::try_new(config.score.clone(), store.clone())?;
    let metrics = Metrics::new();
    let tasks = TaskHealth::default();

    // -- Stages that can still fail to start: on failure, stop what started.
    let stop = shutdown.child_token();
    let http_stop = CancellationToken::new();
    let mut supervisor = Supervisor::new(stop.clone(), http_stop.clone(), tasks.clone());
    let (inbound_tx, inbound_rx) = mpsc::channel(INGEST_CHANNEL_CAPACITY);
    let (ack_tx, ack_rx) = mpsc::channel(ACK_CHANNEL_CAPACITY);
    let (live_tx, _) = broadcast::channel(LIVE_CHANNEL_CAPACITY);
    let started = start_stages(
        &config,
        &registry,
        &metrics,
        &stop,
        &mut supervisor,
        &store,
        ingest_store,
        inbound_rx,
        ack_tx,
        live_tx.clone(),
        broker_plan,
    )
    .await;
    let (alerts, (endpoint, mqtt_addr, broker)) = match started {
        Ok(s) => s,
        Err(e) => {
            stop.cancel();
            // Let what started see the cancellation and stop (a failed start must not leave a
            // half-running gateway behind).
            let _ = supervisor.run(config.api.shutdown_deadline).await;
            return Err(e);
        }
    };

    // -- Infallible from here: spawn the rest under the supervisor.
    supervisor.adopt(
        "config publisher",
        StopPhase::Rest,
        taza_registry::config_push::spawn(
            config.mqtt.clone(),
            endpoint.clone(),
            registry.clone(),
            stop.clone(),
        ),
    );
    supervisor.adopt(
        "ingest",
        StopPhase::Ingest,
        taza_ingest::spawn(
            config.mqtt.clone(),
            endpoint,
            registry.clone(),
            metrics.ingest.clone(),
            inbound_tx,
            ack_rx,
            stop.clone(),
        ),
    );
    supervisor.adopt(
        "registry refresh",
        StopPhase::Rest,
        taza_registry::refresh::spawn(registry.clone(), store.clone(), stop.clone()),
    );
    let app = taza_api::router(taza_api::AppState {
        store,
        scoring,
        metrics: metrics.clone(),
        live: live_tx,
        tokens: std::sync::Arc::new(config.api.tokens.clone()),
        alerts,
        registry: registry.clone(),
        technician: std::sync::Arc::new(taza_api::TechnicianContext {
            broker: taza_registry::provision::post_broker(&config.provision, &config.mqtt),
            topic_prefix: config.mqtt.topic_prefix.clone(),
            default_cadence: config.store.default_cadence,
            ranges: std::sync::Arc::new(ranges),
        }),
        tasks,
        shutdown: http_stop.clone(),
    });
    // Live events are small writes: without TCP_NODELAY, Nagle plus the client's delayed ACK
    // held each one back by up to 40 ms.
    let listener = axum::serve::ListenerExt::tap_io(listener, |s| {
        let _ = s.set_nodelay(true);
    });
    let server = axum::serve(listener, app).with_graceful_shutdown(http_stop.cancelled_owned());
    supervisor.adopt(
        "http server",
        StopPhase::Http,
        tokio::spawn(async move {
            if let Err(e) = server.into_future().await {
                tracing::error!(error = %e, "HTTP server failed");
            }
        }),
    );
    tracing::info!(%http_addr, mqtt = %mqtt_addr, "gateway started");
    let supervisor = tokio::spawn(supervisor.run(config.api.shutdown_deadline));
    Ok(Running {
        http_addr,
        mqtt_addr,
        broker,
        metrics,
        stop,
        supervisor,
    })
}

type Started = (
    std::sync::Arc<taza_alert::Shared>,
    (taza_ingest::Endpoint, String, (String, u16)),
);

/// The stages whose start can fail, each adopted by `supervisor` as it starts; the embedded
/// broker last.
#[allow(clippy::too_many_arguments)]
async fn start_stages(
    config: &Config,
    registry: &Registry,
    metrics: &Metrics,
    stop: &CancellationToken,
    supervisor: &mut Supervisor,
    store: &taza_store::Store,
    ingest_store: IngestStore,
    inbound_rx: mpsc::Receiver<taza_domain::pipeline::Inbound>,
    ack_tx: mpsc::Sender<taza_domain::pipeline::AckToken>,
    live_tx: taza_domain::pipeline::LiveSender,
    broker_plan: BrokerPlan,
) -> Result<Started, RunError> {
    // One replica leads (always this one on SQLite): it evaluates alerts, drains the outbox
    // and the sink queue.
    let (leader, lease) = taza_store::pg::lease::start(store, stop.clone());
    if let Some(lease) = lease {
        supervisor.adopt("leader lease", StopPhase::Rest, lease);
    }
    // SQLite: the writer's channel in this process; PostgreSQL: every replica's commit log.
    let (alert_tx, alert_input) = match store.backend() {
        taza_store::Backend::Sqlite => {
            let (tx, rx) = mpsc::channel(taza_alert::ALERT_CHANNEL_CAPACITY);
            (Some(tx), taza_alert::Input::Writer(rx))
        }
        taza_store::Backend::Postgres => (None, taza_alert::Input::CommitLog),
    };
    let taza_alert::Running {
        shared: alerts,
        evaluator,
        deliverer,
    } = taza_alert::spawn(
        config.alert.clone(),
        &config.score,
        store.clone(),
        leader.clone(),
        registry.clone(),
        config.store.default_cadence,
        metrics.delivery.clone(),
        alert_input,
        stop.clone(),
    )?;
    supervisor.adopt("alert evaluator", StopPhase::Rest, evaluator);
    supervisor.adopt("alert delivery", StopPhase::Rest, deliverer);
    // Before the writer: a missing token file stops the start here, with nothing yet queued.
    if let Some(influx) = &config.sink.influxdb {
        let sink = taza_sink::spawn(
            influx.clone(),
            store.clone(),
            leader,
            metrics.sink.clone(),
            stop.clone(),
        )?;
        supervisor.adopt("influxdb sink", StopPhase::Sink, sink);
    }
    start_writer(
        config,
        registry,
        metrics,
        stop,
        supervisor,
        ingest_store,
        alert_tx,
        (inbound_rx, ack_tx, live_tx),
    )?;
    let broker = start_broker(config, broker_plan, registry, metrics, stop, supervisor).await?;
    Ok((alerts, broker))
}

/// The ingest writer's own handle on the store: SQLite's writer connection (and the file, for
/// the checkpointer), or the PostgreSQL pool the stages share.
enum IngestStore {
    Sqlite {
        conn: rusqlite::Connection,
        db: std::path::PathBuf,
    },
    Pg(taza_store::pg::PgStore),
}

/// Opens the store `[store]` names, creating and migrating it: SQLite in the data dir (or the
/// `sqlite://DIR` of `url`), or the PostgreSQL server of a `postgres://` url.
async fn open_store(
    cfg: &taza_store::config::StoreConfig,
) -> Result<(taza_store::Store, IngestStore), RunError> {
    use taza_store::config::Location;
    match cfg
        .location()
        .map_err(|e| config::ConfigError::Invalid(vec![format!("store.url: {e}")]))?
    {
        Location::Sqlite(dir) => {
            let cfg = cfg.sqlite_in(dir);
            let conn = taza_store::open_writer(&cfg)?;
            let db = taza_store::db_path(&cfg);
            Ok((
                taza_store::Store::sqlite(&db)?,
                IngestStore::Sqlite { conn, db },
            ))
        }
        Location::Postgres(url) => {
            let pg = taza_store::pg::PgStore::connect(&url).await?;
            tracing::info!(store = pg.shown_url(), "store on PostgreSQL");
            Ok((taza_store::Store::Pg(pg.clone()), IngestStore::Pg(pg)))
        }
    }
}

type WriterChannels = (
    mpsc::Receiver<taza_domain::pipeline::Inbound>,
    mpsc::Sender<taza_domain::pipeline::AckToken>,
    taza_domain::pipeline::LiveSender,
);

/// The ingest writer for the store's engine: SQLite's writer thread and its checkpointer, or
/// the PostgreSQL writer task (no checkpointer: the server checkpoints).
#[allow(clippy::too_many_arguments)]
fn start_writer(
    config: &Config,
    registry: &Registry,
    metrics: &Metrics,
    stop: &CancellationToken,
    supervisor: &mut Supervisor,
    ingest_store: IngestStore,
    alerts: Option<mpsc::Sender<std::sync::Arc<taza_domain::pipeline::Committed>>>,
    (inbound_rx, ack_tx, live_tx): WriterChannels,
) -> Result<(), RunError> {
    let (conn, db) = match ingest_store {
        IngestStore::Sqlite { conn, db } => (conn, db),
        IngestStore::Pg(pg) => {
            let writer = taza_store::pg::writer::spawn(
                pg,
                taza_store::pg::writer::WriterContext {
                    registry: registry.clone(),
                    metrics: metrics.store.clone(),
                    raw_retention: config.store.raw_retention,
                    shutdown: stop.clone(),
                    alerts,
                    sink_enabled: config.sink.influxdb.is_some(),
                },
                inbound_rx,
                ack_tx,
                live_tx,
            );
            supervisor.adopt("store writer", StopPhase::Writer, writer);
            return Ok(());
        }
    };
    let wal_restart = taza_store::checkpoint::WalRestart::default();
    let writer = taza_store::writer::spawn(
        conn,
        taza_store::writer::WriterContext {
            registry: registry.clone(),
            metrics: metrics.store.clone(),
            raw_retention: config.store.raw_retention,
            shutdown: stop.clone(),
            alerts,
            sink_enabled: config.sink.influxdb.is_some(),
            wal_restart: wal_restart.clone(),
        },
        inbound_rx,
        ack_tx,
        live_tx,
    )
    .map_err(|source| RunError::Io {
        context: "starting store writer",
        source,
    })?;
    supervisor.adopt_thread("store writer", StopPhase::Writer, writer);
    let checkpointer =
        taza_store::checkpoint::spawn(db, wal_restart, stop.clone()).map_err(|source| {
            RunError::Io {
                context: "starting the checkpointer",
                source,
            }
        })?;
    supervisor.adopt_thread("checkpointer", StopPhase::Rest, checkpointer);
    Ok(())
}

/// What [`plan_broker`] prepared: an external broker's endpoint, or the embedded broker's
/// listener for its guard.
enum BrokerPlan {
    External(taza_ingest::Endpoint, String, (String, u16)),
    Embedded,
    Guarded(tokio::net::TcpListener),
}

/// The fallible half of connecting to the broker that starts nothing: TLS files, the guard's
/// listening socket.
async fn plan_broker(config: &Config) -> Result<BrokerPlan, RunError> {
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
        return Ok(BrokerPlan::External(endpoint, b.to_string(), broker));
    }
    if !config.mqtt.embedded_auth {
        return Ok(BrokerPlan::Embedded);
    }
    let listener = tokio::net::TcpListener::bind(config.mqtt.listen)
        .await
        .map_err(|source| taza_ingest::broker::BrokerError::Bind {
            addr: config.mqtt.listen,
            source,
        })?;
    Ok(BrokerPlan::Guarded(listener))
}

/// Where ingest connects, what to print as the broker's address, and where posts beside the
/// gateway (the demo fleet) publish: the external broker, or the embedded one (behind its guard
/// when `embedded_auth` is on).
async fn start_broker(
    config: &Config,
    plan: BrokerPlan,
    registry: &Registry,
    metrics: &Metrics,
    stop: &CancellationToken,
    supervisor: &mut Supervisor,
) -> Result<(taza_ingest::Endpoint, String, (String, u16)), RunError> {
    let start = |listen| async move {
        tokio::task::spawn_blocking(move || taza_ingest::broker::start(listen))
            .await
            .map_err(|e| RunError::Io {
                context: "starting embedded broker",
                source: std::io::Error::other(e),
            })?
            .map_err(RunError::from)
    };
    let listener = match plan {
        BrokerPlan::External(endpoint, shown, broker) => return Ok((endpoint, shown, broker)),
        BrokerPlan::Embedded => {
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
        BrokerPlan::Guarded(listener) => listener,
    };
    // rumqttd on a loopback port only the gateway uses; posts reach it through the guard.
    let outer = listener.local_addr().map_err(|source| RunError::Io {
        context: "embedded broker guard",
        source,
    })?;
    let inner = start(std::net::SocketAddr::from(([127, 0, 0, 1], 0))).await?;
    supervisor.adopt(
        "broker guard",
        StopPhase::Rest,
        taza_ingest::broker::guard::spawn(
            listener,
            inner,
            taza_ingest::broker::guard::Policy {
                prefix: config.mqtt.topic_prefix.clone(),
                registry: registry.clone(),
                metrics: metrics.ingest.clone(),
            },
            stop.clone(),
        ),
    );
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
