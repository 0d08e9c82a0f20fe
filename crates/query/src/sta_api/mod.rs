//! The OGC SensorThings API 1.1, read part, at `/sta/v1.1` (and `/sta/v1.0`,
//! the same handlers with the version in the links).
//!
//! - [`model`]: which kinds and columns become which Datastreams,
//!   ObservedProperties and units; the ids;
//! - `sources`: each entity set as SQL over the registry and the
//!   time-series tables (never a copy), public active sensors only;
//! - `path`: resource paths (`Things(3)/Datastreams`, `.../name/$value`, `$ref`);
//! - `exec` + `expand`: one statement per level, keyset paging;
//! - [`render`]: JSON, links, `dataArray`, [`render::observation_json`].
//!
//! Query options are parsed, type-checked and translated to parameterised
//! SQL by `citygauge_sta`; anything refused is a 400 naming the option and
//! the position.

mod cursor;
mod exec;
mod expand;
pub mod model;
mod path;
pub mod render;
mod sources;
mod times;

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use citygauge_sta::{EntityType, QueryOptions, ResultFormat, StaError};
use serde_json::{json, Map, Value};

pub use render::{observation_json, observations_of_reading};

use self::exec::{Row, Scope, DEFAULT_TOP};
use self::expand::{expand_rows, Ctx};
use self::path::{Key, ResourcePath, Tail};
use crate::server::AppState;
use crate::QueryError;

pub type StaResult<T> = Result<T, QueryError>;

/// The conformance classes of the specification this server implements.
pub const CONFORMANCE: &[&str] = &[
    "http://www.opengis.net/spec/iot_sensing/1.1/req/datamodel",
    "http://www.opengis.net/spec/iot_sensing/1.1/req/resource-path/resource-path-to-entities",
    "http://www.opengis.net/spec/iot_sensing/1.1/req/request-data",
];

/// The entity sets served (MultiDatastreams are not: every Datastream here
/// has one value per time).
const SETS: [EntityType; 8] = [
    EntityType::Thing,
    EntityType::Location,
    EntityType::HistoricalLocation,
    EntityType::Datastream,
    EntityType::Sensor,
    EntityType::ObservedProperty,
    EntityType::Observation,
    EntityType::FeatureOfInterest,
];

/// The routes, both versions.
pub fn routes() -> Router<AppState> {
    let mut router = Router::new();
    for version in ["v1.1", "v1.0"] {
        router = router
            .route(&format!("/sta/{version}"), get(handler))
            .route(&format!("/sta/{version}/"), get(handler))
            .route(&format!("/sta/{version}/{{*rest}}"), get(handler));
    }
    router
}

/// A refused query option as a 400 naming the option and the position.
pub(crate) fn bad_option(e: StaError) -> QueryError {
    let name: &'static str = match &e {
        StaError::Syntax { option, .. }
        | StaError::Type { option, .. }
        | StaError::Limit { option, .. }
        | StaError::UnknownProperty { option, .. } => option,
        _ => "query",
    };
    let text = e.to_string();
    let reason = text.strip_prefix(name).map(str::trim_start).unwrap_or(&text).to_string();
    QueryError::bad(name, reason)
}

/// A value PostgreSQL could not take (SQLSTATE class 22: a number out of
/// range, a malformed `$skiptoken` value) is the client's, not ours.
fn client_data_error(e: QueryError) -> QueryError {
    match &e {
        QueryError::Database(db) if db.code().is_some_and(|c| c.code().starts_with("22")) => {
            QueryError::bad("query", "a value in the request is out of range or invalid for its type")
        }
        _ => e,
    }
}

/// The service root the links start with: `opendata_public_url` when set,
/// else the request's `Host` (and `X-Forwarded-Proto` behind a TLS proxy).
fn base_url(state: &AppState, headers: &HeaderMap, version: &str) -> String {
    if let Some(url) = &state.open_data.config.opendata_public_url {
        return format!("{}/sta/{version}", url.trim_end_matches('/'));
    }
    let host = headers
        .get("x-forwarded-host")
        .or_else(|| headers.get(header::HOST))
        .and_then(|h| h.to_str().ok())
        .filter(|h| !h.is_empty() && h.chars().all(|c| c.is_ascii_alphanumeric() || ".-:[]".contains(c)))
        .unwrap_or("localhost");
    let proto = match headers.get("x-forwarded-proto").and_then(|h| h.to_str().ok()) {
        Some("https") => "https",
        _ => "http",
    };
    format!("{proto}://{host}/sta/{version}")
}

