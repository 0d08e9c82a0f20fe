//! `/api/v1/sensors` (list and filter) and `/api/v1/sensors/{id}`, from the
//! cache. [`SensorFilter::parse`], [`list`] and [`one`] are the query layer.

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use chrono::{DateTime, Utc};
use citygauge_domain::{Kind, SensorStatus};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::cache::view::{self, SensorView, State as SensorState};
use crate::cache::{Cache, Entry};
use crate::params::{self, given, Params, Path};
use crate::server::AppState;
use crate::{ErrorBody, QueryError};

pub const DEFAULT_LIMIT: u64 = 100;
pub const MAX_LIMIT: u64 = 1_000;

/// Filters of the sensor list; all optional, combined with AND.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SensorsParams {
    /// `rainfall`, `water_level`, `flood_depth`, `air_quality` or `streetlight`.
    pub kind: Option<String>,
    /// e.g. `river`, `drainage`, `sewer`, `tipping_bucket`.
    pub subkind: Option<String>,
    /// District name, e.g. `Sanmin`.
    pub district: Option<String>,
    /// Registry status: `active`, `pending` or `retired`.
    pub status: Option<String>,
    /// `ok`, `stale`, `alerting`, `pending`, `retired` or `no_data`.
    pub state: Option<String>,
    /// `minlon,minlat,maxlon,maxlat` (WGS84).
    pub bbox: Option<String>,
    /// Free text, matched case-insensitively in the id, name and Chinese name.
    pub q: Option<String>,
    /// Page size, 1 to 1000 (default 100).
    pub limit: Option<String>,
    /// Items to skip (default 0).
    pub offset: Option<String>,
}

/// A checked [`SensorsParams`].
#[derive(Debug, Clone, Default)]
pub struct SensorFilter {
    pub kind: Option<Kind>,
    pub subkind: Option<String>,
    pub district: Option<String>,
    pub status: Option<SensorStatus>,
    pub state: Option<SensorState>,
    pub bbox: Option<[f64; 4]>,
    pub q: Option<String>,
    pub limit: usize,
    pub offset: usize,
}

impl SensorFilter {
    /// Whether this is a district's first page with no other filter: the
    /// page the control room asks for, kept ready in each summaries build.
    pub fn is_plain_district_page(&self) -> bool {
        self.kind.is_none()
            && self.subkind.is_none()
            && self.status.is_none()
            && self.state.is_none()
            && self.bbox.is_none()
            && self.q.is_none()
            && self.limit == DEFAULT_LIMIT as usize
            && self.offset == 0
    }

    /// A district's first page with no other filter.
    pub fn district_page(district: &str) -> SensorFilter {
        SensorFilter { district: Some(district.to_string()), limit: DEFAULT_LIMIT as usize, ..SensorFilter::default() }
    }

    pub fn parse(p: &SensorsParams) -> Result<SensorFilter, QueryError> {
        Ok(SensorFilter {
            kind: given(&p.kind).map(|k| params::kind("kind", k)).transpose()?,
            subkind: given(&p.subkind).map(str::to_string),
            district: given(&p.district).map(str::to_string),
            status: given(&p.status)
                .map(|s| {
                    s.parse::<SensorStatus>().map_err(|_| {
                        QueryError::bad("status", format!("`{}` is not active, pending or retired", params::shown(s)))
                    })
                })
                .transpose()?,
            state: given(&p.state)
                .map(|s| {
                    SensorState::parse(s).ok_or_else(|| {
                        QueryError::bad(
                            "state",
                            format!("`{}` is not ok, stale, alerting, pending, retired or no_data", params::shown(s)),
                        )
                    })
                })
                .transpose()?,
            bbox: given(&p.bbox).map(|b| params::bbox("bbox", b)).transpose()?,
            q: given(&p.q)
                .map(|q| {
                    if q.chars().count() > 100 {
                        Err(QueryError::bad("q", "at most 100 characters"))
                    } else {
                        Ok(q.to_lowercase())
                    }
                })
                .transpose()?,
            limit: given(&p.limit)
                .map(|l| params::integer("limit", l, 1, MAX_LIMIT))
                .transpose()?
                .unwrap_or(DEFAULT_LIMIT) as usize,
            offset: given(&p.offset).map(|o| params::integer("offset", o, 0, 10_000_000)).transpose()?.unwrap_or(0)
                as usize,
        })
    }

