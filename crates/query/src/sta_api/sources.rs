//! Each entity set as a SQL subquery over the registry and the time-series
//! tables ("sources"), and the [`Schema`] that maps `$filter` / `$orderby`
//! paths onto a source's columns.
//!
//! Every source shows only sensors that are public and active
//! ([`VISIBLE`]), so nothing else can be reached by any route, expansion,
//! filter or count. The SQL here is made of this module's constants and the
//! mapping table in [`super::model`]; client text only ever arrives as bound
//! parameters (see `citygauge_sta::sql`).

use citygauge_domain::Kind;
use citygauge_sta::sql::json_keys;
use citygauge_sta::{Collection, EntityType, Path, Resolved, Schema, Segment, Type};

use super::model::{self, IDS_PER_THING, OBSERVED_PROPERTIES, STREAMS};

/// The condition every source applies to `sensors s`: the open-data rule
/// (`crate::open_data::public_sensors("s")`, which a test checks it equals).
pub const VISIBLE: &str = "s.public AND s.status = 'active'";

/// What a source of Observations is narrowed to, so each kind's branch can
/// use the `(sensor_id, ts)` primary key instead of joining every sensor.
#[derive(Debug, Clone, Copy)]
pub enum ObsScope<'a> {
    All,
    /// One Datastream id (a SQL expression: a parameter or a lateral column).
    Datastream(&'a str),
    /// Every Datastream of one Thing (a FeatureOfInterest's Observations).
    Thing(&'a str),
    /// Per parent of a `LATERAL` read: `p.pid` is the Datastream (or, with
    /// `false`, the Thing) id and `p.sid` its sensor, already checked visible
    /// (see [`lateral_parents`]). A plain column of the outer row lets each
    /// branch use the primary key, where a correlated subquery would not.
    Lateral(bool),
    /// The Observations of one Datastream of an outer row in a `$filter`
    /// (`Datastreams?$filter=Observations/any(...)`): its id and sensor are
    /// plain columns of that row, so each branch is a `(sensor_id, ts)`
    /// index range per outer row, and the row's kind leaves one branch
    /// (the others are cut by one-time filters, never probed).
    Correlated {
        ds: &'a str,
        sensor: &'a str,
        kind: &'a str,
    },
}

/// The parents of a `LATERAL` read of Observations, with their sensor:
/// `$1` holds Datastream ids (`datastreams`) or Thing ids.
pub fn lateral_parents(datastreams: bool) -> String {
    let sta = if datastreams { format!("u.pid / {IDS_PER_THING}") } else { "u.pid".to_string() };
    format!(
        "(SELECT u.pid, s.id AS sid FROM unnest($1::int8[]) AS u(pid) JOIN sensors s ON s.sta_id = {sta} AND {VISIBLE}) AS p"
    )
}

fn kind_case(f: impl Fn(Kind) -> &'static str) -> String {
    let arms: String = Kind::ALL.iter().map(|k| format!(" WHEN '{}' THEN '{}'", k.as_str(), f(*k))).collect();
    format!("(CASE s.kind{arms} END)")
}

fn category() -> String {
    kind_case(|k| model::category(k).0)
}

fn authority_type() -> String {
    format!("coalesce(s.installation->>'authority_type', {})", kind_case(|k| model::category(k).1))
}

fn thing_properties() -> String {
    format!(
        "jsonb_strip_nulls(s.installation || jsonb_build_object('sensor_id', s.id, 'kind', s.kind, \
         'subkind', s.subkind, 'district', s.district, 'category', {}, 'authority_type', {}))",
        category(),
        authority_type()
    )
}

/// The keys of `properties` that are a text column of the source too (the
/// object's own value, never overridden by `installation`): a `$filter` or
/// `$orderby` on them reads the column, so PostgreSQL filters before it
/// builds any object. `to_jsonb` of the column is the very JSON value the
/// key holds (a string; SQL NULL where the key is stripped or absent), so
/// comparisons keep their JSON semantics.
fn properties_column(et: EntityType, key: &str) -> Option<&'static str> {
    use EntityType::*;
    Some(match (et, key) {
        (Thing | Datastream, "sensor_id") => "sensor_id",
        (Thing | Datastream, "kind") => "kind",
        (Thing, "subkind") => "subkind",
        (Thing, "district") => "district",
        (Thing, "category") => "category",
        (Thing, "authority_type") => "authority_type",
        // Never NULL (a VALUES column), like the object's value.
        (Datastream, "column") => "col",
        _ => return None,
    })
}

