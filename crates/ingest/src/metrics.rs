//! Prometheus metrics, `citygauge_ingest_*`. Labels are bounded sets (kind,
//! reject reason, error class); never a sensor id.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use citygauge_domain::{Kind, RejectReason};
use citygauge_store::ErrorClass;
use prometheus::{
    exponential_buckets, Gauge, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
};

#[derive(Debug, Clone)]
pub struct Metrics {
    pub registry: Registry,
    pub messages_received: IntCounter,
    pub readings_stored: IntCounterVec,
    pub duplicate_readings: IntCounter,
    pub rejected_messages: IntCounterVec,
    pub rejected_unsampled: IntCounterVec,
    pub sensors_registered: IntCounter,
    pub pending_sensors: IntGauge,
    pub batch_rows: Histogram,
    pub commit_duration: Histogram,
    pub receive_to_commit: Histogram,
    pub sensor_to_commit: Histogram,
    pub database_errors: IntCounterVec,
    pub broker_reconnects: IntCounter,
    pub broker_auth_refusals: IntCounter,
    /// Sessions of dead or stopped shared-group members this daemon took
    /// over and drained (see `mqtt::orphans`).
    pub orphan_sessions_drained: IntCounter,
    /// QoS 1 messages stored and acknowledged on a taken-over session.
    pub orphan_messages_drained: IntCounter,
    /// Takeovers that ended before their session was drained (its member
    /// came back, or the connection failed: retried while it is away).
    pub orphan_drains_interrupted: IntCounter,
    pub unacked_messages: IntGauge,
    /// Bytes of messages held between receipt and commit (the byte budget).
    pub held_payload_bytes: IntGauge,
    /// Time the MQTT loop did not read because the byte budget was exhausted.
    pub held_payload_paused_seconds: prometheus::Counter,
    /// Age of the oldest message received and not yet acknowledged, computed
    /// when scraped from `oldest_unacked`.
    oldest_unacked_age: Gauge,
    /// When the oldest unacknowledged message was received (the MQTT loop
    /// keeps it), `None` when every message is acknowledged.
    pub oldest_unacked: Arc<Mutex<Option<Instant>>>,
}

fn counter(registry: &Registry, name: &str, help: &str) -> IntCounter {
    let c = IntCounter::new(name, help).expect("valid metric");
    registry.register(Box::new(c.clone())).expect("unique metric");
    c
}

fn counter_vec(registry: &Registry, name: &str, help: &str, label: &str) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), &[label]).expect("valid metric");
    registry.register(Box::new(c.clone())).expect("unique metric");
    c
}

