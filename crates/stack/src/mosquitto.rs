//! A project-local Mosquitto 2 broker with persistence.

use std::fs::{self, OpenOptions};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::dirs::{prepare_data_dir, RunAs};
use crate::error::{Result, StackError};
use crate::ports::{choose_port, launch_retrying, pid_listens_on, record_port, Launch, LaunchError};
use crate::process::{self, describe_status, file_len, log_tail, read_from, Supervised};
use crate::toolchain::Toolchain;

const SERVICE: &str = "mosquitto";
/// Written into the data dir on every start.
const CONF_FILE: &str = "mosquitto.conf";
/// The broker's log (its own `log_dest file` plus its stdout/stderr).
const LOG_FILE: &str = "mosquitto.log";
const START_TIMEOUT: Duration = Duration::from_secs(15);
/// On SIGTERM the broker writes its whole in-memory database, which takes a
/// while with a large backlog.
const STOP_TIMEOUT: Duration = Duration::from_secs(60);
const DROP_STOP_TIMEOUT: Duration = Duration::from_secs(10);
const LOG_TAIL_LINES: usize = 30;

/// How to start a [`Mosquitto`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MosquittoOptions {
    /// Holds `mosquitto.conf`, the persistence file `mosquitto.db` and
    /// `mosquitto.log`. Created if missing.
    pub data_dir: PathBuf,
    /// The port on 127.0.0.1. `None` reuses the port recorded in the data
    /// dir by the previous start if it is free, else picks a free one.
    pub port: Option<u16>,
    /// Seconds between saves of the persistence file. Each save rewrites the
    /// whole database on the broker's one thread: 1 (the default) bounds what
    /// a SIGKILL loses for tests; a large backlog wants more (benchmarks use
    /// the production sample's 10).
    pub autosave_interval_s: u32,
}

impl MosquittoOptions {
    /// Options for `data_dir` with a freely chosen port.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self { data_dir: data_dir.into(), port: None, autosave_interval_s: 1 }
    }
}

/// A running Mosquitto broker (our child process) listening on 127.0.0.1,
/// anonymous, persistent, and configured never to drop queued QoS 1/2
/// messages (see `render_conf` for each setting and why).
///
/// Dropping it stops the broker (SIGTERM, which saves its persistence file;
/// bounded wait, then SIGKILL).
#[derive(Debug)]
pub struct Mosquitto {
    toolchain: Toolchain,
    data_dir: PathBuf,
    port: u16,
    run_as: Option<RunAs>,
    autosave_interval_s: u32,
    server: Option<Supervised>,
}

impl Mosquitto {
    /// Writes `mosquitto.conf`, starts the broker and waits until it listens
    /// (up to 15 s).
    ///
    /// When this process runs as root, the broker runs as the `mosquitto`
    /// system user from the start (rather than switching to it by itself,
    /// which would also clear its parent-death signal), and the data dir is
    /// given to that user.
    pub fn start(toolchain: &Toolchain, options: MosquittoOptions) -> Result<Self> {
        let run_as = RunAs::if_root("mosquitto", "mosquitto")?;
        let data_dir = prepare_data_dir(&options.data_dir, run_as)?;
        if data_dir.to_str().is_none_or(|dir| dir.contains(['\n', '\r'])) {
            return Err(StackError::BadDataDir {
                dir: data_dir,
                reason: "mosquitto.conf cannot name a path that is not UTF-8 or has line breaks".into(),
            });
        }
        // The persistence file holds message payloads: keep it private.
        fs::set_permissions(&data_dir, fs::Permissions::from_mode(0o700))
            .map_err(|e| StackError::io(format!("chmod {}", data_dir.display()), e))?;
        let (port, freely_chosen) =
            choose_port(options.port, &data_dir).map_err(|e| StackError::io("choosing a port", e))?;
        let autosave_interval_s = options.autosave_interval_s.max(1);
        let mut broker =
            Self { toolchain: toolchain.clone(), data_dir, port, run_as, autosave_interval_s, server: None };
        broker.launch(freely_chosen)?;
        Ok(broker)
    }

