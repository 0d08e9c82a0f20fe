//! The disk cache of closed days' files, and what decides that a cached
//! file is still the day's.
//!
//! A day's *fingerprint* is what its file depends on: the number of the
//! day's readings of public sensors and the latest reading time, and a hash
//! of the set of public sensors of the kind. Readings are stored once and
//! never changed, so a late reading changes the count, and a sensor made
//! non-public (or retired) changes the set: either way the file is made
//! again. A cached file is served without asking for
//! `--opendata-cache-recheck-s`; then the fingerprint is counted again.
//!
//! Layout: `<dir>/<kind>/<day>.<ext>` and beside it `<day>.<ext>.meta`
//! (JSON: fingerprint, ETag, generation time), both written to a temporary
//! name and renamed, so a crash never leaves a half file that looks whole.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, NaiveDate, Utc};
use citygauge_domain::Kind;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::time::Instant;

use super::export::Format;
use crate::open_data::PUBLIC_SENSORS_PREDICATE;
use crate::QueryError;

/// Changes when the files' layout or encoding does, so old files are remade.
const FORMAT_VERSION: &str = "1";

/// What a day's file depends on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fingerprint {
    pub rows: i64,
    pub last_ts: Option<DateTime<Utc>>,
    pub sensors: String,
}

impl Fingerprint {
    /// The weak ETag of this day's file in `format`.
    pub fn etag(&self, kind: Kind, day: NaiveDate, format: Format) -> String {
        let key = format!(
            "{FORMAT_VERSION}|{kind}|{day}|{}|{}|{:?}|{}",
            format.extension(),
            self.rows,
            self.last_ts,
            self.sensors
        );
        format!("W/\"{}\"", &hex::encode(Sha256::digest(key.as_bytes()))[..32])
    }
}

/// Counts the day `[from, to)` of `kind` (the pool's statement timeout applies).
pub async fn fingerprint(
    client: &impl tokio_postgres::GenericClient,
    kind: Kind,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Fingerprint, QueryError> {
    let sql = format!(
        "SELECT (SELECT count(*) FROM {table} t WHERE t.ts >= $2 AND t.ts < $3
                   AND t.sensor_id IN (SELECT id FROM sensors WHERE kind = $1 AND {PUBLIC_SENSORS_PREDICATE})),
                (SELECT max(t.ts) FROM {table} t WHERE t.ts >= $2 AND t.ts < $3
                   AND t.sensor_id IN (SELECT id FROM sensors WHERE kind = $1 AND {PUBLIC_SENSORS_PREDICATE})),
                (SELECT md5(coalesce(string_agg(id, ',' ORDER BY id), ''))
                   FROM sensors WHERE kind = $1 AND {PUBLIC_SENSORS_PREDICATE})",
        table = kind.as_str()
    );
    let row = client.query_one(&sql, &[&kind.as_str(), &from, &to]).await?;
    Ok(Fingerprint { rows: row.get(0), last_ts: row.get(1), sensors: row.get(2) })
}

/// A file on disk and what it was made from.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Entry {
    pub fingerprint: Fingerprint,
    pub etag: String,
    pub generated_at: DateTime<Utc>,
    #[serde(skip)]
    pub checked: Option<Instant>,
}

/// `(kind, day, format)`.
pub type Key = (Kind, NaiveDate, Format);

/// The cache's index in memory (read from the `.meta` files on first use),
/// and one lock per file so a file is made once however many ask at once.
#[derive(Debug)]
pub struct DiskCache {
    dir: PathBuf,
    entries: Mutex<HashMap<Key, Entry>>,
    making: Mutex<HashMap<Key, Arc<tokio::sync::Mutex<()>>>>,
}

impl DiskCache {
    pub fn new(dir: PathBuf) -> DiskCache {
        DiskCache { dir, entries: Mutex::default(), making: Mutex::default() }
    }

    pub fn path(&self, (kind, day, format): &Key) -> PathBuf {
        self.dir.join(kind.as_str()).join(format!("{day}.{}", format.extension()))
    }

    fn meta_path(&self, key: &Key) -> PathBuf {
        let mut path = self.path(key).into_os_string();
        path.push(".meta");
        PathBuf::from(path)
    }

    /// The entry for `key`, from memory or from its `.meta` file.
    pub async fn get(&self, key: &Key) -> Option<Entry> {
        if let Some(entry) = self.entries.lock().unwrap_or_else(|e| e.into_inner()).get(key) {
            return Some(entry.clone());
        }
        let (meta, file) = (self.meta_path(key), self.path(key));
        let entry = tokio::task::spawn_blocking(move || -> Option<Entry> {
            if !file.is_file() {
                return None;
            }
            serde_json::from_slice(&std::fs::read(meta).ok()?).ok()
        })
        .await
        .ok()
        .flatten()?;
        self.entries.lock().unwrap_or_else(|e| e.into_inner()).insert(*key, entry.clone());
        Some(entry)
    }

    /// Notes that `key`'s fingerprint was found unchanged just now.
    pub fn checked(&self, key: &Key, now: Instant) {
        if let Some(entry) = self.entries.lock().unwrap_or_else(|e| e.into_inner()).get_mut(key) {
            entry.checked = Some(now);
        }
    }

    /// The lock held while `key`'s file is made.
    pub fn lock_for(&self, key: &Key) -> Arc<tokio::sync::Mutex<()>> {
        self.making.lock().unwrap_or_else(|e| e.into_inner()).entry(*key).or_default().clone()
    }

    /// A temporary file name in the cache directory (created), for a file of `key`.
    pub async fn temporary(&self, key: &Key) -> Result<PathBuf, QueryError> {
        let dir = self.dir.join(key.0.as_str());
        let name = format!(".{}.{}.{}.tmp", key.1, key.2.extension(), rand::random::<u64>());
        let path = dir.join(name);
        let made = dir.clone();
        tokio::task::spawn_blocking(move || std::fs::create_dir_all(made))
            .await
            .map_err(|e| QueryError::Internal(e.to_string()))??;
        Ok(path)
    }

    /// Puts a complete temporary file in place, with its `.meta`.
    pub async fn install(&self, key: &Key, temporary: PathBuf, entry: Entry) -> Result<(), QueryError> {
        let (file, meta) = (self.path(key), self.meta_path(key));
        let json = serde_json::to_vec(&entry).map_err(|e| QueryError::Internal(e.to_string()))?;
        tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            let meta_tmp = temporary.with_extension("meta.tmp");
            std::fs::write(&meta_tmp, json)?;
            // The file first: a `.meta` beside an old file would vouch for it.
            std::fs::rename(&temporary, &file)?;
            std::fs::rename(&meta_tmp, &meta)
        })
        .await
        .map_err(|e| QueryError::Internal(e.to_string()))??;
        self.entries.lock().unwrap_or_else(|e| e.into_inner()).insert(*key, entry);
        Ok(())
    }

    /// Forgets `key` and deletes its files (the day has no public readings any more).
    pub async fn remove(&self, key: &Key) {
        self.entries.lock().unwrap_or_else(|e| e.into_inner()).remove(key);
        let (file, meta) = (self.path(key), self.meta_path(key));
        let _ = tokio::task::spawn_blocking(move || {
            let _ = std::fs::remove_file(meta);
            let _ = std::fs::remove_file(file);
        })
        .await;
    }
}

/// Removes a temporary file left by a failed or abandoned generation.
pub fn discard(path: &Path) {
    let _ = std::fs::remove_file(path);
}
