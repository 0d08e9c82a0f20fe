//! The other traffic: ordinary river levels at a steady rate, published as
//! `citygauge-bench`'s latency run does (QoS 1, one reading per message,
//! `ts` = the publish time in µs), round-robin over registered gauges, with
//! what it takes to tell whether the publisher kept its schedule.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{SecondsFormat, Utc};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{AsyncClient, Event, Incoming, MqttOptions};
use tokio_util::sync::CancellationToken;

/// The schedule's step: every tick publishes what is owed since the start.
const TICK: Duration = Duration::from_millis(10);

/// What the publisher did.
#[derive(Debug, Clone, Default)]
pub struct TrafficStats {
    pub sent: u64,
    pub acked: u64,
    pub elapsed: Duration,
    /// The most messages the schedule was behind at a tick's start.
    pub max_behind: u64,
    /// Share of the wall time the publishing loop spent handing messages to
    /// the MQTT client (the rest it slept): near 1 means saturated.
    pub busy: f64,
}

impl TrafficStats {
    pub fn sent_per_s(&self) -> f64 {
        self.sent as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    pub fn acked_per_s(&self) -> f64 {
        self.acked as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

#[derive(Debug)]
pub struct Traffic {
    stop: CancellationToken,
    task: tokio::task::JoinHandle<anyhow::Result<TrafficStats>>,
    acked: Arc<AtomicU64>,
    sent: Arc<AtomicU64>,
    client: AsyncClient,
}

impl Traffic {
    /// Starts publishing `rate` messages/s over `gauges` to the broker on `port`.
    pub fn start(port: u16, gauges: Vec<String>, rate: f64) -> Traffic {
        let mut options = MqttOptions::new("bench-alerts-traffic", "127.0.0.1", port);
        options.set_outgoing_inflight_upper_limit(1000).set_keep_alive(Duration::from_secs(30));
        let (client, mut events) = AsyncClient::new(options, 10_000);
        let acked = Arc::new(AtomicU64::new(0));
        let counter = acked.clone();
        tokio::spawn(async move {
            loop {
                match events.poll().await {
                    Ok(Event::Incoming(Incoming::PubAck(_))) => {
                        counter.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        });
        let stop = CancellationToken::new();
        let sent = Arc::new(AtomicU64::new(0));
        let task = tokio::spawn(publish(client.clone(), gauges, rate, stop.clone(), sent.clone()));
        Traffic { stop, task, acked, sent, client }
    }

    /// Messages handed to the MQTT client and acknowledged by the broker so far.
    pub fn counts(&self) -> (u64, u64) {
        (self.sent.load(Ordering::Relaxed), self.acked.load(Ordering::Relaxed))
    }

    pub async fn stop(self) -> anyhow::Result<TrafficStats> {
        self.stop.cancel();
        let mut stats = self.task.await??;
        // The last acknowledgements, briefly.
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.acked.load(Ordering::Relaxed) < stats.sent && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        stats.acked = self.acked.load(Ordering::Relaxed);
        let _ = self.client.disconnect().await;
        Ok(stats)
    }
}

async fn publish(
    client: AsyncClient,
    gauges: Vec<String>,
    rate: f64,
    stop: CancellationToken,
    counter: Arc<AtomicU64>,
) -> anyhow::Result<TrafficStats> {
    let topics: Vec<String> = gauges.iter().map(|g| format!("city/water_level/{g}")).collect();
    let mut last_ts = vec![0i64; gauges.len()];
    let (mut sent, mut max_behind, mut busy) = (0u64, 0u64, Duration::ZERO);
    let started = Instant::now();
    let mut ticks = tokio::time::interval(TICK);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    while !stop.is_cancelled() {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = stop.cancelled() => break,
        }
        let work = Instant::now();
        let owed = (rate * started.elapsed().as_secs_f64()) as u64;
        max_behind = max_behind.max(owed.saturating_sub(sent + (rate * TICK.as_secs_f64()) as u64));
        while sent < owed {
            let i = sent as usize % gauges.len();
            // Microsecond publish time, strictly increasing per gauge.
            let micros = Utc::now().timestamp_micros().max(last_ts[i] + 1);
            last_ts[i] = micros;
            let ts = chrono::DateTime::from_timestamp_micros(micros)
                .unwrap_or_default()
                .to_rfc3339_opts(SecondsFormat::Micros, true);
            // Ordinary levels, well below the warning levels, never flat.
            let level = 1.0 + 0.01 * ((sent / gauges.len() as u64) % 10) as f64;
            let payload = format!(r#"{{"ts":"{ts}","level_m":{level:.2}}}"#);
            client.publish(topics[i].as_str(), QoS::AtLeastOnce, false, payload).await?;
            sent += 1;
            counter.store(sent, Ordering::Relaxed);
        }
        busy += work.elapsed();
    }
    let elapsed = started.elapsed();
    Ok(TrafficStats { sent, acked: 0, elapsed, max_behind, busy: busy.as_secs_f64() / elapsed.as_secs_f64() })
}
