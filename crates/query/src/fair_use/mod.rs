//! Fair use of the open-data routes (`/opendata/...` and `/sta/...`): a rate
//! limit per client address, or per API key with the key's own quota, and
//! CORS so browser apps on any origin can read them.
//!
//! [`middleware`] wraps the whole router and acts on those paths only, so
//! every open-data route gets it however its group is merged. CORS is done
//! here rather than with tower-http's `CorsLayer` for the same reason: it
//! applies by path, and the operator API (bearer tokens) stays same-origin.
//!
//! - A key is sent as `X-API-Key` or `?api_key=`; an unknown or revoked one
//!   is refused with 401 rather than counted against the address, so a
//!   developer notices at once.
//! - The client address is the TCP peer's; `X-Forwarded-For` is believed
//!   only from `--opendata-trusted-proxies` (its right-most address that is
//!   not itself a trusted proxy).
//! - Refused requests get 429, `Retry-After` (seconds) and a JSON error.
//!   CORS preflights are answered before counting.

pub mod bucket;
pub mod keys;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;

use self::bucket::{Buckets, Decision};
use self::keys::KeyCache;
use crate::open_data::OpenDataConfig;
use crate::{AppState, ErrorBody};

/// The paths fair use and CORS apply to.
pub fn is_open_data_path(path: &str) -> bool {
    path.starts_with("/opendata/") || path.starts_with("/sta/")
}

/// Rate-limit state of one service.
#[derive(Debug)]
pub struct FairUse {
    by_ip: Buckets<IpAddr>,
    by_key: Buckets<i64>,
    keys: KeyCache,
    per_ip: u32,
    trusted_proxies: Vec<IpAddr>,
}

impl FairUse {
    pub fn new(config: &OpenDataConfig) -> FairUse {
        let max = config.opendata_rate_limit_clients_max as usize;
        FairUse {
            by_ip: Buckets::new(max),
            by_key: Buckets::new(max),
            keys: KeyCache::new(Duration::from_secs(config.opendata_key_cache_s)),
            per_ip: config.opendata_requests_per_minute_per_ip,
            trusted_proxies: config.opendata_trusted_proxies.clone(),
        }
    }

    /// The client's address: the peer, or what a trusted proxy says it forwarded for.
    pub fn client_ip(&self, peer: Option<IpAddr>, headers: &HeaderMap) -> IpAddr {
        // Without connection info (in-process tests) every client is one.
        let peer = peer.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        if !self.trusted_proxies.contains(&peer) {
            return peer;
        }
        let forwarded = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|a| a.trim().parse::<IpAddr>().ok())
            .collect::<Vec<_>>();
        forwarded.into_iter().rev().find(|ip| !self.trusted_proxies.contains(ip)).unwrap_or(peer)
    }
}

/// The key a request carries, header first.
fn api_key(request: &Request) -> Option<String> {
    if let Some(value) = request.headers().get("x-api-key").and_then(|v| v.to_str().ok()) {
        return Some(value.trim().to_string()).filter(|k| !k.is_empty());
    }
    let query = request.uri().query()?;
    query.split('&').find_map(|pair| {
        let value = pair.strip_prefix("api_key=")?;
        Some(value.to_string()).filter(|k| !k.is_empty())
    })
}

/// Headers a browser app may read from open-data responses.
const EXPOSED: &str = "ETag, Last-Modified, Retry-After, Content-Disposition, Location";

/// Fair use and CORS for open-data paths; other requests pass untouched.
pub async fn middleware(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if !is_open_data_path(request.uri().path()) {
        return next.run(request).await;
    }
    if request.method() == Method::OPTIONS && request.headers().contains_key(header::ACCESS_CONTROL_REQUEST_METHOD) {
        return preflight(request.headers());
    }
    let key = api_key(&request);
    let peer = request.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip());
    let ip = state.open_data.fair_use.client_ip(peer, request.headers());
    let mut response = match admit(&state, key, ip).await {
        Ok(()) => next.run(request).await,
        Err(refused) => refused,
    };
    let headers = response.headers_mut();
    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    headers.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, HeaderValue::from_static(EXPOSED));
    response
}

/// A CORS preflight: any origin, read-only methods, the headers a reader sends.
fn preflight(request: &HeaderMap) -> Response {
    let mut response = StatusCode::NO_CONTENT.into_response();
    let headers = response.headers_mut();
    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    headers.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static("GET, HEAD, OPTIONS"));
    let asked = request.get(header::ACCESS_CONTROL_REQUEST_HEADERS).cloned();
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        asked.unwrap_or_else(|| HeaderValue::from_static("X-API-Key, If-None-Match, If-Modified-Since")),
    );
    headers.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("86400"));
    headers.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, HeaderValue::from_static(EXPOSED));
    response
}

/// Takes a token from the key's or the address's bucket, or says why not.
async fn admit(state: &AppState, key: Option<String>, ip: IpAddr) -> Result<(), Response> {
    let fair_use = &state.open_data.fair_use;
    let now = tokio::time::Instant::now();
    let (decision, client) = match key {
        Some(key) => {
            let found = fair_use.keys.lookup(&state.pool, &key).await.map_err(IntoResponse::into_response)?;
            let Some(found) = found else {
                return Err(error(StatusCode::UNAUTHORIZED, "unauthorized", "unknown or revoked API key"));
            };
            (fair_use.by_key.check(&found.id, found.requests_per_minute, now), "key")
        }
        None => (fair_use.by_ip.check(&ip, fair_use.per_ip, now), "ip"),
    };
    match decision {
        Decision::Allowed => Ok(()),
        Decision::Limited { retry_after } => {
            state.open_data.metrics.rate_limited.with_label_values(&[client]).inc();
            let mut response = error(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                &format!(
                    "too many requests from this {}; retry after {} s{}",
                    if client == "key" { "API key" } else { "address" },
                    retry_after.as_secs(),
                    if client == "ip" { " or ask for an API key with a higher quota" } else { "" }
                ),
            );
            if let Ok(value) = HeaderValue::from_str(&retry_after.as_secs().to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, value);
            }
            Err(response)
        }
    }
}

fn error(status: StatusCode, code: &'static str, message: &str) -> Response {
    (status, Json(ErrorBody { code, message: message.to_string(), parameter: None, field: None })).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        open_data: OpenDataConfig,
    }

    #[test]
    fn forwarded_for_is_believed_from_trusted_proxies_only() {
        let config = Cli::try_parse_from(["x", "--opendata-trusted-proxies", "10.0.0.1,10.0.0.2"]).unwrap().open_data;
        let fair_use = FairUse::new(&config);
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-for", HeaderValue::from_static("1.2.3.4, 203.0.113.9, 10.0.0.2"));
        assert_eq!(fair_use.client_ip(Some(ip("10.0.0.1")), &headers), ip("203.0.113.9"));
        assert_eq!(fair_use.client_ip(Some(ip("198.51.100.7")), &headers), ip("198.51.100.7"), "not a proxy");
        assert_eq!(fair_use.client_ip(Some(ip("10.0.0.1")), &HeaderMap::new()), ip("10.0.0.1"));
        assert!(is_open_data_path("/sta/v1.1/Things") && is_open_data_path("/opendata/v1/catalog.jsonld"));
        assert!(!is_open_data_path("/api/v1/sensors") && !is_open_data_path("/stats"));
    }
}
