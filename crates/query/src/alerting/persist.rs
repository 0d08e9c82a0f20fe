//! Storing the engine's decisions: one transaction per batch, on the lease
//! connection (see [`super::leader`] for why that fences a deposed leader).
//!
//! Per decision, in the batch's transaction:
//! - the alert row: a raise inserts it; any other change updates the one open
//!   row of its (rule, subject). The change actually stored is derived from
//!   the stored grade, so a decision repeated after a failover (the engine
//!   re-deciding what an earlier leader stored) changes nothing twice;
//! - an `alert_events` row (actor `engine`);
//! - for a notifying change, an immutable `alert_messages` row (the CAP
//!   message, the outbox) and its webhook deliveries;
//! - `pg_notify('citygauge_alerts', ...)` for the control room's stream.
//!
//! Suppressed hazards go to `alert_suppressions`, against the health alert
//! that suppressed them (which also gets a `suppressed` event).
//!
//! Escalation re-opens an acknowledged alert (state `open`, acknowledgement
//! cleared; the `acknowledged` event stays in the history): the danger grew
//! since the operator saw it, so it must be seen again. De-escalation and
//! same-grade updates leave an acknowledged alert acknowledged.
//!
//! Each decision runs under a savepoint: a decision the database refuses
//! (it should never happen) is logged and skipped instead of failing the
//! batch forever; a lost connection fails the whole batch.

use chrono::{DateTime, FixedOffset, SubsecRound, Utc};
use citygauge_alerts::{
    AlertKey, AlertState, Area, Change, Class, Decision, Message, MessageRef, MsgStatus, MsgType, RuleSet,
};
use serde_json::{json, Value};
use tokio_postgres::{Client, Transaction};
use tracing::{debug, warn};

use crate::QueryError;

/// The channel the control room's stream forwards (`event: alert`).
pub const ALERTS_CHANNEL: &str = citygauge_store::changes::ALERTS_CHANNEL;
/// Operator changes the engine must hear (rules, silences, hand resolutions).
pub const CONFIG_CHANNEL: &str = "citygauge_alert_config";

/// What a batch stored.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Stored {
    /// The change stored for each decision (`None`: nothing to do).
    pub changes: Vec<Option<Change>>,
    pub messages: u64,
    pub deliveries: u64,
}

/// Stores `decisions` in one transaction on the lease connection.
pub async fn store(
    client: &mut Client,
    decisions: &[Decision],
    rules: &RuleSet,
    tz: chrono_tz::Tz,
) -> Result<Stored, QueryError> {
    let mut stored = Stored::default();
    if decisions.is_empty() {
        return Ok(stored);
    }
    let mut tx = client.transaction().await?;
    for decision in decisions {
        let sp = tx.savepoint("decision").await?;
        match one(&sp, decision, rules, tz, &mut stored).await {
            Ok(change) => {
                sp.commit().await?;
                stored.changes.push(change);
            }
            Err(QueryError::Database(error)) if !error.is_closed() && error.as_db_error().is_some() => {
                warn!(%error, rule = decision.key.rule.as_str(), subject = %decision.key.subject,
                      change = decision.change.as_str(), "alerts: decision refused by the database; skipped");
                sp.rollback().await?;
                stored.changes.push(None);
            }
            Err(error) => return Err(error),
        }
    }
    tx.commit().await?;
    Ok(stored)
}

