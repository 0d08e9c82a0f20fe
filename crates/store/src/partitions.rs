//! Native range partitioning: one partition per table per UTC day, named
//! `{table}_pYYYYMMDD`, plus a `{table}_default` partition that catches rows no
//! day partition covers. (With TimescaleDB none of this runs: chunks and
//! retention are the extension's.)
//!
//! A day's partition is created by moving that day's rows out of the default
//! partition and attaching a new table, so a day that first received stray rows
//! can still get its partition later.

//!
//! DDL here needs strong locks (ATTACH takes an ACCESS EXCLUSIVE lock on the
//! default partition, DROP one on the parent), and while it waits for them
//! every writer that comes after it queues behind it. So each DDL
//! transaction waits at most its own `lock_timeout` and fails with a
//! transient error (55P03) for its caller to retry later; writers are never
//! held up by it for longer than that.

use std::collections::BTreeSet;
use std::time::Duration as StdDuration;

use chrono::{DateTime, Duration, NaiveDate, NaiveTime, Utc};
use tokio_postgres::{Client, Transaction};
use tracing::info;

use crate::StoreError;

/// How long partition DDL waits for its locks unless told otherwise.
pub const DEFAULT_DDL_LOCK_TIMEOUT: StdDuration = StdDuration::from_secs(1);

/// Bounds the current transaction's lock waits (at least 1 ms: 0 would mean
/// waiting forever).
async fn bound_lock_wait(tx: &Transaction<'_>, lock_timeout: StdDuration) -> Result<(), StoreError> {
    let ms = lock_timeout.as_millis().clamp(1, i32::MAX as u128);
    tx.batch_execute(&format!("SET LOCAL lock_timeout = {ms}")).await?;
    Ok(())
}

/// The partition of `table` that holds `day`.
pub fn partition_name(table: &str, day: NaiveDate) -> String {
    format!("{table}_p{}", day.format("%Y%m%d"))
}

fn day_of(name: &str, table: &str) -> Option<NaiveDate> {
    let suffix = name.strip_prefix(table)?.strip_prefix("_p")?;
    NaiveDate::parse_from_str(suffix, "%Y%m%d").ok()
}

fn day_start(day: NaiveDate) -> DateTime<Utc> {
    day.and_time(NaiveTime::MIN).and_utc()
}

/// The days `table` has partitions for.
pub async fn existing_days(client: &Client, table: &str) -> Result<BTreeSet<NaiveDate>, StoreError> {
    let rows = client
        .query(
            "SELECT c.relname::text FROM pg_inherits i
               JOIN pg_class c ON c.oid = i.inhrelid
               JOIN pg_class p ON p.oid = i.inhparent
              WHERE p.relname = $1",
            &[&table],
        )
        .await?;
    Ok(rows.iter().filter_map(|r| day_of(r.get::<_, &str>(0), table)).collect())
}

/// Creates the partitions of `table` for `days` that do not exist yet;
/// returns how many it created. Safe against concurrent callers.
pub async fn ensure_days(client: &mut Client, table: &str, days: &BTreeSet<NaiveDate>) -> Result<usize, StoreError> {
    ensure_days_within(client, table, days, DEFAULT_DDL_LOCK_TIMEOUT).await
}

/// [`ensure_days`], each day's DDL waiting at most `lock_timeout` for its
/// locks; days made before a timeout stay made.
pub async fn ensure_days_within(
    client: &mut Client,
    table: &str,
    days: &BTreeSet<NaiveDate>,
    lock_timeout: StdDuration,
) -> Result<usize, StoreError> {
    let existing = existing_days(client, table).await?;
    let mut created = 0;
    for &day in days.iter().filter(|d| !existing.contains(d)) {
        let tx = client.transaction().await?;
        bound_lock_wait(&tx, lock_timeout).await?;
        tx.execute("SELECT pg_advisory_xact_lock(hashtext('citygauge.partitions.' || $1))", &[&table]).await?;
        let name = partition_name(table, day);
        let exists: bool = tx.query_one("SELECT to_regclass($1) IS NOT NULL", &[&name]).await?.get(0);
        if exists {
            tx.commit().await?;
            continue;
        }
        let (from, to) = (day_start(day).to_rfc3339(), day_start(day + Duration::days(1)).to_rfc3339());
        tx.batch_execute(&format!(
            "CREATE TABLE {name} (LIKE {table} INCLUDING DEFAULTS INCLUDING CONSTRAINTS);
             WITH moved AS (DELETE FROM {table}_default WHERE ts >= '{from}' AND ts < '{to}' RETURNING *)
             INSERT INTO {name} SELECT * FROM moved;
             ALTER TABLE {table} ATTACH PARTITION {name} FOR VALUES FROM ('{from}') TO ('{to}');"
        ))
        .await?;
        tx.commit().await?;
        created += 1;
    }
    if created > 0 {
        info!(table, created, "created daily partitions");
    }
    Ok(created)
}

/// Drops the partitions of `table` wholly older than `keep`, and deletes rows
/// older than that from its default partition; returns the dropped names.
pub async fn drop_expired(
    client: &mut Client,
    table: &str,
    keep: Duration,
    now: DateTime<Utc>,
) -> Result<Vec<String>, StoreError> {
    drop_expired_within(client, table, keep, now, DEFAULT_DDL_LOCK_TIMEOUT).await
}

/// [`drop_expired`], each DROP waiting at most `lock_timeout` for its locks.
/// (`DETACH ... CONCURRENTLY` would avoid the parent's ACCESS EXCLUSIVE lock
/// but is refused on a table with a default partition.)
pub async fn drop_expired_within(
    client: &mut Client,
    table: &str,
    keep: Duration,
    now: DateTime<Utc>,
    lock_timeout: StdDuration,
) -> Result<Vec<String>, StoreError> {
    let cutoff = now - keep;
    let mut dropped = Vec::new();
    for day in existing_days(client, table).await? {
        if day_start(day + Duration::days(1)) <= cutoff {
            let name = partition_name(table, day);
            let tx = client.transaction().await?;
            bound_lock_wait(&tx, lock_timeout).await?;
            tx.batch_execute(&format!("DROP TABLE IF EXISTS {name}")).await?;
            tx.commit().await?;
            dropped.push(name);
        }
    }
    client.execute(&format!("DELETE FROM {table}_default WHERE ts < $1"), &[&cutoff]).await?;
    if !dropped.is_empty() {
        info!(table, dropped = dropped.len(), "dropped partitions past retention");
    }
    Ok(dropped)
}

/// The days from `from` to `to`, inclusive.
pub fn day_range(from: NaiveDate, to: NaiveDate) -> BTreeSet<NaiveDate> {
    from.iter_days().take_while(|d| *d <= to).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_names_round_trip() {
        let day = NaiveDate::from_ymd_opt(2026, 11, 22).unwrap();
        assert_eq!(partition_name("water_level", day), "water_level_p20261122");
        assert_eq!(day_of("water_level_p20261122", "water_level"), Some(day));
        assert_eq!(day_of("water_level_default", "water_level"), None);
        assert_eq!(day_range(day, day + Duration::days(2)).len(), 3);
    }
}
