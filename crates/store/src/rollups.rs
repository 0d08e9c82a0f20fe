//! Rollups: per kind, sensor and 1 minute / 1 hour / 1 day bucket, the
//! aggregates of [`citygauge_domain::rollup`], in relations named
//! `{kind}_{1m,1h,1d}` with the same columns on both backends.
//!
//! - Native: plain tables the writer keeps current in each batch's
//!   transaction, from the rows that batch inserted (aggregated in memory,
//!   one upsert per kind and level), so they never need a rescan. `maintain`
//!   deletes 1-minute rows older than the kind's raw retention; hour and day
//!   rows are kept for good (a year of hourly rows is 8,760 per sensor).
//! - TimescaleDB: hierarchical continuous aggregates (1m on the hypertable,
//!   1h on 1m, 1d on 1h) with real-time aggregation and refresh policies; the
//!   writer leaves them alone.

mod sql;

use chrono::{DateTime, Utc};
use citygauge_domain::rollup::{CellValue, ColumnType, Rollup};
use citygauge_domain::{Kind, Reading};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;
use tokio_postgres::Client;

use crate::{Backend, StoreError};

pub use citygauge_domain::rollup::{columns, relation, Level, RollupColumn, Stat};

/// The SQL of schema migration 2 (the rollup relations) for `backend`.
pub fn migration_sql(backend: Backend) -> String {
    sql::migration(backend)
}

/// The SQL that merges a batch's partials into `kind`'s rollups at `level`
/// (native backend); parameters are one array per column.
pub fn upsert_sql(kind: Kind, level: Level) -> String {
    sql::upsert(kind, level)
}

/// Adds the rows a batch inserted (`inserted`, grouped by kind in
/// [`Kind::ALL`] order) to the native rollup tables, inside its transaction.
/// Kinds and levels go in a fixed order and each statement in key order, so
/// concurrent writers take row locks in one global order.
pub(crate) async fn apply(tx: &deadpool_postgres::Transaction<'_>, inserted: &[&Reading]) -> Result<(), StoreError> {
    for kind in Kind::ALL {
        let minute = Rollup::of(kind, Level::Minute, inserted.iter().copied());
        if minute.is_empty() {
            continue;
        }
        let hour = minute.coarsen(Level::Hour);
        let day = hour.coarsen(Level::Day);
        for rollup in [&minute, &hour, &day] {
            upsert(tx, rollup).await?;
        }
    }
    Ok(())
}

async fn upsert(tx: &deadpool_postgres::Transaction<'_>, rollup: &Rollup) -> Result<(), StoreError> {
    let statement = tx.prepare_cached(&sql::upsert(rollup.kind(), rollup.level())).await?;
    let groups = rollup.groups();
    let sensors: Vec<&str> = groups.keys().map(|(sensor, _)| sensor.as_str()).collect();
    let buckets: Vec<DateTime<Utc>> = groups.keys().map(|(_, bucket)| *bucket).collect();
    let mut params: Vec<Box<dyn ToSql + Sync + Send + '_>> = vec![Box::new(sensors), Box::new(buckets)];
    for column in columns(rollup.kind()) {
        let cells = groups.values().map(|partial| partial.value(column.stat));
        params.push(match column.column_type {
            ColumnType::BigInt => {
                Box::new(cells.map(|c| if let CellValue::Int(v) = c { v } else { 0 }).collect::<Vec<i64>>())
            }
            ColumnType::Float => Box::new(
                cells.map(|c| if let CellValue::Float(v) = c { v } else { None }).collect::<Vec<Option<f64>>>(),
            ),
            ColumnType::Bool => Box::new(
                cells.map(|c| if let CellValue::Bool(v) = c { v } else { None }).collect::<Vec<Option<bool>>>(),
            ),
            // As in the raw rows: PostgreSQL text cannot hold NUL.
            ColumnType::Text => Box::new(
                cells
                    .map(|c| if let CellValue::Text(v) = c { v.map(|s| s.replace('\0', "\u{FFFD}")) } else { None })
                    .collect::<Vec<Option<String>>>(),
            ),
            ColumnType::Timestamp => Box::new(
                cells
                    .map(|c| if let CellValue::Timestamp(v) = c { v } else { DateTime::UNIX_EPOCH })
                    .collect::<Vec<DateTime<Utc>>>(),
            ),
        });
    }
    let refs: Vec<&(dyn ToSql + Sync)> = params.iter().map(|p| p.as_ref() as &(dyn ToSql + Sync)).collect();
    tx.execute(&statement, &refs).await?;
    Ok(())
}

/// Native backend: deletes `kind`'s 1-minute rollups older than `cutoff`;
/// returns how many.
pub(crate) async fn expire_minutes(client: &Client, kind: Kind, cutoff: DateTime<Utc>) -> Result<u64, StoreError> {
    let table = relation(kind, Level::Minute);
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
