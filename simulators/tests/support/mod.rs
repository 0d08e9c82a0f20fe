//! The typhoon scenario as the platform would see it, without I/O: the
//! simulated city's messages go through the ingest daemon's normaliser (so
//! spikes are flagged exactly as in production), rain counters become
//! intervals as the store makes them, and every stored row becomes the
//! [`Observation`] the change stream would announce.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use chrono::{DateTime, TimeZone, Utc};
use citygauge_alerts::{Observation, Sensor};
use citygauge_domain::decode::{DeviceProfileConfig, DeviceProfiles};
use citygauge_domain::rain::{counter_step, CounterState, CounterStep};
use citygauge_domain::{quality, Kind, Message, NormaliseConfig, Normaliser, QualityLevel, Reading, Values};
use citygauge_sim::city::City;
use citygauge_sim::registry::{Kind as SimKind, Registry};
use citygauge_sim::Scenario;

/// 2026-09-01 06:00 Asia/Taipei: the typhoon's outer bands arrive.
pub const START_MS: i64 = 1_788_213_600_000;
pub const SEED: u64 = 20_261_122;

/// One simulated storm, as readings.
#[derive(Debug)]
pub struct Storm {
    pub registry: Registry,
    pub city: City,
    /// Every stored reading, in time order.
    pub observations: Vec<Observation>,
    pub start: DateTime<Utc>,
}

fn profiles() -> DeviceProfiles {
    let doc: toml::Value = toml::from_str(include_str!("../../device-profiles.toml")).unwrap();
    let table = doc["lorawan"]["profiles"].clone();
    let config: BTreeMap<String, DeviceProfileConfig> = table.try_into().unwrap();
    DeviceProfiles::compile(&config).unwrap()
}

fn kind(k: SimKind) -> Kind {
    k.as_str().parse().unwrap()
}

/// The committed demo city's hydrological sensors: rain gauges, river
/// gauges and road-flood sensors (what a flood warning rests on).
pub fn hydro_city() -> Registry {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/demo-city.geojson");
    let mut registry = Registry::load(&path).unwrap();
    registry.sensors.retain(|s| match s.kind() {
        SimKind::Rainfall | SimKind::FloodDepth => true,
        SimKind::WaterLevel => s.subkind() == "river",
        _ => false,
    });
    registry
}

fn domain_registry(reg: &Registry) -> citygauge_domain::Registry {
    citygauge_domain::Registry::new(reg.sensors.iter().map(|s| {
        let mut info = citygauge_domain::SensorInfo::new(
            s.props.id.clone(),
            kind(s.kind()),
            citygauge_domain::SensorStatus::Active,
        );
        info.bucket_mm = s.props.installation.bucket_mm;
        info.dev_eui = s.props.dev_eui.clone();
        info.device_profile = s.props.device_profile.clone();
        info
    }))
}

/// The registry as the engine reads it. Road-flood sensors name their
/// nearest river gauge within `radius_m` (the live evaluator finds it with
/// PostGIS; here the great-circle distance does).
pub fn engine_sensors(reg: &Registry, radius_m: f64) -> Vec<Sensor> {
    let rivers: Vec<_> = reg.sensors.iter().filter(|s| s.subkind() == "river").collect();
    reg.sensors
        .iter()
        .map(|s| {
            let object = |v: serde_json::Value| match v {
                serde_json::Value::Object(m) => m,
                _ => serde_json::Map::new(),
            };
            let mut installation = object(serde_json::to_value(&s.props.installation).unwrap());
            if s.kind() == SimKind::FloodDepth {
                let nearest = rivers
                    .iter()
                    .map(|r| (r.at.distance_km(s.at) * 1000.0, r))
                    .filter(|(d, _)| *d <= radius_m)
                    .min_by(|a, b| a.0.total_cmp(&b.0));
                if let Some((_, r)) = nearest {
                    installation.insert("river_station".into(), r.props.id.clone().into());
                }
            }
            Sensor {
                id: s.props.id.clone(),
                kind: Some(kind(s.kind())),
                subkind: s.props.subkind.clone(),
                name: Some(s.props.name.clone()),
                name_zh: s.props.installation.name_zh.clone(),
                district: Some(s.props.district.clone()),
                lon: Some(s.at.lon),
                lat: Some(s.at.lat),
                thresholds: s
                    .props
                    .thresholds
                    .as_ref()
                    .map(|t| object(serde_json::to_value(t).unwrap()))
                    .unwrap_or_default(),
                installation,
                expected_interval_s: i64::from(s.props.installation.cadence_s.unwrap_or(600)),
            }
        })
        .collect()
}

/// What the store commits for one row, as the change stream announces it.
fn observation(r: Reading) -> Observation {
    let kind = r.kind();
    let values = kind
        .columns()
        .iter()
        .filter_map(|f| Some((f.name().to_string(), serde_json::Value::from(r.values.number(*f)?))))
        .collect();
    Observation {
        sensor_id: r.sensor_id,
        kind,
        ts: r.ts,
        quality: r.quality.level,
        quality_reasons: r.quality.reasons,
        values,
    }
}

/// Runs `hours` of the typhoon over `registry` and returns what the
/// platform would have stored, minute by minute as it arrives.
pub fn typhoon(registry: Registry, hours: i64) -> Storm {
    let domain = domain_registry(&registry);
    let mut normaliser = Normaliser::new(NormaliseConfig { profiles: profiles(), ..Default::default() });
    let mut city = City::new(&registry, Scenario::Typhoon, START_MS, SEED);
    let mut counters: HashMap<String, CounterState> = HashMap::new();
    let mut observations = Vec::new();
    let mut out = Vec::new();
    let end = START_MS + hours * 3_600_000;
    let mut now = START_MS;
    while now < end {
        now += 60_000;
        city.advance_to(now, &mut out);
        if now >= end {
            city.flush(&mut out);
        }
        let received_at = Utc.timestamp_millis_opt(now).unwrap();
        for m in out.drain(..) {
            let msg = Message { topic: &m.topic, payload: &m.payload, received_at, content_type: None };
            let decoded = normaliser.normalise(&msg, &domain);
            assert!(decoded.rejection.is_none(), "{}: {:?}", m.topic, decoded.rejection);
            observations.extend(decoded.readings.into_iter().map(observation));
            for c in decoded.counters {
                let step = counter_step(counters.get(&c.sensor_id).copied(), c.ts, c.counter_mm);
                counters.insert(c.sensor_id.clone(), CounterState { ts: c.ts, counter_mm: c.counter_mm });
                if let CounterStep::Interval { rain_mm, interval_s, reset } = step {
                    let mut reading = Reading {
                        sensor_id: c.sensor_id,
                        ts: c.ts,
                        values: Values::Rainfall { rain_mm, interval_s: Some(interval_s) },
                        quality: c.quality,
                    };
                    if reset {
                        reading.quality.flag(QualityLevel::Suspect, "counter_reset");
                    }
                    quality::check_rain_rate(&mut reading);
                    observations.push(observation(reading));
                }
            }
        }
    }
    observations.sort_by_key(|o| o.ts);
    Storm { registry, city, observations, start: Utc.timestamp_millis_opt(START_MS).unwrap() }
}
