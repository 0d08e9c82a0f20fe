//! The command line: global options and one subcommand per service.

use std::path::PathBuf;

use citygauge_ingest::config::DatabaseArgs;
use citygauge_ingest::IngestConfig;
use citygauge_query::QueryConfig;
use clap::{Parser, Subcommand, ValueEnum};
use tokio_util::sync::CancellationToken;

#[derive(Debug, Parser)]
#[command(
    name = "citygauge",
    version,
    about = "Smart-city sensor platform: ingest, store and serve a city's IoT readings"
)]
pub struct Cli {
    /// TOML file whose keys set any option of the subcommand (flags and
    /// CITYGAUGE_* variables override it); see deploy/citygauge.toml.
    #[arg(long, global = true, env = "CITYGAUGE_CONFIG")]
    pub config: Option<PathBuf>,
    /// Log filter, e.g. `info` or `citygauge_ingest=debug,info`.
    #[arg(long, global = true, env = "CITYGAUGE_LOG", default_value = "info")]
    pub log: String,
    #[arg(long, global = true, env = "CITYGAUGE_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the MQTT ingestion daemon.
    Ingest(Box<IngestConfig>),
    /// Run the query service: the JSON API, the live stream and the
    /// control-room page.
    Query(Box<QueryConfig>),
    /// Apply database migrations and exit.
    Migrate(DatabaseArgs),
    /// Manage the sensor registry.
    #[command(subcommand)]
    Sensors(SensorsCommand),
    /// Flood warnings: replay the engine over a past period, manage operator tokens.
    #[command(subcommand)]
    Alerts(AlertsCommand),
    /// Open data: API keys with their own quota on `/opendata/` and `/sta/`.
    #[command(subcommand)]
    Opendata(OpendataCommand),
    /// Install PostgreSQL, PostGIS and Mosquitto from Debian's packages where
    /// missing (uses sudo when not root); the tests and `dev` need them. Then
    /// stop and disable Debian's own PostgreSQL clusters and Mosquitto service,
    /// so that nothing answers on the default ports 5432 and 1883.
    Setup(SetupArgs),
    /// Run the whole platform locally on a demo city: installs what is
    /// missing, starts PostgreSQL and Mosquitto under `.citygauge/`, ingests
    /// what the simulator publishes. Ctrl-C stops everything; data is kept.
    Dev(Box<crate::dev::DevArgs>),
}

#[derive(Debug, clap::Args)]
pub struct SetupArgs {
    /// Leave Debian's PostgreSQL clusters and Mosquitto service that were
    /// installed before alone (those of packages this run installs are still
    /// stopped and disabled).
    #[arg(long, env = "CITYGAUGE_KEEP_SYSTEM_SERVICES")]
    pub keep_system_services: bool,
}

#[derive(Debug, Subcommand)]
pub enum SensorsCommand {
    /// Insert or update sensors from a GeoJSON (points with properties) or CSV file.
    Import {
        /// The registry file (.geojson, .json or .csv).
        file: PathBuf,
        #[command(flatten)]
        database: DatabaseArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum OpendataCommand {
    /// API keys: `create --name N --requests-per-minute R` prints the key once; `revoke --name N`.
    #[command(subcommand)]
    Key(citygauge_query::fair_use::keys::KeyCommand),
}

#[derive(Debug, Subcommand)]
pub enum AlertsCommand {
    /// Run the alert engine over the stored readings of a past period
    /// exactly as it runs live, notifying no one, and print the timeline.
    Replay(Box<citygauge_query::alerting::replay::ReplayArgs>),
    /// Operator and admin bearer tokens.
    #[command(subcommand)]
    Token(citygauge_query::alerting::auth::TokenCommand),
}

pub fn init_tracing(filter: &str, format: LogFormat) {
    let filter =
        tracing_subscriber::EnvFilter::try_new(filter).unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

/// Cancels `shutdown` on Ctrl-C or SIGTERM; a second signal exits at once.
pub async fn stop_on_signal(shutdown: CancellationToken) {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(term) => term,
        Err(error) => {
            tracing::warn!(%error, "cannot listen for SIGTERM");
            return;
        }
    };
    for round in 0..2 {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        if round == 0 {
            tracing::info!("signal received: stopping (again to exit now)");
            shutdown.cancel();
        } else {
            std::process::exit(130);
        }
    }
}
