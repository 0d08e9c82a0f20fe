//! Bulk downloads through the router against a real database holding the
//! demo city: a day's CSV and JSON (public sensors only, city time, units in
//! the column names), ETag revalidation, the disk cache reused and remade
//! when late data arrives or a sensor stops being public, bad requests.

use std::time::Duration;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::Router;
use chrono::{DateTime, NaiveDate, Utc};
use citygauge_domain::{QualityLevel, Reading};
use citygauge_query::downloads_api::{day_start, today};
use citygauge_query::Service;
use citygauge_testkit::city::{self, air, level};
use citygauge_testkit::{database, query_config};
use serde_json::Value;
use tower::ServiceExt;

struct Response {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: String,
}

impl Response {
    fn header(&self, name: header::HeaderName) -> String {
        self.headers.get(name).map(|v| v.to_str().unwrap().to_string()).unwrap_or_default()
    }
}

async fn get(router: &Router, path: &str, headers: &[(header::HeaderName, &str)]) -> Response {
    let mut request = Request::get(path);
    for (name, value) in headers {
        request = request.header(name, *value);
    }
    let response = router.clone().oneshot(request.body(Body::empty()).unwrap()).await.unwrap();
    let (parts, body) = response.into_parts();
    let body = axum::body::to_bytes(body, 64 << 20).await.unwrap();
    Response { status: parts.status, headers: parts.headers, body: String::from_utf8(body.to_vec()).unwrap() }
}

const TZ: chrono_tz::Tz = chrono_tz::Asia::Taipei;

fn at(day: NaiveDate, seconds: i64) -> DateTime<Utc> {
    day_start(TZ, day) + chrono::Duration::seconds(seconds)
}

fn downloads(service: &Service, result: &str) -> u64 {
    service.state.open_data.metrics.downloads.with_label_values(&[result]).get()
}

/// Yesterday (city time) for a public river gauge and a company's sewer
/// gauge (`public: false` in the demo city), a reading each side of the day,
/// an air sensor with some columns missing, and a suspect reading.
fn scene(yesterday: NaiveDate) -> Vec<Reading> {
    let mut suspect = level("kh-wl-0001", at(yesterday, 7_200), 2.5);
    suspect.quality.level = QualityLevel::Suspect;
    suspect.quality.reasons = vec!["spike".into()];
    vec![
        level("kh-wl-0001", at(yesterday, -1), 9.0),
        level("kh-wl-0001", at(yesterday, 3_600), 2.41),
        suspect,
        level("kh-wl-0001", at(yesterday, 86_399), 2.2),
        level("kh-wl-0001", at(yesterday, 86_400), 9.0),
        level("kh-sw-0010", at(yesterday, 3_600), 0.31),
        air("kh-aq-0001", at(yesterday, 600), 40.0, 60.0),
    ]
}

async fn start(url: &str, cache: &std::path::Path, recheck_s: &str) -> anyhow::Result<(Service, Router)> {
    let dir = cache.to_str().unwrap();
    let config = query_config(url, &["--opendata-cache-dir", dir, "--opendata-cache-recheck-s", recheck_s])?;
    let service = Service::start(config).await?;
    service.wait_ready(Duration::from_secs(60)).await?;
    let router = service.router();
    Ok((service, router))
}

