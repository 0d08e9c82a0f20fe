//! `$expand`: each navigation property of a level is read with one
//! statement for all parents (`= ANY($1)` for to-one, `unnest` + `LATERAL`
//! for collections, so nested `$top` / `$orderby` apply per parent), then
//! its own expansions, recursively.
//!
//! The latest Observation of Datastreams (`Observations($top=1;$orderby=
//! phenomenonTime desc)`, the query every client makes first) is taken from
//! the latest-value cache; Datastreams the cache has no value for fall back
//! to SQL.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use citygauge_sta::{EntityType, Expand, ExprKind, QueryOptions, Segment};
use futures_util::future::BoxFuture;
use serde_json::Value;

use super::exec::{self, Row, Scope, DEFAULT_TOP};
use super::{render, sources, times, StaResult};
use crate::cache::Cache;
use crate::QueryError;

/// What the expansion of one request needs.
#[derive(Debug)]
pub struct Ctx<'a> {
    pub client: &'a deadpool_postgres::Client,
    pub base: String,
    /// `None` when the cache is not built yet (then SQL answers).
    pub cache: Option<Arc<Cache>>,
}

/// Groups `Thing,Thing/Locations` into `Thing($expand=Locations)`.
fn merged(items: &[Expand]) -> Vec<(String, QueryOptions)> {
    let mut out: Vec<(String, QueryOptions)> = Vec::new();
    for item in items {
        let Some(first) = item.path.first() else { continue };
        let idx = match out.iter().position(|(n, _)| n == first) {
            Some(i) => i,
            None => {
                out.push((first.clone(), QueryOptions::default()));
                out.len() - 1
            }
        };
        let slot = &mut out[idx].1;
        if item.path.len() == 1 {
            let nested = std::mem::take(&mut slot.expand);
            *slot = item.options.clone();
            slot.expand.extend(nested);
        } else {
            slot.expand.push(Expand { path: item.path[1..].to_vec(), options: item.options.clone(), span: item.span });
        }
    }
    out
}

/// Exactly "the newest one": `$top=1`, ordered by time descending, nothing else.
fn latest_only(o: &QueryOptions) -> bool {
    let by_time = o.orderby.len() == 1
        && o.orderby[0].descending
        && matches!(&o.orderby[0].expr.kind, ExprKind::Path(p)
            if p.segments.len() == 1
                && matches!(&p.segments[0], Segment::Name(n) if n == "phenomenonTime" || n == "resultTime"));
    by_time
        && o.filter.is_none()
        && o.top == Some(1)
        && o.skip.unwrap_or(0) == 0
        && o.count != Some(true)
        && o.expand.is_empty()
}

fn from_cache(cache: &Cache, row: &Row) -> Option<Row> {
    let (sensor, column) = (row.sensor_id.as_ref()?, row.column.as_ref()?);
    let data = cache.read();
    let latest = data.sensors.get(sensor)?.latest.clone()?;
    drop(data);
    let value = latest.values.get(column.as_str()).filter(|v| !v.is_null())?;
    let interval = if column == "rain_mm" { latest.values.get("interval_s").and_then(Value::as_i64) } else { None };
    let mut child =
        render::observation_row(row.id, latest.ts, value, latest.quality.as_str(), &latest.quality_reasons, interval);
    child.parent = Some(row.id);
    // The sort keys SQL would give (the ordering time, then the time as the
    // tie-break), so a `nextLink` after a cached Observation continues
    // exactly where SQL would; PostgreSQL parses RFC 3339 back.
    let time = Some(latest.ts.to_rfc3339_opts(chrono::SecondsFormat::Micros, true));
    child.keys = vec![time.clone(), time];
    Some(child)
}

/// Fills `expanded` of every row with the navigation properties in `items`.
pub fn expand_rows<'a>(
    ctx: &'a Ctx<'a>,
    et: EntityType,
    rows: &'a mut [Row],
    items: &'a [Expand],
) -> BoxFuture<'a, StaResult<()>> {
    Box::pin(async move {
        if rows.is_empty() {
            return Ok(());
        }
        for (nav, opts) in merged(items) {
            let Some((target, many)) = et.navigate(&nav) else {
                return Err(QueryError::bad(
                    "$expand",
                    format!("{} have no navigation property '{nav}'", et.set_name()),
                ));
            };
            if target == EntityType::MultiDatastream {
                return Err(QueryError::bad("$expand", "MultiDatastreams are not served"));
            }
            if many {
                to_many(ctx, et, rows, &nav, target, &opts).await?;
            } else {
                to_one(ctx, et, rows, &nav, target, &opts).await?;
            }
        }
        Ok(())
    })
}

async fn to_one(
    ctx: &Ctx<'_>,
    et: EntityType,
    rows: &mut [Row],
    nav: &str,
    target: EntityType,
    opts: &QueryOptions,
) -> StaResult<()> {
    let col = sources::to_one_key(et, nav).ok_or_else(|| QueryError::Internal(format!("no key for {nav}")))?;
    let mut ids: Vec<i64> = rows.iter().filter_map(|r| r.fk(col)).collect();
    ids.sort_unstable();
    ids.dedup();
    let scope = Scope { any_id: Some(ids.clone()), ..Scope::default() };
    let mut built = exec::build(target, &scope, &QueryOptions::default(), None, None, ids.len() as u64)?;
    let mut children = exec::fetch(ctx.client, &mut built, &[]).await?;
    if target == EntityType::Datastream {
        times::fill(ctx, &mut children, opts.select.as_deref()).await?;
    }
    expand_rows(ctx, target, &mut children, &opts.expand).await?;
    let by_id: HashMap<i64, Value> = children
        .iter()
        .map(|c| (c.id, Value::Object(render::entity(target, c, &ctx.base, opts.select.as_deref()))))
        .collect();
    for row in rows.iter_mut() {
        let child = row.fk(col).and_then(|id| by_id.get(&id).cloned()).unwrap_or(Value::Null);
        row.expanded.insert(nav.to_string(), child);
    }
    Ok(())
}

