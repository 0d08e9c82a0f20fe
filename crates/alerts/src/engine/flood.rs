//! Road-surface flooding (kind `flood_depth`): depth grades with start, peak
//! and receding state (rule `road_flooding`).
//!
//! Grades (defaults, the depths Taiwan's road-flood sensors are read by):
//! 1 `ponding` 積水 at 10 cm (kerb height, scooters struggle), 2 `flooded`
//! 淹水 at 30 cm (cars stall), 3 `deep_flooded` 深度淹水 at 50 cm (impassable,
//! dangerous to wade). Operators ask whether a road is flooded, since when,
//! how deep, and whether the water is receding: `details` carry
//! `started_at`, `peak_cm`, `peak_at` and `receding`, and change only when
//! the peak grows by `peak_step_cm` or the receding state turns, so each
//! change is one `updated` event, not one per reading.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use citygauge_domain::Kind;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::debounce::{Confirm, Ladder, Tracker};
use super::water::support::{self, Suppressions};
use super::{state_for, Assessment, Context};
use crate::model::{AlertKey, AlertState, Observation, RuleId, Sensor, Severity};
use crate::AlertError;

/// Settings of this family (section `road_flooding` of the rules file).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FloodRules {
    pub enabled: bool,
    /// Grade 1 (`ponding`), 2 (`flooded`), 3 (`deep_flooded`), in cm.
    pub ponding_cm: f64,
    pub flooded_cm: f64,
    pub deep_cm: f64,
    /// A grade is left once the depth is this far below it (ripples, passing traffic).
    pub margin_cm: f64,
    pub confirm: Confirm,
    /// Receding: the depth has stayed this far below the peak...
    pub recede_cm: f64,
    /// ...for this many consecutive readings (and rising back needs as many).
    pub recede_readings: u32,
    /// The reported peak moves when the depth exceeds it by this much.
    pub peak_step_cm: f64,
    /// Radius of the alert's area around the sensor (a street block).
    pub radius_m: f64,
}

impl Default for FloodRules {
    fn default() -> FloodRules {
        FloodRules {
            enabled: true,
            ponding_cm: 10.0,
            flooded_cm: 30.0,
            deep_cm: 50.0,
            margin_cm: 3.0,
            confirm: Confirm { raise_readings: 2, clear_readings: 3, clear_dwell_s: 600 },
            recede_cm: 5.0,
            recede_readings: 3,
            peak_step_cm: 2.0,
            radius_m: 300.0,
        }
    }
}

impl FloodRules {
    /// `path` is this section's name in the rules file, for error messages.
    pub fn validate(&self, path: &str) -> Result<(), AlertError> {
        support::positive(path, "ponding_cm", self.ponding_cm)?;
        support::ascending(
            path,
            &[
                ("ponding_cm", Some(self.ponding_cm)),
                ("flooded_cm", Some(self.flooded_cm)),
                ("deep_cm", Some(self.deep_cm)),
            ],
        )?;
        support::non_negative(path, "margin_cm", self.margin_cm)?;
        if self.margin_cm >= self.ponding_cm {
            return Err(AlertError::invalid(format!("{path}.margin_cm"), "must be below ponding_cm"));
        }
        self.confirm.validate(&format!("{path}.confirm"))?;
        support::positive(path, "recede_cm", self.recede_cm)?;
        support::at_least_one(path, "recede_readings", self.recede_readings)?;
        support::non_negative(path, "peak_step_cm", self.peak_step_cm)?;
        support::positive(path, "radius_m", self.radius_m)
    }

    fn ladder(&self) -> Ladder {
        Ladder { thresholds: vec![self.ponding_cm, self.flooded_cm, self.deep_cm], margin: self.margin_cm }
    }
}

