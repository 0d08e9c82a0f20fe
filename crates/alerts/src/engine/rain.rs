//! Rainfall per gauge over rolling 10 min, 1 h, 3 h and 24 h against the CWA
//! classes (rule `rainfall`), and per district: the worst gauge and how many
//! gauges reach each class (rule `district_rainfall`).
//!
//! Accumulations come from [`citygauge_domain::rain_window`]: a reading is the
//! rain of the interval ending at its time, so 1-minute, 10-minute, hourly
//! and tipping-bucket gauges give the same sums. A redelivered reading (same
//! time) replaces itself. A silent gauge is *incomplete*, never zero rain: a
//! class is reached on the rain that was seen (a lower bound), but left only
//! when every window that could still hold it is complete.

mod district;
mod table;

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use citygauge_domain::rain_window::{accumulate_iter, Accumulation, RainInterval, Window};
use citygauge_domain::Kind;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::debounce::{Confirm, Tracker};
use super::water::support::{self, Suppressions};
use super::{state_for, Assessment, Context};
use crate::model::{AlertKey, AlertState, Evidence, Observation, RuleId, Sensor};
use crate::AlertError;
pub use table::{ClassRow, ClassTable};

/// Settings of this family (section `rainfall` of the rules file).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RainfallRules {
    pub enabled: bool,
    /// A district counts as "raining" (for the sewer rules) when its wettest
    /// gauge with complete data has at least this much in the last hour.
    pub raining_mm_per_h: f64,
    /// The CWA class table.
    pub classes: ClassTable,
    /// Count 200 mm in 3 h as torrential (CWA since about 2020).
    pub torrential_3h: bool,
    /// A class is left once every window is this many percent below the
    /// window's first threshold under it (10 %: 4 mm on 1 h, 8 mm on 24 h).
    pub margin_pct: f64,
    /// A class is reached on the first reading (accumulations do not
    /// jitter, bad readings are excluded); left after two evaluations and
    /// 30 min below.
    pub confirm: Confirm,
    /// Grace beyond the reporting interval for a window to count as
    /// complete (transmission delay).
    pub late_s: i64,
    /// Reporting interval assumed when neither the reading nor the registry says.
    pub default_interval_s: i64,
    /// Radius of a gauge alert's area.
    pub radius_m: f64,
    /// Per-district alerts (rule `district_rainfall`).
    pub district_enabled: bool,
}

impl Default for RainfallRules {
    fn default() -> RainfallRules {
        RainfallRules {
            enabled: true,
            raining_mm_per_h: 2.0,
            classes: ClassTable::default(),
            torrential_3h: true,
            margin_pct: 10.0,
            confirm: Confirm { raise_readings: 1, clear_readings: 2, clear_dwell_s: 1_800 },
            late_s: 300,
            default_interval_s: 600,
            radius_m: 3_000.0,
            district_enabled: true,
        }
    }
}

impl RainfallRules {
    /// `path` is this section's name in the rules file, for error messages.
    pub fn validate(&self, path: &str) -> Result<(), AlertError> {
        support::positive(path, "raining_mm_per_h", self.raining_mm_per_h)?;
        self.classes.validate(&format!("{path}.classes"))?;
        if !(0.0..=50.0).contains(&self.margin_pct) {
            return Err(AlertError::invalid(format!("{path}.margin_pct"), "must be 0..=50"));
        }
        self.confirm.validate(&format!("{path}.confirm"))?;
        if !(0..=86_400).contains(&self.late_s) {
            return Err(AlertError::invalid(format!("{path}.late_s"), "must be 0..=86400"));
        }
        support::seconds(path, "default_interval_s", self.default_interval_s, 86_400)?;
        support::positive(path, "radius_m", self.radius_m)
    }
}

/// This family's state across readings.
#[derive(Debug, Default)]
pub struct Rain {
    gauges: BTreeMap<String, Gauge>,
    /// City-wide `raining_mm_per_h`, as of the latest input.
    raining_mm_per_h: Option<f64>,
}

