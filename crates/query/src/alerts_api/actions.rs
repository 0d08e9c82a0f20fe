//! What operators do (any valid token): acknowledge, resolve with a reason,
//! notes, silences. Each is recorded on the alert's timeline under the
//! token holder's name and announced to the control room.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use chrono::{Duration, Utc};
use citygauge_alerts::RuleId;
use serde::Deserialize;
use utoipa::ToSchema;

use super::{parse_id, JsonBody, OperatorErrors};
use crate::alerting::auth::Operator;
use crate::alerting::ops::{self, note_text, Alert, AlertEvent, NewSilence, Silence, MAX_SILENCE};
use crate::params::{self, Path};
use crate::{AppState, QueryError};

/// `POST /api/v1/alerts/{id}/acknowledge`
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AckBody {
    /// Optional, at most 2000 characters.
    pub note: Option<String>,
}

/// `POST /api/v1/alerts/{id}/resolve`
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResolveBody {
    /// Why it is resolved by hand (required, at most 2000 characters).
    pub reason: Option<String>,
}

/// `POST /api/v1/alerts/{id}/notes`
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NoteBody {
    /// Required, at most 2000 characters.
    pub note: Option<String>,
}

/// `POST /api/v1/alerts/silences`: give `until` or `duration_min`, at most 7 days ahead.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SilenceBody {
    /// The rule to silence; absent: every rule of the subject.
    pub rule: Option<String>,
    /// A sensor id, or `district:<name>` (required).
    pub subject: Option<String>,
    /// End of the window (RFC 3339).
    pub until: Option<String>,
    /// Length of the window in minutes (1 to 10080).
    pub duration_min: Option<i64>,
    /// Why (required, at most 2000 characters).
    pub reason: Option<String>,
}

impl SilenceBody {
    /// Checks the body; `known` says whether a subject exists (None: cannot tell yet).
    pub fn parse(&self, known: impl Fn(&str) -> Option<bool>) -> Result<NewSilence, QueryError> {
        let rule = match self.rule.as_deref().map(str::trim).filter(|r| !r.is_empty()) {
            Some(r) => Some(
                RuleId::parse(r)
                    .ok_or_else(|| QueryError::invalid("rule", format!("`{}` is not a rule id", params::shown(r))))?,
            ),
            None => None,
        };
        let subject = self.subject.as_deref().map(str::trim).filter(|s| !s.is_empty());
        let subject = subject.ok_or_else(|| QueryError::invalid("subject", "is required"))?;
        if subject.chars().count() > 200 {
            return Err(QueryError::invalid("subject", "at most 200 characters"));
        }
        if known(subject) == Some(false) {
            return Err(QueryError::invalid(
                "subject",
                format!("`{}` is neither a known sensor nor `district:<known district>`", params::shown(subject)),
            ));
        }
        let now = Utc::now();
        let until = match (self.until.as_deref(), self.duration_min) {
            (Some(_), Some(_)) => return Err(QueryError::invalid("until", "give `until` or `duration_min`, not both")),
            (None, None) => return Err(QueryError::invalid("until", "give `until` or `duration_min`")),
            (None, Some(minutes)) => {
                if !(1..=MAX_SILENCE.num_minutes()).contains(&minutes) {
                    return Err(QueryError::invalid(
                        "duration_min",
                        format!("must be between 1 and {} minutes (7 days)", MAX_SILENCE.num_minutes()),
                    ));
                }
                now + Duration::minutes(minutes)
            }
            (Some(text), None) => {
                let until = chrono::DateTime::parse_from_rfc3339(text.trim())
                    .map_err(|e| QueryError::invalid("until", format!("not an RFC 3339 time: {e}")))?
                    .with_timezone(&Utc);
                if until <= now {
                    return Err(QueryError::invalid("until", "must be in the future"));
                }
                if until > now + MAX_SILENCE {
                    return Err(QueryError::invalid("until", "at most 7 days ahead"));
                }
                until
            }
        };
        let reason = note_text("reason", self.reason.as_deref(), true)?.unwrap_or_default();
        Ok(NewSilence { rule, subject: subject.to_string(), until, reason })
    }
}

/// open -> acknowledged (who, when, note).
#[utoipa::path(post, path = "/api/v1/alerts/{id}/acknowledge", tag = "alert operators",
    params(("id" = i64, Path, description = "Alert id")), request_body = AckBody,
    security(("bearer" = [])),
    responses((status = 200, description = "the acknowledged alert", body = Alert), OperatorErrors))]
