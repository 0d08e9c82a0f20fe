use super::*;
use crate::decode::DeviceProfileConfig;
use serde_json::json;

fn registry() -> Registry {
    let mut gauge = SensorInfo::new("kh-rg-0001", Kind::Rainfall, SensorStatus::Active);
    gauge.bucket_mm = Some(0.2);
    let river = SensorInfo::new("kh-wl-0001", Kind::WaterLevel, SensorStatus::Active);
    let old = SensorInfo::new("kh-wl-0099", Kind::WaterLevel, SensorStatus::Retired);
    Registry::new([gauge, river, old])
}

fn normaliser() -> Normaliser {
    let profiles: std::collections::BTreeMap<String, DeviceProfileConfig> = serde_json::from_value(json!({
        "flood-radar-v1": {"kind": "flood_depth", "fields": {"water_depth_mm": {"column": "depth_cm", "unit": "mm"}}}
    }))
    .unwrap();
    let config =
        NormaliseConfig { profiles: DeviceProfiles::compile(&profiles).unwrap(), ..NormaliseConfig::default() };
    Normaliser::new(config)
}

fn run(n: &mut Normaliser, topic: &str, payload: &[u8]) -> Decoded {
    let msg = Message { topic, payload, received_at: "2026-11-22T00:00:00Z".parse().unwrap(), content_type: None };
    n.normalise(&msg, &registry())
}

fn reason(decoded: &Decoded) -> Option<&'static str> {
    decoded.rejection.as_ref().map(|r| r.reason.as_str())
}

#[test]
fn canonical_reading_becomes_a_row() {
    let out = run(
        &mut normaliser(),
        "city/water_level/kh-wl-0001",
        br#"{"ts": "2026-11-22T08:00:00+08:00", "level_m": 2.41}"#,
    );
    assert_eq!(reason(&out), None);
    assert_eq!(out.readings.len(), 1);
    let reading = &out.readings[0];
    assert_eq!(reading.values, Values::WaterLevel { level_m: 2.41 });
    assert_eq!(reading.ts.to_rfc3339(), "2026-11-22T00:00:00+00:00");
    assert!(reading.quality.is_good());
    assert!(out.new_sensors.is_empty());
}

