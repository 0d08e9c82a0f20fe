//! The four measured requests, as SensorThings paths and as the bare SQL
//! giving the same answer (pgbench scripts), and what the harness learns
//! from the running service to build them (Datastream ids, the pages of
//! each kind, the districts).
//!
//! (a) a page of 100 Observations of one Datastream, newest first, over the
//!     Datastreams with a year of one-minute history;
//! (b) the latest Observation of every Datastream of a kind, with its Thing:
//!     every page of each kind, as a client following `@iot.nextLink` reads it;
//! (c) the Things of one district (`$filter` on `properties/district`);
//! (d) `$count=true` over all Observations of one Datastream.
//!
//! The bare SQL builds the same JSON with `json_build_object` from the
//! registry and the raw tables, choosing the entity per transaction from an
//! array literal with pgbench's `\set x random(1, n)`.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use anyhow::Context;
use serde_json::Value;

use crate::query::http;

pub const ROOT: &str = "/sta/v1.1";

/// Percent-encodes a query value (spaces, quotes, non-ASCII); OData's
/// punctuation stays readable.
pub fn encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~$/(),;:@*=&".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A SQL string literal.
fn lit(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

fn array(items: impl IntoIterator<Item = String>) -> String {
    format!("(ARRAY[{}])", items.into_iter().collect::<Vec<_>>().join(", "))
}

/// A Datastream with deep history: its id and its sensor.
#[derive(Debug, Clone)]
pub struct Stream {
    pub id: i64,
    pub sensor: String,
}

/// One page of (b): the kind, the last Datastream id before it (0 for the
/// first page) and the path the service is asked.
#[derive(Debug, Clone)]
pub struct LatestPage {
    pub kind: String,
    pub after: i64,
    pub path: String,
}

/// What the requests are made of.
#[derive(Debug, Default)]
pub struct Targets {
    pub deep: Vec<Stream>,
    pub pages: Vec<LatestPage>,
    pub districts: Vec<String>,
    /// Per kind: (column index, column) of its Datastreams.
    pub columns: BTreeMap<String, Vec<(i64, String)>>,
    /// Datastreams of (b) answered, Observations in them.
    pub latest_datastreams: usize,
    pub latest_observations: usize,
}

pub fn page_path(ds: i64) -> String {
    format!("{ROOT}/Datastreams({ds})/Observations?$orderby={}&$top=100", encode("phenomenonTime desc"))
}

pub fn latest_path(kind: &str) -> String {
    format!(
        "{ROOT}/Datastreams?$filter={}&$expand={}",
        encode(&format!("properties/kind eq '{kind}'")),
        encode("Thing,Observations($orderby=phenomenonTime desc;$top=1)")
    )
}

pub fn district_path(district: &str) -> String {
    format!("{ROOT}/Things?$filter={}", encode(&format!("properties/district eq '{district}'")))
}

pub fn count_path(ds: i64) -> String {
    format!("{ROOT}/Datastreams({ds})/Observations?$count=true&$top=1")
}

/// The path of a link the service gave (absolute URL).
fn relative(link: &str) -> Option<String> {
    link.find(ROOT).map(|i| link[i..].to_string())
}

/// Learns the targets from the service and the registry, checking the
/// answers on the way.
pub async fn discover(
    addr: SocketAddr,
    db: &tokio_postgres::Client,
    history: &[String],
    kinds: &[String],
) -> anyhow::Result<Targets> {
    let mut t = Targets::default();
    // The Datastreams of each kind: ids and columns, from one Thing of each.
    let rows = db
        .query(
            "SELECT DISTINCT ON (kind) kind, sta_id FROM sensors WHERE public AND status = 'active' ORDER BY kind, sta_id",
            &[],
        )
        .await?;
    for row in rows {
        let (kind, sta): (String, i64) = (row.get(0), row.get(1));
        let body = http::get_json(addr, &format!("{ROOT}/Things({sta})/Datastreams")).await?;
        let mut cols = Vec::new();
        for ds in body["value"].as_array().context("Datastreams without value")? {
            let id = ds["@iot.id"].as_i64().context("Datastream without a numeric id")?;
            let col = ds.pointer("/properties/column").and_then(Value::as_str).context("no properties/column")?;
            cols.push((id.rem_euclid(16), col.to_string()));
        }
        t.columns.insert(kind, cols);
    }
    let rows = db
        .query(
            "SELECT id, sta_id FROM sensors WHERE id = ANY($1) AND public AND status = 'active' ORDER BY sta_id",
            &[&history],
        )
        .await?;
    let level = t.columns.get("water_level").and_then(|c| c.first()).context("no water-level Datastream")?.0;
    for row in rows {
        let (sensor, sta): (String, i64) = (row.get(0), row.get(1));
        t.deep.push(Stream { id: sta * 16 + level, sensor });
    }
    let first = t.deep.first().context("no Datastream with history")?;
    let page = http::get_json(addr, &page_path(first.id)).await?;
    println!(
        "check (a): {} Observations on the first page of Datastream {}, nextLink {}",
        page["value"].as_array().map_or(0, Vec::len),
        first.id,
        page.get("@iot.nextLink").is_some()
    );
    for kind in kinds {
        let mut path = Some(latest_path(kind));
        let mut after = 0;
        while let Some(p) = path.take() {
            let body = http::get_json(addr, &p).await?;
            let items = body["value"].as_array().context("no value")?;
            for ds in items {
                t.latest_datastreams += 1;
                t.latest_observations += ds["Observations"].as_array().map_or(0, Vec::len);
                if ds["Thing"]["@iot.id"].is_null() {
                    anyhow::bail!("a Datastream of {kind} without its Thing: {ds}");
                }
            }
            t.pages.push(LatestPage { kind: kind.clone(), after, path: p });
            after = items.last().and_then(|d| d["@iot.id"].as_i64()).unwrap_or(after);
            path = body["@iot.nextLink"].as_str().and_then(relative);
        }
    }
    println!(
        "check (b): {} pages over {} kinds, {} Datastreams, {} with their latest Observation",
        t.pages.len(),
        kinds.len(),
        t.latest_datastreams,
        t.latest_observations
    );
    let rows = db
        .query(
            "SELECT district FROM sensors WHERE public AND status = 'active' AND district IS NOT NULL \
             GROUP BY 1 ORDER BY 1",
            &[],
        )
        .await?;
    t.districts = rows.iter().map(|r| r.get(0)).collect();
    let d = t.districts.first().context("no districts")?;
    let body = http::get_json(addr, &district_path(d)).await?;
    println!(
        "check (c): {} districts; {d}: {} Things on the first page",
        t.districts.len(),
        body["value"].as_array().map_or(0, Vec::len)
    );
    let body = http::get_json(addr, &count_path(first.id)).await?;
    println!("check (d): Datastream {} has @iot.count {}", first.id, body["@iot.count"]);
    Ok(t)
}

/// How the bare SQL renders links (the service's base URL).
fn self_link(set: &str, id: &str) -> String {
    format!("'http://127.0.0.1{ROOT}/{set}(' || {id} || ')'")
}

fn observation_json(ds: &str, r: &str, result: &str) -> String {
    let id = format!("{ds} || '-' || (extract(epoch FROM {r}.ts) * 1000000)::int8");
    format!(
        "json_build_object('@iot.id', {id}, '@iot.selfLink', {}, 'phenomenonTime', {r}.ts, 'resultTime', {r}.ts, \
         'result', {result}, 'resultQuality', json_build_object('quality', {r}.quality, 'reasons', \
         coalesce({r}.quality_reasons, '{{}}')))",
        self_link("Observations", &id)
    )
}

fn thing_json(s: &str) -> String {
    format!(
        "json_build_object('@iot.id', {s}.sta_id, '@iot.selfLink', {}, 'name', coalesce({s}.name, {s}.id), \
         'description', coalesce({s}.installation->>'name_zh', {s}.name, {s}.id), 'properties', \
         jsonb_strip_nulls({s}.installation || jsonb_build_object('sensor_id', {s}.id, 'kind', {s}.kind, \
         'subkind', {s}.subkind, 'district', {s}.district)), 'Locations@iot.navigationLink', \
         {} || '/Locations', 'Datastreams@iot.navigationLink', {} || '/Datastreams')",
        self_link("Things", &format!("{s}.sta_id")),
        self_link("Things", &format!("{s}.sta_id")),
        self_link("Things", &format!("{s}.sta_id")),
    )
}

/// (a): the newest 100 rows of one deep Datastream: first from the last
/// day (the partitions it prunes to at run time), and only when that holds
/// fewer, from before it. Without the window PostgreSQL merges an index
/// scan of every day partition (~50 req/s here).
pub fn page_sql(deep: &[Stream]) -> String {
    let ids = array(deep.iter().map(|d| d.id.to_string()));
    let sensors = array(deep.iter().map(|d| lit(&d.sensor)));
    format!(
        "\\set i random(1, {n})\n\
         SELECT json_build_object('value', coalesce(json_agg({obs} ORDER BY r.ts DESC), '[]'::json)) \
         FROM (SELECT s.id AS sid, {ids}[:i] AS ds FROM sensors s WHERE s.id = {sensors}[:i] AND s.public AND s.status = 'active') d \
         CROSS JOIN LATERAL (SELECT * FROM ((SELECT {cols} FROM water_level WHERE sensor_id = d.sid \
         AND ts >= now() - interval '1 day' ORDER BY ts DESC LIMIT 100) UNION ALL (SELECT {cols} FROM water_level \
         WHERE sensor_id = d.sid AND ts < now() - interval '1 day' ORDER BY ts DESC LIMIT 100)) w LIMIT 100) r;\n",
        cols = "ts, level_m, quality, quality_reasons",
        n = deep.len(),
        obs = observation_json("d.ds", "r", "r.level_m"),
    )
}

/// (b): one script per kind (pgbench weighs them by their pages), each
/// reading a page of that kind's Datastreams after an id drawn from the
/// page starts, with the Thing and an index probe for each latest row.
pub fn latest_sql(t: &Targets, kind: &str) -> Option<String> {
    let cols = t.columns.get(kind)?;
    let afters: Vec<String> = t.pages.iter().filter(|p| p.kind == kind).map(|p| p.after.to_string()).collect();
    if afters.is_empty() {
        return None;
    }
    let values: Vec<String> = cols.iter().map(|(i, c)| format!("({i}::int8, {})", lit(c))).collect();
    let ds = "(s.sta_id * 16 + c.idx)";
    Some(format!(
        "\\set p random(1, {n})\n\
         SELECT json_build_object('value', coalesce(json_agg(json_build_object('@iot.id', d.id, '@iot.selfLink', {ds_link}, \
         'name', coalesce(d.name, d.sid) || ' ' || d.col, 'properties', json_build_object('sensor_id', d.sid, 'column', d.col, \
         'kind', {kind_lit}), 'Thing', d.thing, 'Observations', coalesce((SELECT json_agg({obs}) FROM \
         (SELECT r.*, to_jsonb(r) -> d.col AS v FROM {kind} r WHERE r.sensor_id = d.sid \
         AND r.ts > now() - interval '2 days' AND r.ts < now() + interval '1 day' ORDER BY r.ts DESC LIMIT 1) o), '[]'::json)) \
         ORDER BY d.id), '[]'::json)) \
         FROM (SELECT {ds} AS id, s.id AS sid, s.name, c.col, {thing} AS thing FROM sensors s \
         CROSS JOIN (VALUES {values}) AS c(idx, col) WHERE s.kind = {kind_lit} AND s.public AND s.status = 'active' \
         AND {ds} > {afters}[:p] ORDER BY 1 LIMIT 100) d;\n",
        n = afters.len(),
        afters = array(afters),
        values = values.join(", "),
        kind_lit = lit(kind),
        ds_link = self_link("Datastreams", "d.id"),
        obs = observation_json("d.id", "o", "o.v"),
        thing = thing_json("s"),
    ))
}

/// (c): the first 100 Things of a district.
pub fn district_sql(districts: &[String]) -> String {
    format!(
        "\\set d random(1, {n})\n\
         SELECT json_build_object('value', coalesce(json_agg(t.doc ORDER BY t.id), '[]'::json)) FROM \
         (SELECT s.sta_id AS id, {thing} AS doc FROM sensors s WHERE s.district = {names}[:d] \
         AND s.public AND s.status = 'active' ORDER BY s.sta_id LIMIT 100) t;\n",
        n = districts.len(),
        names = array(districts.iter().map(|d| lit(d))),
        thing = thing_json("s"),
    )
}

/// (d): the count of one deep Datastream's rows, and its newest row.
pub fn count_sql(deep: &[Stream]) -> String {
    let sensors = array(deep.iter().map(|d| lit(&d.sensor)));
    format!(
        "\\set i random(1, {n})\n\
         SELECT (SELECT count(*) FROM water_level r WHERE r.sensor_id = s.id AND r.level_m IS NOT NULL), \
         (SELECT max(ts) FROM water_level r WHERE r.sensor_id = s.id) \
         FROM sensors s WHERE s.id = {sensors}[:i] AND s.public AND s.status = 'active';\n",
        n = deep.len(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_encoded_and_scripts_draw_per_transaction() {
        assert_eq!(
            district_path("三民區"),
            "/sta/v1.1/Things?$filter=properties/district%20eq%20%27%E4%B8%89%E6%B0%91%E5%8D%80%27"
        );
        assert!(page_path(7).ends_with("Datastreams(7)/Observations?$orderby=phenomenonTime%20desc&$top=100"));
        let deep = vec![Stream { id: 33, sensor: "wl-1".into() }, Stream { id: 49, sensor: "O'x".into() }];
        let script = page_sql(&deep);
        assert!(script.starts_with("\\set i random(1, 2)\n"), "{script}");
        assert!(script.contains("(ARRAY['wl-1', 'O''x'])[:i]"), "{script}");
        let mut t = Targets::default();
        t.columns.insert("rainfall".into(), vec![(0, "rain_mm".into())]);
        t.pages.push(LatestPage { kind: "rainfall".into(), after: 0, path: String::new() });
        t.pages.push(LatestPage { kind: "rainfall".into(), after: 1600, path: String::new() });
        let latest = latest_sql(&t, "rainfall").unwrap();
        assert!(latest.contains("(ARRAY[0, 1600])[:p]") && latest.contains("FROM rainfall r"), "{latest}");
        assert!(latest_sql(&t, "air_quality").is_none());
    }
}
