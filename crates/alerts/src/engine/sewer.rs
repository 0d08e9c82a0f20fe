//! Sewers: rain entering a sewage-only line, sediment build-up, flow at
//! unusual hours. Water-level sensors of subkind `sewer` (NB-IoT loggers in
//! manholes, level in metres); the alerts are diagnoses for the sewer
//! department, not public hazards.
//!
//! Registry convention: `installation.sewer_type` says what the pipe
//! carries: `sewage` (the sanitary line of a separate system, 污水下水道),
//! `storm` (雨水下水道) or `combined` (合流). Only `sewage` lines should not
//! respond to rain, so only they get the rain-ingress rule; the other two
//! rules apply to every sewer sensor.
//!
//! - `sewer_rain_ingress`: while its district is raining
//!   ([`super::rain::Rain::raining`]), a sewage line whose level rises more
//!   than `rise_m` over `window_min` (then held while the rain lasts and the
//!   level stays above its pre-rise level by more than `rise_m - margin_m`).
//! - `sewer_sediment`: the daily dry-weather minimum creeping up, fitted by
//!   least squares over the last `days` days (at least `min_days` usable):
//!   a slope of `slope_cm_per_day` or more with a steady fit (R² ≥ `min_r2`).
//!   Evaluated once a day, when the line's first reading of a new local day
//!   arrives.
//! - `sewer_odd_hours`: in dry weather, a level `excess_m` above the line's
//!   night baseline (the median of its previous dry nights' mean levels)
//!   between `start_hour` and `end_hour` local time, when the city's own
//!   flow is at its lowest. Judged on night readings only, so an alert
//!   stays open until a later night's readings are back to normal.
//!
//! "Dry" means no rain in the district at the line's readings for
//! `dry_after_rain_h` hours (inflow and infiltration linger after rain). A
//! line without a district has no known weather and gets none of the rules.
//! State per line is compact: the readings of the last `window_min` and one
//! aggregate per day (dry minimum, dry night mean).

use std::collections::{HashMap, VecDeque};

use chrono::{DateTime, Datelike, Duration, Timelike, Utc};
use citygauge_domain::Kind;
use serde_json::json;

use super::debounce::{Confirm, Ladder, Tracker};
use super::rain::Rain;
use super::{state_for, Assessment, Context, Verdict};
use crate::model::{AlertKey, AlertState, Evidence, Observation, RuleId, Sensor, Severity};

mod settings;

pub use settings::{IngressRules, OddHoursRules, SedimentRules, SewerRules};

/// One local day of a line, as the dry-weather rules need it.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Day {
    /// Days since 0001-01-01 (local calendar).
    day: i32,
    dry_min: f64,
    dry_n: u32,
    night_sum: f64,
    night_n: u32,
}

/// One line's state.
#[derive(Debug, Default)]
struct Line {
    /// (unix s, level m) over the ingress window.
    recent: VecDeque<(i64, f64)>,
    /// Latest time its district was raining at one of its readings.
    last_wet: Option<DateTime<Utc>>,
    days: VecDeque<Day>,
    ingress: Tracker,
    /// The pre-rise level an open ingress alert is measured from.
    ingress_ref: Option<f64>,
    sediment: Tracker,
    odd: Tracker,
    /// The latest reading used: a redelivered or late one would confirm
    /// twice and count twice in the day aggregates.
    last_ts: Option<DateTime<Utc>>,
}

/// This family's state across readings.
#[derive(Debug, Default)]
pub struct Sewer {
    lines: HashMap<String, Line>,
}