#[test]
fn tipping_bucket_counts_use_the_registry_bucket() {
    let mut n = normaliser();
    let out = run(&mut n, "city/rainfall/kh-rg-0001", br#"{"ts": 1795305600, "rain_tips": 12, "interval_s": 600}"#);
    assert_eq!(out.readings[0].values, Values::Rainfall { rain_mm: 2.4, interval_s: Some(600) });
    let unknown = run(&mut n, "city/rainfall/kh-rg-0777", br#"{"ts": 1795305600, "rain_tips": 4, "interval_s": 600}"#);
    let reading = &unknown.readings[0];
    assert_eq!(reading.values, Values::Rainfall { rain_mm: 2.0, interval_s: Some(600) });
    assert_eq!(reading.quality.reasons, ["assumed_bucket_mm"]);
}

#[test]
fn counters_are_handed_to_the_store() {
    let out = run(&mut normaliser(), "city/rainfall/kh-rg-0001", br#"{"ts": 1795305600, "rain_counter_mm": 152.5}"#);
    assert!(out.readings.is_empty());
    assert_eq!(out.counters.len(), 1);
    assert_eq!(out.counters[0].counter_mm, 152.5);
}

#[test]
fn unknown_sensors_are_kept_and_registered_once() {
    let mut n = normaliser();
    let first = run(&mut n, "city/flood_depth/kh-fd-9000", br#"{"ts": 1795305600, "depth_cm": 4}"#);
    assert_eq!(first.readings.len(), 1);
    assert_eq!(
        first.new_sensors,
        [NewSensor { id: "kh-fd-9000".into(), kind: Kind::FloodDepth, dev_eui: None, device_profile: None }]
    );
    let second = run(&mut n, "city/flood_depth/kh-fd-9000", br#"{"ts": 1795305660, "depth_cm": 5}"#);
    assert_eq!(second.readings.len(), 1);
    assert!(second.new_sensors.is_empty());
    let other_kind = run(&mut n, "city/water_level/kh-fd-9000", br#"{"ts": 1795305660, "level_m": 5}"#);
    assert_eq!(reason(&other_kind), Some("kind_mismatch"));
}

#[test]
fn lorawan_devices_register_with_their_eui_and_profile() {
    let payload = json!({"time": "2026-11-22T00:00:00Z", "deviceInfo": {"devEui": "a84041000181c8f2", "deviceProfileName": "flood-radar-v1"}, "object": {"water_depth_mm": 55}});
    let out = run(&mut normaliser(), "application/1/device/a84041000181c8f2/event/up", payload.to_string().as_bytes());
    assert_eq!(out.readings[0].values, Values::FloodDepth { depth_cm: 5.5 });
    assert_eq!(out.new_sensors[0].dev_eui.as_deref(), Some("a84041000181c8f2"));
    assert_eq!(out.new_sensors[0].device_profile.as_deref(), Some("flood-radar-v1"));
}

#[test]
fn registry_conflicts_are_rejected() {
    let mut n = normaliser();
    assert_eq!(reason(&run(&mut n, "city/flood_depth/kh-wl-0001", br#"{"depth_cm": 1}"#)), Some("kind_mismatch"));
    assert_eq!(reason(&run(&mut n, "city/water_level/kh-wl-0099", br#"{"level_m": 1}"#)), Some("retired_sensor"));
}

#[test]
fn bad_input_gets_a_reason_and_never_panics() {
    let mut n = normaliser();
    let cases: [(&str, &[u8], &str); 6] = [
        ("city/water_level/kh-wl-0001", b"{\"level_m\": ", "malformed_payload"),
        ("city/water_level/kh-wl-0001", &[0xff, 0xfe, 0x00, 0x13], "malformed_payload"),
        ("city/volcano/kh-wl-0001", b"{}", "unknown_kind"),
        ("somewhere/else", b"{}", "unknown_topic"),
        ("city/water_level/kh-wl-0001", b"{\"level_m\": null}", "invalid_value"),
        ("city/rainfall/kh-rg-0001", b"{\"rain_mm\": 1, \"rain_tips\": 2}", "invalid_value"),
    ];
    for (topic, payload, want) in cases {
        let out = run(&mut n, topic, payload);
        assert_eq!(reason(&out), Some(want), "{topic} {payload:?}");
        assert!(out.readings.is_empty());
    }
    let huge = vec![b' '; 300 * 1024];
    assert_eq!(reason(&run(&mut n, "city/water_level/kh-wl-0001", &huge)), Some("oversized"));
}

#[test]
fn a_partly_bad_pack_stores_the_good_part_and_says_what_failed() {
    let pack = json!([
        {"bn": "kh-wl-0001/", "bt": 1795305600, "n": "level", "v": 2.0},
        {"n": "level", "t": 60, "v": "high"},
        {"n": "level", "t": 120, "v": 2.1}
    ]);
    let out = run(&mut normaliser(), "city/senml/gw-1", pack.to_string().as_bytes());
    assert_eq!(out.readings.len(), 2);
    let rejection = out.rejection.unwrap();
    assert_eq!(rejection.reason, RejectReason::InvalidValue);
    assert!(rejection.detail.starts_with("1 of 3 records rejected; first, record 1:"), "{}", rejection.detail);
}

#[test]
fn streetlight_faults_and_partial_reports() {
    let mut n = normaliser();
    let out = run(
        &mut n,
        "city/streetlight/kh-sl-000001",
        br#"{"ts": 1795305600, "lamp_on": false, "fault": "lamp_failure", "power_w": 0}"#,
    );
    let Values::Streetlight(light) = &out.readings[0].values else { panic!("not a streetlight") };
    assert_eq!((light.lamp_on, light.fault.as_deref(), light.power_w), (Some(false), Some("lamp_failure"), Some(0.0)));
    let cleared = run(&mut n, "city/streetlight/kh-sl-000001", br#"{"ts": 1795305660, "fault": null}"#);
    assert_eq!(cleared.readings.len(), 1);
}
