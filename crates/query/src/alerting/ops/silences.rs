//! Maintenance windows: no new alert of a rule (or of any rule) for a
//! subject until a bounded time. Each is recorded on the open alerts of the
//! subject it concerns, and the evaluator is told at commit.

use chrono::{DateTime, Duration, Utc};
use citygauge_alerts::RuleId;
use serde::Serialize;
use serde_json::json;
use tokio_postgres::{GenericClient, Row};
use utoipa::ToSchema;

use super::{notify, record, Alert, ALERT_COLUMNS, CONFIG_CHANNEL};
use crate::alerting::auth::Operator;
use crate::QueryError;

/// The longest silence: a maintenance window, not a way to switch a rule off.
pub const MAX_SILENCE: Duration = Duration::days(7);

/// A silence as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Silence {
    pub id: i64,
    /// The rule silenced; null: every rule of the subject.
    pub rule: Option<String>,
    /// A sensor id, or `district:<name>`.
    pub subject: String,
    pub starts_at: DateTime<Utc>,
    pub until: DateTime<Utc>,
    pub reason: String,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub cancelled_at: Option<DateTime<Utc>>,
    pub cancelled_by: Option<String>,
}

const COLUMNS: &str = "id, rule, subject, starts_at, until, reason, created_by, created_at, cancelled_at, cancelled_by";

impl Silence {
    fn from_row(row: &Row) -> Silence {
        Silence {
            id: row.get(0),
            rule: row.get(1),
            subject: row.get(2),
            starts_at: row.get(3),
            until: row.get(4),
            reason: row.get(5),
            created_by: row.get(6),
            created_at: row.get(7),
            cancelled_at: row.get(8),
            cancelled_by: row.get(9),
        }
    }
}

/// A checked new silence.
#[derive(Debug, Clone, PartialEq)]
pub struct NewSilence {
    pub rule: Option<RuleId>,
    pub subject: String,
    pub until: DateTime<Utc>,
    pub reason: String,
}

/// The open alerts a silence concerns, locked.
async fn concerned(client: &impl GenericClient, silence: &Silence) -> Result<Vec<Alert>, QueryError> {
    let sql = format!(
        "SELECT {ALERT_COLUMNS} FROM alerts a WHERE a.state <> 'resolved' AND a.subject = $1 \
         AND ($2::text IS NULL OR a.rule = $2) ORDER BY a.id FOR UPDATE"
    );
    Ok(client.query(&sql, &[&silence.subject, &silence.rule]).await?.iter().map(Alert::from_row).collect())
}

pub async fn create_silence(
    client: &mut tokio_postgres::Client,
    new: &NewSilence,
    who: &Operator,
) -> Result<Silence, QueryError> {
    let tx = client.transaction().await?;
    let now = Utc::now();
    let sql = format!(
        "INSERT INTO alert_silences (rule, subject, starts_at, until, reason, created_by, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $3) RETURNING {COLUMNS}"
    );
    let rule = new.rule.map(RuleId::as_str);
    let row = tx.query_one(&sql, &[&rule, &new.subject, &now, &new.until, &new.reason, &who.name]).await?;
    let silence = Silence::from_row(&row);
    let details = json!({"silence_id": silence.id, "rule": silence.rule, "until": silence.until});
    for alert in concerned(&tx, &silence).await? {
        record(&tx, &alert, "silenced", now, &who.name, Some(&silence.reason), &details).await?;
    }
    notify(&tx, CONFIG_CHANNEL, &json!({"what": "silences"})).await?;
    tx.commit().await?;
    Ok(silence)
}

/// Silences in force now, ending soonest first.
pub async fn list_silences(client: &impl GenericClient) -> Result<Vec<Silence>, QueryError> {
    let sql =
        format!("SELECT {COLUMNS} FROM alert_silences WHERE cancelled_at IS NULL AND until > now() ORDER BY until, id");
    Ok(client.query(&sql, &[]).await?.iter().map(Silence::from_row).collect())
}

/// Ends a silence early; 409 when it already ended.
pub async fn cancel_silence(
    client: &mut tokio_postgres::Client,
    id: i64,
    who: &Operator,
) -> Result<Silence, QueryError> {
    let tx = client.transaction().await?;
    let sql = format!("SELECT {COLUMNS} FROM alert_silences WHERE id = $1 FOR UPDATE");
    let row = tx.query_opt(&sql, &[&id]).await?.ok_or_else(|| QueryError::not_found(format!("silence {id}")))?;
    let silence = Silence::from_row(&row);
    let now = Utc::now();
    if let Some(by) = &silence.cancelled_by {
        return Err(QueryError::Conflict(format!("silence {id} was already cancelled by {by}")));
    }
    if silence.until <= now {
        return Err(QueryError::Conflict(format!("silence {id} has already ended")));
    }
    let sql =
        format!("UPDATE alert_silences SET cancelled_at = $2, cancelled_by = $3 WHERE id = $1 RETURNING {COLUMNS}");
    let silence = Silence::from_row(&tx.query_one(&sql, &[&id, &now, &who.name]).await?);
    let details = json!({"silence_id": silence.id, "rule": silence.rule, "cancelled": true});
    for alert in concerned(&tx, &silence).await? {
        record(&tx, &alert, "silenced", now, &who.name, Some("silence cancelled"), &details).await?;
    }
    notify(&tx, CONFIG_CHANNEL, &json!({"what": "silences"})).await?;
    tx.commit().await?;
    Ok(silence)
}
