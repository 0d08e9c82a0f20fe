//! One batch, one transaction: register new sensors, turn rain counters into
//! interval rows against the stored counter state, binary-COPY every kind's
//! rows and the rejected messages, add the rows inserted to the rollups
//! (native backend, [`crate::rollups`]) and announce them ([`crate::changes`]),
//! commit. The caller acknowledges the batch's MQTT messages only after this
//! returns `Ok`.
//!
//! Exactly once per (sensor_id, ts): duplicates inside the batch are dropped in
//! memory; duplicates of stored rows (a message redelivered after a crash) make
//! the direct COPY fail with a unique violation, and the batch is then written
//! again through a staging table with `ON CONFLICT DO NOTHING`. Redeliveries
//! are rare, so the common case runs at plain COPY speed.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::pin::pin;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use citygauge_domain::{CounterReading, FastHashSet, Kind, NewSensor, Reading, RejectReason};
use deadpool_postgres::ClientWrapper;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::Type;
use tokio_postgres::Transaction;

use crate::{changes, rollups, StoreError};

mod copy;
mod counters;
use counters::resolve_counters;

/// Everything a group of MQTT messages became, to be stored atomically.
#[derive(Debug, Default)]
pub struct Batch {
    pub readings: Vec<Reading>,
    pub counters: Vec<CounterReading>,
    pub new_sensors: Vec<NewSensor>,
    pub rejected: Vec<RejectedMessage>,
}

impl Batch {
    pub fn is_empty(&self) -> bool {
        self.readings.is_empty() && self.counters.is_empty() && self.new_sensors.is_empty() && self.rejected.is_empty()
    }
}

/// A message, or part of one, kept for inspection with the reason it failed.
#[derive(Debug, Clone, PartialEq)]
pub struct RejectedMessage {
    pub received_at: DateTime<Utc>,
    pub topic: String,
    /// The payload as sent, already cut to the configured bound.
    pub payload: Bytes,
    /// The payload's full size.
    pub payload_bytes: usize,
    pub reason: RejectReason,
    pub detail: String,
}

/// What a committed batch stored.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriteReport {
    /// Rows inserted into each time-series table, indexed by `Kind as usize`.
    pub stored_by_kind: [u64; 5],
    /// Readings not inserted because their (sensor_id, ts) was already there.
    pub duplicates: u64,
    /// Rows inserted into `rejected_messages`.
    pub rejected: u64,
    /// Sensors registered as `pending`.
    pub new_sensors: u64,
    /// Rejections made here, in the transaction (`counter_out_of_order`), by
    /// reason, indexed like [`RejectReason::ALL`]; also in `rejected`.
    pub rejected_in_store: [u64; RejectReason::ALL.len()],
}

impl WriteReport {
    /// Rows inserted into the time-series tables.
    pub fn stored(&self) -> u64 {
        self.stored_by_kind.iter().sum()
    }

    /// Adds another report's counts to this one.
    pub fn add(&mut self, other: &WriteReport) {
        for (mine, theirs) in self.stored_by_kind.iter_mut().zip(other.stored_by_kind) {
            *mine += theirs;
        }
        self.duplicates += other.duplicates;
        self.rejected += other.rejected;
        self.new_sensors += other.new_sensors;
        for (mine, theirs) in self.rejected_in_store.iter_mut().zip(other.rejected_in_store) {
            *mine += theirs;
        }
    }

