//! `citygauge-query-bench`: the query service under HTTP load and with
//! 1,000 live-stream clients, against the best bare SQL on the same machine
//! in the same run. See `citygauge_bench::query` and BENCHMARKS.md.
//!
//! Build and run: `cargo build --release && target/release/citygauge-query-bench`.

use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt().with_env_filter(std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into())).init();
    citygauge_bench::query::run(citygauge_bench::query::Args::parse()).await
}
