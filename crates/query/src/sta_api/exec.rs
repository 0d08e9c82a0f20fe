//! Query execution: one SQL statement per entity set and level of
//! `$expand`, never one per parent. A collection below many parents is read
//! with `unnest($1::int8[])` and a `LATERAL` subquery, which applies the
//! nested `$filter`, `$orderby`, `$top` and `$skip` per parent.

use chrono::{DateTime, FixedOffset, TimeDelta, Utc};
use citygauge_sta::{typeck, EntityType, ExprKind, OrderBy, Path, QueryOptions, Segment, SqlBuilder, SqlParam, Type};
use serde_json::{Map, Value};
use tokio_postgres::types::ToSql;

use super::model::IDS_PER_THING;
use super::path::Key;
use super::sources::{self, EntitySchema, ObsScope};
use super::{cursor, StaResult};
use crate::QueryError;

/// Page size when the client gives no `$top`.
pub const DEFAULT_TOP: u64 = 100;

/// What a query of one source is narrowed to, besides `$filter`.
#[derive(Debug, Clone, Default)]
pub struct Scope {
    /// One entity.
    pub id: Option<Key>,
    /// Children of one parent: the child source's column and the parent's id.
    pub parent: Option<(&'static str, i64)>,
    /// Entities whose id is in the list (to-one expansions).
    pub any_id: Option<Vec<i64>>,
    /// Observations at or after this time only (see [`fetch_newest_first`]):
    /// a bound the planner can prune day partitions with.
    pub since: Option<DateTime<FixedOffset>>,
    /// And before this time only (the ascending window's end).
    pub until: Option<DateTime<FixedOffset>>,
    /// The parent Datastream's sensor and column, when the path reached
    /// its Observations (see [`count_total`]).
    pub stream: Option<(String, String)>,
}

/// One entity as read, with what its navigation needs.
#[derive(Debug, Clone)]
pub struct Row {
    /// The parent of a row read through `LATERAL`.
    pub parent: Option<i64>,
    /// The id; for an Observation its Datastream's id.
    pub id: i64,
    /// An Observation's time in microseconds since the epoch.
    pub us: Option<i64>,
    pub doc: Map<String, Value>,
    pub thing_id: Option<i64>,
    pub op_id: Option<i64>,
    pub sensor_id: Option<String>,
    pub column: Option<String>,
    /// The sort keys as text, for the `$skiptoken`.
    pub keys: Vec<Option<String>>,
    /// Expanded navigation properties, filled by the expansion step.
    pub expanded: Map<String, Value>,
}

impl Row {
    /// The value of a to-one navigation key column.
    pub fn fk(&self, col: &str) -> Option<i64> {
        match col {
            "thing_id" => self.thing_id,
            "op_id" => self.op_id,
            "ds_id" => Some(self.id),
            _ => None,
        }
    }
}

/// A bound value of ours or of the `$filter` translation.
#[derive(Debug, Clone)]
enum Param {
    Int(i64),
    Ints(Vec<i64>),
    Sta(SqlParam),
}

fn as_sql(p: &Param) -> &(dyn ToSql + Sync) {
    match p {
        Param::Int(n) => n,
        Param::Ints(v) => v,
        Param::Sta(SqlParam::Text(s)) => s,
        Param::Sta(SqlParam::Int(n)) => n,
        Param::Sta(SqlParam::Float(x)) => x,
        Param::Sta(SqlParam::Bool(b)) => b,
        Param::Sta(SqlParam::Timestamp(t)) => t,
        Param::Sta(SqlParam::Date(d)) => d,
        Param::Sta(SqlParam::Time(t)) => t,
    }
}

/// A statement and its parameters.
#[derive(Debug)]
pub struct Built {
    sql: String,
    params: Vec<Param>,
    count_sql: String,
    /// Parameters of the count (no cursor).
    count_params: usize,
    lateral: bool,
}

fn pg_type(t: Type) -> &'static str {
    match t {
        Type::Bool => "boolean",
        Type::Int => "int8",
        Type::Float => "float8",
        Type::DateTime => "timestamptz",
        Type::Date => "date",
        Type::Time => "time",
        Type::Duration => "interval",
        Type::Json => "jsonb",
        _ => "text",
    }
}

/// One sort key: SQL, type, descending.
struct SortKey {
    sql: String,
    ty: Type,
    desc: bool,
}

