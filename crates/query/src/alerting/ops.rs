//! What operators do to alerts, and how alerts are read back: the SQL behind
//! the alert API.
//!
//! Every change runs in one transaction that also writes the alert's event
//! and announces it on `citygauge_alerts` (the control room gets it as SSE
//! `event: alert`). A change the engine must hear of (an alert resolved by
//! hand, silences, rules) is also sent on `citygauge_alert_config`. An alert
//! resolved by hand tells its subscribers too: a CAP Cancel message goes to
//! the outbox like the engine's own.

mod listing;
mod rules;
mod silences;

use chrono::{DateTime, SubsecRound, Utc};
use citygauge_alerts::{AlertKey, AlertState, Change, Message, MessageRef, MsgType, RuleId};
use serde::Serialize;
use serde_json::{json, Value};
use tokio_postgres::{GenericClient, Row};
use utoipa::ToSchema;

pub use listing::{
    active_latest_messages, events, latest_message, list, message_by_identifier, messages, one, AlertFilter, AlertPage,
    MessageInfo, MAX_LIMIT,
};
pub use rules::{current_rules, parse_rules, put_rules, rules_history, RuleSetRecord, RulesInForce};
pub use silences::{cancel_silence, create_silence, list_silences, NewSilence, Silence, MAX_SILENCE};

use crate::alerting::auth::Operator;
use crate::cache::view::rfc3339;
use crate::QueryError;

/// Channel of alert changes (forwarded verbatim to SSE clients).
pub const ALERTS_CHANNEL: &str = citygauge_store::changes::ALERTS_CHANNEL;
/// Channel of operator changes the evaluator must apply.
pub const CONFIG_CHANNEL: &str = "citygauge_alert_config";
/// Longest note or reason an operator may write.
pub const MAX_NOTE_CHARS: usize = 2_000;

/// One alert as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Alert {
    pub id: i64,
    /// Rule id (`water_level`, `rainfall`, `sensor_silent`...).
    pub rule: String,
    /// A sensor id, or `district:<name>`.
    pub subject: String,
    /// `hazard`, `diagnosis` or `maintenance`.
    pub class: String,
    /// `open`, `acknowledged` or `resolved`.
    pub state: String,
    /// CAP status: `Actual`, `Exercise`, `Test`...
    pub status: String,
    /// 1 = the rule's lowest grade, ascending with danger.
    pub grade: i16,
    /// The grade's name (`yellow`, `orange`, `red`, `heavy_rain`...).
    pub level: String,
    /// CAP severity: `Minor`, `Moderate`, `Severe`, `Extreme`.
    pub severity: String,
    pub sensor_id: Option<String>,
    pub district: Option<String>,
    pub headline_en: String,
    pub headline_zh: String,
    pub raised_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// The highest grade reached while open.
    pub peak_grade: i16,
    pub acknowledged_at: Option<DateTime<Utc>>,
    pub acknowledged_by: Option<String>,
    pub ack_note: Option<String>,
    pub resolved_at: Option<DateTime<Utc>>,
    /// `engine` when the condition cleared, else the operator.
    pub resolved_by: Option<String>,
    pub resolve_reason: Option<String>,
    /// Seconds until the next warning level (or the levee crest) at the current rate.
    pub lead_time_s: Option<i64>,
    /// The figure compared with the thresholds, and its unit.
    pub value: Option<f64>,
    pub unit: Option<String>,
    /// The affected area as a GeoJSON polygon.
    #[schema(value_type = Option<Object>)]
    pub area: Option<Value>,
    /// The engine's full state of the alert (`citygauge_alerts::AlertState`).
    #[schema(value_type = Object)]
    pub details: Value,
}

/// The columns [`Alert::from_row`] reads, in order.
pub(crate) const ALERT_COLUMNS: &str = "a.id, a.rule, a.subject, a.class, a.state, a.status, a.grade, a.level, \
     a.severity, a.sensor_id, a.district, a.raised_at, a.updated_at, a.peak_grade, a.acknowledged_at, \
     a.acknowledged_by, a.ack_note, a.resolved_at, a.resolved_by, a.resolve_reason, \
     ST_AsGeoJSON(a.area)::jsonb, a.details";

impl Alert {
    pub(crate) fn from_row(row: &Row) -> Alert {
        let details: Value = row.get(21);
        let text = |key: &str| details.get(key).and_then(Value::as_str).unwrap_or_default().to_string();
        Alert {
            id: row.get(0),
            rule: row.get(1),
            subject: row.get(2),
            class: row.get(3),
            state: row.get(4),
            status: row.get(5),
            grade: row.get(6),
            level: row.get(7),
            severity: row.get(8),
            sensor_id: row.get(9),
            district: row.get(10),
            headline_en: text("headline_en"),
            headline_zh: text("headline_zh"),
            raised_at: row.get(11),
            updated_at: row.get(12),
            peak_grade: row.get(13),
            acknowledged_at: row.get(14),
            acknowledged_by: row.get(15),
            ack_note: row.get(16),
            resolved_at: row.get(17),
            resolved_by: row.get(18),
            resolve_reason: row.get(19),
            lead_time_s: details.get("lead_time_s").and_then(Value::as_i64),
            value: details.get("value").and_then(Value::as_f64),
            unit: details.get("unit").and_then(Value::as_str).map(str::to_string),
            area: row.get(20),
            details,
        }
    }

