//! Streetlights: lamp off between dusk and dawn at the pole, power outside
//! its band, vendor fault codes. Each alert is a maintenance ticket for the
//! city's 1999 dispatch (see [`ticket`] for its fields).
//!
//! Built for 150,000+ lamps (Taoyuan 162,000, New Taipei 180,000): rules
//! run on each lamp's own readings (no per-tick walk), dusk and dawn come
//! from the sun's position computed on the spot ([`super::sun`]), and only
//! lamps with something pending or open keep state; a healthy lamp costs
//! nothing between its readings. Assessments are emitted only when a
//! confirmed state changes, so 100,000 healthy lamps produce no work
//! downstream.
//!
//! A lamp without a location in the registry gets no outage rule (dusk and
//! dawn need the pole's position); its power and fault rules still apply.

use std::collections::HashMap;

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use super::debounce::{Confirm, Ladder, Tracker};
use super::{state_for, sun, Assessment, Context, Verdict};
use crate::model::{AlertKey, AlertState, Evidence, Observation, RuleId, Sensor, Severity};
use crate::AlertError;
use citygauge_domain::Kind;

/// Settings of this family (the `[streetlight]` section of the rules file).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StreetlightRules {
    pub enabled: bool,
    /// The lamp must be lit while the sun is below this elevation, degrees.
    /// -0.833° is the astronomical sunset/sunrise (upper limb on the horizon).
    pub on_below_elevation_deg: f64,
    /// Minutes after dusk before an unlit lamp counts: photocells and
    /// switching timetables lag sunset by a quarter of an hour or so.
    pub grace_after_dusk_min: i64,
    /// Minutes before dawn from which an unlit lamp no longer counts
    /// (timetables and photocells switch off ahead of sunrise).
    pub grace_before_dawn_min: i64,
    /// A lamp that says it is on but draws less than this is dark (a dead
    /// LED driver keeps its controller powered), watts.
    pub off_power_w: f64,
    /// The normal band around `installation.rated_power_w`, ± percent.
    pub power_tolerance_pct: f64,
    /// Watts added to both sides of the band: driver and controller overhead,
    /// which matters most when the lamp is dimmed.
    pub power_slack_w: f64,
    /// Band at full brightness `[min, max]` W for lamps whose registry entry
    /// has no `rated_power_w`; `None`: such lamps get no power check.
    pub default_power_band_w: Option<[f64; 2]>,
    /// How far back inside the band (percent of the expected power) a lamp
    /// must come to clear a power alert.
    pub power_margin_pct: f64,
    /// A lamp reporting `dim_pct = 0` was switched off on purpose (a
    /// part-night timetable), so an unlit reading then is no outage. Set to
    /// false for controllers that report 0 % whenever the lamp is dark.
    pub dim_zero_is_scheduled_off: bool,
    /// Vendor codes that mean "no fault" (case-insensitive).
    pub fault_ok_codes: Vec<String>,
    /// Readings without a fault code that clear a fault.
    pub fault_clear_readings: u32,
    /// Confirmation of an unlit lamp (readings come every 5-15 min).
    pub outage: Confirm,
    /// Confirmation of abnormal power.
    pub power: Confirm,
    /// The dispatch's response target, hours (Kaohsiung's 1999 four-hour rule).
    pub response_hours: i64,
    /// Radius of the alert's area around the pole, metres.
    pub radius_m: f64,
}

impl Default for StreetlightRules {
    fn default() -> StreetlightRules {
        StreetlightRules {
            enabled: true,
            on_below_elevation_deg: sun::SUNRISE_ELEVATION_DEG,
            grace_after_dusk_min: 30,
            grace_before_dawn_min: 30,
            off_power_w: 3.0,
            power_tolerance_pct: 20.0,
            power_slack_w: 5.0,
            default_power_band_w: None,
            power_margin_pct: 5.0,
            dim_zero_is_scheduled_off: true,
            fault_ok_codes: ["0", "00", "ok", "none", "normal"].map(String::from).to_vec(),
            fault_clear_readings: 2,
            outage: Confirm { raise_readings: 2, clear_readings: 1, clear_dwell_s: 0 },
            power: Confirm { raise_readings: 3, clear_readings: 2, clear_dwell_s: 0 },
            response_hours: 4,
            radius_m: 30.0,
        }
    }
}