fn select_list(et: EntityType) -> String {
    use EntityType::*;
    let obs = et == Observation;
    let has_thing = !matches!(et, ObservedProperty | MultiDatastream);
    format!(
        "{}, {}, e.doc, {}, {}, {}, {}",
        if obs { "e.ds_id" } else { "e.id" },
        if obs { "e.us" } else { "NULL::int8" },
        if has_thing { "e.thing_id" } else { "NULL::int8" },
        if et == Datastream { "e.op_id" } else { "NULL::int8" },
        if matches!(et, Thing | Datastream) { "e.sensor_id" } else { "NULL::text" },
        if et == Datastream { "e.col" } else { "NULL::text" },
    )
}

fn sta_error(e: citygauge_sta::StaError) -> QueryError {
    super::bad_option(e)
}

/// Builds the statement reading `et` under `scope` with `opts` (`$filter`,
/// `$orderby`, `$top`, `$skip`), after `after` (a `$skiptoken`'s values).
/// With `lateral`, `$1` is the parents' ids and rows come per parent.
pub fn build(
    et: EntityType,
    scope: &Scope,
    opts: &QueryOptions,
    after: Option<&[Option<String>]>,
    lateral: Option<&'static str>,
    default_top: u64,
) -> StaResult<Built> {
    let mut params: Vec<Param> = Vec::new();
    let mut conds: Vec<String> = Vec::new();
    let bind = |params: &mut Vec<Param>, p: Param, cast: &str| {
        params.push(p);
        format!("${}::{cast}", params.len())
    };
    let mut scoped_ds = false;
    let mut obs_scope = ObsScope::All;
    if let Some(col) = lateral {
        // `$1`: the parents' ids, filled in by `fetch`; `p.pid` is one of them.
        params.push(Param::Ints(Vec::new()));
        let p = "p.pid";
        if et == EntityType::Observation {
            obs_scope = ObsScope::Lateral(col == "ds_id");
            scoped_ds = col == "ds_id";
        }
        conds.push(format!("e.{col} = {p}"));
    }
    let mut owned_parent = String::new();
    if let Some((col, parent)) = scope.parent {
        owned_parent = bind(&mut params, Param::Int(parent), "int8");
        conds.push(format!("e.{col} = {owned_parent}"));
    }
    let mut owned_id = String::new();
    match scope.id {
        Some(Key::Int(n)) => {
            let id_expr = bind(&mut params, Param::Int(n), "int8");
            conds.push(format!("e.id = {id_expr}"));
            if et == EntityType::Datastream {
                // A Datastream's id is computed (sta_id * 16 + column), which
                // no index serves; its Thing's id is the sensor's key.
                let thing = bind(&mut params, Param::Int(n.div_euclid(IDS_PER_THING)), "int8");
                conds.push(format!("e.thing_id = {thing}"));
            }
        }
        Some(Key::Obs(ds, us)) => {
            owned_id = bind(&mut params, Param::Int(ds), "int8");
            let ts = bind(&mut params, Param::Int(us), "int8");
            conds.push(format!("e.ts = 'epoch'::timestamptz + {ts} * interval '1 microsecond'"));
            scoped_ds = true;
        }
        None => {}
    }
    if let Some(ids) = &scope.any_id {
        let p = bind(&mut params, Param::Ints(ids.clone()), "int8[]");
        conds.push(format!("e.id = ANY({p})"));
        if et == EntityType::Datastream {
            let things = ids.iter().map(|id| id.div_euclid(IDS_PER_THING)).collect();
            let p = bind(&mut params, Param::Ints(things), "int8[]");
            conds.push(format!("e.thing_id = ANY({p})"));
        }
    }
    if et == EntityType::Observation && lateral.is_none() {
        if !owned_id.is_empty() {
            obs_scope = ObsScope::Datastream(&owned_id);
        } else if let Some((col, _)) = scope.parent {
            obs_scope =
                if col == "ds_id" { ObsScope::Datastream(&owned_parent) } else { ObsScope::Thing(&owned_parent) };
            scoped_ds = col == "ds_id";
        }
    }
    let src = sources::source(et, obs_scope);
    let schema = EntitySchema::new(et);
    let mut b = SqlBuilder::after(params.len());
    if let Some(f) = &opts.filter {
        conds.push(b.filter(f, &schema).map_err(sta_error)?);
    }
    let filter_params = b.params().len();
    let mut keys: Vec<SortKey> = Vec::new();
    for k in &opts.orderby {
        keys.push(sort_key(&mut b, &schema, k)?);
    }
    let tie: &[(&str, Type)] = match et {
        EntityType::Observation if scoped_ds => &[("(e.ts)", Type::DateTime)],
        EntityType::Observation => &[("(e.ds_id)", Type::Int), ("(e.ts)", Type::DateTime)],
        _ => &[("(e.id)", Type::Int)],
    };
    keys.extend(tie.iter().map(|(sql, ty)| SortKey { sql: sql.to_string(), ty: *ty, desc: false }));
    // The count query has the filter's parameters, not $orderby's (a JSON
    // key in $orderby is a parameter too).
    let count_params = params.len() + filter_params;
    params.extend(b.into_params().into_iter().map(Param::Sta));
    let count_conds = conds.clone();
    // Not in the count: the window only narrows where the page is looked for.
    if let Some(since) = scope.since {
        params.push(Param::Sta(SqlParam::Timestamp(since)));
        conds.push(format!("e.ts >= ${}::timestamptz", params.len()));
    }
    if let Some(until) = scope.until {
        params.push(Param::Sta(SqlParam::Timestamp(until)));
        conds.push(format!("e.ts < ${}::timestamptz", params.len()));
    }
    if let Some(values) = after {
        if values.len() != keys.len() {
            return Err(QueryError::bad("$skiptoken", "is not a token this server issued for this query"));
        }
        conds.push(keyset(&keys, values, &mut params));
    }
    let where_ = |c: &[String]| if c.is_empty() { "true".to_string() } else { c.join(" AND ") };
    let order: Vec<String> =
        keys.iter().map(|k| format!("{} {}", k.sql, if k.desc { "DESC" } else { "ASC" })).collect();
    let key_text: Vec<String> = keys.iter().map(|k| format!("({})::text", k.sql)).collect();
    let top = opts.top.unwrap_or(default_top);
    let skip = if after.is_some() { 0 } else { opts.skip.unwrap_or(0) };
    let inner = format!(
        "SELECT {}, {} FROM ({src}) e WHERE {} ORDER BY {} LIMIT {} OFFSET {skip}",
        select_list(et),
        key_text.join(", "),
        where_(&conds),
        order.join(", "),
        top + 1,
    );
    let count_inner = format!("SELECT count(*) FROM ({src}) e WHERE {}", where_(&count_conds));
    let (sql, count_sql) = match lateral {
        Some(col) => {
            let parents = match et {
                EntityType::Observation => sources::lateral_parents(col == "ds_id"),
                _ => "unnest($1::int8[]) AS p(pid)".to_string(),
            };
            (
                format!("SELECT p.pid, x.* FROM {parents} CROSS JOIN LATERAL ({inner}) x"),
                format!("SELECT p.pid, ({count_inner}) FROM {parents}"),
            )
        }
        None => (inner, count_inner),
    };
    Ok(Built { sql, params, count_sql, count_params, lateral: lateral.is_some() })
}

