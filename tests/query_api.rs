//! The query API through its router (`Router::oneshot`) against a real
//! database holding the demo city: representative responses (insta
//! snapshots), every bad parameter named, unknown ids, ETag revalidation,
//! load shedding, the OpenAPI document.

use std::time::Duration;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::Router;
use chrono::{DateTime, Utc};
use citygauge_query::Service;
use citygauge_testkit::city::{self, air, depth, lamp, level, rain};
use citygauge_testkit::{database, query_config};
use serde_json::Value;
use tower::ServiceExt;

struct Response {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: Vec<u8>,
}

impl Response {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&self.body)))
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

async fn get_with(router: &Router, path: &str, headers: &[(&str, &str)]) -> Response {
    let mut request = Request::get(path);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = router.clone().oneshot(request.body(Body::empty()).unwrap()).await.unwrap();
    let (parts, body) = response.into_parts();
    let body = axum::body::to_bytes(body, 64 << 20).await.unwrap().to_vec();
    Response { status: parts.status, headers: parts.headers, body }
}

async fn get(router: &Router, path: &str) -> Response {
    get_with(router, path, &[]).await
}

/// Readings relative to `now`: a river at warning level 3, a flooded road,
/// six hours of dusty air, a lit lamp, and three hours of heavy rain on one gauge.
fn scene(now: DateTime<Utc>) -> Vec<citygauge_domain::Reading> {
    let ago = |minutes: i64| now - chrono::Duration::minutes(minutes);
    let mut readings = vec![
        level("kh-wl-0001", ago(2), 2.41),
        depth("kh-fd-0001", ago(3), 12.0),
        lamp("kh-sl-000001", ago(60), true, 76.0, 1200.0),
        lamp("kh-sl-000001", ago(4), true, 78.0, 1200.5),
    ];
    // Every 10 minutes for 3 h, 6 mm each: 36 mm in the last hour, 108 in 3 h.
    readings.extend((0..18).map(|k| rain("kh-rg-0001", ago(1 + 10 * k), 6.0, 600)));
    // Every 10 minutes for 6 h: enough hours for MOENV's moving averages.
    readings.extend((0..36).map(|k| air("kh-aq-0001", ago(1 + 10 * k), 40.0, 60.0)));
    readings
}

async fn service_with_scene(extra: &[&str]) -> anyhow::Result<(Service, Router)> {
    let (service, router, _) = service_with_scene_on(extra).await?;
    Ok((service, router))
}

/// The same, and the database's URL.
async fn service_with_scene_on(extra: &[&str]) -> anyhow::Result<(Service, Router, String)> {
    let db = database().await?;
    let store = city::demo_city(&db.url).await?;
    city::write(&store, scene(Utc::now())).await?;
    let service = Service::start(query_config(&db.url, extra)?).await?;
    service.wait_ready(Duration::from_secs(60)).await?;
    let router = service.router();
    Ok((service, router, db.url.clone()))
}

fn snapshot_settings() -> insta::Settings {
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path("snapshots");
    settings.set_prepend_module_to_snapshot(false);
    settings
}

