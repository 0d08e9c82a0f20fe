//! Issue 8, through a real broker and database: the spike test survives a
//! restart. A daemon seeds it from each sensor's newest stored good value, so
//! a wild first reading after a restart is flagged instead of trusted.

mod common;

use std::time::Duration;

use chrono::{DateTime, DurationRound, Utc};
use citygauge_testkit::{InProcessDaemon, Publisher};
use common::{config, setup, wait_count};
use serde_json::json;

type Row = (String, DateTime<Utc>, String, Option<Vec<String>>);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spike_right_after_a_restart_is_flagged() -> anyhow::Result<()> {
    let setup = setup().await?;
    let db = &setup.db;
    let now = Utc::now().duration_trunc(chrono::Duration::minutes(1))?;
    let at = |minutes: i64| now + chrono::Duration::minutes(minutes);

    // Before the restart: good values of a river gauge and a street flood sensor.
    let daemon = InProcessDaemon::start(config(&setup, "spike-seed", &[])?).await?;
    let mut publisher = Publisher::connect(setup.broker.port(), "spike-seed-publisher").await?;
    for (minute, level, depth) in [(-30, 2.0, 5.0), (-20, 2.05, 6.0)] {
        let reading = json!({"ts": at(minute).to_rfc3339(), "level_m": level});
        publisher.publish("city/water_level/kh-wl-0001", reading.to_string()).await?;
        let reading = json!({"ts": at(minute).to_rfc3339(), "depth_cm": depth});
        publisher.publish("city/flood_depth/kh-fd-0007", reading.to_string()).await?;
    }
    publisher.wait_acked(Duration::from_secs(10)).await?;
    wait_count(db, "SELECT count(*) FROM water_level WHERE quality = 'good'", 2).await?;
    wait_count(db, "SELECT count(*) FROM flood_depth WHERE quality = 'good'", 2).await?;
    daemon.stop().await?;

    // After it, the first reading of each is wild (10 minutes on, 5 m and
    // 2 m higher); the next ones are back where the stored values were.
    let daemon = InProcessDaemon::start(config(&setup, "spike-seed", &[])?).await?;
    for (minute, level, depth) in [(-10, 7.05, 206.0), (-9, 2.06, 6.5)] {
        let reading = json!({"ts": at(minute).to_rfc3339(), "level_m": level});
        publisher.publish("city/water_level/kh-wl-0001", reading.to_string()).await?;
        let reading = json!({"ts": at(minute).to_rfc3339(), "depth_cm": depth});
        publisher.publish("city/flood_depth/kh-fd-0007", reading.to_string()).await?;
    }
    publisher.wait_acked(Duration::from_secs(10)).await?;
    wait_count(db, "SELECT count(*) FROM water_level", 4).await?;
    wait_count(db, "SELECT count(*) FROM flood_depth", 4).await?;

    let client = db.client().await?;
    let rows = client
        .query(
            "SELECT 'level', ts, quality, quality_reasons FROM water_level
             UNION ALL SELECT 'depth', ts, quality, quality_reasons FROM flood_depth
             ORDER BY 1, 2",
            &[],
        )
        .await?;
    let got: Vec<Row> = rows.iter().map(|r| (r.get(0), r.get(1), r.get(2), r.get(3))).collect();
    let good = |what: &str, minute| (what.to_string(), at(minute), "good".to_string(), None);
    let spike = |what: &str, minute, column: &str| {
        (what.to_string(), at(minute), "suspect".to_string(), Some(vec![format!("spike:{column}")]))
    };
    assert_eq!(
        got,
        [
            good("depth", -30),
            good("depth", -20),
            spike("depth", -10, "depth_cm"),
            good("depth", -9),
            good("level", -30),
            good("level", -20),
            spike("level", -10, "level_m"),
            good("level", -9),
        ]
    );
    daemon.stop().await?;
    Ok(())
}