#[derive(Debug, Default)]
struct Gauge {
    /// Trusted readings of the last 24 h: ts → (mm, interval_s).
    readings: BTreeMap<DateTime<Utc>, (f64, Option<i64>)>,
    district: Option<String>,
    /// Expected reporting interval, the completeness tolerance with `late_s`.
    interval_s: i64,
    late_s: i64,
    tracker: Tracker,
    /// The latest reading evaluated (a redelivery or late reading is not evaluated again).
    last_reading: Option<DateTime<Utc>>,
    /// A reading arrived that was not evaluated (late): the next tick does.
    dirty: bool,
    /// The window that last set the grade (kept while the data cannot decide).
    window: Option<Window>,
    last_eval: Option<DateTime<Utc>>,
    /// Whether the latest reading could be used.
    trusted: bool,
    suppressed: Suppressions,
}

/// One gauge's windows at one time.
#[derive(Debug, Clone, Copy)]
struct Sums {
    acc: [(Window, Accumulation); 4],
    interval_s: i64,
    tolerance_s: i64,
}

impl Sums {
    fn get(&self, window: Window) -> Accumulation {
        self.acc.iter().find(|(w, _)| *w == window).map(|(_, a)| *a).unwrap_or(Accumulation {
            mm: None,
            covered_s: 0,
            window_s: window.seconds(),
        })
    }

    /// Whether the data covers `window`. A window shorter than the gauge's
    /// reporting interval is never complete: an hourly gauge cannot say what
    /// fell in the last 10 minutes.
    fn complete(&self, window: Window) -> bool {
        window.seconds() >= self.interval_s && self.get(window).is_complete(self.tolerance_s)
    }
}

impl Gauge {
    fn sums(&self, now: DateTime<Utc>) -> Sums {
        let acc = Window::ALL.map(|w| {
            let start = now - Duration::seconds(w.seconds());
            let inside = self.readings.range(start..=now).map(|(ts, (mm, interval_s))| RainInterval {
                ts: *ts,
                rain_mm: *mm,
                interval_s: *interval_s,
            });
            (w, accumulate_iter(inside, now, w.seconds(), self.interval_s))
        });
        Sums { acc, interval_s: self.interval_s, tolerance_s: self.interval_s + self.late_s }
    }

    /// The grade the windows stand at (hysteresis against `held`), and the
    /// window that sets it. Below `held`, a grade is left only when every
    /// window that could still hold it is complete.
    fn grade(&self, rules: &RainfallRules, sums: &Sums, held: u8) -> (u8, Option<Window>) {
        let ladders = rules.classes.ladders(rules.torrential_3h, rules.margin_pct);
        let mut best = (0u8, None);
        for (w, ladder) in &ladders {
            let g = ladder.grade(sums.get(*w).mm.unwrap_or(0.0), held);
            if g > best.0 {
                best = (g, Some(*w));
            }
        }
        let mut g = held;
        while g > best.0 {
            let undecided =
                ladders.iter().any(|(w, l)| l.thresholds[usize::from(g) - 1].is_finite() && !sums.complete(*w));
            if undecided {
                return (g, None);
            }
            g -= 1;
        }
        best
    }

    fn accumulation(&self, window: Window, now: DateTime<Utc>) -> Option<f64> {
        let sums = self.sums(now);
        sums.complete(window).then(|| sums.get(window).mm.unwrap_or(0.0))
    }
}

impl Rain {
    /// The rain `gauge` measured in `window` ending at `now`; `None` when
    /// its data does not cover the window (silence is not zero rain) or its
    /// latest reading was suspect.
    pub fn accumulation(&self, gauge: &str, window: Window, now: DateTime<Utc>) -> Option<f64> {
        self.gauges.get(gauge).filter(|g| g.trusted).and_then(|g| g.accumulation(window, now))
    }

    /// The wettest gauge of `district` with complete data in `window`.
    pub fn district_accumulation(&self, district: &str, window: Window, now: DateTime<Utc>) -> Option<f64> {
        self.gauges
            .iter()
            .filter(|(_, g)| g.district.as_deref() == Some(district))
            .filter_map(|(id, _)| self.accumulation(id, window, now))
            .max_by(f64::total_cmp)
    }

