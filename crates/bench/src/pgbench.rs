//! pgbench for the bare SQL of every benchmark: at a fixed rate (`--rate`, whose logged
//! latency counts from each transaction's scheduled start, so lag is
//! included as in the HTTP generator) or closed-loop, with several weighted
//! scripts, per-transaction logs for exact percentiles, and the CPU of
//! pgbench itself and of the machine.

use std::path::Path;
use std::time::Instant;

use anyhow::bail;

use crate::query::service::{process_cpu_seconds, MachineCpu};
use crate::query::tools::{parse_pgbench_log, parse_tool_cpu, percentile, timed, Measured, PgTarget};

/// One pgbench load.
#[derive(Debug, Clone)]
pub struct PgbenchLoad {
    pub name: String,
    /// Scripts and their weights.
    pub scripts: Vec<(String, u32)>,
    /// Transactions per second; `None`: closed-loop.
    pub rate: Option<f64>,
    pub connections: u32,
    pub threads: u32,
    pub seconds: u64,
    pub warmup_seconds: u64,
}

/// Runs `load` (a warm-up without logs, then the measured run); with
/// `service`, also the CPU that process used during the measured run.
pub async fn run(db: &PgTarget, load: &PgbenchLoad, dir: &Path, service: Option<u32>) -> anyhow::Result<Measured> {
    let logs = dir.join(format!("pgbench-{}", load.name));
    std::fs::create_dir_all(&logs)?;
    let mut files = Vec::new();
    for (i, (script, weight)) in load.scripts.iter().enumerate() {
        let path = dir.join(format!("{}-{i}.sql", load.name));
        std::fs::write(&path, script)?;
        files.push(format!("{}@{weight}", path.display()));
    }
    let args = |seconds: u64, log: bool| -> Vec<String> {
        let mut a: Vec<String> = vec!["pgbench".into(), "-n".into(), "-M".into(), "prepared".into()];
        for f in &files {
            a.extend(["-f".into(), f.clone()]);
        }
        a.extend([
            format!("-c{}", load.connections),
            format!("-j{}", load.threads.min(load.connections)),
            format!("-T{seconds}"),
            "-h".into(),
            db.host.clone(),
            "-p".into(),
            db.port.to_string(),
            "-U".into(),
            db.user.clone(),
        ]);
        if let Some(rate) = load.rate {
            a.push(format!("--rate={rate}"));
        }
        if log {
            a.extend(["-l".into(), format!("--log-prefix={}", logs.join("tx").display())]);
        }
        a.push(db.dbname.clone());
        a
    };
    if load.warmup_seconds > 0 {
        timed(&args(load.warmup_seconds, false)).await?;
    }
    let service_cpu = || service.and_then(|pid| process_cpu_seconds(pid).ok()).unwrap_or(0.0);
    let (started, machine, service_before) = (Instant::now(), MachineCpu::now(), service_cpu());
    let (stdout, stderr) = timed(&args(load.seconds, true)).await?;
    let wall = started.elapsed();
    let machine_cores = MachineCpu::now().busy_cores_since(&machine, wall);
    let mut latencies = Vec::new();
    for entry in std::fs::read_dir(&logs)? {
        let path = entry?.path();
        parse_pgbench_log(&std::fs::read_to_string(&path)?, &mut latencies);
        std::fs::remove_file(&path)?;
    }
    if latencies.is_empty() {
        bail!("pgbench {} ran no transaction: {stdout}{stderr}", load.name);
    }
    latencies.sort_by(f64::total_cmp);
    let failed = stdout
        .lines()
        .find_map(|l| l.strip_prefix("number of failed transactions: "))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    Ok(Measured {
        requests: latencies.len() as u64,
        seconds: load.seconds as f64,
        p50_ms: percentile(&latencies, 50.0) / 1e3,
        p99_ms: percentile(&latencies, 99.0) / 1e3,
        max_ms: latencies.last().copied().unwrap_or(0.0) / 1e3,
        errors: failed,
        bytes: 0,
        tool_cores: parse_tool_cpu(&stderr).unwrap_or(0.0) / wall.as_secs_f64(),
        service_cores: (service_cpu() - service_before) / wall.as_secs_f64(),
        machine_cores,
    })
}
