//! The control room and the public map in a real headless Chromium (Debian's
//! `chromium`, driven by playwright-core from the page's own npm packages):
//! the demo city on the map, a reading published over MQTT shown without a
//! reload, a click opening a chart with data, and screenshots of both views
//! in `target/test-artifacts/`.
//!
//! Everything is real: PostgreSQL with the demo city imported, Mosquitto,
//! the ingest daemon and the query service in-process, the page built by
//! `citygauge_stack::ensure_web_built` (what `dev` uses, so `cargo test`
//! alone works and rebuilds only when the sources changed). Skipped, with a
//! message, when Chromium is missing unless `CITYGAUGE_REQUIRE_BROWSER` is
//! set; then it is installed from Debian's packages (`deploy/test.sh` sets it).

mod common;

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use citygauge_domain::registry::file::{self, SensorRecord};
use citygauge_testkit::{
    city, database, ingest_config, query_config, Broker, InProcessDaemon, InProcessQuery, Publisher,
};
use common::browser::{artifacts_dir, built_page, chromium, run_script};

/// The sensor that gets the distinctive reading, and the reading.
const SENSOR: &str = "kh-fd-0001";
const FIELD: &str = "depth_cm";
const VALUE: f64 = 87.5;
/// Registered as pending (being commissioned): only the control room shows it.
const PENDING: &str = "kh-fd-9001";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_room_and_public_map_in_chromium() -> anyhow::Result<()> {
    let Some(chromium) = chromium("the browser test")? else {
        return Ok(());
    };
    let (page_dir, dist) = built_page().await?;

    // The platform: database with the demo city, broker, daemon, query service.
    let db = database().await?;
    let store = city::demo_city(&db.url).await?;
    let pending = format!(
        r#"{{"type":"FeatureCollection","features":[{{"type":"Feature","geometry":{{"type":"Point","coordinates":[120.3105,22.6392]}},
        "properties":{{"id":"{PENDING}","kind":"flood_depth","name":"Juemin Rd sensor (commissioning)","district":"Sanmin","status":"pending"}}}}]}}"#
    );
    store.import_sensors(&file::parse("pending.geojson", pending.as_bytes())?).await?;
    drop(store);
    let records = file::parse("demo-city.geojson", &std::fs::read(city::DEMO_CITY)?)?;
    let broker = Broker::start().await?;
    let daemon = InProcessDaemon::start(ingest_config(&broker.url(), &db.url, "browser-test", &[])?).await?;

    // A believable city before the page opens: one recent reading per
    // sensor, six hours of history for the sensor whose chart is opened.
    let mut publisher = Publisher::connect(broker.port(), "browser-test-publisher").await?;
    let now = chrono::Utc::now();
    let city = city_snapshot(&records, now - chrono::Duration::minutes(5));
    for (topic, payload) in &city {
        publisher.publish(topic, payload.as_bytes()).await?;
    }
    let history: Vec<String> = (1..=36)
        .map(|i| {
            let ts = now - chrono::Duration::minutes(10 * (37 - i));
            format!(r#"{{"ts":"{}","depth_cm":{}}}"#, ts.to_rfc3339(), (i as f64 / 6.0).floor())
        })
        .collect();
    publisher.publish(&format!("city/flood_depth/{SENSOR}"), format!("[{}]", history.join(","))).await?;
    publisher.wait_acked(Duration::from_secs(60)).await?;
    let stored = format!("SELECT count(*) FROM flood_depth WHERE sensor_id = '{SENSOR}'");
    citygauge_testkit::eventually("the history to be stored", Duration::from_secs(60), || async {
        Ok((db.count(&stored).await? >= 36).then_some(()))
    })
    .await?;

    let mut config = query_config(&db.url, &[])?;
    config.web_dir = dist;
    let query = InProcessQuery::start(config).await?;

    let artifacts = artifacts_dir();
    let outcome = drive_browser(&page_dir, &chromium, &query.url(""), &artifacts, &mut publisher).await;

    query.stop().await?;
    daemon.stop().await?;
    outcome?;
    for shot in ["control-room.png", "public.png"] {
        let size = std::fs::metadata(artifacts.join(shot)).with_context(|| format!("screenshot {shot}"))?.len();
        assert!(size > 10_000, "{shot} is only {size} bytes");
    }
    Ok(())
}

