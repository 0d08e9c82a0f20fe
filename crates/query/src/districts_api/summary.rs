//! A district's figures, computed from the cache (I/O-free given the data).

use std::collections::BTreeMap;

use citygauge_domain::aqi::AqiCategory;
use citygauge_domain::rain_window::RainClass;
use citygauge_domain::{Kind, SensorStatus};
use serde::Serialize;
use utoipa::ToSchema;

use crate::cache::derive::{Derived, Snapshot};
use crate::cache::view::{self, round3, Level};

#[derive(Debug, Clone, Default, Serialize, ToSchema)]
pub struct SensorCounts {
    pub total: usize,
    /// Sensors by state (`ok`, `stale`, `pending`, `retired`, `no_data`...).
    pub by_state: BTreeMap<&'static str, usize>,
}

/// Rain in one window over a district's gauges.
#[derive(Debug, Clone, Default, Serialize, ToSchema)]
pub struct RainWindowSummary {
    /// Highest accumulation of a reporting gauge, mm.
    pub max_mm: Option<f64>,
    pub max_sensor: Option<String>,
    /// Mean over the gauges that reported in the window, mm.
    pub mean_mm: Option<f64>,
    /// Active gauges in the district.
    pub gauges: usize,
    /// Gauges with at least one reading in the window.
    pub gauges_reporting: usize,
    /// Gauges whose readings cover the whole window (but for the interval
    /// still in progress).
    pub gauges_complete: usize,
}

