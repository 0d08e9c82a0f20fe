//! The engine fuzzed: arbitrary readings (odd values, unknown sensors, odd
//! quality reasons, out of order, redelivered, stamped in the future or in
//! 1970), ticks, operator resolutions and silences, in any interleaving.
//! It must never panic, and its decisions must tell a consistent story per
//! alert: raised only when not open, escalated / de-escalated / updated only
//! when open (and in the direction the grade moved), resolved only when
//! open; the engine's open alerts are exactly what the decisions left open;
//! and the same inputs give the same decisions whatever order the registry
//! was loaded in.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, TimeZone, Utc};
use citygauge_alerts::engine::{Input, Silence};
use citygauge_alerts::{AlertKey, Change, Decision, Engine, Observation, RuleId, RuleSet, Sensor};
use citygauge_domain::{Kind, QualityLevel};
use proptest::prelude::*;
use serde_json::{json, Map, Value};

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 9, 1, 10, 0, 0).unwrap()
}

fn registry() -> Vec<Sensor> {
    let base = |id: &str, kind: Kind, subkind: Option<&str>| Sensor {
        id: id.into(),
        kind: Some(kind),
        subkind: subkind.map(str::to_string),
        district: Some("Sanmin".into()),
        lon: Some(120.31),
        lat: Some(22.64),
        expected_interval_s: 600,
        ..Sensor::default()
    };
    let mut river = base("wl", Kind::WaterLevel, Some("river"));
    for (k, v) in [("warning_3_m", 2.0), ("warning_2_m", 2.6), ("warning_1_m", 3.1), ("levee_crest_m", 3.6)] {
        river.thresholds.insert(k.into(), json!(v));
    }
    let mut road = base("fd", Kind::FloodDepth, None);
    road.installation.insert("river_station".into(), json!("wl"));
    let mut road2 = base("fd2", Kind::FloodDepth, None);
    road2.installation.insert("river_station".into(), json!("nowhere"));
    let mut sewer = base("sw", Kind::WaterLevel, Some("sewer"));
    sewer.installation.insert("sewer_type".into(), json!("sewage"));
    let mut lamp = base("sl", Kind::Streetlight, None);
    lamp.installation.insert("rated_power_w".into(), json!(100.0));
    vec![
        river,
        road,
        road2,
        base("rg", Kind::Rainfall, Some("interval")),
        base("rg2", Kind::Rainfall, Some("tipping_bucket")),
        sewer,
        lamp,
        base("aq", Kind::AirQuality, None),
        base("aq2", Kind::AirQuality, None),
        base("aq3", Kind::AirQuality, None),
        base("aq4", Kind::AirQuality, None),
    ]
}

const SENSORS: [(&str, Kind); 12] = [
    ("wl", Kind::WaterLevel),
    ("fd", Kind::FloodDepth),
    ("fd2", Kind::FloodDepth),
    ("rg", Kind::Rainfall),
    ("rg2", Kind::Rainfall),
    ("sw", Kind::WaterLevel),
    ("sl", Kind::Streetlight),
    ("aq", Kind::AirQuality),
    ("aq2", Kind::AirQuality),
    ("aq3", Kind::AirQuality),
    ("aq4", Kind::AirQuality),
    ("ghost", Kind::WaterLevel),
];

const REASONS: [&str; 8] =
    ["spike:level_m", "out_of_range:depth_cm", "future_ts", "clock_unset", "", "spike:", "out_of_range:", "ünïcode"];

const VALUES: [f64; 14] = [0.0, -0.0, -5.0, 1.0, 2.0, 2.65, 3.2, 12.0, 35.0, 55.0, 150.0, 1e9, -1e9, f64::MIN_POSITIVE];

#[derive(Debug, Clone)]
enum Op {
    Reading { sensor: usize, offset_min: i64, value: usize, quality: u8, reason: usize, odd: u8 },
    Tick { advance_min: i64 },
    Resolve { key: usize },
    Silence { sensor: usize, minutes: i64 },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0..SENSORS.len(), -30i64..=30, 0..VALUES.len(), 0u8..6, 0..REASONS.len(), 0u8..10).prop_map(
            |(sensor, offset_min, value, quality, reason, odd)| Op::Reading { sensor, offset_min, value, quality, reason, odd }
        ),
        3 => (0i64..=20).prop_map(|advance_min| Op::Tick { advance_min }),
        1 => (0usize..64).prop_map(|key| Op::Resolve { key }),
        1 => (0..SENSORS.len(), 1i64..=120).prop_map(|(sensor, minutes)| Op::Silence { sensor, minutes }),
    ]
}

