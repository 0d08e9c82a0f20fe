//! `/api/v1/overview`: the city-wide figures of the control room's top bar.

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use chrono::{DateTime, Utc};
use citygauge_domain::aqi::AqiCategory;
use citygauge_domain::rain_window::{RainClass, Window};
use citygauge_domain::{Kind, SensorStatus};
use serde::Serialize;
use utoipa::ToSchema;

use crate::cache::derive::Snapshot;
use crate::cache::view::{self, round3, Level};
use crate::districts_api::summary::SensorCounts;
use crate::server::AppState;
use crate::QueryError;

#[derive(Debug, Default, Serialize, ToSchema)]
pub struct OverviewRain {
    pub max_1h_mm: Option<f64>,
    pub max_1h_sensor: Option<String>,
    pub max_24h_mm: Option<f64>,
    pub max_24h_sensor: Option<String>,
    /// Worst CWA class of any gauge.
    pub class: &'static str,
}

#[derive(Debug, Default, Serialize, ToSchema)]
pub struct OverviewRivers {
    pub stations: usize,
    /// Stations at warning level 3 (and not higher), 2, 1.
    pub warning_3: usize,
    pub warning_2: usize,
    pub warning_1: usize,
    /// Silent stations (`stale`), not counted at any warning level.
    pub stale: usize,
}

#[derive(Debug, Default, Serialize, ToSchema)]
pub struct OverviewRoads {
    pub sensors: usize,
    /// Sensors with water on the road (depth > 0), `alert` and `severe` included.
    pub wet: usize,
    pub alert: usize,
    pub severe: usize,
    /// Silent sensors (`stale`), not counted as wet whatever they last read.
    pub stale: usize,
}

#[derive(Debug, Default, Serialize, ToSchema)]
pub struct OverviewAir {
    /// The highest station AQI (MOENV's 12 h/4 h moving averages); null
    /// while no station has enough hours of readings.
    pub aqi_max: Option<u32>,
    pub worst_sensor: Option<String>,
    pub category: Option<&'static str>,
    /// Silent stations (`stale`), left out of the index.
    pub stale: usize,
}

#[derive(Debug, Default, Serialize, ToSchema)]
pub struct OverviewLights {
    pub total: usize,
    pub on: usize,
    pub off: usize,
    pub faulty: usize,
    /// Silent lamps (`stale`): not counted as on, off or faulty.
    pub stale: usize,
}

#[derive(Debug, Default, Serialize, ToSchema)]
pub struct OverviewIngest {
    /// Readings committed in the last 60 s (as the change stream announced them).
    pub readings_last_minute: u64,
    pub last_reading_at: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Overview {
    pub as_of: String,
    pub sensors: SensorCounts,
    pub rain: OverviewRain,
    pub rivers: OverviewRivers,
    pub roads: OverviewRoads,
    pub air: OverviewAir,
    pub streetlights: OverviewLights,
    pub ingest: OverviewIngest,
}

/// The overview from the same per-sensor records as the district
/// summaries; `ingest` = (readings in the last minute, newest reading).
pub fn compute(snapshot: &Snapshot, ingest: (u64, Option<DateTime<Utc>>)) -> Overview {
    let mut sensors = SensorCounts::default();
    let mut rain = OverviewRain::default();
    // Rain levels are declared in order of severity.
    let mut class = Level::Rain(RainClass::None);
    let mut rivers = OverviewRivers::default();
    let mut roads = OverviewRoads::default();
    let mut air = OverviewAir::default();
    let mut lights = OverviewLights::default();
    for d in &snapshot.sensors {
        let meta = &d.meta;
        sensors.total += 1;
        *sensors.by_state.entry(d.state.as_str()).or_default() += 1;
        if meta.status != SensorStatus::Active {
            continue;
        }
        let stale = d.is_stale();
        match meta.kind {
            Kind::Rainfall => {
                let Some(windows) = &d.rain else { continue };
                if let Some(level) = d.level {
                    class = class.max(level);
                }
                for (window, acc) in windows {
                    let Some(mm) = acc.mm else { continue };
                    let (max, sensor) = match window {
                        Window::Hour1 => (&mut rain.max_1h_mm, &mut rain.max_1h_sensor),
                        Window::Hour24 => (&mut rain.max_24h_mm, &mut rain.max_24h_sensor),
                        _ => continue,
                    };
                    if max.is_none_or(|m| mm > m) {
                        *max = Some(round3(mm));
                        *sensor = Some(meta.id.clone());
                    }
                }
            }
            Kind::WaterLevel if meta.subkind.as_deref() == Some("river") => {
                rivers.stations += 1;
                match (stale, d.level) {
                    (true, _) => rivers.stale += 1,
                    (false, Some(Level::Warning3)) => rivers.warning_3 += 1,
                    (false, Some(Level::Warning2)) => rivers.warning_2 += 1,
                    (false, Some(Level::Warning1)) => rivers.warning_1 += 1,
                    _ => {}
                }
            }
            Kind::WaterLevel => {}
            Kind::FloodDepth => {
                roads.sensors += 1;
                match (stale, d.level) {
                    (true, _) => roads.stale += 1,
                    (false, Some(Level::Wet)) => roads.wet += 1,
                    (false, Some(Level::Alert)) => {
                        roads.wet += 1;
                        roads.alert += 1;
                    }
                    (false, Some(Level::Severe)) => {
                        roads.wet += 1;
                        roads.severe += 1;
                    }
                    _ => {}
                }
            }
            Kind::AirQuality => {
                if stale {
                    air.stale += 1;
                    continue;
                }
                let Some(aqi) = d.aqi else { continue };
                if air.aqi_max.is_none_or(|m| aqi > m) {
                    air.aqi_max = Some(aqi);
                    air.worst_sensor = Some(meta.id.clone());
                    air.category = Some(AqiCategory::of(aqi).as_str());
                }
            }
            Kind::Streetlight => {
                lights.total += 1;
                match (stale, d.level) {
                    (true, _) => lights.stale += 1,
                    (false, Some(Level::On)) => lights.on += 1,
                    (false, Some(Level::Off)) => lights.off += 1,
                    (false, Some(Level::Fault)) => lights.faulty += 1,
                    _ => {}
                }
            }
        }
    }
    rain.class = class.as_str();
    let (readings_last_minute, last) = ingest;
    Overview {
        as_of: view::rfc3339(snapshot.now),
        sensors,
        rain,
        rivers,
        roads,
        air,
        streetlights: lights,
        ingest: OverviewIngest { readings_last_minute, last_reading_at: last.map(view::rfc3339) },
    }
}

/// City-wide figures for the top bar.
#[utoipa::path(get, path = "/api/v1/overview", tag = "overview", responses(
    (status = 200, description = "the overview (ETag; 304 on If-None-Match)", body = Overview)))]
pub async fn handler(State(state): State<AppState>, headers: HeaderMap) -> Result<Response, QueryError> {
    state.ready()?;
    state.metrics.hit("overview");
    Ok(state.summaries.get().await.overview.respond(&headers))
}
