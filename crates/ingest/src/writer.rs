//! Writes batches, up to `writers` at once, retrying transient failures with
//! backoff until they commit; only then are the batch's messages acknowledged.
//! A batch the database refuses for its data is split until the refused rows
//! are found; those are kept in `rejected_messages` (`store_rejected`) so one
//! bad row cannot stall the stream.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use citygauge_domain::RejectReason;
use citygauge_store::{Batch, RejectedMessage, Store, StoreError, WriteReport};
use tokio::sync::{mpsc, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{error, warn};

use crate::acks::AckToken;
use crate::http::Health;
use crate::metrics::Metrics;
use crate::pipeline::Work;

/// Sensors heard since the last `last_seen` update, with when we heard them.
/// "Seen" is the platform's clock, not the sensor's: a sensor with a wrong
/// clock, or one uploading a buffer of old readings, has still been heard now.
#[derive(Debug, Default)]
pub(crate) struct SeenSensors(Mutex<HashMap<String, DateTime<Utc>>>);

impl SeenSensors {
    fn record(&self, batch: &Batch, heard: DateTime<Utc>) {
        let mut seen = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let ids = batch.readings.iter().map(|r| &r.sensor_id).chain(batch.counters.iter().map(|c| &c.sensor_id));
        for id in ids {
            match seen.get_mut(id.as_str()) {
                Some(at) => *at = heard,
                None => {
                    seen.insert(id.clone(), heard);
                }
            }
        }
    }

    pub fn take(&self) -> Vec<(String, DateTime<Utc>)> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|p| p.into_inner())).into_iter().collect()
    }
}

pub(crate) struct Writer {
    pub store: Arc<Store>,
    pub metrics: Metrics,
    pub health: Arc<Health>,
    pub seen: Arc<SeenSensors>,
    /// Fires when shutdown begins: from then on a failing batch is retried
    /// only for `shutdown_timeout`.
    pub shutdown: CancellationToken,
    pub shutdown_timeout: Duration,
}

pub(crate) async fn run_writers(
    writer: Arc<Writer>,
    mut batches: mpsc::Receiver<Work>,
    committed: mpsc::Sender<Vec<AckToken>>,
    concurrency: usize,
) {
    let slots = Arc::new(Semaphore::new(concurrency));
    let tasks = TaskTracker::new();
    while let Some(work) = batches.recv().await {
        let Ok(slot) = slots.clone().acquire_owned().await else { break };
        let (writer, committed) = (writer.clone(), committed.clone());
        tasks.spawn(async move {
            if let Some(acks) = writer.write(work).await {
                let _ = committed.send(acks).await;
            }
            drop(slot);
        });
    }
    tasks.close();
    tasks.wait().await;
}

