//! Webhook subscriptions (admin): create (the signing secret is shown once),
//! list, show with a delivery summary, update, re-enable, rotate the
//! secret, delete, and each subscription's delivery log ([`deliveries`]).

mod deliveries;

pub use deliveries::{Delivery, DeliveryPage};

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use citygauge_alerts::{RuleId, Severity};
use serde::{Deserialize, Deserializer, Serialize};
use tokio_postgres::Row;
use utoipa::{OpenApi, ToSchema};

use super::{parse_id, JsonBody};
use crate::alerting::auth::Admin;
use crate::params::{self, given, Path};
use crate::{AppState, ErrorBody, QueryError};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/alerts/subscriptions", get(list_handler).post(create_handler))
        .route("/api/v1/alerts/subscriptions/{id}", get(one_handler).patch(update_handler).delete(delete_handler))
        .route("/api/v1/alerts/subscriptions/{id}/deliveries", get(deliveries::deliveries_handler))
}

const DEFAULT_RADIUS_M: f64 = 500.0;
const MAX_RADIUS_M: f64 = 200_000.0;
const MAX_ITEMS: usize = 100;

/// A point (WGS 84).
#[derive(Debug, Clone, Copy, PartialEq, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LonLat {
    pub lon: f64,
    pub lat: f64,
}

/// `POST /api/v1/alerts/subscriptions` (`name` and `url` required) and
/// `PATCH /api/v1/alerts/subscriptions/{id}` (every field optional).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubscriptionBody {
    /// Who receives it, for people (at most 200 characters).
    pub name: Option<String>,
    /// `http://` or `https://` URL the signed JSON is POSTed to.
    pub url: Option<String>,
    /// Deliver alerts whose area comes within `radius_m` of this point
    /// (`null` in a PATCH removes it).
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<LonLat>)]
    pub center: Option<Option<LonLat>>,
    /// Metres around `center` (default 500, at most 200 000).
    pub radius_m: Option<f64>,
    /// Deliver alerts in these districts (with `center`: either matches).
    /// Neither `center` nor `districts`: the whole city.
    pub districts: Option<Vec<String>>,
    /// Rule ids (`water_level`, `rainfall`...); empty: every rule.
    pub rules: Option<Vec<String>>,
    /// `hazard`, `diagnosis`, `maintenance` (default `["hazard"]`); empty: all.
    pub classes: Option<Vec<String>>,
    /// Least CAP severity delivered: Unknown, Minor (default), Moderate, Severe, Extreme.
    pub min_severity: Option<String>,
    /// Also deliver `status=Test` messages (default false).
    pub accept_test: Option<bool>,
    /// Also deliver `status=Exercise` messages (default false).
    pub accept_exercise: Option<bool>,
    /// PATCH only: `true` re-enables a disabled subscription (its pending
    /// deliveries go out again), `false` pauses it.
    pub enabled: Option<bool>,
    /// PATCH only: `true` replaces the signing secret and returns the new one once.
    pub rotate_secret: Option<bool>,
}

/// Distinguishes an absent field (`None`) from an explicit `null` (`Some(None)`).
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

/// A subscription's deliveries, counted.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeliverySummary {
    pub pending: i64,
    pub delivered: i64,
    pub failed: i64,
    pub last_delivered_at: Option<DateTime<Utc>>,
    /// The most recent failed attempt's error, if any.
    pub last_error: Option<String>,
    pub last_error_at: Option<DateTime<Utc>>,
}

/// A webhook subscription (the secret is never shown again after creation).
#[derive(Debug, Serialize, ToSchema)]
pub struct Subscription {
    pub id: i64,
    pub name: String,
    pub url: String,
    pub center: Option<LonLat>,
    pub radius_m: f64,
    pub districts: Vec<String>,
    pub rules: Vec<String>,
    pub classes: Vec<String>,
    pub min_severity: String,
    pub accept_test: bool,
    pub accept_exercise: bool,
    /// False when paused by an admin or disabled for failing (`disabled_reason`).
    pub enabled: bool,
    pub disabled_at: Option<DateTime<Utc>>,
    pub disabled_reason: Option<String>,
    pub consecutive_failures: i32,
    pub created_at: DateTime<Utc>,
    pub created_by: String,
    pub deliveries: DeliverySummary,
}