async fn handler(State(state): State<AppState>, uri: Uri, headers: HeaderMap) -> Response {
    let path = uri.path();
    let Some(after) = path.strip_prefix("/sta/") else { return QueryError::not_found("resource").into_response() };
    let (version, rest) = after.split_at(after.len().min(4));
    let rest = rest.trim_start_matches('/');
    let base = base_url(&state, &headers, version);
    let result = if rest.is_empty() {
        Ok(root(&base, version))
    } else {
        serve(&state, &base, rest, uri.query().unwrap_or("")).await.map_err(client_data_error)
    };
    result.unwrap_or_else(IntoResponse::into_response)
}

fn root(base: &str, version: &str) -> Response {
    let sets: Vec<Value> =
        SETS.iter().map(|e| json!({"name": e.set_name(), "url": format!("{base}/{}", e.set_name())})).collect();
    let mut doc = json!({ "value": sets });
    if version == "v1.1" {
        doc["serverSettings"] = json!({ "conformance": CONFORMANCE });
    }
    Json(doc).into_response()
}

/// Splits `$skiptoken` off the raw query string (it is ours, not an OData option).
fn split_skiptoken(raw: &str) -> StaResult<(Option<String>, String)> {
    let mut token = None;
    let mut rest = Vec::new();
    for part in raw.split('&').filter(|p| !p.is_empty()) {
        let key = part.split_once('=').map_or(part, |(k, _)| k);
        if citygauge_sta::decode_component(key).map_err(bad_option)? == "$skiptoken" {
            let value = part.split_once('=').map_or("", |(_, v)| v);
            token = Some(citygauge_sta::decode_component(value).map_err(bad_option)?);
        } else {
            rest.push(part);
        }
    }
    Ok((token, rest.join("&")))
}

/// The query string of the next page: the request's, without `$skip` and
/// `$skiptoken`, plus the new token.
fn next_query(raw: &str, token: &str) -> String {
    let mut parts: Vec<&str> = raw
        .split('&')
        .filter(|p| !p.is_empty())
        .filter(|p| {
            let key = p.split_once('=').map_or(*p, |(k, _)| k);
            !matches!(citygauge_sta::decode_component(key).as_deref(), Ok("$skip" | "$skiptoken"))
        })
        .collect();
    let tail = format!("$skiptoken={token}");
    parts.push(&tail);
    parts.join("&")
}

