//! Helpers of the city-rule tests (streetlights, air, sewers): registry
//! entries, readings and a run through the engine, all I/O-free.
#![allow(dead_code)]

use chrono::{DateTime, Duration, FixedOffset, TimeZone, Utc};
use citygauge_alerts::engine::{self, Engine};
use citygauge_alerts::model::{Change, Decision, Observation, RuleId, Sensor};
use citygauge_alerts::{Input, RuleSet};
use citygauge_domain::{Kind, QualityLevel};
use serde_json::{json, Map, Value};

/// Taiwan time (UTC+8), the rule set's default zone.
pub fn taiwan() -> FixedOffset {
    FixedOffset::east_opt(8 * 3600).unwrap()
}

/// A local (Taiwan) time.
pub fn local(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
    taiwan().with_ymd_and_hms(y, mo, d, h, mi, 0).unwrap().with_timezone(&Utc)
}

pub fn sensor(id: &str, kind: Kind, subkind: Option<&str>, district: &str, lon: f64, lat: f64) -> Sensor {
    Sensor {
        id: id.into(),
        kind: Some(kind),
        subkind: subkind.map(str::to_string),
        name: Some(id.to_uppercase()),
        name_zh: None,
        district: Some(district.into()),
        lon: Some(lon),
        lat: Some(lat),
        thresholds: Map::new(),
        installation: Map::new(),
        expected_interval_s: 1800,
    }
}

/// A lamp in Kaohsiung's Lingya district (22.62 N, 120.31 E).
pub fn lamp(id: &str, rated_w: Option<f64>) -> Sensor {
    let mut s = sensor(id, Kind::Streetlight, None, "Lingya", 120.3100, 22.6200);
    if let Some(w) = rated_w {
        s.installation.insert("rated_power_w".into(), json!(w));
    }
    s.installation.insert("pole_id".into(), json!(format!("LY-{id}")));
    s.installation.insert("address".into(), json!("高雄市苓雅區四維三路"));
    s.expected_interval_s = 3600;
    s
}

pub fn air_station(id: &str, district: &str) -> Sensor {
    let mut s = sensor(id, Kind::AirQuality, None, district, 120.30, 22.63);
    s.expected_interval_s = 1800;
    s
}

pub fn sewer(id: &str, district: &str, sewer_type: &str) -> Sensor {
    let mut s = sensor(id, Kind::WaterLevel, Some("sewer"), district, 121.30, 24.99);
    s.installation.insert("sewer_type".into(), json!(sewer_type));
    s.expected_interval_s = 3600;
    s
}

pub fn rain_gauge(id: &str, district: &str) -> Sensor {
    let mut s = sensor(id, Kind::Rainfall, Some("interval"), district, 121.31, 24.98);
    s.expected_interval_s = 600;
    s
}

pub fn obs(sensor_id: &str, kind: Kind, ts: DateTime<Utc>, values: Value) -> Observation {
    let values = match values {
        Value::Object(m) => m,
        _ => Map::new(),
    };
    Observation {
        sensor_id: sensor_id.into(),
        kind,
        ts,
        quality: QualityLevel::Good,
        quality_reasons: Vec::new(),
        values,
    }
}

/// The same reading, flagged by ingest.
pub fn flagged(mut o: Observation, reason: &str) -> Observation {
    o.quality = QualityLevel::Suspect;
    o.quality_reasons = vec![reason.into()];
    o
}

pub fn engine(sensors: Vec<Sensor>) -> Engine {
    Engine::new(RuleSet::default(), sensors)
}

/// Runs readings (sorted by time here) through the engine with a one-minute clock.
pub fn run(engine: &mut Engine, mut readings: Vec<Observation>) -> Vec<Decision> {
    readings.sort_by(|a, b| a.ts.cmp(&b.ts).then_with(|| a.sensor_id.cmp(&b.sensor_id)));
    engine::run(engine, readings.into_iter().map(Input::Reading), 60)
}

/// The decisions of `rule`, as (change, grade, level).
pub fn timeline(decisions: &[Decision], rule: RuleId) -> Vec<(Change, u8, String)> {
    decisions.iter().filter(|d| d.key.rule == rule).map(|d| (d.change, d.state.grade, d.state.level.clone())).collect()
}

/// The decisions of `rule` that notify (raise, escalate, de-escalate, resolve).
pub fn notified(decisions: &[Decision], rule: RuleId) -> Vec<(Change, u8)> {
    decisions.iter().filter(|d| d.key.rule == rule && d.change.notifies()).map(|d| (d.change, d.state.grade)).collect()
}

/// Deterministic jitter in [-1, 1] (no RNG: tests must replay exactly).
pub fn wiggle(i: i64) -> f64 {
    let x = (i.wrapping_mul(2_654_435_761) % 1000) as f64 / 1000.0;
    2.0 * x.abs() - 1.0
}

/// Every `step` from `start` to `end` (exclusive).
pub fn every(start: DateTime<Utc>, end: DateTime<Utc>, step: Duration) -> impl Iterator<Item = (i64, DateTime<Utc>)> {
    let mut t = start;
    let mut i = 0;
    std::iter::from_fn(move || {
        if t >= end {
            return None;
        }
        let out = (i, t);
        t += step;
        i += 1;
        Some(out)
    })
}
