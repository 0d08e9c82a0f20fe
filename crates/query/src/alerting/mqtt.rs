//! Alert changes published to the broker (`--alerts-mqtt-url`), for gateways
//! that prefer MQTT to webhooks.
//!
//! - Each stored message (`alert_messages`, in id order, those with no
//!   `mqtt_published_at`) is published at QoS 1 on
//!   `<prefix>/<rule>/<subject>` with the webhook body; Alert and Update are
//!   retained (a gateway that connects later sees every active alert); a
//!   Cancel is published, then the retained message is cleared (an empty
//!   retained payload).
//! - Test and Exercise messages go under `<prefix>/<test|exercise>/...`
//!   instead, so a gateway subscribed to a rule's topics never takes a drill
//!   for a real warning; System and Draft are not published.
//! - A message is marked published only after the broker's PUBACK for every
//!   packet it needs, one message at a time: a restart resumes from the
//!   first unmarked one (at least once, in order).
//! - One replica publishes at a time (a session advisory lock on a dedicated
//!   connection), or two would interleave and could leave a stale retained
//!   alert after a Cancel.

use std::sync::Arc;
use std::time::Duration;

use citygauge_alerts::{Message, MsgStatus, MsgType};
use deadpool_postgres::Pool;
use rumqttc::{AsyncClient, Event, EventLoop, Packet, QoS};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::alerting::{delivery, webhooks, AlertingConfig};
use crate::metrics::Metrics;
use crate::QueryError;

/// Advisory lock key of the MQTT publisher ("cgmqtt").
pub const LOCK_KEY: i64 = 0x6367_6d71_7474;
/// How often an idle publisher (or a standby replica) looks again.
const POLL: Duration = Duration::from_secs(1);
/// The channel the engine's writer notifies on every alert change.
const ALERTS_CHANNEL: &str = "citygauge_alerts";

/// Where a message goes: its topic, and whether it is published at all.
pub fn topic(prefix: &str, message: &Message) -> Option<String> {
    // Topic levels cannot hold wildcards; `/` would add levels.
    let clean = |s: &str| s.replace(['+', '#', '/'], "_");
    let base = format!("{}/{}", prefix.trim_end_matches('/'), message.key.rule.as_str());
    let rest = clean(&message.key.subject);
    match message.status {
        MsgStatus::Actual => Some(format!("{base}/{rest}")),
        MsgStatus::Test | MsgStatus::Exercise => Some(format!(
            "{}/{}/{}/{rest}",
            prefix.trim_end_matches('/'),
            message.status.as_str().to_ascii_lowercase(),
            message.key.rule.as_str()
        )),
        MsgStatus::System | MsgStatus::Draft => None,
    }
}

/// The packets a message needs: `(payload, retain)` in order.
pub fn packets(message: &Message, body: Vec<u8>) -> Vec<(Vec<u8>, bool)> {
    match message.msg_type {
        MsgType::Alert | MsgType::Update => vec![(body, true)],
        MsgType::Cancel => vec![(body, false), (Vec::new(), true)],
    }
}

/// Publishes alert messages to `--alerts-mqtt-url` until `stop`.
pub async fn run(
    pool: Pool,
    database: citygauge_store::Database,
    config: Arc<AlertingConfig>,
    metrics: Metrics,
    stop: CancellationToken,
) {
    let Some(url) = config.alerts_mqtt_url.clone() else {
        stop.cancelled().await;
        return;
    };
    let (host, port) = match citygauge_ingest::config::parse_mqtt_url(&url) {
        Ok(address) => address,
        Err(error) => {
            warn!(%error, "alert mqtt: bad --alerts-mqtt-url; not publishing");
            stop.cancelled().await;
            return;
        }
    };
    let wake = Arc::new(Notify::new());
    let listener = tokio::spawn(delivery::listen(
        database.clone(),
        &[webhooks::CHANNEL, ALERTS_CHANNEL],
        wake.clone(),
        stop.clone(),
    ));
    let publisher = Publisher { pool, config, metrics, host, port, wake };
    loop {
        // Hold the lock for as long as its connection lives.
        let lock = match publisher.take_lock(&database, &stop).await {
            Some(lock) => lock,
            None => break,
        };
        info!("alert mqtt: publishing");
        publisher.publish_while(&lock, &stop).await;
        drop(lock);
        if stop.is_cancelled() {
            break;
        }
    }
    listener.abort();
}

struct Publisher {
    pool: Pool,
    config: Arc<AlertingConfig>,
    metrics: Metrics,
    host: String,
    port: u16,
    wake: Arc<Notify>,
}

/// A message on its way: how many PUBACKs it still waits for.
struct InFlight {
    id: i64,
    acks_left: usize,
}

