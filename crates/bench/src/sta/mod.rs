//! `citygauge-sta-bench`: the SensorThings API (`/sta/v1.1`) under a fixed
//! request rate, beside the same answers as bare SQL run by pgbench at the
//! same rate and concurrency, on the same machine in the same run.
//!
//! It reuses the query benchmark's data set and harness ([`crate::query`]):
//! its own PostgreSQL in a throwaway (or `--data-dir`) directory, 10,000
//! registered sensors (the demo city repeated; every public and active one
//! is a Thing with one Datastream per published column), a year of
//! one-minute water levels for `--history-sensors` gauges by binary COPY,
//! the last day of readings for every sensor, and the real
//! `citygauge query` process. Then, for each request of [`queries`]:
//!
//! 1. the service at `--rate` requests/s, open-loop ([`open_loop`], latency
//!    from the intended send time), and the bare SQL at the same rate and
//!    connections (pgbench `--rate`);
//! 2. both closed-loop: the highest rate each sustains (the ceiling);
//!
//! `$count` over a Datastream's year is measured closed-loop only (its
//! target is "no request over 1 s"). `/healthz` closed-loop first shows the
//! load tool's own ceiling on this machine.

pub mod open_loop;
pub mod queries;
pub mod report;

use std::path::PathBuf;

use anyhow::Context;
use citygauge_stack::throwaway_dir;

use self::open_loop::Load;
use self::report::Case;
use crate::pgbench::{self, PgbenchLoad};
use crate::query::load::{self, Sizes};
use crate::query::service::Service;
use crate::query::tools::{self, Measured, PgTarget};

#[derive(Debug, clap::Parser)]
#[command(about = "Benchmark the SensorThings API on this machine at a fixed rate, against bare SQL")]
pub struct Args {
    /// Registered sensors (the demo city repeated).
    #[arg(long, default_value_t = 10_000)]
    pub sensors: usize,
    /// Water-level gauges with one-minute history (their Datastreams are
    /// the deep ones of requests (a) and (d)).
    #[arg(long, default_value_t = 50)]
    pub history_sensors: usize,
    /// Days of one-minute history for each of them.
    #[arg(long, default_value_t = 365)]
    pub history_days: u32,
    /// The fixed request rate of requests (a)-(c), per second (service and bare SQL alike).
    #[arg(long, default_value_t = 1_000.0)]
    pub rate: f64,
    /// Keep-alive connections of the load (HTTP and pgbench alike).
    #[arg(long, default_value_t = 32)]
    pub connections: u32,
    /// Connections of the `$count` run.
    #[arg(long, default_value_t = 4)]
    pub count_connections: u32,
    /// Kinds whose Datastreams request (b) pages through.
    #[arg(long, value_delimiter = ',', default_value = "water_level,rainfall,flood_depth,air_quality")]
    pub kinds: Vec<String>,
    /// Length of each measured run, seconds.
    #[arg(long, default_value_t = 15)]
    pub seconds: u64,
    /// Warm-up before each measured run, seconds.
    #[arg(long, default_value_t = 3)]
    pub warmup_seconds: u64,
    /// Send `Accept-Encoding: gzip`, as Python's requests (FROST's client) does.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub gzip: bool,
    /// Keep PostgreSQL's data here (and reuse it on the next run).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Print the requests and the bare SQL's pgbench scripts, then go on.
    #[arg(long)]
    pub print_sql: bool,
    /// Only these requests (any of a, b, c, d).
    #[arg(long, value_delimiter = ',', default_value = "a,b,c,d")]
    pub only: Vec<String>,
    /// Extra `citygauge query` flags, e.g. `--service-arg=--pool-max-size=16`.
    #[arg(long = "service-arg", allow_hyphen_values = true)]
    pub service_args: Vec<String>,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    tools::require("pgbench", "postgresql-client")?;
    println!("{}", crate::common::machine());
    let scratch = throwaway_dir("citygauge-sta-bench-")?;
    let pg_dir = args.data_dir.clone().unwrap_or_else(|| scratch.path().join("pg"));
    if !pg_dir.join("PG_VERSION").exists() {
        load::check_disk(&pg_dir, args.history_sensors as u64 * u64::from(args.history_days) * 1_440)?;
    }
    let (postgres, client, version) = crate::query::start_postgres(pg_dir).await?;
    let url = postgres.connection_string("bench");
    println!("PostgreSQL {version}");
    let sizes = Sizes { sensors: args.sensors, history_sensors: args.history_sensors, history_days: args.history_days };
    let data = load::prepare(&url, sizes).await.context("storing the data set")?;

