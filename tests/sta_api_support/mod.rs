//! Shared by the SensorThings API tests: a service over the demo city with
//! a few hours of readings, requests through `Router::oneshot`, and SQL
//! helpers to find the ids the API should show.

#![allow(dead_code)]

use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::Router;
use chrono::{DateTime, Utc};
use citygauge_query::Service;
use citygauge_testkit::city::{self, air, depth, lamp, level, rain};
use citygauge_testkit::{database, query_config};
use serde_json::Value;
use tower::ServiceExt;

pub const HOST: &str = "sta.example.org";
pub const ROOT: &str = "http://sta.example.org/sta/v1.1";

pub struct Reply {
    pub status: StatusCode,
    pub content_type: String,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.text()))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// GET `path` (absolute links are accepted and cut to their path).
pub async fn get(router: &Router, path: &str) -> Reply {
    let path = path.strip_prefix("http://sta.example.org").unwrap_or(path);
    let request = Request::get(path).header("host", HOST).body(Body::empty()).unwrap();
    let response = router.clone().oneshot(request).await.unwrap();
    let (parts, body) = response.into_parts();
    let body = axum::body::to_bytes(body, 256 << 20).await.unwrap().to_vec();
    let content_type = parts.headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    Reply { status: parts.status, content_type, body }
}

/// GET that must answer 200 with JSON.
pub async fn ok(router: &Router, path: &str) -> Value {
    let reply = get(router, path).await;
    assert_eq!(reply.status, StatusCode::OK, "{path}: {}", reply.text());
    reply.json()
}

/// Percent-encodes a query-option value the way clients do.
pub fn enc(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'$' | b'/' | b'(' | b')' | b',' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Readings relative to `now`: a river gauge, a flood sensor, 3 h of rain
/// every 10 minutes, 6 h of air quality, two lamp reports.
pub fn scene(now: DateTime<Utc>) -> Vec<citygauge_domain::Reading> {
    let ago = |minutes: i64| now - chrono::Duration::minutes(minutes);
    let mut readings = vec![
        level("kh-wl-0001", ago(30), 2.1),
        level("kh-wl-0001", ago(2), 2.41),
        level("kh-wl-0002", ago(5), 1.0),
        depth("kh-fd-0001", ago(3), 12.0),
        lamp("kh-sl-000001", ago(60), true, 76.0, 1200.0),
        lamp("kh-sl-000001", ago(4), true, 78.0, 1200.5),
    ];
    readings.extend((0..18).map(|k| rain("kh-rg-0001", ago(1 + 10 * k), 1.0 + k as f64, 600)));
    readings.extend((0..36).map(|k| air("kh-aq-0001", ago(1 + 10 * k), 40.0 - k as f64 / 2.0, 60.0)));
    readings
}

pub struct World {
    pub service: Service,
    pub router: Router,
    pub url: String,
    pub store: citygauge_store::Store,
}

pub async fn world() -> anyhow::Result<World> {
    let db = database().await?;
    let store = city::demo_city(&db.url).await?;
    city::write(&store, scene(Utc::now())).await?;
    let service = Service::start(query_config(&db.url, &[])?).await?;
    service.wait_ready(Duration::from_secs(60)).await?;
    let router = service.router();
    Ok(World { service, router, url: db.url.clone(), store })
}

pub async fn sql(url: &str) -> anyhow::Result<tokio_postgres::Client> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    Ok(client)
}

/// The Thing id of a sensor.
pub async fn thing(url: &str, sensor: &str) -> anyhow::Result<i64> {
    let row = sql(url).await?.query_one("SELECT sta_id FROM sensors WHERE id = $1", &[&sensor]).await?;
    Ok(row.get(0))
}

/// Collects every entity of a collection by following `@iot.nextLink`.
pub async fn walk(router: &Router, first: &str) -> Vec<Value> {
    let mut all = Vec::new();
    let mut next = Some(first.to_string());
    while let Some(link) = next {
        let page = ok(router, &link).await;
        all.extend(page["value"].as_array().cloned().unwrap_or_default());
        next = page["@iot.nextLink"].as_str().map(str::to_string);
    }
    all
}
