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
use tracing::{debug, info, warn};

use crate::acks::AckToken;
use crate::config::{parse_mqtt_url, IngestConfig, MqttProtocol};
use crate::metrics::Metrics;
use crate::IngestError;

/// A message on its way to the database.
#[derive(Debug)]
pub(crate) struct Inbound {
    pub topic: String,
    pub payload: Bytes,
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
                rumqttc::Event::Incoming(rumqttc::Packet::Publish(p)) => {
                    Ok(Event::Publish { topic: p.topic, payload: p.payload, pkid: p.pkid, qos: p.qos as u8 })
                }
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
                v5::Event::Incoming(v5::Incoming::Publish(p)) => Ok(Event::Publish {
                    topic: String::from_utf8_lossy(&p.topic).into_owned(),
                    payload: p.payload,
                    pkid: p.pkid,
                    qos: p.qos as u8,
                }),
                _ => Ok(Event::Other),
            },
        }
    }
}

/// Shared with the acker: the current connection's epoch. Acks of an older
/// connection are dropped (the broker redelivers those messages anyway).
#[derive(Debug, Default)]
pub(crate) struct Connection {
    pub epoch: AtomicU64,
    pub connected: AtomicBool,
    /// Every subscription of this session is acknowledged by the broker: only
    /// then does the broker queue the city's messages for us.
    pub subscribed: AtomicBool,
}

/// Polls the broker until `stop_forwarding` fires, then keeps polling (so the
/// last acks go out) until `acks_flushed` fires, then disconnects.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn poll_loop(
    mut session: Session,
    subscriptions: Vec<String>,
    reconnect_max: Duration,
    inbound: mpsc::Sender<Inbound>,
    connection: Arc<Connection>,
    metrics: Metrics,
    stop_forwarding: CancellationToken,
    acks_flushed: CancellationToken,
) {
    let mut inbound = Some(inbound);
    let mut seq: u64 = 0;
    let mut subscribed_once = false;
    let mut pending_subacks = 0usize;
    let mut backoff = Duration::from_millis(100);
    loop {
        if inbound.is_some() && stop_forwarding.is_cancelled() {
            // Dropping the sender lets the pipeline flush and finish.
            inbound = None;
            info!("mqtt: no longer taking messages; flushing");
        }
        let event = tokio::select! {
            event = session.poll() => event,
            _ = stop_forwarding.cancelled(), if inbound.is_some() => continue,
            _ = acks_flushed.cancelled() => break,
        };
        match event {
            Ok(Event::Connected { session_present }) => {
                let epoch = connection.epoch.fetch_add(1, Ordering::SeqCst) + 1;
                connection.connected.store(true, Ordering::SeqCst);
                seq = 0;
                backoff = Duration::from_millis(100);
                info!(epoch, session_present, "mqtt: connected");
                // A kept session keeps its subscriptions; subscribe anyway on
                // the first connection in case the filters changed.
                if !session_present || !subscribed_once {
                    connection.subscribed.store(false, Ordering::SeqCst);
                    pending_subacks = 0;
                    for filter in &subscriptions {
                        if session.client.try_subscribe(filter) {
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
                    warn!(?subscriptions, "mqtt: the broker refused a subscription");
                }
                pending_subacks = pending_subacks.saturating_sub(1);
                if pending_subacks == 0 && granted {
                    connection.subscribed.store(true, Ordering::SeqCst);
                    info!(filters = subscriptions.len(), "mqtt: subscribed");
                }
            }
            Ok(Event::Publish { topic, payload, pkid, qos }) => {
                let Some(tx) = &inbound else {
                    // Shutting down: not acked, so the broker keeps it for next time.
                    continue;
                };
                metrics.messages_received.inc();
                let ack = (qos > 0).then(|| {
                    let token = AckToken { epoch: connection.epoch.load(Ordering::SeqCst), seq, pkid, qos };
                    seq += 1;
                    metrics.unacked_messages.inc();
                    token
                });
                let message = Inbound { topic, payload, received_at: Utc::now(), received: Instant::now(), ack };
                if tx.send(message).await.is_err() {
                    inbound = None;
                }
            }
            Ok(Event::Other) => {}
            Err(error) => {
                if connection.connected.swap(false, Ordering::SeqCst) {
                    metrics.broker_reconnects.inc();
                }
                warn!(%error, retry_in_ms = backoff.as_millis() as u64, "mqtt: connection lost");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = acks_flushed.cancelled() => break,
                }
                backoff = (backoff * 2).min(reconnect_max);
            }
        }
    }
    // A clean DISCONNECT; with a persistent session the broker keeps queuing.
    session.client.disconnect().await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    while let Ok(Ok(event)) = tokio::time::timeout_at(deadline, session.poll()).await {
        if matches!(event, Event::Other) {
            debug!("mqtt: draining before disconnect");
        }
    }
    connection.connected.store(false, Ordering::SeqCst);
    info!("mqtt: disconnected");
}
