//! Load-generator mode: synthetic sensors publishing at a paced rate over
//! several connections, with exact accounting of what was published so a
//! benchmark can check "stored exactly once" by counting rows.

mod gen;

use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use chrono::{DateTime, FixedOffset, Utc};
use serde::Serialize;
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::mqtt::{qos_from_u8, BrokerAddr, Publisher, PublisherOptions};
use crate::registry::Kind;
use crate::timefmt::to_taipei;

pub use gen::{kind_code, push_fixed, push_u64, LoadFormat, LoadGenerator, LoadShape, LoadTsFormat};

/// Which kinds of synthetic sensors to create.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "snake_case")]
#[value(rename_all = "snake_case")] // the platform's kind names: water_level, not water-level
pub enum LoadKind {
    /// Round-robin over all five kinds.
    Mixed,
    Rainfall,
    #[value(alias = "water-level")]
    WaterLevel,
    #[value(alias = "flood-depth")]
    FloodDepth,
    #[value(alias = "air-quality")]
    AirQuality,
    Streetlight,
}

impl LoadKind {
    /// Kind of the sensor with global index `i`.
    pub fn kind_of(self, i: u64) -> Kind {
        match self {
            LoadKind::Mixed => Kind::ALL[(i % Kind::ALL.len() as u64) as usize],
            LoadKind::Rainfall => Kind::Rainfall,
            LoadKind::WaterLevel => Kind::WaterLevel,
            LoadKind::FloodDepth => Kind::FloodDepth,
            LoadKind::AirQuality => Kind::AirQuality,
            LoadKind::Streetlight => Kind::Streetlight,
        }
    }
}

/// Options of load mode.
#[derive(Debug, Clone, clap::Args)]
pub struct LoadConfig {
    /// Broker URL (mqtt://host:port, plain TCP).
    #[arg(long, env = "CITYGAUGE_SIM_MQTT_URL", default_value = "mqtt://127.0.0.1:1883")]
    pub mqtt_url: String,

    /// Number of synthetic sensors (ids like ld-wl-000001).
    #[arg(long, env = "CITYGAUGE_SIM_SENSORS", default_value_t = 1000)]
    pub sensors: u64,

    /// Kind of the synthetic sensors.
    #[arg(long, env = "CITYGAUGE_SIM_KIND", value_enum, default_value_t = LoadKind::Mixed)]
    pub kind: LoadKind,

    /// Target publish rate over all connections, messages/s (0 = as fast as possible).
    #[arg(long, visible_alias = "rate", env = "CITYGAUGE_SIM_RATE_MSGS_PER_S", default_value_t = 1000.0)]
    pub rate_msgs_per_s: f64,

    /// Send in bursts (every sensor at once, then a pause) instead of a steady stream.
    #[arg(long, env = "CITYGAUGE_SIM_BURST")]
    pub burst: bool,

    /// Readings per message: canonical arrays of one sensor, or SenML packs.
    #[arg(long, env = "CITYGAUGE_SIM_READINGS_PER_MESSAGE", default_value_t = 1)]
    pub readings_per_message: usize,

    /// Message format.
    #[arg(long, env = "CITYGAUGE_SIM_FORMAT", value_enum, default_value_t = LoadFormat::Canonical)]
    pub format: LoadFormat,

    /// How canonical messages write `ts`.
    #[arg(long, env = "CITYGAUGE_SIM_TS_FORMAT", value_enum, default_value_t = LoadTsFormat::Rfc3339)]
    pub ts_format: LoadTsFormat,

    /// Stop after this many wall-clock seconds (default 10 when --messages isn't given).
    #[arg(long, visible_alias = "duration", env = "CITYGAUGE_SIM_DURATION_S")]
    pub duration_s: Option<f64>,

    /// Stop after this many messages in total.
    #[arg(long, env = "CITYGAUGE_SIM_MESSAGES")]
    pub messages: Option<u64>,

    /// MQTT QoS (0, 1 or 2).
    #[arg(long, env = "CITYGAUGE_SIM_QOS", default_value_t = 1, value_parser = clap::value_parser!(u8).range(0..=2))]
    pub qos: u8,

    /// Parallel MQTT connections (sensors are split between them).
    #[arg(long, env = "CITYGAUGE_SIM_CONNECTIONS", default_value_t = 2)]
    pub connections: usize,

    /// Unacknowledged messages in flight per connection.
    #[arg(long, env = "CITYGAUGE_SIM_INFLIGHT", default_value_t = 256)]
    pub inflight: u16,

    /// Time between one sensor's consecutive readings, ms.
    #[arg(long, env = "CITYGAUGE_SIM_STEP_MS", default_value_t = 1000)]
    pub step_ms: u64,

    /// Timestamp of each sensor's first reading (RFC 3339 or local Asia/Taipei);
    /// default: early enough that the last readings land around now.
    #[arg(long, env = "CITYGAUGE_SIM_START", value_parser = crate::city::parse_start)]
    pub start: Option<DateTime<FixedOffset>>,