    // The per-IP fair-use limit is for the public; here one address is the
    // whole population of clients.
    let mut service_args = vec!["--opendata-requests-per-minute-per-ip=1000000000".to_string()];
    service_args.extend(args.service_args.iter().cloned());
    let service = Service::start(&url, &service_args).await?;
    let addr = service.addr;
    let targets = queries::discover(addr, &client, &data.history, &args.kinds).await?;
    let (datastreams, observations) = census(&client, &targets).await?;
    println!(
        "data set: {datastreams} public active Datastreams, {observations} Observations (raw rows x published columns)"
    );

    let pg =
        PgTarget { host: "127.0.0.1".into(), port: postgres.port(), user: "postgres".into(), dbname: "bench".into() };
    let headers = if args.gzip { vec![("Accept-Encoding".to_string(), "gzip".to_string())] } else { Vec::new() };
    let http = |paths: Vec<String>, rate: Option<f64>, connections: u32| Load {
        paths,
        headers: headers.clone(),
        rate,
        connections: connections as usize,
        seconds: args.seconds as f64,
        warmup_seconds: args.warmup_seconds as f64,
    };
    let sql = |name: &str, scripts: Vec<(String, u32)>, rate: Option<f64>, connections: u32| PgbenchLoad {
        name: name.into(),
        scripts,
        rate,
        connections,
        threads: 2,
        seconds: args.seconds,
        warmup_seconds: args.warmup_seconds,
    };

    let healthz =
        open_loop::run(addr, &http(vec!["/healthz".into()], None, args.connections), Some(service.pid())).await?;
    println!("/healthz closed-loop (the load tool's ceiling): {}; CPU {}", report::latency(&healthz), cpu(&healthz));
    let idle =
        open_loop::run(addr, &http(vec!["/healthz".into()], Some(args.rate), args.connections), Some(service.pid()))
            .await?;
    println!("/healthz at {} req/s: {}; CPU {}", args.rate, report::latency(&idle), cpu(&idle));

