//! The engine: readings and clock ticks in, [`Decision`]s out.
//!
//! Each rule family keeps its own state and says, for the subjects a reading
//! or tick touched, what it sees now (an [`Assessment`]: active at some
//! grade, clear, or suppressed). The engine compares that with the alerts it
//! holds open and turns the difference into decisions: raised, escalated,
//! de-escalated, updated, resolved, suppressed. Hysteresis and confirmation
//! live in the families (see [`debounce`]), so an assessment is already
//! steady; the engine adds operator state (silences, alerts resolved by
//! hand) and the order: sensor health first, then hazards, then diagnoses
//! built on them.
//!
//! The live evaluator and `alerts replay` both drive an [`Engine`] through
//! [`Engine::apply`], so a replay is evidence of live behaviour.

pub mod air;
pub mod composite;
pub mod debounce;
pub mod flood;
pub mod health;
pub mod rain;
pub mod sewer;
mod state;
pub mod streetlight;
pub mod sun;
pub mod water;

pub use state::state_for;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use citygauge_domain::Kind;

use crate::model::{AlertKey, AlertState, Change, Decision, Observation, RuleId, Sensor};
use crate::rules::RuleSet;

/// What drives the engine, in time order.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    Reading(Observation),
    /// The clock moved (silence, windows sliding, dusk and dawn).
    Tick(DateTime<Utc>),
}

impl Input {
    pub fn at(&self) -> DateTime<Utc> {
        match self {
            Input::Reading(o) => o.ts,
            Input::Tick(t) => *t,
        }
    }

    /// The time this input may move the engine's clock to: `None` for a
    /// reading whose time ingest distrusts (see [`Observation::time_trusted`]).
    pub fn clock(&self) -> Option<DateTime<Utc>> {
        match self {
            Input::Reading(o) if !o.time_trusted() => None,
            other => Some(other.at()),
        }
    }
}

/// What a family sees for one subject now.
#[derive(Debug, Clone, PartialEq)]
pub struct Assessment {
    pub key: AlertKey,
    pub at: DateTime<Utc>,
    pub verdict: Verdict,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// The condition holds at `state.grade` (confirmed).
    Active(AlertState),
    /// The condition cleared (confirmed, past hysteresis).
    Clear,
    /// A reading would have raised or escalated this hazard but rests on a
    /// suspect sensor: recorded, never notified. `details.suppressed_by`
    /// says which health alert.
    Suppressed(AlertState),
}

/// What every family may read while it evaluates.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    /// The city-wide rule set.
    pub rules: &'a RuleSet,
    /// Rules after district and station overrides, for sensors that have any.
    pub effective: &'a HashMap<String, Arc<RuleSet>>,
    pub sensors: &'a HashMap<String, Sensor>,
    pub health: &'a health::Health,
}

impl<'a> Context<'a> {
    /// The rules that apply to `sensor_id` (overrides merged).
    pub fn rules_for(&self, sensor_id: &str) -> &'a RuleSet {
        self.effective.get(sensor_id).map_or(self.rules, |r| r.as_ref())
    }

    pub fn sensor(&self, sensor_id: &str) -> Option<&'a Sensor> {
        self.sensors.get(sensor_id)
    }

    /// The health alert that makes `sensor_id`'s readings suspect, if any.
    pub fn suspect(&self, sensor_id: &str) -> Option<AlertKey> {
        self.health.suspect(sensor_id)
    }
}

/// An operator's silence: no new alert of `rule` for `sensor_id` until `until`.
#[derive(Debug, Clone, PartialEq)]
pub struct Silence {
    pub rule: Option<RuleId>,
    pub subject: String,
    pub until: DateTime<Utc>,
}

/// The engine: every family's state plus the alerts it holds open.
#[derive(Debug)]
pub struct Engine {
    rules: RuleSet,
    /// Rules after overrides, for the sensors that have any.
    effective: HashMap<String, Arc<RuleSet>>,
    /// Merged rules by list of applicable overrides ([`RuleSet::overrides_for`]).
    merged: HashMap<Vec<usize>, Option<Arc<RuleSet>>>,
    sensors: HashMap<String, Sensor>,
    silences: Vec<Silence>,
    health: health::Health,
    water: water::Water,
    rain: rain::Rain,
    flood: flood::Flood,
    composite: composite::Composite,
    sewer: sewer::Sewer,
    lights: streetlight::Lights,
    air: air::Air,
    active: BTreeMap<AlertKey, AlertState>,
    /// Alerts an operator resolved while the condition held, by the grade
    /// they had: not raised again until the condition clears or goes higher.
    muted: BTreeMap<AlertKey, u8>,
    /// Alerts whose condition arose during a silence: raised when the
    /// silence ends if the condition still holds. Many families report a
    /// condition only when it changes, so without this a lamp that failed
    /// during its maintenance window would never be reported.
    held_by_silence: BTreeMap<AlertKey, AlertState>,
    now: Option<DateTime<Utc>>,
}

