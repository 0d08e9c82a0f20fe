//! Bulk downloads: `/opendata/v1/{kind}/{YYYY-MM-DD}.csv` and `.json`, one
//! kind's readings of public sensors for one day of the city's time zone.
//!
//! - A closed day (before today) is read out of the database once into the
//!   disk cache (`cache`) and served from there, with a weak ETag that
//!   follows its fingerprint (`If-None-Match` gets 304) and `Last-Modified`
//!   (when the file was made). Late data is caught by re-counting the day
//!   every `--opendata-cache-recheck-s`.
//! - Today is streamed straight from the database (not cached: it grows),
//!   with an ETag of its current count so pollers get 304 while it is still.
//! - A day in the future is 404, and so is a past day without readings.
//!
//! The body is streamed in chunks (a file or a row stream behind a bounded
//! channel), never built in memory.

mod cache;
pub mod export;

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use citygauge_domain::Kind;
use tokio::sync::{mpsc, Semaphore};
use tokio_stream::wrappers::ReceiverStream;

use self::cache::{DiskCache, Entry, Key};
pub use self::export::Format;
use crate::open_data::OpenDataConfig;
use crate::params::{self, Path};
use crate::{AppState, QueryError};

/// Download state: the disk cache and the generation slots.
#[derive(Debug)]
pub struct Downloads {
    cache: DiskCache,
    slots: Arc<Semaphore>,
    recheck: Duration,
    statement_timeout_ms: u64,
}

impl Downloads {
    pub fn new(config: &OpenDataConfig, database_url: &str) -> Result<Downloads, QueryError> {
        Ok(Downloads {
            cache: DiskCache::new(config.cache_dir(database_url)),
            slots: Arc::new(Semaphore::new(config.opendata_downloads_max_concurrent as usize)),
            recheck: Duration::from_secs(config.opendata_cache_recheck_s),
            statement_timeout_ms: config.opendata_download_timeout_ms,
        })
    }
}

pub fn routes() -> Router<AppState> {
    Router::new().route("/opendata/v1/{kind}/{file}", get(day_handler))
}

/// `YYYY-MM-DD.csv` or `.json`.
fn parse_file(file: &str) -> Result<(NaiveDate, Format), QueryError> {
    let (day, format) = match file.rsplit_once('.') {
        Some((day, "csv")) => (day, Format::Csv),
        Some((day, "json")) => (day, Format::Json),
        _ => return Err(QueryError::bad("file", format!("`{}` is not YYYY-MM-DD.csv or .json", params::shown(file)))),
    };
    let parsed = NaiveDate::parse_from_str(day, "%Y-%m-%d")
        .ok()
        .filter(|d| d.format("%Y-%m-%d").to_string() == day)
        .ok_or_else(|| QueryError::bad("file", format!("`{}` is not a date YYYY-MM-DD", params::shown(day))))?;
    Ok((parsed, format))
}

/// The UTC instant a local day starts (the earliest, should a zone skip midnight).
pub fn day_start(timezone: chrono_tz::Tz, day: NaiveDate) -> DateTime<Utc> {
    let midnight = day.and_hms_opt(0, 0, 0).unwrap_or_default();
    match timezone.from_local_datetime(&midnight).earliest() {
        Some(t) => t.with_timezone(&Utc),
        // A zone whose midnight does not exist that day: the hour after.
        None => (timezone.from_utc_datetime(&midnight) + chrono::Duration::hours(1)).with_timezone(&Utc),
    }
}

pub fn today(timezone: chrono_tz::Tz) -> NaiveDate {
    Utc::now().with_timezone(&timezone).date_naive()
}

/// Whether `If-None-Match` names `etag` (weak comparison, `*` included).
pub fn matches(headers: &HeaderMap, etag: &str) -> bool {
    let bare = |t: &str| t.trim().trim_start_matches("W/").to_string();
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim() == "*" || bare(t) == bare(etag))
}

