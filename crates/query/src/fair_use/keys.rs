//! Open-data API keys: stored as SHA-256 hashes in `open_data_keys`, looked
//! up once per `--opendata-key-cache-s` per key, and `citygauge opendata key`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use citygauge_ingest::config::DatabaseArgs;
use tokio::time::Instant;
use tokio_postgres::GenericClient;

use crate::credentials::{self, holder};
use crate::QueryError;

/// Where keys live and what the CLI calls them.
const KEYS: credentials::Kind = credentials::Kind { table: "open_data_keys", what: "API key" };

/// `citygauge opendata key ...`
#[derive(Debug, Clone, clap::Subcommand)]
pub enum KeyCommand {
    /// Create an API key and print it once (only its hash is stored).
    Create {
        /// Who holds it (an app, a research group).
        #[arg(long)]
        name: String,
        /// The key's quota on the open-data routes.
        #[arg(long, value_parser = clap::value_parser!(i32).range(1..=1_000_000))]
        requests_per_minute: i32,
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// Revoke every key of a holder.
    Revoke {
        #[arg(long)]
        name: String,
        #[command(flatten)]
        database: DatabaseArgs,
    },
}

/// A live key: its row id (the bucket's key) and its quota.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApiKey {
    pub id: i64,
    pub requests_per_minute: u32,
}

pub fn key_hash(key: &str) -> [u8; 32] {
    credentials::sha256(key)
}

/// Lookups remembered for a while, unknown keys included (so a client
/// repeating a bad key costs no query each time). Bounded: cleared when full.
/// A key's hash, what it named, and when that was looked up.
type Lookups = HashMap<[u8; 32], (Option<ApiKey>, Instant)>;

#[derive(Debug)]
pub struct KeyCache {
    entries: Mutex<Lookups>,
    ttl: Duration,
}

const KEY_CACHE_MAX: usize = 10_000;

impl KeyCache {
    pub fn new(ttl: Duration) -> KeyCache {
        KeyCache { entries: Mutex::new(HashMap::new()), ttl }
    }

    /// The live key `key` names, if any.
    pub async fn lookup(&self, pool: &deadpool_postgres::Pool, key: &str) -> Result<Option<ApiKey>, QueryError> {
        let hash = key_hash(key);
        let now = Instant::now();
        if let Some((found, at)) = self.entries.lock().unwrap_or_else(|e| e.into_inner()).get(&hash) {
            if now.saturating_duration_since(*at) < self.ttl {
                return Ok(*found);
            }
        }
        let client = pool.get().await?;
        let row = client
            .query_opt(
                "SELECT id, requests_per_minute FROM open_data_keys WHERE key_sha256 = $1 AND revoked_at IS NULL",
                &[&hash.as_slice()],
            )
            .await?;
        let found = row.map(|row| ApiKey {
            id: row.get(0),
            requests_per_minute: u32::try_from(row.get::<_, i32>(1)).unwrap_or(1).max(1),
        });
        if !self.ttl.is_zero() {
            let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
            if entries.len() >= KEY_CACHE_MAX {
                entries.clear();
            }
            entries.insert(hash, (found, now));
        }
        Ok(found)
    }
}

/// Stores a new key for `name` and returns it: the only time it exists
/// outside its holder's hands. 32 random bytes, hex, prefixed so a leaked
/// one is recognisable in logs and code scanners.
pub async fn create_key(client: &impl GenericClient, name: &str, per_minute: i32) -> Result<String, QueryError> {
    let name = holder(name)?;
    if per_minute < 1 {
        return Err(QueryError::invalid("requests_per_minute", "must be at least 1"));
    }
    let key = credentials::new_secret("cgod_");
    client
        .execute(
            "INSERT INTO open_data_keys (name, key_sha256, requests_per_minute) VALUES ($1, $2, $3)",
            &[&name, &key_hash(&key).as_slice(), &per_minute],
        )
        .await?;
    Ok(key)
}

/// Revokes every live key of `name`; returns how many.
pub async fn revoke_keys(client: &impl GenericClient, name: &str) -> Result<u64, QueryError> {
    KEYS.revoke(client, name).await
}

/// `citygauge opendata key create|revoke`: what to print.
pub async fn run_key_command(command: KeyCommand) -> Result<String, QueryError> {
    match &command {
        KeyCommand::Create { name, requests_per_minute, database } => {
            let (_store, client) = credentials::migrated_client(database).await?;
            let key = create_key(&**client, name, *requests_per_minute).await?;
            Ok(format!("{key}\n"))
        }
        KeyCommand::Revoke { name, database } => KEYS.revoke_command(database, name).await,
    }
}
