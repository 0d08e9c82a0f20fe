//! Issue 8: one bad value must not silence a gauge; timestamps in a window;
//! SenML on any topic, with RFC 8428 names; LoRaWAN identity.

use super::*;
use crate::registry::SensorInfo;
use chrono::Duration;
use serde_json::json;

fn now() -> DateTime<Utc> {
    "2026-11-22T00:00:00Z".parse().unwrap()
}

fn registry() -> Registry {
    let river = SensorInfo::new("kh-wl-0001", Kind::WaterLevel, SensorStatus::Active);
    let gauge = SensorInfo::new("kh-rg-0001", Kind::Rainfall, SensorStatus::Active);
    let counter = SensorInfo::new("kh-rg-0002", Kind::Rainfall, SensorStatus::Active);
    let air = SensorInfo::new("kh-aq-0201", Kind::AirQuality, SensorStatus::Active);
    let mut mac = SensorInfo::new("kh-aq-0300", Kind::AirQuality, SensorStatus::Active);
    mac.dev_eui = Some("0024befffe804ff1".into());
    let mut radar = SensorInfo::new("kh-fd-0007", Kind::FloodDepth, SensorStatus::Active);
    radar.dev_eui = Some("70b3d57ed0001234".into());
    radar.device_profile = Some("flood-radar-v1".into());
    Registry::new([river, gauge, counter, air, mac, radar])
}

fn normaliser() -> Normaliser {
    let profiles: std::collections::BTreeMap<String, crate::decode::DeviceProfileConfig> =
        serde_json::from_value(json!({
            "flood-radar-v1": {"kind": "flood_depth", "fields": {"water_depth_mm": {"column": "depth_cm", "unit": "mm"}}}
        }))
        .unwrap();
    Normaliser::new(NormaliseConfig {
        profiles: DeviceProfiles::compile(&profiles).unwrap(),
        ..NormaliseConfig::default()
    })
}

fn message<'a>(topic: &'a str, payload: &'a [u8]) -> Message<'a> {
    Message { topic, payload, received_at: now(), content_type: None }
}

fn run(n: &mut Normaliser, topic: &str, payload: &str) -> Decoded {
    n.normalise(&message(topic, payload.as_bytes()), &registry())
}

fn reason(decoded: &Decoded) -> Option<&'static str> {
    decoded.rejection.as_ref().map(|r| r.reason.as_str())
}

fn level_at(n: &mut Normaliser, ts: DateTime<Utc>, level_m: f64) -> Decoded {
    level_received(n, ts, now(), level_m)
}

fn level_received(n: &mut Normaliser, ts: DateTime<Utc>, received_at: DateTime<Utc>, level_m: f64) -> Decoded {
    let payload = json!({"ts": ts.to_rfc3339(), "level_m": level_m}).to_string();
    let msg = Message { received_at, ..message("city/water_level/kh-wl-0001", payload.as_bytes()) };
    n.normalise(&msg, &registry())
}

fn flags(decoded: &Decoded) -> String {
    decoded.readings.iter().map(|r| r.quality.reasons.join("+")).collect::<Vec<_>>().join(",")
}

#[test]
fn a_wild_value_stamped_a_little_ahead_does_not_mark_the_next_hour_suspect() {
    let mut n = normaliser();
    // A fresh daemon: the first value it sees is wild, 4 minutes ahead (inside
    // the clock-drift tolerance, so not `future_ts`).
    let wild = level_received(&mut n, now() + Duration::minutes(4), now(), 90.0);
    assert_eq!(flags(&wild), "");
    // Then the gauge's genuine readings, a minute apart, for an hour.
    let suspect: usize = (1..=60)
        .map(|m| {
            let t = now() + Duration::minutes(m);
            level_received(&mut n, t, t, 2.0 + m as f64 * 0.001)
        })
        .filter(|d| !d.readings[0].quality.is_good())
        .count();
    let rebaseline = QualityConfig::default().spike_rebaseline_after as usize;
    assert!(suspect < rebaseline, "{suspect} genuine readings suspect; at most {} may be", rebaseline - 1);
}

#[test]
fn future_stamped_readings_never_become_the_spike_baseline() {
    let mut n = normaliser();
    let future = level_at(&mut n, now() + Duration::minutes(30), 9.5);
    assert_eq!(flags(&future), "future_ts");
    for m in 0..5 {
        let genuine = level_at(&mut n, now() - Duration::minutes(5 - m), 2.0);
        assert_eq!(flags(&genuine), "", "minute {m}");
    }
    // A genuine spike after a good baseline is still flagged.
    let spike = level_at(&mut n, now(), 9.0);
    assert_eq!(flags(&spike), "spike:level_m");
}

