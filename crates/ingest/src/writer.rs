//! Writes batches, up to `writers` at once. What happens on a failure is
//! decided by the error's class ([`StoreError::class`]):
//! - transient: retried with backoff until it commits; only then are the
//!   batch's messages acknowledged;
//! - data: the batch is split until the refused items are found (readings,
//!   counter values, kept rejections and sensor registrations alike); those
//!   are kept in `rejected_messages` (`store_rejected`), so one bad row can
//!   neither stall the stream nor be retried for ever;
//! - fatal: the daemon stops, naming the cause.
//!
//! From the stop signal on, a batch is tried only until the shutdown
//! deadline; one not committed by then stays unacknowledged, for the broker
//! to redeliver.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use citygauge_domain::{FastHashMap, RejectReason};
use citygauge_store::{Batch, ErrorClass, RejectedMessage, Store, StoreError, WriteReport};
use tokio::sync::{mpsc, watch, Semaphore};
use tokio_util::task::TaskTracker;
use tracing::{error, warn};

use crate::acks::AckToken;
use crate::http::Health;
use crate::metrics::Metrics;
use crate::pipeline::Work;
use crate::sampler::RejectSampler;
use crate::supervise::{Shutdown, Supervisor};
use crate::IngestError;

/// Sensors heard since the last `last_seen` update, with when we heard them.
/// "Seen" is the platform's clock, not the sensor's: a sensor with a wrong
/// clock, or one uploading a buffer of old readings, has still been heard now.
#[derive(Debug, Default)]
pub(crate) struct SeenSensors(Mutex<FastHashMap<String, DateTime<Utc>>>);

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
    pub shutdown: Arc<Shutdown>,
    /// Told of a fatal error: the daemon stops.
    pub supervisor: Arc<Supervisor>,
    /// Which rejected messages are kept in `rejected_messages`.
    pub sampler: Mutex<RejectSampler>,
}

pub(crate) async fn run_writers(
    writer: Arc<Writer>,
    mut batches: mpsc::Receiver<Work>,
    committed: mpsc::Sender<Vec<AckToken>>,
    concurrency: usize,
) -> Result<(), IngestError> {
    let slots = Arc::new(Semaphore::new(concurrency));
    let tasks = TaskTracker::new();
    let mut order = CounterOrder::default();
    while let Some(work) = batches.recv().await {
        let Ok(slot) = slots.clone().acquire_owned().await else { break };
        let (writer, committed) = (writer.clone(), committed.clone());
        let turn = order.enter(&work.batch);
        tasks.spawn(async move {
            if let Some(acks) = writer.write(work, turn).await {
                let _ = committed.send(acks).await;
            }
            drop(slot);
        });
    }
    tasks.close();
    tasks.wait().await;
    Ok(())
}

