//! `citygauge-query-bench`: the query service under load, against the best
//! bare SQL on the same machine in the same run. It starts its own
//! PostgreSQL in a throwaway directory, stores the data set (see [`load`]),
//! starts the real `citygauge query` process, checks its answers, then:
//!
//! 1. wrk against `/healthz`: the load tool's own ceiling on this machine;
//! 2. wrk against the small responses (overview, district summaries, one
//!    district's sensors), each beside pgbench running the same answer as
//!    SQL at the same concurrency;
//! 3. the map layer (gzip) and its `If-None-Match` revalidation;
//! 4. one sensor's year at ~1,000 points, beside the same answer from the
//!    raw table and from the rollup in bare SQL;
//! 5. 1,000 stream clients while readings are committed at 2,000/s.

pub mod dataset;
pub mod floor;
pub mod http;
pub mod load;
pub mod report;
pub mod series;
pub mod service;
pub mod sse;
pub mod tools;

use std::path::PathBuf;

use anyhow::Context;
use citygauge_stack::{throwaway_dir, Postgres, PostgresOptions, Toolchain};

use self::load::Sizes;
use self::report::{met, Row};
use self::service::Service;
use self::sse::SseConfig;
use self::tools::{HttpLoad, PgTarget, Runner, SqlLoad};

#[derive(Debug, clap::Parser)]
#[command(about = "Benchmark the citygauge query service on this machine, against bare SQL")]
pub struct Args {
    /// Registered sensors (the demo city repeated).
    #[arg(long, default_value_t = 10_000)]
    pub sensors: usize,
    /// Water-level gauges with one-minute history.
    #[arg(long, default_value_t = 100)]
    pub history_sensors: usize,
    /// Days of one-minute history for each of them.
    #[arg(long, default_value_t = 365)]
    pub history_days: u32,
    /// Concurrent connections for the small responses (wrk and pgbench alike).
    #[arg(long, default_value_t = 32)]
    pub connections: u32,
    /// Concurrent connections for the map layer and the series (wrk and pgbench alike).
    #[arg(long, default_value_t = 8)]
    pub heavy_connections: u32,
    /// wrk and pgbench threads.
    #[arg(long, default_value_t = 2)]
    pub threads: u32,
    /// Length of each measured run, seconds.
    #[arg(long, default_value_t = 15)]
    pub seconds: u64,
    /// Warm-up before each measured run, seconds.
    #[arg(long, default_value_t = 3)]
    pub warmup_seconds: u64,
    /// Stream clients in the SSE run.
    #[arg(long, default_value_t = 1_000)]
    pub sse_clients: usize,
    /// Readings committed per second during the SSE run.
    #[arg(long, default_value_t = 2_000.0)]
    pub sse_rate: f64,
    /// Length of the SSE run, seconds.
    #[arg(long, default_value_t = 30)]
    pub sse_seconds: u64,
    /// Keep PostgreSQL's data here (and reuse it on the next run) instead of
    /// in a throwaway directory.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Only store the data set and measure the bare-SQL floor (no service).
    #[arg(long)]
    pub floor_only: bool,
    /// Print the bare-SQL floor's pgbench scripts and exit.
    #[arg(long)]
    pub print_sql: bool,
    /// Extra `citygauge query` flags, e.g. `--service-arg=--sse-coalesce-ms=100`.
    #[arg(long = "service-arg", allow_hyphen_values = true)]
    pub service_args: Vec<String>,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    if args.print_sql {
        let sensors = dataset::sensors(args.sensors)?;
        let mut districts: Vec<String> = sensors.iter().filter_map(|s| s.district.clone()).collect();
        districts.sort();
        districts.dedup();
        let history = dataset::history_sensors(&sensors, 1);
        let sensor = history.first().map_or("none", String::as_str);
        for (name, script) in [
            ("overview", floor::overview()),
            ("districts", floor::districts()),
            ("district", floor::district(&districts)),
            ("district sensors", floor::district_sensors(&districts)),
            ("map layer", floor::map_layer()),
            ("series over the 1h rollup", floor::series(sensor, args.history_days, 43_200, Some("1h"))),
            ("series over the raw table", floor::series(sensor, args.history_days, 43_200, None)),
        ] {
            println!("-- {name}\n{script}");
        }
        return Ok(());
    }
    tools::require("wrk", "wrk")?;
    tools::require("pgbench", "postgresql-client")?;
    // The stream clients' sockets, and the service's (it inherits the limit).
    let fds = sse::raise_fd_limit(2 * args.sse_clients as u64 + 1_000)?;
    println!("{}", crate::common::machine());

