//! River and drainage water levels: the three WRA warning levels per station,
//! and rate of rise with the projected time to the next level.
//!
//! The Water Resources Agency (WRA) sets three warning levels per station,
//! revised yearly and kept in the registry's `thresholds`: `warning_3_m`
//! (level 3, yellow: the high floodplain within 2 h), `warning_2_m` (level 2,
//! orange: the flood level or levee crest within 5 h) and `warning_1_m`
//! (level 1, red: within 2 h). Here they are grades 1, 2 and 3. A station's
//! levels can be overridden in the rules (`overrides` with `sensors = [id]`).
//!
//! Sewer gauges (subkind `sewer`) belong to the sewer family.

mod rise;
pub(crate) mod support;

use std::collections::{BTreeMap, VecDeque};

use chrono::{DateTime, Duration, Utc};
use citygauge_domain::Kind;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::debounce::{Confirm, Ladder, Tracker};
use super::{state_for, Assessment, Context};
use crate::model::{AlertKey, AlertState, Observation, RuleId, Sensor, Severity};
use crate::AlertError;
pub use rise::RateRules;
use support::Suppressions;

/// Settings of this family (section `water_level` of the rules file).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WaterLevelRules {
    pub enabled: bool,
    /// Station levels that replace the registry's (set them per station
    /// through `overrides`); unset means the registry's `thresholds`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warning_3_m: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warning_2_m: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warning_1_m: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub levee_crest_m: Option<f64>,
    /// A level is left only once the stage is this far below it (waves and
    /// sensor noise on a river are a few centimetres).
    pub margin_m: f64,
    /// Two readings at a higher level escalate; three readings and 30 min
    /// below (minus the margin) de-escalate.
    pub confirm: Confirm,
    /// Radius of the alert's area around the gauge.
    pub radius_m: f64,
    /// Rate of rise and lead time (rule `rate_of_rise`).
    pub rate: RateRules,
}

impl Default for WaterLevelRules {
    fn default() -> WaterLevelRules {
        WaterLevelRules {
            enabled: true,
            warning_3_m: None,
            warning_2_m: None,
            warning_1_m: None,
            levee_crest_m: None,
            margin_m: 0.10,
            confirm: Confirm { raise_readings: 2, clear_readings: 3, clear_dwell_s: 1_800 },
            radius_m: 1_000.0,
            rate: RateRules::default(),
        }
    }
}

impl WaterLevelRules {
    /// `path` is this section's name in the rules file, for error messages.
    pub fn validate(&self, path: &str) -> Result<(), AlertError> {
        support::ascending(
            path,
            &[
                ("warning_3_m", self.warning_3_m),
                ("warning_2_m", self.warning_2_m),
                ("warning_1_m", self.warning_1_m),
                ("levee_crest_m", self.levee_crest_m),
            ],
        )?;
        support::non_negative(path, "margin_m", self.margin_m)?;
        support::positive(path, "radius_m", self.radius_m)?;
        self.confirm.validate(&format!("{path}.confirm"))?;
        self.rate.validate(&format!("{path}.rate"))
    }
}

/// A station's levels after the rules' overrides.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Levels {
    /// Grade 1 (yellow), 2 (orange), 3 (red).
    pub warnings: [Option<f64>; 3],
    pub crest: Option<f64>,
    pub from_rules: bool,
}

impl Levels {
    pub fn of(sensor: &Sensor, rules: &WaterLevelRules) -> Levels {
        let from_rules = rules.warning_3_m.is_some() || rules.warning_2_m.is_some() || rules.warning_1_m.is_some();
        let pick = |rule: Option<f64>, key: &str| if from_rules { rule } else { sensor.threshold(key) };
        Levels {
            warnings: [
                pick(rules.warning_3_m, "warning_3_m"),
                pick(rules.warning_2_m, "warning_2_m"),
                pick(rules.warning_1_m, "warning_1_m"),
            ],
            crest: rules.levee_crest_m.or_else(|| sensor.threshold("levee_crest_m")),
            from_rules,
        }
    }

    pub fn ladder(&self, margin: f64) -> Option<Ladder> {
        support::ladder(&self.warnings, margin)
    }

    /// The next mark above `level`: (name, metres).
    pub fn next_above(&self, level: f64) -> Option<(&'static str, f64)> {
        let marks = [
            ("warning_3", self.warnings[0]),
            ("warning_2", self.warnings[1]),
            ("warning_1", self.warnings[2]),
            ("levee_crest", self.crest),
        ];
        marks
            .into_iter()
            .filter_map(|(n, v)| Some((n, v?)))
            .filter(|(_, v)| *v > level)
            .min_by(|a, b| a.1.total_cmp(&b.1))
    }

    fn details(&self) -> Value {
        json!({
            "warning_3_m": self.warnings[0],
            "warning_2_m": self.warnings[1],
            "warning_1_m": self.warnings[2],
            "levee_crest_m": self.crest,
            "source": if self.from_rules { "rules" } else { "registry" },
        })
    }
}