impl StreetlightRules {
    /// `path` is this section's name in the rules file, for error messages.
    pub fn validate(&self, path: &str) -> Result<(), AlertError> {
        let bad = |field: &str, why: &str| Err(AlertError::invalid(format!("{path}.{field}"), why));
        if !(-18.0..=5.0).contains(&self.on_below_elevation_deg) {
            return bad("on_below_elevation_deg", "must be between -18 (astronomical night) and 5 degrees");
        }
        if !(0..=180).contains(&self.grace_after_dusk_min) {
            return bad("grace_after_dusk_min", "must be 0..=180");
        }
        if !(0..=180).contains(&self.grace_before_dawn_min) {
            return bad("grace_before_dawn_min", "must be 0..=180");
        }
        if !(0.0..=100.0).contains(&self.off_power_w) {
            return bad("off_power_w", "must be 0..=100 W");
        }
        if !(1.0..=90.0).contains(&self.power_tolerance_pct) {
            return bad("power_tolerance_pct", "must be 1..=90");
        }
        if !(0.0..=100.0).contains(&self.power_slack_w) {
            return bad("power_slack_w", "must be 0..=100 W");
        }
        if let Some([lo, hi]) = self.default_power_band_w {
            if !(lo.is_finite() && hi.is_finite() && 0.0 <= lo && lo < hi && hi <= 5_000.0) {
                return bad("default_power_band_w", "must be [min, max] with 0 <= min < max <= 5000 W");
            }
        }
        if !(0.0..=50.0).contains(&self.power_margin_pct) {
            return bad("power_margin_pct", "must be 0..=50");
        }
        if self.fault_clear_readings == 0 {
            return bad("fault_clear_readings", "must be at least 1");
        }
        if !(1..=720).contains(&self.response_hours) {
            return bad("response_hours", "must be 1..=720");
        }
        if !(1.0..=5_000.0).contains(&self.radius_m) {
            return bad("radius_m", "must be 1..=5000 m");
        }
        self.outage.validate(&format!("{path}.outage"))?;
        self.power.validate(&format!("{path}.power"))
    }

    /// How much stored history a restarted engine must replay: a whole
    /// night, since an outage is only seen between dusk and dawn (a restart
    /// at noon would otherwise forget last night's dark lamps).
    pub fn warmup(&self) -> Duration {
        Duration::hours(24)
    }

    fn fault_code(&self, obs: &Observation) -> Option<String> {
        let code = match obs.values.get("fault")? {
            Value::String(s) => s.trim().to_string(),
            Value::Null | Value::Bool(false) => return None,
            other => other.to_string(),
        };
        (!code.is_empty() && !self.fault_ok_codes.iter().any(|ok| ok.eq_ignore_ascii_case(&code))).then_some(code)
    }
}

/// One lamp's state; only lamps with something pending or open have one.
#[derive(Debug, Default, Clone, PartialEq)]
struct Lamp {
    outage: Tracker,
    power: Tracker,
    /// Which side of the band an open power alert is on (-1 low, 1 high).
    power_side: i8,
    /// The open fault's code and since when (unix seconds).
    fault: Option<(Box<str>, i64)>,
    fault_clean: u32,
    /// The latest reading evaluated (unix seconds): a redelivered or late
    /// reading must not confirm an outage twice.
    last_ts: i64,
}

impl Lamp {
    /// Nothing pending or open: the lamp need not be remembered.
    fn idle(&self) -> bool {
        self.outage == Tracker::default()
            && self.power == Tracker::default()
            && self.power_side == 0
            && self.fault.is_none()
            && self.fault_clean == 0
    }
}

/// This family's state across readings.
#[derive(Debug, Default)]
pub struct Lights {
    lamps: HashMap<String, Lamp>,
}

/// What one reading says about the lamp's light and power.
struct Reading {
    lit: Option<bool>,
    power_w: Option<f64>,
    dim_pct: Option<f64>,
    /// Expected power and band `[lo, hi]` at this dimming, if known.
    band: Option<(f64, f64, f64)>,
}

