//! `citygauge-alerts-bench`: how long from an MQTT publish to (a) the alert
//! row committed in PostgreSQL and (b) the signed webhook received by a
//! subscriber, while other readings flow through ingest at a steady rate;
//! and, in the same run, the floor: publish to the reading row committed.
//!
//! One machine: PostgreSQL and Mosquitto in a throwaway directory, the real
//! `citygauge ingest` and `citygauge query` (alerting on) processes, and this
//! process publishing, listening and receiving webhooks ([`stack`]).
//!
//! 1. The registry: river gauges with warning levels 2.0 / 2.6 / 3.1 m, one
//!    set for the other traffic and one per measured alert ([`setup`]).
//! 2. Ingest starts; each measured gauge publishes a level below its warning
//!    levels; once they are stored the daemon is subscribed.
//! 3. The query service starts; an admin token (its SHA-256 in
//!    `operator_tokens`) and a subscription through
//!    `POST /api/v1/alerts/subscriptions` to an HTTP receiver in this
//!    process ([`receiver`]); a `LISTEN citygauge_alerts` connection.
//! 4. The other traffic starts ([`traffic`]) and runs for a warm-up.
//! 5. Every `--interval-ms`, the next measured gauge publishes a level over
//!    its first warning level, then `--gap-ms` later a second one: with the
//!    default rules (`water_level.confirm.raise_readings = 2`) that second
//!    reading raises the alert, and its `ts` (its publish time, µs) starts
//!    the measure ([`probe`]).
//! 6. After the last alert has been delivered: each confirming reading's
//!    commit and each alert's commit (`track_commit_timestamp`), the
//!    notification and webhook receipt times, all on this machine's clock
//!    ([`measure`]).

pub mod measure;
pub mod probe;
pub mod receiver;
pub mod setup;
pub mod stack;
pub mod traffic;

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::bail;
use chrono::Utc;

use self::measure::{Figures, Summary};
use self::probe::{Listener, Triggers, BASELINE_M};
use self::receiver::Receiver;
use self::stack::Stack;
use self::traffic::Traffic;
use crate::query::service::{process_cpu_seconds, MachineCpu};

/// p99 target of the issue for both measures.
const TARGET_MS: f64 = 250.0;

#[derive(Debug, Clone, clap::Parser)]
#[command(about = "Benchmark alert latency (publish to alert row and to webhook) under other traffic, on this machine")]
pub struct Args {
    /// Alerts measured, each on its own gauge.
    #[arg(long, default_value_t = 200)]
    pub alerts: usize,
    /// Between the starts of two alerts, ms.
    #[arg(long, default_value_t = 500)]
    pub interval_ms: u64,
    /// Between the two readings over the level of one alert, ms (more than
    /// ingest's 50 ms flush, so they commit in order).
    #[arg(long, default_value_t = 300)]
    pub gap_ms: u64,
    /// Other traffic, messages/s (one reading each).
    #[arg(long, default_value_t = 5_000.0)]
    pub rate: f64,
    /// Registered gauges the other traffic is spread over.
    #[arg(long, default_value_t = 1_000)]
    pub gauges: usize,
    /// Seconds of other traffic before the first alert.
    #[arg(long, default_value_t = 15)]
    pub warmup_seconds: u64,
    /// The evaluator's clock tick (`--alerts-tick-ms`); readings are
    /// evaluated as they are committed, not on the tick.
    #[arg(long, default_value_t = 1_000)]
    pub tick_ms: u64,
    /// A short run to check the harness: 30 alerts, 5 s warm-up.
    #[arg(long)]
    pub quick: bool,
    /// Extra `citygauge ingest` flags, e.g. `--daemon-arg=--writers=3`.
    #[arg(long = "daemon-arg", allow_hyphen_values = true)]
    pub daemon_args: Vec<String>,
    /// Extra `citygauge query` flags, e.g. `--service-arg=--webhook-concurrency=32`.
    #[arg(long = "service-arg", allow_hyphen_values = true)]
    pub service_args: Vec<String>,
}

