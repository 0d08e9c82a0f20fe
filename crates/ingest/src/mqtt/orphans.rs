//! Survivors take over the session of a shared-group member that died (or
//! stopped), so its share of the stream is stored rather than stranded.
//!
//! Mosquitto keeps giving an offline member of a shared subscription its
//! share, queued to its persistent session, until that session expires; the
//! sensors got their PUBACK from the broker long before. So:
//! - Membership: each daemon keeps a retained `online` on
//!   `<prefix>/<group>/<client id>`, with a will that replaces it by
//!   `offline` when the connection dies without DISCONNECT; a clean stop
//!   publishes `stopped`.
//! - Watch: a small extra connection (`<client id>-members`, clean session)
//!   follows `<prefix>/<group>/#`.
//! - Takeover: for a member away (`offline` at once, `stopped` after a
//!   grace for restarts), the survivor that gets the PostgreSQL advisory
//!   lock keyed by that client id (on a connection of its own, held for the
//!   whole drain) connects with that client id and clean start false. It
//!   unsubscribes the group's filters (nothing new is queued there; the
//!   broker still delivers what was), hands what comes to the normal
//!   pipeline with its own ack routing (acked after commit, on that
//!   connection), and once nothing has come for `orphan_drain_idle_ms` and
//!   all is acknowledged it disconnects, leaving the session (empty, without
//!   subscriptions) to its expiry, clears the member's status and releases
//!   the lock.
//! - The member comes back: its CONNECT takes the session over and the
//!   broker drops the survivor's connection; the survivor stops (never
//!   reconnects as it). Acks it could not send are redelivered to the member.
//!   The member subscribes again on every connection (the survivor may have
//!   unsubscribed its session).

mod drain;
mod members;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tracing::{info, warn, Instrument};

use super::{Event, Inbound, Lost, Session, SessionSpec};
use crate::acks::AckToken;
use crate::budget::ByteBudget;
use crate::config::IngestConfig;
use crate::metrics::Metrics;
use crate::pipeline::sleep_until;
use crate::supervise::Shutdown;
use crate::IngestError;
use members::{Attempt, Members};

pub(crate) const STATUS_ONLINE: &str = "online";
/// The will: the connection died without DISCONNECT.
pub(crate) const STATUS_OFFLINE: &str = "offline";
/// Published at a clean stop.
pub(crate) const STATUS_STOPPED: &str = "stopped";

/// Set in the epoch of every ack token of a drained session (its drain's
/// serial above bit 24, its connection below), never in the daemon's own.
const DRAIN_EPOCH_BIT: u64 = 1 << 63;
/// After a failed attempt (lock held elsewhere, connection lost), while the
/// member is still away.
const RETRY: Duration = Duration::from_secs(5);
/// A member that stopped cleanly gets this long to come back (a restart)
/// before its session is taken over.
const STOPPED_GRACE: Duration = Duration::from_secs(10);

/// The status topic of this daemon, when it takes part in takeover (a
/// shared group and `orphan_takeover`).
pub(crate) fn member_topic(config: &IngestConfig) -> Option<String> {
    let group = config.mqtt_shared_group.as_ref().filter(|_| config.orphan_takeover)?;
    Some(format!("{}/{group}/{}", config.mqtt_members_topic_prefix, config.mqtt_client_id))
}

pub(crate) fn member_will(config: &IngestConfig) -> Option<(String, &'static str)> {
    member_topic(config).map(|topic| (topic, STATUS_OFFLINE))
}

/// Where committed acks go: the daemon's own connection's to the poll loop,
/// a drained session's to its drain.
#[derive(Debug, Default)]
pub(crate) struct AckRoutes {
    drains: Mutex<HashMap<u64, mpsc::UnboundedSender<Vec<AckToken>>>>,
}

