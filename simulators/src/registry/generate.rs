//! Deterministic generator for the demo city registry
//! (`citygauge-sim registry`). The same seed always yields the same file, so
//! the committed `deploy/demo-city.geojson` can be regenerated and diffed.

use rand::Rng;

use super::places::{nearest_district, District, DISTRICTS, RIVERS};
use super::{Installation, Kind, Registry, Sensor, SensorProps, Thresholds, Transport};
use crate::geo::{chainages, point_at_km, LonLat};
use crate::physics::hydro::{HIGH_FRACTION, WARNING_1_FRACTION, WARNING_2_FRACTION, WARNING_3_FRACTION};
use crate::profiles;
use crate::reading::round_to;
use crate::rng::{fnv1a, SimRng};

/// How many sensors of each sort to generate. River gauges come from the
/// station list in [`RIVERS`] (15).
#[derive(Debug, Clone)]
pub struct GenerateOptions {
    pub seed: u64,
    pub rain_gauges: usize,
    pub drainage: usize,
    pub sewers: usize,
    pub flood_depth: usize,
    pub air_quality: usize,
    pub streetlights: usize,
}

impl Default for GenerateOptions {
    fn default() -> Self {
        Self {
            seed: 2026,
            rain_gauges: 60,
            drainage: 40,
            sewers: 80,
            flood_depth: 60,
            air_quality: 120,
            streetlights: 2000,
        }
    }
}

/// Builds the demo city.
pub fn generate(opts: &GenerateOptions) -> Registry {
    let mut g = Generator { rng: SimRng::new(opts.seed), sensors: Vec::new() };
    g.rain_gauges(opts.rain_gauges);
    g.rivers();
    g.drainage(opts.drainage);
    g.sewers(opts.sewers);
    g.flood_depth(opts.flood_depth);
    g.air_quality(opts.air_quality);
    g.streetlights(opts.streetlights);
    Registry { name: "Kaohsiung demo city (citygauge-sim)".into(), sensors: g.sensors }
}

struct Generator {
    rng: SimRng,
    sensors: Vec<Sensor>,
}

/// A sensor about to be added; `finish` fills in the common parts.
struct Draft {
    /// The district the sensor was placed in (`None`: the nearest one).
    district: Option<&'static District>,
    id: String,
    kind: Kind,
    subkind: Option<&'static str>,
    name: String,
    at: LonLat,
    installation: Installation,
    thresholds: Option<Thresholds>,
    transport: Transport,
    profile: Option<&'static str>,
}

