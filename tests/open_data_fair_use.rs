//! Fair use of the open-data routes: 429 with Retry-After per client
//! address, X-Forwarded-For believed from trusted proxies only, API keys
//! made and revoked with the real `citygauge opendata key` command and their
//! higher quota, CORS for browser apps (and not on the operator API).

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{header, Method, Request, StatusCode};
use axum::Router;
use citygauge_query::Service;
use citygauge_testkit::{city, database, query_config};
use serde_json::Value;
use tower::ServiceExt;

fn citygauge(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_citygauge")).args(args).env("CITYGAUGE_LOG", "warn").output().expect("runs")
}

struct Reply {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: Value,
}

async fn send(router: &Router, method: Method, path: &str, peer: &str, headers: &[(&str, &str)]) -> Reply {
    let mut request = Request::builder().method(method).uri(path);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let mut request = request.body(Body::empty()).unwrap();
    request.extensions_mut().insert(ConnectInfo(peer.parse::<SocketAddr>().unwrap()));
    let response = router.clone().oneshot(request).await.unwrap();
    let (parts, body) = response.into_parts();
    let body = axum::body::to_bytes(body, 16 << 20).await.unwrap();
    Reply { status: parts.status, headers: parts.headers, body: serde_json::from_slice(&body).unwrap_or(Value::Null) }
}

async fn get(router: &Router, path: &str, peer: &str, headers: &[(&str, &str)]) -> Reply {
    send(router, Method::GET, path, peer, headers).await
}

const DATASETS: &str = "/opendata/v1/datasets";

async fn service(db_url: &str) -> anyhow::Result<(Service, Router)> {
    let extra = [
        "--opendata-requests-per-minute-per-ip",
        "3",
        "--opendata-trusted-proxies",
        "10.0.0.1",
        "--opendata-key-cache-s",
        "0",
    ];
    let service = Service::start(query_config(db_url, &extra)?).await?;
    service.wait_ready(Duration::from_secs(60)).await?;
    let router = service.router();
    Ok((service, router))
}

