//! The query crate's one error type, and how each variant becomes an HTTP
//! response. Internal causes (SQL, pool, I/O) are logged, never sent: a client
//! sees a stable `code`, a message meant for it, and for a bad parameter the
//! parameter's name.

use std::time::Duration;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// A query parameter (or path segment) the client sent is not acceptable.
    #[error("bad parameter {name}: {reason}")]
    BadParameter { name: &'static str, reason: String },
    /// The thing named in the path does not exist.
    #[error("{what} not found")]
    NotFound { what: String },
    /// A route group is at its concurrency limit; try again after the delay.
    #[error("overloaded, retry after {retry_after:?}")]
    Overloaded { retry_after: Duration },
    /// The service is not ready (cache not built yet, database down).
    #[error("unavailable: {0}")]
    Unavailable(String),
    #[error("database: {0}")]
    Database(#[from] tokio_postgres::Error),
    #[error("database pool: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
    #[error(transparent)]
    Store(#[from] citygauge_store::StoreError),
    #[error("configuration: {0}")]
    Config(String),
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// A bug or an unexpected state; details go to the log only.
    #[error("internal: {0}")]
    Internal(String),
}

impl QueryError {
    pub fn bad(name: &'static str, reason: impl Into<String>) -> QueryError {
        QueryError::BadParameter { name, reason: reason.into() }
    }

    pub fn not_found(what: impl Into<String>) -> QueryError {
        QueryError::NotFound { what: what.into() }
    }
}

/// The JSON body of every error response.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// Stable machine-readable code: `bad_parameter`, `not_found`,
    /// `overloaded`, `timeout`, `unavailable`, `internal`.
    pub code: &'static str,
    /// A message for the client; never SQL, a stack trace or an internal cause.
    pub message: String,
    /// For `bad_parameter`: the parameter's name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parameter: Option<&'static str>,
}

impl IntoResponse for QueryError {
    fn into_response(self) -> Response {
        let (status, code, message, parameter, retry_after) = match &self {
            QueryError::BadParameter { name, reason } => {
                (StatusCode::BAD_REQUEST, "bad_parameter", format!("{name}: {reason}"), Some(*name), None)
            }
            QueryError::NotFound { what } => {
                (StatusCode::NOT_FOUND, "not_found", format!("{what} not found"), None, None)
            }
            QueryError::Overloaded { retry_after } => (
                StatusCode::SERVICE_UNAVAILABLE,
                "overloaded",
                "too many requests of this kind at once; retry shortly".to_string(),
                None,
                Some(*retry_after),
            ),
            // Every connection busy for the whole (short) wait.
            QueryError::Pool(deadpool_postgres::PoolError::Timeout(_)) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "timeout",
                "the database is busy; retry shortly".to_string(),
                None,
                Some(Duration::from_secs(1)),
            ),
            QueryError::Unavailable(_) | QueryError::Pool(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "the service is starting or its database is unavailable; retry shortly".to_string(),
                None,
                Some(Duration::from_secs(2)),
            ),
            // The connection went away mid-request (database restarting).
            QueryError::Database(e) if e.is_closed() => (
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "the service is starting or its database is unavailable; retry shortly".to_string(),
                None,
                Some(Duration::from_secs(2)),
            ),
            QueryError::Database(e) if is_statement_timeout(e) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "timeout",
                "the query took too long; narrow the range or retry".to_string(),
                None,
                Some(Duration::from_secs(1)),
            ),
            QueryError::Database(_)
            | QueryError::Store(_)
            | QueryError::Config(_)
            | QueryError::Io(_)
            | QueryError::Internal(_) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "internal error; it has been logged".to_string(),
                None,
                None,
            ),
        };
        if status.is_server_error() {
            tracing::warn!(error = %self, "request failed");
        }
        let mut response = (status, Json(ErrorBody { code, message, parameter })).into_response();
        if let Some(delay) = retry_after {
            let secs = delay.as_secs().max(1).to_string();
            if let Ok(value) = HeaderValue::from_str(&secs) {
                response.headers_mut().insert(header::RETRY_AFTER, value);
            }
        }
        response
    }
}

fn is_statement_timeout(e: &tokio_postgres::Error) -> bool {
    e.code() == Some(&tokio_postgres::error::SqlState::QUERY_CANCELED)
}
