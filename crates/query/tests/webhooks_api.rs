//! The subscription API (admin only): validation naming the field, the
//! secret shown once, the delivery summary and log, disable / re-enable,
//! secret rotation, delete.

#[path = "webhooks_support/mod.rs"]
mod support;

use std::str::FromStr;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, Request};
use citygauge_alerts::{signing, MsgStatus};
use citygauge_query::alerting::auth::token_hash;
use citygauge_query::alerting::delivery;
use citygauge_query::Service;
use http_body_util::BodyExt;
use serde_json::{json, Value};
use support::*;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

const ADMIN: &str = "admin-token-for-tests";
const OPERATOR: &str = "operator-token-for-tests";

struct Api {
    router: axum::Router,
}

impl Api {
    async fn call(&self, method: Method, path: &str, token: Option<&str>, body: Option<Value>) -> (u16, Value) {
        let mut request = Request::builder().method(method).uri(path);
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        let body = match body {
            Some(body) => {
                request = request.header("content-type", "application/json");
                Body::from(body.to_string())
            }
            None => Body::empty(),
        };
        let response = self.router.clone().oneshot(request.body(body).unwrap()).await.unwrap();
        let status = response.status().as_u16();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let value = if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).unwrap_or(Value::Null) };
        (status, value)
    }

    async fn admin(&self, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
        self.call(method, path, Some(ADMIN), body).await
    }
}

