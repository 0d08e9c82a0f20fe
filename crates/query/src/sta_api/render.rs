//! JSON rendering: `@iot.id`, `@iot.selfLink`, navigation links, `$select`,
//! and the compact `dataArray` form of Observations.

use chrono::{DateTime, Utc};
use citygauge_sta::{EntityType, Path, Segment};
use serde_json::{json, Map, Value};

use super::exec::Row;
use super::model;

/// The `@iot.id` of a row.
pub fn id_value(et: EntityType, row: &Row) -> Value {
    match (et, row.us) {
        (EntityType::Observation, Some(us)) => Value::String(model::observation_id(row.id, us)),
        _ => Value::from(row.id),
    }
}

/// `Things(3)` or `Observations('49-1700000000000000')`.
pub fn self_path(et: EntityType, id: &Value) -> String {
    match id {
        Value::String(s) => format!("{}('{s}')", et.set_name()),
        other => format!("{}({other})", et.set_name()),
    }
}

fn selected(select: Option<&[Path]>, name: &str) -> bool {
    let Some(paths) = select else { return true };
    paths.iter().any(|p| match p.segments.first() {
        Some(Segment::Name(n)) => n == name || (name == "id" && n == "@iot.id"),
        _ => false,
    })
}

/// The entity as JSON: its properties (all, or those `$select`ed), its
/// id and links, and what was expanded.
pub fn entity(et: EntityType, row: &Row, base: &str, select: Option<&[Path]>) -> Map<String, Value> {
    let id = id_value(et, row);
    let self_link = format!("{base}/{}", self_path(et, &id));
    let mut out = Map::new();
    if selected(select, "id") {
        out.insert("@iot.id".into(), id);
        out.insert("@iot.selfLink".into(), Value::String(self_link.clone()));
    }
    for (k, v) in &row.doc {
        if selected(select, k) {
            out.insert(k.clone(), v.clone());
        }
    }
    for (name, target, _) in et.navigation() {
        if *target == EntityType::MultiDatastream || *name == "MultiDatastreams" {
            continue;
        }
        if selected(select, name) {
            out.insert(format!("{name}@iot.navigationLink"), Value::String(format!("{self_link}/{name}")));
        }
    }
    for (k, v) in &row.expanded {
        out.insert(k.clone(), v.clone());
    }
    out
}

/// An Observation as the API renders it, from its parts: the HTTP routes
/// use it for values from the latest-value cache, and it is the payload for
/// the MQTT extension's `v1.1/Datastreams(id)/Observations` topics.
/// `base` is the service root (`https://host/sta/v1.1`).
pub fn observation_json(
    base: &str,
    datastream: i64,
    ts: DateTime<Utc>,
    result: &Value,
    quality: &str,
    reasons: &[String],
    interval_s: Option<i64>,
) -> Map<String, Value> {
    let row = observation_row(datastream, ts, result, quality, reasons, interval_s);
    entity(EntityType::Observation, &row, base, None)
}

/// Every Observation one committed reading makes, as `(Datastream id, JSON)`:
/// one per published column with a value (see [`model::STREAMS`]). For the
/// MQTT extension: publish each on `v1.1/Datastreams(<id>)/Observations`,
/// for sensors that are public and active only. `sta_id` is the sensor's
/// `sensors.sta_id`; `values` its non-null columns by name.
pub fn observations_of_reading(
    base: &str,
    sta_id: i64,
    kind: citygauge_domain::Kind,
    ts: DateTime<Utc>,
    values: &Map<String, Value>,
    quality: &str,
    reasons: &[String],
) -> Vec<(i64, Map<String, Value>)> {
    let interval = values.get("interval_s").and_then(Value::as_i64);
    model::STREAMS
        .iter()
        .filter(|st| st.kind == kind)
        .filter_map(|st| {
            let value = values.get(st.column).filter(|v| !v.is_null())?;
            let ds = sta_id * model::IDS_PER_THING + st.index;
            let interval = if st.column == "rain_mm" { interval } else { None };
            Some((ds, observation_json(base, ds, ts, value, quality, reasons, interval)))
        })
        .collect()
}

/// The [`Row`] an Observation from the cache would have been read as.
pub fn observation_row(
    datastream: i64,
    ts: DateTime<Utc>,
    result: &Value,
    quality: &str,
    reasons: &[String],
    interval_s: Option<i64>,
) -> Row {
    let time = ts.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string();
    let mut doc = Map::new();
    doc.insert("phenomenonTime".into(), Value::String(time.clone()));
    doc.insert("resultTime".into(), Value::String(time));
    doc.insert("result".into(), as_postgres_prints(result));
    doc.insert("resultQuality".into(), json!({"quality": quality, "reasons": reasons}));
    if let Some(i) = interval_s {
        doc.insert("parameters".into(), json!({"interval_s": i}));
    }
    Row {
        parent: None,
        id: datastream,
        us: Some(ts.timestamp_micros()),
        doc,
        thing_id: Some(datastream / model::IDS_PER_THING),
        op_id: None,
        sensor_id: None,
        column: None,
        keys: Vec::new(),
        expanded: Map::new(),
    }
}

/// PostgreSQL's `to_jsonb(float8)` writes `1` for 1.0; a value from the
/// cache or a reading renders the same, so both paths give identical JSON.
fn as_postgres_prints(v: &Value) -> Value {
    match v.as_f64() {
        Some(x) if v.is_f64() && x.fract() == 0.0 && x.abs() < 9.0e15 => Value::from(x as i64),
        _ => v.clone(),
    }
}

/// Observations in the `dataArray` format, one block per Datastream.
pub fn data_array(rows: &[Row], base: &str, select: Option<&[Path]>) -> Vec<Value> {
    const ALL: [&str; 6] = ["id", "phenomenonTime", "result", "resultTime", "resultQuality", "parameters"];
    let components: Vec<&str> = match select {
        Some(_) => ALL.iter().copied().filter(|c| selected(select, c)).collect(),
        None => ALL[..5].to_vec(),
    };
    let mut blocks: Vec<(i64, Vec<Value>)> = Vec::new();
    for row in rows {
        let values: Vec<Value> = components
            .iter()
            .map(|c| match *c {
                "id" => id_value(EntityType::Observation, row),
                other => row.doc.get(other).cloned().unwrap_or(Value::Null),
            })
            .collect();
        match blocks.last_mut() {
            Some((ds, items)) if *ds == row.id => items.push(Value::Array(values)),
            _ => blocks.push((row.id, vec![Value::Array(values)])),
        }
    }
    blocks
        .into_iter()
        .map(|(ds, items)| {
            json!({
                "Datastream@iot.navigationLink": format!("{base}/Datastreams({ds})"),
                "components": components,
                "dataArray@iot.count": items.len(),
                "dataArray": items,
            })
        })
        .collect()
}
