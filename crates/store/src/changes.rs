//! The change stream: what the writer announces with `NOTIFY` inside the
//! batch's transaction, so listeners hear of exactly the rows that committed.
//!
//! PostgreSQL caps a payload below 8,000 bytes, so a batch becomes as many
//! notifications as needed, each at most [`MAX_PAYLOAD_BYTES`].

use chrono::{DateTime, Utc};
use citygauge_domain::kind::FieldType;
use citygauge_domain::{Field, Kind, QualityLevel, Reading, Values};
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::StoreError;

/// New readings: `{"v":1,"r":[{"k","s","t","q","qr"?,"x"}, ...]}`.
pub const READINGS_CHANNEL: &str = "citygauge_readings";
/// Registry changes: a JSON array of sensor ids; `[]` means "reload all".
pub const SENSORS_CHANNEL: &str = "citygauge_sensors";
/// Alert changes (the alert engine's); a JSON object, forwarded as is.
pub const ALERTS_CHANNEL: &str = "citygauge_alerts";

/// The largest payload sent; PostgreSQL's own limit is just under 8,000 bytes.
pub const MAX_PAYLOAD_BYTES: usize = 7_900;

const ENVELOPE_HEAD: &str = "{\"v\":1,\"r\":[";
const ENVELOPE_TAIL: &str = "]}";

/// One stored reading, as a listener sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct ChangedReading {
    pub kind: Kind,
    pub sensor_id: String,
    pub ts: DateTime<Utc>,
    pub quality: QualityLevel,
    pub quality_reasons: Vec<String>,
    /// The non-null columns by canonical name: numbers, `lamp_on` a bool,
    /// `fault` a string.
    pub values: Map<String, Value>,
}

mod wire;

/// The payloads announcing `readings`, each at most [`MAX_PAYLOAD_BYTES`].
pub fn encode(readings: &[&Reading]) -> Vec<String> {
    let budget = MAX_PAYLOAD_BYTES - ENVELOPE_HEAD.len() - ENVELOPE_TAIL.len();
    let mut payloads = Vec::new();
    let mut current = String::with_capacity(MAX_PAYLOAD_BYTES);
    current.push_str(ENVELOPE_HEAD);
    let mut item = String::with_capacity(256);
    for reading in readings {
        item.clear();
        wire::write_item(&mut item, reading, usize::MAX, usize::MAX);
        if item.len() > budget {
            // Only absurd ids, fault codes or reason lists get here: a listener
            // is better served by a shortened row than by none.
            item.clear();
            wire::write_item(&mut item, reading, SHORTENED_TEXT_BYTES, SHORTENED_REASONS);
        }
        if item.len() > budget {
            tracing::warn!(sensor_id = %wire::truncated(&reading.sensor_id, 64), "reading too large to announce");
            continue;
        }
        let separator = usize::from(current.len() > ENVELOPE_HEAD.len());
        if current.len() + separator + item.len() + ENVELOPE_TAIL.len() > MAX_PAYLOAD_BYTES {
            current.push_str(ENVELOPE_TAIL);
            let next = String::with_capacity(MAX_PAYLOAD_BYTES);
            payloads.push(std::mem::replace(&mut current, next));
            current.push_str(ENVELOPE_HEAD);
        }
        if current.len() > ENVELOPE_HEAD.len() {
            current.push(',');
        }
        current.push_str(&item);
    }
    if current.len() > ENVELOPE_HEAD.len() {
        current.push_str(ENVELOPE_TAIL);
        payloads.push(current);
    }
    payloads
}

/// How long each text of a shortened item may be, in bytes before JSON
/// escaping (which can make a control character six bytes).
const SHORTENED_TEXT_BYTES: usize = 64;
/// How many quality reasons a shortened item keeps.
const SHORTENED_REASONS: usize = 8;