impl Engine {
    pub fn new(rules: RuleSet, sensors: impl IntoIterator<Item = Sensor>) -> Engine {
        let mut engine = Engine {
            rules,
            effective: HashMap::new(),
            merged: HashMap::new(),
            sensors: sensors.into_iter().map(|s| (s.id.clone(), s)).collect(),
            silences: Vec::new(),
            health: health::Health::default(),
            water: water::Water::default(),
            rain: rain::Rain::default(),
            flood: flood::Flood::default(),
            composite: composite::Composite::default(),
            sewer: sewer::Sewer::default(),
            lights: streetlight::Lights::default(),
            air: air::Air::default(),
            active: BTreeMap::new(),
            muted: BTreeMap::new(),
            held_by_silence: BTreeMap::new(),
            now: None,
        };
        engine.recompute_effective();
        engine
    }

    pub fn rules(&self) -> &RuleSet {
        &self.rules
    }

    /// New rules take effect from the next input; state is kept.
    pub fn set_rules(&mut self, rules: RuleSet) {
        self.rules = rules;
        self.recompute_effective();
    }

    /// Adds or replaces a sensor's registry entry (its own rules only: a
    /// registration burst must not re-merge the rules of the whole city).
    pub fn upsert_sensor(&mut self, sensor: Sensor) {
        match self.merged_for(&sensor) {
            Some(rules) => self.effective.insert(sensor.id.clone(), rules),
            None => self.effective.remove(&sensor.id),
        };
        self.sensors.insert(sensor.id.clone(), sensor);
        self.health.registry_changed();
        self.composite.registry_changed();
    }

    pub fn sensors(&self) -> &HashMap<String, Sensor> {
        &self.sensors
    }

    /// The registry's `last_seen` of each sensor, before the stored history
    /// the engine is warmed up on: a sensor silent for longer than the
    /// warm-up stays silent across a restart (see `health`).
    pub fn seed_last_seen(&mut self, seen: impl IntoIterator<Item = (String, DateTime<Utc>)>) {
        self.health.seed_last_seen(seen);
    }

    pub fn set_silences(&mut self, silences: Vec<Silence>) {
        self.silences = silences;
    }

    /// The alerts the engine holds open.
    pub fn active(&self) -> &BTreeMap<AlertKey, AlertState> {
        &self.active
    }

    /// The latest input time seen.
    pub fn now(&self) -> Option<DateTime<Utc>> {
        self.now
    }

    /// `sensor`'s rules after its overrides (`None`: the city-wide set).
    fn merged_for(&mut self, sensor: &Sensor) -> Option<Arc<RuleSet>> {
        let indices = self.rules.overrides_for(sensor);
        if indices.is_empty() {
            return None;
        }
        let rules = &self.rules;
        self.merged.entry(indices).or_insert_with_key(|i| rules.effective_by_overrides(i).map(Arc::new)).clone()
    }

    /// The rules of every sensor with overrides, merged once per distinct
    /// list of overrides (a district override covers thousands of lamps).
    fn recompute_effective(&mut self) {
        self.merged.clear();
        let mut effective = HashMap::new();
        let sensors = std::mem::take(&mut self.sensors);
        for sensor in sensors.values() {
            if let Some(rules) = self.merged_for(sensor) {
                effective.insert(sensor.id.clone(), rules);
            }
        }
        self.sensors = sensors;
        self.effective = effective;
        self.health.registry_changed();
        self.composite.registry_changed();
    }

    /// An operator resolved `key` by hand: forget it, and do not raise it
    /// again until the condition clears or goes above `grade`.
    pub fn operator_resolved(&mut self, key: &AlertKey) {
        if let Some(state) = self.active.remove(key) {
            self.muted.insert(key.clone(), state.grade);
        }
    }

