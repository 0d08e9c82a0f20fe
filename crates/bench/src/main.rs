//! `citygauge-bench`: measures ingest against the physical limits of the same
//! machine, in one run, with broker, database and load generator all local:
//!
//! 1. the raw limit: binary COPY of the same rows into the same table;
//! 2. sustained end-to-end ingest, one reading per message (publish to
//!    committed row), through the real `citygauge ingest` process;
//! 3. the same with 50-reading SenML packs;
//! 4. publish-to-commit latency at a steady rate, from each row's commit
//!    timestamp (`track_commit_timestamp`) minus its publish time;
//! 5. the daemon's peak RSS in each run;
//! 6. CPU time per stored reading of each process in each run (the daemon,
//!    PostgreSQL with all its backends, the broker, the publisher), from
//!    /proc, beside PostgreSQL's CPU per row of raw COPY ([`citygauge_bench::cpu`]).
//!
//! Build and run: `cargo build --release && target/release/citygauge-bench`.

mod broker;
mod latency;
mod raw;
mod report;
mod setup;

use anyhow::Context;
use clap::Parser;
use setup::Bench;

#[derive(Debug, Parser)]
#[command(about = "Benchmark citygauge ingest on this machine")]
struct Args {
    /// Single-reading messages in the throughput run.
    #[arg(long, default_value_t = 600_000)]
    messages: u64,
    /// 50-reading packs in the pack run.
    #[arg(long, default_value_t = 40_000)]
    packs: u64,
    /// Readings per pack.
    #[arg(long, default_value_t = 50)]
    pack_size: usize,
    /// Distinct sensors the load is spread over.
    #[arg(long, default_value_t = 10_000)]
    sensors: u64,
    /// Publisher connections of the load generator.
    #[arg(long, default_value_t = 2)]
    connections: usize,
    /// Steady rate of the latency run, messages/s.
    #[arg(long, default_value_t = 5_000.0)]
    latency_rate: f64,
    /// Length of the latency run, seconds (0 skips it).
    #[arg(long, default_value_t = 30)]
    latency_seconds: u64,
    /// Also write the CPU figures (microseconds per stored reading, per
    /// process and run) to this file as JSON.
    #[arg(long)]
    json: Option<std::path::PathBuf>,
    /// Only the raw COPY and pack runs (and the latency run unless
    /// `--latency-seconds 0`): the two figures issue 8's CPU target compares.
    #[arg(long)]
    packs_only: bool,
    /// Extra `citygauge ingest` flags, e.g. `--daemon-arg=--writers=3`.
    #[arg(long = "daemon-arg", allow_hyphen_values = true)]
    daemon_args: Vec<String>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt().with_env_filter(std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into())).init();
    let args = Args::parse();
    let bench = Bench::start().await.context("starting PostgreSQL and Mosquitto")?;
    println!("{}", setup::machine());

    // Latency first, on a quiet system: the throughput runs leave autovacuum,
    // checkpoints and a large broker backlog behind them.
    if args.latency_seconds > 0 {
        let latency = latency::steady(&bench, &args).await?;
        println!(
            "latency at {:.0} messages/s for {} s: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms over {} readings; daemon peak RSS {:.1} MB",
            args.latency_rate, args.latency_seconds, latency.p50_ms, latency.p99_ms, latency.max_ms, latency.readings, latency.peak_rss_mb
        );
    }
    // 1. The raw limit, with the rows the pack run will store.
    let rows = args.packs * args.pack_size as u64;
    let (raw, raw_cpu) = raw::copy_limit(&bench, args.sensors, rows).await?;
    println!("time-series backend: {}", bench.backend().await?);
    println!(
        "raw binary COPY: {rows} rows in {:.2} s = {:.0} rows/s",
        raw.as_secs_f64(),
        rows as f64 / raw.as_secs_f64()
    );
    println!("  {}", raw_cpu.line(rows, "row"));

    let mut measured = vec![("raw binary COPY", rows, raw_cpu)];
    if !args.packs_only {
        // 2. One reading per message: the broker alone, then through citygauge.
        let (plain, plain_cpu) = broker::limit(&bench, &args, args.messages, 1, false).await?;
        let plain_rate = args.messages as f64 / plain.as_secs_f64();
        println!("broker alone, single readings to a plain QoS 1 subscriber: {plain_rate:.0} messages/s");
        println!("  {}", plain_cpu.line(args.messages, "message"));
        let single = bench.throughput("single", &args, args.messages, 1, citygauge_sim::LoadFormat::Canonical).await?;
        let single_rate = args.messages as f64 / single.elapsed.as_secs_f64();
        println!(
            "single readings through citygauge: {} messages in {:.2} s = {single_rate:.0} messages/s = {:.0} % of the broker alone; daemon peak RSS {:.1} MB",
            args.messages,
            single.elapsed.as_secs_f64(),
            100.0 * single_rate / plain_rate,
            single.peak_rss_mb
        );
        println!("  {}", single.cpu.line(args.messages, "reading"));
        measured.push(("broker alone, single", args.messages, plain_cpu));
        measured.push(("single readings", args.messages, single.cpu));

        // 3. Packs: the broker alone, then through citygauge, against raw COPY.
        let (plain_packs, plain_packs_cpu) = broker::limit(&bench, &args, args.packs, args.pack_size, true).await?;
        println!(
            "broker alone, {}-reading packs: {:.0} readings/s",
            args.pack_size,
            rows as f64 / plain_packs.as_secs_f64()
        );
        println!("  {}", plain_packs_cpu.line(rows, "reading"));
        measured.push(("broker alone, packs", rows, plain_packs_cpu));
    }
    let packs = bench.throughput("packs", &args, args.packs, args.pack_size, citygauge_sim::LoadFormat::Senml).await?;
    let pack_rate = rows as f64 / packs.elapsed.as_secs_f64();
    println!(
        "{}-reading SenML packs through citygauge: {rows} readings in {:.2} s = {pack_rate:.0} readings/s = {:.0} % of raw COPY; daemon peak RSS {:.1} MB",
        args.pack_size,
        packs.elapsed.as_secs_f64(),
        100.0 * pack_rate / (rows as f64 / raw.as_secs_f64()),
        packs.peak_rss_mb
    );
    println!("  {}", packs.cpu.line(rows, "reading"));
    measured.push(("SenML packs", rows, packs.cpu));

    let runs: Vec<report::Run<'_>> =
        measured.iter().map(|(name, items, cpu)| report::Run { name, items: *items, cpu }).collect();
    print!("{}", report::cpu_table(&runs));
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&report::cpu_json(&runs))?)
            .with_context(|| format!("--json {}", path.display()))?;
    }

    drop(bench);
    Ok(())
}