    /// Whether `district` has at least `rainfall.raining_mm_per_h` in the last hour.
    pub fn raining(&self, district: &str, now: DateTime<Utc>) -> bool {
        let bar = self.raining_mm_per_h.unwrap_or(RainfallRules::default().raining_mm_per_h);
        self.district_accumulation(district, Window::Hour1, now).is_some_and(|mm| mm >= bar)
    }

    pub fn observe(&mut self, cx: &Context<'_>, obs: &Observation, out: &mut Vec<Assessment>) {
        self.raining_mm_per_h = Some(cx.rules.rainfall.raining_mm_per_h);
        if obs.kind != Kind::Rainfall {
            return;
        }
        let Some(sensor) = cx.sensor(&obs.sensor_id) else { return };
        let rules = &cx.rules_for(&sensor.id).rainfall;
        let Some(mm) = obs.number("rain_mm") else { return };
        if !rules.enabled {
            return;
        }
        let interval_s = obs.number("interval_s").map(|s| s.round() as i64).filter(|s| *s > 0);
        let gauge = self.gauges.entry(sensor.id.clone()).or_default();
        gauge.district = sensor.district.clone();
        gauge.interval_s = support::expected_interval(sensor, rules.default_interval_s);
        gauge.late_s = rules.late_s;
        let key = AlertKey::sensor(RuleId::Rainfall, &sensor.id);

        if let Some(by) = support::distrust(cx, obs) {
            gauge.trusted = false;
            // Would it have raised or escalated? Try it, then take it back.
            let previous = gauge.readings.insert(obs.ts, (mm, interval_s));
            let sums = gauge.sums(obs.ts);
            let (g, window) = gauge.grade(rules, &sums, gauge.tracker.grade);
            match previous {
                Some(p) => gauge.readings.insert(obs.ts, p),
                None => gauge.readings.remove(&obs.ts),
            };
            if g > gauge.tracker.grade {
                let state = gauge_state(sensor, rules, g, obs.ts, &sums, window);
                gauge.suppressed.report(key, obs.ts, state, &by, out);
            }
            return;
        }
        gauge.trusted = true;
        gauge.suppressed.reset();
        gauge.readings.insert(obs.ts, (mm, interval_s));
        let horizon = obs.ts - Duration::seconds(Window::Hour24.seconds());
        gauge.readings = gauge.readings.split_off(&horizon);
        gauge.dirty = true;
        if evaluate(sensor, rules, gauge, obs.ts, true, out) && rules.district_enabled {
            if let Some(d) = sensor.district.clone() {
                district::assess(cx, &self.gauges, &d, obs.ts, out);
            }
        }
    }

    /// The windows slide: classes clear as the rain leaves them.
    pub fn tick(&mut self, cx: &Context<'_>, now: DateTime<Utc>, out: &mut Vec<Assessment>) {
        self.raining_mm_per_h = Some(cx.rules.rainfall.raining_mm_per_h);
        let mut districts = std::collections::BTreeSet::new();
        for (id, gauge) in &mut self.gauges {
            // A tick cannot raise a gauge at grade 0 with nothing pending: sums only shrink.
            if gauge.tracker.grade == 0 && gauge.tracker.pending().is_none() && !gauge.dirty {
                continue;
            }
            let Some(sensor) = cx.sensor(id) else { continue };
            let rules = &cx.rules_for(id).rainfall;
            let horizon = now - Duration::seconds(Window::Hour24.seconds());
            gauge.readings = gauge.readings.split_off(&horizon);
            if evaluate(sensor, rules, gauge, now, false, out) && rules.district_enabled {
                districts.extend(gauge.district.clone());
            }
        }
        for d in districts {
            district::assess(cx, &self.gauges, &d, now, out);
        }
    }
}