impl Sewer {
    pub fn observe(&mut self, cx: &Context<'_>, obs: &Observation, rain: &Rain, out: &mut Vec<Assessment>) {
        if obs.kind != Kind::WaterLevel {
            return;
        }
        let Some(sensor) = cx.sensor(&obs.sensor_id) else { return };
        if sensor.subkind.as_deref() != Some("sewer") {
            return;
        }
        let rules = &cx.rules_for(&sensor.id).sewer;
        let line = self.lines.entry(sensor.id.clone()).or_default();
        if !rules.enabled {
            for (rule, open) in [
                (RuleId::SewerRainIngress, line.ingress.grade > 0),
                (RuleId::SewerSediment, line.sediment.grade > 0),
                (RuleId::SewerOddHours, line.odd.grade > 0),
            ] {
                if open {
                    out.push(Assessment {
                        key: AlertKey::sensor(rule, &sensor.id),
                        at: obs.ts,
                        verdict: Verdict::Clear,
                    });
                }
            }
            self.lines.remove(&sensor.id);
            return;
        }
        // A diagnosis resting on a flagged reading or a distrusted sensor
        // would send crews after a broken logger: such readings are skipped.
        let (Some(level), Some(district)) = (obs.number("level_m"), sensor.district.as_deref()) else { return };
        if !obs.is_good() || cx.suspect(&sensor.id).is_some() {
            return;
        }
        let at = obs.ts;
        if line.last_ts.is_some_and(|last| at <= last) {
            return;
        }
        line.last_ts = Some(at);
        let raining = rain.raining(district, at);
        if raining {
            line.last_wet = Some(at);
        }
        let dry = line.last_wet.is_none_or(|t| at - t >= Duration::hours(rules.dry_after_rain_h));
        let local = at.with_timezone(&cx.rules.tz());
        let day = local.date_naive().num_days_from_ce();
        let night = rules.odd_hours.contains(local.hour());

        // A new local day closes the previous ones: the daily sediment fit.
        if line.days.back().is_some_and(|d| d.day < day) && rules.sediment.enabled {
            sediment(line, sensor, rules, day, at, out);
        }
        if rules.ingress.enabled && sensor.installation.get("sewer_type").and_then(|v| v.as_str()) == Some("sewage") {
            ingress(line, sensor, rules, level, raining, at, out);
        }
        if rules.odd_hours.enabled && night && dry {
            odd_hours(line, sensor, rules, level, day, at, out);
        }
        record(line, rules, day, level, dry, night);
    }

    pub fn tick(&mut self, cx: &Context<'_>, now: DateTime<Utc>, rain: &Rain, out: &mut Vec<Assessment>) {
        // Every rule is judged on the line's readings; a line that stops
        // reporting is the health rules' (sensor_silent).
        let _ = (cx, now, rain, out);
    }
}

/// Adds a reading to the day aggregates and the recent window.
fn record(line: &mut Line, rules: &SewerRules, day: i32, level: f64, dry: bool, night: bool) {
    if line.days.back().is_none_or(|d| d.day < day) {
        line.days.push_back(Day { day, dry_min: f64::INFINITY, dry_n: 0, night_sum: 0.0, night_n: 0 });
    }
    let keep = rules.sediment.days.max(rules.odd_hours.baseline_days) as i32 + 1;
    while line.days.front().is_some_and(|d| d.day < day - keep) {
        line.days.pop_front();
    }
    // A late reading of an earlier day updates that day, if still kept.
    if let Some(d) = line.days.iter_mut().rev().find(|d| d.day == day) {
        if dry {
            d.dry_min = d.dry_min.min(level);
            d.dry_n += 1;
            if night {
                d.night_sum += level;
                d.night_n += 1;
            }
        }
    }
}

