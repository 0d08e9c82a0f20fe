//! Spawning and stopping server processes so that they never outlive us.
//!
//! Three mechanisms work together:
//! * every server gets `PR_SET_PDEATHSIG`, so a test binary that panics
//!   hard, aborts or is SIGKILLed takes its servers with it;
//! * the death signal fires when the *thread* that forked the child exits
//!   (not the process), and test harnesses run each test on a short-lived
//!   thread, so all servers are forked by one dedicated thread that lives
//!   until the process exits;
//! * servers run in their own process group, so a Ctrl-C in the terminal of
//!   `citygauge dev` reaches only citygauge, which then stops the servers in
//!   an orderly way instead of them all dying at once.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{Child, Command, ExitStatus};
use std::sync::mpsc;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::sys;

/// How often we poll a process or a port while waiting on it.
pub(crate) const POLL: Duration = Duration::from_millis(25);

type SpawnRequest = (Command, mpsc::Sender<io::Result<Child>>);

/// The sending side of the spawner thread's queue, created on first use.
fn spawner() -> &'static mpsc::Sender<SpawnRequest> {
    static SPAWNER: OnceLock<mpsc::Sender<SpawnRequest>> = OnceLock::new();
    SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<SpawnRequest>();
        // The thread never exits (the static sender keeps the channel open),
        // so children's death signal fires only when the whole process dies.
        // If the thread cannot be created, `rx` is dropped with the closure
        // and every spawn reports an error instead of hanging.
        let _ = std::thread::Builder::new().name("citygauge-stack-spawner".into()).spawn(move || {
            for (mut cmd, reply) in rx {
                let _ = reply.send(cmd.spawn());
            }
        });
        tx
    })
}

/// A server process we started and have not yet reaped.
#[derive(Debug)]
pub(crate) struct Supervised {
    child: Child,
}

/// Stops the server in `slot` with `signal` and waits up to `timeout`; does
/// nothing if none runs. On a timeout the server goes back into the slot, so
/// its owner's Drop still cleans it up.
pub(crate) fn stop_server(
    slot: &mut Option<Supervised>,
    service: &'static str,
    port: u16,
    signal: (libc::c_int, &'static str),
    timeout: std::time::Duration,
) -> crate::Result<()> {
    let Some(mut server) = slot.take() else {
        return Ok(());
    };
    let pid = server.pid();
    tracing::info!(pid, port, "stopping {service}");
    server.signal(signal.0).map_err(|e| crate::StackError::io(format!("signalling {service} {pid}"), e))?;
    match server.wait_timeout(timeout) {
        Ok(Some(_)) => Ok(()),
        Ok(None) => {
            *slot = Some(server);
            Err(crate::StackError::StopTimeout { service, pid, signal: signal.1, timeout })
        }
        Err(e) => Err(crate::StackError::io(format!("waiting for {service} {pid}"), e)),
    }
}

/// SIGKILLs the server in `slot`, if one runs.
pub(crate) fn kill_server(slot: &mut Option<Supervised>, service: &'static str, port: u16) -> crate::Result<()> {
    let Some(mut server) = slot.take() else {
        return Ok(());
    };
    let pid = server.pid();
    tracing::info!(pid, port, "killing {service}");
    server.kill().map(drop).map_err(|e| crate::StackError::io(format!("killing {service} {pid}"), e))
}

impl Supervised {
    /// Spawns `cmd` from the spawner thread, in its own process group, with
    /// `death_signal` delivered to it if this process dies.
    pub(crate) fn spawn(mut cmd: Command, death_signal: libc::c_int) -> io::Result<Self> {
        cmd.process_group(0);
        sys::set_parent_death_signal(&mut cmd, death_signal);
        let (reply_tx, reply_rx) = mpsc::channel();
        let gone = || io::Error::other("citygauge-stack spawner thread is not running");
        spawner().send((cmd, reply_tx)).map_err(|_| gone())?;
        let child = reply_rx.recv().map_err(|_| gone())??;
        Ok(Self { child })
    }

    /// The process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The exit status if the process has exited (reaping it), else `None`.
    pub(crate) fn try_wait(&mut self) -> io::Result<Option<ExitStatus>> {
        self.child.try_wait()
    }

    /// Sends `signal` unless the process has already exited.
    ///
    /// Checking first matters: once reaped, its pid may belong to someone else.
    pub(crate) fn signal(&mut self, signal: libc::c_int) -> io::Result<()> {
        if self.try_wait()?.is_some() {
            return Ok(());
        }
        sys::send_signal(self.pid(), signal)
    }

    /// Waits up to `timeout` for the process to exit.
    pub(crate) fn wait_timeout(&mut self, timeout: Duration) -> io::Result<Option<ExitStatus>> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_wait()? {
                return Ok(Some(status));
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            std::thread::sleep(POLL);
        }
    }

    /// SIGKILLs the process and reaps it.
    pub(crate) fn kill(&mut self) -> io::Result<ExitStatus> {
        if let Some(status) = self.try_wait()? {
            return Ok(status);
        }
        self.child.kill()?;
        self.child.wait()
    }
}

