//! Issue 8, `rejected_messages` and rain counters, through the real daemon
//! binary, broker and database: old rejected rows are deleted (in batches),
//! a flood of identical bad messages is sampled per topic and minute (and
//! still acknowledged and counted), a redelivered counter value is a
//! duplicate rather than a rejection, and rejections made inside the store
//! are counted like any other.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use citygauge_testkit::{eventually, metric, wait_ready, BinaryDaemon, Publisher, TestDatabase};
use common::{base_time, free_addr, setup, wait_count, Setup};
use serde_json::json;

/// `citygauge ingest` against the setup, ready, with its metrics address.
async fn start(setup: &Setup, client_id: &str, extra: &[&str]) -> anyhow::Result<(BinaryDaemon, SocketAddr)> {
    let binary = std::path::Path::new(env!("CARGO_BIN_EXE_citygauge"));
    let http = free_addr()?.to_string();
    let (broker, db) = (setup.broker.url(), setup.db.url.clone());
    let mut args =
        vec!["--mqtt-url", &broker, "--database-url", &db, "--mqtt-client-id", client_id, "--http-listen", &http];
    if !extra.contains(&"--flush-interval-ms") {
        args.extend(["--flush-interval-ms", "20"]);
    }
    args.extend_from_slice(extra);
    // Quiet unless asked for (the child's output is not captured).
    let log = std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into());
    args.extend(["--log", &log]);
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let daemon = BinaryDaemon::start(binary, &args)?;
    let http = http.parse()?;
    wait_ready(http).await?;
    Ok((daemon, http))
}

/// Inserts `n` rejected rows received `age` ago.
async fn insert_rejected(db: &TestDatabase, n: i64, age: &str, topic: &str) -> anyhow::Result<()> {
    let sql = format!(
        "INSERT INTO rejected_messages (received_at, topic, payload, payload_bytes, reason, detail)
         SELECT now() - interval '{age}', '{topic}', '\\x00'::bytea, 1, 'malformed_payload', 'test'
           FROM generate_series(1, {n})"
    );
    db.client().await?.batch_execute(&sql).await?;
    Ok(())
}

