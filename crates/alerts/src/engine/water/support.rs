//! Pieces the hydrological families (water, rain, flood, health, composite)
//! share: ladders from optional thresholds, the "suppressed once per grade"
//! memory, the trust test for a reading, least-squares slopes and the
//! validation helpers that name the field.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::engine::debounce::Ladder;
use crate::engine::{Assessment, Context, Verdict};
use crate::model::{AlertKey, AlertState, Evidence, Observation, RuleId, Sensor};
use crate::AlertError;

/// A ladder from thresholds that may be missing. A missing grade takes the
/// next higher threshold (reaching the higher one implies the lower one); a
/// missing top grade is unreachable. Thresholds out of order (a registry
/// typo) are made non-decreasing the same way. `None` when none is set.
pub fn ladder(thresholds: &[Option<f64>], margin: f64) -> Option<Ladder> {
    if thresholds.iter().all(Option::is_none) {
        return None;
    }
    let mut out = vec![f64::INFINITY; thresholds.len()];
    let mut next = f64::INFINITY;
    for i in (0..thresholds.len()).rev() {
        if let Some(t) = thresholds[i] {
            next = next.min(t);
        }
        out[i] = next;
    }
    Some(Ladder { thresholds: out, margin })
}

/// Why a reading may not be used by a hazard rule: the health alert naming
/// its sensor (`<rule>:<subject>`, open or pending), or its quality flag.
pub fn distrust(cx: &Context<'_>, obs: &Observation) -> Option<String> {
    if let Some(key) = cx.suspect(&obs.sensor_id) {
        return Some(format!("{}:{}", key.rule.as_str(), key.subject));
    }
    if !obs.is_good() {
        let reason = obs.quality_reasons.first().cloned().unwrap_or_else(|| format!("{:?}", obs.quality));
        return Some(format!("quality:{reason}"));
    }
    None
}

/// The (rule, grade) pairs already reported as suppressed for one subject,
/// so a suspect sensor yields one `suppressed` event per grade, not one per
/// reading. Forgotten once the sensor is trusted again.
#[derive(Debug, Default, Clone)]
pub struct Suppressions(BTreeSet<(RuleId, u8)>);

impl Suppressions {
    /// Pushes a `Suppressed` verdict for `key` at `state.grade` unless one was already pushed.
    pub fn report(
        &mut self,
        key: AlertKey,
        at: DateTime<Utc>,
        mut state: AlertState,
        by: &str,
        out: &mut Vec<Assessment>,
    ) {
        if self.0.insert((key.rule, state.grade)) {
            state.details.insert("suppressed_by".into(), Value::String(by.to_string()));
            out.push(Assessment { key, at, verdict: Verdict::Suppressed(state) });
        }
    }

    pub fn reset(&mut self) {
        self.0.clear();
    }
}

/// Active at `grade` with `state`, or clear when `grade` is 0.
pub fn verdict(key: AlertKey, at: DateTime<Utc>, grade: u8, state: impl FnOnce() -> AlertState) -> Assessment {
    let verdict = if grade == 0 { Verdict::Clear } else { Verdict::Active(state()) };
    Assessment { key, at, verdict }
}

/// Least-squares slope of `(t, v)` points, in units per second.
pub fn slope_per_s(points: &[(DateTime<Utc>, f64)]) -> Option<f64> {
    let first = points.first()?.0;
    let n = points.len() as f64;
    if points.len() < 2 {
        return None;
    }
    let xs: Vec<f64> = points.iter().map(|(t, _)| (*t - first).num_milliseconds() as f64 / 1000.0).collect();
    let mx = xs.iter().sum::<f64>() / n;
    let my = points.iter().map(|(_, v)| v).sum::<f64>() / n;
    let (mut sxy, mut sxx) = (0.0, 0.0);
    for (x, (_, y)) in xs.iter().zip(points) {
        sxy += (x - mx) * (y - my);
        sxx += (x - mx) * (x - mx);
    }
    (sxx > 0.0).then(|| sxy / sxx)
}

