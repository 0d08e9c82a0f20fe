//! SenML JSON packs (RFC 8428) on `city/senml/{gateway_id}`.
//!
//! A gateway batches records of several sensors and instants into one pack.
//! Record names are `{sensor_id}/{field}`, written as a base name `bn`
//! (`kh-aq-0007/`) plus a short `n`. Times are relative `t` to a base time
//! `bt`. Gateways differ in style (units, names, base time), chosen stably per
//! gateway, so the ingest normaliser sees every variant.

use serde_json::{Map, Value as Json};

use super::canonical::value_json;
use super::Message;
use crate::reading::{round_to, Reading, Value};
use crate::rng::fnv1a;

pub fn topic(gateway_id: &str) -> String {
    format!("city/senml/{gateway_id}")
}

/// How one gateway writes its packs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SenmlStyle {
    /// Use alternative units (level in cm, temperature in K, energy in Wh...).
    pub alt_units: bool,
    /// Name records by the canonical column (`level_m`) instead of the short
    /// name (`level`), where the unit is the canonical one.
    pub column_names: bool,
    /// Base time is the newest record (relative times <= 0) rather than the
    /// oldest (relative times >= 0).
    pub base_time_last: bool,
}

impl SenmlStyle {
    /// A stable style for a gateway, derived from its id.
    pub fn for_gateway(gateway_id: &str) -> Self {
        let h = fnv1a(gateway_id.as_bytes());
        Self { alt_units: h & 1 == 1, column_names: h & 6 == 6, base_time_last: h & 8 == 8 }
    }
}

/// Seconds as a JSON number: an integer when whole.
fn seconds_json(ms: i64) -> Json {
    if ms % 1000 == 0 {
        Json::from(ms / 1000)
    } else {
        Json::from(ms as f64 / 1000.0)
    }
}

/// Encodes readings (any sensors, any times) as one SenML pack.
pub fn encode_pack(readings: &[Reading], style: SenmlStyle) -> Vec<u8> {
    let times = readings.iter().map(|r| r.ts_ms);
    let bt_ms = if style.base_time_last { times.max() } else { times.min() }.unwrap_or(0);
    let mut records: Vec<Map<String, Json>> = Vec::new();
    let mut current_bn: Option<&str> = None;
    for r in readings {
        for (field, value) in &r.values {
            let (key, v) = match value {
                Value::Num(_) | Value::Int(_) => ("v", value),
                Value::Bool(_) => ("vb", value),
                Value::Str(_) => ("vs", value),
                // SenML has no null; "no fault" is simply not reported.
                Value::Null => continue,
            };
            let mut rec = Map::new();
            if current_bn != Some(&*r.sensor_id) {
                rec.insert("bn".into(), Json::from(format!("{}/", r.sensor_id)));
                current_bn = Some(&r.sensor_id);
            }
            let alt = style.alt_units.then(|| field.senml_alt_unit()).flatten();
            let name = match (alt, style.column_names) {
                (None, true) => field.column(),
                _ => field.senml_name(),
            };
            rec.insert("n".into(), Json::from(name));
            let (unit, json_value) = match (alt, v.as_f64()) {
                (Some((unit, scale, offset)), Some(x)) => {
                    // Keep the instrument's resolution through the conversion.
                    let shift = (-scale.log10().round() as i32).max(0) + if offset != 0.0 { 2 } else { 0 };
                    (Some(unit), Json::from(round_to(x * scale + offset, field.decimals() + shift)))
                }
                _ => (field.senml_unit(), value_json(v)),
            };
            if let Some(u) = unit {
                rec.insert("u".into(), Json::from(u));
            }
            if r.ts_ms != bt_ms {
                rec.insert("t".into(), seconds_json(r.ts_ms - bt_ms));
            }
            rec.insert(key.into(), json_value);
            records.push(rec);
        }
    }
    if let Some(first) = records.first_mut() {
        first.insert("bt".into(), seconds_json(bt_ms));
    }
    hoist_base_unit(&mut records);
    serde_json::to_vec(&records).expect("JSON values serialise")
}

/// When every record has the same unit, state it once as `bu` (what a
/// single-purpose gateway does) so the base-unit path is exercised too.
fn hoist_base_unit(records: &mut [Map<String, Json>]) {
    let first_unit = records.first().and_then(|r| r.get("u")).cloned();
    let Some(unit) = first_unit else { return };
    if records.len() > 1 && records.iter().all(|r| r.get("u") == Some(&unit)) {
        for r in records.iter_mut() {
            r.remove("u");
        }
        records[0].insert("bu".into(), unit);
    }
}

/// A gateway's pack as a message.
pub fn message(gateway_id: &str, readings: &[Reading], style: SenmlStyle) -> Message {
    Message::new(topic(gateway_id), encode_pack(readings, style))
}

/// One record after RFC 8428 §4.6 resolution.
#[derive(Debug, Clone, PartialEq)]
pub struct Resolved {
    /// `bn` + `n`, e.g. `kh-aq-0007/pm2_5`.
    pub name: String,
    /// Absolute time, epoch seconds.
    pub time_s: f64,
    pub unit: Option<String>,
    pub value: Json,
}

