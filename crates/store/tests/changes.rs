//! The change stream against a real PostgreSQL: a LISTEN connection hears
//! exactly the rows a batch inserted, and the registry changes.

use std::future::poll_fn;
use std::time::Duration as StdDuration;

use chrono::{DateTime, Duration, DurationRound, Utc};
use citygauge_domain::registry::file;
use citygauge_domain::{Kind, NewSensor, Quality, Reading, Values};
use citygauge_store::changes::{self, ChangedReading};
use citygauge_store::{Batch, Store, StoreConfig};
use citygauge_testkit::database;
use tokio::sync::mpsc;
use tokio_postgres::{AsyncMessage, NoTls};

fn level(sensor: &str, ts: DateTime<Utc>, level_m: f64) -> Reading {
    Reading { sensor_id: sensor.into(), ts, values: Values::WaterLevel { level_m }, quality: Quality::default() }
}

/// A connection listening on `channels`; notifications arrive as (channel, payload).
async fn listen(
    url: &str,
    channels: &[&str],
) -> anyhow::Result<(tokio_postgres::Client, mpsc::UnboundedReceiver<(String, String)>)> {
    let (client, mut connection) = tokio_postgres::connect(url, NoTls).await?;
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(Ok(message)) = poll_fn(|cx| connection.poll_message(cx)).await {
            if let AsyncMessage::Notification(n) = message {
                let _ = tx.send((n.channel().to_string(), n.payload().to_string()));
            }
        }
    });
    for channel in channels {
        client.batch_execute(&format!("LISTEN {channel}")).await?;
    }
    Ok((client, rx))
}

/// Everything received until a marker notification sent after the writes:
/// notifications from one session arrive in commit order, so nothing is missed.
async fn drain(url: &str, rx: &mut mpsc::UnboundedReceiver<(String, String)>) -> anyhow::Result<Vec<(String, String)>> {
    let marker = citygauge_testkit::TestDatabase { name: String::new(), url: url.to_string() }.client().await?;
    marker.batch_execute("NOTIFY citygauge_test_marker").await?;
    let mut got = Vec::new();
    loop {
        let message = tokio::time::timeout(StdDuration::from_secs(30), rx.recv()).await?;
        match message {
            Some((channel, _)) if channel == "citygauge_test_marker" => return Ok(got),
            Some(message) => got.push(message),
            None => anyhow::bail!("the listening connection ended"),
        }
    }
}

fn readings_in(messages: &[(String, String)]) -> Vec<ChangedReading> {
    messages
        .iter()
        .filter(|(channel, _)| channel == changes::READINGS_CHANNEL)
        .flat_map(|(_, payload)| changes::decode(payload).expect("a valid payload"))
        .collect()
}

#[tokio::test]
async fn listeners_hear_exactly_the_inserted_rows() -> anyhow::Result<()> {
    let db = database().await?;
    let store = Store::new(StoreConfig::new(&db.url))?;
    let (_client, mut rx) = listen(&db.url, &[changes::READINGS_CHANNEL, "citygauge_test_marker"]).await?;
    let t = (Utc::now() - Duration::hours(1)).duration_trunc(Duration::minutes(1))?;

    let first = Batch { readings: vec![level("s1", t, 1.0), level("s2", t, 2.0)], ..Batch::default() };
    store.write(&first).await?;
    let heard = readings_in(&drain(&db.url, &mut rx).await?);
    let keys: Vec<(&str, DateTime<Utc>)> = heard.iter().map(|r| (r.sensor_id.as_str(), r.ts)).collect();
    assert_eq!(keys, [("s1", t), ("s2", t)]);
    assert_eq!(heard[0].kind, Kind::WaterLevel);
    assert_eq!(heard[0].values["level_m"], serde_json::json!(1.0));

    // A redelivery: only the one new row is announced, with its stored value.
    let again = Batch {
        readings: vec![level("s1", t, 9.0), level("s2", t, 9.0), level("s1", t + Duration::minutes(1), 1.5)],
        ..Batch::default()
    };
    let report = store.write(&again).await?;
    assert_eq!((report.stored(), report.duplicates), (1, 2));
    let heard = readings_in(&drain(&db.url, &mut rx).await?);
    assert_eq!(heard.len(), 1, "{heard:?}");
    assert_eq!((heard[0].sensor_id.as_str(), heard[0].ts), ("s1", t + Duration::minutes(1)));

    // The whole batch again: nothing new, nothing announced.
    store.write(&again).await?;
    assert!(readings_in(&drain(&db.url, &mut rx).await?).is_empty());

    // A big batch is split, and every row arrives once.
    let many: Vec<Reading> =
        (0..3_000).map(|i| level(&format!("big-{i:04}"), t + Duration::minutes(2), f64::from(i))).collect();
    store.write(&Batch { readings: many, ..Batch::default() }).await?;
    let messages = drain(&db.url, &mut rx).await?;
    assert!(messages.len() > 1);
    assert!(messages.iter().all(|(_, payload)| payload.len() <= changes::MAX_PAYLOAD_BYTES));
    assert_eq!(readings_in(&messages).len(), 3_000);
    Ok(())
}

#[tokio::test]
async fn registry_changes_are_announced() -> anyhow::Result<()> {
    let db = database().await?;
    let store = Store::new(StoreConfig::new(&db.url))?;
    let (_client, mut rx) = listen(&db.url, &[changes::SENSORS_CHANNEL, "citygauge_test_marker"]).await?;
    let pending = NewSensor { id: "lora-0001".into(), kind: Kind::FloodDepth, dev_eui: None, device_profile: None };
    store.write(&Batch { new_sensors: vec![pending.clone()], ..Batch::default() }).await?;
    // Already registered: nothing changes, nothing is announced.
    store.write(&Batch { new_sensors: vec![pending], ..Batch::default() }).await?;
    let csv = "id,kind,name,lon,lat\nkh-fd-0007,flood_depth,Jiuru Rd underpass,120.33,22.63\n";
    store.import_sensors(&file::parse("sensors.csv", csv.as_bytes())?).await?;
    let heard: Vec<Vec<String>> = drain(&db.url, &mut rx)
        .await?
        .iter()
        .map(|(_, payload)| changes::decode_sensor_ids(payload))
        .collect::<Result<_, _>>()?;
    assert_eq!(heard, [vec!["lora-0001".to_string()], vec!["kh-fd-0007".to_string()]]);
    Ok(())
}
