//! The run's processes: PostgreSQL and Mosquitto in a throwaway directory
//! (as `citygauge-bench` starts them), the real `citygauge ingest` daemon and
//! the real `citygauge query` service with alerting on.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use citygauge_stack::{Mosquitto, Postgres};

use crate::common::{connect, migrated_database, peak_rss_mb, sibling_binary, start_stack};
use crate::query::http;
use crate::query::service::Service;

#[derive(Debug)]
pub struct Stack {
    pub postgres: Postgres,
    pub broker: Mosquitto,
    pub url: String,
    _dir: tempfile::TempDir,
}

impl Stack {
    /// PostgreSQL with commit timestamps (each row's commit time, for the
    /// floor and the alert's own commit), Mosquitto as in production, and a
    /// migrated database with today's partitions.
    pub async fn start() -> anyhow::Result<Stack> {
        let (postgres, broker, dir) = start_stack("citygauge-alerts-bench-").await?;
        let url = migrated_database(&postgres, "alerts").await?;
        Ok(Stack { postgres, broker, url, _dir: dir })
    }

    /// `citygauge ingest` with default options (plus `extra`).
    pub fn ingest(&self, extra: &[String]) -> anyhow::Result<Process> {
        let binary = sibling_binary("citygauge")?;
        let http = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
        let child = Command::new(&binary)
            .args(["ingest", "--mqtt-url", &self.broker.url(), "--database-url", &self.url])
            .args(["--mqtt-client-id", "bench-alerts-ingest", "--http-listen", &http.to_string(), "--log", "warn"])
            .args(extra)
            .stdin(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {} ingest", binary.display()))?;
        Ok(Process { child })
    }

    /// `citygauge query` with alerting on (plus `extra`), once its evaluator
    /// leads: holds the lease and has warmed up.
    pub async fn query(&self, extra: &[String]) -> anyhow::Result<Service> {
        let service = Service::start(&self.url, extra).await?;
        let started = Instant::now();
        loop {
            let metrics = http::get(service.addr, "/metrics", &[]).await?;
            let body = String::from_utf8_lossy(&metrics.body);
            if body.lines().any(|l| l.trim() == "citygauge_alerts_leader 1") {
                break;
            }
            if started.elapsed() > Duration::from_secs(120) {
                bail!("the query service's alert evaluator did not lead within 2 minutes");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        println!("alert evaluator leading after {:.1} s", started.elapsed().as_secs_f64());
        Ok(service)
    }

    pub async fn client(&self) -> anyhow::Result<tokio_postgres::Client> {
        connect(&self.url).await
    }
}

/// A child process, killed when dropped.
#[derive(Debug)]
pub struct Process {
    child: Child,
}

impl Process {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn peak_rss_mb(&self) -> anyhow::Result<f64> {
        peak_rss_mb(self.child.id())
    }

    pub fn exited(&mut self) -> anyhow::Result<bool> {
        Ok(self.child.try_wait()?.is_some())
    }

    pub fn stop(&mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        let _ = self.child.wait();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