impl Publisher {
    /// Waits until this replica holds the publisher lock; `None` at stop.
    async fn take_lock(
        &self,
        database: &citygauge_store::Database,
        stop: &CancellationToken,
    ) -> Option<tokio_postgres::Client> {
        loop {
            match database.connect().await {
                Ok((client, connection)) => {
                    tokio::spawn(async move {
                        let _ = connection.await;
                    });
                    loop {
                        match client.query_one("SELECT pg_try_advisory_lock($1)", &[&LOCK_KEY]).await {
                            Ok(row) if row.get::<_, bool>(0) => return Some(client),
                            Ok(_) => {}
                            Err(error) => {
                                debug!(%error, "alert mqtt: lock connection lost");
                                break;
                            }
                        }
                        tokio::select! {
                            _ = tokio::time::sleep(POLL) => {}
                            _ = stop.cancelled() => return None,
                        }
                    }
                }
                Err(error) => debug!(%error, "alert mqtt: cannot connect to the database"),
            }
            tokio::select! {
                _ = tokio::time::sleep(POLL) => {}
                _ = stop.cancelled() => return None,
            }
        }
    }

    fn session(&self) -> (AsyncClient, EventLoop) {
        crate::mqtt_out::session("citygauge-alerts", &self.host, self.port, 16)
    }

    /// Publishes while `lock`'s connection lives and until `stop`,
    /// reconnecting to the broker with backoff.
    async fn publish_while(&self, lock: &tokio_postgres::Client, stop: &CancellationToken) {
        let mut backoff = crate::mqtt_out::BACKOFF_START;
        let (mut client, mut events) = self.session();
        let mut connected = false;
        let mut in_flight: Option<InFlight> = None;
        let prefix = self.config.alerts_mqtt_topic_prefix.clone();
        loop {
            if lock.is_closed() {
                warn!("alert mqtt: lost the publisher lock's connection");
                return;
            }
            if connected && in_flight.is_none() {
                match self.next(&client, &prefix).await {
                    Ok(next) => in_flight = next,
                    Err(error) => warn!(%error, "alert mqtt: reading the outbox failed"),
                }
                if let Some(InFlight { id, acks_left: 0 }) = in_flight {
                    // Nothing to send (System/Draft): mark it and go on.
                    if let Err(error) = self.mark(id).await {
                        warn!(%error, "alert mqtt: marking a message failed");
                    }
                    in_flight = None;
                    continue;
                }
            }
            let idle = in_flight.is_none();
            tokio::select! {
                event = events.poll() => match event {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        connected = true;
                        backoff = crate::mqtt_out::BACKOFF_START;
                        debug!("alert mqtt: connected");
                    }
                    Ok(Event::Incoming(Packet::PubAck(_))) => {
                        if let Some(flight) = &mut in_flight {
                            flight.acks_left = flight.acks_left.saturating_sub(1);
                            if flight.acks_left == 0 {
                                let id = flight.id;
                                in_flight = None;
                                self.metrics.mqtt_published.inc();
                                if let Err(error) = self.mark(id).await {
                                    // Published again later: at least once.
                                    warn!(%error, "alert mqtt: marking a message failed");
                                }
                            }
                        }
                    }
                    Ok(_) => {}
                    Err(error) => {
                        if connected {
                            warn!(%error, "alert mqtt: broker connection lost; reconnecting");
                        } else {
                            debug!(%error, "alert mqtt: cannot reach the broker");
                        }
                        connected = false;
                        // A fresh session: the unacknowledged message is sent again from the outbox.
                        in_flight = None;
                        tokio::select! {
                            _ = tokio::time::sleep(backoff) => {}
                            _ = stop.cancelled() => return,
                        }
                        backoff = (backoff * 2).min(crate::mqtt_out::BACKOFF_MAX);
                        (client, events) = self.session();
                    }
                },
                _ = self.wake.notified(), if idle => {}
                _ = tokio::time::sleep(POLL), if idle => {}
                _ = stop.cancelled() => {
                    let _ = client.try_disconnect();
                    return;
                }
            }
        }
    }

    /// Publishes the oldest unpublished message; `acks_left: 0` when it
    /// needs no packet.
    async fn next(&self, client: &AsyncClient, prefix: &str) -> Result<Option<InFlight>, QueryError> {
        let db = self.pool.get().await?;
        let Some(row) = db
            .query_opt("SELECT id, body FROM alert_messages WHERE mqtt_published_at IS NULL ORDER BY id LIMIT 1", &[])
            .await?
        else {
            return Ok(None);
        };
        let id: i64 = row.get(0);
        let message: Message = match serde_json::from_value(row.get(1)) {
            Ok(message) => message,
            Err(error) => {
                // Never publishable: skip it rather than block every later one.
                warn!(message = id, %error, "alert mqtt: unreadable message skipped");
                return Ok(Some(InFlight { id, acks_left: 0 }));
            }
        };
        let Some(topic) = topic(prefix, &message) else {
            return Ok(Some(InFlight { id, acks_left: 0 }));
        };
        let body = webhooks::body(&message, webhooks::public_url(&self.config));
        let packets = packets(&message, body);
        let acks_left = packets.len();
        for (payload, retain) in packets {
            client
                .publish(topic.as_str(), QoS::AtLeastOnce, retain, payload)
                .await
                .map_err(|e| QueryError::Internal(format!("mqtt publish: {e}")))?;
        }
        Ok(Some(InFlight { id, acks_left }))
    }

    async fn mark(&self, id: i64) -> Result<(), QueryError> {
        let db = self.pool.get().await?;
        db.execute("UPDATE alert_messages SET mqtt_published_at = now() WHERE id = $1", &[&id]).await?;
        Ok(())
    }
}
