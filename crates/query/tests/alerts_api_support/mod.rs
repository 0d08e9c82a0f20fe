//! What the alert API tests share: the service on a fresh database holding
//! the demo city's registry (the evaluator off, so the alerts a test writes
//! in SQL stay as written), tokens, requests through `Router::oneshot`, and
//! alerts and messages written directly.

#![allow(dead_code)]

use std::time::Duration;

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use axum::Router;
use chrono::{DateTime, FixedOffset, TimeZone, Utc};
use citygauge_alerts::model::{Certainty, Urgency};
use citygauge_alerts::{AlertKey, AlertState, Area, Change, Message, MessageRef, MsgStatus, MsgType, RuleId, Severity};
use citygauge_query::alerting::auth;
use citygauge_query::Service;
use citygauge_testkit::{city, database, query_config, TestDatabase};
use serde_json::Value;
use tower::ServiceExt;

pub struct Api {
    pub service: Service,
    pub router: Router,
    pub db: TestDatabase,
    pub client: tokio_postgres::Client,
    /// Bearer tokens: an operator (`ana`) and an admin (`ben`).
    pub operator: String,
    pub admin: String,
}

pub async fn start() -> anyhow::Result<Api> {
    let db = database().await?;
    city::demo_city(&db.url).await?;
    let service = Service::start(query_config(&db.url, &["--alerts-disabled"])?).await?;
    service.wait_ready(Duration::from_secs(60)).await?;
    let router = service.router();
    let client = db.client().await?;
    let operator = auth::create_token(&client, "ana", "operator").await?;
    let admin = auth::create_token(&client, "ben", "admin").await?;
    Ok(Api { service, router, db, client, operator, admin })
}

pub struct Response {
    pub status: StatusCode,
    pub headers: axum::http::HeaderMap,
    pub body: Vec<u8>,
}

impl Response {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.text()))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn content_type(&self) -> &str {
        self.headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("")
    }
}

impl Api {
    pub async fn call(&self, method: Method, path: &str, token: Option<&str>, body: Option<Value>) -> Response {
        self.request(method, path, token, body, &[]).await
    }

    pub async fn request(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> Response {
        let mut request = Request::builder().method(method).uri(path);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(token) = token {
            request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let body = match body {
            Some(value) => {
                request = request.header(header::CONTENT_TYPE, "application/json");
                Body::from(value.to_string())
            }
            None => Body::empty(),
        };
        let response = self.router.clone().oneshot(request.body(body).unwrap()).await.unwrap();
        let (parts, body) = response.into_parts();
        let body = axum::body::to_bytes(body, 64 << 20).await.unwrap().to_vec();
        Response { status: parts.status, headers: parts.headers, body }
    }

    pub async fn get(&self, path: &str) -> Response {
        self.call(Method::GET, path, None, None).await
    }

    pub async fn get_with(&self, path: &str, headers: &[(&str, &str)]) -> Response {
        self.request(Method::GET, path, None, None, headers).await
    }

    /// A POST with the operator's token.
    pub async fn post(&self, path: &str, body: Value) -> Response {
        self.call(Method::POST, path, Some(&self.operator.clone()), Some(body)).await
    }

    pub async fn stop(self) {
        self.service.stop().await;
    }
}

/// 1 July 2026, 10:00 UTC, plus `minutes`.
pub fn at(minutes: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 7, 1, 10, 0, 0).unwrap() + chrono::Duration::minutes(minutes)
}

/// An alert as a test writes it.
#[derive(Debug, Clone)]
pub struct NewAlert {
    pub rule: RuleId,
    pub subject: String,
    pub state: &'static str,
    pub status: MsgStatus,
    pub grade: u8,
    pub level: &'static str,
    pub severity: Severity,
    pub district: Option<&'static str>,
    pub raised_at: DateTime<Utc>,
}

impl NewAlert {
    pub fn river(subject: &str, grade: u8, raised_at: DateTime<Utc>) -> NewAlert {
        let (level, severity) = match grade {
            1 => ("yellow", Severity::Moderate),
            2 => ("orange", Severity::Severe),
            _ => ("red", Severity::Extreme),
        };
        NewAlert {
            rule: RuleId::WaterLevel,
            subject: subject.into(),
            state: "open",
            status: MsgStatus::Actual,
            grade,
            level,
            severity,
            district: Some("Sanmin"),
            raised_at,
        }
    }