/// Describes an exit status for error messages ("exit code 1", "signal 9").
pub(crate) fn describe_status(status: &ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit code {code}"),
        (None, Some(signal)) => format!("killed by signal {signal}"),
        _ => status.to_string(),
    }
}

/// Whether `pid` names a live (not zombie) process.
pub(crate) fn pid_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state letter follows the parenthesised command name, which may
        // itself contain spaces and parentheses: look after the last ')'.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

/// Whether `pid` is a live process named `comm` working in `dir`: e.g. the
/// postmaster a `postmaster.pid` names, rather than an unrelated process
/// that reused its pid. If we may not see its working directory we assume
/// it is (a false "already running" beats two servers on one data dir).
pub(crate) fn is_process_of(pid: u32, comm: &str, dir: &Path) -> bool {
    let named = std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == comm);
    named && pid_alive(pid) && std::fs::read_link(format!("/proc/{pid}/cwd")).map_or(true, |cwd| cwd == dir)
}

/// Pids of live processes named `comm` whose working directory is `dir`.
///
/// PostgreSQL backends `chdir` into the data directory, so after the
/// postmaster is SIGKILLed this finds the orphaned backends that still hold
/// its shared memory (a new postmaster refuses to start while they live).
/// Matching the name too ignores, say, a shell that `cd`'d there.
/// Processes we may not inspect are skipped.
pub(crate) fn pids_with_cwd(dir: &Path, comm: &str) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == comm)
                && std::fs::read_link(format!("/proc/{pid}/cwd")).is_ok_and(|cwd| cwd == dir)
                && pid_alive(*pid)
        })
        .collect()
}

/// Waits up to `timeout` until no process named `comm` runs with `dir` as
/// its working directory; returns the pids still there at the end.
pub(crate) fn wait_no_cwd_users(dir: &Path, comm: &str, timeout: Duration) -> Vec<u32> {
    let deadline = Instant::now() + timeout;
    loop {
        let pids = pids_with_cwd(dir, comm);
        if pids.is_empty() || Instant::now() >= deadline {
            return pids;
        }
        std::thread::sleep(POLL);
    }
}

/// The size of `path`, or 0 if it does not exist: remembered before a start
/// so we can look only at what that start logged.
pub(crate) fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

/// The text of `path` from byte `offset` on (lossily decoded; empty on error).
pub(crate) fn read_from(path: &Path, offset: u64) -> String {
    let mut text = Vec::new();
    if let Ok(mut file) = File::open(path) {
        if file.seek(SeekFrom::Start(offset)).is_ok() {
            let _ = file.read_to_end(&mut text);
        }
    }
    String::from_utf8_lossy(&text).into_owned()
}

/// The last `lines` lines of the log file at `path`, for error messages.
pub(crate) fn log_tail(path: &Path, lines: usize) -> String {
    // Logs can grow large over a long `citygauge dev` session; 64 KiB is
    // plenty for 30 lines.
    let offset = file_len(path).saturating_sub(64 * 1024);
    let text = read_from(path, offset);
    if text.is_empty() {
        return format!("(no log output in {})", path.display());
    }
    last_lines(&text, lines)
}

/// The last `n` lines of `text`.
pub(crate) fn last_lines(text: &str, n: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(n)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_lines_keeps_the_end() {
        assert_eq!(last_lines("a\nb\nc\n", 2), "b\nc");
        assert_eq!(last_lines("a", 5), "a");
        assert_eq!(last_lines("", 5), "");
    }

    #[test]
    fn our_own_pid_is_alive_and_its_cwd_is_found() {
        assert!(pid_alive(std::process::id()));
        assert!(!pid_alive(u32::MAX));
        let cwd = std::env::current_dir().unwrap().canonicalize().unwrap();
        let comm = std::fs::read_to_string("/proc/self/comm").unwrap();
        assert!(pids_with_cwd(&cwd, comm.trim()).contains(&std::process::id()));
        assert!(!pids_with_cwd(&cwd, "no-such-comm").contains(&std::process::id()));
    }

    #[test]
    fn spawned_children_are_reaped_and_signalled_safely() {
        let mut cmd = Command::new("sleep");
        cmd.arg("30");
        let mut child = Supervised::spawn(cmd, libc::SIGTERM).unwrap();
        assert!(pid_alive(child.pid()));
        child.signal(libc::SIGTERM).unwrap();
        let status = child.wait_timeout(Duration::from_secs(5)).unwrap().unwrap();
        assert_eq!(describe_status(&status), "killed by signal 15");
        // Signalling a reaped child is a no-op, never a stray kill(2).
        child.signal(libc::SIGTERM).unwrap();
        child.kill().unwrap();
    }
}
