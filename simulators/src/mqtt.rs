//! MQTT publishing over plain TCP with rumqttc: broker URL parsing, one
//! publisher per connection, delivery accounting and reconnects.

use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use bytes::Bytes;
use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Outgoing, Packet, QoS, Request};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{debug, warn};

/// Largest packet we send: the `faults` scenario's oversized payload is
/// 1.5 MiB, load-mode packs of many readings can be large too.
const MAX_PACKET_BYTES: usize = 4 * 1024 * 1024;

/// A broker address from `mqtt://host:port` (also `tcp://`, or bare
/// `host:port`). TLS and websockets aren't built in (rumqttc is compiled
/// without them), so `mqtts://` and `ws://` are rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerAddr {
    pub host: String,
    pub port: u16,
}

impl FromStr for BrokerAddr {
    type Err = anyhow::Error;

    fn from_str(url: &str) -> Result<Self> {
        let rest = match url.split_once("://") {
            Some(("mqtt" | "tcp", rest)) => rest,
            Some((scheme, _)) => bail!("unsupported MQTT URL scheme {scheme:?} in {url:?} (use mqtt://host:port)"),
            None => url,
        };
        let authority = rest.split(['/', '?']).next().unwrap_or_default();
        if authority.contains('@') {
            bail!("credentials in the MQTT URL are not supported: {url:?}");
        }
        // [v6]:port, host:port or host.
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (host, after) = v6.split_once(']').ok_or_else(|| anyhow!("unclosed '[' in {url:?}"))?;
            (host, after.strip_prefix(':'))
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            }
        };
        if host.is_empty() {
            bail!("no host in MQTT URL {url:?}");
        }
        let port = match port {
            Some(p) => p.parse().with_context(|| format!("bad port in MQTT URL {url:?}"))?,
            None => 1883,
        };
        Ok(BrokerAddr { host: host.to_owned(), port })
    }
}

/// Parses a `--qos` value.
pub fn qos_from_u8(qos: u8) -> Result<QoS> {
    match qos {
        0 => Ok(QoS::AtMostOnce),
        1 => Ok(QoS::AtLeastOnce),
        2 => Ok(QoS::ExactlyOnce),
        other => bail!("QoS must be 0, 1 or 2, got {other}"),
    }
}

/// Delivery counters of one connection.
#[derive(Debug, Default)]
pub struct Counters {
    /// Messages handed to the client.
    pub published: AtomicU64,
    /// Publish packets written to the socket (including retransmissions).
    pub written: AtomicU64,
    /// Broker acknowledgements (PUBACK for QoS 1, PUBCOMP for QoS 2).
    pub acked: AtomicU64,
    /// Successful reconnects after the first connection.
    pub reconnects: AtomicU64,
    /// Messages queued again because the broker had lost our session.
    pub requeued: AtomicU64,
}

/// Tuning of one connection.
#[derive(Debug, Clone)]
pub struct PublisherOptions {
    pub client_id: String,
    pub qos: QoS,
    /// Unacknowledged QoS>0 messages in flight.
    pub inflight: u16,
    /// Requests buffered between the caller and the event loop.
    pub channel_capacity: usize,
    /// MQTT 3.1.1 clean session. Off by default: with a persistent session the
    /// broker keeps our in-flight state across a dropped connection and
    /// rumqttc retransmits unacknowledged messages after reconnecting, instead
    /// of silently dropping them.
    pub clean_session: bool,
    /// How long to wait for the first connection before giving up.
    pub connect_timeout: Duration,
}

impl PublisherOptions {
    pub fn new(client_id: impl Into<String>, qos: QoS) -> Self {
        Self {
            client_id: client_id.into(),
            qos,
            inflight: 256,
            channel_capacity: 1024,
            clean_session: false,
            connect_timeout: Duration::from_secs(10),
        }
    }
}

/// One MQTT connection: `publish` queues, a background task drives rumqttc's
/// event loop, counts acknowledgements and reconnects with backoff.
#[derive(Debug)]
pub struct Publisher {
    client: AsyncClient,
    qos: QoS,
    counters: Arc<Counters>,
    driver: JoinHandle<()>,
}

impl Publisher {
    /// Connects and waits for the broker's CONNACK, retrying until
    /// `connect_timeout`.
    pub async fn connect(addr: &BrokerAddr, opts: PublisherOptions) -> Result<Self> {
        let mut mqtt = MqttOptions::new(opts.client_id.clone(), addr.host.clone(), addr.port);
        mqtt.set_keep_alive(Duration::from_secs(30))
            .set_clean_session(opts.clean_session)
            .set_inflight(opts.inflight.max(1))
            .set_max_packet_size(MAX_PACKET_BYTES, MAX_PACKET_BYTES);
        let (client, eventloop) = AsyncClient::new(mqtt, opts.channel_capacity);
        let counters = Arc::new(Counters::default());
        let (connected_tx, mut connected_rx) = watch::channel(Err::<(), String>("not connected yet".into()));
        let driver = tokio::spawn(drive(eventloop, counters.clone(), connected_tx, opts.client_id.clone()));
        let waited = tokio::time::timeout(opts.connect_timeout, connected_rx.wait_for(|r| r.is_ok()))
            .await
            .is_ok_and(|r| r.is_ok());
        if !waited {
            driver.abort();
            let last = connected_rx.borrow().clone().err().unwrap_or_default();
            bail!(
                "could not connect to MQTT broker {}:{} within {:?}: {last}",
                addr.host,
                addr.port,
                opts.connect_timeout
            );
        }
        Ok(Self { client, qos: opts.qos, counters, driver })
    }