#[tokio::test]
async fn addresses_are_limited_and_told_when_to_retry() -> anyhow::Result<()> {
    let db = database().await?;
    city::demo_city(&db.url).await?;
    let (service, router) = service(&db.url).await?;
    let me = "198.51.100.7:50000";
    for n in 0..3 {
        assert_eq!(get(&router, DATASETS, me, &[]).await.status, StatusCode::OK, "request {n}");
    }
    let refused = get(&router, DATASETS, me, &[]).await;
    assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(refused.headers[header::RETRY_AFTER], "20", "3 a minute: one every 20 s");
    assert_eq!(refused.body["code"], "rate_limited");
    assert_eq!(refused.headers[header::ACCESS_CONTROL_ALLOW_ORIGIN], "*", "a browser app can read why");
    // The limit is on every open-data path (SensorThings included), per address.
    assert_eq!(get(&router, "/sta/v1.1", me, &[]).await.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(get(&router, DATASETS, "198.51.100.8:50000", &[]).await.status, StatusCode::OK);
    // A client cannot escape by claiming to forward for someone else...
    let spoofed = get(&router, DATASETS, me, &[("x-forwarded-for", "203.0.113.50")]).await;
    assert_eq!(spoofed.status, StatusCode::TOO_MANY_REQUESTS);
    // ...but clients behind the trusted proxy are told apart.
    for n in 0..3 {
        let via = get(&router, DATASETS, "10.0.0.1:443", &[("x-forwarded-for", "203.0.113.50")]).await;
        assert_eq!(via.status, StatusCode::OK, "request {n}");
    }
    let fourth = get(&router, DATASETS, "10.0.0.1:443", &[("x-forwarded-for", "203.0.113.50")]).await;
    assert_eq!(fourth.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        get(&router, DATASETS, "10.0.0.1:443", &[("x-forwarded-for", "203.0.113.51")]).await.status,
        StatusCode::OK
    );
    // Other routes are not limited.
    for _ in 0..5 {
        assert_eq!(get(&router, "/api/v1/overview", me, &[]).await.status, StatusCode::OK);
    }
    let limited = service.state.open_data.metrics.rate_limited.with_label_values(&["ip"]).get();
    assert_eq!(limited, 4);
    service.stop().await;
    Ok(())
}

#[tokio::test]
async fn api_keys_have_their_own_quota_and_can_be_revoked() -> anyhow::Result<()> {
    let db = database().await?;
    city::demo_city(&db.url).await?;
    let created = citygauge(&[
        "opendata",
        "key",
        "create",
        "--name",
        "Rain app",
        "--requests-per-minute",
        "6",
        "--database-url",
        &db.url,
    ]);
    assert!(created.status.success(), "{}", String::from_utf8_lossy(&created.stderr));
    let key = String::from_utf8(created.stdout)?.trim().to_string();
    assert!(key.starts_with("cgod_") && key.len() > 40, "{key}");
    let stored = format!("SELECT count(*) FROM open_data_keys WHERE key_sha256 = sha256('{key}'::bytea)");
    assert_eq!(db.count(&stored).await?, 1, "only the hash is kept");
    assert_eq!(db.count(&format!("SELECT count(*) FROM open_data_keys WHERE name LIKE '%{key}%'")).await?, 0);

    let (service, router) = service(&db.url).await?;
    let me = "198.51.100.9:40000";
    for n in 0..6 {
        let path = if n % 2 == 0 { DATASETS.to_string() } else { format!("{DATASETS}?api_key={key}") };
        let headers: &[(&str, &str)] = if n % 2 == 0 { &[("x-api-key", &key)] } else { &[] };
        assert_eq!(get(&router, &path, me, headers).await.status, StatusCode::OK, "request {n} with the key");
    }
    let refused = get(&router, DATASETS, me, &[("x-api-key", &key)]).await;
    assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(refused.headers[header::RETRY_AFTER], "10");
    assert_eq!(service.state.open_data.metrics.rate_limited.with_label_values(&["key"]).get(), 1);
    // The key's use did not spend the address's quota.
    assert_eq!(get(&router, DATASETS, me, &[]).await.status, StatusCode::OK);

    let wrong = get(&router, DATASETS, me, &[("x-api-key", "cgod_not-a-key")]).await;
    assert_eq!((wrong.status, wrong.body["code"].as_str()), (StatusCode::UNAUTHORIZED, Some("unauthorized")));
    let revoked = citygauge(&["opendata", "key", "revoke", "--name", "Rain app", "--database-url", &db.url]);
    assert!(revoked.status.success(), "{}", String::from_utf8_lossy(&revoked.stderr));
    assert_eq!(
        get(&router, DATASETS, "198.51.100.10:1", &[("x-api-key", &key)]).await.status,
        StatusCode::UNAUTHORIZED
    );
    let again = citygauge(&["opendata", "key", "revoke", "--name", "Rain app", "--database-url", &db.url]);
    assert!(!again.status.success(), "nothing left to revoke");
    service.stop().await;
    Ok(())
}

#[tokio::test]
async fn browser_apps_get_cors_on_open_data_only() -> anyhow::Result<()> {
    let db = database().await?;
    city::demo_city(&db.url).await?;
    let (service, router) = service(&db.url).await?;
    let me = "198.51.100.11:1";
    let preflight = [
        ("origin", "https://app.example.org"),
        ("access-control-request-method", "GET"),
        ("access-control-request-headers", "x-api-key"),
    ];
    for _ in 0..5 {
        // Preflights are answered before counting.
        let reply = send(&router, Method::OPTIONS, "/opendata/v1/catalog.jsonld", me, &preflight).await;
        assert_eq!(reply.status, StatusCode::NO_CONTENT);
        assert_eq!(reply.headers[header::ACCESS_CONTROL_ALLOW_ORIGIN], "*");
        assert_eq!(reply.headers[header::ACCESS_CONTROL_ALLOW_METHODS], "GET, HEAD, OPTIONS");
        assert_eq!(reply.headers[header::ACCESS_CONTROL_ALLOW_HEADERS], "x-api-key");
    }
    let plain = get(&router, DATASETS, me, &[("origin", "https://app.example.org")]).await;
    assert_eq!(plain.status, StatusCode::OK);
    assert_eq!(plain.headers[header::ACCESS_CONTROL_ALLOW_ORIGIN], "*");
    let exposed = plain.headers[header::ACCESS_CONTROL_EXPOSE_HEADERS].to_str()?;
    assert!(exposed.contains("ETag") && exposed.contains("Retry-After"), "{exposed}");
    let operator = get(&router, "/api/v1/overview", me, &[("origin", "https://app.example.org")]).await;
    assert!(!operator.headers.contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN), "the operator API stays same-origin");
    service.stop().await;
    Ok(())
}
