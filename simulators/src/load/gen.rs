//! Payload generation for load mode: the hot path.
//!
//! Payloads are written straight into a byte buffer from per-sensor
//! prebuilt pieces (topic, record prefix) plus a few integers; no serde trees,
//! one allocation per payload. Every reading has a timestamp unique to its
//! sensor (`t0 + seq * step`, with `seq` counting up per sensor), so the
//! number of distinct (sensor_id, ts) pairs published is known exactly.

use crate::registry::Kind;
use crate::timefmt::{write_datetime, TAIPEI_OFFSET_S};

/// Wire format of load messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LoadFormat {
    /// Canonical JSON on `city/{kind}/{id}`: an object, or an array of K readings of one sensor.
    Canonical,
    /// SenML packs of K readings (several sensors) on `city/senml/{gateway}`.
    Senml,
}

/// How canonical `ts` values are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "snake_case")]
#[value(rename_all = "snake_case")]
pub enum LoadTsFormat {
    /// RFC 3339 with +08:00.
    Rfc3339,
    /// Epoch milliseconds (cheapest to write and parse).
    #[value(alias = "epoch-ms")]
    EpochMs,
}

/// Two-letter id code per kind, as in the registry (`kh-wl-0001`).
pub fn kind_code(kind: Kind) -> &'static str {
    match kind {
        Kind::Rainfall => "rg",
        Kind::WaterLevel => "wl",
        Kind::FloodDepth => "fd",
        Kind::AirQuality => "aq",
        Kind::Streetlight => "sl",
    }
}

/// A synthetic sensor.
#[derive(Debug, Clone)]
struct LoadSensor {
    id: String,
    kind: Kind,
    /// Canonical topic, prebuilt.
    topic: String,
    /// Global index, varies the values between sensors.
    index: u64,
    /// Readings generated so far = the next reading's sequence number.
    seq: u64,
}

/// What every message of a load run looks like.
#[derive(Debug, Clone)]
pub struct LoadShape {
    /// Sensor ids are `{id_prefix}-{code}-{index+1:06}`.
    pub id_prefix: String,
    pub per_message: usize,
    pub format: LoadFormat,
    pub ts_format: LoadTsFormat,
    /// Timestamp of every sensor's first reading, epoch ms.
    pub t0_ms: i64,
    /// Spacing of one sensor's consecutive readings, ms.
    pub step_ms: i64,
}

/// Generates one connection's messages over its share of the sensors.
#[derive(Debug, Clone)]
pub struct LoadGenerator {
    sensors: Vec<LoadSensor>,
    cursor: usize,
    per_message: usize,
    format: LoadFormat,
    ts_format: LoadTsFormat,
    t0_ms: i64,
    step_ms: i64,
    senml_topic: String,
    last_payload_len: usize,
}

impl LoadGenerator {
    /// A generator over `sensors` ((global index, kind) pairs), publishing
    /// SenML packs as `gateway`.
    pub fn new(sensors: impl IntoIterator<Item = (u64, Kind)>, gateway: &str, shape: &LoadShape) -> Self {
        let prefix = &shape.id_prefix;
        let sensors: Vec<LoadSensor> = sensors
            .into_iter()
            .map(|(index, kind)| {
                let id = format!("{prefix}-{}-{:06}", kind_code(kind), index + 1);
                LoadSensor { topic: format!("city/{}/{id}", kind.as_str()), id, kind, index, seq: 0 }
            })
            .collect();
        assert!(!sensors.is_empty(), "a load generator needs sensors");
        Self {
            sensors,
            cursor: 0,
            per_message: shape.per_message.max(1),
            format: shape.format,
            ts_format: shape.ts_format,
            t0_ms: shape.t0_ms,
            step_ms: shape.step_ms.max(1),
            senml_topic: format!("city/senml/{gateway}"),
            last_payload_len: 256,
        }
    }

    pub fn sensor_count(&self) -> usize {
        self.sensors.len()
    }

