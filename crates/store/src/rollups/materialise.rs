//! Native backend: moving each kind's rollup watermark forward, and
//! recomputing the buckets that rows written below it touched (see
//! [`super::views`] for the relations).
//!
//! # Why no row is ever missed
//!
//! A writer takes `FOR KEY SHARE` on its kinds' watermark rows in the
//! batch's transaction and notes the rows it wrote below `pending_to`. A
//! materialisation first raises `pending_to` (under `FOR UPDATE`, so it
//! waits for the writers that hold the old value, whose rows its later
//! statements will see), aggregates `[done_to, pending_to)` without holding
//! the row, then takes `FOR UPDATE` again to recompute what writers noted
//! meanwhile and move `done_to`. Writers wait only for that last, short part.
//! One materialisation per kind runs at a time (advisory lock); others skip.

use std::collections::BTreeSet;

use chrono::{DateTime, Duration, Utc};
use citygauge_domain::reading::QualityLevel;
use citygauge_domain::rollup::Level;
use citygauge_domain::{Kind, Reading};
use tokio_postgres::types::ToSql;

use super::views;
use crate::StoreError;

/// Arbitrary, fixed: the advisory lock key of kind `k` is this plus `k`'s
/// index in [`Kind::ALL`] ("cgrollup").
pub const MATERIALISE_LOCK: i64 = 0x6367_726f_6c6c_7570;

/// How far behind now the ingest daemon materialises: readings arrive a few
/// seconds after their timestamp, and each one below the watermark costs a
/// recomputation of its bucket; two minutes keeps those rare.
pub const MATERIALISE_SETTLE: Duration = Duration::minutes(2);

/// The most one transaction aggregates, so that catching up after a long
/// stop is many bounded transactions rather than one huge one.
const MAX_STEP: Duration = Duration::hours(6);

/// A step's own statement timeout, instead of the pool's (60 s): six hours
/// of a large fleet must not time out and be retried unchanged for ever.
const STEP_STATEMENT_TIMEOUT: &str = "SET LOCAL statement_timeout = '600s'";

/// What a materialisation did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct MaterialiseReport {
    /// Bucket rows written (all levels), new and recomputed.
    pub buckets: u64,
    /// Ranges of late rows recomputed (after merging overlapping ones).
    pub recomputed_ranges: u64,
    /// Kinds skipped because another materialisation held them.
    pub skipped_kinds: u64,
}

/// Materialises every kind's buckets below `upto` (rounded down to a minute)
/// and recomputes those late rows touched.
pub(crate) async fn run(
    pool: &deadpool_postgres::Pool,
    upto: DateTime<Utc>,
    minutes_kept_from: impl Fn(Kind) -> Option<DateTime<Utc>>,
) -> Result<MaterialiseReport, StoreError> {
    let upto = Level::Minute.bucket(upto);
    let mut report = MaterialiseReport::default();
    let mut client = pool.get().await?;
    for (index, kind) in Kind::ALL.into_iter().enumerate() {
        loop {
            let Some(target) = raise_pending(&mut client, kind, upto).await? else { break };
            let tx = client.transaction().await?;
            let locked: bool = tx
                .query_one("SELECT pg_try_advisory_xact_lock($1)", &[&(MATERIALISE_LOCK + index as i64)])
                .await?
                .get(0);
            if !locked {
                report.skipped_kinds += 1;
                break;
            }
            tx.batch_execute(STEP_STATEMENT_TIMEOUT).await?;
            let done_to: DateTime<Utc> =
                tx.query_one("SELECT done_to FROM rollup_watermarks WHERE kind = $1", &[&kind.as_str()]).await?.get(0);
            // The bulk of the work, without the watermark row.
            if target > done_to {
                for level in Level::ALL {
                    let (from, to) = (level.bucket(done_to), level.bucket(target));
                    if to > from {
                        let statement = tx.prepare_cached(&views::materialise(kind, level, false)).await?;
                        report.buckets += tx.execute(&statement, &[&from, &to]).await?;
                    }
                }
            }
            let new_done = done_to.max(target);
            // Late rows noted so far (a backfill can be large), still without
            // the row; then, with writers waiting, what they noted meanwhile,
            // so the watermark never moves past a committed row it has not
            // counted.
            recompute_noted(&tx, kind, new_done, minutes_kept_from(kind), &mut report).await?;
            tx.execute("SELECT 1 FROM rollup_watermarks WHERE kind = $1 FOR UPDATE", &[&kind.as_str()]).await?;
            recompute_noted(&tx, kind, new_done, minutes_kept_from(kind), &mut report).await?;
            tx.execute(
                "UPDATE rollup_watermarks SET done_to = greatest(done_to, $2) WHERE kind = $1",
                &[&kind.as_str(), &new_done],
            )
            .await?;
            tx.commit().await?;
            if target >= upto {
                break;
            }
        }
    }
    Ok(report)
}