#[tokio::test]
async fn representative_responses() -> anyhow::Result<()> {
    let (service, router) = service_with_scene(&[]).await?;
    let sensor = get(&router, "/api/v1/sensors/kh-wl-0001").await;
    assert_eq!(sensor.status, StatusCode::OK, "{}", sensor.text());
    let district = get(&router, "/api/v1/districts/Sanmin").await;
    assert_eq!(district.status, StatusCode::OK);
    let overview = get(&router, "/api/v1/overview").await;
    let map = get(&router, "/api/v1/map/sensors.geojson?kind=water_level&district=Yancheng").await;
    assert_eq!(map.status, StatusCode::OK);
    let list = get(&router, "/api/v1/sensors?kind=flood_depth&state=ok").await;

    let settings = snapshot_settings();
    settings.bind(|| {
        insta::assert_json_snapshot!("sensor_river", sensor.json(), {".latest.ts" => "[ts]", ".latest.age_s" => "[age]"});
        // Energy today depends on whether the city's midnight fell between
        // the two lamp readings.
        insta::assert_json_snapshot!("district_sanmin", district.json(), {
            ".road_flooding.items[].ts" => "[ts]", ".streetlights.energy_today_kwh" => "[kwh]"
        });
        insta::assert_json_snapshot!("overview", overview.json(), {
            ".as_of" => "[ts]", ".ingest.last_reading_at" => "[ts]", ".ingest.readings_last_minute" => "[count]",
            ".sensors.by_state" => "[counts]"
        });
        insta::assert_json_snapshot!("map_rivers_yancheng", map.json(), {
            ".features[].properties.ts" => "[ts]", ".features[].properties.age_s" => "[age]"
        });
        insta::assert_json_snapshot!("sensors_flooded", list.json(), {".items[].latest.ts" => "[ts]", ".items[].latest.age_s" => "[age]"});
    });

    // Figures the snapshots show, spelled out.
    let d = district.json();
    assert_eq!(d["rain"]["1h"]["max_mm"], 36.0);
    assert_eq!(d["rain"]["class"], "extremely_heavy", "108 mm in 3 h");
    assert_eq!(d["air"]["category"], "unhealthy_sensitive");
    assert_eq!(d["streetlights"]["on"], 1);
    assert_eq!(sensor.json()["level"], "warning_3");
    assert_eq!(sensor.json()["installation"]["river"], "Love River");

    // A district's first page is kept ready in the summaries; it must say
    // what the same page built for the request says.
    let ready = get(&router, "/api/v1/districts/Sanmin/sensors").await.json();
    let built = get(&router, "/api/v1/sensors?district=Sanmin&limit=100").await.json();
    let without_age = |page: &Value| -> Vec<Value> {
        let mut items = page["items"].as_array().cloned().unwrap_or_default();
        for item in &mut items {
            if let Some(latest) = item.get_mut("latest").and_then(Value::as_object_mut) {
                latest.remove("age_s");
            }
        }
        items
    };
    assert_eq!(ready["total"], built["total"]);
    assert!(ready["total"].as_u64().is_some_and(|n| n > 0));
    assert_eq!(without_age(&ready), without_age(&built));
    service.stop().await;
    Ok(())
}

