//! Supervision: every task of the daemon is watched, and one that fails,
//! panics or simply ends before shutdown stops the daemon with a message
//! naming it, instead of leaving a daemon that looks alive and stores nothing.
//! Shutdown itself has one deadline for everything (`shutdown_timeout_s`).

use std::future::Future;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use tokio::task::AbortHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::error;

use crate::http::Health;
use crate::IngestError;

/// The daemon's stop signal (the caller's shutdown, or a task's failure)
/// and the one deadline by which stopping must be done.
#[derive(Debug)]
pub(crate) struct Shutdown {
    pub token: CancellationToken,
    timeout: Duration,
    deadline: OnceLock<Instant>,
}

impl Shutdown {
    pub fn new(token: CancellationToken, timeout: Duration) -> Self {
        Shutdown { token, timeout, deadline: OnceLock::new() }
    }

    pub fn is_stopping(&self) -> bool {
        self.token.is_cancelled()
    }

    /// When stopping must be done; fixed by the first caller once stopping
    /// (the daemon's main task asks as soon as the signal comes).
    pub fn deadline(&self) -> Option<Instant> {
        self.is_stopping().then(|| *self.deadline.get_or_init(|| Instant::now() + self.timeout))
    }

    /// Completes when stopping has begun and its deadline has passed.
    pub async fn expired(&self) {
        self.token.cancelled().await;
        if let Some(deadline) = self.deadline() {
            tokio::time::sleep_until(deadline).await;
        }
    }
}

/// Runs the daemon's tasks and remembers the first failure.
#[derive(Debug)]
pub(crate) struct Supervisor {
    shutdown: Arc<Shutdown>,
    health: Arc<Health>,
    failure: Mutex<Option<(&'static str, String)>>,
    aborts: Mutex<Vec<AbortHandle>>,
    tracker: TaskTracker,
}

impl Supervisor {
    pub fn new(shutdown: Arc<Shutdown>, health: Arc<Health>) -> Self {
        Supervisor {
            shutdown,
            health,
            failure: Mutex::new(None),
            aborts: Mutex::new(Vec::new()),
            tracker: TaskTracker::new(),
        }
    }

    /// Spawns `task` as `name`. It must run until shutdown: if it returns
    /// (with or without an error) or panics before, the daemon stops.
    pub fn spawn<F>(self: &Arc<Self>, name: &'static str, task: F)
    where
        F: Future<Output = Result<(), IngestError>> + Send + 'static,
    {
        let inner = tokio::spawn(task);
        lock(&self.aborts).push(inner.abort_handle());
        let supervisor = self.clone();
        self.tracker.spawn(async move {
            match inner.await {
                Ok(Ok(())) if supervisor.shutdown.is_stopping() => {}
                Ok(Ok(())) => supervisor.fail(name, "ended before shutdown".into()),
                Ok(Err(error)) => supervisor.fail(name, error.to_string()),
                Err(join) if join.is_panic() => {
                    let payload = join.into_panic();
                    let message = payload
                        .downcast_ref::<&str>()
                        .map(|s| s.to_string())
                        .or_else(|| payload.downcast_ref::<String>().cloned())
                        .unwrap_or_else(|| "no message".into());
                    supervisor.fail(name, format!("panicked: {message}"));
                }
                // Aborted by `abort_all`, past the shutdown deadline.
                Err(_) => {}
            }
        });
    }

    /// Records that `task` cannot go on (the first failure is the one
    /// reported), marks the daemon not ready and stops it.
    pub fn fail(&self, task: &'static str, cause: String) {
        {
            let mut failure = lock(&self.failure);
            if failure.is_none() {
                error!(task, %cause, "the {task} task stopped; stopping the daemon");
                *failure = Some((task, cause));
            }
        }
        self.health.set_task_failed();
        self.shutdown.token.cancel();
    }

    /// The first failure, as the daemon's result.
    pub fn failure(&self) -> Option<IngestError> {
        lock(&self.failure).clone().map(|(task, cause)| IngestError::Task { task, cause })
    }

    /// Waits for every task until `until`; `false` if some still run.
    pub async fn wait(&self, until: Instant) -> bool {
        self.tracker.close();
        tokio::time::timeout_at(until, self.tracker.wait()).await.is_ok()
    }

    /// Ends what still runs (past the shutdown deadline).
    pub fn abort_all(&self) {
        for handle in lock(&self.aborts).iter() {
            handle.abort();
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn supervised() -> (Arc<Supervisor>, Arc<Shutdown>, Arc<Health>) {
        let shutdown = Arc::new(Shutdown::new(CancellationToken::new(), Duration::from_secs(5)));
        let health = Arc::new(Health::default());
        (Arc::new(Supervisor::new(shutdown.clone(), health.clone())), shutdown, health)
    }

    #[tokio::test]
    async fn a_task_that_ends_early_stops_the_daemon_naming_it() {
        let (supervisor, shutdown, health) = supervised();
        let stop = shutdown.token.clone();
        supervisor.spawn("maintenance", async move {
            stop.cancelled().await;
            Ok(())
        });
        supervisor.spawn("pipeline", async { Ok(()) });
        tokio::time::timeout(Duration::from_secs(5), shutdown.token.cancelled()).await.expect("stopped");
        assert!(supervisor.wait(Instant::now() + Duration::from_secs(5)).await);
        let failure = supervisor.failure().expect("a failure").to_string();
        assert_eq!(failure, "the pipeline task stopped: ended before shutdown");
        assert!(!health.tasks_ok(), "not ready while stopping for a failure");
    }

    #[tokio::test]
    async fn a_panic_or_an_error_names_the_task_and_its_cause() {
        let (supervisor, shutdown, _) = supervised();
        supervisor.spawn("writer", async { panic!("index out of bounds") });
        shutdown.token.cancelled().await;
        assert!(supervisor.wait(Instant::now() + Duration::from_secs(5)).await);
        assert_eq!(supervisor.failure().unwrap().to_string(), "the writer task stopped: panicked: index out of bounds");

        let (supervisor, shutdown, _) = supervised();
        supervisor.spawn("mqtt", async { Err(IngestError::Config("boom".into())) });
        shutdown.token.cancelled().await;
        assert!(supervisor.wait(Instant::now() + Duration::from_secs(5)).await);
        assert_eq!(supervisor.failure().unwrap().to_string(), "the mqtt task stopped: invalid configuration: boom");
    }

    #[tokio::test]
    async fn tasks_ending_at_shutdown_are_no_failure_and_stragglers_are_cut() {
        let (supervisor, shutdown, health) = supervised();
        let stop = shutdown.token.clone();
        supervisor.spawn("touch", async move {
            stop.cancelled().await;
            Ok(())
        });
        supervisor.spawn("stuck", std::future::pending());
        shutdown.token.cancel();
        let deadline = shutdown.deadline().expect("stopping");
        assert!(deadline > Instant::now() + Duration::from_secs(4), "the deadline is fixed once");
        assert_eq!(shutdown.deadline(), Some(deadline));
        assert!(!supervisor.wait(Instant::now() + Duration::from_millis(100)).await, "one task never ends");
        supervisor.abort_all();
        assert!(supervisor.wait(Instant::now() + Duration::from_secs(5)).await);
        assert!(supervisor.failure().is_none());
        assert!(health.tasks_ok());
    }
}
