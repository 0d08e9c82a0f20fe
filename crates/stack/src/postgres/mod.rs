//! A project-local PostgreSQL cluster with PostGIS.

mod client;
mod cluster;

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::dirs::{prepare_data_dir, RunAs};
use crate::error::{Result, StackError};
use crate::ports::{choose_port, launch_retrying, pid_listens_on, port_is_free, record_port, Launch, LaunchError};
use crate::process::{self, describe_status, file_len, log_tail, read_from, Supervised};
use crate::toolchain::Toolchain;
use client::check_name;

const SERVICE: &str = "postgres";
/// The server's stdout/stderr, in the data dir.
const LOG_FILE: &str = "postgres.log";
/// Our settings, included from postgresql.conf and rewritten on each start.
const CONF_FILE: &str = "citygauge.conf";
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// A fast shutdown writes a checkpoint, which can take a while on a busy
/// cluster.
const STOP_TIMEOUT: Duration = Duration::from_secs(60);
const DROP_STOP_TIMEOUT: Duration = Duration::from_secs(10);
const LOG_TAIL_LINES: usize = 30;

/// How to start a [`Postgres`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostgresOptions {
    /// The cluster's data directory (PGDATA). Created and initialised with
    /// `initdb` if missing or empty; reused if it already holds a cluster.
    pub data_dir: PathBuf,
    /// The port on 127.0.0.1. `None` reuses the port recorded in the data
    /// dir by the previous start if it is free, else picks a free one.
    pub port: Option<u16>,
    /// A database to create if missing, with the PostGIS extension.
    pub database: String,
}

impl PostgresOptions {
    /// Options for `data_dir` and `database`, with a freely chosen port.
    pub fn new(data_dir: impl Into<PathBuf>, database: impl Into<String>) -> Self {
        Self { data_dir: data_dir.into(), port: None, database: database.into() }
    }
}

/// A running PostgreSQL server (the postmaster is our child process),
/// listening on 127.0.0.1 only, with trust authentication for the
/// `postgres` superuser.
///
/// Dropping it stops the server (fast shutdown, bounded wait, then SIGKILL).
#[derive(Debug)]
pub struct Postgres {
    toolchain: Toolchain,
    data_dir: PathBuf,
    port: u16,
    database: String,
    run_as: Option<RunAs>,
    server: Option<Supervised>,
}

impl Postgres {
    /// Initialises the cluster if needed, starts the server, waits until it
    /// accepts connections (up to 30 s), and creates `options.database`
    /// with PostGIS.
    ///
    /// When this process runs as root, the server runs as the `postgres`
    /// system user (PostgreSQL refuses root) and the data dir is given to it.
    pub fn start(toolchain: &Toolchain, options: PostgresOptions) -> Result<Self> {
        check_name("database name", &options.database)?;
        let run_as = RunAs::if_root("postgres", "postgresql-common")?;
        let data_dir = prepare_data_dir(&options.data_dir, run_as)?;
        let (port, freely_chosen) =
            choose_port(options.port, &data_dir).map_err(|e| StackError::io("choosing a port", e))?;
        // Fail before a possibly slow initdb if the requested port is taken.
        if !freely_chosen && !port_is_free(port) {
            return Err(StackError::PortInUse { service: SERVICE, port });
        }
        let mut pg =
            Self { toolchain: toolchain.clone(), data_dir, port, database: options.database, run_as, server: None };
        pg.init_cluster_if_needed()?;
        pg.launch(freely_chosen)?;
        pg.ensure_database(&pg.database)?;
        Ok(pg)
    }

    /// The port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The (canonical) data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The database created at start.
    pub fn database(&self) -> &str {
        &self.database
    }

    /// The server's log file.
    pub fn log_path(&self) -> PathBuf {
        self.data_dir.join(LOG_FILE)
    }

