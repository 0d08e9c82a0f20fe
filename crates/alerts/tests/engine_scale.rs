//! City scale: the engine runs on every committed reading (5,000+/s in a
//! storm) and ticks every few seconds over a registry of 100,000+ lamps, so
//! neither a reading nor a tick may walk every sensor or allocate per sensor.
//!
//! Timed in release builds only (`cargo test -p citygauge-alerts --release
//! --test engine_scale`); a debug build runs a smaller city for correctness.

use std::time::Instant;

use chrono::{DateTime, Duration, TimeZone, Utc};
use citygauge_alerts::engine::{self, Input};
use citygauge_alerts::{Engine, Observation, RuleSet, Sensor};
use citygauge_domain::{Kind, QualityLevel};
use serde_json::{json, Map, Value};

fn sensor(id: String, kind: Kind, subkind: Option<&str>, district: usize) -> Sensor {
    Sensor {
        id,
        kind: Some(kind),
        subkind: subkind.map(str::to_string),
        district: Some(format!("d{}", district % 38)),
        lon: Some(120.3 + (district % 100) as f64 * 0.001),
        lat: Some(22.6 + (district % 77) as f64 * 0.001),
        expected_interval_s: 600,
        ..Sensor::default()
    }
}

fn city(lamps: usize) -> Vec<Sensor> {
    let mut sensors = Vec::new();
    for i in 0..lamps {
        let mut s = sensor(format!("sl-{i:06}"), Kind::Streetlight, None, i);
        s.installation.insert("rated_power_w".into(), json!(150.0));
        s.expected_interval_s = 900;
        sensors.push(s);
    }
    for i in 0..1_000 {
        let mut s = sensor(format!("wl-{i:04}"), Kind::WaterLevel, Some("river"), i);
        for (k, v) in [("warning_3_m", 2.0), ("warning_2_m", 2.6), ("warning_1_m", 3.1)] {
            s.thresholds.insert(k.into(), json!(v));
        }
        sensors.push(s);
    }
    for i in 0..150 {
        let mut s = sensor(format!("fd-{i:04}"), Kind::FloodDepth, None, i);
        s.installation.insert("river_station".into(), json!(format!("wl-{:04}", i)));
        s.expected_interval_s = 60;
        sensors.push(s);
    }
    for i in 0..100 {
        sensors.push(sensor(format!("rg-{i:04}"), Kind::Rainfall, Some("interval"), i));
    }
    for i in 0..1_000 {
        sensors.push(sensor(format!("aq-{i:04}"), Kind::AirQuality, None, i));
    }
    sensors
}

fn observation(id: String, kind: Kind, ts: DateTime<Utc>, values: Value) -> Observation {
    let values = match values {
        Value::Object(m) => m,
        _ => Map::new(),
    };
    Observation { sensor_id: id, kind, ts, quality: QualityLevel::Good, quality_reasons: Vec::new(), values }
}

/// A storm minute by minute: every river, road, rain and air sensor reports
/// once a minute (rivers at orange, roads flooded, 1.5 mm a minute), and
/// lamps fill the rest of each minute's 5,000 readings.
fn storm(n: usize, lamps: usize, start: DateTime<Utc>) -> Vec<Input> {
    let per_minute = 5_000;
    let mut inputs = Vec::with_capacity(n);
    for i in 0..n {
        let (minute, k) = (i / per_minute, i % per_minute);
        let ts = start + Duration::minutes(minute as i64) + Duration::milliseconds((k * 60_000 / per_minute) as i64);
        let obs = match k {
            0..1_000 => observation(
                format!("wl-{k:04}"),
                Kind::WaterLevel,
                ts,
                json!({"level_m": 2.7 + (minute % 7) as f64 * 0.01}),
            ),
            1_000..1_150 => observation(
                format!("fd-{:04}", k - 1_000),
                Kind::FloodDepth,
                ts,
                json!({"depth_cm": 35.0 + (minute % 5) as f64}),
            ),
            1_150..1_250 => observation(
                format!("rg-{:04}", k - 1_150),
                Kind::Rainfall,
                ts,
                json!({"rain_mm": 1.5, "interval_s": 60}),
            ),
            1_250..2_250 => observation(
                format!("aq-{:04}", k - 1_250),
                Kind::AirQuality,
                ts,
                json!({"pm2_5_ugm3": 20.0, "pm10_ugm3": 40.0}),
            ),
            _ => observation(
                format!("sl-{:06}", (i * 7) % lamps),
                Kind::Streetlight,
                ts,
                json!({"lamp_on": true, "power_w": 148.0, "dim_pct": 100.0}),
            ),
        };
        inputs.push(Input::Reading(obs));
    }
    inputs
}

/// A city-sized storm runs through the engine (timings are a benchmark's
/// business, not a test's: `cargo test --release -p citygauge-alerts --test
/// engine_scale -- --nocapture` prints them; BENCHMARKS.md has the figure).
#[test]
fn a_storm_of_readings_over_a_city_of_lamps() {
    let (lamps, readings) = if cfg!(debug_assertions) { (10_000, 10_000) } else { (100_000, 100_000) };
    let start = Utc.with_ymd_and_hms(2026, 9, 1, 4, 0, 0).unwrap();
    let mut engine = Engine::new(RuleSet::default(), city(lamps));
    let inputs = storm(readings, lamps, start);
    let began = Instant::now();
    // Ticks every 5 s of reading time, as live (20 minutes of storm: 240 ticks).
    let decisions = engine::run(&mut engine, inputs, 5);
    let took = began.elapsed();
    assert!(!decisions.is_empty(), "the storm raises alerts");
    let began = Instant::now();
    for k in 1..=100 {
        engine.apply(&Input::Tick(start + Duration::minutes(20) + Duration::seconds(k)));
    }
    let ticks = began.elapsed();
    println!("engine_scale: {readings} readings over {lamps} lamps in {took:?}, 100 idle ticks in {ticks:?}");
}
