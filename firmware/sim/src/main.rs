//! `taza-sim`: runs the simulated Almaty fleet against an MQTT broker until Ctrl-C (or
//! `--duration-s`); `taza-sim post --device-config <blob>` runs one provisioned post instead.
//! See firmware/README.md.

use std::time::Duration;

use anyhow::{anyhow, Context};
use clap::{Args, Parser, Subcommand};
use protocol::post_config::PostConfig;
use protocol::UnixSeconds;
use taza_sim::single::{self, SinglePostOptions};
use taza_sim::{Fleet, Scenario, SimOptions};

#[derive(Parser, Debug)]
#[command(
    version,
    about = "Simulated Taza post fleet (firmware core on the host, real MQTT)",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    fleet: FleetArgs,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// One provisioned post at real time, from a device config blob.
    Post(PostArgs),
}

#[derive(Args, Debug)]
struct PostArgs {
    /// The device config blob provisioning wrote (the bytes a post's flash holds).
    #[arg(long)]
    device_config: std::path::PathBuf,
    /// Connect to this host instead of the blob's broker.
    #[arg(long)]
    host: Option<String>,
    /// Connect to this port instead of the blob's.
    #[arg(long)]
    port: Option<u16>,
    /// A forced sensor fault, <quantity>:<silent|implausible>; repeatable.
    #[arg(long = "fault", value_parser = single::parse_fault)]
    faults: Vec<(protocol::Quantity, single::SensorFault)>,
    /// The post's clock runs this many seconds ahead (negative: behind).
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
    clock_offset_s: f64,
    /// Connect without TLS even if the blob asks for TLS.
    #[arg(long)]
    plain: bool,
    /// Seed of the simulated environment.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Stop after this many real seconds (default: run until Ctrl-C).
    #[arg(long)]
    duration_s: Option<u64>,
}

#[derive(Args, Debug)]
struct FleetArgs {
    /// Broker host.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Broker port.
    #[arg(long, default_value_t = 1883)]
    port: u16,
    /// Topic prefix.
    #[arg(long, default_value = "taza")]
    prefix: String,
    /// Seed of all behaviour.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Air posts (at most 18).
    #[arg(long, default_value_t = 18)]
    air: usize,
    /// River posts (at most 5).
    #[arg(long, default_value_t = 5)]
    river: usize,
    /// Simulated seconds per real second.
    #[arg(long, default_value_t = 1.0)]
    rate: f64,
    /// live | winter | flood | mudflow.
    #[arg(long, default_value = "live")]
    scenario: String,
    /// Start of simulated time, Unix seconds (default: the scenario's).
    #[arg(long)]
    start: Option<i64>,
    /// Days of hourly history to publish first.
    #[arg(long, default_value_t = 0)]
    backfill_days: u32,
    /// No random sensor faults or network outages.
    #[arg(long)]
    no_faults: bool,
    /// Sensor sampling interval, s.
    #[arg(long, default_value_t = 10)]
    sample_s: u32,
    /// Averaging window, s.
    #[arg(long, default_value_t = 60)]
    window_s: u32,
    /// Stop after this many real seconds (default: run until Ctrl-C).
    #[arg(long)]
    duration_s: Option<u64>,
}

fn shutdown_after(duration_s: Option<u64>) -> impl std::future::Future<Output = ()> {
    let duration = duration_s.map(Duration::from_secs);
    async move {
        match duration {
            Some(d) => tokio::time::sleep(d).await,
            None => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Post(args)) => run_post(args).await,
        None => run_fleet(cli.fleet).await,
    }
}

async fn run_post(args: PostArgs) -> anyhow::Result<()> {
    let blob = std::fs::read(&args.device_config)
        .with_context(|| format!("reading {}", args.device_config.display()))?;
    let device = single::load_device_config(&blob)
        .with_context(|| format!("device config {}", args.device_config.display()))?;
    let sensors: Vec<&str> = device.sensors.iter().map(|q| q.as_str()).collect();
    eprintln!(
        "taza-sim post {} -> {}:{} prefix {:?}, sensors {}, sample {} s, window {} s",
        device.post,
        args.host.as_deref().unwrap_or(&device.broker_host),
        args.port.unwrap_or(device.broker_port),
        device.topic_prefix.as_str(),
        sensors.join(","),
        device.config.sample_interval_s,
        device.config.window_s
    );
    let options = SinglePostOptions {
        broker_host: args.host,
        broker_port: args.port,
        faults: args.faults,
        clock_offset_s: args.clock_offset_s,
        plain: args.plain,
        seed: args.seed,
    };
    let report = single::run(device, options, shutdown_after(args.duration_s))
        .await
        .context("single post")?;
    eprintln!(
        "{}: windows {} published {} reconnects {} sensor polls {} sensor errors {}",
        report.id,
        report.windows,
        report.published,
        report.reconnects,
        report.sensor_polls,
        report.sensor_errors
    );
    Ok(())
}

async fn run_fleet(cli: FleetArgs) -> anyhow::Result<()> {
    let scenario = Scenario::parse(&cli.scenario)
        .ok_or_else(|| anyhow!("unknown scenario {:?}", cli.scenario))?;
    let fleet = Fleet::default_almaty(cli.seed).limit(cli.air, cli.river);
    let options = SimOptions {
        rate: cli.rate,
        start: cli.start.map(UnixSeconds),
        scenario,
        config: PostConfig {
            sample_interval_s: cli.sample_s,
            window_s: cli.window_s,
            ..PostConfig::default()
        },
        backfill_days: cli.backfill_days,
        faults: !cli.no_faults,
        outages: Vec::new(),
    };
    eprintln!(
        "taza-sim: {} posts -> {}:{} prefix {:?}, rate {}, scenario {:?}",
        fleet.posts().len(),
        cli.host,
        cli.port,
        cli.prefix,
        cli.rate,
        scenario
    );
    let shutdown = shutdown_after(cli.duration_s);
    let report = taza_sim::run(fleet, &cli.host, cli.port, &cli.prefix, options, shutdown)
        .await
        .context("simulation")?;
    eprintln!("backfill packs: {}", report.backfill_packs);
    for p in &report.posts {
        eprintln!(
            "{:<18} windows {:>6} published {:>6} reconnects {:>3} dropped {:>3} sensor errors {:>4}",
            p.id.as_str(),
            p.windows,
            p.published,
            p.reconnects,
            p.dropped,
            p.sensor_errors
        );
    }
    Ok(())
}
