//! The live evaluator: one replica at a time (the lease, [`super::leader`])
//! turns each committed reading and each clock tick into alert decisions
//! and stores them ([`super::persist`]).
//!
//! Each time this replica takes the lease:
//! 1. `LISTEN` on the lease connection (readings, alert configuration,
//!    registry) before loading anything, so nothing committed meanwhile is
//!    missed;
//! 2. load the rule set in force, the active sensors, the silences;
//! 3. warm up: run a fresh engine over the stored readings through
//!    `engine::run` (the replay path), storing nothing, so rolling windows
//!    and confirmations are rebuilt: per kind the longest window its rules
//!    read, at least `--alerts-warmup-hours`, and the sewer rules' days for
//!    sewer lines ([`history::HistoryPlan`]);
//! 4. reconcile with the alerts the database holds open: store what changed
//!    while no one evaluated (alerts raised, escalated, cleared), never
//!    raising twice what is open; then adopt the open alerts;
//! 5. evaluate each notified reading as it arrives (a notification's
//!    decisions in one transaction) and tick every `--alerts-tick-ms` with
//!    the wall clock.
//!
//! A lost connection ends the session: the replica goes back to standby and
//! another (or this one, later) starts again at 1. Any failure to store does
//! the same, so the database and the engine are brought back in line by the
//! next warm-up and reconciliation rather than drifting apart.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use citygauge_alerts::engine::Input;
use citygauge_alerts::{Change, Decision, Engine, Sensor};
use citygauge_domain::Kind;
use citygauge_store::changes::{self, READINGS_CHANNEL, SENSORS_CHANNEL};
use deadpool_postgres::Pool;
use tokio_postgres::Notification;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, info_span, warn, Instrument};

use crate::alerting::leader::{self, LeaseConnection};
use crate::alerting::persist::{self, CONFIG_CHANNEL};
use crate::alerting::{history, AlertingConfig};
use crate::metrics::Metrics;
use crate::QueryError;

/// What the evaluator needs from the service.
#[derive(Debug, Clone)]
pub struct EvaluatorContext {
    pub pool: Pool,
    /// For the dedicated connection that holds the lease and listens.
    pub database: citygauge_store::Database,
    pub config: Arc<AlertingConfig>,
    pub timezone: chrono_tz::Tz,
    pub metrics: Metrics,
}

/// How far back the change stream may repeat a reading the warm-up read.
const REPEAT_WINDOW: chrono::Duration = chrono::Duration::minutes(15);
/// How long after warm-up repeated readings are looked for.
const REPEAT_GRACE: Duration = Duration::from_secs(10);
/// Silences start and end on their own; re-read them this often.
const SILENCES_REFRESH: Duration = Duration::from_secs(60);
/// Notifications handled in a row before the clock gets its turn.
const DRAIN: usize = 256;
/// How far back hand resolutions still keep the engine quiet after a restart.
const RESOLUTIONS_LOOKBACK: chrono::Duration = chrono::Duration::days(30);

