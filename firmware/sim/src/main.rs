//! `taza-sim`: runs the simulated Almaty fleet against an MQTT broker until Ctrl-C (or
//! `--duration-s`). See firmware/README.md.

use std::time::Duration;

use anyhow::{anyhow, Context};
use clap::Parser;
use protocol::post_config::PostConfig;
use protocol::UnixSeconds;
use taza_sim::{Fleet, Scenario, SimOptions};

#[derive(Parser, Debug)]
#[command(
    version,
    about = "Simulated Taza post fleet (firmware core on the host, real MQTT)"
)]
struct Cli {
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

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
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
    let duration = cli.duration_s.map(Duration::from_secs);
    let shutdown = async move {
        match duration {
            Some(d) => tokio::time::sleep(d).await,
            None => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    };
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