fn ingress(
    line: &mut Line,
    sensor: &Sensor,
    rules: &SewerRules,
    level: f64,
    raining: bool,
    at: DateTime<Utc>,
    out: &mut Vec<Assessment>,
) {
    let r = &rules.ingress;
    let start = (at - Duration::minutes(r.window_min)).timestamp();
    while line.recent.front().is_some_and(|(t, _)| *t <= start) {
        line.recent.pop_front();
    }
    let window_min = line.recent.iter().map(|(_, l)| *l).fold(level, f64::min);
    line.recent.push_back((at.timestamp(), level));
    let reference = line.ingress_ref.unwrap_or(window_min);
    let rise = level - reference;
    let before = line.ingress.grade;
    // Outside rain a rise is the line's own business (the morning peak).
    let seen = if raining { Ladder { thresholds: vec![r.rise_m], margin: r.margin_m }.grade(rise, before) } else { 0 };
    let grade = line.ingress.observe(at, seen, &r.confirm);
    let key = AlertKey::sensor(RuleId::SewerRainIngress, &sensor.id);
    if grade == 0 {
        line.ingress_ref = None;
        if before > 0 {
            out.push(Assessment { key, at, verdict: Verdict::Clear });
        }
        return;
    }
    let reference = *line.ingress_ref.get_or_insert(reference);
    let mut state = base(RuleId::SewerRainIngress, sensor, rules, "ingress");
    state.description_en = format!(
        "The sewage line rose {:.2} m during rain (from {reference:.2} m): rainwater is entering the sewage network.",
        level - reference
    );
    state.description_zh = format!("降雨期間污水管水位上升 {:.2} 公尺，疑有雨水流入污水下水道。", level - reference);
    state.value = Some(round(level - reference, 3));
    state.unit = Some("m".into());
    state.details.insert("sewer_type".into(), json!("sewage"));
    state.details.insert("reference_level_m".into(), json!(round(reference, 3)));
    state.details.insert("rise_threshold_m".into(), json!(r.rise_m));
    state.details.insert("window_min".into(), json!(r.window_min));
    state.evidence.push(Evidence { sensor_id: sensor.id.clone(), ts: at, name: "level_m".into(), value: level });
    state.evidence.push(Evidence {
        sensor_id: sensor.id.clone(),
        ts: at,
        name: "rise_m".into(),
        value: round(level - reference, 3),
    });
    out.push(Assessment { key, at, verdict: Verdict::Active(state) });
}

/// A least-squares line through the daily dry minima.
#[derive(Debug, Clone, PartialEq)]
struct Fit {
    /// Metres per day.
    slope: f64,
    r2: f64,
    /// (day, dry minimum m) of the days fitted.
    points: Vec<(i32, f64)>,
}

/// The least-squares fit of the usable days before `today`.
fn fit(days: &VecDeque<Day>, rules: &SedimentRules, today: i32) -> Option<Fit> {
    let points: Vec<(i32, f64)> = days
        .iter()
        .filter(|d| d.day < today && d.day >= today - rules.days as i32)
        .filter(|d| d.dry_n >= rules.min_day_readings)
        .map(|d| (d.day, d.dry_min))
        .collect();
    if points.len() < rules.min_days as usize {
        return None;
    }
    let n = points.len() as f64;
    let x0 = points[0].0;
    let (sx, sy) = points.iter().fold((0.0, 0.0), |(sx, sy), (x, y)| (sx + f64::from(x - x0), sy + y));
    let (mx, my) = (sx / n, sy / n);
    let (mut sxx, mut sxy, mut syy) = (0.0, 0.0, 0.0);
    for (x, y) in &points {
        let dx = f64::from(x - x0) - mx;
        let dy = y - my;
        sxx += dx * dx;
        sxy += dx * dy;
        syy += dy * dy;
    }
    if sxx <= 0.0 {
        return None;
    }
    let slope = sxy / sxx;
    // A perfectly flat series explains nothing and needs nothing explained.
    let r2 = if syy <= 1e-12 { 0.0 } else { (sxy * sxy) / (sxx * syy) };
    Some(Fit { slope, r2, points })
}