fn observation(op: &Op, clock: DateTime<Utc>) -> Option<Observation> {
    let Op::Reading { sensor, offset_min, value, quality, reason, odd } = *op else { return None };
    let (id, kind) = SENSORS[sensor];
    let v = VALUES[value];
    let ts = match odd {
        8 => clock + Duration::hours(20), // future-stamped (ingest keeps up to a day)
        9 => Utc.with_ymd_and_hms(1970, 1, 1, 0, 0, 0).unwrap(), // clock never set
        _ => clock + Duration::minutes(offset_min),
    };
    let mut values = Map::new();
    match kind {
        Kind::WaterLevel => {
            values.insert("level_m".into(), json!(v));
        }
        Kind::FloodDepth => {
            values.insert("depth_cm".into(), json!(v));
        }
        Kind::Rainfall => {
            values.insert("rain_mm".into(), json!(v.abs().min(500.0)));
            values.insert("interval_s".into(), json!([60.0, 600.0, 3600.0, 0.0, -5.0][value % 5]));
        }
        Kind::AirQuality => {
            values.insert("pm2_5_ugm3".into(), json!(v));
            values.insert("pm10_ugm3".into(), json!(v * 2.0));
        }
        Kind::Streetlight => {
            values.insert("lamp_on".into(), json!(value % 3 == 0));
            values.insert("power_w".into(), json!(v));
            values.insert("dim_pct".into(), json!([0.0, 50.0, 100.0, 250.0][value % 4]));
            if odd % 3 == 0 {
                values.insert("fault".into(), [json!("E12"), json!(7), json!("ok"), Value::Null][value % 4].clone());
            }
        }
    }
    if odd == 7 {
        values.insert("level_m".into(), json!("not a number"));
        values.insert("depth_cm".into(), Value::Null);
    }
    let (quality, reasons) = match quality {
        0..=2 => (QualityLevel::Good, Vec::new()),
        3 => (QualityLevel::Suspect, vec![REASONS[reason].to_string()]),
        4 => (QualityLevel::Bad, vec![REASONS[reason].to_string()]),
        _ => (QualityLevel::Bad, Vec::new()),
    };
    Some(Observation { sensor_id: id.into(), kind, ts, quality, quality_reasons: reasons, values })
}

/// Drives `engine` through `ops`; returns every decision and checks the
/// story they tell against the engine's own open alerts after each step.
fn drive(mut engine: Engine, ops: &[Op]) -> Result<Vec<Decision>, TestCaseError> {
    let mut clock = t0();
    let mut open: BTreeMap<AlertKey, u8> = BTreeMap::new();
    let mut all = Vec::new();
    for op in ops {
        let decisions = match op {
            Op::Reading { .. } => {
                let obs = observation(op, clock).expect("a reading");
                engine.apply(&Input::Reading(obs))
            }
            Op::Tick { advance_min } => {
                clock += Duration::minutes(*advance_min);
                engine.apply(&Input::Tick(clock))
            }
            Op::Resolve { key } => {
                let keys: Vec<AlertKey> = open.keys().cloned().collect();
                if let Some(k) = keys.get(key % keys.len().max(1)) {
                    engine.operator_resolved(k);
                    open.remove(k);
                }
                Vec::new()
            }
            Op::Silence { sensor, minutes } => {
                let silence = Silence {
                    rule: None,
                    subject: SENSORS[*sensor].0.to_string(),
                    until: clock + Duration::minutes(*minutes),
                };
                engine.set_silences(vec![silence]);
                Vec::new()
            }
        };
        for d in &decisions {
            let held = open.get(&d.key).copied();
            match d.change {
                Change::Raised => {
                    prop_assert!(held.is_none(), "raised while open: {d:?}");
                    open.insert(d.key.clone(), d.state.grade);
                }
                Change::Escalated => {
                    prop_assert!(held.is_some_and(|g| d.state.grade > g), "escalated from {held:?}: {d:?}");
                    open.insert(d.key.clone(), d.state.grade);
                }
                Change::Deescalated => {
                    prop_assert!(held.is_some_and(|g| d.state.grade < g), "de-escalated from {held:?}: {d:?}");
                    open.insert(d.key.clone(), d.state.grade);
                }
                Change::Updated => {
                    prop_assert!(held == Some(d.state.grade), "updated from {held:?}: {d:?}");
                }
                Change::Resolved => {
                    prop_assert!(held.is_some(), "resolved while not open: {d:?}");
                    open.remove(&d.key);
                }
                Change::Suppressed => {
                    prop_assert!(d.state.details.contains_key("suppressed_by"), "suppressed without a why: {d:?}");
                }
            }
            if d.change != Change::Resolved {
                prop_assert!(d.state.grade >= 1, "grade 0 in a live decision: {d:?}");
            }
            prop_assert!(RuleId::parse(d.key.rule.as_str()) == Some(d.key.rule));
        }
        let engine_open: BTreeMap<AlertKey, u8> = engine.active().iter().map(|(k, s)| (k.clone(), s.grade)).collect();
        prop_assert_eq!(&engine_open, &open, "the engine's open alerts differ from its decisions");
        all.extend(decisions);
    }
    Ok(all)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn decisions_tell_a_consistent_story(ops in prop::collection::vec(op(), 1..160)) {
        let forward = drive(Engine::new(RuleSet::default(), registry()), &ops)?;
        let mut reversed = registry();
        reversed.reverse();
        let backward = drive(Engine::new(RuleSet::default(), reversed), &ops)?;
        prop_assert_eq!(forward, backward, "the registry's load order leaked into the decisions");
    }
}