/// A subscription with its signing secret: only in the answer to creation
/// (and to a PATCH with `rotate_secret`).
#[derive(Debug, Serialize, ToSchema)]
pub struct SubscriptionWithSecret {
    #[serde(flatten)]
    pub subscription: Subscription,
    /// HMAC-SHA256 key for `Citygauge-Signature` (64 hex characters; its
    /// ASCII bytes are the key). Store it now: it is not shown again.
    pub secret: String,
}

/// What a valid body sets.
#[derive(Debug, Default)]
struct Fields {
    name: Option<String>,
    url: Option<String>,
    center: Option<Option<LonLat>>,
    radius_m: Option<f64>,
    districts: Option<Vec<String>>,
    rules: Option<Vec<String>>,
    classes: Option<Vec<String>>,
    min_severity: Option<String>,
}

impl SubscriptionBody {
    fn validate(&self, creating: bool) -> Result<Fields, QueryError> {
        if creating && (self.enabled.is_some() || self.rotate_secret.is_some()) {
            let field = if self.enabled.is_some() { "enabled" } else { "rotate_secret" };
            return Err(QueryError::invalid(field, "only for PATCH"));
        }
        let name = match given(&self.name) {
            Some(name) if name.chars().count() > 200 => {
                return Err(QueryError::invalid("name", "at most 200 characters"))
            }
            Some(name) => Some(name.to_string()),
            None if creating || self.name.is_some() => return Err(QueryError::invalid("name", "required")),
            None => None,
        };
        let url = match &self.url {
            Some(url) => Some(check_url(url)?),
            None if creating => return Err(QueryError::invalid("url", "required")),
            None => None,
        };
        if let Some(Some(LonLat { lon, lat })) = self.center {
            if !(-180.0..=180.0).contains(&lon) {
                return Err(QueryError::invalid("center.lon", "must be between -180 and 180"));
            }
            if !(-90.0..=90.0).contains(&lat) {
                return Err(QueryError::invalid("center.lat", "must be between -90 and 90"));
            }
        }
        if let Some(radius) = self.radius_m {
            if !(radius.is_finite() && radius > 0.0 && radius <= MAX_RADIUS_M) {
                return Err(QueryError::invalid("radius_m", "must be more than 0 and at most 200000 metres"));
            }
        }
        let districts = match &self.districts {
            Some(list) => Some(names("districts", list, |d| (d.chars().count() <= 100).then(|| d.to_string()))?),
            None => None,
        };
        let rules = match &self.rules {
            Some(list) => Some(names("rules", list, |r| RuleId::parse(r).map(|r| r.as_str().to_string()))?),
            None => None,
        };
        let classes = match &self.classes {
            Some(list) => Some(names("classes", list, |c| {
                ["hazard", "diagnosis", "maintenance"].contains(&c).then(|| c.to_string())
            })?),
            None => None,
        };
        let min_severity = match &self.min_severity {
            Some(s) => Some(
                Severity::parse(s.trim())
                    .ok_or_else(|| {
                        QueryError::invalid("min_severity", "one of Unknown, Minor, Moderate, Severe, Extreme")
                    })?
                    .as_str()
                    .to_string(),
            ),
            None => None,
        };
        Ok(Fields { name, url, center: self.center, radius_m: self.radius_m, districts, rules, classes, min_severity })
    }
}

fn check_url(url: &str) -> Result<String, QueryError> {
    let url = url.trim();
    let bad = |why: &str| QueryError::invalid("url", why.to_string());
    if url.len() > 2000 {
        return Err(bad("at most 2000 characters"));
    }
    let uri: hyper::Uri = url.parse().map_err(|_| bad("not a valid URL"))?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        _ => return Err(bad("must start with http:// or https://")),
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(bad("has no host"));
    }
    if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
        return Err(bad("must not carry credentials; requests are signed instead"));
    }
    Ok(url.to_string())
}