const NAME: &str = "coalesce(s.name, s.id)";
const NAME_ZH: &str = "coalesce(s.installation->>'name_zh', s.name, s.id)";
/// Times as RFC 3339 in UTC with microseconds, whatever the session's zone.
pub fn iso(ts: &str) -> String {
    format!("to_char({ts} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')")
}

fn streams_values() -> String {
    let rows: Vec<String> = STREAMS
        .iter()
        .map(|st| {
            let op = model::observed_property(st.observed_property).expect("every stream has its property");
            let uom = match st.uom {
                Some(u) => {
                    format!(r#"{{"name": "{}", "symbol": "{}", "definition": "{}"}}"#, u.name, u.symbol, u.definition)
                }
                None => r#"{"name": null, "symbol": null, "definition": null}"#.to_string(),
            };
            format!(
                "('{}'::text, {}::int8, '{}'::text, {}::int8, '{}'::text, '{}'::text, '{}'::jsonb, '{}'::text)",
                st.kind.as_str(),
                st.index,
                st.column,
                st.observed_property,
                op.name,
                op.name_zh,
                uom,
                st.observation_type
            )
        })
        .collect();
    format!("(VALUES {}) AS c(kind, idx, col, op_id, qty, qty_zh, uom, obs_type)", rows.join(", "))
}

fn observed_properties_values() -> String {
    let rows: Vec<String> = OBSERVED_PROPERTIES
        .iter()
        .map(|o| {
            format!(
                "({}::int8, '{}'::text, '{}'::text, '{}'::text, '{}'::text)",
                o.id, o.name, o.definition, o.description, o.name_zh
            )
        })
        .collect();
    format!("(VALUES {}) AS op(id, name, definition, description, name_zh)", rows.join(", "))
}

/// One kind-column branch of the Observations source.
fn observation_branch(st: &model::Stream, scope: ObsScope<'_>) -> String {
    let (kind, col, idx) = (st.kind.as_str(), st.column, st.index);
    let us = "(extract(epoch FROM r.ts) * 1000000)::int8";
    let parameters = if st.kind == Kind::Rainfall {
        "CASE WHEN r.interval_s IS NULL THEN NULL ELSE jsonb_build_object('interval_s', r.interval_s) END"
    } else {
        "NULL::jsonb"
    };
    let values = format!(
        "r.ts, {us} AS us, to_jsonb(r.{col}) AS result, r.quality, r.quality_reasons, {parameters} AS parameters"
    );
    let one = |sta: &str| {
        format!("r.sensor_id = (SELECT s.id FROM sensors s WHERE s.sta_id = {sta} AND s.kind = '{kind}' AND {VISIBLE})")
    };
    match scope {
        ObsScope::All => format!(
            "SELECT s.sta_id * {IDS_PER_THING} + {idx} AS ds_id, s.sta_id AS thing_id, {values} \
             FROM {kind} r JOIN sensors s ON s.id = r.sensor_id AND s.kind = '{kind}' AND {VISIBLE} \
             WHERE r.{col} IS NOT NULL"
        ),
        ObsScope::Datastream(x) => format!(
            "SELECT ({x}) AS ds_id, ({x}) / {IDS_PER_THING} AS thing_id, {values} FROM {kind} r \
             WHERE ({x}) % {IDS_PER_THING} = {idx} AND {} AND r.{col} IS NOT NULL",
            one(&format!("({x}) / {IDS_PER_THING}"))
        ),
        ObsScope::Lateral(true) => format!(
            "SELECT p.pid AS ds_id, p.pid / {IDS_PER_THING} AS thing_id, {values} FROM {kind} r \
             WHERE p.pid % {IDS_PER_THING} = {idx} AND r.sensor_id = p.sid AND r.{col} IS NOT NULL"
        ),
        ObsScope::Lateral(false) => format!(
            "SELECT p.pid * {IDS_PER_THING} + {idx} AS ds_id, p.pid AS thing_id, {values} FROM {kind} r \
             WHERE r.sensor_id = p.sid AND r.{col} IS NOT NULL"
        ),
        ObsScope::Correlated { ds, sensor, kind: outer_kind } => format!(
            "SELECT {ds} AS ds_id, {ds} / {IDS_PER_THING} AS thing_id, {values} FROM {kind} r \
             WHERE {outer_kind} = '{kind}' AND {ds} % {IDS_PER_THING} = {idx} AND r.sensor_id = {sensor} \
             AND r.{col} IS NOT NULL"
        ),
        ObsScope::Thing(x) => format!(
            "SELECT ({x}) * {IDS_PER_THING} + {idx} AS ds_id, ({x}) AS thing_id, {values} FROM {kind} r \
             WHERE {} AND r.{col} IS NOT NULL",
            one(&format!("({x})"))
        ),
    }
}

/// The source of an entity set: a `SELECT` whose rows carry the columns the
/// [`EntitySchema`] names, plus `doc` (the entity's properties as JSON).
pub fn source(et: EntityType, scope: ObsScope<'_>) -> String {
    use EntityType::*;
    match et {
        Thing => format!(
            "SELECT t.*, jsonb_build_object('name', t.name, 'description', t.description, 'properties', t.properties) AS doc \
             FROM (SELECT s.sta_id AS id, s.sta_id AS thing_id, s.id AS sensor_id, {NAME} AS name, \
             {NAME_ZH} AS description, {} AS properties, s.kind, s.subkind, s.district, {} AS category, \
             {} AS authority_type FROM sensors s WHERE {VISIBLE}) t",
            thing_properties(),
            category(),
            authority_type()
        ),
        Location | FeatureOfInterest => {
            let (geo_key, desc) =
                if et == Location { ("location", "") } else { ("feature", " || ' (feature of interest)'") };
            format!(
                "SELECT t.*, jsonb_build_object('name', t.name, 'description', t.description, \
                 'encodingType', t.encoding_type, '{geo_key}', ST_AsGeoJSON(t.geom)::jsonb) AS doc \
                 FROM (SELECT s.sta_id AS id, s.sta_id AS thing_id, s.location AS geom, {NAME} AS name, \
                 {NAME_ZH}{desc} AS description, 'application/geo+json'::text AS encoding_type, \
                 NULL::jsonb AS properties FROM sensors s WHERE {VISIBLE} AND s.location IS NOT NULL) t"
            )
        }
        HistoricalLocation => format!(
            "SELECT t.*, jsonb_build_object('time', {}) AS doc FROM (SELECT s.sta_id AS id, s.sta_id AS thing_id, \
             s.created_at AS time FROM sensors s WHERE {VISIBLE} AND s.location IS NOT NULL) t",
            iso("t.time")
        ),
        Datastream => format!(
            "SELECT t.*, jsonb_strip_nulls(jsonb_build_object('name', t.name, 'description', t.description, \
             'unitOfMeasurement', t.uom, 'observationType', t.obs_type, \
             'observedArea', ST_AsGeoJSON(t.geom)::jsonb, 'properties', t.properties)) AS doc \
             FROM (SELECT s.sta_id * {IDS_PER_THING} + c.idx AS id, s.sta_id AS thing_id, c.op_id, \
             s.id AS sensor_id, s.kind, c.col, s.location AS geom, {NAME} || ' ' || c.qty AS name, \
             concat_ws(' ', s.installation->>'name_zh', c.qty_zh) || ' / ' || c.qty AS description, \
             c.uom, c.obs_type, jsonb_build_object('sensor_id', s.id, 'column', c.col, 'kind', s.kind) AS properties \
             FROM sensors s JOIN {} ON c.kind = s.kind WHERE {VISIBLE}) t",
            streams_values()
        ),
        Sensor => format!(
            "SELECT t.*, jsonb_strip_nulls(jsonb_build_object('name', t.name, 'description', t.description, \
             'encodingType', t.encoding_type, 'metadata', t.metadata, 'properties', t.properties)) AS doc \
             FROM (SELECT s.sta_id AS id, s.sta_id AS thing_id, \
             concat_ws(' ', s.installation->>'vendor', s.kind, 'sensor', s.id) AS name, \
             concat_ws(' ', s.kind, s.subkind, 'sensor of', {NAME}) AS description, 'text/plain'::text AS encoding_type, \
             concat_ws(', ', 'vendor: ' || (s.installation->>'vendor'), 'device profile: ' || s.device_profile, \
             'mounted: ' || (s.installation->>'mounted_at')) AS metadata, \
             jsonb_strip_nulls(jsonb_build_object('vendor', s.installation->'vendor', 'device_profile', s.device_profile, \
             'mounted_at', s.installation->'mounted_at')) AS properties FROM sensors s WHERE {VISIBLE}) t"
        ),
        ObservedProperty => format!(
            "SELECT t.*, jsonb_build_object('name', t.name, 'definition', t.definition, 'description', t.description, \
             'properties', t.properties) AS doc FROM (SELECT op.id, op.name, op.definition, op.description, \
             jsonb_build_object('name_zh', op.name_zh) AS properties FROM {}) t",
            observed_properties_values()
        ),
        Observation => {
            let branches: Vec<String> = STREAMS.iter().map(|st| observation_branch(st, scope)).collect();
            format!(
                "SELECT o.*, jsonb_strip_nulls(jsonb_build_object('phenomenonTime', {ts}, 'resultTime', {ts}, \
                 'result', o.result, 'resultQuality', o.result_quality, 'parameters', o.parameters)) AS doc \
                 FROM (SELECT b.*, jsonb_build_object('quality', b.quality, 'reasons', \
                 to_jsonb(coalesce(b.quality_reasons, '{{}}'::text[]))) AS result_quality FROM ({}) b) o",
                branches.join(" UNION ALL "),
                ts = iso("o.ts")
            )
        }
        MultiDatastream => "SELECT NULL::int8 AS id, NULL::jsonb AS doc WHERE false".to_string(),
    }
}

/// How a property is stored in a source.
enum Prop {
    Col(&'static str, Type),
    Json(&'static str),
    /// A SQL expression over the alias (`{a}` is replaced).
    Expr(&'static str, Type),
}

fn property(et: EntityType, name: &str) -> Option<Prop> {
    use EntityType::*;
    use Prop::*;
    let p = match (et, name) {
        (Observation, "id" | "@iot.id") => Expr("({a}.ds_id::text || '-' || {a}.us::text)", Type::String),
        (_, "id" | "@iot.id") => Col("id", Type::Int),
        (Observation, "phenomenonTime" | "resultTime") => Col("ts", Type::DateTime),
        (Observation, "result") => Json("result"),
        (Observation, "resultQuality") => Json("result_quality"),
        (Observation, "parameters") => Json("parameters"),
        (Observation, "validTime") => Expr("NULL::timestamptz", Type::DateTime),
        (HistoricalLocation, "time") => Col("time", Type::DateTime),
        (Observation | HistoricalLocation, _) => return None,
        (_, "name" | "description") => Col(if name == "name" { "name" } else { "description" }, Type::String),
        (Thing | Location | Sensor | ObservedProperty | FeatureOfInterest | Datastream, "properties") => {
            Json("properties")
        }
        (Location | Sensor | FeatureOfInterest, "encodingType") => Col("encoding_type", Type::String),
        (Location, "location") | (FeatureOfInterest, "feature") | (Datastream, "observedArea") => {
            Col("geom", Type::Geometry)
        }
        (Sensor, "metadata") => Col("metadata", Type::String),
        (ObservedProperty, "definition") => Col("definition", Type::String),
        (Datastream, "unitOfMeasurement") => Json("uom"),
        (Datastream, "observationType") => Col("obs_type", Type::String),
        (Datastream, "phenomenonTime" | "resultTime") => Expr("NULL::timestamptz", Type::DateTime),
        _ => return None,
    };
    Some(p)
}

/// The column of a source holding the id of the target of a to-one navigation.
pub fn to_one_key(et: EntityType, nav: &str) -> Option<&'static str> {
    use EntityType::*;
    Some(match (et, nav) {
        (Datastream, "Thing" | "Sensor") | (HistoricalLocation, "Thing") | (Observation, "FeatureOfInterest") => {
            "thing_id"
        }
        (Datastream, "ObservedProperty") => "op_id",
        (Observation, "Datastream") => "ds_id",
        _ => return None,
    })
}

/// For a to-many navigation: the child source's column that holds the
/// parent's id.
pub fn to_many_key(et: EntityType, nav: &str) -> Option<&'static str> {
    use EntityType::*;
    Some(match (et, nav) {
        (Thing, "Locations" | "HistoricalLocations") | (Location, "Things" | "HistoricalLocations") => "id",
        (HistoricalLocation, "Locations") => "id",
        (Thing, "Datastreams") | (Sensor, "Datastreams") => "thing_id",
        (ObservedProperty, "Datastreams") => "op_id",
        (Datastream, "Observations") => "ds_id",
        (FeatureOfInterest, "Observations") => "thing_id",
        _ => return None,
    })
}

/// The schema of one entity type as it is seen through `alias`.
#[derive(Debug, Clone)]
pub struct EntitySchema {
    pub et: EntityType,
    pub alias: String,
    pub depth: usize,
}

impl EntitySchema {
    pub fn new(et: EntityType) -> EntitySchema {
        EntitySchema { et, alias: "e".into(), depth: 0 }
    }
}

impl Schema for EntitySchema {
    fn resolve(&self, path: &Path) -> Result<Resolved, String> {
        let Some(Segment::Name(first)) = path.segments.first() else {
            return Err("a path must start with a property name".into());
        };
        let set = self.et.set_name();
        if let (true, [_, Segment::Name(key)]) = (first == "properties", path.segments.as_slice()) {
            if let Some(col) = properties_column(self.et, key) {
                return Ok(Resolved::Json { sql: format!("to_jsonb({}.{col})", self.alias), keys: Vec::new() });
            }
        }
        if let Some(prop) = property(self.et, first) {
            let (sql, json) = match prop {
                Prop::Col(c, t) => (format!("{}.{c}", self.alias), Err(t)),
                Prop::Expr(e, t) => (e.replace("{a}", &self.alias), Err(t)),
                Prop::Json(c) => (format!("{}.{c}", self.alias), Ok(())),
            };
            return match json {
                Ok(()) => Ok(Resolved::Json { sql, keys: json_keys(path, 1) }),
                Err(ty) if path.segments.len() == 1 => Ok(Resolved::Column { sql, ty }),
                Err(_) => Err(format!("the property '{first}' of {set} has nothing below it")),
            };
        }
        let Some((target, many)) = self.et.navigate(first) else {
            return Err(format!("{set} have no property '{first}'"));
        };
        let key = to_one_key(self.et, first);
        let (false, Some(key)) = (many, key) else {
            return Err(format!(
                "'{first}' is a collection of {set}: use it in a condition ({first}/name eq 'x') or with any/all"
            ));
        };
        if path.segments.len() < 2 {
            return Err(format!("'{first}' is an entity, not a value; name one of its properties"));
        }
        let inner = EntitySchema { et: target, alias: format!("n{}", self.depth + 1), depth: self.depth + 1 };
        let rest = Path { segments: path.segments[1..].to_vec() };
        let wrap = |sql: String| {
            format!(
                "(SELECT {sql} FROM ({}) AS {a} WHERE {a}.id = {}.{key})",
                source(target, ObsScope::All),
                self.alias,
                a = inner.alias
            )
        };
        Ok(match inner.resolve(&rest)? {
            Resolved::Column { sql, ty } => Resolved::Column { sql: wrap(sql), ty },
            Resolved::Json { sql, keys } => Resolved::Json { sql: wrap(sql), keys },
        })
    }

    /// A to-many navigation property's elements, correlated with this row
    /// on the child's key (`c1.thing_id = e.id`), so `any`/`all` become
    /// `EXISTS` subqueries the planner runs as (semi-)joins or index probes.
    fn collection(&self, nav: &str, alias: &str) -> Option<Result<Collection, String>> {
        let (target, many) = self.et.navigate(nav)?;
        let set = self.et.set_name();
        let a = &self.alias;
        let schema = EntitySchema { et: target, alias: alias.to_string(), depth: 0 };
        if !many {
            let key = to_one_key(self.et, nav)?;
            let from = format!("FROM ({}) AS {alias} WHERE {alias}.id = {a}.{key}", source(target, ObsScope::All));
            return Some(Ok(Collection { from, schema: Box::new(schema), single: true }));
        }
        let Some(key) = to_many_key(self.et, nav) else {
            return Some(Err(format!("filtering through the collection '{nav}' of {set} is not supported")));
        };
        let (ds, sensor, kind) = (format!("{a}.id"), format!("{a}.sensor_id"), format!("{a}.kind"));
        let scope = match (self.et, target) {
            // Per Datastream: the one kind table's (sensor_id, ts) key.
            (EntityType::Datastream, EntityType::Observation) => {
                ObsScope::Correlated { ds: &ds, sensor: &sensor, kind: &kind }
            }
            (_, EntityType::Observation) => ObsScope::Thing(&ds),
            _ => ObsScope::All,
        };
        let from = format!("FROM ({}) AS {alias} WHERE {alias}.{key} = {a}.id", source(target, scope));
        Some(Ok(Collection { from, schema: Box::new(schema), single: false }))
    }
}

/// Source columns known never to be NULL (keyset paging can then use a
/// plain range condition, which an index serves).
pub fn never_null(sql: &str) -> bool {
    matches!(sql, "(e.id)" | "(e.ts)" | "(e.ds_id)" | "e.id" | "e.ts" | "e.ds_id")
}

#[cfg(test)]
#[path = "sources_plan.rs"]
mod plan;

#[cfg(test)]
mod tests {
    #[test]
    fn visibility_is_the_open_data_rule() {
        assert_eq!(super::VISIBLE, crate::open_data::public_sensors("s"));
    }
}
