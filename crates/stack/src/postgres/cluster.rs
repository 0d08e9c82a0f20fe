//! The cluster on disk: initdb, our settings file, and what a crash leaves.

use std::fs::{self, OpenOptions};
use std::process::Command;
use std::time::Duration;

use super::client::{run, SUPERUSER};
use super::{Postgres, CONF_FILE, LOG_FILE, SERVICE};
use crate::error::{Result, StackError};
use crate::process;

/// How long orphaned backends of a killed postmaster may take to notice.
const BACKEND_EXIT_TIMEOUT: Duration = Duration::from_secs(15);

impl Postgres {
    /// Runs initdb on an empty data dir; accepts an existing cluster of our
    /// major version and refuses anything else.
    pub(super) fn init_cluster_if_needed(&self) -> Result<()> {
        let version_file = self.data_dir.join("PG_VERSION");
        if version_file.is_file() {
            let version = fs::read_to_string(&version_file)
                .map_err(|e| StackError::io(format!("reading {}", version_file.display()), e))?;
            if version.trim() != self.toolchain.pg_major().to_string() {
                return Err(self.bad_dir(format!(
                    "holds a PostgreSQL {} cluster, but the toolchain is PostgreSQL {}",
                    version.trim(),
                    self.toolchain.pg_major()
                )));
            }
            return Ok(());
        }
        let mut entries = fs::read_dir(&self.data_dir)
            .map_err(|e| StackError::io(format!("listing {}", self.data_dir.display()), e))?;
        if entries.next().is_some() {
            return Err(self.bad_dir("is neither empty nor a PostgreSQL cluster".into()));
        }
        tracing::info!(dir = %self.data_dir.display(), "initdb");
        let mut cmd = Command::new(self.toolchain.pg_tool("initdb"));
        cmd.arg("-D")
            .arg(&self.data_dir)
            .args(["--auth=trust", "--encoding=UTF8", "--locale=C"])
            .arg(format!("--username={SUPERUSER}"))
            // Our cwd may be unreadable for the postgres user (e.g. /root).
            .current_dir("/")
            .env("LC_ALL", "C");
        self.apply_run_as(&mut cmd);
        run(cmd, "initdb")?;
        // Everything we configure lives in CONF_FILE; the include goes last
        // so it overrides initdb's defaults.
        let conf = self.data_dir.join("postgresql.conf");
        let include =
            format!("\n# Added by citygauge-stack: its settings, rewritten on every start.\ninclude '{CONF_FILE}'\n");
        OpenOptions::new()
            .append(true)
            .open(&conf)
            .and_then(|mut f| std::io::Write::write_all(&mut f, include.as_bytes()))
            .map_err(|e| StackError::io(format!("appending to {}", conf.display()), e))
    }

    /// Removes the postmaster.pid a killed server left behind, after making
    /// sure no server still runs there and its orphaned backends are gone.
    pub(super) fn clear_stale_pid_file(&self) -> Result<()> {
        let pid_file = self.data_dir.join("postmaster.pid");
        let Ok(text) = fs::read_to_string(&pid_file) else {
            return Ok(());
        };
        if let Some(pid) = text.lines().next().and_then(|l| l.trim().parse::<u32>().ok()) {
            if process::is_process_of(pid, "postgres", &self.data_dir) {
                return Err(StackError::AlreadyRunning { service: SERVICE, dir: self.data_dir.clone(), pid });
            }
        }
        self.wait_for_orphaned_backends();
        tracing::info!(file = %pid_file.display(), "removing stale postmaster.pid");
        match fs::remove_file(&pid_file) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(StackError::io(format!("removing {}", pid_file.display()), e))
            }
            _ => Ok(()),
        }
    }

    /// Waits (bounded) for backends orphaned by a killed postmaster to exit.
    pub(super) fn wait_for_orphaned_backends(&self) {
        let left = process::wait_no_cwd_users(&self.data_dir, "postgres", BACKEND_EXIT_TIMEOUT);
        if !left.is_empty() {
            tracing::warn!(?left, "backends of a killed postgres are still running");
        }
    }

    /// Writes our settings (with the current port) to CONF_FILE.
    pub(super) fn write_conf(&self) -> Result<()> {
        let path = self.data_dir.join(CONF_FILE);
        let timescaledb = self.toolchain.has_timescaledb();
        if timescaledb {
            tracing::info!("TimescaleDB is installed: preloading it");
        }
        fs::write(&path, render_conf(self.port, timescaledb))
            .map_err(|e| StackError::io(format!("writing {}", path.display()), e))?;
        self.chown_if_root(&path)
    }
}

/// The settings file included from postgresql.conf.
fn render_conf(port: u16, timescaledb: bool) -> String {
    // citygauge uses TimescaleDB when it is installed and preloaded; Debian
    // has no package for it, so this is off unless someone installed it.
    let preload =
        if timescaledb { "shared_preload_libraries = 'timescaledb'\ntimescaledb.telemetry_level = off\n" } else { "" };
    format!(
        "\
# Written by citygauge-stack on every start: edits here are overwritten.
# Loopback only: the stack must never be reachable from other machines.
listen_addresses = '127.0.0.1'
# The port chosen for this data dir (also recorded in citygauge-stack.state).
port = {port}
# No Unix socket: socket paths are limited to ~107 bytes, which deep temp or
# project dirs overflow, and all clients connect over TCP anyway.
unix_socket_directories = ''
# Durability is what the restart and kill tests prove: never trade it away.
fsync = on
synchronous_commit = on
full_page_writes = on
shared_buffers = 128MB
max_connections = 100
# Log to stderr, which citygauge-stack appends to {LOG_FILE} in the data dir.
logging_collector = off
log_destination = 'stderr'
log_line_prefix = '%m [%p] %q%u@%d '
# English messages: citygauge-stack looks for 'Address already in use'.
lc_messages = 'C'
{preload}"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conf_has_our_port_and_only_loopback() {
        let conf = render_conf(15432, false);
        assert!(!conf.contains("shared_preload_libraries"));
        assert!(render_conf(15432, true).contains("shared_preload_libraries = 'timescaledb'\n"));
        assert!(conf.contains("port = 15432\n"));
        assert!(conf.contains("listen_addresses = '127.0.0.1'\n"));
        assert!(conf.contains("unix_socket_directories = ''\n"));
    }
}
