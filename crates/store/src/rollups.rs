//! Rollups: per kind, sensor and 1 minute / 1 hour / 1 day bucket, the
//! aggregates of [`citygauge_domain::rollup`], in relations named
//! `{kind}_{1m,1h,1d}` with the same columns on both backends.
//!
//! - Native: views over tables of closed buckets, materialised in bulk behind
//!   a watermark by the ingest daemon, with the rest aggregated at query time
//!   (see [`views`] and [`materialise`]); the writer only notes rows that
//!   arrive below the watermark. `maintain` deletes 1-minute rows older than
//!   the kind's raw retention; hour and day rows are kept for good (a year of
//!   hourly rows is 8,760 per sensor).
//! - TimescaleDB: hierarchical continuous aggregates (1m on the hypertable,
//!   1h on 1m, 1d on 1h) with real-time aggregation and refresh policies; the
//!   writer leaves them alone.

mod materialise;
mod sql;
mod views;

pub(crate) use materialise::{note_late, run as materialise};
pub use materialise::{MaterialiseReport, MATERIALISE_LOCK, MATERIALISE_SETTLE};

use chrono::{DateTime, Utc};
use citygauge_domain::Kind;
use tokio_postgres::error::SqlState;
use tokio_postgres::Client;

use crate::{Backend, StoreError};

pub use citygauge_domain::rollup::{columns, relation, Level, RollupColumn, Stat};

/// The SQL of schema migration 2 (the rollup relations) for `backend`.
pub fn migration_sql(backend: Backend) -> String {
    sql::migration(backend)
}

/// The SQL of schema migration 5 (native rollups behind a watermark) for
/// `backend`.
pub fn migration_v5_sql(backend: Backend) -> String {
    views::migration(backend)
}

/// Native backend: deletes `kind`'s 1-minute rollups older than `cutoff`;
/// returns how many.
pub(crate) async fn expire_minutes(client: &Client, kind: Kind, cutoff: DateTime<Utc>) -> Result<u64, StoreError> {
    let table = views::done(kind, Level::Minute);
    Ok(client.execute(&format!("DELETE FROM {table} WHERE bucket < $1"), &[&cutoff]).await?)
}

/// TimescaleDB: brings every continuous aggregate up to date now, finest
/// level first (the hour aggregates read the minute ones), as the refresh
/// policies do on their schedules. Late readings into already materialised
/// buckets show only after such a refresh; the native backend's tables are
/// exact at every commit, so there it does nothing.
pub(crate) async fn refresh_timescale_all(client: &Client) -> Result<(), StoreError> {
    for level in Level::ALL {
        for kind in Kind::ALL {
            let refresh = format!("CALL refresh_continuous_aggregate('{}', NULL, NULL)", relation(kind, level));
            refresh_retrying(client, &refresh).await?;
        }
    }
    Ok(())
}

/// Runs a refresh, waiting out a policy job that is refreshing the same
/// aggregate (55P03) rather than failing.
async fn refresh_retrying(client: &Client, refresh: &str) -> Result<(), StoreError> {
    let mut attempt = 0;
    loop {
        match client.batch_execute(refresh).await {
            Ok(()) => return Ok(()),
            Err(e) if e.code() == Some(&SqlState::LOCK_NOT_AVAILABLE) && attempt < 20 => {
                attempt += 1;
                tokio::time::sleep(std::time::Duration::from_millis(250)).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// TimescaleDB: materialises what the raw tables held before the continuous
/// aggregates existed. It cannot run in a transaction (so not in the
/// migration's), and stops short of now: a window reaching the present would
/// move the watermark past it and hide real-time rows.
pub(crate) async fn refresh_timescale_history(client: &Client) -> Result<(), StoreError> {
    for kind in Kind::ALL {
        // A new database has nothing to materialise; its refresh policies,
        // which start at once, would only collide with ours.
        let table = kind.as_str();
        let has_rows: bool = client.query_one(&format!("SELECT EXISTS (SELECT 1 FROM {table})"), &[]).await?.get(0);
        if !has_rows {
            continue;
        }
        for level in Level::ALL {
            let (_, end, _) = sql::policy(level);
            let refresh = format!(
                "CALL refresh_continuous_aggregate('{}', NULL, now() - INTERVAL '{end}')",
                relation(kind, level)
            );
            // A policy job covers only its recent window: ours must run too.
            refresh_retrying(client, &refresh).await?;
        }
    }
    Ok(())
}
