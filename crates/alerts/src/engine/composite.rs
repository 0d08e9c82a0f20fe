//! Diagnosis from several sensors (the Taoyuan water bureau's reading):
//! road flooding while the nearest river gauge is below its warning levels
//! means water cannot reach the river (`drainage_suspected`); road flooding
//! while the river is at level 2 or above means the city cannot drain into
//! it (`river_backwater`). The subject is the road sensor; the diagnosis
//! clears with the flood.
//!
//! The river station is the registry's `installation.river_station`; the
//! live evaluator fills it, when the registry does not, with the nearest
//! river gauge within [`CompositeRules::radius_m`] (PostGIS). Both inputs are
//! confirmed (debounced) grades, so a diagnosis is as steady as they are.
//! A river gauge that is unknown or suspect gives no diagnosis.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, Utc};
use citygauge_domain::Kind;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::water::support;
use super::{state_for, Assessment, Context, Verdict};
use crate::model::{AlertKey, Observation, RuleId, Severity};
use crate::AlertError;

/// Settings of this family (section `composite` of the rules file).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CompositeRules {
    pub enabled: bool,
    /// The road-flooding grade that counts as flooded (1 = ponding 10 cm,
    /// 2 = flooded 30 cm by default): 2, so ponding in a downpour is not a
    /// drainage diagnosis.
    pub min_flood_grade: u8,
    /// River grade (WRA level: 1 yellow, 2 orange, 3 red) at or above which
    /// flooding is river backwater; below grade 1 it is a drainage problem;
    /// in between, neither is diagnosed.
    pub backwater_river_grade: u8,
    /// How far the live evaluator looks for the nearest river gauge when the
    /// registry names none.
    pub radius_m: f64,
}

impl Default for CompositeRules {
    fn default() -> CompositeRules {
        CompositeRules { enabled: true, min_flood_grade: 2, backwater_river_grade: 2, radius_m: 3_000.0 }
    }
}

impl CompositeRules {
    /// `path` is this section's name in the rules file, for error messages.
    pub fn validate(&self, path: &str) -> Result<(), AlertError> {
        if !(1..=3).contains(&self.min_flood_grade) {
            return Err(AlertError::invalid(format!("{path}.min_flood_grade"), "must be 1..=3"));
        }
        if !(1..=3).contains(&self.backwater_river_grade) {
            return Err(AlertError::invalid(format!("{path}.backwater_river_grade"), "must be 1..=3"));
        }
        support::positive(path, "radius_m", self.radius_m)
    }
}

/// This family's state across readings.
#[derive(Debug, Default)]
pub struct Composite {
    /// Road sensor → the diagnosis standing now.
    held: BTreeMap<String, RuleId>,
    /// River station → the road sensors that name it, built from the
    /// registry when first needed (and again after [`Composite::registry_changed`]):
    /// a river reading re-examines its roads only, not every flooded road.
    roads_by_station: Option<HashMap<String, Vec<String>>>,
}

/// What one flooded road and its river say now.
struct Diagnosis {
    rule: RuleId,
    station: String,
    flood_grade: u8,
    river_grade: u8,
}

impl Composite {
    /// The registry changed: river-station mappings are read again.
    pub fn registry_changed(&mut self) {
        self.roads_by_station = None;
    }

    /// Re-examines the roads a river or road reading bears on.
    pub fn observe(
        &mut self,
        cx: &Context<'_>,
        obs: &Observation,
        water: &super::water::Water,
        flood: &super::flood::Flood,
        out: &mut Vec<Assessment>,
    ) {
        match obs.kind {
            Kind::FloodDepth => self.update(cx, &obs.sensor_id, obs.ts, water, flood, out),
            Kind::WaterLevel => {
                let by_station = self.roads_by_station.get_or_insert_with(|| roads_by_station(cx));
                let Some(roads) = by_station.get(&obs.sensor_id).cloned() else { return };
                for road in &roads {
                    self.update(cx, road, obs.ts, water, flood, out);
                }
            }
            _ => {}
        }
    }

    /// Every flooded or diagnosed road, in id order (health verdicts may have
    /// moved on the clock: a spike gone quiet).
    pub fn tick(
        &mut self,
        cx: &Context<'_>,
        now: DateTime<Utc>,
        water: &super::water::Water,
        flood: &super::flood::Flood,
        out: &mut Vec<Assessment>,
    ) {
        let mut roads: BTreeSet<String> = self.held.keys().cloned().collect();
        roads.extend(flood.flooded().map(|(road, _)| road.to_string()));
        for road in &roads {
            self.update(cx, road, now, water, flood, out);
        }
    }