    /// Distinct (sensor_id, ts) readings generated so far.
    pub fn distinct_readings(&self) -> u64 {
        self.sensors.iter().map(|s| s.seq).sum()
    }

    /// Latest timestamp generated, epoch ms.
    pub fn last_ts_ms(&self) -> i64 {
        let max_seq = self.sensors.iter().map(|s| s.seq).max().unwrap_or(0);
        self.t0_ms + max_seq.saturating_sub(1) as i64 * self.step_ms
    }

    /// The next message: (topic, payload) with `per_message` readings.
    pub fn next_message(&mut self) -> (String, Vec<u8>) {
        let mut buf = Vec::with_capacity(self.last_payload_len + 16);
        let topic = match self.format {
            LoadFormat::Canonical => self.canonical(&mut buf),
            LoadFormat::Senml => self.senml(&mut buf),
        };
        self.last_payload_len = buf.len();
        (topic, buf)
    }

    /// K readings of one sensor (K consecutive timestamps).
    fn canonical(&mut self, buf: &mut Vec<u8>) -> String {
        let i = self.cursor;
        self.cursor = (self.cursor + 1) % self.sensors.len();
        let (k, ts_format, t0, step) = (self.per_message, self.ts_format, self.t0_ms, self.step_ms);
        let s = &mut self.sensors[i];
        if k > 1 {
            buf.push(b'[');
        }
        for j in 0..k {
            if j > 0 {
                buf.push(b',');
            }
            let seq = s.seq;
            s.seq += 1;
            let ts = t0 + seq as i64 * step;
            buf.extend_from_slice(b"{\"ts\":");
            match ts_format {
                LoadTsFormat::EpochMs => push_u64(buf, ts as u64),
                LoadTsFormat::Rfc3339 => {
                    buf.push(b'"');
                    write_datetime(buf, ts, TAIPEI_OFFSET_S, ts % 1000 != 0, b"+08:00");
                    buf.push(b'"');
                }
            }
            write_canonical_values(buf, s.kind, s.index, seq, step);
            buf.push(b'}');
        }
        if k > 1 {
            buf.push(b']');
        }
        s.topic.clone()
    }

    /// A pack of K readings from consecutive sensors, times relative to t0.
    fn senml(&mut self, buf: &mut Vec<u8>) -> String {
        buf.push(b'[');
        for j in 0..self.per_message {
            let i = self.cursor;
            self.cursor = (self.cursor + 1) % self.sensors.len();
            let (t0, step) = (self.t0_ms, self.step_ms);
            let s = &mut self.sensors[i];
            let seq = s.seq;
            s.seq += 1;
            let rel_ms = seq as i64 * step;
            for (r, (name, unit, value, decimals)) in
                senml_values(s.kind, s.index, seq, step).into_iter().flatten().enumerate()
            {
                if j > 0 || r > 0 {
                    buf.push(b',');
                }
                buf.push(b'{');
                if r == 0 {
                    buf.extend_from_slice(b"\"bn\":\"");
                    buf.extend_from_slice(s.id.as_bytes());
                    buf.extend_from_slice(b"/\",");
                }
                if j == 0 && r == 0 {
                    buf.extend_from_slice(b"\"bt\":");
                    push_fixed(buf, t0, 3);
                    buf.push(b',');
                }
                buf.extend_from_slice(b"\"n\":\"");
                buf.extend_from_slice(name.as_bytes());
                buf.extend_from_slice(b"\",\"u\":\"");
                buf.extend_from_slice(unit.as_bytes());
                buf.extend_from_slice(b"\",\"t\":");
                push_fixed(buf, rel_ms, 3);
                buf.extend_from_slice(b",\"v\":");
                push_fixed(buf, value, decimals);
                buf.push(b'}');
            }
        }
        buf.push(b']');
        self.senml_topic.clone()
    }
}

