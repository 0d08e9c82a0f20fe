//! The load tools: wrk against the service, pgbench against PostgreSQL, at
//! the same concurrency, each run under bash's `time` so that the tool's own
//! CPU is known, beside the service's and the whole machine's.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use tokio::process::Command;

use super::service::{process_cpu_seconds, MachineCpu};
use crate::pgbench::PgbenchLoad;

/// One measured run.
#[derive(Debug, Clone, Copy, Default)]
pub struct Measured {
    pub requests: u64,
    pub seconds: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// Socket errors, timeouts and (wrk) responses other than 2xx/3xx.
    pub errors: u64,
    pub bytes: u64,
    /// CPU cores used on average: the load tool, the query service, the machine.
    pub tool_cores: f64,
    pub service_cores: f64,
    pub machine_cores: f64,
}

impl Measured {
    pub fn rate(&self) -> f64 {
        if self.seconds > 0.0 {
            self.requests as f64 / self.seconds
        } else {
            0.0
        }
    }
}

/// Where and how hard to load.
#[derive(Debug, Clone)]
pub struct Runner {
    pub connections: u32,
    pub threads: u32,
    pub seconds: u64,
    pub warmup_seconds: u64,
    pub dir: PathBuf,
    /// The query service, whose CPU is sampled around each run.
    pub service_pid: Option<u32>,
}

/// A wrk load: requests rotate over `paths`, all with `headers`.
#[derive(Debug, Clone)]
pub struct HttpLoad {
    pub name: String,
    pub paths: Vec<String>,
    pub headers: Vec<(String, String)>,
}

/// A pgbench load: `script` in pgbench's format (`\set` lines, then one SQL statement).
#[derive(Debug, Clone)]
pub struct SqlLoad {
    pub name: String,
    pub script: String,
}

/// The wrk script: rotating paths, fixed headers, and a machine-readable
/// summary line at the end.
pub fn wrk_script(load: &HttpLoad) -> String {
    let mut lua = String::new();
    for (name, value) in &load.headers {
        lua.push_str(&format!("wrk.headers[{}] = {}\n", lua_string(name), lua_string(value)));
    }
    if load.paths.len() > 1 {
        let paths: Vec<String> = load.paths.iter().map(|p| lua_string(p)).collect();
        lua.push_str(&format!("local paths = {{{}}}\n", paths.join(", ")));
        lua.push_str(
            "local i = math.random(#paths)\n\
             request = function()\n  i = i % #paths + 1\n  return wrk.format(nil, paths[i])\nend\n",
        );
    }
    lua.push_str(
        "done = function(summary, latency, requests)\n  local e = summary.errors\n  \
         io.write(string.format(\"WRK_RESULT %d %d %d %d %d %d %d\\n\", summary.requests, summary.duration, \
         summary.bytes, math.floor(latency:percentile(50)), math.floor(latency:percentile(99)), latency.max, \
         e.connect + e.read + e.write + e.timeout + e.status))\nend\n",
    );
    lua
}

