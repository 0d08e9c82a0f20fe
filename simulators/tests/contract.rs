//! Contract test: everything the simulator publishes in a simulated city
//! decodes with the ingest daemon's own normaliser (`citygauge-domain`),
//! using the committed device profiles; garbage is rejected, not stored.

use std::collections::{BTreeMap, HashSet};

use chrono::{TimeZone, Utc};
use citygauge_domain::decode::{DeviceProfileConfig, DeviceProfiles};
use citygauge_domain::{Kind, Message, NormaliseConfig, Normaliser, Registry, SensorInfo, SensorStatus};
use citygauge_sim::city::City;
use citygauge_sim::registry::{generate, GenerateOptions};
use citygauge_sim::Scenario;

fn profiles() -> DeviceProfiles {
    let doc: toml::Value = toml::from_str(include_str!("../device-profiles.toml")).unwrap();
    let table = doc["lorawan"]["profiles"].clone();
    let config: BTreeMap<String, DeviceProfileConfig> = table.try_into().unwrap();
    DeviceProfiles::compile(&config).unwrap()
}

fn domain_registry(reg: &citygauge_sim::Registry) -> Registry {
    Registry::new(reg.sensors.iter().map(|s| {
        let mut info =
            SensorInfo::new(s.props.id.clone(), s.kind().as_str().parse::<Kind>().unwrap(), SensorStatus::Active);
        info.bucket_mm = s.props.installation.bucket_mm;
        info.dev_eui = s.props.dev_eui.clone();
        info.device_profile = s.props.device_profile.clone();
        info
    }))
}

/// What the normaliser made of a simulated run.
struct Outcome {
    stored: usize,
    rejected: Vec<String>,
    /// Readings the city says it produced.
    produced: u64,
    /// Distinct (sensor_id, ts) among the stored readings.
    distinct: usize,
    /// Readings stored with a quality flag, by sensor type and reasons.
    flagged: BTreeMap<String, usize>,
    /// Sensors with a flagged reading, and the sensors the scenario broke.
    flagged_sensors: HashSet<String>,
    broken: HashSet<String>,
}

/// Runs `hours` of `scenario` through the normaliser.
fn run(scenario: Scenario, hours: i64) -> Outcome {
    let reg = generate(&GenerateOptions {
        rain_gauges: 16,
        drainage: 8,
        sewers: 20,
        flood_depth: 18,
        air_quality: 30,
        streetlights: 40,
        ..Default::default()
    });
    let registry = domain_registry(&reg);
    let mut normaliser = Normaliser::new(NormaliseConfig { profiles: profiles(), ..Default::default() });
    let start = 1_795_305_600_000;
    let mut city = City::new(&reg, scenario, start, 11);
    let mut out = Vec::new();
    city.advance_to(start + hours * 3_600_000, &mut out);
    city.flush(&mut out);
    let received_at = Utc.timestamp_millis_opt(start + hours * 3_600_000).unwrap();
    let (mut stored, mut rejected, mut keys) = (0, Vec::new(), HashSet::new());
    let mut flagged = BTreeMap::new();
    let mut flagged_sensors = HashSet::new();
    for m in &out {
        let decoded = normaliser
            .normalise(&Message { topic: &m.topic, payload: &m.payload, received_at, content_type: None }, &registry);
        stored += decoded.readings.len() + decoded.counters.len();
        keys.extend(decoded.readings.iter().map(|r| (r.sensor_id.clone(), r.ts)));
        keys.extend(decoded.counters.iter().map(|r| (r.sensor_id.clone(), r.ts)));
        for r in &decoded.readings {
            if r.quality.level != citygauge_domain::QualityLevel::Good {
                flagged_sensors.insert(r.sensor_id.clone());
                *flagged
                    .entry(format!("{} {:?}", r.sensor_id.get(..5).unwrap_or_default(), r.quality.reasons))
                    .or_insert(0) += 1;
            }
        }
        if let Some(r) = decoded.rejection {
            rejected.push(format!("{} {:?}: {}", m.topic, r.reason, r.detail));
        }
    }
    let broken = city.faulty_sensors().iter().map(|(id, _)| id.to_string()).collect();
    Outcome { stored, rejected, produced: city.stats.readings, distinct: keys.len(), flagged, flagged_sensors, broken }
}

#[test]
fn calm_and_typhoon_messages_all_decode() {
    for scenario in [Scenario::Calm, Scenario::Typhoon] {
        let o = run(scenario, 8);
        let examples = &o.rejected[..o.rejected.len().min(5)];
        assert!(o.rejected.is_empty(), "{scenario:?}: {} rejected, e.g. {examples:?}", o.rejected.len());
        assert_eq!(o.stored as u64, o.produced, "{scenario:?}: every reading produced is stored");
        assert_eq!(o.distinct, o.stored, "{scenario:?}: (sensor_id, ts) is unique per reading");
        // Healthy sensors, even in a typhoon, must not look faulty; the
        // typhoon's spiking gauge must.
        let healthy_flagged: Vec<_> = o.flagged_sensors.difference(&o.broken).collect();
        assert!(healthy_flagged.is_empty(), "{scenario:?}: quality flags on healthy data: {:?}", o.flagged);
        let expect_flags = scenario == Scenario::Typhoon;
        assert_eq!(!o.flagged_sensors.is_empty(), expect_flags, "{scenario:?}: {:?}", o.flagged);
    }
}

#[test]
fn faults_garbage_is_rejected() {
    let o = run(Scenario::Faults, 4);
    assert!(o.stored > 1000);
    assert!(o.rejected.len() > 100, "{}", o.rejected.len());
    let reasons: HashSet<_> = o.rejected.iter().map(|r| r.split(' ').nth(1).unwrap_or_default().to_owned()).collect();
    assert!(reasons.len() >= 4, "{reasons:?}");
    // Spikes and out-of-range values are caught by the quality checks.
    assert!(!o.flagged.is_empty());
}
