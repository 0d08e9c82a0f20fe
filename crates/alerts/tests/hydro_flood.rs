//! Road flooding: grades with start, peak and receding; diagnoses from the
//! river station next to a flooded road.

mod hydro_support;

use citygauge_alerts::{Change, RuleId};
use hydro_support::*;

#[test]
fn a_flooded_road_reports_start_peak_and_receding() {
    let mut e = engine(vec![road("f1", None)]);
    let depths = [
        0.0, 4.0, 12.0, 15.0, 25.0, 33.0, 36.0, 41.0, 40.5, 38.0, 34.0, 33.0, 31.0, 29.0, 26.0, 20.0, 15.0, 9.0, 6.0,
        3.0, 1.0, 0.0, 0.0, 0.0,
    ];
    let inputs = depths.iter().enumerate().map(|(i, cm)| depth("f1", at_min(5 * i as i64), *cm)).collect();
    let d = run(&mut e, inputs);
    let flood = of(&d, RuleId::RoadFlooding);
    let moves: Vec<_> =
        flood.iter().filter(|d| d.change != Change::Updated).map(|d| (d.change, d.state.level.as_str())).collect();
    assert_eq!(
        moves,
        vec![
            (Change::Raised, "ponding"),
            (Change::Escalated, "flooded"),
            (Change::Deescalated, "ponding"),
            (Change::Resolved, "ponding"),
        ],
        "{flood:#?}"
    );
    let raised = flood[0];
    assert_eq!(raised.state.details["started_at"], at_min(10).to_rfc3339(), "the first reading at 10 cm or more");
    assert_eq!(raised.at, at_min(15));
    // The peak: 41 cm at 35 min, reported once it is known; then receding.
    let peak = flood.iter().find(|d| d.state.details["peak_cm"] == 41.0).expect("peak reported");
    assert_eq!(peak.state.details["peak_at"], at_min(35).to_rfc3339());
    let receding = flood.iter().find(|d| d.state.details["receding"] == true).expect("receding reported");
    assert_eq!(receding.change, Change::Updated);
    assert!(receding.at >= at_min(50), "three readings 5 cm below the peak: {}", receding.at);
    // Details change only with the peak or the receding state: a handful of updates, not one per reading.
    let updates = flood.iter().filter(|d| d.change == Change::Updated).count();
    assert!(updates <= 5, "{flood:#?}");
}

#[test]
fn a_splash_does_not_flood_a_road() {
    let mut e = engine(vec![road("f1", None)]);
    let depths = [0.0, 14.0, 0.0, 12.0, 1.0, 11.0, 0.0];
    let d = run(&mut e, depths.iter().enumerate().map(|(i, cm)| depth("f1", at_min(i as i64), *cm)).collect());
    assert!(of(&d, RuleId::RoadFlooding).iter().all(|d| d.change != Change::Raised), "{d:#?}");
}

#[test]
fn flooding_with_a_low_river_is_a_drainage_problem_and_with_a_high_river_backwater() {
    let mut e = engine(vec![river("r1"), road("f1", Some("r1"))]);
    let mut inputs = Vec::new();
    for i in 0..12 {
        // Live sensors wobble (a constant value would be a flat line).
        inputs.push(level("r1", at_min(10 * i), 1.2 + 0.01 * (i % 3) as f64));
        inputs.push(depth("f1", at_min(10 * i + 1), if i < 2 { 0.0 } else { 35.0 + (i % 3) as f64 }));
    }
    let d = run(&mut e, inputs);
    assert_eq!(timeline(&d, RuleId::DrainageSuspected), vec![(Change::Raised, "drainage_suspected".to_string())]);
    let raised = of(&d, RuleId::DrainageSuspected)[0];
    assert_eq!((raised.key.subject.as_str(), raised.state.details["river_station"].as_str()), ("f1", Some("r1")));
    // The river rises to orange: the city cannot drain into it.
    let mut inputs = Vec::new();
    for i in 12..20 {
        inputs.push(level("r1", at_min(10 * i), 2.8 + 0.01 * (i % 3) as f64));
        inputs.push(depth("f1", at_min(10 * i + 1), 35.0 + (i % 3) as f64));
    }
    let d = run(&mut e, inputs);
    assert_eq!(changes(&d, RuleId::DrainageSuspected), vec![Change::Resolved]);
    assert_eq!(changes(&d, RuleId::RiverBackwater), vec![Change::Raised]);
    // The road drains: the diagnosis clears with the flood.
    let inputs = (20..30).map(|i| depth("f1", at_min(10 * i), 0.0)).collect();
    let d = run(&mut e, inputs);
    assert_eq!(changes(&d, RuleId::RiverBackwater), vec![Change::Resolved]);
    assert!(!e.active().keys().any(|k| k.rule == RuleId::RoadFlooding));
}
