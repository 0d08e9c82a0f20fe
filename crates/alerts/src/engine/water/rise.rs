//! Rate of rise: the least-squares slope of a station's trusted readings over
//! a window, and the projected time until the next warning level (or the
//! levee crest) at that rate.
//!
//! WRA defines its warning levels by lead time (a level is the control
//! elevation minus the rate of rise times the lead time), so "level 1 in
//! 40 min" matters as much as "level 2 now". The rule is graded by that
//! lead time:
//!
//! - grade 1 `rising`: the stage rises at `rate_m_per_h` or faster;
//! - grade 2 `approaching`: and the next mark is projected within
//!   `lead_grade2_s` (default 2 h, the lead WRA uses for levels 3 and 1);
//! - grade 3 `imminent`: within `lead_grade3_s` (default 1 h).
//!
//! Hysteresis: once held, a grade stays while the rate is above
//! `rate_m_per_h - margin_m_per_h` and the lead within its bound plus
//! `lead_margin_s`.
//!
//! Clearing is deliberately slow. A typhoon crosses a city in rain bands,
//! and a river's rise slows for a while between two bands (the runoff of
//! the first has passed the gauge, the second's has not arrived) without
//! the flood being over: a rule that clears in that lull is raised again
//! half an hour later, and a warning that comes and goes teaches people to
//! ignore it. So the defaults clear only when the rise has fallen well
//! below the alert rate (under 0.3 m/h: `margin_m_per_h` 0.2, 40 % of the
//! 0.5 m/h rate, well outside the wobble of a 30-min least-squares slope)
//! and stayed there for a whole rate window (`clear_dwell_s` 1800 s =
//! `window_s`, so every reading that showed the fast rise has left the
//! fit, and the same 30 min the level rule uses to de-escalate). The price:
//! a river that levels off clears about an hour later (the fitted rate
//! decays over one window, then 30 min confirm it, with a step down to
//! `approaching` on the way as the lead lengthens), while the `water_level`
//! alert carries the stage itself throughout.

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{support, Levels, Projection, WaterLevelRules};
use crate::engine::debounce::Confirm;
use crate::engine::state_for;
use crate::model::{AlertState, Certainty, Observation, RuleId, Sensor, Severity, Urgency};
use crate::AlertError;

/// Settings of rule `rate_of_rise` (section `water_level.rate`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateRules {
    pub enabled: bool,
    /// The slope is fitted over this window (default 30 min).
    pub window_s: i64,
    /// Trusted readings needed in the window for a slope.
    pub min_readings: u32,
    /// The readings must span at least this much of the window.
    pub min_span_s: i64,
    /// Rising this fast or faster raises the rule (default 0.5 m/h, a fast
    /// rise for Taiwan's river gauges outside the steepest mountain reaches).
    pub rate_m_per_h: f64,
    /// Hysteresis on the rate: a held grade stays until the rate falls below
    /// `rate_m_per_h - margin_m_per_h` (default 0.2: clears under 0.3 m/h,
    /// so a rise that only slows between rain bands does not clear).
    pub margin_m_per_h: f64,
    /// Next mark within this lead: grade 2 (default 2 h, WRA's level-3/level-1 lead).
    pub lead_grade2_s: i64,
    /// Next mark within this lead: grade 3 (default 1 h).
    pub lead_grade3_s: i64,
    /// Hysteresis on the lead time.
    pub lead_margin_s: i64,
    /// Two readings raise; three readings and 30 min (one whole rate window)
    /// below the rate minus the margin clear.
    pub confirm: Confirm,
}

impl Default for RateRules {
    fn default() -> RateRules {
        RateRules {
            enabled: true,
            window_s: 1_800,
            min_readings: 4,
            min_span_s: 600,
            rate_m_per_h: 0.5,
            margin_m_per_h: 0.2,
            lead_grade2_s: 7_200,
            lead_grade3_s: 3_600,
            lead_margin_s: 600,
            confirm: Confirm { raise_readings: 2, clear_readings: 3, clear_dwell_s: 1_800 },
        }
    }
}

