//! One takeover: the advisory lock, the dead member's session run through
//! the normal pipeline, and its end.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::members::Attempt;
use super::{drain_epoch, AckRoutes};
use crate::acks::{AckSequencer, AckToken};
use crate::budget::ByteBudget;
use crate::config::IngestConfig;
use crate::metrics::Metrics;
use crate::mqtt::{forward_held, Client, Event, Inbound, Lost, Session, SessionSpec};
use crate::pipeline::sleep_until;
use crate::supervise::Shutdown;

/// The first key of the takeover locks (`pg_try_advisory_lock(int4, int4)`,
/// the second being `hashtext(client id)`): the two-key form never collides
/// with the platform's one-key (bigint) advisory locks.
const LOCK_CLASS: i32 = 0x6367_6f72; // "cgor"

pub(super) struct Job {
    pub member: String,
    pub status_topic: String,
    pub serial: u64,
    pub config: Arc<IngestConfig>,
    pub routes: Arc<AckRoutes>,
    pub budget: Arc<ByteBudget>,
    pub metrics: Metrics,
    pub shutdown: Arc<Shutdown>,
    /// The membership watcher's client, to clear the member's status.
    pub watcher: Client,
}

/// How a drained session's run ended.
#[derive(Debug, PartialEq, Eq)]
enum End {
    /// Everything the session held is stored and acknowledged.
    Drained {
        messages: u64,
        session_present: bool,
    },
    /// Its member came back (MQTT 5 says so; with 3.1.1 it is `Lost`).
    TakenOver,
    Lost(String),
    Stopped,
}

/// Takes the member's session over if no other survivor has; tells the
/// watcher whether to try again. `inbound` is the pipeline's queue: owned,
/// so that at shutdown dropping it lets the pipeline finish.
pub(super) async fn attempt(job: Job, inbound: mpsc::Sender<Inbound>) -> Attempt {
    // A dedicated connection: the lock lives exactly as long as it (a
    // survivor that dies mid-drain frees it for another).
    let database = match job.config.database.database() {
        Ok(database) => database,
        Err(error) => {
            warn!(%error, "orphans: no database settings");
            return Attempt::Retry;
        }
    };
    let (client, connection) = match database.connect().await {
        Ok(pair) => pair,
        Err(error) => {
            warn!(%error, "orphans: could not connect for the takeover lock");
            return Attempt::Retry;
        }
    };
    // The lock is gone when its connection is (a database restart, an idle
    // timeout): the drain must stop then, or a second survivor could take
    // the same session and the two would keep taking it from each other.
    let lock_lost = CancellationToken::new();
    let connection = {
        let lock_lost = lock_lost.clone();
        tokio::spawn(async move {
            let _ = connection.await;
            lock_lost.cancel();
        })
    };
    let locked = client
        .query_one("SELECT pg_try_advisory_lock($1, hashtext($2))", &[&LOCK_CLASS, &job.member])
        .await
        .map(|row| row.get::<_, bool>(0));
    let attempt = match locked {
        Ok(true) => drain(&job, inbound, &lock_lost).await,
        Ok(false) => {
            info!("orphans: another survivor is draining this session");
            Attempt::Retry
        }
        Err(error) => {
            warn!(%error, "orphans: could not take the takeover lock");
            Attempt::Retry
        }
    };
    // Closing the connection releases the lock.
    drop(client);
    let _ = tokio::time::timeout(Duration::from_secs(1), connection).await;
    attempt
}

async fn drain(job: &Job, inbound: mpsc::Sender<Inbound>, lock_lost: &CancellationToken) -> Attempt {
    info!("orphans: member away; taking its session over");
    let committed = job.routes.add(job.serial);
    let end = match Session::open(&job.config, SessionSpec { client_id: &job.member, persistent: true, will: None }) {
        // Dropping the run drops its connection without DISCONNECT: what
        // it had not acked stays in the session; acks still in flight from
        // the writers find no route (below) and are dropped.
        Ok(session) => tokio::select! {
            end = run(job, session, committed, inbound) => end,
            _ = lock_lost.cancelled() => End::Lost("the takeover lock's database connection closed".into()),
        },
        Err(error) => End::Lost(error.to_string()),
    };
    job.routes.remove(job.serial);
    match end {
        End::Drained { messages, session_present } => {
            if session_present {
                job.metrics.orphan_sessions_drained.inc();
            }
            info!(messages, session_present, "orphans: session drained and ended");
            // Still under the lock: nobody tries it again (an empty retained
            // message deletes the status).
            job.watcher.try_publish_retained(&job.status_topic, "");
            Attempt::Done
        }
        End::TakenOver => {
            job.metrics.orphan_drains_interrupted.inc();
            info!("orphans: the member came back and took its session over");
            Attempt::Done
        }
        End::Lost(error) => {
            job.metrics.orphan_drains_interrupted.inc();
            warn!(%error, "orphans: lost the taken-over session; will retry while the member is away");
            Attempt::Retry
        }
        End::Stopped => Attempt::Retry,
    }
}

