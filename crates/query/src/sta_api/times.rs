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
//!
//! The first probe reads every partition (or chunk) of the kind table (an
//! index descent each: about 10 ms per Datastream with a year of day
//! partitions), so the first time found is kept in process for
//! [`FIRST_TTL`] ([`FIRST_CAPACITY`] entries at most, per server). It only
//! changes through backfill or retention, so it may be that much stale:
//! a backfilled older reading, or a dropped partition, shows in the
//! interval within [`FIRST_TTL`]. Only found times are kept: a Datastream
//! without one is probed again on its next request.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use citygauge_sta::{Path, Segment};
use serde_json::Value;
use tokio_postgres::types::ToSql;

use super::exec::Row;
use super::expand::Ctx;
use super::{model, StaResult};
use crate::cache::Cache;

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

/// How long a Datastream's first time is trusted without a probe.
pub const FIRST_TTL: Duration = Duration::from_secs(300);
/// First times kept at most per server (two dozen bytes and a sensor id
/// each); when full, the expired ones go, then all of them.
pub const FIRST_CAPACITY: usize = 100_000;

/// The first times known to one server: its latest-value cache stands for
/// the server (tests run several, on different databases, in one process).
/// The `Weak` keeps the cache's allocation, so no other server's can take
/// its address while the entries live.
struct Firsts {
    owner: Weak<Cache>,
    entries: FirstMap,
}

/// Per sensor and column: when the first time was found, and the time.
type FirstMap = HashMap<(String, &'static str), (Instant, DateTime<Utc>)>;

/// A Datastream's first and last times, where known.
type Ends = (Option<DateTime<Utc>>, Option<DateTime<Utc>>);

static FIRSTS: Mutex<Vec<Firsts>> = Mutex::new(Vec::new());

/// Runs `f` on the first times of `cache`'s server (dropping stopped servers').
fn with_firsts<T>(cache: &Arc<Cache>, f: impl FnOnce(&mut FirstMap) -> T) -> T {
    let mut all = FIRSTS.lock().unwrap_or_else(|e| e.into_inner());
    all.retain(|x| x.owner.strong_count() > 0);
    let at = match all.iter().position(|x| std::ptr::eq(x.owner.as_ptr(), Arc::as_ptr(cache))) {
        Some(i) => i,
        None => {
            all.push(Firsts { owner: Arc::downgrade(cache), entries: HashMap::new() });
            all.len() - 1
        }
    };
    f(&mut all[at].entries)
}

/// A cached first time still within [`FIRST_TTL`].
fn cached_first(ctx: &Ctx<'_>, sensor: &str, column: &'static str, now: Instant) -> Option<DateTime<Utc>> {
    let cache = ctx.cache.as_ref()?;
    with_firsts(cache, |m| {
        m.get(&(sensor.to_string(), column))
            .filter(|(at, _)| now.saturating_duration_since(*at) < FIRST_TTL)
            .map(|(_, ts)| *ts)
    })
}

/// Keeps the first times just probed, within [`FIRST_CAPACITY`].
fn remember_firsts(ctx: &Ctx<'_>, found: Vec<(String, &'static str, DateTime<Utc>)>, now: Instant) {
    let Some(cache) = ctx.cache.as_ref() else { return };
    if found.is_empty() {
        return;
    }
    with_firsts(cache, |m| store(m, found, now, FIRST_CAPACITY));
}