    fn key(&self) -> Result<AlertKey, QueryError> {
        let rule = RuleId::parse(&self.rule)
            .ok_or_else(|| QueryError::Internal(format!("alert {} has an unknown rule `{}`", self.id, self.rule)))?;
        Ok(AlertKey { rule, subject: self.subject.clone() })
    }
}

/// One entry of an alert's timeline.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct AlertEvent {
    pub id: i64,
    pub at: DateTime<Utc>,
    /// `raised`, `escalated`, `deescalated`, `updated`, `acknowledged`,
    /// `resolved`, `notified`, `suppressed`, `note` or `silenced`.
    pub kind: String,
    pub grade: Option<i16>,
    pub level: Option<String>,
    /// `engine`, or the operator.
    pub actor: String,
    pub note: Option<String>,
    /// The state after the event, or what it reports (a delivery, a silence).
    #[schema(value_type = Object)]
    pub details: Value,
}

impl AlertEvent {
    pub(crate) const COLUMNS: &'static str = "id, at, kind, grade, level, actor, note, details";

    pub(crate) fn from_row(row: &Row) -> AlertEvent {
        AlertEvent {
            id: row.get(0),
            at: row.get(1),
            kind: row.get(2),
            grade: row.get(3),
            level: row.get(4),
            actor: row.get(5),
            note: row.get(6),
            details: row.get(7),
        }
    }
}

/// A note or reason: trimmed, non-empty, at most [`MAX_NOTE_CHARS`].
pub fn note_text(field: &str, value: Option<&str>, required: bool) -> Result<Option<String>, QueryError> {
    let value = value.map(str::trim).filter(|v| !v.is_empty());
    match value {
        None if required => Err(QueryError::invalid(field, "is required")),
        None => Ok(None),
        Some(v) if v.chars().count() > MAX_NOTE_CHARS => {
            Err(QueryError::invalid(field, format!("at most {MAX_NOTE_CHARS} characters")))
        }
        Some(v) => Ok(Some(v.to_string())),
    }
}

/// The alert, locked for the rest of the transaction.
async fn locked(client: &impl GenericClient, id: i64) -> Result<Alert, QueryError> {
    let sql = format!("SELECT {ALERT_COLUMNS} FROM alerts a WHERE a.id = $1 FOR UPDATE");
    let row = client.query_opt(&sql, &[&id]).await?.ok_or_else(|| QueryError::not_found(format!("alert {id}")))?;
    Ok(Alert::from_row(&row))
}

/// Writes an event on `alert` and announces it to the control room.
pub(crate) async fn record(
    client: &impl GenericClient,
    alert: &Alert,
    kind: &str,
    at: DateTime<Utc>,
    actor: &str,
    note: Option<&str>,
    details: &Value,
) -> Result<AlertEvent, QueryError> {
    let sql = format!(
        "INSERT INTO alert_events (alert_id, at, kind, grade, level, actor, note, details) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING {}",
        AlertEvent::COLUMNS
    );
    let row =
        client.query_one(&sql, &[&alert.id, &at, &kind, &alert.grade, &alert.level, &actor, &note, details]).await?;
    let payload = json!({
        "alert_id": alert.id,
        "event": kind,
        "rule": alert.rule,
        "subject": alert.subject,
        "state": alert.state,
        "grade": alert.grade,
        "level": alert.level,
        "severity": alert.severity,
        "at": rfc3339(at),
        "actor": actor,
    });
    notify(client, ALERTS_CHANNEL, &payload).await?;
    Ok(AlertEvent::from_row(&row))
}

pub(crate) async fn notify(client: &impl GenericClient, channel: &str, payload: &Value) -> Result<(), QueryError> {
    client.execute("SELECT pg_notify($1, $2)", &[&channel, &payload.to_string()]).await?;
    Ok(())
}

/// open -> acknowledged, with who, when and an optional note.
pub async fn acknowledge(
    client: &mut tokio_postgres::Client,
    id: i64,
    who: &Operator,
    note: Option<&str>,
) -> Result<Alert, QueryError> {
    let tx = client.transaction().await?;
    let alert = locked(&tx, id).await?;
    match alert.state.as_str() {
        "resolved" => return Err(QueryError::Conflict(format!("alert {id} is resolved"))),
        "acknowledged" => {
            let by = alert.acknowledged_by.as_deref().unwrap_or("someone");
            return Err(QueryError::Conflict(format!("alert {id} is already acknowledged by {by}")));
        }
        _ => {}
    }
    let at = Utc::now();
    let sql = format!(
        "UPDATE alerts a SET state = 'acknowledged', acknowledged_at = $2, acknowledged_by = $3, ack_note = $4, \
         updated_at = greatest(updated_at, $2) WHERE a.id = $1 RETURNING {ALERT_COLUMNS}"
    );
    let alert = Alert::from_row(&tx.query_one(&sql, &[&id, &at, &who.name, &note]).await?);
    record(&tx, &alert, "acknowledged", at, &who.name, note, &json!({})).await?;
    tx.commit().await?;
    Ok(alert)
}