    let scratch = throwaway_dir("citygauge-query-bench-")?;
    let pg_dir = args.data_dir.clone().unwrap_or_else(|| scratch.path().join("pg"));
    // Checked before PostgreSQL makes the directory: a reused one holds its rows.
    if !pg_dir.join("PG_VERSION").exists() {
        load::check_disk(&pg_dir, args.history_sensors as u64 * u64::from(args.history_days) * 1_440)?;
    }
    let (postgres, client, version) = start_postgres(pg_dir).await?;
    let url = postgres.connection_string("bench");
    println!("PostgreSQL {version}; open-file limit {fds}");

    let sizes = Sizes { sensors: args.sensors, history_sensors: args.history_sensors, history_days: args.history_days };
    let data = load::prepare(&url, sizes).await.context("storing the data set")?;
    println!("time-series backend: {}", data.backend.as_str());

    let mut service = match args.floor_only {
        true => None,
        false => Some(Service::start(&url, &args.service_args).await?),
    };
    let facts = match &service {
        Some(service) => inspect(service, &data, &url).await?,
        None => Facts::of_data_set(&data, &url, args.history_days).await?,
    };
    let addr = service.as_ref().map(|s| s.addr);

    let runner = Runner {
        connections: args.connections,
        threads: args.threads,
        seconds: args.seconds,
        warmup_seconds: args.warmup_seconds,
        dir: scratch.path().to_path_buf(),
        service_pid: service.as_ref().map(Service::pid),
    };
    let heavy = Runner { connections: args.heavy_connections, ..runner.clone() };
    let pg =
        PgTarget { host: "127.0.0.1".into(), port: postgres.port(), user: "postgres".into(), dbname: "bench".into() };
    let gzip = vec![("Accept-Encoding".to_string(), "gzip".to_string())];
    let http_load = |name: &str, paths: Vec<String>, headers: &[(String, String)]| HttpLoad {
        name: name.into(),
        paths,
        headers: headers.to_vec(),
    };
    let sql_load = |name: &str, script: String| SqlLoad { name: name.into(), script };
    let mut rows = Vec::new();

    if let Some(addr) = addr {
        let ceiling = runner.http(addr, &http_load("healthz", vec!["/healthz".into()], &[])).await?;
        println!(
            "/healthz (the load tool's ceiling here): {}; CPU {}",
            report::figures(&ceiling),
            report::cpu(&ceiling)
        );
        rows.push(Row {
            measure: format!("`/healthz`, {} connections: the load tool's ceiling", args.connections),
            service: Some(ceiling),
            floor: None,
            note: String::new(),
            verdict: String::new(),
        });
    }

    let district_paths =
        |suffix: &str| facts.districts.iter().map(|d| format!("/api/v1/districts/{d}{suffix}")).collect();
    let small = [
        ("overview", "city overview `/api/v1/overview`", vec!["/api/v1/overview".to_string()], floor::overview()),
        (
            "districts",
            "all district summaries `/api/v1/districts`",
            vec!["/api/v1/districts".into()],
            floor::districts(),
        ),
        (
            "district",
            "one district's summary `/api/v1/districts/{name}`",
            district_paths(""),
            floor::district(&facts.districts),
        ),
        (
            "district-sensors",
            "one district's sensors `/api/v1/districts/{name}/sensors` (first 100)",
            district_paths("/sensors"),
            floor::district_sensors(&facts.districts),
        ),
    ];
    for (name, measure, paths, script) in small {
        let service_run = match addr {
            Some(addr) => Some(runner.http(addr, &http_load(name, paths, &gzip)).await?),
            None => None,
        };
        if let Some(run) = &service_run {
            println!("{name}: service {}; CPU {}", report::figures(run), report::cpu(run));
            tools::settle().await;
        }
        let floor_run = runner.sql(&pg, &sql_load(name, script), args.connections).await?;
        println!("{name}: bare SQL {}; CPU {}", report::figures(&floor_run), report::cpu(&floor_run));
        let ok = service_run.as_ref().is_some_and(|run| {
            let ratio = report::ratio(run, &floor_run).unwrap_or(0.0);
            run.rate() >= 10_000.0 && run.p99_ms < 20.0 && ratio >= 10.0 && run.errors == 0
        });
        rows.push(Row {
            measure: format!("{measure}, {} connections", args.connections),
            service: service_run,
            floor: Some(floor_run),
            note: String::new(),
            verdict: format!("≥ 10,000 req/s, p99 < 20 ms, ≥ 10x: {}", met(ok)),
        });
        tools::settle().await;
    }

