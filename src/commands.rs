//! What each subcommand does, in terms of the library crates.

use std::path::Path;

use anyhow::Context;
use citygauge_domain::registry::file;
use citygauge_ingest::config::DatabaseArgs;
use citygauge_store::Store;
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::cli::{AlertsCommand, Command, OpendataCommand, SensorsCommand};

pub async fn run(command: Command, shutdown: CancellationToken) -> anyhow::Result<()> {
    match command {
        Command::Ingest(config) => {
            // Configuration mistakes first, before anything binds or connects.
            config.validate()?;
            let listener = tokio::net::TcpListener::bind(config.http_listen)
                .await
                .with_context(|| format!("--http-listen {}", config.http_listen))?;
            citygauge_ingest::run(*config, listener, shutdown).await?;
        }
        Command::Query(config) => {
            config.validate()?;
            let listener = tokio::net::TcpListener::bind(config.query_http_listen)
                .await
                .with_context(|| format!("--query-http-listen {}", config.query_http_listen))?;
            citygauge_query::run(*config, listener, shutdown).await?;
        }
        Command::Migrate(database) => {
            let store = store(&database)?;
            let report = store.migrate().await.context("migrating the database")?;
            store.maintain(chrono::Utc::now()).await.context("creating partitions")?;
            println!(
                "schema at version {} (applied {:?}); time-series backend: {}",
                report.version,
                report.applied,
                report.backend.as_str()
            );
        }
        Command::Sensors(SensorsCommand::Import { file, database }) => {
            let store = store(&database)?;
            store.migrate().await.context("migrating the database")?;
            let report = import(&store, &file).await?;
            println!(
                "imported {}: {} new, {} updated, {} pending sensors superseded",
                file.display(),
                report.inserted,
                report.updated,
                report.superseded
            );
        }
        Command::Setup(args) => {
            let services = if args.keep_system_services {
                citygauge_stack::SystemServices::KeepExisting
            } else {
                citygauge_stack::SystemServices::Disable
            };
            let installed = tokio::task::spawn_blocking(move || citygauge_stack::setup(services)).await??;
            let toolchain = installed.toolchain;
            println!(
                "ready: PostgreSQL {} with PostGIS in {}, Mosquitto {} at {}",
                toolchain.pg_major(),
                toolchain.pg_bin_dir().display(),
                toolchain.mosquitto_version(),
                toolchain.mosquitto().display()
            );
            // What happened to Debian's own services on 5432 and 1883.
            println!("{}", installed.services);
        }
        Command::Dev(args) => crate::dev::run(*args, shutdown).await?,
        Command::Alerts(AlertsCommand::Replay(args)) => {
            // The timeline alone on stdout (a table, or JSON for scripts).
            let out = citygauge_query::alerting::replay::command(*args).await?;
            print!("{out}");
        }
        Command::Opendata(OpendataCommand::Key(command)) => {
            // The key alone on stdout, printed once, so a script can capture it.
            let out = citygauge_query::fair_use::keys::run_key_command(command).await?;
            print!("{out}");
        }
        Command::Alerts(AlertsCommand::Token(command)) => {
            // The token is printed once, alone on stdout, so a script can capture it.
            let out = citygauge_query::alerting::auth::run_token_command(command).await?;
            print!("{out}");
        }
    }
    Ok(())
}

pub fn store(database: &DatabaseArgs) -> anyhow::Result<Store> {
    Ok(Store::new(database.store_config())?)
}

pub async fn import(store: &Store, path: &Path) -> anyhow::Result<citygauge_store::registry::ImportReport> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let records = file::parse(&name, &bytes).with_context(|| format!("{}", path.display()))?;
    let report = store.import_sensors(&records).await.context("storing the sensors")?;
    info!(file = %path.display(), sensors = records.len(), "registry imported");
    Ok(report)
}
