//! Publish-to-commit latency at a steady rate. Each reading's `ts` is its
//! publish time; PostgreSQL's `track_commit_timestamp` gives each row's commit
//! time; both clocks are this machine's.

use std::time::{Duration, Instant};

use anyhow::bail;
use chrono::{SecondsFormat, Utc};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{AsyncClient, Event, Incoming, MqttOptions};

use crate::setup::{connect, Bench};
use crate::Args;

pub struct Latency {
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub readings: i64,
    pub peak_rss_mb: f64,
}

const SENSORS: usize = 1_000;
const TICK: Duration = Duration::from_millis(10);

pub async fn steady(bench: &Bench, args: &Args) -> anyhow::Result<Latency> {
    let url = bench.database("latency").await?;
    let mut daemon = bench.daemon(&url, "bench-latency", SENSORS as u64, &args.daemon_args)?;
    crate::setup::wait_subscribed(&url, &bench.broker).await?;
    let mut options = MqttOptions::new("bench-latency-publisher", "127.0.0.1", bench.broker.port());
    options.set_outgoing_inflight_upper_limit(1000).set_keep_alive(Duration::from_secs(30));
    let (client, mut events) = AsyncClient::new(options, 10_000);
    let poller = tokio::spawn(async move { while events.poll().await.is_ok() {} });

    let per_tick = args.latency_rate * TICK.as_secs_f64();
    let (mut owed, mut sent, mut last_ts) = (0.0, 0u64, vec![0i64; SENSORS]);
    let started = Instant::now();
    let mut ticks = tokio::time::interval(TICK);
    while started.elapsed() < Duration::from_secs(args.latency_seconds) {
        ticks.tick().await;
        owed += per_tick;
        while owed >= 1.0 {
            let sensor = sent as usize % SENSORS;
            // Microsecond publish time, strictly increasing per sensor.
            let mut micros = Utc::now().timestamp_micros();
            if micros <= last_ts[sensor] {
                micros = last_ts[sensor] + 1;
            }
            last_ts[sensor] = micros;
            let ts = chrono::DateTime::from_timestamp_micros(micros)
                .unwrap_or_default()
                .to_rfc3339_opts(SecondsFormat::Micros, true);
            let payload = format!(r#"{{"ts":"{ts}","level_m":1.5}}"#);
            client.publish(format!("city/water_level/lt-wl-{sensor:04}"), QoS::AtLeastOnce, false, payload).await?;
            sent += 1;
            owed -= 1.0;
        }
    }
    let db = connect(&url).await?;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let n: i64 = db.query_one("SELECT count(*) FROM water_level", &[]).await?.get(0);
        if n as u64 >= sent {
            break;
        }
        if Instant::now() > deadline {
            bail!("only {n} of {sent} latency readings stored");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    poller.abort();
    let row = db
        .query_one(
            "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY ms), percentile_cont(0.99) WITHIN GROUP (ORDER BY ms), max(ms), count(*)
               FROM (SELECT (extract(epoch FROM pg_xact_commit_timestamp(xmin) - ts) * 1000)::float8 AS ms FROM water_level) AS t",
            &[],
        )
        .await?;
    let peak_rss_mb = daemon.peak_rss_mb()?;
    daemon.stop();
    Ok(Latency {
        p50_ms: row.get(0),
        p99_ms: row.get(1),
        max_ms: row.get::<_, f64>(2),
        readings: row.get(3),
        peak_rss_mb,
    })
}

/// Publishes one message at QoS 1 and waits for the broker's PUBACK.
pub async fn publish_once(port: u16, topic: &str, payload: &str) -> anyhow::Result<()> {
    let mut options = MqttOptions::new(format!("bench-probe-{}", std::process::id()), "127.0.0.1", port);
    options.set_keep_alive(Duration::from_secs(5));
    let (client, mut events) = AsyncClient::new(options, 10);
    client.publish(topic, QoS::AtLeastOnce, false, payload.to_string()).await?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(Ok(Event::Incoming(Incoming::PubAck(_)))) =
            tokio::time::timeout(Duration::from_secs(1), events.poll()).await
        {
            let _ = client.disconnect().await;
            return Ok(());
        }
    }
    bail!("no PUBACK for the probe message")
}