/// A stored column's value as JSON, `None` when null.
pub fn field_value(values: &Values, field: Field) -> Option<Value> {
    match (values, field.field_type()) {
        (Values::Rainfall { interval_s, .. }, FieldType::Int) if field == Field::IntervalS => {
            interval_s.map(Value::from)
        }
        (Values::Streetlight(s), FieldType::Bool) if field == Field::LampOn => s.lamp_on.map(Value::from),
        (Values::Streetlight(s), FieldType::Text) if field == Field::Fault => s.fault.clone().map(Value::from),
        // Non-finite numbers are never stored; JSON cannot carry them either.
        (_, FieldType::Float) => values.number(field).and_then(|v| serde_json::Number::from_f64(v).map(Value::Number)),
        _ => None,
    }
}

#[derive(Deserialize)]
struct Envelope {
    v: u32,
    r: Vec<WireReading>,
}

#[derive(Deserialize)]
struct WireReading {
    k: String,
    s: String,
    t: DateTime<Utc>,
    q: String,
    #[serde(default)]
    qr: Vec<String>,
    #[serde(default)]
    x: Map<String, Value>,
}

/// The readings a [`READINGS_CHANNEL`] payload announces.
pub fn decode(payload: &str) -> Result<Vec<ChangedReading>, StoreError> {
    let bad = |why: String| StoreError::ChangePayload(why);
    let envelope: Envelope = serde_json::from_str(payload).map_err(|e| bad(e.to_string()))?;
    if envelope.v != 1 {
        return Err(bad(format!("unknown version {}", envelope.v)));
    }
    envelope
        .r
        .into_iter()
        .map(|r| {
            let kind = r.k.parse::<Kind>().map_err(|e| bad(e.to_string()))?;
            let quality = match r.q.as_str() {
                "good" => QualityLevel::Good,
                "suspect" => QualityLevel::Suspect,
                "bad" => QualityLevel::Bad,
                other => return Err(bad(format!("unknown quality {other:?}"))),
            };
            Ok(ChangedReading { kind, sensor_id: r.s, ts: r.t, quality, quality_reasons: r.qr, values: r.x })
        })
        .collect()
}

/// The [`SENSORS_CHANNEL`] payload for `ids`: `[]` ("reload all") when the
/// list would not fit in one notification.
pub fn encode_sensor_ids<S: AsRef<str>>(ids: &[S]) -> String {
    let list: Vec<&str> = ids.iter().map(AsRef::as_ref).collect();
    let payload = serde_json::to_string(&list).unwrap_or_else(|_| "[]".into());
    if payload.len() > MAX_PAYLOAD_BYTES {
        "[]".into()
    } else {
        payload
    }
}