async fn one(
    tx: &Transaction<'_>,
    d: &Decision,
    rules: &RuleSet,
    tz: chrono_tz::Tz,
    stored: &mut Stored,
) -> Result<Option<Change>, QueryError> {
    if d.change == Change::Suppressed {
        suppression(tx, d).await?;
        return Ok(Some(Change::Suppressed));
    }
    let open = tx
        .query_opt(
            "SELECT id, grade, status, state FROM alerts
              WHERE rule = $1 AND subject = $2 AND state <> 'resolved' FOR UPDATE",
            &[&d.key.rule.as_str(), &d.key.subject],
        )
        .await?;
    let grade = i16::from(d.state.grade);
    let details = serde_json::to_value(&d.state).map_err(|e| QueryError::Internal(e.to_string()))?;
    let area = AreaParams::of(&d.state);
    let (id, change, status, state) = match open {
        None => match d.change {
            // An escalation of an alert an operator resolved meanwhile is a new alert.
            Change::Raised | Change::Escalated => {
                let status = rules.status;
                let row = tx
                    .query_one(
                        &format!(
                            "INSERT INTO alerts (rule, subject, class, status, grade, level, severity, sensor_id,
                                                 district, area, details, raised_at, updated_at, peak_grade)
                             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, {area}, $14, $15, $15, $5)
                             RETURNING id",
                            area = area_sql(10)
                        ),
                        &[
                            &d.key.rule.as_str(),
                            &d.key.subject,
                            &class_name(d.key.rule.class()),
                            &status.as_str(),
                            &grade,
                            &d.state.level,
                            &d.state.severity.as_str(),
                            &d.state.sensor_id,
                            &d.state.district,
                            &area.lon,
                            &area.lat,
                            &area.radius_m,
                            &area.wkt,
                            &details,
                            &d.at,
                        ],
                    )
                    .await?;
                (row.get::<_, i64>(0), Change::Raised, status, "open")
            }
            _ => {
                debug!(rule = d.key.rule.as_str(), subject = %d.key.subject, change = d.change.as_str(),
                       "alerts: no open alert for the decision; nothing to store");
                return Ok(None);
            }
        },
        Some(row) => {
            let id: i64 = row.get(0);
            let stored_grade: i16 = row.get(1);
            let status = MsgStatus::parse(row.get(2)).unwrap_or_default();
            if d.change == Change::Resolved {
                tx.execute(
                    "UPDATE alerts SET state = 'resolved', resolved_at = GREATEST($2, raised_at), resolved_by = 'engine',
                            updated_at = GREATEST($2, updated_at), details = $3
                      WHERE id = $1",
                    &[&id, &d.at, &details],
                )
                .await?;
                (id, Change::Resolved, status, "resolved")
            } else {
                let change = match grade.cmp(&stored_grade) {
                    std::cmp::Ordering::Greater => Change::Escalated,
                    std::cmp::Ordering::Less => Change::Deescalated,
                    std::cmp::Ordering::Equal => Change::Updated,
                };
                let reopen = change == Change::Escalated;
                let state: String = tx
                    .query_one(
                        &format!(
                            "UPDATE alerts SET grade = $2, level = $3, severity = $4, sensor_id = $5, district = $6,
                                    area = {area}, details = $11, updated_at = GREATEST($12, updated_at),
                                    peak_grade = GREATEST(peak_grade, $2),
                                    state = CASE WHEN $13 THEN 'open' ELSE state END,
                                    acknowledged_at = CASE WHEN $13 THEN NULL ELSE acknowledged_at END,
                                    acknowledged_by = CASE WHEN $13 THEN NULL ELSE acknowledged_by END,
                                    ack_note = CASE WHEN $13 THEN NULL ELSE ack_note END
                              WHERE id = $1 RETURNING state",
                            area = area_sql(7)
                        ),
                        &[
                            &id,
                            &grade,
                            &d.state.level,
                            &d.state.severity.as_str(),
                            &d.state.sensor_id,
                            &d.state.district,
                            &area.lon,
                            &area.lat,
                            &area.radius_m,
                            &area.wkt,
                            &details,
                            &d.at,
                            &reopen,
                        ],
                    )
                    .await?
                    .get(0);
                let state = if state == "open" { "open" } else { "acknowledged" };
                (id, change, status, state)
            }
        }
    };
    tx.execute(
        "INSERT INTO alert_events (alert_id, at, kind, grade, level, actor, details) VALUES ($1, $2, $3, $4, $5, 'engine', $6)",
        &[&id, &d.at, &change.as_str(), &grade, &d.state.level, &details],
    )
    .await?;
    if let Some(msg_type) = MsgType::for_change(change) {
        let message = message(tx, id, d, change, msg_type, status, rules, tz).await?;
        let body = serde_json::to_value(&message).map_err(|e| QueryError::Internal(e.to_string()))?;
        let row = tx
            .query_one(
                "INSERT INTO alert_messages (alert_id, identifier, sent, msg_type, status, body)
                 VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
                &[
                    &id,
                    &message.identifier,
                    &message.sent.with_timezone(&Utc),
                    &msg_type.as_str(),
                    &status.as_str(),
                    &body,
                ],
            )
            .await?;
        stored.messages += 1;
        stored.deliveries += crate::alerting::webhooks::enqueue_deliveries(tx, row.get(0), &message).await?;
    }
    notify(tx, Some(id), change, &d.key, Some(state), &d.state, d.at).await?;
    Ok(Some(change))
}