/// A list of names, each checked (and normalised) by `check`; the error names the item.
fn names(field: &str, list: &[String], check: impl Fn(&str) -> Option<String>) -> Result<Vec<String>, QueryError> {
    if list.len() > MAX_ITEMS {
        return Err(QueryError::invalid(field, format!("at most {MAX_ITEMS} items")));
    }
    let mut out: Vec<String> = Vec::with_capacity(list.len());
    for (i, item) in list.iter().enumerate() {
        let item = item.trim();
        let name = (!item.is_empty()).then(|| check(item)).flatten().ok_or_else(|| {
            QueryError::invalid(format!("{field}[{i}]"), format!("`{}` is not known", params::shown(item)))
        })?;
        if !out.contains(&name) {
            out.push(name);
        }
    }
    Ok(out)
}

fn new_secret() -> String {
    hex::encode(rand::random::<[u8; 32]>())
}

const SELECT: &str = "SELECT s.id, s.name, s.url, ST_X(s.center::geometry), ST_Y(s.center::geometry), s.radius_m,
        s.districts, s.rules, s.classes, s.min_severity, s.accept_test, s.accept_exercise, s.enabled,
        s.disabled_at, s.disabled_reason, s.consecutive_failures, s.created_at, s.created_by,
        coalesce(d.pending, 0), coalesce(d.delivered, 0), coalesce(d.failed, 0), d.last_delivered_at,
        e.last_error, e.last_error_at
   FROM webhook_subscriptions s
   LEFT JOIN LATERAL (
        SELECT count(*) FILTER (WHERE state = 'pending') AS pending,
               count(*) FILTER (WHERE state = 'delivered') AS delivered,
               count(*) FILTER (WHERE state IN ('failed', 'abandoned')) AS failed,
               max(delivered_at) AS last_delivered_at
          FROM webhook_deliveries WHERE subscription_id = s.id) d ON true
   LEFT JOIN LATERAL (
        SELECT last_error, next_attempt_at AS last_error_at FROM webhook_deliveries
         WHERE subscription_id = s.id AND last_error IS NOT NULL
         ORDER BY id DESC LIMIT 1) e ON true";

fn subscription(row: &Row) -> Subscription {
    let lon: Option<f64> = row.get(3);
    let lat: Option<f64> = row.get(4);
    Subscription {
        id: row.get(0),
        name: row.get(1),
        url: row.get(2),
        center: lon.zip(lat).map(|(lon, lat)| LonLat { lon, lat }),
        radius_m: row.get(5),
        districts: row.get(6),
        rules: row.get(7),
        classes: row.get(8),
        min_severity: row.get(9),
        accept_test: row.get(10),
        accept_exercise: row.get(11),
        enabled: row.get(12),
        disabled_at: row.get(13),
        disabled_reason: row.get(14),
        consecutive_failures: row.get(15),
        created_at: row.get(16),
        created_by: row.get(17),
        deliveries: DeliverySummary {
            pending: row.get(18),
            delivered: row.get(19),
            failed: row.get(20),
            last_delivered_at: row.get(21),
            last_error: row.get(22),
            last_error_at: row.get(23),
        },
    }
}

async fn load(client: &impl tokio_postgres::GenericClient, id: i64) -> Result<Subscription, QueryError> {
    let row = client
        .query_opt(&format!("{SELECT} WHERE s.id = $1"), &[&id])
        .await?
        .ok_or_else(|| QueryError::not_found(format!("subscription {id}")))?;
    Ok(subscription(&row))
}

/// The errors of subscription routes (documentation only).
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)]
enum AdminErrors {
    #[response(status = 400, description = "a bad parameter or body field, named")]
    Bad(ErrorBody),
    #[response(status = 401, description = "no valid bearer token")]
    Unauthorized(ErrorBody),
    #[response(status = 403, description = "the token is not an admin's")]
    Forbidden(ErrorBody),
    #[response(status = 404, description = "no such subscription")]
    NotFound(ErrorBody),
}

/// Every subscription, with its delivery summary.
#[utoipa::path(get, path = "/api/v1/alerts/subscriptions", tag = "alert subscriptions",
    security(("bearer" = [])),
    responses((status = 200, description = "subscriptions", body = Vec<Subscription>), AdminErrors))]
