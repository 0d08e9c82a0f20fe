//! Start-up, supervision and ordered shutdown of the daemon.
//!
//! Start: validate config, serve HTTP (not ready yet), migrate (waiting for
//! the database if it is down, stopping at once if it refuses us), load the
//! registry, then connect to the broker.
//! Run: every task is supervised; one that fails or ends stops the daemon,
//! naming it ([`Supervisor`]).
//! Stop: the MQTT loop stops taking messages; the pipeline flushes its batch;
//! the writers commit what they can; the MQTT loop sends the last acks and
//! disconnects; last of all the HTTP server stops. All of it within
//! `shutdown_timeout_s` of the stop signal.

use std::sync::Arc;
use std::time::Duration;

use citygauge_domain::Normaliser;
use citygauge_store::{ErrorClass, Store, StoreError};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn, Instrument};

use crate::config::IngestConfig;
use crate::http::{self, Health, HttpState};
use crate::metrics::Metrics;
use crate::mqtt::{orphans, poll_loop, Connection, PollLoop, Session};
use crate::pipeline::{run_pipeline, BatchLimits};
use crate::supervise::{Shutdown, Supervisor};
use crate::writer::{run_writers, SeenSensors, Writer};
use crate::IngestError;

/// How often `first_seen`/`last_seen` are written.
const TOUCH_INTERVAL: Duration = Duration::from_secs(5);
/// How often partitions that writes found missing are made (off the write path).
const PARTITION_CHECK_INTERVAL: Duration = Duration::from_secs(1);
/// How often the registry is reloaded whole rather than by its changes.
const REGISTRY_RELOAD_INTERVAL: Duration = Duration::from_secs(3_600);
/// After the shutdown deadline: for acks of batches committed just before
/// it, and the broker's DISCONNECT.
const SHUTDOWN_SLACK: Duration = Duration::from_secs(1);

