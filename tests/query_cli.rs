//! `citygauge query` as an operator runs it: `--help` lists every option, a
//! bad option fails at start naming itself, and the real binary serves the
//! demo city on a free port and stops cleanly on SIGTERM.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

use citygauge_testkit::{database, eventually};

fn citygauge(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_citygauge")).args(args).env("CITYGAUGE_LOG", "warn").output().expect("runs")
}

#[test]
fn help_lists_every_option_and_bad_ones_are_named() {
    let help = String::from_utf8(citygauge(&["query", "--help"]).stdout).unwrap();
    for option in [
        "--query-http-listen",
        "CITYGAUGE_QUERY_HTTP_LISTEN",
        "--database-url",
        "--pool-max-size",
        "--statement-timeout-ms",
        "--stale-factor",
        "--sse-max-clients",
        "--sse-replay-events",
        "--sse-heartbeat-s",
        "--db-routes-max-concurrent",
        "--cache-routes-max-concurrent",
        "--registry-refresh-s",
        "--web-dir",
        "--districts-file",
        "--city-timezone",
        "CITYGAUGE_STALE_FACTOR",
    ] {
        assert!(help.contains(option), "{option} missing from:\n{help}");
    }
    let cases: [(&[&str], &str); 3] = [
        (&["query", "--stale-factor", "0.5"], "--stale-factor"),
        (&["query", "--city-timezone", "Mars/Olympus"], "--city-timezone"),
        (&["query", "--sse-max-clients", "none"], "--sse-max-clients"),
    ];
    for (args, option) in cases {
        let out = citygauge(args);
        assert!(!out.status.success(), "{args:?} should fail");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(option), "{args:?}: {stderr}");
    }
}

#[tokio::test]
async fn the_binary_serves_the_demo_city_and_stops_on_sigterm() -> anyhow::Result<()> {
    let db = database().await?;
    citygauge_testkit::city::demo_city(&db.url).await?;
    // One file for both services: the daemon's `http_listen` (an address
    // nothing here can bind) must not be taken for the query service's.
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("citygauge.toml");
    std::fs::write(&file, "http_listen = \"192.0.2.1:9\"\nquery_http_listen = \"127.0.0.1:0\"\n")?;
    let mut child = Command::new(env!("CARGO_BIN_EXE_citygauge"))
        .args([
            "--config",
            file.to_str().expect("utf-8 path"),
            "query",
            "--database-url",
            &db.url,
            "--log-format",
            "json",
        ])
        .env("CITYGAUGE_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    // The address it bound is in its start-up log line.
    let stderr = child.stderr.take().expect("piped");
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut log = String::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Ok(entry) = serde_json::from_str::<serde_json::Value>(&line) {
                if let Some(addr) = entry["addr"].as_str().and_then(|a| a.parse::<SocketAddr>().ok()) {
                    let _ = addr_tx.send(addr);
                }
            }
            log.push_str(&line);
            log.push('\n');
        }
        log
    });
    let addr = addr_rx.recv_timeout(Duration::from_secs(60))?;
    eventually("the binary to be ready", Duration::from_secs(60), || async {
        Ok(citygauge_testkit::http_get(addr, "/readyz").await.ok().filter(|(s, _)| *s == 200).map(|_| ()))
    })
    .await?;
    let (status, body) = citygauge_testkit::http_get(addr, "/api/v1/overview").await?;
    assert_eq!(status, 200, "{body}");
    assert_eq!(serde_json::from_str::<serde_json::Value>(&body)?["sensors"]["total"], 2375);

    Command::new("kill").args(["-TERM", &child.id().to_string()]).status()?;
    let exit = child.wait()?;
    let log = reader.join().expect("log reader");
    assert!(exit.success(), "exit {exit:?}; log:\n{log}");
    assert!(log.contains("query: stopped"), "{log}");
    Ok(())
}
