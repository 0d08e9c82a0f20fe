//! Public reads: the alert list, one alert with its timeline and messages,
//! its CAP documents and the Atom feed of active alerts. No token needed.

use axum::extract::State;
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::Utc;
use citygauge_alerts::{RuleId, Severity};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{base_url, parse_id, ReadErrors};
use crate::alerting::ops::{self, Alert, AlertEvent, AlertFilter, AlertPage, MessageInfo, MAX_LIMIT};
use crate::params::{self, given, Params, Path};
use crate::{AppState, QueryError};

pub const CAP_CONTENT_TYPE: &str = "application/cap+xml; charset=utf-8";
pub const ATOM_CONTENT_TYPE: &str = "application/atom+xml; charset=utf-8";

/// Filters of the alert list; all optional, combined with AND.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AlertsParams {
    /// `open`, `acknowledged`, `resolved`, `active` (open and acknowledged; the default) or `all`.
    pub state: Option<String>,
    /// Rule ids, comma-separated (`water_level,rainfall`).
    pub rule: Option<String>,
    /// `hazard`, `diagnosis` and/or `maintenance`, comma-separated.
    pub class: Option<String>,
    /// District name, e.g. `Sanmin`.
    pub district: Option<String>,
    /// A sensor id: alerts about it.
    pub sensor: Option<String>,
    /// Least CAP severity: `Minor`, `Moderate`, `Severe` or `Extreme`.
    pub min_severity: Option<String>,
    /// CAP status: `Actual`, `Exercise`, `System`, `Test` or `Draft`.
    pub status: Option<String>,
    /// Alerts still open at or after this time (RFC 3339, epoch, or `-24h`).
    pub since: Option<String>,
    /// Alerts raised at or before this time.
    pub until: Option<String>,
    /// Page size, 1 to 500 (default 100).
    pub limit: Option<String>,
    /// The previous page's `next_cursor`.
    pub cursor: Option<String>,
}

impl AlertsParams {
    pub fn parse(&self) -> Result<AlertFilter, QueryError> {
        let now = Utc::now();
        let time = |name: &'static str, value: &Option<String>| {
            given(value)
                .map(|v| crate::series::parse_instant(v, now).map_err(|why| QueryError::bad(name, why)))
                .transpose()
        };
        let states = match given(&self.state).unwrap_or("active") {
            "active" => vec!["open", "acknowledged"],
            "all" => vec!["open", "acknowledged", "resolved"],
            "open" => vec!["open"],
            "acknowledged" => vec!["acknowledged"],
            "resolved" => vec!["resolved"],
            other => {
                return Err(QueryError::bad(
                    "state",
                    format!("`{}` is not open, acknowledged, resolved, active or all", params::shown(other)),
                ))
            }
        };
        let rules = given(&self.rule)
            .map(|v| {
                params::list("rule", v, RuleId::ALL.len())?
                    .into_iter()
                    .map(|r| match RuleId::parse(r) {
                        Some(rule) => Ok(rule.as_str().to_string()),
                        None => Err(QueryError::bad("rule", format!("`{}` is not a rule id", params::shown(r)))),
                    })
                    .collect::<Result<Vec<_>, _>>()
            })
            .transpose()?;
        let classes = given(&self.class)
            .map(|v| {
                params::list("class", v, 3)?
                    .into_iter()
                    .map(|c| match c {
                        "hazard" | "diagnosis" | "maintenance" => Ok(c.to_string()),
                        _ => Err(QueryError::bad(
                            "class",
                            format!("`{}` is not hazard, diagnosis or maintenance", params::shown(c)),
                        )),
                    })
                    .collect::<Result<Vec<_>, _>>()
            })
            .transpose()?;
        let min_severity = given(&self.min_severity)
            .map(|s| {
                Severity::parse(s).ok_or_else(|| {
                    QueryError::bad(
                        "min_severity",
                        format!("`{}` is not Unknown, Minor, Moderate, Severe or Extreme", params::shown(s)),
                    )
                })
            })
            .transpose()?;
        let status = given(&self.status)
            .map(|s| {
                citygauge_alerts::MsgStatus::parse(s).map(|s| s.as_str().to_string()).ok_or_else(|| {
                    QueryError::bad(
                        "status",
                        format!("`{}` is not Actual, Exercise, System, Test or Draft", params::shown(s)),
                    )
                })
            })
            .transpose()?;
        let text = |name: &'static str, value: &Option<String>| {
            given(value)
                .map(|v| {
                    if v.chars().count() > 200 {
                        Err(QueryError::bad(name, "at most 200 characters"))
                    } else {
                        Ok(v.to_string())
                    }
                })
                .transpose()
        };
        let (since, until) = (time("since", &self.since)?, time("until", &self.until)?);
        if let (Some(since), Some(until)) = (since, until) {
            if since > until {
                return Err(QueryError::bad("until", "must not be before `since`"));
            }
        }
        Ok(AlertFilter {
            states,
            rules,
            classes,
            district: text("district", &self.district)?,
            sensor: text("sensor", &self.sensor)?,
            min_severity,
            status,
            since,
            until,
            limit: given(&self.limit)
                .map(|l| params::integer("limit", l, 1, MAX_LIMIT as u64))
                .transpose()?
                .map_or(AlertFilter::default().limit, |l| l as i64),
            cursor: given(&self.cursor).map(|c| parse_id("cursor", c)).transpose()?,
        })
    }
}

