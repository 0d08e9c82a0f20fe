//! City mode: publishes the demo city's sensors in (accelerated) simulated
//! time. See [`run_city`].

mod faults;
mod sensors;
mod world;

use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use chrono::{DateTime, FixedOffset, Utc};
use serde::Serialize;
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::mqtt::{qos_from_u8, BrokerAddr, Publisher, PublisherOptions};
use crate::physics::rain::Weather;
use crate::registry::Registry;
use crate::timefmt::to_taipei;

pub use faults::SensorFault;
pub use world::City;

/// What kind of day to simulate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Scenario {
    /// A normal day: dry, maybe an afternoon shower.
    Calm,
    /// A typhoon: rain bands and cells (CWA heavy and extremely heavy rain),
    /// rivers through their warning levels, roads flooding and draining; one
    /// river gauge sticks and one spikes.
    Typhoon,
    /// A calm day with faulty sensors (stuck, silent, spiking), duplicates
    /// and garbage payloads.
    Faults,
}

impl Scenario {
    pub fn weather(self) -> Weather {
        match self {
            Scenario::Typhoon => Weather::Typhoon,
            Scenario::Calm | Scenario::Faults => Weather::Calm,
        }
    }
}

/// Parses `--start`: RFC 3339, or a local Taipei time without offset.
pub fn parse_start(s: &str) -> Result<DateTime<FixedOffset>, String> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t);
    }
    for fmt in ["%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M"] {
        if let Ok(naive) = chrono::NaiveDateTime::parse_from_str(s, fmt) {
            return naive
                .and_local_timezone(crate::timefmt::taipei())
                .single()
                .ok_or_else(|| format!("ambiguous local time {s:?}"));
        }
    }
    Err(format!("expected RFC 3339 or local 'YYYY-MM-DDTHH:MM[:SS]' (Asia/Taipei), got {s:?}"))
}

/// Options of city mode.
#[derive(Debug, Clone, clap::Args)]
pub struct CityConfig {
    /// Broker URL (mqtt://host:port, plain TCP).
    #[arg(long, env = "CITYGAUGE_SIM_MQTT_URL", default_value = "mqtt://127.0.0.1:1883")]
    pub mqtt_url: String,

    /// Sensor registry (GeoJSON FeatureCollection).
    #[arg(long, env = "CITYGAUGE_SIM_REGISTRY", default_value = "deploy/demo-city.geojson")]
    pub registry: PathBuf,

    /// What kind of day to simulate.
    #[arg(long, env = "CITYGAUGE_SIM_SCENARIO", value_enum, default_value_t = Scenario::Calm)]
    pub scenario: Scenario,

    /// Simulated seconds per wall-clock second (60 = one simulated minute per second).
    #[arg(long, env = "CITYGAUGE_SIM_SPEED", default_value_t = 60.0)]
    pub speed: f64,

    /// Simulated start time (RFC 3339, or local Asia/Taipei 'YYYY-MM-DDTHH:MM'); default now.
    #[arg(long, env = "CITYGAUGE_SIM_START", value_parser = parse_start)]
    pub start: Option<DateTime<FixedOffset>>,

    /// Stop after this many wall-clock seconds (default: run until Ctrl-C or --sim-hours).
    #[arg(long, env = "CITYGAUGE_SIM_DURATION_S")]
    pub duration_s: Option<f64>,

    /// Stop after this many simulated hours.
    #[arg(long, env = "CITYGAUGE_SIM_SIM_HOURS")]
    pub sim_hours: Option<f64>,

    /// Random seed: the same seed, start and speed replay the same city.
    #[arg(long, env = "CITYGAUGE_SIM_SEED", default_value_t = 20_261_122)]
    pub seed: u64,

    /// MQTT QoS for publishing (0, 1 or 2).
    #[arg(long, env = "CITYGAUGE_SIM_QOS", default_value_t = 1, value_parser = clap::value_parser!(u8).range(0..=2))]
    pub qos: u8,