impl AckRoutes {
    fn add(&self, serial: u64) -> mpsc::UnboundedReceiver<Vec<AckToken>> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.lock().insert(serial, tx);
        rx
    }

    fn remove(&self, serial: u64) {
        self.lock().remove(&serial);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, mpsc::UnboundedSender<Vec<AckToken>>>> {
        self.drains.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Between the writers and the poll loop when takeover is on. Ends when the
/// writers do, which closes the poll loop's channel as before.
pub(crate) async fn route_acks(
    mut from_writers: mpsc::Receiver<Vec<AckToken>>,
    to_poll_loop: mpsc::Sender<Vec<AckToken>>,
    routes: Arc<AckRoutes>,
) -> Result<(), IngestError> {
    while let Some(tokens) = from_writers.recv().await {
        if tokens.iter().all(|t| t.epoch & DRAIN_EPOCH_BIT == 0) {
            let _ = to_poll_loop.send(tokens).await;
            continue;
        }
        let mut own = Vec::new();
        let mut drained: HashMap<u64, Vec<AckToken>> = HashMap::new();
        for token in tokens {
            if token.epoch & DRAIN_EPOCH_BIT == 0 {
                own.push(token);
            } else {
                drained.entry((token.epoch & !DRAIN_EPOCH_BIT) >> 24).or_default().push(token);
            }
        }
        {
            let routes = routes.lock();
            for (serial, tokens) in drained {
                // A drain that has ended: its messages are redelivered to
                // whoever resumes the session.
                if let Some(tx) = routes.get(&serial) {
                    let _ = tx.send(tokens);
                }
            }
        }
        if !own.is_empty() {
            let _ = to_poll_loop.send(own).await;
        }
    }
    Ok(())
}

/// What the takeover task is handed.
pub(crate) struct Orphans {
    pub config: Arc<IngestConfig>,
    pub inbound: mpsc::Sender<Inbound>,
    pub routes: Arc<AckRoutes>,
    pub budget: Arc<ByteBudget>,
    pub metrics: Metrics,
    pub shutdown: Arc<Shutdown>,
}

/// Watches the membership topic and drains the sessions of members away.
/// Runs until shutdown, then waits (within the deadline) for its drains.
pub(crate) async fn run_orphans(o: Orphans) -> Result<(), IngestError> {
    let Some(group) = o.config.mqtt_shared_group.clone().filter(|_| o.config.orphan_takeover) else {
        o.shutdown.token.cancelled().await;
        return Ok(());
    };
    let base = format!("{}/{group}/", o.config.mqtt_members_topic_prefix);
    let watcher_id = format!("{}-members", o.config.mqtt_client_id);
    let mut watcher = Session::open(&o.config, SessionSpec { client_id: &watcher_id, persistent: false, will: None })?;
    let mut members = Members::new(&o.config.mqtt_client_id, STOPPED_GRACE, RETRY);
    let mut drains: JoinSet<Attempt> = JoinSet::new();
    // Which member each drain task serves, so that one that panics is
    // still tried again (its JoinError carries only the task id).
    let mut draining: HashMap<tokio::task::Id, String> = HashMap::new();
    let mut serial: u64 = 0;
    let mut reconnect_at: Option<tokio::time::Instant> = None;
    let mut backoff = Duration::from_millis(200);
    let mut inbound = Some(o.inbound);
    loop {
        if inbound.is_some() {
            for member in members.due(tokio::time::Instant::now()) {
                serial += 1;
                let job = drain::Job {
                    status_topic: format!("{base}{member}"),
                    member: member.clone(),
                    serial,
                    config: o.config.clone(),
                    routes: o.routes.clone(),
                    budget: o.budget.clone(),
                    metrics: o.metrics.clone(),
                    shutdown: o.shutdown.clone(),
                    watcher: watcher.client.clone(),
                };
                let span = tracing::info_span!("orphan", member = %member);
                let tx = inbound.clone().expect("not stopping");
                let task = drains.spawn(drain::attempt(job, tx).instrument(span));
                draining.insert(task.id(), member);
            }
        }
        let next_try = members.next_due();
        tokio::select! {
            event = watcher.poll(), if reconnect_at.is_none() => match event {
                Ok(Event::Connected { .. }) => {
                    backoff = Duration::from_millis(200);
                    // A clean session: subscribe on every connection. The
                    // retained statuses come first.
                    if !watcher.client.try_subscribe(&format!("{base}#")) {
                        warn!("orphans: could not subscribe to the membership topic");
                    }
                }
                Ok(Event::Publish { topic, payload, pkid, qos, .. }) => {
                    if qos > 0 {
                        watcher.client.try_ack(&AckToken { epoch: 0, seq: 0, pkid, qos });
                    }
                    if let Some(member) = topic.strip_prefix(&base) {
                        members.heard(member, &payload, tokio::time::Instant::now());
                    }
                }
                Ok(_) => {}
                Err(Lost { error, .. }) => {
                    watcher.discard_stale();
                    warn!(%error, "orphans: membership watch lost; reconnecting");
                    reconnect_at = Some(tokio::time::Instant::now() + backoff);
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            },
            _ = sleep_until(reconnect_at), if reconnect_at.is_some() => reconnect_at = None,
            _ = sleep_until(next_try), if next_try.is_some() => {}
            Some(ended) = drains.join_next_with_id(), if !drains.is_empty() => {
                let (id, attempt) = match ended {
                    Ok((id, attempt)) => (id, attempt),
                    // A drain that panicked: its member is tried again later.
                    Err(error) => {
                        warn!(%error, "orphans: a drain failed");
                        (error.id(), Attempt::Retry)
                    }
                };
                if let Some(member) = draining.remove(&id) {
                    members.ended(&member, attempt, tokio::time::Instant::now());
                }
            }
            _ = o.shutdown.token.cancelled(), if inbound.is_some() => {
                // Drains see the same signal: they stop taking messages and
                // keep acking until the writers are done.
                inbound = None;
            }
        }
        if inbound.is_none() && drains.is_empty() {
            break;
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(1), watcher.client.disconnect()).await;
    info!("orphans: stopped");
    Ok(())
}

/// The connection epoch of a drain's ack tokens.
fn drain_epoch(serial: u64, connection: u64) -> u64 {
    DRAIN_EPOCH_BIT | (serial << 24) | (connection & 0xff_ffff)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(args: &[&str]) -> IngestConfig {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            ingest: IngestConfig,
        }
        let argv = ["x", "--mqtt-client-id", "ingest-7"].iter().chain(args);
        Cli::try_parse_from(argv).unwrap().ingest
    }

    #[test]
    fn members_announce_themselves_only_in_a_shared_group_with_takeover() {
        let shared = config(&["--mqtt-shared-group", "g"]);
        assert_eq!(member_topic(&shared).as_deref(), Some("citygauge/ingest/members/g/ingest-7"));
        assert_eq!(member_will(&shared).map(|w| w.1), Some(STATUS_OFFLINE));
        assert_eq!(member_topic(&config(&[])), None);
        assert_eq!(member_topic(&config(&["--mqtt-shared-group", "g", "--orphan-takeover", "false"])), None);
        let bad = config(&["--mqtt-shared-group", "g", "--mqtt-members-topic-prefix", "m/#"]);
        assert!(bad.validate().unwrap_err().to_string().contains("--mqtt-members-topic-prefix"));
    }

    #[tokio::test]
    async fn acks_of_drains_go_to_their_drain_and_the_rest_to_the_poll_loop() {
        let routes = Arc::new(AckRoutes::default());
        let mut drain_rx = routes.add(3);
        let (writers, from_writers) = mpsc::channel(4);
        let (to_poll_loop, mut poll_rx) = mpsc::channel(4);
        let router = tokio::spawn(route_acks(from_writers, to_poll_loop, routes.clone()));
        let own = AckToken { epoch: 2, seq: 0, pkid: 1, qos: 1 };
        let drained = AckToken { epoch: drain_epoch(3, 1), seq: 0, pkid: 9, qos: 1 };
        let gone = AckToken { epoch: drain_epoch(4, 1), seq: 0, pkid: 5, qos: 1 };
        writers.send(vec![own, drained, gone]).await.unwrap();
        writers.send(vec![own]).await.unwrap();
        assert_eq!(poll_rx.recv().await.unwrap(), vec![own]);
        assert_eq!(poll_rx.recv().await.unwrap(), vec![own]);
        assert_eq!(drain_rx.recv().await.unwrap(), vec![drained]);
        drop(writers);
        router.await.unwrap().unwrap();
        assert!(poll_rx.recv().await.is_none(), "the poll loop sees the writers end");
    }
}