/// One day of one kind.
pub async fn day_handler(
    State(state): State<AppState>,
    Path((kind, file)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, QueryError> {
    let kind = params::kind("kind", &kind)?;
    let (day, format) = parse_file(&file)?;
    let tz = state.timezone;
    let today = today(tz);
    if day > today {
        return Err(QueryError::not_found(format!("{kind} data for {day} (a day still to come)")));
    }
    let (from, to) = (day_start(tz, day), day_start(tz, day.succ_opt().unwrap_or(day)));
    let downloads = &state.open_data.downloads;
    let metric = |result: &str| state.open_data.metrics.downloads.with_label_values(&[result]).inc();
    let key: Key = (kind, day, format);
    if day == today {
        let fingerprint = {
            let client = state.pool.get().await?;
            cache::fingerprint(&**client, kind, from, to).await?
        };
        let etag = fingerprint.etag(kind, day, format);
        if matches(&headers, &etag) {
            metric("not_modified");
            return Ok(not_modified(&etag, "public, max-age=60"));
        }
        let permit = downloads.slots.clone().try_acquire_owned().map_err(|_| overloaded())?;
        let export = export_of(&state, key, from, to);
        let (tx, rx) = mpsc::channel(4);
        let pool = state.pool.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let result = async {
                let mut client = pool.get().await?;
                export::run(&mut client, &export, &tx).await
            }
            .await;
            if let Err(error) = result {
                tracing::warn!(%error, "open data: streaming today's file failed");
                let _ = tx.send(Err(std::io::Error::other("export failed"))).await;
            }
        });
        metric("stream");
        return Ok(file_response(Body::from_stream(ReceiverStream::new(rx)), kind, day, format, &etag, None, 60));
    }
    let entry = closed_day(&state, key, from, to).await?;
    if matches(&headers, &entry.etag) {
        metric("not_modified");
        return Ok(not_modified(&entry.etag, "public, max-age=3600"));
    }
    let body = read_file(downloads.cache.path(&key))?;
    Ok(file_response(body, kind, day, format, &entry.etag, Some(entry.generated_at), 3600))
}

fn overloaded() -> QueryError {
    QueryError::Overloaded { retry_after: Duration::from_secs(5) }
}

fn export_of(state: &AppState, (kind, _, format): Key, from: DateTime<Utc>, to: DateTime<Utc>) -> export::Export {
    export::Export {
        kind,
        format,
        from,
        to,
        timezone: state.timezone,
        statement_timeout_ms: state.open_data.downloads.statement_timeout_ms,
        fingerprint: false,
    }
}

/// The cached file of a closed day, checked or made as needed.
async fn closed_day(state: &AppState, key: Key, from: DateTime<Utc>, to: DateTime<Utc>) -> Result<Entry, QueryError> {
    let downloads = &state.open_data.downloads;
    let fresh = |entry: &Entry| entry.checked.is_some_and(|at| at.elapsed() < downloads.recheck);
    if let Some(entry) = downloads.cache.get(&key).await.filter(fresh) {
        state.open_data.metrics.downloads.with_label_values(&["hit"]).inc();
        return Ok(entry);
    }
    // One request at a time per file: the others find it made.
    let lock = downloads.cache.lock_for(&key);
    let _making = lock.lock().await;
    let fingerprint = {
        let client = state.pool.get().await?;
        cache::fingerprint(&**client, key.0, from, to).await?
    };
    if fingerprint.rows == 0 {
        downloads.cache.remove(&key).await;
        return Err(QueryError::not_found(format!("{} data for {}", key.0, key.1)));
    }
    if let Some(entry) = downloads.cache.get(&key).await.filter(|e| e.fingerprint == fingerprint) {
        downloads.cache.checked(&key, tokio::time::Instant::now());
        state.open_data.metrics.downloads.with_label_values(&["hit"]).inc();
        return Ok(entry);
    }
    let _permit = downloads.slots.clone().try_acquire_owned().map_err(|_| overloaded())?;
    let temporary = downloads.cache.temporary(&key).await?;
    let made = generate(state, key, from, to, &temporary).await;
    let fingerprint_now = match made {
        Ok(fingerprint) => fingerprint,
        Err(error) => {
            cache::discard(&temporary);
            return Err(error);
        }
    };
    let entry = Entry {
        etag: fingerprint_now.etag(key.0, key.1, key.2),
        fingerprint: fingerprint_now,
        generated_at: Utc::now(),
        checked: Some(tokio::time::Instant::now()),
    };
    downloads.cache.install(&key, temporary, entry.clone()).await?;
    state.open_data.metrics.downloads.with_label_values(&["generated"]).inc();
    Ok(entry)
}

