//! Sewers: rain entering a sewage-only line, sediment build-up over days,
//! flow at unusual hours; each raises and clears, and ordinary sewer life
//! (the diurnal swing, a combined line in rain, a wet night) raises nothing.

mod city_support;

use chrono::{DateTime, Duration, Timelike, Utc};
use city_support::*;
use citygauge_alerts::model::{Change, Decision, Observation, RuleId};
use citygauge_domain::Kind;
use serde_json::json;

const SEWER_RULES: [RuleId; 3] = [RuleId::SewerRainIngress, RuleId::SewerSediment, RuleId::SewerOddHours];

/// A sewage line's ordinary day: lowest around 04:00, 12 cm higher in the
/// afternoon, with millimetre noise.
fn diurnal(i: i64, t: DateTime<Utc>, base: f64) -> f64 {
    let local = t.with_timezone(&taiwan());
    let h = f64::from(local.hour()) + f64::from(local.minute()) / 60.0;
    base + 0.06 * (1.0 - (std::f64::consts::TAU * (h - 4.0) / 24.0).cos()) + 0.003 * wiggle(i)
}

fn level(id: &str, ts: DateTime<Utc>, m: f64) -> Observation {
    obs(id, Kind::WaterLevel, ts, json!({"level_m": m}))
}

fn rain(id: &str, ts: DateTime<Utc>, mm: f64) -> Observation {
    obs(id, Kind::Rainfall, ts, json!({"rain_mm": mm, "interval_s": 600}))
}

fn sewer_decisions(decisions: &[Decision]) -> Vec<(RuleId, &str, Change, DateTime<Utc>)> {
    decisions
        .iter()
        .filter(|d| SEWER_RULES.contains(&d.key.rule) && d.change.notifies())
        .map(|d| (d.key.rule, d.key.subject.as_str(), d.change, d.at))
        .collect()
}

#[test]
fn rain_entering_a_sewage_line_is_raised_and_clears() {
    let mut engine = engine(vec![
        sewer("sw-sewage", "Zhongli", "sewage"),
        sewer("sw-combined", "Zhongli", "combined"),
        sewer("sw-dry", "Pingzhen", "sewage"),
        rain_gauge("rg-1", "Zhongli"),
    ]);
    let t0 = local(2026, 10, 1, 0, 0);
    let (rain_from, rain_to) = (local(2026, 10, 1, 14, 0), local(2026, 10, 1, 17, 0));
    let mut readings = Vec::new();
    for (i, t) in every(t0, t0 + Duration::hours(24), Duration::minutes(10)) {
        readings.push(rain("rg-1", t, if t > rain_from && t <= rain_to { 2.0 + 0.1 * wiggle(i) } else { 0.0 }));
        // Storm water reaches the pipes 20 min into the rain, 35 cm in half an
        // hour, and drains an hour after it stops.
        let extra = |start: DateTime<Utc>, end: DateTime<Utc>| {
            let up = ((t - start).num_minutes() as f64 / 30.0).clamp(0.0, 1.0);
            let down = 1.0 - ((t - end).num_minutes() as f64 / 60.0).clamp(0.0, 1.0);
            0.35 * up.min(down)
        };
        let storm = extra(rain_from + Duration::minutes(20), rain_to + Duration::minutes(20));
        readings.push(level("sw-sewage", t, diurnal(i, t, 0.40) + storm));
        readings.push(level("sw-combined", t, diurnal(i + 7, t, 0.60) + storm));
        // The same rise in a district where it is not raining (a pump upstream).
        readings.push(level("sw-dry", t, diurnal(i + 3, t, 0.40) + storm));
    }
    let decisions = run(&mut engine, readings);
    let sewer = sewer_decisions(&decisions);
    let rules: Vec<_> = sewer.iter().map(|(r, s, c, _)| (*r, *s, *c)).collect();
    assert_eq!(
        rules,
        [
            (RuleId::SewerRainIngress, "sw-sewage", Change::Raised),
            (RuleId::SewerRainIngress, "sw-sewage", Change::Resolved)
        ],
        "{sewer:#?}"
    );
    let (raised_at, resolved_at) = (sewer[0].3, sewer[1].3);
    assert!(raised_at > rain_from + Duration::minutes(30) && raised_at < rain_from + Duration::hours(1), "{raised_at}");
    assert!(resolved_at > rain_to + Duration::hours(1), "held while it rains and the rain's hour lasts: {resolved_at}");
    let raised = decisions.iter().find(|d| d.key.rule == RuleId::SewerRainIngress).unwrap();
    assert_eq!(raised.state.details["sewer_type"], "sewage");
    assert!(raised.state.value.unwrap() > 0.15);
    assert_eq!(raised.state.unit.as_deref(), Some("m"));
}

