//! `/healthz` (the process runs), `/readyz` (the cache is built, the server
//! listens, and no background task has died), `/metrics`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use crate::server::AppState;

#[derive(Debug, Default)]
pub struct Health {
    pub listening: AtomicBool,
    /// The LISTEN connection is up (informational: the cache keeps serving
    /// the last known values while it reconnects).
    pub change_stream: AtomicBool,
    failed_tasks: Mutex<Vec<&'static str>>,
}

impl Health {
    pub fn task_failed(&self, name: &'static str) {
        self.failed_tasks.lock().unwrap_or_else(|e| e.into_inner()).push(name);
    }

    pub fn failed_tasks(&self) -> Vec<&'static str> {
        self.failed_tasks.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Readiness {
    pub ready: bool,
    pub cache: bool,
    pub listening: bool,
    pub change_stream: bool,
    /// Background tasks that stopped unexpectedly.
    pub failed_tasks: Vec<&'static str>,
}

/// The process is alive.
#[utoipa::path(get, path = "/healthz", tag = "health", responses((status = 200, description = "alive", body = String)))]
pub async fn healthz() -> &'static str {
    "ok\n"
}

/// Ready to serve: cache built, listening, every background task running.
#[utoipa::path(get, path = "/readyz", tag = "health", responses(
    (status = 200, description = "ready", body = Readiness),
    (status = 503, description = "not ready", body = Readiness)))]
pub async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    let failed_tasks = state.health.failed_tasks();
    let cache = state.cache.is_built();
    let listening = state.health.listening.load(Ordering::SeqCst);
    let ready = cache && listening && failed_tasks.is_empty();
    let body = Readiness {
        ready,
        cache,
        listening,
        change_stream: state.health.change_stream.load(Ordering::SeqCst),
        failed_tasks,
    };
    (if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE }, Json(body))
}

/// Prometheus metrics.
#[utoipa::path(get, path = "/metrics", tag = "health", responses((status = 200, description = "Prometheus text format", body = String)))]
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], state.metrics.render())
}
