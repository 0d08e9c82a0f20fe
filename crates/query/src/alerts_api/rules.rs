//! The rule set: read it and its history (operators), replace it (admins;
//! validated, recorded, the evaluator told at commit), and replay a past
//! period with it or with a candidate (operators).

use axum::extract::State;
use axum::Json;
use chrono::{DateTime, Duration, Utc};
use serde::Deserialize;
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use super::{JsonBody, OperatorErrors};
use crate::alerting::auth::{Admin, Operator};
use crate::alerting::ops::{self, note_text, RulesInForce};
use crate::alerting::replay::{self, Timeline};
use crate::params::{self, given, Params};
use crate::{AppState, QueryError};

/// `PUT /api/v1/alerts/rules` query parameters.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RulesParams {
    /// Why the rules change (recorded with them; at most 2000 characters).
    pub note: Option<String>,
}

/// `GET /api/v1/alerts/rules/history` query parameters.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct HistoryParams {
    /// How many rule sets, newest first: 1 to 100 (default 20).
    pub limit: Option<String>,
}

/// `POST /api/v1/alerts/replay`
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplayBody {
    /// Start of the period (RFC 3339; required).
    pub from: Option<String>,
    /// End of the period (RFC 3339; required; at most 31 days after `from`, not in the future).
    pub to: Option<String>,
    /// A whole rule set to try instead of the one in force.
    #[schema(value_type = Option<Object>)]
    pub rules: Option<Value>,
}

/// The rule set in force and where it comes from.
#[utoipa::path(get, path = "/api/v1/alerts/rules", tag = "alert rules", security(("bearer" = [])),
    responses((status = 200, description = "the rules in force", body = RulesInForce), OperatorErrors))]
pub async fn rules_handler(State(state): State<AppState>, _who: Operator) -> Result<Json<RulesInForce>, QueryError> {
    let client = state.pool.get().await?;
    Ok(Json(ops::current_rules(&**client, state.alerting.alert_rules_file.as_deref()).await?))
}

/// Replace the whole rule set (admin): validated (400 `invalid` names the
/// field), recorded with who and why, in force for the evaluator at once.
#[utoipa::path(put, path = "/api/v1/alerts/rules", tag = "alert rules", params(RulesParams),
    request_body(content = Object, description = "The whole rule set, as `GET` returns it in `rules`"),
    security(("bearer" = [])),
    responses((status = 200, description = "the rules now in force", body = RulesInForce),
        (status = 403, description = "not an admin token", body = crate::ErrorBody), OperatorErrors))]
pub async fn put_rules_handler(
    State(state): State<AppState>,
    Admin(who): Admin,
    Params(p): Params<RulesParams>,
    JsonBody(body): JsonBody<Value>,
) -> Result<Json<RulesInForce>, QueryError> {
    let note = note_text("note", p.note.as_deref(), false)?;
    let rules = ops::parse_rules(body)?;
    let mut client = state.pool.get().await?;
    Ok(Json(ops::put_rules(&mut client, &rules, &who, note.as_deref()).await?))
}

/// Rule sets that were in force, newest first.
#[utoipa::path(get, path = "/api/v1/alerts/rules/history", tag = "alert rules", params(HistoryParams),
    security(("bearer" = [])),
    responses((status = 200, description = "stored rule sets", body = Vec<RulesInForce>), OperatorErrors))]
pub async fn history_handler(
    State(state): State<AppState>,
    _who: Operator,
    Params(p): Params<HistoryParams>,
) -> Result<Json<Vec<RulesInForce>>, QueryError> {
    let limit = given(&p.limit).map(|l| params::integer("limit", l, 1, 100)).transpose()?.unwrap_or(20) as i64;
    let client = state.pool.get().await?;
    Ok(Json(ops::rules_history(&**client, limit).await?))
}

/// A checked replay request.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplayRequest {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub rules: Option<citygauge_alerts::RuleSet>,
}

impl ReplayBody {
    pub fn parse(self) -> Result<ReplayRequest, QueryError> {
        let time = |name: &str, value: Option<&str>| -> Result<DateTime<Utc>, QueryError> {
            let value = value.map(str::trim).filter(|v| !v.is_empty());
            let value = value.ok_or_else(|| QueryError::invalid(name, "is required"))?;
            chrono::DateTime::parse_from_rfc3339(value)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|e| QueryError::invalid(name, format!("not an RFC 3339 time: {e}")))
        };
        let (from, to) = (time("from", self.from.as_deref())?, time("to", self.to.as_deref())?);
        replay::check_period(from, to)?;
        if to > Utc::now() + Duration::minutes(5) {
            return Err(QueryError::invalid("to", "must not be in the future"));
        }
        let rules = match self.rules {
            // Errors name the field inside the rules document: prefix it.
            Some(value) => Some(ops::parse_rules(value).map_err(|e| match e {
                QueryError::Invalid { field, reason } if field != "rules" => {
                    QueryError::invalid(format!("rules.{field}"), reason)
                }
                other => other,
            })?),
            None => None,
        };
        Ok(ReplayRequest { from, to, rules })
    }
}

/// The engine over a past period's stored readings (notifying no one): the
/// alert timeline it would have produced.
#[utoipa::path(post, path = "/api/v1/alerts/replay", tag = "alert rules", request_body = ReplayBody,
    security(("bearer" = [])),
    responses((status = 200, description = "the alert timeline (`citygauge alerts replay --format json`)", body = Object),
        OperatorErrors))]
pub async fn replay_handler(
    State(state): State<AppState>,
    _who: Operator,
    JsonBody(body): JsonBody<ReplayBody>,
) -> Result<Json<Timeline>, QueryError> {
    let request = body.parse()?;
    Ok(Json(replay::replay(&state.pool, request.from, request.to, request.rules).await?))
}
