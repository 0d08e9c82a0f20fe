use std::collections::HashSet;

use proptest::prelude::*;
use serde_json::Value as Json;

use super::*;
use crate::payload::senml;

fn shape(k: usize, format: LoadFormat, ts_format: LoadTsFormat, step_ms: i64) -> LoadShape {
    LoadShape { id_prefix: "ld".into(), per_message: k, format, ts_format, t0_ms: 1_795_305_600_000, step_ms }
}

/// Parses a canonical `ts` back to epoch ms.
fn ts_ms(ts: &Json) -> i64 {
    match ts {
        Json::Number(n) => n.as_i64().expect("integer epoch ms"),
        Json::String(s) => DateTime::parse_from_rfc3339(s).expect("RFC 3339").timestamp_millis(),
        other => panic!("unexpected ts {other}"),
    }
}

/// Every (sensor_id, ts) in a batch of messages, in order.
fn readings_of(messages: &[(String, Vec<u8>)]) -> Vec<(String, i64)> {
    let mut out = Vec::new();
    for (topic, payload) in messages {
        let json: Json = serde_json::from_slice(payload).expect("load payloads are valid JSON");
        if topic.starts_with("city/senml/") {
            // A reading may span records (rain + interval): dedupe per (sensor, time).
            let mut seen = HashSet::new();
            for r in senml::resolve(&json).unwrap() {
                let (id, _) = r.name.split_once('/').unwrap();
                let key = (id.to_owned(), (r.time_s * 1000.0).round() as i64);
                if seen.insert(key.clone()) {
                    out.push(key);
                }
            }
        } else {
            let id = topic.rsplit('/').next().unwrap().to_owned();
            let items = match json {
                Json::Array(items) => items,
                one => vec![one],
            };
            out.extend(items.iter().map(|r| (id.clone(), ts_ms(&r["ts"]))));
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn load_payloads_carry_distinct_sensor_timestamps(
        sensors in 1u64..40,
        k in 1usize..12,
        messages in 1usize..120,
        senml_format in any::<bool>(),
        epoch in any::<bool>(),
        step_ms in prop_oneof![Just(1000i64), Just(250), Just(60_000)],
    ) {
        let format = if senml_format { LoadFormat::Senml } else { LoadFormat::Canonical };
        let ts_format = if epoch { LoadTsFormat::EpochMs } else { LoadTsFormat::Rfc3339 };
        let ids = (0..sensors).map(|i| (i, LoadKind::Mixed.kind_of(i)));
        let mut generator = LoadGenerator::new(ids, "ld-gw-000", &shape(k, format, ts_format, step_ms));
        let batch: Vec<_> = (0..messages).map(|_| generator.next_message()).collect();
        let readings = readings_of(&batch);
        prop_assert_eq!(readings.len(), messages * k);
        let distinct: HashSet<_> = readings.iter().cloned().collect();
        prop_assert_eq!(distinct.len(), readings.len());
        prop_assert_eq!(generator.distinct_readings(), readings.len() as u64);
    }
}

#[test]
fn canonical_payloads_have_the_contract_shape() {
    let ids = (0..5).map(|i| (i, LoadKind::Mixed.kind_of(i)));
    let mut g = LoadGenerator::new(ids, "ld-gw-000", &shape(1, LoadFormat::Canonical, LoadTsFormat::Rfc3339, 1000));
    let msgs: Vec<_> = (0..5).map(|_| g.next_message()).collect();
    let topics: Vec<_> = msgs.iter().map(|m| m.0.as_str()).collect();
    assert_eq!(
        topics,
        [
            "city/rainfall/ld-rg-000001",
            "city/water_level/ld-wl-000002",
            "city/flood_depth/ld-fd-000003",
            "city/air_quality/ld-aq-000004",
            "city/streetlight/ld-sl-000005",
        ]
    );
    let rain: Json = serde_json::from_slice(&msgs[0].1).unwrap();
    assert_eq!(rain, serde_json::json!({"ts": "2026-11-22T08:00:00+08:00", "rain_mm": 0, "interval_s": 1}));
    let level: Json = serde_json::from_slice(&msgs[1].1).unwrap();
    assert!(level["level_m"].as_f64().unwrap() > 0.0);
    let light: Json = serde_json::from_slice(&msgs[4].1).unwrap();
    assert_eq!(light["lamp_on"], true);
}

#[test]
fn fixed_point_formatting() {
    let s = |v: i64, d: u32| {
        let mut b = Vec::new();
        push_fixed(&mut b, v, d);
        String::from_utf8(b).unwrap()
    };
    assert_eq!(s(241, 2), "2.41");
    assert_eq!(s(205, 2), "2.05");
    assert_eq!(s(200, 2), "2");
    assert_eq!(s(-15, 1), "-1.5");
    assert_eq!(s(1_795_305_600_250, 3), "1795305600.250");
    assert_eq!(s(0, 3), "0");
}

#[test]
fn kind_names_match_the_platform_and_accept_kebab_case() {
    use clap::ValueEnum;
    assert_eq!(LoadKind::from_str("water_level", false), Ok(LoadKind::WaterLevel));
    assert_eq!(LoadKind::from_str("water-level", false), Ok(LoadKind::WaterLevel));
    assert_eq!(LoadTsFormat::from_str("epoch-ms", false), Ok(LoadTsFormat::EpochMs));
}

#[test]
fn quotas_and_kinds() {
    assert_eq!(LoadKind::Mixed.kind_of(6), Kind::WaterLevel);
    assert_eq!(LoadKind::FloodDepth.kind_of(6), Kind::FloodDepth);
    assert_eq!(kind_code(Kind::Streetlight), "sl");
}
