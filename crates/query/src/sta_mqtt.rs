//! The SensorThings MQTT extension, read part (`--sta-mqtt-url`): every
//! committed reading of an open-data sensor (public and active, the rule of
//! [`crate::open_data`]) is published on the broker as the Observations it
//! makes, one per column with a value, in the JSON of the HTTP API
//! ([`crate::sta_api::observations_of_reading`]), on the three reading
//! topics of the specification that new Observations change ([`topics`]):
//! `<version>/Datastreams(<id>)/Observations`, `<version>/Observations` and
//! `<version>/FeaturesOfInterest(<id>)/Observations`, for `v1.1` and `v1.0`
//! (links in each naming its version). Nothing else here changes by itself
//! between registry edits, so entity and property topics (`Things(<id>)`,
//! `Datastreams(<id>)/name`) get nothing, and topics with query options
//! (`...?$select=result`) are not served.
//!
//! - Cost: each Observation is 3 topics x 2 versions = 6 messages of the
//!   same ~0.5 kB body (the body is encoded once per version and shared).
//!   QoS 0 to a broker with no subscriber on a topic costs it one topic-tree
//!   lookup and nothing queued; a subscriber to `v1.1/#` receives each
//!   Observation three times. A city of 10,000 sensors reading once a
//!   minute with ~3 columns each makes ~3,000 messages/s.
//! - QoS 0, not retained, as FROST publishes these topics: a subscriber gets
//!   what is committed while it is connected; history is the HTTP API's.
//! - The change stream hands readings to an [`Outbox`], a bounded queue that
//!   drops its oldest when full (`citygauge_query_sta_mqtt_dropped_total`),
//!   so a slow or absent broker never holds up the cache or the SSE stream.
//! - Visibility is decided when a reading is published, from the cache's
//!   registry: a sensor made private or retired stops at once, one not yet
//!   in the registry is not published.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use citygauge_store::changes::ChangedReading;
use prometheus::IntCounter;
use rumqttc::{Event, EventLoop, Packet, QoS};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::cache::Cache;
use crate::metrics::Metrics;
use crate::mqtt_out::{self, BACKOFF_MAX, BACKOFF_START};
use crate::QueryError;

/// The SensorThings versions whose topics are published.
pub const VERSIONS: [&str; 2] = ["v1.1", "v1.0"];

/// Readings taken from the outbox at a time (one cache read lock each).
const BATCH: usize = 256;
/// Publish requests waiting for the connection inside the MQTT client.
const CLIENT_QUEUE: usize = 1_024;

#[derive(Debug, Clone, clap::Args)]
pub struct StaMqttConfig {
    /// Broker to publish new Observations on (`mqtt://host:port`), on the
    /// SensorThings topics `v1.1/Datastreams(<id>)/Observations`,
    /// `v1.1/Observations` and `v1.1/FeaturesOfInterest(<id>)/Observations`
    /// (and `v1.0/...`); unset: the MQTT extension is off.
    #[arg(long, env = "CITYGAUGE_STA_MQTT_URL")]
    pub sta_mqtt_url: Option<String>,
    /// Readings waiting to be published; when the broker falls behind, the
    /// oldest are dropped (counted) rather than slowing the change stream.
    #[arg(long, env = "CITYGAUGE_STA_MQTT_QUEUE_READINGS", default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..=10_000_000))]
    pub sta_mqtt_queue_readings: u32,
}

impl StaMqttConfig {
    /// The broker's host and port, when the extension is on.
    pub fn broker(&self) -> Result<Option<(String, u16)>, QueryError> {
        self.sta_mqtt_url.as_deref().map(|url| mqtt_out::broker_address("sta-mqtt-url", url)).transpose()
    }
}

/// The counters of the publisher.
#[derive(Debug, Clone)]
pub struct StaMqttMetrics {
    /// Observation messages handed to the broker connection (QoS 0: no ack).
    pub published: IntCounter,
    /// Readings dropped from the full outbox.
    pub dropped: IntCounter,
}

impl StaMqttMetrics {
    pub fn new(metrics: &Metrics) -> Result<StaMqttMetrics, QueryError> {
        let counter = |name: &str, help: &str| {
            let counter = IntCounter::new(name, help).map_err(|e| QueryError::Internal(e.to_string()))?;
            metrics.registry.register(Box::new(counter.clone())).map_err(|e| QueryError::Internal(e.to_string()))?;
            Ok::<_, QueryError>(counter)
        };
        Ok(StaMqttMetrics {
            published: counter(
                "citygauge_query_sta_mqtt_published_total",
                "SensorThings Observation messages handed to the broker connection.",
            )?,
            dropped: counter(
                "citygauge_query_sta_mqtt_dropped_total",
                "Committed readings not published because the SensorThings MQTT queue was full.",
            )?,
        })
    }
}

