//! `gateway`: parses the command line, loads config, starts tracing, runs until SIGTERM/Ctrl-C.

use std::net::SocketAddr;
use std::path::PathBuf;

mod posts_cli;

use anyhow::Context;
use clap::{Parser, Subcommand};
use taza_gateway::config::Config;
#[cfg(feature = "demo")]
use taza_gateway::demo;
use taza_ingest::config::BrokerUrl;
use tokio_util::sync::CancellationToken;

/// Taza gateway: air and river posts over MQTT into a store, scores, alerts and dashboards.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// Config file (TOML). Environment `TAZA_SECTION__KEY` overrides it; flags override both.
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// Folder for the SQLite database.
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
    /// The store: postgres://user:password@host:port/db (a PostgreSQL server replicas share)
    /// or sqlite://DIR [default: SQLite in the data dir]. Same as `[store] url`.
    #[arg(long, global = true, value_name = "URL")]
    store: Option<String>,
    /// HTTP listen address [default: 127.0.0.1:8080].
    #[arg(long, global = true)]
    http: Option<SocketAddr>,
    /// Listen address of the embedded MQTT broker [default: 127.0.0.1:1883].
    #[arg(long, global = true, conflicts_with = "broker")]
    mqtt: Option<SocketAddr>,
    /// External broker, mqtt://user:pass@host:port (no embedded broker starts).
    #[arg(long, global = true)]
    broker: Option<BrokerUrl>,
    /// Accept readings from posts missing from the registry. For demos only: anyone who can
    /// reach the broker can then write data.
    #[arg(long, global = true)]
    allow_unregistered: bool,
    /// Run the simulated Almaty fleet beside the gateway (a year of history, then live data).
    #[arg(long, global = true)]
    demo: bool,
    /// Seed of the demo fleet.
    #[arg(long, global = true, default_value_t = 2026)]
    demo_seed: u64,
    /// Days of hourly history the demo fleet publishes first.
    #[arg(long, global = true, default_value_t = 365)]
    demo_days: u32,
    /// Log as JSON lines instead of text.
    #[arg(long, global = true)]
    log_json: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print the effective configuration (secrets redacted) and exit.
    Config,
    /// Print a year's city scorecard against the plan targets, from the store in the data dir
    /// (or, with `--source influxdb`, its posts and InfluxDB's readings).
    Report {
        /// Local (Asia/Almaty) calendar year [default: this year].
        #[arg(long)]
        year: Option<i32>,
        /// Output format.
        #[arg(long, value_enum, default_value = "markdown")]
        format: ReportFormat,
        /// Where the readings come from: the store's rollups, or InfluxDB (`[sink.influxdb]`,
        /// through its Flux query API) for years whose raw readings SQLite no longer keeps.
        /// The posts are the store's either way.
        #[arg(long, value_enum, default_value = "store")]
        source: ReportSource,
    },
    /// The post registry: add, list, show, retire, provision, commission; Mosquitto's
    /// password file and ACL.
    Posts {
        /// Who makes the change, for the audit trail [default: cli:$USER].
        #[arg(long)]
        actor: Option<String>,
        #[command(subcommand)]
        command: posts_cli::PostsCommand,
    },
    /// Copy a one-machine SQLite store into PostgreSQL (stop the gateway first). Idempotent:
    /// run it again after an interruption. Refuses a database holding other values for the
    /// same rows; prints and checks every table's counts.
    Migrate {
        /// The SQLite store: sqlite://DIR (the data dir holding taza.db).
        #[arg(long, value_name = "sqlite://DIR")]
        from: String,
        /// The PostgreSQL store: postgres://user:password@host:port/db (migrated to this
        /// gateway's schema first).
        #[arg(long, value_name = "postgres://...")]
        to: String,
        /// Rows per transaction.
        #[arg(long, default_value_t = 20_000)]
        batch: usize,
    },
    /// InfluxDB 2, the long-term store (`[sink.influxdb]`).
    Influx {
        #[command(subcommand)]
        command: InfluxCommand,
    },
}