fn store(m: &mut FirstMap, found: Vec<(String, &'static str, DateTime<Utc>)>, now: Instant, capacity: usize) {
    for (sensor, column, ts) in found {
        if m.len() >= capacity {
            m.retain(|_, (at, _)| now.saturating_duration_since(*at) < FIRST_TTL);
        }
        if m.len() >= capacity {
            m.clear();
        }
        m.insert((sensor, column), (now, ts));
    }
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
/// sensors, `$n+2` whether the first time and `$n+3` whether the last time
/// must be probed. A CASE evaluates its subquery only for the rows that
/// need it.
fn branch(st: &model::Stream, first_param: usize) -> String {
    let (table, col) = (st.kind.as_str(), st.column);
    let (ids, sids, first, last) = (first_param, first_param + 1, first_param + 2, first_param + 3);
    format!(
        "SELECT d.id, CASE WHEN d.pf THEN {} END, CASE WHEN d.pl THEN {} END \
         FROM unnest(${ids}::int8[], ${sids}::text[], ${first}::bool[], ${last}::bool[]) AS d(id, sid, pf, pl)",
        probe(table, col, false),
        probe(table, col, true)
    )
}

/// The page's Datastreams of one stream: their ids, sensors, and whether
/// the first and the last time must be probed (no cache has them).
type Group = (&'static model::Stream, Vec<i64>, Vec<String>, Vec<bool>, Vec<bool>);

/// Sets `phenomenonTime` and `resultTime` on Datastream rows (when `$select`
/// wants them): one statement for the whole page.
pub async fn fill(ctx: &Ctx<'_>, rows: &mut [Row], select: Option<&[Path]>) -> StaResult<()> {
    if rows.is_empty() || !wanted(select) {
        return Ok(());
    }
    // Per stream: ids, sensors, probe flags; and the cached times.
    let now = Instant::now();
    let mut groups: Vec<Group> = Vec::new();
    let mut cached: HashMap<i64, Ends> = HashMap::new();
    let mut sensors: HashMap<i64, (String, &'static str)> = HashMap::new();
    for row in rows.iter() {
        let (Some(sensor), Some(column)) = (&row.sensor_id, &row.column) else { continue };
        let Some(st) = model::stream_of_column(column) else { continue };
        let first = cached_first(ctx, sensor, st.column, now);
        let last = cached_last(ctx, sensor, column);
        cached.insert(row.id, (first, last));
        sensors.insert(row.id, (sensor.clone(), st.column));
        if first.is_some() && last.is_some() {
            continue;
        }
        let at = match groups.iter().position(|g| g.0.column == st.column) {
            Some(i) => i,
            None => {
                groups.push((st, Vec::new(), Vec::new(), Vec::new(), Vec::new()));
                groups.len() - 1
            }
        };
        let g = &mut groups[at];
        g.1.push(row.id);
        g.2.push(sensor.clone());
        g.3.push(first.is_none());
        g.4.push(last.is_none());
    }
    let mut probed: HashMap<i64, Ends> = HashMap::new();
    if !groups.is_empty() {
        let sql: Vec<String> = groups.iter().enumerate().map(|(i, g)| branch(g.0, i * 4 + 1)).collect();
        let sql = sql.join(" UNION ALL ");
        let mut params: Vec<&(dyn ToSql + Sync)> = Vec::new();
        for g in &groups {
            params.push(&g.1);
            params.push(&g.2);
            params.push(&g.3);
            params.push(&g.4);
        }
        for r in ctx.client.query(sql.as_str(), &params).await? {
            probed.insert(r.try_get(0)?, (r.try_get(1)?, r.try_get(2)?));
        }
    }
    let mut spans: HashMap<i64, (DateTime<Utc>, DateTime<Utc>)> = HashMap::new();
    let mut fresh = Vec::new();
    for (id, (cached_first, cached_last)) in cached {
        let (probed_first, probed_last) = probed.get(&id).copied().unwrap_or_default();
        if let (Some(ts), Some((sensor, column))) = (probed_first, sensors.get(&id)) {
            fresh.push((sensor.clone(), *column, ts));
        }
        if let (Some(first), Some(last)) = (probed_first.or(cached_first), probed_last.or(cached_last)) {
            // A reading older than the cached one may be stored meanwhile;
            // the interval never runs backwards.
            spans.insert(id, (first.min(last), last.max(first)));
        }
    }
    remember_firsts(ctx, fresh, now);
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
        assert!(sql.contains("unnest($4::int8[], $5::text[], $6::bool[], $7::bool[])"));
    }

    #[test]
    fn the_first_times_stay_bounded() {
        let now = Instant::now();
        let ts = Utc::now();
        let mut m = HashMap::new();
        let found = |n: usize| (0..n).map(|k| (format!("s{k}"), "level_m", ts)).collect::<Vec<_>>();
        store(&mut m, found(3), now, 3);
        assert_eq!(m.len(), 3);
        // Full of fresh entries: they all go before a new one is kept.
        store(&mut m, vec![("t".into(), "level_m", ts)], now, 3);
        assert_eq!(m.len(), 1);
        // Expired entries go first.
        let later = now + FIRST_TTL;
        store(&mut m, found(2), later, 3);
        store(&mut m, vec![("u".into(), "level_m", ts)], later, 3);
        assert_eq!(m.len(), 3);
        assert!(!m.contains_key(&("t".to_string(), "level_m")));
    }
}
