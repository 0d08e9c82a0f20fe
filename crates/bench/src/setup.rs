//! The local stack and the daemon process for each run.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use citygauge_sim::{LoadConfig, LoadFormat};
use citygauge_stack::{Mosquitto, Postgres};
use clap::Parser;
use tokio_util::sync::CancellationToken;

use crate::Args;

pub use citygauge_bench::common::{connect, machine};
use citygauge_bench::common::{migrated_database, peak_rss_mb, sibling_binary, start_stack};
use citygauge_bench::cpu::{CpuUse, Meter, Source};

pub struct Bench {
    pub postgres: Postgres,
    pub broker: Mosquitto,
    _dir: tempfile::TempDir,
}

pub struct Throughput {
    pub elapsed: Duration,
    pub peak_rss_mb: f64,
    /// CPU time of the daemon, PostgreSQL, the broker and the publisher
    /// between the first publish and the last commit.
    pub cpu: CpuUse,
}

impl Bench {
    pub async fn start() -> anyhow::Result<Bench> {
        let (postgres, broker, dir) = start_stack("citygauge-bench-").await?;
        Ok(Bench { postgres, broker, _dir: dir })
    }

    /// A fresh database, migrated, with today's partitions.
    pub async fn database(&self, name: &str) -> anyhow::Result<String> {
        migrated_database(&self.postgres, name).await
    }

    /// The backend new databases get here (`timescaledb` when installed).
    pub async fn backend(&self) -> anyhow::Result<String> {
        let client = connect(&self.postgres.connection_string("raw")).await?;
        Ok(client.query_one("SELECT value FROM platform_settings WHERE key = 'timeseries_backend'", &[]).await?.get(0))
    }