async fn serve(state: &AppState, base: &str, rest: &str, raw_query: &str) -> StaResult<Response> {
    let decoded = citygauge_sta::decode_component(rest).map_err(|_| QueryError::bad("path", "is not UTF-8"))?;
    let rp = ResourcePath::parse(&decoded).map_err(|m| QueryError::bad("path", m))?;
    let (token, raw_opts) = split_skiptoken(raw_query)?;
    let opts = QueryOptions::from_query_string(&raw_opts).map_err(bad_option)?;
    let last = rp.steps.last().map(|s| s.entity).unwrap_or(EntityType::Thing);
    citygauge_sta::validate(&opts, last).map_err(bad_option)?;
    if opts.result_format.is_some() && last != EntityType::Observation {
        return Err(QueryError::bad("$resultFormat", "dataArray applies to Observations only"));
    }
    let client = state.pool.get().await?;
    let cache = state.cache.is_built().then(|| state.cache.clone());
    let ctx = Ctx { client: &client, base: base.to_string(), cache };
    let mut current: Option<(EntityType, Row)> = None;
    for step in &rp.steps {
        let scope = match &current {
            None => Scope { id: step.key, ..Scope::default() },
            Some((parent_type, parent)) if step.many => {
                let col = sources::to_many_key(*parent_type, &step.name)
                    .ok_or_else(|| QueryError::bad("path", format!("'{}' cannot be followed here", step.name)))?;
                let stream = match (parent_type, &parent.sensor_id, &parent.column) {
                    (EntityType::Datastream, Some(sensor), Some(column)) => Some((sensor.clone(), column.clone())),
                    _ => None,
                };
                Scope { id: step.key, parent: Some((col, parent.id)), stream, ..Scope::default() }
            }
            Some((parent_type, parent)) => {
                let col = sources::to_one_key(*parent_type, &step.name)
                    .ok_or_else(|| QueryError::bad("path", format!("'{}' cannot be followed here", step.name)))?;
                let id = parent.fk(col).ok_or_else(|| QueryError::not_found(step.name.clone()))?;
                Scope { id: Some(Key::Int(id)), ..Scope::default() }
            }
        };
        if step.many && step.key.is_none() {
            return collection(&ctx, step.entity, &scope, &opts, &rp.tail, token, &format!("{base}/{rest}"), raw_query)
                .await;
        }
        let mut built = exec::build(step.entity, &scope, &QueryOptions::default(), None, None, 1)?;
        let row = exec::fetch(&client, &mut built, &[]).await?.into_iter().next();
        let row =
            row.ok_or_else(|| QueryError::not_found(format!("{} {}", step.entity.set_name(), describe(step.key))))?;
        current = Some((step.entity, row));
    }
    let Some((et, mut row)) = current else { return Err(QueryError::bad("path", "names no entity")) };
    let id = render::id_value(et, &row);
    let self_link = format!("{base}/{}", render::self_path(et, &id));
    match &rp.tail {
        Tail::Entities => {
            if et == EntityType::Datastream {
                times::fill(&ctx, std::slice::from_mut(&mut row), opts.select.as_deref()).await?;
            }
            expand_rows(&ctx, et, std::slice::from_mut(&mut row), &opts.expand).await?;
            Ok(Json(Value::Object(render::entity(et, &row, base, opts.select.as_deref()))).into_response())
        }
        Tail::Ref => Ok(Json(json!({ "@iot.selfLink": self_link })).into_response()),
        Tail::Property(name) | Tail::Value(name) => {
            if et == EntityType::Datastream && (name == "phenomenonTime" || name == "resultTime") {
                times::fill(&ctx, std::slice::from_mut(&mut row), None).await?;
            }
            let value = if name == "id" { Some(id) } else { row.doc.get(name).cloned() };
            let value = value.ok_or_else(|| QueryError::not_found(format!("a value of '{name}'")))?;
            if matches!(rp.tail, Tail::Property(_)) {
                let mut out = Map::new();
                out.insert(name.clone(), value);
                return Ok(Json(Value::Object(out)).into_response());
            }
            let text = match value {
                Value::String(s) => s,
                other => other.to_string(),
            };
            let mut response = text.into_response();
            response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
            Ok(response)
        }
    }
}

fn describe(key: Option<Key>) -> String {
    match key {
        Some(Key::Int(n)) => n.to_string(),
        Some(Key::Obs(d, us)) => model::observation_id(d, us),
        None => String::new(),
    }
}

#[allow(clippy::too_many_arguments)]
async fn collection(
    ctx: &Ctx<'_>,
    et: EntityType,
    scope: &Scope,
    opts: &QueryOptions,
    tail: &Tail,
    token: Option<String>,
    link: &str,
    raw_query: &str,
) -> StaResult<Response> {
    let after = token.map(|t| cursor::decode(&t)).transpose().map_err(|m| QueryError::bad("$skiptoken", m))?;
    let top = opts.top.unwrap_or(DEFAULT_TOP) as usize;
    let (built, mut rows) = exec::fetch_newest_first(ctx.client, et, scope, opts, after.as_deref(), top).await?;
    let more = rows.len() > top;
    rows.truncate(top);
    let mut out = Map::new();
    if opts.count == Some(true) {
        let n = exec::count_total(ctx.client, &built, et, scope, opts).await?;
        out.insert("@iot.count".into(), Value::from(n));
    }
    if more {
        if let Some(last) = rows.last() {
            let next = format!("{link}?{}", next_query(raw_query, &exec::token_after(last)));
            out.insert("@iot.nextLink".into(), Value::String(next));
        }
    }
    let value: Vec<Value> = if *tail == Tail::Ref {
        rows.iter()
            .map(|r| json!({"@iot.selfLink": format!("{}/{}", ctx.base, render::self_path(et, &render::id_value(et, r)))}))
            .collect()
    } else if opts.result_format == Some(ResultFormat::DataArray) {
        render::data_array(&rows, &ctx.base, opts.select.as_deref())
    } else {
        if et == EntityType::Datastream {
            times::fill(ctx, &mut rows, opts.select.as_deref()).await?;
        }
        expand_rows(ctx, et, &mut rows, &opts.expand).await?;
        rows.iter().map(|r| Value::Object(render::entity(et, r, &ctx.base, opts.select.as_deref()))).collect()
    };
    out.insert("value".into(), Value::Array(value));
    Ok(Json(Value::Object(out)).into_response())
}