#[derive(Debug, Clone, Default, Serialize, ToSchema)]
pub struct RainSummary {
    #[serde(rename = "10m")]
    pub m10: RainWindowSummary,
    #[serde(rename = "1h")]
    pub h1: RainWindowSummary,
    #[serde(rename = "3h")]
    pub h3: RainWindowSummary,
    #[serde(rename = "24h")]
    pub h24: RainWindowSummary,
    /// Worst CWA class of a gauge: `none`, `heavy`, `extremely_heavy`, `torrential`, `extremely_torrential`.
    pub class: &'static str,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RiverSummary {
    /// The river gauge closest to (or furthest past) its warning level 3.
    pub sensor_id: String,
    pub level_m: f64,
    /// Level over the station's lowest warning level (`warning_3_m`).
    pub fraction_of_warning: Option<f64>,
    /// 3, 2 or 1 when reached; null below level 3.
    pub warning_level: Option<u8>,
    /// River gauges left out because they are silent (`stale`).
    pub stale: usize,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct FloodItem {
    pub sensor_id: String,
    pub depth_cm: f64,
    pub ts: String,
    /// The sensor has gone silent: this is its last depth, not a current one
    /// (not counted in `wet` or `max_depth_cm`).
    pub stale: bool,
}

#[derive(Debug, Clone, Default, Serialize, ToSchema)]
pub struct RoadFlooding {
    pub sensors: usize,
    /// Reporting sensors with water on the road (`wet`, `alert` or `severe`:
    /// at least `--wet-min-cm`).
    pub wet: usize,
    /// Silent sensors (`stale`), counted apart whatever they last read.
    pub stale: usize,
    pub max_depth_cm: Option<f64>,
    pub max_sensor: Option<String>,
    /// The wet sensors, deepest first; then silent ones whose last reading
    /// was wet, marked `stale`.
    pub items: Vec<FloodItem>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AirSummary {
    /// AQI of the worst station (MOENV's 12 h/4 h moving averages of PM2.5/PM10).
    pub aqi: u32,
    pub category: &'static str,
    pub worst_sensor: String,
    /// Stations with a usable, current reading.
    pub stations: usize,
    /// Silent stations (`stale`), left out of the index.
    pub stale: usize,
}

#[derive(Debug, Clone, Default, Serialize, ToSchema)]
pub struct Streetlights {
    pub total: usize,
    pub on: usize,
    pub off: usize,
    pub faulty: usize,
    pub no_data: usize,
    /// Silent lamps (`stale`): not counted as on, off or faulty.
    pub stale: usize,
    /// Sum over lamps of their meter's advance since the city's midnight, kWh.
    pub energy_today_kwh: f64,
}

/// Everything the control room's district panel shows.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DistrictSummary {
    pub district: String,
    pub sensors: SensorCounts,
    pub rain: RainSummary,
    pub river: Option<RiverSummary>,
    pub road_flooding: RoadFlooding,
    pub air: Option<AirSummary>,
    pub streetlights: Streetlights,
}

/// The summary over `sensors` (a district's, or the whole city's).
pub fn summarise<'a>(district: &str, sensors: impl Iterator<Item = &'a Derived>) -> DistrictSummary {
    let mut counts = SensorCounts::default();
    let mut rain_sum: [(f64, usize); 4] = [(0.0, 0); 4];
    let mut rain = RainSummary { class: RainClass::None.as_str(), ..RainSummary::default() };
    // Rain levels are declared in order of severity.
    let mut worst_class = Level::Rain(RainClass::None);
    let mut river: Option<RiverSummary> = None;
    let mut river_rank = f64::NEG_INFINITY;
    let mut river_stale = 0;
    let mut road = RoadFlooding::default();
    let mut air: Option<AirSummary> = None;
    let (mut air_stations, mut air_stale) = (0, 0);
    let mut lights = Streetlights::default();

    for d in sensors {
        let meta = &d.meta;
        counts.total += 1;
        *counts.by_state.entry(d.state.as_str()).or_default() += 1;
        if meta.status != SensorStatus::Active {
            continue;
        }
        match meta.kind {
            Kind::Rainfall => {
                // Windows are honest about silence already (no readings, no sum).
                let Some(windows) = &d.rain else { continue };
                for (i, (_, acc)) in windows.iter().enumerate() {
                    let slot = match i {
                        0 => &mut rain.m10,
                        1 => &mut rain.h1,
                        2 => &mut rain.h3,
                        _ => &mut rain.h24,
                    };
                    slot.gauges += 1;
                    if let Some(mm) = acc.mm {
                        slot.gauges_reporting += 1;
                        slot.gauges_complete += usize::from(acc.is_complete(meta.expected_interval_s + 5));
                        rain_sum[i].0 += mm;
                        rain_sum[i].1 += 1;
                        if slot.max_mm.is_none_or(|m| mm > m) {
                            slot.max_mm = Some(round3(mm));
                            slot.max_sensor = Some(meta.id.clone());
                        }
                    }
                }
                if let Some(level) = d.level {
                    worst_class = worst_class.max(level);
                }
            }
            Kind::WaterLevel if meta.subkind.as_deref() == Some("river") => {
                if d.is_stale() {
                    river_stale += 1;
                    continue;
                }
                let Some(level_m) = d.usable().and_then(|l| l.number("level_m")) else { continue };
                let fraction = meta.threshold("warning_3_m").filter(|w| *w > 0.0).map(|w| level_m / w);
                let rank = fraction.unwrap_or(f64::MIN / 2.0);
                if river.is_none() || rank > river_rank {
                    river_rank = rank;
                    river = Some(RiverSummary {
                        sensor_id: meta.id.clone(),
                        level_m,
                        fraction_of_warning: fraction.map(round3),
                        warning_level: view::river_warning(meta, level_m),
                        stale: 0,
                    });
                }
            }
            Kind::WaterLevel => {}
            Kind::FloodDepth => {
                road.sensors += 1;
                let stale = d.is_stale();
                road.stale += usize::from(stale);
                let Some(latest) = d.usable() else { continue };
                let Some(depth) = latest.number("depth_cm") else { continue };
                let wet = matches!(d.level, Some(Level::Wet | Level::Alert | Level::Severe));
                if wet {
                    road.items.push(FloodItem {
                        sensor_id: meta.id.clone(),
                        depth_cm: depth,
                        ts: view::rfc3339(latest.ts),
                        stale,
                    });
                }
                if stale {
                    continue;
                }
                road.wet += usize::from(wet);
                if road.max_depth_cm.is_none_or(|m| depth > m) {
                    road.max_depth_cm = Some(depth);
                    road.max_sensor = Some(meta.id.clone());
                }
            }
            Kind::AirQuality => {
                if d.is_stale() {
                    air_stale += 1;
                    continue;
                }
                let Some(aqi) = d.aqi else { continue };
                air_stations += 1;
                if air.as_ref().is_none_or(|a| aqi > a.aqi) {
                    air = Some(AirSummary {
                        aqi,
                        category: AqiCategory::of(aqi).as_str(),
                        worst_sensor: meta.id.clone(),
                        stations: 0,
                        stale: 0,
                    });
                }
            }
            Kind::Streetlight => {
                lights.total += 1;
                lights.energy_today_kwh += d.energy_today_kwh.unwrap_or(0.0);
                if d.is_stale() {
                    lights.stale += 1;
                    continue;
                }
                match d.level {
                    Some(Level::Fault) => lights.faulty += 1,
                    Some(Level::On) => lights.on += 1,
                    Some(Level::Off) => lights.off += 1,
                    _ => lights.no_data += 1,
                }
            }
        }
    }
    for (i, slot) in [&mut rain.m10, &mut rain.h1, &mut rain.h3, &mut rain.h24].into_iter().enumerate() {
        if rain_sum[i].1 > 0 {
            slot.mean_mm = Some(round3(rain_sum[i].0 / rain_sum[i].1 as f64));
        }
    }
    rain.class = worst_class.as_str();
    road.items.sort_by(|a, b| {
        a.stale.cmp(&b.stale).then(b.depth_cm.total_cmp(&a.depth_cm)).then_with(|| a.sensor_id.cmp(&b.sensor_id))
    });
    if let Some(a) = air.as_mut() {
        a.stations = air_stations;
        a.stale = air_stale;
    }
    if let Some(r) = river.as_mut() {
        r.stale = river_stale;
    }
    lights.energy_today_kwh = round3(lights.energy_today_kwh);
    DistrictSummary {
        district: district.to_string(),
        sensors: counts,
        rain,
        river,
        road_flooding: road,
        air,
        streetlights: lights,
    }
}

/// Every district's summary, in name order.
pub fn all(snapshot: &Snapshot) -> Vec<DistrictSummary> {
    let mut by_district: BTreeMap<&str, Vec<&Derived>> =
        snapshot.districts.iter().map(|d| (d.as_str(), Vec::new())).collect();
    for d in &snapshot.sensors {
        if let Some(name) = d.meta.district.as_deref() {
            by_district.entry(name).or_default().push(d);
        }
    }
    by_district.into_iter().map(|(name, sensors)| summarise(name, sensors.into_iter())).collect()
}
