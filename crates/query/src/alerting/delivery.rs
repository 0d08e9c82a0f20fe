//! The webhook delivery worker: reads the outbox (`webhook_deliveries`),
//! POSTs each due delivery's signed body, and keeps the delivery log.
//!
//! - Claiming: a short transaction takes due rows with `FOR UPDATE SKIP
//!   LOCKED` and pushes their `next_attempt_at` past the request timeout (a
//!   lease), so several replicas deliver side by side without sending the
//!   same delivery twice, and a replica that dies mid-request leaves its
//!   deliveries to be retried when the lease runs out.
//! - Outcome: 2xx delivers (and records a `notified` event on the alert);
//!   anything else schedules a retry with exponential backoff and full
//!   jitter, up to `--webhook-max-attempts`, then `failed`. A subscription
//!   that fails `--webhook-disable-after-failures` times in a row is
//!   disabled (its pending deliveries wait for an admin to re-enable it).
//! - Waking: `LISTEN citygauge_webhooks` (notified at the commit that
//!   stored a message) plus a poll, so a delivery leaves within
//!   milliseconds of its commit and nothing waits on a lost notification.
//!
//! Delivery is at least once: receivers dedupe on `Idempotency-Key`.
//!
//! Metrics: attempts by outcome; the time from the outbox row's creation to
//! the recorded 2xx, both read from the database's clock (`created_at` is
//! set in the decision's own transaction, `delivered_at` just after the
//! answer), so sensor clocks and backfilled readings cannot distort it and
//! retries with their backoff count; and the number of disabled
//! subscriptions, refreshed every [`DISABLED_REFRESH`] and at each disabling.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chrono::Utc;
use citygauge_alerts::signing;
use citygauge_alerts::Message;
use deadpool_postgres::Pool;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::alerting::{webhooks, AlertingConfig};
use crate::metrics::Metrics;
use crate::QueryError;

/// The webhook HTTP client (http:// and https:// with the Mozilla roots).
pub type HttpClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

/// How often the worker looks for due deliveries when nothing woke it.
const POLL: Duration = Duration::from_secs(1);
/// How often the worker recounts disabled subscriptions (an admin may
/// re-enable one through the API, on any replica).
const DISABLED_REFRESH: Duration = Duration::from_secs(10);
/// The longest `last_error` kept.
const ERROR_CHARS: usize = 300;

/// Builds the client every attempt goes through (connections are reused):
/// http://, and https:// trusting the Mozilla roots.
pub fn http_client() -> Result<HttpClient, QueryError> {
    http_client_trusting(Vec::new())
}

