//! The real `citygauge query` process, and what /proc says about the CPU
//! time it, and the machine, spent.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use super::http;
use crate::common::{peak_rss_mb, sibling_binary};

#[derive(Debug)]
pub struct Service {
    child: Child,
    pub addr: SocketAddr,
}

impl Service {
    /// Starts `citygauge query` on a free port and waits until `/readyz`
    /// answers 200 (its caches are loaded).
    pub async fn start(database_url: &str, extra: &[String]) -> anyhow::Result<Service> {
        let binary = sibling_binary("citygauge")?;
        let addr = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
        let child = Command::new(&binary)
            .args(["query", "--database-url", database_url, "--query-http-listen", &addr.to_string()])
            .args(["--log", "warn"])
            .args(extra)
            .stdin(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {} query", binary.display()))?;
        let mut service = Service { child, addr };
        let started = Instant::now();
        loop {
            if let Ok(response) = http::get(addr, "/readyz", &[]).await {
                if response.status == 200 {
                    break;
                }
            }
            if let Some(status) = service.child.try_wait()? {
                bail!("citygauge query exited with {status} before it was ready");
            }
            if started.elapsed() > Duration::from_secs(300) {
                bail!("citygauge query was not ready within 5 minutes");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        println!("query service ready in {:.1} s on {addr}", started.elapsed().as_secs_f64());
        Ok(service)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn peak_rss_mb(&self) -> anyhow::Result<f64> {
        peak_rss_mb(self.child.id())
    }

    pub fn cpu_seconds(&self) -> f64 {
        process_cpu_seconds(self.child.id()).unwrap_or(0.0)
    }

    pub fn stop(&mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        let _ = self.child.wait();
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Clock ticks per second of /proc's CPU times (`getconf CLK_TCK`).
fn ticks_per_second() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

/// User + system CPU seconds of process `pid` so far.
pub fn process_cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name, which may itself hold spaces.
    let rest = stat.rsplit_once(')').context("malformed /proc/<pid>/stat")?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let (utime, stime): (f64, f64) = (fields[11].parse()?, fields[12].parse()?);
    Ok((utime + stime) / ticks_per_second())
}

/// The whole machine's busy CPU time (/proc/stat), in seconds.
#[derive(Debug, Clone, Copy)]
pub struct MachineCpu {
    busy: f64,
}

impl MachineCpu {
    pub fn now() -> MachineCpu {
        let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
        let values: Vec<f64> =
            stat.lines().next().unwrap_or_default().split_whitespace().skip(1).filter_map(|v| v.parse().ok()).collect();
        let total: f64 = values.iter().sum();
        // idle and iowait.
        let idle = values.get(3).copied().unwrap_or(0.0) + values.get(4).copied().unwrap_or(0.0);
        MachineCpu { busy: (total - idle) / ticks_per_second() }
    }

    /// Busy cores (CPU seconds per wall second) since `earlier`.
    pub fn busy_cores_since(&self, earlier: &MachineCpu, wall: Duration) -> f64 {
        (self.busy - earlier.busy) / wall.as_secs_f64()
    }
}
