//! The broker side: one session (MQTT 3.1.1 or 5) with manual acks, and the
//! poll loop that feeds the pipeline.
//!
//! The poll loop does nothing slow: it awaits only the bounded send into the
//! pipeline. When that queue is full the loop stops reading the socket, TCP
//! pushes back, and the broker queues for our persistent session.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use rumqttc::v5;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use std::collections::VecDeque;

use crate::acks::{AckSequencer, AckToken};
use crate::config::{parse_mqtt_url, IngestConfig, MqttProtocol};
use crate::metrics::Metrics;
use crate::pipeline::sleep_until;
use crate::supervise::Shutdown;
use crate::IngestError;

/// A message on its way to the database.
#[derive(Debug)]
pub(crate) struct Inbound {
    pub topic: String,
    pub payload: Bytes,
    /// The MQTT 5 content type (`application/senml+json`...), when set.
    pub content_type: Option<String>,
    pub received_at: DateTime<Utc>,
    pub received: Instant,
    /// `None` for QoS 0 messages, which need no acknowledgement.
    pub ack: Option<AckToken>,
}

/// What a poll returned, the same for both protocol versions.
enum Event {
    Connected {
        session_present: bool,
    },
    /// A SUBACK: whether every filter in it was granted.
    Subscribed {
        granted: bool,
    },
    Publish {
        topic: String,
        payload: Bytes,
        content_type: Option<String>,
        pkid: u16,
        qos: u8,
    },
    Other,
}

enum EventLoop {
    V4(Box<rumqttc::EventLoop>),
    V5(Box<v5::EventLoop>),
}

/// The handle acks and subscriptions go through.
#[derive(Clone)]
pub(crate) enum Client {
    V4(rumqttc::AsyncClient),
    V5(v5::AsyncClient),
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Client::V4(_) => "Client::V4",
            Client::V5(_) => "Client::V5",
        })
    }
}

impl Client {
    /// Queues a PUBACK without waiting (the acker must never block the
    /// pipeline behind a full request queue); `false` when it could not.
    pub fn try_ack(&self, token: &AckToken) -> bool {
        match self {
            Client::V4(c) => {
                let mut publish = rumqttc::Publish::new("", qos_v4(token.qos), Bytes::new());
                publish.pkid = token.pkid;
                c.try_ack(&publish).is_ok()
            }
            Client::V5(c) => {
                let mut publish = v5::mqttbytes::v5::Publish::new("", qos_v5(token.qos), Bytes::new(), None);
                publish.pkid = token.pkid;
                c.try_ack(&publish).is_ok()
            }
        }
    }

    fn try_subscribe(&self, filter: &str) -> bool {
        match self {
            Client::V4(c) => c.try_subscribe(filter, rumqttc::QoS::AtLeastOnce).is_ok(),
            Client::V5(c) => c.try_subscribe(filter, v5::mqttbytes::QoS::AtLeastOnce).is_ok(),
        }
    }

    async fn disconnect(&self) {
        let _ = match self {
            Client::V4(c) => c.disconnect().await.map_err(|_| ()),
            Client::V5(c) => c.disconnect().await.map_err(|_| ()),
        };
    }
}

fn qos_v4(qos: u8) -> rumqttc::QoS {
    match qos {
        2 => rumqttc::QoS::ExactlyOnce,
        _ => rumqttc::QoS::AtLeastOnce,
    }
}

fn qos_v5(qos: u8) -> v5::mqttbytes::QoS {
    match qos {
        2 => v5::mqttbytes::QoS::ExactlyOnce,
        _ => v5::mqttbytes::QoS::AtLeastOnce,
    }
}

/// Room for every ack of a full receive window plus subscriptions, so queuing
/// an ack almost never finds the request queue full.
const REQUEST_QUEUE: usize = 70_000;

pub(crate) struct Session {
    events: EventLoop,
    pub client: Client,
}