/// The same, also trusting `extra_roots` (a city's private CA; tests).
pub fn http_client_trusting(
    extra_roots: Vec<rustls::pki_types::CertificateDer<'static>>,
) -> Result<HttpClient, QueryError> {
    let mut roots = rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
    for root in extra_roots {
        roots.add(root).map_err(|e| QueryError::Config(format!("webhook tls root: {e}")))?;
    }
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| QueryError::Config(format!("webhook tls: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let https = hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(tls).https_or_http().enable_http1().build();
    Ok(Client::builder(TokioExecutor::new()).pool_idle_timeout(Duration::from_secs(30)).build(https))
}

/// The delay before retry number `attempt` (1 = the first retry): a uniform
/// draw (`unit` in [0, 1)) from zero to `base * 2^(attempt-1)`, capped at
/// `max` ("full jitter": failing receivers are not hit in lockstep).
pub fn backoff(attempt: u32, base: Duration, max: Duration, unit: f64) -> Duration {
    let exp = attempt.saturating_sub(1).min(40);
    let ceiling = base.saturating_mul(1u32 << exp.min(31)).min(max);
    ceiling.mul_f64(unit.clamp(0.0, 1.0))
}

/// Delivers due webhook deliveries until `stop`; `database` is for the
/// dedicated connection that listens for new ones.
pub async fn run(
    pool: Pool,
    database: citygauge_store::Database,
    config: Arc<AlertingConfig>,
    metrics: Metrics,
    stop: CancellationToken,
) {
    match http_client() {
        Ok(http) => run_with(pool, database, config, metrics, http, stop).await,
        Err(error) => {
            warn!(%error, "webhook delivery cannot start");
            stop.cancelled().await;
        }
    }
}

/// [`run`] with a given HTTP client.
pub async fn run_with(
    pool: Pool,
    database: citygauge_store::Database,
    config: Arc<AlertingConfig>,
    metrics: Metrics,
    http: HttpClient,
    stop: CancellationToken,
) {
    let wake = Arc::new(Notify::new());
    let listener = tokio::spawn(listen(database, &[webhooks::CHANNEL], wake.clone(), stop.clone()));
    let worker = Worker { pool, http, config, metrics, wake };
    worker.run(stop).await;
    listener.abort();
}

/// Wakes a notifier on every notification on `channels`, and once after
/// each (re)connect (notifications sent meanwhile were lost).
pub(crate) async fn listen(
    database: citygauge_store::Database,
    channels: &'static [&'static str],
    wake: Arc<Notify>,
    stop: CancellationToken,
) {
    let mut backoff = Duration::from_millis(200);
    loop {
        match listen_once(&database, channels, &wake, &stop).await {
            Ok(()) => return,
            Err(error) => debug!(%error, "webhook listener: connection lost; reconnecting"),
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = stop.cancelled() => return,
        }
        backoff = (backoff * 2).min(Duration::from_secs(10));
    }
}

async fn listen_once(
    database: &citygauge_store::Database,
    channels: &[&str],
    wake: &Notify,
    stop: &CancellationToken,
) -> Result<(), tokio_postgres::Error> {
    let (client, mut connection) = database.connect().await?;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let driver = tokio::spawn(async move {
        let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
        use futures_util::StreamExt;
        while let Some(message) = messages.next().await {
            match message {
                Ok(tokio_postgres::AsyncMessage::Notification(_)) => {
                    if tx.send(()).is_err() {
                        break;
                    }
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
    });
    let result = async {
        let sql: Vec<String> = channels.iter().map(|channel| format!("LISTEN {channel};")).collect();
        client.batch_execute(&sql.concat()).await?;
        wake.notify_one();
        loop {
            tokio::select! {
                got = rx.recv() => match got {
                    Some(()) => wake.notify_one(),
                    // The connection ended.
                    None => return client.simple_query("SELECT 1").await.map(|_| ()),
                },
                _ = stop.cancelled() => return Ok(()),
            }
        }
    }
    .await;
    driver.abort();
    result
}

/// One due delivery, as claimed.
struct Due {
    id: i64,
    attempts: i32,
    subscription_id: i64,
    url: String,
    secret: String,
    identifier: String,
    body: serde_json::Value,
}

struct Worker {
    pool: Pool,
    http: HttpClient,
    config: Arc<AlertingConfig>,
    metrics: Metrics,
    wake: Arc<Notify>,
}

impl Worker {
    async fn run(self, stop: CancellationToken) {
        let this = Arc::new(self);
        let slots = Arc::new(Semaphore::new(this.config.webhook_concurrency as usize));
        let mut in_flight = JoinSet::new();
        info!("webhook delivery started");
        let mut counted_disabled: Option<std::time::Instant> = None;
        loop {
            while in_flight.try_join_next().is_some() {}
            if counted_disabled.is_none_or(|at| at.elapsed() >= DISABLED_REFRESH) {
                this.count_disabled().await;
                counted_disabled = Some(std::time::Instant::now());
            }
            let free = slots.available_permits();
            let mut sleep_for = POLL;
            if free > 0 {
                match this.claim(free).await {
                    Ok(claimed) => {
                        let full = claimed.len() == free;
                        for due in claimed {
                            let Ok(permit) = slots.clone().try_acquire_owned() else { break };
                            let worker = this.clone();
                            in_flight.spawn(async move {
                                worker.deliver(due).await;
                                drop(permit);
                                // A retry may now be due sooner than the worker planned.
                                worker.wake.notify_one();
                            });
                        }
                        if full {
                            // More may be due: look again as soon as a slot frees.
                            sleep_for = Duration::ZERO;
                        } else {
                            sleep_for = this.next_due().await.unwrap_or(POLL).min(POLL);
                        }
                    }
                    Err(error) => warn!(%error, "webhook delivery: claiming failed; retrying"),
                }
            }
            if sleep_for.is_zero() && slots.available_permits() > 0 {
                continue;
            }
            tokio::select! {
                _ = this.wake.notified() => {}
                _ = tokio::time::sleep(sleep_for.max(Duration::from_millis(5))) => {}
                _ = stop.cancelled() => break,
            }
        }
        // Requests in flight finish (each bounded by the timeout), so a
        // graceful restart neither loses nor repeats them.
        while in_flight.join_next().await.is_some() {}
        info!("webhook delivery stopped");
    }

    /// Takes up to `limit` due deliveries of enabled subscriptions, leasing
    /// them for the request timeout plus a margin.
    async fn claim(&self, limit: usize) -> Result<Vec<Due>, QueryError> {
        let lease_ms = self.config.webhook_timeout_ms as f64 + 10_000.0;
        let client = self.pool.get().await?;
        let rows = client
            .query(
                "WITH due AS (
                     SELECT d.id FROM webhook_deliveries d
                       JOIN webhook_subscriptions s ON s.id = d.subscription_id
                      WHERE d.state = 'pending' AND d.next_attempt_at <= now() AND s.enabled
                      ORDER BY d.next_attempt_at, d.id
                      LIMIT $1
                      FOR UPDATE OF d SKIP LOCKED)
                 UPDATE webhook_deliveries d
                    SET next_attempt_at = now() + make_interval(secs => $2::float8 / 1000)
                   FROM due, webhook_subscriptions s, alert_messages m
                  WHERE d.id = due.id AND s.id = d.subscription_id AND m.id = d.message_id
                 RETURNING d.id, d.attempts, s.id, s.url, s.secret, m.identifier, m.body",
                &[&(limit as i64), &lease_ms],
            )
            .await?;
        Ok(rows
            .into_iter()
            .map(|row| Due {
                id: row.get(0),
                attempts: row.get(1),
                subscription_id: row.get(2),
                url: row.get(3),
                secret: row.get(4),
                identifier: row.get(5),
                body: row.get(6),
            })
            .collect())
    }

    /// How long until the next pending delivery of an enabled subscription is due.
    async fn next_due(&self) -> Option<Duration> {
        let client = self.pool.get().await.ok()?;
        let row = client
            .query_one(
                "SELECT (extract(epoch FROM min(d.next_attempt_at) - now()) * 1000)::float8
                   FROM webhook_deliveries d JOIN webhook_subscriptions s ON s.id = d.subscription_id
                  WHERE d.state = 'pending' AND s.enabled",
                &[],
            )
            .await
            .ok()?;
        let ms: Option<f64> = row.get(0);
        ms.map(|ms| Duration::from_secs_f64(ms.max(0.0) / 1000.0))
    }

    /// Refreshes the disabled-subscriptions gauge (kept as it was when the
    /// database does not answer).
    async fn count_disabled(&self) {
        let count = async {
            let client = self.pool.get().await?;
            let row = client.query_one("SELECT count(*) FROM webhook_subscriptions WHERE NOT enabled", &[]).await?;
            Ok::<i64, QueryError>(row.get(0))
        };
        match count.await {
            Ok(n) => self.metrics.webhook_subscriptions_disabled.set(n),
            Err(error) => debug!(%error, "webhook delivery: counting disabled subscriptions failed"),
        }
    }

    async fn deliver(&self, due: Due) {
        let attempt = due.attempts + 1;
        let outcome = match serde_json::from_value::<Message>(due.body.clone()) {
            Ok(message) => {
                let body = webhooks::body(&message, webhooks::public_url(&self.config));
                self.post(&due, body).await
            }
            // Retrying cannot help a message this version cannot read.
            Err(e) => Err((None, format!("the stored message cannot be read: {e}"))),
        };
        let recorded = match outcome {
            Ok(status) => self.delivered(&due, attempt, status).await,
            Err((status, error)) => {
                debug!(delivery = due.id, subscription = due.subscription_id, %error, "webhook attempt failed");
                self.failed(&due, attempt, status, &error).await
            }
        };
        if let Err(error) = recorded {
            // The lease runs out and the delivery is tried again.
            warn!(delivery = due.id, %error, "webhook delivery: recording the outcome failed");
        }
    }

    /// One signed POST; `Ok(status)` for 2xx, else the status (if any) and why.
    async fn post(&self, due: &Due, body: Vec<u8>) -> Result<u16, (Option<u16>, String)> {
        let timestamp = Utc::now().timestamp();
        let signature = signing::sign(&due.secret, timestamp, &body);
        let request = hyper::Request::post(due.url.as_str())
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .header(hyper::header::USER_AGENT, concat!("citygauge/", env!("CARGO_PKG_VERSION")))
            .header(signing::IDEMPOTENCY_HEADER, due.identifier.as_str())
            .header(signing::TIMESTAMP_HEADER, timestamp.to_string())
            .header(signing::SIGNATURE_HEADER, signature)
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| (None, format!("bad request: {e}")))?;
        let timeout = Duration::from_millis(self.config.webhook_timeout_ms);
        let exchange = async {
            let response = self.http.request(request).await.map_err(|e| (None, chain(&e)))?;
            let status = response.status();
            // Read (a bounded amount of) the answer so the connection can be reused.
            let _ = Limited::new(response.into_body(), 64 * 1024).collect().await;
            Ok(status)
        };
        match tokio::time::timeout(timeout, exchange).await {
            Err(_) => Err((None, format!("no answer within {} ms", timeout.as_millis()))),
            Ok(Err(e)) => Err(e),
            Ok(Ok(status)) if status.is_success() => Ok(status.as_u16()),
            Ok(Ok(status)) => Err((Some(status.as_u16()), format!("the receiver answered {status}"))),
        }
    }

    async fn delivered(&self, due: &Due, attempt: i32, status: u16) -> Result<(), QueryError> {
        let client = self.pool.get().await?;
        // Data-modifying CTEs all run; the statement returns the delivery's
        // age, or no row when it was no longer pending (another replica
        // recorded it after this one's lease ran out: not counted twice).
        let recorded = client
            .query_opt(
                "WITH d AS (
                     UPDATE webhook_deliveries
                        SET state = 'delivered', attempts = $2, last_status = $3, last_error = NULL,
                            delivered_at = now()
                      WHERE id = $1 AND state = 'pending'
                     RETURNING subscription_id, message_id,
                               extract(epoch FROM delivered_at - created_at)::float8 AS seconds),
                 s AS (
                     UPDATE webhook_subscriptions SET consecutive_failures = 0
                      WHERE id = (SELECT subscription_id FROM d) AND consecutive_failures <> 0),
                 e AS (
                     INSERT INTO alert_events (alert_id, at, kind, actor, details)
                     SELECT m.alert_id, now(), 'notified', 'webhook',
                            jsonb_build_object('subscription_id', d.subscription_id, 'delivery_id', $1::bigint,
                                               'attempt', $2::int, 'identifier', m.identifier, 'status', $3::int)
                       FROM d JOIN alert_messages m ON m.id = d.message_id)
                 SELECT seconds FROM d",
                &[&due.id, &attempt, &i32::from(status)],
            )
            .await?;
        if let Some(row) = recorded {
            self.metrics.webhook_deliveries.with_label_values(&["delivered"]).inc();
            self.metrics.webhook_delivery_seconds.observe(row.get::<_, f64>(0).max(0.0));
        }
        Ok(())
    }

    async fn failed(&self, due: &Due, attempt: i32, status: Option<u16>, error: &str) -> Result<(), QueryError> {
        let config = &self.config;
        let last_error: String = error.chars().take(ERROR_CHARS).collect();
        let give_up = attempt >= config.webhook_max_attempts as i32;
        let delay = backoff(
            attempt as u32,
            Duration::from_millis(config.webhook_backoff_base_ms),
            Duration::from_millis(config.webhook_backoff_max_ms),
            rand::random::<f64>(),
        );
        let disable_reason = format!(
            "disabled after {} consecutive failed deliveries; last: {last_error}",
            config.webhook_disable_after_failures
        );
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let updated = tx
            .execute(
                "UPDATE webhook_deliveries
                SET attempts = $2, last_status = $3, last_error = $4,
                    state = CASE WHEN $5 THEN 'failed' ELSE 'pending' END,
                    next_attempt_at = now() + make_interval(secs => $6)
              WHERE id = $1 AND state = 'pending'",
                &[&due.id, &attempt, &status.map(i32::from), &last_error, &give_up, &delay.as_secs_f64()],
            )
            .await?;
        let disabled = tx
            .query_opt(
                "UPDATE webhook_subscriptions
                    SET consecutive_failures = consecutive_failures + 1,
                        enabled = CASE WHEN consecutive_failures + 1 >= $2 THEN false ELSE enabled END,
                        disabled_at = CASE WHEN enabled AND consecutive_failures + 1 >= $2 THEN now() ELSE disabled_at END,
                        disabled_reason = CASE WHEN enabled AND consecutive_failures + 1 >= $2 THEN $3 ELSE disabled_reason END
                  WHERE id = $1
                 RETURNING NOT enabled AND disabled_at = now()",
                &[&due.subscription_id, &(config.webhook_disable_after_failures as i32), &disable_reason],
            )
            .await?;
        tx.commit().await?;
        if updated > 0 {
            let outcome = if give_up { "failed" } else { "retry" };
            self.metrics.webhook_deliveries.with_label_values(&[outcome]).inc();
        }
        if disabled.is_some_and(|row| row.get::<_, Option<bool>>(0) == Some(true)) {
            warn!(subscription = due.subscription_id, "webhook subscription disabled after repeated failures");
            self.count_disabled().await;
        }
        Ok(())
    }
}

/// An error and its causes on one line (hyper's top-level message alone is vague).
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_full_jitter_and_a_cap() {
        let base = Duration::from_millis(1000);
        let max = Duration::from_secs(60);
        assert_eq!(backoff(1, base, max, 0.999_999), Duration::from_millis(1000).mul_f64(0.999_999));
        assert_eq!(backoff(3, base, max, 0.5), Duration::from_millis(2000));
        assert_eq!(backoff(3, base, max, 0.0), Duration::ZERO);
        assert_eq!(backoff(10, base, max, 1.0), max);
        assert_eq!(backoff(100, base, max, 1.0), max);
    }
}
