//! Building the control-room page (`dashboards/control-room`, TypeScript +
//! Vite) with npm when its built files are missing or older than their
//! sources, and finding the Chromium its browser test drives. Node.js, npm
//! and Chromium come from Debian's packages when missing, like the servers.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::SystemTime;

use crate::error::{Result, StackError};
use crate::install::install_packages;
use crate::process::{describe_status, last_lines};

/// The pages Vite writes; the build is as old as the oldest of them.
const BUILT_PAGES: [&str; 2] = ["index.html", "public.html"];
/// Entries of the page's directory that are not build inputs: installed
/// packages, the output itself, and the browser test.
const NOT_SOURCES: [&str; 3] = ["node_modules", "dist", "tests"];
/// Where Debian's chromium package puts its launcher.
const CHROMIUM: &str = "/usr/bin/chromium";
/// Chromium ships no CJK font; without one the zh-TW labels render as boxes.
const CJK_FONT_PACKAGE: &str = "fonts-wqy-microhei";

/// What [`ensure_web_built`] has to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct WebPlan {
    /// `npm ci`: node_modules is missing or older than package-lock.json.
    pub(crate) install: bool,
    /// `npm run build`: dist is missing, older than a source, or the
    /// dependencies were just reinstalled.
    pub(crate) build: bool,
}

/// Makes sure `dir/dist` holds a build of the page in `dir` that is newer
/// than every source file, and returns that dist directory.
///
/// Runs `npm ci` when `node_modules` is missing or older than
/// `package-lock.json`, then `npm run build` when `dist` is missing or stale.
/// Installs the Debian packages `nodejs` and `npm` first when `npm` is not
/// on `PATH` and something has to run. Errors name the directory, the
/// command and the tail of its output.
pub fn ensure_web_built(dir: &Path) -> Result<PathBuf> {
    let plan = plan(dir)?;
    let dist = dir.join("dist");
    if !plan.install && !plan.build {
        return Ok(dist);
    }
    let npm = ensure_program("npm", &["nodejs", "npm"])?;
    if plan.install {
        tracing::info!(dir = %dir.display(), "installing the page's npm packages (npm ci)");
        run_npm(&npm, dir, &["ci", "--no-audit", "--no-fund"])?;
    }
    tracing::info!(dir = %dir.display(), "building the control-room page (npm run build)");
    run_npm(&npm, dir, &["run", "build"])?;
    for page in BUILT_PAGES {
        if !dist.join(page).is_file() {
            return Err(StackError::WebSource {
                dir: dir.to_owned(),
                reason: format!("`npm run build` succeeded but wrote no dist/{page}"),
            });
        }
    }
    Ok(dist)
}

/// Debian's Chromium launcher, installing the `chromium` package (and a CJK
/// font for the zh-TW labels) when it is missing.
pub fn ensure_chromium() -> Result<PathBuf> {
    if let Some(found) = find_chromium() {
        return Ok(found);
    }
    tracing::info!("installing Chromium from Debian's packages");
    install_packages(&["chromium", CJK_FONT_PACKAGE])?;
    find_chromium().ok_or_else(|| StackError::ProgramMissing { program: "chromium", package: "chromium".into() })
}

/// `xmllint` (Debian's libxml2-utils), installing it when missing: the
/// tests validate every CAP document against the OASIS schema with it.
pub fn ensure_xmllint() -> Result<PathBuf> {
    if let Some(found) = on_path("xmllint") {
        return Ok(found);
    }
    tracing::info!("installing xmllint (libxml2-utils) from Debian's packages");
    install_packages(&["libxml2-utils"])?;
    on_path("xmllint").ok_or_else(|| StackError::ProgramMissing { program: "xmllint", package: "libxml2-utils".into() })
}

