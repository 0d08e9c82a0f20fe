//! Sensor health: silent, flat-lined, out of range, spiking. Evaluated before
//! every hazard, which it can suppress: a stuck, out-of-range or spiking
//! sensor raises a maintenance alert, never a flood alert.
//!
//! - `sensor_silent`: no reading past the expected interval (registry
//!   `installation.cadence_s`) times `silent_factor` (3, as the query
//!   service's "stale"), at least `silent_min_s`; tick-driven, cleared by
//!   the next reading. Silence is judged against the *data clock*: the
//!   latest credible reading time the engine has seen (capped by the tick).
//!   During a backfill (a gateway catching up, `dev` replaying hours at
//!   360×) the wall clock runs hours ahead of the readings, and judged
//!   against it every sensor would look silent: 2,000 tickets that clear a
//!   minute later. Against the data clock a sensor is silent when the city
//!   moved on without it. When nothing arrives at all, that is the
//!   platform's outage (ingest `/readyz`, its metrics), not one ticket per
//!   sensor. A sensor never heard from (since the registry's `last_seen`,
//!   see [`Health::seed_last_seen`]) has no cadence to miss yet: not silent.
//! - `sensor_flatline`: see [`checks::FlatlineRules`]; ingest does not
//!   detect flat lines, this family does.
//! - `sensor_out_of_range`: ingest's `out_of_range:*` (bad) readings.
//! - `sensor_spike`: ingest's `spike:*` (suspect) readings, `count` within
//!   `window_s`; cleared after `quiet_s` without one.
//!
//! [`Health::suspect`] names the alert (open, or pending: a first spike, a
//! first out-of-range reading) that makes a sensor's readings untrusted, so
//! hazards are suppressed from the first suspect reading on.

mod checks;

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

use chrono::{DateTime, Duration, Utc};
use citygauge_domain::Kind;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::debounce::{Confirm, Tracker};
use super::water::support;
use super::{state_for, Assessment, Context, Verdict};
use crate::model::{AlertKey, AlertState, Observation, RuleId, Sensor, Severity};
use crate::AlertError;
pub use checks::{FlatlineRules, OutOfRangeRules, SpikeRules};

/// Settings of this family (section `health` of the rules file).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HealthRules {
    pub enabled: bool,
    /// Silent past `silent_factor` × the expected interval...
    pub silent_factor: f64,
    /// ...and never sooner than this.
    pub silent_min_s: i64,
    /// Kinds watched for silence (streetlights report on events and have their own rules).
    pub silent_kinds: Vec<String>,
    /// Expected interval when the registry does not say.
    pub default_interval_s: i64,
    pub flatline: FlatlineRules,
    pub out_of_range: OutOfRangeRules,
    pub spike: SpikeRules,
}

impl Default for HealthRules {
    fn default() -> HealthRules {
        HealthRules {
            enabled: true,
            silent_factor: 3.0,
            silent_min_s: 600,
            silent_kinds: ["rainfall", "water_level", "flood_depth", "air_quality"].map(String::from).to_vec(),
            default_interval_s: 600,
            flatline: FlatlineRules::default(),
            out_of_range: OutOfRangeRules::default(),
            spike: SpikeRules::default(),
        }
    }
}

impl HealthRules {
    /// `path` is this section's name in the rules file, for error messages.
    pub fn validate(&self, path: &str) -> Result<(), AlertError> {
        if !(self.silent_factor.is_finite() && self.silent_factor >= 1.0) {
            return Err(AlertError::invalid(format!("{path}.silent_factor"), "must be at least 1"));
        }
        support::seconds(path, "silent_min_s", self.silent_min_s, 7 * 86_400)?;
        for (i, kind) in self.silent_kinds.iter().enumerate() {
            if kind.parse::<Kind>().is_err() {
                return Err(AlertError::invalid(
                    format!("{path}.silent_kinds[{i}]"),
                    format!("`{kind}` is not a sensor kind"),
                ));
            }
        }
        support::seconds(path, "default_interval_s", self.default_interval_s, 7 * 86_400)?;
        self.flatline.validate(&format!("{path}.flatline"))?;
        self.out_of_range.validate(&format!("{path}.out_of_range"))?;
        self.spike.validate(&format!("{path}.spike"))
    }
}