    /// The rejections made in the store, by reason (reasons with none left out).
    pub fn rejections_in_store(&self) -> impl Iterator<Item = (RejectReason, u64)> + '_ {
        RejectReason::ALL.into_iter().zip(self.rejected_in_store).filter(|(_, n)| *n > 0)
    }

    fn count_rejection_in_store(&mut self, reason: RejectReason) {
        if let Some(i) = RejectReason::ALL.iter().position(|r| *r == reason) {
            self.rejected_in_store[i] += 1;
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Direct,
    SkipDuplicates,
}

/// Writes `batch` in one transaction. `timescaledb`: the tables are
/// hypertables, whose compressed chunks need room to decompress.
pub async fn write(client: &mut ClientWrapper, batch: &Batch, timescaledb: bool) -> Result<WriteReport, StoreError> {
    match write_once(client, batch, Mode::Direct, timescaledb).await {
        Err(e) if e.is_unique_violation() => write_once(client, batch, Mode::SkipDuplicates, timescaledb).await,
        result => result,
    }
}

async fn write_once(
    client: &mut ClientWrapper,
    batch: &Batch,
    mode: Mode,
    timescaledb: bool,
) -> Result<WriteReport, StoreError> {
    // TimescaleDB keeps its continuous aggregates itself.
    let maintain_rollups = !timescaledb;
    let mut report = WriteReport::default();
    let tx = client.transaction().await?;
    if timescaledb {
        // Late readings land in compressed chunks, which are decompressed to
        // take them; TimescaleDB's default cap (100,000 tuples) would fail
        // such a batch again on every retry.
        tx.batch_execute("SET LOCAL timescaledb.max_tuples_decompressed_per_dml_transaction = 0").await?;
    }
    if !batch.new_sensors.is_empty() {
        report.new_sensors = register_pending(&tx, &batch.new_sensors).await?;
    }
    let counters = resolve_counters(&tx, &batch.counters).await?;
    report.duplicates += counters.duplicates;
    for m in &counters.rejected {
        report.count_rejection_in_store(m.reason);
    }

    let mut seen: FastHashSet<(Kind, &str, DateTime<Utc>)> =
        FastHashSet::with_capacity_and_hasher(batch.readings.len(), Default::default());
    let mut by_kind: HashMap<Kind, Vec<&Reading>> = HashMap::new();
    for reading in batch.readings.iter().chain(&counters.readings) {
        if seen.insert((reading.kind(), &reading.sensor_id, reading.ts)) {
            by_kind.entry(reading.kind()).or_default().push(reading);
        } else {
            report.duplicates += 1;
        }
    }
    // What was actually inserted, in kind order: the rollups and the change
    // stream must count a redelivered row once, as the tables do.
    let mut inserted: Vec<&Reading> = Vec::with_capacity(batch.readings.len() + counters.readings.len());
    for kind in Kind::ALL {
        let Some(rows) = by_kind.get(&kind) else { continue };
        let before = inserted.len();
        match mode {
            Mode::Direct => {
                copy_readings(&tx, kind.as_str(), kind, rows).await?;
                inserted.extend(rows);
            }
            Mode::SkipDuplicates => insert_skipping_duplicates(&tx, kind, rows, &mut inserted).await?,
        }
        let stored = (inserted.len() - before) as u64;
        report.stored_by_kind[kind as usize] += stored;
        report.duplicates += rows.len() as u64 - stored;
    }
    let rejected: Vec<&RejectedMessage> = batch.rejected.iter().chain(&counters.rejected).collect();
    report.rejected = copy_rejected(&tx, &rejected).await?;
    if maintain_rollups {
        rollups::note_late(&tx, &inserted).await?;
    }
    notify_readings(&tx, &inserted).await?;
    tx.commit().await?;
    Ok(report)
}

fn copy_statement(table: &str, kind: Kind) -> String {
    let columns: Vec<&str> = kind.columns().iter().map(|f| f.name()).collect();
    format!("COPY {table} (sensor_id, ts, {}, quality, quality_reasons) FROM STDIN BINARY", columns.join(", "))
}

/// Binary COPY of one kind's rows into `table`; returns the row count.
async fn copy_readings(tx: &Transaction<'_>, table: &str, kind: Kind, rows: &[&Reading]) -> Result<u64, StoreError> {
    copy::copy_readings(tx, &copy_statement(table, kind), rows).await
}

/// Announces the inserted rows on [`changes::READINGS_CHANNEL`]; delivered
/// to listeners only if this transaction commits.
async fn notify_readings(tx: &deadpool_postgres::Transaction<'_>, inserted: &[&Reading]) -> Result<(), StoreError> {
    if inserted.is_empty() {
        return Ok(());
    }
    let payloads = changes::encode(inserted);
    let statement = tx
        .prepare_cached(
            "SELECT pg_notify($1, payload) FROM unnest($2::text[]) WITH ORDINALITY AS p(payload, i) ORDER BY i",
        )
        .await?;
    tx.execute(&statement, &[&changes::READINGS_CHANNEL, &payloads]).await?;
    Ok(())
}

/// COPY into a per-connection staging table, then insert what is new and
/// add those rows to `inserted`.
async fn insert_skipping_duplicates<'r>(
    tx: &Transaction<'_>,
    kind: Kind,
    rows: &[&'r Reading],
    inserted: &mut Vec<&'r Reading>,
) -> Result<(), StoreError> {
    let table = kind.as_str();
    let stage = format!("stage_{table}");
    tx.batch_execute(&format!(
        "CREATE TEMP TABLE IF NOT EXISTS {stage} (LIKE {table} INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
    ))
    .await?;
    copy_readings(tx, &stage, kind, rows).await?;
    let new_rows = tx
        .query(
            &format!(
                "INSERT INTO {table} SELECT * FROM {stage} ON CONFLICT (sensor_id, ts) DO NOTHING RETURNING sensor_id, ts"
            ),
            &[],
        )
        .await?;
    // ON COMMIT DELETE ROWS only empties the stage at commit; a second use in
    // this transaction must not see these rows again.
    tx.batch_execute(&format!("TRUNCATE {stage}")).await?;
    let new_keys: HashSet<(String, DateTime<Utc>)> = new_rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    // Rows are unique per (sensor_id, ts) here (deduplicated in memory).
    inserted.extend(rows.iter().filter(|r| new_keys.contains(&(r.sensor_id.clone(), r.ts))));
    Ok(())
}

async fn copy_rejected(tx: &Transaction<'_>, rejected: &[&RejectedMessage]) -> Result<u64, StoreError> {
    if rejected.is_empty() {
        return Ok(0);
    }
    let sink = tx
        .copy_in(
            "COPY rejected_messages (received_at, topic, payload, payload_bytes, reason, detail) FROM STDIN BINARY",
        )
        .await?;
    let types = [Type::TIMESTAMPTZ, Type::TEXT, Type::BYTEA, Type::INT4, Type::TEXT, Type::TEXT];
    let mut writer = pin!(BinaryCopyInWriter::new(sink, &types));
    for m in rejected {
        let payload_bytes = i32::try_from(m.payload_bytes).unwrap_or(i32::MAX);
        let (topic, detail) = (without_nul(&m.topic), without_nul(&m.detail));
        writer
            .as_mut()
            .write(&[&m.received_at, &topic, &m.payload.as_ref(), &payload_bytes, &m.reason.as_str(), &detail])
            .await?;
    }
    Ok(writer.finish().await?)
}

/// PostgreSQL text cannot hold NUL; a sensor's stray NUL must not poison a batch.
fn without_nul(s: &str) -> Cow<'_, str> {
    if s.contains('\0') {
        Cow::Owned(s.replace('\0', "\u{FFFD}"))
    } else {
        Cow::Borrowed(s)
    }
}

