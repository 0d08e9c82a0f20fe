//! Finding the PostgreSQL, PostGIS and Mosquitto installations to use.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::error::{Result, StackError};

/// The oldest PostgreSQL major version the platform supports.
pub const MIN_PG_MAJOR: u32 = 15;

/// Where Debian installs each PostgreSQL major version's binaries.
const PG_LIB_ROOT: &str = "/usr/lib/postgresql";
/// Where Debian installs each PostgreSQL major version's extensions.
const PG_SHARE_ROOT: &str = "/usr/share/postgresql";
/// Debian's mosquitto lives in sbin, which is often not on a user's PATH.
const MOSQUITTO_FALLBACK: &str = "/usr/sbin/mosquitto";

/// Server binaries that make a PostgreSQL bin dir usable.
const PG_SERVER_TOOLS: [&str; 3] = ["initdb", "postgres", "pg_ctl"];
/// Client binaries we drive the server with (package postgresql-client-N).
const PG_CLIENT_TOOLS: [&str; 2] = ["psql", "pg_isready"];

/// The installed programs the stack runs: a PostgreSQL server with PostGIS,
/// and a Mosquitto 2 broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Toolchain {
    pg_major: u32,
    pg_bin_dir: PathBuf,
    mosquitto: PathBuf,
    mosquitto_version: String,
}

/// Where [`Toolchain::discover`] looks; replaced in unit tests.
#[derive(Debug, Clone)]
pub(crate) struct SearchRoots {
    pub(crate) pg_lib: PathBuf,
    pub(crate) pg_share: PathBuf,
    pub(crate) path_env: Option<OsString>,
    pub(crate) mosquitto_fallback: PathBuf,
}

/// A prefix under which PostgreSQL is searched instead of `/`
/// (`$CITYGAUGE_PG_PREFIX/usr/lib/postgresql/<N>/bin`, the same layout as
/// Debian's): a PostgreSQL installed elsewhere, e.g. a copy with TimescaleDB
/// added, used by the tests and `dev` without touching the system's.
pub const PG_PREFIX_ENV: &str = "CITYGAUGE_PG_PREFIX";

impl Default for SearchRoots {
    fn default() -> Self {
        let prefix = std::env::var_os(PG_PREFIX_ENV).map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/"));
        Self {
            pg_lib: prefix.join(PG_LIB_ROOT.trim_start_matches('/')),
            pg_share: prefix.join(PG_SHARE_ROOT.trim_start_matches('/')),
            path_env: std::env::var_os("PATH"),
            mosquitto_fallback: MOSQUITTO_FALLBACK.into(),
        }
    }
}

impl Toolchain {
    /// Finds the newest PostgreSQL >= 15 under `/usr/lib/postgresql/<N>/bin`
    /// that has PostGIS installed (`/usr/share/postgresql/<N>/extension/postgis.control`),
    /// and a Mosquitto 2 broker on `PATH` or at `/usr/sbin/mosquitto`.
    ///
    /// Errors name what is missing and the Debian package providing it;
    /// [`StackError::is_missing_component`] is true for them.
    pub fn discover() -> Result<Self> {
        Self::discover_in(&SearchRoots::default())
    }

    pub(crate) fn discover_in(roots: &SearchRoots) -> Result<Self> {
        let (pg_major, pg_bin_dir) = find_postgres(roots)?;
        let (mosquitto, mosquitto_version) = find_mosquitto(roots)?;
        Ok(Self { pg_major, pg_bin_dir, mosquitto, mosquitto_version })
    }

    /// The PostgreSQL major version, e.g. 15.
    pub fn pg_major(&self) -> u32 {
        self.pg_major
    }

    /// The PostgreSQL bin dir, e.g. `/usr/lib/postgresql/15/bin`.
    pub fn pg_bin_dir(&self) -> &Path {
        &self.pg_bin_dir
    }

    /// The path of a PostgreSQL program (`psql`, `pg_dump`, ...) of this version.
    pub fn pg_tool(&self, name: &str) -> PathBuf {
        self.pg_bin_dir.join(name)
    }

    /// Whether the TimescaleDB extension is installed for this PostgreSQL
    /// (its loader library in the server's package library directory, which
    /// is `lib` beside `bin` in Debian's layout).
    pub fn has_timescaledb(&self) -> bool {
        self.pg_bin_dir.parent().is_some_and(|root| root.join("lib").join("timescaledb.so").exists())
    }

    /// The mosquitto broker executable.
    pub fn mosquitto(&self) -> &Path {
        &self.mosquitto
    }

    /// The broker's version as it reports it, e.g. `2.0.11`.
    pub fn mosquitto_version(&self) -> &str {
        &self.mosquitto_version
    }
}

/// The PostgreSQL major versions installed under `pg_lib` with all server
/// tools, newest first.
pub(crate) fn installed_pg_majors(pg_lib: &Path) -> Vec<u32> {
    let mut majors: Vec<u32> = std::fs::read_dir(pg_lib)
        .into_iter()
        .flatten()
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|major| *major >= MIN_PG_MAJOR)
        .filter(|major| {
            let bin = pg_lib.join(major.to_string()).join("bin");
            PG_SERVER_TOOLS.iter().all(|tool| is_executable(&bin.join(tool)))
        })
        .collect();
    majors.sort_unstable_by(|a, b| b.cmp(a));
    majors
}

fn postgis_control(roots: &SearchRoots, major: u32) -> PathBuf {
    roots.pg_share.join(major.to_string()).join("extension/postgis.control")
}

