//! The platform's own format on `{prefix}/{kind}/{sensor_id}`: a JSON object, or
//! an array of them, with `ts` and the kind's column names in canonical units:
//! `{"ts": "2026-11-22T08:00:00+08:00", "level_m": 2.41}`.
//!
//! It is strict on purpose: an unknown key (`"level": 2.41`, a missing unit
//! suffix) rejects the reading with a reason rather than storing half of it.

use serde_json::{Map, Value};

use super::{field_value, DecodeContext, RawRecord, Records};
use crate::kind::{Field, Kind};
use crate::time;
use crate::DomainError;

pub fn decode(kind: Kind, sensor_id: &str, doc: &Value, ctx: &DecodeContext<'_>) -> Result<Records, DomainError> {
    match doc {
        Value::Object(object) => Ok(vec![record(kind, sensor_id, object, ctx)]),
        Value::Array(items) if items.is_empty() => Err(DomainError::NoReadings),
        Value::Array(items) => Ok(items
            .iter()
            .map(|item| match item {
                Value::Object(object) => record(kind, sensor_id, object, ctx),
                _ => Err(DomainError::MalformedPayload("array items must be JSON objects".into())),
            })
            .collect()),
        _ => Err(DomainError::MalformedPayload("expected a JSON object or an array of objects".into())),
    }
}

fn record(
    kind: Kind,
    sensor_id: &str,
    object: &Map<String, Value>,
    ctx: &DecodeContext<'_>,
) -> Result<RawRecord, DomainError> {
    let mut ts = None;
    let mut fields = Vec::with_capacity(object.len());
    for (key, value) in object {
        if key == "ts" {
            ts = Some(time::parse_json(value, ctx.tz)?);
            continue;
        }
        let field = Field::from_column(key)
            .filter(|f| f.kind() == kind)
            .ok_or_else(|| DomainError::UnknownField { field: truncate(key), context: format!("{kind} readings") })?;
        fields.push((field, field_value(field, value, None)?));
    }
    if fields.is_empty() {
        return Err(DomainError::NoReadings);
    }
    Ok(RawRecord { sensor_id: sensor_id.to_string(), kind, ts, fields, device: None })
}

fn truncate(s: &str) -> String {
    s.chars().take(64).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::DeviceProfiles;
    use crate::kind::FieldValue;
    use crate::registry::Registry;
    use chrono::{DateTime, Utc};
    use serde_json::json;

    fn decode_json(kind: Kind, doc: Value) -> Result<Records, DomainError> {
        let registry = Registry::default();
        let profiles = DeviceProfiles::default();
        let ctx = DecodeContext::new(&registry, &profiles, chrono_tz::Asia::Taipei, Utc::now());
        decode(kind, "kh-wl-0012", &doc, &ctx)
    }

    #[test]
    fn reads_one_reading_or_many() {
        let one = decode_json(Kind::WaterLevel, json!({"ts": "2026-11-22T08:00:00+08:00", "level_m": 2.41})).unwrap();
        let record = one[0].as_ref().unwrap();
        assert_eq!(record.ts, Some("2026-11-22T00:00:00Z".parse::<DateTime<Utc>>().unwrap()));
        assert_eq!(record.fields, vec![(Field::LevelM, FieldValue::Number(2.41))]);

        let many = decode_json(
            Kind::Rainfall,
            json!([
                {"ts": 1795305600, "rain_mm": 0.5, "interval_s": 600},
                {"ts": 1795392600, "rain_tips": 3}
            ]),
        )
        .unwrap();
        assert_eq!(many.len(), 2);
        assert!(many.iter().all(Result::is_ok));
    }

    #[test]
    fn rejects_keys_and_types_that_are_not_the_contract() {
        let reason = |kind, doc| decode_json(kind, doc).and_then(|mut r| r.remove(0)).unwrap_err().reason().as_str();
        assert_eq!(reason(Kind::WaterLevel, json!({"ts": 0, "level": 2.4})), "unknown_field");
        assert_eq!(reason(Kind::WaterLevel, json!({"ts": 0, "depth_cm": 2.4})), "unknown_field");
        assert_eq!(reason(Kind::WaterLevel, json!({"ts": 0, "level_m": "2.4"})), "invalid_value");
        assert_eq!(reason(Kind::Rainfall, json!({"rain_mm": 1, "interval_s": 60.5})), "invalid_value");
        assert_eq!(reason(Kind::Streetlight, json!({"lamp_on": 1})), "invalid_value");
        assert_eq!(reason(Kind::WaterLevel, json!({"ts": "soon", "level_m": 1})), "invalid_timestamp");
        assert_eq!(reason(Kind::WaterLevel, json!({"ts": 0})), "no_readings");
        assert_eq!(reason(Kind::WaterLevel, json!([])), "no_readings");
        assert_eq!(reason(Kind::WaterLevel, json!(42)), "malformed_payload");
        assert_eq!(reason(Kind::WaterLevel, json!([1])), "malformed_payload");
    }

    #[test]
    fn one_bad_item_leaves_the_others() {
        let records =
            decode_json(Kind::FloodDepth, json!([{"depth_cm": 3}, {"depth_cm": true}, {"depth_cm": 5}])).unwrap();
        assert_eq!(records.iter().filter(|r| r.is_ok()).count(), 2);
    }
}
