//! Alert messages published to a real Mosquitto: retained while the alert is
//! active, cleared on Cancel, drills on their own topics, marked only once
//! the broker acknowledged, resumed after a restart.

#[path = "webhooks_support/mod.rs"]
mod support;

use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use citygauge_alerts::{MsgStatus, MsgType, Severity};
use citygauge_query::alerting::mqtt;
use citygauge_query::metrics::Metrics;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use support::*;
use tokio_util::sync::CancellationToken;

/// What a subscriber saw: (topic, payload, retain flag).
type Seen = Arc<Mutex<Vec<(String, Vec<u8>, bool)>>>;

async fn subscriber(port: u16, id: &str, filter: &str) -> (Seen, tokio::task::JoinHandle<()>) {
    let mut options = MqttOptions::new(id, "127.0.0.1", port);
    options.set_keep_alive(Duration::from_secs(10)).set_clean_session(true);
    let (client, mut events) = AsyncClient::new(options, 16);
    client.subscribe(filter, QoS::AtLeastOnce).await.unwrap();
    let seen: Seen = Arc::default();
    let (subscribed_tx, subscribed_rx) = tokio::sync::oneshot::channel();
    let mut subscribed_tx = Some(subscribed_tx);
    let record = seen.clone();
    let task = tokio::spawn(async move {
        let _client = client;
        loop {
            match events.poll().await {
                Ok(Event::Incoming(Packet::SubAck(_))) => {
                    if let Some(tx) = subscribed_tx.take() {
                        let _ = tx.send(());
                    }
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    record.lock().unwrap().push((p.topic.clone(), p.payload.to_vec(), p.retain));
                }
                Ok(_) => {}
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    });
    tokio::time::timeout(Duration::from_secs(10), subscribed_rx).await.unwrap().unwrap();
    (seen, task)
}

fn start(db_url: &str, broker_url: &str, metrics: &Metrics) -> (CancellationToken, tokio::task::JoinHandle<()>) {
    let config = alerting(db_url, &["--alerts-mqtt-url", broker_url]);
    let stop = CancellationToken::new();
    let database: citygauge_store::Database = tokio_postgres::Config::from_str(db_url).unwrap().into();
    (stop.clone(), tokio::spawn(mqtt::run(pool(db_url), database, config, metrics.clone(), stop)))
}

#[tokio::test]
async fn alerts_mqtt_retained_while_active_cleared_on_cancel() {
    let db = citygauge_testkit::database().await.unwrap();
    let broker = citygauge_testkit::Broker::start().await.unwrap();
    let mut client = db.client().await.unwrap();
    let (live, live_task) = subscriber(broker.port(), "live", "city/alerts/#").await;
    let metrics = Metrics::new();

    // Stored before the publisher runs: published when it starts (resume).
    let sensor = "kh-wl-0200";
    let (alert_id, raised) = raise(&mut client, sensor, MsgStatus::Actual).await;
    let (stop, task) = start(&db.url, &broker.url(), &metrics);
    let topic = format!("city/alerts/water_level/{sensor}");
    wait_for("the alert on the broker", Duration::from_secs(10), || async {
        Ok(live.lock().unwrap().iter().any(|(t, _, _)| *t == topic).then_some(()))
    })
    .await;
    wait_for("the message to be marked", Duration::from_secs(5), || async {
        Ok((db.count("SELECT count(*) FROM alert_messages WHERE mqtt_published_at IS NOT NULL").await? == 1)
            .then_some(()))
    })
    .await;
    let body: serde_json::Value = serde_json::from_slice(&live.lock().unwrap()[0].1).unwrap();
    assert_eq!(body["idempotency_key"], raised.identifier.as_str());
    assert_eq!(body["msg_type"], "Alert");
    assert_eq!(body["state"]["level"], "orange");

    // A gateway connecting later gets the active alert, retained.
    let (late, late_task) = subscriber(broker.port(), "late", "city/alerts/#").await;
    wait_for("the retained alert", Duration::from_secs(5), || async {
        Ok(late.lock().unwrap().iter().any(|(t, p, retain)| *t == topic && *retain && !p.is_empty()).then_some(()))
    })
    .await;
    late_task.abort();

    // A drill goes to its own topic; Cancel clears the retained alert.
    let (_, drill) = raise(&mut client, "kh-wl-0201", MsgStatus::Exercise).await;
    let mut state = state(sensor, "Sanmin", Severity::Severe);
    state.level = "clear".into();
    let cancel = message(alert_id, 2, MsgType::Cancel, MsgStatus::Actual, sensor, state);
    store(&mut client, &cancel).await;
    wait_for("the cancel and the clearing", Duration::from_secs(10), || async {
        let seen = live.lock().unwrap();
        Ok(seen.iter().any(|(t, p, _)| *t == topic && p.is_empty()).then_some(()))
    })
    .await;
    {
        let seen = live.lock().unwrap();
        let on_topic: Vec<&(String, Vec<u8>, bool)> = seen.iter().filter(|(t, _, _)| *t == topic).collect();
        assert_eq!(on_topic.len(), 3, "alert, cancel, clearing");
        let cancel_body: serde_json::Value = serde_json::from_slice(&on_topic[1].1).unwrap();
        assert_eq!(cancel_body["msg_type"], "Cancel");
        assert_eq!(cancel_body["references"][0]["identifier"], raised.identifier.as_str());
        assert!(on_topic[2].1.is_empty());
        let drill_topic = "city/alerts/exercise/water_level/kh-wl-0201";
        assert!(seen.iter().any(|(t, p, _)| t == drill_topic && !p.is_empty()), "{drill:?}");
    }
    wait_for("every message marked", Duration::from_secs(5), || async {
        Ok((db.count("SELECT count(*) FROM alert_messages WHERE mqtt_published_at IS NULL").await? == 0).then_some(()))
    })
    .await;
    assert_eq!(metrics.mqtt_published.get(), 3, "alert, drill and cancel acknowledged by the broker");

    // Nothing is retained for the cancelled alert any more.
    let (after, after_task) = subscriber(broker.port(), "after", &topic).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(after.lock().unwrap().is_empty(), "{:?}", after.lock().unwrap());
    after_task.abort();

    // A restart publishes only what was not yet acknowledged.
    stop.cancel();
    task.await.unwrap();
    let before = live.lock().unwrap().len();
    let (_, later) = raise(&mut client, "kh-wl-0202", MsgStatus::Actual).await;
    let (stop, task) = start(&db.url, &broker.url(), &metrics);
    wait_for("the new alert", Duration::from_secs(10), || async {
        Ok(live.lock().unwrap().iter().any(|(t, _, _)| t.ends_with("kh-wl-0202")).then_some(()))
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let seen = live.lock().unwrap()[before..].to_vec();
    assert_eq!(seen.len(), 1, "only the new message: {seen:?}");
    let body: serde_json::Value = serde_json::from_slice(&seen[0].1).unwrap();
    assert_eq!(body["idempotency_key"], later.identifier.as_str());
    stop.cancel();
    task.await.unwrap();
    live_task.abort();
}