const LEVELS: [&str; 3] = ["ponding", "flooded", "deep_flooded"];
const LEVELS_ZH: [&str; 3] = ["積水", "淹水", "深度淹水"];
const SEVERITIES: [Severity; 3] = [Severity::Moderate, Severity::Severe, Severity::Extreme];
const INSTRUCTIONS: [(&str, &str); 3] = [
    (
        "Water is ponding on the road. Slow down, keep scooters out of deep water and avoid the area if you can.",
        "道路積水，請減速慢行，機車勿駛入積水處，並儘量改道。",
    ),
    (
        "The road is flooded. Do not drive or ride through it; move vehicles to higher ground and take another route.",
        "道路淹水，請勿強行通過，車輛請移往高處並改道行駛。",
    ),
    (
        "Deep flooding. The road is impassable and dangerous: do not wade or drive in, stay on upper floors and wait for help if trapped.",
        "道路深度淹水，嚴禁涉水或駛入，受困民眾請往高樓層避難並等候救援。",
    ),
];

/// This family's state across readings.
#[derive(Debug, Default)]
pub struct Flood {
    sites: BTreeMap<String, Site>,
}

#[derive(Debug, Default)]
struct Site {
    tracker: Tracker,
    last_ts: Option<DateTime<Utc>>,
    trusted: bool,
    suppressed: Suppressions,
    episode: Option<Episode>,
}

/// One flooding, from the first reading at grade 1 or above until it clears.
#[derive(Debug, Clone)]
struct Episode {
    started_at: DateTime<Utc>,
    peak: (f64, DateTime<Utc>),
    /// The peak as `details` show it (moves by `peak_step_cm`).
    reported: (f64, DateTime<Utc>),
    receding: bool,
    /// Consecutive readings that contradict `receding`.
    turn: u32,
}

impl Flood {
    /// Road sensors flooded now (confirmed grade ≥ 1, latest reading trusted): (id, grade).
    pub fn flooded(&self) -> impl Iterator<Item = (&str, u8)> {
        self.sites
            .iter()
            .filter(|(_, s)| s.trusted && s.tracker.grade > 0)
            .map(|(id, s)| (id.as_str(), s.tracker.grade))
    }

    /// One road sensor's confirmed grade, when flooded and its latest reading trusted.
    pub fn grade(&self, sensor_id: &str) -> Option<u8> {
        self.sites.get(sensor_id).filter(|s| s.trusted && s.tracker.grade > 0).map(|s| s.tracker.grade)
    }

    pub fn observe(&mut self, cx: &Context<'_>, obs: &Observation, out: &mut Vec<Assessment>) {
        if obs.kind != Kind::FloodDepth {
            return;
        }
        let Some(sensor) = cx.sensor(&obs.sensor_id) else { return };
        let rules = &cx.rules_for(&sensor.id).road_flooding;
        let Some(depth) = obs.number("depth_cm") else { return };
        if !rules.enabled {
            return;
        }
        let ladder = rules.ladder();
        let site = self.sites.entry(sensor.id.clone()).or_default();
        let key = AlertKey::sensor(RuleId::RoadFlooding, &sensor.id);
        if let Some(by) = support::distrust(cx, obs) {
            site.trusted = false;
            let g = ladder.grade(depth, site.tracker.grade);
            if g > site.tracker.grade {
                let episode = Episode::new(obs.ts, depth);
                let state = flood_state(sensor, rules, g, obs, depth, &episode);
                site.suppressed.report(key, obs.ts, state, &by, out);
            }
            return;
        }
        site.trusted = true;
        site.suppressed.reset();
        if site.last_ts.is_some_and(|last| obs.ts <= last) {
            return; // redelivered or late: each instant counts once, in order
        }
        site.last_ts = Some(obs.ts);

        let held = site.tracker.grade;
        let raw = ladder.grade(depth, held);
        if raw > 0 {
            site.episode.get_or_insert_with(|| Episode::new(obs.ts, depth)).observe(obs.ts, depth, rules);
        } else if let Some(e) = &mut site.episode {
            e.observe(obs.ts, depth, rules);
        }
        let g = site.tracker.observe(obs.ts, raw, &rules.confirm);
        if g != held {
            if let Some(e) = &mut site.episode {
                e.reported = e.peak;
            }
        }
        if g == 0 && site.tracker.pending().is_none() {
            // Cleared (or never confirmed): the next flooding is a new episode.
            site.episode = None;
            out.push(Assessment { key, at: obs.ts, verdict: super::Verdict::Clear });
            return;
        }
        let episode = site.episode.clone().unwrap_or_else(|| Episode::new(obs.ts, depth));
        out.push(support::verdict(key, obs.ts, g, || flood_state(sensor, rules, g, obs, depth, &episode)));
    }