impl Writer {
    /// Writes until committed; returns the acks to release, or `None` when
    /// the batch was given up (shutdown deadline, fatal error): its messages
    /// stay unacknowledged and the broker redelivers them.
    async fn write(&self, mut work: Work, mut turn: Option<Turn>) -> Option<Vec<AckToken>> {
        // Until stored or given up, this batch counts against readiness.
        let _writing = self.health.writing();
        self.sample_rejected(&mut work);
        if let Some(turn) = &mut turn {
            tokio::select! {
                _ = turn.wait() => {}
                _ = self.shutdown.expired() => return self.give_up(&work),
            }
        }
        let mut backoff = Duration::from_millis(50);
        let started = Instant::now();
        let report = loop {
            let result = tokio::select! {
                result = write_isolating(&self.store, &work.batch, &self.metrics) => result,
                _ = self.shutdown.expired() => return self.give_up(&work),
            };
            match result {
                Ok(report) => break report,
                Err(error) => {
                    let class = error.class();
                    self.metrics.database_error(class);
                    if class == ErrorClass::Fatal {
                        self.supervisor.fail("writer", IngestError::database(error).to_string());
                        return None;
                    }
                    warn!(%error, class = class.as_str(), rows = work.rows, retry_in_ms = backoff.as_millis() as u64, "writer: batch not stored, retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = self.shutdown.expired() => return self.give_up(&work),
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        };
        self.observe(&work, &report, started);
        self.seen.record(&work.batch, Utc::now());
        Some(work.acks)
    }

    /// Drops the rejected messages the sampler does not keep, counting them.
    /// Their MQTT messages stay in the batch's acks: a rejection sampled out
    /// is handled, and must not be redelivered. Done once per batch, before
    /// the first try, so retries do not sample twice.
    fn sample_rejected(&self, work: &mut Work) {
        if work.batch.rejected.is_empty() {
            return;
        }
        let now = std::time::Instant::now();
        let mut sampler = self.sampler.lock().unwrap_or_else(|p| p.into_inner());
        work.batch.rejected.retain(|m| {
            let keep = sampler.keep(&m.topic, m.reason, now);
            if !keep {
                self.metrics.rejected_unsampled.with_label_values(&[m.reason.as_str()]).inc();
            }
            keep
        });
    }

    fn give_up(&self, work: &Work) -> Option<Vec<AckToken>> {
        error!(
            rows = work.rows,
            messages = work.received.len(),
            "writer: not stored by the shutdown deadline; the broker will redeliver these messages"
        );
        None
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
        // Rejections made in the transaction (the pipeline counts its own).
        for (reason, n) in report.rejections_in_store() {
            m.rejected_messages.with_label_values(&[reason.as_str()]).inc_by(n);
        }
        m.sensors_registered.inc_by(report.new_sensors);
    }
}

/// Per gauge, the newest batch in flight holding its counter values: its
/// number and a receiver that closes when it ends.
type InFlight = HashMap<String, (u64, watch::Receiver<()>)>;

/// Keeps each rain counter gauge's values in pipeline order across the
/// concurrent writers: a batch holding a gauge's counter values is written
/// only once the earlier batches holding that gauge's values have ended.
/// The store derives intervals from the gauge's last stored value, so a
/// later value committed first would turn the earlier one into
/// `counter_out_of_order`. Batches without counters never wait; memory is
/// the gauges of the batches in flight.
#[derive(Debug, Default)]
struct CounterOrder {
    last: Arc<Mutex<InFlight>>,
    next: u64,
}

impl CounterOrder {
    /// Called in pipeline order; `None` for a batch without counter values.
    fn enter(&mut self, batch: &Batch) -> Option<Turn> {
        if batch.counters.is_empty() {
            return None;
        }
        self.next += 1;
        let (done, ended) = watch::channel(());
        let mut gauges: Vec<String> = batch.counters.iter().map(|c| c.sensor_id.clone()).collect();
        gauges.sort_unstable();
        gauges.dedup();
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        let waits = gauges
            .iter()
            .filter_map(|gauge| last.insert(gauge.clone(), (self.next, ended.clone())).map(|(_, earlier)| earlier))
            .collect();
        Some(Turn { waits, _done: done, seq: self.next, gauges, last: self.last.clone() })
    }
}

/// A batch's place in [`CounterOrder`]; ends (and lets the next batches of
/// its gauges go) when dropped, committed or given up alike.
#[derive(Debug)]
struct Turn {
    waits: Vec<watch::Receiver<()>>,
    /// Dropped with the turn: closes the receivers later batches wait on.
    _done: watch::Sender<()>,
    seq: u64,
    gauges: Vec<String>,
    last: Arc<Mutex<InFlight>>,
}

impl Turn {
    /// Until the earlier batches of this batch's gauges have ended.
    async fn wait(&mut self) {
        for earlier in &mut self.waits {
            // Nothing is ever sent: `changed` fails once the sender is dropped.
            while earlier.changed().await.is_ok() {}
        }
        self.waits.clear();
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        for gauge in &self.gauges {
            if last.get(gauge).is_some_and(|(seq, _)| *seq == self.seq) {
                last.remove(gauge);
            }
        }
    }
}

type WriteFuture<'a> = Pin<Box<dyn Future<Output = Result<WriteReport, StoreError>> + Send + 'a>>;

/// Writes a batch; on a data error, splits it to find and set aside the
/// items the database refuses. Returns only transient and fatal errors.
fn write_isolating<'a>(store: &'a Store, batch: &'a Batch, metrics: &'a Metrics) -> WriteFuture<'a> {
    Box::pin(async move {
        match store.write(batch).await {
            Err(error) if error.class() == ErrorClass::Data => {
                metrics.database_error(ErrorClass::Data);
                if items(batch) <= 1 {
                    warn!(%error, "writer: the database refuses an item; keeping it in rejected_messages");
                    metrics.rejected_messages.with_label_values(&[RejectReason::StoreRejected.as_str()]).inc();
                    let replacement = Batch { rejected: vec![as_rejected(batch, &error)], ..Batch::default() };
                    return match store.write(&replacement).await {
                        Err(refused) if refused.class() == ErrorClass::Data => {
                            // Not even as a rejected message: all that is left is
                            // the log. Retrying would stall the stream for ever.
                            metrics.database_error(ErrorClass::Data);
                            error!(%refused, item = ?replacement.rejected[0], "writer: the database refuses this item even in rejected_messages; dropped");
                            Ok(WriteReport::default())
                        }
                        result => result,
                    };
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

/// The items a batch is split into: rows, kept rejections and sensor
/// registrations (a registration the database refuses must be isolated as
/// much as a row, or every half holding it would fail for ever).
fn items(batch: &Batch) -> usize {
    batch.readings.len() + batch.counters.len() + batch.rejected.len() + batch.new_sensors.len()
}

fn split(batch: &Batch) -> (Batch, Batch) {
    fn halves<T: Clone>(items: &[T]) -> (Vec<T>, Vec<T>) {
        let mid = items.len() / 2;
        (items[..mid].to_vec(), items[mid..].to_vec())
    }
    let (r1, r2) = halves(&batch.readings);
    let (c1, c2) = halves(&batch.counters);
    let (j1, j2) = halves(&batch.rejected);
    let (n1, n2) = halves(&batch.new_sensors);
    let first = Batch { readings: r1, counters: c1, rejected: j1, new_sensors: n1 };
    let second = Batch { readings: r2, counters: c2, rejected: j2, new_sensors: n2 };
    // When each list has at most one item, `halves` leaves the first side
    // empty; move one item across so both halves are smaller than the whole.
    if items(&first) == 0 {
        return split_off_one(second);
    }
    (first, second)
}

fn split_off_one(mut batch: Batch) -> (Batch, Batch) {
    let mut first = Batch::default();
    if let Some(r) = batch.readings.pop() {
        first.readings.push(r);
    } else if let Some(c) = batch.counters.pop() {
        first.counters.push(c);
    } else if let Some(j) = batch.rejected.pop() {
        first.rejected.push(j);
    } else if let Some(n) = batch.new_sensors.pop() {
        first.new_sensors.push(n);
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
    } else if let Some(n) = batch.new_sensors.first() {
        (format!("citygauge/store/sensor/{}", n.id), format!("{n:?}"))
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
        detail: if batch.new_sensors.is_empty() {
            format!("the database refused this row: {error}")
        } else {
            format!("the database refused to register this sensor as pending: {error}")
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use citygauge_domain::{Kind, NewSensor, Quality, Reading, Values};
    use proptest::prelude::*;

    fn batch(readings: usize, new_sensors: usize) -> Batch {
        let ts = Utc::now();
        Batch {
            readings: (0..readings)
                .map(|i| Reading {
                    sensor_id: format!("s{i}"),
                    ts,
                    values: Values::WaterLevel { level_m: 1.0 },
                    quality: Quality::default(),
                })
                .collect(),
            new_sensors: (0..new_sensors)
                .map(|i| NewSensor { id: format!("n{i}"), kind: Kind::WaterLevel, dev_eui: None, device_profile: None })
                .collect(),
            ..Batch::default()
        }
    }

    /// Splitting ends in single items, registrations included: the one the
    /// database refuses is found, however the batch is made up.
    fn singles(batch: Batch, out: &mut Vec<Batch>) {
        if items(&batch) <= 1 {
            out.push(batch);
            return;
        }
        let (first, second) = split(&batch);
        assert!(items(&first) < items(&batch) && items(&second) < items(&batch));
        assert_eq!(items(&first) + items(&second), items(&batch));
        singles(first, out);
        singles(second, out);
    }

    #[test]
    fn a_registration_is_isolated_like_a_row() {
        let mut out = Vec::new();
        singles(batch(1, 1), &mut out);
        assert_eq!(out.len(), 2);
        let registration = out.iter().find(|b| !b.new_sensors.is_empty()).expect("alone");
        assert!(registration.readings.is_empty());
        let kept = as_rejected(registration, &StoreError::Config("refused".into()));
        assert_eq!(kept.topic, "citygauge/store/sensor/n0");
        assert!(kept.detail.contains("register"), "{}", kept.detail);
    }

    fn counters(gauges: &[&str]) -> Batch {
        let counters = gauges
            .iter()
            .map(|g| citygauge_domain::CounterReading {
                sensor_id: g.to_string(),
                ts: Utc::now(),
                counter_mm: 1.0,
                quality: Quality::default(),
            })
            .collect();
        Batch { counters, ..Batch::default() }
    }

    #[tokio::test]
    async fn a_gauges_batches_are_written_in_pipeline_order() {
        let mut order = CounterOrder::default();
        assert!(order.enter(&batch(3, 0)).is_none(), "no counters: never waits");
        let first = order.enter(&counters(&["rg-1", "rg-2"])).unwrap();
        let mut second = order.enter(&counters(&["rg-2"])).unwrap();
        let mut third = order.enter(&counters(&["rg-2", "rg-1"])).unwrap();
        let mut other = order.enter(&counters(&["rg-3"])).unwrap();
        let soon = Duration::from_millis(50);
        tokio::time::timeout(soon, other.wait()).await.expect("another gauge does not wait");
        assert!(tokio::time::timeout(soon, second.wait()).await.is_err(), "waits for the first");
        drop(first);
        tokio::time::timeout(soon, second.wait()).await.expect("the first has ended");
        assert!(tokio::time::timeout(soon, third.wait()).await.is_err(), "waits for the second");
        drop(second);
        tokio::time::timeout(soon, third.wait()).await.expect("both earlier batches have ended");
        drop((third, other));
        assert!(order.last.lock().unwrap().is_empty(), "nothing kept once every batch ended");
    }

    proptest! {
        #[test]
        fn splitting_always_reaches_single_items(readings in 0usize..40, new_sensors in 0usize..40) {
            let mut out = Vec::new();
            singles(batch(readings, new_sensors), &mut out);
            prop_assert_eq!(out.len(), (readings + new_sensors).max(1));
            prop_assert_eq!(out.iter().map(|b| b.new_sensors.len()).sum::<usize>(), new_sensors);
        }
    }
}