/// One reading as evidence.
pub fn evidence(obs: &Observation, name: &str, value: f64) -> Evidence {
    Evidence { sensor_id: obs.sensor_id.clone(), ts: obs.ts, name: name.to_string(), value }
}

/// `t` rounded to the nearest `step_s` (stable figures in `details`).
pub fn round_time(t: DateTime<Utc>, step_s: i64) -> DateTime<Utc> {
    let s = t.timestamp();
    let r = (s + step_s / 2).div_euclid(step_s) * step_s;
    DateTime::from_timestamp(r, 0).unwrap_or(t)
}

/// How often `sensor` reports, in seconds: its registered interval, else its
/// installation's `cadence_s`, else the family's `default_s`.
pub fn expected_interval(sensor: &Sensor, default_s: i64) -> i64 {
    if sensor.expected_interval_s > 0 {
        return sensor.expected_interval_s;
    }
    sensor.installation.get("cadence_s").and_then(Value::as_i64).filter(|s| *s > 0).unwrap_or(default_s)
}

/// The validation helpers: each error names `path.field`.
pub fn positive(path: &str, field: &str, v: f64) -> Result<(), AlertError> {
    if v.is_finite() && v > 0.0 {
        Ok(())
    } else {
        Err(AlertError::invalid(format!("{path}.{field}"), "must be a finite number above 0"))
    }
}

pub fn non_negative(path: &str, field: &str, v: f64) -> Result<(), AlertError> {
    if v.is_finite() && v >= 0.0 {
        Ok(())
    } else {
        Err(AlertError::invalid(format!("{path}.{field}"), "must be a finite number, 0 or more"))
    }
}

pub fn seconds(path: &str, field: &str, v: i64, max: i64) -> Result<(), AlertError> {
    if (1..=max).contains(&v) {
        Ok(())
    } else {
        Err(AlertError::invalid(format!("{path}.{field}"), format!("must be 1..={max} seconds")))
    }
}

pub fn at_least_one(path: &str, field: &str, v: u32) -> Result<(), AlertError> {
    if v >= 1 {
        Ok(())
    } else {
        Err(AlertError::invalid(format!("{path}.{field}"), "must be at least 1"))
    }
}

/// Optional thresholds must be finite and ascend in the order given.
pub fn ascending(path: &str, fields: &[(&str, Option<f64>)]) -> Result<(), AlertError> {
    let mut last: Option<(&str, f64)> = None;
    for (name, v) in fields {
        let Some(v) = *v else { continue };
        if !v.is_finite() {
            return Err(AlertError::invalid(format!("{path}.{name}"), "must be a finite number"));
        }
        if let Some((prev, p)) = last {
            if v < p {
                return Err(AlertError::invalid(format!("{path}.{name}"), format!("must not be below {prev} ({p})")));
            }
        }
        last = Some((name, v));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use chrono::{Duration, TimeZone};

    use super::*;

    #[test]
    fn ladders_fill_missing_grades() {
        let l = ladder(&[None, Some(2.0), Some(3.0)], 0.1).unwrap();
        assert_eq!(l.thresholds, vec![2.0, 2.0, 3.0]);
        let l = ladder(&[Some(1.0), None, None], 0.1).unwrap();
        assert_eq!(l.grade(5.0, 0), 1);
        assert!(ladder(&[None, None], 0.1).is_none());
    }

    #[test]
    fn slope_of_a_line() {
        let t0 = Utc.with_ymd_and_hms(2026, 9, 1, 0, 0, 0).unwrap();
        let pts: Vec<_> = (0..5).map(|i| (t0 + Duration::minutes(i * 10), 1.0 + 0.1 * i as f64)).collect();
        let s = slope_per_s(&pts).unwrap();
        assert!((s * 3600.0 - 0.6).abs() < 1e-9, "{s}");
        assert!(slope_per_s(&pts[..1]).is_none());
    }

    #[test]
    fn ascending_names_the_field() {
        let err = ascending("w", &[("a", Some(2.0)), ("b", None), ("c", Some(1.0))]).unwrap_err().to_string();
        assert!(err.contains("w.c"), "{err}");
    }
}