async fn wait_at_most(db: &TestDatabase, sql: &str, want: i64) -> anyhow::Result<()> {
    eventually(sql, Duration::from_secs(30), || async { Ok((db.count(sql).await? <= want).then_some(())) }).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_deletes_old_rejected_rows_only() -> anyhow::Result<()> {
    let setup = setup().await?;
    let db = &setup.db;
    // More than one delete batch (5,000) already old at start...
    insert_rejected(db, 12_000, "10 days", "city/old/start").await?;
    insert_rejected(db, 3, "6 days 23 hours", "city/kept/start").await?;
    let (mut daemon, _) =
        start(&setup, "retention", &["--rejected-retention-days", "7", "--maintenance-interval-s", "1"]).await?;
    wait_at_most(db, "SELECT count(*) FROM rejected_messages WHERE topic LIKE 'city/old/%'", 0).await?;
    // ...and rows that grow old while it runs, removed by the periodic task.
    insert_rejected(db, 40, "8 days", "city/old/running").await?;
    insert_rejected(db, 2, "1 hour", "city/kept/running").await?;
    wait_at_most(db, "SELECT count(*) FROM rejected_messages WHERE topic LIKE 'city/old/%'", 0).await?;
    assert_eq!(db.count("SELECT count(*) FROM rejected_messages WHERE topic LIKE 'city/kept/%'").await?, 5);
    assert!(daemon.terminate()?.success());

    // 0 keeps them for ever.
    insert_rejected(db, 4, "400 days", "city/ancient").await?;
    let (mut daemon, _) =
        start(&setup, "retention", &["--rejected-retention-days", "0", "--maintenance-interval-s", "1"]).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(db.count("SELECT count(*) FROM rejected_messages").await?, 9);
    assert!(daemon.terminate()?.success());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_bad_messages_is_sampled_counted_and_acknowledged() -> anyhow::Result<()> {
    let setup = setup().await?;
    let db = &setup.db;
    let extra = ["--rejected-samples-per-topic-per-minute", "3"];
    let (mut daemon, http) = start(&setup, "sampling", &extra).await?;
    let mut publisher = Publisher::connect(setup.broker.port(), "sampling-publisher").await?;
    for _ in 0..20 {
        publisher.publish("city/water_level/kh-wl-0001", "not json").await?;
    }
    for _ in 0..5 {
        publisher.publish("city/flood_depth/kh-fd-0007", "not json either").await?;
    }
    publisher.wait_acked(Duration::from_secs(10)).await?;
    let rejected = "citygauge_ingest_rejected_messages_total";
    let unsampled = "citygauge_ingest_rejected_unsampled_total";
    eventually("every rejection counted", Duration::from_secs(30), || async {
        Ok((metric(http, rejected).await? >= 25.0 && metric(http, unsampled).await? >= 19.0).then_some(()))
    })
    .await?;
    // Every message handled (acknowledged), stored or not.
    eventually("every message acknowledged", Duration::from_secs(30), || async {
        Ok((metric(http, "citygauge_ingest_unacked_messages ").await? == 0.0).then_some(()))
    })
    .await?;
    let rows = db
        .client()
        .await?
        .query("SELECT topic, count(*) FROM rejected_messages GROUP BY topic ORDER BY topic", &[])
        .await?;
    let kept: Vec<(String, i64)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(kept, [("city/flood_depth/kh-fd-0007".into(), 3), ("city/water_level/kh-wl-0001".into(), 3)]);
    assert_eq!(metric(http, rejected).await?, 25.0);
    assert_eq!(metric(http, unsampled).await?, 19.0);
    assert!(daemon.terminate()?.success());

    // Sampled-out messages were acknowledged: a new daemon on the same
    // session gets none of them again, only what comes next.
    let (mut daemon, http) = start(&setup, "sampling", &extra).await?;
    let ts = base_time().to_rfc3339();
    publisher.publish("city/water_level/kh-wl-0001", json!({"ts": ts, "level_m": 1.5}).to_string()).await?;
    wait_count(db, "SELECT count(*) FROM water_level", 1).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(metric(http, rejected).await?, 0.0, "nothing redelivered");
    assert_eq!(db.count("SELECT count(*) FROM rejected_messages").await?, 6);
    assert!(daemon.terminate()?.success());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redelivered_counter_value_is_a_duplicate_and_store_rejections_are_counted() -> anyhow::Result<()> {
    let setup = setup().await?;
    let db = &setup.db;
    let (mut daemon, http) = start(&setup, "counters", &[]).await?;
    let mut publisher = Publisher::connect(setup.broker.port(), "counters-publisher").await?;
    let t0 = base_time();
    let send = |minute: i64, counter: f64| {
        let ts = (t0 + chrono::Duration::minutes(minute)).to_rfc3339();
        json!({"ts": ts, "rain_counter_mm": counter}).to_string()
    };
    let topic = "city/rainfall/kh-rg-0002";
    for minute in [0, 10, 20] {
        publisher.publish(topic, send(minute, 100.0 + minute as f64 / 4.0)).await?;
        // One at a time: each commits before the next, as a gauge's do.
        let sql = format!(
            "SELECT count(*) FROM rain_counter_state WHERE ts = '{}'",
            (t0 + chrono::Duration::minutes(minute)).to_rfc3339()
        );
        wait_count(db, &sql, 1).await?;
    }
    wait_count(db, "SELECT count(*) FROM rainfall", 2).await?;
    // Redeliveries of values already processed (the first one, which made no
    // row of its own, and one that made a row) after a newer one committed,
    // then a value genuinely late (never seen, older than the state).
    for (minute, counter) in [(10, 102.5), (0, 100.0), (5, 101.0)] {
        publisher.publish(topic, send(minute, counter)).await?;
    }
    publisher.publish(topic, send(30, 110.0)).await?;
    wait_count(db, "SELECT count(*) FROM rainfall", 3).await?;
    wait_count(db, "SELECT count(*) FROM rejected_messages", 1).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;

    let rows = db.client().await?.query("SELECT reason, payload FROM rejected_messages", &[]).await?;
    let got: Vec<(String, serde_json::Value)> =
        rows.iter().map(|r| (r.get(0), serde_json::from_slice(r.get(1)).unwrap_or_default())).collect();
    assert_eq!(got.len(), 1, "only the genuinely late value is rejected: {got:?}");
    assert_eq!(got[0].0, "counter_out_of_order");
    assert_eq!(got[0].1["rain_counter_mm"], 101.0);
    let counted = metric(http, "citygauge_ingest_rejected_messages_total{reason=\"counter_out_of_order\"}").await?;
    assert_eq!(counted, 1.0, "a rejection made in the store is counted");
    assert_eq!(metric(http, "citygauge_ingest_duplicate_readings_total").await?, 2.0);
    let rain: Vec<(f64, Option<i32>)> = db
        .client()
        .await?
        .query("SELECT rain_mm, interval_s FROM rainfall ORDER BY ts", &[])
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(rain, [(2.5, Some(600)), (2.5, Some(600)), (5.0, Some(600))]);
    assert!(daemon.terminate()?.success());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gauges_counter_values_on_concurrent_writers_are_never_out_of_order() -> anyhow::Result<()> {
    let setup = setup().await?;
    let db = &setup.db;
    // One value per batch, four writers: batches of one gauge race each other.
    let extra = ["--writers", "4", "--batch-max-rows", "1", "--flush-interval-ms", "1"];
    let (mut daemon, http) = start(&setup, "counter-order", &extra).await?;
    let mut publisher = Publisher::connect(setup.broker.port(), "counter-order-publisher").await?;
    let t0 = base_time() - chrono::Duration::hours(2);
    let values = 300;
    for i in 0..values {
        let ts = (t0 + chrono::Duration::seconds(20 * i)).to_rfc3339();
        let payload = json!({"ts": ts, "rain_counter_mm": 100.0 + i as f64 * 0.5}).to_string();
        publisher.publish("city/rainfall/kh-rg-0002", payload).await?;
    }
    publisher.wait_acked(Duration::from_secs(30)).await?;
    wait_count(db, "SELECT count(*) FROM rainfall", values - 1).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(db.count("SELECT count(*) FROM rejected_messages").await?, 0);
    assert_eq!(metric(http, "citygauge_ingest_rejected_messages_total").await?, 0.0);
    let total: f64 = db.client().await?.query_one("SELECT sum(rain_mm) FROM rainfall", &[]).await?.get(0);
    assert!((total - (values - 1) as f64 * 0.5).abs() < 1e-6, "every interval once: {total}");
    assert!(daemon.terminate()?.success());
    Ok(())
}
