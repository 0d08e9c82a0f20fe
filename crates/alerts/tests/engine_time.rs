//! Time as the field delivers it: readings redelivered (MQTT QoS 1, a
//! replayed outbox), stamped a day ahead or in 1970 by a logger whose clock
//! is wrong, silences that end while a condition holds, and registries that
//! change while the engine runs.

use std::time::Instant;

use chrono::{DateTime, Duration, TimeZone, Utc};
use citygauge_alerts::engine::{self, Input, Silence};
use citygauge_alerts::{Change, Decision, Engine, Observation, RuleId, RuleSet, Sensor};
use citygauge_domain::{Kind, QualityLevel};
use serde_json::{json, Map, Value};

/// 2026-09-01 00:00 Taipei (16:00 UTC the day before): night at the lamps.
fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 8, 31, 16, 0, 0).unwrap()
}

fn minutes(m: i64) -> DateTime<Utc> {
    t0() + Duration::minutes(m)
}

fn sensor(id: &str, kind: Kind, subkind: Option<&str>) -> Sensor {
    Sensor {
        id: id.into(),
        kind: Some(kind),
        subkind: subkind.map(str::to_string),
        district: Some("Zhongli".into()),
        lon: Some(121.22),
        lat: Some(24.96),
        expected_interval_s: 600,
        ..Sensor::default()
    }
}

fn river(id: &str) -> Sensor {
    let mut s = sensor(id, Kind::WaterLevel, Some("river"));
    for (k, v) in [("warning_3_m", 2.0), ("warning_2_m", 2.6), ("warning_1_m", 3.1)] {
        s.thresholds.insert(k.into(), json!(v));
    }
    s
}

fn lamp(id: &str) -> Sensor {
    let mut s = sensor(id, Kind::Streetlight, None);
    s.installation.insert("rated_power_w".into(), json!(150.0));
    s
}

fn sewage(id: &str) -> Sensor {
    let mut s = sensor(id, Kind::WaterLevel, Some("sewer"));
    s.installation.insert("sewer_type".into(), json!("sewage"));
    s
}

fn reading(id: &str, kind: Kind, ts: DateTime<Utc>, values: Value) -> Observation {
    let values = match values {
        Value::Object(m) => m,
        _ => Map::new(),
    };
    Observation { sensor_id: id.into(), kind, ts, quality: QualityLevel::Good, quality_reasons: Vec::new(), values }
}

fn level(id: &str, ts: DateTime<Utc>, m: f64) -> Observation {
    reading(id, Kind::WaterLevel, ts, json!({ "level_m": m }))
}

fn bad_clock(mut o: Observation, reason: &str) -> Observation {
    o.quality = QualityLevel::Bad;
    o.quality_reasons = vec![reason.into()];
    o
}

fn run(engine: &mut Engine, readings: Vec<Observation>) -> Vec<Decision> {
    engine::run(engine, readings.into_iter().map(Input::Reading), 60)
}

fn notified(decisions: &[Decision]) -> Vec<(RuleId, String, Change, u8, DateTime<Utc>)> {
    decisions
        .iter()
        .filter(|d| d.change.notifies())
        .map(|d| (d.key.rule, d.key.subject.clone(), d.change, d.state.grade, d.at))
        .collect()
}

/// Each reading delivered twice in a row, as a broker redelivers at QoS 1.
fn twice(readings: &[Observation]) -> Vec<Observation> {
    readings.iter().flat_map(|r| [r.clone(), r.clone()]).collect()
}

#[test]
fn a_redelivered_reading_confirms_nothing_twice() {
    let sensors = || vec![sewage("sw"), sensor("rg", Kind::Rainfall, Some("interval")), lamp("sl")];
    let mut readings = Vec::new();
    for m in (0..240).step_by(10) {
        let t = minutes(m);
        // Rain from 01:00; the sewage line jumps 30 cm at 02:00 (rain getting in).
        let mm = if m >= 60 { 3.0 } else { 0.0 };
        readings.push(reading("rg", Kind::Rainfall, t, json!({"rain_mm": mm, "interval_s": 600})));
        let noise = if m % 20 == 0 { 0.004 } else { 0.0 };
        readings.push(level("sw", t, noise + if m >= 120 { 0.70 } else { 0.40 }));
    }
    // One unlit reading at 01:00 local: not yet an outage (two are needed).
    readings.push(reading("sl", Kind::Streetlight, minutes(60), json!({"lamp_on": false, "power_w": 0.2})));
    readings.sort_by_key(|r| r.ts);

    let once = notified(&run(&mut Engine::new(RuleSet::default(), sensors()), readings.clone()));
    let doubled = notified(&run(&mut Engine::new(RuleSet::default(), sensors()), twice(&readings)));
    assert!(once.iter().any(|d| d.0 == RuleId::SewerRainIngress), "the scenario raises: {once:?}");
    assert_eq!(doubled, once, "redelivery changed the decisions");
}

