//! Webhook delivery against a real HTTP receiver and a real PostgreSQL:
//! signatures, the location / status / severity filters, retries with
//! backoff, disabling a failing subscription, and restarts that neither
//! lose nor repeat a delivery.

#[path = "webhooks_support/mod.rs"]
mod support;

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use citygauge_alerts::{signing, MsgStatus, MsgType, Severity};
use citygauge_query::alerting::{delivery, AlertingConfig};
use citygauge_query::metrics::Metrics;
use support::*;
use tokio_util::sync::CancellationToken;

struct Worker {
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
    metrics: Metrics,
}

impl Worker {
    fn start(url: &str, config: Arc<AlertingConfig>) -> Worker {
        let stop = CancellationToken::new();
        let database: citygauge_store::Database = tokio_postgres::Config::from_str(url).unwrap().into();
        let metrics = Metrics::new();
        let task = tokio::spawn(delivery::run(pool(url), database, config, metrics.clone(), stop.clone()));
        Worker { stop, task, metrics }
    }

    /// `citygauge_alerts_webhook_deliveries_total{outcome}`.
    fn outcomes(&self, outcome: &str) -> u64 {
        self.metrics.webhook_deliveries.with_label_values(&[outcome]).get()
    }

    /// Waits until the worker's counters read `want` (delivered, retry, failed):
    /// they move just after the outcome is recorded in the database.
    async fn counted(&self, want: [u64; 3]) {
        let got = || ["delivered", "retry", "failed"].map(|outcome| self.outcomes(outcome));
        let waited = citygauge_testkit::eventually("the delivery counters", Duration::from_secs(5), || async {
            Ok((got() == want).then_some(()))
        })
        .await;
        assert!(waited.is_ok(), "counters (delivered, retry, failed): {:?}, want {want:?}", got());
    }

    async fn stop(self) {
        self.stop.cancel();
        tokio::time::timeout(Duration::from_secs(10), self.task).await.unwrap().unwrap();
    }
}

async fn delivered(db: &citygauge_testkit::TestDatabase) -> i64 {
    db.count("SELECT count(*) FROM webhook_deliveries WHERE state = 'delivered'").await.unwrap()
}

