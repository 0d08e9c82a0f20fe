//! Debian's own services for the packages the stack installs.
//!
//! Installing `postgresql` and `mosquitto` makes Debian create a cluster and
//! start it on 5432, and start a broker on 1883: exactly where citygauge's
//! defaults (`--database-url`, `--mqtt-url`, the simulators) point. A daemon
//! or simulator started by hand would then talk to that database or that
//! broker (Debian's configuration, not ours: its queue limits drop messages)
//! without any error. The stack never uses those services, so `setup` stops
//! them and keeps them from starting again.
//!
//! Why stop them rather than move our defaults elsewhere: no fixed port is
//! guaranteed free, so other defaults could collide just the same; 5432 and
//! 1883 are what every client, firmware and document assumes, so production
//! configurations would diverge from the defaults; and Debian's services
//! would still answer `psql` or `mosquitto_pub` used without options. With
//! the well-known ports left empty, a forgotten option fails loudly
//! ("connection refused") instead of silently reaching a foreign server.
//!
//! "Keep them from starting again" is done where each mechanism looks:
//! `start.conf` = `manual` for every cluster (honoured by `pg_ctlcluster`,
//! the systemd generator and the SysV script alike, also when a package
//! upgrade restarts PostgreSQL), `systemctl disable` of the units under
//! systemd, `update-rc.d ... disable` of the init scripts otherwise (which
//! `invoke-rc.d` in maintainer scripts respects).

use std::fmt;
use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::error::{Result, StackError};
use crate::process::last_lines;
use crate::sys;

/// The ports citygauge's defaults point at: PostgreSQL's and MQTT's.
pub const DEFAULT_PORTS: [u16; 2] = [5432, 1883];

/// What to do with Debian's PostgreSQL and Mosquitto services.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SystemServices {
    /// Stop and disable them (what `citygauge setup` does by default).
    Disable,
    /// Stop and disable only those of packages installed in this run (Debian
    /// started them because we installed them); leave the others alone.
    KeepExisting,
}

/// Which packages' services may be touched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Touch {
    pub postgres: bool,
    pub mosquitto: bool,
}

/// A service's state as its init system reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct ServiceState {
    pub running: bool,
    pub enabled: bool,
}

/// One Debian PostgreSQL cluster, as `pg_lsclusters` and its `start.conf` show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Cluster {
    pub version: u32,
    pub name: String,
    pub port: u16,
    pub online: bool,
    /// `start.conf` says `auto`.
    pub auto_start: bool,
}

/// Everything the decision needs, gathered by [`observe`].
#[derive(Debug, Clone, Default)]
pub(crate) struct Observed {
    /// systemd is the running init system (`/run/systemd/system` exists).
    pub systemd: bool,
    pub clusters: Vec<Cluster>,
    /// `None` when the package (its unit or init script) is not installed.
    pub postgresql: Option<ServiceState>,
    pub mosquitto: Option<ServiceState>,
}

/// One step that quiets a system service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// `pg_ctlcluster <version> <name> stop` (it hands over to systemctl under systemd).
    StopCluster {
        /// The PostgreSQL major.
        version: u32,
        /// The cluster's name.
        name: String,
        /// Its port.
        port: u16,
    },
    /// The cluster's `start.conf` set to `manual`.
    ClusterManual {
        /// The PostgreSQL major.
        version: u32,
        /// The cluster's name.
        name: String,
    },
    /// `systemctl daemon-reload`, so the generator rereads `start.conf`.
    SystemdReload,
    /// `systemctl disable [--now] <unit>`.
    SystemctlDisable {
        /// `postgresql` or `mosquitto`.
        unit: &'static str,
        /// Also stop it (it is running).
        now: bool,
    },
    /// `/etc/init.d/<script> stop`.
    InitScriptStop {
        /// `mosquitto`.
        script: &'static str,
    },
    /// `update-rc.d <script> disable`.
    UpdateRcDisable {
        /// `postgresql` or `mosquitto`.
        script: &'static str,
    },
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::StopCluster { version, name, port } => {
                write!(f, "stopped PostgreSQL cluster {version}/{name} (port {port})")
            }
            Self::ClusterManual { version, name } => {
                write!(f, "set cluster {version}/{name} to start manually (start.conf)")
            }
            Self::SystemdReload => f.write_str("reloaded systemd"),
            Self::SystemctlDisable { unit, now: true } => write!(f, "stopped and disabled {unit}.service"),
            Self::SystemctlDisable { unit, now: false } => write!(f, "disabled {unit}.service"),
            Self::InitScriptStop { script } => write!(f, "stopped {script} (init script)"),
            Self::UpdateRcDisable { script } => write!(f, "disabled {script} at boot (update-rc.d)"),
        }
    }
}

