//! `citygauge dev`: the whole platform on one machine, on embedded defaults.
//!
//! Installs PostgreSQL, PostGIS and Mosquitto from Debian's packages if they
//! are missing, runs a project-local cluster and broker under `--data-dir`
//! (free loopback ports, kept across restarts), migrates, imports the demo
//! city, and runs the query service (the control room), the ingest daemon
//! and the city simulator until Ctrl-C.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use citygauge_ingest::IngestConfig;
use citygauge_query::QueryConfig;
use citygauge_sim::{CityConfig, Scenario};
use citygauge_stack::{Mosquitto, MosquittoOptions, Postgres, PostgresOptions};
use clap::Parser;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

#[derive(Debug, clap::Args)]
pub struct DevArgs {
    /// Where the local PostgreSQL cluster and broker keep their data.
    #[arg(long, env = "CITYGAUGE_DEV_DATA_DIR", default_value = ".citygauge")]
    pub data_dir: PathBuf,
    /// The sensor registry imported at start.
    #[arg(long, env = "CITYGAUGE_DEV_REGISTRY", default_value = "deploy/demo-city.geojson")]
    pub registry: PathBuf,
    /// What the simulated city goes through.
    #[arg(long, env = "CITYGAUGE_DEV_SCENARIO", value_enum, default_value_t = Scenario::Calm)]
    pub scenario: Scenario,
    /// Simulated seconds per real second while replaying the past hours; the
    /// city then goes on in real time.
    #[arg(long, env = "CITYGAUGE_DEV_SPEED", default_value_t = 360.0)]
    pub speed: f64,
    /// Hours of the city's recent past to replay at `--speed` on start (each
    /// start replays them again; stored readings are not duplicated).
    #[arg(long, env = "CITYGAUGE_DEV_REPLAY_HOURS", default_value_t = 6.0)]
    pub replay_hours: f64,
    /// Start only the stack and the daemon, no simulator.
    #[arg(long, env = "CITYGAUGE_DEV_NO_SIMULATOR")]
    pub no_simulator: bool,
    /// Address of the query service: the control room, the API and the stream
    /// (a free port is taken instead if this one is in use). The same option,
    /// variable and TOML key as `citygauge query`'s.
    #[arg(long, env = "CITYGAUGE_QUERY_HTTP_LISTEN", default_value = "127.0.0.1:8080")]
    pub query_http_listen: SocketAddr,
    /// Sources of the control-room page, built (`npm ci`, `npm run build`)
    /// when `dist/` is missing or older than them.
    #[arg(long, env = "CITYGAUGE_DEV_WEB_SOURCE", default_value = "dashboards/control-room")]
    pub web_source: PathBuf,
    /// Options of the ingest daemon (its broker and database are the local ones).
    #[command(flatten)]
    pub ingest: IngestConfig,
}

#[derive(Parser)]
struct QueryDefaults {
    #[command(flatten)]
    query: QueryConfig,
}

#[derive(Parser)]
struct SimulatorDefaults {
    #[command(flatten)]
    city: CityConfig,
}

/// The file's keys that are query-service options, as flags (the file layer
/// applies only dev's and ingest's own keys to `dev`). `CITYGAUGE_*`
/// variables still win: a key whose variable is set is left out. The
/// database, time zone, listen address and page are dev's own.
fn query_args_from_file() -> anyhow::Result<Vec<String>> {
    let mut argv = vec!["citygauge-query".to_string()];
    let explicit = <crate::cli::Cli as Parser>::try_parse().ok().and_then(|cli| cli.config);
    let default = std::path::Path::new("deploy/citygauge.toml");
    let Some(path) = explicit.or_else(|| default.exists().then(|| default.to_path_buf())) else {
        return Ok(argv);
    };
    let text = std::fs::read_to_string(&path).with_context(|| format!("--config {}", path.display()))?;
    let table: toml::Table = text.parse().with_context(|| format!("{}: not valid TOML", path.display()))?;
    let command = <QueryDefaults as clap::CommandFactory>::command();
    const DEV_OWN: [&str; 4] = ["database_url", "city_timezone", "query_http_listen", "web_dir"];
    for (key, value) in &table {
        let Some(arg) = command.get_arguments().find(|a| a.get_id() == key.as_str()) else { continue };
        if DEV_OWN.contains(&key.as_str()) || arg.get_env().is_some_and(|env| std::env::var_os(env).is_some()) {
            continue;
        }
        let text = match value {
            toml::Value::String(s) => s.clone(),
            toml::Value::Array(items) => items
                .iter()
                .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_string))
                .collect::<Vec<_>>()
                .join(","),
            other => other.to_string(),
        };
        argv.push(format!("--{}={text}", arg.get_long().unwrap_or(key)));
    }
    Ok(argv)
}