/// Writes the day's file to `path`; returns the fingerprint of what it
/// holds (counted in the snapshot the rows were read in).
async fn generate(
    state: &AppState,
    key: Key,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    path: &std::path::Path,
) -> Result<cache::Fingerprint, QueryError> {
    let export = export::Export { fingerprint: true, ..export_of(state, key, from, to) };
    let (tx, mut rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(4);
    let target = path.to_path_buf();
    let writer = tokio::task::spawn_blocking(move || -> std::io::Result<()> {
        use std::io::Write;
        let mut file = std::io::BufWriter::new(std::fs::File::create(target)?);
        while let Some(chunk) = rx.blocking_recv() {
            file.write_all(&chunk?)?;
        }
        file.into_inner().map_err(|e| e.into_error())?.sync_all()
    });
    let exported = async {
        let mut client = state.pool.get().await?;
        export::run(&mut client, &export, &tx).await
    }
    .await;
    drop(tx);
    let written = writer.await.map_err(|e| QueryError::Internal(e.to_string()))?;
    let fingerprint = exported?;
    written?;
    fingerprint.ok_or_else(|| QueryError::Internal("the cache file writer stopped early".into()))
}

/// Streams a cached file in chunks, read on the blocking pool.
fn read_file(path: std::path::PathBuf) -> Result<Body, QueryError> {
    let file = std::fs::File::open(&path)?;
    let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(4);
    tokio::task::spawn_blocking(move || {
        use std::io::Read;
        let mut file = file;
        loop {
            let mut chunk = vec![0u8; 64 * 1024];
            match file.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => {
                    chunk.truncate(n);
                    if tx.blocking_send(Ok(Bytes::from(chunk))).is_err() {
                        break;
                    }
                }
                Err(e) => {
                    let _ = tx.blocking_send(Err(e));
                    break;
                }
            }
        }
    });
    Ok(Body::from_stream(ReceiverStream::new(rx)))
}

fn not_modified(etag: &str, cache_control: &'static str) -> Response {
    let mut response = StatusCode::NOT_MODIFIED.into_response();
    if let Ok(value) = HeaderValue::from_str(etag) {
        response.headers_mut().insert(header::ETAG, value);
    }
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static(cache_control));
    response
}

fn file_response(
    body: Body,
    kind: Kind,
    day: NaiveDate,
    format: Format,
    etag: &str,
    modified: Option<DateTime<Utc>>,
    max_age_s: u32,
) -> Response {
    let mut response = (StatusCode::OK, body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(format.content_type()));
    let disposition = format!("attachment; filename=\"{kind}-{day}.{}\"", format.extension());
    if let Ok(value) = HeaderValue::from_str(&disposition) {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    if let Ok(value) = HeaderValue::from_str(etag) {
        headers.insert(header::ETAG, value);
    }
    if let Some(modified) = modified {
        let http_date = modified.format("%a, %d %b %Y %H:%M:%S GMT").to_string();
        if let Ok(value) = HeaderValue::from_str(&http_date) {
            headers.insert(header::LAST_MODIFIED, value);
        }
    }
    if let Ok(value) = HeaderValue::from_str(&format!("public, max-age={max_age_s}")) {
        headers.insert(header::CACHE_CONTROL, value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_and_days() {
        let day = NaiveDate::from_ymd_opt(2026, 11, 29).unwrap();
        assert_eq!(parse_file("2026-11-29.csv").unwrap(), (day, Format::Csv));
        assert_eq!(parse_file("2026-11-29.json").unwrap(), (day, Format::Json));
        for bad in ["2026-11-29.xml", "2026-13-01.csv", "2026-11-29", "26-11-29.csv", "2026-1-29.csv", ".csv"] {
            assert!(parse_file(bad).is_err(), "{bad}");
        }
        let start = day_start(chrono_tz::Asia::Taipei, day);
        assert_eq!(start.to_rfc3339(), "2026-11-28T16:00:00+00:00");
        let mut headers = HeaderMap::new();
        headers.insert(header::IF_NONE_MATCH, HeaderValue::from_static("\"x\", W/\"abc\""));
        assert!(matches(&headers, "W/\"abc\"") && matches(&headers, "\"abc\"") && !matches(&headers, "W/\"ab\""));
    }
}
