//! [`Store`]: a connection pool plus what the platform knows about the
//! database (its backend, the partitions that exist).

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::Duration as StdDuration;

use chrono::{DateTime, Duration, NaiveDate, Utc};
use citygauge_domain::registry::file::SensorRecord;
use citygauge_domain::{Kind, Registry};
use deadpool_postgres::{Pool, Timeouts};

use crate::migrate::{self, Backend, BackendPreference, MigrationReport};
use crate::registry::{self, ImportReport};
use crate::writer::{self, Batch, WriteReport};
use crate::{partitions, rollups, ConnectOptions, Database, StoreError};

/// A sensor's newest stored good value of one column, see
/// [`Store::last_good_values`].
#[derive(Debug, Clone, PartialEq)]
pub struct LastGood {
    pub sensor_id: String,
    pub field: citygauge_domain::Field,
    pub ts: DateTime<Utc>,
    pub value: f64,
}

/// How to reach and run the database. Debug hides passwords (see connect.rs).
#[derive(Clone)]
pub struct StoreConfig {
    /// libpq key=value string or `postgres://` URL.
    pub database_url: String,
    /// TLS and password settings besides the connection string.
    pub connect: ConnectOptions,
    pub pool_max_size: usize,
    pub backend: BackendPreference,
    /// Native partitioning: how many days ahead partitions are made.
    pub partition_premake_days: u32,
    /// How long each kind's readings are kept; `None` keeps them forever.
    pub retention: HashMap<Kind, Duration>,
    /// How long `rejected_messages` rows are kept; `None` keeps them forever.
    pub rejected_retention: Option<Duration>,
    /// How long to wait for a connection before reporting the database down.
    pub connect_timeout: StdDuration,
    /// `statement_timeout` of every connection (`None`: the server's).
    pub statement_timeout: Option<StdDuration>,
    /// `lock_timeout` of every connection (`None`: the server's).
    pub lock_timeout: Option<StdDuration>,
    /// How long partition DDL waits for its locks before giving up until
    /// the next try (see [`partitions`]).
    pub ddl_lock_timeout: StdDuration,
}

impl StoreConfig {
    pub fn new(database_url: impl Into<String>) -> Self {
        StoreConfig {
            database_url: database_url.into(),
            connect: ConnectOptions::default(),
            pool_max_size: 4,
            backend: BackendPreference::Auto,
            partition_premake_days: 7,
            retention: HashMap::new(),
            rejected_retention: None,
            connect_timeout: StdDuration::from_secs(5),
            statement_timeout: None,
            lock_timeout: None,
            ddl_lock_timeout: partitions::DEFAULT_DDL_LOCK_TIMEOUT,
        }
    }
}

/// The database, as the platform uses it.
#[derive(Debug)]
pub struct Store {
    pool: Pool,
    config: StoreConfig,
    backend: Mutex<Option<Backend>>,
    /// Day partitions known to exist, per table (native backend only).
    partitions: Mutex<HashMap<&'static str, BTreeSet<NaiveDate>>>,
    /// Day partitions writes found missing, for [`Store::make_wanted_partitions`].
    wanted: Mutex<HashMap<&'static str, BTreeSet<NaiveDate>>>,
}

