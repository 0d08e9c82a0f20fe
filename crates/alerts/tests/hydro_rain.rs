//! Rain accumulations (the same whatever the reporting interval; silence is
//! not zero rain), the CWA classes per gauge and per district.

mod hydro_support;

use std::collections::HashMap;

use chrono::{DateTime, Duration, Utc};
use citygauge_alerts::engine::health::Health;
use citygauge_alerts::engine::rain::Rain;
use citygauge_alerts::engine::{Context, Input};
use citygauge_alerts::{Change, RuleId, RuleSet, Sensor};
use citygauge_domain::rain_window::Window;
use hydro_support::*;
use proptest::prelude::*;

/// Feeds readings straight into the rain family (no engine), to read its accumulations.
fn rain_family(sensors: &[Sensor], inputs: &[Input]) -> Rain {
    let rules = RuleSet::default();
    let effective = HashMap::new();
    let by_id: HashMap<String, Sensor> = sensors.iter().map(|s| (s.id.clone(), s.clone())).collect();
    let health = Health::default();
    let cx = Context { rules: &rules, effective: &effective, sensors: &by_id, health: &health };
    let mut rain = Rain::default();
    let mut out = Vec::new();
    for input in inputs {
        if let Input::Reading(o) = input {
            rain.observe(&cx, o, &mut out);
        }
    }
    rain
}

/// One reading at `t0` covering the 24 h before it, so every window is complete.
fn history(id: &str) -> Input {
    rain(id, t0(), 0.0, 86_400)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// The same storm, in 0.5 mm tips per minute over 3 h, reported every
    /// minute, every 10 minutes, hourly and tip by tip: equal sums on every
    /// window the gauge covers, and only silence where it does not.
    #[test]
    fn sums_do_not_depend_on_the_reporting_interval(tips in proptest::collection::vec(0u32..6, 180), redeliver in any::<bool>()) {
        let per_minute: Vec<f64> = tips.iter().map(|t| f64::from(*t) * 0.5).collect();
        let sensors = vec![rain_gauge("m1", "A", 60), rain_gauge("m10", "A", 600), rain_gauge("h1", "A", 3_600), rain_gauge("tip", "A", 600)];
        let mut inputs: Vec<Input> = sensors.iter().map(|s| history(&s.id)).collect();
        for (step, id) in [(1usize, "m1"), (10, "m10"), (60, "h1")] {
            for (i, chunk) in per_minute.chunks(step).enumerate() {
                let ts = at_min(((i + 1) * step) as i64);
                inputs.push(rain(id, ts, chunk.iter().sum(), step as i64 * 60));
                if redeliver {
                    inputs.push(rain(id, ts, chunk.iter().sum(), step as i64 * 60));
                }
            }
        }
        // Tipping bucket: a report in each minute with tips, covering the time since the previous report.
        let mut last = 0i64;
        for (m, mm) in per_minute.iter().enumerate().filter(|(_, mm)| **mm > 0.0) {
            let minute = m as i64 + 1;
            inputs.push(rain("tip", at_min(minute), *mm, (minute - last) * 60));
            last = minute;
        }
        inputs.sort_by_key(Input::at);
        let family = rain_family(&sensors, &inputs);
        for end_min in [60i64, 120, 180] {
            let end = at_min(end_min);
            for window in [Window::Min10, Window::Hour1, Window::Hour3, Window::Hour24] {
                let truth = family.accumulation("m1", window, end);
                prop_assert!(truth.is_some(), "the 1-minute gauge covers every window");
                for id in ["m10", "h1", "tip"] {
                    if let Some(mm) = family.accumulation(id, window, end) {
                        prop_assert!((mm - truth.unwrap()).abs() < 1e-9, "{} {:?} at {}: {} vs {:?}", id, window, end_min, mm, truth);
                    }
                }
                prop_assert!(family.accumulation("m10", window, end).is_some());
                if window != Window::Min10 {
                    prop_assert!(family.accumulation("h1", window, end).is_some());
                }
            }
        }
    }
}

fn steady(id: &str, from_min: i64, to_min: i64, mm_per_10min: f64) -> Vec<Input> {
    (from_min / 10..to_min / 10).map(|i| rain(id, at_min(10 * (i + 1)), mm_per_10min, 600)).collect()
}

#[test]
fn heavy_rain_is_raised_and_a_silent_gauge_is_not_read_as_zero() {
    let mut e = engine(vec![rain_gauge("g1", "A", 600)]);
    let mut inputs = vec![history("g1")];
    // 45 mm in the first hour: heavy rain (40 mm / 1 h).
    inputs.extend(steady("g1", 0, 60, 7.5));
    let d = run(&mut e, inputs);
    let raised = of(&d, RuleId::Rainfall);
    assert_eq!((raised[0].change, raised[0].state.level.as_str()), (Change::Raised, "heavy_rain"), "{d:#?}");
    assert_eq!(raised[0].state.details["window"], "1h");
    assert_eq!(raised[0].at, at_min(60));
    // Then silence for 3 hours: the clock ticks, the window slides, nothing is known: no clear.
    let d = run(&mut e, vec![Input::Tick(at_min(240))]);
    assert!(of(&d, RuleId::Rainfall).is_empty(), "{d:#?}");
    assert!(e.active().keys().any(|k| k.rule == RuleId::Rainfall));
    // The gauge reports again: its hourly total for the silent hours was zero; it clears after the dwell.
    let mut back = vec![rain("g1", at_min(250), 0.0, 11_400)];
    back.extend(steady("g1", 250, 320, 0.0));
    let d = run(&mut e, back);
    let cleared = of(&d, RuleId::Rainfall);
    assert_eq!(cleared.last().map(|d| d.change), Some(Change::Resolved), "{d:#?}");
}

