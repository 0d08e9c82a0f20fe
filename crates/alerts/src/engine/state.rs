//! The starting [`AlertState`] every family fills in: headline and
//! description in English and Traditional Chinese, area around the sensor.

use crate::model::{AlertState, Area, Certainty, RuleId, Sensor, Severity, Urgency};

/// A starting [`AlertState`] for `rule` about `sensor`: headline and
/// description in both languages from the rule's event name, the sensor's
/// name and the level; area a circle of `radius_m` around the sensor.
/// Families fill in the figures, instruction and details.
pub fn state_for(
    rule: RuleId,
    sensor: Option<&Sensor>,
    grade: u8,
    level: &str,
    severity: Severity,
    radius_m: f64,
) -> AlertState {
    let (event_en, event_zh) = rule.event_name();
    let (name_en, name_zh) = match sensor {
        Some(s) => (
            s.name.clone().unwrap_or_else(|| s.id.clone()),
            s.name_zh.clone().or_else(|| s.name.clone()).unwrap_or_else(|| s.id.clone()),
        ),
        None => (String::new(), String::new()),
    };
    let district = sensor.and_then(|s| s.district.clone());
    let place_en = match &district {
        Some(d) if !name_en.is_empty() => format!("{name_en} ({d})"),
        Some(d) => d.clone(),
        None => name_en.clone(),
    };
    let place_zh = match &district {
        Some(d) if !name_zh.is_empty() => format!("{d}{name_zh}"),
        Some(d) => d.clone(),
        None => name_zh.clone(),
    };
    AlertState {
        grade,
        level: level.to_string(),
        severity,
        urgency: match rule.class() {
            crate::model::Class::Hazard => Urgency::Immediate,
            _ => Urgency::Expected,
        },
        certainty: Certainty::Observed,
        headline_en: format!("{event_en}: {level} at {place_en}"),
        headline_zh: format!("{place_zh}{event_zh}（{level}）"),
        description_en: String::new(),
        description_zh: String::new(),
        instruction_en: String::new(),
        instruction_zh: String::new(),
        sensor_id: sensor.map(|s| s.id.clone()),
        district,
        area: sensor.and_then(Sensor::point).map(|(lon, lat)| Area::Circle { lon, lat, radius_m }),
        value: None,
        unit: None,
        lead_time_s: None,
        evidence: Vec::new(),
        details: serde_json::Map::new(),
    }
}