async fn register_pending(tx: &Transaction<'_>, sensors: &[NewSensor]) -> Result<u64, StoreError> {
    let ids: Vec<&str> = sensors.iter().map(|s| s.id.as_str()).collect();
    let kinds: Vec<&str> = sensors.iter().map(|s| s.kind.as_str()).collect();
    let euis: Vec<Option<&str>> = sensors.iter().map(|s| s.dev_eui.as_deref()).collect();
    let profiles: Vec<Option<&str>> = sensors.iter().map(|s| s.device_profile.as_deref()).collect();
    let registered: Vec<String> = tx
        .query(
            "INSERT INTO sensors (id, kind, status, dev_eui, device_profile, first_seen)
             SELECT id, kind, 'pending', eui, profile, now()
               FROM unnest($1::text[], $2::text[], $3::text[], $4::text[]) AS t(id, kind, eui, profile)
              ORDER BY id
             ON CONFLICT DO NOTHING
             RETURNING id",
            &[&ids, &kinds, &euis, &profiles],
        )
        .await?
        .iter()
        .map(|row| row.get(0))
        .collect();
    if !registered.is_empty() {
        notify_sensors(tx, &registered).await?;
    }
    Ok(registered.len() as u64)
}

/// Announces registry changes on [`changes::SENSORS_CHANNEL`].
pub(crate) async fn notify_sensors<S: AsRef<str>>(tx: &Transaction<'_>, ids: &[S]) -> Result<(), StoreError> {
    tx.execute("SELECT pg_notify($1, $2)", &[&changes::SENSORS_CHANNEL, &changes::encode_sensor_ids(ids)]).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use citygauge_domain::Values;

    use super::*;

    #[test]
    fn copy_columns_follow_the_kind() {
        assert_eq!(
            copy_statement("rainfall", Kind::Rainfall),
            "COPY rainfall (sensor_id, ts, rain_mm, interval_s, quality, quality_reasons) FROM STDIN BINARY"
        );
        // Each kind's row carries as many fields as its statement names.
        let samples = [
            Values::Rainfall { rain_mm: 1.0, interval_s: None },
            Values::WaterLevel { level_m: 1.0 },
            Values::FloodDepth { depth_cm: 1.0 },
            Values::AirQuality(Default::default()),
            Values::Streetlight(Default::default()),
        ];
        for values in samples {
            let kind = values.kind();
            let reading = Reading { sensor_id: "s".into(), ts: Utc::now(), values, quality: Default::default() };
            let mut buf = bytes::BytesMut::new();
            copy::encode_row(&mut buf, &reading).unwrap();
            let named = copy_statement("t", kind).matches(',').count() + 1;
            assert_eq!(usize::from(u16::from_be_bytes([buf[0], buf[1]])), named, "{kind}");
        }
    }
}