#[test]
fn timestamps_outside_the_window_are_rejected_with_a_reason() {
    let mut n = normaliser();
    let far_future = run(&mut n, "city/water_level/kh-wl-0001", r#"{"ts": "2099-01-01T00:00:00Z", "level_m": 2.0}"#);
    assert_eq!(reason(&far_future), Some("timestamp_out_of_window"));
    assert!(far_future.readings.is_empty());
    let detail = &far_future.rejection.as_ref().unwrap().detail;
    assert!(detail.contains("2099-01-01") && detail.contains("max_future_s"), "{detail}");

    let ancient = level_at(&mut n, now() - Duration::days(5 * 365), 2.0);
    assert_eq!(reason(&ancient), Some("timestamp_out_of_window"));
    assert!(ancient.rejection.unwrap().detail.contains("max_backfill_days"));

    // Inside the window: a late upload is stored as it is; slightly ahead
    // of the receive time keeps today's flag.
    assert_eq!(flags(&level_at(&mut n, now() - Duration::days(20), 2.0)), "");
    assert_eq!(flags(&level_at(&mut n, now() + Duration::minutes(10), 2.0)), "future_ts");
    // A counter stamped ahead would move the gauge's counter state forward.
    let counter = run(
        &mut n,
        "city/rainfall/kh-rg-0002",
        &json!({"ts": (now() + Duration::minutes(10)).to_rfc3339(), "rain_counter_mm": 101.5}).to_string(),
    );
    assert_eq!(reason(&counter), Some("timestamp_out_of_window"));
    assert!(counter.counters.is_empty());
}

#[test]
fn senml_on_a_sensors_own_topic_is_recognised_by_its_shape() {
    let mut n = normaliser();
    let pack = json!([{"bt": 1795305600, "n": "level", "u": "cm", "v": 241}, {"t": 60, "u": "cm", "v": 242}]);
    let out = run(&mut n, "city/water_level/kh-wl-0001", &pack.to_string());
    assert_eq!(reason(&out), None);
    let levels: Vec<_> = out.readings.iter().map(|r| (r.sensor_id.as_str(), r.values.clone())).collect();
    assert_eq!(
        levels,
        [("kh-wl-0001", Values::WaterLevel { level_m: 2.41 }), ("kh-wl-0001", Values::WaterLevel { level_m: 2.42 })]
    );
    // Canonical JSON there keeps working, as an object or an array.
    let canonical = run(&mut n, "city/water_level/kh-wl-0001", r#"[{"ts": 1795305720, "level_m": 2.43}]"#);
    assert_eq!((reason(&canonical), canonical.readings.len()), (None, 1));
}

#[test]
fn rfc8428_urn_names_resolve_to_registered_sensors() {
    let mut n = normaliser();
    let pack = json!([
        {"bn": "urn:dev:city:kh-aq-0201:", "bt": 1795305600, "n": "pm2_5", "u": "ug/m3", "v": 12},
        {"n": "temp", "u": "Cel", "v": 27.5},
        {"n": "humidity", "u": "%RH", "v": 80},
        {"bn": "urn:dev:mac:0024befffe804ff1:", "n": "pm10", "u": "ug/m3", "v": 40}
    ]);
    let out = run(&mut n, "city/senml/gw-7", &pack.to_string());
    assert_eq!(reason(&out), None);
    assert!(out.new_sensors.is_empty(), "{:?}", out.new_sensors);
    let ids: Vec<_> = out.readings.iter().map(|r| r.sensor_id.as_str()).collect();
    assert_eq!(ids, ["kh-aq-0201", "kh-aq-0300"]);
    let Values::AirQuality(air) = &out.readings[0].values else { panic!("not air quality") };
    assert_eq!((air.pm2_5_ugm3, air.temp_c, air.rh_pct), (Some(12.0), Some(27.5), Some(80.0)));
}

#[test]
fn senml_update_time_is_the_rain_interval() {
    let mut n = normaliser();
    let pack = json!([{"bn": "kh-rg-0001/", "bt": 1795305600, "n": "rain", "u": "mm", "v": 1.5, "ut": 600}]);
    let out = run(&mut n, "city/senml/gw-7", &pack.to_string());
    assert_eq!(reason(&out), None);
    assert_eq!(out.readings[0].values, Values::Rainfall { rain_mm: 1.5, interval_s: Some(600) });
}

#[test]
fn a_lorawan_body_must_name_the_device_of_its_topic() {
    let mut n = normaliser();
    let body = json!({"time": "2026-11-21T23:59:00Z",
        "deviceInfo": {"devEui": "70b3d57ed0001234", "deviceProfileName": "flood-radar-v1"},
        "object": {"water_depth_mm": 55}});
    let out = run(&mut n, "application/1/device/a84041000181c8f2/event/up", &body.to_string());
    assert_eq!(reason(&out), Some("identity_mismatch"));
    assert!(out.readings.is_empty());
    let same = run(&mut n, "application/1/device/70B3D57ED0001234/event/up", &body.to_string());
    assert_eq!((reason(&same), same.readings.len()), (None, 1));
}

fn with_ct<'a>(topic: &'a str, payload: &'a str, content_type: &'a str) -> Message<'a> {
    Message { content_type: Some(content_type), ..message(topic, payload.as_bytes()) }
}