/// CPU seconds of the processes that matter, and the machine's.
struct Cpu {
    machine: MachineCpu,
    ingest: f64,
    query: f64,
    broker: f64,
    bench: f64,
    postgres: f64,
}

impl Cpu {
    /// `pids`: ingest, query service, broker, postmaster.
    fn now(pids: [u32; 4]) -> Cpu {
        let of = |pid: u32| process_cpu_seconds(pid).unwrap_or(0.0);
        Cpu {
            machine: MachineCpu::now(),
            ingest: of(pids[0]),
            query: of(pids[1]),
            broker: of(pids[2]),
            bench: of(std::process::id()),
            postgres: of(pids[3]) + children_cpu_seconds(pids[3]),
        }
    }

    fn cores_since(&self, earlier: &Cpu, wall: Duration) -> String {
        let s = wall.as_secs_f64();
        let [ingest, query, broker, bench, postgres] = [
            self.ingest - earlier.ingest,
            self.query - earlier.query,
            self.broker - earlier.broker,
            self.bench - earlier.bench,
            self.postgres - earlier.postgres,
        ]
        .map(|v| v / s);
        let machine = self.machine.busy_cores_since(&earlier.machine, wall);
        format!(
            "ingest {ingest:.2}, query {query:.2}, PostgreSQL {postgres:.2}, mosquitto {broker:.2}, \
             this process (publisher, listener, receiver) {bench:.2}; machine {machine:.2} of 2, \
             of which other processes (other sessions on the machine) {:.2}",
            (machine - ingest - query - postgres - broker - bench).max(0.0)
        )
    }
}

/// CPU seconds of the live children of `parent` (PostgreSQL's backends).
fn children_cpu_seconds(parent: u32) -> f64 {
    let Ok(entries) = std::fs::read_dir("/proc") else { return 0.0 };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let ppid = stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<u32>().ok());
            ppid == Some(parent)
        })
        .map(|pid| process_cpu_seconds(pid).unwrap_or(0.0))
        .sum()
}

