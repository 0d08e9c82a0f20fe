//! `citygauge-sim`: parse arguments, start tracing, run a mode.

use std::path::PathBuf;

use anyhow::Result;
use citygauge_sim::{profiles, registry, run_city, run_load, CityConfig, LoadConfig};
use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

/// Smart-city sensor simulator and MQTT load generator for citygauge.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Simulate the demo city and publish its sensors over MQTT.
    City(CityConfig),
    /// Publish synthetic sensors at a target rate; prints a JSON summary.
    Load(LoadConfig),
    /// Regenerate the demo city registry (GeoJSON) deterministically.
    Registry {
        /// Output file ("-" for stdout).
        #[arg(long, env = "CITYGAUGE_SIM_OUT", default_value = "deploy/demo-city.geojson")]
        out: PathBuf,
        /// Generator seed.
        #[arg(long, env = "CITYGAUGE_SIM_SEED", default_value_t = 2026)]
        seed: u64,
        /// Number of streetlights.
        #[arg(long, env = "CITYGAUGE_SIM_STREETLIGHTS", default_value_t = 2000)]
        streetlights: usize,
    },
    /// Print the LoRaWAN device profiles as the daemon's TOML snippet.
    Profiles,
}

#[tokio::main]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info,rumqttc=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let shutdown = CancellationToken::new();
    tokio::spawn({
        let shutdown = shutdown.clone();
        async move {
            let _ = tokio::signal::ctrl_c().await;
            shutdown.cancel();
        }
    });
    match cli.command {
        Command::City(config) => {
            let dry_run = config.dry_run;
            let stats = serde_json::to_string_pretty(&run_city(config, shutdown).await?)?;
            // In a dry run stdout carries the messages; keep it parseable.
            if dry_run {
                eprintln!("{stats}");
            } else {
                println!("{stats}");
            }
        }
        Command::Load(config) => {
            let stats = run_load(config, shutdown).await?;
            println!("{}", serde_json::to_string_pretty(&stats)?);
        }
        Command::Registry { out, seed, streetlights } => {
            let opts = registry::GenerateOptions { seed, streetlights, ..Default::default() };
            let text = registry::generate(&opts).to_geojson();
            if out.as_os_str() == "-" {
                print!("{text}");
            } else {
                std::fs::write(&out, text)?;
                eprintln!("wrote {}", out.display());
            }
        }
        Command::Profiles => print!("{}", profiles::profiles_toml()),
    }
    Ok(())
}