#[test]
fn sediment_build_up_is_raised_and_clears_after_dredging() {
    let mut engine = engine(vec![sewer("sw-1", "Bade", "sewage"), sewer("sw-flat", "Bade", "storm")]);
    let t0 = local(2026, 10, 1, 0, 0);
    let mut readings = Vec::new();
    for (i, t) in every(t0, t0 + Duration::days(18), Duration::minutes(30)) {
        let day = (t - t0).num_days();
        // Flat for five days, then 2 cm a day; dredged on day 11.
        let silt = match day {
            0..5 => 0.0,
            5..11 => 0.02 * (day - 4) as f64,
            _ => 0.0,
        };
        readings.push(level("sw-1", t, diurnal(i, t, 0.40) + silt));
        readings.push(level("sw-flat", t, diurnal(i + 11, t, 0.30)));
    }
    let decisions = run(&mut engine, readings);
    let sewer = sewer_decisions(&decisions);
    let changes: Vec<_> = sewer.iter().map(|(r, s, c, _)| (*r, *s, *c)).collect();
    assert_eq!(
        changes,
        [(RuleId::SewerSediment, "sw-1", Change::Raised), (RuleId::SewerSediment, "sw-1", Change::Resolved)],
        "{sewer:#?}"
    );
    let (raised_at, resolved_at) = (sewer[0].3, sewer[1].3);
    assert!(raised_at >= t0 + Duration::days(8) && raised_at < t0 + Duration::days(11), "{raised_at}");
    assert!(resolved_at > t0 + Duration::days(12), "{resolved_at}");
    let raised = decisions.iter().find(|d| d.key.rule == RuleId::SewerSediment).unwrap();
    let slope = raised.state.details["slope_cm_per_day"].as_f64().unwrap();
    assert!((1.0..=2.5).contains(&slope), "{slope}");
    assert!(raised.state.details["r2"].as_f64().unwrap() >= 0.6);
    assert!(raised.state.evidence.len() >= 5, "the daily minima behind it");
    assert_eq!(raised.state.unit.as_deref(), Some("cm/day"));
}

#[test]
fn a_discharge_at_night_is_raised_but_not_by_day_nor_in_rain() {
    let mut engine = engine(vec![sewer("sw-4", "Luzhu", "storm"), rain_gauge("rg-2", "Luzhu")]);
    let t0 = local(2026, 10, 1, 0, 0);
    let night = |day: i64, h: u32, m: u32| {
        t0 + Duration::days(day) + Duration::hours(i64::from(h)) + Duration::minutes(i64::from(m))
    };
    // Night 4: rain 01:00-03:00 and the line fills (not a discharge).
    let wet = (night(4, 1, 0), night(4, 3, 0));
    // Day 5 14:00-15:00: a daytime surge (not odd hours).
    let day_surge = (night(5, 14, 0), night(5, 15, 0));
    // Night 6: a tanker empties into the line 01:30-03:00.
    let dumped = (night(6, 1, 30), night(6, 3, 0));
    let mut readings = Vec::new();
    for (i, t) in every(t0, t0 + Duration::days(8), Duration::minutes(10)) {
        let inside = |(a, b): (DateTime<Utc>, DateTime<Utc>)| t >= a && t < b;
        readings.push(rain("rg-2", t, if inside(wet) { 3.0 + 0.1 * wiggle(i) } else { 0.0 }));
        let surge = if inside(wet) || inside(day_surge) || inside(dumped) { 0.25 } else { 0.0 };
        readings.push(level("sw-4", t, diurnal(i, t, 0.50) + surge));
    }
    let decisions = run(&mut engine, readings);
    let sewer = sewer_decisions(&decisions);
    let changes: Vec<_> = sewer.iter().map(|(r, _, c, _)| (*r, *c)).collect();
    assert_eq!(
        changes,
        [(RuleId::SewerOddHours, Change::Raised), (RuleId::SewerOddHours, Change::Resolved)],
        "{sewer:#?}"
    );
    let (raised_at, resolved_at) = (sewer[0].3, sewer[1].3);
    assert_eq!(raised_at, dumped.0 + Duration::minutes(20), "third reading of the discharge");
    assert_eq!(resolved_at, night(6, 3, 20), "third normal reading of the same night");
    let raised = decisions.iter().find(|d| d.key.rule == RuleId::SewerOddHours).unwrap();
    let baseline = raised.state.details["baseline_m"].as_f64().unwrap();
    assert!((baseline - 0.51).abs() < 0.02, "the line's quiet-night level: {baseline}");
    assert_eq!(raised.state.details["hours"], "01:00-05:00");
}

#[test]
fn flagged_readings_are_not_evidence() {
    let mut engine = engine(vec![sewer("sw-4", "Luzhu", "storm")]);
    let t0 = local(2026, 10, 1, 0, 0);
    let mut readings = Vec::new();
    for (i, t) in every(t0, t0 + Duration::days(6), Duration::minutes(10)) {
        let night5 = t > t0 + Duration::days(5) + Duration::hours(1) && t < t0 + Duration::days(5) + Duration::hours(3);
        let o = level("sw-4", t, diurnal(i, t, 0.50) + if night5 { 2.0 } else { 0.0 });
        readings.push(if night5 { flagged(o, "spike:level_m") } else { o });
    }
    let decisions = run(&mut engine, readings);
    assert!(sewer_decisions(&decisions).is_empty(), "{decisions:#?}");
}
