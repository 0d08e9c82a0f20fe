//! SenML JSON packs (RFC 8428) on `{prefix}/senml/{source}`.
//!
//! Base fields (`bn`, `bt`, `bu`, `bv`, `bs`, `bver`) apply to their record and
//! every later one until replaced; a record's name is `bn + n`, its time
//! `bt + t` (values below 2^28 are relative to now, i.e. to the receive time),
//! its value `bv + v`. A full name is `{sensor_id}/{field}` (or
//! `{sensor_id}:{field}`); the field is a column name or a short alias
//! (`level`, `pm2_5`, `temp`...), converted from the record's unit. A sum
//! (`s`) on a rain field is a cumulative counter. Records of one sensor at one
//! time become one reading; a pack may carry many sensors and times.

use std::collections::HashMap;

use chrono::{DateTime, Duration, Utc};
use serde_json::{Map, Value};

use super::{field_value, DecodeContext, RawRecord, Records};
use crate::kind::{Field, FieldValue};
use crate::registry::validate_sensor_id;
use crate::time;
use crate::unit::Unit;
use crate::DomainError;

/// SenML versions up to this one are understood (RFC 8428 is version 10).
const SUPPORTED_VERSION: f64 = 10.0;
/// RFC 8428 section 4.5.3: times below 2^28 seconds are relative to now.
const RELATIVE_TIME_LIMIT: f64 = 268_435_456.0;

#[derive(Default)]
struct Base<'a> {
    name: &'a str,
    time: f64,
    unit: Option<&'a str>,
    value: f64,
    sum: f64,
}

pub fn decode(doc: &Value, ctx: &DecodeContext<'_>) -> Result<Records, DomainError> {
    let pack = match doc {
        Value::Array(pack) if pack.is_empty() => return Err(DomainError::NoReadings),
        Value::Array(pack) => pack,
        _ => return Err(DomainError::MalformedPayload("a SenML pack is a JSON array of records".into())),
    };
    // Fields that end in `_` must be understood, or the whole pack rejected.
    for record in pack.iter().filter_map(Value::as_object) {
        if let Some(key) = record.keys().find(|k| k.ends_with('_')) {
            return Err(DomainError::UnknownField {
                field: key.chars().take(64).collect(),
                context: "SenML (must-understand)".into(),
            });
        }
    }
    let mut base = Base::default();
    let mut out: Records = Vec::new();
    let mut index: HashMap<(String, DateTime<Utc>), usize> = HashMap::new();
    for record in pack {
        let Some(record) = record.as_object() else {
            out.push(Err(DomainError::MalformedPayload("SenML records must be JSON objects".into())));
            continue;
        };
        if let Err(e) = update_base(&mut base, record) {
            out.push(Err(e));
            continue;
        }
        match entry(&base, record, ctx) {
            Ok((sensor_id, field, ts, value)) => {
                let key = (sensor_id, ts);
                match index.get(&key).and_then(|&i| out[i].as_mut().ok()) {
                    Some(existing) if existing.kind == field.kind() => existing.fields.push((field, value)),
                    Some(existing) => {
                        let problem = format!("sensor `{}` also sends {} fields in this pack", key.0, existing.kind);
                        out.push(Err(DomainError::invalid(field.name(), problem)));
                    }
                    None => {
                        index.insert(key.clone(), out.len());
                        out.push(Ok(RawRecord {
                            sensor_id: key.0,
                            kind: field.kind(),
                            ts: Some(ts),
                            fields: vec![(field, value)],
                            device: None,
                        }));
                    }
                }
            }
            Err(e) => out.push(Err(e)),
        }
    }
    Ok(out)
}

fn update_base<'a>(base: &mut Base<'a>, record: &'a Map<String, Value>) -> Result<(), DomainError> {
    if let Some(v) = record.get("bver") {
        match v.as_f64() {
            Some(version) if (1.0..=SUPPORTED_VERSION).contains(&version) => {}
            _ => return Err(DomainError::invalid("bver", format!("SenML version {v} is not supported"))),
        }
    }
    if let Some(v) = record.get("bn") {
        base.name = v.as_str().ok_or_else(|| DomainError::invalid("bn", "expected a string"))?;
    }
    if let Some(v) = record.get("bt") {
        base.time = number(v, "bt")?;
    }
    if let Some(v) = record.get("bu") {
        base.unit = Some(v.as_str().ok_or_else(|| DomainError::invalid("bu", "expected a string"))?);
    }
    if let Some(v) = record.get("bv") {
        base.value = number(v, "bv")?;
    }
    if let Some(v) = record.get("bs") {
        base.sum = number(v, "bs")?;
    }
    Ok(())
}

