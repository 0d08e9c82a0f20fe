//! Decode, normalise, batch: one task, so per-sensor state (spike test,
//! pending sensors) sees each sensor's messages in order. A batch is handed to
//! the writers when it holds `batch_max_rows` rows or its first message is
//! `flush_interval` old, whichever comes first.

use std::sync::Arc;
use std::time::{Duration, Instant};

use citygauge_domain::normalise::Rejection;
use citygauge_domain::{Decoded, Message, Normaliser, Registry, RejectReason};
use citygauge_store::{Batch, RejectedMessage};
use tokio::sync::{mpsc, watch};
use tracing::debug;

use crate::acks::AckToken;
use crate::budget::HeldBytes;
use crate::metrics::Metrics;
use crate::mqtt::Inbound;

/// A batch and the messages it acknowledges once committed.
#[derive(Debug, Default)]
pub(crate) struct Work {
    pub batch: Batch,
    pub acks: Vec<AckToken>,
    /// When each message was received, for the receive-to-commit latency.
    pub received: Vec<Instant>,
    pub rows: usize,
    /// The byte budget its messages took: given back when the batch is
    /// dropped, i.e. once committed (or given up).
    pub held_bytes: HeldBytes,
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct BatchLimits {
    pub max_rows: usize,
    pub flush_interval: Duration,
    pub rejected_payload_max_bytes: usize,
}

pub(crate) async fn run_pipeline(
    mut inbound: mpsc::Receiver<Inbound>,
    mut normaliser: Normaliser,
    mut registry_updates: watch::Receiver<Arc<Registry>>,
    batches: mpsc::Sender<Work>,
    limits: BatchLimits,
    metrics: Metrics,
) {
    let mut registry = registry_updates.borrow_and_update().clone();
    let mut work = Work::default();
    let mut deadline: Option<tokio::time::Instant> = None;
    loop {
        let message = tokio::select! {
            message = inbound.recv() => message,
            _ = sleep_until(deadline) => {
                flush(&mut work, &batches).await;
                deadline = None;
                continue;
            }
        };
        let Some(message) = message else { break };
        if registry_updates.has_changed().unwrap_or(false) {
            registry = registry_updates.borrow_and_update().clone();
            normaliser.registry_refreshed(&registry);
            debug!(sensors = registry.len(), "pipeline: registry refreshed");
        }
        add(&mut work, message, &mut normaliser, &registry, &limits, &metrics);
        let due = deadline.get_or_insert_with(|| tokio::time::Instant::now() + limits.flush_interval);
        // Checked here too: under steady load `recv` is always ready and the
        // timer branch alone would never fire.
        if work.rows >= limits.max_rows || tokio::time::Instant::now() >= *due {
            flush(&mut work, &batches).await;
            deadline = None;
        }
    }
    flush(&mut work, &batches).await;
}

/// Sleeps until `deadline`, or forever without one (a disabled `select!` timer).
pub(crate) async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

async fn flush(work: &mut Work, batches: &mpsc::Sender<Work>) {
    if work.received.is_empty() {
        return;
    }
    // A bounded send: when the writers fall behind, this waits, the inbound
    // queue fills, and the MQTT loop stops reading.
    let _ = batches.send(std::mem::take(work)).await;
}

fn add(
    work: &mut Work,
    message: Inbound,
    normaliser: &mut Normaliser,
    registry: &Registry,
    limits: &BatchLimits,
    metrics: &Metrics,
) {
    let msg = Message {
        topic: &message.topic,
        payload: &message.payload,
        received_at: message.received_at,
        content_type: message.content_type.as_deref(),
    };
    // A decoder bug must cost one message, never the stream: the message is
    // kept as rejected and acknowledged like any other.
    let decoded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| normaliser.normalise(&msg, registry)))
        .unwrap_or_else(|_| {
            tracing::error!(topic = %message.topic, "pipeline: the decoder failed on this message; kept as decoder_fault");
            Decoded {
                rejection: Some(Rejection {
                    reason: RejectReason::DecoderFault,
                    detail: "the decoder failed on this message (a citygauge bug: please report it with this payload)".into(),
                }),
                ..Decoded::default()
            }
        });
    work.rows += decoded.readings.len() + decoded.counters.len();
    work.batch.readings.extend(decoded.readings);
    work.batch.counters.extend(decoded.counters);
    work.batch.new_sensors.extend(decoded.new_sensors);
    if let Some(rejection) = decoded.rejection {
        metrics.rejected_messages.with_label_values(&[rejection.reason.as_str()]).inc();
        let kept = message.payload.len().min(limits.rejected_payload_max_bytes);
        // A copy when cut, so a huge payload's buffer is not held until commit.
        let payload = if kept < message.payload.len() {
            bytes::Bytes::copy_from_slice(&message.payload[..kept])
        } else {
            message.payload.clone()
        };
        work.batch.rejected.push(RejectedMessage {
            received_at: message.received_at,
            topic: message.topic,
            payload,
            payload_bytes: message.payload.len(),
            reason: rejection.reason,
            detail: rejection.detail,
        });
        work.rows += 1;
    }
    work.acks.extend(message.ack);
    work.received.push(message.received);
    // Released with the batch, not now: the decoded rows (and a rejected
    // payload) are held until the commit, and the message until its ack.
    work.held_bytes.absorb(message.held_bytes);
}