/// Takes the late rows writers noted for `kind` and recomputes their
/// buckets below `done_to`, finest level first. An hour or day is rebuilt
/// only when it starts at or after `minutes_kept_from` (the minute rollups'
/// retention cutoff): before it, its minutes are gone and rebuilding would
/// replace a whole bucket with what is left of it.
async fn recompute_noted(
    tx: &deadpool_postgres::Transaction<'_>,
    kind: Kind,
    done_to: DateTime<Utc>,
    minutes_kept_from: Option<DateTime<Utc>>,
    report: &mut MaterialiseReport,
) -> Result<(), StoreError> {
    let noted = tx
        .query(
            "DELETE FROM rollup_invalidations WHERE kind = $1 RETURNING from_ts, to_ts, sensor_ids",
            &[&kind.as_str()],
        )
        .await?;
    let noted: Vec<Late> =
        noted.iter().map(|row| Late { from: row.get(0), to: row.get(1), sensors: row.get(2) }).collect();
    for late in merge(noted) {
        report.recomputed_ranges += 1;
        for level in Level::ALL {
            let mut from = level.bucket(late.from);
            if let (Some(kept), true) = (minutes_kept_from, level != Level::Minute) {
                // The first whole bucket of this level from the cutoff on.
                from = from.max(first_whole_bucket(level, kept));
            }
            let to = (level.bucket(late.to) + level.width()).min(level.bucket(done_to));
            if to > from {
                let statement = tx.prepare_cached(&views::materialise(kind, level, true)).await?;
                let params: [&(dyn ToSql + Sync); 3] = [&from, &to, &late.sensors];
                report.buckets += tx.execute(&statement, &params).await?;
            }
        }
    }
    Ok(())
}

/// The start of the first bucket of `level` that lies wholly at or after
/// `from`.
fn first_whole_bucket(level: Level, from: DateTime<Utc>) -> DateTime<Utc> {
    level.bucket(from - Duration::microseconds(1)) + level.width()
}

/// Raises `kind`'s `pending_to` to the end of this step (at most
/// [`MAX_STEP`] past `done_to`, at most `upto`) and returns that end; `None`
/// when the kind has no rows yet.
async fn raise_pending(
    client: &mut deadpool_postgres::Object,
    kind: Kind,
    upto: DateTime<Utc>,
) -> Result<Option<DateTime<Utc>>, StoreError> {
    let tx = client.transaction().await?;
    let row = tx
        .query_one("SELECT done_to, pending_to FROM rollup_watermarks WHERE kind = $1 FOR UPDATE", &[&kind.as_str()])
        .await?;
    let (mut done_to, pending_to): (DateTime<Utc>, DateTime<Utc>) = (row.get(0), row.get(1));
    if done_to == DateTime::UNIX_EPOCH {
        // Nothing materialised yet: start where the rows start (writers wait
        // on the row lock, so none lands below that unnoticed), or at `upto`
        // when there are none.
        let first: Option<DateTime<Utc>> =
            tx.query_one(&format!("SELECT min(ts) FROM {}", kind.as_str()), &[]).await?.get(0);
        let Some(first) = first else {
            // No rows: the views aggregate everything at query time, which
            // is nothing; a backfill landing first stays exact that way.
            tx.commit().await?;
            return Ok(None);
        };
        done_to = Level::Minute.bucket(first).min(upto);
        tx.execute(
            "UPDATE rollup_watermarks SET done_to = $2, pending_to = greatest(pending_to, $2) WHERE kind = $1",
            &[&kind.as_str(), &done_to],
        )
        .await?;
    }
    let target = upto.min(done_to + MAX_STEP).max(done_to);
    if target > pending_to {
        tx.execute("UPDATE rollup_watermarks SET pending_to = $2 WHERE kind = $1", &[&kind.as_str(), &target]).await?;
    }
    tx.commit().await?;
    Ok(Some(target))
}

