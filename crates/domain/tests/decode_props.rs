//! Properties of the decoders over arbitrary input.

use chrono::{DateTime, Utc};
use citygauge_domain::decode::senml::looks_like_senml;
use citygauge_domain::normalise::SourceBindings;
use citygauge_domain::{Kind, Message, NormaliseConfig, Normaliser, Registry, SensorInfo, SensorStatus, Values};
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
        let out = n.normalise(&Message { topic, payload: &payload, received_at: received_at(), content_type: None }, &Registry::default());
        prop_assert!(!out.readings.is_empty() || !out.counters.is_empty() || out.rejection.is_some());
    }

    /// Any JSON shape, too (bytes rarely parse as JSON).
    #[test]
    fn any_json_becomes_rows_or_a_reason(topic in prop::sample::select(&TOPICS[..]), doc in arb_json()) {
        let mut n = Normaliser::new(NormaliseConfig::default());
        let payload = doc.to_string();
        let out = n.normalise(&Message { topic, payload: payload.as_bytes(), received_at: received_at(), content_type: None }, &Registry::default());
        prop_assert!(!out.readings.is_empty() || !out.counters.is_empty() || out.rejection.is_some());
    }

    /// SenML on any topic (by content type or by shape), with RFC 8428 names,
    /// update times and bound sources: rows or a reason, never a panic, and
    /// never a pending sensor named by a configured URN prefix.
    #[test]
    fn senml_anywhere_becomes_rows_or_a_reason(
        topic in prop::sample::select(&ANY_TOPICS[..]),
        content_type in prop::sample::select(&CONTENT_TYPES[..]),
        records in prop::collection::vec(arb_senml_record(), 1..8),
    ) {
        let config = NormaliseConfig {
            senml_sources: SourceBindings::parse(&["city/senml/gw-1=kh-* urn:dev:ow:10e2073a01080063", "+/+/+/#=kh-aq-*"]).unwrap(),
            ..NormaliseConfig::default()
        };
        let mut n = Normaliser::new(config);
        let payload = serde_json::Value::Array(records).to_string();
        let msg = Message { topic, payload: payload.as_bytes(), received_at: received_at(), content_type };
        let out = n.normalise(&msg, &registry());
        prop_assert!(!out.readings.is_empty() || !out.counters.is_empty() || out.rejection.is_some());
        prop_assert!(out.new_sensors.iter().all(|s| !s.id.to_ascii_lowercase().starts_with("urn:dev:city:")), "{:?}", out.new_sensors);
    }

    /// The shape probe reads any bytes without panicking.
    #[test]
    fn the_shape_probe_takes_any_bytes(payload in prop::collection::vec(any::<u8>(), 0..256), doc in arb_json()) {
        let _ = looks_like_senml(&payload);
        let _ = looks_like_senml(doc.to_string().as_bytes());
    }

    /// A SenML pack of levels in centimetres with base and relative times comes
    /// out as one row per record, in metres, at bt + t.
    #[test]
    fn senml_levels_in_cm_round_trip(levels_cm in prop::collection::vec(0u32..100_000, 1..40), bt in 1_793_000_000i64..1_795_300_000) {
        let mut pack = vec![json!({"bn": "kh-wl-0001/", "bt": bt, "bu": "cm", "n": "level", "v": levels_cm[0]})];
        for (i, cm) in levels_cm.iter().enumerate().skip(1) {
            pack.push(json!({"n": "level", "t": i * 60, "v": cm}));
        }
        let payload = serde_json::Value::Array(pack).to_string();
        let mut n = Normaliser::new(NormaliseConfig::default());
        // (bt within max_backfill_days of the receive time.)
        let out = n.normalise(&Message { topic: "city/senml/gw", payload: payload.as_bytes(), received_at: received_at(), content_type: None }, &Registry::default());
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

const ANY_TOPICS: [&str; 6] = [
    "city/senml/gw-1",
    "city/water_level/kh-wl-0001",
    "city/air_quality/kh-aq-0201",
    "gateways/gw-9/up",
    "application/1/device/a84041000181c8f2/event/up",
    "v3/app@tenant/devices/eui-0024befffe804ff1/up",
];

const CONTENT_TYPES: [Option<&str>; 4] =
    [None, Some("application/senml+json"), Some("application/json"), Some("text/plain; charset=utf-8")];

fn registry() -> Registry {
    let mut air = SensorInfo::new("kh-aq-0201", Kind::AirQuality, SensorStatus::Active);
    air.dev_eui = Some("0024befffe804ff1".into());
    let mut registry = Registry::new([
        air,
        SensorInfo::new("kh-wl-0001", Kind::WaterLevel, SensorStatus::Active),
        SensorInfo::new("kh-rg-0001", Kind::Rainfall, SensorStatus::Active),
    ]);
    registry.insert_alias("urn:dev:ow:10e2073a01080063", "kh-wl-0001");
    registry
}

/// SenML records with the names, units and fields devices send, and some
/// they should not.
fn arb_senml_record() -> impl Strategy<Value = serde_json::Value> {
    let bn = prop::option::of(prop::sample::select(vec![
        "urn:dev:city:kh-aq-0201:",
        "urn:dev:city:kh-new-0001:",
        "urn:dev:mac:0024befffe804ff1:",
        "urn:dev:ow:10e2073a01080063",
        "URN:DEV:MAC:0024BEFFFE804FF1:",
        "urn:dev:city:",
        "kh-wl-0001/",
        "kh-rg-0001:",
        "",
        ":",
        "/",
    ]));
    let n = prop::option::of(prop::sample::select(vec![
        "temp",
        "pm2_5",
        "pm10",
        "rain",
        "humidity",
        "level",
        "interval",
        "",
        "kh-rg-0001/rain",
        "x:y/z",
        "tips",
    ]));
    let u = prop::option::of(prop::sample::select(vec!["Cel", "mm", "%RH", "ug/m3", "m", "cm", "s", "", "furlong"]));
    let number = prop_oneof![
        Just(serde_json::Value::Null),
        (-1e6f64..1e6).prop_map(serde_json::Value::from),
        any::<i32>().prop_map(serde_json::Value::from),
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(serde_json::Value::from),
        Just(serde_json::Value::from("600")),
    ];
    (
        bn,
        n,
        u,
        number.clone(),
        prop::option::of(number.clone()),
        prop::option::of(number.clone()),
        prop::option::of(number),
    )
        .prop_map(|(bn, n, u, v, ut, t, s)| {
            let mut record = serde_json::Map::new();
            if let Some(bn) = bn {
                record.insert("bn".into(), json!(bn));
            }
            if let Some(n) = n {
                record.insert("n".into(), json!(n));
            }
            if let Some(u) = u {
                record.insert("u".into(), json!(u));
            }
            record.insert("v".into(), v);
            for (key, value) in [("ut", ut), ("t", t), ("s", s)] {
                if let Some(value) = value {
                    record.insert(key.into(), value);
                }
            }
            serde_json::Value::Object(record)
        })
}
