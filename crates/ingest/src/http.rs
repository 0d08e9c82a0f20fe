//! `/metrics`, `/healthz` (the process runs), `/readyz` (it can take and store
//! messages: migrated, connected to the broker, database writes succeeding).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;

use crate::metrics::Metrics;
use crate::mqtt::Connection;

/// What `/readyz` reports, kept by the tasks that know it.
#[derive(Debug)]
pub(crate) struct Health {
    migrated: AtomicBool,
    /// When each batch being written now was first tried, by batch number:
    /// a batch still there after `not_ready_after` has been failing (or
    /// hanging) that long.
    writing: Mutex<BTreeMap<u64, Instant>>,
    next_batch: AtomicU64,
    not_ready_after: Duration,
    /// A task of the daemon ended or failed: it is stopping.
    task_failed: AtomicBool,
}

impl Default for Health {
    fn default() -> Self {
        Health::new(Duration::from_secs(10))
    }
}

impl Health {
    pub fn new(not_ready_after: Duration) -> Self {
        Health {
            migrated: AtomicBool::new(false),
            writing: Mutex::new(BTreeMap::new()),
            next_batch: AtomicU64::new(0),
            not_ready_after,
            task_failed: AtomicBool::new(false),
        }
    }

    pub fn set_migrated(&self) {
        self.migrated.store(true, Ordering::SeqCst);
    }

    pub fn set_task_failed(&self) {
        self.task_failed.store(true, Ordering::SeqCst);
    }

    pub fn tasks_ok(&self) -> bool {
        !self.task_failed.load(Ordering::SeqCst)
    }

    /// Marks a batch as being written until the guard is dropped (stored,
    /// or given up at shutdown).
    pub fn writing(self: &Arc<Self>) -> Writing {
        let id = self.next_batch.fetch_add(1, Ordering::Relaxed);
        self.lock_writing().insert(id, Instant::now());
        Writing { health: self.clone(), id }
    }

    /// Whether writes succeed: no batch has been trying for longer than
    /// `not_ready_after`.
    pub fn database_ok(&self) -> bool {
        self.lock_writing().values().min().is_none_or(|since| since.elapsed() < self.not_ready_after)
    }

    fn lock_writing(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Instant>> {
        // Plain data: a panic elsewhere cannot leave it inconsistent.
        self.writing.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A batch being written; see [`Health::writing`].
#[derive(Debug)]
pub(crate) struct Writing {
    health: Arc<Health>,
    id: u64,
}

impl Drop for Writing {
    fn drop(&mut self) {
        self.health.lock_writing().remove(&self.id);
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
    /// Writes are stored: no batch failing or hanging for longer than
    /// `not_ready_after_write_failures_s`.
    database: bool,
    broker: bool,
    /// Every task of the daemon runs.
    tasks: bool,
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
    let database = state.health.database_ok();
    let broker =
        state.connection.connected.load(Ordering::SeqCst) && state.connection.subscribed.load(Ordering::SeqCst);
    let tasks = state.health.tasks_ok();
    let ready = schema && database && broker && tasks;
    let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, Json(Readiness { ready, schema, database, broker, tasks }))
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
        HttpState {
            metrics: Metrics::new(),
            health: Arc::new(Health::new(Duration::from_millis(200))),
            connection: Arc::default(),
        }
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
        assert_eq!(body, r#"{"ready":false,"schema":false,"database":true,"broker":false,"tasks":true}"#);
        state.health.set_migrated();
        state.connection.connected.store(true, Ordering::SeqCst);
        assert_eq!(
            get(router(state.clone()), "/readyz").await.0,
            StatusCode::SERVICE_UNAVAILABLE,
            "not subscribed yet"
        );
        state.connection.subscribed.store(true, Ordering::SeqCst);
        assert_eq!(get(router(state.clone()), "/readyz").await.0, StatusCode::OK);

        // A batch failing (or hanging) for a moment is not yet a stall...
        let writing = state.health.writing();
        assert_eq!(get(router(state.clone()), "/readyz").await.0, StatusCode::OK);
        // ...for longer than the configured time it is.
        tokio::time::sleep(Duration::from_millis(250)).await;
        let (status, body) = get(router(state.clone()), "/readyz").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(body.contains(r#""database":false"#), "{body}");
        drop(writing);
        assert_eq!(get(router(state.clone()), "/readyz").await.0, StatusCode::OK, "stored at last");

        state.health.set_task_failed();
        let (status, body) = get(router(state), "/readyz").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(body.contains(r#""tasks":false"#), "{body}");
    }

    #[tokio::test]
    async fn metrics_use_the_platform_names_with_bounded_labels() {
        let state = state();
        state.metrics.messages_received.inc();
        let (status, body) = get(router(state), "/metrics").await;
        assert_eq!(status, StatusCode::OK);
        assert!(body.contains("citygauge_ingest_messages_received_total 1"));
        assert!(body.contains(r#"citygauge_ingest_rejected_messages_total{reason="malformed_payload"} 0"#));
        for class in ["transient", "data", "fatal"] {
            assert!(
                body.contains(&format!(r#"citygauge_ingest_database_errors_total{{class="{class}"}} 0"#)),
                "{class}"
            );
        }
        assert!(body.contains("citygauge_ingest_oldest_unacked_age_seconds 0"));
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