    let latest_scripts: Vec<(String, u32)> = args
        .kinds
        .iter()
        .filter_map(|k| {
            let pages = targets.pages.iter().filter(|p| &p.kind == k).count() as u32;
            Some((queries::latest_sql(&targets, k)?, pages))
        })
        .collect();
    let cases = [
        (
            "a",
            format!(
                "(a) a page of 100 Observations of one Datastream, newest first (`Datastreams(id)/Observations?$orderby=phenomenonTime desc&$top=100`, over {} Datastreams of ~{} rows each)",
                targets.deep.len(),
                data.history_rows / targets.deep.len().max(1) as u64
            ),
            targets.deep.iter().map(|d| queries::page_path(d.id)).collect::<Vec<_>>(),
            vec![(queries::page_sql(&targets.deep), 1)],
        ),
        (
            "b",
            format!(
                "(b) latest Observation of every Datastream of a kind, Thing expanded (`Datastreams?$filter=properties/kind eq '…'&$expand=Thing,Observations($orderby=phenomenonTime desc;$top=1)`, all {} pages of {} kinds, {} Datastreams)",
                targets.pages.len(),
                args.kinds.len(),
                targets.latest_datastreams
            ),
            targets.pages.iter().map(|p| p.path.clone()).collect(),
            latest_scripts,
        ),
        (
            "c",
            format!(
                "(c) `$filter` over a district (`Things?$filter=properties/district eq '…'`, first 100, over {} districts)",
                targets.districts.len()
            ),
            targets.districts.iter().map(|d| queries::district_path(d)).collect(),
            vec![(queries::district_sql(&targets.districts), 1)],
        ),
    ];
    if args.print_sql {
        for (name, _, paths, scripts) in &cases {
            println!("-- ({name}) e.g. {}", paths.first().map_or("", String::as_str));
            for (script, weight) in scripts {
                println!("-- weight {weight}\n{script}");
            }
        }
        println!("-- (d) e.g. {}\n{}", queries::count_path(targets.deep[0].id), queries::count_sql(&targets.deep));
    }
    let mut results = Vec::new();
    for (name, measure, paths, scripts) in cases {
        if !args.only.iter().any(|o| o == name) {
            continue;
        }
        let at_rate =
            open_loop::run(addr, &http(paths.clone(), Some(args.rate), args.connections), Some(service.pid())).await?;
        println!("({name}) service at {} req/s: {}; CPU {}", args.rate, report::latency(&at_rate), cpu(&at_rate));
        tools::settle().await;
        let floor =
            pgbench::run(&pg, &sql(name, scripts.clone(), Some(args.rate), args.connections), scratch.path(), None)
                .await?;
        println!("({name}) bare SQL at {} tx/s: {}; CPU {}", args.rate, report::latency(&floor), cpu(&floor));
        tools::settle().await;
        let ceiling = open_loop::run(addr, &http(paths, None, args.connections), Some(service.pid())).await?;
        println!("({name}) service closed-loop: {}; CPU {}", report::latency(&ceiling), cpu(&ceiling));
        tools::settle().await;
        let floor_ceiling =
            pgbench::run(&pg, &sql(name, scripts, None, args.connections), scratch.path(), None).await?;
        println!("({name}) bare SQL closed-loop: {}; CPU {}", report::latency(&floor_ceiling), cpu(&floor_ceiling));
        tools::settle().await;
        results.push(Case {
            measure,
            service: at_rate,
            floor,
            service_ceiling: Some(ceiling),
            floor_ceiling: Some(floor_ceiling),
            rate: Some(args.rate),
        });
    }
    if args.only.iter().any(|o| o == "d") {
        let paths: Vec<String> = targets.deep.iter().map(|d| queries::count_path(d.id)).collect();
        let count = open_loop::run(addr, &http(paths, None, args.count_connections), Some(service.pid())).await?;
        println!("(d) service closed-loop: {}; CPU {}", report::latency(&count), cpu(&count));
        tools::settle().await;
        let scripts = vec![(queries::count_sql(&targets.deep), 1)];
        let floor = pgbench::run(&pg, &sql("d", scripts, None, args.count_connections), scratch.path(), None).await?;
        println!("(d) bare SQL closed-loop: {}; CPU {}", report::latency(&floor), cpu(&floor));
        results.push(Case {
            measure: format!(
                "(d) `$count=true` over all Observations of one Datastream (`Datastreams(id)/Observations?$count=true&$top=1`), closed-loop, {} connections",
                args.count_connections
            ),
            service: count,
            floor,
            service_ceiling: None,
            floor_ceiling: None,
            rate: None,
        });
    }

    println!("\n{}; citygauge {}", crate::common::machine(), crate::query::commit());
    println!(
        "PostgreSQL {version}; {} sensors, {datastreams} Datastreams, {observations} Observations ({} one-minute history rows over {} Datastreams); {} connections, {}gzip",
        data.sensors.len(),
        data.history_rows,
        targets.deep.len(),
        args.connections,
        if args.gzip { "" } else { "no " }
    );
    println!(
        "load tool's ceiling: /healthz closed-loop {}, CPU {}; at {} req/s it used {:.2} cores\n",
        report::latency(&healthz),
        cpu(&healthz),
        args.rate,
        idle.tool_cores
    );
    println!("{}", report::table(&results));
    let all = results.iter().all(|c| report::verdict(c).0);
    println!("all targets: {}", crate::query::report::met(all));
    drop(service);
    drop(client);
    drop(postgres);
    Ok(())
}

fn cpu(m: &Measured) -> String {
    format!("{:.2} tool / {:.2} service / {:.2} machine", m.tool_cores, m.service_cores, m.machine_cores)
}

/// Datastreams and Observations the API serves: visible sensors and their
/// raw rows, times the Datastreams of their kind (a column left empty in a
/// row would make one Observation fewer; the data set has none).
async fn census(db: &tokio_postgres::Client, targets: &queries::Targets) -> anyhow::Result<(i64, i64)> {
    let mut datastreams = 0;
    let mut observations = 0;
    for (kind, columns) in &targets.columns {
        let per = columns.len() as i64;
        let row = db
            .query_one(
                &format!(
                    "SELECT (SELECT count(*) FROM sensors s WHERE s.kind = $1 AND s.public AND s.status = 'active'), \
                     (SELECT count(*) FROM {kind} r JOIN sensors s ON s.id = r.sensor_id WHERE s.public AND s.status = 'active')"
                ),
                &[kind],
            )
            .await?;
        datastreams += row.get::<_, i64>(0) * per;
        observations += row.get::<_, i64>(1) * per;
    }
    Ok((datastreams, observations))
}