/// What [`quiet`] did, and what still listens on the default ports.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServicesReport {
    /// The steps taken, in order.
    pub actions: Vec<Action>,
    /// Whether services that were found were deliberately left alone.
    pub kept: bool,
    /// Steps that failed, with why (setup goes on: the stack itself does
    /// not need the services stopped, the report makes the failure visible).
    pub failed: Vec<String>,
    /// Default ports on 127.0.0.1 on which something still accepts connections.
    pub still_listening: Vec<u16>,
}

impl fmt::Display for ServicesReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.actions.is_empty() {
            f.write_str("Debian's PostgreSQL and Mosquitto services: ")?;
            f.write_str(if self.kept { "left as they were" } else { "already stopped and disabled" })?;
        } else {
            let steps: Vec<String> = self.actions.iter().map(ToString::to_string).collect();
            write!(f, "Debian's services: {}", steps.join("; "))?;
        }
        for failure in &self.failed {
            write!(f, "\nwarning: {failure}")?;
        }
        for port in &self.still_listening {
            write!(
                f,
                "\nwarning: something listens on 127.0.0.1:{port}; a daemon or simulator started \
                 with the default URLs would talk to it"
            )?;
        }
        Ok(())
    }
}

/// The steps that leave the services of the `touch`ed packages stopped and
/// disabled. I/O-free: [`observe`] gathers the input, [`apply`] runs them.
pub(crate) fn plan(observed: &Observed, touch: Touch) -> Vec<Action> {
    let mut actions = Vec::new();
    if touch.postgres {
        for cluster in observed.clusters.iter().filter(|c| c.online) {
            actions.push(Action::StopCluster {
                version: cluster.version,
                name: cluster.name.clone(),
                port: cluster.port,
            });
        }
        let mut manual = false;
        for cluster in observed.clusters.iter().filter(|c| c.auto_start) {
            actions.push(Action::ClusterManual { version: cluster.version, name: cluster.name.clone() });
            manual = true;
        }
        if manual && observed.systemd {
            actions.push(Action::SystemdReload);
        }
        // Under SysV the script's "running" is the clusters', handled above.
        if let Some(state) = observed.postgresql {
            actions.extend(disable_service(observed.systemd, "postgresql", state, observed.systemd));
        }
    }
    if touch.mosquitto {
        if let Some(state) = observed.mosquitto {
            actions.extend(disable_service(observed.systemd, "mosquitto", state, true));
        }
    }
    actions
}

fn disable_service(systemd: bool, name: &'static str, state: ServiceState, stop: bool) -> Vec<Action> {
    let stop = stop && state.running;
    if systemd {
        if state.enabled || stop {
            return vec![Action::SystemctlDisable { unit: name, now: stop }];
        }
        return Vec::new();
    }
    let mut actions = Vec::new();
    if stop {
        actions.push(Action::InitScriptStop { script: name });
    }
    if state.enabled {
        actions.push(Action::UpdateRcDisable { script: name });
    }
    actions
}

/// Reads `pg_lsclusters --no-header`: "15 main 5432 online postgres /var/lib/... /var/log/...".
pub(crate) fn parse_clusters(listing: &str) -> Vec<(u32, String, u16, bool)> {
    listing
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let version = fields.next()?.parse().ok()?;
            let name = fields.next()?.to_owned();
            let port = fields.next()?.parse().ok()?;
            // "online", "online,recovery", "down".
            let online = fields.next()?.starts_with("online");
            Some((version, name, port, online))
        })
        .collect()
}

/// The mode a `start.conf` sets: its first line that is not a comment.
pub(crate) fn start_mode(start_conf: &str) -> Option<&str> {
    start_conf.lines().map(str::trim).find(|line| !line.is_empty() && !line.starts_with('#'))
}