#[tokio::test]
async fn a_closed_day_as_csv_and_json_public_sensors_only() -> anyhow::Result<()> {
    let db = database().await?;
    let store = city::demo_city(&db.url).await?;
    let private = "SELECT count(*) FROM sensors WHERE id = 'kh-sw-0010' AND NOT public";
    assert_eq!(db.count(private).await?, 1, "the demo city keeps this sewer gauge to itself");
    let yesterday = today(TZ).pred_opt().unwrap();
    city::write(&store, scene(yesterday)).await?;
    let cache = tempfile::tempdir()?;
    let (service, router) = start(&db.url, cache.path(), "0").await?;

    let csv = get(&router, &format!("/opendata/v1/water_level/{yesterday}.csv"), &[]).await;
    assert_eq!(csv.status, StatusCode::OK, "{}", csv.body);
    assert_eq!(csv.header(header::CONTENT_TYPE), "text/csv; charset=utf-8");
    let lines: Vec<&str> = csv.body.lines().collect();
    let d = yesterday.to_string();
    assert_eq!(
        lines,
        [
            "sensor_id,ts,level_m,quality,quality_reasons",
            &format!("kh-wl-0001,{d}T01:00:00+08:00,2.41,good,") as &str,
            &format!("kh-wl-0001,{d}T02:00:00+08:00,2.5,suspect,spike"),
            &format!("kh-wl-0001,{d}T23:59:59+08:00,2.2,good,"),
        ],
        "the day in city time, the company's gauge left out"
    );
    assert!(csv.header(header::ETAG).starts_with("W/\""));
    assert!(!csv.header(header::LAST_MODIFIED).is_empty());
    assert_eq!(csv.header(header::CACHE_CONTROL), "public, max-age=3600");
    assert!(cache.path().join(format!("water_level/{d}.csv")).is_file(), "kept on disk");

    let json = get(&router, &format!("/opendata/v1/water_level/{yesterday}.json"), &[]).await;
    assert_eq!(json.status, StatusCode::OK);
    let rows: Vec<Value> = serde_json::from_str(&json.body)?;
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[1]["level_m"], 2.5);
    assert_eq!(rows[1]["quality_reasons"], serde_json::json!(["spike"]));
    assert_eq!(rows[0]["ts"], format!("{d}T01:00:00+08:00"));
    assert!(rows.iter().all(|r| r["sensor_id"] == "kh-wl-0001"));
    assert_ne!(json.header(header::ETAG), csv.header(header::ETAG));

    // Every column of the kind, units in the names; missing values are empty / null.
    let air = get(&router, &format!("/opendata/v1/air_quality/{yesterday}.csv"), &[]).await;
    let mut air_lines = air.body.lines();
    assert_eq!(
        air_lines.next(),
        Some("sensor_id,ts,pm2_5_ugm3,pm10_ugm3,o3_ppb,no2_ppb,co_ppm,so2_ppb,temp_c,rh_pct,quality,quality_reasons")
    );
    assert_eq!(air_lines.next(), Some(format!("kh-aq-0001,{d}T00:10:00+08:00,40.0,60.0,,,,,,,good,").as_str()));
    let air_json: Vec<Value> =
        serde_json::from_str(&get(&router, &format!("/opendata/v1/air_quality/{d}.json"), &[]).await.body)?;
    assert_eq!(air_json[0]["o3_ppb"], Value::Null);

    // Nothing for this kind that day: 404; a large file streams whole.
    assert_eq!(get(&router, &format!("/opendata/v1/streetlight/{d}.csv"), &[]).await.status, StatusCode::NOT_FOUND);
    service.stop().await;
    Ok(())
}

