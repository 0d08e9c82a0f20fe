//! What the notifier tests share: a real HTTP receiver on port 0, alerts and
//! messages written straight into the outbox (as the evaluator's writer
//! does), and the workers' configuration.

#![allow(dead_code)]

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use chrono::{FixedOffset, TimeZone, Utc};
use citygauge_alerts::model::{Certainty, Urgency};
use citygauge_alerts::{AlertKey, AlertState, Area, Change, Message, MessageRef, MsgStatus, MsgType, RuleId, Severity};
use citygauge_query::alerting::{webhooks, AlertingConfig};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio_postgres::NoTls;

/// Where the test city's alerts are (Kaohsiung).
pub const LON: f64 = 120.30;
pub const LAT: f64 = 22.63;
/// Degrees of latitude per metre.
pub const DEG_PER_M: f64 = 1.0 / 111_000.0;

/// One request the receiver got.
#[derive(Debug, Clone)]
pub struct Received {
    pub hook: String,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub at: std::time::Instant,
}

impl Received {
    pub fn header(&self, name: &str) -> String {
        self.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_string()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("the body is JSON")
    }
}

#[derive(Debug, Default)]
struct Inner {
    received: Vec<Received>,
    /// Statuses to answer per hook, in order; then 200.
    script: HashMap<String, VecDeque<u16>>,
    /// Hooks that always answer this.
    always: HashMap<String, u16>,
}

/// An HTTP receiver: `POST /hook/{name}` is recorded and answered as scripted.
#[derive(Debug, Clone)]
pub struct Receiver {
    pub addr: SocketAddr,
    inner: Arc<Mutex<Inner>>,
}

async fn receive(
    State(inner): State<Arc<Mutex<Inner>>>,
    Path(hook): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let mut inner = inner.lock().unwrap();
    inner.received.push(Received { hook: hook.clone(), headers, body, at: std::time::Instant::now() });
    let status = match inner.always.get(&hook) {
        Some(status) => *status,
        None => inner.script.get_mut(&hook).and_then(VecDeque::pop_front).unwrap_or(200),
    };
    StatusCode::from_u16(status).unwrap()
}

impl Receiver {
    pub async fn start() -> Receiver {
        let inner = Arc::new(Mutex::new(Inner::default()));
        let app = Router::new().route("/hook/{name}", post(receive)).with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Receiver { addr, inner }
    }

    pub fn url(&self, hook: &str) -> String {
        format!("http://{}/hook/{hook}", self.addr)
    }

    pub fn script(&self, hook: &str, statuses: &[u16]) {
        self.inner.lock().unwrap().script.insert(hook.to_string(), statuses.iter().copied().collect());
    }

    pub fn always(&self, hook: &str, status: Option<u16>) {
        let mut inner = self.inner.lock().unwrap();
        match status {
            Some(status) => inner.always.insert(hook.to_string(), status),
            None => inner.always.remove(hook),
        };
    }

    pub fn received(&self, hook: &str) -> Vec<Received> {
        self.inner.lock().unwrap().received.iter().filter(|r| r.hook == hook).cloned().collect()
    }

    pub fn all(&self) -> Vec<Received> {
        self.inner.lock().unwrap().received.clone()
    }
}

pub fn pool(url: &str) -> Pool {
    let config = tokio_postgres::Config::from_str(url).unwrap();
    let manager = Manager::from_config(config, NoTls, ManagerConfig { recycling_method: RecyclingMethod::Fast });
    Pool::builder(manager).max_size(8).runtime(deadpool_postgres::Runtime::Tokio1).build().unwrap()
}

/// The alerting options for tests: quick retries; `extra` are `--flag value` pairs.
pub fn alerting(database_url: &str, extra: &[&str]) -> Arc<AlertingConfig> {
    let mut args =
        vec!["--webhook-backoff-base-ms", "20", "--webhook-backoff-max-ms", "200", "--webhook-timeout-ms", "2000"];
    args.extend_from_slice(extra);
    Arc::new(citygauge_testkit::query_config(database_url, &args).unwrap().alerting)
}

/// A subscription straight into the table (the API has its own test);
/// returns its id and secret.
pub struct Sub<'a> {
    pub name: &'a str,
    pub url: String,
    pub center: Option<(f64, f64)>,
    pub radius_m: f64,
    pub districts: Vec<&'a str>,
    pub rules: Vec<&'a str>,
    pub classes: Vec<&'a str>,
    pub min_severity: &'a str,
    pub accept_test: bool,
    pub accept_exercise: bool,
}

impl<'a> Sub<'a> {
    pub fn new(name: &'a str, url: String) -> Sub<'a> {
        Sub {
            name,
            url,
            center: None,
            radius_m: 500.0,
            districts: vec![],
            rules: vec![],
            classes: vec!["hazard"],
            min_severity: "Minor",
            accept_test: false,
            accept_exercise: false,
        }
    }

    pub async fn insert(&self, client: &tokio_postgres::Client) -> (i64, String) {
        let secret = format!("secret-of-{}", self.name);
        let row = client
            .query_one(
                "INSERT INTO webhook_subscriptions (name, url, secret, center, radius_m, districts, rules, classes,
                     min_severity, accept_test, accept_exercise)
                 VALUES ($1, $2, $3, CASE WHEN $4::float8 IS NULL THEN NULL
                         ELSE ST_SetSRID(ST_MakePoint($4, $5::float8), 4326)::geography END,
                         $6, $7, $8, $9, $10, $11, $12) RETURNING id",
                &[
                    &self.name,
                    &self.url,
                    &secret,
                    &self.center.map(|c| c.0),
                    &self.center.map(|c| c.1),
                    &self.radius_m,
                    &self.districts,
                    &self.rules,
                    &self.classes,
                    &self.min_severity,
                    &self.accept_test,
                    &self.accept_exercise,
                ],
            )
            .await
            .unwrap();
        (row.get(0), secret)
    }
}