pub async fn run(mut args: Args) -> anyhow::Result<()> {
    if args.quick {
        args.alerts = args.alerts.min(30);
        args.warmup_seconds = args.warmup_seconds.min(5);
    }
    println!("{}", crate::common::machine());
    let stack = Stack::start().await?;
    let db = stack.client().await?;
    let version: String = db.query_one("SHOW server_version", &[]).await?.get(0);
    println!("PostgreSQL {version}; Mosquitto on port {}", stack.broker.port());

    let traffic_gauges = setup::traffic_gauges(args.gauges);
    let measured = setup::measured_gauges(args.alerts);
    setup::register(&stack.url, &[traffic_gauges.clone(), measured.clone()].concat()).await?;
    let token = setup::admin_token(&db).await?;
    let receiver = Receiver::start().await?;
    // Ingest first, and storing, before the evaluator takes its lease (the
    // order a deployment starts them in; until 2026-11-30 the lease's
    // advisory-lock key was the migrations' one and a daemon started after
    // a leading evaluator waited at its migration).
    let mut ingest = stack.ingest(&args.daemon_args)?;
    let triggers = Arc::new(Triggers::connect(stack.broker.port()));
    baselines(&db, &triggers, &measured, &mut ingest).await?;
    let mut service_args = vec![format!("--alerts-tick-ms={}", args.tick_ms)];
    service_args.extend(args.service_args.iter().cloned());
    let mut service = stack.query(&service_args).await?;
    let (subscription, secret) = setup::subscribe(service.addr, &token, &receiver.url()).await?;
    let listener = Listener::start(&stack.url).await?;
    println!(
        "{} + {} river gauges registered; subscription {subscription} to {}; ingest storing",
        traffic_gauges.len(),
        measured.len(),
        receiver.url()
    );

    let traffic = Traffic::start(stack.broker.port(), traffic_gauges, args.rate);
    tokio::time::sleep(Duration::from_secs(args.warmup_seconds)).await;

    // The measured window.
    let pids = [ingest.pid(), service.pid(), stack.broker.pid().unwrap_or(0), stack.postgres.pid().unwrap_or(0)];
    let (window_start, cpu_start, counts_start, wall_start) =
        (Utc::now(), Cpu::now(pids), traffic.counts(), Instant::now());
    let mut crossings = Vec::with_capacity(measured.len());
    let interval = Duration::from_millis(args.interval_ms);
    let gap = Duration::from_millis(args.gap_ms);
    for (i, gauge) in measured.iter().enumerate() {
        tokio::time::sleep_until((wall_start + interval * i as u32).into()).await;
        let (triggers, gauge) = (triggers.clone(), gauge.clone());
        crossings.push(tokio::spawn(async move {
            let published = triggers.cross(&gauge, gap).await?;
            anyhow::Ok((gauge, published))
        }));
    }
    let mut published = Vec::with_capacity(crossings.len());
    for crossing in crossings {
        published.push(crossing.await??);
    }
    // Every alert heard and delivered, or 30 s past the last.
    let deadline = Instant::now() + Duration::from_secs(30);
    while (listener.raised().len() < measured.len() || receiver.count() < measured.len()) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (wall, cpu_end, counts_end, window_end) = (wall_start.elapsed(), Cpu::now(pids), traffic.counts(), Utc::now());
    let stats = traffic.stop().await?;
    triggers.disconnect().await;

    // The other traffic, all stored?
    let stored = wait_stored(&db, stats.acked).await?;
    let hooks = receiver.hooks();
    let samples = measure::samples(&db, &published, &listener.raised(), &hooks).await?;
    let figures = measure::figures(&samples);
    let floor = measure::traffic_floor(&db, window_start, window_end).await?;
    let unsigned = receiver::unsigned(&hooks, &secret);
    let deliveries: (i64, i64) = {
        let row = db
            .query_one(
                "SELECT count(*) FILTER (WHERE state = 'delivered'), count(*) FILTER (WHERE attempts > 1)
                   FROM webhook_deliveries WHERE subscription_id = $1",
                &[&subscription],
            )
            .await?;
        (row.get(0), row.get(1))
    };
    let evaluator = evaluator_latency(&service).await.unwrap_or_default();
    let (ingest_rss, query_rss) = (ingest.peak_rss_mb()?, service.peak_rss_mb()?);
    ingest.stop();
    service.stop();

    let window_rate = |a: u64, b: u64| (b - a) as f64 / wall.as_secs_f64();
    println!();
    println!(
        "other traffic: {:.0} messages/s handed to MQTT and {:.0} acknowledged by the broker during the measured {:.1} s \
         (target {:.0}); whole run {:.0}/s sent; publisher behind schedule by at most {} messages, busy {:.1} % of its time; \
         {} of {} acknowledged readings stored",
        window_rate(counts_start.0, counts_end.0),
        window_rate(counts_start.1, counts_end.1),
        wall.as_secs_f64(),
        args.rate,
        stats.sent_per_s(),
        stats.max_behind,
        100.0 * stats.busy,
        stored,
        stats.acked,
    );
    println!("CPU cores during the measured window: {}", cpu_end.cores_since(&cpu_start, wall));
    println!(
        "alerts: {} measured, {} without an alert, {} without a webhook, {} raised at another time than the confirming reading's ts; \
         {} webhook requests ({} failing the signature check), {} deliveries delivered, {} needed a retry",
        samples.len(),
        figures.missing_alerts,
        figures.missing_webhooks,
        figures.misattributed,
        hooks.len(),
        unsigned,
        deliveries.0,
        deliveries.1
    );
    println!("alert notifications heard, by rule and event: {:?}", listener.events());
    if let Some((mean_ms, n)) = evaluator {
        println!(
            "evaluator's own histogram (notification received to decision committed): mean {mean_ms:.1} ms over {n}"
        );
    }
    println!("peak RSS: ingest {ingest_rss:.1} MB, query service {query_rss:.1} MB");
    println!();
    print_table(&figures, &floor);
    if figures.missing_alerts == samples.len() {
        bail!("no alert was raised: is the evaluator running?");
    }
    Ok(())
}