    /// Depth moves only with readings; a silent sensor is the health family's business.
    pub fn tick(&mut self, cx: &Context<'_>, now: DateTime<Utc>, out: &mut Vec<Assessment>) {
        let _ = (cx, now, out);
    }
}

impl Episode {
    fn new(at: DateTime<Utc>, depth: f64) -> Episode {
        Episode { started_at: at, peak: (depth, at), reported: (depth, at), receding: false, turn: 0 }
    }

    fn observe(&mut self, at: DateTime<Utc>, depth: f64, rules: &FloodRules) {
        if depth > self.peak.0 {
            self.peak = (depth, at);
            if depth >= self.reported.0 + rules.peak_step_cm {
                self.reported = self.peak;
            }
        }
        let below = depth <= self.peak.0 - rules.recede_cm;
        if below != self.receding {
            self.turn += 1;
            if self.turn >= rules.recede_readings {
                self.receding = below;
                self.turn = 0;
            }
        } else {
            self.turn = 0;
        }
    }
}

fn flood_state(
    sensor: &Sensor,
    rules: &FloodRules,
    grade: u8,
    obs: &Observation,
    depth: f64,
    e: &Episode,
) -> AlertState {
    let i = usize::from(grade.clamp(1, 3) - 1);
    let mut s = state_for(RuleId::RoadFlooding, Some(sensor), grade, LEVELS[i], SEVERITIES[i], rules.radius_m);
    let trend_en = if e.receding { "receding" } else { "not receding" };
    let trend_zh = if e.receding { "水位消退中" } else { "尚未消退" };
    s.description_en = format!(
        "Water {depth:.0} cm deep on the road since {}, peak {:.0} cm at {}; {trend_en}.",
        e.started_at.to_rfc3339(),
        e.reported.0,
        e.reported.1.to_rfc3339()
    );
    s.description_zh = format!(
        "路面{}，目前水深 {depth:.0} 公分，自 {} 起，最高 {:.0} 公分（{}）；{trend_zh}。",
        LEVELS_ZH[i],
        e.started_at.to_rfc3339(),
        e.reported.0,
        e.reported.1.to_rfc3339()
    );
    s.instruction_en = INSTRUCTIONS[i].0.into();
    s.instruction_zh = INSTRUCTIONS[i].1.into();
    s.value = Some(depth);
    s.unit = Some("cm".into());
    s.evidence.push(support::evidence(obs, "depth_cm", depth));
    s.details.insert("started_at".into(), json!(e.started_at.to_rfc3339()));
    s.details.insert("peak_cm".into(), json!(e.reported.0));
    s.details.insert("peak_at".into(), json!(e.reported.1.to_rfc3339()));
    s.details.insert("receding".into(), json!(e.receding));
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate_and_errors_name_the_field() {
        FloodRules::default().validate("road_flooding").unwrap();
        let bad = FloodRules { flooded_cm: 5.0, ..Default::default() };
        assert!(bad.validate("road_flooding").unwrap_err().to_string().contains("road_flooding.flooded_cm"));
        let bad = FloodRules { recede_readings: 0, ..Default::default() };
        assert!(bad.validate("road_flooding").unwrap_err().to_string().contains("road_flooding.recede_readings"));
    }
}