#[tokio::test]
async fn webhooks_signed_and_filtered_by_place_rule_and_severity() {
    let db = citygauge_testkit::database().await.unwrap();
    let mut client = db.client().await.unwrap();
    let receiver = Receiver::start().await;
    let mut subs = HashMap::new();
    let near = Sub { center: Some((LON, LAT + 400.0 * DEG_PER_M)), ..Sub::new("near", receiver.url("near")) };
    let far = Sub { center: Some((LON, LAT + 5_000.0 * DEG_PER_M)), ..Sub::new("far", receiver.url("far")) };
    let wide = Sub {
        center: Some((LON, LAT + 1_900.0 * DEG_PER_M)),
        radius_m: 2_000.0,
        ..Sub::new("wide", receiver.url("wide"))
    };
    let district = Sub { districts: vec!["Sanmin"], ..Sub::new("district", receiver.url("district")) };
    let other_district =
        Sub { districts: vec!["Cianjin"], ..Sub::new("other_district", receiver.url("other_district")) };
    let city = Sub::new("city", receiver.url("city"));
    let rain_only = Sub { rules: vec!["rainfall"], ..Sub::new("rain_only", receiver.url("rain_only")) };
    let extreme_only = Sub { min_severity: "Extreme", ..Sub::new("extreme_only", receiver.url("extreme_only")) };
    let maintenance = Sub { classes: vec!["maintenance"], ..Sub::new("maintenance", receiver.url("maintenance")) };
    for sub in [&near, &far, &wide, &district, &other_district, &city, &rain_only, &extreme_only, &maintenance] {
        subs.insert(sub.name.to_string(), sub.insert(&client).await);
    }
    let worker = Worker::start(&db.url, alerting(&db.url, &[]));
    // Let the worker connect and listen first.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (alert_id, message) = raise(&mut client, "kh-wl-0001", MsgStatus::Actual).await;
    let committed = std::time::Instant::now();
    let expected = ["near", "wide", "district", "city"];
    wait_for("the matching subscribers to be notified", Duration::from_secs(10), || async {
        Ok((expected.iter().all(|hook| !receiver.received(hook).is_empty())).then_some(()))
    })
    .await;
    let latency = expected.iter().map(|hook| receiver.received(hook)[0].at - committed).max().unwrap();
    if std::env::var("WEBHOOK_LATENCY").is_ok() {
        eprintln!("commit to receiver: {latency:?}");
    }
    // Let any wrong delivery arrive before checking there was none.
    tokio::time::sleep(Duration::from_millis(300)).await;
    for hook in ["far", "other_district", "rain_only", "extreme_only", "maintenance"] {
        assert!(receiver.received(hook).is_empty(), "{hook} must not be notified");
    }
    let now = chrono::Utc::now().timestamp();
    for hook in expected {
        let got = receiver.received(hook);
        assert_eq!(got.len(), 1, "{hook} notified once");
        let request = &got[0];
        let secret = &subs[hook].1;
        signing::verify(
            secret,
            &request.header("citygauge-timestamp"),
            &request.header("citygauge-signature"),
            &request.body,
            now,
            signing::DEFAULT_TOLERANCE_S,
        )
        .unwrap_or_else(|e| panic!("{hook}: {e}"));
        assert!(signing::verify(
            "not the secret",
            &request.header("citygauge-timestamp"),
            &request.header("citygauge-signature"),
            &request.body,
            now,
            300
        )
        .is_err());
        assert_eq!(request.header("idempotency-key"), message.identifier);
        assert_eq!(request.header("content-type"), "application/json");
        let body = request.json();
        assert_eq!(body["idempotency_key"], message.identifier.as_str());
        assert_eq!(body["alert_id"], alert_id);
        assert_eq!(body["msg_type"], "Alert");
        assert_eq!(body["status"], "Actual");
        assert_eq!(body["rule"], "water_level");
        assert_eq!(body["subject"], "kh-wl-0001");
        assert_eq!(body["change"], "raised");
        assert_eq!(body["state"]["level"], "orange");
        assert!(body["sent"].as_str().unwrap().ends_with("+08:00"), "{}", body["sent"]);
        assert!(body["cap_url"]
            .as_str()
            .unwrap()
            .ends_with(&format!("/api/v1/alerts/messages/{}.cap", message.identifier)));
    }
    assert!(latency < Duration::from_secs(2), "delivered after {latency:?}");
    // The delivery log and the alert's timeline.
    wait_for("the outcome to be recorded", Duration::from_secs(5), || async {
        Ok((delivered(&db).await == 4).then_some(()))
    })
    .await;
    let notified = db
        .count(&format!("SELECT count(*) FROM alert_events WHERE alert_id = {alert_id} AND kind = 'notified'"))
        .await
        .unwrap();
    assert_eq!(notified, 4);
    assert_eq!(db.count("SELECT count(*) FROM webhook_deliveries").await.unwrap(), 4);
    worker.counted([4, 0, 0]).await;
    let timed = &worker.metrics.webhook_delivery_seconds;
    assert_eq!(timed.get_sample_count(), 4);
    assert!(timed.get_sample_sum() > 0.0 && timed.get_sample_sum() < 4.0 * 2.0, "{}", timed.get_sample_sum());
    worker.stop().await;
}