fn histogram(registry: &Registry, name: &str, help: &str, buckets: Vec<f64>) -> Histogram {
    let h = Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets)).expect("valid metric");
    registry.register(Box::new(h.clone())).expect("unique metric");
    h
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let latency = exponential_buckets(0.001, 2.0, 16).expect("valid buckets"); // 1 ms .. 33 s
        let m = Metrics {
            messages_received: counter(
                &registry,
                "citygauge_ingest_messages_received_total",
                "MQTT messages received.",
            ),
            readings_stored: counter_vec(
                &registry,
                "citygauge_ingest_readings_stored_total",
                "Readings committed to the time-series tables.",
                "kind",
            ),
            duplicate_readings: counter(
                &registry,
                "citygauge_ingest_duplicate_readings_total",
                "Readings dropped because their (sensor_id, ts) was already stored.",
            ),
            rejected_messages: counter_vec(
                &registry,
                "citygauge_ingest_rejected_messages_total",
                "Messages (or parts of them) rejected, by reason; each is kept in rejected_messages unless sampled out.",
                "reason",
            ),
            rejected_unsampled: counter_vec(
                &registry,
                "citygauge_ingest_rejected_unsampled_total",
                "Rejected messages counted but not kept in rejected_messages: beyond rejected_samples_per_topic_per_minute for their topic and reason.",
                "reason",
            ),
            sensors_registered: counter(
                &registry,
                "citygauge_ingest_sensors_registered_total",
                "Unknown sensors auto-registered as pending.",
            ),
            pending_sensors: {
                let g = IntGauge::new(
                    "citygauge_ingest_pending_sensors",
                    "Pending sensors in the daemon's registry (at most max_pending_sensors).",
                )
                .expect("valid metric");
                registry.register(Box::new(g.clone())).expect("unique metric");
                g
            },
            batch_rows: histogram(
                &registry,
                "citygauge_ingest_batch_rows",
                "Rows per committed batch.",
                exponential_buckets(1.0, 4.0, 10).expect("valid buckets"),
            ),
            commit_duration: histogram(
                &registry,
                "citygauge_ingest_commit_duration_seconds",
                "Time to write and commit one batch.",
                latency.clone(),
            ),
            receive_to_commit: histogram(
                &registry,
                "citygauge_ingest_receive_to_commit_seconds",
                "From MQTT receipt to the commit that stored the message.",
                latency.clone(),
            ),
            sensor_to_commit: histogram(
                &registry,
                "citygauge_ingest_sensor_to_commit_seconds",
                "End-to-end lag from the reading's own timestamp to its commit.",
                exponential_buckets(0.01, 2.0, 20).expect("valid buckets"),
            ),
            database_errors: counter_vec(
                &registry,
                "citygauge_ingest_database_errors_total",
                "Database errors, by class (transient: retried; data: the refused rows set aside; fatal: the daemon stops).",
                "class",
            ),
            broker_reconnects: counter(
                &registry,
                "citygauge_ingest_broker_reconnects_total",
                "Broker connections lost and retried.",
            ),
            broker_auth_refusals: counter(
                &registry,
                "citygauge_ingest_broker_auth_refusals_total",
                "Connection attempts the broker refused for our credentials after a successful start (retried with backoff).",
            ),
            orphan_sessions_drained: counter(
                &registry,
                "citygauge_ingest_orphan_sessions_drained_total",
                "Sessions of dead or stopped shared-group members taken over, drained and ended by this daemon.",
            ),
            orphan_messages_drained: counter(
                &registry,
                "citygauge_ingest_orphan_messages_drained_total",
                "QoS 1 messages stored and acknowledged on sessions taken over from dead or stopped members.",
            ),
            orphan_drains_interrupted: counter(
                &registry,
                "citygauge_ingest_orphan_drains_interrupted_total",
                "Takeovers of a member's session that ended before it was drained (the member came back, or the connection failed).",
            ),
            unacked_messages: {
                let g = IntGauge::new(
                    "citygauge_ingest_unacked_messages",
                    "QoS 1 messages received and not yet acknowledged.",
                )
                .expect("valid metric");
                registry.register(Box::new(g.clone())).expect("unique metric");
                g
            },
            oldest_unacked_age: {
                let g = Gauge::new(
                    "citygauge_ingest_oldest_unacked_age_seconds",
                    "Age of the oldest message received and not yet acknowledged (0: none); grows while writes stall.",
                )
                .expect("valid metric");
                registry.register(Box::new(g.clone())).expect("unique metric");
                g
            },
            held_payload_bytes: {
                let g = IntGauge::new(
                    "citygauge_ingest_held_payload_bytes",
                    "Payload and topic bytes of messages received and not yet committed (bounded by held_payload_budget_bytes).",
                )
                .expect("valid metric");
                registry.register(Box::new(g.clone())).expect("unique metric");
                g
            },
            held_payload_paused_seconds: {
                let c = prometheus::Counter::new(
                    "citygauge_ingest_held_payload_paused_seconds_total",
                    "Time the MQTT loop stopped reading because held_payload_budget_bytes was exhausted (the database is slower than the stream).",
                )
                .expect("valid metric");
                registry.register(Box::new(c.clone())).expect("unique metric");
                c
            },
            oldest_unacked: Arc::default(),
            registry,
        };
        // Every label value exists from the start, so rates work from zero.
        for kind in Kind::ALL {
            m.readings_stored.with_label_values(&[kind.as_str()]);
        }
        for reason in RejectReason::ALL {
            m.rejected_messages.with_label_values(&[reason.as_str()]);
            m.rejected_unsampled.with_label_values(&[reason.as_str()]);
        }
        for class in ErrorClass::ALL {
            m.database_errors.with_label_values(&[class.as_str()]);
        }
        m
    }

    /// Counts a database error under its class.
    pub fn database_error(&self, class: ErrorClass) {
        self.database_errors.with_label_values(&[class.as_str()]).inc();
    }

    /// Records when the oldest unacknowledged message was received.
    pub fn set_oldest_unacked(&self, received: Option<Instant>) {
        *self.oldest_unacked.lock().unwrap_or_else(|p| p.into_inner()) = received;
    }

    pub fn render(&self) -> String {
        let oldest = *self.oldest_unacked.lock().unwrap_or_else(|p| p.into_inner());
        self.oldest_unacked_age.set(oldest.map_or(0.0, |at| at.elapsed().as_secs_f64()));
        let mut out = String::new();
        let encoder = prometheus::TextEncoder::new();
        // Encoding our own well-formed families cannot fail.
        let _ = encoder.encode_utf8(&self.registry.gather(), &mut out);
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