fn print_table(f: &Figures, floor: &Summary) {
    let verdict = |s: &Summary| match s.n {
        0 => "(none)".to_string(),
        _ if s.p99 < TARGET_MS => "p99 < 250 ms: **met**".to_string(),
        _ => "p99 < 250 ms: **not met**".to_string(),
    };
    println!("| measure | p50 / p95 / p99 / max | n | target |");
    println!("|---|---|---|---|");
    let rows: [(&str, &Summary, String); 7] = [
        ("publish → reading row committed, other traffic (the floor)", floor, String::new()),
        ("publish → reading row committed, the confirming readings (the floor)", &f.reading_committed, String::new()),
        (
            "publish → alert committed (its `raised` event's commit timestamp)",
            &f.alert_committed,
            verdict(&f.alert_committed),
        ),
        ("publish → alert notification heard (`LISTEN citygauge_alerts`)", &f.alert_heard, String::new()),
        ("publish → signed webhook received", &f.webhook, verdict(&f.webhook)),
        ("reading committed → alert committed (evaluate and store)", &f.evaluation, String::new()),
        ("alert committed → webhook received (outbox and HTTP)", &f.delivery, String::new()),
    ];
    for (name, summary, target) in rows {
        println!("| {name} | {} | {} | {target} |", summary.figures(), summary.n);
    }
}

/// Publishes a level below the warning levels for every measured gauge
/// until all are stored: then the daemon is subscribed (the broker drops
/// what is published before its session exists).
async fn baselines(
    db: &tokio_postgres::Client,
    triggers: &Triggers,
    gauges: &[String],
    ingest: &mut stack::Process,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        for gauge in gauges {
            triggers.publish(gauge, BASELINE_M).await?;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        let stored: i64 = db
            .query_one("SELECT count(DISTINCT sensor_id) FROM water_level WHERE sensor_id = ANY($1)", &[&gauges])
            .await?
            .get(0);
        if stored as usize == gauges.len() {
            return Ok(());
        }
        if ingest.exited()? {
            bail!("citygauge ingest exited");
        }
        if Instant::now() > deadline {
            bail!("ingest stored {stored} of {} baseline readings within 2 minutes", gauges.len());
        }
    }
}

/// Waits (up to a minute) until the other traffic's rows number `acked`.
async fn wait_stored(db: &tokio_postgres::Client, acked: u64) -> anyhow::Result<u64> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let n: i64 = db.query_one("SELECT count(*) FROM water_level WHERE sensor_id LIKE 'bg-%'", &[]).await?.get(0);
        if n as u64 >= acked || Instant::now() > deadline {
            return Ok(n as u64);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The mean of `citygauge_alerts_evaluation_latency_seconds`, ms, and its count.
async fn evaluator_latency(service: &crate::query::service::Service) -> anyhow::Result<Option<(f64, u64)>> {
    let metrics = crate::query::http::get(service.addr, "/metrics", &[]).await?;
    let body = String::from_utf8_lossy(&metrics.body).to_string();
    let value = |name: &str| body.lines().find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse::<f64>().ok()));
    let (Some(sum), Some(count)) = (
        value("citygauge_alerts_evaluation_latency_seconds_sum "),
        value("citygauge_alerts_evaluation_latency_seconds_count "),
    ) else {
        return Ok(None);
    };
    Ok((count > 0.0).then(|| (1_000.0 * sum / count, count as u64)))
}