impl Session {
    pub fn new(config: &IngestConfig) -> Result<Session, IngestError> {
        let (host, port) = parse_mqtt_url(&config.mqtt_url)?;
        let keep_alive = Duration::from_secs(config.mqtt_keep_alive_s.max(5));
        let session = match config.mqtt_protocol {
            MqttProtocol::V311 => {
                let mut options = rumqttc::MqttOptions::new(&config.mqtt_client_id, host, port);
                options
                    .set_keep_alive(keep_alive)
                    .set_clean_session(false)
                    .set_manual_acks(true)
                    .set_request_channel_capacity(REQUEST_QUEUE)
                    .set_max_packet_size(config.mqtt_max_packet_bytes as usize, config.mqtt_max_packet_bytes as usize);
                if let (Some(user), Some(password)) = (&config.mqtt_username, &config.mqtt_password) {
                    options.set_credentials(user, password);
                }
                let (client, events) = rumqttc::AsyncClient::new(options, REQUEST_QUEUE);
                Session { events: EventLoop::V4(Box::new(events)), client: Client::V4(client) }
            }
            MqttProtocol::V5 => {
                let mut options = v5::MqttOptions::new(&config.mqtt_client_id, host, port);
                options
                    .set_keep_alive(keep_alive)
                    .set_clean_start(false)
                    .set_session_expiry_interval(Some(config.mqtt_session_expiry_s))
                    .set_receive_maximum(Some(config.mqtt_receive_maximum.max(1)))
                    .set_max_packet_size(Some(config.mqtt_max_packet_bytes))
                    .set_manual_acks(true)
                    .set_request_channel_capacity(REQUEST_QUEUE);
                if let (Some(user), Some(password)) = (&config.mqtt_username, &config.mqtt_password) {
                    options.set_credentials(user, password);
                }
                let (client, events) = v5::AsyncClient::new(options, REQUEST_QUEUE);
                Session { events: EventLoop::V5(Box::new(events)), client: Client::V5(client) }
            }
        };
        Ok(session)
    }

    async fn poll(&mut self) -> Result<Event, String> {
        match &mut self.events {
            EventLoop::V4(events) => match events.poll().await.map_err(|e| e.to_string())? {
                rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(ack)) => {
                    Ok(Event::Connected { session_present: ack.session_present })
                }
                rumqttc::Event::Incoming(rumqttc::Packet::Publish(p)) => Ok(Event::Publish {
                    topic: p.topic,
                    payload: p.payload,
                    content_type: None,
                    pkid: p.pkid,
                    qos: p.qos as u8,
                }),
                rumqttc::Event::Incoming(rumqttc::Packet::SubAck(ack)) => Ok(Event::Subscribed {
                    granted: ack.return_codes.iter().all(|c| matches!(c, rumqttc::SubscribeReasonCode::Success(_))),
                }),
                _ => Ok(Event::Other),
            },
            EventLoop::V5(events) => match events.poll().await.map_err(|e| e.to_string())? {
                v5::Event::Incoming(v5::Incoming::ConnAck(ack)) => {
                    Ok(Event::Connected { session_present: ack.session_present })
                }
                v5::Event::Incoming(v5::Incoming::SubAck(ack)) => Ok(Event::Subscribed {
                    granted: ack
                        .return_codes
                        .iter()
                        .all(|c| matches!(c, v5::mqttbytes::v5::SubscribeReasonCode::Success(_))),
                }),
                v5::Event::Incoming(v5::Incoming::Publish(mut p)) => Ok(Event::Publish {
                    topic: String::from_utf8_lossy(&p.topic).into_owned(),
                    content_type: content_type(&mut p),
                    payload: p.payload,
                    pkid: p.pkid,
                    qos: p.qos as u8,
                }),
                _ => Ok(Event::Other),
            },
        }
    }
}

/// Longest content type kept: the property is the publisher's, and only a
/// few media types mean anything to the decoder.
const MAX_CONTENT_TYPE_BYTES: usize = 128;