/// Runs `tests/browser.mjs`; publishes the distinctive reading when it asks.
async fn drive_browser(
    page_dir: &Path,
    chromium: &Path,
    base: &str,
    artifacts: &Path,
    publisher: &mut Publisher,
) -> anyhow::Result<()> {
    let value = VALUE.to_string();
    let env = [
        ("CITYGAUGE_URL", base),
        ("CITYGAUGE_SENSOR", SENSOR),
        ("CITYGAUGE_FIELD", FIELD),
        ("CITYGAUGE_VALUE", value.as_str()),
        ("CITYGAUGE_PENDING", PENDING),
    ];
    run_script(page_dir, "tests/browser.mjs", &env, artifacts, chromium, async |line: &str| {
        if line != "citygauge-browser: publish" {
            return Ok(None);
        }
        let payload = format!(r#"{{"ts":"{}","{FIELD}":{VALUE}}}"#, chrono::Utc::now().to_rfc3339());
        publisher.publish(&format!("city/flood_depth/{SENSOR}"), payload).await?;
        publisher.wait_acked(Duration::from_secs(10)).await?;
        Ok(Some("published"))
    })
    .await
}

/// One canonical reading per sensor at `ts`, varied deterministically so the
/// map shows every colour: rivers at each warning level, wet roads, every
/// air category, lamps on, off and faulty.
fn city_snapshot(records: &[SensorRecord], ts: chrono::DateTime<chrono::Utc>) -> Vec<(String, String)> {
    let ts = ts.to_rfc3339();
    records
        .iter()
        .enumerate()
        .filter(|(_, r)| r.id != SENSOR)
        .map(|(i, r)| {
            let pick = |options: &[f64]| options[i % options.len()];
            let kind = r.kind.as_str();
            let t = |key: &str| r.thresholds.get(key).and_then(|v| v.as_f64());
            let body = match kind {
                "rainfall" => format!(r#""rain_mm":{},"interval_s":600"#, pick(&[0.0, 0.0, 0.0, 0.5, 2.0, 0.0, 8.0])),
                "water_level" => {
                    let level = match (t("warning_3_m"), t("warning_2_m"), t("warning_1_m"), t("high_m")) {
                        (Some(w3), Some(w2), Some(w1), _) => pick(&[
                            w3 * 0.6,
                            w3 * 0.8,
                            w3 * 0.7,
                            (w3 + w2) / 2.0,
                            w3 * 0.75,
                            w3 * 0.65,
                            (w2 + w1) / 2.0,
                        ]),
                        (_, _, _, Some(high)) => high * pick(&[0.3, 0.4, 0.5, 0.35, 0.45, 1.1, 0.4, 0.3, 0.5]),
                        _ => pick(&[0.4, 0.6, 0.8, 0.5]),
                    };
                    format!(r#""level_m":{level:.2}"#)
                }
                "flood_depth" => {
                    format!(r#""depth_cm":{}"#, pick(&[0.0, 0.0, 0.0, 0.0, 4.0, 0.0, 0.0, 0.0, 0.0, 14.0, 0.0]))
                }
                "air_quality" => {
                    let pm2_5 = pick(&[8.0, 12.0, 15.0, 20.0, 30.0, 10.0, 14.0, 38.0, 9.0]);
                    format!(r#""pm2_5_ugm3":{pm2_5},"pm10_ugm3":{}"#, pm2_5 * 1.8)
                }
                _ => match i % 60 {
                    0 => r#""lamp_on":false,"power_w":0,"fault":"E12""#.to_owned(),
                    1 | 2 => r#""lamp_on":false,"power_w":0"#.to_owned(),
                    _ => r#""lamp_on":true,"power_w":92"#.to_owned(),
                },
            };
            (format!("city/{kind}/{}", r.id), format!(r#"{{"ts":"{ts}",{body}}}"#))
        })
        .collect()
}
