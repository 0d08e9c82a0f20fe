//! River levels against the WRA warning levels (hysteresis, confirmation,
//! no flapping) and rate of rise with the lead time to the next level.

mod hydro_support;

use citygauge_alerts::{Change, RuleId, Severity};
use hydro_support::*;
use proptest::prelude::*;

#[test]
fn a_rising_and_falling_river_escalates_and_clears_through_each_level() {
    let mut e = engine(vec![river("r1")]);
    let stages = [
        1.5, 1.9, 2.05, 2.1, 2.4, 2.65, 2.7, 3.0, 3.15, 3.2, 3.2, 3.0, 2.9, 2.8, 2.7, 2.5, 2.4, 2.3, 2.2, 2.0, 1.8,
        1.7, 1.6, 1.5, 1.4,
    ];
    let inputs = stages.iter().enumerate().map(|(i, m)| level("r1", at_min(10 * i as i64), *m)).collect();
    let d = run(&mut e, inputs);
    let levels = timeline(&d, RuleId::WaterLevel);
    assert_eq!(
        levels,
        vec![
            (Change::Raised, "yellow".into()),
            (Change::Escalated, "orange".into()),
            (Change::Escalated, "red".into()),
            (Change::Deescalated, "orange".into()),
            (Change::Deescalated, "yellow".into()),
            (Change::Resolved, "yellow".into()),
        ],
        "{d:#?}"
    );
    let raised = of(&d, RuleId::WaterLevel)[0];
    // Two readings confirm: 2.05 m at 20 min, 2.1 m at 30 min.
    assert_eq!(raised.at, at_min(30));
    assert_eq!(raised.state.severity, Severity::Moderate);
    assert!(!raised.state.instruction_en.is_empty() && !raised.state.instruction_zh.is_empty());
    let red = of(&d, RuleId::WaterLevel)[2];
    assert_eq!((red.state.severity, red.state.details["wra_level"].as_i64()), (Severity::Extreme, Some(1)));
}

#[test]
fn a_level_inside_the_margin_holds_its_grade() {
    let mut e = engine(vec![river("r1")]);
    // Yellow at 2.0 m, margin 0.1 m: 1.92 m is still yellow.
    let stages = [2.05, 2.1, 1.95, 1.92, 1.95, 1.93, 1.91, 1.94, 1.92, 1.95];
    let inputs = stages.iter().enumerate().map(|(i, m)| level("r1", at_min(10 * i as i64), *m)).collect();
    let d = run(&mut e, inputs);
    assert_eq!(changes(&d, RuleId::WaterLevel), vec![Change::Raised]);
}

proptest! {
    /// Readings oscillating within the margin around a level never change the alert once raised.
    #[test]
    fn oscillation_inside_the_margin_never_flaps(noise in proptest::collection::vec(-0.09f64..0.09, 10..80)) {
        let mut e = engine(vec![river("r1")]);
        let mut inputs = vec![level("r1", at_min(0), 2.1), level("r1", at_min(5), 2.1)];
        inputs.extend(noise.iter().enumerate().map(|(i, n)| level("r1", at_min(10 + 5 * i as i64), 2.0 + n)));
        let d = run(&mut e, inputs);
        prop_assert_eq!(changes(&d, RuleId::WaterLevel), vec![Change::Raised]);
    }

    /// Whatever the noise around a level, an alert never clears sooner than
    /// the confirmation dwell (30 min) after it was raised or last moved.
    #[test]
    fn noise_around_a_level_never_flaps(noise in proptest::collection::vec(-0.3f64..0.3, 10..120)) {
        let mut e = engine(vec![river("r1")]);
        let inputs = noise.iter().enumerate().map(|(i, n)| level("r1", at_min(5 * i as i64), 2.0 + n)).collect();
        let d = run(&mut e, inputs);
        let moves: Vec<_> = of(&d, RuleId::WaterLevel).into_iter().filter(|d| d.change != Change::Updated).collect();
        for pair in moves.windows(2) {
            if pair[1].change == Change::Resolved || pair[1].change == Change::Deescalated {
                prop_assert!(pair[1].at - pair[0].at >= chrono::Duration::minutes(30), "{:?}", moves);
            }
        }
    }
}

