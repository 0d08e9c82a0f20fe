//! Reading alerts back: the filtered list (keyset pages, newest first), one
//! alert, its timeline and its messages.

use chrono::{DateTime, Utc};
use citygauge_alerts::{Message, Severity};
use serde::Serialize;
use tokio_postgres::GenericClient;
use utoipa::ToSchema;

use super::{Alert, AlertEvent, ALERT_COLUMNS};
use crate::QueryError;

pub const DEFAULT_LIMIT: i64 = 100;
pub const MAX_LIMIT: i64 = 500;

/// A checked filter of the alert list (see `alerts_api::AlertsParams`).
#[derive(Debug, Clone, PartialEq)]
pub struct AlertFilter {
    /// Alert states to include.
    pub states: Vec<&'static str>,
    pub rules: Option<Vec<String>>,
    pub classes: Option<Vec<String>>,
    pub district: Option<String>,
    /// A sensor id: alerts about it or resting on it.
    pub sensor: Option<String>,
    pub min_severity: Option<Severity>,
    pub status: Option<String>,
    /// Alerts still open at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Alerts raised at or before this time.
    pub until: Option<DateTime<Utc>>,
    pub limit: i64,
    /// Only alerts whose id is below this (the previous page's last).
    pub cursor: Option<i64>,
}

impl Default for AlertFilter {
    fn default() -> AlertFilter {
        AlertFilter {
            states: vec!["open", "acknowledged"],
            rules: None,
            classes: None,
            district: None,
            sensor: None,
            min_severity: None,
            status: None,
            since: None,
            until: None,
            limit: DEFAULT_LIMIT,
            cursor: None,
        }
    }
}

/// A page of alerts, newest first.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AlertPage {
    pub items: Vec<Alert>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

/// One CAP message of an alert.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct MessageInfo {
    /// Globally unique: `<sender>:<alert id>:<sequence>`.
    pub identifier: String,
    /// `Alert`, `Update` or `Cancel`.
    pub msg_type: String,
    pub status: String,
    pub sent: DateTime<Utc>,
    /// Where its CAP document is (`/api/v1/alerts/messages/{identifier}.cap`).
    pub cap_url: String,
}

/// The path of a message's CAP document: the identifier percent-encoded
/// where a path segment needs it (`:` and `@` may stay).
pub fn cap_path(identifier: &str) -> String {
    let mut out = String::from("/api/v1/alerts/messages/");
    for b in identifier.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~:@!$&'()*+,;=".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out.push_str(".cap");
    out
}

/// CAP severities, least first, as SQL compares them.
const SEVERITY_ORDER: &str = "ARRAY['Unknown','Minor','Moderate','Severe','Extreme']";

fn severity_rank(s: Severity) -> i32 {
    match s {
        Severity::Unknown => 1,
        Severity::Minor => 2,
        Severity::Moderate => 3,
        Severity::Severe => 4,
        Severity::Extreme => 5,
    }
}

pub async fn list(client: &impl GenericClient, filter: &AlertFilter) -> Result<AlertPage, QueryError> {
    let sql = format!(
        "SELECT {ALERT_COLUMNS} FROM alerts a
         WHERE a.state = ANY($1)
           AND ($2::text[] IS NULL OR a.rule = ANY($2))
           AND ($3::text[] IS NULL OR a.class = ANY($3))
           AND ($4::text IS NULL OR a.district = $4)
           AND ($5::text IS NULL OR a.sensor_id = $5 OR a.subject = $5)
           AND ($6::int IS NULL OR array_position({SEVERITY_ORDER}, a.severity) >= $6)
           AND ($7::text IS NULL OR a.status = $7)
           AND ($8::timestamptz IS NULL OR a.resolved_at IS NULL OR a.resolved_at >= $8)
           AND ($9::timestamptz IS NULL OR a.raised_at <= $9)
           AND ($10::bigint IS NULL OR a.id < $10)
         ORDER BY a.id DESC LIMIT $11"
    );
    let states: Vec<&str> = filter.states.clone();
    let rank = filter.min_severity.map(severity_rank);
    let rows = client
        .query(
            &sql,
            &[
                &states,
                &filter.rules,
                &filter.classes,
                &filter.district,
                &filter.sensor,
                &rank,
                &filter.status,
                &filter.since,
                &filter.until,
                &filter.cursor,
                &(filter.limit + 1),
            ],
        )
        .await?;
    let mut items: Vec<Alert> = rows.iter().map(Alert::from_row).collect();
    let next_cursor = if items.len() as i64 > filter.limit {
        items.truncate(filter.limit as usize);
        items.last().map(|a| a.id.to_string())
    } else {
        None
    };
    Ok(AlertPage { items, next_cursor })
}