    let map = "/api/v1/map/sensors.geojson".to_string();
    let map_run = match addr {
        Some(addr) => Some(heavy.http(addr, &http_load("map", vec![map.clone()], &gzip)).await?),
        None => None,
    };
    if let Some(run) = &map_run {
        println!("map (gzip): service {}; CPU {}", report::figures(run), report::cpu(run));
        tools::settle().await;
    }
    let map_floor = heavy.sql(&pg, &sql_load("map", floor::map_layer()), args.heavy_connections).await?;
    println!("map: bare SQL {}; CPU {}", report::figures(&map_floor), report::cpu(&map_floor));
    rows.push(Row {
        measure: format!(
            "whole map layer `/api/v1/map/sensors.geojson` ({} features, {} KB gzip, {} KB plain), {} connections",
            data.sensors.len(),
            facts.map_gzip_bytes / 1024,
            facts.map_plain_bytes / 1024,
            args.heavy_connections
        ),
        verdict: format!("p99 < 50 ms: {}", met(map_run.as_ref().is_some_and(|r| r.p99_ms < 50.0 && r.errors == 0))),
        service: map_run,
        floor: Some(map_floor),
        note: "(uncompressed)".into(),
    });
    if let (Some(addr), Some(etag)) = (addr, &facts.map_etag) {
        let mut headers = gzip.clone();
        headers.push(("If-None-Match".into(), etag.clone()));
        let revalidate = runner.http(addr, &http_load("map-304", vec![map.clone()], &headers)).await?;
        println!("map revalidation (304): {}; CPU {}", report::figures(&revalidate), report::cpu(&revalidate));
        let ok = revalidate.rate() >= 10_000.0 && revalidate.p99_ms < 20.0 && revalidate.errors == 0;
        rows.push(Row {
            measure: format!("map layer revalidation, `If-None-Match` -> 304, {} connections", args.connections),
            service: Some(revalidate),
            floor: None,
            note: String::new(),
            verdict: format!("at the small-response rate: {}", met(ok)),
        });
    }
    tools::settle().await;

    if let Some(series) = &facts.series {
        rows.extend(series::measure(addr, &heavy, &pg, series, args.history_days).await?);
    }

    let sse_result = match &mut service {
        Some(service) => {
            let config = SseConfig { clients: args.sse_clients, rate: args.sse_rate, seconds: args.sse_seconds };
            let result = sse::run(service, &url, &data, config).await?;
            service.stop();
            Some(result)
        }
        None => None,
    };

    println!("\n{}; citygauge {}", crate::common::machine(), commit());
    println!("PostgreSQL {version}; {} sensors; history {} rows\n", data.sensors.len(), data.history_rows);
    println!("{}", report::table(&rows));
    if let Some(sse_result) = sse_result {
        println!("| SSE run ({} s) | |\n|---|---|\n{}", args.sse_seconds, report::sse(&sse_result));
        println!(
            "SSE target p99 < 250 ms, no client starved: {}",
            met(sse_result.p99_ms < 250.0 && sse_result.starved == 0 && sse_result.clients > 0)
        );
    }
    drop(client);
    drop(postgres);
    Ok(())
}

/// PostgreSQL in `pg_dir` (made there when new) with a database `bench`,
/// sized for the machine, without parallel query or JIT: the server, a
/// connection and its version. Shared with the SensorThings benchmark.
pub async fn start_postgres(pg_dir: PathBuf) -> anyhow::Result<(Postgres, tokio_postgres::Client, String)> {
    let postgres = tokio::task::spawn_blocking(move || -> anyhow::Result<Postgres> {
        let toolchain = Toolchain::discover()?;
        let mut postgres = Postgres::start(&toolchain, PostgresOptions::new(pg_dir, "bench"))?;
        // A server sized for the machine rather than the stack's test
        // defaults (room for the rollups in memory); the WAL kept small, as
        // the data set itself takes most of the disk it may use.
        for (setting, value) in [("shared_buffers", "2GB"), ("max_wal_size", "1GB"), ("checkpoint_timeout", "15min")] {
            postgres.psql("postgres", &format!("ALTER SYSTEM SET {setting} = '{value}'"))?;
        }
        postgres.restart()?;
        Ok(postgres)
    })
    .await??;
    let url = postgres.connection_string("bench");
    let client = crate::common::connect(&url).await?;
    // Two cores, many concurrent clients: parallel workers would only add
    // their start-up time to every statement (the service's and the floor's),
    // and JIT compiling the floor's large expressions costs seconds per
    // statement (measured: 17 s of a 17.7 s overview) for milliseconds saved.
    client
        .batch_execute(
            "ALTER DATABASE bench SET max_parallel_workers_per_gather = 0; ALTER DATABASE bench SET jit = off",
        )
        .await?;
    let version: String = client.query_one("SHOW server_version", &[]).await?.get(0);
    Ok((postgres, client, version))
}