/// The CAP message for a notifying change: identifier `<sender>:<id>:<n>`
/// (`n` one past the highest so far), every earlier message of the alert
/// referenced, `sent` the decision's time (whole seconds, never before the
/// previous message) in the city's offset.
#[allow(clippy::too_many_arguments)]
async fn message(
    tx: &Transaction<'_>,
    alert_id: i64,
    d: &Decision,
    change: Change,
    msg_type: MsgType,
    status: MsgStatus,
    rules: &RuleSet,
    tz: chrono_tz::Tz,
) -> Result<Message, QueryError> {
    let rows = tx
        .query(
            "SELECT identifier, body->>'sender', body->'sent', body->>'sender_name'
               FROM alert_messages WHERE alert_id = $1 ORDER BY id",
            &[&alert_id],
        )
        .await?;
    // The chain keeps the sender subscribers first heard from, even if the
    // rule set's sender changed since.
    let (mut sender, mut sender_name) = (rules.sender.clone(), rules.sender_name.clone());
    let mut sequence = 0;
    let mut references = Vec::with_capacity(rows.len());
    for row in rows {
        let identifier: String = row.get(0);
        let sent: Option<DateTime<FixedOffset>> = serde_json::from_value(row.get(2)).ok();
        let (Some(from), Some(sent)) = (row.get::<_, Option<String>>(1), sent) else {
            warn!(%identifier, "alerts: earlier message with an unreadable body left out of references");
            continue;
        };
        let n = identifier.rsplit(':').next().and_then(|n| n.parse::<u64>().ok());
        sequence = sequence.max(n.unwrap_or(references.len() as u64 + 1));
        (sender, sender_name) = (from.clone(), row.get::<_, Option<String>>(3).unwrap_or(sender_name));
        references.push(MessageRef { sender: from, identifier, sent });
    }
    let mut sent = d.at.trunc_subsecs(0);
    if let Some(last) = references.last() {
        sent = sent.max(last.sent.with_timezone(&Utc));
    }
    Ok(Message {
        alert_id,
        identifier: format!("{sender}:{alert_id}:{}", sequence + 1),
        sender,
        sender_name,
        sent: local(sent, tz),
        status,
        msg_type,
        references,
        key: d.key.clone(),
        change,
        state: d.state.clone(),
    })
}

/// `t` with the city's offset at that instant.
pub fn local(t: DateTime<Utc>, tz: chrono_tz::Tz) -> DateTime<FixedOffset> {
    use chrono::Offset;
    let offset = t.with_timezone(&tz).offset().fix();
    t.with_timezone(&offset)
}

