//! Choosing loopback ports and remembering them per data directory.
//!
//! We pick ports *below* the kernel's ephemeral range instead of binding
//! port 0. Binding 0 hands out an ephemeral port, and ephemeral ports are
//! also what every outgoing connection on the machine gets as its local
//! port: while a server is stopped for a restart, a client connection of a
//! parallel test could take "its" port, and restarting on the same port
//! (which the tests rely on) would fail. Below the range, only another
//! explicit bind can collide, which we detect and retry.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::io;
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener};
use std::path::Path;

use crate::error::{Result, StackError};

/// The lowest port we hand out: above the common fixed service ports.
const LOWEST_PORT: u16 = 10_000;

/// How many random candidates we try before giving up.
const ATTEMPTS: usize = 64;

/// The loopback address every server listens on.
pub(crate) const LOOPBACK: Ipv4Addr = Ipv4Addr::LOCALHOST;

/// Picks a port on 127.0.0.1 that is free right now.
///
/// A race with another process remains possible between this check and the
/// server's bind; callers retry with a new port when the server reports
/// "Address already in use".
pub(crate) fn pick_free_port() -> io::Result<u16> {
    let ephemeral_low = ephemeral_range_start().unwrap_or(32_768);
    if ephemeral_low > LOWEST_PORT + 1_000 {
        let span = u64::from(ephemeral_low - LOWEST_PORT);
        for _ in 0..ATTEMPTS {
            // `RandomState` is seeded from OS randomness, so parallel test
            // binaries draw different sequences without a rand dependency.
            let random = RandomState::new().build_hasher().finish();
            let port = LOWEST_PORT + (random % span) as u16;
            if port_is_free(port) {
                return Ok(port);
            }
        }
    }
    // Odd kernel configuration (or a crowded range): let the kernel choose.
    Ok(TcpListener::bind(SocketAddrV4::new(LOOPBACK, 0))?.local_addr()?.port())
}

/// The first port of the kernel's ephemeral range.
fn ephemeral_range_start() -> Option<u16> {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").ok()?.split_whitespace().next()?.parse().ok()
}

/// Whether we could bind 127.0.0.1:`port` right now.
///
/// std sets `SO_REUSEADDR` on listeners, as PostgreSQL and Mosquitto do, so
/// connections of a previous server lingering in TIME_WAIT do not count as
/// "in use", exactly as they would not stop the server.
pub(crate) fn port_is_free(port: u16) -> bool {
    port != 0 && TcpListener::bind(SocketAddrV4::new(LOOPBACK, port)).is_ok()
}

/// Whether process `pid` itself holds the listening socket on
/// 127.0.0.1:`port`.
///
/// A bare connect could reach a different server that won a port race; this
/// proves the listener is ours. It matches the socket's inode from
/// `/proc/net/tcp` against the process's open file descriptors.
pub(crate) fn pid_listens_on(pid: u32, port: u16) -> bool {
    let Some(inode) = listening_inode(port) else {
        return false;
    };
    let wanted = format!("socket:[{inode}]");
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    fds.filter_map(Result::ok)
        .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|target| target.as_os_str() == wanted.as_str()))
}

/// The inode of the socket listening on 127.0.0.1:`port`, from /proc/net/tcp.
fn listening_inode(port: u16) -> Option<u64> {
    let table = std::fs::read_to_string("/proc/net/tcp").ok()?;
    // Addresses are hex in network byte order as a host-order u32, so
    // 127.0.0.1 reads "0100007F" on little-endian machines.
    let local = format!("{:08X}:{port:04X}", u32::from_ne_bytes(LOOPBACK.octets()));
    const LISTEN: &str = "0A";
    table.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
        (fields.len() > 9 && fields[1] == local && fields[3] == LISTEN).then(|| fields[9].parse().ok()).flatten()
    })
}

/// Why one attempt to start a server failed.
pub(crate) enum LaunchError {
    /// Someone else holds the port (the server logged "Address already in use").
    PortTaken,
    /// Anything else.
    Failed(StackError),
}

impl From<StackError> for LaunchError {
    fn from(e: StackError) -> Self {
        Self::Failed(e)
    }
}

/// A server that is started by single attempts on its current port.
pub(crate) trait Launch {
    /// `postgres` or `mosquitto`, for messages.
    const SERVICE: &'static str;
    /// The port the next attempt uses.
    fn port_mut(&mut self) -> &mut u16;
    /// Starts the server once on the current port and waits until it is ready.
    fn launch_once(&mut self) -> Result<(), LaunchError>;
}

/// Starts `server`; if its port was chosen freely (`may_change_port`) and
/// someone else binds it first, retries a few times on fresh ports.
pub(crate) fn launch_retrying<L: Launch>(server: &mut L, may_change_port: bool) -> Result<()> {
    const RETRIES: usize = 3;
    let mut retries = 0;
    loop {
        match server.launch_once() {
            Ok(()) => return Ok(()),
            Err(LaunchError::PortTaken) if may_change_port && retries < RETRIES => {
                retries += 1;
                let port = server.port_mut();
                let old = *port;
                *port = pick_free_port().map_err(|e| StackError::io("choosing a port", e))?;
                tracing::warn!(service = L::SERVICE, old, new = *port, "port was taken; retrying");
            }
            Err(LaunchError::PortTaken) => {
                return Err(StackError::PortInUse { service: L::SERVICE, port: *server.port_mut() })
            }
            Err(LaunchError::Failed(e)) => return Err(e),
        }
    }
}

