//! `/api/v1/districts`, `/api/v1/districts/{name}`, `/api/v1/districts/{name}/sensors`.
//! Summaries are served pre-serialised (see `cache::prepared`).

pub mod outlines;
pub mod summary;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use serde::Serialize;
use utoipa::ToSchema;

use crate::params::{self, Params, Path};
use crate::sensors_api::{self, SensorFilter, SensorList, SensorsParams};
use crate::server::AppState;
use crate::{ErrorBody, QueryError};
pub use summary::DistrictSummary;

/// Every district's summary.
#[derive(Debug, Serialize, ToSchema)]
pub struct DistrictList {
    /// When the figures were computed, RFC 3339 UTC.
    pub as_of: String,
    pub items: Vec<DistrictSummary>,
}

/// Every district's figures: rain, rivers, road flooding, air, streetlights.
#[utoipa::path(get, path = "/api/v1/districts", tag = "districts", responses(
    (status = 200, description = "all districts (ETag; 304 on If-None-Match)", body = DistrictList)))]
pub async fn list_handler(State(state): State<AppState>, headers: HeaderMap) -> Result<Response, QueryError> {
    state.ready()?;
    state.metrics.hit("districts");
    Ok(state.summaries.get().await.districts.respond(&headers))
}

/// One district's figures.
#[utoipa::path(get, path = "/api/v1/districts/{name}", tag = "districts",
    params(("name" = String, Path, description = "District name, e.g. Sanmin")),
    responses(
        (status = 200, description = "the district (ETag; 304 on If-None-Match)", body = DistrictSummary),
        (status = 404, description = "no such district", body = ErrorBody)))]
pub async fn one_handler(
    State(state): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Result<Response, QueryError> {
    state.ready()?;
    let built = state.summaries.get().await;
    let prepared = built.district.get(&name).ok_or_else(|| unknown(&name))?;
    state.metrics.hit("district");
    Ok(prepared.respond(&headers))
}

fn unknown(name: &str) -> QueryError {
    QueryError::not_found(format!("district `{}`", params::shown(name)))
}

/// One district's sensors, filtered like `/api/v1/sensors`.
#[utoipa::path(get, path = "/api/v1/districts/{name}/sensors", tag = "districts",
    params(("name" = String, Path, description = "District name"), SensorsParams),
    responses(
        (status = 200, description = "a page of the district's sensors (ETag; 304 on If-None-Match)", body = SensorList),
        (status = 400, description = "a bad parameter, named", body = ErrorBody),
        (status = 404, description = "no such district", body = ErrorBody)))]
pub async fn sensors_handler(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Params(p): Params<SensorsParams>,
    headers: HeaderMap,
) -> Result<Response, QueryError> {
    let mut filter = SensorFilter::parse(&p)?;
    state.ready()?;
    if !state.cache.read().districts.contains(&name) {
        return Err(unknown(&name));
    }
    filter.district = Some(name);
    if filter.is_plain_district_page() {
        let built = state.summaries.get().await;
        if let Some(prepared) = filter.district.as_ref().and_then(|name| built.district_sensors.get(name)) {
            state.metrics.hit("sensors");
            return Ok(prepared.respond(&headers));
        }
    }
    Ok(sensors_api::page_response(&state, &filter, &headers))
}