#[tokio::test]
async fn webhooks_subscription_api() {
    let db = citygauge_testkit::database().await.unwrap();
    let mut client = db.client().await.unwrap();
    for (name, role, token) in [("ada", "admin", ADMIN), ("otto", "operator", OPERATOR)] {
        client
            .execute(
                "INSERT INTO operator_tokens (name, role, token_sha256) VALUES ($1, $2, $3)",
                &[&name, &role, &token_hash(token)],
            )
            .await
            .unwrap();
    }
    let config = citygauge_testkit::query_config(&db.url, &["--alerts-disabled"]).unwrap();
    let service = Service::start(config).await.unwrap();
    let api = Api { router: service.router() };
    let receiver = Receiver::start().await;
    let base = "/api/v1/alerts/subscriptions";

    // Admins only.
    assert_eq!(api.call(Method::GET, base, None, None).await.0, 401);
    assert_eq!(api.call(Method::GET, base, Some(OPERATOR), None).await.0, 403);
    let body = json!({"name": "river watch", "url": receiver.url("api")});
    assert_eq!(api.call(Method::POST, base, Some(OPERATOR), Some(body)).await.0, 403);

    // Validation names the field.
    let url = receiver.url("api");
    for (body, field) in [
        (json!({"url": url}), "name"),
        (json!({"name": "x"}), "url"),
        (json!({"name": "x", "url": "ftp://example.org/hook"}), "url"),
        (json!({"name": "x", "url": "not a url"}), "url"),
        (json!({"name": "x", "url": url, "radius_m": 0}), "radius_m"),
        (json!({"name": "x", "url": url, "radius_m": 250000}), "radius_m"),
        (json!({"name": "x", "url": url, "center": {"lon": 200, "lat": 22}}), "center.lon"),
        (json!({"name": "x", "url": url, "center": {"lon": 120, "lat": -95}}), "center.lat"),
        (json!({"name": "x", "url": url, "rules": ["water_level", "volcano"]}), "rules[1]"),
        (json!({"name": "x", "url": url, "classes": ["hazards"]}), "classes[0]"),
        (json!({"name": "x", "url": url, "min_severity": "Dire"}), "min_severity"),
        (json!({"name": "x", "url": url, "colour": "red"}), "colour"),
        (json!({"name": "x", "url": url, "enabled": true}), "enabled"),
    ] {
        let (status, answer) = api.admin(Method::POST, base, Some(body.clone())).await;
        assert_eq!(status, 400, "{body}: {answer}");
        assert_eq!(answer["code"], "invalid", "{body}: {answer}");
        assert_eq!(answer["field"], field, "{body}: {answer}");
    }

    // Created: the secret once, defaults filled in.
    let (status, created) = api
        .admin(
            Method::POST,
            base,
            Some(json!({"name": "river watch", "url": url, "center": {"lon": LON, "lat": LAT + 400.0 * DEG_PER_M},
                        "rules": ["water_level"], "min_severity": "moderate", "accept_test": true})),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let secret = created["secret"].as_str().unwrap().to_string();
    assert_eq!(secret.len(), 64);
    assert!(secret.chars().all(|c| c.is_ascii_hexdigit()));
    let id = created["id"].as_i64().unwrap();
    assert_eq!(created["radius_m"], 500.0);
    assert_eq!(created["classes"], json!(["hazard"]));
    assert_eq!(created["min_severity"], "Moderate");
    assert_eq!(created["accept_test"], true);
    assert_eq!(created["accept_exercise"], false);
    assert_eq!(created["enabled"], true);
    assert_eq!(created["created_by"], "ada");
    assert!((created["center"]["lat"].as_f64().unwrap() - (LAT + 400.0 * DEG_PER_M)).abs() < 1e-9);
    let (status, shown) = api.admin(Method::GET, &format!("{base}/{id}"), None).await;
    assert_eq!(status, 200);
    assert!(shown.get("secret").is_none(), "the secret is shown once");
    assert_eq!(shown["deliveries"]["pending"], 0);
    let (_, list) = api.admin(Method::GET, base, None).await;
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert!(list[0].get("secret").is_none());

    // A delivery signed with that secret, visible in the log.
    let stop = CancellationToken::new();
    let worker_config = alerting(&db.url, &["--webhook-disable-after-failures", "2"]);
    let database: citygauge_store::Database = tokio_postgres::Config::from_str(&db.url).unwrap().into();
    let worker = tokio::spawn(delivery::run(pool(&db.url), database, worker_config, Default::default(), stop.clone()));
    let (_, message) = raise(&mut client, "kh-wl-0100", MsgStatus::Actual).await;
    wait_for("the delivery", Duration::from_secs(10), || async {
        Ok((!receiver.received("api").is_empty()).then_some(()))
    })
    .await;
    let request = &receiver.received("api")[0];
    let now = chrono::Utc::now().timestamp();
    signing::verify(
        &secret,
        &request.header("citygauge-timestamp"),
        &request.header("citygauge-signature"),
        &request.body,
        now,
        300,
    )
    .unwrap();
    wait_for("the log", Duration::from_secs(5), || async {
        let (_, shown) = api.admin(Method::GET, &format!("{base}/{id}"), None).await;
        Ok((shown["deliveries"]["delivered"] == 1).then_some(()))
    })
    .await;
    let (status, log) = api.admin(Method::GET, &format!("{base}/{id}/deliveries"), None).await;
    assert_eq!(status, 200, "{log}");
    assert_eq!(log["items"][0]["identifier"], message.identifier.as_str());
    assert_eq!(log["items"][0]["state"], "delivered");
    assert_eq!(log["items"][0]["attempts"], 1);
    assert_eq!(log["items"][0]["last_status"], 200);
    let (status, bad) = api.admin(Method::GET, &format!("{base}/{id}/deliveries?state=lost"), None).await;
    assert_eq!((status, bad["parameter"].clone()), (400, json!("state")));

    // Failing twice disables it; shown as such; PATCH re-enables and the waiting delivery goes out.
    receiver.always("api", Some(500));
    raise(&mut client, "kh-wl-0101", MsgStatus::Actual).await;
    wait_for("the subscription to be disabled", Duration::from_secs(10), || async {
        let (_, shown) = api.admin(Method::GET, &format!("{base}/{id}"), None).await;
        Ok((shown["enabled"] == false).then_some(()))
    })
    .await;
    let (_, shown) = api.admin(Method::GET, &format!("{base}/{id}"), None).await;
    assert!(shown["disabled_reason"].as_str().unwrap().contains("consecutive"), "{shown}");
    assert!(shown["disabled_at"].is_string());
    assert_eq!(shown["deliveries"]["pending"], 1);
    assert!(shown["deliveries"]["last_error"].as_str().unwrap().contains("500"), "{shown}");
    receiver.always("api", None);
    let (status, patched) =
        api.admin(Method::PATCH, &format!("{base}/{id}"), Some(json!({"enabled": true, "radius_m": 800}))).await;
    assert_eq!(status, 200, "{patched}");
    assert_eq!(patched["enabled"], true);
    assert_eq!(patched["disabled_reason"], Value::Null);
    assert_eq!(patched["consecutive_failures"], 0);
    assert_eq!(patched["radius_m"], 800.0);
    assert!(patched.get("secret").is_none());
    wait_for("the waiting delivery", Duration::from_secs(10), || async {
        let (_, shown) = api.admin(Method::GET, &format!("{base}/{id}"), None).await;
        Ok((shown["deliveries"]["delivered"] == 2).then_some(()))
    })
    .await;

    // Rotating the secret returns the new one once; removing the centre with null.
    let (status, rotated) =
        api.admin(Method::PATCH, &format!("{base}/{id}"), Some(json!({"rotate_secret": true, "center": null}))).await;
    assert_eq!(status, 200);
    let new_secret = rotated["secret"].as_str().unwrap();
    assert_ne!(new_secret, secret);
    assert_eq!(rotated["center"], Value::Null);
    let (status, answer) = api.admin(Method::PATCH, &format!("{base}/{id}"), Some(json!({"name": ""}))).await;
    assert_eq!((status, answer["field"].clone()), (400, json!("name")));
    assert_eq!(api.admin(Method::PATCH, &format!("{base}/999"), Some(json!({"name": "x"}))).await.0, 404);

    // Deleted with its log.
    assert_eq!(api.admin(Method::DELETE, &format!("{base}/{id}"), None).await.0, 204);
    assert_eq!(api.admin(Method::GET, &format!("{base}/{id}"), None).await.0, 404);
    assert_eq!(api.admin(Method::DELETE, &format!("{base}/{id}"), None).await.0, 404);
    assert_eq!(api.admin(Method::GET, &format!("{base}/{id}/deliveries"), None).await.0, 404);
    assert_eq!(db.count("SELECT count(*) FROM webhook_deliveries").await.unwrap(), 0);
    assert_eq!(api.admin(Method::GET, &format!("{base}/abc"), None).await.0, 400);

    stop.cancel();
    worker.await.unwrap();
    service.stop().await;
}

#[test]
fn webhooks_subscription_routes_are_documented() {
    let doc = serde_json::to_value(citygauge_query::openapi::document()).unwrap();
    for path in [
        "/api/v1/alerts/subscriptions",
        "/api/v1/alerts/subscriptions/{id}",
        "/api/v1/alerts/subscriptions/{id}/deliveries",
    ] {
        assert!(doc["paths"][path].is_object(), "{path} is documented");
    }
    let create = &doc["paths"]["/api/v1/alerts/subscriptions"]["post"];
    assert_eq!(create["security"][0]["bearer"], json!([]));
    assert!(doc["components"]["schemas"]["SubscriptionWithSecret"].is_object());
}