#[tokio::test]
async fn webhooks_test_and_exercise_reach_only_subscribers_that_opted_in() {
    let db = citygauge_testkit::database().await.unwrap();
    let mut client = db.client().await.unwrap();
    let receiver = Receiver::start().await;
    Sub::new("plain", receiver.url("plain")).insert(&client).await;
    Sub { accept_test: true, ..Sub::new("tests", receiver.url("tests")) }.insert(&client).await;
    Sub { accept_exercise: true, ..Sub::new("drills", receiver.url("drills")) }.insert(&client).await;
    let worker = Worker::start(&db.url, alerting(&db.url, &[]));
    let (_, test) = raise(&mut client, "kh-wl-0002", MsgStatus::Test).await;
    let (_, exercise) = raise(&mut client, "kh-wl-0003", MsgStatus::Exercise).await;
    // System and Draft never leave.
    let (_, _) = raise(&mut client, "kh-wl-0004", MsgStatus::System).await;
    let (_, _) = raise(&mut client, "kh-wl-0005", MsgStatus::Draft).await;
    let (_, actual) = raise(&mut client, "kh-wl-0006", MsgStatus::Actual).await;
    wait_for("every owed delivery", Duration::from_secs(10), || async {
        Ok((delivered(&db).await == 5).then_some(()))
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let keys = |hook: &str| -> Vec<String> {
        let mut keys: Vec<String> = receiver.received(hook).iter().map(|r| r.header("idempotency-key")).collect();
        keys.sort();
        keys
    };
    assert_eq!(keys("plain"), vec![actual.identifier.clone()]);
    let mut want = vec![test.identifier.clone(), actual.identifier.clone()];
    want.sort();
    assert_eq!(keys("tests"), want);
    let mut want = vec![exercise.identifier.clone(), actual.identifier.clone()];
    want.sort();
    assert_eq!(keys("drills"), want);
    for request in receiver.received("tests") {
        let body = request.json();
        assert_eq!(
            body["status"].as_str().unwrap(),
            if body["idempotency_key"] == test.identifier.as_str() { "Test" } else { "Actual" }
        );
    }
    worker.stop().await;
}

#[tokio::test]
async fn webhooks_failures_are_retried_with_backoff() {
    let db = citygauge_testkit::database().await.unwrap();
    let mut client = db.client().await.unwrap();
    let receiver = Receiver::start().await;
    receiver.script("flaky", &[500, 503]);
    Sub::new("flaky", receiver.url("flaky")).insert(&client).await;
    let worker = Worker::start(&db.url, alerting(&db.url, &[]));
    let (_, message) = raise(&mut client, "kh-wl-0010", MsgStatus::Actual).await;
    wait_for("the third attempt to succeed", Duration::from_secs(10), || async {
        Ok((delivered(&db).await == 1).then_some(()))
    })
    .await;
    let got = receiver.received("flaky");
    assert_eq!(got.len(), 3, "two failures then a success");
    assert!(got.iter().all(|r| r.header("idempotency-key") == message.identifier));
    let row =
        client.query_one("SELECT attempts, last_status, last_error, state FROM webhook_deliveries", &[]).await.unwrap();
    assert_eq!(row.get::<_, i32>(0), 3);
    assert_eq!(row.get::<_, Option<i32>>(1), Some(200));
    assert_eq!(row.get::<_, Option<String>>(2), None);
    let failures: i32 =
        client.query_one("SELECT consecutive_failures FROM webhook_subscriptions", &[]).await.unwrap().get(0);
    assert_eq!(failures, 0, "a success resets the failure count");
    worker.counted([1, 2, 0]).await;
    worker.stop().await;

    // Attempts run out: `failed`, with the last error in the log.
    receiver.always("flaky", Some(500));
    let worker = Worker::start(&db.url, alerting(&db.url, &["--webhook-max-attempts", "3"]));
    raise(&mut client, "kh-wl-0011", MsgStatus::Actual).await;
    wait_for("the delivery to be given up", Duration::from_secs(10), || async {
        Ok((db.count("SELECT count(*) FROM webhook_deliveries WHERE state = 'failed'").await? == 1).then_some(()))
    })
    .await;
    let row = client
        .query_one("SELECT attempts, last_status, last_error FROM webhook_deliveries WHERE state = 'failed'", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, i32>(0), 3);
    assert_eq!(row.get::<_, Option<i32>>(1), Some(500));
    assert!(row.get::<_, Option<String>>(2).unwrap().contains("500"));
    worker.counted([0, 2, 1]).await;
    worker.stop().await;
}

#[tokio::test]
async fn webhooks_a_receiver_that_keeps_failing_is_disabled() {
    let db = citygauge_testkit::database().await.unwrap();
    let mut client = db.client().await.unwrap();
    let receiver = Receiver::start().await;
    receiver.always("down", Some(500));
    let (down, _) = Sub::new("down", receiver.url("down")).insert(&client).await;
    let config = alerting(&db.url, &["--webhook-disable-after-failures", "4"]);
    let worker = Worker::start(&db.url, config);
    raise(&mut client, "kh-wl-0020", MsgStatus::Actual).await;
    raise(&mut client, "kh-wl-0021", MsgStatus::Actual).await;
    wait_for("the subscription to be disabled", Duration::from_secs(10), || async {
        Ok((db.count("SELECT count(*) FROM webhook_subscriptions WHERE NOT enabled").await? == 1).then_some(()))
    })
    .await;
    let row = client
        .query_one(
            "SELECT disabled_at IS NOT NULL, disabled_reason, consecutive_failures FROM webhook_subscriptions",
            &[],
        )
        .await
        .unwrap();
    assert!(row.get::<_, bool>(0));
    assert!(row.get::<_, String>(1).contains("consecutive"), "{}", row.get::<_, String>(1));
    assert!(row.get::<_, i32>(2) >= 4);
    wait_for("the disabled gauge", Duration::from_secs(5), || async {
        Ok((worker.metrics.webhook_subscriptions_disabled.get() == 1).then_some(()))
    })
    .await;
    // Disabled: nothing more is sent (an attempt already in flight may
    // still land), and the deliveries wait.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let sent = receiver.received("down").len();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(receiver.received("down").len(), sent);
    assert_eq!(db.count("SELECT count(*) FROM webhook_deliveries WHERE state = 'pending'").await.unwrap(), 2);
    // Re-enabled once the receiver is back: both go out.
    receiver.always("down", None);
    client
        .execute(
            "UPDATE webhook_subscriptions SET enabled = true, disabled_at = NULL, disabled_reason = NULL,
                    consecutive_failures = 0 WHERE id = $1",
            &[&down],
        )
        .await
        .unwrap();
    wait_for("the waiting deliveries to go out", Duration::from_secs(10), || async {
        Ok((delivered(&db).await == 2).then_some(()))
    })
    .await;
    worker.stop().await;
}

#[tokio::test]
async fn webhooks_restarts_and_replicas_neither_lose_nor_repeat() {
    let db = citygauge_testkit::database().await.unwrap();
    let mut client = db.client().await.unwrap();
    let receiver = Receiver::start().await;
    Sub::new("a", receiver.url("a")).insert(&client).await;
    Sub::new("b", receiver.url("b")).insert(&client).await;
    let mut identifiers = Vec::new();
    for n in 0..15 {
        let (_, message) = raise(&mut client, &format!("kh-wl-1{n:03}"), MsgStatus::Actual).await;
        // Storing the same decision twice owes nothing more.
        let again = client
            .query_one("SELECT id FROM alert_messages WHERE identifier = $1", &[&message.identifier])
            .await
            .unwrap();
        let tx = client.transaction().await.unwrap();
        let owed = citygauge_query::alerting::webhooks::enqueue_deliveries(&tx, again.get(0), &message).await.unwrap();
        tx.commit().await.unwrap();
        assert_eq!(owed, 0);
        identifiers.push(message.identifier);
    }
    // Two replicas at once, one of them restarted twice along the way.
    let config = alerting(&db.url, &["--webhook-concurrency", "2"]);
    let steady = Worker::start(&db.url, config.clone());
    for _ in 0..2 {
        let restarted = Worker::start(&db.url, config.clone());
        tokio::time::sleep(Duration::from_millis(30)).await;
        restarted.stop().await;
    }
    let late = Worker::start(&db.url, config.clone());
    wait_for("every delivery", Duration::from_secs(20), || async { Ok((delivered(&db).await == 30).then_some(())) })
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    for hook in ["a", "b"] {
        let mut keys: Vec<String> = receiver.received(hook).iter().map(|r| r.header("idempotency-key")).collect();
        keys.sort();
        let mut want = identifiers.clone();
        want.sort();
        assert_eq!(keys, want, "{hook}: each message exactly once");
    }
    assert_eq!(db.count("SELECT count(*) FROM alert_events WHERE kind = 'notified'").await.unwrap(), 30);
    steady.stop().await;
    late.stop().await;
}

#[test]
fn webhooks_backoff_is_capped_full_jitter() {
    let base = Duration::from_millis(100);
    let max = Duration::from_secs(5);
    for attempt in 1..20 {
        let ceiling = (base * 2u32.pow((attempt - 1).min(20))).min(max);
        for unit in [0.0, 0.25, 0.999] {
            let delay = delivery::backoff(attempt, base, max, unit);
            assert!(delay <= ceiling, "attempt {attempt}: {delay:?} > {ceiling:?}");
        }
    }
    assert_eq!(delivery::backoff(1, base, max, 0.5), Duration::from_millis(50));
    let _ = Severity::Minor;
    let _ = MsgType::Alert;
}

#[tokio::test]
async fn webhooks_https_urls_go_through_tls() {
    let db = citygauge_testkit::database().await.unwrap();
    let mut client = db.client().await.unwrap();
    // The receiver speaks plain HTTP: a TLS handshake with it fails, and the
    // failure is logged against the delivery (no panic, no plain-text fallback).
    let receiver = Receiver::start().await;
    let url = format!("https://{}/hook/tls", receiver.addr);
    Sub::new("tls", url).insert(&client).await;
    let worker = Worker::start(&db.url, alerting(&db.url, &["--webhook-max-attempts", "1"]));
    raise(&mut client, "kh-wl-0300", MsgStatus::Actual).await;
    wait_for("the attempt to fail", Duration::from_secs(10), || async {
        Ok((db.count("SELECT count(*) FROM webhook_deliveries WHERE state = 'failed'").await? == 1).then_some(()))
    })
    .await;
    let error: String = client.query_one("SELECT last_error FROM webhook_deliveries", &[]).await.unwrap().get(0);
    // rustls refuses the plain-HTTP answer as a corrupt TLS record.
    assert!(error.contains("InvalidContentType"), "{error}");
    assert!(receiver.received("tls").is_empty(), "nothing reached the handler in clear text");
    worker.stop().await;
}

/// What the TLS receiver got: (lowercased head, body).
type Requests = Arc<std::sync::Mutex<Vec<(String, Vec<u8>)>>>;

/// A one-route HTTPS receiver with a certificate from a throwaway CA:
/// returns its port, the CA certificate and what it received (head, body).
async fn tls_receiver() -> (u16, rustls::pki_types::CertificateDer<'static>, Requests) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
    let leaf_cert = leaf.signed_by(&leaf_key, &ca_cert, &ca_key).unwrap();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into());
    let server = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![leaf_cert.der().clone()], key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let received: Requests = Arc::default();
    let record = received.clone();
    tokio::spawn(async move {
        loop {
            let Ok((socket, _)) = listener.accept().await else { return };
            let (acceptor, record) = (acceptor.clone(), record.clone());
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(socket).await else { return };
                let mut data = Vec::new();
                let mut buf = [0u8; 4096];
                loop {
                    let Ok(n) = tls.read(&mut buf).await else { return };
                    if n == 0 {
                        return;
                    }
                    data.extend_from_slice(&buf[..n]);
                    let Some(end) = data.windows(4).position(|w| w == b"\r\n\r\n") else { continue };
                    let head = String::from_utf8_lossy(&data[..end]).to_lowercase();
                    let length: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .and_then(|v| v.trim().parse().ok())
                        .unwrap_or(0);
                    if data.len() >= end + 4 + length {
                        let body = data[end + 4..end + 4 + length].to_vec();
                        record.lock().unwrap().push((head, body));
                        let _ = tls.write_all(b"HTTP/1.1 204 No Content\r\nconnection: close\r\n\r\n").await;
                        let _ = tls.shutdown().await;
                        return;
                    }
                }
            });
        }
    });
    (port, ca_cert.der().clone(), received)
}