fn lua_string(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// Reads wrk's summary line: requests, duration (µs), bytes, p50, p99, max (µs), errors.
pub fn parse_wrk(stdout: &str) -> anyhow::Result<Measured> {
    let line = stdout.lines().find_map(|l| l.strip_prefix("WRK_RESULT ")).context("no result line from wrk")?;
    let v: Vec<u64> = line.split_whitespace().map(str::parse).collect::<Result<_, _>>()?;
    let [requests, duration_us, bytes, p50, p99, max, errors] = v[..] else { bail!("bad wrk result line {line}") };
    Ok(Measured {
        requests,
        seconds: duration_us as f64 / 1e6,
        bytes,
        p50_ms: p50 as f64 / 1e3,
        p99_ms: p99 as f64 / 1e3,
        max_ms: max as f64 / 1e3,
        errors,
        ..Measured::default()
    })
}

/// bash's `time` line: user and system seconds of the tool.
pub fn parse_tool_cpu(stderr: &str) -> Option<f64> {
    let line = stderr.lines().find_map(|l| l.strip_prefix("TOOL_CPU "))?;
    let mut parts = line.split_whitespace().map(|v| v.parse::<f64>().ok());
    Some(parts.next()?? + parts.next()??)
}

/// Per-transaction latencies (µs, third field) of pgbench's `-l` logs.
pub fn parse_pgbench_log(text: &str, into: &mut Vec<f64>) {
    into.extend(text.lines().filter_map(|l| l.split_whitespace().nth(2)?.parse::<f64>().ok()));
}

/// The `p`-th percentile (0-100) of sorted values; 0 when empty.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

impl Runner {
    /// wrk for a warm-up, then for the measured run.
    pub async fn http(&self, target: SocketAddr, load: &HttpLoad) -> anyhow::Result<Measured> {
        let script = self.dir.join(format!("{}.lua", load.name));
        std::fs::write(&script, wrk_script(load))?;
        let url = format!("http://{target}{}", load.paths.first().map_or("/", String::as_str));
        let args = |seconds: u64| -> Vec<String> {
            vec![
                "wrk".into(),
                format!("-t{}", self.threads),
                format!("-c{}", self.connections),
                format!("-d{seconds}s"),
                "--timeout".into(),
                "10s".into(),
                "-s".into(),
                script.display().to_string(),
                url.clone(),
            ]
        };
        if self.warmup_seconds > 0 {
            timed(&args(self.warmup_seconds)).await?;
        }
        let sample = self.sample();
        let (stdout, stderr) = timed(&args(self.seconds)).await?;
        let mut measured = parse_wrk(&stdout).with_context(|| format!("wrk said: {stdout}{stderr}"))?;
        self.finish(&mut measured, sample, &stderr);
        Ok(measured)
    }

    /// pgbench for a warm-up, then for the measured run with per-transaction
    /// logs (closed-loop, see [`crate::pgbench`]).
    pub async fn sql(&self, database: &PgTarget, load: &SqlLoad, connections: u32) -> anyhow::Result<Measured> {
        let load = PgbenchLoad {
            name: load.name.clone(),
            scripts: vec![(load.script.clone(), 1)],
            rate: None,
            connections,
            threads: self.threads,
            seconds: self.seconds,
            warmup_seconds: self.warmup_seconds,
        };
        crate::pgbench::run(database, &load, &self.dir, self.service_pid).await
    }

    fn sample(&self) -> (Instant, MachineCpu, f64) {
        let service = self.service_pid.and_then(|pid| process_cpu_seconds(pid).ok()).unwrap_or(0.0);
        (Instant::now(), MachineCpu::now(), service)
    }

    fn finish(&self, measured: &mut Measured, (started, machine, service): (Instant, MachineCpu, f64), stderr: &str) {
        let wall = started.elapsed();
        measured.machine_cores = MachineCpu::now().busy_cores_since(&machine, wall);
        let service_now = self.service_pid.and_then(|pid| process_cpu_seconds(pid).ok()).unwrap_or(0.0);
        measured.service_cores = (service_now - service) / wall.as_secs_f64();
        measured.tool_cores = parse_tool_cpu(stderr).unwrap_or(0.0) / wall.as_secs_f64();
    }
}

/// How pgbench reaches the database.
#[derive(Debug, Clone)]
pub struct PgTarget {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub dbname: String,
}

/// Runs `argv` under bash's `time`; returns stdout and stderr.
pub async fn timed(argv: &[String]) -> anyhow::Result<(String, String)> {
    let output = Command::new("bash")
        .arg("-c")
        .arg("TIMEFORMAT='TOOL_CPU %3U %3S'; time \"$@\"")
        .arg("bash")
        .args(argv)
        .stdin(Stdio::null())
        .output()
        .await
        .with_context(|| format!("running {}", argv[0]))?;
    let (stdout, stderr) =
        (String::from_utf8_lossy(&output.stdout).into_owned(), String::from_utf8_lossy(&output.stderr).into_owned());
    if !output.status.success() {
        bail!("{} failed ({}): {stdout}{stderr}", argv[0], output.status);
    }
    Ok((stdout, stderr))
}

/// Fails early, with the way out, when a tool is missing.
pub fn require(tool: &str, package: &str) -> anyhow::Result<()> {
    let found = std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| Path::new(&dir).join(tool).is_file()));
    if !found {
        bail!("`{tool}` not found: install it with `apt-get install {package}`");
    }
    Ok(())
}

/// A pause between runs, so one run's tail (autovacuum, TIME_WAIT) does not
/// land in the next.
pub async fn settle() {
    tokio::time::sleep(Duration::from_secs(1)).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrk_script_rotates_paths_and_quotes_headers() {
        let load = HttpLoad {
            name: "x".into(),
            paths: vec!["/a".into(), "/b?c=1".into()],
            headers: vec![("If-None-Match".into(), "\"abc\"".into())],
        };
        let lua = wrk_script(&load);
        assert!(lua.contains(r#"wrk.headers["If-None-Match"] = "\"abc\"""#), "{lua}");
        assert!(lua.contains(r#"local paths = {"/a", "/b?c=1"}"#), "{lua}");
        let single = wrk_script(&HttpLoad { paths: vec!["/a".into()], ..load });
        assert!(!single.contains("request = function"), "{single}");
    }

    #[test]
    fn tool_output_is_read() {
        let m = parse_wrk("Running 10s test\nWRK_RESULT 1000 10000000 2048 1500 9000 12000 3\n").unwrap();
        assert_eq!((m.requests, m.errors, m.bytes), (1000, 3, 2048));
        assert_eq!((m.rate(), m.p50_ms, m.p99_ms, m.max_ms), (100.0, 1.5, 9.0, 12.0));
        assert!(parse_wrk("nothing").is_err());
        assert_eq!(parse_tool_cpu("x\nTOOL_CPU 1.250 0.500\n"), Some(1.75));
        let mut latencies = Vec::new();
        parse_pgbench_log("0 1 1234 0 1700000000 5\n1 1 99 0 1700000000 6\n", &mut latencies);
        assert_eq!(latencies, vec![1234.0, 99.0]);
        let sorted: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!((percentile(&sorted, 50.0), percentile(&sorted, 99.0), percentile(&[], 99.0)), (50.0, 99.0, 0.0));
    }
}
