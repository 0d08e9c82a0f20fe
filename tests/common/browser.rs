//! What the browser tests share: Chromium (or a skip), where screenshots go,
//! and running a script of `dashboards/control-room/tests/` in node, talking
//! to it over its stdin and stdout (see `launch.mjs` there).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

/// Chromium's path; `None` to skip `test` (said on stderr). With
/// `CITYGAUGE_REQUIRE_BROWSER` set a missing Chromium is installed, and
/// failing that the test fails.
pub fn chromium(test: &str) -> anyhow::Result<Option<PathBuf>> {
    if let Some(found) = citygauge_stack::find_chromium() {
        return Ok(Some(found));
    }
    if std::env::var_os("CITYGAUGE_REQUIRE_BROWSER").is_none() {
        // Straight to stderr: the harness would hide a captured eprintln! of a passing test.
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "skipping {test}: Chromium is not installed (Debian package `chromium`); \
             set CITYGAUGE_REQUIRE_BROWSER=1 to install it and run the test"
        );
        return Ok(None);
    }
    Ok(Some(citygauge_stack::ensure_chromium().context("CITYGAUGE_REQUIRE_BROWSER is set")?))
}

/// The control room's directory, and its built page (`ensure_web_built`:
/// rebuilt only when the sources changed).
pub async fn built_page() -> anyhow::Result<(PathBuf, PathBuf)> {
    let page_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("dashboards/control-room");
    let dir = page_dir.clone();
    let dist = tokio::task::spawn_blocking(move || citygauge_stack::ensure_web_built(&dir)).await??;
    Ok((page_dir, dist))
}

/// Where the screenshots go: `target/test-artifacts/`.
pub fn artifacts_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    target.join("test-artifacts")
}

/// Runs `node <script>` in `page_dir` with `env`, `CITYGAUGE_ARTIFACTS` and
/// `CITYGAUGE_CHROMIUM`; hands each line it prints to `on_line` (then prints
/// it, captured by the test harness) and writes back the line `on_line`
/// returns, if any. Fails unless the script exits successfully having said
/// `citygauge-browser: done`, within five minutes.
pub async fn run_script(
    page_dir: &Path,
    script: &str,
    env: &[(&str, &str)],
    artifacts: &Path,
    chromium: &Path,
    mut on_line: impl AsyncFnMut(&str) -> anyhow::Result<Option<&'static str>>,
) -> anyhow::Result<()> {
    let mut child = tokio::process::Command::new("node")
        .arg(script)
        .current_dir(page_dir)
        .envs(env.iter().copied())
        .env("CITYGAUGE_ARTIFACTS", artifacts)
        .env("CITYGAUGE_CHROMIUM", chromium)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting node {script}"))?;
    let mut stdin = child.stdin.take().context("stdin")?;
    let mut stderr = child.stderr.take().context("stderr")?;
    let errors = tokio::spawn(async move {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text).await;
        text
    });
    let mut lines = BufReader::new(child.stdout.take().context("stdout")?).lines();
    let mut said = Vec::new();
    let run = async {
        while let Some(line) = lines.next_line().await? {
            if let Some(answer) = on_line(&line).await? {
                stdin.write_all(format!("{answer}\n").as_bytes()).await?;
                stdin.flush().await?;
            }
            // Captured by the test harness: shown on failure or with --nocapture.
            println!("{line}");
            said.push(line);
        }
        anyhow::Ok(child.wait().await?)
    };
    // Generous: a cold Chromium on a busy 2-core machine; the script's own
    // waits are what fail first.
    let status = tokio::time::timeout(Duration::from_secs(300), run).await.context("the browser script hung")??;
    let stderr = errors.await.unwrap_or_default();
    anyhow::ensure!(
        status.success() && said.iter().any(|l| l == "citygauge-browser: done"),
        "the browser script failed ({status}); screenshots in {}\n--- stdout ---\n{}\n--- stderr ---\n{stderr}",
        artifacts.display(),
        said.join("\n"),
    );
    Ok(())
}
