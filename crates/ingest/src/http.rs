//! `/metrics`, `/healthz` (the process runs), `/readyz` (it can take and store
//! messages: migrated, connected to the broker, database writes succeeding).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;

use crate::metrics::Metrics;
use crate::mqtt::Connection;

#[derive(Debug, Default)]
pub(crate) struct Health {
    migrated: AtomicBool,
    database_ok: AtomicBool,
}

impl Health {
    pub fn set_migrated(&self) {
        self.migrated.store(true, Ordering::SeqCst);
        self.database_ok.store(true, Ordering::SeqCst);
    }

    pub fn set_database_ok(&self, ok: bool) {
        self.database_ok.store(ok, Ordering::SeqCst);
    }
}

#[derive(Clone)]
pub(crate) struct HttpState {
    pub metrics: Metrics,
    pub health: Arc<Health>,
    pub connection: Arc<Connection>,
}

#[derive(Serialize)]
struct Readiness {
    ready: bool,
    schema: bool,
    database: bool,
    broker: bool,
}

pub(crate) fn router(state: HttpState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(state)
}

async fn metrics(State(state): State<HttpState>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], state.metrics.render())
}

async fn readyz(State(state): State<HttpState>) -> impl IntoResponse {
    let schema = state.health.migrated.load(Ordering::SeqCst);
    let database = state.health.database_ok.load(Ordering::SeqCst);
    let broker =
        state.connection.connected.load(Ordering::SeqCst) && state.connection.subscribed.load(Ordering::SeqCst);
    let ready = schema && database && broker;
    let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, Json(Readiness { ready, schema, database, broker }))
}

/// Waits until the daemon serving `addr` reports ready (migrated, connected,
/// subscribed): until then the broker would not queue the city's messages
/// for it. For callers that start publishers right after the daemon.
pub async fn wait_until_ready(
    addr: std::net::SocketAddr,
    timeout: std::time::Duration,
) -> Result<(), crate::IngestError> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Ok(mut stream) = tokio::net::TcpStream::connect(addr).await {
            let request = format!("GET /readyz HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
            let mut response = String::new();
            if stream.write_all(request.as_bytes()).await.is_ok()
                && stream.read_to_string(&mut response).await.is_ok()
                && response.starts_with("HTTP/1.1 200")
            {
                return Ok(());
            }
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(crate::IngestError::Config(format!("the daemon at {addr} was not ready within {timeout:?}")));
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    fn state() -> HttpState {
        HttpState { metrics: Metrics::new(), health: Arc::default(), connection: Arc::default() }
    }

    async fn get(router: Router, path: &str) -> (StatusCode, String) {
        let response = router.oneshot(Request::get(path).body(Body::empty()).unwrap()).await.unwrap();
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
        (status, String::from_utf8(body.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn readiness_follows_schema_database_and_broker() {
        let state = state();
        let (status, body) = get(router(state.clone()), "/readyz").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body, r#"{"ready":false,"schema":false,"database":false,"broker":false}"#);
        state.health.set_migrated();
        state.connection.connected.store(true, Ordering::SeqCst);
        assert_eq!(
            get(router(state.clone()), "/readyz").await.0,
            StatusCode::SERVICE_UNAVAILABLE,
            "not subscribed yet"
        );
        state.connection.subscribed.store(true, Ordering::SeqCst);
        assert_eq!(get(router(state.clone()), "/readyz").await.0, StatusCode::OK);
        state.health.set_database_ok(false);
        assert_eq!(get(router(state), "/readyz").await.0, StatusCode::SERVICE_UNAVAILABLE);
    }

    #[tokio::test]
    async fn metrics_use_the_platform_names_with_bounded_labels() {
        let state = state();
        state.metrics.messages_received.inc();
        let (status, body) = get(router(state), "/metrics").await;
        assert_eq!(status, StatusCode::OK);
        assert!(body.contains("citygauge_ingest_messages_received_total 1"));
        assert!(body.contains(r#"citygauge_ingest_rejected_messages_total{reason="malformed_payload"} 0"#));
        // Label keys come from a fixed, small set: never a sensor id.
        for line in body.lines().filter(|l| l.starts_with("citygauge_")) {
            if let Some((_, labels)) = line.split_once('{') {
                for pair in labels.split('}').next().unwrap().split(',') {
                    let key = pair.split('=').next().unwrap();
                    assert!(["kind", "reason", "class", "le"].contains(&key), "unbounded label in {line}");
                }
            }
        }
    }
}
