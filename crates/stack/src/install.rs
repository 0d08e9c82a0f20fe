//! Installing the stack's Debian packages when something is missing.

use std::path::Path;
use std::process::Command;

use crate::error::{Result, StackError};
use crate::process::last_lines;
use crate::services::{self, ServicesReport, SystemServices, Touch};
use crate::sys;
use crate::toolchain::{installed_pg_majors, Toolchain};

/// PostgreSQL major used when none is installed and apt-cache cannot tell
/// (the default of Debian 12 "bookworm").
const FALLBACK_PG_MAJOR: u32 = 15;

/// Returns the [`Toolchain`], installing the Debian packages first if
/// anything is missing.
///
/// Installs with `apt-get install -y --no-install-recommends` (after
/// `apt-get update`, `DEBIAN_FRONTEND=noninteractive`, via `sudo` when not
/// root): the PostgreSQL server (`postgresql-<N>` for an installed major N,
/// else the distribution's default via `postgresql`), its PostGIS package
/// (`postgresql-<N>-postgis-3`, as found with apt-cache), `mosquitto`, and
/// `mosquitto-clients` (`mosquitto_pub`/`mosquitto_sub`, which tests and
/// debugging use).
///
/// Debian starts the packages' system services (a cluster on 5432, a broker
/// on 1883) after installing them; those of packages installed by this call
/// are stopped and disabled again (see [`setup`]). With everything already
/// installed it runs no command at all.
pub fn ensure_installed() -> Result<Toolchain> {
    Ok(setup(SystemServices::KeepExisting)?.toolchain)
}

/// What [`setup`] found or installed, and what it did to Debian's services.
#[derive(Debug, Clone)]
pub struct Installed {
    /// The servers and tools.
    pub toolchain: Toolchain,
    /// Debian's PostgreSQL and Mosquitto services: what was stopped and disabled.
    pub services: ServicesReport,
}

/// `citygauge setup`: installs what is missing (as [`ensure_installed`]),
/// then stops and disables Debian's PostgreSQL clusters and Mosquitto
/// service so that nothing of theirs answers on the default ports (5432,
/// 1883). `services` says whether that applies to services that were
/// already installed before this call too.
pub fn setup(services: SystemServices) -> Result<Installed> {
    let had_postgres = !installed_pg_majors(Path::new("/usr/lib/postgresql")).is_empty();
    let had_mosquitto = Path::new(DEBIAN_MOSQUITTO).exists();
    let toolchain = install_missing()?;
    let fresh = Touch {
        postgres: !had_postgres && !installed_pg_majors(Path::new("/usr/lib/postgresql")).is_empty(),
        mosquitto: !had_mosquitto && Path::new(DEBIAN_MOSQUITTO).exists(),
    };
    let (touch, kept) = match services {
        SystemServices::Disable => (Touch { postgres: true, mosquitto: true }, false),
        SystemServices::KeepExisting => (fresh, true),
    };
    let services = if touch == Touch::default() {
        // Nothing to touch: not even a look at the init system.
        ServicesReport { kept, ..ServicesReport::default() }
    } else {
        services::quiet(touch, kept)?
    };
    Ok(Installed { toolchain, services })
}

/// Where Debian's `mosquitto` package puts the broker.
const DEBIAN_MOSQUITTO: &str = "/usr/sbin/mosquitto";

fn install_missing() -> Result<Toolchain> {
    match Toolchain::discover() {
        Ok(toolchain) => return Ok(toolchain),
        Err(e) if e.is_missing_component() => {
            tracing::info!(missing = %e, "installing the stack's Debian packages");
        }
        Err(e) => return Err(e),
    }
    // Before the apt-cache look-ups below: they read the package lists.
    apt_get_update()?;
    let installed = installed_pg_majors(Path::new("/usr/lib/postgresql")).first().copied();
    let major = installed.or_else(default_pg_major).unwrap_or(FALLBACK_PG_MAJOR);
    let server = match installed {
        Some(major) => format!("postgresql-{major}"),
        None => "postgresql".to_owned(),
    };
    let postgis = postgis_package(major);
    apt_get_install(&[server.as_str(), &postgis, "mosquitto", "mosquitto-clients"])?;
    Toolchain::discover()
}