/// Readings between the change stream and the publisher: bounded, the
/// oldest dropped when full, never waited on by the producer.
#[derive(Debug)]
pub struct Outbox {
    queue: Mutex<VecDeque<ChangedReading>>,
    capacity: usize,
    wake: Notify,
    dropped: IntCounter,
}

impl Outbox {
    pub fn new(capacity: usize, dropped: IntCounter) -> Outbox {
        let capacity = capacity.max(1);
        Outbox {
            queue: Mutex::new(VecDeque::with_capacity(capacity.min(4_096))),
            capacity,
            wake: Notify::new(),
            dropped,
        }
    }

    /// Queues committed readings (called by the change stream; never blocks
    /// for longer than a queue operation).
    pub fn push(&self, readings: &[ChangedReading]) {
        if readings.is_empty() {
            return;
        }
        // A batch larger than the whole queue: only its newest fit.
        let skip = readings.len().saturating_sub(self.capacity);
        let mut dropped = skip as u64;
        {
            let mut queue = self.queue.lock().unwrap_or_else(|e| e.into_inner());
            for reading in &readings[skip..] {
                if queue.len() >= self.capacity {
                    queue.pop_front();
                    dropped += 1;
                }
                queue.push_back(reading.clone());
            }
        }
        if dropped > 0 {
            self.dropped.inc_by(dropped);
        }
        self.wake.notify_one();
    }

    /// Up to `max` of the oldest queued readings.
    pub fn take(&self, max: usize) -> Vec<ChangedReading> {
        let mut queue = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        let n = queue.len().min(max);
        queue.drain(..n).collect()
    }

    pub fn len(&self) -> usize {
        self.queue.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The topic of a Datastream's Observations in one version.
pub fn topic(version: &str, datastream: i64) -> String {
    format!("{version}/Datastreams({datastream})/Observations")
}

/// Every topic a new Observation of `datastream` is published on in one
/// version: its Datastream's Observations, the Observations entity set, and
/// its FeatureOfInterest's Observations (the FeatureOfInterest id is the
/// Thing's, see [`crate::sta_api::model`]).
pub fn topics(version: &str, datastream: i64) -> [String; 3] {
    let feature = datastream / crate::sta_api::model::IDS_PER_THING;
    [
        topic(version, datastream),
        format!("{version}/Observations"),
        format!("{version}/FeaturesOfInterest({feature})/Observations"),
    ]
}

/// Every message the readings make, as `(topic, JSON)`: readings of sensors
/// that are not open data (or not in the registry yet) make none. `root` is
/// the service's base URL, without `/sta/<version>`.
pub fn messages(cache: &Cache, root: &str, readings: &[ChangedReading]) -> Vec<(String, Bytes)> {
    // The Thing ids under one read lock; rendering after it.
    let things: Vec<Option<i64>> = {
        let data = cache.read();
        readings
            .iter()
            .map(|r| {
                let meta = &data.sensors.get(&r.sensor_id)?.meta;
                (meta.is_open_data() && meta.kind == r.kind).then_some(meta.sta_id).flatten()
            })
            .collect()
    };
    let mut out = Vec::new();
    for (reading, thing) in readings.iter().zip(things) {
        let Some(sta_id) = thing else { continue };
        for version in VERSIONS {
            let base = format!("{}/sta/{version}", root.trim_end_matches('/'));
            let observations = crate::sta_api::observations_of_reading(
                &base,
                sta_id,
                reading.kind,
                reading.ts,
                &reading.values,
                reading.quality.as_str(),
                &reading.quality_reasons,
            );
            for (datastream, json) in observations {
                // Serialising a JSON map cannot fail. One body, shared by the topics.
                let body = Bytes::from(serde_json::to_vec(&json).unwrap_or_default());
                for topic in topics(version, datastream) {
                    out.push((topic, body.clone()));
                }
            }
        }
    }
    out
}

/// Publishes what reaches `outbox` until `stop`.
pub async fn run(
    outbox: Arc<Outbox>,
    cache: Arc<Cache>,
    (host, port): (String, u16),
    root: String,
    metrics: StaMqttMetrics,
    stop: CancellationToken,
) {
    let (client, events) = mqtt_out::session("citygauge-sta", &host, port, CLIENT_QUEUE);
    // The event loop is driven apart, so a publish waiting for room in the
    // client's queue never keeps the connection from being served.
    let mut driver = tokio::spawn(drive(events));
    info!(%host, port, "sta mqtt: publishing new observations");
    loop {
        let batch = outbox.take(BATCH);
        if batch.is_empty() {
            tokio::select! {
                _ = outbox.wake.notified() => continue,
                _ = stop.cancelled() => break,
            }
        }
        for (topic, body) in messages(&cache, &root, &batch) {
            tokio::select! {
                sent = client.publish_bytes(topic, QoS::AtMostOnce, false, body) => match sent {
                    Ok(()) => metrics.published.inc(),
                    Err(error) => debug!(%error, "sta mqtt: publish refused"),
                },
                _ = stop.cancelled() => break,
            }
        }
        if stop.is_cancelled() {
            break;
        }
    }
    // Give the DISCONNECT a moment to go out; QoS 0 owes nothing more.
    if client.try_disconnect().is_ok() {
        let _ = tokio::time::timeout(std::time::Duration::from_millis(500), &mut driver).await;
    }
    driver.abort();
}

/// Polls the connection, reconnecting with backoff (rumqttc reconnects on
/// the next poll after an error); ends once our DISCONNECT is written.
async fn drive(mut events: EventLoop) {
    let mut backoff = BACKOFF_START;
    let mut connected = false;
    loop {
        match events.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                connected = true;
                backoff = BACKOFF_START;
                debug!("sta mqtt: connected");
            }
            Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect)) => return,
            Ok(_) => {}
            Err(error) => {
                if connected {
                    warn!(%error, "sta mqtt: broker connection lost; reconnecting");
                } else {
                    debug!(%error, "sta mqtt: cannot reach the broker");
                }
                connected = false;
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};
    use citygauge_domain::{Kind, QualityLevel, SensorStatus};
    use serde_json::{json, Map};