fn sediment(
    line: &mut Line,
    sensor: &Sensor,
    rules: &SewerRules,
    today: i32,
    at: DateTime<Utc>,
    out: &mut Vec<Assessment>,
) {
    let s = &rules.sediment;
    // Too few dry days (a wet week, a new logger): no evidence either way.
    let Some(Fit { slope: slope_m, r2, points }) = fit(&line.days, s, today) else { return };
    let slope = slope_m * 100.0;
    let before = line.sediment.grade;
    let steady = if r2 >= s.min_r2 { slope } else { f64::NEG_INFINITY };
    let seen = Ladder { thresholds: vec![s.slope_cm_per_day], margin: s.margin_cm_per_day }.grade(steady, before);
    let confirm = Confirm { raise_readings: 1, clear_readings: s.clear_days, clear_dwell_s: 0 };
    let grade = line.sediment.observe(at, seen, &confirm);
    let key = AlertKey::sensor(RuleId::SewerSediment, &sensor.id);
    if grade == 0 {
        if before > 0 {
            out.push(Assessment { key, at, verdict: Verdict::Clear });
        }
        return;
    }
    let (first, last) = (points[0].1, points[points.len() - 1].1);
    let mut state = base(RuleId::SewerSediment, sensor, rules, "sediment");
    state.description_en = format!(
        "The dry-weather minimum level has risen {slope:.1} cm/day over {} days ({first:.2} m to {last:.2} m): \
         sediment is building up, dredging is due.",
        points.len()
    );
    state.description_zh =
        format!("旱天最低水位 {} 天來每日上升 {slope:.1} 公分，疑管線淤積，請安排清淤。", points.len());
    state.value = Some(round(slope, 1));
    state.unit = Some("cm/day".into());
    state.details.insert("slope_cm_per_day".into(), json!(round(slope, 1)));
    state.details.insert("r2".into(), json!(round(r2, 2)));
    state.details.insert("days".into(), json!(points.len()));
    state.details.insert("first_dry_min_m".into(), json!(round(first, 3)));
    state.details.insert("last_dry_min_m".into(), json!(round(last, 3)));
    for (day, value) in &points {
        let ts = chrono::NaiveDate::from_num_days_from_ce_opt(*day)
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .map_or(at, |n| n.and_utc());
        state.evidence.push(Evidence {
            sensor_id: sensor.id.clone(),
            ts,
            name: "dry_min_level_m".into(),
            value: *value,
        });
    }
    out.push(Assessment { key, at, verdict: Verdict::Active(state) });
}

/// The median of the previous nights' dry mean levels, and how many nights.
fn night_baseline(days: &VecDeque<Day>, rules: &OddHoursRules, today: i32) -> Option<(f64, usize)> {
    let mut nights: Vec<f64> = days
        .iter()
        .filter(|d| d.day < today && d.day >= today - rules.baseline_days as i32 && d.night_n > 0)
        .map(|d| d.night_sum / f64::from(d.night_n))
        .collect();
    if nights.len() < rules.min_baseline_days as usize {
        return None;
    }
    nights.sort_by(f64::total_cmp);
    let n = nights.len();
    Some((if n % 2 == 1 { nights[n / 2] } else { (nights[n / 2 - 1] + nights[n / 2]) / 2.0 }, n))
}