/// Spike alerts move at once; `quiet_s` is their hysteresis.
const AT_ONCE: Confirm = Confirm { raise_readings: 1, clear_readings: 1, clear_dwell_s: 0 };

/// This family's state across readings.
#[derive(Debug, Default)]
pub struct Health {
    /// The latest credible reading time seen (not `future_ts`/`clock_unset`).
    data_clock: Option<DateTime<Utc>>,
    /// Looked up on every reading by every hazard ([`Health::suspect`]);
    /// never iterated, so its order cannot leak into decisions.
    sensors: HashMap<String, SensorHealth>,
    rain: BTreeMap<String, checks::RainLog>,
    /// The sensors watched for silence, in id order: built from the
    /// registry once (not on every tick: a city has 100,000+ lamps that are
    /// not watched) and again after [`Health::registry_changed`].
    watched: Option<Vec<String>>,
    /// Sensors with a spike pending or open: the only ones a tick must revisit.
    spiking: BTreeSet<String>,
    /// The earliest a watched sensor can fall silent: ticks before it skip
    /// the silence scan (readings only push deadlines later; a sensor coming
    /// back from silence, or a registry change, resets it).
    silence_due: Option<DateTime<Utc>>,
    /// The minute (of the epoch) the dry-gauge check last ran: it compares
    /// hour-long windows, so once a minute is plenty, and it then confirms
    /// per minute whatever the tick rate (replay and live agree).
    dry_checked_minute: Option<i64>,
}

#[derive(Debug, Default)]
struct SensorHealth {
    last_seen: Option<DateTime<Utc>>,
    /// The registry's last receipt, from before the engine's history (a
    /// sensor silent longer than the warm-up stays silent across a restart).
    seen_before: Option<DateTime<Utc>>,
    silent: bool,
    run: checks::Run,
    flat: Tracker,
    range: Tracker,
    range_reason: Option<String>,
    spikes: VecDeque<DateTime<Utc>>,
    spike: Tracker,
    /// From the first spike until `quiet_s` without one.
    spike_suspect: bool,
}

fn pending_up(t: &Tracker) -> bool {
    t.grade > 0 || t.pending().is_some_and(|g| g > t.grade)
}

impl Health {
    /// The health alert that makes `sensor_id`'s readings suspect, if any
    /// (open, or pending confirmation).
    pub fn suspect(&self, sensor_id: &str) -> Option<AlertKey> {
        let s = self.sensors.get(sensor_id)?;
        let rule = if pending_up(&s.range) {
            RuleId::SensorOutOfRange
        } else if s.spike_suspect || s.spike.grade > 0 {
            RuleId::SensorSpike
        } else if pending_up(&s.flat) {
            RuleId::SensorFlatline
        } else {
            return None;
        };
        Some(AlertKey::sensor(rule, sensor_id))
    }

    /// When each sensor was last heard of before the engine's history began
    /// (the registry's `last_seen`): silence then spans a restart.
    pub fn seed_last_seen(&mut self, seen: impl IntoIterator<Item = (String, DateTime<Utc>)>) {
        for (id, at) in seen {
            self.sensors.entry(id).or_default().seen_before = Some(at);
        }
        self.silence_due = None;
    }

    /// The registry or the rules changed: the watch list is rebuilt at the next tick.
    pub fn registry_changed(&mut self) {
        self.watched = None;
        self.silence_due = None;
    }