impl Store {
    /// Builds the pool; connects lazily, so a database that is down now does
    /// not stop the daemon from starting and waiting for it.
    pub fn new(config: StoreConfig) -> Result<Store, StoreError> {
        let database = Database::new(&config.database_url, &config.connect)?;
        let mut pg = database.config.clone();
        pg.connect_timeout(config.connect_timeout);
        // A database that vanished without closing the connection (a failover,
        // a dead host) must fail the write within a minute, not when the
        // kernel gives up after hours: it is then retried on a new connection.
        pg.keepalives(true)
            .keepalives_idle(StdDuration::from_secs(15))
            .keepalives_interval(StdDuration::from_secs(5))
            .keepalives_retries(3)
            .tcp_user_timeout(StdDuration::from_secs(60));
        if pg.get_application_name().is_none() {
            pg.application_name("citygauge");
        }
        // Set at connection start, so they hold on every connection of the
        // pool, whatever runs on it: a statement or lock wait that would
        // hang becomes an error that is retried and seen.
        let settings: Vec<String> =
            [("statement_timeout", config.statement_timeout), ("lock_timeout", config.lock_timeout)]
                .into_iter()
                .filter_map(|(name, value)| value.map(|v| format!("-c {name}={}", v.as_millis())))
                .collect();
        if !settings.is_empty() {
            let options = match pg.get_options() {
                Some(given) if !given.trim().is_empty() => format!("{given} {}", settings.join(" ")),
                _ => settings.join(" "),
            };
            pg.options(options);
        }
        let manager = database.with_config(pg).manager();
        let timeouts = Timeouts {
            wait: Some(config.connect_timeout),
            create: Some(config.connect_timeout),
            recycle: Some(config.connect_timeout),
        };
        let pool = Pool::builder(manager)
            .max_size(config.pool_max_size)
            .timeouts(timeouts)
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .build()
            .map_err(|e| StoreError::Config(e.to_string()))?;
        Ok(Store {
            pool,
            config,
            backend: Mutex::new(None),
            partitions: Mutex::new(HashMap::new()),
            wanted: Mutex::new(HashMap::new()),
        })
    }

    pub fn config(&self) -> &StoreConfig {
        &self.config
    }

