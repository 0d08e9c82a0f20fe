//! `/api/v1/sensors/{id}/series` and `.csv`: thin handlers over the series
//! layer (`crate::series`). The sensor is looked up in the cache (unknown:
//! 404) and the parameters checked before a database connection is taken.

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use chrono::Utc;
use citygauge_domain::Kind;
use utoipa::OpenApi;

use crate::params::{self, Params, Path};
use crate::series::{self, Series, SeriesLimits, SeriesParams};
use crate::server::AppState;
use crate::{ErrorBody, QueryError};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/sensors/{id}/series", get(series_handler))
        .route("/api/v1/sensors/{id}/series.csv", get(csv_handler))
}

fn kind_of(state: &AppState, id: &str) -> Result<Kind, QueryError> {
    state.ready()?;
    let data = state.cache.read();
    let entry = data.sensors.get(id).ok_or_else(|| QueryError::not_found(format!("sensor `{}`", params::shown(id))))?;
    Ok(entry.meta.kind)
}

async fn series_for(state: &AppState, id: &str, p: &SeriesParams) -> Result<Series, QueryError> {
    let kind = kind_of(state, id)?;
    let now = Utc::now();
    let raw_kept_from = state.raw_retention.get(&kind).map(|keep| now - *keep);
    let limits = SeriesLimits { raw_kept_from, ..SeriesLimits::default() };
    let request = p.validate(kind, now, &limits)?;
    let client = state.pool.get().await?;
    series::run(&**client, id, kind, &request, &limits).await
}

/// The errors both series routes answer with (documentation only).
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)]
enum SeriesErrors {
    #[response(status = 400, description = "a bad parameter, named")]
    BadParameter(ErrorBody),
    #[response(status = 404, description = "no such sensor")]
    NotFound(ErrorBody),
    #[response(status = 503, description = "overloaded or timed out; see Retry-After")]
    Unavailable(ErrorBody),
}

/// One sensor's series: raw readings or rollup buckets, gaps as nulls.
#[utoipa::path(get, path = "/api/v1/sensors/{id}/series", tag = "series",
    params(("id" = String, Path, description = "Sensor id"), SeriesParams),
    responses((status = 200, description = "the series", body = Series), SeriesErrors))]
pub async fn series_handler(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Params(p): Params<SeriesParams>,
) -> Result<Response, QueryError> {
    Ok(Json(series_for(&state, &id, &p).await?).into_response())
}

/// The same series as CSV: `ts,<columns...>`, RFC 3339 times, empty cells for gaps.
#[utoipa::path(get, path = "/api/v1/sensors/{id}/series.csv", tag = "series",
    params(("id" = String, Path, description = "Sensor id"), SeriesParams),
    responses((status = 200, description = "CSV", content_type = "text/csv", body = String), SeriesErrors))]
pub async fn csv_handler(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Params(p): Params<SeriesParams>,
) -> Result<Response, QueryError> {
    let series = series_for(&state, &id, &p).await?;
    let body = series::to_csv(&series)?;
    let filename = format!(
        "attachment; filename=\"{}-series.csv\"",
        id.replace(|c: char| !c.is_ascii_alphanumeric() && c != '-', "_")
    );
    Ok(([(header::CONTENT_TYPE, series::CSV_CONTENT_TYPE.to_string()), (header::CONTENT_DISPOSITION, filename)], body)
        .into_response())
}

#[derive(OpenApi)]
#[openapi(paths(series_handler, csv_handler))]
struct SeriesDoc;

pub fn openapi() -> utoipa::openapi::OpenApi {
    SeriesDoc::openapi()
}