    pub fn observe(&mut self, cx: &Context<'_>, obs: &Observation, out: &mut Vec<Assessment>) {
        if obs.time_trusted() && self.data_clock.is_none_or(|c| obs.ts > c) {
            self.data_clock = Some(obs.ts);
        }
        let Some(sensor) = cx.sensor(&obs.sensor_id) else { return };
        let rules = &cx.rules_for(&sensor.id).health;
        if !rules.enabled {
            return;
        }
        // Looked up before inserting: no allocation per reading of a known sensor.
        if !self.sensors.contains_key(&sensor.id) {
            self.sensors.insert(sensor.id.clone(), SensorHealth::default());
        }
        let Some(s) = self.sensors.get_mut(&sensor.id) else { return };
        let previous = s.last_seen;
        s.last_seen = Some(previous.map_or(obs.ts, |p| p.max(obs.ts)));
        if s.silent {
            s.silent = false;
            self.silence_due = None;
            out.push(Assessment {
                key: AlertKey::sensor(RuleId::SensorSilent, &sensor.id),
                at: obs.ts,
                verdict: Verdict::Clear,
            });
        }
        if previous.is_some_and(|p| obs.ts <= p) {
            return; // redelivered or late: counted once, in order
        }
        let has = |prefix: &str| obs.quality_reasons.iter().find(|r| r.starts_with(prefix)).cloned();

        if rules.out_of_range.enabled {
            let reason = has("out_of_range:");
            if reason.is_some() {
                s.range_reason = reason.clone();
            }
            let (held, raw) = (s.range.grade, u8::from(reason.is_some()));
            let g = s.range.observe(obs.ts, raw, &rules.out_of_range.confirm);
            let detail = s.range_reason.clone().unwrap_or_default();
            transition(out, RuleId::SensorOutOfRange, sensor, obs.ts, held, g, |st| {
                st.description_en = format!("Readings outside the physical or registered range ({detail}).");
                st.description_zh = format!("感測數值超出物理或登錄範圍（{detail}）。");
                st.details.insert("reason".into(), json!(detail));
            });
        }
        if rules.spike.enabled {
            let spike = has("spike:");
            if spike.is_some() {
                s.spikes.push_back(obs.ts);
                s.spike_suspect = true;
            }
            spike_step(s, sensor, obs.ts, &rules.spike, spike, out);
            let spiking = s.spike_suspect || s.spike.grade > 0;
            if spiking != self.spiking.contains(&sensor.id) {
                if spiking {
                    self.spiking.insert(sensor.id.clone());
                } else {
                    self.spiking.remove(&sensor.id);
                }
            }
        }
        if rules.flatline.enabled && obs.is_good() {
            let (column, epsilon) = match obs.kind {
                Kind::WaterLevel => ("level_m", rules.flatline.epsilon_m),
                Kind::FloodDepth => ("depth_cm", rules.flatline.epsilon_cm),
                _ => ("", 0.0),
            };
            if let Some(v) = obs.number(column) {
                let dry = obs.kind == Kind::FloodDepth && v <= rules.flatline.dry_cm;
                let flat = !dry && s.run.push(obs.ts, v, epsilon, &rules.flatline);
                if dry {
                    s.run = checks::Run::default();
                }
                let held = s.flat.grade;
                let g = s.flat.observe(obs.ts, u8::from(flat), &rules.flatline.confirm);
                let (value, since) = (s.run.value(), s.run.since().unwrap_or(obs.ts));
                transition(out, RuleId::SensorFlatline, sensor, obs.ts, held, g, |st| {
                    st.description_en = format!("The sensor has read {value} {column} since {}: stuck or frozen. Its readings are not used for warnings.", since.to_rfc3339());
                    st.description_zh = format!(
                        "感測器自 {} 起數值停滯於 {value}（{column}），疑似故障，其數據暫不用於警戒。",
                        since.to_rfc3339()
                    );
                    st.value = Some(value);
                    st.details.insert("since".into(), json!(since.to_rfc3339()));
                    st.details.insert("reason".into(), json!("same_value"));
                });
            }
        }
        if obs.kind == Kind::Rainfall && obs.is_good() {
            if let Some(mm) = obs.number("rain_mm") {
                let log = self.rain.entry(sensor.id.clone()).or_default();
                log.district = sensor.district.clone();
                log.interval_s = support::expected_interval(sensor, rules.default_interval_s);
                let interval = obs.number("interval_s").map(|s| s.round() as i64).filter(|s| *s > 0);
                log.push(obs.ts, mm, interval, rules.flatline.rain_window_s + log.interval_s);
            }
        }
    }