#[tokio::test]
async fn every_bad_parameter_is_named_and_unknowns_are_404() -> anyhow::Result<()> {
    let (service, router) = service_with_scene(&[]).await?;
    let long_q = format!("q={}", "x".repeat(101));
    let bad: Vec<(String, &str)> = [
        ("/api/v1/sensors?kind=lava", "kind"),
        ("/api/v1/sensors?subkind=river&status=broken", "status"),
        ("/api/v1/sensors?state=sleepy", "state"),
        ("/api/v1/sensors?bbox=1,2,3", "bbox"),
        ("/api/v1/sensors?bbox=121,22,120,23", "bbox"),
        ("/api/v1/sensors?bbox=a,b,c,d", "bbox"),
        ("/api/v1/sensors?bbox=0,95,1,96", "bbox"),
        ("/api/v1/sensors?limit=0", "limit"),
        ("/api/v1/sensors?limit=5000", "limit"),
        ("/api/v1/sensors?limit=ten", "limit"),
        ("/api/v1/sensors?offset=-1", "offset"),
        ("/api/v1/districts/Sanmin/sensors?kind=lava", "kind"),
        ("/api/v1/districts/Sanmin/sensors?limit=100000", "limit"),
        ("/api/v1/map/sensors.geojson?kind=lava", "kind"),
        ("/api/v1/map/sensors.geojson?district=Atlantis", "district"),
        ("/api/v1/stream?kinds=rainfall,lava", "kinds"),
        ("/api/v1/stream?districts=Atlantis", "districts"),
        ("/api/v1/stream?sensors=not%20an%20id", "sensors"),
        ("/api/v1/sensors/kh-wl-0001/series?agg=median", "agg"),
        ("/api/v1/sensors/kh-wl-0001/series?step=banana", "step"),
        ("/api/v1/sensors/kh-wl-0001/series?from=yesterdayish", "from"),
        ("/api/v1/sensors/kh-wl-0001/series?to=soon", "to"),
        ("/api/v1/sensors/kh-wl-0001/series?points=0", "points"),
        ("/api/v1/sensors/kh-wl-0001/series?columns=depth_cm", "columns"),
        ("/api/v1/sensors/kh-wl-0001/series.csv?agg=median", "agg"),
        ("/api/v1/sensors?kind=water_level&kind=rainfall", "kind"),
        ("/api/v1/sensors/kh-wl-0001/series?agg=avg&agg=max", "agg"),
        ("/api/v1/stream?districts=Sanmin&districts=Gushan", "districts"),
        ("/api/v1/sensors/%FF%FE", "path"),
        ("/api/v1/districts/%C3%28/sensors", "path"),
        ("/api/v1/sensors/%FF/series", "path"),
    ]
    .into_iter()
    .map(|(p, n)| (p.to_string(), n))
    .chain([(format!("/api/v1/sensors?{long_q}"), "q")])
    .collect();
    for (path, parameter) in &bad {
        let r = get(&router, path).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{path}: {}", r.text());
        let body = r.json();
        assert_eq!(body["code"], "bad_parameter", "{path}");
        assert_eq!(body["parameter"], *parameter, "{path}: {body}");
        assert!(body["message"].as_str().unwrap().starts_with(parameter), "{path}: {body}");
        assert_no_internals(path, &r.text());
    }
    for path in [
        "/api/v1/sensors/kh-nope-0001",
        "/api/v1/sensors/kh-nope-0001/series",
        "/api/v1/sensors/kh-nope-0001/series.csv",
        "/api/v1/districts/Atlantis",
        "/api/v1/districts/Atlantis/sensors",
        "/api/v1/no-such-route",
    ] {
        let r = get(&router, path).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{path}: {}", r.text());
        assert_eq!(r.json()["code"], "not_found", "{path}");
        assert_no_internals(path, &r.text());
    }
    // The good versions of the same routes work.
    for path in [
        "/api/v1/sensors?kind=water_level&subkind=river&status=active&bbox=120,22,121,23&q=love&limit=5&offset=0",
        "/api/v1/districts/Sanmin/sensors?kind=streetlight&limit=1",
        "/api/v1/sensors/kh-wl-0001/series?from=-6h&step=10m&agg=max&columns=level_m",
        "/api/v1/sensors/kh-rg-0001/series.csv?from=-3h&step=1h&agg=sum",
    ] {
        let r = get(&router, path).await;
        assert_eq!(r.status, StatusCode::OK, "{path}: {}", r.text());
    }
    let csv = get(&router, "/api/v1/sensors/kh-rg-0001/series.csv?from=-3h&step=1h&agg=sum&columns=rain_mm").await;
    assert!(csv.text().starts_with("ts,rain_mm\n"), "{}", csv.text());
    service.stop().await;
    Ok(())
}

fn assert_no_internals(path: &str, body: &str) {
    let lower = body.to_lowercase();
    for leak in ["select ", "sql", "postgres", "panicked", "db error", "tokio", "deserialize"] {
        assert!(!lower.contains(leak), "{path} leaks `{leak}`: {body}");
    }
}

/// Waits until the summaries were rebuilt `n` more times.
async fn rebuilds(service: &Service, n: u64) -> anyhow::Result<()> {
    let target = service.state.summaries.builds() + n;
    citygauge_testkit::eventually("the summaries to be rebuilt", Duration::from_secs(30), || async {
        Ok((service.state.summaries.builds() >= target).then_some(()))
    })
    .await
}

