//! The open-data catalogue: the list of datasets (one per kind), each
//! dataset's metadata with the National Development Council's fields
//! (data.gov.tw), the list of its day files, and a DCAT-AP JSON-LD catalogue
//! a portal harvests (`/opendata/v1/catalog.jsonld`).
//!
//! Spatial and temporal coverage are of public sensors only; they are
//! computed from the registry and the daily rollups and kept for a minute.

pub mod dcat;
pub mod ndc;
pub mod texts;

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, NaiveDate, Utc};
use citygauge_domain::Kind;
use serde::Serialize;
use serde_json::{json, Value};
use tokio::time::Instant;

use crate::open_data::PUBLIC_SENSORS_PREDICATE;
use crate::params::{self, Path};
use crate::{AppState, QueryError};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/opendata/v1/datasets", get(list_handler))
        .route("/opendata/v1/datasets/{kind}", get(metadata_handler))
        .route("/opendata/v1/datasets/{kind}/days", get(days_handler))
        .route("/opendata/v1/catalog.jsonld", get(catalog_handler))
}

/// What a dataset covers (public sensors only).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Coverage {
    pub sensors: i64,
    /// `[min lon, min lat, max lon, max lat]`, WGS84.
    pub bbox: Option<[f64; 4]>,
    /// First and last day (city time) with readings.
    pub first_day: Option<NaiveDate>,
    pub last_day: Option<NaiveDate>,
}

/// Coverage by kind, recomputed at most once a minute.
#[derive(Debug, Default)]
pub struct CoverageCache {
    entries: Mutex<HashMap<Kind, (Instant, Coverage)>>,
}

const COVERAGE_TTL: Duration = Duration::from_secs(60);

pub async fn coverage(state: &AppState, kind: Kind) -> Result<Coverage, QueryError> {
    let cache = &state.open_data.catalog;
    if let Some((at, coverage)) = cache.entries.lock().unwrap_or_else(|e| e.into_inner()).get(&kind) {
        if at.elapsed() < COVERAGE_TTL {
            return Ok(coverage.clone());
        }
    }
    let client = state.pool.get().await?;
    let row = client
        .query_one(
            &format!(
                "SELECT count(*), ST_XMin(ST_Extent(location)::box3d), ST_YMin(ST_Extent(location)::box3d),
                        ST_XMax(ST_Extent(location)::box3d), ST_YMax(ST_Extent(location)::box3d)
                   FROM sensors WHERE kind = $1 AND {PUBLIC_SENSORS_PREDICATE}"
            ),
            &[&kind.as_str()],
        )
        .await?;
    let corners: [Option<f64>; 4] = [row.get(1), row.get(2), row.get(3), row.get(4)];
    let bbox = match corners {
        [Some(a), Some(b), Some(c), Some(d)] => Some([a, b, c, d]),
        _ => None,
    };
    let sensors: i64 = row.get(0);
    // The daily rollups (good and suspect readings) are small and kept for good.
    let times = client
        .query_one(
            &format!(
                "SELECT min(first_ts), max(last_ts) FROM {rollup}
                  WHERE sensor_id IN (SELECT id FROM sensors WHERE kind = $1 AND {PUBLIC_SENSORS_PREDICATE})",
                rollup = citygauge_domain::rollup::relation(kind, citygauge_domain::rollup::Level::Day)
            ),
            &[&kind.as_str()],
        )
        .await?;
    let day = |ts: Option<DateTime<Utc>>| ts.map(|t| t.with_timezone(&state.timezone).date_naive());
    let coverage = Coverage { sensors, bbox, first_day: day(times.get(0)), last_day: day(times.get(1)) };
    cache.entries.lock().unwrap_or_else(|e| e.into_inner()).insert(kind, (Instant::now(), coverage.clone()));
    Ok(coverage)
}