#[test]
fn the_senml_content_type_means_senml_on_any_topic() {
    let mut n = normaliser();
    let registry = registry();
    // RFC 8428 section 5.1.1: a name that is the sensor alone, its unit telling the field.
    let pack = r#"[{"n": "urn:dev:city:kh-aq-0201", "u": "Cel", "v": 23.1, "t": -60}]"#;
    for topic in ["gateways/gw-9/up", "city/senml/gw-9", "city/air_quality/kh-aq-0201"] {
        let out = n.normalise(&with_ct(topic, pack, "application/senml+json"), &registry);
        assert_eq!(reason(&out), None, "{topic}");
        let Values::AirQuality(air) = &out.readings[0].values else { panic!("not air quality") };
        assert_eq!((out.readings[0].sensor_id.as_str(), air.temp_c), ("kh-aq-0201", Some(23.1)), "{topic}");
    }
    // With parameters, in any case.
    let out = n.normalise(&with_ct("x/y", pack, "Application/SenML+JSON; charset=utf-8"), &registry);
    assert_eq!(reason(&out), None);
    // Declared plain JSON on a sensor's topic is canonical, never sniffed.
    let shaped = r#"[{"n": "level", "v": 2.0}]"#;
    let out = n.normalise(&with_ct("city/water_level/kh-wl-0001", shaped, "application/json"), &registry);
    assert_eq!(reason(&out), Some("unknown_field"));
    // Without a content type, a pack's shape is enough on a topic no format claims.
    let out = n.normalise(&message("gateways/gw-9/up", br#"[{"bn": "kh-wl-0001/", "n": "level", "v": 2}]"#), &registry);
    assert_eq!((reason(&out), out.readings.len()), (None, 1));
    // ...and what is neither keeps its reason.
    let out = n.normalise(&message("gateways/gw-9/up", br#"[{"level": 2}]"#), &registry);
    assert_eq!(reason(&out), Some("unknown_topic"));
}

#[test]
fn a_pack_on_a_sensors_own_topic_writes_only_that_sensor() {
    let mut n = normaliser();
    let pack = json!([
        {"bn": "kh-wl-0001/", "n": "level", "v": 2.0},
        {"bn": "kh-wl-0002/", "n": "level", "v": 3.0},
        {"bn": "urn:dev:city:kh-wl-0001:", "n": "level", "t": 60, "v": 2.1},
        {"bn": "", "n": "temp", "u": "Cel", "v": 20}
    ]);
    let out = run(&mut n, "city/water_level/kh-wl-0001", &pack.to_string());
    assert_eq!(out.readings.len(), 2, "{:?}", out.rejection);
    assert!(out.new_sensors.is_empty(), "no pending kh-wl-0002 from another sensor's topic");
    let rejection = out.rejection.unwrap();
    assert_eq!(rejection.reason, RejectReason::SourceNotAllowed);
    assert!(rejection.detail.starts_with("2 of 4 records rejected; first, record 1:"), "{}", rejection.detail);
    assert!(rejection.detail.contains("kh-wl-0002"), "{}", rejection.detail);
}

#[test]
fn senml_sources_confine_a_gateway_to_its_sensors() {
    let bindings = SourceBindings::parse(&["city/senml/gw-7=kh-aq-* kh-wl-0001"]).unwrap();
    let mut n = Normaliser::new(NormaliseConfig { senml_sources: bindings, ..NormaliseConfig::default() });
    let pack = json!([
        {"bn": "urn:dev:city:kh-aq-0201:", "n": "pm2_5", "v": 10},
        {"bn": "kh-wl-0001/", "n": "level", "v": 2.0},
        {"bn": "kh-rg-0001/", "n": "rain", "u": "mm", "v": 0.5}
    ]);
    let out = run(&mut n, "city/senml/gw-7", &pack.to_string());
    let ids: Vec<_> = out.readings.iter().map(|r| r.sensor_id.as_str()).collect();
    assert_eq!(ids, ["kh-aq-0201", "kh-wl-0001"]);
    let rejection = out.rejection.unwrap();
    assert_eq!(rejection.reason, RejectReason::SourceNotAllowed);
    assert!(
        rejection.detail.contains("kh-rg-0001") && rejection.detail.contains("city/senml/gw-7"),
        "{}",
        rejection.detail
    );
    // Another gateway is not confined by gw-7's binding.
    let out = run(&mut n, "city/senml/gw-8", &pack.to_string());
    assert_eq!((reason(&out), out.readings.len()), (None, 3));
}

#[test]
fn aliases_and_unregistered_city_urns_name_one_sensor() {
    let mut registry = registry();
    registry.insert_alias("urn:dev:ow:10e2073a01080063", "kh-aq-0201");
    let mut n = normaliser();
    let pack = r#"[{"bn": "urn:dev:ow:10e2073a01080063:", "n": "temp", "u": "Cel", "v": 23.1},
                   {"bn": "urn:dev:city:kh-aq-0999:", "n": "pm10", "v": 30}]"#;
    let out = n.normalise(&message("city/senml/gw-1", pack.as_bytes()), &registry);
    assert_eq!(reason(&out), None);
    let ids: Vec<_> = out.readings.iter().map(|r| r.sensor_id.as_str()).collect();
    assert_eq!(ids, ["kh-aq-0201", "kh-aq-0999"]);
    let pending: Vec<_> = out.new_sensors.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(pending, ["kh-aq-0999"], "registered as itself, not as its URN");
}

#[test]
fn an_explicit_interval_wins_over_the_update_time() {
    let mut n = normaliser();
    let pack = json!([
        {"bn": "kh-rg-0001/", "bt": 1795305600, "n": "rain", "u": "mm", "v": 1.5, "ut": 600},
        {"n": "interval", "v": 300},
        {"bn": "kh-rg-0002/", "n": "rain", "u": "mm", "s": 120.5, "ut": 600},
        {"bn": "kh-wl-0001/", "n": "level", "v": 2.0, "ut": 60}
    ]);
    let out = run(&mut n, "city/senml/gw-1", &pack.to_string());
    assert_eq!(reason(&out), None);
    assert_eq!(out.readings[0].values, Values::Rainfall { rain_mm: 1.5, interval_s: Some(300) });
    assert_eq!(out.counters.len(), 1, "a counter's interval comes from its previous value");
    assert_eq!(out.readings[1].values, Values::WaterLevel { level_m: 2.0 });
    let bad = run(&mut n, "city/senml/gw-1", r#"[{"n": "kh-rg-0001/rain", "v": 1, "ut": 0}]"#);
    assert_eq!(reason(&bad), Some("invalid_value"));
}

#[test]
fn a_counter_with_an_unset_clock_never_reaches_the_counter_state() {
    let quality = QualityConfig { max_backfill: Duration::days(365 * 60), ..QualityConfig::default() };
    let mut n = Normaliser::new(NormaliseConfig { quality, ..NormaliseConfig::default() });
    let out = run(&mut n, "city/rainfall/kh-rg-0002", r#"{"ts": 60, "rain_counter_mm": 101.5}"#);
    assert_eq!(reason(&out), Some("timestamp_out_of_window"));
    assert!(out.rejection.unwrap().detail.contains("`clock_unset`"));
    assert!(out.counters.is_empty());
    // A level with that clock is kept, flagged, as before.
    let level = run(&mut n, "city/water_level/kh-wl-0001", r#"{"ts": 60, "level_m": 2.0}"#);
    assert_eq!(flags(&level), "clock_unset");
}