    /// What `road` and its river say now, if anything.
    fn diagnose(
        &self,
        cx: &Context<'_>,
        road: &str,
        water: &super::water::Water,
        flood: &super::flood::Flood,
    ) -> Option<Diagnosis> {
        let flood_grade = flood.grade(road)?;
        let rules = &cx.rules_for(road).composite;
        if !rules.enabled || flood_grade < rules.min_flood_grade || cx.suspect(road).is_some() {
            return None;
        }
        let station = cx.sensor(road)?.installation.get("river_station").and_then(|v| v.as_str())?;
        let river_grade = if cx.suspect(station).is_some() { None } else { water.grade(station) };
        let rule = match river_grade {
            Some(0) => Some(RuleId::DrainageSuspected),
            Some(g) if g >= rules.backwater_river_grade => Some(RuleId::RiverBackwater),
            // River unknown, suspect, or between the two: the diagnosis
            // held stands (the dead band is the hysteresis).
            _ => None,
        };
        let rule = rule.or_else(|| self.held.get(road).copied())?;
        Some(Diagnosis { rule, station: station.to_string(), flood_grade, river_grade: river_grade.unwrap_or(0) })
    }

    /// Compares what `road` says now with the diagnosis held: a cleared or
    /// switched diagnosis first, then the new one.
    fn update(
        &mut self,
        cx: &Context<'_>,
        road: &str,
        at: DateTime<Utc>,
        water: &super::water::Water,
        flood: &super::flood::Flood,
        out: &mut Vec<Assessment>,
    ) {
        let now = self.diagnose(cx, road, water, flood);
        let held = self.held.get(road).copied();
        if held == now.as_ref().map(|d| d.rule) {
            return;
        }
        if let Some(rule) = held {
            self.held.remove(road);
            out.push(Assessment { key: AlertKey::sensor(rule, road), at, verdict: Verdict::Clear });
        }
        let Some(Diagnosis { rule, station, flood_grade, river_grade }) = now else { return };
        let sensor = cx.sensor(road);
        let mut s = state_for(rule, sensor, 1, rule.as_str(), Severity::Moderate, cx.rules.road_flooding.radius_m);
        let river = cx.sensor(&station).and_then(|s| s.name.clone()).unwrap_or_else(|| station.clone());
        if rule == RuleId::DrainageSuspected {
            s.description_en = format!("The road is flooded (grade {flood_grade}) while {river} is below its warning levels: water is not reaching the river. Check drains, culverts and pumping stations.");
            s.description_zh = format!("道路淹水（等級 {flood_grade}），但鄰近河川 {river} 水位未達警戒，疑似排水不良（雨水無法排入河川），請檢查側溝、箱涵及抽水站。");
        } else {
            s.description_en = format!("The road is flooded (grade {flood_grade}) while {river} is at warning grade {river_grade}: the city cannot drain into the river. Consider closing flood gates and running pumps.");
            s.description_zh = format!("道路淹水（等級 {flood_grade}），且鄰近河川 {river} 水位達警戒等級 {river_grade}，疑似河川水位頂托致無法排水，請評估關閉防洪閘門並啟動抽水。");
        }
        s.details.insert("river_station".into(), json!(station));
        s.details.insert("flood_grade".into(), json!(flood_grade));
        s.details.insert("river_grade".into(), json!(river_grade));
        out.push(Assessment { key: AlertKey::sensor(rule, road), at, verdict: Verdict::Active(s) });
        self.held.insert(road.to_string(), rule);
    }
}

/// River station → road sensors naming it (`installation.river_station`), roads in id order.
fn roads_by_station(cx: &Context<'_>) -> HashMap<String, Vec<String>> {
    let mut map: HashMap<String, Vec<String>> = HashMap::new();
    for sensor in cx.sensors.values() {
        if let Some(station) = sensor.installation.get("river_station").and_then(|v| v.as_str()) {
            map.entry(station.to_string()).or_default().push(sensor.id.clone());
        }
    }
    for roads in map.values_mut() {
        roads.sort();
    }
    map
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate_and_errors_name_the_field() {
        CompositeRules::default().validate("composite").unwrap();
        let bad = CompositeRules { min_flood_grade: 0, ..Default::default() };
        assert!(bad.validate("composite").unwrap_err().to_string().contains("composite.min_flood_grade"));
    }
}
