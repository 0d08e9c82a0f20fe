//! Start-up and ordered shutdown of the daemon.
//!
//! Start: validate config, serve HTTP (not ready yet), migrate (waiting for
//! the database if it is down), load the registry, then connect to the broker.
//! Stop: the MQTT loop stops taking messages; the pipeline flushes its batch;
//! the writers commit what they hold; the MQTT loop sends the last acks and
//! disconnects; last of all the HTTP server stops.

use std::sync::Arc;
use std::time::Duration;

use citygauge_domain::Normaliser;
use citygauge_store::{Store, StoreError};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{error, info, warn, Instrument};

use crate::config::IngestConfig;
use crate::http::{self, Health, HttpState};
use crate::metrics::Metrics;
use crate::mqtt::{poll_loop, Connection, PollLoop, Session};
use crate::pipeline::{run_pipeline, BatchLimits};
use crate::writer::{run_writers, SeenSensors, Writer};
use crate::IngestError;

/// How often `first_seen`/`last_seen` are written.
const TOUCH_INTERVAL: Duration = Duration::from_secs(5);

/// Runs the daemon until `shutdown` fires, then stops in order.
pub async fn run(
    config: IngestConfig,
    http_listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), IngestError> {
    config.validate()?;
    let normaliser = Normaliser::new(config.normalise_config()?);
    let store = Arc::new(Store::new(config.store_config())?);
    let metrics = Metrics::new();
    let health = Arc::new(Health::default());
    let connection = Arc::new(Connection::default());

    let http_stop = CancellationToken::new();
    let http_state = HttpState { metrics: metrics.clone(), health: health.clone(), connection: connection.clone() };
    info!(addr = %http_listener.local_addr()?, "http: serving /metrics /healthz /readyz");
    let http_task = tokio::spawn({
        let stop = http_stop.clone();
        async move {
            let served = axum::serve(http_listener, http::router(http_state))
                .with_graceful_shutdown(stop.cancelled_owned())
                .await;
            if let Err(error) = served {
                error!(%error, "http: server failed");
            }
        }
        .instrument(tracing::info_span!("http"))
    });

    let result = run_ingest(config, normaliser, store, metrics, health, connection, shutdown).await;
    http_stop.cancel();
    let _ = http_task.await;
    result
}

async fn run_ingest(
    config: IngestConfig,
    normaliser: Normaliser,
    store: Arc<Store>,
    metrics: Metrics,
    health: Arc<Health>,
    connection: Arc<Connection>,
    shutdown: CancellationToken,
) -> Result<(), IngestError> {
    let Some(report) = until_ready("migrate", &shutdown, || store.migrate()).await? else { return Ok(()) };
    info!(version = report.version, applied = ?report.applied, backend = report.backend.as_str(), "store: schema ready");
    if let Err(error) = store.maintain(chrono::Utc::now()).await {
        warn!(%error, "store: maintenance failed; will retry");
    }
    let Some(registry) = until_ready("load registry", &shutdown, || store.load_registry()).await? else {
        return Ok(());
    };
    info!(sensors = registry.len(), "registry: loaded");
    health.set_migrated();
    let (registry_tx, registry_rx) = watch::channel(Arc::new(registry));

    let background = CancellationToken::new();
    let tasks = TaskTracker::new();
    tasks.spawn(refresh_registry(
        store.clone(),
        registry_tx,
        Duration::from_secs(config.registry_refresh_s),
        background.clone(),
    ));
    tasks.spawn(maintain(store.clone(), Duration::from_secs(config.maintenance_interval_s), background.clone()));

    let (inbound_tx, inbound_rx) = mpsc::channel(config.inbound_queue_messages as usize);
    let (batch_tx, batch_rx) = mpsc::channel(usize::from(config.writers));
    let (commit_tx, commit_rx) = mpsc::channel(usize::from(config.writers) * 4);
    let session = Session::new(&config)?;
    let seen = Arc::new(SeenSensors::default());
    let writer = Arc::new(Writer {
        store: store.clone(),
        metrics: metrics.clone(),
        health: health.clone(),
        seen: seen.clone(),
        shutdown: shutdown.clone(),
        shutdown_timeout: Duration::from_secs(config.shutdown_timeout_s),
    });
    let limits = BatchLimits {
        max_rows: config.batch_max_rows as usize,
        flush_interval: config.flush_interval(),
        rejected_payload_max_bytes: config.rejected_payload_max_bytes,
    };

    let mqtt = tasks.spawn(
        poll_loop(PollLoop {
            session,
            subscriptions: config.subscriptions(),
            reconnect_max: Duration::from_millis(config.mqtt_reconnect_max_ms.max(100)),
            inbound: inbound_tx,
            committed: commit_rx,
            connection: connection.clone(),
            metrics: metrics.clone(),
            stop_forwarding: shutdown.clone(),
        })
        .instrument(tracing::info_span!("mqtt", client_id = %config.mqtt_client_id)),
    );
    tasks.spawn(
        run_pipeline(inbound_rx, normaliser, registry_rx, batch_tx, limits, metrics.clone())
            .instrument(tracing::info_span!("pipeline")),
    );
    tasks.spawn(
        run_writers(writer, batch_rx, commit_tx, usize::from(config.writers)).instrument(tracing::info_span!("writer")),
    );
    tasks.spawn(touch_sensors(store.clone(), seen.clone(), background.clone()));
    tasks.close();

    shutdown.cancelled().await;
    info!("shutting down: flushing pending batches");
    // The MQTT loop ends once the pipeline and writers have drained and their
    // acks are sent.
    let _ = mqtt.await;
    background.cancel();
    tasks.wait().await;
    // What was heard in the last seconds.
    if let Err(error) = store.touch_sensors(&seen.take()).await {
        warn!(%error, "store: could not record last_seen at shutdown");
    }
    info!("stopped");
    Ok(())
}

/// Retries `step` while the database is unreachable; gives up on errors that
/// retrying cannot fix, or returns `None` if shutdown comes first.
async fn until_ready<T, F, Fut>(what: &str, shutdown: &CancellationToken, mut step: F) -> Result<Option<T>, IngestError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, StoreError>>,
{
    let mut backoff = Duration::from_millis(200);
    loop {
        match step().await {
            Ok(value) => return Ok(Some(value)),
            Err(error) if error.is_transient() => {
                warn!(%error, step = what, retry_in_ms = backoff.as_millis() as u64, "store: database not ready");
            }
            Err(error) => return Err(error.into()),
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = shutdown.cancelled() => return Ok(None),
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

async fn refresh_registry(
    store: Arc<Store>,
    updates: watch::Sender<Arc<citygauge_domain::Registry>>,
    every: Duration,
    stop: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.cancelled() => return,
        }
        match store.load_registry().await {
            Ok(registry) => {
                let _ = updates.send(Arc::new(registry));
            }
            Err(error) => warn!(%error, "registry: refresh failed; keeping the last one"),
        }
    }
}

async fn maintain(store: Arc<Store>, every: Duration, stop: CancellationToken) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.cancelled() => return,
        }
        if let Err(error) = store.maintain(chrono::Utc::now()).await {
            warn!(%error, "store: maintenance failed; will retry");
        }
    }
}

async fn touch_sensors(store: Arc<Store>, seen: Arc<SeenSensors>, stop: CancellationToken) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(TOUCH_INTERVAL) => {}
            _ = stop.cancelled() => return,
        }
        let batch = seen.take();
        if let Err(error) = store.touch_sensors(&batch).await {
            warn!(%error, sensors = batch.len(), "store: could not record last_seen");
        }
    }
}