/// Runs until `stop`: waits for the lease, then evaluates; back to standby
/// whenever the session ends with an error.
pub async fn run(context: EvaluatorContext, stop: CancellationToken) {
    let poll = Duration::from_millis(context.config.alerts_leader_poll_ms);
    let mut backoff = Duration::from_millis(200);
    loop {
        let lease = leader::acquire(&context.database, poll, &stop).instrument(info_span!("alert_lease")).await;
        let Some(lease) = lease else { return };
        let started = Instant::now();
        let result = session(&context, lease, &stop).instrument(info_span!("alert_evaluator")).await;
        context.metrics.alert_leader.set(0);
        match result {
            Ok(()) => return,
            Err(error) => warn!(%error, "alerts: evaluation stopped; back to standby"),
        }
        if started.elapsed() > Duration::from_secs(60) {
            backoff = Duration::from_millis(200);
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = stop.cancelled() => return,
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

/// The engine's tick in whole seconds (the replay path's unit).
pub fn tick_seconds(config: &AlertingConfig) -> i64 {
    (config.alerts_tick_ms / 1_000).max(1) as i64
}

/// One lease's life: Ok when stopped, Err when the connection or a store failed.
async fn session(
    cx: &EvaluatorContext,
    mut lease: LeaseConnection,
    stop: &CancellationToken,
) -> Result<(), QueryError> {
    lease
        .client
        .batch_execute(&format!("LISTEN {READINGS_CHANNEL}; LISTEN {CONFIG_CHANNEL}; LISTEN {SENSORS_CHANNEL}"))
        .await?;
    let listen_at = Utc::now();
    let file = cx.config.alert_rules_file.as_deref();
    let (rules, source) = history::rules_in_force(&lease.client, file, true).await?;
    let sensors = history::sensors(&lease.client, &rules).await?;
    let sensor_count = sensors.len();
    let until = Utc::now();
    let minimum = chrono::Duration::hours(i64::from(cx.config.alerts_warmup_hours));
    let plan = history::HistoryPlan::new(&rules, &sensors, minimum, until);
    let mut engine = Engine::new(rules, sensors);
    engine.set_silences(history::silences(&lease.client).await?);
    // A sensor silent for longer than the warm-up stays silent (health
    // judges it from the registry's last receipt).
    let seen = lease
        .client
        .query("SELECT id, last_seen FROM sensors WHERE status = 'active' AND last_seen IS NOT NULL", &[])
        .await?;
    engine.seed_last_seen(seen.iter().map(|row| (row.get::<_, String>(0), row.get::<_, chrono::DateTime<Utc>>(1))));

    // Warm up on stored readings, storing nothing.
    let tick_s = tick_seconds(&cx.config);
    let ran = history::run_engine(engine, &cx.pool, &plan, until, tick_s, Some(listen_at - REPEAT_WINDOW))
        .instrument(info_span!("alert_warmup"))
        .await?;
    let (mut engine, mut warm, mut seen) = (ran.engine, ran.decisions, ran.seen);
    warm.extend(apply(&mut engine, &Input::Tick(until))?);
    mute_hand_resolved(&lease, &mut engine, &warm).await?;

    // Bring the database in line with what the engine now knows.
    let open = history::open_alerts(&lease.client).await?;
    let now = Utc::now();
    let decisions: Vec<Decision> =
        engine.reconcile(&open, now).into_iter().map(|d| when_it_happened(d, &warm, now)).collect();
    let reconciled = decisions.len();
    store(cx, &mut lease, &engine, &decisions, None).await?;
    engine.adopt(history::open_alerts(&lease.client).await?);
    // Leading from here: the lease is held and the engine is warm.
    cx.metrics.alert_leader.set(1);
    info!(
        sensors = sensor_count,
        rules = source.as_str(),
        warmup_readings = ran.readings,
        warmup_from = %plan.start(),
        open = engine.active().len(),
        reconciled,
        "alerts: engine warmed up; evaluating the change stream"
    );

    let warmed_at = Instant::now();
    let mut ticker = tokio::time::interval(Duration::from_millis(cx.config.alerts_tick_ms));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut silences = tokio::time::interval(SILENCES_REFRESH);
    silences.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    silences.reset();
    loop {
        // Biased with the clock first: the clock is ready once per tick, so
        // it cannot starve the readings, and a flood of readings cannot
        // starve the clock (nor the heartbeat).
        tokio::select! {
            biased;
            _ = stop.cancelled() => return Ok(()),
            _ = ticker.tick() => {
                lease.heartbeat().await?;
                let decisions = apply(&mut engine, &Input::Tick(Utc::now()))?;
                store(cx, &mut lease, &engine, &decisions, None).await?;
            }
            _ = silences.tick() => {
                engine.set_silences(history::silences(&lease.client).await?);
            }
            n = lease.notifications.recv() => {
                let Some(n) = n else {
                    return Err(QueryError::Unavailable("the lease connection closed".into()));
                };
                let mut reload_sensors = false;
                handle(cx, &mut lease, &mut engine, n, Instant::now(), &mut seen, &mut reload_sensors).await?;
                // Registrations come in bursts: reload once for what is queued.
                for _ in 0..DRAIN {
                    let Ok(n) = lease.notifications.try_recv() else { break };
                    handle(cx, &mut lease, &mut engine, n, Instant::now(), &mut seen, &mut reload_sensors).await?;
                }
                if reload_sensors {
                    reload_registry(&lease, &mut engine).await?;
                }
                if !seen.is_empty() && warmed_at.elapsed() > REPEAT_GRACE && lease.notifications.is_empty() {
                    seen = HashSet::new();
                }
            }
        }
    }
}

/// One notification: readings evaluated (their decisions stored together),
/// or configuration reloaded.
async fn handle(
    cx: &EvaluatorContext,
    lease: &mut LeaseConnection,
    engine: &mut Engine,
    n: Notification,
    received: Instant,
    seen: &mut HashSet<(Kind, String, DateTime<Utc>)>,
    reload_sensors: &mut bool,
) -> Result<(), QueryError> {
    match n.channel() {
        READINGS_CHANNEL => {
            let readings = match changes::decode(n.payload()) {
                Ok(readings) => readings,
                Err(error) => {
                    warn!(%error, "alerts: unreadable readings notification");
                    return Ok(());
                }
            };
            let mut decisions = Vec::new();
            for reading in readings {
                if !seen.is_empty() && seen.remove(&(reading.kind, reading.sensor_id.clone(), reading.ts)) {
                    continue; // already fed during warm-up
                }
                decisions.extend(apply(engine, &Input::Reading(history::observation(reading)))?);
            }
            store(cx, lease, engine, &decisions, Some(received)).await?;
        }
        SENSORS_CHANNEL => *reload_sensors = true,
        CONFIG_CHANNEL => {
            let payload: serde_json::Value = serde_json::from_str(n.payload()).unwrap_or_default();
            match payload["what"].as_str() {
                Some("rules") => {
                    let file = cx.config.alert_rules_file.as_deref();
                    let (rules, source) = history::rules_in_force(&lease.client, file, false).await?;
                    engine.set_rules(rules);
                    *reload_sensors = true; // the river-station radius may have changed
                    info!(rules = source.as_str(), "alerts: rule set reloaded");
                }
                Some("silences") => engine.set_silences(history::silences(&lease.client).await?),
                Some("resolved") => {
                    let Some(id) = payload["alert_id"].as_i64() else { return Ok(()) };
                    // Unless the engine already raised the key again meanwhile.
                    if let Some((key, false)) = history::key_of(&lease.client, id).await? {
                        debug!(rule = key.rule.as_str(), subject = %key.subject, "alerts: resolved by an operator");
                        engine.operator_resolved(&key);
                    }
                }
                _ => warn!(payload = n.payload(), "alerts: unknown configuration notification"),
            }
        }
        _ => {}
    }
    Ok(())
}

/// [`Engine::apply`], with a panic (a bug in a rule family) turned into an
/// error: the session ends and the next one starts from a fresh engine,
/// instead of the evaluator dying with the task.
fn apply(engine: &mut Engine, input: &Input) -> Result<Vec<Decision>, QueryError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| engine.apply(input)))
        .map_err(|_| QueryError::Internal(format!("the alert engine panicked on {input:?}")))
}