fn entry(
    base: &Base<'_>,
    record: &Map<String, Value>,
    ctx: &DecodeContext<'_>,
) -> Result<(String, Field, DateTime<Utc>, FieldValue), DomainError> {
    let n = match record.get("n") {
        Some(v) => v.as_str().ok_or_else(|| DomainError::invalid("n", "expected a string"))?,
        None => "",
    };
    let name = format!("{}{n}", base.name);
    let (sensor_id, field_name) =
        name.rsplit_once('/').or_else(|| name.rsplit_once(':')).filter(|(_, f)| !f.is_empty()).ok_or_else(|| {
            DomainError::invalid("n", format!("name `{}` is not `<sensor_id>/<field>`", truncate(&name)))
        })?;
    validate_sensor_id(sensor_id)?;
    let mut field = Field::from_name_or_alias(field_name)
        .ok_or_else(|| DomainError::UnknownField { field: truncate(field_name), context: "SenML records".into() })?;

    let t = match record.get("t") {
        Some(v) => number(v, "t")?,
        None => 0.0,
    };
    let time = base.time + t;
    let ts = if time < RELATIVE_TIME_LIMIT {
        let micros = (time * 1e6).round();
        ctx.received_at + Duration::microseconds(micros as i64)
    } else {
        time::from_epoch(time)?
    };

    let unit = match record.get("u") {
        Some(v) => Some(v.as_str().ok_or_else(|| DomainError::invalid("u", "expected a string"))?),
        None => base.unit,
    };
    let unit = unit.filter(|u| !u.is_empty()).map(Unit::parse).transpose()?;

    let value = if let Some(v) = record.get("v") {
        Value::from(base.value + number(v, "v")?)
    } else if let Some(s) = record.get("s") {
        // A sum is a running total: for rain, the gauge's cumulative counter.
        if field == Field::RainMm {
            field = Field::RainCounterMm;
        } else if field != Field::RainCounterMm && field != Field::EnergyKwh {
            return Err(DomainError::invalid(field.name(), "a SenML sum (`s`) is only understood for rain and energy"));
        }
        Value::from(base.sum + number(s, "s")?)
    } else if let Some(vb) = record.get("vb") {
        vb.clone()
    } else if let Some(vs) = record.get("vs") {
        vs.clone()
    } else if record.contains_key("vd") {
        return Err(DomainError::invalid(field.name(), "SenML data values (`vd`) are not readings"));
    } else {
        return Err(DomainError::invalid(field.name(), "SenML record has no value"));
    };
    let value = field_value(field, &value, unit)?;
    Ok((sensor_id.to_string(), field, ts, value))
}

fn number(v: &Value, key: &str) -> Result<f64, DomainError> {
    v.as_f64().ok_or_else(|| DomainError::invalid(key, "expected a number"))
}

