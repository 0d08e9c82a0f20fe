//! The demo city for query tests: its registry imported the way
//! `citygauge sensors import` does it, and readings written through the
//! store's own writer (so the change stream announces them).

use anyhow::Context;
use chrono::{DateTime, Utc};
use citygauge_domain::registry::file;
use citygauge_domain::{AirQuality, Quality, Reading, Streetlight, Values};
use citygauge_store::{Batch, Store, StoreConfig};

/// The demo city's registry file (2,375 sensors, 18 districts).
pub const DEMO_CITY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../deploy/demo-city.geojson");

/// A store on `url` with the demo city's registry imported.
pub async fn demo_city(url: &str) -> anyhow::Result<Store> {
    let store = Store::new(StoreConfig::new(url))?;
    let bytes = std::fs::read(DEMO_CITY).with_context(|| DEMO_CITY.to_string())?;
    let records = file::parse("demo-city.geojson", &bytes)?;
    store.import_sensors(&records).await.context("importing the demo city")?;
    Ok(store)
}

/// Writes `readings` as one batch (one transaction, one set of notifications).
pub async fn write(store: &Store, readings: Vec<Reading>) -> anyhow::Result<()> {
    store.write(&Batch { readings, ..Batch::default() }).await.context("writing readings")?;
    Ok(())
}

pub fn reading(sensor_id: &str, ts: DateTime<Utc>, values: Values) -> Reading {
    Reading { sensor_id: sensor_id.into(), ts, values, quality: Quality::default() }
}

pub fn level(sensor_id: &str, ts: DateTime<Utc>, level_m: f64) -> Reading {
    reading(sensor_id, ts, Values::WaterLevel { level_m })
}

pub fn depth(sensor_id: &str, ts: DateTime<Utc>, depth_cm: f64) -> Reading {
    reading(sensor_id, ts, Values::FloodDepth { depth_cm })
}

pub fn rain(sensor_id: &str, ts: DateTime<Utc>, rain_mm: f64, interval_s: i32) -> Reading {
    reading(sensor_id, ts, Values::Rainfall { rain_mm, interval_s: Some(interval_s) })
}

pub fn air(sensor_id: &str, ts: DateTime<Utc>, pm2_5: f64, pm10: f64) -> Reading {
    let values = AirQuality { pm2_5_ugm3: Some(pm2_5), pm10_ugm3: Some(pm10), ..AirQuality::default() };
    reading(sensor_id, ts, Values::AirQuality(values))
}

pub fn lamp(sensor_id: &str, ts: DateTime<Utc>, on: bool, power_w: f64, energy_kwh: f64) -> Reading {
    let values = Streetlight {
        lamp_on: Some(on),
        power_w: Some(power_w),
        energy_kwh: Some(energy_kwh),
        ..Streetlight::default()
    };
    reading(sensor_id, ts, Values::Streetlight(values))
}