fn sort_key(b: &mut SqlBuilder, schema: &EntitySchema, k: &OrderBy) -> StaResult<SortKey> {
    use citygauge_sta::{Resolved, Schema};
    let resolve = |p: &Path| -> Result<Type, String> {
        Ok(match schema.resolve(p)? {
            Resolved::Column { ty, .. } => ty,
            Resolved::Json { .. } => Type::Json,
        })
    };
    let ty = typeck::check_orderby(&k.expr, "$orderby", &resolve).map_err(sta_error)?;
    let asc = OrderBy { expr: k.expr.clone(), descending: false };
    let sql = b.orderby(std::slice::from_ref(&asc), schema).map_err(sta_error)?;
    let sql = sql.strip_suffix(" ASC").unwrap_or(&sql).to_string();
    Ok(SortKey { sql, ty, desc: k.descending })
}

/// Rows strictly after `values` in the order of `keys` (PostgreSQL sorts
/// NULLs last ascending and first descending; the conditions follow that).
fn keyset(keys: &[SortKey], values: &[Option<String>], params: &mut Vec<Param>) -> String {
    let mut bound: Vec<Option<String>> = Vec::new();
    for (k, v) in keys.iter().zip(values) {
        bound.push(v.as_ref().map(|text| {
            params.push(Param::Sta(SqlParam::Text(text.clone())));
            format!("(${}::text)::{}", params.len(), pg_type(k.ty))
        }));
    }
    let eq = |k: &SortKey, v: &Option<String>| match v {
        Some(v) => format!("{} = {v}", k.sql),
        None => format!("{} IS NULL", k.sql),
    };
    let gt = |k: &SortKey, v: &Option<String>| match (v, k.desc) {
        (Some(v), true) => format!("{} < {v}", k.sql),
        (Some(v), false) if sources::never_null(&k.sql) => format!("{} > {v}", k.sql),
        (Some(v), false) => format!("({} > {v} OR {} IS NULL)", k.sql, k.sql),
        (None, true) => format!("{} IS NOT NULL", k.sql),
        (None, false) => "false".to_string(),
    };
    let mut alternatives = Vec::new();
    for i in 0..keys.len() {
        let mut parts: Vec<String> = (0..i).map(|j| eq(&keys[j], &bound[j])).collect();
        parts.push(gt(&keys[i], &bound[i]));
        alternatives.push(format!("({})", parts.join(" AND ")));
    }
    // A plain bound on the first key as well, which an index can serve.
    let first = match (&bound[0], keys[0].desc) {
        (Some(v), true) => format!("{} <= {v} AND ", keys[0].sql),
        (Some(v), false) if sources::never_null(&keys[0].sql) => format!("{} >= {v} AND ", keys[0].sql),
        _ => String::new(),
    };
    format!("({first}({}))", alternatives.join(" OR "))
}

