//! `/api/v1/sensors/{id}/series` and `.csv`: thin handlers over the series
//! layer (`crate::series`). The sensor is looked up in the cache (unknown:
//! 404) and the parameters checked before a database connection is taken.

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use citygauge_domain::Kind;
use utoipa::OpenApi;

use crate::params::{self, Params, Path};
use crate::series::{self, nice_step, Resolution, Series, SeriesLimits, SeriesParams, SeriesRequest};
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
    let limits = SeriesLimits::default();
    let now = Utc::now();
    let request = p.validate(kind, now, &limits)?;
    let raw_kept_from = state.raw_retention.get(&kind).map(|keep| now - *keep);
    let request = within_retention(request, raw_kept_from);
    let client = state.pool.get().await?;
    series::run(&**client, id, kind, &request, &limits).await
}

/// One sensor's series: raw readings or rollup buckets, gaps as nulls.
#[utoipa::path(get, path = "/api/v1/sensors/{id}/series", tag = "series",
    params(("id" = String, Path, description = "Sensor id"), SeriesParams),
    responses(
        (status = 200, description = "the series", body = Series),
        (status = 400, description = "a bad parameter, named", body = ErrorBody),
        (status = 404, description = "no such sensor", body = ErrorBody),
        (status = 503, description = "overloaded or timed out; see Retry-After", body = ErrorBody)))]
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
    responses(
        (status = 200, description = "CSV", content_type = "text/csv", body = String),
        (status = 400, description = "a bad parameter, named", body = ErrorBody),
        (status = 404, description = "no such sensor", body = ErrorBody),
        (status = 503, description = "overloaded or timed out; see Retry-After", body = ErrorBody)))]
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

/// A point budget whose range reaches back before `raw_kept_from` (the
/// kind's raw retention, which the 1-minute rollup shares) is answered from
/// the hourly rollup or coarser: finer sources no longer hold that part and
/// would come back empty. `None`: retention unknown, no limit. Explicit
/// steps and `step=raw` are the client's choice and stay as asked.
pub fn within_retention(request: SeriesRequest, raw_kept_from: Option<DateTime<Utc>>) -> SeriesRequest {
    match (request.resolution, raw_kept_from) {
        (Resolution::Points(points), Some(kept_from)) if request.from < kept_from => {
            let range_s = (request.to - request.from).num_seconds().max(1);
            let step = nice_step(range_s, points);
            // Nice steps from an hour up are whole hours; shorter ones become one.
            let step = if step % 3_600 == 0 { step } else { (step / 3_600 + 1) * 3_600 };
            SeriesRequest { resolution: Resolution::Step(step), ..request }
        }
        _ => request,
    }
}

#[derive(OpenApi)]
#[openapi(paths(series_handler, csv_handler))]
struct SeriesDoc;

pub fn openapi() -> utoipa::openapi::OpenApi {
    SeriesDoc::openapi()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::series::Agg;

    fn t(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn request(from: &str, to: &str, resolution: Resolution, agg: Agg) -> SeriesRequest {
        SeriesRequest { from: t(from), to: t(to), resolution, agg, columns: vec![] }
    }

    #[test]
    fn ranges_older_than_the_raw_retention_read_the_hourly_rollup() {
        let kept_from = Some(t("2026-10-31T00:00:00Z"));
        // A day, 60 days ago, at 1000 points: 5-minute buckets would read
        // the 1-minute rollup, long deleted there.
        let old = request("2026-10-01T00:00:00Z", "2026-10-02T00:00:00Z", Resolution::Points(1000), Agg::Avg);
        assert!(
            matches!(series::plan(&old, &SeriesLimits::default()), series::Plan::Readings { .. }),
            "without retention"
        );
        let series::Plan::Buckets(b) =
            series::plan(&within_retention(old.clone(), kept_from), &SeriesLimits::default())
        else {
            panic!("expected buckets")
        };
        assert_eq!((b.step_s, b.source, b.count()), (3_600, series::Source::Hour, 24));
        // A year: already hourly or coarser.
        let year = request("2025-11-30T00:00:00Z", "2026-11-30T00:00:00Z", Resolution::Points(1000), Agg::Avg);
        let series::Plan::Buckets(b) = series::plan(&within_retention(year, kept_from), &SeriesLimits::default())
        else {
            panic!()
        };
        assert_eq!((b.step_s, b.source), (43_200, series::Source::Hour));
        // Recent ranges, unknown retention, explicit steps: unchanged.
        let recent = request("2026-11-29T00:00:00Z", "2026-11-30T00:00:00Z", Resolution::Points(1000), Agg::Avg);
        assert_eq!(within_retention(recent.clone(), kept_from), recent);
        assert_eq!(within_retention(old.clone(), None), old);
        let stepped = SeriesRequest { resolution: Resolution::Step(300), ..old };
        assert_eq!(within_retention(stepped.clone(), kept_from), stepped);
    }
}
