//! SenML JSON packs (RFC 8428): on `{prefix}/senml/{source}`, or on any topic
//! when the MQTT 5 content type is `application/senml+json` or the payload is
//! shaped like a pack (see [`looks_like_senml`]).
//!
//! Base fields (`bn`, `bt`, `bu`, `bv`, `bs`, `bver`) apply to their record and
//! every later one until replaced; a record's name is `bn + n`, its time
//! `bt + t` (values below 2^28 are relative to now, i.e. to the receive time),
//! its value `bv + v`. A full name is `{sensor}/{field}` (or
//! `{sensor}:{field}`, as in RFC 8428's `urn:dev:ow:10e2073a01080063:temp`);
//! the field is a column name or a short alias (`level`, `pm2_5`, `temp`,
//! `humidity`, `rain`...), converted from the record's unit. A name that is a
//! sensor by itself (`urn:dev:ow:10e2073a01080063` with `"u": "Cel"`) takes
//! the field its unit implies for the sensor's kind. The sensor part is
//! resolved through the registry ([`Registry::lookup_name`]): its id, an
//! alias, a configured URN prefix and its id, or a device URN carrying its
//! EUI. On a sensor's own topic, a name without a sensor part is a field of
//! that sensor. A sum (`s`) on a rain field is a cumulative counter; an
//! update time (`ut`) on interval rain is its interval. Records of one sensor
//! at one time become one reading; a pack may carry many sensors and times.
//!
//! Packs are the bulk path, so records are read into a typed struct that
//! borrows from the payload; a record that does not fit it (a wrong type) is
//! read again generically to say exactly what is wrong with it.

use crate::FastHashMap as HashMap;
use std::borrow::Cow;

use chrono::{DateTime, Duration, Utc};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::{field_scalar, DecodeContext, RawRecord, Records, Scalar};
use crate::kind::{Field, FieldValue, Kind};
use crate::registry::{validate_sensor_id, NamedSensor};
use crate::time;
use crate::unit::Unit;
use crate::DomainError;

/// SenML versions up to this one are understood (RFC 8428 is version 10).
const SUPPORTED_VERSION: f64 = 10.0;
/// RFC 8428 section 4.5.3: times below 2^28 seconds are relative to now.
const RELATIVE_TIME_LIMIT: f64 = 268_435_456.0;

/// One record's fields, from either reading of it.
#[derive(Debug, Default, Deserialize)]
struct Fields<'a> {
    #[serde(borrow)]
    bn: Option<Cow<'a, str>>,
    bt: Option<f64>,
    #[serde(borrow)]
    bu: Option<Cow<'a, str>>,
    bv: Option<f64>,
    bs: Option<f64>,
    bver: Option<f64>,
    #[serde(borrow)]
    n: Option<Cow<'a, str>>,
    #[serde(borrow)]
    u: Option<Cow<'a, str>>,
    v: Option<f64>,
    #[serde(borrow)]
    vs: Option<Cow<'a, str>>,
    vb: Option<bool>,
    vd: Option<serde::de::IgnoredAny>,
    s: Option<f64>,
    t: Option<f64>,
    ut: Option<f64>,
}

impl<'a> Fields<'a> {
    /// The generic reading: names the field whose type is wrong.
    fn from_object(record: &'a Map<String, Value>) -> Result<Fields<'a>, DomainError> {
        let text = |key: &str| -> Result<Option<Cow<'a, str>>, DomainError> {
            match record.get(key) {
                None => Ok(None),
                Some(Value::String(s)) => Ok(Some(Cow::Borrowed(s.as_str()))),
                Some(_) => Err(DomainError::invalid(key, "expected a string")),
            }
        };
        let number = |key: &str| -> Result<Option<f64>, DomainError> {
            match record.get(key) {
                None => Ok(None),
                Some(v) => v.as_f64().map(Some).ok_or_else(|| DomainError::invalid(key, "expected a number")),
            }
        };
        let vb = match record.get("vb") {
            None => None,
            Some(v) => Some(v.as_bool().ok_or_else(|| DomainError::invalid("vb", "expected true or false"))?),
        };
        Ok(Fields {
            bn: text("bn")?,
            bt: number("bt")?,
            bu: text("bu")?,
            bv: number("bv")?,
            bs: number("bs")?,
            bver: number("bver")?,
            n: text("n")?,
            u: text("u")?,
            v: number("v")?,
            vs: text("vs")?,
            vb,
            vd: record.get("vd").map(|_| serde::de::IgnoredAny),
            s: number("s")?,
            t: number("t")?,
            ut: number("ut")?,
        })
    }
}