fn odd_hours(
    line: &mut Line,
    sensor: &Sensor,
    rules: &SewerRules,
    level: f64,
    today: i32,
    at: DateTime<Utc>,
    out: &mut Vec<Assessment>,
) {
    let o = &rules.odd_hours;
    let Some((baseline, nights)) = night_baseline(&line.days, o, today) else { return };
    let excess = level - baseline;
    let before = line.odd.grade;
    let seen = Ladder { thresholds: vec![o.excess_m], margin: o.margin_m }.grade(excess, before);
    let grade = line.odd.observe(at, seen, &o.confirm);
    let key = AlertKey::sensor(RuleId::SewerOddHours, &sensor.id);
    if grade == 0 {
        if before > 0 {
            out.push(Assessment { key, at, verdict: Verdict::Clear });
        }
        return;
    }
    let mut state = base(RuleId::SewerOddHours, sensor, rules, "discharge");
    state.description_en = format!(
        "In dry weather at night the level is {excess:.2} m above the line's night baseline ({baseline:.2} m): \
         possible illegal discharge."
    );
    state.description_zh = format!("旱天深夜水位高於夜間基準 {excess:.2} 公尺，疑有非法排放。");
    state.value = Some(round(excess, 3));
    state.unit = Some("m".into());
    state.details.insert("baseline_m".into(), json!(round(baseline, 3)));
    state.details.insert("baseline_nights".into(), json!(nights));
    state.details.insert("hours".into(), json!(format!("{:02}:00-{:02}:00", o.start_hour, o.end_hour)));
    state.evidence.push(Evidence { sensor_id: sensor.id.clone(), ts: at, name: "level_m".into(), value: level });
    out.push(Assessment { key, at, verdict: Verdict::Active(state) });
}

fn base(rule: RuleId, sensor: &Sensor, rules: &SewerRules, level: &str) -> AlertState {
    let mut state = state_for(rule, Some(sensor), 1, level, Severity::Minor, rules.radius_m);
    if let Some(kind) = sensor.installation.get("sewer_type") {
        state.details.insert("sewer_type".into(), kind.clone());
    }
    state
}

fn round(v: f64, decimals: i32) -> f64 {
    let scale = 10f64.powi(decimals);
    (v * scale).round() / scale
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(day: i32, dry_min: f64, night: Option<f64>) -> Day {
        let (night_sum, night_n) = night.map_or((0.0, 0), |m| (m * 4.0, 4));
        Day { day, dry_min, dry_n: 48, night_sum, night_n }
    }

    #[test]
    fn the_fit_is_least_squares_over_usable_days() {
        let rules = SedimentRules::default();
        // 1.5 cm/day exactly, plus one day with too few dry readings (ignored).
        let mut days: VecDeque<Day> = (0..7).map(|d| day(100 + d, 0.40 + 0.015 * f64::from(d), None)).collect();
        days[3].dry_n = 2;
        days[3].dry_min = 9.0;
        let fit = fit(&days, &rules, 107).unwrap();
        assert!((fit.slope - 0.015).abs() < 1e-12, "{fit:?}");
        assert!((fit.r2 - 1.0).abs() < 1e-9);
        assert_eq!(fit.points.len(), 6);
        // Today is not fitted; too few days give no fit.
        assert_eq!(super::fit(&days, &rules, 104).map(|f| f.points.len()), None);
        let flat: VecDeque<Day> = (0..7).map(|d| day(d, 0.4, None)).collect();
        let fit = super::fit(&flat, &rules, 7).unwrap();
        assert_eq!((fit.slope, fit.r2), (0.0, 0.0));
    }

    #[test]
    fn the_night_baseline_is_a_median_of_earlier_nights() {
        let rules = OddHoursRules::default();
        let days: VecDeque<Day> =
            [day(1, 0.3, Some(0.50)), day(2, 0.3, Some(0.90)), day(3, 0.3, Some(0.52)), day(4, 0.3, Some(2.0))].into();
        // Night 4 is today's: not part of its own baseline; one bad night does not move it.
        assert_eq!(night_baseline(&days, &rules, 4), Some((0.52, 3)));
        assert_eq!(night_baseline(&days, &rules, 3), None, "two nights are too few");
    }

    #[test]
    fn quiet_hours_may_wrap_midnight() {
        let night = OddHoursRules { start_hour: 23, end_hour: 4, ..OddHoursRules::default() };
        assert!(night.contains(23) && night.contains(0) && night.contains(3));
        assert!(!night.contains(4) && !night.contains(12) && !night.contains(22));
        let default = OddHoursRules::default();
        assert!(default.contains(1) && default.contains(4) && !default.contains(5) && !default.contains(0));
    }
}
