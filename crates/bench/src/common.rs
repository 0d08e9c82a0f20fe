//! Small helpers the benchmarks share: the machine line, the local stack,
//! connections, the binaries beside this one, and what /proc says about a
//! process.

use std::path::PathBuf;

use anyhow::{bail, Context};
use citygauge_stack::{throwaway_dir, Mosquitto, MosquittoOptions, Postgres, PostgresOptions, Toolchain};
use citygauge_store::{Store, StoreConfig};
use tokio_postgres::NoTls;

/// PostgreSQL with commit timestamps (each row's commit time, for latencies
/// measured to the commit) and Mosquitto as in production, in a throwaway
/// directory named after `prefix` (removed when the returned one is dropped).
pub async fn start_stack(prefix: &str) -> anyhow::Result<(Postgres, Mosquitto, tempfile::TempDir)> {
    let toolchain = Toolchain::discover()?;
    let dir = throwaway_dir(prefix)?;
    let (pg_dir, mqtt_dir) = (dir.path().join("pg"), dir.path().join("mqtt"));
    let (postgres, broker) = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
        let mut postgres = Postgres::start(&toolchain, PostgresOptions::new(pg_dir, "postgres"))?;
        postgres.psql("postgres", "ALTER SYSTEM SET track_commit_timestamp = on")?;
        postgres.restart()?;
        // The production sample's save interval (deploy/mosquitto.conf).
        let broker = Mosquitto::start(
            &toolchain,
            MosquittoOptions { autosave_interval_s: 10, ..MosquittoOptions::new(mqtt_dir) },
        )?;
        Ok((postgres, broker))
    })
    .await??;
    Ok((postgres, broker, dir))
}

/// A fresh database `name`, migrated, with today's partitions: its URL.
pub async fn migrated_database(postgres: &Postgres, name: &str) -> anyhow::Result<String> {
    postgres.create_database(name, None)?;
    let url = postgres.connection_string(name);
    let store = Store::new(StoreConfig::new(&url))?;
    store.migrate().await?;
    store.maintain(chrono::Utc::now()).await?;
    Ok(url)
}

pub async fn connect(url: &str) -> anyhow::Result<tokio_postgres::Client> {
    let (client, connection) = tokio_postgres::connect(url, NoTls).await?;
    tokio::spawn(connection);
    Ok(client)
}

/// A binary built beside the running one (`target/release/<name>`).
pub fn sibling_binary(name: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let path = exe.with_file_name(name);
    if !path.exists() {
        bail!("{} not found: build it first (cargo build --release)", path.display());
    }
    Ok(path)
}

/// VmHWM: the highest resident set size process `pid` has had, in MB.
pub fn peak_rss_mb(pid: u32) -> anyhow::Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .context("no VmHWM in /proc/<pid>/status")?;
    Ok(kb / 1024.0)
}

pub fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find_map(|l| l.strip_prefix("model name").map(|v| v.trim_start_matches([' ', '\t', ':']).to_string()))
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let mem_gb = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines().find_map(|l| {
                l.strip_prefix("MemTotal:").and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
            })
        })
        .map_or(0.0, |kb| kb / 1024.0 / 1024.0);
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("machine: {cores} cores, {cpu}, {mem_gb:.0} GiB; date {}", chrono::Utc::now().format("%Y-%m-%d %H:%M UTC"))
}
