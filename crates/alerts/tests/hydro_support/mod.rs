//! Builders shared by the hydrological engine tests: sensors, readings and
//! a run of the engine the way replay and the live evaluator drive it.
#![allow(dead_code)]

use chrono::{DateTime, Duration, TimeZone, Utc};
use citygauge_alerts::engine::{self, Input};
use citygauge_alerts::{Change, Decision, Engine, Observation, RuleId, RuleSet, Sensor};
use citygauge_domain::{Kind, QualityLevel};
use serde_json::{json, Map, Value};

pub fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 9, 1, 0, 0, 0).unwrap()
}

pub fn at_min(minutes: i64) -> DateTime<Utc> {
    t0() + Duration::minutes(minutes)
}

fn sensor(id: &str, kind: Kind, subkind: &str, district: &str, interval_s: i64) -> Sensor {
    Sensor {
        id: id.into(),
        kind: Some(kind),
        subkind: Some(subkind.into()),
        name: Some(format!("{id} station")),
        district: Some(district.into()),
        lon: Some(120.3),
        lat: Some(22.6),
        expected_interval_s: interval_s,
        ..Sensor::default()
    }
}

/// A river gauge with WRA levels 2.0 (3, yellow) / 2.6 (2, orange) / 3.1 (1, red), levee crest 3.6 m.
pub fn river(id: &str) -> Sensor {
    let mut s = sensor(id, Kind::WaterLevel, "river", "Sanmin", 600);
    for (k, v) in [("warning_3_m", 2.0), ("warning_2_m", 2.6), ("warning_1_m", 3.1), ("levee_crest_m", 3.6)] {
        s.thresholds.insert(k.into(), json!(v));
    }
    s
}

pub fn rain_gauge(id: &str, district: &str, interval_s: i64) -> Sensor {
    sensor(id, Kind::Rainfall, "interval", district, interval_s)
}

pub fn road(id: &str, river_station: Option<&str>) -> Sensor {
    let mut s = sensor(id, Kind::FloodDepth, "road", "Sanmin", 60);
    if let Some(r) = river_station {
        s.installation.insert("river_station".into(), json!(r));
    }
    s
}

pub fn reading(id: &str, kind: Kind, ts: DateTime<Utc>, values: &[(&str, f64)]) -> Observation {
    let mut map = Map::new();
    for (k, v) in values {
        map.insert((*k).into(), Value::from(*v));
    }
    Observation {
        sensor_id: id.into(),
        kind,
        ts,
        quality: QualityLevel::Good,
        quality_reasons: Vec::new(),
        values: map,
    }
}

pub fn level(id: &str, ts: DateTime<Utc>, m: f64) -> Input {
    Input::Reading(reading(id, Kind::WaterLevel, ts, &[("level_m", m)]))
}

pub fn depth(id: &str, ts: DateTime<Utc>, cm: f64) -> Input {
    Input::Reading(reading(id, Kind::FloodDepth, ts, &[("depth_cm", cm)]))
}

pub fn rain(id: &str, ts: DateTime<Utc>, mm: f64, interval_s: i64) -> Input {
    Input::Reading(reading(id, Kind::Rainfall, ts, &[("rain_mm", mm), ("interval_s", interval_s as f64)]))
}

/// `input` flagged by ingest (`spike:level_m` is suspect, `out_of_range:*` bad).
pub fn flagged(input: Input, quality: QualityLevel, reason: &str) -> Input {
    match input {
        Input::Reading(mut o) => {
            o.quality = quality;
            o.quality_reasons = vec![reason.into()];
            Input::Reading(o)
        }
        tick => tick,
    }
}

pub fn engine(sensors: Vec<Sensor>) -> Engine {
    Engine::new(RuleSet::default(), sensors)
}

/// Runs `inputs` (sorted by time here) with a one-minute tick, as replay does.
pub fn run(engine: &mut Engine, mut inputs: Vec<Input>) -> Vec<Decision> {
    inputs.sort_by_key(Input::at);
    engine::run(engine, inputs, 60)
}

pub fn of(decisions: &[Decision], rule: RuleId) -> Vec<&Decision> {
    decisions.iter().filter(|d| d.key.rule == rule).collect()
}

/// `(change, level)` of each decision of `rule`, suppressed ones left out.
pub fn timeline(decisions: &[Decision], rule: RuleId) -> Vec<(Change, String)> {
    of(decisions, rule)
        .into_iter()
        .filter(|d| d.change != Change::Suppressed)
        .map(|d| (d.change, d.state.level.clone()))
        .collect()
}

pub fn changes(decisions: &[Decision], rule: RuleId) -> Vec<Change> {
    of(decisions, rule).into_iter().map(|d| d.change).collect()
}