/// The drained session's own poll loop: like the daemon's (`poll_loop`),
/// without reconnecting: a lost connection ends the drain.
async fn run(
    job: &Job,
    mut session: Session,
    mut committed: mpsc::UnboundedReceiver<Vec<AckToken>>,
    inbound: mpsc::Sender<Inbound>,
) -> End {
    let idle = Duration::from_millis(job.config.orphan_drain_idle_ms);
    let filters = job.config.subscriptions();
    let mut inbound = Some(inbound);
    let mut connections: u64 = 0;
    let mut connected = false;
    let mut session_present = false;
    let mut seq: u64 = 0;
    let mut sequencer = AckSequencer::default();
    let mut unsent: VecDeque<AckToken> = VecDeque::new();
    // QoS 1 messages of this connection not yet acknowledged.
    let mut outstanding: usize = 0;
    let mut pending_unsubacks: Option<usize> = None;
    let mut last_activity = tokio::time::Instant::now();
    let mut held: VecDeque<Inbound> = VecDeque::new();
    let mut messages: u64 = 0;
    let mut commits_open = true;
    let mut budget_changes = job.budget.subscribe();
    loop {
        let epoch = drain_epoch(job.serial, connections);
        while let Some(token) = unsent.front() {
            if token.epoch != epoch {
                unsent.pop_front();
                continue;
            }
            if !connected || !session.client.try_ack(token) {
                break;
            }
            unsent.pop_front();
            outstanding = outstanding.saturating_sub(1);
            messages += 1;
            job.metrics.orphan_messages_drained.inc();
            // Acks free the broker's in-flight window: more of the queue
            // may follow, so idleness counts from here too.
            last_activity = tokio::time::Instant::now();
        }
        if inbound.is_none() && (outstanding == 0 || !commits_open || !connected) {
            // Stopping: the session stays (with its expiry) for another
            // survivor or its member; what was not acked is redelivered.
            disconnect(&mut session).await;
            return End::Stopped;
        }
        let quiet = connected
            && pending_unsubacks == Some(0)
            && outstanding == 0
            && held.is_empty()
            && last_activity.elapsed() >= idle;
        if quiet {
            // The session is left to its expiry (`mqtt_session_expiry_s`),
            // empty and without subscriptions, rather than ended at once
            // (MQTT 5 would need one more CONNECT with expiry 0): anything
            // the broker still sent on such a connection would be lost with
            // the session as the connection closed, while a kept session
            // keeps it for its member. With MQTT 3.1.1 (no expiry) it stays
            // until its member returns or the broker's
            // `persistent_client_expiration`.
            disconnect(&mut session).await;
            return End::Drained { messages, session_present };
        }
        budget_changes.borrow_and_update();
        let paused = job.budget.exhausted();
        let room = if held.is_empty() { None } else { inbound.clone() };
        let has_room = room.is_some();
        let reserve = async { room.expect("only polled with a sender").reserve_owned().await };
        // Only when nothing else is awaited (or the timer would spin).
        let idle_check = (connected && pending_unsubacks == Some(0) && outstanding == 0 && held.is_empty())
            .then_some(last_activity + idle);
        tokio::select! {
            permit = reserve, if has_room => match permit {
                Ok(permit) => {
                    let tx = permit.send(held.pop_front().expect("held is not empty"));
                    forward_held(&tx, &mut held);
                }
                Err(_) => inbound = None,
            },
            _ = budget_changes.changed(), if paused => {}
            event = session.poll(), if !paused => match event {
                Ok(Event::Connected { session_present: present }) => {
                    connections += 1;
                    connected = true;
                    if connections == 1 {
                        session_present = present;
                    }
                    seq = 0;
                    outstanding = 0;
                    last_activity = tokio::time::Instant::now();
                    // Nothing new is queued to the session once its
                    // subscriptions are gone (the group's other members get
                    // it); what is queued already still comes.
                    let queued = filters.iter().filter(|f| session.client.try_unsubscribe(f)).count();
                    pending_unsubacks = Some(queued);
                    info!(session_present = present, "orphans: connected as the member");
                }
                Ok(Event::Unsubscribed) => {
                    pending_unsubacks = pending_unsubacks.map(|n| n.saturating_sub(1));
                    last_activity = tokio::time::Instant::now();
                }
                Ok(Event::Publish { topic, payload, content_type, pkid, qos }) => {
                    last_activity = tokio::time::Instant::now();
                    let Some(tx) = inbound.clone() else { continue };
                    job.metrics.messages_received.inc();
                    let ack = (qos > 0).then(|| {
                        let token = AckToken { epoch, seq, pkid, qos };
                        seq += 1;
                        outstanding += 1;
                        token
                    });
                    let held_bytes = job.budget.hold(topic.len() + payload.len());
                    let received = Instant::now();
                    let message =
                        Inbound { topic, payload, content_type, received_at: Utc::now(), received, ack, held_bytes };
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
                Ok(_) => {}
                // What was not acked stays in the session, for whoever
                // resumes it (its member, or the next survivor).
                Err(Lost { error, taken_over, .. }) => {
                    return if taken_over { End::TakenOver } else { End::Lost(error) };
                }
            },
            tokens = committed.recv(), if commits_open => match tokens {
                Some(tokens) => {
                    let (ready, _stale) = sequencer.commit(tokens, epoch);
                    unsent.extend(ready);
                }
                None => commits_open = false,
            },
            _ = sleep_until(idle_check), if idle_check.is_some() => {}
            _ = job.shutdown.token.cancelled(), if inbound.is_some() => {
                // Dropping the sender lets the pipeline finish; held
                // messages are never acked (redelivered to whoever resumes).
                inbound = None;
                let before = held.len();
                held.retain(|m| m.ack.is_none());
                outstanding = outstanding.saturating_sub(before - held.len());
            }
            _ = job.shutdown.expired(), if inbound.is_none() => {
                // Batches not committed by the deadline stay unacknowledged.
                disconnect(&mut session).await;
                return End::Stopped;
            }
        }
    }
}

/// DISCONNECT, and read until the broker closes (a second at most).
async fn disconnect(session: &mut Session) {
    let _ = tokio::time::timeout(Duration::from_secs(1), session.client.disconnect()).await;
    let until = tokio::time::Instant::now() + Duration::from_secs(1);
    while let Ok(Ok(_)) = tokio::time::timeout_at(until, session.poll()).await {}
}