    pub fn tick(&mut self, cx: &Context<'_>, now: DateTime<Utc>, out: &mut Vec<Assessment>) {
        // Silence is judged on the data clock (see the module doc).
        let judged = self.data_clock.map(|c| c.min(now));
        // Silence, in id order for a deterministic output.
        let watched = self.watched.get_or_insert_with(|| {
            let mut ids: Vec<String> = cx
                .sensors
                .values()
                .filter(|s| {
                    let rules = &cx.rules_for(&s.id).health;
                    rules.enabled && s.kind.is_some_and(|k| rules.silent_kinds.iter().any(|x| x == k.as_str()))
                })
                .map(|s| s.id.clone())
                .collect();
            ids.sort();
            ids
        });
        let scan = judged.is_some_and(|j| self.silence_due.is_none_or(|due| j > due));
        let judged = judged.unwrap_or(now);
        let mut due: Option<DateTime<Utc>> = None;
        for id in watched.iter().filter(|_| scan) {
            let Some(sensor) = cx.sensor(id) else { continue };
            let rules = &cx.rules_for(&sensor.id).health;
            if !self.sensors.contains_key(id) {
                self.sensors.insert(id.clone(), SensorHealth::default());
            }
            let Some(s) = self.sensors.get_mut(id) else { continue };
            let interval = support::expected_interval(sensor, rules.default_interval_s);
            let limit = ((interval as f64 * rules.silent_factor) as i64).max(rules.silent_min_s);
            let Some(last) = s.last_seen.or(s.seen_before) else { continue };
            if !s.silent && judged - last > Duration::seconds(limit) {
                s.silent = true;
                let last_seen = s.last_seen;
                transition(out, RuleId::SensorSilent, sensor, judged, 0, 1, |st| {
                    let when = last_seen.map_or_else(|| "never".to_string(), |t| t.to_rfc3339());
                    st.description_en = format!("No reading since {when} (expected every {interval} s).");
                    st.description_zh = format!("自 {when} 起無資料回傳（應每 {interval} 秒回傳）。");
                    st.details.insert("last_seen".into(), json!(last_seen.map(|t| t.to_rfc3339())));
                    st.details.insert("expected_interval_s".into(), json!(interval));
                });
            } else if !s.silent {
                let deadline = last + Duration::seconds(limit);
                due = Some(due.map_or(deadline, |d| d.min(deadline)));
            }
        }
        if scan {
            // Nothing left to fall silent (all silent, or none watched): the
            // next reading that ends a silence, or a registry change, rescans.
            self.silence_due = Some(due.unwrap_or(DateTime::<Utc>::MAX_UTC));
        }
        // Spikes go quiet.
        let spiking = std::mem::take(&mut self.spiking);
        for id in spiking {
            let (Some(s), Some(sensor)) = (self.sensors.get_mut(&id), cx.sensor(&id)) else { continue };
            spike_step(s, sensor, now, &cx.rules_for(&id).health.spike, None, out);
            if s.spike_suspect || s.spike.grade > 0 {
                self.spiking.insert(id);
            }
        }
        // Rain gauges dry in a wet district.
        let flat_rules = &cx.rules.health.flatline;
        let minute = now.timestamp().div_euclid(60);
        let new_minute = self.dry_checked_minute.is_none_or(|m| minute > m);
        if new_minute && cx.rules.health.enabled && flat_rules.enabled && flat_rules.rain_enabled {
            self.dry_checked_minute = Some(minute);
            for (id, verdict) in checks::dry_gauges(&self.rain, now, flat_rules) {
                let (Some(dry), Some(sensor)) = (verdict, cx.sensor(&id)) else { continue };
                if !self.sensors.contains_key(&id) {
                    self.sensors.insert(id.clone(), SensorHealth::default());
                }
                let Some(s) = self.sensors.get_mut(&id) else { continue };
                let held = s.flat.grade;
                let g = s.flat.observe(now, u8::from(dry), &flat_rules.confirm);
                let window_min = flat_rules.rain_window_s / 60;
                transition(out, RuleId::SensorFlatline, sensor, now, held, g, |st| {
                    st.description_en = format!("No rain for {window_min} min while other gauges in the district report heavy rain: the gauge may be blocked.");
                    st.description_zh =
                        format!("近 {window_min} 分鐘無雨量，但同行政區其他雨量站有大雨，疑似雨量筒阻塞。");
                    st.value = Some(0.0);
                    st.details.insert("since".into(), json!(now.to_rfc3339()));
                    st.details.insert("reason".into(), json!("dry_in_rain"));
                });
            }
        }
    }
}