#[tokio::test]
async fn etags_the_cache_and_late_data() -> anyhow::Result<()> {
    let db = database().await?;
    let store = city::demo_city(&db.url).await?;
    let yesterday = today(TZ).pred_opt().unwrap();
    city::write(&store, scene(yesterday)).await?;
    let cache = tempfile::tempdir()?;
    let (service, router) = start(&db.url, cache.path(), "0").await?;
    let path = format!("/opendata/v1/water_level/{yesterday}.csv");

    let first = get(&router, &path, &[]).await;
    let etag = first.header(header::ETAG);
    assert_eq!(downloads(&service, "generated"), 1);
    let again = get(&router, &path, &[]).await;
    assert_eq!((again.body.as_str(), again.header(header::ETAG)), (first.body.as_str(), etag.clone()));
    assert_eq!((downloads(&service, "generated"), downloads(&service, "hit")), (1, 1), "served from the cache");
    let revalidated = get(&router, &path, &[(header::IF_NONE_MATCH, &etag)]).await;
    assert_eq!(revalidated.status, StatusCode::NOT_MODIFIED);
    assert!(revalidated.body.is_empty());
    assert_eq!(revalidated.header(header::ETAG), etag);

    // A reading of yesterday arrives late: the file is made again.
    city::write(&store, vec![level("kh-wl-0001", at(yesterday, 43_200), 3.3)]).await?;
    let late = get(&router, &path, &[(header::IF_NONE_MATCH, &etag)]).await;
    assert_eq!(late.status, StatusCode::OK, "the old ETag no longer matches");
    assert_ne!(late.header(header::ETAG), etag);
    assert!(late.body.contains("T12:00:00+08:00,3.3,good"), "{}", late.body);
    assert_eq!(downloads(&service, "generated"), 2);

    // The gauge stops being public: its readings leave the file at once.
    db.client().await?.execute("UPDATE sensors SET public = false WHERE id = 'kh-wl-0001'", &[]).await?;
    let gone = get(&router, &path, &[]).await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND, "no public readings left that day: {}", gone.body);
    assert!(!cache.path().join(format!("water_level/{yesterday}.csv")).exists());
    db.client().await?.execute("UPDATE sensors SET public = true WHERE id = 'kh-wl-0001'", &[]).await?;
    let back = get(&router, &path, &[]).await;
    assert_eq!(back.status, StatusCode::OK);
    service.stop().await;

    // Another service on the same cache directory with a long recheck: the
    // file made before is found on disk, and served as is for the recheck
    // period even though a late reading arrived meanwhile.
    let (service, router) = start(&db.url, cache.path(), "3600").await?;
    let from_disk = get(&router, &path, &[]).await;
    assert_eq!(from_disk.body, back.body);
    assert_eq!((downloads(&service, "generated"), downloads(&service, "hit")), (0, 1));
    city::write(&store, vec![level("kh-wl-0001", at(yesterday, 50_000), 3.4)]).await?;
    assert_eq!(get(&router, &path, &[]).await.body, back.body, "within the recheck period");
    assert_eq!(downloads(&service, "hit"), 2);
    service.stop().await;
    Ok(())
}

#[tokio::test]
async fn today_streams_and_bad_requests_are_named() -> anyhow::Result<()> {
    let db = database().await?;
    let store = city::demo_city(&db.url).await?;
    let now = Utc::now();
    city::write(&store, vec![level("kh-wl-0001", now - chrono::Duration::seconds(30), 1.25)]).await?;
    let cache = tempfile::tempdir()?;
    let (service, router) = start(&db.url, cache.path(), "0").await?;
    let today = today(TZ);

    let path = format!("/opendata/v1/water_level/{today}.csv");
    let live = get(&router, &path, &[]).await;
    assert_eq!(live.status, StatusCode::OK);
    assert!(live.body.lines().any(|l| l.starts_with("kh-wl-0001,") && l.contains(",1.25,")), "{}", live.body);
    assert_eq!(live.header(header::CACHE_CONTROL), "public, max-age=60");
    assert_eq!(downloads(&service, "stream"), 1);
    assert!(!cache.path().join(format!("water_level/{today}.csv")).exists(), "today is not cached");
    let unchanged = get(&router, &path, &[(header::IF_NONE_MATCH, &live.header(header::ETAG))]).await;
    assert_eq!(unchanged.status, StatusCode::NOT_MODIFIED);

    let tomorrow = today.succ_opt().unwrap();
    let future = get(&router, &format!("/opendata/v1/water_level/{tomorrow}.csv"), &[]).await;
    assert_eq!(future.status, StatusCode::NOT_FOUND);
    for (bad, parameter) in [
        ("/opendata/v1/lava/2026-11-01.csv", "kind"),
        ("/opendata/v1/water_level/2026-13-01.csv", "file"),
        ("/opendata/v1/water_level/2026-11-01.xml", "file"),
        ("/opendata/v1/water_level/yesterday.json", "file"),
    ] {
        let response = get(&router, bad, &[]).await;
        assert_eq!(response.status, StatusCode::BAD_REQUEST, "{bad}");
        let body: Value = serde_json::from_str(&response.body)?;
        assert_eq!(body["parameter"], parameter, "{bad}");
    }
    service.stop().await;
    Ok(())
}
