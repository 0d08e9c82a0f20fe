//! Reconnects seen from the wire: an acknowledgement belongs to the
//! connection its publish came on. The daemon talks to the broker through a
//! proxy that reads every MQTT packet and cuts the connection mid-stream;
//! on every connection, each PUBACK must answer a PUBLISH of that same
//! connection not yet answered. And with MQTT 3.1.1 (no receive maximum) a
//! stalled database must not cost the connection: the daemon keeps polling,
//! so its pings keep the broker's keep-alive satisfied.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use citygauge_testkit::{database, eventually, Broker, InProcessDaemon, Publisher};
use common::{base_time, wait_count};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};

fn reading(t0: DateTime<Utc>, i: usize) -> (String, String) {
    let ts = t0 + chrono::Duration::seconds((i / 20) as i64);
    (format!("city/water_level/rc-wl-{:02}", i % 20), format!(r#"{{"ts":"{}","level_m":1.5}}"#, ts.to_rfc3339()))
}

/// What the proxy saw on one daemon connection.
#[derive(Debug, Default)]
struct Ledger {
    /// Publishes (QoS 1/2) sent to the daemon and not yet acknowledged, by packet id.
    outstanding: HashMap<u16, u32>,
    publishes: u64,
    acks: u64,
}

#[derive(Debug, Default)]
struct Wire {
    connections: Vec<Ledger>,
    /// PUBACKs that answered no outstanding publish of their connection.
    violations: Vec<String>,
}

/// Publishes sent to the daemon in one write right before a cut.
const CUT_AFTER_PUBLISHES: usize = 25;

/// A TCP proxy in front of the broker that parses the MQTT packets going
/// both ways (fixed header, and the packet id of PUBLISH and PUBACK).
struct Proxy {
    port: u16,
    wire: Arc<Mutex<Wire>>,
    cut: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    async fn start(broker_port: u16) -> anyhow::Result<Proxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let wire = Arc::new(Mutex::new(Wire::default()));
        let cut = Arc::new(AtomicBool::new(false));
        let (w, c) = (wire.clone(), cut.clone());
        let task = tokio::spawn(async move {
            while let Ok((daemon, _)) = listener.accept().await {
                let Ok(broker) = TcpStream::connect(("127.0.0.1", broker_port)).await else { continue };
                let connection = {
                    let mut wire = w.lock().unwrap();
                    wire.connections.push(Ledger::default());
                    wire.connections.len() - 1
                };
                let (daemon_rx, daemon_tx) = daemon.into_split();
                let (broker_rx, broker_tx) = broker.into_split();
                tokio::spawn(pump(broker_rx, daemon_tx, Direction::ToDaemon, connection, w.clone(), c.clone()));
                tokio::spawn(pump(daemon_rx, broker_tx, Direction::ToBroker, connection, w.clone(), c.clone()));
            }
        });
        Ok(Proxy { port, wire, cut, task })
    }

    fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }

    /// The next chunk of packets for the daemon goes out whole, then the
    /// connection is closed: the daemon reads those publishes and the end of
    /// the stream together.
    fn cut_after_next_chunk(&self) {
        self.cut.store(true, Ordering::SeqCst);
    }

    fn cut_pending(&self) -> bool {
        self.cut.load(Ordering::SeqCst)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Direction {
    ToDaemon,
    ToBroker,
}

/// Copies one direction, recording each whole packet in the ledger.
async fn pump(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    direction: Direction,
    connection: usize,
    wire: Arc<Mutex<Wire>>,
    cut: Arc<AtomicBool>,
) {
    let mut buffer = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        buffer.extend_from_slice(&chunk[..n]);
        // Forward whole packets only, so a cut never splits one.
        let mut whole = 0;
        let mut publishes = 0;
        while let Some(len) = packet_len(&buffer[whole..]) {
            whole += len;
            publishes += usize::from(buffer[whole - len] >> 4 == 3);
        }
        let cutting = direction == Direction::ToDaemon && cut.load(Ordering::SeqCst);
        if cutting && publishes < CUT_AFTER_PUBLISHES {
            // Gather a burst first, so it reaches the daemon with the end
            // of the stream right behind it.
            continue;
        }
        let mut at = 0;
        while at < whole {
            let len = packet_len(&buffer[at..]).expect("whole");
            record(&buffer[at..at + len], direction, connection, &wire);
            at += len;
        }
        if to.write_all(&buffer[..whole]).await.is_err() {
            break;
        }
        buffer.drain(..whole);
        if cutting {
            cut.store(false, Ordering::SeqCst);
            break;
        }
    }
    // Dropping both halves closes the socket in this direction; the other
    // pump then ends on its own read error.
    let _ = to.shutdown().await;
}

/// The length of the first packet in `bytes`, if it is all there.
fn packet_len(bytes: &[u8]) -> Option<usize> {
    let mut remaining = 0usize;
    for (i, &b) in bytes.iter().enumerate().skip(1).take(4) {
        remaining |= usize::from(b & 0x7f) << (7 * (i - 1));
        if b & 0x80 == 0 {
            let len = i + 1 + remaining;
            return (bytes.len() >= len).then_some(len);
        }
    }
    None
}

fn record(packet: &[u8], direction: Direction, connection: usize, wire: &Mutex<Wire>) {
    let header_len = (1..5).find(|&i| packet[i] & 0x80 == 0).expect("a whole packet") + 1;
    let body = &packet[header_len..];
    let mut wire = wire.lock().unwrap();
    match (packet[0] >> 4, direction) {
        (3, Direction::ToDaemon) if (packet[0] >> 1) & 3 > 0 => {
            let topic_len = usize::from(u16::from_be_bytes([body[0], body[1]]));
            let pkid = u16::from_be_bytes([body[2 + topic_len], body[3 + topic_len]]);
            let ledger = &mut wire.connections[connection];
            ledger.publishes += 1;
            *ledger.outstanding.entry(pkid).or_default() += 1;
        }
        (4, Direction::ToBroker) => {
            let pkid = u16::from_be_bytes([body[0], body[1]]);
            let ledger = &mut wire.connections[connection];
            ledger.acks += 1;
            match ledger.outstanding.get_mut(&pkid) {
                Some(n) if *n > 0 => *n -= 1,
                _ => {
                    let what = format!("connection {connection}: PUBACK {pkid} answers no publish of that connection");
                    wire.violations.push(what);
                }
            }
        }
        _ => {}
    }
}

/// Three rounds: with the database locked (nothing commits, nothing is
/// acked) a burst comes and the proxy cuts the daemon off right after one
/// chunk of publishes, so rumqttc reads some of them together with the end
/// of the stream; then the lock goes and everything is stored and acked.
/// Publishes of the dead connection must never be acknowledged on the next.
async fn acks_never_cross_a_reconnect(protocol: &str) -> anyhow::Result<()> {
    let db = database().await?;
    let broker = Broker::start().await?;
    let proxy = Proxy::start(broker.port()).await?;
    let extra = [
        "--mqtt-protocol",
        protocol,
        "--db-lock-timeout-ms",
        "300",
        "--db-ddl-lock-timeout-ms",
        "100",
        "--mqtt-reconnect-max-ms",
        "200",
    ];
    let daemon =
        InProcessDaemon::start(citygauge_testkit::ingest_config(&proxy.url(), &db.url, "crossing", &extra)?).await?;
    let http = daemon.http;
    let (t0, per_round, rounds) = (base_time(), 600, 3);
    let mut publisher = Publisher::connect(broker.port(), "crossing-publisher").await?;
    let mut holder = db.client().await?;
    for round in 0..rounds {
        // Nothing commits while the burst comes and the connection is cut.
        let lock = holder.transaction().await?;
        lock.batch_execute("LOCK TABLE water_level IN ACCESS EXCLUSIVE MODE").await?;
        let connections = proxy.wire.lock().unwrap().connections.len();
        proxy.cut_after_next_chunk();
        for i in round * per_round..(round + 1) * per_round {
            let (topic, payload) = reading(t0, i);
            publisher.publish(&topic, payload).await?;
        }
        eventually("the cut and a new connection", Duration::from_secs(20), || async {
            let now = proxy.wire.lock().unwrap().connections.len();
            Ok((!proxy.cut_pending() && now > connections).then_some(()))
        })
        .await?;
        // The broker redelivers on the new connection meanwhile.
        tokio::time::sleep(Duration::from_millis(500)).await;
        lock.rollback().await?;
        // Stored and acknowledged (on the new connection) before the next round.
        let stored = ((round + 1) * per_round) as i64;
        wait_count(&db, "SELECT count(*) FROM water_level", stored).await?;
        eventually("every message acknowledged", Duration::from_secs(20), || async {
            let unacked = citygauge_testkit::metric(http, "citygauge_ingest_unacked_messages").await?;
            Ok((unacked == 0.0).then_some(()))
        })
        .await?;
    }
    let total = (rounds * per_round) as i64;
    publisher.wait_acked(Duration::from_secs(30)).await?;
    // The newest connection's publishes are all answered, on the wire too.
    eventually("the last connection's publishes acknowledged", Duration::from_secs(20), || async {
        let wire = proxy.wire.lock().unwrap();
        let last = wire.connections.last().expect("connections");
        Ok((last.acks > 0 && last.outstanding.values().all(|&n| n == 0)).then_some(()))
    })
    .await?;
    {
        let wire = proxy.wire.lock().unwrap();
        assert!(wire.violations.is_empty(), "acks crossed connections: {:#?}", wire.violations);
        assert!(wire.connections.len() > rounds, "{} connections", wire.connections.len());
    }
    assert_eq!(db.count("SELECT count(*) FROM water_level").await?, total);
    daemon.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acks_never_cross_a_reconnect_v5() -> anyhow::Result<()> {
    acks_never_cross_a_reconnect("5").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acks_never_cross_a_reconnect_v311() -> anyhow::Result<()> {
    acks_never_cross_a_reconnect("3.1.1").await
}

/// MQTT 3.1.1 has no receive maximum: the broker sends up to its own
/// in-flight window (65,535 here) before we ack, far more than the daemon's
/// queue holds. With the database locked for longer than one and a half
/// keep-alives, a loop that stopped polling when its queue was full would
/// send no ping and the broker would drop the connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_database_does_not_cost_the_connection_with_mqtt_311() -> anyhow::Result<()> {
    let db = database().await?;
    let broker = Broker::start().await?;
    let extra = [
        "--mqtt-protocol",
        "3.1.1",
        "--mqtt-keep-alive-s",
        "5",
        "--inbound-queue-messages",
        "10",
        "--batch-max-rows",
        "10",
    ];
    let daemon =
        InProcessDaemon::start(citygauge_testkit::ingest_config(&broker.url(), &db.url, "slow-db", &extra)?).await?;
    let mut holder = db.client().await?;
    let lock = holder.transaction().await?;
    lock.batch_execute("LOCK TABLE water_level IN ACCESS EXCLUSIVE MODE").await?;
    let (t0, total) = (base_time(), 500);
    let mut publisher = Publisher::connect(broker.port(), "slow-db-publisher").await?;
    for i in 0..total {
        let (topic, payload) = reading(t0, i);
        publisher.publish(&topic, payload).await?;
    }
    publisher.wait_acked(Duration::from_secs(10)).await?;
    // Mosquitto drops a client silent for 1.5 keep-alives (7.5 s).
    tokio::time::sleep(Duration::from_secs(10)).await;
    let received = daemon.metric("citygauge_ingest_messages_received_total").await?;
    let reconnects = daemon.metric("citygauge_ingest_broker_reconnects_total").await?;
    lock.rollback().await?;
    assert_eq!(reconnects, 0.0, "the broker dropped the daemon while the database was slow");
    assert_eq!(received, total as f64, "kept reading while its queue was full");
    wait_count(&db, "SELECT count(*) FROM water_level", total as i64).await?;
    assert_eq!(daemon.metric("citygauge_ingest_broker_reconnects_total").await?, 0.0);
    daemon.stop().await
}