/// A `python3` that can make virtual environments, installing Debian's
/// python3-venv when missing (Debian's python3 has no `ensurepip` without
/// it): a test drives the SensorThings API with FROST's client from PyPI.
pub fn ensure_python3_venv() -> Result<PathBuf> {
    let usable = || {
        on_path("python3").filter(|python| {
            Command::new(python).args(["-c", "import venv, ensurepip"]).output().is_ok_and(|out| out.status.success())
        })
    };
    if let Some(found) = usable() {
        return Ok(found);
    }
    tracing::info!("installing python3-venv from Debian's packages");
    install_packages(&["python3-venv"])?;
    usable().ok_or_else(|| StackError::ProgramMissing { program: "python3", package: "python3-venv".into() })
}

/// Debian's Chromium launcher, if installed.
pub fn find_chromium() -> Option<PathBuf> {
    Some(PathBuf::from(CHROMIUM)).filter(|p| is_executable(p)).or_else(|| on_path("chromium"))
}

/// Decides what to run from the files' modification times.
pub(crate) fn plan(dir: &Path) -> Result<WebPlan> {
    let bad = |reason: &str| StackError::WebSource { dir: dir.to_owned(), reason: reason.to_owned() };
    if !dir.join("package.json").is_file() {
        return Err(bad("no package.json here: is this the control-room page's directory?"));
    }
    let lock = modified(&dir.join("package-lock.json"))?
        .ok_or_else(|| bad("package-lock.json is missing: run `npm install` once and commit the lock file"))?;
    // npm rewrites its hidden lock file on every install; the directory's
    // own time changes only when an entry is added or removed.
    let modules = dir.join("node_modules");
    let installed = match modified(&modules.join(".package-lock.json"))? {
        Some(time) => Some(time),
        None => modified(&modules)?,
    };
    let install = installed.is_none_or(|time| time < lock);

    let mut built: Option<SystemTime> = None;
    for page in BUILT_PAGES {
        match modified(&dir.join("dist").join(page))? {
            Some(time) => built = Some(built.map_or(time, |b| b.min(time))),
            None => return Ok(WebPlan { install, build: true }),
        }
    }
    let newest = newest_source(dir)?;
    let build = install
        || match (built, newest) {
            (Some(built), Some(newest)) => built < newest,
            _ => true,
        };
    Ok(WebPlan { install, build })
}

/// The newest modification time of the page's sources (everything but
/// [`NOT_SOURCES`] and hidden entries).
fn newest_source(dir: &Path) -> Result<Option<SystemTime>> {
    let mut newest = None;
    let mut pending = vec![dir.to_owned()];
    while let Some(current) = pending.pop() {
        let entries =
            std::fs::read_dir(&current).map_err(|e| StackError::io(format!("listing {}", current.display()), e))?;
        for entry in entries {
            let entry = entry.map_err(|e| StackError::io(format!("listing {}", current.display()), e))?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with('.') || (current == dir && NOT_SOURCES.contains(&name.as_ref())) {
                continue;
            }
            let path = entry.path();
            let meta =
                std::fs::metadata(&path).map_err(|e| StackError::io(format!("reading {}", path.display()), e))?;
            if meta.is_dir() {
                pending.push(path);
            } else if let Ok(time) = meta.modified() {
                newest = newest.max(Some(time));
            }
        }
    }
    Ok(newest)
}