#[tokio::test]
async fn summaries_revalidate_with_etags_and_big_layers_come_compressed() -> anyhow::Result<()> {
    let (service, router) = service_with_scene(&[]).await?;
    let paths = [
        "/api/v1/overview",
        "/api/v1/districts",
        "/api/v1/districts/Sanmin",
        "/api/v1/map/sensors.geojson",
        "/api/v1/map/sensors.geojson?district=Yancheng",
        "/api/v1/sensors/kh-wl-0001",
        "/api/v1/sensors?kind=flood_depth",
        "/api/v1/districts/Sanmin/sensors?kind=streetlight",
    ];
    let mut tags = Vec::new();
    for path in paths {
        let first = get(&router, path).await;
        assert_eq!(first.status, StatusCode::OK, "{path}");
        let etag = first.headers[header::ETAG].to_str()?.to_string();
        assert!(etag.starts_with("W/\""), "{path}: {etag}");
        assert!(first.headers[header::CACHE_CONTROL].to_str()?.contains("max-age="), "{path}");
        tags.push(etag);
    }
    // Summaries are rebuilt with the clock (`as_of`, `age_s` move); with
    // nothing else changed, every tag still matches.
    rebuilds(&service, 2).await?;
    for (path, etag) in paths.iter().zip(&tags) {
        let again = get_with(&router, path, &[("if-none-match", etag), ("accept-encoding", "gzip")]).await;
        assert_eq!(again.status, StatusCode::NOT_MODIFIED, "{path}");
        assert!(again.body.is_empty());
    }
    let gz = get_with(&router, "/api/v1/map/sensors.geojson", &[("accept-encoding", "gzip")]).await;
    assert_eq!(gz.headers[header::CONTENT_ENCODING], "gzip");
    let plain = get(&router, "/api/v1/map/sensors.geojson").await;
    assert!(gz.body.len() * 4 < plain.body.len(), "gzip {} vs {}", gz.body.len(), plain.body.len());
    assert_eq!(plain.json()["features"].as_array().unwrap().len(), 2375);
    let br =
        get_with(&router, "/api/v1/map/sensors.geojson?kind=streetlight", &[("accept-encoding", "br, gzip")]).await;
    assert_eq!(br.headers[header::CONTENT_ENCODING], "br");
    // Other JSON goes through the compression layer.
    let list = get_with(&router, "/api/v1/sensors?limit=1000", &[("accept-encoding", "gzip")]).await;
    assert_eq!(list.headers[header::CONTENT_ENCODING], "gzip");
    service.stop().await;
    Ok(())
}