/// An alert about `sensor` in `district`: a 100 m circle around (LON, LAT).
pub fn state(sensor: &str, district: &str, severity: Severity) -> AlertState {
    AlertState {
        grade: 2,
        level: "orange".into(),
        severity,
        urgency: Urgency::Expected,
        certainty: Certainty::Observed,
        headline_en: format!("River at level 2 at {sensor}"),
        headline_zh: "河川水位二級警戒".into(),
        description_en: "The river is at warning level 2.".into(),
        description_zh: "河川水位達二級警戒。".into(),
        instruction_en: "Prepare to evacuate.".into(),
        instruction_zh: "請準備撤離。".into(),
        sensor_id: Some(sensor.into()),
        district: Some(district.into()),
        area: Some(Area::Circle { lon: LON, lat: LAT, radius_m: 100.0 }),
        value: Some(4.2),
        unit: Some("m".into()),
        lead_time_s: None,
        evidence: vec![],
        details: Default::default(),
    }
}

/// The open alert the messages are about.
pub async fn alert(client: &tokio_postgres::Client, sensor: &str, state: &AlertState, status: MsgStatus) -> i64 {
    let row = client
        .query_one(
            "INSERT INTO alerts (rule, subject, class, state, status, grade, level, severity, sensor_id, district,
                                 area, details, raised_at, updated_at, peak_grade)
             VALUES ('water_level', $1, 'hazard', 'open', $2, $3, $4, $5, $1, $6,
                     ST_Buffer(ST_SetSRID(ST_MakePoint($7, $8), 4326)::geography, 100)::geography,
                     $9, now(), now(), $3) RETURNING id",
            &[
                &sensor,
                &status.as_str(),
                &i16::from(state.grade),
                &state.level,
                &state.severity.as_str(),
                &state.district,
                &LON,
                &LAT,
                &serde_json::to_value(state).unwrap(),
            ],
        )
        .await
        .unwrap();
    row.get(0)
}

/// Message `n` of an alert, as the evaluator would build it.
pub fn message(
    alert_id: i64,
    n: usize,
    msg_type: MsgType,
    status: MsgStatus,
    sensor: &str,
    state: AlertState,
) -> Message {
    let tz = FixedOffset::east_opt(8 * 3600).unwrap();
    let sent = tz.from_utc_datetime(&Utc::now().naive_utc());
    let references = (1..n)
        .map(|k| MessageRef { sender: "citygauge".into(), identifier: format!("citygauge:{alert_id}:{k}"), sent })
        .collect();
    let change = match msg_type {
        MsgType::Alert => Change::Raised,
        MsgType::Update => Change::Escalated,
        MsgType::Cancel => Change::Resolved,
    };
    Message {
        alert_id,
        identifier: format!("citygauge:{alert_id}:{n}"),
        sender: "citygauge".into(),
        sender_name: "citygauge test city".into(),
        sent,
        status,
        msg_type,
        references,
        key: AlertKey { rule: RuleId::WaterLevel, subject: sensor.into() },
        change,
        state,
    }
}

/// Stores a message and its deliveries in one transaction, as the writer
/// does; returns the message id and how many deliveries it owes.
pub async fn store(client: &mut tokio_postgres::Client, message: &Message) -> (i64, u64) {
    let tx = client.transaction().await.unwrap();
    let row = tx
        .query_one(
            "INSERT INTO alert_messages (alert_id, identifier, sent, msg_type, status, body)
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
            &[
                &message.alert_id,
                &message.identifier,
                &message.sent.with_timezone(&Utc),
                &message.msg_type.as_str(),
                &message.status.as_str(),
                &serde_json::to_value(message).unwrap(),
            ],
        )
        .await
        .unwrap();
    let id: i64 = row.get(0);
    let owed = webhooks::enqueue_deliveries(&tx, id, message).await.unwrap();
    tx.commit().await.unwrap();
    (id, owed)
}

/// An alert with its first message, stored; returns (alert id, message).
pub async fn raise(client: &mut tokio_postgres::Client, sensor: &str, status: MsgStatus) -> (i64, Message) {
    let state = state(sensor, "Sanmin", Severity::Severe);
    let alert_id = alert(client, sensor, &state, status).await;
    let message = message(alert_id, 1, MsgType::Alert, status, sensor, state);
    store(client, &message).await;
    (alert_id, message)
}

pub async fn wait_for<F, Fut>(what: &str, timeout: Duration, check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Option<()>>>,
{
    citygauge_testkit::eventually(what, timeout, check).await.unwrap();
}
