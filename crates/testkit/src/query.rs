//! The query service under test, in-process on a free port.

use std::net::SocketAddr;

use anyhow::Context;
use citygauge_query::QueryConfig;
use clap::Parser;
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
struct Args {
    #[command(flatten)]
    query: QueryConfig,
}

/// A query-service configuration for tests: the given database, HTTP on a
/// free port, quick registry refresh and heartbeats, no built web page;
/// `extra` are further `--flag value` pairs (they replace these defaults).
pub fn query_config(database_url: &str, extra: &[&str]) -> anyhow::Result<QueryConfig> {
    let defaults = [
        ("--database-url", database_url),
        ("--query-http-listen", "127.0.0.1:0"),
        ("--registry-refresh-s", "1"),
        ("--sse-heartbeat-s", "1"),
        ("--sse-coalesce-ms", "50"),
        ("--web-dir", "/nonexistent/citygauge-web"),
    ];
    let mut argv = vec!["citygauge-query"];
    for (flag, value) in defaults {
        if !extra.iter().any(|e| *e == flag || e.starts_with(&format!("{flag}="))) {
            argv.extend([flag, value]);
        }
    }
    argv.extend_from_slice(extra);
    Ok(Args::try_parse_from(argv).context("test query configuration")?.query)
}

/// `citygauge_query::run` on this runtime, on `127.0.0.1:<free port>`.
#[derive(Debug)]
pub struct InProcessQuery {
    pub http: SocketAddr,
    shutdown: CancellationToken,
    task: Option<tokio::task::JoinHandle<Result<(), citygauge_query::QueryError>>>,
}

impl InProcessQuery {
    /// Starts the service and waits until `/readyz` says ready.
    pub async fn start(config: QueryConfig) -> anyhow::Result<InProcessQuery> {
        crate::init_logging();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let http = listener.local_addr()?;
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(citygauge_query::run(config, listener, shutdown.clone()));
        let service = InProcessQuery { http, shutdown, task: Some(task) };
        crate::eventually("the query service to be ready", std::time::Duration::from_secs(60), || async {
            Ok(crate::daemon::http_get(http, "/readyz").await.ok().filter(|(status, _)| *status == 200).map(|_| ()))
        })
        .await?;
        Ok(service)
    }

    /// `http://127.0.0.1:<port>` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.http)
    }

    /// A GET over a plain socket: status and body.
    pub async fn get(&self, path: &str) -> anyhow::Result<(u16, String)> {
        crate::daemon::http_get(self.http, path).await
    }

    /// Graceful shutdown; returns the service's own result.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        match self.task.take() {
            Some(task) => Ok(task.await??),
            None => Ok(()),
        }
    }
}

impl Drop for InProcessQuery {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}