    /// Takes one input and returns what it decided, in order.
    pub fn apply(&mut self, input: &Input) -> Vec<Decision> {
        if let Some(at) = input.clock() {
            if self.now.is_none_or(|now| at > now) {
                self.now = Some(at);
            }
        }
        // Silences end on the engine's clock, never on an older (late)
        // reading's time nor a distrusted one.
        if let Some(now) = self.now {
            self.silences.retain(|s| s.until > now);
        }
        let mut out = Vec::new();
        match input {
            Input::Reading(obs) => self.observe(obs, &mut out),
            Input::Tick(now) => self.tick(*now, &mut out),
        }
        let mut decisions = Vec::new();
        for assessment in out {
            self.decide(assessment, &mut decisions);
        }
        self.release_silenced(&mut decisions);
        decisions
    }

    /// Raises what a silence that has ended was holding back.
    fn release_silenced(&mut self, decisions: &mut Vec<Decision>) {
        if self.held_by_silence.is_empty() {
            return;
        }
        let Some(now) = self.now else { return };
        let held = std::mem::take(&mut self.held_by_silence);
        for (key, state) in held {
            if self.silenced(&key) {
                self.held_by_silence.insert(key, state);
            } else if !self.active.contains_key(&key) {
                self.active.insert(key.clone(), state.clone());
                decisions.push(Decision { key, change: Change::Raised, at: now, state });
            }
        }
    }

    fn observe(&mut self, obs: &Observation, out: &mut Vec<Assessment>) {
        if !self.sensors.contains_key(&obs.sensor_id) {
            // Pending sensors are not evaluated until an operator accepts them.
            return;
        }
        // A reading whose time is distrusted cannot be placed among the
        // sensor's others: health (last seen, runs, spike windows) and the
        // diagnoses (dated by it) skip it; hazard families see it only to
        // report what it would have raised (it is bad, so suppressed).
        let time_trusted = obs.time_trusted();
        if time_trusted {
            // Health reads no one's health but its own.
            let mut health = std::mem::take(&mut self.health);
            let none = health::Health::default();
            let cx = Context { rules: &self.rules, effective: &self.effective, sensors: &self.sensors, health: &none };
            health.observe(&cx, obs, out);
            self.health = health;
        }
        let cx =
            Context { rules: &self.rules, effective: &self.effective, sensors: &self.sensors, health: &self.health };
        self.water.observe(&cx, obs, out);
        self.rain.observe(&cx, obs, out);
        self.flood.observe(&cx, obs, out);
        self.sewer.observe(&cx, obs, &self.rain, out);
        self.lights.observe(&cx, obs, out);
        self.air.observe(&cx, obs, out);
        // Diagnoses combine river and road: only their readings (and the
        // health verdicts those carry) can change one.
        if time_trusted && matches!(obs.kind, Kind::WaterLevel | Kind::FloodDepth) {
            self.composite.observe(&cx, obs, &self.water, &self.flood, out);
        }
    }

    fn tick(&mut self, now: DateTime<Utc>, out: &mut Vec<Assessment>) {
        {
            // Health reads no one's health but its own.
            let mut health = std::mem::take(&mut self.health);
            let none = health::Health::default();
            let cx = Context { rules: &self.rules, effective: &self.effective, sensors: &self.sensors, health: &none };
            health.tick(&cx, now, out);
            self.health = health;
        }
        let cx =
            Context { rules: &self.rules, effective: &self.effective, sensors: &self.sensors, health: &self.health };
        self.water.tick(&cx, now, out);
        self.rain.tick(&cx, now, out);
        self.flood.tick(&cx, now, out);
        self.sewer.tick(&cx, now, &self.rain, out);
        self.lights.tick(&cx, now, out);
        self.air.tick(&cx, now, out);
        self.composite.tick(&cx, now, &self.water, &self.flood, out);
    }

    fn silenced(&self, key: &AlertKey) -> bool {
        self.silences.iter().any(|s| s.subject == key.subject && s.rule.is_none_or(|r| r == key.rule))
    }