/// `start_conf` with its mode set to `manual`, comments kept.
pub(crate) fn with_manual_start(start_conf: &str) -> String {
    let mut replaced = false;
    let mut out = String::with_capacity(start_conf.len() + 8);
    for line in start_conf.lines() {
        let trimmed = line.trim();
        if !replaced && !trimmed.is_empty() && !trimmed.starts_with('#') {
            out.push_str("manual");
            replaced = true;
        } else {
            out.push_str(line);
        }
        out.push('\n');
    }
    if !replaced {
        out.push_str("manual\n");
    }
    out
}

/// Gathers the state of Debian's services for [`plan`].
pub(crate) fn observe() -> Observed {
    let systemd = Path::new("/run/systemd/system").is_dir();
    let listing = Command::new("pg_lsclusters")
        .arg("--no-header")
        .stderr(Stdio::null())
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).into_owned())
        .unwrap_or_default();
    let clusters = parse_clusters(&listing)
        .into_iter()
        .map(|(version, name, port, online)| {
            let conf = std::fs::read_to_string(start_conf_path(version, &name)).unwrap_or_default();
            // pg_ctlcluster treats a missing or empty start.conf as auto.
            let auto_start = start_mode(&conf).is_none_or(|mode| mode == "auto");
            Cluster { version, name, port, online, auto_start }
        })
        .collect();
    Observed {
        systemd,
        clusters,
        postgresql: service_state(systemd, "postgresql"),
        mosquitto: service_state(systemd, "mosquitto"),
    }
}

fn start_conf_path(version: u32, name: &str) -> String {
    format!("/etc/postgresql/{version}/{name}/start.conf")
}

fn service_state(systemd: bool, name: &str) -> Option<ServiceState> {
    let script = Path::new("/etc/init.d").join(name);
    let unit_installed = ["/lib/systemd/system", "/usr/lib/systemd/system", "/etc/systemd/system"]
        .iter()
        .any(|dir| Path::new(dir).join(format!("{name}.service")).exists());
    if !unit_installed && !script.exists() {
        return None;
    }
    let succeeds = |program: &str, args: &[&str]| {
        Command::new(program)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success())
    };
    if systemd {
        return Some(ServiceState {
            running: succeeds("systemctl", &["is-active", "--quiet", name]),
            enabled: succeeds("systemctl", &["is-enabled", "--quiet", name]),
        });
    }
    // SysV: enabled means a start link in a multi-user runlevel.
    let enabled = (2..=5).any(|level| {
        std::fs::read_dir(format!("/etc/rc{level}.d")).is_ok_and(|dir| {
            dir.filter_map(std::result::Result::ok).any(|entry| {
                let file = entry.file_name();
                let file = file.to_string_lossy();
                file.starts_with('S') && file.trim_start_matches(|c: char| c == 'S' || c.is_ascii_digit()) == name
            })
        })
    });
    let running = script.exists() && succeeds(&script.to_string_lossy(), &["status"]);
    Some(ServiceState { running, enabled })
}

/// Runs `actions` in order (through sudo when not root); returns those
/// that were done and the failures of the others.
pub(crate) fn apply(actions: Vec<Action>) -> (Vec<Action>, Vec<String>) {
    let (mut done, mut failed) = (Vec::new(), Vec::new());
    for action in actions {
        tracing::info!(%action, "system services");
        match apply_one(&action) {
            Ok(()) => done.push(action),
            Err(e) => failed.push(format!("could not do \"{action}\": {e}")),
        }
    }
    (done, failed)
}

fn apply_one(action: &Action) -> Result<()> {
    match action {
        Action::StopCluster { version, name, .. } => {
            privileged("pg_ctlcluster", &[&version.to_string(), name, "stop"], None)?
        }
        Action::ClusterManual { version, name } => {
            let path = start_conf_path(*version, name);
            let conf = std::fs::read_to_string(&path).unwrap_or_default();
            // tee keeps the file's owner and mode, and works through sudo.
            privileged("tee", &[&path], Some(&with_manual_start(&conf)))?;
        }
        Action::SystemdReload => privileged("systemctl", &["daemon-reload"], None)?,
        Action::SystemctlDisable { unit, now } => {
            let mut args = vec!["disable"];
            if *now {
                args.push("--now");
            }
            args.push(unit);
            privileged("systemctl", &args, None)?;
        }
        Action::InitScriptStop { script } => {
            let stopped = privileged(&format!("/etc/init.d/{script}"), &["stop"], None);
            // Debian's SysV script refuses a pid file written by the
            // broker after it dropped to the mosquitto user ("matching
            // only on non-root pidfile ... is insecure").
            if stopped.is_err() && *script == "mosquitto" && stop_debian_mosquitto()? {
                return Ok(());
            }
            stopped?
        }
        Action::UpdateRcDisable { script } => privileged("update-rc.d", &[script, "disable"], None)?,
    }
    Ok(())
}