const LEVEL_NAMES: [&str; 3] = ["yellow", "orange", "red"];
const SEVERITIES: [Severity; 3] = [Severity::Moderate, Severity::Severe, Severity::Extreme];
const INSTRUCTIONS: [(&str, &str); 3] = [
    (
        "The river is approaching the high floodplain. Stay out of riverside parks and floodplain roads; move vehicles out of riverside car parks.",
        "河川水位即將到達高灘地，請勿進入河濱公園及高灘地道路，停放河濱停車場之車輛請儘速移置。",
    ),
    (
        "The river may reach its flood level or the levee crest within hours. Prepare to leave low-lying areas near the river.",
        "河川水位可能於數小時內到達計畫洪水位或堤頂，沿岸低窪地區民眾請做好撤離準備。",
    ),
    (
        "The river may reach its flood level or the levee crest within 2 hours. Leave low-lying areas near the river now and follow the authorities' instructions.",
        "河川水位可能於2小時內到達計畫洪水位或堤頂，沿岸低窪地區民眾請立即撤離，並遵從政府指示。",
    ),
];

/// This family's state across readings.
#[derive(Debug, Default)]
pub struct Water {
    stations: BTreeMap<String, Station>,
}

#[derive(Debug, Default)]
struct Station {
    level: Tracker,
    rise: Tracker,
    /// Trusted readings inside the rate window, in time order.
    recent: VecDeque<(DateTime<Utc>, f64)>,
    last_ts: Option<DateTime<Utc>>,
    /// Whether the latest reading could be used.
    trusted: bool,
    suppressed: Suppressions,
}

/// What a rate-of-rise evaluation found.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Projection {
    pub rate_m_per_h: f64,
    /// The next mark and the seconds until it is reached at this rate.
    pub next: Option<(&'static str, f64, i64)>,
}

impl Water {
    /// The confirmed warning grade of a river or drainage station; `None`
    /// when it has no trusted reading yet or its latest reading was suspect.
    pub fn grade(&self, sensor_id: &str) -> Option<u8> {
        self.stations.get(sensor_id).filter(|s| s.trusted).map(|s| s.level.grade)
    }

    pub fn observe(&mut self, cx: &Context<'_>, obs: &Observation, out: &mut Vec<Assessment>) {
        if obs.kind != Kind::WaterLevel {
            return;
        }
        let Some(sensor) = cx.sensor(&obs.sensor_id) else { return };
        if sensor.subkind.as_deref() == Some("sewer") {
            return;
        }
        let rules = &cx.rules_for(&sensor.id).water_level;
        let Some(level) = obs.number("level_m") else { return };
        if !rules.enabled {
            return;
        }
        let levels = Levels::of(sensor, rules);
        let ladder = levels.ladder(rules.margin_m);
        let st = self.stations.entry(sensor.id.clone()).or_default();
        let level_key = AlertKey::sensor(RuleId::WaterLevel, &sensor.id);
        let rise_key = AlertKey::sensor(RuleId::RateOfRise, &sensor.id);

        if let Some(by) = support::distrust(cx, obs) {
            st.trusted = false;
            // Would this reading have raised or escalated either rule?
            if let Some(ladder) = &ladder {
                let g = ladder.grade(level, st.level.grade);
                if g > st.level.grade {
                    let state = level_state(sensor, rules, &levels, g, obs, level, None);
                    st.suppressed.report(level_key, obs.ts, state, &by, out);
                }
            }
            if rules.rate.enabled {
                let mut points: Vec<_> = st.recent.iter().copied().filter(|(t, _)| *t < obs.ts).collect();
                points.push((obs.ts, level));
                if let Some(p) = rise::project(&points, level, &levels, &rules.rate) {
                    let g = rise::grade(&p, st.rise.grade, &rules.rate);
                    if g > st.rise.grade {
                        let state = rise::state(sensor, rules, g, obs, level, &p);
                        st.suppressed.report(rise_key, obs.ts, state, &by, out);
                    }
                }
            }
            return;
        }
        st.trusted = true;
        st.suppressed.reset();

        // Keep the window in time order; a redelivered reading replaces itself.
        match st.recent.iter().position(|(t, _)| *t >= obs.ts) {
            Some(i) if st.recent[i].0 == obs.ts => st.recent[i].1 = level,
            Some(i) => st.recent.insert(i, (obs.ts, level)),
            None => st.recent.push_back((obs.ts, level)),
        }
        let horizon = st.recent.back().map_or(obs.ts, |b| b.0) - Duration::seconds(rules.rate.window_s);
        while st.recent.front().is_some_and(|(t, _)| *t <= horizon) {
            st.recent.pop_front();
        }
        // A redelivered or late reading confirms nothing: the trackers see each instant once, in order.
        if st.last_ts.is_some_and(|last| obs.ts <= last) {
            return;
        }
        st.last_ts = Some(obs.ts);

        let points: Vec<_> = st.recent.iter().copied().collect();
        let projection = rise::project(&points, level, &levels, &rules.rate);
        let rise_grade = if rules.rate.enabled {
            // Without enough readings the rate is unknown: hold the grade, do not clear on it.
            let raw = projection.map_or(st.rise.grade, |p| rise::grade(&p, st.rise.grade, &rules.rate));
            Some(st.rise.observe(obs.ts, raw, &rules.rate.confirm))
        } else {
            None
        };
        // The level alert shows the lead time while the river is rising fast
        // (not the wobble of a projection on a steady river).
        let lead = projection.and_then(|p| p.next).map(|(_, _, s)| s).filter(|_| rise_grade.unwrap_or(0) > 0);
        if let Some(ladder) = &ladder {
            let raw = ladder.grade(level, st.level.grade);
            let g = st.level.observe(obs.ts, raw, &rules.confirm);
            out.push(support::verdict(level_key, obs.ts, g, || {
                let mut s = level_state(sensor, rules, &levels, g, obs, level, lead);
                if let Some(p) = projection {
                    s.evidence.push(support::evidence(obs, "rise_m_per_h", p.rate_m_per_h));
                }
                s
            }));
        }
        if let Some(g) = rise_grade {
            let p = projection.unwrap_or(Projection { rate_m_per_h: 0.0, next: None });
            out.push(support::verdict(rise_key, obs.ts, g, || rise::state(sensor, rules, g, obs, level, &p)));
        }
    }