#[derive(Debug, Subcommand)]
enum InfluxCommand {
    /// Connect with the configured URL, org, bucket and token; print the bucket's retention
    /// and the newest point per measurement. Fails saying what is wrong: unreachable, token
    /// refused (401) or not allowed (403), organization or bucket missing.
    Check,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum ReportSource {
    Store,
    Influxdb,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum ReportFormat {
    Markdown,
    Csv,
    Json,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let mut config = Config::load(cli.config.as_deref(), std::env::vars())?;
    if let Some(d) = cli.data_dir {
        config.store.data_dir = d;
    }
    if let Some(url) = cli.store {
        config.store.url = Some(url);
    }
    if let Some(h) = cli.http {
        config.api.listen = h;
    }
    if let Some(m) = cli.mqtt {
        config.mqtt.listen = m;
    }
    if let Some(b) = cli.broker {
        config.mqtt.broker = Some(b);
    }
    if cli.allow_unregistered {
        config.mqtt.allow_unregistered = true;
    }
    #[cfg(feature = "demo")]
    let demo = cli.demo.then_some(demo::DemoOptions {
        seed: cli.demo_seed,
        backfill_days: cli.demo_days,
    });
    #[cfg(feature = "demo")]
    let fleet = demo.as_ref().map(demo::fleet);
    #[cfg(feature = "demo")]
    if let Some(fleet) = &fleet {
        // The fleet's posts join the registry, unless the config already lists them.
        for entry in demo::registry_entries(fleet, demo::cadence()) {
            if !config.posts.iter().any(|p| p.id == entry.id) {
                config.posts.push(entry);
            }
        }
    }
    #[cfg(not(feature = "demo"))]
    if cli.demo {
        anyhow::bail!(
            "this gateway was built without the demo fleet: run `cargo run -p gateway --features demo -- --demo`"
        );
    }
    match cli.command {
        Some(Command::Config) => {
            print!("{}", config.to_redacted_toml());
            return Ok(());
        }
        Some(Command::Report {
            year,
            format,
            source,
        }) => return report(&config, year, format, source),
        Some(Command::Posts { actor, command }) => {
            config.validate()?;
            return posts_cli::run(&config, command, actor);
        }
        Some(Command::Migrate { from, to, batch }) => return migrate(&from, &to, batch),
        Some(Command::Influx { command }) => return influx(&config, command),
        None => {}
    }
    init_tracing(cli.log_json);
    config.validate()?;

    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async move {
        let shutdown = CancellationToken::new();
        #[cfg(feature = "demo")]
        let prefix = config.mqtt.topic_prefix.clone();
        let running = taza_gateway::start(config, shutdown.clone()).await?;
        println!(
            "Taza gateway: http://{}  mqtt://{}",
            running.http_addr, running.mqtt_addr
        );
        #[cfg(feature = "demo")]
        let fleet_task = match (demo, fleet) {
            (Some(options), Some(fleet)) => {
                let (host, port) = running.broker_endpoint();
                let stop = shutdown.child_token();
                Some(demo::spawn(fleet, options, host, port, prefix, stop))
            }
            _ => None,
        };
        let stopping = running.stopping();
        tokio::select! {
            () = wait_for_signal() => {
                tracing::info!("shutting down");
                shutdown.cancel();
            }
            // The supervisor stops the gateway when one of its tasks fails.
            () = stopping.cancelled() => {}
        }
        let outcome = running.wait().await;
        shutdown.cancel();
        #[cfg(feature = "demo")]
        if let Some(task) = fleet_task {
            // The fleet stops with the shutdown token and logs its report.
            let _ = tokio::time::timeout(std::time::Duration::from_secs(12), task).await;
        }
        // A task failure exits non-zero, so systemd or Kubernetes restarts the gateway.
        outcome.map_err(anyhow::Error::from)
    })
}

/// `gateway report`: the scorecard from the store, without starting the gateway.
fn report(
    config: &Config,
    year: Option<i32>,
    format: ReportFormat,
    source: ReportSource,
) -> anyhow::Result<()> {
    use taza_store::config::Location;
    let location = config
        .store
        .location()
        .map_err(|e| anyhow::anyhow!("store.url: {e}"))?;
    if let Location::Sqlite(dir) = &location {
        let db = dir.join(taza_store::DB_FILE);
        anyhow::ensure!(
            db.exists(),
            "no store at {} (run the gateway first, or pass --data-dir or --store)",
            db.display()
        );
    }
    let norms = taza_api::scoring::load_norms(&config.score)?;
    let year = year.unwrap_or_else(taza_api::scoring::current_year);
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    let card = runtime.block_on(async {
        let store = match location {
            Location::Sqlite(dir) => taza_store::Store::sqlite(&dir.join(taza_store::DB_FILE))?,
            Location::Postgres(url) => {
                taza_store::Store::Pg(taza_store::pg::PgStore::connect(&url).await?)
            }
        };
        if source == ReportSource::Influxdb {
            return report_from_influxdb(config, &store, &norms, year).await;
        }
        anyhow::Ok(taza_api::scoring::city_scorecard_from(&store, norms, year).await?)
    })?;
    match format {
        ReportFormat::Markdown => print!("{}", taza_score::scorecard_markdown(&card)),
        ReportFormat::Csv => print!("{}", taza_score::scorecard_csv(&card)),
        ReportFormat::Json => println!("{}", serde_json::to_string_pretty(&card)?),
    }
    Ok(())
}

/// `gateway report --source influxdb`: the store's posts, their hourly and 20-minute means
/// from InfluxDB, scored by the same engine.
async fn report_from_influxdb(
    config: &Config,
    store: &taza_store::Store,
    norms: &taza_score::Norms,
    year: i32,
) -> anyhow::Result<taza_score::CityScorecard> {
    let Some(cfg) = &config.sink.influxdb else {
        anyhow::bail!("--source influxdb needs a [sink.influxdb] section in the configuration");
    };
    let client = taza_sink::InfluxClient::new(cfg)?;
    let (descriptors, records) = store
        .read(|db| {
            Ok((
                taza_store::read::post_descriptors(db)?,
                taza_store::registry::all(db)?,
            ))
        })
        .await?;
    let posts: Vec<taza_sink::history::HistoryPost> = descriptors
        .into_iter()
        .map(|descriptor| {
            let cadence = records
                .iter()
                .find(|r| r.entry.id == descriptor.id)
                .and_then(|r| r.entry.cadence)
                .unwrap_or(config.store.default_cadence);
            taza_sink::history::HistoryPost {
                descriptor,
                cadence,
            }
        })
        .collect();
    let (from, to) = taza_api::scoring::scorecard_span(year)?;
    let now = taza_domain::calendar::now();
    let series = taza_sink::history::read_series(
        &client,
        &posts,
        &taza_score::days::SCORED,
        from,
        to,
        now.offset(-26 * 3600),
    )
    .await
    .map_err(|e| anyhow::anyhow!("reading history from InfluxDB: {e}"))?;
    Ok(taza_api::scoring::city_scorecard_from_buckets(
        norms, year, series, now,
    )?)
}

/// `gateway influx ...`: the configured InfluxDB, without starting the gateway.
fn influx(config: &Config, command: InfluxCommand) -> anyhow::Result<()> {
    let Some(cfg) = &config.sink.influxdb else {
        anyhow::bail!("no [sink.influxdb] in the configuration: there is no InfluxDB to check");
    };
    let problems = cfg.problems();
    anyhow::ensure!(
        problems.is_empty(),
        "[sink.influxdb]: {}",
        problems.join("; ")
    );
    let client = taza_sink::InfluxClient::new(cfg)?;
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    match command {
        InfluxCommand::Check => {
            let report = runtime
                .block_on(taza_sink::history::check(&client))
                .map_err(|e| anyhow::anyhow!("influx check failed: {e}"))?;
            print!("{report}");
        }
    }
    Ok(())
}

/// `gateway migrate`: the SQLite store at `from` into the PostgreSQL store at `to`.
fn migrate(from: &str, to: &str, batch: usize) -> anyhow::Result<()> {
    use taza_store::config::Location;
    let Location::Sqlite(dir) = Location::parse(from).map_err(anyhow::Error::msg)? else {
        anyhow::bail!("--from must be sqlite://DIR");
    };
    let Location::Postgres(url) = Location::parse(to).map_err(anyhow::Error::msg)? else {
        anyhow::bail!("--to must be postgres://...");
    };
    let db = dir.join(taza_store::DB_FILE);
    anyhow::ensure!(db.exists(), "no SQLite store at {}", db.display());
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async {
        let target = taza_store::pg::PgStore::connect(&url)
            .await
            .with_context(|| format!("connecting to {}", taza_store::pg::redact(&url)))?;
        println!(
            "copying {} into {} ({batch} rows per transaction)",
            db.display(),
            target.shown_url()
        );
        println!(
            "{:<18} {:>12} {:>12} {:>12} {:>12} {:>8}",
            "table", "source", "copied", "present", "target", "sampled"
        );
        let reports = taza_store::pg::copy::from_sqlite(&db, &target, batch, |r| {
            println!(
                "{:<18} {:>12} {:>12} {:>12} {:>12} {:>8}",
                r.table, r.source, r.copied, r.present, r.target, r.sampled
            );
        })
        .await?;
        let extra: Vec<String> = reports
            .iter()
            .filter(|r| r.target > r.source)
            .map(|r| format!("{} (+{})", r.table, r.target - r.source))
            .collect();
        if !extra.is_empty() {
            println!(
                "the target also holds rows the source does not have: {}",
                extra.join(", ")
            );
        }
        println!(
            "every table accounts for every source row; sampled rows read back equal. Point \
             the gateways at it with [store] url = \"{}\"",
            target.shown_url()
        );
        Ok(())
    })
}

fn init_tracing(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        // rumqttd logs ordinary connection churn at error level; RUST_LOG=rumqttd=info shows it.
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,rumqttd=off"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!(error = %e, "cannot listen for SIGTERM; Ctrl-C only");
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
