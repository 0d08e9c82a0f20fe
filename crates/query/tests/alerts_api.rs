//! The alert API's public reads through the router (`Router::oneshot`) on
//! a real database: the list with every filter and keyset pages, one alert
//! with its timeline and messages (insta snapshots), CAP and Atom, every bad
//! parameter named, the OpenAPI document.

mod alerts_api_support;

use alerts_api_support::{at, insert_messages, snapshot_settings, start, NewAlert};
use axum::http::StatusCode;
use citygauge_alerts::{MsgStatus, RuleId, Severity};
use serde_json::Value;

fn ids(page: &Value) -> Vec<i64> {
    page["items"].as_array().unwrap().iter().map(|a| a["id"].as_i64().unwrap()).collect()
}

#[tokio::test]
async fn the_list_filters_and_pages() -> anyhow::Result<()> {
    let api = start().await?;
    let c = &api.client;
    let river = NewAlert::river("kh-wl-0001", 2, at(0));
    let a1 = river.insert(c).await?;
    let a2 = NewAlert { state: "acknowledged", ..NewAlert::river("kh-wl-0002", 1, at(10)) }.insert(c).await?;
    let a3 = NewAlert { state: "resolved", ..NewAlert::river("kh-wl-0003", 3, at(-600)) }.insert(c).await?;
    let a4 = NewAlert {
        rule: RuleId::SensorSilent,
        level: "silent",
        severity: Severity::Minor,
        grade: 1,
        district: Some("Lingya"),
        ..NewAlert::river("kh-rg-0001", 1, at(20))
    }
    .insert(c)
    .await?;
    let a5 = NewAlert {
        rule: RuleId::DistrictRainfall,
        level: "heavy_rain",
        status: MsgStatus::Test,
        ..NewAlert::river("district:Sanmin", 1, at(30))
    }
    .insert(c)
    .await?;

    let list = |query: &str| {
        let path = format!("/api/v1/alerts{query}");
        let api = &api;
        async move {
            let r = api.get(&path).await;
            assert_eq!(r.status, StatusCode::OK, "{path}: {}", r.text());
            r.json()
        }
    };
    // Active (open + acknowledged) by default, newest first.
    let active = list("").await;
    assert_eq!(ids(&active), [a5, a4, a2, a1]);
    assert_eq!(active["next_cursor"], Value::Null);
    assert_eq!(ids(&list("?state=resolved").await), [a3]);
    assert_eq!(ids(&list("?state=all").await), [a5, a4, a3, a2, a1]);
    assert_eq!(ids(&list("?state=acknowledged").await), [a2]);
    assert_eq!(ids(&list("?rule=water_level").await), [a2, a1]);
    assert_eq!(ids(&list("?rule=water_level,sensor_silent&state=all").await), [a4, a3, a2, a1]);
    assert_eq!(ids(&list("?class=maintenance").await), [a4]);
    assert_eq!(ids(&list("?class=hazard,diagnosis").await), [a5, a2, a1]);
    assert_eq!(ids(&list("?district=Lingya").await), [a4]);
    assert_eq!(ids(&list("?sensor=kh-wl-0001").await), [a1]);
    assert_eq!(ids(&list("?min_severity=severe").await), [a1]);
    assert_eq!(ids(&list("?min_severity=Moderate").await), [a5, a2, a1]);
    assert_eq!(ids(&list("?status=Test").await), [a5]);
    // `since`: still open at or after; `until`: raised at or before.
    assert_eq!(ids(&list("?state=all&since=2026-07-01T09:00:00Z").await), [a5, a4, a2, a1]);
    assert_eq!(ids(&list("?state=all&until=2026-07-01T10:05:00Z").await), [a3, a1]);
    assert_eq!(ids(&list("?state=all&since=2026-07-01T00:00:00Z&until=2026-07-01T00:30:00Z").await), [a3]);

    // Keyset pages: every alert once, in order, whatever the page size.
    let mut seen = Vec::new();
    let mut cursor = String::new();
    loop {
        let page = list(&format!("?state=all&limit=2{cursor}")).await;
        assert!(ids(&page).len() <= 2);
        seen.extend(ids(&page));
        match page["next_cursor"].as_str() {
            Some(next) => cursor = format!("&cursor={next}"),
            None => break,
        }
    }
    assert_eq!(seen, [a5, a4, a3, a2, a1]);

    let water = list("?rule=water_level&state=all").await;
    let settings = snapshot_settings();
    settings.bind(|| insta::assert_json_snapshot!("alerts_list_water_level", water, {".items[].id" => "[id]", ".items[].area.coordinates" => "[ring]"}));
    api.stop().await;
    Ok(())
}