/// Takes the MQTT 5 content type out of a publish (it tells SenML from other
/// JSON on any topic); an absurdly long one is dropped, not kept.
fn content_type(publish: &mut v5::mqttbytes::v5::Publish) -> Option<String> {
    let content_type = publish.properties.as_mut()?.content_type.take()?;
    (content_type.len() <= MAX_CONTENT_TYPE_BYTES).then_some(content_type)
}

/// The connection's state, shared with `/readyz`. The epoch changes both when
/// a connection is lost and when a new one is made, so an ack of an earlier
/// connection can never be sent on a later one (the broker redelivers those
/// messages there; storing them again is a no-op).
#[derive(Debug, Default)]
pub(crate) struct Connection {
    pub epoch: AtomicU64,
    pub connected: AtomicBool,
    /// Every subscription of this session is acknowledged by the broker: only
    /// then does the broker queue the city's messages for us.
    pub subscribed: AtomicBool,
}

/// What the poll loop is handed.
pub(crate) struct PollLoop {
    pub session: Session,
    pub subscriptions: Vec<String>,
    pub reconnect_max: Duration,
    pub inbound: mpsc::Sender<Inbound>,
    /// Ack tokens of committed batches, from the writers.
    pub committed: mpsc::Receiver<Vec<AckToken>>,
    pub connection: Arc<Connection>,
    pub metrics: Metrics,
    /// Fires at shutdown: stop taking messages; keep acking until the writers
    /// are done (`committed` closes), then disconnect.
    pub stop_forwarding: CancellationToken,
    /// The shutdown deadline, which bounds the final disconnect too.
    pub shutdown: Arc<Shutdown>,
}

/// When the unacknowledged messages were received, oldest first, for
/// `citygauge_ingest_oldest_unacked_age_seconds`. Acks are released in
/// arrival order, so the oldest is always at the front.
#[derive(Debug, Default)]
struct UnackedAges {
    /// This connection's messages, in arrival (= ack) order.
    current: VecDeque<Instant>,
    /// The oldest of an earlier connection's: the broker redelivers those on
    /// the new one, so they are still waiting, since then.
    carried: Option<Instant>,
}

impl UnackedAges {
    fn received(&mut self, at: Instant) {
        self.current.push_back(at);
    }

    /// `n` acks of this connection were released (the oldest `n`).
    fn released(&mut self, n: usize) {
        if n > 0 {
            self.current.drain(..n.min(self.current.len()));
            // The redelivered messages come first on the new connection:
            // acks released on it mean they are stored.
            self.carried = None;
        }
    }

    /// The connection changed: its unacked messages will come again.
    fn new_connection(&mut self) {
        self.carried = self.oldest();
        self.current.clear();
    }

