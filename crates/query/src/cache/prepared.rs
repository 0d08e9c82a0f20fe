//! Responses serialised once and served as bytes: the summaries (overview,
//! districts, map layers) are rebuilt by one background task ([`keep_built`])
//! on a blocking thread, at most once a second when the cache changed and at
//! least every [`REBUILD_AT_LEAST`] regardless (states and rain windows move
//! with the clock). Requests only clone an `Arc` of the current build. Each
//! body carries a weak ETag (`If-None-Match` gets 304) hashed over what it
//! says, leaving out what only moves with the clock (`as_of`, `age_s`), and,
//! for the big map layers, gzip and brotli variants made in the build.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use chrono::Utc;
use serde::Serialize;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::Cache;

/// Seconds clients and proxies may reuse a summary without asking.
pub const MAX_AGE_S: u32 = 5;
/// Summaries are rebuilt at most this often when the cache keeps changing.
pub const REBUILD_EVERY: Duration = Duration::from_secs(1);
/// ... and at least this often when it does not (time alone changes them).
pub const REBUILD_AT_LEAST: Duration = Duration::from_secs(2);

#[derive(Debug)]
pub struct Prepared {
    pub body: Bytes,
    pub etag: String,
    content_type: &'static str,
    /// Compressed variants of big bodies, made in the build; smaller ones
    /// are compressed per response by the compression layer.
    gzip: Option<Bytes>,
    br: Option<Bytes>,
}

/// A weak validator over `key`: equal content, equal tag, whatever the
/// encoding or the clock-only fields of the body.
pub fn etag_of(key: &[u8]) -> String {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    key.hash(&mut hasher);
    format!("W/\"{:016x}-{:x}\"", hasher.finish(), key.len())
}

impl Prepared {
    /// `body` tagged by `etag`; compressed variants made now if `precompress`.
    pub fn new(body: Vec<u8>, etag: String, content_type: &'static str, precompress: bool) -> Prepared {
        let (gzip, br) = if precompress { (Some(gzip(&body)), Some(brotli(&body))) } else { (None, None) };
        Prepared { body: body.into(), etag, content_type, gzip, br }
    }

    /// A JSON body tagged by its own bytes.
    pub fn json<T: Serialize>(value: &T, precompress: bool) -> Prepared {
        // Serialising our own types cannot fail.
        let body = serde_json::to_vec(value).unwrap_or_default();
        let etag = etag_of(&body);
        Prepared::new(body, etag, "application/json", precompress)
    }

    /// A JSON body tagged by `key` (the same content without clock-only fields).
    pub fn json_keyed<T: Serialize, K: Serialize>(value: &T, key: &K, precompress: bool) -> Prepared {
        let etag = etag_of(&serde_json::to_vec(key).unwrap_or_default());
        Prepared::new(serde_json::to_vec(value).unwrap_or_default(), etag, "application/json", precompress)
    }

    /// Whether the request's `If-None-Match` names this version.
    pub fn matches(&self, request: &HeaderMap) -> bool {
        let ours = self.etag.trim_start_matches("W/");
        request.get_all(header::IF_NONE_MATCH).iter().filter_map(|v| v.to_str().ok()).any(|v| {
            v.split(',').any(|tag| {
                let tag = tag.trim();
                tag == "*" || tag.trim_start_matches("W/") == ours
            })
        })
    }

