//! The broker side: one session (MQTT 3.1.1 or 5) with manual acks, and the
//! poll loop that feeds the pipeline.
//!
//! The poll loop does nothing slow and never waits on the pipeline: when the
//! pipeline's queue is full it holds what arrives and keeps polling, so pings
//! and acks keep flowing and the broker keeps the connection (with MQTT 3.1.1
//! too, which has no receive maximum). Only an exhausted byte budget stops
//! it polling: then TCP pushes back and the broker queues for our session.
//!
//! Reconnects: what rumqttc read from a connection that failed, and had not
//! handed out yet, is discarded, and acks are tagged with their connection's
//! epoch; nothing read on one connection is ever acknowledged on another.

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
use crate::budget::{ByteBudget, HeldBytes};
use crate::config::{mqtt_endpoint, IngestConfig, MqttProtocol};
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
    /// Its bytes in the held-payload budget, until its batch is committed.
    pub held_bytes: HeldBytes,
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
    /// An UNSUBACK (a survivor draining a dead member's session).
    Unsubscribed,
    Publish {
        topic: String,
        payload: Bytes,
        content_type: Option<String>,
        pkid: u16,
        qos: u8,
    },
    Other,
}

/// Why a poll failed: the connection is gone (or never came).
#[derive(Debug)]
struct Lost {
    error: String,
    /// The broker refused our credentials (bad user name or password, not
    /// authorised): retrying cannot help until someone changes them.
    credentials_refused: bool,
    /// Another connection took the session over (MQTT 5 reason 0x8E): its
    /// owner came back (see `orphans`). MQTT 3.1.1 cannot tell it apart.
    taken_over: bool,
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

    /// Queues a retained QoS 1 publish (membership status, see `orphans`).
    fn try_publish_retained(&self, topic: &str, payload: &'static str) -> bool {
        match self {
            Client::V4(c) => c.try_publish(topic, rumqttc::QoS::AtLeastOnce, true, payload).is_ok(),
            Client::V5(c) => c.try_publish(topic, v5::mqttbytes::QoS::AtLeastOnce, true, payload).is_ok(),
        }
    }