/// Absolute base URL of the service: the option, or the request's `Host`.
pub fn base_url(state: &AppState, headers: &HeaderMap) -> String {
    if let Some(url) = &state.open_data.config.opendata_public_url {
        return url.trim_end_matches('/').to_string();
    }
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| h.chars().all(|c| c.is_ascii_alphanumeric() || ".-:[]".contains(c)))
        .unwrap_or("localhost");
    format!("http://{host}")
}

/// Every dataset with its links.
async fn list_handler(State(state): State<AppState>, headers: HeaderMap) -> Result<Response, QueryError> {
    let base = base_url(&state, &headers);
    let mut items = Vec::new();
    for kind in Kind::ALL {
        let coverage = coverage(&state, kind).await?;
        let text = texts::dataset(kind);
        items.push(json!({
            "kind": kind.as_str(),
            "title": {"en": text.title.en, "zh-TW": text.title.zh},
            "sensors": coverage.sensors,
            "first_day": coverage.first_day,
            "last_day": coverage.last_day,
            "metadata": format!("{base}/opendata/v1/datasets/{kind}"),
            "days": format!("{base}/opendata/v1/datasets/{kind}/days"),
            "csv": format!("{base}/opendata/v1/{kind}/{{YYYY-MM-DD}}.csv"),
            "json": format!("{base}/opendata/v1/{kind}/{{YYYY-MM-DD}}.json"),
        }));
    }
    Ok(cached(Json(json!({ "catalog": format!("{base}/opendata/v1/catalog.jsonld"), "datasets": items }))))
}

/// One dataset's metadata (NDC fields).
async fn metadata_handler(
    State(state): State<AppState>,
    Path(kind): Path<String>,
    headers: HeaderMap,
) -> Result<Response, QueryError> {
    let kind = params::kind("kind", &kind)?;
    let coverage = coverage(&state, kind).await?;
    let base = base_url(&state, &headers);
    Ok(cached(Json(ndc::document(&state.open_data.config, kind, &coverage, &base, state.timezone))))
}

/// The most day files listed at once (ten years).
const DAYS_MAX: i64 = 3_660;

/// The days that may have readings, newest first, with their files.
async fn days_handler(
    State(state): State<AppState>,
    Path(kind): Path<String>,
    headers: HeaderMap,
) -> Result<Response, QueryError> {
    let kind = params::kind("kind", &kind)?;
    let coverage = coverage(&state, kind).await?;
    let base = base_url(&state, &headers);
    let mut days: Vec<Value> = Vec::new();
    if let (Some(first), Some(last)) = (coverage.first_day, coverage.last_day) {
        let mut day = last;
        while day >= first && (days.len() as i64) < DAYS_MAX {
            days.push(json!({
                "day": day,
                "csv": format!("{base}/opendata/v1/{kind}/{day}.csv"),
                "json": format!("{base}/opendata/v1/{kind}/{day}.json"),
            }));
            let Some(previous) = day.pred_opt() else { break };
            day = previous;
        }
    }
    Ok(cached(Json(json!({ "kind": kind.as_str(), "timezone": state.timezone.name(), "days": days }))))
}

async fn catalog_handler(State(state): State<AppState>, headers: HeaderMap) -> Result<Response, QueryError> {
    let base = base_url(&state, &headers);
    let mut datasets = Vec::new();
    for kind in Kind::ALL {
        datasets.push((kind, coverage(&state, kind).await?));
    }
    let today = crate::downloads_api::today(state.timezone);
    let document = dcat::catalog(&state.open_data.config, &datasets, &base, today);
    let mut response = cached(Json(document));
    response.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static("application/ld+json"));
    Ok(response)
}

/// Catalogue documents change slowly: a minute in shared caches.
fn cached(body: impl IntoResponse) -> Response {
    let mut response = body.into_response();
    response.headers_mut().insert(header::CACHE_CONTROL, header::HeaderValue::from_static("public, max-age=60"));
    response
}