    /// Sensor id prefix; change it to keep separate runs' readings apart.
    #[arg(long, env = "CITYGAUGE_SIM_ID_PREFIX", default_value = "ld")]
    pub id_prefix: String,

    /// MQTT client id prefix (the process id and connection number are appended).
    #[arg(long, env = "CITYGAUGE_SIM_CLIENT_ID", default_value = "citygauge-sim-load")]
    pub client_id: String,

    /// How long to wait at the end for outstanding acknowledgements, s.
    #[arg(long, env = "CITYGAUGE_SIM_DRAIN_TIMEOUT_S", default_value_t = 30.0)]
    pub drain_timeout_s: f64,
}

impl Default for LoadConfig {
    fn default() -> Self {
        Self {
            mqtt_url: "mqtt://127.0.0.1:1883".into(),
            sensors: 1000,
            kind: LoadKind::Mixed,
            rate_msgs_per_s: 1000.0,
            burst: false,
            readings_per_message: 1,
            format: LoadFormat::Canonical,
            ts_format: LoadTsFormat::Rfc3339,
            duration_s: None,
            messages: None,
            qos: 1,
            connections: 2,
            inflight: 256,
            step_ms: 1000,
            start: None,
            id_prefix: "ld".into(),
            client_id: "citygauge-sim-load".into(),
            drain_timeout_s: 30.0,
        }
    }
}

/// Summary of a load run; the binary prints it as JSON.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LoadStats {
    pub format: String,
    pub sensors: u64,
    pub connections: usize,
    pub qos: u8,
    pub readings_per_message: usize,
    pub target_msgs_per_s: f64,
    /// Messages handed to the MQTT client.
    pub messages_sent: u64,
    /// Messages acknowledged by the broker (QoS > 0).
    pub messages_acked: u64,
    pub readings_sent: u64,
    /// Readings in acknowledged messages (QoS > 0; equals readings_sent for QoS 0).
    pub readings_acked: u64,
    /// Exact number of distinct (sensor_id, ts) pairs published; equals
    /// readings_sent because every reading has its own timestamp.
    pub distinct_readings: u64,
    /// Sending time, s (excluding the final wait for acknowledgements).
    pub publish_elapsed_s: f64,
    /// Total time including the acknowledgement drain, s.
    pub elapsed_s: f64,
    pub achieved_msgs_per_s: f64,
    pub achieved_readings_per_s: f64,
    /// Acknowledged messages over the whole run.
    pub acked_msgs_per_s: f64,
    pub reconnects: u64,
    /// Messages re-queued after a reconnect found the broker had lost the session.
    pub requeued: u64,
    /// Every message was acknowledged before the end.
    pub complete: bool,
    pub first_ts: String,
    pub last_ts: String,
    pub id_prefix: String,
}

/// Per-connection plan.
struct Lane {
    generator: LoadGenerator,
    quota: u64,
    rate: f64,
}