async fn suppression(tx: &Transaction<'_>, d: &Decision) -> Result<(), QueryError> {
    let details = serde_json::to_value(&d.state).map_err(|e| QueryError::Internal(e.to_string()))?;
    let by = d.state.details.get("suppressed_by").and_then(Value::as_str).and_then(|s| s.split_once(':'));
    let health = match by {
        Some((rule, subject)) => tx
            .query_opt(
                "SELECT id, state FROM alerts WHERE rule = $1 AND subject = $2 AND state <> 'resolved'",
                &[&rule, &subject],
            )
            .await?
            .map(|row| (row.get::<_, i64>(0), row.get::<_, String>(1))),
        None => None,
    };
    let alert_id = health.as_ref().map(|(id, _)| *id);
    tx.execute(
        "INSERT INTO alert_suppressions (at, rule, subject, alert_id, details) VALUES ($1, $2, $3, $4, $5)",
        &[&d.at, &d.key.rule.as_str(), &d.key.subject, &alert_id, &details],
    )
    .await?;
    if let Some(id) = alert_id {
        let note = format!("{} for {} suppressed: its readings are suspect", d.key.rule.as_str(), d.key.subject);
        tx.execute(
            "INSERT INTO alert_events (alert_id, at, kind, grade, level, actor, note, details)
             VALUES ($1, $2, 'suppressed', $3, $4, 'engine', $5, $6)",
            &[&id, &d.at, &i16::from(d.state.grade), &d.state.level, &note, &details],
        )
        .await?;
    }
    let state = health.as_ref().map(|(_, s)| s.as_str());
    notify(tx, alert_id, Change::Suppressed, &d.key, state, &d.state, d.at).await
}

/// `pg_notify('citygauge_alerts', ...)`, delivered at commit.
async fn notify(
    tx: &Transaction<'_>,
    alert_id: Option<i64>,
    change: Change,
    key: &AlertKey,
    state: Option<&str>,
    alert: &AlertState,
    at: DateTime<Utc>,
) -> Result<(), QueryError> {
    let payload = json!({
        "alert_id": alert_id,
        "event": change.as_str(),
        "rule": key.rule,
        "subject": key.subject,
        "state": state,
        "grade": alert.grade,
        "level": alert.level,
        "severity": alert.severity,
        "at": at.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
        "actor": "engine",
    });
    tx.execute("SELECT pg_notify($1, $2)", &[&ALERTS_CHANNEL, &payload.to_string()]).await?;
    Ok(())
}

fn class_name(class: Class) -> &'static str {
    match class {
        Class::Hazard => "hazard",
        Class::Diagnosis => "diagnosis",
        Class::Maintenance => "maintenance",
    }
}

/// The area from SQL parameters `$n..$n+3` (lon, lat, radius, WKT): a
/// circle buffered on the spheroid, or a polygon; NULL when neither.
fn area_sql(n: usize) -> String {
    let (lon, lat, radius, wkt) = (n, n + 1, n + 2, n + 3);
    format!(
        "(CASE WHEN ${lon}::float8 IS NOT NULL
              THEN ST_Buffer(ST_SetSRID(ST_MakePoint(${lon}, ${lat}::float8), 4326)::geography, ${radius}::float8)
              WHEN ${wkt}::text IS NOT NULL THEN ST_GeogFromText(${wkt}) END)"
    )
}

struct AreaParams {
    lon: Option<f64>,
    lat: Option<f64>,
    radius_m: Option<f64>,
    wkt: Option<String>,
}

impl AreaParams {
    fn of(state: &AlertState) -> AreaParams {
        let none = AreaParams { lon: None, lat: None, radius_m: None, wkt: None };
        let valid = |lon: f64, lat: f64| lon.is_finite() && lat.is_finite() && lon.abs() <= 180.0 && lat.abs() <= 90.0;
        match &state.area {
            Some(Area::Circle { lon, lat, radius_m })
                if valid(*lon, *lat) && radius_m.is_finite() && *radius_m > 0.0 =>
            {
                AreaParams { lon: Some(*lon), lat: Some(*lat), radius_m: Some(*radius_m), wkt: None }
            }
            Some(Area::Polygon { ring })
                if ring.len() >= 4 && ring.first() == ring.last() && ring.iter().all(|(x, y)| valid(*x, *y)) =>
            {
                let points: Vec<String> = ring.iter().map(|(lon, lat)| format!("{lon} {lat}")).collect();
                AreaParams { wkt: Some(format!("SRID=4326;POLYGON(({}))", points.join(","))), ..none }
            }
            _ => none,
        }
    }
}
