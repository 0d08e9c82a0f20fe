//! Faults on the broker's side: a broker that refuses our credentials (at
//! start: the daemon stops naming the option; later: it retries, counts,
//! and is not ready), and a shared-subscription member that dies for good
//! (its share must not stay stranded in its session).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use citygauge_testkit::{database, eventually, http_get, metric, wait_ready, BinaryDaemon, Broker, Publisher};
use common::process::ingest_exits;
use common::{base_time, free_addr, wait_count};

/// A Mosquitto that wants a user name and password (the harness's broker
/// is anonymous), with persistence so it can be restarted with other
/// passwords.
struct AuthBroker {
    dir: tempfile::TempDir,
    port: u16,
    child: Option<Child>,
}

impl AuthBroker {
    fn start(user: &str, password: &str) -> anyhow::Result<AuthBroker> {
        let dir = tempfile::Builder::new().prefix("citygauge-test-mqtt-auth-").tempdir()?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let d = dir.path().display();
        std::fs::write(
            dir.path().join("mosquitto.conf"),
            format!(
                "listener {port} 127.0.0.1\nallow_anonymous false\npassword_file {d}/passwords\n\
                 persistence true\npersistence_location {d}/\nmax_inflight_messages 65535\n\
                 max_queued_messages 0\n# Root in CI: keep it, it owns the test's files.\nuser root\n\
                 log_dest file {d}/mosquitto.log\n"
            ),
        )?;
        let mut broker = AuthBroker { dir, port, child: None };
        broker.set_password(user, password)?;
        broker.launch()?;
        Ok(broker)
    }

    fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }

    fn set_password(&self, user: &str, password: &str) -> anyhow::Result<()> {
        let file = self.dir.path().join("passwords");
        let _ = std::fs::remove_file(&file);
        let status = Command::new("mosquitto_passwd")
            .args(["-b", "-c"])
            .arg(&file)
            .args([user, password])
            .stdout(Stdio::null())
            .status()
            .context("mosquitto_passwd (from the mosquitto package)")?;
        anyhow::ensure!(status.success(), "mosquitto_passwd failed: {status}");
        Ok(())
    }

    fn launch(&mut self) -> anyhow::Result<()> {
        let binary: &Path = citygauge_testkit::toolchain()?.mosquitto();
        let conf: PathBuf = self.dir.path().join("mosquitto.conf");
        self.child = Some(Command::new(binary).arg("-c").arg(conf).stdout(Stdio::null()).spawn()?);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            anyhow::ensure!(Instant::now() < deadline, "mosquitto did not listen on {}", self.port);
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    /// SIGTERM (it saves its sessions), then start again on the same port.
    fn restart(&mut self) -> anyhow::Result<()> {
        self.stop();
        self.launch()
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
            let _ = child.wait();
        }
    }
}