/// The checkout's commit, `-dirty` when it has changes.
pub fn commit() -> String {
    std::process::Command::new("git")
        .args(["describe", "--always", "--dirty"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map_or_else(|| "(unknown commit)".into(), |o| String::from_utf8_lossy(&o.stdout).trim().to_string())
}

/// What the runs need from the service's own answers, checked on the way.
#[derive(Debug)]
struct Facts {
    districts: Vec<String>,
    map_etag: Option<String>,
    map_gzip_bytes: usize,
    map_plain_bytes: usize,
    series: Option<SeriesFacts>,
}

#[derive(Debug)]
pub struct SeriesFacts {
    pub sensor: String,
    pub step_s: i64,
    pub source: String,
    pub points: usize,
    pub raw_rows: i64,
}

impl Facts {
    /// What `inspect` would find, from the data set alone (`--floor-only`).
    async fn of_data_set(data: &load::DataSet, url: &str, days: u32) -> anyhow::Result<Facts> {
        let mut districts: Vec<String> = data.sensors.iter().filter_map(|s| s.district.clone()).collect();
        districts.sort();
        districts.dedup();
        let series = match data.history.first() {
            None => None,
            Some(sensor) => {
                // The service's point-budget rule: the smallest nice step giving at most 1,000 points.
                let range_s = i64::from(days) * 86_400;
                let step_s = [60, 300, 600, 900, 1_800, 3_600, 10_800, 21_600, 43_200, 86_400]
                    .into_iter()
                    .find(|step| range_s / step <= 1_000)
                    .unwrap_or(86_400);
                let source = if step_s % 86_400 == 0 {
                    "1d"
                } else if step_s % 3_600 == 0 {
                    "1h"
                } else {
                    "1m"
                };
                Some(SeriesFacts {
                    sensor: sensor.clone(),
                    step_s,
                    source: source.into(),
                    points: (range_s / step_s) as usize,
                    raw_rows: raw_rows(url, sensor).await?,
                })
            }
        };
        Ok(Facts { districts, map_etag: None, map_gzip_bytes: 0, map_plain_bytes: 0, series })
    }
}

async fn raw_rows(url: &str, sensor: &str) -> anyhow::Result<i64> {
    let client = crate::common::connect(url).await?;
    Ok(client.query_one("SELECT count(*) FROM water_level WHERE sensor_id = $1", &[&sensor]).await?.get(0))
}

async fn inspect(service: &Service, data: &load::DataSet, url: &str) -> anyhow::Result<Facts> {
    let addr = service.addr;
    let overview = http::get_json(addr, "/api/v1/overview").await?;
    let total = overview.pointer("/sensors/total").and_then(serde_json::Value::as_u64).unwrap_or(0);
    println!("check: overview counts {total} sensors (registered {})", data.sensors.len());
    let summaries = http::get_json(addr, "/api/v1/districts").await?;
    let mut districts: Vec<String> = summaries["items"]
        .as_array()
        .context("/api/v1/districts without items")?
        .iter()
        .filter_map(|d| d["district"].as_str().map(str::to_string))
        .collect();
    districts.sort();
    println!("check: {} district summaries", districts.len());
    let first = districts.first().context("no districts")?;
    let listed = http::get_json(addr, &format!("/api/v1/districts/{first}/sensors")).await?;
    println!(
        "check: {first} lists {} sensors ({} on the first page)",
        listed["total"],
        listed["items"].as_array().map_or(0, Vec::len)
    );

    let map = "/api/v1/map/sensors.geojson";
    let plain = http::get(addr, map, &[]).await?;
    let features = plain.json()?["features"].as_array().map_or(0, Vec::len);
    let gzip = http::get(addr, map, &[("accept-encoding", "gzip")]).await?;
    let etag = gzip.header("etag").map(str::to_string);
    println!(
        "check: map layer {} features, {} bytes plain, {} bytes as Content-Encoding {:?}, ETag {:?}",
        features,
        plain.body.len(),
        gzip.body.len(),
        gzip.header("content-encoding"),
        etag
    );
    if let Some(tag) = &etag {
        let again = http::get(addr, map, &[("accept-encoding", "gzip"), ("if-none-match", tag)]).await?;
        println!("check: If-None-Match answered {}", again.status);
    }

    let series = match data.history.first() {
        None => None,
        Some(sensor) => {
            let days = (data.history_rows / data.history.len().max(1) as u64 / 1440).max(1);
            let body =
                http::get_json(addr, &format!("/api/v1/sensors/{sensor}/series?from=-{days}d&points=1000")).await?;
            let points = body["t"].as_array().map_or(0, Vec::len);
            let step_s = body["step_s"].as_i64().unwrap_or(60);
            let source = body["source"].as_str().unwrap_or("raw").to_string();
            println!("check: series of {sensor}: {points} points, step {step_s} s, source {source}");
            let raw_rows = raw_rows(url, sensor).await?;
            let source = if source == "raw" { "1m".to_string() } else { source };
            Some(SeriesFacts { sensor: sensor.clone(), step_s, source, points, raw_rows })
        }
    };
    Ok(Facts { districts, map_etag: etag, map_gzip_bytes: gzip.body.len(), map_plain_bytes: plain.body.len(), series })
}
