//! What operators and admins do through the alert API (`Router::oneshot`,
//! real database): tokens (401, 403, revoked), acknowledge / notes / resolve
//! with their 409s and the CAP Cancel an operator's resolve sends,
//! silences, rule changes (validated, recorded, announced), replay requests,
//! `citygauge alerts token`; every change announced on the notify channels.

mod alerts_api_support;

use std::time::Duration;

use alerts_api_support::{at, insert_messages, snapshot_settings, start, Api, NewAlert};
use axum::http::{header, Method, StatusCode};
use chrono::Utc;
use citygauge_alerts::{Message, MsgType, RuleSet};
use citygauge_ingest::config::DatabaseArgs;
use citygauge_query::alerting::auth::{self, TokenCommand};
use futures_util::StreamExt;
use serde_json::{json, Value};
use tokio::sync::mpsc;

/// Notifications on the alert channels: (channel, payload).
async fn listen(url: &str) -> anyhow::Result<(tokio_postgres::Client, mpsc::UnboundedReceiver<(String, Value)>)> {
    let (client, mut connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(Ok(message)) = messages.next().await {
            if let tokio_postgres::AsyncMessage::Notification(n) = message {
                let payload = serde_json::from_str(n.payload()).unwrap_or(Value::Null);
                let _ = tx.send((n.channel().to_string(), payload));
            }
        }
    });
    client.batch_execute("LISTEN citygauge_alerts; LISTEN citygauge_alert_config").await?;
    Ok((client, rx))
}

async fn next(rx: &mut mpsc::UnboundedReceiver<(String, Value)>) -> (String, Value) {
    tokio::time::timeout(Duration::from_secs(5), rx.recv()).await.expect("a notification").expect("listening")
}

fn assert_invalid(r: &alerts_api_support::Response, field: &str, what: &str) {
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{what}: {}", r.text());
    let body = r.json();
    assert_eq!(body["code"], "invalid", "{what}: {body}");
    assert_eq!(body["field"], field, "{what}: {body}");
    assert!(body["message"].as_str().unwrap().starts_with(field), "{what}: {body}");
}

async fn as_admin(api: &Api, method: Method, path: &str, body: Option<Value>) -> alerts_api_support::Response {
    api.call(method, path, Some(&api.admin.clone()), body).await
}

#[tokio::test]
async fn actions_need_a_valid_token_and_rules_need_an_admin() -> anyhow::Result<()> {
    let api = start().await?;
    let id = NewAlert::river("kh-wl-0001", 1, at(0)).insert(&api.client).await?;
    let ack = format!("/api/v1/alerts/{id}/acknowledge");
    for token in [None, Some("not-a-token"), Some("")] {
        let r = api.call(Method::POST, &ack, token, Some(json!({}))).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{token:?}: {}", r.text());
        assert_eq!(r.headers.get(header::WWW_AUTHENTICATE).unwrap(), "Bearer");
        assert_eq!(r.json()["code"], "unauthorized");
    }
    for (method, path) in [
        (Method::POST, format!("/api/v1/alerts/{id}/resolve")),
        (Method::POST, format!("/api/v1/alerts/{id}/notes")),
        (Method::GET, "/api/v1/alerts/silences".into()),
        (Method::POST, "/api/v1/alerts/silences".into()),
        (Method::DELETE, "/api/v1/alerts/silences/1".into()),
        (Method::GET, "/api/v1/alerts/rules".into()),
        (Method::PUT, "/api/v1/alerts/rules".into()),
        (Method::GET, "/api/v1/alerts/rules/history".into()),
        (Method::POST, "/api/v1/alerts/replay".into()),
    ] {
        let r = api.call(method.clone(), &path, None, Some(json!({}))).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{method} {path}: {}", r.text());
    }
    // An operator reads the rules but may not change them.
    let r = api.call(Method::GET, "/api/v1/alerts/rules", Some(&api.operator.clone()), None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let r = api
        .call(Method::PUT, "/api/v1/alerts/rules", Some(&api.operator.clone()), Some(r.json()["rules"].clone()))
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text());
    assert_eq!(r.json()["code"], "forbidden");

    // A revoked token stops working at once.
    assert_eq!(auth::revoke_tokens(&api.client, "ana").await?, 1);
    let r = api.post(&ack, json!({})).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    api.stop().await;
    Ok(())
}

