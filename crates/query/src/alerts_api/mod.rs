//! The alert API: list and filter alerts, their events and CAP messages,
//! the Atom feed (public reads); acknowledge, resolve, notes and silences
//! (operators); the rule set (admins change it) and replays; subscriptions
//! (`subscriptions`, admins).
//!
//! Thin handlers: parameters and bodies are checked here, the SQL is in
//! `crate::alerting::ops`. Bodies are JSON; a bad one is a 400 `invalid`
//! naming the field.

mod actions;
mod read;
mod rules;
pub mod subscriptions;

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{header, HeaderMap};
use axum::routing::{delete, get, post};
use axum::Router;
use serde::de::DeserializeOwned;
use serde_json::Value;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

pub use actions::{AckBody, NoteBody, ResolveBody, SilenceBody};
pub use read::{AlertDetail, AlertsParams};
pub use rules::{HistoryParams, ReplayBody, RulesParams};

use crate::{AppState, ErrorBody, QueryError};

/// Every alert route.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/alerts", get(read::list_handler))
        .route("/api/v1/alerts/feed.atom", get(read::feed_handler))
        .route("/api/v1/alerts/messages/{file}", get(read::message_cap_handler))
        .route("/api/v1/alerts/silences", get(actions::silences_handler).post(actions::silence_handler))
        .route("/api/v1/alerts/silences/{id}", delete(actions::cancel_silence_handler))
        .route("/api/v1/alerts/rules", get(rules::rules_handler).put(rules::put_rules_handler))
        .route("/api/v1/alerts/rules/history", get(rules::history_handler))
        .route("/api/v1/alerts/replay", post(rules::replay_handler))
        // `{id}` and `{id}.cap` share a route: the router has no suffixes.
        .route("/api/v1/alerts/{id}", get(read::one_or_cap_handler))
        .route("/api/v1/alerts/{id}/events", get(read::events_handler))
        .route("/api/v1/alerts/{id}/acknowledge", post(actions::acknowledge_handler))
        .route("/api/v1/alerts/{id}/resolve", post(actions::resolve_handler))
        .route("/api/v1/alerts/{id}/notes", post(actions::note_handler))
        .merge(subscriptions::routes())
}

/// An alert (or silence) id from the path: a positive whole number.
pub(crate) fn parse_id(name: &'static str, value: &str) -> Result<i64, QueryError> {
    value.parse::<i64>().ok().filter(|id| *id > 0).ok_or_else(|| {
        QueryError::bad(name, format!("`{}` is not an id (a positive whole number)", crate::params::shown(value)))
    })
}

/// The service's public base URL: `--alerts-public-url`, else from the
/// request's `Host`.
pub(crate) fn base_url(state: &AppState, headers: &HeaderMap) -> String {
    if let Some(url) = state.alerting.alerts_public_url.as_deref() {
        return url.trim_end_matches('/').to_string();
    }
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).filter(|h| !h.is_empty());
    format!("http://{}", host.unwrap_or("localhost"))
}

/// A JSON body whose rejection is a 400 `invalid` naming the field. An
/// empty body reads as `{}` (acknowledging needs no note).
#[derive(Debug, Clone)]
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = QueryError;

    async fn from_request(request: Request, state: &S) -> Result<Self, QueryError> {
        let bytes = Bytes::from_request(request, state)
            .await
            .map_err(|e| QueryError::invalid("body", format!("could not be read: {e}")))?;
        let value: Value = if bytes.iter().all(u8::is_ascii_whitespace) {
            Value::Object(Default::default())
        } else {
            serde_json::from_slice(&bytes).map_err(|e| QueryError::invalid("body", format!("not valid JSON: {e}")))?
        };
        if !value.is_object() {
            return Err(QueryError::invalid("body", "must be a JSON object"));
        }
        serde_json::from_value(value).map(JsonBody).map_err(|e| {
            let why = e.to_string();
            QueryError::invalid(named_field(&why).unwrap_or("body"), why.clone())
        })
    }
}

/// The field serde names in "missing field `x`" / "unknown field `x`, ...".
fn named_field(why: &str) -> Option<&str> {
    let rest = why.strip_prefix("missing field `").or_else(|| why.strip_prefix("unknown field `"))?;
    rest.split('`').next()
}

/// The errors of operator routes (documentation only).
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)]
enum OperatorErrors {
    #[response(status = 400, description = "a bad parameter or body field, named")]
    Bad(ErrorBody),
    #[response(status = 401, description = "no valid bearer token")]
    Unauthorized(ErrorBody),
    #[response(status = 404, description = "no such alert")]
    NotFound(ErrorBody),
    #[response(status = 409, description = "the alert's state does not allow it")]
    Conflict(ErrorBody),
}

/// The errors of public reads (documentation only).
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)]
enum ReadErrors {
    #[response(status = 400, description = "a bad parameter, named")]
    Bad(ErrorBody),
    #[response(status = 404, description = "no such alert or message")]
    NotFound(ErrorBody),
}

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme("bearer", SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)));
    }
}

#[derive(OpenApi)]
#[openapi(
    paths(
        read::list_handler,
        read::one_handler,
        read::cap_handler,
        read::message_cap_handler,
        read::feed_handler,
        read::events_handler,
        actions::acknowledge_handler,
        actions::resolve_handler,
        actions::note_handler,
        actions::silences_handler,
        actions::silence_handler,
        actions::cancel_silence_handler,
        rules::rules_handler,
        rules::put_rules_handler,
        rules::history_handler,
        rules::replay_handler,
    ),
    components(schemas(
        crate::alerting::ops::Alert,
        crate::alerting::ops::AlertEvent,
        crate::alerting::ops::AlertPage,
        crate::alerting::ops::MessageInfo,
        crate::alerting::ops::Silence,
        crate::alerting::ops::RulesInForce,
        crate::alerting::ops::RuleSetRecord,
        AlertDetail,
        AckBody,
        ResolveBody,
        NoteBody,
        SilenceBody,
        ReplayBody,
    )),
    modifiers(&BearerAuth),
    tags(
        (name = "alerts", description = "Flood warnings and other alerts: list, timeline, CAP 1.2, Atom"),
        (name = "alert operators", description = "Acknowledge, resolve, notes, silences (operator token)"),
        (name = "alert rules", description = "The rule set in force, its history, replays"),
    )
)]
struct AlertsDoc;

pub fn openapi() -> utoipa::openapi::OpenApi {
    AlertsDoc::openapi()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serde_messages_name_their_field() {
        assert_eq!(named_field("missing field `reason`"), Some("reason"));
        assert_eq!(named_field("unknown field `nope`, expected `note`"), Some("nope"));
        assert_eq!(named_field("invalid type: integer `5`, expected a string"), None);
    }

    #[test]
    fn ids_are_positive_whole_numbers() {
        assert_eq!(parse_id("id", "42").unwrap(), 42);
        for bad in ["0", "-1", "x", "1.5", "99999999999999999999", ""] {
            assert!(parse_id("id", bad).is_err(), "{bad}");
        }
    }
}
