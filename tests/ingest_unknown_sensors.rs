//! Issue 8, unknown sensors, through the real daemon binary: with
//! `unknown_sensors = reject` nothing is stored or registered for an unknown
//! id and every rejection is recorded; with `pending`, `max_pending_sensors`
//! holds under packs naming thousands of new ids; and the registry follows
//! the database while the daemon runs (a sensor registered, or activated by
//! an UPDATE by hand), without a restart.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use citygauge_testkit::{metric, wait_ready, BinaryDaemon, Publisher};
use common::{base_time, setup, wait_count, Setup};
use serde_json::json;

fn start_daemon(setup: &Setup, client_id: &str, extra: &[&str]) -> anyhow::Result<(BinaryDaemon, SocketAddr)> {
    let binary = std::path::Path::new(env!("CARGO_BIN_EXE_citygauge"));
    let http = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let mut args: Vec<String> = [
        "--mqtt-url",
        &setup.broker.url(),
        "--database-url",
        &setup.db.url,
        "--mqtt-client-id",
        client_id,
        "--http-listen",
        &http.to_string(),
        "--flush-interval-ms",
        "20",
        "--registry-refresh-s",
        "1",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(extra.iter().map(|s| s.to_string()));
    Ok((BinaryDaemon::start(binary, &args)?, http))
}

/// A SenML pack of one water level for each id.
fn pack(ids: impl IntoIterator<Item = String>, ts: DateTime<Utc>) -> String {
    let records: Vec<_> = ids
        .into_iter()
        .map(|id| json!({"bn": format!("{id}/"), "bt": ts.timestamp(), "n": "level", "v": 1.5}))
        .collect();
    serde_json::Value::Array(records).to_string()
}

fn level(ts: DateTime<Utc>) -> String {
    json!({"ts": ts.to_rfc3339(), "level_m": 1.5}).to_string()
}

/// Publishes a reading of `sensor` (a new second each try) until one is
/// stored: the registry refresh has taken the database's change in.
async fn stored_after_refresh(setup: &Setup, publisher: &mut Publisher, sensor: &str) -> anyhow::Result<()> {
    let t0 = base_time();
    let sql = format!("SELECT count(*) FROM water_level WHERE sensor_id = '{sensor}'");
    for attempt in 0..60 {
        publisher
            .publish(&format!("city/water_level/{sensor}"), level(t0 + chrono::Duration::seconds(attempt)))
            .await?;
        publisher.wait_acked(Duration::from_secs(10)).await?;
        tokio::time::sleep(Duration::from_millis(500)).await;
        if setup.db.count(&sql).await? > 0 {
            return Ok(());
        }
    }
    anyhow::bail!("no reading of {sensor} stored 30 s after it was registered: the registry did not follow")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reject_policy_stores_nothing_for_unknown_sensors_and_follows_the_registry() -> anyhow::Result<()> {
    let setup = setup().await?;
    let db = &setup.db;
    // A retired sensor an operator will put back into service; the registry
    // was last changed yesterday (so only updated_at can tell a change).
    db.client()
        .await?
        .batch_execute(
            "INSERT INTO sensors (id, kind, status) VALUES ('kh-wl-0300', 'water_level', 'retired');
             UPDATE sensors SET updated_at = now() - interval '1 day';",
        )
        .await?;
    let (_daemon, http) = start_daemon(&setup, "unknown-reject", &["--unknown-sensors", "reject"])?;
    wait_ready(http).await?;
    let mut publisher = Publisher::connect(setup.broker.port(), "unknown-reject-publisher").await?;
    let t0 = base_time();

    publisher.publish("city/water_level/zz-wl-0001", level(t0)).await?;
    let mixed = pack(["kh-wl-0001".to_string(), "zz-wl-0002".to_string()], t0);
    publisher.publish("city/senml/gw-1", mixed).await?;
    publisher.publish("city/water_level/kh-wl-0300", level(t0)).await?;
    publisher.wait_acked(Duration::from_secs(10)).await?;

    wait_count(db, "SELECT count(*) FROM rejected_messages WHERE reason = 'unknown_sensor'", 2).await?;
    wait_count(db, "SELECT count(*) FROM rejected_messages WHERE reason = 'retired_sensor'", 1).await?;
    wait_count(db, "SELECT count(*) FROM water_level WHERE sensor_id = 'kh-wl-0001'", 1).await?;
    assert_eq!(db.count("SELECT count(*) FROM sensors WHERE status = 'pending'").await?, 0, "nothing registered");
    assert_eq!(db.count("SELECT count(*) FROM water_level WHERE sensor_id <> 'kh-wl-0001'").await?, 0);
    let detail: String = db
        .client()
        .await?
        .query_one("SELECT detail FROM rejected_messages WHERE topic = 'city/senml/gw-1'", &[])
        .await?
        .get(0);
    assert!(detail.contains("zz-wl-0002") && detail.contains("unknown_sensors"), "{detail}");
    let counted = metric(http, "citygauge_ingest_rejected_messages_total{reason=\"unknown_sensor\"}").await?;
    assert_eq!(counted, 2.0);

    // While the daemon runs: a sensor registered (as an import would) and a
    // retired one activated by an UPDATE by hand, which names no updated_at.
    let client = db.client().await?;
    client
        .execute("INSERT INTO sensors (id, kind, status) VALUES ('zz-wl-0001', 'water_level', 'active')", &[])
        .await?;
    client.execute("UPDATE sensors SET status = 'active' WHERE id = 'kh-wl-0300'", &[]).await?;
    stored_after_refresh(&setup, &mut publisher, "zz-wl-0001").await?;
    stored_after_refresh(&setup, &mut publisher, "kh-wl-0300").await?;
    // Still nothing registered for the ids nobody registered.
    assert_eq!(db.count("SELECT count(*) FROM sensors WHERE id = 'zz-wl-0002'").await?, 0);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn packs_of_thousands_of_new_ids_stop_at_max_pending_sensors() -> anyhow::Result<()> {
    const CAP: i64 = 50;
    let setup = setup().await?;
    let db = &setup.db;
    let (_daemon, http) = start_daemon(&setup, "unknown-cap", &["--max-pending-sensors", &CAP.to_string()])?;
    wait_ready(http).await?;
    let mut publisher = Publisher::connect(setup.broker.port(), "unknown-cap-publisher").await?;
    let t0 = base_time();
    let pending = "SELECT count(*) FROM sensors WHERE status = 'pending'";

    // One pack naming 3,000 new sensors, then another naming 1,000 more.
    publisher.publish("city/senml/gw-1", pack((0..3_000).map(|i| format!("fl-wl-{i:05}")), t0)).await?;
    publisher.publish("city/senml/gw-2", pack((3_000..4_000).map(|i| format!("fl-wl-{i:05}")), t0)).await?;
    publisher.wait_acked(Duration::from_secs(20)).await?;
    wait_count(db, "SELECT count(*) FROM rejected_messages WHERE reason = 'pending_sensors_full'", 2).await?;
    assert_eq!(db.count(pending).await?, CAP, "the registry stops at the cap");
    assert_eq!(db.count("SELECT count(*) FROM water_level").await?, CAP, "readings of the registered ones kept");
    let counted = metric(http, "citygauge_ingest_rejected_messages_total{reason=\"pending_sensors_full\"}").await?;
    assert_eq!(counted, 2.0);
    let gauge = "citygauge_ingest_pending_sensors ";
    citygauge_testkit::eventually("the pending-sensors gauge at the cap", Duration::from_secs(10), || async {
        Ok((metric(http, gauge).await? == CAP as f64).then_some(()))
    })
    .await?;

    // An hour later, an operator activates ten pending sensors by hand (the
    // UPDATE names no updated_at): room for ten more, once the registry
    // refresh has seen it.
    let client = db.client().await?;
    client.batch_execute("UPDATE sensors SET updated_at = now() - interval '1 hour'").await?;
    tokio::time::sleep(Duration::from_secs(2)).await; // past a refresh that could read them
    client
        .execute(
            "UPDATE sensors SET status = 'active'
              WHERE id IN (SELECT id FROM sensors WHERE status = 'pending' ORDER BY id LIMIT 10)",
            &[],
        )
        .await?;
    citygauge_testkit::eventually("the gauge after the activation", Duration::from_secs(15), || async {
        Ok((metric(http, gauge).await? == (CAP - 10) as f64).then_some(()))
    })
    .await?;
    publisher.publish("city/senml/gw-3", pack((5_000..5_020).map(|i| format!("fl-wl-{i:05}")), t0)).await?;
    publisher.wait_acked(Duration::from_secs(10)).await?;
    wait_count(db, "SELECT count(*) FROM rejected_messages WHERE reason = 'pending_sensors_full'", 3).await?;
    assert_eq!(db.count(pending).await?, CAP);
    assert_eq!(db.count("SELECT count(*) FROM sensors WHERE id LIKE 'fl-wl-050%'").await?, 10);
    Ok(())
}