    pub fn state(&self) -> AlertState {
        let (event_en, event_zh) = self.rule.event_name();
        let sensor = (!self.subject.starts_with("district:")).then(|| self.subject.clone());
        AlertState {
            grade: self.grade,
            level: self.level.into(),
            severity: self.severity,
            urgency: Urgency::Immediate,
            certainty: Certainty::Observed,
            headline_en: format!("{event_en}: {} at {}", self.level, self.subject),
            headline_zh: format!("{event_zh}：{}", self.subject),
            description_en: "A test alert.".into(),
            description_zh: "測試警戒。".into(),
            instruction_en: String::new(),
            instruction_zh: String::new(),
            sensor_id: sensor,
            district: self.district.map(str::to_string),
            area: Some(Area::Circle { lon: 120.3, lat: 22.64, radius_m: 500.0 }),
            value: Some(2.5),
            unit: Some("m".into()),
            lead_time_s: Some(2400),
            evidence: Vec::new(),
            details: Default::default(),
        }
    }

    /// Writes the alert and its `raised` event; returns its id.
    pub async fn insert(&self, client: &tokio_postgres::Client) -> anyhow::Result<i64> {
        let state = self.state();
        let details = serde_json::to_value(&state)?;
        let resolved = self.state == "resolved";
        let resolved_at = resolved.then(|| self.raised_at + chrono::Duration::hours(2));
        let row = client
            .query_one(
                "INSERT INTO alerts (rule, subject, class, state, status, grade, level, severity, sensor_id, district,
                     area, details, raised_at, updated_at, peak_grade, resolved_at, resolved_by, resolve_reason)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10,
                     ST_Buffer(ST_SetSRID(ST_MakePoint(120.3, 22.64), 4326)::geography, 500)::geography,
                     $11, $12, $12, $6, $13, $14, $15)
                 RETURNING id",
                &[
                    &self.rule.as_str(),
                    &self.subject,
                    &class(self.rule),
                    &self.state,
                    &self.status.as_str(),
                    &(self.grade as i16),
                    &self.level,
                    &self.severity.as_str(),
                    &state.sensor_id,
                    &state.district,
                    &details,
                    &self.raised_at,
                    &resolved_at,
                    &resolved.then_some("engine"),
                    &resolved.then_some("cleared"),
                ],
            )
            .await?;
        let id: i64 = row.get(0);
        client
            .execute(
                "INSERT INTO alert_events (alert_id, at, kind, grade, level, details) VALUES ($1, $2, 'raised', $3, $4, $5)",
                &[&id, &self.raised_at, &(self.grade as i16), &self.level, &details],
            )
            .await?;
        Ok(id)
    }
}

fn class(rule: RuleId) -> &'static str {
    match rule.class() {
        citygauge_alerts::Class::Hazard => "hazard",
        citygauge_alerts::Class::Diagnosis => "diagnosis",
        citygauge_alerts::Class::Maintenance => "maintenance",
    }
}

pub const SENDER: &str = "citygauge@city.example.gov.tw";

fn taipei(t: DateTime<Utc>) -> DateTime<FixedOffset> {
    t.with_timezone(&FixedOffset::east_opt(8 * 3600).unwrap())
}

/// Writes the messages the engine would have sent for `alert` (an Alert,
/// then an Update per later grade), as the engine stores them.
pub async fn insert_messages(
    client: &tokio_postgres::Client,
    id: i64,
    alert: &NewAlert,
    grades: &[(u8, DateTime<Utc>)],
) -> anyhow::Result<Vec<Message>> {
    let mut sent: Vec<Message> = Vec::new();
    for (n, (grade, when)) in grades.iter().enumerate() {
        let mut state = alert.state();
        state.grade = *grade;
        let msg_type = if n == 0 { MsgType::Alert } else { MsgType::Update };
        let message = Message {
            alert_id: id,
            identifier: format!("{SENDER}:{id}:{}", n + 1),
            sender: SENDER.into(),
            sender_name: "City Water Resources Bureau".into(),
            sent: taipei(*when),
            status: alert.status,
            msg_type,
            references: sent
                .iter()
                .map(|m| MessageRef { sender: m.sender.clone(), identifier: m.identifier.clone(), sent: m.sent })
                .collect(),
            key: AlertKey { rule: alert.rule, subject: alert.subject.clone() },
            change: if n == 0 { Change::Raised } else { Change::Escalated },
            state,
        };
        client
            .execute(
                "INSERT INTO alert_messages (alert_id, identifier, sent, msg_type, status, body) VALUES ($1, $2, $3, $4, $5, $6)",
                &[&id, &message.identifier, when, &msg_type.as_str(), &alert.status.as_str(), &serde_json::to_value(&message)?],
            )
            .await?;
        sent.push(message);
    }
    Ok(sent)
}

pub fn snapshot_settings() -> insta::Settings {
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path("snapshots");
    settings.set_prepend_module_to_snapshot(false);
    settings
}