/// Base values in force; owned, as they outlive the record that set them.
#[derive(Default)]
struct Base {
    name: String,
    time: f64,
    unit: Option<String>,
    value: f64,
    sum: f64,
}

pub fn decode(payload: &[u8], ctx: &DecodeContext<'_>) -> Result<Records, DomainError> {
    // Fields that end in `_` must be understood, or the whole pack rejected.
    // Only a payload with `_"` in it can have one, so most packs skip this.
    let must_check = payload.windows(2).any(|w| w == b"_\"");
    // The common case in one pass: every record reads as typed fields. Any
    // failure reads the pack again record by record, which keeps the good
    // records and names what is wrong in the others.
    if !must_check {
        if let Ok(records) = serde_json::from_slice::<Vec<Fields<'_>>>(payload) {
            if records.is_empty() {
                return Err(DomainError::NoReadings);
            }
            let mut pack = Pack::with_capacity(records.len());
            for fields in &records {
                pack.add(fields, ctx);
            }
            return Ok(pack.out);
        }
    }
    let raw_pack: Vec<&RawValue> = serde_json::from_slice(payload).map_err(|e| {
        if e.is_data() {
            DomainError::MalformedPayload("a SenML pack is a JSON array of records".into())
        } else {
            DomainError::MalformedPayload(e.to_string())
        }
    })?;
    if raw_pack.is_empty() {
        return Err(DomainError::NoReadings);
    }
    if must_check {
        must_understand(&raw_pack)?;
    }
    let mut pack = Pack::with_capacity(raw_pack.len());
    for raw in raw_pack {
        let generic: Value;
        let fields = match serde_json::from_str::<Fields<'_>>(raw.get()) {
            Ok(fields) => fields,
            Err(_) => {
                generic = serde_json::from_str(raw.get()).unwrap_or(Value::Null);
                match generic.as_object().map(Fields::from_object) {
                    Some(Ok(fields)) => fields,
                    Some(Err(e)) => {
                        pack.error(e);
                        continue;
                    }
                    None => {
                        pack.error(DomainError::MalformedPayload("SenML records must be JSON objects".into()));
                        continue;
                    }
                }
            }
        };
        pack.add(&fields, ctx);
    }
    Ok(pack.out)
}

/// A pack's records as they are resolved, in order.
struct Pack {
    base: Base,
    out: Records,
    /// Readings by time; records of several sensors at one time are chained.
    by_time: HashMap<DateTime<Utc>, usize>,
    same_time: Vec<Option<usize>>,
    /// Readings whose interval came from `ut`: an explicit interval replaces it.
    interval_from_ut: Vec<bool>,
}

impl Pack {
    fn with_capacity(records: usize) -> Pack {
        Pack {
            base: Base::default(),
            out: Vec::with_capacity(records),
            by_time: HashMap::with_capacity_and_hasher(records, Default::default()),
            same_time: Vec::with_capacity(records),
            interval_from_ut: Vec::new(),
        }
    }

    fn error(&mut self, error: DomainError) {
        push_error(&mut self.out, &mut self.same_time, error);
    }