/// Feeds the gauge's tracker at `at` and pushes its verdict; `false` when
/// `at` is not later than the last evaluation (late or redelivered input).
fn evaluate(
    sensor: &Sensor,
    rules: &RainfallRules,
    gauge: &mut Gauge,
    at: DateTime<Utc>,
    reading: bool,
    out: &mut Vec<Assessment>,
) -> bool {
    // A reading is evaluated unless it was already seen (or is older than
    // one that was); a tick unless the gauge was evaluated at or after it.
    // Live, the clock ticks while a reading is in flight, so a new reading
    // is often stamped a moment before the latest tick: it is evaluated at
    // once, as of that tick (the windows then hold it), not a tick later.
    let at = if reading {
        if gauge.last_reading.is_some_and(|last| at <= last) {
            return false;
        }
        gauge.last_reading = Some(at);
        gauge.last_eval.map_or(at, |last| last.max(at))
    } else {
        if gauge.last_eval.is_some_and(|last| at <= last) {
            return false;
        }
        at
    };
    gauge.last_eval = Some(at);
    gauge.dirty = false;
    let sums = gauge.sums(at);
    let (raw, window) = gauge.grade(rules, &sums, gauge.tracker.grade);
    let g = gauge.tracker.observe(at, raw, &rules.confirm);
    if raw == g && window.is_some() {
        gauge.window = window;
    }
    let window = gauge.window;
    let key = AlertKey::sensor(RuleId::Rainfall, &sensor.id);
    out.push(support::verdict(key, at, g, || gauge_state(sensor, rules, g, at, &sums, window)));
    true
}

/// The windows as evidence (`rain_1h_mm`...), complete or not.
fn sums_evidence(sensor_id: &str, at: DateTime<Utc>, sums: &Sums) -> Vec<Evidence> {
    sums.acc
        .iter()
        .filter_map(|(w, a)| {
            a.mm.map(|mm| Evidence {
                sensor_id: sensor_id.to_string(),
                ts: at,
                name: format!("rain_{}_mm", w.as_str()),
                value: mm,
            })
        })
        .collect()
}

fn sums_text(sums: &Sums) -> (String, String) {
    let part = |w: Window| {
        let a = sums.get(w);
        let mm = a.mm.map_or_else(|| "-".to_string(), |v| format!("{v:.1} mm"));
        let flag = if sums.complete(w) { "" } else { "*" };
        (format!("{} {mm}{flag}", w.as_str()), format!("{} {mm}{flag}", w.as_str()))
    };
    let parts: Vec<_> = Window::ALL.into_iter().map(part).collect();
    let en = parts.iter().map(|p| p.0.clone()).collect::<Vec<_>>().join(", ");
    let zh = parts.iter().map(|p| p.1.clone()).collect::<Vec<_>>().join("、");
    (format!("Rain {en} (* incomplete data)."), format!("累積雨量 {zh}（* 資料不完整）。"))
}

fn gauge_state(
    sensor: &Sensor,
    rules: &RainfallRules,
    grade: u8,
    at: DateTime<Utc>,
    sums: &Sums,
    window: Option<Window>,
) -> AlertState {
    let i = usize::from(grade.clamp(1, 4) - 1);
    let mut s =
        state_for(RuleId::Rainfall, Some(sensor), grade, table::LEVELS[i], table::SEVERITIES[i], rules.radius_m);
    let (en, zh) = sums_text(sums);
    s.description_en = format!("CWA class {} at this gauge. {en}", table::LEVELS[i]);
    s.description_zh = format!("本站雨量達中央氣象署{}標準。{zh}", table::NAMES_ZH[i]);
    s.instruction_en = table::INSTRUCTIONS[i].0.into();
    s.instruction_zh = table::INSTRUCTIONS[i].1.into();
    if let Some(w) = window {
        s.value = sums.get(w).mm;
        s.details.insert("window".into(), json!(w.as_str()));
    }
    s.unit = Some("mm".into());
    s.evidence = sums_evidence(&sensor.id, at, sums);
    s.details.insert("class".into(), json!(table::LEVELS[i]));
    s.details.insert("torrential_3h".into(), json!(rules.torrential_3h));
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate_and_errors_name_the_field() {
        RainfallRules::default().validate("rainfall").unwrap();
        let bad = RainfallRules { margin_pct: 80.0, ..Default::default() };
        assert!(bad.validate("rainfall").unwrap_err().to_string().contains("rainfall.margin_pct"));
        let bad = RainfallRules { raining_mm_per_h: 0.0, ..Default::default() };
        assert!(bad.validate("rainfall").unwrap_err().to_string().contains("rainfall.raining_mm_per_h"));
    }
}
