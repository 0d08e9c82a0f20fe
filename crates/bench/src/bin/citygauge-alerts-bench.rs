//! `citygauge-alerts-bench`: MQTT publish to the alert row committed and to
//! the signed webhook received, while 5,000 messages/s of other readings flow
//! through ingest, against publish to the reading row (the floor) in the same
//! run. See `citygauge_bench::alerts` and BENCHMARKS.md.
//!
//! Build and run: `cargo build --release && target/release/citygauge-alerts-bench`.

use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt().with_env_filter(std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into())).init();
    citygauge_bench::alerts::run(citygauge_bench::alerts::Args::parse()).await
}
