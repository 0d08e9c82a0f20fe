//! Registry tests: the generated demo city and the committed file.

use super::*;

#[test]
fn demo_city_has_the_requested_composition_and_round_trips() {
    let reg = generate(&GenerateOptions::default());
    assert_eq!(reg.count(Kind::Rainfall, None), 60);
    assert_eq!(reg.count(Kind::WaterLevel, Some("river")), 15);
    assert_eq!(reg.count(Kind::WaterLevel, Some("drainage")), 40);
    assert_eq!(reg.count(Kind::WaterLevel, Some("sewer")), 80);
    assert_eq!(reg.count(Kind::FloodDepth, None), 60);
    assert_eq!(reg.count(Kind::AirQuality, None), 120);
    assert_eq!(reg.count(Kind::Streetlight, None), 2000);
    reg.validate().unwrap();
    let text = reg.to_geojson();
    let back = Registry::from_geojson(&text).unwrap();
    assert_eq!(back.sensors.len(), reg.sensors.len());
    assert_eq!(back.sensors[17].props, reg.sensors[17].props);
    // Deterministic: same seed, same bytes.
    assert_eq!(generate(&GenerateOptions::default()).to_geojson(), text);
}

#[test]
fn river_thresholds_are_ordered_yellow_below_red() {
    let reg = generate(&GenerateOptions::default());
    for s in reg.sensors.iter().filter(|s| s.subkind() == "river") {
        let t = s.props.thresholds.as_ref().unwrap();
        let base = s.props.installation.base_level_m.unwrap();
        assert!(base < t.warning_3_m.unwrap());
        assert!(t.warning_3_m < t.warning_2_m && t.warning_2_m < t.warning_1_m, "{}", s.props.id);
    }
}

#[test]
fn committed_demo_city_is_the_generated_one() {
    let committed = include_str!("../../../deploy/demo-city.geojson");
    let generated = generate(&GenerateOptions::default()).to_geojson();
    assert!(committed == generated, "deploy/demo-city.geojson is stale: run `cargo run -p citygauge-sim -- registry`");
}