#[tokio::test]
async fn acknowledge_note_resolve_and_the_cancel_subscribers_get() -> anyhow::Result<()> {
    let api = start().await?;
    let (_listener, mut notes) = listen(&api.db.url).await?;
    let river = NewAlert::river("kh-wl-0001", 2, at(0));
    let id = river.insert(&api.client).await?;
    let sent = insert_messages(&api.client, id, &river, &[(1, at(0)), (2, at(15))]).await?;
    let path = |action: &str| format!("/api/v1/alerts/{id}/{action}");

    let r = api.post(&path("acknowledge"), json!({"note": "crew dispatched"})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let acked = r.json();
    assert_eq!((acked["state"].as_str(), acked["acknowledged_by"].as_str()), (Some("acknowledged"), Some("ana")));
    assert_eq!(acked["ack_note"], "crew dispatched");
    let (channel, payload) = next(&mut notes).await;
    assert_eq!(channel, "citygauge_alerts");
    assert_eq!(payload["alert_id"], id);
    assert_eq!(payload["event"], "acknowledged");
    assert_eq!(payload["actor"], "ana");
    assert_eq!((payload["rule"].as_str(), payload["state"].as_str()), (Some("water_level"), Some("acknowledged")));
    assert_eq!((payload["grade"].as_i64(), payload["severity"].as_str()), (Some(2), Some("Severe")));
    snapshot_settings().bind(|| {
        insta::assert_json_snapshot!("alert_acknowledged", acked, {
            ".id" => "[id]", ".acknowledged_at" => "[ts]", ".updated_at" => "[ts]", ".area.coordinates" => "[ring]"
        })
    });

    let r = api.post(&path("acknowledge"), json!({})).await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.text());
    assert!(r.json()["message"].as_str().unwrap().contains("already acknowledged by ana"));

    let r = api.post(&path("notes"), json!({"note": "sandbags placed at the bridge"})).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    assert_eq!((r.json()["kind"].as_str(), r.json()["actor"].as_str()), (Some("note"), Some("ana")));
    assert_eq!(next(&mut notes).await.1["event"], "note");

    assert_invalid(&api.post(&path("resolve"), json!({})).await, "reason", "no reason");
    assert_invalid(&api.post(&path("resolve"), json!({"reason": "  "})).await, "reason", "a blank reason");
    let r = api.post(&path("resolve"), json!({"reason": "gauge confirmed faulty; river normal"})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let resolved = r.json();
    assert_eq!(resolved["state"], "resolved");
    assert_eq!(resolved["resolved_by"], "ana");
    assert_eq!(resolved["resolve_reason"], "gauge confirmed faulty; river normal");
    let (channel, payload) = next(&mut notes).await;
    assert_eq!((channel.as_str(), payload["event"].as_str()), ("citygauge_alerts", Some("resolved")));
    let (channel, payload) = next(&mut notes).await;
    assert_eq!(channel, "citygauge_alert_config");
    assert_eq!(payload["what"], "resolved");
    assert_eq!(payload["alert_id"], id);

    // Resolved is final.
    for (action, body) in [("acknowledge", json!({})), ("resolve", json!({"reason": "again"}))] {
        let r = api.post(&path(action), body).await;
        assert_eq!(r.status, StatusCode::CONFLICT, "{action}: {}", r.text());
        assert_eq!(r.json()["code"], "conflict");
    }
    // Post-incident notes are still welcome.
    assert_eq!(api.post(&path("notes"), json!({"note": "debrief done"})).await.status, StatusCode::CREATED);

    let detail = api.get(&format!("/api/v1/alerts/{id}")).await.json();
    let timeline: Vec<(String, String)> = detail["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["kind"].as_str().unwrap().into(), e["actor"].as_str().unwrap().into()))
        .collect();
    let expected =
        [("raised", "engine"), ("acknowledged", "ana"), ("note", "ana"), ("resolved", "ana"), ("note", "ana")];
    assert_eq!(timeline, expected.map(|(k, a)| (k.to_string(), a.to_string())));

    // Subscribers hear of it: a CAP Cancel referencing every earlier message.
    let row = api
        .client
        .query_one("SELECT msg_type, body FROM alert_messages WHERE alert_id = $1 ORDER BY id DESC LIMIT 1", &[&id])
        .await?;
    assert_eq!(row.get::<_, String>(0), "Cancel");
    let cancel: Message = serde_json::from_value(row.get(1))?;
    assert_eq!(cancel.msg_type, MsgType::Cancel);
    assert_eq!(cancel.identifier, format!("citygauge@city.example.gov.tw:{id}:3"));
    let refs: Vec<&str> = cancel.references.iter().map(|r| r.identifier.as_str()).collect();
    assert_eq!(refs, [sent[0].identifier.as_str(), sent[1].identifier.as_str()]);
    assert_eq!(cancel.references[0].sent, sent[0].sent, "references carry the exact sent times");
    assert_eq!(cancel.sent.offset().local_minus_utc(), 8 * 3600, "the city's offset");
    assert_eq!(cancel.state.details["resolved_by"], "ana");
    assert_eq!(detail["messages"].as_array().unwrap().len(), 3);

    // An alert that never notified anyone is resolved without a message.
    let quiet = NewAlert::river("kh-wl-0002", 1, at(0)).insert(&api.client).await?;
    let r = api.post(&format!("/api/v1/alerts/{quiet}/resolve"), json!({"reason": "test alert"})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let n: i64 =
        api.client.query_one("SELECT count(*) FROM alert_messages WHERE alert_id = $1", &[&quiet]).await?.get(0);
    assert_eq!(n, 0);
    api.stop().await;
    Ok(())
}

#[tokio::test]
async fn bad_action_requests_are_named() -> anyhow::Result<()> {
    let api = start().await?;
    let id = NewAlert::river("kh-wl-0001", 1, at(0)).insert(&api.client).await?;
    let long = "n".repeat(2001);
    let cases = [
        ("notes", json!({}), "note"),
        ("notes", json!({"note": long}), "note"),
        ("notes", json!({"note": 5}), "body"),
        ("notes", json!({"note": "x", "extra": 1}), "extra"),
        ("acknowledge", json!({"note": long}), "note"),
        ("acknowledge", json!({"comment": "x"}), "comment"),
        ("resolve", json!({"reason": long}), "reason"),
    ];
    for (action, body, field) in cases {
        let r = api.post(&format!("/api/v1/alerts/{id}/{action}"), body.clone()).await;
        assert_invalid(&r, field, &format!("{action} {body}"));
    }
    // Not JSON, or not an object.
    let token = api.operator.clone();
    for raw in ["{not json", "[1, 2]", "\"note\""] {
        let request = axum::http::Request::post(format!("/api/v1/alerts/{id}/notes"))
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .body(axum::body::Body::from(raw))?;
        let response = tower::ServiceExt::oneshot(api.router.clone(), request).await?;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{raw}");
    }
    // Unknown and malformed ids.
    let r = api.post("/api/v1/alerts/999999/acknowledge", json!({})).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text());
    let r = api.post("/api/v1/alerts/abc/resolve", json!({"reason": "x"})).await;
    assert_eq!((r.status, r.json()["parameter"].as_str()), (StatusCode::BAD_REQUEST, Some("id")));
    // Nothing changed.
    let alert = api.get(&format!("/api/v1/alerts/{id}")).await.json();
    assert_eq!(alert["state"], "open");
    assert_eq!(alert["events"].as_array().unwrap().len(), 1);
    api.stop().await;
    Ok(())
}

#[tokio::test]
async fn silences_are_bounded_recorded_and_announced() -> anyhow::Result<()> {
    let api = start().await?;
    let (_listener, mut notes) = listen(&api.db.url).await?;
    let id = NewAlert::river("kh-wl-0001", 1, at(0)).insert(&api.client).await?;
    let reason = "gauge maintenance";

    let r = api
        .post(
            "/api/v1/alerts/silences",
            json!({"rule": "water_level", "subject": "kh-wl-0001", "duration_min": 120, "reason": reason}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    let silence = r.json();
    assert_eq!((silence["rule"].as_str(), silence["created_by"].as_str()), (Some("water_level"), Some("ana")));
    let until: chrono::DateTime<Utc> = serde_json::from_value(silence["until"].clone())?;
    assert!((until - Utc::now() - chrono::Duration::minutes(120)).num_seconds().abs() < 60);
    let (channel, payload) = next(&mut notes).await;
    assert_eq!(
        (channel.as_str(), payload["event"].as_str(), payload["alert_id"].as_i64()),
        ("citygauge_alerts", Some("silenced"), Some(id))
    );
    assert_eq!(next(&mut notes).await, ("citygauge_alert_config".to_string(), json!({"what": "silences"})));
    let events = api.get(&format!("/api/v1/alerts/{id}/events")).await.json();
    let last = events.as_array().unwrap().last().unwrap().clone();
    assert_eq!((last["kind"].as_str(), last["note"].as_str()), (Some("silenced"), Some(reason)));
    assert_eq!(last["details"]["silence_id"], silence["id"]);

    // A whole district, every rule, until a given time.
    let until = (Utc::now() + chrono::Duration::days(6)).to_rfc3339();
    let r = api
        .post("/api/v1/alerts/silences", json!({"subject": "district:Sanmin", "until": until, "reason": "drill"}))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    assert_eq!(r.json()["rule"], Value::Null);

    let listed = api.call(Method::GET, "/api/v1/alerts/silences", Some(&api.operator.clone()), None).await;
    assert_eq!(listed.status, StatusCode::OK);
    assert_eq!(listed.json().as_array().unwrap().len(), 2);

    let too_long = (Utc::now() + chrono::Duration::days(8)).to_rfc3339();
    let past = (Utc::now() - chrono::Duration::hours(1)).to_rfc3339();
    let cases = [
        (json!({"subject": "kh-wl-0001", "duration_min": 10081, "reason": reason}), "duration_min"),
        (json!({"subject": "kh-wl-0001", "duration_min": 0, "reason": reason}), "duration_min"),
        (json!({"subject": "kh-wl-0001", "until": too_long, "reason": reason}), "until"),
        (json!({"subject": "kh-wl-0001", "until": past, "reason": reason}), "until"),
        (json!({"subject": "kh-wl-0001", "until": "tomorrow", "reason": reason}), "until"),
        (json!({"subject": "kh-wl-0001", "reason": reason}), "until"),
        (json!({"subject": "kh-wl-0001", "until": until, "duration_min": 5, "reason": reason}), "until"),
        (json!({"subject": "kh-wl-0001", "duration_min": 10}), "reason"),
        (json!({"subject": "no-such-sensor", "duration_min": 10, "reason": reason}), "subject"),
        (json!({"subject": "district:Atlantis", "duration_min": 10, "reason": reason}), "subject"),
        (json!({"duration_min": 10, "reason": reason}), "subject"),
        (json!({"rule": "lava", "subject": "kh-wl-0001", "duration_min": 10, "reason": reason}), "rule"),
    ];
    for (body, field) in cases {
        assert_invalid(&api.post("/api/v1/alerts/silences", body.clone()).await, field, &body.to_string());
    }

    let sid = silence["id"].as_i64().unwrap();
    let cancel = format!("/api/v1/alerts/silences/{sid}");
    let r = api.call(Method::DELETE, &cancel, Some(&api.operator.clone()), None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json()["cancelled_by"], "ana");
    let r = api.call(Method::DELETE, &cancel, Some(&api.operator.clone()), None).await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.text());
    let r = api.call(Method::DELETE, "/api/v1/alerts/silences/999999", Some(&api.operator.clone()), None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let listed = api.call(Method::GET, "/api/v1/alerts/silences", Some(&api.operator.clone()), None).await.json();
    assert_eq!(listed.as_array().unwrap().len(), 1);
    api.stop().await;
    Ok(())
}

#[tokio::test]
async fn rule_changes_are_validated_recorded_and_announced() -> anyhow::Result<()> {
    let api = start().await?;
    let (_listener, mut notes) = listen(&api.db.url).await?;
    let r = api.call(Method::GET, "/api/v1/alerts/rules", Some(&api.operator.clone()), None).await;
    let current = r.json();
    assert_eq!(current["source"], "default");
    assert_eq!(current["rules"], RuleSet::default().to_json());

    let cases = [
        (json!({"water_level": {"bogus": 1}}), "water_level.bogus"),
        (json!({"no_such_section": {}}), "no_such_section"),
        (json!({"sender": ""}), "sender"),
        (json!({"timezone": "Mars/Olympus"}), "timezone"),
        (json!({"timezone": 5}), "timezone"),
        (json!({"overrides": [{"set": {}}]}), "overrides[0]"),
    ];
    for (body, field) in cases {
        let r = as_admin(&api, Method::PUT, "/api/v1/alerts/rules", Some(body.clone())).await;
        assert_invalid(&r, field, &body.to_string());
    }

    let rules = RuleSet { sender_name: "Kaohsiung Water Resources Bureau".into(), ..RuleSet::default() };
    let r = as_admin(&api, Method::PUT, "/api/v1/alerts/rules?note=typhoon%20season", Some(rules.to_json())).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let stored = r.json();
    assert_eq!((stored["source"].as_str(), stored["changed_by"].as_str()), (Some("database"), Some("ben")));
    assert_eq!(stored["note"], "typhoon season");
    let (channel, payload) = next(&mut notes).await;
    assert_eq!((channel.as_str(), payload["what"].as_str()), ("citygauge_alert_config", Some("rules")));

    let current = api.call(Method::GET, "/api/v1/alerts/rules", Some(&api.operator.clone()), None).await.json();
    assert_eq!(current["source"], "database");
    assert_eq!(RuleSet::from_json(current["rules"].clone())?, rules);
    let history = api.call(Method::GET, "/api/v1/alerts/rules/history", Some(&api.operator.clone()), None).await.json();
    assert_eq!(history.as_array().unwrap().len(), 1);
    assert_eq!(history[0]["id"], stored["id"]);
    let r = api.call(Method::GET, "/api/v1/alerts/rules/history?limit=0", Some(&api.operator.clone()), None).await;
    assert_eq!((r.status, r.json()["parameter"].as_str()), (StatusCode::BAD_REQUEST, Some("limit")));
    api.stop().await;
    Ok(())
}

#[tokio::test]
async fn replay_requests_are_checked() -> anyhow::Result<()> {
    let api = start().await?;
    let cases = [
        (json!({}), "from"),
        (json!({"from": "2026-07-01T00:00:00Z"}), "to"),
        (json!({"from": "July", "to": "2026-07-02T00:00:00Z"}), "from"),
        (json!({"from": "2026-07-02T00:00:00Z", "to": "2026-07-01T00:00:00Z"}), "to"),
        (json!({"from": "2026-05-01T00:00:00Z", "to": "2026-07-01T00:00:00Z"}), "to"),
        (
            json!({"from": "2026-07-01T00:00:00Z", "to": "2026-07-02T00:00:00Z", "rules": {"water_level": {"bogus": 1}}}),
            "rules.water_level.bogus",
        ),
    ];
    for (body, field) in cases {
        assert_invalid(&api.post("/api/v1/alerts/replay", body.clone()).await, field, &body.to_string());
    }
    // A quiet past hour: the timeline of what the engine would have done (nothing).
    let (from, to) = (Utc::now() - chrono::Duration::hours(2), Utc::now() - chrono::Duration::hours(1));
    let r = api.post("/api/v1/alerts/replay", json!({"from": from.to_rfc3339(), "to": to.to_rfc3339()})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json()["entries"], json!([]), "{}", r.text());
    api.stop().await;
    Ok(())
}

#[tokio::test]
async fn the_token_command_creates_and_revokes() -> anyhow::Result<()> {
    let api = start().await?;
    let database = DatabaseArgs::new(api.db.url.clone());
    let create =
        |role: &str| TokenCommand::Create { name: "carla".into(), role: role.into(), database: database.clone() };
    let token = auth::run_token_command(create("admin")).await?.trim().to_string();
    assert_eq!(token.len(), 64, "32 random bytes, hex");
    assert!(token.bytes().all(|b| b.is_ascii_hexdigit()));
    let stored: Vec<u8> =
        api.client.query_one("SELECT token_sha256 FROM operator_tokens WHERE name = 'carla'", &[]).await?.get(0);
    assert_eq!(stored, auth::token_hash(&token), "only the hash is stored");
    let r = api.call(Method::GET, "/api/v1/alerts/rules/history", Some(&token), None).await;
    assert_eq!(r.status, StatusCode::OK);

    let err = auth::run_token_command(create("root")).await.unwrap_err().to_string();
    assert!(err.contains("role"), "{err}");
    let out =
        auth::run_token_command(TokenCommand::Revoke { name: "carla".into(), database: database.clone() }).await?;
    assert!(out.contains("revoked 1"), "{out}");
    let r = api.call(Method::GET, "/api/v1/alerts/rules/history", Some(&token), None).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let err = auth::run_token_command(TokenCommand::Revoke { name: "carla".into(), database }).await.unwrap_err();
    assert!(err.to_string().contains("carla"), "{err}");
    api.stop().await;
    Ok(())
}

#[tokio::test]
async fn operator_changes_reach_the_control_rooms_stream() -> anyhow::Result<()> {
    let api = start().await?;
    let id = NewAlert::river("kh-wl-0001", 1, at(0)).insert(&api.client).await?;
    let request = axum::http::Request::get("/api/v1/stream").body(axum::body::Body::empty())?;
    let response = tower::ServiceExt::oneshot(api.router.clone(), request).await?;
    assert_eq!(response.status(), StatusCode::OK);
    let mut frames = response.into_body().into_data_stream();
    let r = api.post(&format!("/api/v1/alerts/{id}/acknowledge"), json!({"note": "seen"})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let mut seen = String::new();
    let found = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(Ok(chunk)) = frames.next().await {
            seen.push_str(&String::from_utf8_lossy(&chunk));
            let alert = seen.split("\n\n").find(|frame| frame.contains("event: alert"));
            if let Some(data) = alert.and_then(|f| f.lines().find_map(|l| l.strip_prefix("data: "))) {
                return serde_json::from_str::<Value>(data).ok();
            }
        }
        None
    })
    .await;
    let alert = found.ok().flatten().unwrap_or_else(|| panic!("no alert event on the stream: {seen}"));
    assert_eq!((alert["alert_id"].as_i64(), alert["event"].as_str()), (Some(id), Some("acknowledged")));
    assert_eq!((alert["actor"].as_str(), alert["state"].as_str()), (Some("ana"), Some("acknowledged")));
    drop(frames);
    api.stop().await;
    Ok(())
}
