//! Keeping the cache current from the change stream (Contract 2): a
//! dedicated connection LISTENs on the readings, sensors and alerts channels.
//!
//! Order on every (re)connect: LISTEN first, then load the cache, then apply
//! what was announced meanwhile (applying is idempotent: latest-wins by
//! timestamp, rain and particulates keyed by timestamp), so nothing falls in
//! between. On a lost connection: reconnect with backoff, rebuild, and tell
//! stream clients `reset`, since what happened in between was not seen.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use citygauge_store::changes::{self, ChangedReading, ALERTS_CHANNEL, READINGS_CHANNEL, SENSORS_CHANNEL};
use deadpool_postgres::Pool;
use futures_util::StreamExt;
use tokio::sync::{mpsc, Notify};
use tokio_postgres::AsyncMessage;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::{load, view, Cache};
use crate::health_api::Health;
use crate::metrics::Metrics;
use crate::stream_api::hub::{Hub, StreamReading, StreamReadingView};
use crate::QueryError;

/// Notifications buffered between the connection and the applier; when it
/// is full the connection is not read and PostgreSQL queues them instead.
const NOTIFICATION_QUEUE: usize = 4_096;

#[derive(Debug, Clone)]
pub struct Listener {
    pub database: citygauge_store::Database,
    pub pool: Pool,
    pub cache: Arc<Cache>,
    pub hub: Arc<Hub>,
    pub metrics: Metrics,
    pub health: Arc<Health>,
    /// Woken when the registry changed.
    pub registry_changed: Arc<Notify>,
    /// The SensorThings MQTT publisher's queue, when it runs.
    pub sta_mqtt: Option<Arc<crate::sta_mqtt::Outbox>>,
}

impl Listener {
    /// Runs until `stop`; reconnects and rebuilds whenever the connection is lost.
    pub async fn run(self, stop: CancellationToken) {
        let mut backoff = Duration::from_millis(200);
        let mut first = true;
        loop {
            match self.session(&stop, first).await {
                Ok(()) => return, // stopped
                Err(error) => {
                    self.health.change_stream.store(false, Ordering::SeqCst);
                    warn!(%error, retry_in_ms = backoff.as_millis() as u64, "change stream: lost; reconnecting");
                }
            }
            if self.cache.is_built() {
                first = false;
            }
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = stop.cancelled() => return,
            }
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    }

    /// One connection's life: Ok when stopped, Err when the connection failed.
    async fn session(&self, stop: &CancellationToken, first: bool) -> Result<(), QueryError> {
        let (client, mut connection) = self.database.connect().await?;
        let (tx, mut rx) = mpsc::channel(NOTIFICATION_QUEUE);
        let pump = tokio::spawn(async move {
            let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
            while let Some(message) = messages.next().await {
                match message {
                    Ok(AsyncMessage::Notification(n)) => {
                        if tx.send(n).await.is_err() {
                            return Ok(());
                        }
                    }
                    Ok(_) => {}
                    Err(error) => return Err(error),
                }
            }
            Ok(())
        });
        let result = async {
            client
                .batch_execute(&format!("LISTEN {READINGS_CHANNEL}; LISTEN {SENSORS_CHANNEL}; LISTEN {ALERTS_CHANNEL}"))
                .await?;
            let data = load::everything(&self.pool, self.cache.tz).await?;
            let sensors = data.sensors.len();
            let newest = data
                .sensors
                .values()
                .filter_map(|e| e.latest.as_ref().map(|l| l.ts))
                .filter(|t| *t <= Utc::now())
                .max();
            self.cache.replace(data);
            self.cache.set_last_reading_at(newest);
            if !first {
                self.hub.reset();
            }
            self.health.change_stream.store(true, Ordering::SeqCst);
            info!(sensors, "cache: built; following the change stream");
            loop {
                tokio::select! {
                    n = rx.recv() => match n {
                        Some(n) => self.handle(n.channel(), n.payload()),
                        None => return Err(QueryError::Unavailable("the change-stream connection closed".into())),
                    },
                    _ = stop.cancelled() => return Ok(()),
                }
            }
        }
        .await;
        pump.abort();
        match pump.await {
            Ok(Err(error)) if result.is_err() => Err(error.into()),
            _ => result,
        }
    }

    fn handle(&self, channel: &str, payload: &str) {
        match channel {
            READINGS_CHANNEL => match changes::decode(payload) {
                Ok(readings) => self.apply(&readings),
                Err(error) => warn!(%error, "change stream: unreadable readings notification"),
            },
            SENSORS_CHANNEL => self.registry_changed.notify_one(),
            ALERTS_CHANNEL => match serde_json::from_str::<serde_json::Value>(payload) {
                Ok(alert) => self.hub.alert(alert),
                Err(error) => warn!(%error, "change stream: unreadable alert notification"),
            },
            _ => {}
        }
    }

    /// Applies readings to the cache and hands what changed to stream clients.
    pub fn apply(&self, readings: &[ChangedReading]) {
        let now = Utc::now();
        self.metrics.change_events.inc_by(readings.len() as u64);
        let newest = readings.iter().map(|r| r.ts).filter(|t| *t <= now).max();
        self.cache.note_readings(readings.len() as u64, newest, now);
        let tz = self.cache.tz;
        let (stale_factor, wet_min_cm) = (self.cache.stale_factor, self.cache.wet_min_cm);
        // Under the write lock only what needs the data; serialised after.
        let views = self.cache.update(|data| {
            let mut out = Vec::with_capacity(readings.len());
            for r in readings {
                // A late reading is still news to a chart; state and level
                // are the sensor's current ones either way.
                data.apply(r, now, tz);
                let Some(entry) = data.sensors.get(&r.sensor_id) else { continue };
                out.push((
                    r.kind,
                    StreamReadingView {
                        sensor_id: r.sensor_id.clone(),
                        kind: r.kind.as_str(),
                        district: entry.meta.district.clone(),
                        ts: view::rfc3339(r.ts),
                        quality: r.quality.as_str(),
                        values: r.values.clone(),
                        state: view::state(entry, now, stale_factor),
                        level: view::level(entry, now, wet_min_cm, None),
                    },
                ));
            }
            out
        });
        self.hub.readings(views.iter().map(|(kind, v)| StreamReading::new(*kind, v)).collect());
        if let Some(outbox) = &self.sta_mqtt {
            outbox.push(readings);
        }
    }
}

/// Reloads the registry when told it changed (at most once a second) and
/// every `every` regardless.
pub async fn refresh_registry(
    pool: Pool,
    cache: Arc<Cache>,
    changed: Arc<Notify>,
    every: Duration,
    stop: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = changed.notified() => {
                // Registrations come in bursts (a new gateway's sensors).
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = stop.cancelled() => return,
                }
            }
            _ = stop.cancelled() => return,
        }
        if !cache.is_built() {
            continue;
        }
        match load::refresh_registry(&pool, &cache).await {
            Ok(count) => tracing::debug!(sensors = count, "registry: refreshed"),
            Err(error) => warn!(%error, "registry: refresh failed; keeping the last one"),
        }
    }
}