#[tokio::test]
async fn a_full_route_group_sheds_load_with_retry_after() -> anyhow::Result<()> {
    let (service, router) = service_with_scene(&["--sse-max-clients", "1"]).await?;
    let held = router.clone().oneshot(Request::get("/api/v1/stream").body(Body::empty())?).await?;
    assert_eq!(held.status(), StatusCode::OK);
    let second = get(&router, "/api/v1/stream").await;
    assert_eq!(second.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(second.headers.contains_key(header::RETRY_AFTER));
    assert_eq!(second.json()["code"], "overloaded");
    // Other route groups are not affected.
    assert_eq!(get(&router, "/api/v1/overview").await.status, StatusCode::OK);
    drop(held);
    citygauge_testkit::eventually("the stream slot to be released", Duration::from_secs(10), || async {
        let r = router.clone().oneshot(Request::get("/api/v1/stream").body(Body::empty())?).await?;
        Ok((r.status() == StatusCode::OK).then_some(()))
    })
    .await?;
    service.stop().await;
    Ok(())
}

#[tokio::test]
async fn openapi_docs_health_metrics_and_a_missing_page() -> anyhow::Result<()> {
    let (service, router) = service_with_scene(&[]).await?;
    let doc = get(&router, "/api/v1/openapi.json").await.json();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"), "{}", doc["openapi"]);
    for path in [
        "/api/v1/sensors",
        "/api/v1/sensors/{id}",
        "/api/v1/sensors/{id}/series",
        "/api/v1/sensors/{id}/series.csv",
        "/api/v1/districts",
        "/api/v1/districts/{name}",
        "/api/v1/districts/{name}/sensors",
        "/api/v1/overview",
        "/api/v1/map/sensors.geojson",
        "/api/v1/map/districts.geojson",
        "/api/v1/stream",
        "/healthz",
        "/readyz",
        "/metrics",
    ] {
        assert!(doc["paths"][path]["get"].is_object(), "{path} is not documented");
    }
    let params: Vec<&str> = doc["paths"]["/api/v1/sensors"]["get"]["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(params, ["kind", "subkind", "district", "status", "state", "bbox", "q", "limit", "offset"]);
    for schema in ["SensorView", "DistrictSummary", "Overview", "ErrorBody", "Series"] {
        assert!(doc["components"]["schemas"][schema].is_object(), "{schema}");
    }
    // Database routes run with the statement timeout on every pooled connection.
    let timeout: String = service.state.pool.get().await?.query_one("SHOW statement_timeout", &[]).await?.get(0);
    assert_eq!(timeout, "5s");
    let docs = get(&router, "/api/docs").await;
    assert_eq!(docs.status, StatusCode::OK);
    assert!(docs.text().contains("/api/v1/openapi.json"));
    assert_eq!(get(&router, "/healthz").await.status, StatusCode::OK);
    let ready = get(&router, "/readyz").await.json();
    assert_eq!(ready["cache"], true);
    let page = get(&router, "/").await;
    assert_eq!(page.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(page.text().contains("npm ci") && page.text().contains("--web-dir"), "{}", page.text());
    assert!(!page.text().contains("/nonexistent/citygauge-web"), "no server path: {}", page.text());
    let metrics = get(&router, "/metrics").await.text();
    assert!(
        metrics.contains(r#"citygauge_query_requests_total{route="/api/v1/openapi.json",status="200"} 1"#),
        "{metrics}"
    );
    assert!(metrics.contains(r#"citygauge_query_cache_hits_total{kind="overview"}"#));
    for name in [
        "citygauge_query_sse_clients",
        "citygauge_query_sse_dropped_clients_total",
        "citygauge_query_change_events_total",
    ] {
        assert!(metrics.contains(name), "{name}");
    }
    // District outlines are derived from the registry once the cache is built.
    let outlines = citygauge_testkit::eventually("district outlines", Duration::from_secs(60), || async {
        let r = get(&router, "/api/v1/map/districts.geojson").await;
        Ok((r.status == StatusCode::OK).then(|| r.json()))
    })
    .await?;
    let features = outlines["features"].as_array().unwrap();
    assert_eq!(features.len(), 18, "one outline per district");
    assert!(features.iter().all(|f| f["geometry"]["type"].as_str().unwrap().ends_with("Polygon")));
    service.stop().await;
    Ok(())
}

/// A scene whose figures depend on who is still reporting: a river gauge
/// about to fall silent, a silent flooded road, a sensor last heard 8 days ago.
#[tokio::test]
async fn silent_sensors_turn_stale_with_time_and_are_counted_apart() -> anyhow::Result<()> {
    let db = database().await?;
    let store = city::demo_city(&db.url).await?;
    let now = Utc::now();
    // Expected every 600 s, stale past 3 x 600 s: this one in about 20 s.
    let nearly = now - chrono::Duration::seconds(1_800 - 20);
    let long_ago = now - chrono::Duration::minutes(45);
    city::write(
        &store,
        vec![
            level("kh-wl-0001", nearly, 2.9),
            depth("kh-fd-0001", long_ago, 40.0),
            depth("kh-fd-0002", now - chrono::Duration::minutes(2), 0.4),
            air("kh-aq-0001", long_ago, 200.0, 300.0),
            lamp("kh-sl-000001", long_ago, true, 70.0, 10.0),
        ],
    )
    .await?;
    let client = store.client().await?;
    client.execute("UPDATE sensors SET last_seen = now() - interval '8 days' WHERE id = 'kh-wl-0002'", &[]).await?;
    let service = Service::start(query_config(&db.url, &[])?).await?;
    service.wait_ready(Duration::from_secs(60)).await?;
    let router = service.router();

    let feature_state = |map: &Value, id: &str| {
        map["features"].as_array().unwrap().iter().find(|f| f["id"] == id).map(|f| f["properties"]["state"].clone())
    };
    // The river gauge reports, at warning level 2...
    let map = get(&router, "/api/v1/map/sensors.geojson?kind=water_level").await.json();
    assert_eq!(feature_state(&map, "kh-wl-0002").unwrap(), "stale", "last_seen counts past the lookback");
    if feature_state(&map, "kh-wl-0001").unwrap() == "ok" {
        let overview = get(&router, "/api/v1/overview").await.json();
        assert_eq!(overview["rivers"]["warning_2"], 1, "{overview}");
    }
    // ... then, with no new reading at all, it falls silent.
    let overview = citygauge_testkit::eventually("the gauge to turn stale", Duration::from_secs(60), || async {
        let overview = get(&router, "/api/v1/overview").await.json();
        Ok((overview["rivers"]["stale"].as_u64() >= Some(2)).then_some(overview))
    })
    .await?;
    let map = get(&router, "/api/v1/map/sensors.geojson?kind=water_level").await.json();
    assert_eq!(feature_state(&map, "kh-wl-0001").unwrap(), "stale");
    assert_eq!(overview["rivers"]["warning_2"], 0, "a silent gauge is no current warning: {overview}");
    assert_eq!(overview["roads"]["wet"], 0, "40 cm 45 min ago is history; 0.4 cm is no water: {overview}");
    assert_eq!(overview["roads"]["stale"], 1);
    assert_eq!(overview["roads"]["severe"], 0);
    assert!(overview["air"]["aqi_max"].is_null() && overview["air"]["stale"] == 1, "{overview}");
    assert_eq!(overview["streetlights"]["on"], 0);
    assert_eq!(overview["streetlights"]["stale"], 1);
    let sanmin = get(&router, "/api/v1/districts/Sanmin").await.json();
    let flood = &sanmin["road_flooding"];
    assert_eq!((flood["wet"].as_u64(), flood["stale"].as_u64()), (Some(0), Some(1)), "{flood}");
    assert!(flood["max_depth_cm"].is_null(), "{flood}");
    assert_eq!(flood["items"][0]["sensor_id"], "kh-fd-0001");
    assert_eq!(flood["items"][0]["stale"], true, "listed, marked: {flood}");
    assert!(sanmin["air"].is_null(), "{sanmin}");
    assert_eq!(sanmin["streetlights"]["stale"], 1);
    let sensor = get(&router, "/api/v1/sensors/kh-fd-0002").await.json();
    assert_eq!(sensor["level"], "normal", "below --wet-min-cm");
    service.stop().await;
    Ok(())
}

#[tokio::test]
async fn database_routes_shed_load_and_time_out_with_retry_after() -> anyhow::Result<()> {
    let (service, router, url) = service_with_scene_on(&[
        "--pool-max-size",
        "2",
        "--pool-wait-ms",
        "100",
        "--statement-timeout-ms",
        "300",
        "--cache-routes-max-concurrent",
        "4",
    ])
    .await?;
    let series = "/api/v1/sensors/kh-wl-0001/series?from=-1h&step=raw";
    assert_eq!(get(&router, series).await.status, StatusCode::OK);
    // No more database requests at once than connections (16 asked, 2 kept).
    assert_eq!(service.state.db_slots.available_permits(), 2);
    let overloaded = |r: &Response, code: &str| {
        assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.text());
        assert!(r.headers.contains_key(header::RETRY_AFTER));
        assert_eq!(r.json()["code"], code, "{}", r.text());
        assert_no_internals("", &r.text());
    };
    // A full group answers at once.
    let held = service.state.db_slots.clone().acquire_many_owned(2).await?;
    overloaded(&get(&router, series).await, "overloaded");
    drop(held);
    let held = service.state.cache_slots.clone().acquire_many_owned(4).await?;
    overloaded(&get(&router, "/api/v1/overview").await, "overloaded");
    drop(held);
    // Every connection busy: a short wait, then 503.
    // (Background tasks borrow a connection now and then: take both when free.)
    let mut held = None;
    for _ in 0..100 {
        if let (Ok(a), Ok(b)) = (service.state.pool.get().await, service.state.pool.get().await) {
            held = Some((a, b));
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (a, b) = held.ok_or_else(|| anyhow::anyhow!("the pool's two connections never came free"))?;
    overloaded(&get(&router, series).await, "timeout");
    drop((a, b));
    // A statement stuck behind a lock is cancelled by the statement timeout.
    let locker_store = citygauge_store::Store::new(citygauge_store::StoreConfig::new(&url))?;
    let mut locker = locker_store.client().await?;
    let tx = locker.transaction().await?;
    tx.batch_execute("LOCK TABLE water_level IN ACCESS EXCLUSIVE MODE").await?;
    overloaded(&get(&router, series).await, "timeout");
    tx.rollback().await?;
    assert_eq!(get(&router, series).await.status, StatusCode::OK);
    service.stop().await;
    Ok(())
}

#[tokio::test]
async fn hot_routes_answer_with_the_database_gone() -> anyhow::Result<()> {
    let (service, router, url) = service_with_scene_on(&[]).await?;
    rebuilds(&service, 1).await?;
    let name: String = {
        let store = citygauge_store::Store::new(citygauge_store::StoreConfig::new(&url))?;
        let client = store.client().await?;
        client.query_one("SELECT current_database()", &[]).await?.get(0)
    };
    // From another database: no new connections, and the pool's and the
    // change stream's are cut.
    let admin_store = citygauge_store::Store::new(citygauge_store::StoreConfig::new(url.replace(&name, "postgres")))?;
    let admin = admin_store.client().await?;
    admin.batch_execute(&format!("ALTER DATABASE {name} ALLOW_CONNECTIONS false")).await?;
    admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", &[&name]).await?;
    // The summaries go on being rebuilt from the cache.
    rebuilds(&service, 2).await?;
    for path in [
        "/api/v1/overview",
        "/api/v1/districts",
        "/api/v1/districts/Sanmin",
        "/api/v1/map/sensors.geojson",
        "/api/v1/map/sensors.geojson?district=Sanmin",
        "/api/v1/sensors?kind=flood_depth",
        "/api/v1/sensors/kh-wl-0001",
        "/api/v1/districts/Sanmin/sensors",
    ] {
        assert_eq!(get(&router, path).await.status, StatusCode::OK, "{path}");
    }
    let series = get(&router, "/api/v1/sensors/kh-wl-0001/series").await;
    assert_eq!(series.status, StatusCode::SERVICE_UNAVAILABLE, "{}", series.text());
    assert!(series.headers.contains_key(header::RETRY_AFTER));
    assert_no_internals("series", &series.text());
    admin.batch_execute(&format!("ALTER DATABASE {name} ALLOW_CONNECTIONS true")).await?;
    service.stop().await;
    Ok(())
}

#[tokio::test]
async fn graceful_shutdown_finishes_a_request_in_flight() -> anyhow::Result<()> {
    let db = database().await?;
    let store = city::demo_city(&db.url).await?;
    city::write(&store, scene(Utc::now())).await?;
    let query = citygauge_testkit::InProcessQuery::start(query_config(&db.url, &[])?).await?;
    let mut locker = store.client().await?;
    let tx = locker.transaction().await?;
    tx.batch_execute("LOCK TABLE water_level IN ACCESS EXCLUSIVE MODE").await?;
    let addr = query.http;
    let request = tokio::spawn(async move {
        citygauge_testkit::http_get(addr, "/api/v1/sensors/kh-wl-0001/series?from=-1h&step=raw").await
    });
    let probe = store.client().await?;
    citygauge_testkit::eventually("the series query to wait on the lock", Duration::from_secs(30), || async {
        let waiting: i64 = probe
            .query_one(
                "SELECT count(*) FROM pg_stat_activity
                  WHERE datname = current_database() AND wait_event_type = 'Lock'",
                &[],
            )
            .await?
            .get(0);
        Ok((waiting > 0).then_some(()))
    })
    .await?;
    let stopping = tokio::spawn(query.stop());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!stopping.is_finished(), "the service waits for the request in flight");
    tx.rollback().await?;
    let (status, body) = request.await??;
    assert_eq!(status, 200, "{body}");
    stopping.await??;
    Ok(())
}

#[tokio::test]
async fn district_outlines_follow_the_registry() -> anyhow::Result<()> {
    let (service, router, url) = service_with_scene_on(&[]).await?;
    let count = |router: Router| async move {
        let r = get(&router, "/api/v1/map/districts.geojson").await;
        Ok::<_, anyhow::Error>((r.status == StatusCode::OK).then(|| r.json()["features"].as_array().unwrap().len()))
    };
    citygauge_testkit::eventually("the first outlines", Duration::from_secs(60), || async {
        Ok(count(router.clone()).await?.filter(|n| *n == 18))
    })
    .await?;
    // Yancheng's sensors join Sanmin: one district fewer, once the registry is reloaded.
    let store = citygauge_store::Store::new(citygauge_store::StoreConfig::new(&url))?;
    store.client().await?.execute("UPDATE sensors SET district = 'Sanmin' WHERE district = 'Yancheng'", &[]).await?;
    citygauge_testkit::eventually("outlines derived again", Duration::from_secs(60), || async {
        Ok(count(router.clone()).await?.filter(|n| *n == 17))
    })
    .await?;
    service.stop().await;
    Ok(())
}