/// Resolves by hand: subscribers get a CAP Cancel, the engine forgets the
/// alert (and does not raise it again while the condition holds at that grade).
pub async fn resolve(
    client: &mut tokio_postgres::Client,
    id: i64,
    who: &Operator,
    reason: &str,
    timezone: chrono_tz::Tz,
) -> Result<Alert, QueryError> {
    let tx = client.transaction().await?;
    let alert = locked(&tx, id).await?;
    if alert.state == "resolved" {
        let by = alert.resolved_by.as_deref().unwrap_or("someone");
        return Err(QueryError::Conflict(format!("alert {id} is already resolved (by {by})")));
    }
    let at = Utc::now();
    let sql = format!(
        "UPDATE alerts a SET state = 'resolved', resolved_at = $2, resolved_by = $3, resolve_reason = $4, \
         updated_at = greatest(updated_at, $2) WHERE a.id = $1 RETURNING {ALERT_COLUMNS}"
    );
    let alert = Alert::from_row(&tx.query_one(&sql, &[&id, &at, &who.name, &reason]).await?);
    record(&tx, &alert, "resolved", at, &who.name, Some(reason), &json!({"by_operator": true})).await?;
    if let Some((message_id, message)) = cancel_message(&tx, &alert, at, timezone, &who.name, reason).await? {
        crate::alerting::webhooks::enqueue_deliveries(&tx, message_id, &message).await?;
    }
    let config = json!({"what": "resolved", "alert_id": alert.id, "rule": alert.rule, "subject": alert.subject});
    notify(&tx, CONFIG_CHANNEL, &config).await?;
    tx.commit().await?;
    Ok(alert)
}

/// A note on the alert's timeline (any state: post-incident notes too).
pub async fn add_note(
    client: &mut tokio_postgres::Client,
    id: i64,
    who: &Operator,
    note: &str,
) -> Result<AlertEvent, QueryError> {
    let tx = client.transaction().await?;
    let alert = locked(&tx, id).await?;
    let event = record(&tx, &alert, "note", Utc::now(), &who.name, Some(note), &json!({})).await?;
    tx.commit().await?;
    Ok(event)
}

/// Stores the CAP Cancel of an alert resolved by hand, referencing every
/// earlier message, as the engine does when a condition clears (see
/// `persist`; the sender is the one subscribers already heard from). None
/// when no message was ever sent about the alert (nobody to tell).
pub async fn cancel_message(
    tx: &tokio_postgres::Transaction<'_>,
    alert: &Alert,
    at: DateTime<Utc>,
    timezone: chrono_tz::Tz,
    actor: &str,
    reason: &str,
) -> Result<Option<(i64, Message)>, QueryError> {
    let rows =
        tx.query("SELECT identifier, body FROM alert_messages WHERE alert_id = $1 ORDER BY id", &[&alert.id]).await?;
    let mut earlier = Vec::with_capacity(rows.len());
    for row in &rows {
        let identifier: String = row.get(0);
        let body: Message = serde_json::from_value(row.get(1))
            .map_err(|e| QueryError::Internal(format!("message {identifier} has an unreadable body: {e}")))?;
        earlier.push(body);
    }
    let Some(last) = earlier.last() else { return Ok(None) };
    let mut state: AlertState = serde_json::from_value(alert.details.clone())
        .map_err(|e| QueryError::Internal(format!("alert {} has unreadable details: {e}", alert.id)))?;
    state.details.insert("resolved_by".into(), json!(actor));
    state.details.insert("resolve_reason".into(), json!(reason));
    let sequence = earlier
        .iter()
        .filter_map(|m| m.identifier.rsplit(':').next()?.parse::<u64>().ok())
        .max()
        .unwrap_or(earlier.len() as u64)
        + 1;
    // As the engine's messages: whole seconds (CAP times have none), never
    // before the previous message, in the city's offset.
    let sent = at.trunc_subsecs(0).max(last.sent.with_timezone(&Utc));
    let message = Message {
        alert_id: alert.id,
        identifier: format!("{}:{}:{sequence}", last.sender, alert.id),
        sender: last.sender.clone(),
        sender_name: last.sender_name.clone(),
        sent: crate::alerting::persist::local(sent, timezone),
        status: last.status,
        msg_type: MsgType::Cancel,
        references: earlier
            .iter()
            .map(|m| MessageRef { sender: m.sender.clone(), identifier: m.identifier.clone(), sent: m.sent })
            .collect(),
        key: alert.key()?,
        change: Change::Resolved,
        state,
    };
    let body = serde_json::to_value(&message).map_err(|e| QueryError::Internal(e.to_string()))?;
    let row = tx
        .query_one(
            "INSERT INTO alert_messages (alert_id, identifier, sent, msg_type, status, body) \
             VALUES ($1, $2, $3, 'Cancel', $4, $5) RETURNING id",
            &[&alert.id, &message.identifier, &sent, &message.status.as_str(), &body],
        )
        .await?;
    Ok(Some((row.get(0), message)))
}