async fn to_many(
    ctx: &Ctx<'_>,
    et: EntityType,
    rows: &mut [Row],
    nav: &str,
    target: EntityType,
    opts: &QueryOptions,
) -> StaResult<()> {
    let col = sources::to_many_key(et, nav).ok_or_else(|| QueryError::Internal(format!("no key for {nav}")))?;
    let top = opts.top.unwrap_or(DEFAULT_TOP) as usize;
    let mut groups: BTreeMap<i64, Vec<Row>> = BTreeMap::new();
    // Parents with children past `top`, and the token after the last shown.
    let mut more: HashMap<i64, String> = HashMap::new();
    if et == EntityType::Datastream && target == EntityType::Observation && latest_only(opts) {
        if let Some(cache) = &ctx.cache {
            for row in rows.iter() {
                if let Some(child) = from_cache(cache, row) {
                    // The cache holds the newest only, not whether there are
                    // older ones: link to them (the page may be empty).
                    more.insert(row.id, exec::token_after(&child));
                    groups.insert(row.id, vec![child]);
                }
            }
        }
    }
    let mut parents: Vec<i64> = rows.iter().map(|r| r.id).filter(|id| !groups.contains_key(id)).collect();
    parents.sort_unstable();
    parents.dedup();
    let mut built = exec::build(target, &Scope::default(), opts, None, Some(col), DEFAULT_TOP)?;
    if !parents.is_empty() {
        // The statement reads `top + 1` per parent: one more tells there is a next page.
        for child in exec::fetch(ctx.client, &mut built, &parents).await? {
            let parent = child.parent.unwrap_or_default();
            let group = groups.entry(parent).or_default();
            if group.len() < top {
                group.push(child);
            } else if let Some(last) = group.last() {
                more.entry(parent).or_insert_with(|| exec::token_after(last));
            }
        }
    }
    let counts: HashMap<i64, i64> = if opts.count == Some(true) {
        let mut all: Vec<i64> = rows.iter().map(|r| r.id).collect();
        all.sort_unstable();
        all.dedup();
        built.set_parents(&all);
        exec::count(ctx.client, &built).await?.into_iter().filter_map(|(p, n)| Some((p?, n))).collect()
    } else {
        HashMap::new()
    };
    if !opts.expand.is_empty() || target == EntityType::Datastream {
        let mut flat: Vec<Row> = std::mem::take(&mut groups).into_values().flatten().collect();
        if target == EntityType::Datastream {
            times::fill(ctx, &mut flat, opts.select.as_deref()).await?;
        }
        expand_rows(ctx, target, &mut flat, &opts.expand).await?;
        for child in flat {
            groups.entry(child.parent.unwrap_or_default()).or_default().push(child);
        }
    }
    for row in rows.iter_mut() {
        let children: Vec<Value> = groups
            .get(&row.id)
            .map(|g| {
                g.iter().map(|c| Value::Object(render::entity(target, c, &ctx.base, opts.select.as_deref()))).collect()
            })
            .unwrap_or_default();
        row.expanded.insert(nav.to_string(), Value::Array(children));
        if opts.count == Some(true) {
            row.expanded.insert(format!("{nav}@iot.count"), Value::from(counts.get(&row.id).copied().unwrap_or(0)));
        }
        if let Some(token) = more.get(&row.id) {
            let parent = render::self_path(et, &render::id_value(et, row));
            let link = format!("{}/{parent}/{nav}?{}$skiptoken={token}", ctx.base, nested_query(opts));
            row.expanded.insert(format!("{nav}@iot.nextLink"), Value::String(link));
        }
    }
    Ok(())
}

/// The nested options of an expansion as the query string of its own
/// collection (`$skip` left out: the token replaces it), each value
/// percent-encoded, ending in `&` when not empty.
fn nested_query(opts: &QueryOptions) -> String {
    let join = |items: Vec<String>, sep: &str| items.join(sep);
    let mut parts: Vec<(&str, String)> = Vec::new();
    if let Some(f) = &opts.filter {
        parts.push(("$filter", f.to_string()));
    }
    if !opts.expand.is_empty() {
        parts.push(("$expand", join(opts.expand.iter().map(ToString::to_string).collect(), ",")));
    }
    if let Some(s) = &opts.select {
        parts.push(("$select", join(s.iter().map(ToString::to_string).collect(), ",")));
    }
    if !opts.orderby.is_empty() {
        parts.push(("$orderby", join(opts.orderby.iter().map(ToString::to_string).collect(), ",")));
    }
    if let Some(t) = opts.top {
        parts.push(("$top", t.to_string()));
    }
    if let Some(c) = opts.count {
        parts.push(("$count", c.to_string()));
    }
    parts.iter().map(|(k, v)| format!("{k}={}&", encode(v))).collect()
}

/// Percent-encodes a query value: `&`, `+`, `#`, `%` and spaces must not
/// reach the server raw; the OData punctuation stays readable.
fn encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~$/(),;':@*".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
