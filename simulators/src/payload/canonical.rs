//! Canonical JSON on `city/{kind}/{sensor_id}`: one object, or an array of
//! objects for loggers that upload several readings at once.

use serde_json::{Map, Value as Json};

use super::Message;
use crate::reading::{Reading, Value};
use crate::registry::Kind;
use crate::timefmt::TsStyle;

pub fn topic(kind: Kind, sensor_id: &str) -> String {
    format!("city/{}/{}", kind.as_str(), sensor_id)
}

/// A reading value as JSON (non-finite numbers, which JSON can't carry,
/// become null).
pub fn value_json(v: &Value) -> Json {
    match *v {
        Value::Num(x) => serde_json::Number::from_f64(x).map_or(Json::Null, Json::Number),
        Value::Int(x) => Json::from(x),
        Value::Bool(b) => Json::Bool(b),
        Value::Str(s) => Json::from(s),
        Value::Null => Json::Null,
    }
}

fn reading_json(r: &Reading, ts: TsStyle) -> Json {
    let mut obj = Map::new();
    obj.insert("ts".into(), ts.to_json(r.ts_ms));
    for (field, value) in &r.values {
        obj.insert(field.column().into(), value_json(value));
    }
    Json::Object(obj)
}

/// Encodes one sensor's readings: a bare object for one, an array for more.
pub fn encode(readings: &[Reading], ts: TsStyle) -> Vec<u8> {
    let json = match readings {
        [one] => reading_json(one, ts),
        many => Json::Array(many.iter().map(|r| reading_json(r, ts)).collect()),
    };
    serde_json::to_vec(&json).expect("JSON values serialise")
}

/// The message for `readings` of one sensor.
pub fn message(kind: Kind, readings: &[Reading], ts: TsStyle) -> Message {
    let id = &readings.first().expect("at least one reading").sensor_id;
    Message::new(topic(kind, id), encode(readings, ts))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reading::Field;

    #[test]
    fn single_reading_is_an_object_and_batches_are_arrays() {
        let mut r = Reading::new("kh-wl-0001".into(), 1_795_305_600_000);
        r.num(Field::LevelM, 2.41);
        let m = message(Kind::WaterLevel, std::slice::from_ref(&r), TsStyle::Rfc3339Taipei);
        assert_eq!(m.topic, "city/water_level/kh-wl-0001");
        let json: Json = serde_json::from_slice(&m.payload).unwrap();
        assert_eq!(json, serde_json::json!({"ts": "2026-11-22T08:00:00+08:00", "level_m": 2.41}));

        let mut r2 = r.clone();
        r2.ts_ms += 60_000;
        let json: Json = serde_json::from_slice(&encode(&[r, r2], TsStyle::EpochSeconds)).unwrap();
        assert_eq!(json.as_array().unwrap().len(), 2);
        assert_eq!(json[1]["ts"], 1_795_305_660);
    }

    #[test]
    fn streetlight_fault_null_and_bools_keep_their_types() {
        let mut r = Reading::new("kh-sl-000001".into(), 0);
        r.push(Field::LampOn, Value::Bool(true)).push(Field::Fault, Value::Null).num(Field::EnergyKwh, 1234.567);
        let json: Json = serde_json::from_slice(&encode(&[r], TsStyle::EpochMillis)).unwrap();
        assert_eq!(json["lamp_on"], true);
        assert!(json["fault"].is_null());
        assert_eq!(json["energy_kwh"], 1234.57);
    }
}