fn truncate(s: &str) -> String {
    s.chars().take(64).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::DeviceProfiles;
    use crate::kind::Kind;
    use crate::registry::Registry;
    use serde_json::json;

    fn run(doc: Value) -> Result<Records, DomainError> {
        let registry = Registry::default();
        let profiles = DeviceProfiles::default();
        let received_at = "2026-11-22T00:00:00Z".parse().unwrap();
        let ctx = DecodeContext { registry: &registry, profiles: &profiles, tz: chrono_tz::Asia::Taipei, received_at };
        decode(&doc, &ctx)
    }

    fn ok(records: Records) -> Vec<RawRecord> {
        records.into_iter().map(Result::unwrap).collect()
    }

    #[test]
    fn resolves_base_name_time_and_unit_rfc8428_style() {
        // Shaped after RFC 8428 section 5.1.2: base values, several records.
        let records = ok(run(json!([
            {"bn": "kh-aq-0007/", "bt": 1.7953056e9, "bu": "ug/m3", "n": "pm2_5", "v": 35.2},
            {"n": "pm10", "v": 51},
            {"n": "temp", "u": "Cel", "v": 27.5},
            {"n": "rh", "u": "%RH", "v": 81},
            {"n": "pm2_5", "t": 60, "v": 36.0}
        ]))
        .unwrap());
        assert_eq!(records.len(), 2, "two times, one reading each");
        let first = &records[0];
        assert_eq!(first.sensor_id, "kh-aq-0007");
        assert_eq!(first.kind, Kind::AirQuality);
        assert_eq!(first.ts.unwrap().timestamp(), 1_795_305_600);
        assert_eq!(first.fields.len(), 4);
        assert_eq!(records[1].ts.unwrap().timestamp(), 1_795_305_660);
    }

    #[test]
    fn converts_units_and_splits_sensors() {
        let records = ok(run(json!([
            {"bn": "kh-wl-0001/", "n": "level", "u": "cm", "v": 241, "t": 1.7953056e9},
            {"bn": "kh-fd-0002/", "n": "depth", "u": "mm", "v": 120, "t": 1.7953056e9},
            {"bn": "kh-sl-000001/", "n": "lamp", "vb": true, "t": 1.7953056e9},
            {"n": "power", "u": "kW", "v": 0.12, "t": 1.7953056e9}
        ]))
        .unwrap());
        assert_eq!(records[0].fields, vec![(Field::LevelM, FieldValue::Number(2.41))]);
        assert_eq!(records[1].fields, vec![(Field::DepthCm, FieldValue::Number(12.0))]);
        assert_eq!(
            records[2].fields,
            vec![(Field::LampOn, FieldValue::Bool(true)), (Field::PowerW, FieldValue::Number(120.0))]
        );
    }

    #[test]
    fn relative_times_count_from_the_receive_time() {
        let records = ok(run(json!([{"n": "kh-rg-0001/rain", "u": "mm", "v": 2.5, "t": -600}])).unwrap());
        assert_eq!(records[0].ts.unwrap().to_rfc3339(), "2026-11-21T23:50:00+00:00");
    }

    #[test]
    fn a_sum_on_rain_is_a_counter() {
        let records =
            ok(run(json!([{"bn": "kh-rg-0002/", "bt": 1.7953056e9, "n": "rain", "u": "mm", "s": 112.5}])).unwrap());
        assert_eq!(records[0].fields, vec![(Field::RainCounterMm, FieldValue::Number(112.5))]);
    }

    #[test]
    fn bad_records_are_named_and_the_rest_kept() {
        let records = run(json!([
            {"bn": "kh-wl-0001/", "n": "level", "u": "Cel", "v": 2},
            {"n": "colour", "v": 2},
            {"n": "level", "v": "high"},
            {"n": "level", "u": "furlong", "v": 1},
            {"n": "level"},
            {"bn": "", "n": "nosensor", "v": 1},
            {"bn": "kh-wl-0001/", "n": "level", "v": 2.2}
        ]))
        .unwrap();
        let reasons: Vec<_> = records.iter().map(|r| r.as_ref().err().map(|e| e.reason().as_str())).collect();
        assert_eq!(
            reasons,
            [
                Some("invalid_unit"),
                Some("unknown_field"),
                Some("invalid_value"),
                Some("invalid_unit"),
                Some("invalid_value"),
                Some("invalid_value"),
                None
            ]
        );
    }

    #[test]
    fn must_understand_fields_reject_the_pack() {
        let err = run(json!([{"n": "kh-wl-0001/level", "v": 1, "foo_": 1}])).unwrap_err();
        assert_eq!(err.reason().as_str(), "unknown_field");
        assert_eq!(run(json!({"n": "x"})).unwrap_err().reason().as_str(), "malformed_payload");
        assert_eq!(run(json!([])).unwrap_err().reason().as_str(), "no_readings");
        let err = run(json!([{"bver": 11, "n": "kh-wl-0001/level", "v": 1}])).unwrap().remove(0).unwrap_err();
        assert_eq!(err.reason().as_str(), "invalid_value");
    }
}