    fn matches(&self, entry: &Entry, now: DateTime<Utc>, stale_factor: f64) -> bool {
        let m = &entry.meta;
        self.kind.is_none_or(|k| m.kind == k)
            && self.subkind.as_ref().is_none_or(|s| m.subkind.as_ref() == Some(s))
            && self.district.as_ref().is_none_or(|d| m.district.as_ref() == Some(d))
            && self.status.is_none_or(|s| m.status == s)
            && self.bbox.is_none_or(|[x0, y0, x1, y1]| match (m.lon, m.lat) {
                (Some(x), Some(y)) => x >= x0 && x <= x1 && y >= y0 && y <= y1,
                _ => false,
            })
            && self.q.as_ref().is_none_or(|q| {
                m.id.to_lowercase().contains(q)
                    || m.name.as_ref().is_some_and(|n| n.to_lowercase().contains(q))
                    || m.name_zh.as_ref().is_some_and(|n| n.contains(q.as_str()))
            })
            && self.state.is_none_or(|s| view::state(entry, now, stale_factor) == s)
    }
}

/// A page of sensors.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SensorList {
    /// Sensors matching the filters (all pages).
    pub total: usize,
    pub limit: usize,
    pub offset: usize,
    pub items: Vec<SensorView>,
}

impl SensorList {
    /// The same page without what only moves with the clock (`age_s`): what
    /// its ETag is made from.
    pub fn untimed(&self) -> SensorList {
        SensorList { items: self.items.iter().map(SensorView::untimed).collect(), ..self.clone() }
    }
}

/// The sensors matching `filter`, in id order.
pub fn list(cache: &Cache, filter: &SensorFilter, now: DateTime<Utc>) -> SensorList {
    let data = cache.read();
    let mut total = 0;
    let mut items = Vec::new();
    for entry in data.sensors.values().filter(|e| filter.matches(e, now, cache.stale_factor)) {
        if total >= filter.offset && items.len() < filter.limit {
            items.push(view::sensor_view(entry, now, cache, false));
        }
        total += 1;
    }
    SensorList { total, limit: filter.limit, offset: filter.offset, items }
}

/// One sensor with its installation details.
pub fn one(cache: &Cache, id: &str, now: DateTime<Utc>) -> Result<SensorView, QueryError> {
    let data = cache.read();
    let entry = data.sensors.get(id).ok_or_else(|| QueryError::not_found(format!("sensor `{}`", params::shown(id))))?;
    Ok(view::sensor_view(entry, now, cache, true))
}

/// List and filter sensors, each with its latest reading, state and level.
#[utoipa::path(get, path = "/api/v1/sensors", tag = "sensors", params(SensorsParams), responses(
    (status = 200, description = "a page of sensors", body = SensorList),
    (status = 400, description = "a bad parameter, named", body = ErrorBody)))]
pub async fn list_handler(
    State(state): State<AppState>,
    Params(p): Params<SensorsParams>,
    headers: HeaderMap,
) -> Result<Response, QueryError> {
    let filter = SensorFilter::parse(&p)?;
    state.ready()?;
    Ok(page_response(&state, &filter, &headers))
}

/// The page of sensors `filter` selects, with an ETag from the page without
/// `age_s` (304 on If-None-Match): the sensor list and a district's sensors.
pub fn page_response(state: &AppState, filter: &SensorFilter, headers: &HeaderMap) -> Response {
    state.metrics.hit("sensors");
    let page = list(&state.cache, filter, Utc::now());
    crate::cache::prepared::json_response(&page, &page.untimed(), headers)
}

/// One sensor, with its installation details.
#[utoipa::path(get, path = "/api/v1/sensors/{id}", tag = "sensors",
    params(("id" = String, Path, description = "Sensor id")),
    responses(
        (status = 200, description = "the sensor (ETag; 304 on If-None-Match)", body = SensorView),
        (status = 404, description = "no such sensor", body = ErrorBody)))]
pub async fn one_handler(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, QueryError> {
    state.ready()?;
    state.metrics.hit("sensor");
    let sensor = one(&state.cache, &id, Utc::now())?;
    Ok(crate::cache::prepared::json_response(&sensor, &sensor.untimed(), &headers))
}