    /// The port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The broker URL, `mqtt://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }

    /// The (canonical) data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The broker's log file.
    pub fn log_path(&self) -> PathBuf {
        self.data_dir.join(LOG_FILE)
    }

    /// The broker's pid while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.server.as_ref().map(Supervised::pid)
    }

    /// Whether the broker is still running.
    pub fn is_running(&mut self) -> bool {
        self.server.as_mut().is_some_and(|server| matches!(server.try_wait(), Ok(None)))
    }

    /// Clean stop: SIGTERM, upon which the broker writes its persistence
    /// file (sessions, subscriptions, queued messages), then waits for it
    /// to exit. Does nothing if it is not running.
    pub fn stop(&mut self) -> Result<()> {
        process::stop_server(&mut self.server, SERVICE, self.port, (libc::SIGTERM, "SIGTERM"), STOP_TIMEOUT)
    }

    /// Crashes the broker with SIGKILL. Messages that arrived since the last
    /// autosave (about two seconds at most) are lost, as in a real crash.
    pub fn kill(&mut self) -> Result<()> {
        process::kill_server(&mut self.server, SERVICE, self.port)
    }

    /// Stops the broker (if running) and starts it again on the same port
    /// with the same persistence file, e.g. after [`Mosquitto::kill`].
    /// Fails with [`StackError::PortInUse`] if someone took the port.
    pub fn restart(&mut self) -> Result<()> {
        self.stop()?;
        self.launch(false)
    }

    /// Starts the broker on `self.port`, replacing the port if it was
    /// freely chosen and someone else binds it first.
    fn launch(&mut self, may_change_port: bool) -> Result<()> {
        launch_retrying(self, may_change_port)?;
        record_port(&self.data_dir, self.port)
            .map_err(|e| StackError::io(format!("recording the port in {}", self.data_dir.display()), e))
    }

    /// Polls until the broker listens, it exits, or START_TIMEOUT passes.
    fn wait_ready(&mut self, log_offset: u64) -> Result<(), LaunchError> {
        let log = self.log_path();
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let Some(server) = self.server.as_mut() else {
                return Err(self.start_failed("the broker is gone".into()).into());
            };
            let exited = server.try_wait().map_err(|e| StackError::io("waiting for mosquitto", e))?;
            if let Some(status) = exited {
                self.server = None;
                if read_from(&log, log_offset).contains("Address already in use") {
                    return Err(LaunchError::PortTaken);
                }
                let reason = format!("the broker exited with {}", describe_status(&status));
                return Err(self.start_failed(reason).into());
            }
            // Our own process holding the listening socket proves it is up
            // (a bare connect could reach a stranger that won a port race).
            if pid_listens_on(server.pid(), self.port) {
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
            std::thread::sleep(process::POLL);
        }
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

impl Launch for Mosquitto {
    const SERVICE: &'static str = SERVICE;

    fn port_mut(&mut self) -> &mut u16 {
        &mut self.port
    }

    fn launch_once(&mut self) -> Result<(), LaunchError> {
        let conf = self.data_dir.join(CONF_FILE);
        fs::write(&conf, render_conf(self.port, &self.data_dir, self.autosave_interval_s))
            .map_err(|e| StackError::io(format!("writing {}", conf.display()), e))?;
        let log = self.log_path();
        let log_offset = file_len(&log);
        let log_file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .map_err(|e| StackError::io(format!("opening {}", log.display()), e))?;
        if let Some(run_as) = self.run_as {
            // The broker reopens the log itself and must be able to write it.
            run_as.chown(&log)?;
            run_as.chown(&conf)?;
        }
        let stderr = log_file.try_clone().map_err(|e| StackError::io("duplicating the log file handle", e))?;
        let mut cmd = Command::new(self.toolchain.mosquitto());
        cmd.arg("-c")
            .arg(&conf)
            .current_dir(&self.data_dir)
            .env("LC_ALL", "C")
            .stdin(Stdio::null())
            .stdout(log_file)
            .stderr(stderr);
        if let Some(run_as) = self.run_as {
            run_as.apply(&mut cmd);
        }
        // SIGTERM = clean exit with a final save if we die without stopping it.
        let server = Supervised::spawn(cmd, libc::SIGTERM).map_err(|e| StackError::io("spawning mosquitto", e))?;
        tracing::info!(pid = server.pid(), port = self.port, dir = %self.data_dir.display(), "starting mosquitto");
        self.server = Some(server);
        self.wait_ready(log_offset)
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        if let Some(mut server) = self.server.take() {
            let _ = server.signal(libc::SIGTERM);
            if !matches!(server.wait_timeout(DROP_STOP_TIMEOUT), Ok(Some(_))) {
                tracing::warn!(pid = server.pid(), "mosquitto did not stop in time; killing it");
                let _ = server.kill();
            }
        }
    }
}

/// The broker configuration. Comments explain every setting that differs
/// from Mosquitto's defaults (quotes are from mosquitto.conf(5), 2.0).
fn render_conf(port: u16, dir: &Path, autosave_interval_s: u32) -> String {
    let dir = dir.display();
    format!(
        "\
# Written by citygauge-stack on every start: edits here are overwritten.

# Loopback only, on the port chosen for this data dir (see citygauge-stack.state).
listener {port} 127.0.0.1
# Mosquitto 2 rejects clients without credentials by default; the local stack
# has none, and nothing off this machine can connect.
allow_anonymous true

# Keep sessions, subscriptions and queued messages across restarts
# (written on exit and every autosave_interval).
persistence true
# mosquitto appends the file name to this verbatim: the trailing slash matters.
persistence_location {dir}/
# Save every few seconds instead of every 30 minutes, so a crash (SIGKILL) loses
# at most about twice this of messages; a clean stop (SIGTERM) always saves all.
autosave_interval {autosave_interval_s}

# Never drop QoS 1/2 messages queued for a slow or disconnected persistent
# session. The default of 1000 per client \"silently dropped\" the rest.
# 0 = no maximum (bounded only by memory; max_queued_bytes is already 0).
max_queued_messages 0
# Let a consumer hold many unacknowledged QoS 1/2 messages: the ingest daemon
# acks only after a database commit, in batches of thousands, and the default
# of 20 would stall it. 65535 is the whole MQTT packet-id space, so ids are
# never reused while in flight. MQTT 5 clients set their own limit per
# connection with the CONNECT receive-maximum property, which replaces this
# value for them; the broker also announces this value as its receive-maximum
# in CONNACK (how many QoS 1/2 publishes a client may have unacknowledged).
max_inflight_messages 65535
# Reject packets over 4 MiB (default: no limit): ample for batched readings,
# while a runaway client cannot make the broker buffer gigabytes.
max_packet_size 4194304

# Log to a file in the data dir, without the per-save 'information' lines.
log_dest file {dir}/{LOG_FILE}
log_type error
log_type warning
log_type notice
connection_messages true
log_timestamp_format %Y-%m-%dT%H:%M:%S
# Send each message at once rather than batching small writes (Nagle):
# readings and acks are small and latency matters more than packet count.
set_tcp_nodelay true
"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conf_never_drops_queued_messages_and_persists_with_a_slash() {
        let conf = render_conf(18830, Path::new("/data/mqtt"), 1);
        for line in [
            "listener 18830 127.0.0.1",
            "persistence_location /data/mqtt/",
            "log_dest file /data/mqtt/mosquitto.log",
            "max_queued_messages 0",
            "max_inflight_messages 65535",
            "autosave_interval 1",
        ] {
            assert!(conf.lines().any(|l| l == line), "missing {line:?}");
        }
    }
}