    /// Queues a message; waits while the client's buffer is full
    /// (backpressure from a slow or disconnected broker).
    pub async fn publish(&self, topic: String, payload: impl Into<Bytes>) -> Result<()> {
        self.client.publish_bytes(topic, self.qos, false, payload.into()).await.context("MQTT client closed")?;
        self.counters.published.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Waits (up to `drain_timeout`) until every queued message is
    /// acknowledged (or written, for QoS 0), then disconnects.
    pub async fn close(self, drain_timeout: Duration) -> PublisherSummary {
        let done = |c: &Counters| {
            let target = c.published.load(Ordering::Relaxed);
            let progress = match self.qos {
                QoS::AtMostOnce => &c.written,
                _ => &c.acked,
            };
            progress.load(Ordering::Relaxed) >= target
        };
        let deadline = tokio::time::Instant::now() + drain_timeout;
        while !done(&self.counters) && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let drained = done(&self.counters);
        if self.client.disconnect().await.is_ok() {
            // The driver ends once the DISCONNECT is written.
            let _ = tokio::time::timeout(Duration::from_secs(2), &mut { self.driver }).await;
        }
        let c = &self.counters;
        PublisherSummary {
            published: c.published.load(Ordering::Relaxed),
            acked: c.acked.load(Ordering::Relaxed),
            reconnects: c.reconnects.load(Ordering::Relaxed),
            requeued: c.requeued.load(Ordering::Relaxed),
            drained,
        }
    }
}

/// Final accounting of one connection.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PublisherSummary {
    pub published: u64,
    pub acked: u64,
    pub reconnects: u64,
    pub requeued: u64,
    /// Every message was acknowledged before disconnecting.
    pub drained: bool,
}

/// Polls the event loop for the connection's lifetime. rumqttc reconnects on
/// the next poll after an error, so we only back off between attempts.
///
/// On a connection error rumqttc moves every unacknowledged publish (and the
/// requests still queued) into `eventloop.pending` and resends them if the
/// broker resumes our session, but drops them if the session is gone (a
/// broker restarted without persistence). We keep a copy and queue it again
/// in that case: QoS 1 is at-least-once, a duplicate is fine, a loss isn't.
async fn drive(
    mut eventloop: EventLoop,
    counters: Arc<Counters>,
    connected: watch::Sender<Result<(), String>>,
    id: String,
) {
    let mut backoff = Duration::from_millis(100);
    let mut ever_connected = false;
    let mut unacked: Vec<Request> = Vec::new();
    loop {
        match eventloop.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                if ever_connected {
                    counters.reconnects.fetch_add(1, Ordering::Relaxed);
                    warn!(client = %id, session_present = ack.session_present, "reconnected to MQTT broker");
                }
                if !ack.session_present && !unacked.is_empty() {
                    counters.requeued.fetch_add(unacked.len() as u64, Ordering::Relaxed);
                    // A new session: fresh packet ids, not retransmissions.
                    for request in unacked.drain(..).rev() {
                        if let Request::Publish(mut publish) = request {
                            publish.pkid = 0;
                            publish.dup = false;
                            eventloop.pending.push_front(Request::Publish(publish));
                        }
                    }
                }
                unacked.clear();
                ever_connected = true;
                backoff = Duration::from_millis(100);
                let _ = connected.send(Ok(()));
            }
            Ok(Event::Incoming(Packet::PubAck(_) | Packet::PubComp(_))) => {
                counters.acked.fetch_add(1, Ordering::Relaxed);
            }
            Ok(Event::Outgoing(Outgoing::Publish(_))) => {
                counters.written.fetch_add(1, Ordering::Relaxed);
            }
            Ok(Event::Outgoing(Outgoing::Disconnect)) => break,
            Ok(_) => {}
            Err(rumqttc::ConnectionError::RequestsDone) => break,
            Err(e) => {
                if !eventloop.pending.is_empty() {
                    unacked = eventloop.pending.iter().filter(|r| matches!(r, Request::Publish(_))).cloned().collect();
                }
                if ever_connected {
                    warn!(client = %id, error = %e, "MQTT connection error; retrying in {backoff:?}");
                } else {
                    debug!(client = %id, error = %e, "MQTT connect failed; retrying");
                }
                if !ever_connected {
                    // Lets `connect` report why it timed out.
                    let _ = connected.send(Err(e.to_string()));
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_broker_urls() {
        let parse = |s: &str| s.parse::<BrokerAddr>();
        assert_eq!(parse("mqtt://127.0.0.1:1883").unwrap(), BrokerAddr { host: "127.0.0.1".into(), port: 1883 });
        assert_eq!(parse("mqtt://broker.local").unwrap().port, 1883);
        assert_eq!(parse("tcp://localhost:11883/").unwrap().port, 11883);
        assert_eq!(parse("localhost:1884").unwrap().host, "localhost");
        assert_eq!(parse("mqtt://[::1]:1885").unwrap(), BrokerAddr { host: "::1".into(), port: 1885 });
        assert!(parse("mqtts://x:8883").is_err());
        assert!(parse("mqtt://:1883").is_err());
        assert!(parse("mqtt://h:notaport").is_err());
        assert!(parse("mqtt://user:pw@h:1883").is_err());
    }
}