    fn add(&mut self, fields: &Fields<'_>, ctx: &DecodeContext<'_>) {
        if let Err(e) = update_base(&mut self.base, fields) {
            return self.error(e);
        }
        let Entry { sensor_id, field, ts, value, interval } = match entry(&self.base, fields, ctx) {
            Ok(entry) => entry,
            Err(e) => return self.error(e),
        };
        let out = &mut self.out;
        let mut slot = self.by_time.get(&ts).copied();
        let mut existing = None;
        while let Some(i) = slot {
            if matches!(&out[i], Ok(r) if r.sensor_id == sensor_id) {
                existing = Some(i);
                break;
            }
            slot = self.same_time[i];
        }
        let index = match existing {
            Some(i) => match out[i].as_mut() {
                Ok(record) if record.kind == field.kind() => {
                    if field == Field::IntervalS && self.interval_from_ut.get(i).copied().unwrap_or(false) {
                        record.fields.retain(|(f, _)| *f != Field::IntervalS);
                        self.interval_from_ut[i] = false;
                    }
                    record.fields.push((field, value));
                    i
                }
                Ok(record) => {
                    let problem = format!("sensor `{sensor_id}` also sends {} fields in this pack", record.kind);
                    return self.error(DomainError::invalid(field.name(), problem));
                }
                Err(_) => return, // only records that decoded are matched
            },
            None => {
                self.same_time.push(self.by_time.insert(ts, out.len()));
                out.push(Ok(RawRecord {
                    sensor_id: sensor_id.into_owned(),
                    kind: field.kind(),
                    ts: Some(ts),
                    fields: vec![(field, value)],
                    device: None,
                }));
                out.len() - 1
            }
        };
        if let (Some(interval), Ok(record)) = (interval, self.out[index].as_mut()) {
            if !record.fields.iter().any(|(f, _)| *f == Field::IntervalS) {
                record.fields.push((Field::IntervalS, interval));
                if self.interval_from_ut.len() <= index {
                    self.interval_from_ut.resize(index + 1, false);
                }
                self.interval_from_ut[index] = true;
            }
        }
    }
}

/// The SenML media type (RFC 8428 section 12.3), as an MQTT 5 content type.
pub const CONTENT_TYPE: &str = "application/senml+json";

/// Whether a payload is shaped like a SenML pack: a JSON array whose first
/// record is an object with a name (`n`) or a base name (`bn`). Canonical
/// JSON arrays never have those keys, and only the first record is read.
pub fn looks_like_senml(payload: &[u8]) -> bool {
    #[derive(Deserialize)]
    struct Probe {
        n: Option<serde::de::IgnoredAny>,
        bn: Option<serde::de::IgnoredAny>,
    }
    let Some(rest) = trim_start(payload).strip_prefix(b"[") else { return false };
    let rest = trim_start(rest);
    if !rest.starts_with(b"{") {
        return false;
    }
    matches!(
        serde_json::Deserializer::from_slice(rest).into_iter::<Probe>().next(),
        Some(Ok(probe)) if probe.n.is_some() || probe.bn.is_some()
    )
}

fn trim_start(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|b| !b.is_ascii_whitespace()).unwrap_or(bytes.len());
    &bytes[start..]
}

fn push_error(out: &mut Records, same_time: &mut Vec<Option<usize>>, error: DomainError) {
    out.push(Err(error));
    same_time.push(None);
}

fn must_understand(pack: &[&RawValue]) -> Result<(), DomainError> {
    for raw in pack {
        if let Ok(Value::Object(record)) = serde_json::from_str::<Value>(raw.get()) {
            if let Some(key) = record.keys().find(|k| k.ends_with('_')) {
                return Err(DomainError::UnknownField {
                    field: key.chars().take(64).collect(),
                    context: "SenML (must-understand)".into(),
                });
            }
        }
    }
    Ok(())
}

fn update_base(base: &mut Base, record: &Fields<'_>) -> Result<(), DomainError> {
    if let Some(version) = record.bver {
        if !(1.0..=SUPPORTED_VERSION).contains(&version) {
            return Err(DomainError::invalid("bver", format!("SenML version {version} is not supported")));
        }
    }
    if let Some(name) = &record.bn {
        base.name.clear();
        base.name.push_str(name);
    }
    if let Some(time) = record.bt {
        base.time = time;
    }
    if let Some(unit) = &record.bu {
        base.unit = Some(unit.to_string());
    }
    if let Some(value) = record.bv {
        base.value = value;
    }
    if let Some(sum) = record.bs {
        base.sum = sum;
    }
    Ok(())
}

/// Splits `base + n` at its last `/` (or, without one, its last `:`) into
/// sensor id and field name, borrowing whatever does not straddle the two.
fn split_name<'a>(base: &'a str, n: &'a str) -> Option<(Cow<'a, str>, Cow<'a, str>)> {
    let find = |sep: char| n.rfind(sep).map(|i| base.len() + i).or_else(|| base.rfind(sep));
    let at = find('/').or_else(|| find(':'))?;
    let sensor = if at <= base.len() {
        Cow::Borrowed(&base[..at])
    } else {
        Cow::Owned(format!("{base}{}", &n[..at - base.len()]))
    };
    let field = if at >= base.len() {
        Cow::Borrowed(&n[at - base.len() + 1..])
    } else {
        Cow::Owned(format!("{}{n}", &base[at + 1..]))
    };
    Some((sensor, field))
}

