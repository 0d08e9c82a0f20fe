//! Rule `district_rainfall`: a district stands at its worst gauge's
//! (confirmed) class; the details say which gauge and how many gauges reach
//! each class. Gauges that health holds suspect do not count. The grade is
//! built from debounced gauge grades, so it is as steady as they are.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value};

use super::{table, Gauge};
use crate::engine::water::support;
use crate::engine::{state_for, Assessment, Context};
use crate::model::{AlertKey, Area, RuleId};

pub(super) fn assess(
    cx: &Context<'_>,
    gauges: &BTreeMap<String, Gauge>,
    district: &str,
    at: DateTime<Utc>,
    out: &mut Vec<Assessment>,
) {
    let members: Vec<(&String, u8)> = gauges
        .iter()
        .filter(|(_, g)| g.district.as_deref() == Some(district))
        // A gauge whose health alert makes it suspect does not count; one
        // flagged reading does not (the gauge keeps its confirmed class):
        // a district must not clear and re-raise with each flagged reading.
        .map(|(id, g)| (id, if cx.suspect(id).is_none() { g.tracker.grade } else { 0 }))
        .collect();
    let worst = members.iter().map(|(_, g)| *g).max().unwrap_or(0);
    let key = AlertKey::district(RuleId::DistrictRainfall, district);
    out.push(support::verdict(key, at, worst, || {
        let i = usize::from(worst.clamp(1, 4) - 1);
        let rules = &cx.rules.rainfall;
        let mut s =
            state_for(RuleId::DistrictRainfall, None, worst, table::LEVELS[i], table::SEVERITIES[i], rules.radius_m);
        let worst_gauge = members.iter().find(|(_, g)| *g == worst).map(|(id, _)| (*id).clone()).unwrap_or_default();
        let mut counts = Map::new();
        for (c, level) in table::LEVELS.iter().enumerate() {
            let n = members.iter().filter(|(_, g)| usize::from(*g) > c).count();
            counts.insert((*level).to_string(), json!(n));
        }
        let reached = members.iter().filter(|(_, g)| *g == worst).count();
        s.headline_en = format!("Heavy rain in district: {} in {district}", table::LEVELS[i]);
        s.headline_zh = format!("{district}{}（行政區）", table::NAMES_ZH[i]);
        s.description_en = format!(
            "{reached} of {} rain gauges in {district} reach {}; the worst is {worst_gauge}.",
            members.len(),
            table::LEVELS[i]
        );
        s.description_zh = format!(
            "{district}共 {} 站雨量站，其中 {reached} 站達{}標準；最大為 {worst_gauge}。",
            members.len(),
            table::NAMES_ZH[i]
        );
        s.instruction_en = table::INSTRUCTIONS[i].0.into();
        s.instruction_zh = table::INSTRUCTIONS[i].1.into();
        s.district = Some(district.to_string());
        s.area = area(cx, &members, rules.radius_m);
        if let Some(g) = gauges.get(&worst_gauge) {
            s.evidence = super::sums_evidence(&worst_gauge, at, &g.sums(at));
        }
        s.details.insert("worst_gauge".into(), Value::String(worst_gauge));
        s.details.insert("gauges".into(), json!(members.len()));
        s.details.insert("counts".into(), Value::Object(counts));
        s
    }));
}

/// A circle around the district's gauges, reaching `radius_m` past the farthest.
fn area(cx: &Context<'_>, members: &[(&String, u8)], radius_m: f64) -> Option<Area> {
    let points: Vec<(f64, f64)> = members.iter().filter_map(|(id, _)| cx.sensor(id)?.point()).collect();
    if points.is_empty() {
        return None;
    }
    let n = points.len() as f64;
    let (lon, lat) = (points.iter().map(|p| p.0).sum::<f64>() / n, points.iter().map(|p| p.1).sum::<f64>() / n);
    let far = points.iter().map(|p| distance_m((lon, lat), *p)).fold(0.0, f64::max);
    Some(Area::Circle { lon, lat, radius_m: far + radius_m })
}

/// Equirectangular distance: plenty for a city's extent.
pub(crate) fn distance_m(a: (f64, f64), b: (f64, f64)) -> f64 {
    let k = std::f64::consts::PI / 180.0;
    let x = (b.0 - a.0) * k * ((a.1 + b.1) / 2.0 * k).cos();
    let y = (b.1 - a.1) * k;
    (x * x + y * y).sqrt() * 6_371_000.0
}