#[tokio::test]
async fn webhooks_are_delivered_over_https() {
    let db = citygauge_testkit::database().await.unwrap();
    let mut client = db.client().await.unwrap();
    let (port, ca, received) = tls_receiver().await;
    let (_, secret) = Sub::new("https", format!("https://127.0.0.1:{port}/hook")).insert(&client).await;
    let stop = CancellationToken::new();
    let http = delivery::http_client_trusting(vec![ca]).unwrap();
    let database: citygauge_store::Database = tokio_postgres::Config::from_str(&db.url).unwrap().into();
    let config = alerting(&db.url, &[]);
    let task = tokio::spawn(delivery::run_with(pool(&db.url), database, config, Metrics::new(), http, stop.clone()));
    let (_, message) = raise(&mut client, "kh-wl-0301", MsgStatus::Actual).await;
    wait_for("the delivery over TLS", Duration::from_secs(10), || async {
        Ok((delivered(&db).await == 1).then_some(()))
    })
    .await;
    let (head, body) = received.lock().unwrap()[0].clone();
    let header = |name: &str| {
        head.lines().find_map(|l| l.strip_prefix(&format!("{name}:")).map(|v| v.trim().to_string())).unwrap()
    };
    assert_eq!(header("idempotency-key"), message.identifier.to_lowercase());
    let now = chrono::Utc::now().timestamp();
    signing::verify(&secret, &header("citygauge-timestamp"), &header("citygauge-signature"), &body, now, 300).unwrap();
    stop.cancel();
    task.await.unwrap();
}
