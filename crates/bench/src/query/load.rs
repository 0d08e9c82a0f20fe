//! Stores the data set: the registry through `Store::import_sensors`, the
//! history by binary COPY straight into the raw table (one transaction per
//! UTC day, on two connections) with that day's rollups filled right after
//! from what was just copied (one `INSERT ... SELECT ... GROUP BY` per
//! level), and the recent readings through `Store::write`, the writer ingest
//! uses, which maintains the rollups itself.

use std::collections::BTreeSet;
use std::pin::pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Duration, DurationRound, NaiveDate, NaiveTime, Utc};
use citygauge_domain::registry::file::SensorRecord;
use citygauge_store::{partitions, Backend, Batch, Store, StoreConfig};
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::{ToSql, Type};

use super::dataset;
use crate::common::connect;

/// What the benchmark needs to know about the stored data set.
#[derive(Debug)]
pub struct DataSet {
    pub sensors: Vec<SensorRecord>,
    pub history: Vec<String>,
    pub history_rows: u64,
    pub backend: Backend,
}

#[derive(Debug, Clone, Copy)]
pub struct Sizes {
    pub sensors: usize,
    pub history_sensors: usize,
    pub history_days: u32,
}

/// Migrates `url`, then stores whatever of the data set is not there yet
/// (a reused data directory keeps its registry and history); the recent
/// readings are always written anew, as of now.
pub async fn prepare(url: &str, sizes: Sizes) -> anyhow::Result<DataSet> {
    let store = Store::new(StoreConfig::new(url))?;
    store.migrate().await?;
    store.maintain(Utc::now()).await?;
    let backend = store.backend().await?;
    let sensors = dataset::sensors(sizes.sensors)?;
    let history = dataset::history_sensors(&sensors, sizes.history_sensors);
    let mix: Vec<String> = citygauge_domain::Kind::ALL
        .iter()
        .map(|kind| format!("{} {kind}", sensors.iter().filter(|s| s.kind == *kind).count()))
        .collect();
    println!("data set: {} sensors ({}), {} with history", sensors.len(), mix.join(", "), history.len());
    let client = connect(url).await?;
    let registered: i64 = client.query_one("SELECT count(*) FROM sensors", &[]).await?.get(0);
    let history_rows = if registered as usize == sensors.len() {
        let rows: i64 = client.query_one("SELECT count(*) FROM water_level", &[]).await?.get(0);
        println!("data set: reusing {registered} sensors and {rows} water-level rows");
        rows as u64
    } else {
        let started = Instant::now();
        store.import_sensors(&sensors).await?;
        println!("data set: {} sensors registered in {:.1} s", sensors.len(), started.elapsed().as_secs_f64());
        let rows = copy_history(url, &history, sizes.history_days, backend).await?;
        let started = Instant::now();
        client.batch_execute("VACUUM ANALYZE").await?;
        println!("data set: VACUUM ANALYZE in {:.0} s", started.elapsed().as_secs_f64());
        rows
    };
    let started = Instant::now();
    let readings = dataset::recent_readings(&sensors, &history, Utc::now());
    let count = readings.len();
    for chunk in readings.chunks(5_000) {
        store.write(&Batch { readings: chunk.to_vec(), ..Batch::default() }).await?;
    }
    client.batch_execute("ANALYZE").await?;
    println!(
        "data set: {count} recent readings (the last 24 h) through Store::write in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(DataSet { sensors, history, history_rows, backend })
}

/// Fails before anything is stored when the disk under `dir` cannot take
/// `rows` history rows: about 370 bytes each (measured: 113 raw, 190 in
/// the one-minute rollup, the rest the other rollups and the WAL), plus
/// 3 GB for the recent readings and whatever else uses the disk.
pub fn check_disk(dir: &std::path::Path, rows: u64) -> anyhow::Result<()> {
    let probe = dir.ancestors().find(|d| d.exists()).unwrap_or(dir);
    let output = std::process::Command::new("df").args(["--output=avail", "-B1"]).arg(probe).output()?;
    let available: u64 =
        String::from_utf8_lossy(&output.stdout).lines().nth(1).and_then(|l| l.trim().parse().ok()).unwrap_or(u64::MAX);
    let needed = rows * 370 + 3_000_000_000;
    println!(
        "disk: about {:.1} GB needed, {:.1} GB available under {}",
        needed as f64 / 1e9,
        available as f64 / 1e9,
        probe.display()
    );
    if available < needed {
        anyhow::bail!(
            "not enough disk for the data set: use fewer --history-days or --history-sensors, or --data-dir elsewhere"
        );
    }
    Ok(())
}

/// One-minute levels of `history` over the `days` before the current minute.
async fn copy_history(url: &str, history: &[String], days: u32, backend: Backend) -> anyhow::Result<u64> {
    if history.is_empty() || days == 0 {
        return Ok(0);
    }
    let end = Utc::now().duration_trunc(Duration::minutes(1))?;
    let start = end - Duration::days(i64::from(days));
    let chunks: Vec<(DateTime<Utc>, DateTime<Utc>)> = utc_days(start, end);
    if backend == Backend::Native {
        let mut client = connect(url).await?;
        let days: BTreeSet<NaiveDate> = chunks.iter().map(|(from, _)| from.date_naive()).collect();
        partitions::ensure_days(&mut client, "water_level", &days).await?;
    }
    // Until the schema has rollups (an older build), the raw rows alone.
    let rollups: bool =
        connect(url).await?.query_one("SELECT to_regclass('water_level_1m') IS NOT NULL", &[]).await?.get(0);
    if !rollups {
        println!("data set: no rollup relations in this schema: raw rows only");
    }
    // Schema 5 on the native backend: the relations are views over the
    // materialised `_done` tables, filled here below a watermark set after.
    let materialised: bool =
        connect(url).await?.query_one("SELECT to_regclass('water_level_1m_done') IS NOT NULL", &[]).await?.get(0);
    let target = if materialised { "_done" } else { "" };
    let total_rows = history.len() as u64 * (end - start).num_minutes() as u64;
    println!(
        "data set: copying {total_rows} one-minute rows ({} sensors x {days} days) and filling their rollups ...",
        history.len()
    );
    let (next, done) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (chunks, history) = (Arc::new(chunks), Arc::new(history.to_vec()));
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..2 {
        let (url, next, done, chunks, history) =
            (url.to_string(), next.clone(), done.clone(), chunks.clone(), history.clone());
        workers.push(tokio::spawn(async move {
            let mut client = connect(&url).await?;
            let mut rows = 0u64;
            while let Some(&(from, to)) = chunks.get(next.fetch_add(1, Ordering::Relaxed)) {
                rows += copy_day(&mut client, &history, from, to).await?;
                if rollups && backend == Backend::Native {
                    fill_rollups(&client, target, from, to).await?;
                }
                let finished = done.fetch_add(1, Ordering::Relaxed) + 1;
                if finished % 20 == 0 || finished == chunks.len() {
                    println!("  {finished}/{} days, {:.0} s", chunks.len(), started.elapsed().as_secs_f64());
                }
            }
            anyhow::Ok(rows)
        }));
    }
    let mut rows = 0;
    for worker in workers {
        rows += worker.await??;
    }
    if rollups && backend == Backend::Native && materialised {
        connect(url)
            .await?
            .execute(
                "UPDATE rollup_watermarks SET done_to = $1, pending_to = greatest(pending_to, $1) WHERE kind = 'water_level'",
                &[&end],
            )
            .await?;
    }
    if rollups && backend == Backend::TimescaleDb {
        // Continuous aggregates fill themselves from the hypertable.
        let client = connect(url).await?;
        for level in ["1m", "1h", "1d"] {
            client
                .execute(
                    &format!("CALL refresh_continuous_aggregate('water_level_{level}', $1, $2)"),
                    &[&start, &(end + Duration::days(1))],
                )
                .await?;
        }
    }
    println!(
        "data set: {rows} history rows and their rollups in {:.0} s ({:.0} rows/s)",
        started.elapsed().as_secs_f64(),
        rows as f64 / started.elapsed().as_secs_f64()
    );
    Ok(rows)
}

/// `[start, end)` cut at UTC midnights: one chunk per day partition, and
/// whole 1-day rollup buckets.
fn utc_days(start: DateTime<Utc>, end: DateTime<Utc>) -> Vec<(DateTime<Utc>, DateTime<Utc>)> {
    let mut chunks = Vec::new();
    let mut from = start;
    while from < end {
        let midnight = (from.date_naive() + Duration::days(1)).and_time(NaiveTime::MIN).and_utc();
        let to = midnight.min(end);
        chunks.push((from, to));
        from = to;
    }
    chunks
}

/// One chunk's rows, in key order (sensor, ts): one transaction.
async fn copy_day(
    client: &mut tokio_postgres::Client,
    history: &[String],
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> anyhow::Result<u64> {
    let tx = client.transaction().await?;
    let sink = tx.copy_in("COPY water_level (sensor_id, ts, level_m) FROM STDIN BINARY").await?;
    let mut writer = pin!(BinaryCopyInWriter::new(sink, &[Type::TEXT, Type::TIMESTAMPTZ, Type::FLOAT8]));
    let (first, last) = (from.timestamp() / 60, to.timestamp() / 60);
    for (s, sensor) in history.iter().enumerate() {
        for minute in first..last {
            let ts = DateTime::from_timestamp(minute * 60, 0).unwrap_or(from);
            let level = dataset::history_level(s, minute);
            let row: [&(dyn ToSql + Sync); 3] = [sensor, &ts, &level];
            writer.as_mut().write(&row).await?;
        }
    }
    let rows = writer.finish().await?;
    tx.commit().await?;
    Ok(rows)
}

/// The rollups of `[from, to)` (whole 1-day buckets), each level from the one
/// below it, as the store's backfill does: contract 1's columns. `target`
/// is `_done` where the relations are views over materialised tables.
async fn fill_rollups(
    client: &tokio_postgres::Client,
    target: &str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> anyhow::Result<()> {
    const ORIGIN: &str = "'1970-01-01T00:00:00Z'::timestamptz";
    const COLUMNS: &str = "sensor_id, bucket, n, n_suspect, first_ts, last_ts, \
                           level_m_sum, level_m_n, level_m_min, level_m_max, level_m_last";
    client
        .execute(
            &format!(
                "INSERT INTO water_level_1m{target} ({COLUMNS})
                 SELECT sensor_id, date_bin('1 minute', ts, {ORIGIN}), count(*), count(*) FILTER (WHERE quality = 'suspect'),
                        min(ts), max(ts), sum(level_m), count(level_m), min(level_m), max(level_m),
                        (array_agg(level_m ORDER BY ts DESC))[1]
                   FROM water_level WHERE ts >= $1 AND ts < $2 AND quality IN ('good', 'suspect')
                  GROUP BY 1, 2"
            ),
            &[&from, &to],
        )
        .await?;
    for (level, below, width) in [("1h", "1m", "1 hour"), ("1d", "1h", "1 day")] {
        client
            .execute(
                &format!(
                    "INSERT INTO water_level_{level}{target} ({COLUMNS})
                     SELECT sensor_id, date_bin('{width}', bucket, {ORIGIN}), sum(n), sum(n_suspect), min(first_ts), max(last_ts),
                            sum(level_m_sum), sum(level_m_n), min(level_m_min), max(level_m_max),
                            (array_agg(level_m_last ORDER BY last_ts DESC))[1]
                       FROM water_level_{below}{target} WHERE bucket >= $1 AND bucket < $2
                      GROUP BY 1, 2"
                ),
                &[&from, &to],
            )
            .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_are_cut_at_utc_midnight() {
        let t = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
        let chunks = utc_days(t("2026-11-28T10:30:00Z"), t("2026-11-30T09:00:00Z"));
        assert_eq!(
            chunks,
            vec![
                (t("2026-11-28T10:30:00Z"), t("2026-11-29T00:00:00Z")),
                (t("2026-11-29T00:00:00Z"), t("2026-11-30T00:00:00Z")),
                (t("2026-11-30T00:00:00Z"), t("2026-11-30T09:00:00Z")),
            ]
        );
    }
}