/// Runs the load generator until its message count or duration is reached,
/// or `shutdown`.
pub async fn run_load(config: LoadConfig, shutdown: CancellationToken) -> Result<LoadStats> {
    let LoadConfig { sensors, connections, readings_per_message: k, .. } = config;
    if sensors == 0 || connections == 0 || k == 0 || config.step_ms == 0 {
        bail!("--sensors, --connections, --readings-per-message and --step-ms must be positive");
    }
    if !(config.rate_msgs_per_s >= 0.0 && config.rate_msgs_per_s.is_finite()) {
        bail!("--rate-msgs-per-s must be >= 0");
    }
    let connections = connections.min(sensors as usize);
    let duration_s = config.duration_s.or(if config.messages.is_none() { Some(10.0) } else { None });
    let addr: BrokerAddr = config.mqtt_url.parse()?;
    let qos = qos_from_u8(config.qos)?;

    // Enough history that the newest readings land around now, so the
    // ingest daemon sees neither future timestamps nor ancient ones.
    let expected_msgs = config.messages.unwrap_or_else(|| {
        let rate = if config.rate_msgs_per_s > 0.0 { config.rate_msgs_per_s } else { 50_000.0 };
        (rate * duration_s.unwrap_or(10.0)) as u64
    });
    let per_sensor = (expected_msgs * k as u64).div_ceil(sensors);
    let t0_ms = match config.start {
        Some(t) => t.timestamp_millis(),
        None => (Utc::now().timestamp_millis() - per_sensor as i64 * config.step_ms as i64) / 1000 * 1000,
    };
    let shape = LoadShape {
        id_prefix: config.id_prefix.clone(),
        per_message: k,
        format: config.format,
        ts_format: config.ts_format,
        t0_ms,
        step_ms: config.step_ms as i64,
    };

    let mut lanes = Vec::with_capacity(connections);
    let mut publishers = Vec::with_capacity(connections);
    for c in 0..connections {
        let ids = (c as u64..sensors).step_by(connections).map(|i| (i, config.kind.kind_of(i)));
        let gateway = format!("{}-gw-{c:03}", config.id_prefix);
        let quota = config
            .messages
            .map_or(u64::MAX, |m| m / connections as u64 + u64::from((c as u64) < m % connections as u64));
        lanes.push(Lane {
            generator: LoadGenerator::new(ids, &gateway, &shape),
            quota,
            rate: config.rate_msgs_per_s / connections as f64,
        });
        let mut opts = PublisherOptions::new(format!("{}-{}-{c}", config.client_id, std::process::id()), qos);
        opts.inflight = config.inflight;
        publishers.push(Publisher::connect(&addr, opts).await?);
    }
    info!(sensors, connections, rate = config.rate_msgs_per_s, ?duration_s, messages = ?config.messages, "load generator starting");

    let start = Instant::now();
    let deadline = duration_s.map(|s| start + Duration::from_secs_f64(s));
    let tasks: Vec<_> = lanes
        .into_iter()
        .zip(publishers)
        .map(|(lane, publisher)| tokio::spawn(drive_lane(lane, publisher, config.burst, deadline, shutdown.clone())))
        .collect();
    let mut results = Vec::with_capacity(tasks.len());
    for t in tasks {
        results.push(t.await??);
    }
    let publish_elapsed_s = results.iter().map(|r| r.2).fold(0.0, f64::max).max(1e-9);
    let drain = Duration::from_secs_f64(config.drain_timeout_s);
    let mut stats = LoadStats {
        format: format!("{:?}", config.format).to_lowercase(),
        sensors,
        connections,
        qos: config.qos,
        readings_per_message: k,
        target_msgs_per_s: config.rate_msgs_per_s,
        publish_elapsed_s,
        complete: true,
        id_prefix: config.id_prefix.clone(),
        first_ts: to_taipei(t0_ms).to_rfc3339(),
        ..Default::default()
    };
    let mut last_ts = t0_ms;
    for (generator, publisher, _) in results {
        let summary = publisher.close(drain).await;
        stats.messages_sent += summary.published;
        stats.messages_acked += if config.qos == 0 { summary.published } else { summary.acked.min(summary.published) };
        stats.reconnects += summary.reconnects;
        stats.requeued += summary.requeued;
        stats.complete &= summary.drained;
        stats.distinct_readings += generator.distinct_readings();
        last_ts = last_ts.max(generator.last_ts_ms());
    }
    stats.readings_sent = stats.messages_sent * k as u64;
    stats.readings_acked = stats.messages_acked * k as u64;
    stats.last_ts = to_taipei(last_ts).to_rfc3339();
    stats.elapsed_s = start.elapsed().as_secs_f64();
    stats.achieved_msgs_per_s = stats.messages_sent as f64 / publish_elapsed_s;
    stats.achieved_readings_per_s = stats.readings_sent as f64 / publish_elapsed_s;
    stats.acked_msgs_per_s = stats.messages_acked as f64 / stats.elapsed_s;
    Ok(stats)
}

/// Publishes one connection's share, paced in small time slices: at each
/// slice it sends whatever the target rate says is due by now, so the stream
/// is steady (or, with `burst`, one message per sensor all at once, then a pause).
async fn drive_lane(
    mut lane: Lane,
    publisher: Publisher,
    burst: bool,
    deadline: Option<Instant>,
    shutdown: CancellationToken,
) -> Result<(LoadGenerator, Publisher, f64)> {
    const SLICE: Duration = Duration::from_millis(2);
    let start = Instant::now();
    let burst_size = lane.generator.sensor_count() as u64;
    let mut sent = 0u64;
    'run: while sent < lane.quota {
        let elapsed = start.elapsed().as_secs_f64();
        let due = match (lane.rate > 0.0, burst) {
            (false, _) => lane.quota,
            (true, false) => (elapsed * lane.rate) as u64 + 1,
            // Bursts of `burst_size` every burst_size / rate seconds.
            (true, true) => (elapsed * lane.rate / burst_size as f64) as u64 * burst_size + burst_size,
        };
        while sent < due.min(lane.quota) {
            if sent.is_multiple_of(64) && (shutdown.is_cancelled() || deadline.is_some_and(|d| Instant::now() >= d)) {
                break 'run;
            }
            let (topic, payload) = lane.generator.next_message();
            publisher.publish(topic, payload).await?;
            sent += 1;
        }
        if shutdown.is_cancelled() || deadline.is_some_and(|d| Instant::now() >= d) {
            break;
        }
        if sent < lane.quota {
            tokio::select! {
                _ = tokio::time::sleep(SLICE) => {}
                _ = shutdown.cancelled() => break,
            }
        }
    }
    Ok((lane.generator, publisher, start.elapsed().as_secs_f64()))
}

#[cfg(test)]
mod tests;
