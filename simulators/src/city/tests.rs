use super::*;
use crate::payload::Message;
use crate::registry::{generate, GenerateOptions};

/// A smaller city (all 15 rivers, fewer of everything else) for fast tests.
fn small_city() -> Registry {
    generate(&GenerateOptions {
        rain_gauges: 12,
        drainage: 8,
        sewers: 12,
        flood_depth: 24,
        air_quality: 12,
        streetlights: 30,
        ..Default::default()
    })
}

fn run(scenario: Scenario, hours: i64) -> (CityStats, Vec<Message>) {
    let start = 1_795_305_600_000; // 2026-11-22 08:00 Taipei
    let mut city = City::new(&small_city(), scenario, start, 7);
    let mut out = Vec::new();
    city.advance_to(start + hours * 3_600_000, &mut out);
    (city.finish_stats(), out)
}

#[test]
fn typhoon_pushes_rivers_through_warning_levels_and_floods_roads() {
    let (stats, _) = run(Scenario::Typhoon, 10);
    assert!(stats.river_warning_3 >= 8, "{stats:?}");
    assert!(stats.river_warning_1 >= 1, "{stats:?}");
    assert!(stats.flood_alert_sites >= 3, "{stats:?}");
}

#[test]
fn calm_day_has_no_warnings_and_valid_json_everywhere() {
    let (stats, messages) = run(Scenario::Calm, 24);
    assert_eq!((stats.river_warning_3, stats.flood_alert_sites), (0, 0), "{stats:?}");
    assert!(stats.canonical_messages > 0 && stats.senml_packs > 0);
    assert!(stats.chirpstack_uplinks > 0 && stats.tts_uplinks > 0);
    for m in &messages {
        let json: serde_json::Value = serde_json::from_slice(&m.payload).expect("valid JSON");
        let prefix_ok = ["city/", "application/", "v3/"].iter().any(|p| m.topic.starts_with(p));
        assert!(prefix_ok, "{}", m.topic);
        if m.topic.starts_with("city/senml/") {
            crate::payload::senml::resolve(&json).expect("resolvable pack");
        }
    }
    // Streetlights: the calm day starts at 08:00 and runs 24 h, so roughly
    // half the lamp reports are lit (dusk to dawn) and half dark.
    let lamps: Vec<bool> = messages
        .iter()
        .filter(|m| m.topic.starts_with("city/streetlight/"))
        .filter_map(|m| serde_json::from_slice::<serde_json::Value>(&m.payload).ok()?["lamp_on"].as_bool())
        .collect();
    let lit = lamps.iter().filter(|on| **on).count() as f64 / lamps.len() as f64;
    assert!((0.4..0.65).contains(&lit), "{lit}");
}

#[test]
fn faults_scenario_mixes_in_garbage_and_duplicates() {
    let (stats, messages) = run(Scenario::Faults, 6);
    assert!(stats.garbage_messages > 100, "{stats:?}");
    let invalid = messages.iter().filter(|m| serde_json::from_slice::<serde_json::Value>(&m.payload).is_err()).count();
    assert!(invalid > 10);
    assert!(stats.duplicate_messages > 0);
}

#[test]
fn same_seed_same_city() {
    let (_, a) = run(Scenario::Calm, 2);
    let (_, b) = run(Scenario::Calm, 2);
    let strip = |m: &Vec<Message>| m.iter().filter(|m| m.topic.starts_with("city/")).cloned().collect::<Vec<_>>();
    assert_eq!(strip(&a), strip(&b));
}