#[test]
fn air_averages_count_a_redelivered_reading_once() {
    let sensors = || vec![sensor("aq", Kind::AirQuality, None)];
    // Sixteen hours of hourly PM2.5 at 50 µg/m³ (AQI "unhealthy for sensitive groups" and up).
    let readings: Vec<Observation> = (0..16)
        .map(|h| reading("aq", Kind::AirQuality, minutes(60 * h), json!({"pm2_5_ugm3": 60.0, "pm10_ugm3": 80.0})))
        .collect();
    let once = notified(&run(&mut Engine::new(RuleSet::default(), sensors()), readings.clone()));
    let doubled = notified(&run(&mut Engine::new(RuleSet::default(), sensors()), twice(&readings)));
    assert!(!once.is_empty(), "the scenario raises");
    assert_eq!(doubled, once, "redelivery changed the decisions");
}

#[test]
fn a_reading_stamped_a_day_ahead_neither_ends_silences_nor_blinds_health() {
    let mut engine = Engine::new(RuleSet::default(), vec![river("wl"), river("wl-2")]);
    let silence = Silence { rule: None, subject: "wl-2".into(), until: minutes(120) };
    engine.set_silences(vec![silence]);
    let mut decisions = Vec::new();
    decisions.extend(engine.apply(&Input::Reading(level("wl", minutes(0), 1.0))));
    // A logger clock twenty hours fast (ingest keeps it, flagged future_ts).
    decisions.extend(engine.apply(&Input::Reading(bad_clock(level("wl", minutes(20 * 60), 1.0), "future_ts"))));
    // Back on time: every 10 min, stuck at the same value for two hours (a
    // flat line), while wl-2, silenced until 02:00, stands at red from 01:00.
    for m in (10..=130).step_by(10) {
        decisions.extend(engine.apply(&Input::Tick(minutes(m))));
        decisions.extend(engine.apply(&Input::Reading(level("wl", minutes(m), 1.0))));
        if (60..=110).contains(&m) {
            decisions.extend(engine.apply(&Input::Reading(level("wl-2", minutes(m), 3.3))));
        }
    }
    let of = |rule: RuleId, subject: &str| {
        decisions
            .iter()
            .filter(|d| d.key.rule == rule && d.key.subject == subject)
            .map(|d| d.change)
            .collect::<Vec<_>>()
    };
    assert_eq!(of(RuleId::SensorFlatline, "wl"), [Change::Raised], "health saw the stuck gauge");
    let red: Vec<_> = decisions
        .iter()
        .filter(|d| d.key.rule == RuleId::WaterLevel && d.key.subject == "wl-2")
        .map(|d| (d.change, d.at))
        .collect();
    assert_eq!(red, [(Change::Raised, minutes(120))], "raised when the silence ended, not before");
    assert_eq!(engine.now(), Some(minutes(130)), "the clock follows trusted times only");
}

#[test]
fn replay_does_not_tick_through_a_bad_clock() {
    let mut engine = Engine::new(RuleSet::default(), vec![river("wl"), river("wl-2")]);
    let mut readings = Vec::new();
    for m in (0..=60).step_by(10) {
        readings.push(level("wl", minutes(m), 1.0));
        readings.push(level("wl-2", minutes(m), 1.2));
    }
    // A reading 20 h ahead among them, and one from a logger that thinks it is 1970.
    readings.insert(3, bad_clock(level("wl-2", minutes(20 * 60), 1.2), "future_ts"));
    readings.insert(0, bad_clock(level("wl", Utc.with_ymd_and_hms(1970, 1, 1, 0, 0, 0).unwrap(), 1.0), "clock_unset"));
    let began = Instant::now();
    let decisions = run(&mut engine, readings);
    assert!(began.elapsed() < std::time::Duration::from_secs(20), "ticked through decades");
    let silent: Vec<_> = decisions.iter().filter(|d| d.key.rule == RuleId::SensorSilent).collect();
    assert!(silent.is_empty(), "the clock jumped ahead and found everyone silent: {silent:?}");
}

