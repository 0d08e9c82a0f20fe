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
    /// A JSON body field (or rule setting) that is not acceptable; `field`
    /// is its dotted path.
    #[error("invalid {field}: {reason}")]
    Invalid { field: String, reason: String },
    /// No bearer token, or one that is unknown or revoked.
    #[error("unauthorized")]
    Unauthorized,
    /// A valid token without the role the route needs.
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// The request conflicts with the current state (e.g. resolving a resolved alert).
    #[error("conflict: {0}")]
    Conflict(String),
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

    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> QueryError {
        QueryError::Invalid { field: field.into(), reason: reason.into() }
    }
}

impl From<citygauge_alerts::AlertError> for QueryError {
    fn from(e: citygauge_alerts::AlertError) -> QueryError {
        match e {
            citygauge_alerts::AlertError::InvalidRule { field, reason } => QueryError::Invalid { field, reason },
            citygauge_alerts::AlertError::RulesSyntax(why) => {
                QueryError::Invalid { field: "rules".into(), reason: why }
            }
            citygauge_alerts::AlertError::Document(why) => QueryError::Internal(why),
        }
    }
}

/// The JSON body of every error response.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// Stable machine-readable code: `bad_parameter`, `invalid`,
    /// `unauthorized`, `forbidden`, `not_found`, `conflict`, `overloaded`,
    /// `timeout`, `unavailable`, `internal`.
    pub code: &'static str,
    /// A message for the client; never SQL, a stack trace or an internal cause.
    pub message: String,
    /// For `bad_parameter`: the parameter's name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parameter: Option<&'static str>,
    /// For `invalid`: the dotted path of the body field or rule setting.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

impl IntoResponse for QueryError {
    fn into_response(self) -> Response {
        let field = match &self {
            QueryError::Invalid { field, .. } => Some(field.clone()),
            _ => None,
        };
        let (status, code, message, parameter, retry_after) = match &self {
            QueryError::Invalid { field, reason } => {
                (StatusCode::BAD_REQUEST, "invalid", format!("{field}: {reason}"), None, None)
            }
            QueryError::Unauthorized => (
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "an operator bearer token is required".to_string(),
                None,
                None,
            ),
            QueryError::Forbidden(why) => (StatusCode::FORBIDDEN, "forbidden", why.clone(), None, None),
            QueryError::Conflict(why) => (StatusCode::CONFLICT, "conflict", why.clone(), None, None),
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
        let mut response = (status, Json(ErrorBody { code, message, parameter, field })).into_response();
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
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