    /// The response for a request with these headers: 304 if the client has
    /// this version, else the body in the best encoding it accepts.
    pub fn respond(&self, request: &HeaderMap) -> Response {
        let cache_control = format!("public, max-age={MAX_AGE_S}");
        let mut builder = Response::builder()
            .header(header::ETAG, &self.etag)
            .header(header::CACHE_CONTROL, cache_control)
            .header(header::VARY, "Accept-Encoding");
        if self.matches(request) {
            return builder.status(StatusCode::NOT_MODIFIED).body(Body::empty()).unwrap_or_default();
        }
        builder = builder.header(header::CONTENT_TYPE, self.content_type);
        let accepts = || accepted(request);
        let body = match (&self.br, &self.gzip) {
            (Some(br), _) if accepts().contains(&"br") => {
                builder = builder.header(header::CONTENT_ENCODING, "br");
                br.clone()
            }
            (_, Some(gz)) if accepts().contains(&"gzip") => {
                builder = builder.header(header::CONTENT_ENCODING, "gzip");
                gz.clone()
            }
            _ => self.body.clone(),
        };
        builder.body(Body::from(body)).unwrap_or_default()
    }
}

fn gzip(body: &[u8]) -> Bytes {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
    let _ = encoder.write_all(body);
    encoder.finish().unwrap_or_default().into()
}

fn brotli(body: &[u8]) -> Bytes {
    let mut out = Vec::new();
    // Quality 5: most of brotli's gain at a fraction of its top setting's cost.
    let params = ::brotli::enc::BrotliEncoderParams { quality: 5, ..Default::default() };
    let _ = ::brotli::BrotliCompress(&mut &body[..], &mut out, &params);
    out.into()
}

/// Encodings named in `Accept-Encoding` without `q=0`.
fn accepted(request: &HeaderMap) -> Vec<&str> {
    request
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|item| {
            let mut parts = item.split(';');
            let name = parts.next()?.trim();
            let refused = parts.any(|p| matches!(p.trim(), "q=0" | "q=0.0" | "q=0.00" | "q=0.000"));
            (!refused).then_some(name)
        })
        .collect()
}

/// One build of every summary.
#[derive(Debug)]
pub struct Built {
    pub version: u64,
    pub overview: Prepared,
    pub districts: Prepared,
    pub district: HashMap<String, Prepared>,
    /// Each district's first page of sensors (`/districts/{name}/sensors`
    /// without other parameters).
    pub district_sensors: HashMap<String, Prepared>,
    /// Map layers by kind name, and `all`.
    pub map: HashMap<&'static str, Prepared>,
    /// Every located sensor's map feature, for per-district layers.
    pub features: Vec<crate::map_api::FeatureJson>,
}

/// The current build. Readers clone an `Arc` out of a `watch` channel (a
/// lock held for a pointer copy); only [`keep_built`] writes it.
#[derive(Debug)]
pub struct Summaries {
    current: watch::Sender<Option<Arc<Built>>>,
    builds: AtomicU64,
}

impl Default for Summaries {
    fn default() -> Summaries {
        Summaries { current: watch::Sender::new(None), builds: AtomicU64::new(0) }
    }
}

impl Summaries {
    /// The current build; waits for the first one.
    pub async fn get(&self) -> Arc<Built> {
        if let Some(built) = self.current.borrow().clone() {
            return built;
        }
        let mut rx = self.current.subscribe();
        loop {
            if let Some(built) = rx.borrow_and_update().clone() {
                return built;
            }
            // The sender lives in `self`, so this only waits.
            if rx.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }

    pub fn publish(&self, built: Built) {
        self.current.send_replace(Some(Arc::new(built)));
        self.builds.fetch_add(1, Ordering::SeqCst);
    }

    /// Builds published so far (tests wait for a rebuild with it).
    pub fn builds(&self) -> u64 {
        self.builds.load(Ordering::SeqCst)
    }
}

/// Whether a build is due: none yet, the cache changed and the last build is
/// [`REBUILD_EVERY`] old, or it is [`REBUILD_AT_LEAST`] old in any case.
pub fn due(last: Option<(u64, tokio::time::Instant)>, version: u64, now: tokio::time::Instant) -> bool {
    match last {
        None => true,
        Some((built_version, at)) => {
            let age = now.saturating_duration_since(at);
            (built_version != version && age >= REBUILD_EVERY) || age >= REBUILD_AT_LEAST
        }
    }
}

/// Keeps the summaries current until `stop`: the build (derivation under a
/// short read lock, serialisation and compression outside it) runs on a
/// blocking thread, never on the request threads.
pub async fn keep_built(summaries: Arc<Summaries>, cache: Arc<Cache>, stop: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last: Option<(u64, tokio::time::Instant)> = None;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.cancelled() => return,
        }
        if !cache.is_built() || !due(last, cache.version(), tokio::time::Instant::now()) {
            continue;
        }
        let version = cache.version();
        let started = tokio::time::Instant::now();
        let source = cache.clone();
        match tokio::task::spawn_blocking(move || crate::server::build_summaries(&source, Utc::now())).await {
            Ok(mut built) => {
                built.version = version;
                summaries.publish(built);
            }
            Err(error) => tracing::error!(%error, "summaries: build failed"),
        }
        last = Some((version, started));
    }
}