    /// MQTT client id.
    #[arg(long, env = "CITYGAUGE_SIM_CLIENT_ID", default_value = "citygauge-sim-city")]
    pub client_id: String,

    /// Print "topic<TAB>payload" lines to stdout instead of publishing.
    #[arg(long, env = "CITYGAUGE_SIM_DRY_RUN")]
    pub dry_run: bool,

    /// Let simulated time run ahead of the wall clock. By default it never
    /// does: a faster-than-real-time replay from a past `--start` catches up
    /// with now and then goes on in real time, so sensors never report from
    /// the future (which the platform flags `future_ts`).
    #[arg(long, env = "CITYGAUGE_SIM_ALLOW_FUTURE")]
    pub allow_future: bool,
}

impl Default for CityConfig {
    fn default() -> Self {
        Self {
            mqtt_url: "mqtt://127.0.0.1:1883".into(),
            registry: "deploy/demo-city.geojson".into(),
            scenario: Scenario::Calm,
            speed: 60.0,
            start: None,
            duration_s: None,
            sim_hours: None,
            seed: 20_261_122,
            qos: 1,
            client_id: "citygauge-sim-city".into(),
            allow_future: false,
            dry_run: false,
        }
    }
}

/// Summary of a city run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CityStats {
    pub scenario: String,
    pub sensors: usize,
    pub sim_start: String,
    pub sim_end: String,
    pub sim_hours: f64,
    pub wall_s: f64,
    /// Messages published (including duplicates and garbage).
    pub messages: u64,
    /// Messages the broker acknowledged (QoS > 0).
    pub messages_acked: u64,
    pub reconnects: u64,
    /// Readings produced (after faults; a duplicate message counts once).
    pub readings: u64,
    pub canonical_messages: u64,
    pub senml_packs: u64,
    pub chirpstack_uplinks: u64,
    pub tts_uplinks: u64,
    pub garbage_messages: u64,
    pub duplicate_messages: u64,
    pub lamp_faults: u64,
    /// Sensors given a fault (`faults` scenario; the typhoon's two broken
    /// gauges), and spikes injected.
    pub stuck_sensors: usize,
    pub silent_sensors: usize,
    pub spiky_sensors: usize,
    pub spikes: u64,
    /// River stations whose level reached warning level 3 / 2 / 1.
    pub river_warning_3: usize,
    pub river_warning_2: usize,
    pub river_warning_1: usize,
    /// Road-flood sites that reached their alert depth.
    pub flood_alert_sites: usize,
    /// Drainage-channel gauges that reached their high level.
    pub drainage_high: usize,
    /// Sewer gauges that reached their high level.
    pub sewer_high: usize,
}

/// Where messages go.
enum Sink {
    Mqtt(Publisher),
    Stdout,
}

