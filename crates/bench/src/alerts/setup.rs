//! The run's city and subscriber: river gauges with warning levels in the
//! registry, an admin token, and the webhook subscription made through the
//! API as a city's integrator would.

use std::net::SocketAddr;

use anyhow::{bail, Context};
use bytes::Bytes;
use citygauge_domain::registry::file::SensorRecord;
use citygauge_domain::registry::SensorStatus;
use citygauge_domain::Kind;
use citygauge_store::{Store, StoreConfig};
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;
use serde_json::{json, Map, Value};

/// Where the gauges are: around central Kaohsiung.
const LON: f64 = 120.30;
const LAT: f64 = 22.63;
const DISTRICTS: [&str; 6] = ["Lingya", "Sanmin", "Xinxing", "Qianjin", "Gushan", "Zuoying"];

/// The other traffic's gauges and the measured ones.
pub fn traffic_gauges(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("bg-wl-{i:05}")).collect()
}

pub fn measured_gauges(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("al-wl-{i:05}")).collect()
}

/// River gauges with the three warning levels (2.0 / 2.6 / 3.1 m) and a
/// ten-minute cadence, spread over ~6 km, registered through the import
/// path operators use.
pub async fn register(url: &str, gauges: &[String]) -> anyhow::Result<()> {
    let records: Vec<SensorRecord> = gauges
        .iter()
        .enumerate()
        .map(|(i, id)| {
            let (dx, dy) = ((i % 60) as f64, (i / 60 % 60) as f64);
            let object = |v: Value| match v {
                Value::Object(map) => map,
                _ => Map::new(),
            };
            SensorRecord {
                id: id.clone(),
                kind: Kind::WaterLevel,
                subkind: Some("river".into()),
                name: Some(format!("Bench gauge {id}")),
                district: Some(DISTRICTS[i % DISTRICTS.len()].into()),
                location: Some((LON + dx * 0.001, LAT + dy * 0.001)),
                status: SensorStatus::Active,
                dev_eui: None,
                device_profile: None,
                installation: object(json!({"cadence_s": 600})),
                thresholds: object(json!({"warning_3_m": 2.0, "warning_2_m": 2.6, "warning_1_m": 3.1})),
                public: true,
            }
        })
        .collect();
    let store = Store::new(StoreConfig::new(url))?;
    store.import_sensors(&records).await?;
    Ok(())
}

/// An admin bearer token, stored as its SHA-256 as the service expects.
pub async fn admin_token(db: &tokio_postgres::Client) -> anyhow::Result<String> {
    let token = format!("bench-admin-{}-{}", std::process::id(), chrono::Utc::now().timestamp_micros());
    db.execute(
        "INSERT INTO operator_tokens (name, role, token_sha256) VALUES ('bench', 'admin', sha256(convert_to($1, 'UTF8')))",
        &[&token],
    )
    .await?;
    Ok(token)
}

/// `POST /api/v1/alerts/subscriptions`: water-level alerts within 20 km of
/// the city centre to `hook_url`; returns (id, signing secret).
pub async fn subscribe(addr: SocketAddr, token: &str, hook_url: &str) -> anyhow::Result<(i64, String)> {
    let body = json!({
        "name": "bench subscriber",
        "url": hook_url,
        "center": {"lon": LON, "lat": LAT},
        "radius_m": 20_000.0,
        "rules": ["water_level"],
        "min_severity": "Minor",
    });
    let (status, answer) = post(addr, "/api/v1/alerts/subscriptions", token, &body).await?;
    if !(200..300).contains(&status) {
        bail!("POST /api/v1/alerts/subscriptions: {status} {answer}");
    }
    let id = answer["id"].as_i64().context("no id in the subscription")?;
    let secret = answer["secret"].as_str().context("no secret in the subscription")?.to_string();
    Ok((id, secret))
}

async fn post(addr: SocketAddr, path: &str, token: &str, body: &Value) -> anyhow::Result<(u16, Value)> {
    let stream = tokio::net::TcpStream::connect(addr).await?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    let request = Request::post(path)
        .header("host", addr.to_string())
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {token}"))
        .body(Full::new(Bytes::from(body.to_string())))?;
    let response = sender.send_request(request).await?;
    let status = response.status().as_u16();
    let bytes = response.into_body().collect().await?.to_bytes();
    Ok((status, serde_json::from_slice(&bytes).unwrap_or(Value::String(String::from_utf8_lossy(&bytes).into()))))
}