impl RateRules {
    pub fn validate(&self, path: &str) -> Result<(), AlertError> {
        support::seconds(path, "window_s", self.window_s, 86_400)?;
        support::at_least_one(path, "min_readings", self.min_readings.saturating_sub(1))
            .map_err(|_| AlertError::invalid(format!("{path}.min_readings"), "must be at least 2"))?;
        if !(0..=self.window_s).contains(&self.min_span_s) {
            return Err(AlertError::invalid(format!("{path}.min_span_s"), "must be 0..=window_s"));
        }
        support::positive(path, "rate_m_per_h", self.rate_m_per_h)?;
        support::non_negative(path, "margin_m_per_h", self.margin_m_per_h)?;
        if self.margin_m_per_h >= self.rate_m_per_h {
            return Err(AlertError::invalid(format!("{path}.margin_m_per_h"), "must be below rate_m_per_h"));
        }
        support::seconds(path, "lead_grade2_s", self.lead_grade2_s, 86_400)?;
        support::seconds(path, "lead_grade3_s", self.lead_grade3_s, self.lead_grade2_s)
            .map_err(|_| AlertError::invalid(format!("{path}.lead_grade3_s"), "must be 1..=lead_grade2_s"))?;
        if !(0..=86_400).contains(&self.lead_margin_s) {
            return Err(AlertError::invalid(format!("{path}.lead_margin_s"), "must be 0..=86400"));
        }
        self.confirm.validate(&format!("{path}.confirm"))
    }
}

/// The rate over `points` (time-ordered, inside the window) and the next
/// mark above `level`; `None` when there are too few readings for a slope.
pub(crate) fn project(
    points: &[(chrono::DateTime<chrono::Utc>, f64)],
    level: f64,
    levels: &Levels,
    rules: &RateRules,
) -> Option<Projection> {
    let (first, last) = (points.first()?.0, points.last()?.0);
    if points.len() < rules.min_readings as usize || (last - first).num_seconds() < rules.min_span_s {
        return None;
    }
    let slope = support::slope_per_s(points)?;
    let next = levels
        .next_above(level)
        .and_then(|(name, mark)| (slope > 0.0).then(|| (name, mark, ((mark - level) / slope).ceil().min(1e9) as i64)));
    Some(Projection { rate_m_per_h: slope * 3_600.0, next })
}

/// The grade a projection stands at, given the grade held (hysteresis).
pub(crate) fn grade(p: &Projection, held: u8, rules: &RateRules) -> u8 {
    let bar = if held >= 1 { rules.rate_m_per_h - rules.margin_m_per_h } else { rules.rate_m_per_h };
    if p.rate_m_per_h < bar {
        return 0;
    }
    let Some((_, _, lead)) = p.next else { return 1 };
    let slack = |g: u8| if held >= g { rules.lead_margin_s } else { 0 };
    if lead <= rules.lead_grade3_s + slack(3) {
        3
    } else if lead <= rules.lead_grade2_s + slack(2) {
        2
    } else {
        1
    }
}

fn mark_names(name: &str) -> (&'static str, &'static str) {
    match name {
        "warning_3" => ("warning level 3 (yellow)", "三級警戒水位"),
        "warning_2" => ("warning level 2 (orange)", "二級警戒水位"),
        "warning_1" => ("warning level 1 (red)", "一級警戒水位"),
        _ => ("the levee crest", "堤頂"),
    }
}