/// Counts spikes in the window and clears after the quiet time.
fn spike_step(
    s: &mut SensorHealth,
    sensor: &Sensor,
    now: DateTime<Utc>,
    rules: &SpikeRules,
    spike: Option<String>,
    out: &mut Vec<Assessment>,
) {
    while s.spikes.front().is_some_and(|t| now - *t > Duration::seconds(rules.window_s)) {
        s.spikes.pop_front();
    }
    let quiet = s.spikes.back().is_none_or(|t| now - *t >= Duration::seconds(rules.quiet_s));
    if quiet {
        s.spike_suspect = false;
    }
    let held = s.spike.grade;
    let raw = if s.spikes.len() >= rules.count as usize {
        1
    } else if quiet {
        0
    } else {
        held
    };
    let g = s.spike.observe(now, raw, &AT_ONCE);
    let first = s.spikes.front().copied().unwrap_or(now);
    let reason = spike.unwrap_or_else(|| "spike".into());
    transition(out, RuleId::SensorSpike, sensor, now, held, g, |st| {
        st.description_en = format!(
            "Readings jump faster than water can move ({reason}); they are not used for warnings until {} min pass without a spike.",
            rules.quiet_s / 60
        );
        st.description_zh =
            format!("數值突波（{reason}），在連續 {} 分鐘無突波前，其數據不用於警戒。", rules.quiet_s / 60);
        st.details.insert("since".into(), json!(first.to_rfc3339()));
        st.details.insert("reason".into(), json!(reason));
    });
}

/// Pushes a verdict when the confirmed grade moved from `held` to `grade`.
fn transition(
    out: &mut Vec<Assessment>,
    rule: RuleId,
    sensor: &Sensor,
    at: DateTime<Utc>,
    held: u8,
    grade: u8,
    fill: impl FnOnce(&mut AlertState),
) {
    if held == grade {
        return;
    }
    let key = AlertKey::sensor(rule, &sensor.id);
    out.push(support::verdict(key, at, grade, || {
        let level = rule.as_str().trim_start_matches("sensor_");
        let mut st = state_for(rule, Some(sensor), grade, level, Severity::Minor, 50.0);
        fill(&mut st);
        st
    }));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate_and_errors_name_the_field() {
        HealthRules::default().validate("health").unwrap();
        let bad = HealthRules { silent_kinds: vec!["rainfall".into(), "lava".into()], ..Default::default() };
        assert!(bad.validate("health").unwrap_err().to_string().contains("health.silent_kinds[1]"));
        let mut bad = HealthRules::default();
        bad.flatline.readings = 1;
        assert!(bad.validate("health").unwrap_err().to_string().contains("health.flatline.readings"));
        let mut bad = HealthRules::default();
        bad.spike.count = 0;
        assert!(bad.validate("health").unwrap_err().to_string().contains("health.spike.count"));
    }
}