    /// The daemon for a run whose load names `sensors` distinct sensors.
    pub fn daemon(&self, url: &str, client_id: &str, sensors: u64, extra: &[String]) -> anyhow::Result<Daemon> {
        let binary = sibling_binary("citygauge")?;
        let http = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
        // The load's sensors are not in the registry: each becomes a pending
        // sensor on its first reading, and past the cap (1,000 by default)
        // their readings would be refused and the run would never complete.
        // Room for all of them and the subscription probe; `extra` may
        // override it (a later flag wins).
        let pending = format!("--max-pending-sensors={}", sensors + 16);
        let child = Command::new(&binary)
            .args(["ingest", "--mqtt-url", &self.broker.url(), "--database-url", url, "--mqtt-client-id", client_id])
            .args(["--http-listen", &http.to_string(), "--log", "warn", &pending])
            .args(extra)
            .stdin(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        Ok(Daemon { child, http })
    }

    /// Publishes `messages` of `per_message` readings through the daemon and
    /// times from the first publish to the last row committed.
    pub async fn throughput(
        &self,
        name: &str,
        args: &Args,
        messages: u64,
        per_message: usize,
        format: LoadFormat,
    ) -> anyhow::Result<Throughput> {
        let url = self.database(name).await?;
        let mut daemon = self.daemon(&url, &format!("bench-{name}"), args.sensors, &args.daemon_args)?;
        wait_subscribed(&url, &self.broker).await?;
        let before = daemon.stored_readings().await?;
        let readings = messages * per_message as u64;
        let load = load_config(self, args, name, messages, per_message, format == LoadFormat::Senml)?;
        let meter = Meter::start(&[
            ("daemon", Source::Process(daemon.pid())),
            ("postgres", Source::Tree(self.postgres.pid().context("PostgreSQL is not running")?)),
            ("broker", Source::Process(self.broker.pid().context("the broker is not running")?)),
            // The load generator runs in this process (so does the polling of
            // the daemon's metrics below, a request every 20 ms).
            ("publisher", Source::this_process()),
        ])?;
        let started = Instant::now();
        let stats = citygauge_sim::run_load(load, CancellationToken::new()).await?;
        if stats.distinct_readings != readings {
            bail!("the load generator published {} distinct readings, expected {readings}", stats.distinct_readings);
        }
        // The daemon's own count of committed readings: polling count(*) over
        // millions of rows would load the database being measured.
        let deadline = Instant::now() + Duration::from_secs(900);
        while daemon.stored_readings().await? < before + readings {
            if Instant::now() > deadline {
                bail!("the daemon stored {} of {readings} readings", daemon.stored_readings().await? - before);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let elapsed = started.elapsed();
        let cpu = meter.stop()?;
        // And the table agrees, exactly.
        let stored: i64 = connect(&url).await?.query_one("SELECT count(*) FROM water_level", &[]).await?.get(0);
        if stored as u64 != readings {
            bail!("{stored} rows in water_level, {readings} published");
        }
        let peak_rss_mb = daemon.peak_rss_mb()?;
        daemon.stop();
        Ok(Throughput { elapsed, peak_rss_mb, cpu })
    }
}

/// The load generator's configuration for a run: water levels, as fast as
/// the publishers go (the broker and the daemon set the pace).
pub fn load_config(
    bench: &Bench,
    args: &Args,
    name: &str,
    messages: u64,
    per_message: usize,
    senml: bool,
) -> anyhow::Result<LoadConfig> {
    Ok(LoadArgs::try_parse_from([
        "load".to_string(),
        format!("--mqtt-url={}", bench.broker.url()),
        format!("--sensors={}", args.sensors),
        "--kind=water_level".into(),
        format!("--format={}", if senml { "senml" } else { "canonical" }),
        format!("--readings-per-message={per_message}"),
        format!("--messages={messages}"),
        "--rate-msgs-per-s=0".into(),
        format!("--connections={}", args.connections),
        "--inflight=1000".into(),
        format!("--client-id=bench-load-{name}"),
        "--drain-timeout-s=600".into(),
    ])?
    .config)
}

#[derive(Parser)]
struct LoadArgs {
    #[command(flatten)]
    config: LoadConfig,
}

pub struct Daemon {
    child: Child,
    http: std::net::SocketAddr,
}

impl Daemon {
    /// `citygauge_ingest_readings_stored_total`, summed over kinds (0 while
    /// the daemon is not yet serving).
    pub async fn stored_readings(&self) -> anyhow::Result<u64> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let Ok(mut stream) = tokio::net::TcpStream::connect(self.http).await else { return Ok(0) };
        stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n").await?;
        let mut body = String::new();
        stream.read_to_string(&mut body).await?;
        Ok(body
            .lines()
            .filter(|l| l.starts_with("citygauge_ingest_readings_stored_total{"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>() as u64)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// VmHWM: the highest resident set size the process has had.
    pub fn peak_rss_mb(&self) -> anyhow::Result<f64> {
        peak_rss_mb(self.child.id())
    }

    pub fn stop(&mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        let _ = self.child.wait();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until the daemon's session exists on the broker: a probe message is
/// stored. Until then the broker would drop what the load publishes.
pub async fn wait_subscribed(url: &str, broker: &Mosquitto) -> anyhow::Result<()> {
    let client = connect(url).await?;
    let deadline = Instant::now() + Duration::from_secs(60);
    let probe_ts = chrono::Utc::now() - chrono::Duration::days(1);
    loop {
        crate::latency::publish_once(
            broker.port(),
            "city/water_level/bench-probe",
            &format!(r#"{{"ts":"{}","level_m":0}}"#, probe_ts.to_rfc3339()),
        )
        .await?;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let n: i64 =
            client.query_one("SELECT count(*) FROM water_level WHERE sensor_id = 'bench-probe'", &[]).await?.get(0);
        if n > 0 {
            client.batch_execute("DELETE FROM water_level WHERE sensor_id = 'bench-probe'").await?;
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("the daemon did not start storing within a minute");
        }
    }
}