    /// Water levels move only with readings: a silent gauge is the health
    /// family's business, and its alerts stand until data says otherwise.
    pub fn tick(&mut self, cx: &Context<'_>, now: DateTime<Utc>, out: &mut Vec<Assessment>) {
        let _ = (cx, now, out);
    }
}

fn level_state(
    sensor: &Sensor,
    rules: &WaterLevelRules,
    levels: &Levels,
    grade: u8,
    obs: &Observation,
    level: f64,
    lead_time_s: Option<i64>,
) -> AlertState {
    let i = usize::from(grade.clamp(1, 3) - 1);
    let mut s = state_for(RuleId::WaterLevel, Some(sensor), grade, LEVEL_NAMES[i], SEVERITIES[i], rules.radius_m);
    let wra = 3 - i;
    let fmt = |v: Option<f64>| v.map_or_else(|| "-".to_string(), |v| format!("{v:.2} m"));
    s.description_en = format!(
        "Stage {level:.2} m at {} reached WRA warning level {wra} ({}). Levels: 3 {}, 2 {}, 1 {}; levee crest {}.",
        obs.ts.to_rfc3339(),
        LEVEL_NAMES[i],
        fmt(levels.warnings[0]),
        fmt(levels.warnings[1]),
        fmt(levels.warnings[2]),
        fmt(levels.crest),
    );
    s.description_zh = format!(
        "水位 {level:.2} 公尺，已達經濟部水利署{}級警戒（{}）。警戒水位：三級 {}、二級 {}、一級 {}；堤頂 {}。",
        ["三", "二", "一"][i],
        ["黃色", "橙色", "紅色"][i],
        fmt(levels.warnings[0]),
        fmt(levels.warnings[1]),
        fmt(levels.warnings[2]),
        fmt(levels.crest),
    );
    s.instruction_en = INSTRUCTIONS[i].0.to_string();
    s.instruction_zh = INSTRUCTIONS[i].1.to_string();
    s.value = Some(level);
    s.unit = Some("m".into());
    s.lead_time_s = lead_time_s;
    s.evidence.push(support::evidence(obs, "level_m", level));
    s.details.insert("wra_level".into(), json!(wra));
    s.details.insert("levels".into(), levels.details());
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate_and_levels_must_ascend() {
        WaterLevelRules::default().validate("water_level").unwrap();
        let bad = WaterLevelRules { warning_3_m: Some(3.0), warning_2_m: Some(2.0), ..Default::default() };
        let err = bad.validate("water_level").unwrap_err().to_string();
        assert!(err.contains("water_level.warning_2_m"), "{err}");
        let bad = WaterLevelRules { margin_m: -1.0, ..Default::default() };
        assert!(bad.validate("water_level").unwrap_err().to_string().contains("water_level.margin_m"));
    }

    #[test]
    fn rules_override_the_registry_levels() {
        let mut sensor = Sensor { id: "r".into(), ..Default::default() };
        sensor.thresholds.insert("warning_3_m".into(), json!(2.0));
        sensor.thresholds.insert("levee_crest_m".into(), json!(5.0));
        let l = Levels::of(&sensor, &WaterLevelRules::default());
        assert_eq!((l.warnings, l.crest, l.from_rules), ([Some(2.0), None, None], Some(5.0), false));
        assert_eq!(l.next_above(2.5), Some(("levee_crest", 5.0)));
        let rules = WaterLevelRules { warning_1_m: Some(4.0), ..Default::default() };
        let l = Levels::of(&sensor, &rules);
        assert_eq!((l.warnings, l.from_rules), ([None, None, Some(4.0)], true));
    }
}