pub async fn one(client: &impl GenericClient, id: i64) -> Result<Alert, QueryError> {
    let sql = format!("SELECT {ALERT_COLUMNS} FROM alerts a WHERE a.id = $1");
    let row = client.query_opt(&sql, &[&id]).await?.ok_or_else(|| QueryError::not_found(format!("alert {id}")))?;
    Ok(Alert::from_row(&row))
}

/// The alert's timeline, oldest first.
pub async fn events(client: &impl GenericClient, id: i64) -> Result<Vec<AlertEvent>, QueryError> {
    let sql = format!("SELECT {} FROM alert_events WHERE alert_id = $1 ORDER BY at, id", AlertEvent::COLUMNS);
    Ok(client.query(&sql, &[&id]).await?.iter().map(AlertEvent::from_row).collect())
}

/// The alert's messages, oldest first.
pub async fn messages(client: &impl GenericClient, id: i64) -> Result<Vec<MessageInfo>, QueryError> {
    let rows = client
        .query("SELECT identifier, msg_type, status, sent FROM alert_messages WHERE alert_id = $1 ORDER BY id", &[&id])
        .await?;
    Ok(rows
        .iter()
        .map(|row| {
            let identifier: String = row.get(0);
            MessageInfo {
                cap_url: cap_path(&identifier),
                identifier,
                msg_type: row.get(1),
                status: row.get(2),
                sent: row.get(3),
            }
        })
        .collect())
}

fn message(body: serde_json::Value, what: &str) -> Result<Message, QueryError> {
    serde_json::from_value(body).map_err(|e| QueryError::Internal(format!("{what} has an unreadable body: {e}")))
}

/// The latest message of an alert; 404 for an unknown alert or one that
/// never notified.
pub async fn latest_message(client: &impl GenericClient, id: i64) -> Result<Message, QueryError> {
    let row = client
        .query_opt("SELECT body FROM alert_messages WHERE alert_id = $1 ORDER BY id DESC LIMIT 1", &[&id])
        .await?;
    match row {
        Some(row) => message(row.get(0), &format!("the latest message of alert {id}")),
        None => {
            one(client, id).await?;
            Err(QueryError::not_found(format!("a CAP message of alert {id} (it notified no one)")))
        }
    }
}

pub async fn message_by_identifier(client: &impl GenericClient, identifier: &str) -> Result<Message, QueryError> {
    let row = client
        .query_opt("SELECT body FROM alert_messages WHERE identifier = $1", &[&identifier])
        .await?
        .ok_or_else(|| QueryError::not_found(format!("message `{}`", crate::params::shown(identifier))))?;
    message(row.get(0), &format!("message {identifier}"))
}

/// The latest message of every active alert, the most recent first (the Atom feed).
pub async fn active_latest_messages(client: &impl GenericClient) -> Result<Vec<Message>, QueryError> {
    let rows = client
        .query(
            "SELECT m.body FROM alerts a
             CROSS JOIN LATERAL (
                 SELECT body, sent FROM alert_messages WHERE alert_id = a.id ORDER BY id DESC LIMIT 1
             ) m
             WHERE a.state <> 'resolved'
             ORDER BY m.sent DESC, a.id DESC
             LIMIT 1000",
            &[],
        )
        .await?;
    rows.iter().map(|row| message(row.get(0), "an active alert's latest message")).collect()
}