fn modified(path: &Path) -> Result<Option<SystemTime>> {
    match std::fs::metadata(path) {
        Ok(meta) => {
            meta.modified().map(Some).map_err(|e| StackError::io(format!("reading the time of {}", path.display()), e))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(StackError::io(format!("reading {}", path.display()), e)),
    }
}

/// A program on PATH, installing `packages` first when it is not there.
fn ensure_program(program: &'static str, packages: &[&str]) -> Result<PathBuf> {
    if let Some(found) = on_path(program) {
        return Ok(found);
    }
    tracing::info!(program, ?packages, "installing from Debian's packages");
    install_packages(packages)?;
    on_path(program).ok_or_else(|| StackError::ProgramMissing { program, package: packages.join(" ") })
}

fn run_npm(npm: &Path, dir: &Path, args: &[&str]) -> Result<()> {
    let command = format!("npm {} (in {})", args.join(" "), dir.display());
    let output = Command::new(npm)
        .args(args)
        .current_dir(dir)
        // No update check and no colour codes in the output we may quote.
        .env("NO_UPDATE_NOTIFIER", "1")
        .env("NO_COLOR", "1")
        .output()
        .map_err(|e| StackError::io(format!("running {command}"), e))?;
    if output.status.success() {
        return Ok(());
    }
    let text = String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr);
    Err(StackError::Command { command, status: describe_status(&output.status), output: last_lines(&text, 40) })
}

fn on_path(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .map(|dir| dir.join(program))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Writes `path` (under `root`) with its modification time `secs` after a fixed origin.
    fn file(root: &Path, path: &str, secs: u64) {
        let path = root.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, "x").unwrap();
        let time = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + secs);
        std::fs::File::options().write(true).open(&path).unwrap().set_modified(time).unwrap();
    }

    /// A page directory installed at t=10 and built at t=20 from sources of t<=5.
    fn fresh_page() -> tempfile::TempDir {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        file(root, "package.json", 1);
        file(root, "package-lock.json", 1);
        file(root, "index.html", 2);
        file(root, "public.html", 2);
        file(root, "src/control.ts", 5);
        file(root, "node_modules/.package-lock.json", 10);
        file(root, "node_modules/leaflet/package.json", 30);
        file(root, "dist/index.html", 20);
        file(root, "dist/public.html", 20);
        tmp
    }

    const NOTHING: WebPlan = WebPlan { install: false, build: false };

    #[test]
    fn a_fresh_build_needs_nothing() {
        let page = fresh_page();
        assert_eq!(plan(page.path()).unwrap(), NOTHING);
        // Neither the tests, the output, installed packages nor hidden files are sources.
        file(page.path(), "tests/browser.mjs", 99);
        file(page.path(), ".eslintcache", 99);
        file(page.path(), "dist/assets/x.js", 99);
        assert_eq!(plan(page.path()).unwrap(), NOTHING);
    }

    #[test]
    fn a_newer_source_rebuilds() {
        let page = fresh_page();
        file(page.path(), "src/deep/map.ts", 21);
        assert_eq!(plan(page.path()).unwrap(), WebPlan { install: false, build: true });
    }

    #[test]
    fn a_missing_page_rebuilds() {
        let page = fresh_page();
        std::fs::remove_file(page.path().join("dist/public.html")).unwrap();
        assert_eq!(plan(page.path()).unwrap(), WebPlan { install: false, build: true });
        std::fs::remove_dir_all(page.path().join("dist")).unwrap();
        assert_eq!(plan(page.path()).unwrap(), WebPlan { install: false, build: true });
    }

    #[test]
    fn a_newer_lock_file_reinstalls_and_rebuilds() {
        let page = fresh_page();
        file(page.path(), "package-lock.json", 15);
        assert_eq!(plan(page.path()).unwrap(), WebPlan { install: true, build: true });
    }

    #[test]
    fn missing_node_modules_installs() {
        let page = fresh_page();
        std::fs::remove_dir_all(page.path().join("node_modules")).unwrap();
        assert_eq!(plan(page.path()).unwrap(), WebPlan { install: true, build: true });
    }

    #[test]
    fn a_directory_without_the_page_is_refused_clearly() {
        let page = fresh_page();
        std::fs::remove_file(page.path().join("package-lock.json")).unwrap();
        let err = plan(page.path()).unwrap_err();
        assert!(err.to_string().contains("package-lock.json is missing"), "{err}");
        let empty = tempfile::tempdir().unwrap();
        let err = ensure_web_built(empty.path()).unwrap_err();
        assert!(err.to_string().contains("no package.json"), "{err}");
    }
}
