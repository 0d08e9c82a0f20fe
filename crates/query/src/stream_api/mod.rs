//! `/api/v1/stream`: Server-Sent Events of what ingest commits (see [`hub`]
//! for the fan-out and resume, [`client`] for one connection).

pub mod client;
pub mod hub;

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::Response;
use bytes::Bytes;
use serde::Deserialize;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::StreamExt;
use utoipa::IntoParams;

use crate::params::{self, given, Params};
use crate::server::AppState;
use crate::{ErrorBody, QueryError};
use client::{ClientOptions, Filter, Sink, CLIENT_QUEUE_CHUNKS};

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StreamParams {
    /// Comma-separated kinds, e.g. `rainfall,flood_depth`.
    pub kinds: Option<String>,
    /// Comma-separated district names.
    pub districts: Option<String>,
    /// Comma-separated sensor ids (at most 1000).
    pub sensors: Option<String>,
}

/// Checks the stream filters against what the cache knows.
pub fn parse_filter(
    p: &StreamParams,
    known_districts: &std::collections::BTreeSet<String>,
) -> Result<Filter, QueryError> {
    let kinds = given(&p.kinds).map(|k| params::kinds("kinds", k)).transpose()?;
    let districts = given(&p.districts)
        .map(|d| {
            params::list("districts", d, 1_000)?
                .into_iter()
                .map(|name| {
                    if known_districts.contains(name) {
                        Ok(name.to_string())
                    } else {
                        Err(QueryError::bad("districts", format!("no district named `{}`", params::shown(name))))
                    }
                })
                .collect::<Result<HashSet<_>, _>>()
        })
        .transpose()?;
    let sensors = given(&p.sensors)
        .map(|s| {
            params::list("sensors", s, 1_000)?
                .into_iter()
                .map(|id| {
                    citygauge_domain::registry::validate_sensor_id(id)
                        .map(|_| id.to_string())
                        .map_err(|_| QueryError::bad("sensors", format!("`{}` is not a sensor id", params::shown(id))))
                })
                .collect::<Result<HashSet<_>, _>>()
        })
        .transpose()?;
    Ok(Filter { kinds, districts, sensors })
}

/// Live readings and alerts as Server-Sent Events.
///
/// Events: `readings` (data: a JSON array of readings, coalesced per client,
/// id `<epoch>-<seq>`), `alert` (data: the alert object), `reset` (resume is
/// impossible: reload), `shutdown` (the service is stopping); comment lines
/// are heartbeats. Send `Last-Event-ID` to resume after a reconnect.
#[utoipa::path(get, path = "/api/v1/stream", tag = "stream", params(
        StreamParams,
        ("Last-Event-ID" = Option<String>, Header, description = "Resume after this event id")),
    responses(
        (status = 200, description = "an event stream", content_type = "text/event-stream", body = String),
        (status = 400, description = "a bad parameter, named", body = ErrorBody),
        (status = 503, description = "too many stream clients; see Retry-After", body = ErrorBody)))]
pub async fn handler(
    State(state): State<AppState>,
    Params(p): Params<StreamParams>,
    headers: HeaderMap,
) -> Result<Response, QueryError> {
    state.ready()?;
    let filter = {
        let data = state.cache.read();
        parse_filter(&p, &data.districts)?
    };
    let permit = state
        .stream_slots
        .clone()
        .try_acquire_owned()
        .map_err(|_| QueryError::Overloaded { retry_after: std::time::Duration::from_secs(5) })?;
    let last_event_id = headers.get("last-event-id").and_then(|v| v.to_str().ok()).map(str::to_string);
    let (rx, start) = state.hub.subscribe(last_event_id.as_deref());
    let (out, body) = mpsc::channel::<Bytes>(CLIENT_QUEUE_CHUNKS);
    let queued = Arc::new(AtomicUsize::new(0));
    let sink = Sink { out, queued: queued.clone() };
    let options = ClientOptions { coalesce: state.sse_coalesce, heartbeat: state.sse_heartbeat };
    let (stop, metrics) = (state.stream_stop.clone(), state.metrics.clone());
    state.tasks.spawn(async move {
        client::run(filter, start, rx, sink, options, stop, metrics).await;
        drop(permit);
    });
    // What the connection takes no longer counts against the client's bytes.
    let stream = ReceiverStream::new(body).map(move |chunk| {
        queued.fetch_sub(chunk.len(), Ordering::Relaxed);
        Ok::<_, std::convert::Infallible>(chunk)
    });
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "text/event-stream")
        .header(header::CACHE_CONTROL, "no-cache")
        .header("x-accel-buffering", "no")
        .body(Body::from_stream(stream))
        .map_err(|e| QueryError::Internal(e.to_string()))
}