/// `apt-get update`, then `apt-get install` of `packages` (for Node.js, npm
/// and Chromium, which the web page needs).
pub(crate) fn install_packages(packages: &[&str]) -> Result<()> {
    apt_get_update()?;
    apt_get_install(packages)
}

fn apt_get_update() -> Result<()> {
    apt(sys::effective_uid() != 0, "apt-get", &["update"])
}

/// `apt-get install -y --no-install-recommends`, non-interactive, through
/// sudo when not root.
fn apt_get_install(packages: &[&str]) -> Result<()> {
    tracing::info!(?packages, "apt-get install");
    let mut args = vec![
        "install",
        "-y",
        "--no-install-recommends",
        // Another apt run (e.g. unattended upgrades) may hold the lock:
        // wait for it instead of failing at once.
        "-o",
        "DPkg::Lock::Timeout=300",
    ];
    args.extend(packages);
    apt(sys::effective_uid() != 0, "apt-get", &args)
}

/// The distribution's default PostgreSQL major: what the `postgresql`
/// metapackage depends on ("Depends: postgresql-15").
fn default_pg_major() -> Option<u32> {
    let output = Command::new("apt-cache").args(["depends", "postgresql"]).output().ok()?;
    parse_default_major(&String::from_utf8_lossy(&output.stdout))
}

fn parse_default_major(depends: &str) -> Option<u32> {
    depends.lines().find_map(|line| line.trim().strip_prefix("Depends: postgresql-")?.parse().ok())
}

/// The newest `postgresql-<major>-postgis-<V>` the archive has, defaulting
/// to PostGIS 3.
fn postgis_package(major: u32) -> String {
    let prefix = format!("postgresql-{major}-postgis-");
    Command::new("apt-cache")
        .args(["pkgnames", &prefix])
        .output()
        .ok()
        .and_then(|out| newest_postgis(&String::from_utf8_lossy(&out.stdout), &prefix))
        .unwrap_or_else(|| format!("{prefix}3"))
}

/// Picks `prefix<V>` with the highest numeric V; skips e.g. `-3-scripts`.
fn newest_postgis(names: &str, prefix: &str) -> Option<String> {
    names
        .lines()
        .filter_map(|name| {
            let version: u32 = name.trim().strip_prefix(prefix)?.parse().ok()?;
            Some((version, name.trim().to_owned()))
        })
        .max()
        .map(|(_, name)| name)
}

/// Runs an apt command non-interactively (through sudo when not root).
fn apt(sudo: bool, program: &str, args: &[&str]) -> Result<()> {
    let mut cmd = if sudo {
        let mut cmd = Command::new("sudo");
        // sudo resets the environment: pass the variable on its command line.
        cmd.args(["env", "DEBIAN_FRONTEND=noninteractive", program]);
        cmd
    } else {
        let mut cmd = Command::new(program);
        cmd.env("DEBIAN_FRONTEND", "noninteractive");
        cmd
    };
    cmd.args(args);
    let command = format!("{}{program} {}", if sudo { "sudo " } else { "" }, args.join(" "));
    tracing::info!(%command, "running");
    let output = cmd.output().map_err(|e| StackError::io(format!("running {command}"), e))?;
    if output.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    let text = if stderr.trim().is_empty() { String::from_utf8_lossy(&output.stdout) } else { stderr };
    Err(StackError::Command {
        command,
        status: crate::process::describe_status(&output.status),
        output: last_lines(&text, 30),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_default_major_from_apt_cache_depends() {
        let out = "postgresql\n  Depends: postgresql-15\n  Suggests: postgresql-doc\n";
        assert_eq!(parse_default_major(out), Some(15));
        assert_eq!(parse_default_major("postgresql\n"), None);
    }

    #[test]
    fn picks_the_newest_postgis_package() {
        let names = "postgresql-15-postgis-3-scripts\npostgresql-15-postgis-3\npostgresql-15-postgis-2\n";
        let prefix = "postgresql-15-postgis-";
        assert_eq!(newest_postgis(names, prefix).as_deref(), Some("postgresql-15-postgis-3"));
        assert_eq!(newest_postgis("", prefix), None);
        // Against the real apt cache (or its fallback when lists are empty).
        assert_eq!(postgis_package(15), "postgresql-15-postgis-3");
    }
}
