//! The evaluation lease: exactly one evaluator at a time among the
//! query-service replicas.
//!
//! Each replica keeps one dedicated connection (`application_name
//! citygauge-alerts`) and polls `pg_try_advisory_lock(LEASE_KEY)` on it every
//! `--alerts-leader-poll-ms` while on standby. The lock is session-level, so
//! it lives exactly as long as that connection's backend.
//!
//! Fencing: the leader writes every alert change through that same
//! connection. A leader whose connection died (network, `pg_terminate_backend`,
//! a database restart) lost its lock with it, and every later statement on
//! it fails: it cannot write after another replica took over. Conversely
//! PostgreSQL hands the lock to another session only once the holder's
//! backend is gone, and a gone backend takes no more statements. So at most
//! one replica writes at any time, without clocks or lease expiry.
//!
//! Liveness: the server side keeps TCP keepalives short (`tcp_keepalives_*`)
//! and checks for vanished clients (`client_connection_check_interval`), so
//! the backend of a replica that disappeared is reaped (and the lock freed)
//! within seconds; the client side has keepalives too and the leader runs a
//! heartbeat statement every tick, so it notices a dead connection at once.
//! `idle_session_timeout` is switched off for this session (a standby or a
//! quiet leader is idle between statements), and the design does not depend
//! on it either way: a killed session just sends the replica back to standby.

use std::time::Duration;

use citygauge_store::Database;
use tokio::sync::mpsc;
use tokio_postgres::{AsyncMessage, Client, Notification};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::QueryError;

/// The advisory lock key of the evaluation lease ("cgalerts" in ASCII).
/// Distinct from every other advisory key of the platform (the migrations'
/// among them: sharing it would stall every migration while a leader runs).
pub const LEASE_KEY: i64 = 0x6367_616c_6572_7473;

/// Statements on the lease connection are short (a decision batch); a stuck
/// one must not hold the lease forever.
const STATEMENT_TIMEOUT: &str = "30s";

/// Settings applied to the lease session. The server-side keepalives make
/// PostgreSQL notice a vanished replica (and free its lock) in about 25 s at
/// worst over TCP; an orderly exit or a killed process frees it at once.
const SESSION_SETTINGS: [&str; 6] = [
    "SET idle_session_timeout = 0",
    "SET idle_in_transaction_session_timeout = '60s'",
    "SET tcp_keepalives_idle = 10",
    "SET tcp_keepalives_interval = 5",
    "SET tcp_keepalives_count = 3",
    "SET client_connection_check_interval = '2s'",
];

/// A connection of this replica's evaluator, standby or leading.
#[derive(Debug)]
pub struct LeaseConnection {
    pub client: Client,
    /// Notifications (after `LISTEN`); closed when the connection ends.
    ///
    /// Unbounded on purpose: the connection task must never wait on the
    /// evaluator, or a query the evaluator awaits on the same connection
    /// would never complete. The evaluator drains it continuously.
    pub notifications: mpsc::UnboundedReceiver<Notification>,
    pump: tokio::task::JoinHandle<()>,
}

impl Drop for LeaseConnection {
    fn drop(&mut self) {
        // Dropping the client closes the session (and frees the lock); the
        // pump ends with it, but do not leave it behind if it lingers.
        self.pump.abort();
    }
}

impl LeaseConnection {
    /// Connects with the lease session's settings.
    pub async fn connect(database: &Database) -> Result<LeaseConnection, QueryError> {
        let mut database = database.clone();
        database
            .config
            .application_name("citygauge-alerts")
            .keepalives(true)
            .keepalives_idle(Duration::from_secs(10))
            .keepalives_interval(Duration::from_secs(5))
            .keepalives_retries(3)
            .connect_timeout(Duration::from_secs(5))
            .options(format!("-c statement_timeout={STATEMENT_TIMEOUT}"));
        let (client, mut connection) = database.connect().await?;
        let (tx, notifications) = mpsc::unbounded_channel();
        let pump = tokio::spawn(async move {
            let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
            use futures_util::StreamExt;
            while let Some(message) = messages.next().await {
                match message {
                    Ok(AsyncMessage::Notification(n)) => {
                        // A closed receiver means the evaluator is done with it.
                        let _ = tx.send(n);
                    }
                    Ok(_) => {}
                    Err(error) => {
                        debug!(%error, "alerts: lease connection ended");
                        return;
                    }
                }
            }
        });
        for setting in SESSION_SETTINGS {
            // Older servers lack some of these; none is required for safety.
            if let Err(error) = client.batch_execute(setting).await {
                if client.is_closed() {
                    return Err(error.into());
                }
                debug!(%error, setting, "alerts: lease session setting not applied");
            }
        }
        Ok(LeaseConnection { client, notifications, pump })
    }

    /// Tries to take the lease; `Ok(false)` when another replica holds it.
    pub async fn try_lock(&self) -> Result<bool, QueryError> {
        let row = self.client.query_one("SELECT pg_try_advisory_lock($1)", &[&LEASE_KEY]).await?;
        Ok(row.get(0))
    }

    /// A cheap statement that fails if the connection (and so the lease) is gone.
    pub async fn heartbeat(&self) -> Result<(), QueryError> {
        self.client.batch_execute("SELECT 1").await?;
        Ok(())
    }

    pub fn is_closed(&self) -> bool {
        self.client.is_closed()
    }
}

/// Waits on standby until this replica holds the lease; `None` when stopped.
/// Reconnects (with backoff) whenever the standby connection fails.
pub async fn acquire(database: &Database, poll: Duration, stop: &CancellationToken) -> Option<LeaseConnection> {
    let mut backoff = Duration::from_millis(200);
    let mut standby_logged = false;
    loop {
        let connection = tokio::select! {
            c = LeaseConnection::connect(database) => c,
            _ = stop.cancelled() => return None,
        };
        match connection {
            Ok(connection) => {
                backoff = Duration::from_millis(200);
                loop {
                    let locked = tokio::select! {
                        l = connection.try_lock() => l,
                        _ = stop.cancelled() => return None,
                    };
                    match locked {
                        Ok(true) => {
                            info!("alerts: evaluation lease taken; this replica evaluates");
                            return Some(connection);
                        }
                        Ok(false) => {
                            if !standby_logged {
                                info!("alerts: another replica evaluates; standing by");
                                standby_logged = true;
                            }
                        }
                        Err(error) => {
                            warn!(%error, "alerts: lease connection failed; reconnecting");
                            break;
                        }
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(poll) => {}
                        _ = stop.cancelled() => return None,
                    }
                }
            }
            Err(error) => {
                warn!(%error, retry_in_ms = backoff.as_millis() as u64, "alerts: cannot connect for the lease")
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = stop.cancelled() => return None,
        }
        backoff = (backoff * 2).min(Duration::from_secs(5)).max(poll.min(Duration::from_secs(5)));
    }
}

#[cfg(test)]
mod tests {
    /// Session advisory locks share one key space with the migrations'
    /// transaction lock: a collision stalls migrations while a leader runs.
    #[test]
    fn advisory_keys_are_distinct() {
        let mut keys =
            vec![super::LEASE_KEY, crate::alerting::mqtt::LOCK_KEY, citygauge_store::migrate::MIGRATION_LOCK];
        // The rollup materialiser's per-kind keys.
        keys.extend(
            (0..citygauge_domain::Kind::ALL.len() as i64).map(|k| citygauge_store::rollups::MATERIALISE_LOCK + k),
        );
        for (i, a) in keys.iter().enumerate() {
            for b in &keys[i + 1..] {
                assert_ne!(a, b);
            }
        }
    }
}