/// The name of the small state file the stack keeps in each data dir.
pub(crate) const STATE_FILE: &str = "citygauge-stack.state";

/// The port recorded in `dir`'s state file, if any.
pub(crate) fn recorded_port(dir: &Path) -> Option<u16> {
    let text = std::fs::read_to_string(dir.join(STATE_FILE)).ok()?;
    text.lines()
        .filter_map(|line| line.split_once('='))
        .find(|(key, _)| key.trim() == "port")
        .and_then(|(_, value)| value.trim().parse().ok())
        .filter(|port| *port != 0)
}

/// Records `port` in `dir`'s state file so the next start reuses it.
pub(crate) fn record_port(dir: &Path, port: u16) -> io::Result<()> {
    let text = format!(
        "# Written by citygauge-stack: the port this data dir's server last used.\n\
         # The next start reuses it if it is still free.\nport = {port}\n"
    );
    std::fs::write(dir.join(STATE_FILE), text)
}

/// The port a server on `dir` should use: an explicit one, else the
/// recorded one if still free, else a fresh one. The flag says whether the
/// port was chosen freely (and so may be replaced after a bind race).
pub(crate) fn choose_port(explicit: Option<u16>, dir: &Path) -> io::Result<(u16, bool)> {
    if let Some(port) = explicit {
        return Ok((port, false));
    }
    if let Some(port) = recorded_port(dir) {
        if port_is_free(port) {
            return Ok((port, true));
        }
        tracing::warn!(port, dir = %dir.display(), "recorded port is taken; picking a new one");
    }
    Ok((pick_free_port()?, true))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picked_ports_are_free_and_below_the_ephemeral_range() {
        let port = pick_free_port().unwrap();
        assert!(port_is_free(port));
        if let Some(low) = ephemeral_range_start().filter(|low| *low > LOWEST_PORT + 1_000) {
            assert!((LOWEST_PORT..low).contains(&port), "{port} not below {low}");
        }
    }

    #[test]
    fn a_listener_is_found_and_attributed_to_us() {
        let listener = TcpListener::bind(SocketAddrV4::new(LOOPBACK, 0)).unwrap();
        let port = listener.local_addr().unwrap().port();
        assert!(!port_is_free(port));
        assert!(std::net::TcpStream::connect(SocketAddrV4::new(LOOPBACK, port)).is_ok());
        assert!(pid_listens_on(std::process::id(), port));
        assert!(!pid_listens_on(1, port));
        drop(listener);
        assert!(!pid_listens_on(std::process::id(), port));
    }

    /// Fails with PortTaken `failures` times, then starts.
    struct Flaky {
        port: u16,
        failures: usize,
        attempts: Vec<u16>,
    }

    impl Launch for Flaky {
        const SERVICE: &'static str = "flaky";

        fn port_mut(&mut self) -> &mut u16 {
            &mut self.port
        }

        fn launch_once(&mut self) -> Result<(), LaunchError> {
            self.attempts.push(self.port);
            if self.attempts.len() <= self.failures {
                return Err(LaunchError::PortTaken);
            }
            Ok(())
        }
    }

    #[test]
    fn port_races_are_retried_only_for_freely_chosen_ports() {
        let mut server = Flaky { port: 1, failures: 2, attempts: Vec::new() };
        launch_retrying(&mut server, true).unwrap();
        assert_eq!(server.attempts.len(), 3);
        assert_ne!(server.port, 1);

        let mut server = Flaky { port: 1, failures: 1, attempts: Vec::new() };
        let err = launch_retrying(&mut server, false).unwrap_err();
        assert!(matches!(err, StackError::PortInUse { port: 1, service: "flaky" }), "{err}");

        let mut server = Flaky { port: 1, failures: 10, attempts: Vec::new() };
        assert!(launch_retrying(&mut server, true).is_err());
        assert_eq!(server.attempts.len(), 4);
    }

    #[test]
    fn state_file_round_trips_and_drives_the_choice() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(recorded_port(dir.path()), None);
        let port = pick_free_port().unwrap();
        record_port(dir.path(), port).unwrap();
        assert_eq!(recorded_port(dir.path()), Some(port));
        assert_eq!(choose_port(None, dir.path()).unwrap(), (port, true));
        assert_eq!(choose_port(Some(4242), dir.path()).unwrap(), (4242, false));

        // A recorded port that is now taken is replaced.
        let _squatter = TcpListener::bind(SocketAddrV4::new(LOOPBACK, port)).unwrap();
        let (other, free) = choose_port(None, dir.path()).unwrap();
        assert!(free);
        assert_ne!(other, port);
    }
}