#[test]
fn rate_of_rise_projects_the_time_to_the_next_level() {
    let mut e = engine(vec![river("r1")]);
    // 0.6 m/h: 0.05 m every 5 min, from 1.0 m to 2.7 m.
    let inputs: Vec<_> = (0..=34).map(|i| level("r1", at_min(5 * i), 1.0 + 0.05 * i as f64)).collect();
    let d = run(&mut e, inputs);
    let rise = of(&d, RuleId::RateOfRise);
    assert_eq!(rise[0].change, Change::Raised, "{rise:#?}");
    let active = e.active();
    let state = active.iter().find(|(k, _)| k.rule == RuleId::RateOfRise).map(|(_, s)| s).unwrap();
    // At 2.70 m the next level is warning 1 (3.10 m): 0.4 m at 0.6 m/h = 40 min.
    assert_eq!(state.details["next_level"], "warning_1");
    let lead = state.lead_time_s.unwrap();
    assert!((lead - 2_400).abs() <= 5, "{lead}");
    assert_eq!((state.level.as_str(), state.grade), ("imminent", 3));
    assert!((state.value.unwrap() - 0.6).abs() < 1e-6);
    assert!(state.description_en.contains("in 40 min"), "{}", state.description_en);
    // The water level alert carries the same lead time.
    let wl = active.iter().find(|(k, _)| k.rule == RuleId::WaterLevel).map(|(_, s)| s).unwrap();
    assert_eq!((wl.level.as_str(), wl.lead_time_s), ("orange", Some(lead)));
    // Earlier, 1.2 m with the next level (2.0 m) 80 min away: grade 2.
    let first = rise.iter().find(|d| d.change == Change::Raised).unwrap();
    assert_eq!(first.state.level, "approaching");
    // A steady river clears it, after confirmation.
    let steady: Vec<_> = (35..=60).map(|i| level("r1", at_min(5 * i), 2.7)).collect();
    let d = run(&mut e, steady);
    assert_eq!(changes(&d, RuleId::RateOfRise).last(), Some(&Change::Resolved), "{d:#?}");
}

/// A typhoon's rain bands: the river rises fast, slows to 0.2 m/h for 35 min
/// between two bands (still rising, the flood not over), then rises fast
/// again, then levels off.
fn rise_with_a_lull() -> Vec<citygauge_alerts::engine::Input> {
    let stage = |t: f64| {
        let fast = 0.8 / 60.0;
        let slow = 0.2 / 60.0;
        1.0 + fast * t.min(40.0) + slow * (t.clamp(40.0, 75.0) - 40.0) + fast * (t.clamp(75.0, 105.0) - 75.0)
    };
    // A few millimetres of wobble, as a real gauge (a dead-flat one is a flat-line fault).
    let wobble = |m: i64| 0.004 * ((m % 3) - 1) as f64;
    (0..=240).map(|m| level("r1", at_min(m), stage(m as f64) + wobble(m))).collect()
}

#[test]
fn a_rise_that_slows_between_rain_bands_does_not_clear() {
    let mut e = engine(vec![river("r1")]);
    let d = run(&mut e, rise_with_a_lull());
    let moves: Vec<_> = of(&d, RuleId::RateOfRise).into_iter().filter(|d| d.change != Change::Updated).collect();
    let count = |c: Change| moves.iter().filter(|d| d.change == c).count();
    assert_eq!((count(Change::Raised), count(Change::Resolved)), (1, 1), "{moves:#?}");
    // It clears after the river has levelled off (at 105 min): the fitted
    // rate decays over one window, each step down (imminent, approaching as
    // the lead lengthens, then clear) holds 30 min below 0.3 m/h first.
    let resolved = moves.iter().find(|d| d.change == Change::Resolved).unwrap();
    assert!(resolved.at >= at_min(105 + 30) && resolved.at <= at_min(105 + 90), "{moves:#?}");

    // The former defaults (clear under 0.4 m/h for 15 min) cleared in the
    // lull and raised the same alert again half an hour later.
    let mut rules = citygauge_alerts::RuleSet::default();
    rules.water_level.rate.margin_m_per_h = 0.1;
    rules.water_level.rate.confirm.clear_dwell_s = 900;
    let mut e = citygauge_alerts::Engine::new(rules, vec![river("r1")]);
    let d = run(&mut e, rise_with_a_lull());
    assert_eq!(
        changes(&d, RuleId::RateOfRise).iter().filter(|c| **c == Change::Raised).count(),
        2,
        "{:#?}",
        of(&d, RuleId::RateOfRise)
    );
}

#[test]
fn sewer_gauges_are_not_river_levels() {
    let mut s = river("sw1");
    s.subkind = Some("sewer".into());
    let mut e = engine(vec![s]);
    let d = run(&mut e, (0..6).map(|i| level("sw1", at_min(10 * i), 3.5)).collect());
    assert!(of(&d, RuleId::WaterLevel).is_empty());
}

#[test]
fn station_levels_can_be_overridden_in_the_rules() {
    let rules = citygauge_alerts::RuleSet::from_toml(
        "[[overrides]]\nsensors = ['r1']\n[overrides.set.water_level]\nwarning_3_m = 1.0\nwarning_2_m = 1.2\nwarning_1_m = 1.4\n",
    )
    .unwrap();
    let mut e = citygauge_alerts::Engine::new(rules, vec![river("r1")]);
    let d = run(&mut e, (0..3).map(|i| level("r1", at_min(10 * i), 1.5)).collect());
    let wl = of(&d, RuleId::WaterLevel);
    assert_eq!((wl[0].change, wl[0].state.level.as_str()), (Change::Raised, "red"));
    assert_eq!(wl[0].state.details["levels"]["source"], "rules");
}