    /// The postmaster's pid while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.server.as_ref().map(Supervised::pid)
    }

    /// Whether the postmaster is still running (it may have crashed or been
    /// killed from outside).
    pub fn is_running(&mut self) -> bool {
        self.server.as_mut().is_some_and(|server| matches!(server.try_wait(), Ok(None)))
    }

    /// Fast shutdown: SIGINT to the postmaster (disconnects clients, rolls
    /// back open transactions, writes a checkpoint), then waits for it to
    /// exit. Does nothing if it is not running.
    pub fn stop(&mut self) -> Result<()> {
        process::stop_server(&mut self.server, SERVICE, self.port, (libc::SIGINT, "SIGINT"), STOP_TIMEOUT)
    }

    /// Crashes the server: SIGKILL to the postmaster, as a power cut would.
    ///
    /// Its backends live on until they notice the postmaster is gone, and a
    /// new postmaster refuses to start while they hold the old shared
    /// memory, so this waits (bounded) for them to exit too. Committed data
    /// survives; the next start runs crash recovery.
    pub fn kill(&mut self) -> Result<()> {
        process::kill_server(&mut self.server, SERVICE, self.port)?;
        self.wait_for_orphaned_backends();
        Ok(())
    }

    /// Stops the server (if running) and starts it again on the same port,
    /// e.g. after [`Postgres::kill`]. Fails with [`StackError::PortInUse`]
    /// if someone took the port meanwhile.
    pub fn restart(&mut self) -> Result<()> {
        self.stop()?;
        self.launch(false)
    }

    /// Starts the postmaster on `self.port`, replacing the port if it was
    /// freely chosen and someone else binds it first.
    fn launch(&mut self, may_change_port: bool) -> Result<()> {
        self.clear_stale_pid_file()?;
        launch_retrying(self, may_change_port)?;
        record_port(&self.data_dir, self.port)
            .map_err(|e| StackError::io(format!("recording the port in {}", self.data_dir.display()), e))
    }

    /// Polls until the server listens and accepts connections, it exits, or
    /// START_TIMEOUT passes.
    fn wait_ready(&mut self, log_offset: u64) -> Result<(), LaunchError> {
        let log = self.log_path();
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let Some(server) = self.server.as_mut() else {
                return Err(self.start_failed("the server is gone".into()).into());
            };
            let exited = server.try_wait().map_err(|e| StackError::io("waiting for postgres", e))?;
            if let Some(status) = exited {
                self.server = None;
                if read_from(&log, log_offset).contains("Address already in use") {
                    return Err(LaunchError::PortTaken);
                }
                let reason = format!("the server exited with {}", describe_status(&status));
                return Err(self.start_failed(reason).into());
            }
            // Listening on the port proves it is our server, not a stranger
            // that won a port race; pg_isready then says it finished recovery.
            if pid_listens_on(server.pid(), self.port) && self.is_ready() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                let _ = self.kill();
                return Err(StackError::StartTimeout {
                    service: SERVICE,
                    port: self.port,
                    timeout: START_TIMEOUT,
                    log_tail: log_tail(&log, LOG_TAIL_LINES),
                    log,
                }
                .into());
            }
            std::thread::sleep(process::POLL * 2);
        }
    }

    fn apply_run_as(&self, cmd: &mut Command) {
        if let Some(run_as) = self.run_as {
            run_as.apply(cmd);
        }
    }

    fn chown_if_root(&self, path: &Path) -> Result<()> {
        self.run_as.map_or(Ok(()), |run_as| run_as.chown(path))
    }

    fn bad_dir(&self, reason: String) -> StackError {
        StackError::BadDataDir { dir: self.data_dir.clone(), reason }
    }

    fn start_failed(&self, reason: String) -> StackError {
        StackError::StartFailed {
            service: SERVICE,
            reason,
            log: self.log_path(),
            log_tail: log_tail(&self.log_path(), LOG_TAIL_LINES),
        }
    }
}

impl Launch for Postgres {
    const SERVICE: &'static str = SERVICE;

    fn port_mut(&mut self) -> &mut u16 {
        &mut self.port
    }

    fn launch_once(&mut self) -> Result<(), LaunchError> {
        self.write_conf()?;
        let log = self.log_path();
        let log_offset = file_len(&log);
        let log_file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .map_err(|e| StackError::io(format!("opening {}", log.display()), e))?;
        self.chown_if_root(&log)?;
        let stderr = log_file.try_clone().map_err(|e| StackError::io("duplicating the log file handle", e))?;
        let mut cmd = Command::new(self.toolchain.pg_tool("postgres"));
        cmd.arg("-D")
            .arg(&self.data_dir)
            .current_dir(&self.data_dir)
            .env("LC_ALL", "C")
            .stdin(Stdio::null())
            .stdout(log_file)
            .stderr(stderr);
        self.apply_run_as(&mut cmd);
        // SIGINT = fast shutdown if we die without stopping it.
        let server = Supervised::spawn(cmd, libc::SIGINT).map_err(|e| StackError::io("spawning postgres", e))?;
        tracing::info!(pid = server.pid(), port = self.port, dir = %self.data_dir.display(), "starting postgres");
        self.server = Some(server);
        self.wait_ready(log_offset)
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if let Some(mut server) = self.server.take() {
            let _ = server.signal(libc::SIGINT);
            if !matches!(server.wait_timeout(DROP_STOP_TIMEOUT), Ok(Some(_))) {
                tracing::warn!(pid = server.pid(), "postgres did not stop in time; killing it");
                let _ = server.kill();
            }
        }
    }
}