/// The sensor ids a [`SENSORS_CHANNEL`] payload names; empty means all.
pub fn decode_sensor_ids(payload: &str) -> Result<Vec<String>, StoreError> {
    serde_json::from_str(payload).map_err(|e| StoreError::ChangePayload(e.to_string()))
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use citygauge_domain::{AirQuality, Quality, Streetlight};

    use super::*;

    fn at(minute: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 30, 3, 0, 0).unwrap() + chrono::Duration::minutes(minute)
    }

    fn samples() -> Vec<Reading> {
        let mut spiky = Quality::default();
        spiky.flag(QualityLevel::Suspect, "spike:level_m");
        vec![
            Reading {
                sensor_id: "kh-wl-0001".into(),
                ts: at(0),
                values: Values::WaterLevel { level_m: 2.41 },
                quality: spiky,
            },
            Reading {
                sensor_id: "kh-rg-0001".into(),
                ts: at(1) + chrono::Duration::milliseconds(250),
                values: Values::Rainfall { rain_mm: 0.5, interval_s: Some(600) },
                quality: Quality::default(),
            },
            Reading {
                sensor_id: "kh-aq-0001".into(),
                ts: at(2),
                values: Values::AirQuality(AirQuality { pm2_5_ugm3: Some(12.0), ..AirQuality::default() }),
                quality: Quality::default(),
            },
            Reading {
                sensor_id: "kh-sl-0001".into(),
                ts: at(3),
                values: Values::Streetlight(Streetlight {
                    lamp_on: Some(false),
                    fault: Some("E42".into()),
                    power_w: Some(0.0),
                    ..Streetlight::default()
                }),
                quality: Quality { level: QualityLevel::Bad, reasons: vec!["out_of_range:power_w".into()] },
            },
        ]
    }

    /// The item as `serde_json` writes it: the reference the hand-written
    /// encoder must match byte for byte.
    fn reference_item(reading: &Reading) -> String {
        #[derive(serde::Serialize)]
        struct WireOut<'a> {
            k: &'static str,
            s: &'a str,
            t: String,
            q: &'static str,
            #[serde(skip_serializing_if = "<[String]>::is_empty")]
            qr: &'a [String],
            x: serde_json::Value,
        }
        let mut x = String::from("{");
        for &field in reading.kind().columns() {
            if let Some(value) = field_value(&reading.values, field) {
                if x.len() > 1 {
                    x.push(',');
                }
                x.push_str(&serde_json::to_string(field.name()).unwrap());
                x.push(':');
                x.push_str(&serde_json::to_string(&value).unwrap());
            }
        }
        x.push('}');
        let wire = WireOut {
            k: reading.kind().as_str(),
            s: &reading.sensor_id,
            t: reading.ts.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
            q: reading.quality.level.as_str(),
            qr: &reading.quality.reasons,
            x: serde_json::Value::Null,
        };
        let head = serde_json::to_string(&wire).unwrap();
        format!("{}{x}}}", head.strip_suffix("null}").unwrap())
    }

    proptest::proptest! {
        /// Any text, any time, any values: the same bytes as serde_json.
        #[test]
        fn the_hand_written_item_matches_serde_json(
            id in "\\PC{0,12}|[\\x00-\\x7f]{0,12}",
            micros in -70_000_000_000_000_000i64..300_000_000_000_000_000,
            nanos in proptest::prop_oneof![proptest::strategy::Just(0u32), 0u32..1_000_000_000],
            milli in proptest::bool::ANY,
            value in proptest::num::f64::ANY,
            interval in proptest::option::of(proptest::num::i32::ANY),
            lamp in proptest::option::of(proptest::bool::ANY),
            fault in proptest::option::of("\\PC{0,6}|[\\x00-\\x20\"\\\\]{0,6}"),
            reasons in proptest::collection::vec("[a-z_:\\x00-\\x1f]{0,10}", 0..3),
            kind in 0usize..5,
        ) {
            let nanos = if milli { nanos / 1_000_000 * 1_000_000 } else { nanos };
            let ts = DateTime::from_timestamp(micros.div_euclid(1_000_000), nanos).unwrap();
            let values = match kind {
                0 => Values::Rainfall { rain_mm: value, interval_s: interval },
                1 => Values::WaterLevel { level_m: value },
                2 => Values::FloodDepth { depth_cm: value },
                3 => Values::AirQuality(AirQuality { pm10_ugm3: Some(value), rh_pct: Some(-value), ..AirQuality::default() }),
                _ => Values::Streetlight(Streetlight { lamp_on: lamp, fault, power_w: Some(value), ..Streetlight::default() }),
            };
            let quality = Quality { level: QualityLevel::Suspect, reasons };
            let reading = Reading { sensor_id: id, ts, values, quality };
            let mut got = String::new();
            wire::write_item(&mut got, &reading, usize::MAX, usize::MAX);
            proptest::prop_assert_eq!(got, reference_item(&reading));
        }
    }

    #[test]
    fn the_wire_format_is_the_contract() {
        let readings = samples();
        let payloads = encode(&[&readings[0]]);
        assert_eq!(
            payloads,
            [
                r#"{"v":1,"r":[{"k":"water_level","s":"kh-wl-0001","t":"2026-11-30T03:00:00Z","q":"suspect","qr":["spike:level_m"],"x":{"level_m":2.41}}]}"#
            ]
        );
        let rain = encode(&[&readings[1]]);
        assert!(rain[0].contains(r#""x":{"rain_mm":0.5,"interval_s":600}"#), "{}", rain[0]);
        assert!(!rain[0].contains("\"qr\""), "empty reasons are omitted");
        assert!(encode(&[]).is_empty());
    }

    #[test]
    fn readings_round_trip() {
        let readings = samples();
        let refs: Vec<&Reading> = readings.iter().collect();
        let payloads = encode(&refs);
        assert_eq!(payloads.len(), 1);
        let decoded = decode(&payloads[0]).unwrap();
        assert_eq!(decoded.len(), readings.len());
        for (got, want) in decoded.iter().zip(&readings) {
            assert_eq!(
                (got.kind, &got.sensor_id, got.ts, got.quality),
                (want.kind(), &want.sensor_id, want.ts, want.quality.level)
            );
            assert_eq!(got.quality_reasons, want.quality.reasons);
        }
        let light = &decoded[3].values;
        assert_eq!((light["lamp_on"].clone(), light["fault"].clone()), (Value::Bool(false), Value::from("E42")));
        assert!(!light.contains_key("dim_pct"), "nulls are left out");
        assert!(decode("{\"v\":2,\"r\":[]}").is_err());
        assert!(decode("not json").is_err());
    }

    #[test]
    fn big_batches_split_under_the_limit_and_lose_nothing() {
        let readings: Vec<Reading> = (0..2_000)
            .map(|i| Reading {
                sensor_id: format!("kh-aq-{i:04}"),
                ts: at(i),
                values: Values::AirQuality(AirQuality {
                    pm2_5_ugm3: Some(f64::from(i as i32) / 7.0),
                    pm10_ugm3: Some(1e-300),
                    o3_ppb: Some(-123456.789012345),
                    temp_c: Some(29.123456789),
                    ..AirQuality::default()
                }),
                quality: Quality { level: QualityLevel::Suspect, reasons: vec!["stuck:pm10_ugm3".into()] },
            })
            .collect();
        let refs: Vec<&Reading> = readings.iter().collect();
        let payloads = encode(&refs);
        assert!(payloads.len() > 10);
        let mut decoded = Vec::new();
        for p in &payloads {
            assert!(p.len() <= MAX_PAYLOAD_BYTES, "{}", p.len());
            decoded.extend(decode(p).unwrap());
        }
        let ids: Vec<&str> = decoded.iter().map(|d| d.sensor_id.as_str()).collect();
        let want: Vec<&str> = readings.iter().map(|r| r.sensor_id.as_str()).collect();
        assert_eq!(ids, want);
    }

    #[test]
    fn pathological_readings_still_fit() {
        let huge = "\u{1}".repeat(20_000);
        let reading = Reading {
            sensor_id: format!("x{huge}"),
            ts: at(0),
            values: Values::Streetlight(Streetlight { fault: Some(huge.clone()), ..Streetlight::default() }),
            quality: Quality { level: QualityLevel::Bad, reasons: vec![huge.clone(); 100] },
        };
        let normal = &samples()[0];
        let payloads = encode(&[normal, &reading, normal]);
        let decoded: Vec<ChangedReading> = payloads
            .iter()
            .inspect(|p| assert!(p.len() <= MAX_PAYLOAD_BYTES, "{}", p.len()))
            .flat_map(|p| decode(p).unwrap())
            .collect();
        assert_eq!(decoded.len(), 3);
        assert!(decoded[1].sensor_id.starts_with('x'));
        assert!(decoded[1].values.contains_key("fault"));
    }

    #[test]
    fn sensor_ids_fall_back_to_reload_all() {
        assert_eq!(encode_sensor_ids(&["a", "b"]), r#"["a","b"]"#);
        assert_eq!(decode_sensor_ids(r#"["a","b"]"#).unwrap(), ["a", "b"]);
        let many: Vec<String> = (0..2_000).map(|i| format!("kh-fd-{i:04}")).collect();
        assert_eq!(encode_sensor_ids(&many), "[]");
        assert!(decode_sensor_ids("[]").unwrap().is_empty());
    }
}
