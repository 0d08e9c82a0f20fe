//! The `[air]` section of the rules file: settings, defaults (MOENV bands)
//! and validation.

use citygauge_domain::aqi::AqiCategory;
use serde::{Deserialize, Serialize};

use crate::engine::debounce::{Confirm, Ladder};
use crate::AlertError;

/// Settings of this family (the `[air]` section of the rules file).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AirRules {
    pub enabled: bool,
    /// The lowest AQI category that raises an alert: `unhealthy_sensitive`
    /// (MOENV orange, AQI 101-150), `unhealthy`, `very_unhealthy` or `hazardous`.
    pub raise_at: String,
    /// AQI points below a category's lower bound a station must fall to leave it.
    pub margin_aqi: f64,
    /// Confirmation of a category change. The index is already a 12 h/4 h
    /// blend, so two readings raise and half an hour of lower readings clears.
    pub confirm: Confirm,
    /// Radius of the alert's area around the station, metres (a
    /// micro-sensor speaks for its neighbourhood).
    pub radius_m: f64,
    pub hotspot: HotspotRules,
}

impl Default for AirRules {
    fn default() -> AirRules {
        AirRules {
            enabled: true,
            raise_at: AqiCategory::UnhealthySensitive.as_str().into(),
            margin_aqi: 5.0,
            confirm: Confirm { raise_readings: 2, clear_readings: 3, clear_dwell_s: 1800 },
            radius_m: 1000.0,
            hotspot: HotspotRules::default(),
        }
    }
}

/// A station far above its district's median.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HotspotRules {
    pub enabled: bool,
    /// The PM2.5 mean compared, over this many minutes before each reading.
    pub window_min: i64,
    /// Readings inside the window for a station's mean to count.
    pub min_readings: usize,
    /// The station's mean must be at least `ratio` × the median of the others...
    pub ratio: f64,
    /// ...and at least this many µg/m³ above it (so a clean district's 4 vs 2 is no hot spot).
    pub min_excess_ugm3: f64,
    /// Other stations of the district with a current mean needed to judge.
    pub min_neighbours: usize,
    /// A neighbour's mean is current if its last reading is this recent, minutes.
    pub fresh_min: i64,
    /// µg/m³ below the bar a hot spot must fall to clear.
    pub margin_ugm3: f64,
    pub confirm: Confirm,
    pub radius_m: f64,
}

impl Default for HotspotRules {
    fn default() -> HotspotRules {
        HotspotRules {
            enabled: true,
            window_min: 60,
            min_readings: 3,
            ratio: 2.0,
            min_excess_ugm3: 15.0,
            min_neighbours: 3,
            fresh_min: 30,
            margin_ugm3: 3.0,
            confirm: Confirm { raise_readings: 2, clear_readings: 3, clear_dwell_s: 1800 },
            radius_m: 500.0,
        }
    }
}

/// Categories that can raise, with the AQI where each starts (MOENV bands).
const GRADES: [(AqiCategory, f64); 4] = [
    (AqiCategory::UnhealthySensitive, 101.0),
    (AqiCategory::Unhealthy, 151.0),
    (AqiCategory::VeryUnhealthy, 201.0),
    (AqiCategory::Hazardous, 301.0),
];

impl AirRules {
    /// `path` is this section's name in the rules file, for error messages.
    pub fn validate(&self, path: &str) -> Result<(), AlertError> {
        let bad = |field: &str, why: &str| Err(AlertError::invalid(format!("{path}.{field}"), why));
        if self.min_grade().is_none() {
            return bad("raise_at", "must be unhealthy_sensitive, unhealthy, very_unhealthy or hazardous");
        }
        if !(0.0..=50.0).contains(&self.margin_aqi) {
            return bad("margin_aqi", "must be 0..=50 AQI points");
        }
        if !(1.0..=20_000.0).contains(&self.radius_m) {
            return bad("radius_m", "must be 1..=20000 m");
        }
        self.confirm.validate(&format!("{path}.confirm"))?;
        let h = &self.hotspot;
        let hp = format!("{path}.hotspot");
        let bad = |field: &str, why: &str| Err(AlertError::invalid(format!("{hp}.{field}"), why));
        if !(5..=720).contains(&h.window_min) {
            return bad("window_min", "must be 5..=720");
        }
        if !(1..=1_000).contains(&h.min_readings) {
            return bad("min_readings", "must be 1..=1000");
        }
        if !(h.ratio.is_finite() && h.ratio >= 1.0 && h.ratio <= 100.0) {
            return bad("ratio", "must be 1..=100");
        }
        if !(0.0..=1_000.0).contains(&h.min_excess_ugm3) {
            return bad("min_excess_ugm3", "must be 0..=1000");
        }
        if !(1..=1_000).contains(&h.min_neighbours) {
            return bad("min_neighbours", "must be 1..=1000");
        }
        if !(1..=720).contains(&h.fresh_min) {
            return bad("fresh_min", "must be 1..=720");
        }
        if !(0.0..=100.0).contains(&h.margin_ugm3) {
            return bad("margin_ugm3", "must be 0..=100");
        }
        if !(1.0..=20_000.0).contains(&h.radius_m) {
            return bad("radius_m", "must be 1..=20000 m");
        }
        h.confirm.validate(&format!("{hp}.confirm"))
    }

    /// How much stored history a restarted engine must replay: MOENV's
    /// 12-hour window (the hot-spot window is shorter).
    pub fn warmup(&self) -> chrono::Duration {
        chrono::Duration::hours(citygauge_domain::aqi::LONG_HOURS as i64)
            .max(chrono::Duration::minutes(self.hotspot.window_min))
    }

    /// The grade `raise_at` names (1 = unhealthy for sensitive groups).
    pub(super) fn min_grade(&self) -> Option<u8> {
        GRADES.iter().position(|(c, _)| c.as_str() == self.raise_at).map(|i| i as u8 + 1)
    }

    pub(super) fn ladder(&self) -> Ladder {
        Ladder { thresholds: GRADES.iter().map(|(_, aqi)| *aqi).collect(), margin: self.margin_aqi }
    }

    /// The grade an AQI stands at given the grade held (0 below `raise_at`).
    pub(super) fn grade(&self, aqi: u32, held: u8) -> u8 {
        let g = self.ladder().grade(f64::from(aqi), held);
        if g < self.min_grade().unwrap_or(1) {
            0
        } else {
            g
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grades_follow_the_moenv_categories_with_a_margin() {
        let rules = AirRules::default();
        assert_eq!(rules.grade(100, 0), 0);
        assert_eq!(rules.grade(101, 0), 1);
        assert_eq!(rules.grade(151, 0), 2);
        assert_eq!(rules.grade(201, 1), 3);
        assert_eq!(rules.grade(301, 0), 4);
        assert_eq!(rules.grade(97, 1), 1, "inside the margin keeps the grade");
        assert_eq!(rules.grade(95, 1), 0);
        assert_eq!(rules.grade(148, 2), 2);
        assert_eq!(rules.grade(145, 2), 1);
        let strict = AirRules { raise_at: "unhealthy".into(), ..AirRules::default() };
        assert_eq!(strict.grade(120, 0), 0, "below the category that raises");
        assert_eq!(strict.grade(160, 0), 2, "grades keep their category meaning");
        assert_eq!(strict.grade(148, 2), 2);
        assert_eq!(strict.grade(140, 2), 0);
    }
}