/// One record, resolved.
struct Entry<'a> {
    sensor_id: Cow<'a, str>,
    field: Field,
    ts: DateTime<Utc>,
    value: FieldValue,
    /// The interval a rain record's update time (`ut`) gives.
    interval: Option<FieldValue>,
}

/// The sensor a record's name means, the field it names (`None`: the name is
/// the sensor alone), and the sensor's kind where known.
type Named<'a> = (Cow<'a, str>, Option<Cow<'a, str>>, Option<Kind>);

fn name<'a>(base: &'a str, n: &'a str, ctx: &DecodeContext<'a>) -> Result<Named<'a>, DomainError> {
    let own = ctx.own_sensor;
    // A sensor id has no `/`, so only a name without one can be a sensor alone.
    if !base.contains('/') && !n.contains('/') {
        let full: Cow<'a, str> = if base.is_empty() {
            Cow::Borrowed(n)
        } else if n.is_empty() {
            Cow::Borrowed(base)
        } else {
            Cow::Owned(format!("{base}{n}"))
        };
        match own {
            Some((kind, id)) if full.is_empty() || full == id => return Ok((Cow::Borrowed(id), None, Some(kind))),
            _ => {}
        }
        if let NamedSensor::Registered(sensor) = ctx.registry.lookup_name(&full, ctx.urn_prefixes) {
            return Ok((Cow::Borrowed(sensor.id.as_str()), None, Some(sensor.kind)));
        }
    }
    if let Some((sensor, field)) = split_name(base, n).filter(|(_, f)| !f.is_empty()) {
        let (id, kind) = match ctx.registry.lookup_name(&sensor, ctx.urn_prefixes) {
            NamedSensor::Registered(s) => (Cow::Borrowed(s.id.as_str()), Some(s.kind)),
            NamedSensor::Unregistered(id) => (Cow::Owned(id), None),
            NamedSensor::AsIs => (sensor, None),
        };
        let kind = kind.or(own.filter(|(_, own_id)| *own_id == id).map(|(k, _)| k));
        return Ok((id, Some(field), kind));
    }
    if let Some((kind, id)) = own {
        let field = if base.is_empty() { Cow::Borrowed(n) } else { Cow::Owned(format!("{base}{n}")) };
        return Ok((Cow::Borrowed(id), Some(field), Some(kind)));
    }
    Err(DomainError::invalid("n", format!("name `{}` is not `<sensor_id>/<field>`", truncate(&format!("{base}{n}")))))
}

/// The one column of `kind` a unit can express (a depth sensor sending `mm`
/// means `depth_cm`), for a record named by its sensor alone.
fn field_by_unit(sensor_id: &str, kind: Option<Kind>, unit: Option<Unit>) -> Result<Field, DomainError> {
    let missing = |why: String| DomainError::invalid("n", format!("name `{}` {why}", truncate(sensor_id)));
    let kind =
        kind.ok_or_else(|| missing("names no field, and the sensor is not registered to tell its kind".into()))?;
    let unit = unit.ok_or_else(|| missing("names no field and the record has no unit to tell it by".into()))?;
    let mut columns =
        kind.columns().iter().copied().filter(|f| {
            *f != Field::IntervalS && f.canonical_unit().is_some_and(|c| c.dimension() == unit.dimension())
        });
    match (columns.next(), columns.next()) {
        (Some(field), None) => Ok(field),
        (Some(_), Some(_)) => Err(missing(format!("names no field, and `{unit}` fits several {kind} columns"))),
        (None, _) => Err(DomainError::IncompatibleUnit {
            unit: unit.symbol().to_string(),
            field: kind.to_string(),
            canonical: "a unit of one of its columns".into(),
        }),
    }
}