#[test]
fn a_condition_that_arose_during_a_silence_is_raised_when_it_ends() {
    let mut engine = Engine::new(RuleSet::default(), vec![lamp("sl")]);
    engine.set_silences(vec![Silence { rule: None, subject: "sl".into(), until: minutes(60) }]);
    let mut decisions = Vec::new();
    // A vendor fault during the maintenance window; the lamp keeps reporting it.
    for m in [10, 40] {
        let fault =
            reading("sl", Kind::Streetlight, minutes(m), json!({"lamp_on": true, "power_w": 148.0, "fault": "E12"}));
        decisions.extend(engine.apply(&Input::Reading(fault)));
    }
    assert!(decisions.iter().all(|d| !d.change.notifies()), "silenced: {decisions:?}");
    decisions.extend(engine.apply(&Input::Tick(minutes(61))));
    let raised: Vec<_> = decisions.iter().filter(|d| d.change == Change::Raised).map(|d| (d.key.rule, d.at)).collect();
    assert_eq!(raised, [(RuleId::LampFault, minutes(61))], "raised when the silence ended");

    // A condition that cleared during the silence is not raised afterwards.
    let mut engine = Engine::new(RuleSet::default(), vec![lamp("sl")]);
    engine.set_silences(vec![Silence { rule: None, subject: "sl".into(), until: minutes(60) }]);
    let mut decisions = Vec::new();
    decisions.extend(engine.apply(&Input::Reading(reading(
        "sl",
        Kind::Streetlight,
        minutes(10),
        json!({"fault": "E12"}),
    ))));
    for m in [20, 30] {
        decisions.extend(engine.apply(&Input::Reading(reading(
            "sl",
            Kind::Streetlight,
            minutes(m),
            json!({"fault": "0"}),
        ))));
    }
    decisions.extend(engine.apply(&Input::Tick(minutes(61))));
    assert!(decisions.iter().all(|d| !d.change.notifies()), "{decisions:?}");
}

#[test]
fn registering_sensors_does_not_re_merge_the_rules_of_the_city() {
    let rules =
        RuleSet::from_toml("[[overrides]]\ndistricts = ['Zhongli']\nset = { streetlight = { response_hours = 8 } }\n")
            .unwrap();
    let lamps: Vec<Sensor> = (0..20_000).map(|i| lamp(&format!("sl-{i:05}"))).collect();
    let mut engine = Engine::new(rules, lamps);
    let began = Instant::now();
    for i in 0..200 {
        engine.upsert_sensor(lamp(&format!("new-{i:03}")));
    }
    let took = began.elapsed();
    assert!(took < std::time::Duration::from_secs(2), "200 registrations took {took:?}");
    // And the override still applies to the new ones.
    let fault = reading("new-007", Kind::Streetlight, minutes(0), json!({"fault": "E1"}));
    let d = engine.apply(&Input::Reading(fault));
    let due = d[0].state.details["ticket"]["due_by"].as_str().unwrap().to_string();
    assert!(due.starts_with("2026-09-01T08:00:00"), "{due}");
}

#[test]
fn a_reading_in_flight_across_a_tick_is_evaluated_at_once() {
    let mut engine = Engine::new(RuleSet::default(), vec![sensor("rg", Kind::Rainfall, Some("interval"))]);
    let rain = |m: i64| reading("rg", Kind::Rainfall, minutes(m), json!({"rain_mm": 15.0, "interval_s": 600}));
    let mut decisions = Vec::new();
    for m in (10..=60).step_by(10) {
        decisions.extend(engine.apply(&Input::Reading(rain(m))));
    }
    // 90 mm in the hour: heavy rain.
    let raised = decisions.iter().filter(|d| d.key.rule == RuleId::Rainfall && d.change == Change::Raised).count();
    assert_eq!(raised, 1, "{decisions:?}");
    // Live: the clock ticks at 01:10:00.2 while the 01:10 reading is in
    // flight; with it the gauge has 105 mm in 3 h: extremely heavy rain.
    engine.apply(&Input::Tick(minutes(70) + Duration::milliseconds(200)));
    let decisions = engine.apply(&Input::Reading(rain(70)));
    let changes: Vec<_> = decisions.iter().map(|d| (d.key.rule, d.change, d.state.grade)).collect();
    assert!(
        changes.contains(&(RuleId::Rainfall, Change::Escalated, 2)),
        "the escalation waited for the next tick: {changes:?}"
    );
}

#[test]
fn a_restart_during_a_silence_keeps_what_is_open() {
    let fault = |m: i64| reading("sl", Kind::Streetlight, minutes(m), json!({"fault": "E12"}));
    // Live: the fault was raised, then the operator silenced the lamp for repairs.
    let mut live = Engine::new(RuleSet::default(), vec![lamp("sl")]);
    let raised = live.apply(&Input::Reading(fault(0)));
    assert_eq!(raised[0].change, Change::Raised);
    let open: std::collections::BTreeMap<_, _> = live.active().clone();
    // Restart: warm up with the silence in force, then reconcile with the database.
    let mut warm = Engine::new(RuleSet::default(), vec![lamp("sl")]);
    warm.set_silences(vec![Silence { rule: None, subject: "sl".into(), until: minutes(240) }]);
    run(&mut warm, vec![fault(0), fault(30)]);
    let reconciled = warm.reconcile(&open, minutes(31));
    assert!(reconciled.is_empty(), "the fault still holds: {reconciled:?}");
    warm.adopt(open);
    // The lamp is repaired during the silence: the open fault clears.
    let after = run(
        &mut warm,
        vec![
            reading("sl", Kind::Streetlight, minutes(60), json!({"fault": "0"})),
            reading("sl", Kind::Streetlight, minutes(70), json!({"fault": "0"})),
        ],
    );
    let changes: Vec<_> = after.iter().map(|d| d.change).collect();
    assert_eq!(changes, [Change::Resolved]);
}