impl Lights {
    pub fn observe(&mut self, cx: &Context<'_>, obs: &Observation, out: &mut Vec<Assessment>) {
        if obs.kind != Kind::Streetlight {
            return;
        }
        let Some(sensor) = cx.sensor(&obs.sensor_id) else { return };
        let rules = &cx.rules_for(&obs.sensor_id).streetlight;
        let mut lamp = self.lamps.remove(&obs.sensor_id).unwrap_or_default();
        if !rules.enabled {
            close_all(&mut lamp, &obs.sensor_id, obs.ts, out);
            return;
        }
        // Redelivered and late readings are skipped while the lamp has
        // something pending (a healthy lamp keeps no state, not even its
        // last time: 100,000 of them must cost nothing); a distrusted time
        // cannot be placed between dusk and dawn.
        if lamp.last_ts != 0 && obs.ts.timestamp() <= lamp.last_ts || !obs.time_trusted() {
            if !lamp.idle() {
                self.lamps.insert(obs.sensor_id.clone(), lamp);
            }
            return;
        }
        lamp.last_ts = obs.ts.timestamp();
        let offset = cx.rules.tz();
        let ticket_cx = TicketCx { sensor, rules, tz: offset };
        fault(&mut lamp, &ticket_cx, obs, out);
        // Light and power rest on the numbers: skip readings ingest flagged
        // and sensors the health rules distrust.
        if obs.is_good() && cx.suspect(&obs.sensor_id).is_none() {
            let reading = read(sensor, rules, obs);
            outage(&mut lamp, &ticket_cx, obs, &reading, out);
            power(&mut lamp, &ticket_cx, obs, &reading, out);
        }
        if !lamp.idle() {
            self.lamps.insert(obs.sensor_id.clone(), lamp);
        }
    }

    pub fn tick(&mut self, cx: &Context<'_>, now: DateTime<Utc>, out: &mut Vec<Assessment>) {
        // Everything is decided on readings: a lamp that stops reporting is
        // the health rules' (sensor_silent), not a guess here.
        let _ = (cx, now, out);
    }

    /// Lamps holding state (pending or open), for tests and metrics.
    pub fn tracked(&self) -> usize {
        self.lamps.len()
    }
}

fn close_all(lamp: &mut Lamp, id: &str, at: DateTime<Utc>, out: &mut Vec<Assessment>) {
    for (rule, open) in [
        (RuleId::LampOutage, lamp.outage.grade > 0),
        (RuleId::LampPower, lamp.power.grade > 0),
        (RuleId::LampFault, lamp.fault.is_some()),
    ] {
        if open {
            out.push(Assessment { key: AlertKey::sensor(rule, id), at, verdict: Verdict::Clear });
        }
    }
    *lamp = Lamp::default();
}

fn read(sensor: &Sensor, rules: &StreetlightRules, obs: &Observation) -> Reading {
    let power_w = obs.number("power_w");
    let dim_pct = obs.number("dim_pct").map(|d| d.clamp(0.0, 100.0));
    let full = sensor
        .installation
        .get("rated_power_w")
        .and_then(Value::as_f64)
        .filter(|w| w.is_finite() && *w > 0.0)
        .map(|w| (w, w * (1.0 - rules.power_tolerance_pct / 100.0), w * (1.0 + rules.power_tolerance_pct / 100.0)))
        .or_else(|| rules.default_power_band_w.map(|[lo, hi]| ((lo + hi) / 2.0, lo, hi)));
    let fraction = dim_pct.unwrap_or(100.0) / 100.0;
    // Dimming scales the draw roughly in proportion (LED drivers); the slack
    // covers the driver's own consumption at low output.
    let band = full.map(|(w, lo, hi)| {
        (w * fraction, (lo * fraction - rules.power_slack_w).max(0.0), hi * fraction + rules.power_slack_w)
    });
    let floor = match band {
        Some((expected, _, _)) => rules.off_power_w.min(expected * 0.5),
        None => rules.off_power_w,
    };
    let lit = match (obs.values.get("lamp_on").and_then(Value::as_bool), power_w) {
        (Some(false), _) => Some(false),
        (_, Some(w)) => Some(w >= floor),
        (Some(true), None) => Some(true),
        (None, None) => None,
    };
    Reading { lit, power_w, dim_pct, band }
}