/// One alert with its timeline and its CAP messages.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AlertDetail {
    #[serde(flatten)]
    pub alert: Alert,
    /// Every event, oldest first.
    pub events: Vec<AlertEvent>,
    /// Every message (Alert, Update, Cancel), oldest first.
    pub messages: Vec<MessageInfo>,
}

/// Alerts, newest first, a keyset page at a time.
#[utoipa::path(get, path = "/api/v1/alerts", tag = "alerts", params(AlertsParams),
    responses((status = 200, description = "a page of alerts", body = AlertPage), ReadErrors))]
pub async fn list_handler(
    State(state): State<AppState>,
    Params(p): Params<AlertsParams>,
) -> Result<Json<AlertPage>, QueryError> {
    let filter = p.parse()?;
    let client = state.pool.get().await?;
    Ok(Json(ops::list(&**client, &filter).await?))
}

/// `/api/v1/alerts/{id}` or `/api/v1/alerts/{id}.cap`.
pub async fn one_or_cap_handler(
    state: State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, QueryError> {
    match id.strip_suffix(".cap") {
        Some(id) => cap_handler(state, headers, Path(id.to_string())).await,
        None => Ok(one_handler(state, Path(id)).await?.into_response()),
    }
}

/// One alert with its event timeline and messages.
#[utoipa::path(get, path = "/api/v1/alerts/{id}", tag = "alerts",
    params(("id" = i64, Path, description = "Alert id")),
    responses((status = 200, description = "the alert", body = AlertDetail), ReadErrors))]
pub async fn one_handler(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<AlertDetail>, QueryError> {
    let id = parse_id("id", &id)?;
    let client = state.pool.get().await?;
    let alert = ops::one(&**client, id).await?;
    let events = ops::events(&**client, id).await?;
    let messages = ops::messages(&**client, id).await?;
    Ok(Json(AlertDetail { alert, events, messages }))
}

/// The alert's timeline, oldest first.
#[utoipa::path(get, path = "/api/v1/alerts/{id}/events", tag = "alerts",
    params(("id" = i64, Path, description = "Alert id")),
    responses((status = 200, description = "the events", body = Vec<AlertEvent>), ReadErrors))]
pub async fn events_handler(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Vec<AlertEvent>>, QueryError> {
    let id = parse_id("id", &id)?;
    let client = state.pool.get().await?;
    ops::one(&**client, id).await?;
    Ok(Json(ops::events(&**client, id).await?))
}

/// The CAP document, its `<web>` linking the alert under the public base URL.
fn cap(message: &citygauge_alerts::Message, base_url: &str) -> Result<Response, QueryError> {
    let xml = citygauge_alerts::cap::render_linked(message, base_url)?;
    Ok(([(header::CONTENT_TYPE, CAP_CONTENT_TYPE)], xml).into_response())
}

/// The alert's latest message as a CAP 1.2 document.
#[utoipa::path(get, path = "/api/v1/alerts/{id}.cap", tag = "alerts",
    params(("id" = i64, Path, description = "Alert id")),
    responses((status = 200, description = "CAP 1.2", content_type = "application/cap+xml", body = String), ReadErrors))]
pub async fn cap_handler(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, QueryError> {
    let id = parse_id("id", &id)?;
    let client = state.pool.get().await?;
    cap(&ops::latest_message(&**client, id).await?, &base_url(&state, &headers))
}

/// Any message (Alert, Update or Cancel) as a CAP 1.2 document.
#[utoipa::path(get, path = "/api/v1/alerts/messages/{identifier}.cap", tag = "alerts",
    params(("identifier" = String, Path, description = "Message identifier (`<sender>:<alert id>:<n>`)")),
    responses((status = 200, description = "CAP 1.2", content_type = "application/cap+xml", body = String), ReadErrors))]
pub async fn message_cap_handler(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(file): Path<String>,
) -> Result<Response, QueryError> {
    let identifier = file
        .strip_suffix(".cap")
        .filter(|i| !i.is_empty() && i.len() <= 300)
        .ok_or_else(|| QueryError::bad("identifier", "expected `<message identifier>.cap`"))?;
    let client = state.pool.get().await?;
    cap(&ops::message_by_identifier(&**client, identifier).await?, &base_url(&state, &headers))
}

/// The Atom feed of active alerts: each one's latest message, linking its CAP document.
#[utoipa::path(get, path = "/api/v1/alerts/feed.atom", tag = "alerts",
    responses((status = 200, description = "Atom 1.0", content_type = "application/atom+xml", body = String)))]
pub async fn feed_handler(State(state): State<AppState>, headers: HeaderMap) -> Result<Response, QueryError> {
    let client = state.pool.get().await?;
    let latest = ops::active_latest_messages(&**client).await?;
    let updated =
        latest.iter().map(|m| m.sent).max().unwrap_or_else(|| Utc::now().with_timezone(&state.timezone).fixed_offset());
    let xml = citygauge_alerts::atom::feed(&base_url(&state, &headers), updated, &latest)?;
    Ok(([(header::CONTENT_TYPE, ATOM_CONTENT_TYPE)], xml).into_response())
}
