//! Graded thresholds with hysteresis and confirmation: the one mechanism
//! every graded rule uses so that nothing flaps.
//!
//! A [`Ladder`] holds ascending thresholds (grade 1, 2, 3...). A value
//! reaches grade `g` when it is at or above threshold `g`; once at `g`, it
//! keeps `g` until it falls below threshold `g` minus the margin. A change of
//! grade takes effect only after `confirm` consecutive readings agree on the
//! direction and (for clearing) `dwell_s` has passed since the first of them;
//! a reading that contradicts the candidate restarts the count.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

/// How a graded rule moves between grades.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Confirm {
    /// Consecutive readings at a higher grade before escalating (1 = at once).
    pub raise_readings: u32,
    /// Consecutive readings at a lower grade before de-escalating or clearing.
    pub clear_readings: u32,
    /// Seconds the lower grade must hold before de-escalating or clearing.
    pub clear_dwell_s: i64,
}

impl Default for Confirm {
    fn default() -> Confirm {
        Confirm { raise_readings: 2, clear_readings: 3, clear_dwell_s: 600 }
    }
}

impl Confirm {
    pub fn validate(&self, path: &str) -> Result<(), crate::AlertError> {
        if self.raise_readings == 0 {
            return Err(crate::AlertError::invalid(format!("{path}.raise_readings"), "must be at least 1"));
        }
        if self.clear_readings == 0 {
            return Err(crate::AlertError::invalid(format!("{path}.clear_readings"), "must be at least 1"));
        }
        if !(0..=7 * 86_400).contains(&self.clear_dwell_s) {
            return Err(crate::AlertError::invalid(format!("{path}.clear_dwell_s"), "must be 0..=604800"));
        }
        Ok(())
    }
}

/// Ascending thresholds and the margin a value must fall below to leave a grade.
#[derive(Debug, Clone, PartialEq)]
pub struct Ladder {
    pub thresholds: Vec<f64>,
    pub margin: f64,
}

impl Ladder {
    /// The grade `value` stands at, given the grade held now (hysteresis).
    pub fn grade(&self, value: f64, held: u8) -> u8 {
        let mut reached = 0u8;
        for (i, t) in self.thresholds.iter().enumerate() {
            let grade = (i + 1) as u8;
            let bar = if grade <= held { t - self.margin } else { *t };
            if value >= bar {
                reached = grade;
            } else {
                break;
            }
        }
        reached
    }
}

/// The confirmed grade of one subject.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Tracker {
    pub grade: u8,
    candidate: Option<Candidate>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct Candidate {
    up: bool,
    /// The grade all confirming readings support (the least extreme of them).
    grade: u8,
    count: u32,
    since: DateTime<Utc>,
}

impl Tracker {
    pub fn new(grade: u8) -> Tracker {
        Tracker { grade, candidate: None }
    }

    /// Feeds the grade one reading stands at; returns the confirmed grade
    /// (changed only when the confirmation rule is met).
    pub fn observe(&mut self, at: DateTime<Utc>, grade: u8, confirm: &Confirm) -> u8 {
        if grade == self.grade {
            self.candidate = None;
            return self.grade;
        }
        let up = grade > self.grade;
        let candidate = match self.candidate {
            Some(c) if c.up == up => Candidate {
                up,
                grade: if up { c.grade.min(grade) } else { c.grade.max(grade) },
                count: c.count + 1,
                since: c.since,
            },
            _ => Candidate { up, grade, count: 1, since: at },
        };
        let confirmed = if up {
            candidate.count >= confirm.raise_readings
        } else {
            candidate.count >= confirm.clear_readings
                && at - candidate.since >= Duration::seconds(confirm.clear_dwell_s)
        };
        if confirmed {
            self.grade = candidate.grade;
            self.candidate = None;
        } else {
            self.candidate = Some(candidate);
        }
        self.grade
    }

    /// Whether a change is pending confirmation.
    pub fn pending(&self) -> Option<u8> {
        self.candidate.map(|c| c.grade)
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn at(minute: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 9, 1, 0, 0, 0).unwrap() + Duration::minutes(minute)
    }

    #[test]
    fn hysteresis_holds_a_grade_until_the_margin_is_crossed() {
        let ladder = Ladder { thresholds: vec![2.0, 2.6, 3.1], margin: 0.1 };
        assert_eq!(ladder.grade(1.99, 0), 0);
        assert_eq!(ladder.grade(2.0, 0), 1);
        assert_eq!(ladder.grade(2.65, 0), 2);
        assert_eq!(ladder.grade(2.55, 2), 2, "inside the margin keeps the grade");
        assert_eq!(ladder.grade(2.49, 2), 1);
        assert_eq!(ladder.grade(1.95, 1), 1);
        assert_eq!(ladder.grade(1.89, 1), 0);
        assert_eq!(ladder.grade(3.2, 1), 3);
    }

    #[test]
    fn raising_needs_confirming_readings_and_clearing_a_dwell() {
        let confirm = Confirm { raise_readings: 2, clear_readings: 2, clear_dwell_s: 600 };
        let mut t = Tracker::default();
        assert_eq!(t.observe(at(0), 2, &confirm), 0);
        assert_eq!(t.observe(at(1), 3, &confirm), 2, "escalates to what both readings support");
        assert_eq!(t.observe(at(2), 0, &confirm), 2);
        assert_eq!(t.observe(at(3), 0, &confirm), 2, "two readings, but not ten minutes");
        assert_eq!(t.observe(at(12), 0, &confirm), 0);
    }

    #[test]
    fn an_oscillating_value_never_flaps() {
        let confirm = Confirm { raise_readings: 2, clear_readings: 3, clear_dwell_s: 0 };
        let mut t = Tracker::new(1);
        for minute in 0..100 {
            let grade = if minute % 2 == 0 { 0 } else { 1 };
            assert_eq!(t.observe(at(minute), grade, &confirm), 1);
        }
    }
}