fn decode_row(row: &tokio_postgres::Row, lateral: bool) -> StaResult<Row> {
    let o = usize::from(lateral);
    let doc = match row.try_get::<_, Option<Value>>(o + 2)? {
        Some(Value::Object(m)) => m,
        _ => Map::new(),
    };
    let mut keys = Vec::new();
    for k in (o + 7)..row.len() {
        keys.push(row.try_get::<_, Option<String>>(k)?);
    }
    Ok(Row {
        parent: if lateral { row.try_get(0)? } else { None },
        id: row.try_get::<_, Option<i64>>(o)?.unwrap_or_default(),
        us: row.try_get(o + 1)?,
        doc,
        thing_id: row.try_get(o + 3)?,
        op_id: row.try_get(o + 4)?,
        sensor_id: row.try_get(o + 5)?,
        column: row.try_get(o + 6)?,
        keys,
        expanded: Map::new(),
    })
}

impl Built {
    /// Fills `$1` of a lateral statement with the parents' ids.
    pub fn set_parents(&mut self, parents: &[i64]) {
        if self.lateral {
            self.params[0] = Param::Ints(parents.to_vec());
        }
    }
}

/// Runs a built statement; `parents` fills `$1` of a lateral one.
pub async fn fetch(client: &deadpool_postgres::Client, built: &mut Built, parents: &[i64]) -> StaResult<Vec<Row>> {
    built.set_parents(parents);
    let refs: Vec<&(dyn ToSql + Sync)> = built.params.iter().map(as_sql).collect();
    let started = std::time::Instant::now();
    let rows = client.query(built.sql.as_str(), &refs).await?;
    tracing::debug!(sql = %built.sql, elapsed_ms = started.elapsed().as_millis() as u64, "sensorthings query");
    rows.iter().map(|r| decode_row(r, built.lateral)).collect()
}

