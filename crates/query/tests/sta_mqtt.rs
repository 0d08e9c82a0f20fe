//! The SensorThings MQTT extension against a real Mosquitto and PostgreSQL:
//! a committed reading of a public sensor arrives on
//! `v1.1/Datastreams(<id>)/Observations`, `v1.1/Observations` and
//! `v1.1/FeaturesOfInterest(<id>)/Observations` (and `v1.0/...`) as the HTTP
//! API shows that Observation; a non-public sensor's reading is never
//! published on any topic.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::Router;
use chrono::{SubsecRound, Utc};
use citygauge_query::Service;
use citygauge_testkit::city::{self, level};
use citygauge_testkit::{database, query_config, Broker};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::Value;
use tower::ServiceExt;

const ROOT: &str = "http://sta.example.org";
const PUBLIC: &str = "kh-wl-0001";
const PRIVATE: &str = "kh-wl-0002";

type Seen = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

/// A subscriber to `filters`, ready once the broker acknowledged them.
async fn subscriber(port: u16, filters: &[&str]) -> (Seen, tokio::task::JoinHandle<()>) {
    let mut options = MqttOptions::new("sta-client", "127.0.0.1", port);
    options.set_keep_alive(Duration::from_secs(10)).set_clean_session(true);
    let (client, mut events) = AsyncClient::new(options, 16);
    for filter in filters {
        client.subscribe(*filter, QoS::AtLeastOnce).await.unwrap();
    }
    let seen: Seen = Arc::default();
    let (acked_tx, acked_rx) = tokio::sync::oneshot::channel();
    let (mut acked_tx, mut waiting) = (Some(acked_tx), filters.len());
    let record = seen.clone();
    let task = tokio::spawn(async move {
        let _client = client;
        loop {
            match events.poll().await {
                Ok(Event::Incoming(Packet::SubAck(_))) => {
                    waiting -= 1;
                    if waiting == 0 {
                        if let Some(tx) = acked_tx.take() {
                            let _ = tx.send(());
                        }
                    }
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    assert!(!p.retain, "observations are not retained");
                    record.lock().unwrap().push((p.topic.clone(), p.payload.to_vec()));
                }
                Ok(_) => {}
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    });
    tokio::time::timeout(Duration::from_secs(10), acked_rx).await.unwrap().unwrap();
    (seen, task)
}

async fn get(router: &Router, path: &str) -> (StatusCode, String) {
    let request = Request::get(path).header("host", "elsewhere.example").body(Body::empty()).unwrap();
    let response = router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let body = axum::body::to_bytes(response.into_body(), 16 << 20).await.unwrap();
    (status, String::from_utf8_lossy(&body).into_owned())
}

async fn sta_id(client: &tokio_postgres::Client, sensor: &str) -> i64 {
    client.query_one("SELECT sta_id FROM sensors WHERE id = $1", &[&sensor]).await.unwrap().get(0)
}

#[tokio::test]
async fn committed_readings_of_public_sensors_are_published_as_the_http_api_shows_them() {
    let db = database().await.unwrap();
    let broker = Broker::start().await.unwrap();
    let store = city::demo_city(&db.url).await.unwrap();
    let client = db.client().await.unwrap();
    client.execute("UPDATE sensors SET public = false WHERE id = $1", &[&PRIVATE]).await.unwrap();
    let (public_thing, private_thing) = (sta_id(&client, PUBLIC).await, sta_id(&client, PRIVATE).await);
    let (public_ds, private_ds) = (public_thing * 16, private_thing * 16);

    let broker_url = broker.url();
    let extra = ["--sta-mqtt-url", &broker_url, "--opendata-public-url", ROOT, "--alerts-disabled"];
    let service = Service::start(query_config(&db.url, &extra).unwrap()).await.unwrap();
    service.wait_ready(Duration::from_secs(60)).await.unwrap();
    let router = service.router();
    let (seen, task) = subscriber(broker.port(), &["v1.1/#", "v1.0/#"]).await;

    // The private reading first, then the public one as the marker: once the
    // marker arrived, the private one would have too (one publisher, in order).
    let ts = Utc::now().trunc_subsecs(3);
    city::write(&store, vec![level(PRIVATE, ts, 1.25)]).await.unwrap();
    city::write(&store, vec![level(PUBLIC, ts, 2.37)]).await.unwrap();
    let topic = |version: &str, ds: i64| format!("{version}/Datastreams({ds})/Observations");
    let feature = |version: &str, thing: i64| format!("{version}/FeaturesOfInterest({thing})/Observations");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let got = seen.lock().unwrap().iter().filter(|(t, _)| t.starts_with("v1.")).count();
        if got >= 6 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "no observation published: {:?}", seen.lock().unwrap());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let messages = seen.lock().unwrap().clone();
    let topics: Vec<&str> = messages.iter().map(|(t, _)| t.as_str()).collect();
    // Exactly the public reading's six: the private one made none, not even
    // on the shared `Observations` topic.
    assert_eq!(topics.len(), 6, "{topics:?}");
    for version in ["v1.1", "v1.0"] {
        assert!(topics.contains(&topic(version, public_ds).as_str()), "{topics:?}");
        assert!(topics.contains(&feature(version, public_thing).as_str()), "{topics:?}");
        assert!(topics.contains(&format!("{version}/Observations").as_str()), "{topics:?}");
        assert!(!topics.contains(&topic(version, private_ds).as_str()), "a non-public sensor published: {topics:?}");
        assert!(
            !topics.contains(&feature(version, private_thing).as_str()),
            "a non-public sensor published: {topics:?}"
        );
    }

    // Each message is the HTTP API's Observation, links in its version.
    for (topic, payload) in &messages {
        let published: Value = serde_json::from_slice(payload).unwrap();
        let version = &topic[..4];
        let id = published["@iot.id"].as_str().unwrap_or_else(|| panic!("no id: {published}"));
        assert_eq!(id, format!("{public_ds}-{}", ts.timestamp_micros()));
        let (status, body) = get(&router, &format!("/sta/{version}/Observations('{id}')")).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let served: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(published, served, "{topic}");
        assert_eq!(published["result"], serde_json::json!(2.37));
    }

    let (_, metrics) = get(&router, "/metrics").await;
    assert!(metrics.contains("citygauge_query_sta_mqtt_published_total 6"), "{metrics}");
    assert!(metrics.contains("citygauge_query_sta_mqtt_dropped_total 0"), "{metrics}");
    task.abort();
    service.stop().await;
}

#[tokio::test]
async fn an_absent_broker_drops_the_oldest_and_never_holds_up_the_change_stream() {
    let db = database().await.unwrap();
    let store = city::demo_city(&db.url).await.unwrap();
    // A port nobody listens on: every publish waits for a connection.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("mqtt://127.0.0.1:{port}");
    let extra = ["--sta-mqtt-url", &url, "--sta-mqtt-queue-readings", "50", "--alerts-disabled"];
    let service = Service::start(query_config(&db.url, &extra).unwrap()).await.unwrap();
    service.wait_ready(Duration::from_secs(60)).await.unwrap();
    let router = service.router();

    // More messages than the MQTT client holds (6 per reading), in batches.
    let start = Utc::now().trunc_subsecs(3) - chrono::Duration::hours(3);
    let newest = start + chrono::Duration::seconds(1_999);
    for batch in 0..4 {
        let readings = (0..500).map(|k| level(PUBLIC, start + chrono::Duration::seconds(batch * 500 + k), 1.0));
        city::write(&store, readings.collect()).await.unwrap();
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let latest = service.state.cache.read().sensors.get(PUBLIC).and_then(|e| e.latest.as_ref().map(|l| l.ts));
        if latest == Some(newest) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the cache stopped at {latest:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (_, metrics) = get(&router, "/metrics").await;
    let dropped: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("citygauge_query_sta_mqtt_dropped_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("{metrics}"));
    assert!(dropped > 0, "{metrics}");
    tokio::time::timeout(Duration::from_secs(10), service.stop()).await.expect("stops while the broker is absent");
}