/// Cheap, varied, plausible values: (scaled integer, decimals).
fn level_centi(index: u64, seq: u64) -> i64 {
    50 + ((seq * 7 + index * 13) % 300) as i64
}

fn write_canonical_values(buf: &mut Vec<u8>, kind: Kind, index: u64, seq: u64, step_ms: i64) {
    match kind {
        Kind::WaterLevel => {
            buf.extend_from_slice(b",\"level_m\":");
            push_fixed(buf, level_centi(index, seq), 2);
        }
        Kind::Rainfall => {
            buf.extend_from_slice(b",\"rain_mm\":");
            push_fixed(buf, ((seq + index) % 50) as i64, 1);
            buf.extend_from_slice(b",\"interval_s\":");
            push_u64(buf, (step_ms / 1000).max(1) as u64);
        }
        Kind::FloodDepth => {
            buf.extend_from_slice(b",\"depth_cm\":");
            push_fixed(buf, ((seq * 3 + index) % 400) as i64, 1);
        }
        Kind::AirQuality => {
            let pm = 50 + ((seq * 3 + index) % 600) as i64;
            buf.extend_from_slice(b",\"pm2_5_ugm3\":");
            push_fixed(buf, pm, 1);
            buf.extend_from_slice(b",\"pm10_ugm3\":");
            push_fixed(buf, pm * 2, 1);
        }
        Kind::Streetlight => {
            buf.extend_from_slice(b",\"lamp_on\":true,\"power_w\":");
            push_fixed(buf, 950 + (seq % 100) as i64, 1);
            buf.extend_from_slice(b",\"energy_kwh\":");
            // Monotonic meter: +25 Wh per reading.
            push_fixed(buf, 1_000_000 + index as i64 * 1000 + seq as i64 * 25, 3);
        }
    }
}

type SenmlValue = (&'static str, &'static str, i64, u32);

/// SenML records of one reading (one or two records).
fn senml_values(kind: Kind, index: u64, seq: u64, step_ms: i64) -> [Option<SenmlValue>; 2] {
    match kind {
        Kind::WaterLevel => [Some(("level", "m", level_centi(index, seq), 2)), None],
        Kind::Rainfall => {
            [Some(("rain", "mm", ((seq + index) % 50) as i64, 1)), Some(("interval", "s", (step_ms / 1000).max(1), 0))]
        }
        Kind::FloodDepth => [Some(("depth", "cm", ((seq * 3 + index) % 400) as i64, 1)), None],
        Kind::AirQuality => {
            let pm = 50 + ((seq * 3 + index) % 600) as i64;
            [Some(("pm2_5", "ug/m3", pm, 1)), Some(("pm10", "ug/m3", pm * 2, 1))]
        }
        Kind::Streetlight => [
            Some(("power", "W", 950 + (seq % 100) as i64, 1)),
            Some(("energy", "kWh", 1_000_000 + index as i64 * 1000 + seq as i64 * 25, 3)),
        ],
    }
}

/// Appends a non-negative integer in decimal.
pub fn push_u64(buf: &mut Vec<u8>, mut v: u64) {
    let mut tmp = [0u8; 20];
    let mut i = tmp.len();
    loop {
        i -= 1;
        tmp[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    buf.extend_from_slice(&tmp[i..]);
}

/// Appends `scaled / 10^decimals` with exactly `decimals` places, trimming a
/// zero fraction (`1795305600.000` becomes `1795305600`).
pub fn push_fixed(buf: &mut Vec<u8>, scaled: i64, decimals: u32) {
    if scaled < 0 {
        buf.push(b'-');
    }
    let v = scaled.unsigned_abs();
    let p = 10u64.pow(decimals);
    push_u64(buf, v / p);
    let frac = v % p;
    if decimals > 0 && frac != 0 {
        buf.push(b'.');
        let mut div = p / 10;
        while div > 0 {
            buf.push(b'0' + (frac / div % 10) as u8);
            div /= 10;
        }
    }
}
