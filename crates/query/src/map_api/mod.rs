//! `/api/v1/map/sensors.geojson` (one point per sensor with its latest value,
//! a layer per kind, pre-serialised and pre-compressed) and
//! `/api/v1/map/districts.geojson` (district outlines, made once at start).

use std::sync::Arc;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use chrono::{DateTime, Utc};
use citygauge_domain::Kind;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use utoipa::IntoParams;

use crate::cache::derive::{Derived, Snapshot};
use crate::cache::prepared::{etag_of, Prepared};
use crate::cache::view;
use crate::params::{self, given, Params};
use crate::server::AppState;
use crate::{ErrorBody, QueryError};

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct MapParams {
    /// Only this kind's sensors.
    pub kind: Option<String>,
    /// Only this district's sensors.
    pub district: Option<String>,
}

/// One sensor's feature, serialised: `key` without the clock-only `age_s`
/// (what the layer's ETag is hashed over), `body` with it.
#[derive(Debug, Clone)]
pub struct FeatureJson {
    pub kind: Kind,
    pub district: Option<String>,
    pub key: String,
    pub body: String,
}

fn feature(d: &Derived, now: DateTime<Utc>) -> Option<FeatureJson> {
    let m = &d.meta;
    let (lon, lat) = (m.lon?, m.lat?);
    let latest = d.latest.as_deref();
    let mut properties = Map::new();
    properties.insert("id".into(), m.id.clone().into());
    properties.insert("kind".into(), m.kind.as_str().into());
    properties.insert("subkind".into(), m.subkind.clone().into());
    properties.insert("name".into(), m.name.clone().into());
    properties.insert("name_zh".into(), m.name_zh.clone().into());
    properties.insert("district".into(), m.district.clone().into());
    properties.insert("status".into(), m.status.as_str().into());
    properties.insert("state".into(), d.state.as_str().into());
    properties.insert("level".into(), d.level.map(|l| l.as_str()).into());
    properties.insert("ts".into(), latest.map(|l| view::rfc3339(l.ts)).into());
    properties.insert("quality".into(), latest.map(|l| l.quality.as_str()).into());
    properties.insert("value".into(), d.value.into());
    properties.insert("unit".into(), d.unit.into());
    properties.insert("values".into(), latest.map(|l| Value::Object(l.values.clone())).unwrap_or(Value::Null));
    let mut feature = json!({
        "type": "Feature",
        "id": m.id,
        "geometry": {"type": "Point", "coordinates": [lon, lat]},
        "properties": properties,
    });
    let key = feature.to_string();
    feature["properties"]["age_s"] = latest.map(|l| (now - l.ts).num_seconds().max(0)).into();
    Some(FeatureJson { kind: m.kind, district: m.district.clone(), key, body: feature.to_string() })
}

fn collection<'a>(parts: impl Iterator<Item = &'a str>) -> Vec<u8> {
    let mut out = br#"{"type":"FeatureCollection","features":["#.to_vec();
    for (i, part) in parts.enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(part.as_bytes());
    }
    out.extend_from_slice(b"]}");
    out
}

/// The FeatureCollection of `features`, tagged by their content.
pub fn layer<'a>(features: impl Iterator<Item = &'a FeatureJson> + Clone, precompress: bool) -> Prepared {
    let key = collection(features.clone().map(|f| f.key.as_str()));
    let body = collection(features.map(|f| f.body.as_str()));
    Prepared::new(body, etag_of(&key), "application/json", precompress)
}

/// Every located sensor's feature, and the pre-built layers: `all` and one per kind.
pub fn layers(snapshot: &Snapshot) -> (Vec<FeatureJson>, Vec<(&'static str, Prepared)>) {
    let features: Vec<FeatureJson> = snapshot.sensors.iter().filter_map(|d| feature(d, snapshot.now)).collect();
    let mut out = vec![("all", layer(features.iter(), true))];
    for kind in Kind::ALL {
        out.push((kind.as_str(), layer(features.iter().filter(move |f| f.kind == kind), true)));
    }
    (features, out)
}

/// Sensors as GeoJSON points with their state, level and primary value.
#[utoipa::path(get, path = "/api/v1/map/sensors.geojson", tag = "map", params(MapParams), responses(
    (status = 200, description = "a GeoJSON FeatureCollection (ETag; gzip/br by Accept-Encoding)", body = Object, content_type = "application/json"),
    (status = 400, description = "a bad parameter, named", body = ErrorBody)))]
pub async fn sensors_handler(
    State(state): State<AppState>,
    Params(p): Params<MapParams>,
    headers: HeaderMap,
) -> Result<Response, QueryError> {
    let kind = given(&p.kind).map(|k| params::kind("kind", k)).transpose()?;
    let district = given(&p.district).map(str::to_string);
    state.ready()?;
    state.metrics.hit("map");
    match district {
        None => {
            let built = state.summaries.get().await;
            let key = kind.map(Kind::as_str).unwrap_or("all");
            let prepared =
                built.map.get(key).ok_or_else(|| QueryError::Internal(format!("map layer {key} missing")))?;
            Ok(prepared.respond(&headers))
        }
        Some(district) => {
            let built = state.summaries.get().await;
            if !state.cache.read().districts.contains(&district) {
                return Err(QueryError::bad("district", format!("no district named `{}`", params::shown(&district))));
            }
            let features = built
                .features
                .iter()
                .filter(|f| f.district.as_deref() == Some(district.as_str()) && kind.is_none_or(|k| f.kind == k));
            Ok(layer(features, false).respond(&headers))
        }
    }
}

/// District outline polygons (property `district`).
#[utoipa::path(get, path = "/api/v1/map/districts.geojson", tag = "map", responses(
    (status = 200, description = "a GeoJSON FeatureCollection of (Multi)Polygons", body = Object, content_type = "application/json"),
    (status = 503, description = "outlines not computed yet", body = ErrorBody)))]
pub async fn districts_handler(State(state): State<AppState>, headers: HeaderMap) -> Result<Response, QueryError> {
    let outlines: Option<Arc<Prepared>> = state.outlines.read().unwrap_or_else(|e| e.into_inner()).clone();
    let outlines = outlines.ok_or_else(|| QueryError::Unavailable("district outlines not ready".into()))?;
    state.metrics.hit("map_districts");
    Ok(outlines.respond(&headers))
}