/// Debian's broker: its pid file, and the configuration it runs with (which
/// tells it from the stack's own brokers, which run the same executable).
const DEBIAN_MOSQUITTO_PIDFILE: &str = "/run/mosquitto/mosquitto.pid";
const DEBIAN_MOSQUITTO_CONF: &str = "/etc/mosquitto/mosquitto.conf";

/// SIGTERMs the broker named by Debian's pid file if it runs with Debian's
/// configuration, and waits for it to exit. Whether it was stopped.
fn stop_debian_mosquitto() -> Result<bool> {
    let Some(pid) = std::fs::read_to_string(DEBIAN_MOSQUITTO_PIDFILE).ok().and_then(|p| p.trim().parse::<u32>().ok())
    else {
        return Ok(false);
    };
    let is_debian_broker = |pid: u32| {
        std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|cmdline| {
            let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
            args.first().is_some_and(|exe| exe.ends_with(b"mosquitto"))
                && args.iter().any(|arg| *arg == DEBIAN_MOSQUITTO_CONF.as_bytes())
        })
    };
    if !is_debian_broker(pid) {
        return Ok(false);
    }
    sys::send_signal(pid, libc::SIGTERM).map_err(|e| StackError::io(format!("stopping mosquitto (pid {pid})"), e))?;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while is_debian_broker(pid) {
        if std::time::Instant::now() > deadline {
            return Ok(false);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(true)
}

/// Stops and disables the services of the `touch`ed packages, then checks
/// the default ports.
pub(crate) fn quiet(touch: Touch, kept: bool) -> Result<ServicesReport> {
    let (actions, failed) = apply(plan(&observe(), touch));
    let still_listening = DEFAULT_PORTS.into_iter().filter(|port| listening(*port)).collect();
    Ok(ServicesReport { actions, kept, failed, still_listening })
}

/// Whether something accepts connections on 127.0.0.1:`port`, where the
/// default URLs point.
pub fn listening(port: u16) -> bool {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_ok()
}

fn privileged(program: &str, args: &[&str], stdin: Option<&str>) -> Result<()> {
    let sudo = sys::effective_uid() != 0;
    let mut cmd = if sudo {
        let mut cmd = Command::new("sudo");
        cmd.arg(program);
        cmd
    } else {
        Command::new(program)
    };
    cmd.args(args).stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() });
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let command = format!("{}{program} {}", if sudo { "sudo " } else { "" }, args.join(" "));
    let mut child = cmd.spawn().map_err(|e| StackError::io(format!("running {command}"), e))?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(text.as_bytes()).map_err(|e| StackError::io(format!("writing to {command}"), e))?;
    }
    let output = child.wait_with_output().map_err(|e| StackError::io(format!("running {command}"), e))?;
    if output.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    Err(StackError::Command {
        command,
        status: crate::process::describe_status(&output.status),
        output: last_lines(&stderr, 30),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster(version: u32, name: &str, online: bool, auto_start: bool) -> Cluster {
        Cluster { version, name: name.into(), port: 5432, online, auto_start }
    }

    const ALL: Touch = Touch { postgres: true, mosquitto: true };
    const RUNNING: ServiceState = ServiceState { running: true, enabled: true };
    const QUIET: ServiceState = ServiceState { running: false, enabled: false };

    #[test]
    fn a_fresh_install_under_systemd_is_stopped_and_disabled() {
        let observed = Observed {
            systemd: true,
            clusters: vec![cluster(15, "main", true, true)],
            postgresql: Some(RUNNING),
            mosquitto: Some(RUNNING),
        };
        assert_eq!(
            plan(&observed, ALL),
            vec![
                Action::StopCluster { version: 15, name: "main".into(), port: 5432 },
                Action::ClusterManual { version: 15, name: "main".into() },
                Action::SystemdReload,
                Action::SystemctlDisable { unit: "postgresql", now: true },
                Action::SystemctlDisable { unit: "mosquitto", now: true },
            ]
        );
    }

    #[test]
    fn without_systemd_init_scripts_and_rc_links_are_used() {
        // A container: nothing running (policy-rc.d), but enabled for boot.
        let observed = Observed {
            systemd: false,
            clusters: vec![cluster(15, "main", false, true)],
            postgresql: Some(ServiceState { running: false, enabled: true }),
            mosquitto: Some(RUNNING),
        };
        assert_eq!(
            plan(&observed, ALL),
            vec![
                Action::ClusterManual { version: 15, name: "main".into() },
                Action::UpdateRcDisable { script: "postgresql" },
                Action::InitScriptStop { script: "mosquitto" },
                Action::UpdateRcDisable { script: "mosquitto" },
            ]
        );
    }

    #[test]
    fn quiet_services_need_nothing_and_untouched_packages_are_left_alone() {
        let quiet = Observed {
            systemd: true,
            clusters: vec![cluster(15, "main", false, false)],
            postgresql: Some(QUIET),
            mosquitto: Some(QUIET),
        };
        assert_eq!(plan(&quiet, ALL), vec![]);

        let busy = Observed {
            systemd: true,
            clusters: vec![cluster(15, "main", true, true)],
            postgresql: Some(RUNNING),
            mosquitto: Some(RUNNING),
        };
        assert_eq!(plan(&busy, Touch::default()), vec![]);
        // Only mosquitto was installed now: the existing cluster stays.
        assert_eq!(
            plan(&busy, Touch { postgres: false, mosquitto: true }),
            vec![Action::SystemctlDisable { unit: "mosquitto", now: true }]
        );
        // Not installed at all: nothing to do.
        assert_eq!(plan(&Observed { systemd: true, ..Observed::default() }, ALL), vec![]);
    }

    #[test]
    fn a_manual_cluster_started_by_hand_is_stopped_but_not_rewritten() {
        let observed = Observed {
            systemd: false,
            clusters: vec![cluster(15, "main", true, false), cluster(16, "other", false, true)],
            postgresql: Some(QUIET),
            mosquitto: None,
        };
        assert_eq!(
            plan(&observed, ALL),
            vec![
                Action::StopCluster { version: 15, name: "main".into(), port: 5432 },
                Action::ClusterManual { version: 16, name: "other".into() },
            ]
        );
    }

    #[test]
    fn reads_pg_lsclusters_and_start_conf() {
        let listing = "15 main 5432 online postgres /var/lib/postgresql/15/main /var/log/x.log\n\
                       16 test 5433 down postgres /var/lib/postgresql/16/test /var/log/y.log\n\
                       17 replica 5434 online,recovery postgres /d /l\nnonsense\n";
        assert_eq!(
            parse_clusters(listing),
            vec![(15, "main".into(), 5432, true), (16, "test".into(), 5433, false), (17, "replica".into(), 5434, true)]
        );
        let conf = "# Automatic startup configuration\n#   auto: ...\n\nauto\n";
        assert_eq!(start_mode(conf), Some("auto"));
        let manual = with_manual_start(conf);
        assert_eq!(manual, "# Automatic startup configuration\n#   auto: ...\n\nmanual\n");
        assert_eq!(start_mode(&manual), Some("manual"));
        assert_eq!(start_mode("# only comments\n"), None);
        assert_eq!(with_manual_start(""), "manual\n");
    }

    #[test]
    fn the_report_says_what_was_done_and_warns_about_listeners() {
        let report = ServicesReport {
            actions: vec![Action::SystemctlDisable { unit: "mosquitto", now: true }],
            kept: false,
            failed: vec!["could not do \"x\": y".into()],
            still_listening: vec![5432],
        };
        let text = report.to_string();
        assert!(text.contains("stopped and disabled mosquitto.service"), "{text}");
        assert!(text.contains("127.0.0.1:5432"), "{text}");
        assert!(text.contains("warning: could not do"), "{text}");
        let kept = ServicesReport { kept: true, ..ServicesReport::default() };
        assert!(kept.to_string().contains("left as they were"));
    }
}
