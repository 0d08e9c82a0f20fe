//! Versioned migrations, embedded in the binary and applied in one transaction
//! under an advisory lock, so that several daemons starting at once apply each
//! exactly once. A database whose schema is newer than this build is refused.

use std::borrow::Cow;

use tokio_postgres::{Client, GenericClient, Transaction};
use tracing::info;

use crate::{rollups, StoreError};

/// One schema version.
#[derive(Debug)]
pub struct Migration {
    pub version: i32,
    pub name: &'static str,
    pub sql: MigrationSql,
}

/// Where a migration's text comes from.
#[derive(Debug)]
pub enum MigrationSql {
    /// Fixed text, which may contain `{{timeseries}}` (see [`Backend`]).
    Static(&'static str),
    /// Text generated for the backend (e.g. from the kinds' columns), for
    /// schema that repeats per kind; a change to the generator is a change to
    /// an applied migration, caught by its checksum like an edited file.
    Generated(fn(Backend) -> String),
}

impl Migration {
    /// The text the checksum is taken over: the file as embedded, or what
    /// the generator makes for `backend`.
    pub fn text(&self, backend: Backend) -> Cow<'static, str> {
        match self.sql {
            MigrationSql::Static(sql) => Cow::Borrowed(sql),
            MigrationSql::Generated(generate) => Cow::Owned(generate(backend)),
        }
    }
}

pub const MIGRATIONS: &[Migration] = &[
    Migration { version: 1, name: "init", sql: MigrationSql::Static(include_str!("../migrations/0001_init.sql")) },
    Migration { version: ROLLUPS_VERSION, name: "rollups", sql: MigrationSql::Generated(rollups::migration_sql) },
    Migration { version: 3, name: "alerts", sql: MigrationSql::Static(include_str!("../migrations/0003_alerts.sql")) },
    Migration {
        version: 4,
        name: "open_data",
        sql: MigrationSql::Static(include_str!("../migrations/0004_open_data.sql")),
    },
    Migration { version: 5, name: "rollup_watermarks", sql: MigrationSql::Generated(rollups::migration_v5_sql) },
];

/// The migration that creates the rollup relations.
const ROLLUPS_VERSION: i32 = 2;

/// The tables that hold time series.
pub const TIMESERIES_TABLES: [&str; 5] = ["rainfall", "water_level", "flood_depth", "air_quality", "streetlight"];

/// Arbitrary, fixed: the advisory lock key that serialises migrations.
pub const MIGRATION_LOCK: i64 = 0x6369_7479_6761_7567; // "citygaug"

/// How the time-series tables are partitioned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// TimescaleDB hypertables with compression and retention policies.
    TimescaleDb,
    /// Native `PARTITION BY RANGE (ts)` with daily partitions the platform
    /// creates ahead of time and drops past retention.
    Native,
}

impl Backend {
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::TimescaleDb => "timescaledb",
            Backend::Native => "native",
        }
    }

    fn table_clause(self) -> &'static str {
        match self {
            Backend::TimescaleDb => "",
            Backend::Native => "PARTITION BY RANGE (ts)",
        }
    }
}

/// Which backend a new database should use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BackendPreference {
    /// TimescaleDB when the extension is installed and preloaded, else native.
    #[default]
    Auto,
    TimescaleDb,
    Native,
}

/// What [`migrate`] did.
#[derive(Debug, Clone, PartialEq)]
pub struct MigrationReport {
    pub backend: Backend,
    pub applied: Vec<i32>,
    pub version: i32,
}

pub fn latest_version() -> i32 {
    MIGRATIONS.last().map_or(0, |m| m.version)
}

/// Applies pending migrations; a no-op on an up-to-date database.
pub async fn migrate(client: &mut Client, preference: BackendPreference) -> Result<MigrationReport, StoreError> {
    let tx = client.transaction().await?;
    // A migration cut off by the daemon's statement_timeout would roll back
    // and be retried from scratch forever; its lock waits stay bounded by
    // lock_timeout (another daemon migrating: retried after a backoff).
    tx.batch_execute("SET LOCAL statement_timeout = 0").await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK]).await?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
             version     integer PRIMARY KEY,
             name        text NOT NULL,
             checksum    text NOT NULL,
             applied_at  timestamptz NOT NULL DEFAULT now()
         )",
    )
    .await?;
    let applied: Vec<(i32, String)> = tx
        .query("SELECT version, checksum FROM schema_migrations ORDER BY version", &[])
        .await?
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    let known = latest_version();
    if let Some(&(found, _)) = applied.last() {
        if found > known {
            return Err(StoreError::SchemaTooNew { found, known });
        }
    }
    let backend = match stored_backend(&tx).await? {
        Some(backend) => backend,
        None => choose_backend(&tx, preference).await?,
    };
    for (version, checksum) in &applied {
        if let Some(m) = MIGRATIONS.iter().find(|m| m.version == *version) {
            let embedded = checksum_of(&m.text(backend));
            if &embedded != checksum {
                return Err(StoreError::MigrationChanged { version: *version, applied: checksum.clone(), embedded });
            }
        }
    }

    let current = applied.last().map_or(0, |a| a.0);
    let mut report = MigrationReport { backend, applied: Vec::new(), version: current };
    for m in MIGRATIONS.iter().filter(|m| m.version > current) {
        info!(version = m.version, name = m.name, backend = backend.as_str(), "applying migration");
        let text = m.text(backend);
        tx.batch_execute(&text.replace("{{timeseries}}", backend.table_clause())).await?;
        // Only a migration that makes time-series tables sets them up: on
        // TimescaleDB, compression settings cannot be re-applied once chunks
        // are compressed.
        if text.contains("{{timeseries}}") {
            setup_timeseries_tables(&tx, backend).await?;
        }
        tx.execute(
            "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
            &[&m.version, &m.name, &checksum_of(&text)],
        )
        .await?;
        report.applied.push(m.version);
        report.version = m.version;
    }
    tx.execute(
        "INSERT INTO platform_settings (key, value) VALUES ('timeseries_backend', $1) ON CONFLICT (key) DO NOTHING",
        &[&backend.as_str()],
    )
    .await?;
    tx.commit().await?;
    if backend == Backend::TimescaleDb && report.applied.contains(&ROLLUPS_VERSION) {
        // If this fails the policies still catch up on recent buckets; the
        // history then needs a manual refresh, so say so loudly.
        if let Err(e) = rollups::refresh_timescale_history(client).await {
            tracing::error!(error = %e, "materialising the rollups of existing readings failed");
        }
    }
    Ok(report)
}

