//! `citygauge-sta-bench`: the SensorThings API at a fixed request rate
//! (open-loop, latency from the intended send time), beside the same
//! answers as bare SQL through pgbench at the same rate, in the same run.
//! See `citygauge_bench::sta` and BENCHMARKS.md.
//!
//! Build and run: `cargo build --release && target/release/citygauge-sta-bench`.

use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt().with_env_filter(std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into())).init();
    citygauge_bench::sta::run(citygauge_bench::sta::Args::parse()).await
}