pub async fn list_handler(State(state): State<AppState>, _admin: Admin) -> Result<Json<Vec<Subscription>>, QueryError> {
    let client = state.pool.get().await?;
    let rows = client.query(&format!("{SELECT} ORDER BY s.id"), &[]).await?;
    Ok(Json(rows.iter().map(subscription).collect()))
}

/// Subscribe a URL; the answer carries the signing secret, once.
#[utoipa::path(post, path = "/api/v1/alerts/subscriptions", tag = "alert subscriptions",
    request_body = SubscriptionBody, security(("bearer" = [])),
    responses((status = 201, description = "the subscription and its secret", body = SubscriptionWithSecret), AdminErrors))]
pub async fn create_handler(
    State(state): State<AppState>,
    Admin(who): Admin,
    JsonBody(body): JsonBody<SubscriptionBody>,
) -> Result<(StatusCode, Json<SubscriptionWithSecret>), QueryError> {
    let fields = body.validate(true)?;
    let secret = new_secret();
    let center = fields.center.flatten();
    let client = state.pool.get().await?;
    let row = client
        .query_one(
            "INSERT INTO webhook_subscriptions
                 (name, url, secret, center, radius_m, districts, rules, classes, min_severity,
                  accept_test, accept_exercise, created_by)
             VALUES ($1, $2, $3,
                     CASE WHEN $4::float8 IS NULL THEN NULL
                          ELSE ST_SetSRID(ST_MakePoint($4, $5::float8), 4326)::geography END,
                     $6, $7, $8, $9, $10, $11, $12, $13)
             RETURNING id",
            &[
                &fields.name,
                &fields.url,
                &secret,
                &center.map(|c| c.lon),
                &center.map(|c| c.lat),
                &fields.radius_m.unwrap_or(DEFAULT_RADIUS_M),
                &fields.districts.unwrap_or_default(),
                &fields.rules.unwrap_or_default(),
                &fields.classes.unwrap_or_else(|| vec!["hazard".to_string()]),
                &fields.min_severity.unwrap_or_else(|| Severity::Minor.as_str().to_string()),
                &body.accept_test.unwrap_or(false),
                &body.accept_exercise.unwrap_or(false),
                &who.name,
            ],
        )
        .await?;
    let subscription = load(&**client, row.get(0)).await?;
    Ok((StatusCode::CREATED, Json(SubscriptionWithSecret { subscription, secret })))
}

/// One subscription, with its delivery summary.
#[utoipa::path(get, path = "/api/v1/alerts/subscriptions/{id}", tag = "alert subscriptions",
    params(("id" = i64, Path, description = "Subscription id")), security(("bearer" = [])),
    responses((status = 200, description = "the subscription", body = Subscription), AdminErrors))]
pub async fn one_handler(
    State(state): State<AppState>,
    _admin: Admin,
    Path(id): Path<String>,
) -> Result<Json<Subscription>, QueryError> {
    let id = parse_id("id", &id)?;
    let client = state.pool.get().await?;
    Ok(Json(load(&**client, id).await?))
}

/// Change a subscription; `enabled: true` re-enables one disabled for
/// failing (its pending deliveries go out again), `rotate_secret: true`
/// returns a new secret once.
#[utoipa::path(patch, path = "/api/v1/alerts/subscriptions/{id}", tag = "alert subscriptions",
    params(("id" = i64, Path, description = "Subscription id")), request_body = SubscriptionBody,
    security(("bearer" = [])),
    responses((status = 200, description = "the subscription (with `secret` only when rotated)", body = Subscription), AdminErrors))]