/// Runs the simulated city until `shutdown`, `duration_s` or `sim_hours`.
pub async fn run_city(config: CityConfig, shutdown: CancellationToken) -> Result<CityStats> {
    if !(config.speed > 0.0 && config.speed.is_finite()) {
        bail!("--speed must be a positive number, got {}", config.speed);
    }
    let registry = Registry::load(&config.registry)?;
    // Whole seconds, like the sensors' clocks.
    let start_ms = config.start.map_or_else(|| Utc::now().timestamp_millis(), |t| t.timestamp_millis()) / 1000 * 1000;
    let end_ms = config.sim_hours.map(|h| start_ms + (h * 3_600_000.0) as i64);
    let mut city = City::new(&registry, config.scenario, start_ms, config.seed);
    info!(sensors = registry.sensors.len(), scenario = ?config.scenario, speed = config.speed, start = %to_taipei(start_ms), "starting city");

    let sink = if config.dry_run {
        Sink::Stdout
    } else {
        let addr: BrokerAddr = config.mqtt_url.parse()?;
        let opts = PublisherOptions::new(config.client_id.clone(), qos_from_u8(config.qos)?);
        Sink::Mqtt(Publisher::connect(&addr, opts).await?)
    };
    let wall_start = Instant::now();
    let deadline = config.duration_s.map(|s| wall_start + Duration::from_secs_f64(s));
    let mut out = Vec::new();
    let mut stdout = std::io::BufWriter::new(std::io::stdout());
    let mut messages = 0u64;
    let mut last_log = Instant::now();
    'run: loop {
        let elapsed_ms = wall_start.elapsed().as_secs_f64() * 1000.0 * config.speed;
        let mut sim_now = start_ms + elapsed_ms as i64;
        let wall_ms = Utc::now().timestamp_millis().max(start_ms);
        let caught_up = !config.allow_future && sim_now >= wall_ms;
        if caught_up {
            sim_now = wall_ms;
        }
        if let Some(end) = end_ms {
            sim_now = sim_now.min(end);
        }
        city.advance_to(sim_now, &mut out);
        for msg in out.drain(..) {
            messages += 1;
            match &sink {
                Sink::Stdout => {
                    if !print_line(&mut stdout, &msg)? {
                        break 'run; // the reader went away (`| head`)
                    }
                }
                Sink::Mqtt(p) => tokio::select! {
                    r = p.publish(msg.topic, msg.payload) => r?,
                    _ = shutdown.cancelled() => break 'run,
                },
            }
        }
        if !flush_stdout(&mut stdout)? {
            break;
        }
        if last_log.elapsed() > Duration::from_secs(10) {
            info!(sim_time = %to_taipei(sim_now), messages, rain_cells = city.rain().cells().len(), "city running");
            last_log = Instant::now();
        }
        let finished = end_ms.is_some_and(|e| sim_now >= e) || deadline.is_some_and(|d| Instant::now() >= d);
        if finished || shutdown.is_cancelled() {
            break;
        }
        // Sleep until the next event is due in wall time (at most 200 ms, so
        // deadlines and shutdown stay responsive).
        let wait_sim_ms = city.next_event_ms().map_or(1000, |t| (t - sim_now).max(0)) as f64;
        let pace = if caught_up { 1.0 } else { config.speed };
        let wait = Duration::from_secs_f64((wait_sim_ms / pace / 1000.0).clamp(0.002, 0.2));
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.cancelled() => break,
        }
    }
    // Loggers and gateways flush what they hold before going quiet.
    city.flush(&mut out);
    if let Sink::Mqtt(p) = &sink {
        for msg in out.drain(..) {
            messages += 1;
            tokio::select! {
                r = p.publish(msg.topic, msg.payload) => r?,
                _ = tokio::time::sleep(Duration::from_secs(5)) => break,
            }
        }
    } else {
        for msg in out.drain(..) {
            messages += 1;
            if !print_line(&mut stdout, &msg)? {
                break;
            }
        }
        flush_stdout(&mut stdout)?;
    }
    let mut stats = city.finish_stats();
    stats.messages = messages;
    stats.wall_s = wall_start.elapsed().as_secs_f64();
    stats.sim_start = to_taipei(start_ms).to_rfc3339();
    stats.sim_end = to_taipei(city.now_ms()).to_rfc3339();
    if let Sink::Mqtt(p) = sink {
        let summary = p.close(Duration::from_secs(10)).await;
        stats.messages_acked = summary.acked;
        stats.reconnects = summary.reconnects;
    }
    Ok(stats)
}

/// Writes a dry-run line; `Ok(false)` when stdout's reader has gone.
fn print_line(out: &mut impl Write, msg: &crate::payload::Message) -> Result<bool> {
    let written = writeln!(out, "{}\t{}", msg.topic, String::from_utf8_lossy(&msg.payload));
    not_broken_pipe(written)
}

fn flush_stdout(out: &mut impl Write) -> Result<bool> {
    not_broken_pipe(out.flush())
}

fn not_broken_pipe(r: std::io::Result<()>) -> Result<bool> {
    match r {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(false),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests;