/// Picks the newest version that has PostGIS (a newer server without PostGIS
/// is useless to us); reports the newest one's gap if none has it.
fn find_postgres(roots: &SearchRoots) -> Result<(u32, PathBuf)> {
    let majors = installed_pg_majors(&roots.pg_lib);
    let Some(&newest) = majors.first() else {
        return Err(StackError::PostgresMissing { searched: roots.pg_lib.clone(), min_major: MIN_PG_MAJOR });
    };
    let Some(major) = majors.iter().copied().find(|major| postgis_control(roots, *major).is_file()) else {
        return Err(StackError::PostgisMissing {
            pg_major: newest,
            control: postgis_control(roots, newest),
            package: format!("postgresql-{newest}-postgis-3"),
        });
    };
    let bin_dir = roots.pg_lib.join(major.to_string()).join("bin");
    for tool in PG_CLIENT_TOOLS {
        if !is_executable(&bin_dir.join(tool)) {
            return Err(StackError::PostgresToolMissing {
                tool,
                bin_dir,
                package: format!("postgresql-client-{major}"),
            });
        }
    }
    Ok((major, bin_dir))
}

fn find_mosquitto(roots: &SearchRoots) -> Result<(PathBuf, String)> {
    let on_path = roots
        .path_env
        .as_ref()
        .into_iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join("mosquitto"))
        .find(|candidate| is_executable(candidate));
    let path = on_path
        .or_else(|| Some(roots.mosquitto_fallback.clone()).filter(|p| is_executable(p)))
        .ok_or_else(|| StackError::MosquittoMissing { fallback: roots.mosquitto_fallback.clone() })?;
    // `mosquitto -h` prints "mosquitto version 2.0.11" first and exits 3.
    let output = Command::new(&path)
        .arg("-h")
        .output()
        .map_err(|e| StackError::io(format!("running {} -h", path.display()), e))?;
    let text = String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr);
    let first_line = text.lines().next().unwrap_or_default().trim().to_owned();
    match parse_mosquitto_version(&text) {
        Some(version) if version.starts_with("2.") => Ok((path, version)),
        _ => Err(StackError::MosquittoVersion { path, found: first_line }),
    }
}

/// Extracts "2.0.11" from mosquitto's "mosquitto version 2.0.11" banner.
pub(crate) fn parse_mosquitto_version(help: &str) -> Option<String> {
    help.lines().find_map(|line| {
        line.trim()
            .strip_prefix("mosquitto version ")
            .map(|rest| rest.split_whitespace().next().unwrap_or_default().to_owned())
    })
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn touch_exec(path: &Path, script: &str) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, script).unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    fn fake_pg(root: &Path, major: u32, client: bool) {
        let bin = root.join(format!("lib/{major}/bin"));
        for tool in PG_SERVER_TOOLS {
            touch_exec(&bin.join(tool), "");
        }
        if client {
            for tool in PG_CLIENT_TOOLS {
                touch_exec(&bin.join(tool), "");
            }
        }
    }

    fn fake_postgis(root: &Path, major: u32) {
        let control = root.join(format!("share/{major}/extension/postgis.control"));
        std::fs::create_dir_all(control.parent().unwrap()).unwrap();
        std::fs::write(control, "").unwrap();
    }

    fn roots(root: &Path, banner: &str) -> SearchRoots {
        let mosquitto = root.join("sbin/mosquitto");
        touch_exec(&mosquitto, &format!("#!/bin/sh\necho '{banner}'\nexit 3\n"));
        SearchRoots {
            pg_lib: root.join("lib"),
            pg_share: root.join("share"),
            path_env: Some(root.join("empty-bin").into_os_string()),
            mosquitto_fallback: mosquitto,
        }
    }

    #[test]
    fn picks_the_newest_version_with_postgis() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        fake_pg(root, 14, true);
        fake_pg(root, 15, true);
        fake_pg(root, 16, true);
        fake_postgis(root, 14);
        fake_postgis(root, 15);
        let toolchain = Toolchain::discover_in(&roots(root, "mosquitto version 2.0.18")).unwrap();
        assert_eq!(toolchain.pg_major(), 15);
        assert_eq!(toolchain.pg_tool("psql"), root.join("lib/15/bin/psql"));
        assert_eq!(toolchain.mosquitto_version(), "2.0.18");
    }

    #[test]
    fn missing_parts_name_their_packages() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        let roots = roots(root, "mosquitto version 2.0.11");
        let err = Toolchain::discover_in(&roots).unwrap_err();
        assert!(err.is_missing_component());
        assert!(err.to_string().contains("`postgresql`"), "{err}");

        fake_pg(root, 16, false);
        let err = Toolchain::discover_in(&roots).unwrap_err();
        assert!(err.to_string().contains("`postgresql-16-postgis-3`"), "{err}");

        fake_postgis(root, 16);
        let err = Toolchain::discover_in(&roots).unwrap_err();
        assert!(err.to_string().contains("`postgresql-client-16`"), "{err}");
    }

    #[test]
    fn mosquitto_must_exist_and_be_version_2() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        fake_pg(root, 15, true);
        fake_postgis(root, 15);
        let old = roots(root, "mosquitto version 1.6.9");
        let err = Toolchain::discover_in(&old).unwrap_err();
        assert!(matches!(err, StackError::MosquittoVersion { .. }), "{err}");
        assert!(err.to_string().contains("1.6.9"));

        let mut none = old.clone();
        none.mosquitto_fallback = root.join("nowhere/mosquitto");
        let err = Toolchain::discover_in(&none).unwrap_err();
        assert!(err.to_string().contains("`mosquitto`"), "{err}");
    }

    #[test]
    fn parses_the_banner() {
        let banner = "mosquitto version 2.0.11\n\nmosquitto is an MQTT v5.0/v3.1.1/v3.1 broker.";
        assert_eq!(parse_mosquitto_version(banner).as_deref(), Some("2.0.11"));
        assert_eq!(parse_mosquitto_version("Usage: foo"), None);
    }
}
