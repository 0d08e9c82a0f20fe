//! A Datastream's `phenomenonTime` and `resultTime`: the interval
//! `"<first>/<last>"` of its Observations' times (both are the reading's
//! time here), omitted when it has none.
//!
//! Computed per page, never stored: one statement for the page's
//! Datastreams runs two index probes each on the kind table's
//! `(sensor_id, ts)` primary key, the first reading with a value in the
//! column from each end, and the last probe is skipped when the latest-value
//! cache already holds the sensor's newest reading with a value in that
//! column (the usual case). Each probe looks at most [`PROBE_READINGS`]
//! readings: a column with no value among a sensor's oldest (or newest)
//! ones shows no interval even if it has values in between (a lamp's rare
//! `fault` codes), the price of never walking a sensor's history.
//! Rows come from the Datastreams source, which only holds public active
//! sensors, so nothing here can reach a private one.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use citygauge_sta::{Path, Segment};
use serde_json::Value;
use tokio_postgres::types::ToSql;

use super::exec::Row;
use super::expand::Ctx;
use super::{model, StaResult};

/// Whether `$select` asks for either interval (no `$select`: all properties).
pub fn wanted(select: Option<&[Path]>) -> bool {
    let Some(paths) = select else { return true };
    paths
        .iter()
        .any(|p| matches!(p.segments.first(), Some(Segment::Name(n)) if n == "phenomenonTime" || n == "resultTime"))
}

fn format_time(ts: DateTime<Utc>) -> String {
    ts.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

/// The newest reading's time from the cache, when it has a value in `column`.
fn cached_last(ctx: &Ctx<'_>, sensor: &str, column: &str) -> Option<DateTime<Utc>> {
    let cache = ctx.cache.as_ref()?;
    let data = cache.read();
    let latest = data.sensors.get(sensor)?.latest.as_ref()?;
    latest.values.get(column).filter(|v| !v.is_null()).map(|_| latest.ts)
}

/// Readings looked at from each end of a sensor's history for a value in
/// the column: a column NULL in most readings (a lamp's `fault`, a station
/// without an SO2 cell) would otherwise make the probe walk the sensor's
/// whole history (seconds for a year of one lamp).
pub const PROBE_READINGS: u32 = 256;

/// The time of the first (or last) of a sensor's [`PROBE_READINGS`] oldest
/// (newest) readings with a value in the column. The inner `LIMIT` bounds
/// the index scan; the outer one stops at the first match, so a dense
/// column costs one index entry.
fn probe(table: &str, col: &str, newest: bool) -> String {
    let dir = if newest { "DESC" } else { "ASC" };
    format!(
        "(SELECT x.ts FROM (SELECT r.ts, r.{col} AS v FROM {table} r WHERE r.sensor_id = d.sid \
         ORDER BY r.ts {dir} LIMIT {PROBE_READINGS}) x WHERE x.v IS NOT NULL ORDER BY x.ts {dir} LIMIT 1)"
    )
}

/// One branch per stream on the page: `$n` the Datastream ids, `$n+1` their
/// sensors, `$n+2` whether the last time must be probed. A CASE evaluates
/// its subquery only for the rows that need it.
fn branch(st: &model::Stream, first_param: usize) -> String {
    let (table, col) = (st.kind.as_str(), st.column);
    let (ids, sids, last) = (first_param, first_param + 1, first_param + 2);
    format!(
        "SELECT d.id, {}, CASE WHEN d.probe THEN {} END \
         FROM unnest(${ids}::int8[], ${sids}::text[], ${last}::bool[]) AS d(id, sid, probe)",
        probe(table, col, false),
        probe(table, col, true)
    )
}

/// The page's Datastreams of one stream: their ids, sensors, and whether
/// the last time must be probed (the cache has none).
type Group = (&'static model::Stream, Vec<i64>, Vec<String>, Vec<bool>);

/// Sets `phenomenonTime` and `resultTime` on Datastream rows (when `$select`
/// wants them): one statement for the whole page.
pub async fn fill(ctx: &Ctx<'_>, rows: &mut [Row], select: Option<&[Path]>) -> StaResult<()> {
    if rows.is_empty() || !wanted(select) {
        return Ok(());
    }
    // Per stream: ids, sensors, probe-the-last flags; and the cached last times.
    let mut groups: Vec<Group> = Vec::new();
    let mut cached: HashMap<i64, DateTime<Utc>> = HashMap::new();
    for row in rows.iter() {
        let (Some(sensor), Some(column)) = (&row.sensor_id, &row.column) else { continue };
        let Some(st) = model::stream_of_column(column) else { continue };
        let last = cached_last(ctx, sensor, column);
        if let Some(ts) = last {
            cached.insert(row.id, ts);
        }
        let at = match groups.iter().position(|g| g.0.column == st.column) {
            Some(i) => i,
            None => {
                groups.push((st, Vec::new(), Vec::new(), Vec::new()));
                groups.len() - 1
            }
        };
        let g = &mut groups[at];
        g.1.push(row.id);
        g.2.push(sensor.clone());
        g.3.push(last.is_none());
    }
    if groups.is_empty() {
        return Ok(());
    }
    let sql: Vec<String> = groups.iter().enumerate().map(|(i, g)| branch(g.0, i * 3 + 1)).collect();
    let sql = sql.join(" UNION ALL ");
    let mut params: Vec<&(dyn ToSql + Sync)> = Vec::new();
    for g in &groups {
        params.push(&g.1);
        params.push(&g.2);
        params.push(&g.3);
    }
    let found = ctx.client.query(sql.as_str(), &params).await?;
    let mut spans: HashMap<i64, (DateTime<Utc>, DateTime<Utc>)> = HashMap::new();
    for r in found {
        let id: i64 = r.try_get(0)?;
        let first: Option<DateTime<Utc>> = r.try_get(1)?;
        let last: Option<DateTime<Utc>> =
            r.try_get::<_, Option<DateTime<Utc>>>(2)?.or_else(|| cached.get(&id).copied());
        if let (Some(first), Some(last)) = (first, last) {
            // A reading older than the cached one may be stored meanwhile;
            // the interval never runs backwards.
            spans.insert(id, (first.min(last), last.max(first)));
        }
    }
    for row in rows.iter_mut() {
        if let Some((first, last)) = spans.get(&row.id) {
            let interval = Value::String(format!("{}/{}", format_time(*first), format_time(*last)));
            row.doc.insert("phenomenonTime".into(), interval.clone());
            row.doc.insert("resultTime".into(), interval);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn select_decides_whether_the_probe_runs() {
        let path = |n: &str| Path { segments: vec![Segment::Name(n.into())] };
        assert!(wanted(None));
        assert!(wanted(Some(&[path("name"), path("resultTime")])));
        assert!(!wanted(Some(&[path("name"), path("id")])));
    }

    #[test]
    fn each_branch_names_its_table_and_column_only() {
        let st = model::stream_of_column("pm10_ugm3").unwrap();
        let sql = branch(st, 4);
        assert!(sql.contains("FROM air_quality r"));
        assert!(sql.contains("r.pm10_ugm3 AS v") && sql.contains("LIMIT 256"));
        assert!(sql.contains("unnest($4::int8[], $5::text[], $6::bool[])"));
    }
}
