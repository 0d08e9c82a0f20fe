//! Issue 8, "no silent stall": database errors are classified once
//! (transient: retried; data: set aside; fatal: the daemon stops naming the
//! cause), every connection bounds its statements and lock waits, readiness
//! and metrics tell the truth while writes fail, and shutdown is bounded
//! even when the database stalls, losing nothing acknowledged.

mod common;

use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use citygauge_testkit::{eventually, http_get, metric, Broker, Cluster, InProcessDaemon, Publisher};
use common::process::{postgres_processes, scopeguard};
use common::{base_time, config, setup, wait_count};

/// `citygauge ingest` with `args` (and an unreachable broker), as the
/// operator runs it: its exit status and stderr.
fn ingest_exits(args: &[&str]) -> anyhow::Result<(std::process::ExitStatus, String)> {
    let args = [&["--mqtt-url", "mqtt://127.0.0.1:1"], args].concat();
    common::process::ingest_exits(&args, Duration::from_secs(30), "it waits instead of stopping")
}
use serde_json::json;
use tokio_util::sync::CancellationToken;

fn level(ts: chrono::DateTime<chrono::Utc>, level_m: f64) -> String {
    json!({"ts": ts.to_rfc3339(), "level_m": level_m}).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_that_refuses_the_daemon_stops_it_at_start_naming_the_option() -> anyhow::Result<()> {
    let cluster = Cluster::start().await?;
    // A role that must give a password (the cluster trusts everyone else).
    let client = connect(&cluster.url()).await?;
    client.batch_execute("CREATE ROLE ingest_pw LOGIN PASSWORD 'right'").await?;
    let data = cluster.postgres.data_dir().to_path_buf();
    let hba = data.join("pg_hba.conf");
    let rules = std::fs::read_to_string(&hba)?;
    std::fs::write(&hba, format!("host all ingest_pw 127.0.0.1/32 scram-sha-256\n{rules}"))?;
    client.batch_execute("SELECT pg_reload_conf()").await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let port = cluster.postgres.port();

    let cases = [
        (format!("host=127.0.0.1 port={port} user=ingest_pw password=wrong dbname=citygauge"), "authentication failed"),
        (format!("host=127.0.0.1 port={port} user=postgres dbname=no_such_db"), "does not exist"),
    ];
    for (url, cause) in cases {
        let (status, stderr) = tokio::task::block_in_place(|| ingest_exits(&["--database-url", &url]))?;
        assert!(!status.success(), "{stderr}");
        assert!(stderr.contains("--database-url") && stderr.contains(cause), "{stderr}");
        assert!(!stderr.contains("wrong"), "the password is never shown: {stderr}");
    }

    // A schema newer than this build: stopped, saying so.
    client.batch_execute("INSERT INTO schema_migrations (version, name, checksum) VALUES (999, 'future', 'x')").await?;
    let (status, stderr) = tokio::task::block_in_place(|| ingest_exits(&["--database-url", &cluster.url()]))?;
    assert!(!status.success(), "{stderr}");
    assert!(stderr.contains("--database-url") && stderr.contains("newer than this citygauge"), "{stderr}");
    Ok(())
}

async fn connect(url: &str) -> anyhow::Result<tokio_postgres::Client> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    Ok(client)
}

