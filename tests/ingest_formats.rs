//! Every payload format in, exact normalised rows out, through a real broker
//! and a real database.

mod common;

use std::time::Duration;

use chrono::{DateTime, Utc};
use citygauge_testkit::{InProcessDaemon, Publisher};
use common::{base_time, config, setup, wait_count};
use serde_json::json;

type RainRow = (String, DateTime<Utc>, f64, Option<i32>, String, Option<Vec<String>>);
type AirRow = (String, DateTime<Utc>, Option<f64>, Option<f64>, Option<f64>, Option<f64>);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_format_becomes_exact_rows() -> anyhow::Result<()> {
    let setup = setup().await?;
    let started = Utc::now();
    let daemon = InProcessDaemon::start(config(&setup, "formats", &[])?).await?;
    let t0 = base_time();
    let at = |minutes: i64| t0 + chrono::Duration::minutes(minutes);
    let local = |t: DateTime<Utc>| t.with_timezone(&chrono_tz::Asia::Taipei).format("%Y-%m-%d %H:%M:%S").to_string();
    let mut publisher = Publisher::connect(setup.broker.port(), "formats-publisher").await?;

    // Canonical JSON: one reading with an offset, an array with epoch seconds and a local time.
    publisher
        .publish("city/water_level/kh-wl-0001", json!({"ts": at(0).to_rfc3339(), "level_m": 2.41}).to_string())
        .await?;
    publisher
        .publish(
            "city/water_level/kh-wl-0001",
            json!([{"ts": at(1).timestamp(), "level_m": 2.45}, {"ts": local(at(2)), "level_m": 2.5}]).to_string(),
        )
        .await?;
    // Tipping-bucket counts (0.2 mm bucket in the registry) and a cumulative counter with a reset.
    publisher
        .publish(
            "city/rainfall/kh-rg-0001",
            json!({"ts": at(0).timestamp_millis(), "rain_tips": 7, "interval_s": 600}).to_string(),
        )
        .await?;
    for (minute, counter) in [(0, 100.0), (10, 112.5), (20, 3.0)] {
        publisher
            .publish(
                "city/rainfall/kh-rg-0002",
                json!({"ts": at(minute).to_rfc3339(), "rain_counter_mm": counter}).to_string(),
            )
            .await?;
        // Counter values of one gauge are read in order, as a logger sends them.
        publisher.wait_acked(Duration::from_secs(10)).await?;
        wait_count(&setup.db, "SELECT count(*) FROM rain_counter_state WHERE sensor_id = 'kh-rg-0002'", 1).await?;
    }
    // SenML (RFC 8428): base name and time, relative times, units to convert, two sensors.
    publisher
        .publish(
            "city/senml/gw-7",
            json!([
                {"bn": "kh-aq-0002/", "bt": at(0).timestamp(), "bu": "ug/m3", "n": "pm2_5", "v": 35.2},
                {"n": "pm10", "v": 51},
                {"n": "temp", "u": "Cel", "v": 27.5},
                {"n": "rh", "u": "%RH", "v": 81},
                {"bn": "kh-wl-0001/", "n": "level", "u": "cm", "t": 180, "v": 262}
            ])
            .to_string(),
        )
        .await?;
    // ChirpStack v4 uplink, depth in millimetres.
    publisher
        .publish(
            "application/17c82e96/device/70b3d57ed0001234/event/up",
            json!({
                "deduplicationId": "3ac7e3c4-4401-4b8d-9386-a5c902f9202d", "time": at(0).to_rfc3339(),
                "deviceInfo": {"tenantName": "Kaohsiung", "applicationName": "flood", "deviceProfileName": "flood-radar-v1",
                               "deviceName": "fd-7", "devEui": "70b3d57ed0001234", "tags": {}},
                "devAddr": "00189440", "fCnt": 10, "fPort": 1, "data": "AHs=",
                "object": {"water_depth_mm": 123, "battery_v": 3.61},
                "rxInfo": [{"gatewayId": "0016c001f153a14c", "rssi": -36, "snr": 10.5}]
            })
            .to_string(),
        )
        .await?;
    // The Things Stack v3 uplink, uppercase EUI, Fahrenheit.
    publisher
        .publish(
            "v3/kh-air@kaohsiung/devices/aq-1/up",
            json!({
                "end_device_ids": {"device_id": "aq-1", "application_ids": {"application_id": "kh-air"}, "dev_eui": "A840410001810001"},
                "received_at": at(0).to_rfc3339(),
                "uplink_message": {"f_port": 2, "f_cnt": 25, "frm_payload": "AQI=", "decoded_payload": {"pm25": 12, "env": {"temp_f": 86}},
                                   "rx_metadata": [{"gateway_ids": {"gateway_id": "gw-1"}, "rssi": -35, "snr": 5.2}],
                                   "received_at": at(1).to_rfc3339()}
            })
            .to_string(),
        )
        .await?;
    // A streetlight with a fault.
    publisher
        .publish(
            "city/streetlight/kh-sl-000001",
            json!({"ts": at(0).to_rfc3339(), "lamp_on": false, "dim_pct": 0, "power_w": 0.0, "energy_kwh": 1523.4,
                   "voltage_v": 221.5, "current_a": 0.0, "fault": "lamp_failure"})
            .to_string(),
        )
        .await?;
    publisher.wait_acked(Duration::from_secs(10)).await?;

    let db = &setup.db;
    wait_count(db, "SELECT count(*) FROM water_level", 4).await?;
    wait_count(db, "SELECT count(*) FROM rainfall", 3).await?;
    wait_count(db, "SELECT count(*) FROM air_quality", 2).await?;
    wait_count(db, "SELECT count(*) FROM flood_depth", 1).await?;
    wait_count(db, "SELECT count(*) FROM streetlight", 1).await?;
    let client = db.client().await?;

    let rows = client.query("SELECT ts, level_m, quality FROM water_level ORDER BY ts", &[]).await?;
    let got: Vec<(DateTime<Utc>, f64, String)> = rows.iter().map(|r| (r.get(0), r.get(1), r.get(2))).collect();
    let good = |t, v: f64| (t, v, "good".to_string());
    assert_eq!(got, [good(at(0), 2.41), good(at(1), 2.45), good(at(2), 2.5), good(at(3), 2.62)]);

    let rows = client
        .query(
            "SELECT sensor_id, ts, rain_mm, interval_s, quality, quality_reasons FROM rainfall ORDER BY sensor_id, ts",
            &[],
        )
        .await?;
    let got: Vec<RainRow> = rows.iter().map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5))).collect();
    assert_eq!(
        got,
        [
            ("kh-rg-0001".into(), at(0), 1.4, Some(600), "good".into(), None),
            ("kh-rg-0002".into(), at(10), 12.5, Some(600), "good".into(), None),
            ("kh-rg-0002".into(), at(20), 3.0, Some(600), "suspect".into(), Some(vec!["counter_reset".into()])),
        ]
    );

    let rows = client
        .query("SELECT sensor_id, ts, pm2_5_ugm3, pm10_ugm3, temp_c, rh_pct FROM air_quality ORDER BY sensor_id", &[])
        .await?;
    let got: Vec<AirRow> = rows.iter().map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5))).collect();
    assert_eq!(
        got,
        [
            ("kh-aq-0001".into(), at(1), Some(12.0), None, Some(30.0), None),
            ("kh-aq-0002".into(), at(0), Some(35.2), Some(51.0), Some(27.5), Some(81.0)),
        ]
    );

    let row = client.query_one("SELECT sensor_id, ts, depth_cm FROM flood_depth", &[]).await?;
    assert_eq!(
        (row.get::<_, String>(0), row.get::<_, DateTime<Utc>>(1), row.get::<_, f64>(2)),
        ("kh-fd-0007".into(), at(0), 12.3)
    );

    let row = client
        .query_one("SELECT lamp_on, dim_pct, power_w, energy_kwh, voltage_v, current_a, fault FROM streetlight", &[])
        .await?;
    assert_eq!(
        (
            row.get::<_, bool>(0),
            row.get::<_, f64>(1),
            row.get::<_, f64>(2),
            row.get::<_, f64>(3),
            row.get::<_, f64>(4),
            row.get::<_, f64>(5),
            row.get::<_, String>(6)
        ),
        (false, 0.0, 0.0, 1523.4, 221.5, 0.0, "lamp_failure".into())
    );
    assert_eq!(db.count("SELECT count(*) FROM rejected_messages").await?, 0);
    assert_eq!(db.count("SELECT count(*) FROM sensors WHERE status = 'pending'").await?, 0);
    daemon.stop().await?;
    // When each sensor was heard (the platform's clock, not the readings')
    // is recorded at the latest when the daemon stops.
    let row = client.query_one("SELECT first_seen, last_seen FROM sensors WHERE id = 'kh-wl-0001'", &[]).await?;
    let (first, last): (DateTime<Utc>, DateTime<Utc>) = (row.get(0), row.get(1));
    assert!(started <= first && first <= last && last <= Utc::now(), "{started} <= {first} <= {last}");
    assert_eq!(db.count("SELECT count(*) FROM sensors WHERE last_seen IS NULL").await?, 0, "every sensor reported");
    Ok(())
}