    fn oldest(&self) -> Option<Instant> {
        match (self.carried, self.current.front().copied()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// The MQTT side of the daemon, in one task: it polls the broker, hands
/// publishes to the pipeline, and acknowledges committed messages in arrival
/// order. One task, so that acks and reconnects are ordered with each other.
pub(crate) async fn poll_loop(mut p: PollLoop) -> Result<(), IngestError> {
    let mut inbound = Some(p.inbound.clone());
    drop(p.inbound);
    let mut ages = UnackedAges::default();
    let mut sequencer = AckSequencer::default();
    let mut unsent: VecDeque<AckToken> = VecDeque::new();
    let mut commits_open = true;
    let mut seq: u64 = 0;
    let mut subscribed_once = false;
    let mut pending_subacks = 0usize;
    let mut backoff = Duration::from_millis(100);
    let mut reconnect_at: Option<tokio::time::Instant> = None;
    loop {
        send_acks(&p.session.client, &p.connection, &mut unsent, &p.metrics);
        if !commits_open && unsent.is_empty() {
            break;
        }
        tokio::select! {
            event = p.session.poll(), if reconnect_at.is_none() => match event {
                Ok(Event::Connected { session_present }) => {
                    let epoch = p.connection.epoch.fetch_add(1, Ordering::SeqCst) + 1;
                    ages.new_connection();
                    p.metrics.set_oldest_unacked(ages.oldest());
                    p.connection.connected.store(true, Ordering::SeqCst);
                    seq = 0;
                    backoff = Duration::from_millis(100);
                    info!(epoch, session_present, "mqtt: connected");
                    // A kept session keeps its subscriptions; subscribe anyway on
                    // the first connection in case the filters changed.
                    if !session_present || !subscribed_once {
                        p.connection.subscribed.store(false, Ordering::SeqCst);
                        pending_subacks = 0;
                        for filter in &p.subscriptions {
                            if p.session.client.try_subscribe(filter) {
                                pending_subacks += 1;
                            } else {
                                warn!(filter, "mqtt: could not queue subscription");
                            }
                        }
                        subscribed_once = true;
                    }
                }
                Ok(Event::Subscribed { granted }) => {
                    if !granted {
                        warn!(subscriptions = ?p.subscriptions, "mqtt: the broker refused a subscription");
                    }
                    pending_subacks = pending_subacks.saturating_sub(1);
                    if pending_subacks == 0 && granted {
                        p.connection.subscribed.store(true, Ordering::SeqCst);
                        info!(filters = p.subscriptions.len(), "mqtt: subscribed");
                    }
                }
                Ok(Event::Publish { topic, payload, content_type, pkid, qos }) => {
                    let Some(tx) = inbound.clone() else {
                        // Shutting down: not acked, so the broker keeps it for next time.
                        continue;
                    };
                    p.metrics.messages_received.inc();
                    let received = Instant::now();
                    let ack = (qos > 0).then(|| {
                        let token = AckToken { epoch: p.connection.epoch.load(Ordering::SeqCst), seq, pkid, qos };
                        seq += 1;
                        p.metrics.unacked_messages.inc();
                        ages.received(received);
                        if ages.current.len() == 1 {
                            p.metrics.set_oldest_unacked(ages.oldest());
                        }
                        token
                    });
                    let message = Inbound { topic, payload, content_type, received_at: Utc::now(), received, ack };
                    // With MQTT 5 the queue holds a whole receive window, so this
                    // rarely waits; when it does, committed batches are still
                    // acknowledged, or the writers would wait on us.
                    let mut message = Some(message);
                    while let Some(m) = message.take() {
                        match tx.try_send(m) {
                            Ok(()) => {}
                            Err(mpsc::error::TrySendError::Closed(_)) => inbound = None,
                            Err(mpsc::error::TrySendError::Full(m)) => tokio::select! {
                                permit = tx.reserve() => match permit {
                                    Ok(permit) => permit.send(m),
                                    Err(_) => inbound = None,
                                },
                                tokens = p.committed.recv(), if commits_open => {
                                    commit(tokens, &mut sequencer, &mut unsent, &mut commits_open, &mut ages, &p.connection, &p.metrics);
                                    send_acks(&p.session.client, &p.connection, &mut unsent, &p.metrics);
                                    message = Some(m);
                                }
                            },
                        }
                    }
                }
                Ok(Event::Other) => {}
                Err(error) => {
                    // A new epoch now: acks of the lost connection are dropped
                    // rather than queued for the next one.
                    p.connection.epoch.fetch_add(1, Ordering::SeqCst);
                    ages.new_connection();
                    if p.connection.connected.swap(false, Ordering::SeqCst) {
                        p.metrics.broker_reconnects.inc();
                    }
                    warn!(%error, retry_in_ms = backoff.as_millis() as u64, "mqtt: connection lost");
                    reconnect_at = Some(tokio::time::Instant::now() + backoff);
                    backoff = (backoff * 2).min(p.reconnect_max);
                }
            },
            _ = sleep_until(reconnect_at), if reconnect_at.is_some() => reconnect_at = None,
            tokens = p.committed.recv(), if commits_open => {
                commit(tokens, &mut sequencer, &mut unsent, &mut commits_open, &mut ages, &p.connection, &p.metrics);
            }
            _ = p.stop_forwarding.cancelled(), if inbound.is_some() => {
                // Dropping the sender lets the pipeline flush and finish.
                inbound = None;
                info!("mqtt: no longer taking messages; flushing");
            }
        }
    }
    if sequencer.waiting() > 0 {
        // Batches given up at shutdown: the broker redelivers their messages.
        p.metrics.unacked_messages.sub(sequencer.waiting() as i64);
    }
    // A clean DISCONNECT (after the queued acks); with a persistent session
    // the broker keeps queuing for us.
    // Both within the shutdown deadline (and a moment to send the last acks
    // of batches committed just before it).
    let deadline = (tokio::time::Instant::now() + Duration::from_secs(2))
        .min(p.shutdown.deadline().map_or(tokio::time::Instant::now(), |d| d + Duration::from_millis(500)));
    let _ = tokio::time::timeout_at(deadline, p.session.client.disconnect()).await;
    while let Ok(Ok(_)) = tokio::time::timeout_at(deadline, p.session.poll()).await {}
    p.connection.connected.store(false, Ordering::SeqCst);
    p.metrics.set_oldest_unacked(None);
    info!("mqtt: disconnected");
    Ok(())
}

fn commit(
    tokens: Option<Vec<AckToken>>,
    sequencer: &mut AckSequencer,
    unsent: &mut VecDeque<AckToken>,
    commits_open: &mut bool,
    ages: &mut UnackedAges,
    connection: &Connection,
    metrics: &Metrics,
) {
    match tokens {
        Some(tokens) => {
            let (ready, stale) = sequencer.commit(tokens, connection.epoch.load(Ordering::SeqCst));
            metrics.unacked_messages.sub(stale as i64);
            if !ready.is_empty() {
                ages.released(ready.len());
                metrics.set_oldest_unacked(ages.oldest());
            }
            unsent.extend(ready);
        }
        None => *commits_open = false,
    }
}

/// Queues the releasable acks of the current connection; acks of an earlier
/// one are dropped. The request queue holds a whole receive window, so it is
/// practically never full; if it is, the rest wait for the next turn.
fn send_acks(client: &Client, connection: &Connection, unsent: &mut VecDeque<AckToken>, metrics: &Metrics) {
    let epoch = connection.epoch.load(Ordering::SeqCst);
    let connected = connection.connected.load(Ordering::SeqCst);
    while let Some(token) = unsent.front() {
        if token.epoch != epoch {
            unsent.pop_front();
            metrics.unacked_messages.dec();
            continue;
        }
        if !connected || !client.try_ack(token) {
            break;
        }
        unsent.pop_front();
        metrics.unacked_messages.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use v5::mqttbytes::v5::{Publish, PublishProperties};

    #[test]
    fn the_oldest_unacked_message_survives_a_reconnect_until_acks_flow_again() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let mut ages = UnackedAges::default();
        assert_eq!(ages.oldest(), None);
        ages.received(at(0));
        ages.received(at(10));
        ages.received(at(20));
        ages.released(1);
        assert_eq!(ages.oldest(), Some(at(10)));
        // The connection drops; the broker redelivers on the next one.
        ages.new_connection();
        ages.received(at(500));
        assert_eq!(ages.oldest(), Some(at(10)), "still waiting since it first came");
        ages.released(1);
        assert_eq!(ages.oldest(), None);
    }

    #[test]
    fn the_content_type_comes_from_the_publish_properties() {
        let with = |ct: Option<&str>| {
            let properties = PublishProperties { content_type: ct.map(str::to_string), ..Default::default() };
            let mut publish =
                Publish::new("city/water_level/kh-wl-0001", v5::mqttbytes::QoS::AtLeastOnce, "[]", Some(properties));
            content_type(&mut publish)
        };
        assert_eq!(with(Some("application/senml+json")).as_deref(), Some("application/senml+json"));
        assert_eq!(with(None), None);
        assert_eq!(with(Some(&"x".repeat(1000))), None);
        let mut bare = Publish::new("t", v5::mqttbytes::QoS::AtLeastOnce, "[]", None);
        assert_eq!(content_type(&mut bare), None);
    }
}