pub async fn run(args: DevArgs, shutdown: CancellationToken) -> anyhow::Result<()> {
    let toolchain = tokio::task::spawn_blocking(citygauge_stack::ensure_installed)
        .await?
        .context("installing PostgreSQL, PostGIS and Mosquitto")?;
    // The page is built before anything starts, so its URL works when printed.
    // A failed build (no npm registry, say) is not fatal: the service then
    // answers `/` with a page saying how to build it.
    let web_source = args.web_source.clone();
    let web_dist = match tokio::task::spawn_blocking(move || citygauge_stack::ensure_web_built(&web_source)).await? {
        Ok(dist) => Some(dist),
        Err(error) => {
            warn!(%error, "dev: the control-room page could not be built; the API still runs");
            None
        }
    };
    std::fs::create_dir_all(&args.data_dir).with_context(|| format!("--data-dir {}", args.data_dir.display()))?;
    let data_dir = args.data_dir.canonicalize()?;
    let (pg_dir, mqtt_dir) = (data_dir.join("postgres"), data_dir.join("mosquitto"));
    let stack_toolchain = toolchain.clone();
    let (postgres, broker) = tokio::task::spawn_blocking(move || -> anyhow::Result<(Postgres, Mosquitto)> {
        let postgres = Postgres::start(&stack_toolchain, PostgresOptions::new(pg_dir, "citygauge"))?;
        let broker = Mosquitto::start(&stack_toolchain, MosquittoOptions::new(mqtt_dir))?;
        Ok((postgres, broker))
    })
    .await??;

    let mut ingest = args.ingest;
    ingest.database.database_url = postgres.connection_string("citygauge");
    ingest.mqtt_url = broker.url();
    let store = crate::commands::store(&ingest.database)?;
    let report = store.migrate().await.context("migrating the database")?;
    let imported = crate::commands::import(&store, &args.registry).await?;
    // An admin token for this run, so a person can acknowledge and resolve
    // alerts in the control room (the previous run's is revoked).
    let operator_token = {
        let client = store.client().await?;
        citygauge_query::alerting::auth::revoke_tokens(&**client, "dev").await?;
        citygauge_query::alerting::auth::create_token(&**client, "dev", "admin").await?
    };
    // A restart resumes where the stored data ends rather than replaying
    // hours already stored.
    let newest: Option<chrono::DateTime<chrono::Utc>> = store
        .client()
        .await?
        .query_one("SELECT greatest((SELECT max(ts) FROM rainfall WHERE ts <= now()), (SELECT max(ts) FROM water_level WHERE ts <= now()))", &[])
        .await?
        .get(0);
    drop(store);

    // The query service first: it follows the change stream from the start.
    let mut query = QueryDefaults::try_parse_from(query_args_from_file()?).context("query service options")?.query;
    query.database.database_url = postgres.connection_string("citygauge");
    query.city_timezone = ingest.city_timezone.clone();
    // Alert changes go to the demo broker too (`mosquitto_sub -t 'city/alerts/#'`).
    if query.alerting.alerts_mqtt_url.is_none() {
        query.alerting.alerts_mqtt_url = Some(broker.url());
    }
    // New SensorThings Observations too (`mosquitto_sub -t 'v1.1/#'`).
    if query.sta_mqtt.sta_mqtt_url.is_none() {
        query.sta_mqtt.sta_mqtt_url = Some(broker.url());
    }
    let default_rules = std::path::Path::new("deploy/alert-rules.toml");
    if query.alerting.alert_rules_file.is_none() && default_rules.exists() {
        query.alerting.alert_rules_file = Some(default_rules.to_path_buf());
    }
    if let Some(dist) = web_dist {
        query.web_dir = dist;
    }
    query.validate()?;
    let query_listener = match tokio::net::TcpListener::bind(args.query_http_listen).await {
        Ok(listener) => listener,
        Err(error) => {
            warn!(%error, addr = %args.query_http_listen, "dev: the query port is taken; using a free one");
            tokio::net::TcpListener::bind((args.query_http_listen.ip(), 0))
                .await
                .with_context(|| format!("--query-http-listen {}", args.query_http_listen))?
        }
    };
    let web = query_listener.local_addr()?;
    let query_stop = CancellationToken::new();
    let mut query_task = tokio::spawn(citygauge_query::run(query, query_listener, query_stop.clone()));

    let listener = tokio::net::TcpListener::bind(ingest.http_listen)
        .await
        .with_context(|| format!("--http-listen {}", ingest.http_listen))?;
    let http = listener.local_addr()?;
    println!(
        "\ncitygauge dev is running ({} sensors imported, schema v{}, time-series backend: {})\n\
         \n  control room  http://{web}/   (citizens: http://{web}/public, API: http://{web}/api/docs)\n\
         \n  operator token (admin, this run only): {operator_token}\n  alerts    http://{web}/api/v1/alerts   CAP feed: http://{web}/api/v1/alerts/feed.atom   (try: mosquitto_sub -p {} -t 'city/alerts/#' -v)\n\
         \n  database  psql \"{}\"\n  broker    {}   (try: mosquitto_sub -p {} -t 'city/#' -v)\n  metrics   http://{http}/metrics   ready: http://{http}/readyz   query: http://{web}/metrics\n  data      {}\n\
         \n  e.g.  psql \"{}\" -c \"SELECT sensor_id, ts, level_m, quality FROM water_level ORDER BY ts DESC LIMIT 10\"\n\
         \nCtrl-C stops everything; the data stays for the next run.\n",
        imported.inserted + imported.updated,
        report.version,
        report.backend.as_str(),
        broker.port(),
        postgres.connection_string("citygauge"),
        broker.url(),
        broker.port(),
        data_dir.display(),
        postgres.connection_string("citygauge"),
    );

    // The daemon first: the simulator starts once it is subscribed, or the
    // broker would drop what the city sends before then.
    let daemon_stop = CancellationToken::new();
    let mut daemon = tokio::spawn(citygauge_ingest::run(ingest, listener, daemon_stop.clone()));
    citygauge_ingest::wait_until_ready(http, std::time::Duration::from_secs(60)).await?;
    // On stop, the simulator goes first, then the daemon flushes, then the
    // query service, then the stack.
    let simulator_stop = CancellationToken::new();
    let simulator = if args.no_simulator {
        None
    } else {
        let mut defaults = SimulatorDefaults::try_parse_from(["citygauge-sim"]).context("simulator defaults")?;
        defaults.city.mqtt_url = broker.url();
        defaults.city.registry = args.registry.clone();
        defaults.city.scenario = args.scenario;
        defaults.city.speed = args.speed;
        let replay = chrono::Duration::seconds((args.replay_hours.max(0.0) * 3600.0) as i64);
        let start = (chrono::Utc::now() - replay).max(newest.unwrap_or_default());
        defaults.city.start = Some(start.fixed_offset());
        info!(from = %start, "dev: the simulated city starts here, then runs in real time");
        let stop = simulator_stop.clone();
        Some(tokio::spawn(async move { citygauge_sim::run_city(defaults.city, stop).await }))
    };

    // A service that ends on its own (failed, panicked) stops dev with its
    // error instead of leaving a half-running platform.
    let (query_done, daemon_done, failed): (bool, bool, Option<anyhow::Error>) = tokio::select! {
        _ = shutdown.cancelled() => (false, false, None),
        ended = &mut query_task => (true, false, Some(match ended {
            Ok(Ok(())) => anyhow::anyhow!("the query service stopped unexpectedly"),
            Ok(Err(error)) => anyhow::Error::new(error).context("query service failed"),
            Err(error) => anyhow::Error::new(error).context("query service panicked"),
        })),
        ended = &mut daemon => (false, true, Some(match ended {
            Ok(Ok(())) => anyhow::anyhow!("the ingest daemon stopped unexpectedly"),
            Ok(Err(error)) => anyhow::Error::new(error).context("ingest daemon failed"),
            Err(error) => anyhow::Error::new(error).context("ingest daemon panicked"),
        })),
    };
    if let Some(error) = &failed {
        tracing::error!(error = format!("{error:#}"), "dev: a service failed; stopping everything");
    }
    info!("dev: stopping the simulator");
    simulator_stop.cancel();
    if let Some(simulator) = simulator {
        match simulator.await {
            Ok(Ok(stats)) => info!(?stats, "dev: simulator stopped"),
            Ok(Err(error)) => warn!(%error, "dev: simulator failed"),
            Err(error) => warn!(%error, "dev: simulator panicked"),
        }
    }
    daemon_stop.cancel();
    let result = if daemon_done {
        Ok(()) // already reported as `failed`
    } else {
        daemon.await.context("ingest daemon panicked")?.map_err(anyhow::Error::from)
    };
    query_stop.cancel();
    if !query_done {
        match query_task.await {
            Ok(Ok(())) => info!("dev: query service stopped"),
            Ok(Err(error)) => warn!(%error, "dev: query service failed"),
            Err(error) => warn!(%error, "dev: query service panicked"),
        }
    }
    tokio::task::spawn_blocking(move || {
        drop(broker);
        drop(postgres);
    })
    .await?;
    info!("dev: stopped; data kept in {}", data_dir.display());
    if let Some(error) = failed {
        return Err(error);
    }
    result.context("ingest daemon")
}