/// The writer's part, in a batch's transaction: locks the watermarks of the
/// kinds `inserted` holds (in one order, so writers cannot deadlock) and
/// notes, per kind, the rows below `pending_to`.
pub(crate) async fn note_late(
    tx: &deadpool_postgres::Transaction<'_>,
    inserted: &[&Reading],
) -> Result<(), StoreError> {
    let kinds: Vec<&str> =
        Kind::ALL.into_iter().filter(|k| inserted.iter().any(|r| r.kind() == *k)).map(Kind::as_str).collect();
    if kinds.is_empty() {
        return Ok(());
    }
    let statement = tx
        .prepare_cached(
            "SELECT kind, pending_to FROM rollup_watermarks WHERE kind = ANY($1) ORDER BY kind FOR KEY SHARE",
        )
        .await?;
    for row in tx.query(&statement, &[&kinds]).await? {
        let (kind, pending_to): (&str, DateTime<Utc>) = (row.get(0), row.get(1));
        // Bad readings are in no rollup, so they invalidate nothing.
        let late = inserted
            .iter()
            .filter(|r| r.kind().as_str() == kind && r.ts < pending_to && r.quality.level != QualityLevel::Bad);
        if let Some(range) = Late::of(late) {
            let statement = tx
                .prepare_cached(
                    "INSERT INTO rollup_invalidations (kind, from_ts, to_ts, sensor_ids) VALUES ($1, $2, $3, $4)",
                )
                .await?;
            let sensors: Vec<&str> = range.sensors.iter().map(String::as_str).collect();
            tx.execute(&statement, &[&kind, &range.from, &range.to, &sensors]).await?;
        }
    }
    Ok(())
}

/// Late rows: the span of their timestamps (both ends included) and sensors.
#[derive(Debug, Clone, PartialEq)]
struct Late {
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    sensors: Vec<String>,
}

impl Late {
    fn of<'a>(readings: impl Iterator<Item = &'a &'a Reading>) -> Option<Late> {
        let mut sensors = BTreeSet::new();
        let mut span: Option<(DateTime<Utc>, DateTime<Utc>)> = None;
        for r in readings {
            sensors.insert(r.sensor_id.as_str());
            span = Some(span.map_or((r.ts, r.ts), |(a, b)| (a.min(r.ts), b.max(r.ts))));
        }
        let (from, to) = span?;
        Some(Late { from, to, sensors: sensors.into_iter().map(str::to_string).collect() })
    }
}

/// Merges overlapping spans (sensors united), so a burst of late batches
/// becomes a few statements.
fn merge(mut noted: Vec<Late>) -> Vec<Late> {
    noted.sort_by_key(|l| l.from);
    let mut merged: Vec<(DateTime<Utc>, DateTime<Utc>, BTreeSet<String>)> = Vec::new();
    for late in noted {
        match merged.last_mut() {
            Some((_, to, sensors)) if late.from <= *to => {
                *to = (*to).max(late.to);
                sensors.extend(late.sensors);
            }
            _ => merged.push((late.from, late.to, late.sensors.into_iter().collect())),
        }
    }
    merged.into_iter().map(|(from, to, sensors)| Late { from, to, sensors: sensors.into_iter().collect() }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(minute: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 30, 3, minute, 0).single().expect("a time")
    }

    fn late(from: u32, to: u32, sensors: &[&str]) -> Late {
        Late { from: at(from), to: at(to), sensors: sensors.iter().map(|s| s.to_string()).collect() }
    }

    #[test]
    fn only_whole_buckets_after_the_minutes_cutoff_are_rebuilt() {
        assert_eq!(first_whole_bucket(Level::Hour, at(0)), at(0));
        assert_eq!(first_whole_bucket(Level::Hour, at(1)), at(0) + Duration::hours(1));
        let midnight = Utc.with_ymd_and_hms(2026, 12, 1, 0, 0, 0).single().expect("a time");
        assert_eq!(first_whole_bucket(Level::Day, at(30)), midnight);
    }

    #[test]
    fn overlapping_spans_merge_and_unite_their_sensors() {
        let merged =
            merge(vec![late(30, 40, &["b"]), late(0, 10, &["a"]), late(10, 20, &["c", "a"]), late(41, 45, &["d"])]);
        assert_eq!(merged, vec![late(0, 20, &["a", "c"]), late(30, 40, &["b"]), late(41, 45, &["d"])]);
        assert!(merge(Vec::new()).is_empty());
    }
}