impl Writer {
    /// Writes until committed; returns the acks to release, or `None` when
    /// shutdown gave up on the batch (its messages stay unacknowledged and
    /// the broker redelivers them).
    async fn write(&self, work: Work) -> Option<Vec<AckToken>> {
        let mut backoff = Duration::from_millis(50);
        let mut shutdown_deadline: Option<Instant> = None;
        let started = Instant::now();
        let report = loop {
            match write_isolating(&self.store, &work.batch, &self.metrics).await {
                Ok(report) => break report,
                Err(error) => {
                    self.metrics.database_errors.with_label_values(&["transient"]).inc();
                    self.health.set_database_ok(false);
                    warn!(%error, rows = work.rows, retry_in_ms = backoff.as_millis() as u64, "writer: batch not stored, retrying");
                    if self.shutdown.is_cancelled() {
                        let deadline = *shutdown_deadline.get_or_insert_with(|| Instant::now() + self.shutdown_timeout);
                        if Instant::now() >= deadline {
                            error!(
                                rows = work.rows,
                                messages = work.received.len(),
                                "writer: giving up at shutdown; the broker will redeliver these messages"
                            );
                            return None;
                        }
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        };
        self.health.set_database_ok(true);
        self.observe(&work, &report, started);
        self.seen.record(&work.batch, Utc::now());
        Some(work.acks)
    }

    fn observe(&self, work: &Work, report: &WriteReport, started: Instant) {
        let m = &self.metrics;
        let now = Instant::now();
        m.commit_duration.observe(now.duration_since(started).as_secs_f64());
        m.batch_rows.observe(work.rows as f64);
        for received in &work.received {
            m.receive_to_commit.observe(now.duration_since(*received).as_secs_f64());
        }
        let wall = Utc::now();
        for r in &work.batch.readings {
            m.sensor_to_commit.observe((wall - r.ts).num_milliseconds().max(0) as f64 / 1000.0);
        }
        for kind in citygauge_domain::Kind::ALL {
            let stored = report.stored_by_kind[kind as usize];
            if stored > 0 {
                m.readings_stored.with_label_values(&[kind.as_str()]).inc_by(stored);
            }
        }
        m.duplicate_readings.inc_by(report.duplicates);
        m.sensors_registered.inc_by(report.new_sensors);
    }
}

type WriteFuture<'a> = Pin<Box<dyn Future<Output = Result<WriteReport, StoreError>> + Send + 'a>>;

/// Writes a batch; on a data error, splits it to find and set aside the
/// rows the database refuses. Transient errors are returned for a retry.
fn write_isolating<'a>(store: &'a Store, batch: &'a Batch, metrics: &'a Metrics) -> WriteFuture<'a> {
    Box::pin(async move {
        match store.write(batch).await {
            Err(error) if !error.is_transient() => {
                metrics.database_errors.with_label_values(&["data"]).inc();
                if items(batch) <= 1 {
                    warn!(%error, "writer: the database refuses a row; keeping it in rejected_messages");
                    let replacement = Batch {
                        rejected: vec![as_rejected(batch, &error)],
                        new_sensors: batch.new_sensors.clone(),
                        ..Batch::default()
                    };
                    metrics.rejected_messages.with_label_values(&[RejectReason::StoreRejected.as_str()]).inc();
                    return store.write(&replacement).await;
                }
                let (first, second) = split(batch);
                let mut report = write_isolating(store, &first, metrics).await?;
                report.add(&write_isolating(store, &second, metrics).await?);
                Ok(report)
            }
            result => result,
        }
    })
}

fn items(batch: &Batch) -> usize {
    batch.readings.len() + batch.counters.len() + batch.rejected.len()
}

fn split(batch: &Batch) -> (Batch, Batch) {
    fn halves<T: Clone>(items: &[T]) -> (Vec<T>, Vec<T>) {
        let mid = items.len() / 2;
        (items[..mid].to_vec(), items[mid..].to_vec())
    }
    let (r1, r2) = halves(&batch.readings);
    let (c1, c2) = halves(&batch.counters);
    let (j1, j2) = halves(&batch.rejected);
    // When only one list has items, `halves` leaves one side empty; move the
    // odd item across so both halves are smaller than the whole.
    let first = Batch { readings: r1, counters: c1, rejected: j1, new_sensors: batch.new_sensors.clone() };
    let second = Batch { readings: r2, counters: c2, rejected: j2, new_sensors: Vec::new() };
    if items(&first) == 0 {
        return split_single_list(second, batch.new_sensors.clone());
    }
    (first, second)
}

fn split_single_list(mut batch: Batch, new_sensors: Vec<citygauge_domain::NewSensor>) -> (Batch, Batch) {
    let mut first = Batch { new_sensors, ..Batch::default() };
    if let Some(r) = batch.readings.pop() {
        first.readings.push(r);
    } else if let Some(c) = batch.counters.pop() {
        first.counters.push(c);
    } else if let Some(j) = batch.rejected.pop() {
        first.rejected.push(j);
    }
    (first, batch)
}

/// The one item of a refused batch, as a rejected message with its values.
fn as_rejected(batch: &Batch, error: &StoreError) -> RejectedMessage {
    let (topic, payload) = if let Some(r) = batch.readings.first() {
        (format!("citygauge/store/{}/{}", r.kind(), r.sensor_id), format!("{r:?}"))
    } else if let Some(c) = batch.counters.first() {
        (format!("citygauge/store/rain-counter/{}", c.sensor_id), format!("{c:?}"))
    } else if let Some(j) = batch.rejected.first() {
        (j.topic.clone(), String::from_utf8_lossy(&j.payload).into_owned())
    } else {
        ("citygauge/store".into(), String::new())
    };
    let payload = Bytes::from(payload.replace('\0', ""));
    RejectedMessage {
        received_at: Utc::now(),
        topic: topic.replace('\0', ""),
        payload_bytes: payload.len(),
        payload,
        reason: RejectReason::StoreRejected,
        detail: format!("the database refused this row: {error}"),
    }
}