fn entry<'a>(base: &'a Base, record: &'a Fields<'_>, ctx: &DecodeContext<'a>) -> Result<Entry<'a>, DomainError> {
    let n = record.n.as_deref().unwrap_or("");
    let (sensor_id, field_name, kind) = name(&base.name, n, ctx)?;
    validate_sensor_id(&sensor_id)?;
    let unit = record.u.as_deref().or(base.unit.as_deref()).filter(|u| !u.is_empty()).map(Unit::parse).transpose()?;
    let mut field = match &field_name {
        Some(name) => Field::from_name_or_alias(name)
            .ok_or_else(|| DomainError::UnknownField { field: truncate(name), context: "SenML records".into() })?,
        None => field_by_unit(&sensor_id, kind, unit)?,
    };

    let time = base.time + record.t.unwrap_or(0.0);
    let ts = if time < RELATIVE_TIME_LIMIT {
        // Relative to now; a huge negative offset must not overflow.
        // (`as` saturates; any i64 of microseconds is a valid duration.)
        let offset = Duration::microseconds((time * 1e6).round() as i64);
        let ts = ctx.received_at.checked_add_signed(offset);
        time::in_range(ts.ok_or_else(|| DomainError::InvalidTimestamp(format!("relative time {time} s")))?)?
    } else {
        time::from_epoch(time)?
    };

    let scalar = if let Some(v) = record.v {
        Scalar::Number(base.value + v)
    } else if let Some(s) = record.s {
        // A sum is a running total: for rain, the gauge's cumulative counter.
        if field == Field::RainMm {
            field = Field::RainCounterMm;
        } else if field != Field::RainCounterMm && field != Field::EnergyKwh {
            return Err(DomainError::invalid(field.name(), "a SenML sum (`s`) is only understood for rain and energy"));
        }
        Scalar::Number(base.sum + s)
    } else if let Some(vb) = record.vb {
        Scalar::Bool(vb)
    } else if let Some(vs) = &record.vs {
        Scalar::Text(vs)
    } else if record.vd.is_some() {
        return Err(DomainError::invalid(field.name(), "SenML data values (`vd`) are not readings"));
    } else {
        return Err(DomainError::invalid(field.name(), "SenML record has no value"));
    };
    let value = field_scalar(field, scalar, unit)?;
    // RFC 8428 `ut`: the most time before the sensor sends an update; for rain
    // in an interval (not a counter), the interval the amount covers.
    let interval = match record.ut {
        Some(ut) if matches!(field, Field::RainMm | Field::RainTips) => {
            if !(1.0..=f64::from(i32::MAX)).contains(&ut.round()) {
                return Err(DomainError::invalid("ut", format!("an update time of {ut} s is not a rain interval")));
            }
            Some(FieldValue::Number(ut.round()))
        }
        _ => None,
    };
    Ok(Entry { sensor_id, field, ts, value, interval })
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
        let ctx = DecodeContext::new(&registry, &profiles, chrono_tz::Asia::Taipei, received_at);
        decode(doc.to_string().as_bytes(), &ctx)
    }

    #[test]
    fn names_split_like_the_concatenation() {
        let cases = [
            ("kh-aq-0007/", "pm2_5", "kh-aq-0007", "pm2_5"),
            ("", "kh-aq-0007/pm2_5", "kh-aq-0007", "pm2_5"),
            ("kh-aq-0007/pm", "2_5", "kh-aq-0007", "pm2_5"),
            ("kh", "-aq-0007/pm2_5", "kh-aq-0007", "pm2_5"),
            ("urn:dev:ow:10e2:", "temp", "urn:dev:ow:10e2", "temp"),
            ("kh-wl-0001/", "a:b", "kh-wl-0001", "a:b"),
            ("kh-wl-0001/level", "", "kh-wl-0001", "level"),
        ];
        for (base, n, sensor, field) in cases {
            let (s, f) = split_name(base, n).unwrap();
            assert_eq!((s.as_ref(), f.as_ref()), (sensor, field), "{base} + {n}");
        }
        assert!(split_name("nosep", "either").is_none());
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
    fn absurd_relative_times_are_refused_not_a_panic() {
        for t in [-1e13, -1e300, -9.2e12, -5.0e9] {
            let records = run(json!([{"n": "kh-wl-0001/level", "v": 1, "t": t}])).unwrap();
            assert_eq!(records[0].as_ref().unwrap_err().reason().as_str(), "invalid_timestamp", "t = {t}");
        }
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
