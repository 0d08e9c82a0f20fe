//! Prometheus metrics, `citygauge_query_*` and `citygauge_alerts_*`, in the
//! service's own registry.
//! Labels are bounded: the matched route template, the status code, a fixed
//! set of cache names; never a sensor id or a raw path.

use prometheus::{
    exponential_buckets, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
};

#[derive(Debug, Clone)]
pub struct Metrics {
    pub registry: Registry,
    pub requests: IntCounterVec,
    pub request_duration: HistogramVec,
    pub cache_hits: IntCounterVec,
    pub sse_clients: IntGauge,
    pub sse_dropped_clients: IntCounter,
    pub change_events: IntCounter,
    /// Alert decisions stored by the evaluator, by change (`raised`, `escalated`...).
    pub alert_decisions: IntCounterVec,
    /// From the change-stream notification (just after the reading's commit)
    /// to the commit of the decision it caused.
    pub alert_evaluation_latency: Histogram,
    /// 1 while this replica evaluates (holds the lease and has warmed up).
    pub alert_leader: IntGauge,
    /// Webhook attempts by outcome ([`WEBHOOK_OUTCOMES`]).
    pub webhook_deliveries: IntCounterVec,
    /// From the outbox row's creation (in the decision's transaction) to the
    /// receiver's 2xx being recorded, both on the database's clock; retries
    /// and their backoff included.
    pub webhook_delivery_seconds: Histogram,
    /// Subscriptions disabled for failing (all replicas report the same
    /// count: aggregate with `max`).
    pub webhook_subscriptions_disabled: IntGauge,
    /// Alert messages published to the broker and acknowledged (PUBACK).
    pub mqtt_published: IntCounter,
}

/// The `outcome` label values of `citygauge_alerts_webhook_deliveries_total`:
/// a 2xx, a failure that will be retried, a failure that gave up.
pub const WEBHOOK_OUTCOMES: [&str; 3] = ["delivered", "retry", "failed"];

/// The `kind` label values of `citygauge_query_cache_hits_total`.
pub const CACHE_KINDS: [&str; 7] = ["sensors", "sensor", "districts", "district", "overview", "map", "map_districts"];

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new("citygauge_query_requests_total", "HTTP requests by matched route and status."),
            &["route", "status"],
        )
        .expect("valid metric");
        let request_duration = HistogramVec::new(
            HistogramOpts::new("citygauge_query_request_duration_seconds", "Time to the response head, by route.")
                .buckets(exponential_buckets(0.000_25, 2.0, 16).expect("valid buckets")),
            &["route"],
        )
        .expect("valid metric");
        let cache_hits = IntCounterVec::new(
            Opts::new("citygauge_query_cache_hits_total", "Responses served from the in-process cache."),
            &["kind"],
        )
        .expect("valid metric");
        let sse_clients =
            IntGauge::new("citygauge_query_sse_clients", "Connected stream clients.").expect("valid metric");
        let sse_dropped_clients =
            IntCounter::new("citygauge_query_sse_dropped_clients_total", "Stream clients dropped for falling behind.")
                .expect("valid metric");
        let change_events =
            IntCounter::new("citygauge_query_change_events_total", "Readings received through the change stream.")
                .expect("valid metric");
        let alert_decisions = IntCounterVec::new(
            Opts::new("citygauge_alerts_decisions_total", "Alert decisions stored by the evaluator, by change."),
            &["change"],
        )
        .expect("valid metric");
        let alert_evaluation_latency = Histogram::with_opts(
            HistogramOpts::new(
                "citygauge_alerts_evaluation_latency_seconds",
                "From a reading's change-stream notification to the commit of the alert decision it caused.",
            )
            .buckets(exponential_buckets(0.000_5, 2.0, 16).expect("valid buckets")),
        )
        .expect("valid metric");
        let alert_leader =
            IntGauge::new("citygauge_alerts_leader", "1 while this replica evaluates (lease held, engine warm).")
                .expect("valid metric");
        let webhook_deliveries = IntCounterVec::new(
            Opts::new(
                "citygauge_alerts_webhook_deliveries_total",
                "Webhook attempts: delivered (2xx), retry (failed, tried again later), failed (given up).",
            ),
            &["outcome"],
        )
        .expect("valid metric");
        let webhook_delivery_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "citygauge_alerts_webhook_delivery_seconds",
                "From the outbox row (the decision's transaction) to the receiver's 2xx, retries included.",
            )
            .buckets(exponential_buckets(0.002_5, 2.0, 18).expect("valid buckets")),
        )
        .expect("valid metric");
        let webhook_subscriptions_disabled = IntGauge::new(
            "citygauge_alerts_webhook_subscriptions_disabled",
            "Webhook subscriptions disabled for failing (refreshed by the delivery worker).",
        )
        .expect("valid metric");
        let mqtt_published = IntCounter::new(
            "citygauge_alerts_mqtt_published_total",
            "Alert messages published to the broker and acknowledged (QoS 1).",
        )
        .expect("valid metric");
        for c in [
            Box::new(alert_decisions.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(webhook_deliveries.clone()),
            Box::new(webhook_delivery_seconds.clone()),
            Box::new(webhook_subscriptions_disabled.clone()),
            Box::new(mqtt_published.clone()),
            Box::new(alert_evaluation_latency.clone()),
            Box::new(alert_leader.clone()),
            Box::new(requests.clone()),
            Box::new(request_duration.clone()),
            Box::new(cache_hits.clone()),
            Box::new(sse_clients.clone()),
            Box::new(sse_dropped_clients.clone()),
            Box::new(change_events.clone()),
        ] {
            registry.register(c).expect("unique metric");
        }
        for kind in CACHE_KINDS {
            cache_hits.with_label_values(&[kind]);
        }
        for outcome in WEBHOOK_OUTCOMES {
            webhook_deliveries.with_label_values(&[outcome]);
        }
        Metrics {
            registry,
            requests,
            request_duration,
            cache_hits,
            sse_clients,
            sse_dropped_clients,
            change_events,
            alert_decisions,
            alert_evaluation_latency,
            alert_leader,
            webhook_deliveries,
            webhook_delivery_seconds,
            webhook_subscriptions_disabled,
            mqtt_published,
        }
    }

    pub fn hit(&self, kind: &'static str) {
        self.cache_hits.with_label_values(&[kind]).inc();
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = prometheus::TextEncoder::new().encode_utf8(&self.registry.gather(), &mut out);
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
