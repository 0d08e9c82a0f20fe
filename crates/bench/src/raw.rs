//! The physical limit: binary COPY of the rows the daemon stores, straight
//! into the same table, in transactions of the daemon's default batch size,
//! on as many connections as the daemon has writers.

use std::pin::pin;
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::{DateTime, Utc};
use citygauge_bench::cpu::{CpuUse, Meter, Source};
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::{ToSql, Type};

use crate::setup::{connect, Bench};

const BATCH_ROWS: usize = 10_000;
const CONNECTIONS: usize = 2;

/// The time COPY took, and the CPU PostgreSQL and this process (the COPY
/// client) used meanwhile.
pub async fn copy_limit(bench: &Bench, sensors: u64, rows: u64) -> anyhow::Result<(Duration, CpuUse)> {
    let url = bench.database("raw").await?;
    let start = Utc::now() - chrono::Duration::hours(2);
    // Built before the clock starts: only COPY is timed.
    let all: Vec<(String, DateTime<Utc>, f64)> = (0..rows)
        .map(|i| {
            let sensor = format!("ld-wl-{:06}", i % sensors);
            let ts = start + chrono::Duration::seconds((i / sensors) as i64);
            (sensor, ts, 1.0 + (i % 100) as f64 / 100.0)
        })
        .collect();
    let chunks: Vec<Vec<(String, DateTime<Utc>, f64)>> =
        all.chunks(all.len().div_ceil(CONNECTIONS)).map(|c| c.to_vec()).collect();
    let meter = Meter::start(&[
        ("postgres", Source::Tree(bench.postgres.pid().context("PostgreSQL is not running")?)),
        ("client", Source::this_process()),
    ])?;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for chunk in chunks {
        let url = url.clone();
        tasks.push(tokio::spawn(async move {
            let mut client = connect(&url).await?;
            for batch in chunk.chunks(BATCH_ROWS) {
                let tx = client.transaction().await?;
                let sink = tx
                    .copy_in("COPY water_level (sensor_id, ts, level_m, quality, quality_reasons) FROM STDIN BINARY")
                    .await?;
                let types = [Type::TEXT, Type::TIMESTAMPTZ, Type::FLOAT8, Type::TEXT, Type::TEXT_ARRAY];
                let mut writer = pin!(BinaryCopyInWriter::new(sink, &types));
                let no_reasons: Option<Vec<String>> = None;
                for (sensor, ts, level) in batch {
                    let row: [&(dyn ToSql + Sync); 5] = [sensor, ts, level, &"good", &no_reasons];
                    writer.as_mut().write(&row).await?;
                }
                writer.finish().await?;
                tx.commit().await?;
            }
            anyhow::Ok(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    let elapsed = started.elapsed();
    Ok((elapsed, meter.stop()?))
}
