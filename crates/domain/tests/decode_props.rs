//! Properties of the decoders over arbitrary input.

use chrono::{DateTime, Utc};
use citygauge_domain::{Message, NormaliseConfig, Normaliser, Registry, Values};
use proptest::prelude::*;
use serde_json::json;

fn received_at() -> DateTime<Utc> {
    "2026-11-22T00:00:00Z".parse().unwrap()
}

const TOPICS: [&str; 6] = [
    "city/water_level/kh-wl-0001",
    "city/rainfall/kh-rg-0001",
    "city/air_quality/kh-aq-0001",
    "city/senml/gw-1",
    "application/1/device/a84041000181c8f2/event/up",
    "v3/app@tenant/devices/d/up",
];

proptest! {
    /// Whatever arrives, the normaliser answers with rows or a reason: it never
    /// panics and never drops a message silently.
    #[test]
    fn any_bytes_become_rows_or_a_reason(topic in prop::sample::select(&TOPICS[..]), payload in prop::collection::vec(any::<u8>(), 0..512)) {
        let mut n = Normaliser::new(NormaliseConfig::default());
        let out = n.normalise(&Message { topic, payload: &payload, received_at: received_at() }, &Registry::default());
        prop_assert!(!out.readings.is_empty() || !out.counters.is_empty() || out.rejection.is_some());
    }

    /// Any JSON shape, too (bytes rarely parse as JSON).
    #[test]
    fn any_json_becomes_rows_or_a_reason(topic in prop::sample::select(&TOPICS[..]), doc in arb_json()) {
        let mut n = Normaliser::new(NormaliseConfig::default());
        let payload = doc.to_string();
        let out = n.normalise(&Message { topic, payload: payload.as_bytes(), received_at: received_at() }, &Registry::default());
        prop_assert!(!out.readings.is_empty() || !out.counters.is_empty() || out.rejection.is_some());
    }

    /// A SenML pack of levels in centimetres with base and relative times comes
    /// out as one row per record, in metres, at bt + t.
    #[test]
    fn senml_levels_in_cm_round_trip(levels_cm in prop::collection::vec(0u32..100_000, 1..40), bt in 1_700_000_000i64..1_800_000_000) {
        let mut pack = vec![json!({"bn": "kh-wl-0001/", "bt": bt, "bu": "cm", "n": "level", "v": levels_cm[0]})];
        for (i, cm) in levels_cm.iter().enumerate().skip(1) {
            pack.push(json!({"n": "level", "t": i * 60, "v": cm}));
        }
        let payload = serde_json::Value::Array(pack).to_string();
        let mut n = Normaliser::new(NormaliseConfig::default());
        let out = n.normalise(&Message { topic: "city/senml/gw", payload: payload.as_bytes(), received_at: received_at() }, &Registry::default());
        prop_assert!(out.rejection.is_none(), "{:?}", out.rejection);
        prop_assert_eq!(out.readings.len(), levels_cm.len());
        for (i, (reading, cm)) in out.readings.iter().zip(&levels_cm).enumerate() {
            prop_assert_eq!(reading.ts.timestamp(), bt + i as i64 * 60);
            prop_assert_eq!(&reading.values, &Values::WaterLevel { level_m: f64::from(*cm) / 100.0 });
        }
    }
}

fn arb_json() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        prop::sample::select(vec!["ts", "level_m", "rain_mm", "n", "bn", "v", "u", "cm", "2026-11-22T00:00:00Z", ""])
            .prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(3, 32, 6, |inner| {
        let keys = prop::sample::select(vec![
            "ts",
            "level_m",
            "rain_mm",
            "rain_tips",
            "pm2_5_ugm3",
            "n",
            "bn",
            "bt",
            "v",
            "vb",
            "u",
            "t",
            "object",
            "deviceInfo",
            "end_device_ids",
            "uplink_message",
        ]);
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::Array),
            prop::collection::btree_map(keys.prop_map(String::from), inner, 0..6)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}