/// Resolves a pack: base fields carry forward until changed, `t` is relative
/// to `bt`. Used by tests and available to benchmarks that verify data.
pub fn resolve(pack: &Json) -> Result<Vec<Resolved>, String> {
    let records = pack.as_array().ok_or("a SenML pack is a JSON array")?;
    let (mut bn, mut bt, mut bu) = (String::new(), 0.0, None::<String>);
    let mut out = Vec::with_capacity(records.len());
    for rec in records {
        let rec = rec.as_object().ok_or("SenML records are objects")?;
        if let Some(v) = rec.get("bn") {
            bn = v.as_str().ok_or("bn must be a string")?.to_owned();
        }
        if let Some(v) = rec.get("bt") {
            bt = v.as_f64().ok_or("bt must be a number")?;
        }
        if let Some(v) = rec.get("bu") {
            bu = Some(v.as_str().ok_or("bu must be a string")?.to_owned());
        }
        let n = rec.get("n").and_then(Json::as_str).unwrap_or("");
        let t = rec.get("t").map_or(Some(0.0), Json::as_f64).ok_or("t must be a number")?;
        let unit = rec.get("u").and_then(Json::as_str).map(str::to_owned).or_else(|| bu.clone());
        let value = ["v", "vb", "vs", "vd"]
            .iter()
            .find_map(|k| rec.get(*k).cloned())
            .ok_or_else(|| format!("record {bn}{n} has no value"))?;
        out.push(Resolved { name: format!("{bn}{n}"), time_s: bt + t, unit, value });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reading::Field;
    use serde_json::json;

    /// A hand-written pack in the style of RFC 8428's examples.
    fn example_pack() -> Json {
        json!([
            {"bn": "kh-aq-0007/", "bt": 1_795_305_600, "bu": "ug/m3", "n": "pm2_5", "v": 23.1},
            {"n": "pm10", "v": 41.0},
            {"n": "temp", "u": "Cel", "t": 60, "v": 26.5},
            {"bn": "kh-dr-0002/", "n": "level", "u": "cm", "t": -120, "v": 83.0}
        ])
    }

    fn readings() -> Vec<Reading> {
        let t0 = 1_795_305_600_000;
        let mut a = Reading::new("kh-dr-0002".into(), t0);
        a.num(Field::LevelM, 0.83);
        let mut b = Reading::new("kh-dr-0002".into(), t0 + 300_000);
        b.num(Field::LevelM, 0.91);
        let mut c = Reading::new("kh-aq-0007".into(), t0 + 60_500);
        c.num(Field::Pm25, 23.1).num(Field::TempC, 26.5);
        vec![a, b, c]
    }

    #[test]
    fn relative_times_resolve_to_the_reading_times() {
        for base_time_last in [false, true] {
            for alt_units in [false, true] {
                let style = SenmlStyle { alt_units, column_names: false, base_time_last };
                let pack: Json = serde_json::from_slice(&encode_pack(&readings(), style)).unwrap();
                let resolved = resolve(&pack).unwrap();
                assert_eq!(resolved.len(), 4);
                let names: Vec<_> = resolved.iter().map(|r| r.name.as_str()).collect();
                assert_eq!(names, ["kh-dr-0002/level", "kh-dr-0002/level", "kh-aq-0007/pm2_5", "kh-aq-0007/temp"]);
                let times: Vec<_> = resolved.iter().map(|r| r.time_s).collect();
                assert_eq!(times, [1_795_305_600.0, 1_795_305_900.0, 1_795_305_660.5, 1_795_305_660.5]);
                let level = &resolved[1];
                match alt_units {
                    false => assert_eq!((level.unit.as_deref(), level.value.as_f64()), (Some("m"), Some(0.91))),
                    true => assert_eq!((level.unit.as_deref(), level.value.as_f64()), (Some("cm"), Some(91.0))),
                }
                let temp = &resolved[3];
                let expected = if alt_units { ("K", 299.65) } else { ("Cel", 26.5) };
                assert_eq!((temp.unit.as_deref().unwrap(), temp.value.as_f64().unwrap()), expected);
                // bn is only repeated when the sensor changes.
                assert_eq!(pack.as_array().unwrap().iter().filter(|r| r.get("bn").is_some()).count(), 2);
            }
        }
    }

    #[test]
    fn shared_units_are_hoisted_to_bu_and_example_resolves() {
        let pack: Json = serde_json::from_slice(&encode_pack(&readings()[..2], SenmlStyle::default())).unwrap();
        assert_eq!(pack[0]["bu"], "m");
        assert!(pack[1].get("u").is_none());
        assert_eq!(resolve(&pack).unwrap()[1].unit.as_deref(), Some("m"));
        let ex = resolve(&example_pack()).unwrap();
        assert_eq!(ex[1].unit.as_deref(), Some("ug/m3"));
        assert_eq!(ex[3].time_s, 1_795_305_480.0);
    }

    #[test]
    fn booleans_and_strings_use_vb_and_vs() {
        let mut r = Reading::new("kh-sl-000007".into(), 0);
        r.push(Field::LampOn, Value::Bool(false)).push(Field::Fault, Value::Str("lamp_failure"));
        r.push(Field::DimPct, Value::Int(0));
        let pack: Json = serde_json::from_slice(&encode_pack(&[r], SenmlStyle::default())).unwrap();
        assert_eq!(pack[0]["vb"], false);
        assert_eq!(pack[1]["vs"], "lamp_failure");
        assert!(pack[0].get("u").is_none());
        assert_eq!(pack[2]["u"], "%");
    }
}
