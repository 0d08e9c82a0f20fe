//! Shared set-up for the end-to-end tests: a database, a broker, a registry.

#![allow(dead_code)]

pub mod browser;
pub mod process;

use std::net::SocketAddr;
use std::time::Duration;

use chrono::{DateTime, DurationRound, Utc};
use citygauge_testkit::{database, Broker, Publisher, TestDatabase};

pub const REGISTRY: &str = r#"{"type": "FeatureCollection", "features": [
  {"type": "Feature", "geometry": {"type": "Point", "coordinates": [120.2991, 22.6394]},
   "properties": {"id": "kh-wl-0001", "kind": "water_level", "subkind": "river", "name": "Love River at Jianguo Bridge",
     "district": "Sanmin", "thresholds": {"warning_3_m": 2.0, "warning_2_m": 2.6, "warning_1_m": 3.1}}},
  {"type": "Feature", "geometry": {"type": "Point", "coordinates": [120.31, 22.65]},
   "properties": {"id": "kh-rg-0001", "kind": "rainfall", "subkind": "tipping_bucket", "installation": {"bucket_mm": 0.2}}},
  {"type": "Feature", "geometry": {"type": "Point", "coordinates": [120.32, 22.63]},
   "properties": {"id": "kh-rg-0002", "kind": "rainfall", "subkind": "counter"}},
  {"type": "Feature", "geometry": {"type": "Point", "coordinates": [120.33, 22.60]},
   "properties": {"id": "kh-fd-0007", "kind": "flood_depth", "dev_eui": "70b3d57ed0001234", "device_profile": "flood-radar-v1"}},
  {"type": "Feature", "geometry": {"type": "Point", "coordinates": [120.30, 22.62]},
   "properties": {"id": "kh-aq-0001", "kind": "air_quality", "dev_eui": "a840410001810001", "device_profile": "air-box-f"}},
  {"type": "Feature", "geometry": {"type": "Point", "coordinates": [120.30, 22.61]},
   "properties": {"id": "kh-aq-0002", "kind": "air_quality"}},
  {"type": "Feature", "geometry": {"type": "Point", "coordinates": [120.29, 22.64]},
   "properties": {"id": "kh-sl-000001", "kind": "streetlight"}}
]}"#;

pub const PROFILES: &str = r#"
[flood-radar-v1]
kind = "flood_depth"
[flood-radar-v1.fields]
water_depth_mm = { column = "depth_cm", unit = "mm" }

[air-box-f]
kind = "air_quality"
[air-box-f.fields]
pm25 = { column = "pm2_5_ugm3" }
"env.temp_f" = { column = "temp_c", unit = "degF" }
"#;

pub struct Setup {
    pub db: TestDatabase,
    pub broker: Broker,
}

/// A migrated database with the test registry, and a broker.
pub async fn setup() -> anyhow::Result<Setup> {
    let db = database().await?;
    let store = citygauge_store::Store::new(citygauge_store::StoreConfig::new(&db.url))?;
    let records = citygauge_domain::registry::file::parse("test.geojson", REGISTRY.as_bytes())?;
    store.import_sensors(&records).await?;
    let broker = Broker::start().await?;
    Ok(Setup { db, broker })
}

/// A daemon config for the setup, with the test device profiles.
pub fn config(setup: &Setup, client_id: &str, extra: &[&str]) -> anyhow::Result<citygauge_ingest::IngestConfig> {
    let mut config = citygauge_testkit::ingest_config(&setup.broker.url(), &setup.db.url, client_id, extra)?;
    config.device_profiles = toml::from_str(PROFILES)?;
    Ok(config)
}

/// A whole minute an hour ago: recent enough for today's partitions, old
/// enough to be no `future_ts`, and exact in every format.
pub fn base_time() -> DateTime<Utc> {
    (Utc::now() - chrono::Duration::hours(1)).duration_trunc(chrono::Duration::minutes(1)).unwrap()
}

/// Waits until `sql` (a count) reaches `want`.
pub async fn wait_count(db: &TestDatabase, sql: &str, want: i64) -> anyhow::Result<()> {
    let result = citygauge_testkit::eventually(sql, Duration::from_secs(30), || async {
        Ok((db.count(sql).await? >= want).then_some(()))
    })
    .await;
    match result {
        Ok(()) => Ok(()),
        Err(e) => Err(anyhow::anyhow!("{e}: count {}, wanted {want}", db.count(sql).await?)),
    }
}

/// A loopback address free when asked (a daemon's HTTP listener).
pub fn free_addr() -> anyhow::Result<SocketAddr> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

/// Publishes `message(i)` for every `i` of `range`, pausing `pause` after
/// every 100: a steady stream (100 per pause) rather than one burst.
pub async fn publish_paced(
    publisher: &mut Publisher,
    range: std::ops::Range<usize>,
    pause: Duration,
    message: impl Fn(usize) -> (String, String),
) -> anyhow::Result<()> {
    for i in range {
        let (topic, payload) = message(i);
        publisher.publish(&topic, payload).await?;
        if i % 100 == 99 {
            tokio::time::sleep(pause).await;
        }
    }
    Ok(())
}