#[tokio::test]
async fn one_alert_with_its_timeline_and_messages() -> anyhow::Result<()> {
    let api = start().await?;
    let river = NewAlert::river("kh-wl-0001", 2, at(0));
    let id = river.insert(&api.client).await?;
    api.client
        .execute(
            "INSERT INTO alert_events (alert_id, at, kind, grade, level) VALUES ($1, $2, 'escalated', 2, 'orange')",
            &[&id, &at(15)],
        )
        .await?;
    let sent = insert_messages(&api.client, id, &river, &[(1, at(0)), (2, at(15))]).await?;

    let one = api.get(&format!("/api/v1/alerts/{id}")).await;
    assert_eq!(one.status, StatusCode::OK, "{}", one.text());
    let json = one.json();
    assert_eq!(json["id"], id);
    assert_eq!(json["headline_en"], "River water level warning: orange at kh-wl-0001");
    assert_eq!(json["lead_time_s"], 2400);
    assert_eq!(json["area"]["type"], "Polygon", "a circle buffered into a polygon");
    let kinds: Vec<&str> = json["events"].as_array().unwrap().iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["raised", "escalated"]);
    let messages = json["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 2);
    assert_eq!(messages[1]["identifier"], sent[1].identifier);
    assert_eq!(messages[1]["msg_type"], "Update");
    assert_eq!(messages[0]["cap_url"], format!("/api/v1/alerts/messages/citygauge@city.example.gov.tw:{id}:1.cap"));

    let events = api.get(&format!("/api/v1/alerts/{id}/events")).await;
    assert_eq!(events.status, StatusCode::OK);
    assert_eq!(events.json(), json["events"]);

    // The area's coordinates carry PostGIS's rounding: left out of the snapshot.
    let settings = snapshot_settings();
    settings.bind(|| {
        insta::assert_json_snapshot!("alert_one_river", json, {
            ".area.coordinates" => "[ring]", ".id" => "[id]", ".events[].id" => "[id]", ".events[].alert_id" => "[id]",
            ".messages[].identifier" => "[identifier]", ".messages[].cap_url" => "[url]"
        })
    });

    // Unknown and malformed ids.
    for path in ["/api/v1/alerts/999999", "/api/v1/alerts/999999/events", "/api/v1/alerts/999999.cap"] {
        let r = api.get(path).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{path}: {}", r.text());
        assert_eq!(r.json()["code"], "not_found");
    }
    let r = api.get("/api/v1/alerts/messages/nobody:1:1.cap").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    for path in ["/api/v1/alerts/abc", "/api/v1/alerts/0/events", "/api/v1/alerts/-3.cap", "/api/v1/alerts/1e3"] {
        let r = api.get(path).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{path}: {}", r.text());
        assert_eq!(r.json()["parameter"], "id", "{path}");
    }
    api.stop().await;
    Ok(())
}