/// The newest-first page of one Datastream's Observations (the first sort
/// key the time, descending): `top + 1` rows of `build(et, scope, ...)`.
///
/// Read whole, that ordering makes PostgreSQL open every day partition of
/// the kind's table (a year is 366) and sort all of the Datastream's rows
/// (measured: > 5 s for a year of minutes). So the page is first looked for
/// in a window ending at the newest time it can hold (now, or the
/// `$skiptoken`'s time), whose bound prunes the partitions at planning:
/// when the window holds `top + 1` rows they are exactly the first ones of
/// the whole ordering; otherwise it is widened, in proportion to what it
/// held, and past 400 days dropped.
pub async fn fetch_newest_first(
    client: &deadpool_postgres::Client,
    et: EntityType,
    scope: &Scope,
    opts: &QueryOptions,
    after: Option<&[Option<String>]>,
    top: usize,
) -> StaResult<(Built, Vec<Row>)> {
    let (anchor, ascending) = match newest_first_anchor(et, scope, opts, after) {
        Some(anchor) => (Some(anchor), false),
        None => (oldest_first_anchor(client, et, scope, opts, after).await?, true),
    };
    let mut window = anchor.map(|anchor| (anchor, first_window(top)));
    loop {
        // A token's time is the client's text: one near the end of chrono's
        // range would overflow; such a window is dropped (PostgreSQL then
        // refuses the time itself: a 400).
        if let Some((anchor, span)) = window {
            let bound = if ascending { anchor.checked_add_signed(span) } else { anchor.checked_sub_signed(span) };
            if bound.is_none() {
                window = None;
            }
        }
        let scoped = match window {
            Some((anchor, span)) if ascending => {
                Scope { since: Some(anchor), until: anchor.checked_add_signed(span), ..scope.clone() }
            }
            _ => Scope { since: window.and_then(|(anchor, span)| anchor.checked_sub_signed(span)), ..scope.clone() },
        };
        let mut built = build(et, &scoped, opts, after, None, DEFAULT_TOP)?;
        let rows = fetch(client, &mut built, &[]).await?;
        match window {
            Some((anchor, span)) if rows.len() <= top => window = wider(span, rows.len(), top).map(|s| (anchor, s)),
            _ => return Ok((built, rows)),
        }
    }
}

/// Twice the page in minutes: one window for a one-minute series.
pub fn first_window(top: usize) -> TimeDelta {
    TimeDelta::minutes(2 * (top as i64 + 1))
}

/// The next window after one of `span` held `found` rows of the `top + 1`
/// wanted; `None` (no window) past 400 days.
pub fn wider(span: TimeDelta, found: usize, top: usize) -> Option<TimeDelta> {
    let factor = (2 * (top + 1) / found.max(1)).max(2) as i32;
    span.checked_mul(factor).filter(|s| *s < TimeDelta::days(400))
}

/// Where a newest-first window ends, when it applies: Observations of one
/// Datastream ordered by time descending first; now, or the time of the
/// `$skiptoken` (PostgreSQL's text form of the first key).
fn newest_first_anchor(
    et: EntityType,
    scope: &Scope,
    opts: &QueryOptions,
    after: Option<&[Option<String>]>,
) -> Option<DateTime<FixedOffset>> {
    let first = opts.orderby.first()?;
    let by_time = first.descending && is_time(first);
    let one_datastream = matches!(scope.parent, Some(("ds_id", _))) || matches!(scope.id, Some(Key::Int(_)));
    if et != EntityType::Observation || !by_time || !one_datastream || scope.since.is_some() {
        return None;
    }
    match after {
        None => Some(Utc::now().fixed_offset()),
        Some(values) => {
            let text = values.first()?.as_deref()?;
            DateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f%#z").ok()
        }
    }
}

/// Where an oldest-first window starts, when it applies: Observations of
/// one Datastream reached by its path, ordered by time ascending first (or
/// not ordered: the time is the tie-break), without `$skip`; the token's
/// time, or the Datastream's first time by one probe of the kind's
/// `(sensor_id, ts)` key (an index scan per partition, stopping at the
/// first row) when there is no token. `None` when it has no Observation.
async fn oldest_first_anchor(
    client: &deadpool_postgres::Client,
    et: EntityType,
    scope: &Scope,
    opts: &QueryOptions,
    after: Option<&[Option<String>]>,
) -> StaResult<Option<DateTime<FixedOffset>>> {
    let by_time = match opts.orderby.first() {
        None => true,
        Some(first) => !first.descending && is_time(first),
    };
    let stream = match (&scope.stream, scope.parent) {
        (Some(stream), Some(("ds_id", ds))) => one_stream(&stream.1, ds).map(|st| (&stream.0, st)),
        _ => None,
    };
    let Some((sensor, st)) = stream else { return Ok(None) };
    if et != EntityType::Observation || !by_time || scope.since.is_some() || opts.skip.unwrap_or(0) > 0 {
        return Ok(None);
    }
    if let Some(values) = after {
        let text = values.first().and_then(|v| v.as_deref());
        return Ok(text.and_then(|t| DateTime::parse_from_str(t, "%Y-%m-%d %H:%M:%S%.f%#z").ok()));
    }
    let sql =
        format!("SELECT min(r.ts) FROM {} r WHERE r.sensor_id = $1 AND r.{} IS NOT NULL", st.kind.as_str(), st.column);
    let first: Option<DateTime<Utc>> = client.query_one(sql.as_str(), &[sensor]).await?.try_get(0)?;
    Ok(first.map(|t| t.fixed_offset()))
}

