//! Query-string parsing shared by the routes. Every parameter arrives as text
//! and is checked here, so a bad one is a 400 that names it (never a
//! framework message); unknown parameters are ignored (cache busters).

use std::collections::HashSet;

use axum::extract::{FromRequestParts, Query};
use axum::http::request::Parts;
use citygauge_domain::Kind;
use serde::de::DeserializeOwned;

use crate::QueryError;

/// Every query parameter of the API, so a rejection can name one.
const KNOWN: [&str; 18] = [
    "kind",
    "subkind",
    "district",
    "status",
    "state",
    "bbox",
    "q",
    "limit",
    "offset",
    "kinds",
    "districts",
    "sensors",
    "from",
    "to",
    "step",
    "points",
    "agg",
    "columns",
];

/// `Query<T>` whose rejection is a [`QueryError`] naming the parameter.
#[derive(Debug, Clone, Copy, Default)]
pub struct Params<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Params<T> {
    type Rejection = QueryError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match Query::<T>::from_request_parts(parts, state).await {
            Ok(Query(value)) => Ok(Params(value)),
            Err(_) => Err(match repeated(parts.uri.query().unwrap_or("")) {
                Some(name) => QueryError::bad(name, "given more than once"),
                None => QueryError::bad("query", "the query string is not valid"),
            }),
        }
    }
}

/// The first known parameter that appears more than once.
fn repeated(query: &str) -> Option<&'static str> {
    let mut seen = HashSet::new();
    query
        .split('&')
        .map(|pair| pair.split('=').next().unwrap_or(""))
        .filter_map(|key| KNOWN.iter().find(|k| **k == key).copied())
        .find(|key| !seen.insert(*key))
}

/// `axum::extract::Path<T>` whose rejection (a segment that is not UTF-8
/// once decoded, or not of the expected type) is a [`QueryError`].
#[derive(Debug, Clone)]
pub struct Path<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for Path<T> {
    type Rejection = QueryError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(value)) => Ok(Path(value)),
            Err(_) => Err(QueryError::bad("path", "a path segment is not valid UTF-8 text once decoded")),
        }
    }
}

/// The value, or `None` when absent or empty.
pub fn given(value: &Option<String>) -> Option<&str> {
    value.as_deref().map(str::trim).filter(|v| !v.is_empty())
}

pub fn kind(name: &'static str, value: &str) -> Result<Kind, QueryError> {
    value.parse().map_err(|_| {
        QueryError::bad(
            name,
            format!("`{}` is not a kind (rainfall, water_level, flood_depth, air_quality, streetlight)", shown(value)),
        )
    })
}

/// A comma-separated list of at most `max` non-empty items.
pub fn list<'a>(name: &'static str, value: &'a str, max: usize) -> Result<Vec<&'a str>, QueryError> {
    let items: Vec<&str> = value.split(',').map(str::trim).filter(|s| !s.is_empty()).collect();
    if items.len() > max {
        return Err(QueryError::bad(name, format!("at most {max} items")));
    }
    Ok(items)
}

pub fn kinds(name: &'static str, value: &str) -> Result<HashSet<Kind>, QueryError> {
    list(name, value, Kind::ALL.len() * 2)?.into_iter().map(|k| kind(name, k)).collect()
}

pub fn integer(name: &'static str, value: &str, min: u64, max: u64) -> Result<u64, QueryError> {
    let n: u64 =
        value.parse().map_err(|_| QueryError::bad(name, format!("`{}` is not a whole number", shown(value))))?;
    if n < min || n > max {
        return Err(QueryError::bad(name, format!("must be between {min} and {max}")));
    }
    Ok(n)
}

/// `minlon,minlat,maxlon,maxlat` in WGS84 degrees.
pub fn bbox(name: &'static str, value: &str) -> Result<[f64; 4], QueryError> {
    let parts: Vec<f64> = value
        .split(',')
        .map(|p| p.trim().parse::<f64>())
        .collect::<Result<_, _>>()
        .map_err(|_| QueryError::bad(name, "expected four numbers: minlon,minlat,maxlon,maxlat"))?;
    let [min_lon, min_lat, max_lon, max_lat] = parts[..] else {
        return Err(QueryError::bad(name, "expected four numbers: minlon,minlat,maxlon,maxlat"));
    };
    let lon_ok = |x: f64| x.is_finite() && (-180.0..=180.0).contains(&x);
    let lat_ok = |x: f64| x.is_finite() && (-90.0..=90.0).contains(&x);
    if !(lon_ok(min_lon) && lon_ok(max_lon) && lat_ok(min_lat) && lat_ok(max_lat)) {
        return Err(QueryError::bad(name, "longitudes must be within ±180 and latitudes within ±90"));
    }
    if min_lon > max_lon || min_lat > max_lat {
        return Err(QueryError::bad(name, "the minimum must not exceed the maximum"));
    }
    Ok([min_lon, min_lat, max_lon, max_lat])
}

/// A client's value, cut short for an error message.
pub fn shown(value: &str) -> String {
    let mut s: String = value.chars().take(40).collect();
    if value.chars().count() > 40 {
        s.push('…');
    }
    s
}