/// A per-request JSON body (sensor lists and details) with a short max-age
/// and an ETag over `key` (`If-None-Match` gets 304); the compression layer
/// compresses it.
pub fn json_response<T: Serialize, K: Serialize>(value: &T, key: &K, request: &HeaderMap) -> Response {
    Prepared::json_keyed(value, key, false).respond(request)
}

/// A JSON body that must not be cached.
pub fn json_uncached<T: Serialize>(value: &T) -> Response {
    let mut response = axum::Json(value).into_response();
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etags_revalidate_and_encodings_are_chosen() {
        let p = Prepared::json(&serde_json::json!({"a": "x".repeat(1000)}), true);
        assert!(p.etag.starts_with("W/\""), "weak: the encodings differ in bytes");
        let mut headers = HeaderMap::new();
        headers.insert(header::IF_NONE_MATCH, HeaderValue::from_str(&p.etag).unwrap());
        assert_eq!(p.respond(&headers).status(), StatusCode::NOT_MODIFIED);
        let strong = p.etag.trim_start_matches("W/").to_string();
        headers.insert(header::IF_NONE_MATCH, HeaderValue::from_str(&format!("\"x\", {strong}")).unwrap());
        assert_eq!(p.respond(&headers).status(), StatusCode::NOT_MODIFIED);
        let mut headers = HeaderMap::new();
        headers.insert(header::ACCEPT_ENCODING, HeaderValue::from_static("gzip, br;q=0"));
        let response = p.respond(&headers);
        assert_eq!(response.headers()[header::CONTENT_ENCODING], "gzip");
        headers.insert(header::ACCEPT_ENCODING, HeaderValue::from_static("gzip, br"));
        assert_eq!(p.respond(&headers).headers()[header::CONTENT_ENCODING], "br");
        assert!(p.br.as_ref().unwrap().len() < p.body.len() / 4);
        assert!(p.respond(&HeaderMap::new()).headers().get(header::CONTENT_ENCODING).is_none());
    }

    #[test]
    fn clock_only_fields_stay_out_of_the_tag() {
        let key = serde_json::json!({"level": "wet"});
        let a = Prepared::json_keyed(&serde_json::json!({"level": "wet", "age_s": 1}), &key, false);
        let b = Prepared::json_keyed(&serde_json::json!({"level": "wet", "age_s": 9}), &key, false);
        assert_eq!(a.etag, b.etag);
        assert_ne!(a.body, b.body);
    }

    #[test]
    fn rebuilds_follow_changes_and_the_clock() {
        let t0 = tokio::time::Instant::now();
        assert!(due(None, 0, t0));
        let last = Some((7, t0));
        assert!(!due(last, 7, t0 + Duration::from_millis(500)));
        assert!(!due(last, 8, t0 + Duration::from_millis(500)), "at most once a second");
        assert!(due(last, 8, t0 + REBUILD_EVERY));
        assert!(!due(last, 7, t0 + REBUILD_EVERY), "unchanged: not yet");
        assert!(due(last, 7, t0 + REBUILD_AT_LEAST), "unchanged, but time moved: states and windows age");
    }
}