pub async fn update_handler(
    State(state): State<AppState>,
    _admin: Admin,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<SubscriptionBody>,
) -> Result<Json<serde_json::Value>, QueryError> {
    let id = parse_id("id", &id)?;
    let fields = body.validate(false)?;
    let secret = body.rotate_secret.unwrap_or(false).then(new_secret);
    let (set_center, center) = match fields.center {
        Some(center) => (true, center),
        None => (false, None),
    };
    let mut client = state.pool.get().await?;
    let tx = client.transaction().await?;
    let updated = tx
        .execute(
            "UPDATE webhook_subscriptions SET
                 name = coalesce($2, name),
                 url = coalesce($3, url),
                 center = CASE WHEN NOT $4 THEN center
                               WHEN $5::float8 IS NULL THEN NULL
                               ELSE ST_SetSRID(ST_MakePoint($5, $6::float8), 4326)::geography END,
                 radius_m = coalesce($7, radius_m),
                 districts = coalesce($8, districts),
                 rules = coalesce($9, rules),
                 classes = coalesce($10, classes),
                 min_severity = coalesce($11, min_severity),
                 accept_test = coalesce($12, accept_test),
                 accept_exercise = coalesce($13, accept_exercise),
                 secret = coalesce($14, secret),
                 enabled = coalesce($15, enabled),
                 disabled_at = CASE WHEN $15 IS NULL THEN disabled_at WHEN $15 THEN NULL ELSE now() END,
                 disabled_reason = CASE WHEN $15 IS NULL THEN disabled_reason WHEN $15 THEN NULL
                                        ELSE 'paused by an admin' END,
                 consecutive_failures = CASE WHEN $15 THEN 0 ELSE consecutive_failures END
             WHERE id = $1",
            &[
                &id,
                &fields.name,
                &fields.url,
                &set_center,
                &center.map(|c| c.lon),
                &center.map(|c| c.lat),
                &fields.radius_m,
                &fields.districts,
                &fields.rules,
                &fields.classes,
                &fields.min_severity,
                &body.accept_test,
                &body.accept_exercise,
                &secret,
                &body.enabled,
            ],
        )
        .await?;
    if updated == 0 {
        return Err(QueryError::not_found(format!("subscription {id}")));
    }
    if body.enabled == Some(true) {
        // What waited while it was disabled goes out now.
        tx.execute(
            "UPDATE webhook_deliveries SET next_attempt_at = now()
              WHERE subscription_id = $1 AND state = 'pending' AND next_attempt_at > now()",
            &[&id],
        )
        .await?;
        tx.execute("SELECT pg_notify($1, '0')", &[&crate::alerting::webhooks::CHANNEL]).await?;
    }
    let subscription = load(&*tx, id).await?;
    tx.commit().await?;
    let mut value = serde_json::to_value(&subscription).map_err(|e| QueryError::Internal(e.to_string()))?;
    if let (Some(secret), Some(object)) = (secret, value.as_object_mut()) {
        object.insert("secret".into(), secret.into());
    }
    Ok(Json(value))
}

/// Delete a subscription and its delivery log.
#[utoipa::path(delete, path = "/api/v1/alerts/subscriptions/{id}", tag = "alert subscriptions",
    params(("id" = i64, Path, description = "Subscription id")), security(("bearer" = [])),
    responses((status = 204, description = "deleted"), AdminErrors))]
pub async fn delete_handler(
    State(state): State<AppState>,
    _admin: Admin,
    Path(id): Path<String>,
) -> Result<StatusCode, QueryError> {
    let id = parse_id("id", &id)?;
    let client = state.pool.get().await?;
    match client.execute("DELETE FROM webhook_subscriptions WHERE id = $1", &[&id]).await? {
        0 => Err(QueryError::not_found(format!("subscription {id}"))),
        _ => Ok(StatusCode::NO_CONTENT),
    }
}

#[derive(OpenApi)]
#[openapi(
    paths(list_handler, create_handler, one_handler, update_handler, delete_handler, deliveries::deliveries_handler),
    components(schemas(
        SubscriptionBody, Subscription, SubscriptionWithSecret, DeliverySummary, Delivery, DeliveryPage, LonLat
    )),
    tags((name = "alert subscriptions", description = "Signed webhooks with location filters (admin token)"))
)]
struct SubscriptionsDoc;

/// The subscription routes' OpenAPI paths, merged into the alert API's.
pub fn openapi() -> utoipa::openapi::OpenApi {
    SubscriptionsDoc::openapi()
}