/// Runs the daemon until `shutdown` fires (or a task fails), then stops in
/// order.
pub async fn run(
    config: IngestConfig,
    http_listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), IngestError> {
    config.validate()?;
    let normaliser = Normaliser::new(config.normalise_config()?);
    let store = Arc::new(Store::new(config.store_config())?);
    let metrics = Metrics::new();
    let health = Arc::new(Health::new(Duration::from_secs(config.not_ready_after_write_failures_s)));
    let connection = Arc::new(Connection::default());

    let http_stop = CancellationToken::new();
    let http_state = HttpState { metrics: metrics.clone(), health: health.clone(), connection: connection.clone() };
    info!(addr = %http_listener.local_addr()?, "http: serving /metrics /healthz /readyz");
    let mut http_task = tokio::spawn({
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

    // A child: a failing task stops the daemon without touching the caller's token.
    let stop = Arc::new(Shutdown::new(shutdown.child_token(), Duration::from_secs(config.shutdown_timeout_s)));
    let result = run_ingest(config, normaliser, store, metrics, health, connection, stop).await;
    http_stop.cancel();
    // A scraper holding a connection open must not hold the exit up.
    if tokio::time::timeout(Duration::from_secs(1), &mut http_task).await.is_err() {
        http_task.abort();
    }
    result
}

async fn run_ingest(
    config: IngestConfig,
    mut normaliser: Normaliser,
    store: Arc<Store>,
    metrics: Metrics,
    health: Arc<Health>,
    connection: Arc<Connection>,
    stop: Arc<Shutdown>,
) -> Result<(), IngestError> {
    let Some(report) = until_ready("migrate", &stop.token, &metrics, || store.migrate()).await? else {
        return Ok(());
    };
    info!(version = report.version, applied = ?report.applied, backend = report.backend.as_str(), "store: schema ready");
    let maintained = tokio::select! {
        maintained = store.maintain(chrono::Utc::now()) => maintained,
        _ = stop.token.cancelled() => return Ok(()),
    };
    if let Err(error) = maintained {
        metrics.database_error(error.class());
        if error.class() == ErrorClass::Fatal {
            return Err(IngestError::database(error));
        }
        warn!(%error, "store: maintenance failed; will retry");
    }
    let max_pending = config.max_pending_sensors;
    let Some(snapshot) =
        until_ready("load registry", &stop.token, &metrics, || store.registry_snapshot(max_pending)).await?
    else {
        return Ok(());
    };
    let registry = snapshot.registry;
    info!(sensors = registry.len(), pending = registry.pending_count(), "registry: loaded");
    metrics.pending_sensors.set(registry.pending_count() as i64);
    seed_spike_test(&mut normaliser, &store, &stop.token, &metrics).await;
    if stop.token.is_cancelled() {
        return Ok(());
    }
    health.set_migrated();
    let (registry_tx, registry_rx) = watch::channel(Arc::new(registry.clone()));

    let supervisor = Arc::new(Supervisor::new(stop.clone(), health.clone()));
    let (inbound_tx, inbound_rx) = mpsc::channel(config.inbound_queue_messages as usize);
    let (batch_tx, batch_rx) = mpsc::channel(usize::from(config.writers));
    let (commit_tx, commit_rx) = mpsc::channel(usize::from(config.writers) * 4);
    let session = Session::new(&config)?;
    let budget = crate::budget::ByteBudget::new(
        usize::try_from(config.held_payload_budget_bytes).unwrap_or(usize::MAX),
        metrics.held_payload_bytes.clone(),
    );
    // With takeover, committed acks of drained sessions go to their drains
    // (mqtt::orphans); the rest reach the poll loop as before.
    let membership = orphans::member_topic(&config);
    let commit_tx = match membership {
        Some(_) => {
            let (to_router, from_writers) = mpsc::channel(usize::from(config.writers) * 4);
            let routes = Arc::new(orphans::AckRoutes::default());
            supervisor.spawn("ack routing", orphans::route_acks(from_writers, commit_tx, routes.clone()));
            supervisor.spawn(
                "orphans",
                orphans::run_orphans(orphans::Orphans {
                    config: Arc::new(config.clone()),
                    inbound: inbound_tx.clone(),
                    routes,
                    budget: budget.clone(),
                    metrics: metrics.clone(),
                    shutdown: stop.clone(),
                })
                .instrument(tracing::info_span!("orphans")),
            );
            to_router
        }
        None => commit_tx,
    };
    let seen = Arc::new(SeenSensors::default());
    let writer = Arc::new(Writer {
        store: store.clone(),
        metrics: metrics.clone(),
        health: health.clone(),
        seen: seen.clone(),
        shutdown: stop.clone(),
        supervisor: supervisor.clone(),
        sampler: std::sync::Mutex::new(crate::sampler::RejectSampler::new(
            config.rejected_samples_per_topic_per_minute,
            crate::sampler::DEFAULT_MAX_KEYS,
        )),
    });
    let limits = BatchLimits {
        max_rows: config.batch_max_rows as usize,
        flush_interval: config.flush_interval(),
        rejected_payload_max_bytes: config.rejected_payload_max_bytes,
    };

    let background = Background { store: store.clone(), metrics: metrics.clone(), stop: stop.token.clone() };
    supervisor.spawn(
        "registry refresh",
        background.clone().refresh_registry(
            RegistryCopy { registry, watermark: snapshot.watermark, max_pending },
            registry_tx,
            Duration::from_secs(config.registry_refresh_s),
        ),
    );
    supervisor.spawn("maintenance", background.clone().maintain(Duration::from_secs(config.maintenance_interval_s)));
    supervisor.spawn("last-seen", background.clone().touch_sensors(seen.clone()));
    supervisor.spawn(
        "rollups",
        background.clone().materialise_rollups(Duration::from_secs(config.rollup_materialise_interval_s)),
    );
    supervisor.spawn(
        "mqtt",
        poll_loop(PollLoop {
            session,
            subscriptions: config.subscriptions(),
            reconnect_max: Duration::from_millis(config.mqtt_reconnect_max_ms.max(100)),
            inbound: inbound_tx,
            committed: commit_rx,
            connection: connection.clone(),
            metrics: metrics.clone(),
            stop_forwarding: stop.token.clone(),
            shutdown: stop.clone(),
            budget,
            membership,
        })
        .instrument(tracing::info_span!("mqtt", client_id = %config.mqtt_client_id)),
    );
    supervisor.spawn(
        "pipeline",
        async move {
            run_pipeline(inbound_rx, normaliser, registry_rx, batch_tx, limits, metrics.clone()).await;
            Ok(())
        }
        .instrument(tracing::info_span!("pipeline")),
    );
    supervisor.spawn(
        "writer",
        run_writers(writer, batch_rx, commit_tx, usize::from(config.writers)).instrument(tracing::info_span!("writer")),
    );

    stop.token.cancelled().await;
    let deadline = stop.deadline().expect("stopping");
    info!(timeout_s = config.shutdown_timeout_s, "shutting down: flushing pending batches");
    // The MQTT loop ends once the pipeline and writers have drained (or the
    // deadline cut them off) and its last acks are sent.
    if !supervisor.wait(deadline + SHUTDOWN_SLACK).await {
        error!(
            timeout_s = config.shutdown_timeout_s,
            "shutdown: tasks still running past the shutdown timeout; abandoning them (unacknowledged messages are redelivered)"
        );
        supervisor.abort_all();
    }
    // What was heard in the last seconds, if the database still answers
    // (a stalled one gets a moment past the deadline, no more).
    let last = deadline.max(tokio::time::Instant::now() + Duration::from_millis(250));
    match tokio::time::timeout_at(last, store.touch_sensors(&seen.take())).await {
        Ok(Ok(_)) => {}
        Ok(Err(error)) => warn!(%error, "store: could not record last_seen at shutdown"),
        Err(_) => warn!("store: could not record last_seen at shutdown: the database did not answer in time"),
    }
    match supervisor.failure() {
        Some(failure) => Err(failure),
        None => {
            info!("stopped");
            Ok(())
        }
    }
}

/// Retries `step` while the database is unreachable; stops at once on errors
/// that retrying cannot fix, naming the option; `None` if shutdown comes first.
/// Seeds the spike test with each sensor's newest stored good value within
/// the test's window, so the first reading after a restart is judged instead
/// of trusted blindly. Every daemon on a shared subscription seeds the same
/// way from the same rows, so whichever of them receives a sensor's next
/// reading judges it against the same baseline. What this does not give:
/// readings still in flight (received by another daemon, not yet committed)
/// are not seen, and after start each daemon's state follows only the readings
/// it receives itself; a sensor whose readings alternate between daemons is
/// judged by each against the last good value that daemon saw (the broker
/// orders a shared subscription per member, not per sensor). A failure here
/// is not fatal: the daemon starts unseeded, as before.
async fn seed_spike_test(normaliser: &mut Normaliser, store: &Store, shutdown: &CancellationToken, metrics: &Metrics) {
    let since = chrono::Utc::now() - citygauge_domain::quality::SPIKE_WINDOW;
    match until_ready("seed spike test", shutdown, metrics, || store.last_good_values(since)).await {
        Ok(Some(seeds)) => {
            info!(values = seeds.len(), "quality: spike test seeded from stored good values");
            normaliser.seed_spikes(seeds.iter().map(|s| (s.sensor_id.as_str(), s.field, s.ts, s.value)));
        }
        Ok(None) => {}
        Err(error) => warn!(%error, "quality: spike test not seeded; first readings are trusted"),
    }
}

async fn until_ready<T, F, Fut>(
    what: &str,
    shutdown: &CancellationToken,
    metrics: &Metrics,
    mut step: F,
) -> Result<Option<T>, IngestError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, StoreError>>,
{
    let mut backoff = Duration::from_millis(200);
    loop {
        let result = tokio::select! {
            result = step() => result,
            _ = shutdown.cancelled() => return Ok(None),
        };
        match result {
            Ok(value) => return Ok(Some(value)),
            Err(error) => {
                metrics.database_error(error.class());
                if error.class() != ErrorClass::Transient {
                    return Err(IngestError::database(error));
                }
                warn!(%error, step = what, retry_in_ms = backoff.as_millis() as u64, "store: database not ready");
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = shutdown.cancelled() => return Ok(None),
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

/// The registry task's own copy of the registry, and where its next
/// incremental read starts.
struct RegistryCopy {
    registry: citygauge_domain::Registry,
    watermark: chrono::DateTime<chrono::Utc>,
    max_pending: usize,
}

/// What the background tasks share. Their work is not on the data path: at
/// the stop signal they abandon it at once, even mid-query, so a stalled
/// database cannot hold the shutdown up.
#[derive(Clone)]
struct Background {
    store: Arc<Store>,
    metrics: Metrics,
    stop: CancellationToken,
}

impl Background {
    /// Runs `call` unless stopping first: `None` when stopping. A failure is
    /// counted; a fatal one ends the task (and so the daemon).
    async fn call<T>(
        &self,
        what: &str,
        call: impl std::future::Future<Output = Result<T, StoreError>>,
    ) -> Result<Option<Result<T, StoreError>>, IngestError> {
        let result = tokio::select! {
            result = call => result,
            _ = self.stop.cancelled() => return Ok(None),
        };
        if let Err(error) = &result {
            self.metrics.database_error(error.class());
            if error.class() == ErrorClass::Fatal {
                return Err(IngestError::database(result.err().expect("an error")));
            }
            warn!(%error, "store: {what} failed; will retry");
        }
        Ok(Some(result))
    }

    async fn sleep(&self, every: Duration) -> bool {
        tokio::select! {
            _ = tokio::time::sleep(every) => true,
            _ = self.stop.cancelled() => false,
        }
    }

    /// Reads the sensors added or changed since the last refresh into the
    /// registry (a full reload only every [`REGISTRY_RELOAD_INTERVAL`], which
    /// also forgets sensors deleted by hand), and hands the pipeline a new
    /// snapshot when something changed.
    async fn refresh_registry(
        self,
        mut copy: RegistryCopy,
        updates: watch::Sender<Arc<citygauge_domain::Registry>>,
        every: Duration,
    ) -> Result<(), IngestError> {
        let mut next_reload = tokio::time::Instant::now() + REGISTRY_RELOAD_INTERVAL;
        while self.sleep(every).await {
            let changed = if tokio::time::Instant::now() >= next_reload {
                let Some(Ok(snapshot)) =
                    self.call("registry reload", self.store.registry_snapshot(copy.max_pending)).await?
                else {
                    continue;
                };
                next_reload = tokio::time::Instant::now() + REGISTRY_RELOAD_INTERVAL;
                (copy.registry, copy.watermark) = (snapshot.registry, snapshot.watermark);
                true
            } else {
                let Some(Ok(changes)) =
                    self.call("registry refresh", self.store.registry_changes(copy.watermark)).await?
                else {
                    continue;
                };
                copy.watermark = changes.watermark;
                let applied = copy.registry.apply(changes.entries, copy.max_pending);
                // Debug only: rows changed in the last minute are read again
                // at every refresh, and so would their warning be.
                if applied.skipped > 0 {
                    debug!(
                        skipped = applied.skipped,
                        max_pending_sensors = copy.max_pending,
                        "registry: more pending sensors in the database than max_pending_sensors; the rest are treated as unknown"
                    );
                }
                applied.changed > 0
            };
            self.metrics.pending_sensors.set(copy.registry.pending_count() as i64);
            if changed {
                // The pipeline keeps its snapshot until it takes this one: a
                // copy, made only when something changed.
                let _ = updates.send(Arc::new(copy.registry.clone()));
            }
        }
        Ok(())
    }

    /// Full maintenance every `every`; in between, the partitions writes
    /// found missing, within a second or so.
    async fn maintain(self, every: Duration) -> Result<(), IngestError> {
        let mut next_full = tokio::time::Instant::now() + every;
        while self.sleep(PARTITION_CHECK_INTERVAL.min(every)).await {
            if tokio::time::Instant::now() >= next_full {
                next_full = tokio::time::Instant::now() + every;
                self.call("maintenance", self.store.maintain(chrono::Utc::now())).await?;
            }
            if self.store.partitions_wanted() {
                self.call("making partitions", self.store.make_wanted_partitions()).await?;
            }
        }
        Ok(())
    }

    /// Native backend: materialises closed rollup buckets behind the
    /// watermark (see `citygauge_store::rollups`), so the rollup views
    /// aggregate only the last few minutes at query time.
    async fn materialise_rollups(self, every: Duration) -> Result<(), IngestError> {
        while self.sleep(every).await {
            let upto = chrono::Utc::now() - citygauge_store::rollups::MATERIALISE_SETTLE;
            self.call("materialising rollups", self.store.materialise_rollups(upto)).await?;
        }
        Ok(())
    }

    async fn touch_sensors(self, seen: Arc<SeenSensors>) -> Result<(), IngestError> {
        while self.sleep(TOUCH_INTERVAL).await {
            let batch = seen.take();
            self.call("recording last_seen", self.store.touch_sensors(&batch)).await?;
        }
        Ok(())
    }
}
