//! Processes the end-to-end tests start or watch: the daemon run until it
//! exits, PostgreSQL's backends, a guard that undoes a stall.

use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Runs `citygauge ingest --http-listen 127.0.0.1:0 <args>` as an operator
/// would, until it exits: its status and stderr. Fails if it is still
/// running after `timeout`, with `still_running` saying what that means.
pub fn ingest_exits(args: &[&str], timeout: Duration, still_running: &str) -> anyhow::Result<(ExitStatus, String)> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_citygauge"))
        .arg("ingest")
        .args(["--http-listen", "127.0.0.1:0"])
        .args(args)
        .env("CITYGAUGE_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait()? {
            let mut stderr = String::new();
            std::io::Read::read_to_string(child.stderr.as_mut().expect("piped"), &mut stderr)?;
            return Ok((status, stderr));
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            anyhow::bail!("the daemon was still running after {timeout:?}: {still_running}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `postmaster` and its children, from /proc.
pub fn postgres_processes(postmaster: u32) -> anyhow::Result<Vec<u32>> {
    let mut pids = vec![postmaster];
    for entry in std::fs::read_dir("/proc")? {
        let Some(pid) = entry?.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
        // "pid (comm) state ppid ...": comm may hold spaces and parentheses.
        let ppid = stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<u32>().ok());
        if ppid == Some(postmaster) {
            pids.push(pid);
        }
    }
    Ok(pids)
}

/// Runs `f` when dropped (so a failing test never leaves PostgreSQL stopped).
pub fn scopeguard(f: impl FnOnce()) -> impl Drop {
    struct Guard<F: FnOnce()>(Option<F>);
    impl<F: FnOnce()> Drop for Guard<F> {
        fn drop(&mut self) {
            if let Some(f) = self.0.take() {
                f();
            }
        }
    }
    Guard(Some(f))
}