impl Drop for AuthBroker {
    fn drop(&mut self) {
        self.stop();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_credentials_stop_the_daemon_at_start_naming_the_option() -> anyhow::Result<()> {
    let db = database().await?;
    let broker = tokio::task::block_in_place(|| AuthBroker::start("ingest", "right"))?;
    let url = broker.url();
    for protocol in ["5", "3.1.1"] {
        for credentials in [&["--mqtt-username", "ingest", "--mqtt-password", "wrong"][..], &[][..]] {
            let mut args = vec!["--mqtt-url", &url, "--database-url", &db.url, "--mqtt-protocol", protocol];
            args.extend_from_slice(credentials);
            let (status, stderr) = tokio::task::block_in_place(|| {
                ingest_exits(&args, Duration::from_secs(30), "it retries refused credentials for ever")
            })?;
            assert!(!status.success(), "{protocol} {credentials:?}: exit status {status}");
            assert!(
                stderr.contains("--mqtt-username") && stderr.contains("--mqtt-password"),
                "{protocol} {credentials:?}: the message names the options: {stderr}"
            );
            assert!(!stderr.contains("wrong"), "the password is never printed: {stderr}");
        }
    }
    Ok(())
}

/// Accepted at start, refused later (the broker's password changed): the
/// daemon keeps running, retries with backoff, counts the refusals, and is
/// not ready until the broker takes it again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_refused_after_start_are_retried_counted_and_not_ready() -> anyhow::Result<()> {
    let db = database().await?;
    let mut broker = tokio::task::block_in_place(|| AuthBroker::start("ingest", "right"))?;
    let extra = ["--mqtt-username", "ingest", "--mqtt-password", "right", "--mqtt-reconnect-max-ms", "500"];
    let config = citygauge_testkit::ingest_config(&broker.url(), &db.url, "auth-later", &extra)?;
    let daemon = citygauge_testkit::InProcessDaemon::start(config).await?;

    tokio::task::block_in_place(|| {
        broker.set_password("ingest", "changed")?;
        broker.restart()
    })?;
    let http = daemon.http;
    eventually("refusals counted", Duration::from_secs(20), || async {
        Ok((metric(http, "citygauge_ingest_broker_auth_refusals_total").await? >= 2.0).then_some(()))
    })
    .await?;
    let (status, body) = http_get(http, "/readyz").await?;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains(r#""broker":false"#), "{body}");
    assert_eq!(http_get(http, "/healthz").await?.0, 200, "still running");

    tokio::task::block_in_place(|| {
        broker.set_password("ingest", "right")?;
        broker.restart()
    })?;
    wait_ready(http).await?;
    daemon.stop().await
}

/// Water levels `range` of ten sensors, unique (sensor_id, ts).
async fn publish(publisher: &mut Publisher, range: std::ops::Range<i64>) -> anyhow::Result<()> {
    let t0 = base_time();
    for i in range {
        let ts = t0 + chrono::Duration::seconds(i / 10);
        let payload = format!(r#"{{"ts":"{}","level_m":1.2}}"#, ts.to_rfc3339());
        publisher.publish(&format!("city/water_level/sh-wl-{:02}", i % 10), payload).await?;
    }
    Ok(())
}

/// Two daemons share `$share/ingest/...`; one is SIGKILLed and never comes
/// back. Mosquitto keeps giving a shared member its share while its session
/// lives (queued for it, even offline), so the share is stranded for as long
/// as `--mqtt-session-expiry-s`: with a short one, once it has expired every
/// reading goes to the survivor. (With the 7-day default this test fails.)
/// Takeover is off here, to test the expiry alone: with it, a survivor drains
/// the dead member's session at once (tests/ingest_shared_orphan.rs).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_member_that_dies_for_good_does_not_strand_its_share() -> anyhow::Result<()> {
    const EXPIRY_S: u64 = 2;
    let db = database().await?;
    let broker = Broker::start().await?;
    let expiry = EXPIRY_S.to_string();
    let shared = ["--mqtt-shared-group", "ingest", "--mqtt-session-expiry-s", &expiry, "--orphan-takeover", "false"];
    let http_a = free_addr()?;
    let mut args_a: Vec<String> =
        ["--mqtt-url", &broker.url(), "--database-url", &db.url, "--mqtt-client-id", "ingest-a"]
            .iter()
            .map(|s| s.to_string())
            .collect();
    args_a.extend(["--http-listen".to_string(), http_a.to_string()]);
    args_a.extend(shared.iter().map(|s| s.to_string()));
    let binary = Path::new(env!("CARGO_BIN_EXE_citygauge"));
    let mut a = BinaryDaemon::start(binary, &args_a)?;
    wait_ready(http_a).await?;
    let b = citygauge_testkit::InProcessDaemon::start(citygauge_testkit::ingest_config(
        &broker.url(),
        &db.url,
        "ingest-b",
        &shared,
    )?)
    .await?;

    let mut publisher = Publisher::connect(broker.port(), "shared-publisher").await?;
    publish(&mut publisher, 0..400).await?;
    wait_count(&db, "SELECT count(*) FROM water_level", 400).await?;
    assert!(metric(http_a, "citygauge_ingest_messages_received_total").await? > 0.0, "a had its share");
    a.kill()?;

    // Mosquitto checks expiries about once a second.
    tokio::time::sleep(Duration::from_secs(EXPIRY_S + 2)).await;
    publish(&mut publisher, 400..1_200).await?;
    publisher.wait_acked(Duration::from_secs(30)).await?;
    wait_count(&db, "SELECT count(*) FROM water_level", 1_200).await?;
    let got_b = b.metric("citygauge_ingest_messages_received_total").await?;
    assert!(got_b >= 800.0, "everything after the expiry went to the survivor: {got_b}");
    b.stop().await
}