/// Whether an `$orderby` key is an Observation's time (either name).
fn is_time(key: &OrderBy) -> bool {
    matches!(&key.expr.kind, ExprKind::Path(p)
        if p.segments.len() == 1
            && matches!(&p.segments[0], Segment::Name(n) if n == "phenomenonTime" || n == "resultTime"))
}

/// The stream of a Datastream's column, when it is the one the id names.
fn one_stream(column: &str, ds: i64) -> Option<&'static super::model::Stream> {
    super::model::stream_of_column(column).filter(|st| st.index == ds.rem_euclid(super::model::IDS_PER_THING))
}

/// `@iot.count` of a collection. The Observations of one Datastream
/// without `$filter` are counted straight from the kind's table by the
/// `(sensor_id, ts)` key: through the source, the same count also runs
/// every other kind's branch and projects each row (measured: 2-3x the time
/// of the plain count on a year of minutes, past the statement timeout with
/// four at once). The path step already read the Datastream through the
/// visible source, so the sensor is public and active.
pub async fn count_total(
    client: &deadpool_postgres::Client,
    built: &Built,
    et: EntityType,
    scope: &Scope,
    opts: &QueryOptions,
) -> StaResult<i64> {
    if let (EntityType::Observation, None, Some((sensor, column)), Some(("ds_id", ds))) =
        (et, &opts.filter, &scope.stream, scope.parent)
    {
        if let Some(st) = one_stream(column, ds) {
            let sql = format!(
                "SELECT count(*) FROM {} r WHERE r.sensor_id = $1 AND r.{} IS NOT NULL",
                st.kind.as_str(),
                st.column
            );
            return Ok(client.query_one(sql.as_str(), &[sensor]).await?.try_get(0)?);
        }
    }
    Ok(count(client, built).await?.first().map_or(0, |c| c.1))
}

/// Runs the count of a built statement: one figure, or one per parent.
pub async fn count(client: &deadpool_postgres::Client, built: &Built) -> StaResult<Vec<(Option<i64>, i64)>> {
    let refs: Vec<&(dyn ToSql + Sync)> = built.params[..built.count_params].iter().map(as_sql).collect();
    let rows = client.query(built.count_sql.as_str(), &refs).await?;
    rows.iter()
        .map(|r| if built.lateral { Ok((r.try_get(0)?, r.try_get(1)?)) } else { Ok((None, r.try_get(0)?)) })
        .collect::<Result<_, tokio_postgres::Error>>()
        .map_err(Into::into)
}

/// The `$skiptoken` continuing after `row`.
pub fn token_after(row: &Row) -> String {
    cursor::encode(&row.keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newest_first_windows_grow_with_what_they_missed_then_stop() {
        assert_eq!(first_window(100), TimeDelta::minutes(202));
        // Half the page found: twice as wide (at least).
        assert_eq!(wider(TimeDelta::hours(1), 60, 100), Some(TimeDelta::hours(3)));
        // Nothing found: as if one row had been.
        assert_eq!(wider(TimeDelta::hours(1), 0, 100), Some(TimeDelta::hours(202)));
        assert_eq!(wider(TimeDelta::days(300), 100, 100), None);
    }

    #[test]
    fn only_newest_first_reads_of_one_datastream_get_a_window() {
        let opts = |q: &str| QueryOptions::from_query_string(q).unwrap();
        let one = Scope { parent: Some(("ds_id", 33)), ..Scope::default() };
        let desc = opts("$orderby=phenomenonTime%20desc");
        assert!(newest_first_anchor(EntityType::Observation, &one, &desc, None).is_some());
        let token = [Some("2026-11-30 12:00:00.5+00".to_string()), None];
        let anchor = newest_first_anchor(EntityType::Observation, &one, &desc, Some(&token)).unwrap();
        assert_eq!(anchor.to_rfc3339(), "2026-11-30T12:00:00.500+00:00");
        assert!(newest_first_anchor(EntityType::Observation, &one, &opts("$orderby=phenomenonTime"), None).is_none());
        assert!(newest_first_anchor(EntityType::Observation, &Scope::default(), &desc, None).is_none());
        let thing = Scope { parent: Some(("thing_id", 2)), ..Scope::default() };
        assert!(newest_first_anchor(EntityType::Observation, &thing, &desc, None).is_none());
    }
}