#[test]
fn redelivered_readings_do_not_double_count() {
    let sensors = vec![rain_gauge("g1", "A", 600)];
    let mut once = vec![history("g1")];
    once.extend(steady("g1", 0, 60, 7.0));
    let mut twice = once.clone();
    twice.extend(steady("g1", 0, 60, 7.0));
    twice.sort_by_key(Input::at);
    let end = at_min(60);
    let a = rain_family(&sensors, &once).accumulation("g1", Window::Hour1, end);
    let b = rain_family(&sensors, &twice).accumulation("g1", Window::Hour1, end);
    assert_eq!((a, b), (Some(42.0), Some(42.0)));
    let mut e = engine(sensors);
    let d = run(&mut e, twice);
    assert_eq!(changes(&d, RuleId::Rainfall), vec![Change::Raised]);
}

#[test]
fn two_hundred_mm_in_three_hours_is_torrential_unless_the_city_uses_the_2015_table() {
    let mut inputs = vec![history("g1")];
    inputs.extend(steady("g1", 0, 180, 210.0 / 18.0));
    let mut e = engine(vec![rain_gauge("g1", "A", 600)]);
    let d = run(&mut e, inputs.clone());
    let levels: Vec<_> = timeline(&d, RuleId::Rainfall).into_iter().map(|(_, l)| l).collect();
    assert_eq!(levels, ["heavy_rain", "extremely_heavy_rain", "torrential_rain"]);
    let rules = RuleSet::from_toml("[rainfall]\ntorrential_3h = false\n").unwrap();
    let mut e = citygauge_alerts::Engine::new(rules, vec![rain_gauge("g1", "A", 600)]);
    let d = run(&mut e, inputs);
    let levels: Vec<_> = timeline(&d, RuleId::Rainfall).into_iter().map(|(_, l)| l).collect();
    assert_eq!(levels, ["heavy_rain", "extremely_heavy_rain"]);
}

#[test]
fn a_district_stands_at_its_worst_gauge_and_counts_gauges_per_class() {
    let sensors = vec![
        rain_gauge("a1", "A", 600),
        rain_gauge("a2", "A", 600),
        rain_gauge("a3", "A", 600),
        rain_gauge("b1", "B", 600),
    ];
    let mut e = engine(sensors.clone());
    let mut inputs: Vec<Input> = sensors.iter().map(|s| history(&s.id)).collect();
    inputs.extend(steady("a1", 0, 60, 7.0)); // 42 mm / 1 h: heavy
    inputs.extend(steady("a1", 60, 180, 0.0)); // then dry
    inputs.extend(steady("a2", 0, 180, 6.0)); // 108 mm / 3 h: extremely heavy
    inputs.extend(steady("a3", 0, 180, 0.5));
    inputs.extend(steady("b1", 0, 180, 0.5));
    let d = run(&mut e, inputs);
    let district = of(&d, RuleId::DistrictRainfall);
    assert!(district.iter().all(|d| d.key.subject == "district:A"), "{district:#?}");
    assert_eq!((district[0].change, district[0].state.level.as_str()), (Change::Raised, "heavy_rain"));
    let state = &e.active().iter().find(|(k, _)| k.rule == RuleId::DistrictRainfall).unwrap().1;
    assert_eq!(state.level, "extremely_heavy_rain");
    assert_eq!(state.details["worst_gauge"], "a2");
    assert_eq!(state.district.as_deref(), Some("A"));
    assert!(state.area.is_some());
    // a1's heavy hour ended two hours ago: only a2 is at or above each class now.
    assert_eq!(state.details["counts"]["heavy_rain"], 1, "{:?}", state.details);
    assert_eq!(state.details["counts"]["extremely_heavy_rain"], 1);
    assert_eq!(state.details["gauges"], 3);
}

#[test]
fn raining_and_district_accumulation_for_the_sewer_rules() {
    let sensors = vec![rain_gauge("a1", "A", 600), rain_gauge("a2", "A", 600)];
    let mut inputs: Vec<Input> = sensors.iter().map(|s| history(&s.id)).collect();
    inputs.extend(steady("a1", 0, 60, 1.0));
    inputs.extend(steady("a2", 0, 30, 0.0)); // silent for the last half hour: incomplete
    let family = rain_family(&sensors, &inputs);
    let end: DateTime<Utc> = at_min(60);
    assert_eq!(family.district_accumulation("A", Window::Hour1, end), Some(6.0));
    assert!(family.raining("A", end));
    assert!(!family.raining("B", end));
    assert_eq!(family.accumulation("a2", Window::Hour1, end), None, "silence is not zero rain");
    assert!(!family.raining("A", end + Duration::hours(2)), "nobody reported: not known to be raining");
}