fn outage(lamp: &mut Lamp, t: &TicketCx<'_>, obs: &Observation, r: &Reading, out: &mut Vec<Assessment>) {
    let Some(lit) = r.lit else { return };
    let grade = if lit {
        0 // seen lit, whenever: the lamp works
    } else if r.dim_pct == Some(0.0) && t.rules.dim_zero_is_scheduled_off {
        return; // switched off on purpose by a part-night schedule: no evidence either way
    } else {
        let Some((lon, lat)) = t.sensor.point() else { return };
        let dark = sun::dark_with_grace(
            obs.ts,
            lon,
            lat,
            t.rules.on_below_elevation_deg,
            Duration::minutes(t.rules.grace_after_dusk_min),
            Duration::minutes(t.rules.grace_before_dawn_min),
        );
        if !dark {
            return; // off by day (or in twilight) is expected
        }
        1
    };
    let before = lamp.outage.grade;
    let now = lamp.outage.observe(obs.ts, grade, &t.rules.outage);
    let key = AlertKey::sensor(RuleId::LampOutage, &obs.sensor_id);
    if now == before {
        return;
    }
    if now == 0 {
        out.push(Assessment { key, at: obs.ts, verdict: Verdict::Clear });
        return;
    }
    let mut state = t.state(RuleId::LampOutage, "not_lit", obs.ts);
    state.description_en = format!("The lamp is off at night (sun below {:.1}°).", t.rules.on_below_elevation_deg);
    state.description_zh = "夜間路燈未亮。".into();
    state.value = r.power_w;
    state.unit = r.power_w.map(|_| "W".into());
    let lamp_on = obs.values.get("lamp_on").cloned().unwrap_or(Value::Null);
    state.details.insert("lamp_on".into(), lamp_on);
    state.details.insert("measured_power_w".into(), json!(r.power_w));
    state.details.insert("dim_pct".into(), json!(r.dim_pct));
    if let Some(w) = r.power_w {
        state.evidence.push(Evidence {
            sensor_id: obs.sensor_id.clone(),
            ts: obs.ts,
            name: "power_w".into(),
            value: w,
        });
    }
    out.push(Assessment { key, at: obs.ts, verdict: Verdict::Active(state) });
}

fn power(lamp: &mut Lamp, t: &TicketCx<'_>, obs: &Observation, r: &Reading, out: &mut Vec<Assessment>) {
    // Only a lit lamp with a known band and a measured draw says anything
    // about its power; an unlit one is the outage rule's.
    let (Some(true), Some(w), Some((expected, lo, hi))) = (r.lit, r.power_w, r.band) else { return };
    if r.dim_pct == Some(0.0) {
        return;
    }
    let outside = (lo - w).max(w - hi);
    let ladder = Ladder { thresholds: vec![0.0], margin: expected * t.rules.power_margin_pct / 100.0 };
    let before = lamp.power.grade;
    let now = lamp.power.observe(obs.ts, ladder.grade(outside, before), &t.rules.power);
    let side = if w < lo { -1 } else { 1 };
    let key = AlertKey::sensor(RuleId::LampPower, &obs.sensor_id);
    if now == before && (now == 0 || side == lamp.power_side || (lo..=hi).contains(&w)) {
        return; // nothing new: an open alert changes only when the lamp crosses to the other side
    }
    if now == 0 {
        lamp.power_side = 0;
        out.push(Assessment { key, at: obs.ts, verdict: Verdict::Clear });
        return;
    }
    lamp.power_side = side;
    let level = if side < 0 { "low" } else { "high" };
    let mut state = t.state(RuleId::LampPower, level, obs.ts);
    state.description_en = format!("The lamp draws {w:.0} W; {lo:.0}-{hi:.0} W expected at this dimming.");
    state.description_zh = format!("路燈功率 {w:.0} W，正常範圍 {lo:.0}-{hi:.0} W。");
    state.value = Some(w);
    state.unit = Some("W".into());
    state.details.insert("measured_power_w".into(), json!(w));
    state.details.insert("expected_power_w".into(), json!((expected * 10.0).round() / 10.0));
    state.details.insert("expected_band_w".into(), json!([(lo * 10.0).round() / 10.0, (hi * 10.0).round() / 10.0]));
    state.details.insert("dim_pct".into(), json!(r.dim_pct));
    state.evidence.push(Evidence { sensor_id: obs.sensor_id.clone(), ts: obs.ts, name: "power_w".into(), value: w });
    out.push(Assessment { key, at: obs.ts, verdict: Verdict::Active(state) });
}

fn fault(lamp: &mut Lamp, t: &TicketCx<'_>, obs: &Observation, out: &mut Vec<Assessment>) {
    let key = AlertKey::sensor(RuleId::LampFault, &obs.sensor_id);
    match t.rules.fault_code(obs) {
        Some(code) => {
            lamp.fault_clean = 0;
            if lamp.fault.as_ref().is_some_and(|(open, _)| **open == *code) {
                return;
            }
            // A new code on an open fault keeps the ticket's first report time.
            let since = lamp.fault.as_ref().map_or(obs.ts.timestamp(), |(_, s)| *s);
            let reported = DateTime::from_timestamp(since, 0).unwrap_or(obs.ts);
            let mut state = t.state(RuleId::LampFault, "fault", reported);
            state.description_en = format!("The lamp reports vendor fault code {code}.");
            state.description_zh = format!("路燈回報故障碼 {code}。");
            state.details.insert("fault_code".into(), json!(code));
            if let Some(ticket) = state.details.get_mut("ticket").and_then(Value::as_object_mut) {
                ticket.insert("fault_code".into(), json!(code));
            }
            lamp.fault = Some((code.into_boxed_str(), since));
            out.push(Assessment { key, at: obs.ts, verdict: Verdict::Active(state) });
        }
        None if lamp.fault.is_some() => {
            lamp.fault_clean += 1;
            if lamp.fault_clean >= t.rules.fault_clear_readings {
                lamp.fault = None;
                lamp.fault_clean = 0;
                out.push(Assessment { key, at: obs.ts, verdict: Verdict::Clear });
            }
        }
        None => {}
    }
}

