//! Deliberately broken messages for the `faults` scenario: the ingest daemon
//! must reject each of these, count it, and keep going.

use rand::Rng;
use serde_json::json;

use super::Message;
use crate::registry::Sensor;
use crate::rng::SimRng;
use crate::timefmt::TsStyle;

/// Size of the oversized payload: above the 1 MiB a sane ingest limit sets.
pub const OVERSIZED_BYTES: usize = 1_536 * 1024;

/// The kinds of garbage we publish.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Garbage {
    /// Truncated JSON.
    MalformedJson,
    /// Valid JSON, wrong types (`"level_m": "high"`, `"ts": true`).
    WrongTypes,
    /// A `city/{kind}` topic with a kind the platform doesn't know.
    UnknownKind,
    /// Well over any sensible payload limit.
    Oversized,
    /// Binary noise, not UTF-8.
    RandomBytes,
    /// Zero-length payload.
    Empty,
    /// A reading without `ts`.
    MissingTs,
    /// A `ts` nobody can parse.
    BadTimestamp,
    /// A SenML pack with an unknown unit and a record without a value.
    BadSenml,
    /// A ChirpStack uplink missing `deviceInfo` with invalid base64 data.
    BadLorawan,
}

impl Garbage {
    pub const ALL: [Garbage; 10] = [
        Garbage::MalformedJson,
        Garbage::WrongTypes,
        Garbage::UnknownKind,
        Garbage::Oversized,
        Garbage::RandomBytes,
        Garbage::Empty,
        Garbage::MissingTs,
        Garbage::BadTimestamp,
        Garbage::BadSenml,
        Garbage::BadLorawan,
    ];

    /// Builds a message of this kind aimed at (or pretending to be) `sensor`.
    pub fn message(self, sensor: &Sensor, ts_ms: i64, rng: &mut SimRng) -> Message {
        let topic = format!("city/{}/{}", sensor.kind().as_str(), sensor.id);
        let ts = TsStyle::Rfc3339Taipei.to_json(ts_ms);
        let to_vec = |v: serde_json::Value| serde_json::to_vec(&v).expect("JSON values serialise");
        match self {
            Garbage::MalformedJson => {
                let full = to_vec(json!({"ts": ts, "level_m": 1.23, "depth_cm": 4.5}));
                let cut = rng.random_range(1..full.len() - 1);
                Message::new(topic, full[..cut].to_vec())
            }
            Garbage::WrongTypes => {
                let bad = [
                    json!({"ts": ts, "level_m": "high"}),
                    json!({"ts": true, "depth_cm": 3}),
                    json!({"ts": ts, "pm2_5_ugm3": [1, 2], "lamp_on": "yes"}),
                    json!([{"ts": ts, "rain_mm": {"value": 1}}]),
                    json!("just a string"),
                ];
                Message::new(topic, to_vec(bad[rng.random_range(0..bad.len())].clone()))
            }
            Garbage::UnknownKind => {
                Message::new(format!("city/radiation/{}", sensor.id), to_vec(json!({"ts": ts, "dose_usvh": 0.08})))
            }
            Garbage::Oversized => {
                // A plausible reading padded with a huge field, so a daemon
                // without a size limit still has nothing harmful to store.
                let padding = "x".repeat(OVERSIZED_BYTES);
                Message::new(topic, to_vec(json!({"ts": ts, "firmware_log": padding})))
            }
            Garbage::RandomBytes => {
                let mut bytes = vec![0u8; rng.random_range(16..512)];
                rng.fill(&mut bytes[..]);
                bytes[0] = 0xff; // never valid UTF-8
                Message::new(topic, bytes)
            }
            Garbage::Empty => Message::new(topic, Vec::new()),
            Garbage::MissingTs => Message::new(topic, to_vec(json!({"level_m": 1.0, "depth_cm": 0.0}))),
            Garbage::BadTimestamp => {
                let bad = ["yesterday", "2026-13-45T25:61:00+08:00", "", "1e400"];
                Message::new(topic, to_vec(json!({"ts": bad[rng.random_range(0..bad.len())], "level_m": 1.0})))
            }
            Garbage::BadSenml => Message::new(
                "city/senml/kh-gw-bogus-01",
                to_vec(json!([
                    {"bn": format!("{}/", sensor.id), "bt": ts_ms / 1000, "n": "level", "u": "furlong", "v": 3},
                    {"n": "depth"},
                ])),
            ),
            Garbage::BadLorawan => Message::new(
                "application/00000000-0000-0000-0000-000000000000/device/ffffffffffffffff/event/up",
                to_vec(json!({"time": ts, "fPort": 2, "data": "!!not base64!!", "object": null})),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::{generate, GenerateOptions};

    #[test]
    fn every_garbage_kind_is_actually_invalid() {
        let reg = generate(&GenerateOptions { streetlights: 10, ..Default::default() });
        let sensor = &reg.sensors[0];
        let mut rng = SimRng::new(9);
        for g in Garbage::ALL {
            let m = g.message(sensor, 1_795_305_600_000, &mut rng);
            let parsed: Result<serde_json::Value, _> = serde_json::from_slice(&m.payload);
            match g {
                Garbage::MalformedJson | Garbage::RandomBytes | Garbage::Empty => assert!(parsed.is_err(), "{g:?}"),
                Garbage::Oversized => assert!(m.payload.len() > OVERSIZED_BYTES),
                Garbage::UnknownKind => assert!(m.topic.starts_with("city/radiation/")),
                _ => assert!(parsed.is_ok(), "{g:?} is valid JSON with invalid content"),
            }
        }
    }
}
