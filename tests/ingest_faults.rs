//! Nothing acknowledged is lost: the daemon SIGKILLed, PostgreSQL restarted,
//! the broker restarted, all mid-stream; and two daemons splitting one shared
//! subscription. Every published reading is stored exactly once. Each fault
//! is tried under both protocol versions the daemon speaks (MQTT 5 and
//! 3.1.1), whose sessions, flow control and redelivery differ.

mod common;

use std::time::Duration;

use chrono::{DateTime, Utc};
use citygauge_testkit::{database, wait_ready, BinaryDaemon, Broker, Cluster, InProcessDaemon, Publisher};
use common::{base_time, free_addr, publish_paced, wait_count};

const SENSORS: usize = 50;

/// Message `i`: one water level, unique (sensor_id, ts) across the stream.
fn message(t0: DateTime<Utc>, i: usize) -> (String, String) {
    let sensor = format!("ld-wl-{:04}", i % SENSORS);
    let ts = t0 + chrono::Duration::seconds((i / SENSORS) as i64);
    (
        format!("city/water_level/{sensor}"),
        format!(r#"{{"ts":"{}","level_m":{}}}"#, ts.to_rfc3339(), 1.0 + (i % 7) as f64 / 10.0),
    )
}

/// Publishes `range` at about 2,000 messages/s.
async fn publish_range(
    publisher: &mut Publisher,
    t0: DateTime<Utc>,
    range: std::ops::Range<usize>,
) -> anyhow::Result<()> {
    publish_paced(publisher, range, Duration::from_millis(50), |i| message(t0, i)).await
}

/// The `--mqtt-protocol` values, one test of each fault per version.
const V5: &str = "5";
const V311: &str = "3.1.1";

/// Runs `$body(protocol)` as one test per protocol version.
macro_rules! both_protocols {
    ($body:ident: $v5:ident, $v311:ident) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $v5() -> anyhow::Result<()> {
            $body(V5).await
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $v311() -> anyhow::Result<()> {
            $body(V311).await
        }
    };
}

both_protocols!(
    daemon_killed_mid_stream: daemon_killed_mid_stream_loses_nothing_v5,
    daemon_killed_mid_stream_loses_nothing_v311
);
both_protocols!(
    postgres_restarted_mid_stream: postgres_restarted_mid_stream_loses_nothing_v5,
    postgres_restarted_mid_stream_loses_nothing_v311
);
both_protocols!(
    broker_restarted_mid_stream: broker_restarted_mid_stream_loses_nothing_v5,
    broker_restarted_mid_stream_loses_nothing_v311
);
both_protocols!(
    two_daemons_split: two_daemons_split_a_shared_subscription_v5,
    two_daemons_split_a_shared_subscription_v311
);

/// SIGKILLed while it holds messages it has received and not acknowledged
/// (the database is locked, so nothing commits): the broker must deliver
/// those again to the next daemon, which stores them. Checked, not assumed:
/// the killed daemon reported them unacknowledged, and the next one received
/// them again (a kill after every ack would fail here, not pass).
async fn daemon_killed_mid_stream(protocol: &str) -> anyhow::Result<()> {
    let db = database().await?;
    let broker = Broker::start().await?;
    let binary = std::path::Path::new(env!("CARGO_BIN_EXE_citygauge"));
    let http = free_addr()?;
    let args: Vec<String> = [
        "--mqtt-url",
        &broker.url(),
        "--mqtt-protocol",
        protocol,
        "--database-url",
        &db.url,
        "--mqtt-client-id",
        "killed",
        "--http-listen",
        &http.to_string(),
        "--flush-interval-ms",
        "50",
        "--db-lock-timeout-ms",
        "300",
        "--db-ddl-lock-timeout-ms",
        "100",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut daemon = BinaryDaemon::start(binary, &args)?;
    wait_ready(http).await?;
    let (t0, total) = (base_time(), 3_000);
    let mut publisher = Publisher::connect(broker.port(), "killed-publisher").await?;
    publish_range(&mut publisher, t0, 0..1_200).await?;
    wait_count(&db, "SELECT count(*) FROM water_level", 1_200).await?;

    // Nothing commits from here on, so nothing is acknowledged.
    let mut holder = db.client().await?;
    let lock = holder.transaction().await?;
    lock.batch_execute("LOCK TABLE water_level IN ACCESS EXCLUSIVE MODE").await?;
    publish_range(&mut publisher, t0, 1_200..2_000).await?;
    let held = citygauge_testkit::eventually("the daemon to hold 800 unacked", Duration::from_secs(30), || async {
        let unacked = citygauge_testkit::metric(http, "citygauge_ingest_unacked_messages").await?;
        Ok((unacked >= 800.0).then_some(unacked))
    })
    .await?;
    daemon.kill()?; // SIGKILL: no flush, no acks
    lock.rollback().await?;

    let mut daemon = BinaryDaemon::start(binary, &args)?;
    wait_ready(http).await?;
    publish_range(&mut publisher, t0, 2_000..total).await?;
    publisher.wait_acked(Duration::from_secs(30)).await?;
    wait_count(&db, "SELECT count(*) FROM water_level", total as i64).await?;
    // Exactly once: the key forbids duplicates, and nothing more arrives late.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(db.count("SELECT count(*) FROM water_level").await?, total as i64);
    assert_eq!(db.count("SELECT count(DISTINCT sensor_id) FROM water_level").await?, SENSORS as i64);
    let received = citygauge_testkit::metric(http, "citygauge_ingest_messages_received_total").await?;
    assert!(
        received >= held + (total - 2_000) as f64,
        "the {held} unacked messages were redelivered: the restarted daemon received only {received}"
    );
    assert!(daemon.terminate()?.success(), "graceful stop after a restart");
    Ok(())
}

async fn postgres_restarted_mid_stream(protocol: &str) -> anyhow::Result<()> {
    let mut cluster = Cluster::start().await?;
    let broker = Broker::start().await?;
    let config =
        citygauge_testkit::ingest_config(&broker.url(), &cluster.url(), "pg-restart", &["--mqtt-protocol", protocol])?;
    let daemon = InProcessDaemon::start(config).await?;
    let (t0, total) = (base_time(), 3_000);
    let mut publisher = Publisher::connect(broker.port(), "pg-restart-publisher").await?;
    publish_range(&mut publisher, t0, 0..1_000).await?;
    tokio::task::block_in_place(|| cluster.postgres.stop())?;
    // The database is down while the city keeps sending.
    publish_range(&mut publisher, t0, 1_000..2_000).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(!daemon.ready().await, "not ready while the database is down");
    tokio::task::block_in_place(|| cluster.postgres.restart())?;
    publish_range(&mut publisher, t0, 2_000..total).await?;
    publisher.wait_acked(Duration::from_secs(30)).await?;
    let url = cluster.url();
    let stored =
        citygauge_testkit::eventually("every reading stored after the restart", Duration::from_secs(60), || async {
            let n = citygauge_testkit::count(&url, "SELECT count(*) FROM water_level").await.unwrap_or(-1);
            Ok((n >= total as i64).then_some(n))
        })
        .await?;
    assert_eq!(stored, total as i64);
    assert!(daemon.metric("citygauge_ingest_database_errors_total").await? > 0.0, "the outage was seen");
    daemon.stop().await
}

async fn broker_restarted_mid_stream(protocol: &str) -> anyhow::Result<()> {
    let db = database().await?;
    let mut broker = Broker::start().await?;
    let config =
        citygauge_testkit::ingest_config(&broker.url(), &db.url, "broker-restart", &["--mqtt-protocol", protocol])?;
    let daemon = InProcessDaemon::start(config).await?;
    let (t0, total) = (base_time(), 3_000);
    let mut publisher = Publisher::connect(broker.port(), "broker-restart-publisher").await?;
    publish_range(&mut publisher, t0, 0..1_500).await?;
    // Queued and in-flight messages survive in the broker's persistence file.
    tokio::task::block_in_place(|| broker.mosquitto.restart())?;
    publish_range(&mut publisher, t0, 1_500..total).await?;
    publisher.wait_acked(Duration::from_secs(60)).await?;
    wait_count(&db, "SELECT count(*) FROM water_level", total as i64).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(db.count("SELECT count(*) FROM water_level").await?, total as i64);
    assert!(daemon.metric("citygauge_ingest_broker_reconnects_total").await? >= 1.0);
    daemon.stop().await
}

async fn two_daemons_split(protocol: &str) -> anyhow::Result<()> {
    let db = database().await?;
    let broker = Broker::start().await?;
    let shared = ["--mqtt-shared-group", "ingest", "--mqtt-protocol", protocol];
    let a =
        InProcessDaemon::start(citygauge_testkit::ingest_config(&broker.url(), &db.url, "ingest-a", &shared)?).await?;
    let b =
        InProcessDaemon::start(citygauge_testkit::ingest_config(&broker.url(), &db.url, "ingest-b", &shared)?).await?;
    let (t0, total) = (base_time(), 2_000);
    let mut publisher = Publisher::connect(broker.port(), "shared-publisher").await?;
    publish_range(&mut publisher, t0, 0..total).await?;
    publisher.wait_acked(Duration::from_secs(30)).await?;
    wait_count(&db, "SELECT count(*) FROM water_level", total as i64).await?;
    let (got_a, got_b) = (
        a.metric("citygauge_ingest_messages_received_total").await?,
        b.metric("citygauge_ingest_messages_received_total").await?,
    );
    assert_eq!(got_a + got_b, total as f64, "each message went to one daemon");
    assert!(got_a > 0.0 && got_b > 0.0, "both did work: {got_a} + {got_b}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(db.count("SELECT count(*) FROM water_level").await?, total as i64);
    a.stop().await?;
    b.stop().await
}