/// The schema version of a database, 0 when it has none.
pub async fn schema_version(client: &impl GenericClient) -> Result<i32, StoreError> {
    let exists: bool = client.query_one("SELECT to_regclass('schema_migrations') IS NOT NULL", &[]).await?.get(0);
    if !exists {
        return Ok(0);
    }
    Ok(client.query_one("SELECT coalesce(max(version), 0) FROM schema_migrations", &[]).await?.get(0))
}

/// The backend this database was set up with, if it was.
pub async fn stored_backend(client: &impl GenericClient) -> Result<Option<Backend>, StoreError> {
    let exists: bool = client.query_one("SELECT to_regclass('platform_settings') IS NOT NULL", &[]).await?.get(0);
    if !exists {
        return Ok(None);
    }
    let row = client.query_opt("SELECT value FROM platform_settings WHERE key = 'timeseries_backend'", &[]).await?;
    Ok(row.map(|r| if r.get::<_, &str>(0) == "timescaledb" { Backend::TimescaleDb } else { Backend::Native }))
}

async fn choose_backend(tx: &Transaction<'_>, preference: BackendPreference) -> Result<Backend, StoreError> {
    if preference == BackendPreference::Native {
        return Ok(Backend::Native);
    }
    let row = tx
        .query_one(
            "SELECT (SELECT default_version FROM pg_available_extensions WHERE name = 'timescaledb'),
                    current_setting('shared_preload_libraries') ILIKE '%timescaledb%'",
            &[],
        )
        .await?;
    let (version, preloaded): (Option<String>, bool) = (row.get(0), row.get(1));
    let problem = match &version {
        None => Some("the extension is not installed".to_string()),
        Some(_) if !preloaded => Some("timescaledb is not in shared_preload_libraries".to_string()),
        Some(v) if !timescale_supported(v) => Some(format!(
            "TimescaleDB {v} is older than {MIN_TIMESCALEDB}, whose INSERT ... ON CONFLICT into compressed chunks can drop rows"
        )),
        Some(_) => None,
    };
    match (problem, preference) {
        (None, _) => {
            tx.batch_execute("CREATE EXTENSION IF NOT EXISTS timescaledb").await?;
            Ok(Backend::TimescaleDb)
        }
        (Some(problem), BackendPreference::TimescaleDb) => Err(StoreError::TimescaleUnavailable(problem)),
        (Some(problem), _) => {
            if version.is_some() {
                tracing::warn!(%problem, "using native partitioning instead of TimescaleDB");
            }
            Ok(Backend::Native)
        }
    }
}

/// The oldest TimescaleDB trusted with our writes: before 2.18.1,
/// `ON CONFLICT DO NOTHING` into a compressed chunk stopped at the first
/// conflicting row and silently skipped the rest (timescaledb#7672).
const MIN_TIMESCALEDB: &str = "2.18.1";

fn timescale_supported(version: &str) -> bool {
    let parse = |v: &str| -> Vec<u32> { v.split(['.', '-']).map_while(|p| p.parse().ok()).collect() };
    parse(version) >= parse(MIN_TIMESCALEDB)
}

/// Makes every time-series table partitioned the backend's way; idempotent.
async fn setup_timeseries_tables(tx: &Transaction<'_>, backend: Backend) -> Result<(), StoreError> {
    for table in TIMESERIES_TABLES {
        match backend {
            Backend::Native => {
                // Rows with no daily partition (far future, before retention,
                // clocks never set) land here instead of failing the batch.
                tx.batch_execute(&format!("CREATE TABLE IF NOT EXISTS {table}_default PARTITION OF {table} DEFAULT"))
                    .await?;
            }
            Backend::TimescaleDb => {
                tx.execute(
                    "SELECT create_hypertable($1::text::regclass, 'ts', chunk_time_interval => INTERVAL '1 day', if_not_exists => true)",
                    &[&table],
                )
                .await?;
                tx.batch_execute(&format!(
                    "ALTER TABLE {table} SET (timescaledb.compress, timescaledb.compress_segmentby = 'sensor_id', timescaledb.compress_orderby = 'ts DESC')"
                ))
                .await?;
                tx.execute(
                    "SELECT add_compression_policy($1::text::regclass, INTERVAL '7 days', if_not_exists => true)",
                    &[&table],
                )
                .await?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
#[test]
fn timescale_versions_before_the_on_conflict_fix_are_refused() {
    for (version, ok) in [("2.18.0", false), ("2.18.1", true), ("2.28.3", true), ("2.9.3", false), ("3.0.0-beta", true)]
    {
        assert_eq!(timescale_supported(version), ok, "{version}");
    }
}

/// FNV-1a over the migration text: detects edits to applied migrations.
fn checksum_of(sql: &str) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in sql.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{hash:016x}")
}