#[tokio::test]
async fn cap_documents_and_the_atom_feed() -> anyhow::Result<()> {
    let api = start().await?;
    let river = NewAlert::river("kh-wl-0001", 2, at(0));
    let id = river.insert(&api.client).await?;
    let sent = insert_messages(&api.client, id, &river, &[(1, at(0)), (2, at(15))]).await?;
    // An alert that notified no one has no CAP document.
    let quiet = NewAlert::river("kh-wl-0002", 1, at(5)).insert(&api.client).await?;
    let r = api.get(&format!("/api/v1/alerts/{quiet}.cap")).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text());

    // The latest message: the Update, referencing the Alert exactly.
    let latest = api.get_with(&format!("/api/v1/alerts/{id}.cap"), &[("host", "alerts.city.example")]).await;
    assert_eq!(latest.status, StatusCode::OK, "{}", latest.text());
    assert!(latest.content_type().starts_with("application/cap+xml"), "{}", latest.content_type());
    let xml = latest.text();
    assert!(xml.starts_with("<?xml"), "{xml}");
    assert!(xml.contains("urn:oasis:names:tc:emergency:cap:1.2"), "{xml}");
    assert!(xml.contains(&format!("<identifier>{}</identifier>", sent[1].identifier)), "{xml}");
    assert!(xml.contains("<msgType>Update</msgType>"), "{xml}");
    let references = citygauge_alerts::cap::references(&sent[1]);
    assert!(xml.contains(&format!("<references>{references}</references>")), "{xml}");
    assert!(xml.contains("http://alerts.city.example/api/v1/alerts/"), "<web> links the alert: {xml}");
    let first = api.get(&format!("/api/v1/alerts/messages/{}.cap", sent[0].identifier)).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.text());
    assert!(first.text().contains(&format!("<identifier>{}</identifier>", sent[0].identifier)));
    assert!(first.text().contains("<msgType>Alert</msgType>"));
    for bad in ["/api/v1/alerts/messages/x.xml", "/api/v1/alerts/messages/.cap"] {
        assert_eq!(api.get(bad).await.status, StatusCode::BAD_REQUEST, "{bad}");
    }

    // The feed: one entry per active alert that notified, linking its CAP
    // document under the request's host (no --alerts-public-url here).
    let feed = api.get_with("/api/v1/alerts/feed.atom", &[("host", "alerts.city.example")]).await;
    assert_eq!(feed.status, StatusCode::OK, "{}", feed.text());
    assert!(feed.content_type().starts_with("application/atom+xml"), "{}", feed.content_type());
    let atom = feed.text();
    assert!(atom.contains("http://www.w3.org/2005/Atom"), "{atom}");
    assert!(atom.contains(&format!("http://alerts.city.example/api/v1/alerts/{id}.cap")), "{atom}");
    assert_eq!(atom.matches("<entry").count(), 1, "{atom}");
    assert!(!atom.contains(&format!("/api/v1/alerts/{quiet}.cap")), "{atom}");
    api.stop().await;
    Ok(())
}

#[tokio::test]
async fn every_bad_parameter_is_named() -> anyhow::Result<()> {
    let api = start().await?;
    let long = "x".repeat(201);
    let bad = [
        ("state=closed".to_string(), "state"),
        ("rule=lava".into(), "rule"),
        ("rule=water_level,lava".into(), "rule"),
        ("class=hazardous".into(), "class"),
        ("min_severity=awful".into(), "min_severity"),
        ("status=Real".into(), "status"),
        ("since=yesterday".into(), "since"),
        ("until=2026-13-01T00:00:00Z".into(), "until"),
        ("since=2026-07-02T00:00:00Z&until=2026-07-01T00:00:00Z".into(), "until"),
        ("limit=0".into(), "limit"),
        ("limit=501".into(), "limit"),
        ("limit=ten".into(), "limit"),
        ("cursor=abc".into(), "cursor"),
        ("cursor=-1".into(), "cursor"),
        (format!("district={long}"), "district"),
        (format!("sensor={long}"), "sensor"),
    ];
    for (query, name) in bad {
        let r = api.get(&format!("/api/v1/alerts?{query}")).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{query}: {}", r.text());
        let body = r.json();
        assert_eq!(body["code"], "bad_parameter", "{query}");
        assert_eq!(body["parameter"], name, "{query}: {body}");
        assert!(body["message"].as_str().unwrap().starts_with(name), "{query}: {body}");
    }
    api.stop().await;
    Ok(())
}

#[tokio::test]
async fn the_openapi_document_lists_the_alert_routes() -> anyhow::Result<()> {
    let doc = citygauge_query::openapi::document();
    let doc = serde_json::to_value(&doc)?;
    for path in [
        "/api/v1/alerts",
        "/api/v1/alerts/{id}",
        "/api/v1/alerts/{id}.cap",
        "/api/v1/alerts/messages/{identifier}.cap",
        "/api/v1/alerts/feed.atom",
        "/api/v1/alerts/{id}/events",
        "/api/v1/alerts/{id}/acknowledge",
        "/api/v1/alerts/{id}/resolve",
        "/api/v1/alerts/{id}/notes",
        "/api/v1/alerts/silences",
        "/api/v1/alerts/silences/{id}",
        "/api/v1/alerts/rules",
        "/api/v1/alerts/rules/history",
        "/api/v1/alerts/replay",
    ] {
        assert!(doc["paths"].get(path).is_some(), "{path} is not documented");
    }
    assert_eq!(doc["components"]["securitySchemes"]["bearer"]["scheme"], "bearer");
    assert!(doc["paths"]["/api/v1/alerts/{id}/resolve"]["post"]["security"].is_array());
    assert!(doc["components"]["schemas"]["Alert"].is_object());
    Ok(())
}
