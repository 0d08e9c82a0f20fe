//! Test harness for citygauge: real PostgreSQL (with PostGIS) and Mosquitto,
//! started by the harness itself in throwaway directories on free ports, and
//! the daemon run in-process or as the real binary. Never mocks.
//!
//! - [`database`]: a fresh, migrated database on a cluster shared by the test
//!   binary (created from a template, so it takes milliseconds);
//! - [`Cluster`]: a cluster of one's own, for tests that restart PostgreSQL;
//! - [`Broker`]: a Mosquitto of one's own;
//! - [`InProcessDaemon`] / [`BinaryDaemon`]: `citygauge ingest`;
//! - [`Publisher`]: QoS 1 publishing that knows what the broker acknowledged;
//! - [`InProcessQuery`]: `citygauge query` in-process on a free port.

pub mod city;
mod daemon;
mod db;
mod mqtt;
mod query;
mod tls;

use std::future::Future;
use std::sync::OnceLock;
use std::time::Duration;

pub use daemon::{http_get, ingest_config, metric, wait_ready, BinaryDaemon, InProcessDaemon};
pub use db::{count, database, Cluster, TestDatabase};
pub use mqtt::{Broker, Publisher};
pub use query::{query_config, InProcessQuery};
pub use tls::{enable_postgres_tls, LoggedProcess, TestPki, TlsBroker};

/// Logs from the code under test, shown for failing tests (`RUST_LOG` filters).
pub fn init_logging() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        let filter = std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into());
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_test_writer()
            .try_init();
    });
}

/// The machine's PostgreSQL and Mosquitto; installing them is `deploy/test.sh`'s job.
pub fn toolchain() -> anyhow::Result<&'static citygauge_stack::Toolchain> {
    static TOOLCHAIN: OnceLock<Result<citygauge_stack::Toolchain, String>> = OnceLock::new();
    TOOLCHAIN
        .get_or_init(|| citygauge_stack::Toolchain::discover().map_err(|e| e.to_string()))
        .as_ref()
        .map_err(|e| anyhow::anyhow!("{e} (deploy/test.sh installs what the tests need)"))
}

/// Polls `check` until it returns `Some`, or fails after `timeout` with the
/// last value it saw described by `what`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<Option<T>>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(value) = check().await? {
            return Ok(value);
        }
        if tokio::time::Instant::now() >= deadline {
            anyhow::bail!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