/// A value the database refuses (a CHECK added here) and a sensor
/// registration it refuses are each set aside in `rejected_messages`; the
/// rest of their batches is stored and every message acknowledged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_values_and_registrations_are_set_aside_not_retried_for_ever() -> anyhow::Result<()> {
    let setup = setup().await?;
    setup
        .db
        .client()
        .await?
        .batch_execute(
            "ALTER TABLE water_level ADD CONSTRAINT test_refuses CHECK (level_m <> 4.321);
             ALTER TABLE sensors ADD CONSTRAINT test_refuses CHECK (id NOT LIKE 'evil-%');",
        )
        .await?;
    let daemon = InProcessDaemon::start(config(&setup, "refused", &[])?).await?;
    let t = base_time();
    let mut publisher = Publisher::connect(setup.broker.port(), "refused-publisher").await?;
    publisher.publish("city/water_level/kh-wl-0001", level(t, 1.5)).await?;
    publisher.publish("city/water_level/kh-wl-0001", level(t + chrono::Duration::minutes(1), 4.321)).await?;
    publisher.publish("city/water_level/evil-0001", level(t, 1.0)).await?;
    publisher.publish("city/water_level/kh-wl-0099", level(t, 1.0)).await?;
    publisher.publish("city/water_level/kh-wl-0001", level(t + chrono::Duration::minutes(2), 1.6)).await?;
    publisher.wait_acked(Duration::from_secs(10)).await?;
    wait_count(&setup.db, "SELECT count(*) FROM rejected_messages WHERE reason = 'store_rejected'", 2).await?;
    // The refused registration's reading is kept: rows never depend on it.
    wait_count(&setup.db, "SELECT count(*) FROM water_level", 4).await?;
    let kept = setup
        .db
        .client()
        .await?
        .query("SELECT topic, detail FROM rejected_messages WHERE reason = 'store_rejected' ORDER BY topic", &[])
        .await?;
    let kept: Vec<(String, String)> = kept.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(kept[0].0, "citygauge/store/sensor/evil-0001", "{kept:?}");
    assert!(kept[0].1.contains("23514"), "{kept:?}");
    assert_eq!(kept[1].0, "citygauge/store/water_level/kh-wl-0001", "{kept:?}");
    assert_eq!(setup.db.count("SELECT count(*) FROM sensors WHERE id = 'kh-wl-0099' AND status = 'pending'").await?, 1);
    assert!(daemon.metric(r#"citygauge_ingest_database_errors_total{class="data"}"#).await? >= 2.0);
    assert!(daemon.ready().await, "a refused row is no stall");
    // Nothing is retried behind the scenes: the stream goes on.
    publisher.publish("city/water_level/kh-wl-0001", level(t + chrono::Duration::minutes(3), 1.7)).await?;
    wait_count(&setup.db, "SELECT count(*) FROM water_level", 5).await?;
    daemon.stop().await
}

/// Writes waiting behind a lock someone holds: with lock_timeout they fail,
/// are counted and retried, readiness drops after the configured time, and
/// the oldest unacknowledged message's age shows the stall; once the lock
/// goes, everything is stored and all is well again. (Without lock_timeout
/// the writes would just wait: no error, ready, a silent stall.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_stuck_behind_a_lock_are_seen_and_resume() -> anyhow::Result<()> {
    let setup = setup().await?;
    // (The test configuration has --not-ready-after-write-failures-s 1.)
    let extra = ["--db-lock-timeout-ms", "300", "--db-ddl-lock-timeout-ms", "100"];
    let daemon = InProcessDaemon::start(config(&setup, "locked", &extra)?).await?;
    let mut holder = setup.db.client().await?;
    let held = holder.transaction().await?;
    held.batch_execute("LOCK TABLE water_level IN ACCESS EXCLUSIVE MODE").await?;

    let t = base_time();
    let mut publisher = Publisher::connect(setup.broker.port(), "locked-publisher").await?;
    for i in 0..20 {
        publisher.publish("city/water_level/kh-wl-0001", level(t + chrono::Duration::seconds(i), 1.0)).await?;
    }
    publisher.wait_acked(Duration::from_secs(10)).await?;
    let http = daemon.http;
    eventually("not ready while writes fail", Duration::from_secs(15), || async {
        let (status, body) = http_get(http, "/readyz").await?;
        Ok((status == 503).then_some(body))
    })
    .await
    .map(|body| assert!(body.contains(r#""database":false"#), "{body}"))?;
    assert!(metric(http, r#"citygauge_ingest_database_errors_total{class="transient"}"#).await? >= 1.0);
    assert!(metric(http, "citygauge_ingest_oldest_unacked_age_seconds").await? >= 1.0);
    assert_eq!(metric(http, "citygauge_ingest_readings_stored_total").await?, 0.0);

    held.rollback().await?;
    wait_count(&setup.db, "SELECT count(*) FROM water_level", 20).await?;
    eventually("ready and acknowledged again", Duration::from_secs(15), || async {
        let ready = daemon.ready().await;
        let age = metric(http, "citygauge_ingest_oldest_unacked_age_seconds").await?;
        Ok((ready && age == 0.0).then_some(()))
    })
    .await?;
    daemon.stop().await
}

/// A writer the database refuses for good (here: its role may not insert)
/// stops the daemon with a message naming the task and the cause; the
/// message it could not store is not acknowledged, and a daemon that can
/// store it gets it from the broker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_stopped_by_a_fatal_error_stops_the_daemon_naming_both() -> anyhow::Result<()> {
    let setup = setup().await?;
    let role = format!("ingest_{}", setup.db.name);
    setup
        .db
        .client()
        .await?
        .batch_execute(&format!(
            "CREATE ROLE {role} LOGIN;
             GRANT CREATE, USAGE ON SCHEMA public TO {role};
             GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {role};
             GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO {role};
             REVOKE INSERT ON water_level FROM {role};"
        ))
        .await?;
    let url = format!("{} user={role}", setup.db.url.replace("user=postgres", ""));
    let mut limited = citygauge_testkit::ingest_config(&setup.broker.url(), &url, "fatal", &[])?;
    limited.device_profiles = toml::from_str(common::PROFILES)?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let http: SocketAddr = listener.local_addr()?;
    let shutdown = CancellationToken::new();
    let _guard = shutdown.clone().drop_guard();
    let running = tokio::spawn(citygauge_ingest::run(limited, listener, shutdown.clone()));
    citygauge_testkit::wait_ready(http).await?;

    let mut publisher = Publisher::connect(setup.broker.port(), "fatal-publisher").await?;
    publisher.publish("city/water_level/kh-wl-0001", level(base_time(), 1.5)).await?;
    let result = tokio::time::timeout(Duration::from_secs(20), running).await.expect("the daemon stops by itself")?;
    let message = result.expect_err("a fatal error stops the daemon").to_string();
    assert!(message.contains("writer task") && message.contains("insufficient privilege"), "{message}");
    assert!(message.contains("42501"), "{message}");
    assert_eq!(setup.db.count("SELECT count(*) FROM water_level").await?, 0);

    let daemon = InProcessDaemon::start(config(&setup, "fatal", &[])?).await?;
    wait_count(&setup.db, "SELECT count(*) FROM water_level", 1).await?;
    daemon.stop().await
}

/// PostgreSQL stalls (SIGSTOP: no error, no answer) while messages keep
/// coming. Shutdown still ends within `shutdown_timeout_s` and a little, and
/// nothing acknowledged is lost: after the stall a new daemon stores every
/// message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_is_bounded_when_the_database_stalls() -> anyhow::Result<()> {
    let cluster = Cluster::start().await?;
    let broker = Broker::start().await?;
    let mut config = citygauge_testkit::ingest_config(&broker.url(), &cluster.url(), "stall", &[])?;
    config.shutdown_timeout_s = 2;
    let daemon = InProcessDaemon::start(config).await?;
    let t = base_time();
    let mut publisher = Publisher::connect(broker.port(), "stall-publisher").await?;
    let publish = |from: i64, to: i64| -> Vec<(String, String)> {
        (from..to)
            .map(|i| {
                (format!("city/water_level/st-wl-{:02}", i % 10), level(t + chrono::Duration::seconds(i / 10), 1.0))
            })
            .collect()
    };
    for (topic, payload) in publish(0, 100) {
        publisher.publish(&topic, payload).await?;
    }
    publisher.wait_acked(Duration::from_secs(10)).await?;
    eventually("the first readings stored", Duration::from_secs(30), || async {
        let n = citygauge_testkit::count(&cluster.url(), "SELECT count(*) FROM water_level").await?;
        Ok((n == 100).then_some(()))
    })
    .await?;

    // The postmaster first (it then forks no new backend), then every
    // backend (each is its own process group). A backend that ended between
    // the listing and its signal needs no stalling, so only the postmaster's
    // signal must succeed.
    let postmaster = cluster.postgres.pid().expect("running");
    let signal = |sig: &str, pid: u32| Command::new("kill").arg(sig).arg("--").arg(pid.to_string()).status();
    assert!(signal("-STOP", postmaster)?.success());
    let pids = postgres_processes(postmaster)?;
    for &pid in &pids[1..] {
        signal("-STOP", pid)?;
    }
    let resumed = scopeguard(move || {
        for &pid in &pids {
            let _ = signal("-CONT", pid);
        }
    });
    for (topic, payload) in publish(100, 200) {
        publisher.publish(&topic, payload).await?;
    }
    publisher.wait_acked(Duration::from_secs(10)).await?;
    let http = daemon.http;
    eventually("the stalled messages received", Duration::from_secs(10), || async {
        Ok((metric(http, "citygauge_ingest_messages_received_total").await? >= 200.0).then_some(()))
    })
    .await?;
    tokio::time::sleep(Duration::from_millis(300)).await;

    let started = Instant::now();
    daemon.stop().await?;
    let took = started.elapsed();
    assert!(took < Duration::from_secs(2 + 3), "shutdown took {took:?} with shutdown_timeout_s = 2");

    drop(resumed);
    let daemon =
        InProcessDaemon::start(citygauge_testkit::ingest_config(&broker.url(), &cluster.url(), "stall", &[])?).await?;
    eventually("every message stored after the stall", Duration::from_secs(30), || async {
        let n = citygauge_testkit::count(&cluster.url(), "SELECT count(*) FROM water_level").await?;
        Ok((n == 200).then_some(()))
    })
    .await?;
    daemon.stop().await
}
