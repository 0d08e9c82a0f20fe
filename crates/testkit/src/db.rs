//! Databases for tests.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;

use anyhow::Context;
use citygauge_stack::{throwaway_dir, Postgres, PostgresOptions};
use citygauge_store::{BackendPreference, Store, StoreConfig};
use tokio::sync::OnceCell;
use tokio_postgres::NoTls;

use crate::toolchain;

const TEMPLATE: &str = "citygauge_template";

/// A PostgreSQL cluster of the test's own, in a throwaway directory.
#[derive(Debug)]
pub struct Cluster {
    pub postgres: Postgres,
    _dir: tempfile::TempDir,
}

impl Cluster {
    /// Starts a cluster with a migrated `citygauge` database.
    pub async fn start() -> anyhow::Result<Cluster> {
        let toolchain = toolchain()?;
        let dir = throwaway_dir("citygauge-test-pg-")?;
        let data = dir.path().join("pg");
        let postgres =
            tokio::task::spawn_blocking(move || Postgres::start(toolchain, PostgresOptions::new(data, "citygauge")))
                .await??;
        migrate(&postgres.connection_string("citygauge")).await?;
        Ok(Cluster { postgres, _dir: dir })
    }

    pub fn url(&self) -> String {
        self.postgres.connection_string("citygauge")
    }
}

async fn migrate(url: &str) -> anyhow::Result<()> {
    let mut config = StoreConfig::new(url);
    config.backend = BackendPreference::Auto;
    let store = Store::new(config)?;
    store.migrate().await.context("migrating the test database")?;
    store.maintain(chrono::Utc::now()).await.context("creating partitions")?;
    Ok(())
}

/// The cluster all tests of one test binary share; each gets a database.
struct Shared {
    // Kept so the cluster lives as long as the test binary (it dies with it).
    _postgres: Mutex<Postgres>,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Shared {
    fn url(&self, database: &str) -> String {
        format!("host=127.0.0.1 port={} user=postgres dbname={database}", self.port)
    }
}

static SHARED: OnceCell<Shared> = OnceCell::const_new();

const SHARED_PREFIX: &str = "citygauge-test-shared-";
/// The pid of the test binary that owns a shared cluster's directory.
const OWNER_FILE: &str = "owner.pid";

/// The shared cluster lives in a static, and statics are never dropped, so
/// its throwaway directory outlives its test binary (the cluster itself dies
/// with it). Each test binary removes those whose owner is gone, so a
/// developer's `/tmp` does not fill up run after run.
fn reap_abandoned_shared_dirs() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        let is_shared = path.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with(SHARED_PREFIX));
        if !is_shared {
            continue;
        }
        let owner = std::fs::read_to_string(path.join(OWNER_FILE)).ok().and_then(|s| s.trim().parse::<u32>().ok());
        // No owner file: a directory being set up right now, or from before
        // owners were recorded; only the latter is old.
        let abandoned = match owner {
            Some(pid) => !std::path::Path::new(&format!("/proc/{pid}")).exists(),
            None => entry
                .metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|t| t.elapsed().is_ok_and(|age| age > std::time::Duration::from_secs(6 * 3600))),
        };
        if abandoned {
            let _ = std::fs::remove_dir_all(&path);
        }
    }
}
static NEXT: AtomicU32 = AtomicU32::new(0);

/// A fresh database, migrated, on the shared cluster.
#[derive(Debug, Clone)]
pub struct TestDatabase {
    pub name: String,
    pub url: String,
}

pub async fn database() -> anyhow::Result<TestDatabase> {
    crate::init_logging();
    let shared = SHARED
        .get_or_try_init(|| async {
            let toolchain = toolchain()?;
            reap_abandoned_shared_dirs();
            let dir = throwaway_dir(SHARED_PREFIX)?;
            std::fs::write(dir.path().join(OWNER_FILE), std::process::id().to_string())?;
            let data = dir.path().join("pg");
            let postgres =
                tokio::task::spawn_blocking(move || Postgres::start(toolchain, PostgresOptions::new(data, TEMPLATE)))
                    .await??;
            migrate(&postgres.connection_string(TEMPLATE)).await?;
            let port = postgres.port();
            anyhow::Ok(Shared { _postgres: Mutex::new(postgres), port, _dir: dir })
        })
        .await?;
    let name = format!("t{}_{}", std::process::id(), NEXT.fetch_add(1, Ordering::SeqCst));
    let admin = connect(&shared.url("postgres")).await?;
    // The template's last connection may take a moment to go away.
    let mut attempts = 0;
    loop {
        match admin.batch_execute(&format!("CREATE DATABASE {name} TEMPLATE {TEMPLATE}")).await {
            Ok(()) => break,
            Err(e) if attempts < 50 => {
                attempts += 1;
                tracing::debug!(error = %e, "template busy, retrying");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            Err(e) => return Err(e).context("creating a test database"),
        }
    }
    Ok(TestDatabase { url: shared.url(&name), name })
}

/// A plain client, for assertions.
pub async fn connect(url: &str) -> anyhow::Result<tokio_postgres::Client> {
    let (client, connection) =
        tokio_postgres::connect(url, NoTls).await.with_context(|| format!("connecting to {url}"))?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

impl TestDatabase {
    pub async fn client(&self) -> anyhow::Result<tokio_postgres::Client> {
        connect(&self.url).await
    }

    /// The value of a query returning one bigint.
    pub async fn count(&self, sql: &str) -> anyhow::Result<i64> {
        count(&self.url, sql).await
    }
}

/// The value of a query returning one bigint, on any database.
pub async fn count(url: &str, sql: &str) -> anyhow::Result<i64> {
    let client = connect(url).await?;
    Ok(client.query_one(sql, &[]).await.with_context(|| sql.to_string())?.get(0))
}