    fn try_unsubscribe(&self, filter: &str) -> bool {
        match self {
            Client::V4(c) => c.try_unsubscribe(filter).is_ok(),
            Client::V5(c) => c.try_unsubscribe(filter).is_ok(),
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

/// Which session to open: the daemon's own, a dead member's that a
/// survivor drains, or the membership watcher's (see `orphans`).
pub(crate) struct SessionSpec<'a> {
    pub client_id: &'a str,
    /// Kept by the broker while away (clean start false, and with MQTT 5
    /// `mqtt_session_expiry_s`); otherwise a clean session of no lifetime.
    pub persistent: bool,
    /// Retained on this topic by the broker when the connection dies
    /// without DISCONNECT (SIGKILL, network, keep-alive timeout).
    pub will: Option<(String, &'static str)>,
}

impl Session {
    pub fn new(config: &IngestConfig) -> Result<Session, IngestError> {
        Session::open(
            config,
            SessionSpec { client_id: &config.mqtt_client_id, persistent: true, will: orphans::member_will(config) },
        )
    }

    pub fn open(config: &IngestConfig, spec: SessionSpec<'_>) -> Result<Session, IngestError> {
        let (host, port, _) = mqtt_endpoint(&config.mqtt_url)?;
        // TLS (mqtts://) and a password from a file: see config.rs.
        let transport = config.mqtt_tls()?.map(|tls| rumqttc::Transport::tls_with_config(tls.into()));
        let password = config.mqtt_password()?;
        let keep_alive = Duration::from_secs(config.mqtt_keep_alive_s.max(5));
        let session = match config.mqtt_protocol {
            MqttProtocol::V311 => {
                let mut options = rumqttc::MqttOptions::new(spec.client_id, host, port);
                if let Some((topic, payload)) = &spec.will {
                    options.set_last_will(rumqttc::LastWill::new(topic, *payload, rumqttc::QoS::AtLeastOnce, true));
                }
                options
                    .set_keep_alive(keep_alive)
                    .set_clean_session(!spec.persistent)
                    .set_manual_acks(true)
                    .set_request_channel_capacity(REQUEST_QUEUE)
                    .set_max_packet_size(config.max_packet_bytes() as usize, config.max_packet_bytes() as usize);
                if let (Some(user), Some(password)) = (&config.mqtt_username, &password) {
                    options.set_credentials(user, password);
                }
                if let Some(transport) = &transport {
                    options.set_transport(transport.clone());
                }
                let (client, events) = rumqttc::AsyncClient::new(options, REQUEST_QUEUE);
                Session { events: EventLoop::V4(Box::new(events)), client: Client::V4(client) }
            }
            MqttProtocol::V5 => {
                let mut options = v5::MqttOptions::new(spec.client_id, host, port);
                if let Some((topic, payload)) = &spec.will {
                    let qos = v5::mqttbytes::QoS::AtLeastOnce;
                    options.set_last_will(v5::mqttbytes::v5::LastWill::new(topic, *payload, qos, true, None));
                }
                options
                    .set_keep_alive(keep_alive)
                    .set_clean_start(!spec.persistent)
                    .set_session_expiry_interval(Some(if spec.persistent { config.mqtt_session_expiry_s } else { 0 }))
                    .set_receive_maximum(Some(config.mqtt_receive_maximum.max(1)))
                    .set_max_packet_size(Some(config.max_packet_bytes()))
                    .set_manual_acks(true)
                    .set_request_channel_capacity(REQUEST_QUEUE);
                if let (Some(user), Some(password)) = (&config.mqtt_username, &password) {
                    options.set_credentials(user, password);
                }
                if let Some(transport) = &transport {
                    options.set_transport(transport.clone());
                }
                let (client, events) = v5::AsyncClient::new(options, REQUEST_QUEUE);
                Session { events: EventLoop::V5(Box::new(events)), client: Client::V5(client) }
            }
        };
        Ok(session)
    }

    async fn poll(&mut self) -> Result<Event, Lost> {
        match &mut self.events {
            EventLoop::V4(events) => match events.poll().await.map_err(|e| {
                let credentials_refused = matches!(
                    e,
                    rumqttc::ConnectionError::ConnectionRefused(
                        rumqttc::ConnectReturnCode::BadUserNamePassword | rumqttc::ConnectReturnCode::NotAuthorized
                    )
                );
                Lost { error: e.to_string(), credentials_refused, taken_over: false }
            })? {
                rumqttc::Event::Incoming(rumqttc::Packet::UnsubAck(_)) => Ok(Event::Unsubscribed),
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
            EventLoop::V5(events) => match events.poll().await.map_err(|e| {
                use v5::mqttbytes::v5::ConnectReturnCode as Code;
                let credentials_refused = matches!(
                    e,
                    v5::ConnectionError::ConnectionRefused(
                        Code::BadUserNamePassword | Code::NotAuthorized | Code::BadAuthenticationMethod
                    )
                );
                let taken_over = matches!(
                    e,
                    v5::ConnectionError::MqttState(v5::StateError::ServerDisconnect {
                        reason_code: v5::mqttbytes::v5::DisconnectReasonCode::SessionTakenOver,
                        ..
                    })
                );
                Lost { error: e.to_string(), credentials_refused, taken_over }
            })? {
                v5::Event::Incoming(v5::Incoming::UnsubAck(_)) => Ok(Event::Unsubscribed),
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

    /// Drops what rumqttc read from a connection that has since failed and
    /// not yet handed out: its event queue outlives the connection, so those
    /// publishes would otherwise come after the next CONNACK, look like the
    /// new connection's, and be acknowledged there with packet ids that mean
    /// nothing on it (or name a different message). The broker redelivers
    /// them on the new connection. Returns how many publishes were dropped.
    fn discard_stale(&mut self) -> usize {
        match &mut self.events {
            EventLoop::V4(events) => {
                let stale = events.state.events.drain(..);
                stale.filter(|e| matches!(e, rumqttc::Event::Incoming(rumqttc::Packet::Publish(_)))).count()
            }
            EventLoop::V5(events) => {
                let stale = events.state.events.drain(..);
                stale.filter(|e| matches!(e, v5::Event::Incoming(v5::Incoming::Publish(_)))).count()
            }
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
    /// This member's retained status topic in its shared group (see
    /// `orphans`): `online` on every connection, `stopped` at shutdown.
    pub membership: Option<String>,
    /// The shutdown deadline, which bounds the final disconnect too.
    pub shutdown: Arc<Shutdown>,
    /// Bytes of messages between receipt and commit: no reading while it is
    /// exhausted.
    pub budget: Arc<ByteBudget>,
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
    let mut connected_once = false;
    // Messages received while the pipeline's queue is full, in arrival
    // order. The loop keeps polling meanwhile, so pings and acks still flow
    // and the broker keeps the connection while the database is slow (MQTT
    // 3.1.1 has no receive maximum: the broker's in-flight window, not our
    // queue, bounds what it sends before we ack, and so bounds this).
    let mut held: VecDeque<Inbound> = VecDeque::new();
    // No reading while the byte budget is exhausted (see crate::budget), so
    // `held` is bounded in bytes too: polling stops, pings included, until
    // commits release bytes; changes of the bytes held wake the loop.
    let mut budget_changes = p.budget.subscribe();
    let mut paused_since: Option<Instant> = None;
    loop {
        send_acks(&p.session.client, &p.connection, &mut unsent, &p.metrics);
        if !commits_open && unsent.is_empty() {
            break;
        }
        budget_changes.borrow_and_update();
        let paused = p.budget.exhausted();
        paused_since = track_pause(paused, paused_since, &p.metrics);
        let room = if held.is_empty() { None } else { inbound.clone() };
        let has_room = room.is_some();
        let reserve = async { room.expect("only polled with a sender").reserve_owned().await };
        tokio::select! {
            permit = reserve, if has_room => match permit {
                Ok(permit) => {
                    let tx = permit.send(held.pop_front().expect("held is not empty"));
                    forward_held(&tx, &mut held);
                }
                Err(_) => inbound = None,
            },
            _ = budget_changes.changed(), if paused => {}
            event = p.session.poll(), if reconnect_at.is_none() && !paused => match event {
                Ok(Event::Connected { session_present }) => {
                    connected_once = true;
                    let epoch = p.connection.epoch.fetch_add(1, Ordering::SeqCst) + 1;
                    ages.new_connection();
                    p.metrics.set_oldest_unacked(ages.oldest());
                    p.connection.connected.store(true, Ordering::SeqCst);
                    seq = 0;
                    backoff = Duration::from_millis(100);
                    info!(epoch, session_present, "mqtt: connected");
                    if let Some(topic) = &p.membership {
                        // After the broker published our will, if it did.
                        if !p.session.client.try_publish_retained(topic, orphans::STATUS_ONLINE) {
                            warn!(topic, "mqtt: could not announce membership");
                        }
                    }
                    // A kept session keeps its subscriptions; subscribe anyway
                    // on the first connection in case the filters changed, and
                    // in a shared group on every one: a survivor that drained
                    // our session while we were away removed them (orphans).
                    if !session_present || !subscribed_once || p.membership.is_some() {
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
                    let held_bytes = p.budget.hold(topic.len() + payload.len());
                    let message =
                        Inbound { topic, payload, content_type, received_at: Utc::now(), received, ack, held_bytes };
                    // Never wait here: while the queue is full the message is
                    // held (after any held before it) and polling goes on.
                    if !held.is_empty() {
                        held.push_back(message);
                    } else {
                        match tx.try_send(message) {
                            Ok(()) => {}
                            Err(mpsc::error::TrySendError::Closed(_)) => inbound = None,
                            Err(mpsc::error::TrySendError::Full(m)) => held.push_back(m),
                        }
                    }
                }
                Ok(Event::Other | Event::Unsubscribed) => {}
                Err(Lost { error, credentials_refused, .. }) => {
                    if credentials_refused && !connected_once {
                        // At start a refusal is a configuration error: say which.
                        // Stopping first, so that the pipeline, which ends when
                        // this loop drops its sender, is not reported instead.
                        p.stop_forwarding.cancel();
                        return Err(IngestError::Config(format!(
                            "--mqtt-username / --mqtt-password (CITYGAUGE_MQTT_USERNAME / \
                             CITYGAUGE_MQTT_PASSWORD): the broker refused them: {error}"
                        )));
                    }
                    // A new epoch now: acks of the lost connection are dropped
                    // rather than queued for the next one, and so is what was
                    // read from it and not yet handed on (all redelivered).
                    p.connection.epoch.fetch_add(1, Ordering::SeqCst);
                    // Publishes rumqttc had not handed out were never counted
                    // as unacked; held ones were.
                    let held_stale = drop_stale_held(&mut held);
                    p.metrics.unacked_messages.sub(held_stale as i64);
                    let stale = p.session.discard_stale() + held_stale;
                    ages.new_connection();
                    if p.connection.connected.swap(false, Ordering::SeqCst) {
                        p.metrics.broker_reconnects.inc();
                    }
                    if credentials_refused {
                        // Credentials changed on the broker after we started:
                        // retried with backoff (someone may fix them), counted,
                        // and not ready meanwhile.
                        p.metrics.broker_auth_refusals.inc();
                    }
                    warn!(
                        %error,
                        credentials_refused,
                        stale,
                        retry_in_ms = backoff.as_millis() as u64,
                        "mqtt: connection lost"
                    );
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
    let held_acks = held.iter().filter(|m| m.ack.is_some()).count();
    if held_acks > 0 {
        // Held when shutdown came: never stored nor acked, so redelivered.
        p.metrics.unacked_messages.sub(held_acks as i64);
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
    if let Some(topic) = &p.membership {
        // Before DISCONNECT (which discards the will): survivors take our
        // session over until we come back (orphans).
        p.session.client.try_publish_retained(topic, orphans::STATUS_STOPPED);
    }
    let _ = tokio::time::timeout_at(deadline, p.session.client.disconnect()).await;
    while let Ok(Ok(_)) = tokio::time::timeout_at(deadline, p.session.poll()).await {}
    p.connection.connected.store(false, Ordering::SeqCst);
    p.metrics.set_oldest_unacked(None);
    info!("mqtt: disconnected");
    Ok(())
}

/// Hands held messages on while the queue has room.
fn forward_held(tx: &mpsc::Sender<Inbound>, held: &mut VecDeque<Inbound>) {
    while let Some(message) = held.pop_front() {
        if let Err(error) = tx.try_send(message) {
            let (mpsc::error::TrySendError::Full(message) | mpsc::error::TrySendError::Closed(message)) = error;
            held.push_front(message);
            return;
        }
    }
}

/// The connection is lost: held messages that need an ack are dropped (the
/// broker redelivers them on the next connection, and their acks could never
/// be sent); QoS 0 ones are kept, nothing would bring them again. Returns
/// how many were dropped.
fn drop_stale_held(held: &mut VecDeque<Inbound>) -> usize {
    let before = held.len();
    held.retain(|m| m.ack.is_none());
    before - held.len()
}

/// Counts the time reading is paused by the byte budget (added each time the
/// loop wakes, so the counter moves during a long pause too).
fn track_pause(paused: bool, since: Option<Instant>, metrics: &Metrics) -> Option<Instant> {
    if let Some(at) = since {
        metrics.held_payload_paused_seconds.inc_by(at.elapsed().as_secs_f64());
    }
    match (paused, since) {
        (true, None) => {
            tracing::debug!("mqtt: held-payload budget exhausted; not reading until commits release bytes");
            Some(Instant::now())
        }
        (true, Some(_)) => Some(Instant::now()),
        (false, _) => None,
    }
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
    let done = release_acks(epoch, connected, unsent, |token| client.try_ack(token));
    metrics.unacked_messages.sub(done as i64);
}

/// Sends (with `try_ack`) the acks of connection `epoch` from the front of
/// `unsent`, and drops those of any other connection unsent; stops at the
/// first that cannot be queued. Returns how many left `unsent`.
fn release_acks(
    epoch: u64,
    connected: bool,
    unsent: &mut VecDeque<AckToken>,
    mut try_ack: impl FnMut(&AckToken) -> bool,
) -> usize {
    let mut done = 0;
    while let Some(token) = unsent.front() {
        if token.epoch != epoch {
            unsent.pop_front();
            done += 1;
            continue;
        }
        if !connected || !try_ack(token) {
            break;
        }
        unsent.pop_front();
        done += 1;
    }
    done
}

pub(crate) mod orphans;
#[cfg(test)]
mod tests;
