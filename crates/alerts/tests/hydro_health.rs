//! Sensor health comes before hazard: stuck, spiking, out-of-range and
//! silent sensors raise maintenance alerts and never a flood alert.

mod hydro_support;

use citygauge_alerts::engine::Input;
use citygauge_alerts::{Change, Class, RuleId};
use citygauge_domain::QualityLevel;
use hydro_support::*;

#[test]
fn a_spiking_river_gauge_in_a_storm_raises_sensor_spike_and_no_water_level_alert() {
    let mut e = engine(vec![river("r1")]);
    let mut inputs = Vec::new();
    for i in 0..24 {
        let ts = at_min(5 * i);
        if i >= 6 && i % 3 == 0 {
            // The gauge jumps to 3.4 m and back: ingest flags each jump.
            inputs.push(flagged(level("r1", ts, 3.4), QualityLevel::Suspect, "spike:level_m"));
        } else {
            inputs.push(level("r1", ts, 1.6 + 0.02 * i as f64));
        }
    }
    let d = run(&mut e, inputs);
    assert_eq!(timeline(&d, RuleId::SensorSpike), vec![(Change::Raised, "spike".to_string())], "{d:#?}");
    assert_eq!(of(&d, RuleId::SensorSpike)[0].key.rule.class(), Class::Maintenance);
    assert!(timeline(&d, RuleId::WaterLevel).is_empty(), "{d:#?}");
    // The control room sees why: one suppressed event per grade, naming the health alert.
    let suppressed = of(&d, RuleId::WaterLevel);
    assert!(!suppressed.is_empty() && suppressed.iter().all(|d| d.change == Change::Suppressed));
    let grades: Vec<u8> = suppressed.iter().map(|d| d.state.grade).collect();
    let mut unique = grades.clone();
    unique.dedup();
    assert_eq!(grades, unique, "once per grade");
    assert_eq!(suppressed[0].state.details["suppressed_by"], "sensor_spike:r1");
    // Quiet for half an hour: the spike alert clears.
    let d = run(&mut e, (24..40).map(|i| level("r1", at_min(5 * i), 1.9)).collect());
    assert_eq!(changes(&d, RuleId::SensorSpike), vec![Change::Resolved]);
}

#[test]
fn a_stuck_river_gauge_raises_a_flatline_and_its_readings_are_not_trusted() {
    let mut e = engine(vec![river("r1")]);
    // Stuck at 1.52 m for 80 minutes.
    let d = run(&mut e, (0..9).map(|i| level("r1", at_min(10 * i), 1.52)).collect());
    let flat = of(&d, RuleId::SensorFlatline);
    assert_eq!((flat.len(), flat[0].change), (1, Change::Raised), "{d:#?}");
    assert_eq!(flat[0].at, at_min(60), "six readings over an hour");
    // It comes unstuck at a high level: not trusted until it has moved for three readings.
    let d =
        run(&mut e, vec![level("r1", at_min(90), 2.7), level("r1", at_min(100), 2.72), level("r1", at_min(110), 2.74)]);
    let wl = of(&d, RuleId::WaterLevel);
    assert!(wl.iter().all(|d| d.change == Change::Suppressed) && !wl.is_empty(), "{d:#?}");
    assert_eq!(wl[0].state.details["suppressed_by"], "sensor_flatline:r1");
    assert_eq!(changes(&d, RuleId::SensorFlatline), vec![Change::Resolved]);
    let d = run(&mut e, vec![level("r1", at_min(120), 2.75), level("r1", at_min(130), 2.76)]);
    assert_eq!(timeline(&d, RuleId::WaterLevel), vec![(Change::Raised, "orange".to_string())]);
}

#[test]
fn an_out_of_range_reading_raises_maintenance_from_the_first_reading() {
    let mut e = engine(vec![road("f1", None)]);
    let bad = |m| flagged(depth("f1", at_min(m), 480.0), QualityLevel::Bad, "out_of_range:depth_cm");
    let d = run(&mut e, vec![depth("f1", at_min(0), 0.0), bad(1), bad(2), bad(3)]);
    assert_eq!(changes(&d, RuleId::SensorOutOfRange), vec![Change::Raised]);
    assert_eq!(changes(&d, RuleId::RoadFlooding), vec![Change::Suppressed]);
    // In range again for three readings over ten minutes: cleared.
    let d = run(&mut e, (0..4).map(|i| depth("f1", at_min(10 + 5 * i), 0.0)).collect());
    assert_eq!(changes(&d, RuleId::SensorOutOfRange), vec![Change::Resolved]);
}