/// What a ticket needs to know about the lamp and the city.
struct TicketCx<'a> {
    sensor: &'a Sensor,
    rules: &'a StreetlightRules,
    tz: chrono_tz::Tz,
}

impl TicketCx<'_> {
    /// The alert state with the pole, its place and the dispatch ticket.
    fn state(&self, rule: RuleId, level: &str, reported: DateTime<Utc>) -> AlertState {
        let mut state = state_for(rule, Some(self.sensor), 1, level, Severity::Minor, self.rules.radius_m);
        let pole = pole_id(self.sensor);
        let (lon, lat) = self.sensor.point().map_or((None, None), |(lon, lat)| (Some(lon), Some(lat)));
        let mut d = Map::new();
        d.insert("pole_id".into(), json!(pole));
        d.insert("lon".into(), json!(lon));
        d.insert("lat".into(), json!(lat));
        d.insert("district".into(), json!(self.sensor.district));
        d.insert("ticket".into(), ticket(self, rule, &pole, reported));
        state.details = d;
        state
    }
}

/// The pole's id: `installation.pole_id` when the registry has one (the
/// city's own asset number, painted on the pole), else the sensor id.
fn pole_id(sensor: &Sensor) -> String {
    match sensor.installation.get("pole_id") {
        Some(Value::String(s)) if !s.trim().is_empty() => s.trim().to_string(),
        Some(Value::Number(n)) => n.to_string(),
        _ => sensor.id.clone(),
    }
}

/// The maintenance ticket the city's 1999 dispatch takes, inside
/// `details.ticket` (and so inside every webhook body's `state`):
///
/// | field | meaning |
/// |---|---|
/// | `system` | always `"1999"` (the city hotline's case system) |
/// | `external_ref` | `<rule>:<sensor id>`: stable for the alert's life, the dispatch's de-duplication key |
/// | `category` / `category_zh` | `streetlight` / `路燈` |
/// | `problem` / `problem_zh` | `not_lit` 路燈不亮, `power_abnormal` 路燈功率異常, `fault_code` 路燈故障 |
/// | `pole_id` | the city's pole number (`installation.pole_id`, else the sensor id) |
/// | `sensor_id` | the lamp controller's id in citygauge |
/// | `district`, `address` | from the registry (`installation.address`); `null` when unknown |
/// | `lon`, `lat` | WGS 84 position of the pole |
/// | `reported_at` | when the fault was first detected (RFC 3339, city offset) |
/// | `due_by` | `reported_at` + `response_hours` (Kaohsiung's four-hour rule by default) |
/// | `priority` | `normal` (lamp faults are not emergencies) |
/// | `fault_code` | the vendor's code, for `fault_code` tickets |
fn ticket(t: &TicketCx<'_>, rule: RuleId, pole: &str, reported: DateTime<Utc>) -> Value {
    let (problem, problem_zh) = match rule {
        RuleId::LampOutage => ("not_lit", "路燈不亮"),
        RuleId::LampPower => ("power_abnormal", "路燈功率異常"),
        _ => ("fault_code", "路燈故障"),
    };
    let address = t.sensor.installation.get("address").and_then(Value::as_str);
    let local = |at: DateTime<Utc>| at.with_timezone(&t.tz).to_rfc3339_opts(chrono::SecondsFormat::Secs, false);
    json!({
        "system": "1999",
        "external_ref": format!("{}:{}", rule.as_str(), t.sensor.id),
        "category": "streetlight",
        "category_zh": "路燈",
        "problem": problem,
        "problem_zh": problem_zh,
        "pole_id": pole,
        "sensor_id": t.sensor.id,
        "district": t.sensor.district,
        "address": address,
        "lon": t.sensor.lon,
        "lat": t.sensor.lat,
        "reported_at": local(reported),
        "due_by": local(reported + Duration::hours(t.rules.response_hours)),
        "priority": "normal",
    })
}