    /// A pooled connection, for queries this crate does not wrap.
    pub async fn client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        Ok(self.pool.get().await?)
    }

    /// Applies pending migrations (refusing a schema newer than this build).
    pub async fn migrate(&self) -> Result<MigrationReport, StoreError> {
        let mut client = self.pool.get().await?;
        let report = migrate::migrate(&mut client, self.config.backend).await?;
        *lock(&self.backend) = Some(report.backend);
        Ok(report)
    }

    /// The backend, once [`Store::migrate`] or [`Store::backend`] has asked.
    pub async fn backend(&self) -> Result<Backend, StoreError> {
        if let Some(backend) = *lock(&self.backend) {
            return Ok(backend);
        }
        let client = self.pool.get().await?;
        let backend = migrate::stored_backend(&**client).await?.unwrap_or(Backend::Native);
        *lock(&self.backend) = Some(backend);
        Ok(backend)
    }

    /// Stores a batch atomically; see [`writer`]. Never runs DDL: rows of a
    /// day without its partition go to the default partition, and the day is
    /// noted for [`Store::make_wanted_partitions`], off the write path.
    pub async fn write(&self, batch: &Batch) -> Result<WriteReport, StoreError> {
        let backend = self.backend().await?;
        if backend == Backend::Native {
            self.note_missing_partitions(batch);
        }
        let mut client = self.pool.get().await?;
        let result = writer::write(&mut client, batch, backend == Backend::TimescaleDb).await;
        if result.is_err() {
            // A COPY refused before it starts (a lock or statement timeout)
            // leaves tokio-postgres one ReadyForQuery out of step
            // (rust-postgres#789): the connection's next statement would
            // fail with "unexpected message". Never reuse it after an error.
            drop(deadpool_postgres::Object::take(client));
        }
        result
    }

    /// Notes the day partitions a batch would need, within the window that
    /// partitions are kept for; rows outside it stay in the default partition.
    fn note_missing_partitions(&self, batch: &Batch) {
        let today = Utc::now().date_naive();
        let newest = today + Duration::days(i64::from(self.config.partition_premake_days));
        let known = lock(&self.partitions);
        let rows = batch
            .readings
            .iter()
            .map(|r| (r.kind(), r.ts))
            .chain(batch.counters.iter().map(|c| (Kind::Rainfall, c.ts)));
        let mut wanted: Option<std::sync::MutexGuard<'_, _>> = None;
        for (kind, ts) in rows {
            let day = ts.date_naive();
            if day < self.oldest_kept_day(kind, today) || day > newest {
                continue;
            }
            let table = kind.as_str();
            if !known.get(table).is_some_and(|days| days.contains(&day)) {
                let wanted = wanted.get_or_insert_with(|| lock(&self.wanted));
                wanted.entry(table).or_insert_with(BTreeSet::new).insert(day);
            }
        }
    }

    /// Whether writes found day partitions missing.
    pub fn partitions_wanted(&self) -> bool {
        lock(&self.wanted).values().any(|days| !days.is_empty())
    }

    /// Makes the day partitions writes found missing (moving their rows out
    /// of the default partition); returns how many it made. Each DDL waits at
    /// most `ddl_lock_timeout` for its locks: on a timeout the days stay
    /// wanted for the next call.
    pub async fn make_wanted_partitions(&self) -> Result<usize, StoreError> {
        let wanted = std::mem::take(&mut *lock(&self.wanted));
        if wanted.is_empty() {
            return Ok(0);
        }
        let mut made = 0;
        let mut result = Ok(());
        let mut pending = wanted.into_iter();
        match self.pool.get().await {
            Ok(mut client) => {
                for (table, days) in pending.by_ref() {
                    match partitions::ensure_days_within(&mut client, table, &days, self.config.ddl_lock_timeout).await
                    {
                        Ok(n) => {
                            made += n;
                            lock(&self.partitions).entry(table).or_default().extend(days);
                        }
                        Err(e) => {
                            lock(&self.wanted).entry(table).or_default().extend(days);
                            result = Err(as_partition_error(e));
                            break;
                        }
                    }
                }
            }
            Err(e) => result = Err(e.into()),
        }
        // What was not tried stays wanted.
        let mut still = lock(&self.wanted);
        for (table, days) in pending {
            still.entry(table).or_default().extend(days);
        }
        result.map(|()| made)
    }

    fn oldest_kept_day(&self, kind: Kind, today: NaiveDate) -> NaiveDate {
        // Without a retention, backfill up to ~13 months gets day partitions;
        // older stragglers are kept in the default partition.
        let keep = self.config.retention.get(&kind).copied().unwrap_or(Duration::days(400));
        today - keep
    }

    /// Periodic upkeep: partitions ahead of time and retention (native), or
    /// retention policies (TimescaleDB); then `rejected_messages` retention
    /// (both). Safe to run from several daemons.
    pub async fn maintain(&self, now: DateTime<Utc>) -> Result<(), StoreError> {
        let mut client = self.pool.get().await?;
        match self.backend().await? {
            Backend::Native => {
                let today = now.date_naive();
                let ahead = partitions::day_range(
                    today - Duration::days(1),
                    today + Duration::days(i64::from(self.config.partition_premake_days)),
                );
                let lock_timeout = self.config.ddl_lock_timeout;
                for kind in Kind::ALL {
                    partitions::ensure_days_within(&mut client, kind.as_str(), &ahead, lock_timeout)
                        .await
                        .map_err(as_partition_error)?;
                }
                // Rows about to be dropped by retention must be in the hour
                // and day rollups first (a backfill may have just landed); if
                // that fails, nothing is dropped this time (partitions ahead
                // are made already).
                self.materialise_rollups(now - rollups::MATERIALISE_SETTLE).await?;
                for kind in Kind::ALL {
                    let table = kind.as_str();
                    if let Some(keep) = self.config.retention.get(&kind) {
                        partitions::drop_expired_within(&mut client, table, *keep, now, lock_timeout)
                            .await
                            .map_err(as_partition_error)?;
                        // Minute rollups go with the raw rows they summarise;
                        // hour and day rollups are kept.
                        rollups::expire_minutes(&client, kind, now - *keep).await?;
                    }
                    let existing = partitions::existing_days(&client, table).await?;
                    lock(&self.partitions).insert(table, existing);
                }
            }
            Backend::TimescaleDb => {
                for kind in Kind::ALL {
                    let keep = self.config.retention.get(&kind);
                    let wanted = keep.map(|keep| format!("{} days", keep.num_days().max(1)));
                    set_timescale_retention(&client, kind.as_str(), false, wanted).await?;
                    // The minute aggregate goes with the raw rows, but never
                    // inside the hour aggregate's refresh window, whose
                    // refresh would otherwise erase hours it can no longer see.
                    let wanted = keep.map(|keep| format!("{} days", keep.num_days().max(MIN_MINUTE_ROLLUP_DAYS)));
                    set_timescale_retention(&client, &rollups::relation(kind, rollups::Level::Minute), true, wanted)
                        .await?;
                }
            }
        }
        drop(client);
        if let Some(keep) = self.config.rejected_retention {
            self.expire_rejected(now - keep).await?;
        }
        Ok(())
    }

    /// Deletes `rejected_messages` received before `cutoff`; returns how many.
    /// In batches of [`REJECTED_DELETE_BATCH`] rows, each its own short
    /// transaction, so a backlog of millions never holds locks or one huge
    /// transaction while writers insert.
    pub async fn expire_rejected(&self, cutoff: DateTime<Utc>) -> Result<u64, StoreError> {
        let client = self.pool.get().await?;
        let statement = client
            .prepare_cached(
                "DELETE FROM rejected_messages WHERE id IN (
                   SELECT id FROM rejected_messages WHERE received_at < $1 LIMIT $2)",
            )
            .await?;
        let mut deleted = 0;
        loop {
            let n = client.execute(&statement, &[&cutoff, &REJECTED_DELETE_BATCH]).await?;
            deleted += n;
            if n < REJECTED_DELETE_BATCH as u64 {
                break;
            }
        }
        if deleted > 0 {
            tracing::info!(deleted, "rejected_messages: deleted rows past retention");
        }
        Ok(deleted)
    }

    /// Brings the rollups up to date now: on TimescaleDB refreshes every
    /// continuous aggregate (what its policies do on their schedules, e.g.
    /// after a backfill of old readings); on the native backend materialises
    /// every closed minute (reads are exact either way there; this only
    /// moves work from query time to now).
    pub async fn refresh_rollups(&self) -> Result<(), StoreError> {
        match self.backend().await? {
            Backend::TimescaleDb => {
                let client = self.pool.get().await?;
                crate::rollups::refresh_timescale_all(&client).await?;
            }
            Backend::Native => {
                self.materialise_rollups(Utc::now()).await?;
            }
        }
        Ok(())
    }

    /// Native backend: materialises every kind's rollup buckets that end by
    /// `upto` and recomputes the buckets late rows touched (see
    /// [`crate::rollups`]); the ingest daemon calls it every few seconds.
    /// Safe to run from several daemons (one works, the others skip).
    /// TimescaleDB: nothing (its policies refresh the aggregates).
    pub async fn materialise_rollups(&self, upto: DateTime<Utc>) -> Result<rollups::MaterialiseReport, StoreError> {
        if self.backend().await? == Backend::TimescaleDb {
            return Ok(rollups::MaterialiseReport::default());
        }
        let now = Utc::now();
        let retention = &self.config.retention;
        rollups::materialise(&self.pool, upto, |kind| retention.get(&kind).map(|keep| now - *keep)).await
    }

    /// The newest `good` value of every column the spike test covers, per
    /// sensor, stamped after `since`: what the spike test of a starting
    /// daemon is seeded with ([`citygauge_domain::quality::SpikeTracker::seed`]).
    /// One `DISTINCT ON (sensor_id)` per column over the `(sensor_id, ts)`
    /// primary key; the `ts` bound confines it to recent partitions or chunks.
    pub async fn last_good_values(&self, since: DateTime<Utc>) -> Result<Vec<LastGood>, StoreError> {
        let client = self.pool.get().await?;
        let mut out = Vec::new();
        for field in citygauge_domain::quality::spike_fields() {
            let (table, column) = (field.kind().as_str(), field.name());
            // Names from the domain's fixed column list, never from input.
            let sql = format!(
                "SELECT DISTINCT ON (sensor_id) sensor_id, ts, {column}
                   FROM {table}
                  WHERE ts > $1 AND quality = 'good' AND {column} IS NOT NULL
                  ORDER BY sensor_id, ts DESC"
            );
            for row in client.query(&sql, &[&since]).await? {
                out.push(LastGood { sensor_id: row.get(0), field, ts: row.get(1), value: row.get(2) });
            }
        }
        Ok(out)
    }

    pub async fn load_registry(&self) -> Result<Registry, StoreError> {
        let client = self.pool.get().await?;
        registry::load(&client).await
    }

    /// The registry as ingest holds it (at most `max_pending` pending
    /// sensors), with the watermark for [`Store::registry_changes`].
    pub async fn registry_snapshot(&self, max_pending: usize) -> Result<registry::Snapshot, StoreError> {
        let client = self.pool.get().await?;
        registry::snapshot(&client, max_pending).await
    }

    /// The sensors added or changed since `watermark`, and the next one.
    pub async fn registry_changes(&self, watermark: DateTime<Utc>) -> Result<registry::Changes, StoreError> {
        let client = self.pool.get().await?;
        registry::changes(&client, watermark).await
    }

    pub async fn import_sensors(&self, records: &[SensorRecord]) -> Result<ImportReport, StoreError> {
        let mut client = self.pool.get().await?;
        registry::import(&mut client, records).await
    }

    pub async fn touch_sensors(&self, seen: &[(String, DateTime<Utc>)]) -> Result<u64, StoreError> {
        let client = self.pool.get().await?;
        registry::touch(&client, seen).await
    }
}