#[test]
fn a_silent_sensor_is_raised_by_the_clock_and_cleared_by_its_next_reading() {
    let mut e = engine(vec![river("r1"), river("r2")]);
    // r2 keeps reporting, so the data clock moves on without r1.
    let d = run(
        &mut e,
        vec![
            level("r1", at_min(0), 1.0),
            level("r2", at_min(0), 1.0),
            level("r2", at_min(29), 1.01),
            Input::Tick(at_min(29)),
            level("r2", at_min(31), 1.0),
            Input::Tick(at_min(31)),
        ],
    );
    let silent = of(&d, RuleId::SensorSilent);
    assert_eq!((silent.len(), silent[0].at), (1, at_min(31)), "{d:#?}");
    assert_eq!(silent[0].key.subject, "r1");
    assert_eq!(silent[0].state.details["expected_interval_s"], 600);
    let d = run(&mut e, vec![level("r1", at_min(40), 1.0)]);
    assert_eq!(changes(&d, RuleId::SensorSilent), vec![Change::Resolved]);
}

#[test]
fn silence_is_judged_on_the_data_clock_not_the_wall_clock() {
    // A backfill: readings hours behind the ticks (a gateway catching up,
    // `dev` replaying at 360×) make no one silent.
    let mut e = engine(vec![river("r1"), river("r2")]);
    let wall = at_min(6 * 60);
    let mut inputs = Vec::new();
    for m in (0..60).step_by(10) {
        inputs.push(level("r1", at_min(m), 1.0 + m as f64 * 1e-3));
        inputs.push(level("r2", at_min(m), 1.0 + m as f64 * 1e-3));
        inputs.push(Input::Tick(wall + chrono::Duration::seconds(m)));
    }
    let d = run(&mut e, inputs);
    assert!(of(&d, RuleId::SensorSilent).is_empty(), "{d:#?}");
    // The whole city going quiet is the platform's outage, not a ticket per sensor.
    let d = run(&mut e, vec![Input::Tick(wall + chrono::Duration::hours(3))]);
    assert!(of(&d, RuleId::SensorSilent).is_empty(), "{d:#?}");
}

#[test]
fn a_sensor_never_heard_from_is_not_silent_unless_the_registry_saw_it() {
    let mut e = engine(vec![river("r1"), river("quiet"), river("gone")]);
    // `gone` reported before the engine's history began; `quiet` never did.
    e.seed_last_seen([("gone".to_string(), at_min(-600))]);
    let inputs = (0..8).map(|i| level("r1", at_min(10 * i), 1.0 + i as f64 * 1e-3)).chain([Input::Tick(at_min(75))]);
    let d = run(&mut e, inputs.collect());
    let silent: Vec<&str> = of(&d, RuleId::SensorSilent).iter().map(|d| d.key.subject.as_str()).collect();
    assert_eq!(silent, ["gone"], "{d:#?}");
}

#[test]
fn a_rain_gauge_reading_zero_while_its_district_pours_is_flat_lined() {
    let mut e = engine(vec![rain_gauge("a1", "A", 600), rain_gauge("a2", "A", 600)]);
    let mut inputs = vec![rain("a1", t0(), 0.0, 86_400), rain("a2", t0(), 0.0, 86_400)];
    for i in 1..=9 {
        inputs.push(rain("a1", at_min(10 * i), 0.0, 600));
        inputs.push(rain("a2", at_min(10 * i), 6.0, 600));
    }
    let d = run(&mut e, inputs);
    let flat = of(&d, RuleId::SensorFlatline);
    assert_eq!(flat.len(), 1, "{d:#?}");
    assert_eq!((flat[0].key.subject.as_str(), flat[0].state.details["reason"].as_str()), ("a1", Some("dry_in_rain")));
    // Its zeros no longer count for the district.
    let d = run(&mut e, vec![rain("a1", at_min(100), 3.0, 600), Input::Tick(at_min(101))]);
    assert_eq!(changes(&d, RuleId::SensorFlatline), Vec::<Change>::new(), "one reading of rain: confirmation pending");
}