pub async fn acknowledge_handler(
    State(state): State<AppState>,
    who: Operator,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<AckBody>,
) -> Result<Json<Alert>, QueryError> {
    let id = parse_id("id", &id)?;
    let note = note_text("note", body.note.as_deref(), false)?;
    let mut client = state.pool.get().await?;
    Ok(Json(ops::acknowledge(&mut client, id, &who, note.as_deref()).await?))
}

/// Resolve by hand with a reason: subscribers get a CAP Cancel; the engine
/// does not raise it again while the condition holds at that level.
#[utoipa::path(post, path = "/api/v1/alerts/{id}/resolve", tag = "alert operators",
    params(("id" = i64, Path, description = "Alert id")), request_body = ResolveBody,
    security(("bearer" = [])),
    responses((status = 200, description = "the resolved alert", body = Alert), OperatorErrors))]
pub async fn resolve_handler(
    State(state): State<AppState>,
    who: Operator,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<ResolveBody>,
) -> Result<Json<Alert>, QueryError> {
    let id = parse_id("id", &id)?;
    let reason = note_text("reason", body.reason.as_deref(), true)?.unwrap_or_default();
    let mut client = state.pool.get().await?;
    Ok(Json(ops::resolve(&mut client, id, &who, &reason, state.timezone).await?))
}

/// A note on the alert's timeline.
#[utoipa::path(post, path = "/api/v1/alerts/{id}/notes", tag = "alert operators",
    params(("id" = i64, Path, description = "Alert id")), request_body = NoteBody,
    security(("bearer" = [])),
    responses((status = 201, description = "the note's event", body = AlertEvent), OperatorErrors))]
pub async fn note_handler(
    State(state): State<AppState>,
    who: Operator,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<NoteBody>,
) -> Result<(StatusCode, Json<AlertEvent>), QueryError> {
    let id = parse_id("id", &id)?;
    let note = note_text("note", body.note.as_deref(), true)?.unwrap_or_default();
    let mut client = state.pool.get().await?;
    Ok((StatusCode::CREATED, Json(ops::add_note(&mut client, id, &who, &note).await?)))
}

/// Silences in force now.
#[utoipa::path(get, path = "/api/v1/alerts/silences", tag = "alert operators",
    security(("bearer" = [])),
    responses((status = 200, description = "active silences", body = Vec<Silence>), OperatorErrors))]
pub async fn silences_handler(State(state): State<AppState>, _who: Operator) -> Result<Json<Vec<Silence>>, QueryError> {
    let client = state.pool.get().await?;
    Ok(Json(ops::list_silences(&**client).await?))
}

/// Silence a rule (or every rule) for a subject for at most 7 days.
#[utoipa::path(post, path = "/api/v1/alerts/silences", tag = "alert operators",
    request_body = SilenceBody, security(("bearer" = [])),
    responses((status = 201, description = "the silence", body = Silence), OperatorErrors))]
pub async fn silence_handler(
    State(state): State<AppState>,
    who: Operator,
    JsonBody(body): JsonBody<SilenceBody>,
) -> Result<(StatusCode, Json<Silence>), QueryError> {
    let known = |subject: &str| {
        if !state.cache.is_built() {
            return None;
        }
        let data = state.cache.read();
        Some(match subject.strip_prefix("district:") {
            Some(district) => data.districts.contains(district),
            None => data.sensors.contains_key(subject),
        })
    };
    let new = body.parse(known)?;
    let mut client = state.pool.get().await?;
    Ok((StatusCode::CREATED, Json(ops::create_silence(&mut client, &new, &who).await?)))
}

/// End a silence early.
#[utoipa::path(delete, path = "/api/v1/alerts/silences/{id}", tag = "alert operators",
    params(("id" = i64, Path, description = "Silence id")), security(("bearer" = [])),
    responses((status = 200, description = "the cancelled silence", body = Silence), OperatorErrors))]
pub async fn cancel_silence_handler(
    State(state): State<AppState>,
    who: Operator,
    Path(id): Path<String>,
) -> Result<Json<Silence>, QueryError> {
    let id = parse_id("id", &id)?;
    let mut client = state.pool.get().await?;
    Ok(Json(ops::cancel_silence(&mut client, id, &who).await?))
}
