//! Data directories and the accounts servers run as.
//!
//! PostgreSQL refuses to run as root, and Mosquitto started as root switches
//! to its own user by itself. When we are root we therefore start both as
//! their Debian system users (`postgres`, `mosquitto`) right away, hand them
//! their data directories, and check they can reach those directories.
//! When we are not root everything runs as the current user and none of
//! this applies.

use std::fs;
use std::os::unix::fs::{chown, MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use tempfile::TempDir;

use crate::error::{Result, StackError};
use crate::sys;

/// A system account a server runs as because we are root.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RunAs {
    /// The account name, for messages.
    pub(crate) name: &'static str,
    /// Its uid.
    pub(crate) uid: u32,
    /// Its primary gid.
    pub(crate) gid: u32,
}

impl RunAs {
    /// The account `name` (created by Debian `package`) if we are root, or
    /// `None` when we are not root and servers simply run as us.
    pub(crate) fn if_root(name: &'static str, package: &'static str) -> Result<Option<Self>> {
        if sys::effective_uid() != 0 {
            return Ok(None);
        }
        match sys::lookup_user(name) {
            Ok(Some((uid, gid))) => Ok(Some(Self { name, uid, gid })),
            Ok(None) => Err(StackError::UserMissing { user: name, package }),
            Err(e) => Err(StackError::io(format!("looking up user {name}"), e)),
        }
    }

    /// Makes `cmd` run as this account. std also drops root's supplementary
    /// groups (`setgroups(0)`) when it switches uid away from root.
    pub(crate) fn apply(&self, cmd: &mut Command) {
        cmd.uid(self.uid).gid(self.gid);
    }

    /// Gives `path` to this account.
    pub(crate) fn chown(&self, path: &Path) -> Result<()> {
        chown(path, Some(self.uid), Some(self.gid))
            .map_err(|e| StackError::io(format!("chown {} to {}", path.display(), self.name), e))
    }
}

/// Creates `dir` if needed and returns its canonical path, owned by
/// `run_as` (when set) with every ancestor checked to be traversable by it.
pub(crate) fn prepare_data_dir(dir: &Path, run_as: Option<RunAs>) -> Result<PathBuf> {
    fs::create_dir_all(dir).map_err(|e| StackError::io(format!("creating {}", dir.display()), e))?;
    // Canonical paths make log messages, the postmaster's data_directory and
    // the /proc cwd comparisons agree with each other.
    let dir = dir.canonicalize().map_err(|e| StackError::io(format!("resolving {}", dir.display()), e))?;
    if let Some(run_as) = run_as {
        for ancestor in dir.ancestors().skip(1) {
            check_traversable(ancestor, run_as)?;
        }
        run_as.chown(&dir)?;
    }
    Ok(dir)
}

/// Fails unless `run_as` may enter `dir` (going by its mode bits; ACLs and
/// supplementary groups are ignored, which can only err on the safe side).
fn check_traversable(dir: &Path, run_as: RunAs) -> Result<()> {
    let meta = fs::metadata(dir).map_err(|e| StackError::io(format!("inspecting {}", dir.display()), e))?;
    let mode = meta.mode();
    let allowed = if meta.uid() == run_as.uid {
        mode & 0o100 != 0
    } else if meta.gid() == run_as.gid {
        mode & 0o010 != 0
    } else {
        mode & 0o001 != 0
    };
    if allowed {
        Ok(())
    } else {
        Err(StackError::NotTraversable { dir: dir.to_path_buf(), user: run_as.name })
    }
}

/// Creates a throwaway directory for tests and benchmarks, removed when the
/// returned [`TempDir`] is dropped.
///
/// It lives under [`std::env::temp_dir`] with a name starting with
/// `prefix`, and is made world-traversable (0755) so that servers running as
/// the `postgres`/`mosquitto` users can reach data dirs created inside it
/// (tempdirs are 0700 by default). Create one subdirectory per server, e.g.
/// `dir.path().join("pg")`; [`crate::Postgres::start`] creates it.
///
/// Drop the servers before the directory: declare the `TempDir` first so
/// it is dropped last.
pub fn throwaway_dir(prefix: &str) -> Result<TempDir> {
    let dir = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in(std::env::temp_dir())
        .map_err(|e| StackError::io("creating a throwaway dir", e))?;
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755))
        .map_err(|e| StackError::io(format!("chmod {}", dir.path().display()), e))?;
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throwaway_dirs_are_traversable_and_removed() {
        let dir = throwaway_dir("cg-dirs-").unwrap();
        let path = dir.path().to_path_buf();
        let mode = fs::metadata(&path).unwrap().mode();
        assert_eq!(mode & 0o777, 0o755);
        assert!(path.file_name().unwrap().to_str().unwrap().starts_with("cg-dirs-"));
        drop(dir);
        assert!(!path.exists());
    }

    #[test]
    fn traversal_is_judged_by_owner_group_and_other_bits() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path();
        let meta = fs::metadata(path).unwrap();
        let stranger = RunAs { name: "stranger", uid: meta.uid() + 12345, gid: meta.gid() + 12345 };
        let owner = RunAs { name: "owner", uid: meta.uid(), gid: meta.gid() };
        fs::set_permissions(path, fs::Permissions::from_mode(0o700)).unwrap();
        assert!(check_traversable(path, owner).is_ok());
        let err = check_traversable(path, stranger).unwrap_err();
        assert!(err.to_string().contains("not traversable by user `stranger`"));
        fs::set_permissions(path, fs::Permissions::from_mode(0o711)).unwrap();
        assert!(check_traversable(path, stranger).is_ok());
    }
}