impl Generator {
    /// The `n`-th district for a fleet of `count`: every district first gets
    /// one (when there are enough), the rest follow population weights.
    fn district(&mut self, n: usize, count: usize) -> &'static District {
        if count >= 2 * DISTRICTS.len() && n < DISTRICTS.len() {
            return &DISTRICTS[n];
        }
        let total: f64 = DISTRICTS.iter().map(|d| d.weight).sum();
        let mut pick = self.rng.random_range(0.0..total);
        for d in DISTRICTS {
            pick -= d.weight;
            if pick <= 0.0 {
                return d;
            }
        }
        &DISTRICTS[0]
    }

    /// A uniformly random point within the district's radius.
    fn place(&mut self, d: &District) -> LonLat {
        let r = d.radius_km * self.rng.random::<f64>().sqrt();
        let theta = self.rng.random_range(0.0..std::f64::consts::TAU);
        let p = d.center.offset_km(r * theta.cos(), r * theta.sin());
        LonLat::new(round_to(p.lon, 6), round_to(p.lat, 6))
    }

    fn road(&mut self, d: &District) -> (&'static str, &'static str) {
        d.roads[self.rng.random_range(0..d.roads.len())]
    }

    fn mounted_at(&mut self) -> String {
        let (y, m, day) =
            (self.rng.random_range(2016..=2025), self.rng.random_range(1..=12), self.rng.random_range(1..=28));
        format!("{y}-{m:02}-{day:02}")
    }

    fn vendor(&mut self, options: &[&str]) -> Option<String> {
        Some(options[self.rng.random_range(0..options.len())].to_owned())
    }

    fn finish(&mut self, draft: Draft) {
        let district = draft.district.unwrap_or_else(|| nearest_district(draft.at));
        let mut installation = draft.installation;
        installation.mounted_at = Some(self.mounted_at());
        if draft.transport == Transport::Senml {
            let suffix = if draft.kind == Kind::Streetlight { "sl" } else { "01" };
            installation.gateway_id = Some(format!("kh-gw-{}-{suffix}", district.en.to_lowercase()));
        }
        let lorawan = matches!(draft.transport, Transport::Chirpstack | Transport::Tts);
        let props = SensorProps {
            dev_eui: lorawan.then(|| format!("{:016x}", fnv1a(draft.id.as_bytes()))),
            device_profile: lorawan.then(|| draft.profile.expect("LoRaWAN sensors have a profile").to_owned()),
            id: draft.id,
            kind: draft.kind,
            subkind: draft.subkind.map(str::to_owned),
            name: draft.name,
            district: district.en.to_owned(),
            installation,
            thresholds: draft.thresholds,
            transport: Some(draft.transport),
            public: true,
        };
        self.sensors.push(Sensor::new(props, draft.at));
    }

    fn rain_gauges(&mut self, count: usize) {
        const SITES: [(&str, &str); 6] = [
            ("District Office", "區公所"),
            ("Fire Station", "消防分隊"),
            ("Elementary School", "國小"),
            ("Pumping Station", "抽水站"),
            ("Sports Park", "運動公園"),
            ("Community Center", "活動中心"),
        ];
        for n in 0..count {
            let d = self.district(n, count);
            let at = self.place(d);
            let (site, site_zh) = SITES[n % SITES.len()];
            let subkind = ["tipping_bucket", "tipping_bucket", "counter", "interval"][n % 4];
            let bucket_mm = (subkind == "tipping_bucket").then(|| [0.5, 0.5, 0.5, 0.2, 1.0][n % 5]);
            let transport = if subkind == "interval" && n % 8 == 3 { Transport::Senml } else { Transport::Canonical };
            let installation = Installation {
                name_zh: Some(format!("{}{}雨量站", d.zh.trim_end_matches('區'), site_zh)),
                vendor: self.vendor(&["Ogawa Seiki", "Campbell Scientific", "Texas Electronics"]),
                bucket_mm,
                cadence_s: Some(600),
                ..Default::default()
            };
            let draft = Draft {
                district: Some(d),
                id: format!("kh-rg-{:04}", n + 1),
                kind: Kind::Rainfall,
                subkind: Some(subkind),
                name: format!("{} {} rain gauge", d.en, site),
                at,
                installation,
                thresholds: None,
                transport,
                profile: None,
            };
            self.finish(draft);
        }
    }

    fn rivers(&mut self) {
        let mut n = 0;
        for river in RIVERS {
            let total_km = *chainages(river.course).last().unwrap_or(&0.0);
            for &(bridge, bridge_zh, km) in river.stations {
                n += 1;
                let p = point_at_km(river.course, km);
                let base = round_to(self.rng.random_range(0.6..1.3), 2);
                let span = self.rng.random_range(2.0..3.5);
                let level = |f: f64| Some(round_to(base + f * span, 2));
                let installation = Installation {
                    name_zh: Some(format!("{}{}水位站", river.zh, bridge_zh)),
                    vendor: self.vendor(&["VEGA", "OTT HydroMet", "Endress+Hauser"]),
                    datum_m: Some(round_to(-1.2 + 0.35 * km, 2)),
                    base_level_m: Some(base),
                    river: Some(river.en.to_owned()),
                    river_zh: Some(river.zh.to_owned()),
                    river_km: Some(round_to(km.min(total_km), 2)),
                    cadence_s: Some(600),
                    ..Default::default()
                };
                let draft = Draft {
                    district: None,
                    id: format!("kh-wl-{n:04}"),
                    kind: Kind::WaterLevel,
                    subkind: Some("river"),
                    name: format!("{} at {}", river.en, bridge),
                    at: LonLat::new(round_to(p.lon, 6), round_to(p.lat, 6)),
                    installation,
                    thresholds: Some(Thresholds {
                        warning_3_m: level(WARNING_3_FRACTION),
                        warning_2_m: level(WARNING_2_FRACTION),
                        warning_1_m: level(WARNING_1_FRACTION),
                        ..Default::default()
                    }),
                    transport: Transport::Canonical,
                    profile: None,
                };
                self.finish(draft);
            }
        }
    }

    fn drainage(&mut self, count: usize) {
        for n in 0..count {
            let d = self.district(n, count);
            let at = self.place(d);
            let (road, road_zh) = self.road(d);
            let base = round_to(self.rng.random_range(0.2..0.5), 2);
            let span = self.rng.random_range(1.2..2.0);
            let draft = Draft {
                district: Some(d),
                id: format!("kh-dr-{:04}", n + 1),
                kind: Kind::WaterLevel,
                subkind: Some("drainage"),
                name: format!("{road} drainage channel"),
                at,
                installation: Installation {
                    name_zh: Some(format!("{road_zh}排水幹線水位站")),
                    vendor: self.vendor(&["VEGA", "Maxbotix", "Hwa Hsia Instruments"]),
                    base_level_m: Some(base),
                    cadence_s: Some(300),
                    ..Default::default()
                },
                thresholds: Some(Thresholds {
                    high_m: Some(round_to(base + HIGH_FRACTION * span, 2)),
                    ..Default::default()
                }),
                transport: if n % 2 == 0 { Transport::Senml } else { Transport::Canonical },
                profile: None,
            };
            self.finish(draft);
        }
    }

    fn sewers(&mut self, count: usize) {
        for n in 0..count {
            let d = self.district(n, count);
            let at = self.place(d);
            let (road, road_zh) = self.road(d);
            let diameter = [0.4, 0.6, 0.8, 1.0, 1.2][n % 5];
            let base = round_to(diameter * self.rng.random_range(0.15..0.35), 2);
            let transport = match n % 20 {
                0..=4 => Transport::Chirpstack,
                5..=7 => Transport::Tts,
                _ => Transport::Canonical,
            };
            let draft = Draft {
                district: Some(d),
                id: format!("kh-sw-{:04}", n + 1),
                kind: Kind::WaterLevel,
                subkind: Some("sewer"),
                name: format!("{road} sewer manhole #{}", n + 1),
                at,
                installation: Installation {
                    name_zh: Some(format!("{road_zh}污水人孔 第{}號", n + 1)),
                    vendor: self.vendor(&["Chunghwa Telecom NB-IoT", "Milesight", "Dragino"]),
                    base_level_m: Some(base),
                    pipe_diameter_m: Some(diameter),
                    cadence_s: Some(300),
                    ..Default::default()
                },
                thresholds: Some(Thresholds { high_m: Some(round_to(0.85 * diameter, 2)), ..Default::default() }),
                transport,
                profile: Some(profiles::SEWER_LEVEL_CM_V2),
            };
            self.finish(draft);
            // Every tenth sewer gauge sits in an industrial park's own network
            // and is the company's: kept out of open data.
            if n % 10 == 9 {
                if let Some(sensor) = self.sensors.last_mut() {
                    sensor.props.public = false;
                }
            }
        }
    }

    fn flood_depth(&mut self, count: usize) {
        for n in 0..count {
            let d = self.district(n, count);
            let at = self.place(d);
            let (road, road_zh) = self.road(d);
            let transport = match n % 6 {
                0 | 1 => Transport::Chirpstack,
                2 => Transport::Tts,
                _ => Transport::Canonical,
            };
            let underpass = n % 7 == 0;
            let draft = Draft {
                district: Some(d),
                id: format!("kh-fd-{:04}", n + 1),
                kind: Kind::FloodDepth,
                subkind: None,
                name: format!("{road} {}", if underpass { "underpass flood sensor" } else { "road flood sensor" }),
                at,
                installation: Installation {
                    name_zh: Some(format!(
                        "{road_zh}{}",
                        if underpass { "地下道淹水感測器" } else { "路面淹水感測器" }
                    )),
                    vendor: self.vendor(&["Dragino", "Milesight", "Sensoneo"]),
                    // Underpasses are the first places to flood.
                    drain_capacity_mmh: Some(round_to(
                        self.rng.random_range(30.0..70.0) * if underpass { 0.6 } else { 1.0 },
                        0,
                    )),
                    cadence_s: Some(600),
                    ..Default::default()
                },
                thresholds: Some(Thresholds { alert_cm: Some(10.0), severe_cm: Some(30.0), ..Default::default() }),
                transport,
                profile: Some(profiles::FLOOD_RADAR_V1),
            };
            self.finish(draft);
        }
    }

    fn air_quality(&mut self, count: usize) {
        for n in 0..count {
            let d = self.district(n, count);
            let at = self.place(d);
            let (road, road_zh) = self.road(d);
            let (transport, profile) = match n % 20 {
                0..=9 => (Transport::Canonical, None),
                10..=14 => (Transport::Senml, None),
                15..=17 => (Transport::Chirpstack, Some(profiles::AIRBOX_LORA_V1)),
                _ => (Transport::Tts, Some(profiles::GAS_SENSOR_V3)),
            };
            let gases = profile == Some(profiles::GAS_SENSOR_V3) || (profile.is_none() && n % 4 == 0);
            let draft = Draft {
                district: Some(d),
                id: format!("kh-aq-{:04}", n + 1),
                kind: Kind::AirQuality,
                subkind: None,
                name: format!("CityBike {road} station air sensor"),
                at,
                installation: Installation {
                    name_zh: Some(format!("公共自行車{road_zh}站空品感測器")),
                    vendor: self.vendor(&["Edimax AirBox", "Academia Sinica LASS", "Plantower"]),
                    gases: Some(gases),
                    cadence_s: Some(if n % 5 == 0 { 60 } else { 300 }),
                    ..Default::default()
                },
                thresholds: None,
                transport,
                profile,
            };
            self.finish(draft);
        }
    }

    fn streetlights(&mut self, count: usize) {
        for n in 0..count {
            let d = self.district(n, count);
            let at = self.place(d);
            let (road, road_zh) = self.road(d);
            let draft = Draft {
                district: Some(d),
                id: format!("kh-sl-{:06}", n + 1),
                kind: Kind::Streetlight,
                subkind: None,
                name: format!("{road} streetlight #{}", n + 1),
                at,
                installation: Installation {
                    name_zh: Some(format!("{road_zh}路燈 #{}", n + 1)),
                    vendor: self.vendor(&["Delta Electronics", "Everlight", "Philips"]),
                    rated_w: Some([80.0, 100.0, 100.0, 120.0, 150.0][n % 5]),
                    cadence_s: Some(if n % 3 == 0 { 600 } else { 900 }),
                    ..Default::default()
                },
                thresholds: None,
                transport: if n % 7 == 0 { Transport::Senml } else { Transport::Canonical },
                profile: None,
            };
            self.finish(draft);
        }
    }
}