    use crate::cache::SensorMeta;

    fn reading(sensor: &str, level: f64) -> ChangedReading {
        let mut values = Map::new();
        values.insert("level_m".into(), json!(level));
        ChangedReading {
            kind: Kind::WaterLevel,
            sensor_id: sensor.into(),
            ts: Utc.with_ymd_and_hms(2026, 11, 30, 8, 0, 0).unwrap(),
            quality: QualityLevel::Good,
            quality_reasons: Vec::new(),
            values,
        }
    }

    #[test]
    fn the_option_is_checked_at_start() {
        let config = |url: &str| StaMqttConfig { sta_mqtt_url: Some(url.into()), sta_mqtt_queue_readings: 10 };
        assert_eq!(config("mqtt://broker:1884").broker().unwrap(), Some(("broker".to_string(), 1884)));
        let error = config("http://broker").broker().unwrap_err().to_string();
        assert!(error.contains("--sta-mqtt-url `http://broker`"), "{error}");
        assert!(StaMqttConfig { sta_mqtt_url: None, sta_mqtt_queue_readings: 10 }.broker().unwrap().is_none());
    }

    #[test]
    fn a_full_outbox_drops_its_oldest_and_counts_them() {
        let dropped = IntCounter::new("d", "d").unwrap();
        let outbox = Outbox::new(3, dropped.clone());
        outbox.push(&[reading("a", 1.0), reading("b", 2.0)]);
        outbox.push(&[reading("c", 3.0), reading("d", 4.0)]);
        assert_eq!(dropped.get(), 1);
        let left: Vec<String> = outbox.take(10).into_iter().map(|r| r.sensor_id).collect();
        assert_eq!(left, ["b", "c", "d"]);
        // A batch larger than the queue keeps its newest.
        outbox.push(&(0..5).map(|k| reading(&format!("s{k}"), 0.0)).collect::<Vec<_>>());
        assert_eq!(dropped.get(), 3);
        let left: Vec<String> = outbox.take(2).into_iter().map(|r| r.sensor_id).collect();
        assert_eq!(left, ["s2", "s3"]);
        assert_eq!(outbox.len(), 1);
    }

    #[test]
    fn only_public_active_registered_sensors_make_messages() {
        let cache = Cache::new(chrono_tz::Asia::Taipei, 3.0, 1.0);
        let meta = |id: &str, public: bool, status: SensorStatus, sta_id: i64| SensorMeta {
            status,
            public,
            sta_id: Some(sta_id),
            ..SensorMeta::placeholder(id, Kind::WaterLevel)
        };
        cache.update(|d| {
            d.set_registry(vec![
                meta("open", true, SensorStatus::Active, 3),
                meta("private", false, SensorStatus::Active, 4),
                meta("retired", true, SensorStatus::Retired, 5),
            ])
        });
        let readings =
            [reading("open", 2.5), reading("private", 1.0), reading("retired", 1.0), reading("unknown", 1.0)];
        let out = messages(&cache, "https://city.example/", &readings);
        let topics: Vec<&str> = out.iter().map(|(t, _)| t.as_str()).collect();
        assert_eq!(
            topics,
            [
                "v1.1/Datastreams(48)/Observations",
                "v1.1/Observations",
                "v1.1/FeaturesOfInterest(3)/Observations",
                "v1.0/Datastreams(48)/Observations",
                "v1.0/Observations",
                "v1.0/FeaturesOfInterest(3)/Observations",
            ]
        );
        for (topic, body) in &out {
            let body: serde_json::Value = serde_json::from_slice(body).unwrap();
            assert_eq!(body["result"], json!(2.5));
            let version = &topic[..4];
            let link = format!("https://city.example/sta/{version}/Observations('48-");
            assert!(body["@iot.selfLink"].as_str().unwrap().starts_with(&link), "{body}");
        }
    }
}
