//! The crate's single error type.

use std::path::PathBuf;
use std::time::Duration;

/// Everything that can go wrong while finding, installing, starting or
/// stopping the stack's servers.
///
/// Messages are written for a developer reading a terminal: each names what
/// is missing or what failed, and where it helps, the Debian package to
/// install or the tail of the server log.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StackError {
    /// No usable PostgreSQL server (>= 15) was found.
    #[error(
        "no PostgreSQL >= {min_major} server found: looked for initdb, postgres and pg_ctl \
         in {searched}/<N>/bin; install the Debian package `postgresql`"
    )]
    PostgresMissing {
        /// The directory whose numbered subdirectories were searched.
        searched: PathBuf,
        /// The oldest major version accepted.
        min_major: u32,
    },

    /// A PostgreSQL client tool (psql, pg_isready) is missing from the server's bin dir.
    #[error("{tool} is missing from {bin_dir}; install the Debian package `{package}`")]
    PostgresToolMissing {
        /// The tool's file name.
        tool: &'static str,
        /// The bin dir it was expected in.
        bin_dir: PathBuf,
        /// The Debian package that provides it.
        package: String,
    },

    /// PostGIS is not installed for the selected PostgreSQL major version.
    #[error(
        "PostGIS is not installed for PostgreSQL {pg_major}: {control} does not exist; \
         install the Debian package `{package}`"
    )]
    PostgisMissing {
        /// The PostgreSQL major version that lacks PostGIS.
        pg_major: u32,
        /// The extension control file that was looked for.
        control: PathBuf,
        /// The Debian package that provides it.
        package: String,
    },

    /// No `mosquitto` executable was found.
    #[error("mosquitto not found on PATH nor at {fallback}; install the Debian package `mosquitto`")]
    MosquittoMissing {
        /// The fixed location checked after PATH.
        fallback: PathBuf,
    },

    /// `mosquitto` exists but is not major version 2.
    #[error(
        "{path} reports version {found:?}, but citygauge needs Mosquitto 2.x; \
         install the Debian package `mosquitto` (Debian 12 ships 2.0)"
    )]
    MosquittoVersion {
        /// The executable that was asked.
        path: PathBuf,
        /// What it reported (the first line of `mosquitto -h`).
        found: String,
    },

    /// A program is still not on PATH after installing its Debian packages.
    #[error("{program} not found on PATH; install the Debian package(s) `{package}`")]
    ProgramMissing {
        /// The program looked for.
        program: &'static str,
        /// The Debian package(s) providing it.
        package: String,
    },

    /// The web page's directory cannot be built as it is.
    #[error("cannot build the web page in {dir}: {reason}")]
    WebSource {
        /// The page's directory (holding package.json).
        dir: PathBuf,
        /// What is wrong.
        reason: String,
    },

    /// A system account the servers must run as does not exist.
    #[error(
        "running as root, but the system user `{user}` does not exist; \
         install the Debian package `{package}` (it creates the user)"
    )]
    UserMissing {
        /// The account name.
        user: &'static str,
        /// The Debian package that creates it.
        package: &'static str,
    },

    /// A parent of a data directory cannot be entered by the service user.
    #[error(
        "{dir} is not traversable by user `{user}`, so it cannot reach its data dir \
         below it; make it traversable (chmod o+x) or choose a data dir elsewhere"
    )]
    NotTraversable {
        /// The directory lacking the execute permission.
        dir: PathBuf,
        /// The service user.
        user: &'static str,
    },

    /// A data directory holds something other than what the stack expects.
    #[error("{dir}: {reason}")]
    BadDataDir {
        /// The data directory.
        dir: PathBuf,
        /// What is wrong with it.
        reason: String,
    },

    /// A server already runs on this data directory.
    #[error("a {service} server (pid {pid}) is already running on {dir}")]
    AlreadyRunning {
        /// `postgres` or `mosquitto`.
        service: &'static str,
        /// The data directory.
        dir: PathBuf,
        /// The live server's pid.
        pid: u32,
    },

    /// The requested (or required, for a restart) port is taken by someone else.
    #[error("{service} cannot listen on 127.0.0.1:{port}: the port is in use")]
    PortInUse {
        /// `postgres` or `mosquitto`.
        service: &'static str,
        /// The port.
        port: u16,
    },

    /// A server process exited or misbehaved while starting.
    #[error("{service} failed to start: {reason}\n--- last lines of {log} ---\n{log_tail}")]
    StartFailed {
        /// `postgres` or `mosquitto`.
        service: &'static str,
        /// What was observed.
        reason: String,
        /// The server's log file.
        log: PathBuf,
        /// Its last lines.
        log_tail: String,
    },

    /// A server did not become ready in time.
    #[error(
        "{service} did not accept connections on 127.0.0.1:{port} within {timeout:?}\n\
         --- last lines of {log} ---\n{log_tail}"
    )]
    StartTimeout {
        /// `postgres` or `mosquitto`.
        service: &'static str,
        /// The port it should listen on.
        port: u16,
        /// How long we waited.
        timeout: Duration,
        /// The server's log file.
        log: PathBuf,
        /// Its last lines.
        log_tail: String,
    },

    /// A server did not exit in time after being asked to stop.
    #[error("{service} (pid {pid}) did not exit within {timeout:?} after {signal}")]
    StopTimeout {
        /// `postgres` or `mosquitto`.
        service: &'static str,
        /// Its pid.
        pid: u32,
        /// The signal that was sent.
        signal: &'static str,
        /// How long we waited.
        timeout: Duration,
    },

    /// A helper command (initdb, psql, apt-get, ...) failed.
    #[error("`{command}` failed ({status}):\n{output}")]
    Command {
        /// The command line, for humans.
        command: String,
        /// Its exit status.
        status: String,
        /// The tail of its stderr (or stdout when stderr is empty).
        output: String,
    },

    /// A name passed to the API cannot be used (e.g. it contains a NUL byte).
    #[error("invalid {what}: {value:?}")]
    InvalidName {
        /// What kind of name.
        what: &'static str,
        /// The rejected value.
        value: String,
    },

    /// An I/O error, with what we were doing when it happened.
    #[error("{context}: {source}")]
    Io {
        /// What we were doing.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

impl StackError {
    /// Whether this error means a package is missing, i.e. [`crate::ensure_installed`]
    /// could fix it by installing packages.
    pub fn is_missing_component(&self) -> bool {
        matches!(
            self,
            Self::PostgresMissing { .. }
                | Self::PostgresToolMissing { .. }
                | Self::PostgisMissing { .. }
                | Self::MosquittoMissing { .. }
                | Self::MosquittoVersion { .. }
                | Self::ProgramMissing { .. }
                | Self::UserMissing { .. }
        )
    }

    /// Wraps an I/O error with a description of what was being done.
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io { context: context.into(), source }
    }
}

/// Shorthand for results in this crate.
pub type Result<T, E = StackError> = std::result::Result<T, E>;
