//! The outbox side of the notifiers: which subscriptions a message owes a
//! delivery to (decided in the transaction that stores the message, so a
//! decision is never lost), and the one body webhooks and MQTT both send.

use chrono::{DateTime, FixedOffset};
use citygauge_alerts::{AlertState, Area, Change, Message, MessageRef, MsgStatus, MsgType, RuleId};
use serde::Serialize;

use crate::alerting::AlertingConfig;
use crate::QueryError;

/// Notified (payload: the message id) in the transaction that stores a
/// message, so the delivery worker and the MQTT publisher wake at commit.
pub const CHANNEL: &str = "citygauge_webhooks";

/// CAP severities from least to most severe, as SQL sees them.
const SEVERITY_ORDER: &str = "ARRAY['Unknown','Minor','Moderate','Severe','Extreme']";

/// Creates one pending delivery per enabled subscription the message
/// matches, inside the caller's transaction (the one that stores the
/// message), and wakes the notifiers at commit. Returns how many.
///
/// A subscription matches when:
/// - location: its circle (`center`, `radius_m`) is within reach of the
///   alert's area, or the alert's district is one of its `districts`; one
///   with neither hears the whole city;
/// - `rules` is empty or names the rule, `classes` is empty or names its class;
/// - the severity is at least `min_severity`;
/// - status: Actual always; Test only with `accept_test`; Exercise only with
///   `accept_exercise`; System and Draft never (they are not for the public).
pub async fn enqueue_deliveries(
    tx: &tokio_postgres::Transaction<'_>,
    message_id: i64,
    message: &Message,
) -> Result<u64, QueryError> {
    // Wake the MQTT publisher whatever the subscriptions: it publishes every message.
    tx.execute("SELECT pg_notify($1, $2)", &[&CHANNEL, &message_id.to_string()]).await?;
    let (accept_test, accept_exercise) = match message.status {
        MsgStatus::Actual => (false, false),
        MsgStatus::Test => (true, false),
        MsgStatus::Exercise => (false, true),
        MsgStatus::System | MsgStatus::Draft => return Ok(0),
    };
    let state = &message.state;
    let (lon, lat, radius_m, ring) = match &state.area {
        Some(Area::Circle { lon, lat, radius_m }) => (Some(*lon), Some(*lat), Some(*radius_m), None),
        Some(Area::Polygon { ring }) => (None, None, None, polygon_wkt(ring)),
        None => (None, None, None, None),
    };
    let sql = format!(
        "INSERT INTO webhook_deliveries (subscription_id, message_id)
         SELECT s.id, $1
           FROM webhook_subscriptions s
           LEFT JOIN alerts a ON a.id = $2
          WHERE s.enabled
            AND (cardinality(s.rules) = 0 OR $3 = ANY (s.rules))
            AND (cardinality(s.classes) = 0 OR $4 = ANY (s.classes))
            AND array_position({SEVERITY_ORDER}, s.min_severity) <= array_position({SEVERITY_ORDER}, $5::text)
            AND ($6 = false OR s.accept_test)
            AND ($7 = false OR s.accept_exercise)
            AND ((s.center IS NULL AND cardinality(s.districts) = 0)
                 OR (s.center IS NOT NULL AND ST_DWithin(
                        COALESCE(a.area,
                                 CASE WHEN $8::float8 IS NOT NULL THEN ST_Buffer(
                                          ST_SetSRID(ST_MakePoint($8, $9), 4326)::geography, $10::float8)
                                      WHEN $11::text IS NOT NULL THEN ST_GeogFromText($11) END),
                        s.center, s.radius_m))
                 OR COALESCE(a.district, $12) = ANY (s.districts))
         ON CONFLICT (subscription_id, message_id) DO NOTHING"
    );
    let inserted = tx
        .execute(
            &sql,
            &[
                &message_id,
                &message.alert_id,
                &message.key.rule.as_str(),
                &class_name(message.key.rule),
                &state.severity.as_str(),
                &accept_test,
                &accept_exercise,
                &lon,
                &lat,
                &radius_m,
                &ring,
                &state.district,
            ],
        )
        .await?;
    Ok(inserted)
}

fn class_name(rule: RuleId) -> &'static str {
    match rule.class() {
        citygauge_alerts::Class::Hazard => "hazard",
        citygauge_alerts::Class::Diagnosis => "diagnosis",
        citygauge_alerts::Class::Maintenance => "maintenance",
    }
}

/// `POLYGON((lon lat, ...))` for the message's ring, when it is one.
fn polygon_wkt(ring: &[(f64, f64)]) -> Option<String> {
    if ring.len() < 4 || ring.iter().any(|(x, y)| !x.is_finite() || !y.is_finite()) {
        return None;
    }
    let points: Vec<String> = ring.iter().map(|(lon, lat)| format!("{lon} {lat}")).collect();
    Some(format!("SRID=4326;POLYGON(({}))", points.join(",")))
}

/// What a webhook receives (and MQTT carries): the message, flattened for
/// receivers that do not speak CAP, with a link to its CAP document.
#[derive(Debug, Serialize)]
pub struct WebhookBody<'a> {
    /// The message's CAP identifier; also the `Idempotency-Key` header.
    pub idempotency_key: &'a str,
    pub alert_id: i64,
    pub msg_type: MsgType,
    pub status: MsgStatus,
    pub sent: DateTime<FixedOffset>,
    /// Every earlier message of the alert (CAP `references`), oldest first.
    pub references: &'a [MessageRef],
    pub rule: RuleId,
    pub subject: &'a str,
    pub change: Change,
    pub state: &'a AlertState,
    pub cap_url: String,
}

/// The body's bytes: built once per message, signed per attempt.
pub fn body(message: &Message, public_url: &str) -> Vec<u8> {
    let body = WebhookBody {
        idempotency_key: &message.identifier,
        alert_id: message.alert_id,
        msg_type: message.msg_type,
        status: message.status,
        sent: message.sent,
        references: &message.references,
        rule: message.key.rule,
        subject: &message.key.subject,
        change: message.change,
        state: &message.state,
        cap_url: cap_url(public_url, &message.identifier),
    };
    // Plain data with string keys: serialising cannot fail.
    serde_json::to_vec(&body).unwrap_or_default()
}

/// The message's CAP document (relative when no public URL is configured).
pub fn cap_url(public_url: &str, identifier: &str) -> String {
    format!("{}/api/v1/alerts/messages/{identifier}.cap", public_url.trim_end_matches('/'))
}

/// The configured public base URL, or empty (links stay relative).
pub fn public_url(config: &AlertingConfig) -> &str {
    config.alerts_public_url.as_deref().unwrap_or("")
}
