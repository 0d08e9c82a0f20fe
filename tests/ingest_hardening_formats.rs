//! Issue 8, through a real broker and database: SenML as devices send it (on
//! their own topic, RFC 8428 URN names, `ut`, the MQTT 5 content type), one
//! wild value that must not
//! silence a gauge, timestamps outside the window, and identities a topic
//! does not vouch for.

mod common;

use std::time::Duration;

use chrono::{DateTime, DurationRound, Utc};
use citygauge_testkit::{InProcessDaemon, Publisher};
use common::{base_time, config, setup, wait_count};
use serde_json::json;

type RainRow = (String, DateTime<Utc>, f64, Option<i32>, String);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn senml_urns_wild_values_and_bad_identities_end_to_end() -> anyhow::Result<()> {
    let setup = setup().await?;
    let daemon =
        InProcessDaemon::start(config(&setup, "hardening", &["--senml-sources", "city/senml/gw-1=kh-aq-*"])?).await?;
    let t0 = base_time();
    let at = |minutes: i64| t0 + chrono::Duration::minutes(minutes);
    let mut publisher = Publisher::connect(setup.broker.port(), "hardening-publisher").await?;
    let db = &setup.db;

    // A rain gauge configured for SenML publishes to its own topic, naming
    // itself by URN, the interval as RFC 8428's update time.
    let pack = json!([{"bn": "urn:dev:city:kh-rg-0001:", "bt": at(0).timestamp(), "n": "rain", "u": "mm", "v": 1.5, "ut": 600}]);
    publisher.publish("city/rainfall/kh-rg-0001", pack.to_string()).await?;
    // A gateway: an air sensor named by its MAC (the registry's dev_eui), and a
    // record for a river gauge the gateway is not bound to.
    let pack = json!([
        {"bn": "urn:dev:mac:a840410001810001:", "bt": at(0).timestamp(), "n": "temp", "u": "Cel", "v": 27.5},
        {"n": "humidity", "u": "%RH", "v": 80},
        {"bn": "kh-wl-0001/", "n": "level", "v": 3.0}
    ]);
    publisher.publish("city/senml/gw-1", pack.to_string()).await?;
    // An air sensor publishing to its own topic with the MQTT 5 content type,
    // its records naming no sensor or field: the unit tells the column. (No
    // `n`/`bn`, so only the content type says this is SenML.)
    let pack = json!([{"bt": at(0).timestamp(), "u": "Cel", "v": 21.5}]).to_string();
    let port = setup.broker.port().to_string();
    let published = std::process::Command::new("mosquitto_pub")
        .args(["-h", "127.0.0.1", "-p", &port, "-V", "mqttv5", "-q", "1", "-i", "hardening-ct"])
        .args(["-t", "city/air_quality/kh-aq-0002", "-m", &pack])
        .args(["-D", "publish", "content-type", "application/senml+json"])
        .output()?;
    assert!(published.status.success(), "mosquitto_pub: {}", String::from_utf8_lossy(&published.stderr));
    // A ChirpStack uplink whose body names another device than its topic.
    let uplink = json!({"time": at(0).to_rfc3339(),
        "deviceInfo": {"devEui": "70b3d57ed0001234", "deviceProfileName": "flood-radar-v1"},
        "object": {"water_depth_mm": 55}});
    publisher.publish("application/1/device/a84041000181c8f2/event/up", uplink.to_string()).await?;

    // A logger whose clock jumped: far in the future, a level and a counter.
    publisher.publish("city/water_level/kh-wl-0001", r#"{"ts": "2099-01-01T00:00:00Z", "level_m": 2.0}"#).await?;
    publisher
        .publish("city/rainfall/kh-rg-0002", r#"{"ts": "2099-01-01T00:00:00Z", "rain_counter_mm": 101.5}"#)
        .await?;
    publisher.wait_acked(Duration::from_secs(10)).await?;
    // The counter's genuine values after it still become rain.
    for (minute, counter) in [(0, 100.0), (10, 112.5)] {
        wait_count(db, "SELECT count(*) FROM rejected_messages WHERE reason = 'timestamp_out_of_window'", 2).await?;
        publisher
            .publish(
                "city/rainfall/kh-rg-0002",
                json!({"ts": at(minute).to_rfc3339(), "rain_counter_mm": counter}).to_string(),
            )
            .await?;
        publisher.wait_acked(Duration::from_secs(10)).await?;
        let sql = format!(
            "SELECT count(*) FROM rain_counter_state WHERE sensor_id = 'kh-rg-0002' AND ts = '{}'",
            at(minute).to_rfc3339()
        );
        wait_count(db, &sql, 1).await?;
    }

    // A fresh daemon's first value of a river gauge is wild and stamped 4
    // minutes ahead (inside the clock-drift tolerance); then ten genuine ones.
    let now = Utc::now().duration_trunc(chrono::Duration::minutes(1))?;
    let wild_ts = now + chrono::Duration::minutes(4);
    publisher
        .publish("city/water_level/kh-wl-0001", json!({"ts": wild_ts.to_rfc3339(), "level_m": 90.0}).to_string())
        .await?;
    for i in 0..10 {
        let ts = now - chrono::Duration::minutes(10 - i);
        let level = 2.0 + i as f64 * 0.01;
        publisher
            .publish("city/water_level/kh-wl-0001", json!({"ts": ts.to_rfc3339(), "level_m": level}).to_string())
            .await?;
    }
    publisher.wait_acked(Duration::from_secs(10)).await?;

    wait_count(db, "SELECT count(*) FROM water_level", 11).await?;
    wait_count(db, "SELECT count(*) FROM rainfall", 2).await?;
    wait_count(db, "SELECT count(*) FROM air_quality", 2).await?;
    wait_count(db, "SELECT count(*) FROM rejected_messages", 4).await?;
    let client = db.client().await?;

    let rows = client
        .query("SELECT sensor_id, ts, rain_mm, interval_s, quality FROM rainfall ORDER BY sensor_id, ts", &[])
        .await?;
    let got: Vec<RainRow> = rows.iter().map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4))).collect();
    assert_eq!(
        got,
        [
            ("kh-rg-0001".into(), at(0), 1.5, Some(600), "good".into()),
            ("kh-rg-0002".into(), at(10), 12.5, Some(600), "good".into()),
        ]
    );

    let rows = client.query("SELECT sensor_id, ts, temp_c, rh_pct FROM air_quality ORDER BY sensor_id", &[]).await?;
    let got: Vec<(String, DateTime<Utc>, f64, Option<f64>)> =
        rows.iter().map(|r| (r.get(0), r.get(1), r.get(2), r.get(3))).collect();
    assert_eq!(got, [("kh-aq-0001".into(), at(0), 27.5, Some(80.0)), ("kh-aq-0002".into(), at(0), 21.5, None)]);

    let rows = client.query("SELECT ts, level_m, quality FROM water_level ORDER BY ts", &[]).await?;
    let got: Vec<(DateTime<Utc>, f64, String)> = rows.iter().map(|r| (r.get(0), r.get(1), r.get(2))).collect();
    let suspect = got.iter().filter(|(ts, _, q)| *ts < wild_ts && q != "good").count();
    assert!(suspect <= 2, "one wild value marked {suspect} genuine readings suspect: {got:?}");
    assert!(got[7..10].iter().all(|(_, _, q)| q == "good"), "the gauge recovers: {got:?}");
    assert_eq!(got.last().map(|(ts, _, _)| *ts), Some(wild_ts));
    assert!(got.iter().all(|(ts, _, _)| ts.timestamp() < 4_000_000_000), "nothing stored in 2099");

    // Batches commit on concurrent writers: compare in a fixed order, not by id.
    let rows = client.query("SELECT topic, reason, detail FROM rejected_messages ORDER BY topic", &[]).await?;
    let got: Vec<(String, String, String)> = rows.iter().map(|r| (r.get(0), r.get(1), r.get(2))).collect();
    let reasons: Vec<(&str, &str)> = got.iter().map(|(t, r, _)| (t.as_str(), r.as_str())).collect();
    assert_eq!(
        reasons,
        [
            ("application/1/device/a84041000181c8f2/event/up", "identity_mismatch"),
            ("city/rainfall/kh-rg-0002", "timestamp_out_of_window"),
            ("city/senml/gw-1", "source_not_allowed"),
            ("city/water_level/kh-wl-0001", "timestamp_out_of_window"),
        ]
    );
    assert!(got[2].2.contains("kh-wl-0001") && got[2].2.contains("1 of 2 records"), "{}", got[2].2);
    assert!(got[3].2.contains("max_future_s"), "{}", got[3].2);

    let metric = |reason: &str| format!("citygauge_ingest_rejected_messages_total{{reason=\"{reason}\"}}");
    assert_eq!(daemon.metric(&metric("timestamp_out_of_window")).await?, 2.0);
    assert_eq!(daemon.metric(&metric("identity_mismatch")).await?, 1.0);
    assert_eq!(daemon.metric(&metric("source_not_allowed")).await?, 1.0);
    assert_eq!(daemon.metric(&metric("counter_out_of_order")).await?, 0.0);
    assert_eq!(db.count("SELECT count(*) FROM sensors WHERE status = 'pending'").await?, 0, "no URN became a sensor");
    daemon.stop().await?;
    Ok(())
}
