//! The ingest daemon under test: in-process (fast, observable) or as the real
//! binary (so it can be SIGKILLed).

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use anyhow::Context;
use citygauge_ingest::IngestConfig;
use clap::Parser;
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
struct Args {
    #[command(flatten)]
    ingest: IngestConfig,
}

/// A daemon configuration for tests: the given broker and database, quick
/// flushes, HTTP on a free port; `extra` are further `--flag value` pairs.
pub fn ingest_config(
    mqtt_url: &str,
    database_url: &str,
    client_id: &str,
    extra: &[&str],
) -> anyhow::Result<IngestConfig> {
    let mut argv = vec![
        "citygauge-ingest",
        "--mqtt-url",
        mqtt_url,
        "--database-url",
        database_url,
        "--mqtt-client-id",
        client_id,
        "--http-listen",
        "127.0.0.1:0",
        "--flush-interval-ms",
        "20",
        "--registry-refresh-s",
        "1",
        "--shutdown-timeout-s",
        "5",
        // Tests stop the database for seconds, not minutes.
        "--not-ready-after-write-failures-s",
        "1",
    ];
    argv.extend_from_slice(extra);
    Ok(Args::try_parse_from(argv).context("test daemon configuration")?.ingest)
}

/// `citygauge_ingest::run` on this runtime.
#[derive(Debug)]
pub struct InProcessDaemon {
    pub http: SocketAddr,
    shutdown: CancellationToken,
    task: Option<tokio::task::JoinHandle<Result<(), citygauge_ingest::IngestError>>>,
}

impl InProcessDaemon {
    pub async fn start(config: IngestConfig) -> anyhow::Result<InProcessDaemon> {
        crate::init_logging();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let http = listener.local_addr()?;
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(citygauge_ingest::run(config, listener, shutdown.clone()));
        let daemon = InProcessDaemon { http, shutdown, task: Some(task) };
        wait_ready(http).await?;
        Ok(daemon)
    }

    /// Graceful shutdown; returns the daemon's own result.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        match self.task.take() {
            Some(task) => Ok(task.await??),
            None => Ok(()),
        }
    }

    /// A metric's value from `/metrics` (0 when absent).
    pub async fn metric(&self, line_prefix: &str) -> anyhow::Result<f64> {
        metric(self.http, line_prefix).await
    }

    pub async fn ready(&self) -> bool {
        http_get(self.http, "/readyz").await.map(|(status, _)| status == 200).unwrap_or(false)
    }
}

impl Drop for InProcessDaemon {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// The real `citygauge ingest` process.
#[derive(Debug)]
pub struct BinaryDaemon {
    child: Child,
}

impl BinaryDaemon {
    /// Starts `binary ingest` with `args`; output goes to the test's stderr.
    pub fn start(binary: &Path, args: &[String]) -> anyhow::Result<BinaryDaemon> {
        let child = Command::new(binary)
            .arg("ingest")
            .args(args)
            .env("CITYGAUGE_LOG", std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()))
            .stdin(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        Ok(BinaryDaemon { child })
    }

    /// SIGKILL: no flush, no acks, nothing.
    pub fn kill(&mut self) -> anyhow::Result<()> {
        self.child.kill()?;
        self.child.wait()?;
        Ok(())
    }

    /// SIGTERM and wait: the graceful path.
    pub fn terminate(&mut self) -> anyhow::Result<std::process::ExitStatus> {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status()?;
        Ok(self.child.wait()?)
    }
}

impl Drop for BinaryDaemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until the daemon at `http` reports ready (migrated, subscribed).
pub async fn wait_ready(http: SocketAddr) -> anyhow::Result<()> {
    Ok(citygauge_ingest::wait_until_ready(http, std::time::Duration::from_secs(60)).await?)
}

/// A minimal HTTP/1.1 GET over a plain socket: status and body.
pub async fn http_get(addr: SocketAddr, path: &str) -> anyhow::Result<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    stream.write_all(format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes()).await?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await?;
    let status = response.split_whitespace().nth(1).and_then(|s| s.parse().ok()).context("no HTTP status")?;
    let body = response.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    Ok((status, body))
}

/// The sum of the values of the metric lines starting with `line_prefix`.
pub async fn metric(addr: SocketAddr, line_prefix: &str) -> anyhow::Result<f64> {
    let (_, body) = http_get(addr, "/metrics").await?;
    Ok(body
        .lines()
        .filter(|l| l.starts_with(line_prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum())
}
