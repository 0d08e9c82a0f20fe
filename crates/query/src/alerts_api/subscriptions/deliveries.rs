//! A subscription's delivery log: every (message, subscription) delivery,
//! its attempts, the receiver's last status and error.

use axum::extract::State;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::AdminErrors;
use crate::alerting::auth::Admin;
use crate::alerts_api::parse_id;
use crate::params::{self, given, Params, Path};
use crate::{AppState, QueryError};

const MAX_DELIVERIES: u64 = 500;

/// One entry of the delivery log.
#[derive(Debug, Serialize, ToSchema)]
pub struct Delivery {
    pub id: i64,
    pub message_id: i64,
    /// The message's CAP identifier (the `Idempotency-Key`).
    pub identifier: String,
    pub alert_id: i64,
    pub msg_type: String,
    pub status: String,
    /// `pending`, `delivered`, `failed` (attempts exhausted) or `abandoned`.
    pub state: String,
    pub attempts: i32,
    pub next_attempt_at: DateTime<Utc>,
    /// The receiver's HTTP status on the last attempt.
    pub last_status: Option<i32>,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub delivered_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryPage {
    pub items: Vec<Delivery>,
    /// Pass as `before` for the next (older) page.
    pub next_cursor: Option<String>,
}

/// Filters of the delivery log.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeliveriesParams {
    /// `pending`, `delivered`, `failed` or `abandoned`.
    pub state: Option<String>,
    /// At most this many, newest first (default 100, at most 500).
    pub limit: Option<String>,
    /// Only deliveries with an id below this (the previous page's `next_cursor`).
    pub before: Option<String>,
}

/// The delivery log of a subscription, newest first.
#[utoipa::path(get, path = "/api/v1/alerts/subscriptions/{id}/deliveries", tag = "alert subscriptions",
    params(("id" = i64, Path, description = "Subscription id"), DeliveriesParams), security(("bearer" = [])),
    responses((status = 200, description = "deliveries", body = DeliveryPage), AdminErrors))]
pub async fn deliveries_handler(
    State(state): State<AppState>,
    _admin: Admin,
    Path(id): Path<String>,
    Params(p): Params<DeliveriesParams>,
) -> Result<Json<DeliveryPage>, QueryError> {
    let id = parse_id("id", &id)?;
    let limit = match given(&p.limit) {
        Some(limit) => params::integer("limit", limit, 1, MAX_DELIVERIES)? as i64,
        None => 100,
    };
    let before = match given(&p.before) {
        Some(before) => Some(parse_id("before", before)?),
        None => None,
    };
    let state_filter = match given(&p.state) {
        Some(s @ ("pending" | "delivered" | "failed" | "abandoned")) => Some(s.to_string()),
        Some(other) => {
            return Err(QueryError::bad(
                "state",
                format!("`{}` is not pending, delivered, failed or abandoned", params::shown(other)),
            ))
        }
        None => None,
    };
    let client = state.pool.get().await?;
    if client.query_opt("SELECT 1 FROM webhook_subscriptions WHERE id = $1", &[&id]).await?.is_none() {
        return Err(QueryError::not_found(format!("subscription {id}")));
    }
    let rows = client
        .query(
            "SELECT d.id, d.message_id, m.identifier, m.alert_id, m.msg_type, m.status, d.state, d.attempts,
                    d.next_attempt_at, d.last_status, d.last_error, d.created_at, d.delivered_at
               FROM webhook_deliveries d JOIN alert_messages m ON m.id = d.message_id
              WHERE d.subscription_id = $1 AND ($2::bigint IS NULL OR d.id < $2)
                AND ($3::text IS NULL OR d.state = $3)
              ORDER BY d.id DESC LIMIT $4",
            &[&id, &before, &state_filter, &limit],
        )
        .await?;
    let items: Vec<Delivery> = rows
        .iter()
        .map(|row| Delivery {
            id: row.get(0),
            message_id: row.get(1),
            identifier: row.get(2),
            alert_id: row.get(3),
            msg_type: row.get(4),
            status: row.get(5),
            state: row.get(6),
            attempts: row.get(7),
            next_attempt_at: row.get(8),
            last_status: row.get(9),
            last_error: row.get(10),
            created_at: row.get(11),
            delivered_at: row.get(12),
        })
        .collect();
    let next_cursor = (items.len() as i64 == limit).then(|| items.last().map(|d| d.id.to_string())).flatten();
    Ok(Json(DeliveryPage { items, next_cursor }))
}