/// Rows of `rejected_messages` deleted per statement by [`Store::expire_rejected`].
pub const REJECTED_DELETE_BATCH: i64 = 5_000;

/// TimescaleDB: the least retention of the 1-minute continuous aggregates,
/// longer than the hour aggregate's refresh window (7 days).
const MIN_MINUTE_ROLLUP_DAYS: i64 = 8;

/// Makes `relation`'s retention policy `wanted` (`None`: no policy). Only a
/// changed retention is replaced, so several daemons never leave a relation
/// without its policy for a moment.
async fn set_timescale_retention(
    client: &tokio_postgres::Client,
    relation: &str,
    continuous_aggregate: bool,
    wanted: Option<String>,
) -> Result<(), StoreError> {
    // A continuous aggregate's jobs name its materialisation hypertable.
    let current_sql = if continuous_aggregate {
        "SELECT j.config->>'drop_after' FROM timescaledb_information.jobs j
           JOIN timescaledb_information.continuous_aggregates c
             ON c.materialization_hypertable_schema = j.hypertable_schema
            AND c.materialization_hypertable_name = j.hypertable_name
          WHERE c.view_name = $1 AND j.proc_name = 'policy_retention'"
    } else {
        "SELECT config->>'drop_after' FROM timescaledb_information.jobs
          WHERE hypertable_name = $1 AND proc_name = 'policy_retention'"
    };
    let current: Option<String> = client.query_opt(current_sql, &[&relation]).await?.and_then(|row| row.get(0));
    if current == wanted {
        return Ok(());
    }
    client.execute("SELECT remove_retention_policy($1::text::regclass, if_exists => true)", &[&relation]).await?;
    if let Some(days) = wanted {
        client
            .execute("SELECT add_retention_policy($1::text::regclass, $2::text::interval)", &[&relation, &days])
            .await?;
    }
    Ok(())
}

/// DDL failures are the DDL's, never the rows': retried later (see
/// [`StoreError::Partition`]).
fn as_partition_error(e: StoreError) -> StoreError {
    match e {
        StoreError::Postgres(e) => StoreError::Partition(e),
        other => other,
    }
}

/// A poisoned lock only means another task panicked mid-update of a cache;
/// the cache is still a valid (if incomplete) set, so keep using it.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