/// Stores decisions (one transaction) and counts them; `received` is when
/// the notification that caused them arrived, for the latency histogram.
async fn store(
    cx: &EvaluatorContext,
    lease: &mut LeaseConnection,
    engine: &Engine,
    decisions: &[Decision],
    received: Option<Instant>,
) -> Result<(), QueryError> {
    if decisions.is_empty() {
        return Ok(());
    }
    let stored = persist::store(&mut lease.client, decisions, engine.rules(), cx.timezone).await?;
    if let Some(received) = received {
        cx.metrics.alert_evaluation_latency.observe(received.elapsed().as_secs_f64());
    }
    for (decision, change) in decisions.iter().zip(&stored.changes) {
        let Some(change) = change else { continue };
        cx.metrics.alert_decisions.with_label_values(&[change.as_str()]).inc();
        debug!(rule = decision.key.rule.as_str(), subject = %decision.key.subject, change = change.as_str(),
               grade = decision.state.grade, "alerts: decision stored");
    }
    Ok(())
}

/// Reloads the registry into the engine (sensors added or changed).
async fn reload_registry(lease: &LeaseConnection, engine: &mut Engine) -> Result<(), QueryError> {
    let sensors: Vec<Sensor> = history::sensors(&lease.client, engine.rules()).await?;
    let mut changed = 0;
    for sensor in sensors {
        if engine.sensors().get(&sensor.id) != Some(&sensor) {
            engine.upsert_sensor(sensor);
            changed += 1;
        }
    }
    if changed > 0 {
        debug!(changed, "alerts: registry reloaded");
    }
    Ok(())
}

/// Alerts an operator resolved by hand while their condition held stay
/// quiet after a restart as they would have live: when the warm-up shows the
/// condition neither cleared nor grew past the resolved grade since.
async fn mute_hand_resolved(lease: &LeaseConnection, engine: &mut Engine, warm: &[Decision]) -> Result<(), QueryError> {
    let since = Utc::now() - RESOLUTIONS_LOOKBACK;
    for resolution in history::operator_resolutions(&lease.client, since).await? {
        if !engine.active().contains_key(&resolution.key) {
            continue;
        }
        let after = warm.iter().filter(|d| d.key == resolution.key && d.at > resolution.at);
        let came_back = after.into_iter().any(|d| {
            d.change == Change::Resolved
                || (matches!(d.change, Change::Raised | Change::Escalated) && d.state.grade > resolution.grade)
        });
        if !came_back {
            engine.operator_resolved(&resolution.key);
        }
    }
    Ok(())
}

/// A reconciling decision dated when the engine saw the change during the
/// warm-up (an alert raised or cleared while no one evaluated), not when the
/// evaluator came back; `now` when the warm-up holds no such moment.
fn when_it_happened(mut decision: Decision, warm: &[Decision], now: DateTime<Utc>) -> Decision {
    let same = |d: &&Decision| d.key == decision.key && d.at <= now;
    let at = match decision.change {
        Change::Raised => warm.iter().rev().filter(same).find(|d| d.change == Change::Raised).map(|d| d.at),
        Change::Resolved => warm.iter().rev().filter(same).find(|d| d.change == Change::Resolved).map(|d| d.at),
        _ => warm
            .iter()
            .rev()
            .filter(same)
            .find(|d| matches!(d.change, Change::Raised | Change::Escalated | Change::Deescalated))
            .map(|d| d.at),
    };
    decision.at = at.unwrap_or(now);
    decision
}