    fn decide(&mut self, assessment: Assessment, decisions: &mut Vec<Decision>) {
        let Assessment { key, at, verdict } = assessment;
        match verdict {
            Verdict::Active(state) => {
                if let Some(&grade) = self.muted.get(&key) {
                    if state.grade <= grade {
                        return;
                    }
                    self.muted.remove(&key);
                }
                let change = match self.active.get(&key) {
                    None if self.silenced(&key) => {
                        self.held_by_silence.insert(key, state);
                        return;
                    }
                    None => Change::Raised,
                    Some(old) if state.grade > old.grade => Change::Escalated,
                    Some(old) if state.grade < old.grade => Change::Deescalated,
                    Some(old) if material(old, &state) => Change::Updated,
                    Some(_) => {
                        // Keep the newest figures without a decision.
                        self.active.insert(key, state);
                        return;
                    }
                };
                self.active.insert(key.clone(), state.clone());
                decisions.push(Decision { key, change, at, state });
            }
            Verdict::Clear => {
                self.muted.remove(&key);
                self.held_by_silence.remove(&key);
                if let Some(state) = self.active.remove(&key) {
                    decisions.push(Decision { key, change: Change::Resolved, at, state });
                }
            }
            Verdict::Suppressed(state) => {
                decisions.push(Decision { key, change: Change::Suppressed, at, state });
            }
        }
    }

    /// After a restart: the engine has been warmed up on stored readings
    /// (notifying no one); `open` is what the database holds open. Returns
    /// the decisions that bring the database in line (alerts raised while
    /// down, clears that were missed, grades that moved), without raising
    /// twice what is already open.
    pub fn reconcile(&self, open: &BTreeMap<AlertKey, AlertState>, now: DateTime<Utc>) -> Vec<Decision> {
        let mut decisions = Vec::new();
        for (key, state) in &self.active {
            let change = match open.get(key) {
                None => Change::Raised,
                Some(old) if state.grade > old.grade => Change::Escalated,
                Some(old) if state.grade < old.grade => Change::Deescalated,
                Some(_) => continue,
            };
            decisions.push(Decision { key: key.clone(), change, at: now, state: state.clone() });
        }
        for (key, state) in open {
            // Not cleared: resolved by hand (muted), or holding while a
            // silence keeps it from being raised (a silence stops new
            // alerts, it does not close open ones).
            let holds = self.muted.contains_key(key) || self.held_by_silence.contains_key(key);
            if !self.active.contains_key(key) && !holds {
                decisions.push(Decision { key: key.clone(), change: Change::Resolved, at: now, state: state.clone() });
            }
        }
        decisions
    }

    /// Adopts the database's open alerts as the engine's own (after
    /// [`Engine::reconcile`]'s decisions are stored).
    pub fn adopt(&mut self, open: BTreeMap<AlertKey, AlertState>) {
        for (key, state) in open {
            self.held_by_silence.remove(&key);
            self.active.entry(key).or_insert(state);
        }
    }
}

/// Whether a same-grade state is worth an `updated` event (new peak, lead
/// time or rule figures), not every new reading.
fn material(old: &AlertState, new: &AlertState) -> bool {
    old.level != new.level
        || old.severity != new.severity
        || old.details != new.details
        || lead_bucket(old.lead_time_s) != lead_bucket(new.lead_time_s)
}

/// Lead times compared in 10-minute steps, so a projection that wobbles by
/// seconds is not an update.
fn lead_bucket(lead: Option<i64>) -> Option<i64> {
    lead.map(|s| s.div_euclid(600))
}

/// Runs `inputs` (time-ordered) through `engine`, ticking every `tick_s`
/// seconds of input time between them, as the live evaluator's clock does:
/// the replay path.
pub fn run(engine: &mut Engine, inputs: impl IntoIterator<Item = Input>, tick_s: i64) -> Vec<Decision> {
    let mut decisions = Vec::new();
    let step = Duration::seconds(tick_s.max(1));
    let mut next_tick: Option<DateTime<Utc>> = None;
    for input in inputs {
        // A reading stamped a day ahead (or in 1970) must not run the clock
        // through a day of ticks (or fifty years of them).
        if let Some(at) = input.clock() {
            let mut tick = *next_tick.get_or_insert_with(|| crate::engine::align(at, step));
            while tick <= at {
                decisions.extend(engine.apply(&Input::Tick(tick)));
                tick += step;
            }
            next_tick = Some(tick);
        }
        decisions.extend(engine.apply(&input));
    }
    decisions
}

/// `t` rounded up to a multiple of `step` since the epoch.
pub fn align(t: DateTime<Utc>, step: Duration) -> DateTime<Utc> {
    let step_s = step.num_seconds().max(1);
    let s = t.timestamp();
    let up = s.div_euclid(step_s) * step_s + if s.rem_euclid(step_s) == 0 { 0 } else { step_s };
    DateTime::from_timestamp(up, 0).unwrap_or(t)
}
