//! The measured path: gauges made to cross their first warning level one
//! after another, and a separate connection that `LISTEN`s on
//! `citygauge_alerts` and notes when each alert's notification arrived (it
//! is sent at the commit of the transaction that stored the alert).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, SecondsFormat, Utc};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{AsyncClient, MqttOptions};
use tokio_postgres::{AsyncMessage, NoTls};

/// A raised alert as its notification told it.
#[derive(Debug, Clone)]
pub struct Raised {
    pub alert_id: i64,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Default)]
struct Heard {
    /// Water-level alerts raised, by subject: the first notification.
    raised: HashMap<String, Raised>,
    /// Every notification by `rule event` (what else the engine did).
    events: BTreeMap<String, u64>,
}

#[derive(Debug, Clone)]
pub struct Listener {
    heard: Arc<Mutex<Heard>>,
}

impl Listener {
    /// Listens from now on; returns once `LISTEN` is in force.
    pub async fn start(url: &str) -> anyhow::Result<Listener> {
        let (client, mut connection) = tokio_postgres::connect(url, NoTls).await?;
        let heard = Arc::new(Mutex::new(Heard::default()));
        let into = heard.clone();
        tokio::spawn(async move {
            while let Some(message) = std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                let Ok(AsyncMessage::Notification(n)) = message else { continue };
                let at = Utc::now();
                let payload: serde_json::Value = serde_json::from_str(n.payload()).unwrap_or_default();
                let text = |key: &str| payload[key].as_str().unwrap_or_default().to_string();
                let mut heard = into.lock().unwrap_or_else(|e| e.into_inner());
                *heard.events.entry(format!("{} {}", text("rule"), text("event"))).or_default() += 1;
                if text("rule") == "water_level" && text("event") == "raised" {
                    let alert_id = payload["alert_id"].as_i64().unwrap_or_default();
                    heard.raised.entry(text("subject")).or_insert(Raised { alert_id, at });
                }
            }
        });
        client.batch_execute("LISTEN citygauge_alerts").await?;
        // The connection task owns the socket; the client must live as long.
        tokio::spawn(async move {
            let _client = client;
            std::future::pending::<()>().await
        });
        Ok(Listener { heard })
    }

    pub fn raised(&self) -> HashMap<String, Raised> {
        self.heard.lock().unwrap_or_else(|e| e.into_inner()).raised.clone()
    }

    pub fn events(&self) -> BTreeMap<String, u64> {
        self.heard.lock().unwrap_or_else(|e| e.into_inner()).events.clone()
    }
}

/// Levels of the measured gauges: below, then over their first warning
/// level (2.0 m). A rise of 0.5 m between readings a minute or more apart
/// is well inside ingest's spike test (1 m a minute).
pub const BASELINE_M: f64 = 1.5;
pub const OVER_M: [f64; 2] = [2.3, 2.35];

/// Publishes to the measured gauges on their own connection.
#[derive(Debug)]
pub struct Triggers {
    client: AsyncClient,
}

impl Triggers {
    pub fn connect(port: u16) -> Triggers {
        let mut options = MqttOptions::new("bench-alerts-triggers", "127.0.0.1", port);
        options.set_keep_alive(Duration::from_secs(30));
        let (client, mut events) = AsyncClient::new(options, 1_000);
        tokio::spawn(async move {
            loop {
                if events.poll().await.is_err() {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        });
        Triggers { client }
    }

    /// Publishes one reading stamped with the publish time (µs); returns it.
    pub async fn publish(&self, gauge: &str, level_m: f64) -> anyhow::Result<DateTime<Utc>> {
        let micros = Utc::now().timestamp_micros();
        let ts = DateTime::from_timestamp_micros(micros).context("clock")?;
        let payload = format!(r#"{{"ts":"{}","level_m":{level_m}}}"#, ts.to_rfc3339_opts(SecondsFormat::Micros, true));
        self.client.publish(format!("city/water_level/{gauge}"), QoS::AtLeastOnce, false, payload).await?;
        Ok(ts)
    }

    /// One alert: a first reading over the level, then, `gap` later, the
    /// second one, which completes the confirmation (`raise_readings = 2`);
    /// returns the second's publish time, the start of the measure.
    pub async fn cross(&self, gauge: &str, gap: Duration) -> anyhow::Result<DateTime<Utc>> {
        self.publish(gauge, OVER_M[0]).await?;
        tokio::time::sleep(gap).await;
        self.publish(gauge, OVER_M[1]).await
    }

    pub async fn disconnect(&self) {
        let _ = self.client.disconnect().await;
    }
}