pub(crate) fn state(
    sensor: &Sensor,
    rules: &WaterLevelRules,
    grade: u8,
    obs: &Observation,
    level: f64,
    p: &Projection,
) -> AlertState {
    let i = usize::from(grade.clamp(1, 3) - 1);
    let name = ["rising", "approaching", "imminent"][i];
    let severity = [Severity::Minor, Severity::Moderate, Severity::Severe][i];
    let mut s = state_for(RuleId::RateOfRise, Some(sensor), grade, name, severity, rules.radius_m);
    // A projection, not an observation.
    s.urgency = Urgency::Expected;
    s.certainty = Certainty::Likely;
    let rate = p.rate_m_per_h;
    s.description_en =
        format!("Stage {level:.2} m, rising {rate:.2} m/h over the last {} min.", rules.rate.window_s / 60);
    s.description_zh = format!("水位 {level:.2} 公尺，近 {} 分鐘每小時上升 {rate:.2} 公尺。", rules.rate.window_s / 60);
    if let Some((mark, mark_m, lead)) = p.next {
        let (en, zh) = mark_names(mark);
        let minutes = (lead + 59) / 60;
        s.description_en.push_str(&format!(" At this rate it reaches {en} ({mark_m:.2} m) in {minutes} min."));
        s.description_zh.push_str(&format!("依此速率約 {minutes} 分鐘後到達{zh}（{mark_m:.2} 公尺）。"));
        s.lead_time_s = Some(lead);
        s.details.insert("next_level".into(), json!(mark));
        s.details.insert("next_level_m".into(), json!(mark_m));
        // Rounded so the projection's wobble is not an update every reading.
        let eta = support::round_time(obs.ts + chrono::Duration::seconds(lead), 600);
        s.details.insert("eta".into(), json!(eta.to_rfc3339()));
    }
    s.instruction_en =
        "The river is rising fast. Stay away from the river and riverside paths and be ready to act on water level warnings."
            .into();
    s.instruction_zh = "河川水位快速上升，請遠離河岸及河濱步道，並隨時注意水位警戒訊息。".into();
    s.value = Some((rate * 1_000.0).round() / 1_000.0);
    s.unit = Some("m/h".into());
    s.evidence.push(support::evidence(obs, "level_m", level));
    s.evidence.push(support::evidence(obs, "rise_m_per_h", rate));
    s
}

#[cfg(test)]
mod tests {
    use chrono::{Duration, TimeZone, Utc};

    use super::*;

    fn levels() -> Levels {
        Levels { warnings: [Some(2.0), Some(2.6), Some(3.1)], crest: Some(3.6), from_rules: false }
    }

    #[test]
    fn lead_time_to_the_next_level() {
        let t0 = Utc.with_ymd_and_hms(2026, 9, 1, 0, 0, 0).unwrap();
        // 0.6 m/h: from 2.70 m, warning level 1 (3.10 m) is 0.4 m away: 40 min.
        let pts: Vec<_> = (0..4).map(|i| (t0 + Duration::minutes(10 * i), 2.40 + 0.1 * i as f64)).collect();
        let p = project(&pts, 2.70, &levels(), &RateRules::default()).unwrap();
        assert!((p.rate_m_per_h - 0.6).abs() < 1e-9);
        let (mark, _, lead) = p.next.unwrap();
        assert_eq!(mark, "warning_1");
        assert!((lead - 2_400).abs() <= 1, "{lead}");
        assert_eq!(grade(&p, 0, &RateRules::default()), 3);
        assert!(project(&pts[..3], 2.6, &levels(), &RateRules::default()).is_none(), "too few readings");
    }

    #[test]
    fn grades_hold_inside_the_margins() {
        let r = RateRules::default();
        let p =
            |rate: f64, lead: Option<i64>| Projection { rate_m_per_h: rate, next: lead.map(|l| ("warning_2", 2.6, l)) };
        assert_eq!(grade(&p(0.45, None), 0, &r), 0);
        assert_eq!(grade(&p(0.45, None), 1, &r), 1);
        // A rise that slows to 0.35 m/h between rain bands holds; under 0.3 m/h it may clear.
        assert_eq!(grade(&p(0.35, None), 1, &r), 1);
        assert_eq!(grade(&p(0.29, None), 1, &r), 0);
        assert_eq!(grade(&p(0.5, Some(7_300)), 0, &r), 1);
        assert_eq!(grade(&p(0.5, Some(7_300)), 2, &r), 2);
        assert_eq!(grade(&p(0.5, Some(3_500)), 0, &r), 3);
    }

    #[test]
    fn validation_names_the_field() {
        let bad = RateRules { lead_grade3_s: 9_000, ..Default::default() };
        assert!(bad.validate("water_level.rate").unwrap_err().to_string().contains("water_level.rate.lead_grade3_s"));
        let bad = RateRules { min_readings: 1, ..Default::default() };
        assert!(bad.validate("water_level.rate").unwrap_err().to_string().contains("min_readings"));
    }
}
