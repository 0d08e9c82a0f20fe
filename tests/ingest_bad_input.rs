//! Duplicates store once; bad input is kept with a reason while good traffic
//! keeps flowing; unknown sensors are kept and registered as pending.

mod common;

use std::time::Duration;

use citygauge_testkit::{InProcessDaemon, Publisher};
use common::{base_time, config, setup, wait_count};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicates_store_one_row() -> anyhow::Result<()> {
    let setup = setup().await?;
    let daemon = InProcessDaemon::start(config(&setup, "dups", &[])?).await?;
    let t = base_time();
    let mut publisher = Publisher::connect(setup.broker.port(), "dups-publisher").await?;
    let reading = json!({"ts": t.to_rfc3339(), "level_m": 1.75}).to_string();
    for _ in 0..3 {
        publisher.publish("city/water_level/kh-wl-0001", reading.clone()).await?;
    }
    // The same reading again, as SenML with the time in epoch seconds.
    publisher
        .publish("city/senml/gw", json!([{"n": "kh-wl-0001/level_m", "t": t.timestamp(), "v": 1.75}]).to_string())
        .await?;
    // And in a later batch, after the first ones committed.
    publisher.wait_acked(Duration::from_secs(10)).await?;
    wait_count(&setup.db, "SELECT count(*) FROM water_level", 1).await?;
    publisher.publish("city/water_level/kh-wl-0001", reading).await?;
    publisher
        .publish(
            "city/water_level/kh-wl-0001",
            json!({"ts": (t + chrono::Duration::minutes(1)).to_rfc3339(), "level_m": 1.8}).to_string(),
        )
        .await?;
    publisher.wait_acked(Duration::from_secs(10)).await?;
    wait_count(&setup.db, "SELECT count(*) FROM water_level", 2).await?;
    citygauge_testkit::eventually("all duplicates counted", Duration::from_secs(10), || async {
        Ok((daemon.metric("citygauge_ingest_duplicate_readings_total").await? >= 4.0).then_some(()))
    })
    .await?;
    assert_eq!(setup.db.count("SELECT count(*) FROM water_level").await?, 2);
    assert_eq!(setup.db.count("SELECT count(*) FROM rejected_messages").await?, 0);
    daemon.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_kept_with_a_reason_and_good_traffic_flows() -> anyhow::Result<()> {
    let setup = setup().await?;
    let daemon = InProcessDaemon::start(config(&setup, "bad", &[])?).await?;
    let t0 = base_time();
    let mut publisher = Publisher::connect(setup.broker.port(), "bad-publisher").await?;
    let garbage: Vec<u8> = vec![0xff, 0x00, 0xfe, 0x13, 0x37, 0x00];
    let oversized = format!("[{}]", vec![r#"{"level_m": 1}"#; 20_000].join(","));
    let bad: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "city/water_level/kh-wl-0001",
            b"{\"ts\": \"2026-11-22T08:00:00+08:00\", \"level_m\": ".to_vec(),
            "malformed_payload",
        ),
        ("city/water_level/kh-wl-0001", garbage.clone(), "malformed_payload"),
        ("city/water_level/kh-wl-0001", br#"{"level_m": "high"}"#.to_vec(), "invalid_value"),
        ("city/water_level/kh-wl-0001", br#"{"level": 2.1}"#.to_vec(), "unknown_field"),
        ("city/volcano/kh-wl-0001", br#"{"lava_m": 2}"#.to_vec(), "unknown_kind"),
        ("city/flood_depth/kh-wl-0001", br#"{"depth_cm": 2}"#.to_vec(), "kind_mismatch"),
        ("city/water_level/kh-wl-0001", oversized.clone().into_bytes(), "oversized"),
        ("city/senml/gw", br#"[{"n": "kh-wl-0001/level", "u": "Cel", "v": 3}]"#.to_vec(), "invalid_unit"),
        // Once a panic that stopped the pipeline: a relative time 300,000 years back.
        ("city/senml/gw", br#"[{"n": "kh-wl-0001/level", "v": 1, "t": -1e13}]"#.to_vec(), "invalid_timestamp"),
    ];
    // Good readings interleaved with the bad ones: none may be held up.
    let mut good = 0;
    for (i, (topic, payload, _)) in bad.iter().enumerate() {
        for j in 0..10 {
            let ts = t0 + chrono::Duration::seconds((i * 10 + j) as i64);
            publisher
                .publish("city/water_level/kh-wl-0001", json!({"ts": ts.to_rfc3339(), "level_m": 2.0}).to_string())
                .await?;
            good += 1;
        }
        publisher.publish(topic, payload.clone()).await?;
    }
    // An unknown sensor: kept, and registered for an operator to confirm.
    publisher
        .publish("city/flood_depth/kh-fd-0999", json!({"ts": t0.to_rfc3339(), "depth_cm": 4.5}).to_string())
        .await?;
    publisher.wait_acked(Duration::from_secs(10)).await?;

    wait_count(&setup.db, "SELECT count(*) FROM water_level", good).await?;
    wait_count(&setup.db, "SELECT count(*) FROM rejected_messages", bad.len() as i64).await?;
    wait_count(&setup.db, "SELECT count(*) FROM flood_depth WHERE sensor_id = 'kh-fd-0999'", 1).await?;

    let client = setup.db.client().await?;
    let rows = client
        .query("SELECT topic, reason, payload, payload_bytes, detail FROM rejected_messages ORDER BY id", &[])
        .await?;
    let mut got: Vec<(String, String)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    let mut want: Vec<(String, String)> = bad.iter().map(|(t, _, r)| (t.to_string(), r.to_string())).collect();
    got.sort();
    want.sort();
    assert_eq!(got, want);
    for row in &rows {
        let (reason, payload, size, detail): (String, Vec<u8>, i32, String) =
            (row.get(1), row.get(2), row.get(3), row.get(4));
        assert!(!detail.is_empty(), "{reason} has a detail");
        if payload.starts_with(&[0xff]) {
            assert_eq!(payload, garbage, "bytes are kept as sent");
        }
        if reason == "oversized" {
            assert_eq!(size as usize, oversized.len());
            assert_eq!(payload.len(), 64 * 1024, "kept up to the bound");
            assert!(detail.contains("over the 262144 byte limit"), "{detail}");
        }
    }
    let pending = client.query_one("SELECT kind, status FROM sensors WHERE id = 'kh-fd-0999'", &[]).await?;
    assert_eq!((pending.get::<_, String>(0), pending.get::<_, String>(1)), ("flood_depth".into(), "pending".into()));

    assert_eq!(daemon.metric("citygauge_ingest_rejected_messages_total{reason=\"malformed_payload\"}").await?, 2.0);
    assert_eq!(daemon.metric("citygauge_ingest_rejected_messages_total{reason=\"oversized\"}").await?, 1.0);
    assert!(daemon.ready().await, "bad input does not make the daemon unready");
    daemon.stop().await
}
