//! Air quality: Taiwan AQI category per station (MOENV moving averages) and hot spots.
//!
//! - `air_quality`: the station's AQI from PM2.5 and PM10 as MOENV computes
//!   it ([`citygauge_domain::aqi`]: 0.5 × 12 h mean + 0.5 × 4 h mean, 2025
//!   breakpoints). Raised from "unhealthy for sensitive groups" (AQI 101)
//!   by default; the grade follows the category (1 sensitive groups,
//!   2 unhealthy, 3 very unhealthy, 4 hazardous), with a margin on the AQI
//!   and confirming readings so a station on a band edge does not flap.
//! - `air_hotspot`: a station far above the other stations of its district
//!   (by default its PM2.5 mean over the last hour at least twice their
//!   median and 15 µg/m³ above it, with at least three others reporting).
//!   A one-hour mean rather than MOENV's 12 h blend, so a hot spot (a fire,
//!   a construction site, a truck depot) shows within the hour.
//!
//! Only good readings of trusted sensors enter the averages. A flagged or
//! suspect reading that would have raised or escalated an alert yields a
//! `suppressed` verdict instead, once per grade.

use std::collections::{HashMap, VecDeque};

use chrono::{DateTime, Duration, Utc};
use citygauge_domain::aqi::{moving_averages, AqiCategory, PmReading, LONG_HOURS};
use citygauge_domain::Kind;
use serde_json::json;

use super::debounce::{Ladder, Tracker};
use super::{state_for, Assessment, Context, Verdict};
use crate::model::{AlertKey, AlertState, Evidence, Observation, RuleId, Sensor, Severity};

mod settings;

pub use settings::{AirRules, HotspotRules};

/// One station: its last 12 h of good readings and its two trackers.
#[derive(Debug, Default)]
struct Station {
    district: Option<String>,
    readings: VecDeque<PmReading>,
    aqi: Tracker,
    /// Highest grade a suppressed verdict was emitted for since the last change.
    aqi_suppressed: u8,
    hot: Tracker,
    hot_suppressed: bool,
    /// The PM2.5 window mean at the last good reading, and that reading's time.
    recent: Option<(f64, DateTime<Utc>)>,
}

/// This family's state across readings.
#[derive(Debug, Default)]
pub struct Air {
    stations: HashMap<String, Station>,
    /// Station ids per district, for the hot-spot medians.
    districts: HashMap<String, Vec<String>>,
    last_prune: Option<DateTime<Utc>>,
}

impl Air {
    pub fn observe(&mut self, cx: &Context<'_>, obs: &Observation, out: &mut Vec<Assessment>) {
        if obs.kind != Kind::AirQuality {
            return;
        }
        let Some(sensor) = cx.sensor(&obs.sensor_id) else { return };
        let rules = &cx.rules_for(&obs.sensor_id).air;
        let reading =
            PmReading { ts: obs.ts, pm2_5_ugm3: obs.number("pm2_5_ugm3"), pm10_ugm3: obs.number("pm10_ugm3") };
        if reading.pm2_5_ugm3.is_none() && reading.pm10_ugm3.is_none() {
            return;
        }
        self.register(sensor);
        let median = self.neighbour_median(cx, sensor, obs.ts);
        let Some(station) = self.stations.get_mut(&sensor.id) else { return };
        if !rules.enabled {
            for (rule, open) in
                [(RuleId::AirQuality, station.aqi.grade > 0), (RuleId::AirHotspot, station.hot.grade > 0)]
            {
                if open {
                    out.push(Assessment {
                        key: AlertKey::sensor(rule, &sensor.id),
                        at: obs.ts,
                        verdict: Verdict::Clear,
                    });
                }
            }
            station.aqi = Tracker::default();
            station.hot = Tracker::default();
            return;
        }
        if let Some(by) = super::water::support::distrust(cx, obs) {
            suppress(station, sensor, rules, reading, median, &by, out);
            return;
        }
        // A redelivered or late reading would count twice in the averages
        // (or out of order) and confirm a grade twice: the averages move
        // with the station's clock only.
        if station.readings.back().is_some_and(|r| r.ts >= obs.ts) {
            return;
        }
        let cutoff = obs.ts - Duration::hours(LONG_HOURS as i64);
        while station.readings.front().is_some_and(|r| r.ts <= cutoff) {
            station.readings.pop_front();
        }
        station.readings.push_back(reading);
        station.recent = window_mean(station.readings.iter(), obs.ts, &rules.hotspot).map(|m| (m, obs.ts));
        assess_aqi(station, sensor, rules, obs.ts, out);
        if rules.hotspot.enabled {
            assess_hotspot(station, sensor, rules, obs.ts, median, out);
        }
    }

    pub fn tick(&mut self, cx: &Context<'_>, now: DateTime<Utc>, out: &mut Vec<Assessment>) {
        let _ = (cx, out);
        // Hourly: forget stations silent for 12 h with nothing open (their
        // averages are gone anyway). Alerts stay open on silence: a silent
        // sensor is the health rules' business, not clean air.
        if self.last_prune.is_some_and(|t| now - t < Duration::hours(1)) {
            return;
        }
        self.last_prune = Some(now);
        let cutoff = now - Duration::hours(LONG_HOURS as i64);
        self.stations
            .retain(|_, s| s.aqi.grade > 0 || s.hot.grade > 0 || s.readings.back().is_some_and(|r| r.ts > cutoff));
        let stations = &self.stations;
        for ids in self.districts.values_mut() {
            ids.retain(|id| stations.contains_key(id));
        }
        self.districts.retain(|_, ids| !ids.is_empty());
    }

    fn register(&mut self, sensor: &Sensor) {
        let station = self.stations.entry(sensor.id.clone()).or_default();
        if station.district == sensor.district && !station.readings.is_empty() {
            return;
        }
        if let Some(old) = station.district.take() {
            if let Some(ids) = self.districts.get_mut(&old) {
                ids.retain(|id| *id != sensor.id);
            }
        }
        station.district = sensor.district.clone();
        if let Some(d) = &sensor.district {
            let ids = self.districts.entry(d.clone()).or_default();
            if !ids.contains(&sensor.id) {
                ids.push(sensor.id.clone());
            }
        }
    }

    /// The median PM2.5 mean of the district's other stations that are
    /// current and trusted, with how many there are.
    fn neighbour_median(&self, cx: &Context<'_>, sensor: &Sensor, at: DateTime<Utc>) -> Option<(f64, usize)> {
        let rules = &cx.rules_for(&sensor.id).air.hotspot;
        let ids = self.districts.get(sensor.district.as_deref()?)?;
        let fresh = at - Duration::minutes(rules.fresh_min);
        let mut means: Vec<f64> = ids
            .iter()
            .filter(|id| **id != sensor.id && cx.suspect(id).is_none())
            .filter_map(|id| self.stations.get(id)?.recent)
            .filter(|(_, ts)| *ts > fresh && *ts <= at + Duration::minutes(rules.fresh_min))
            .map(|(m, _)| m)
            .collect();
        if means.len() < rules.min_neighbours {
            return None;
        }
        means.sort_by(f64::total_cmp);
        let n = means.len();
        let median = if n % 2 == 1 { means[n / 2] } else { (means[n / 2 - 1] + means[n / 2]) / 2.0 };
        Some((median, n))
    }
}

/// The mean PM2.5 over the hot-spot window ending at `at`.
fn window_mean<'a>(
    readings: impl DoubleEndedIterator<Item = &'a PmReading>,
    at: DateTime<Utc>,
    rules: &HotspotRules,
) -> Option<f64> {
    let start = at - Duration::minutes(rules.window_min);
    let values: Vec<f64> =
        readings.rev().take_while(|r| r.ts > start).filter(|r| r.ts <= at).filter_map(|r| r.pm2_5_ugm3).collect();
    (values.len() >= rules.min_readings).then(|| values.iter().sum::<f64>() / values.len() as f64)
}

/// `value - bar`, where the bar is the hot-spot threshold over `median`.
fn hot_excess(rules: &HotspotRules, mean: f64, median: f64) -> f64 {
    mean - (median * rules.ratio).max(median + rules.min_excess_ugm3)
}

fn assess_aqi(station: &mut Station, sensor: &Sensor, rules: &AirRules, at: DateTime<Utc>, out: &mut Vec<Assessment>) {
    let ma = moving_averages(station.readings.iter().copied(), at);
    // Too few hours for MOENV's figure (a new or long-silent station): no evidence either way.
    let Some(aqi) = ma.aqi() else { return };
    let before = station.aqi.grade;
    let grade = station.aqi.observe(at, rules.grade(aqi, before), &rules.confirm);
    if grade != before {
        station.aqi_suppressed = 0;
    }
    let key = AlertKey::sensor(RuleId::AirQuality, &sensor.id);
    if grade == 0 {
        if before > 0 {
            out.push(Assessment { key, at, verdict: Verdict::Clear });
        }
        return;
    }
    // Re-sent on every reading while open: the engine keeps the newest AQI
    // and evidence, and decides only when the grade moves.
    let state = aqi_state(sensor, rules, grade, aqi, ma.pm2_5_ugm3, ma.pm10_ugm3, at);
    out.push(Assessment { key, at, verdict: Verdict::Active(state) });
}

fn assess_hotspot(
    station: &mut Station,
    sensor: &Sensor,
    rules: &AirRules,
    at: DateTime<Utc>,
    median: Option<(f64, usize)>,
    out: &mut Vec<Assessment>,
) {
    // Without enough neighbours (or a mean of its own) there is nothing to
    // compare: no evidence either way.
    let (Some((mean, _)), Some((median, n))) = (station.recent, median) else { return };
    let h = &rules.hotspot;
    let ladder = Ladder { thresholds: vec![0.0], margin: h.margin_ugm3 };
    let before = station.hot.grade;
    let grade = station.hot.observe(at, ladder.grade(hot_excess(h, mean, median), before), &h.confirm);
    if grade != before {
        station.hot_suppressed = false;
    }
    let key = AlertKey::sensor(RuleId::AirHotspot, &sensor.id);
    if grade == 0 {
        if before > 0 {
            out.push(Assessment { key, at, verdict: Verdict::Clear });
        }
        return;
    }
    out.push(Assessment { key, at, verdict: Verdict::Active(hotspot_state(sensor, h, mean, median, n, at)) });
}

/// A flagged or distrusted reading: would it have raised or escalated?
fn suppress(
    station: &mut Station,
    sensor: &Sensor,
    rules: &AirRules,
    reading: PmReading,
    median: Option<(f64, usize)>,
    by: &str,
    out: &mut Vec<Assessment>,
) {
    let at = reading.ts;
    let ma = moving_averages(station.readings.iter().copied().chain([reading]), at);
    if let Some(aqi) = ma.aqi() {
        let grade = rules.grade(aqi, station.aqi.grade);
        if grade > station.aqi.grade && grade > station.aqi_suppressed {
            station.aqi_suppressed = grade;
            let mut state = aqi_state(sensor, rules, grade, aqi, ma.pm2_5_ugm3, ma.pm10_ugm3, at);
            state.details.insert("suppressed_by".into(), json!(by));
            let key = AlertKey::sensor(RuleId::AirQuality, &sensor.id);
            out.push(Assessment { key, at, verdict: Verdict::Suppressed(state) });
        }
    }
    if !rules.hotspot.enabled || station.hot.grade > 0 || station.hot_suppressed {
        return;
    }
    let with = station.readings.iter().chain(std::iter::once(&reading));
    if let (Some(mean), Some((median, n))) = (window_mean(with, at, &rules.hotspot), median) {
        if hot_excess(&rules.hotspot, mean, median) >= 0.0 {
            station.hot_suppressed = true;
            let mut state = hotspot_state(sensor, &rules.hotspot, mean, median, n, at);
            state.details.insert("suppressed_by".into(), json!(by));
            let key = AlertKey::sensor(RuleId::AirHotspot, &sensor.id);
            out.push(Assessment { key, at, verdict: Verdict::Suppressed(state) });
        }
    }
}

/// Names, severity and MOENV's activity advice (空氣品質指標活動建議) per grade.
fn category_text(grade: u8) -> (AqiCategory, &'static str, &'static str, Severity, &'static str, &'static str) {
    match grade {
        1 => (
            AqiCategory::UnhealthySensitive,
            "unhealthy for sensitive groups",
            "對敏感族群不健康",
            Severity::Minor,
            "People with heart or lung disease, children and older adults should reduce outdoor activity and \
             heavy exertion, and wear a mask outdoors. Anyone with sore eyes, coughing or a sore throat should \
             consider reducing outdoor activity.",
            "有心臟、呼吸道及心血管疾病患者、孩童及老年人，建議減少體力消耗活動及戶外活動，必要外出應配戴口罩。\
             一般民眾如有眼痛、咳嗽或喉嚨痛等不適，應考慮減少戶外活動。",
        ),
        2 => (
            AqiCategory::Unhealthy,
            "unhealthy",
            "對所有族群不健康",
            Severity::Moderate,
            "Everyone should reduce outdoor activity and heavy exertion and wear a mask outdoors; sensitive \
             groups should stay indoors.",
            "一般民眾應減少體力消耗活動及戶外活動，必要外出應配戴口罩；敏感性族群應留在室內。",
        ),
        3 => (
            AqiCategory::VeryUnhealthy,
            "very unhealthy",
            "非常不健康",
            Severity::Severe,
            "Everyone should avoid outdoor activity; sensitive groups should stay indoors and avoid exertion.",
            "一般民眾應減少戶外活動，敏感性族群應留在室內並減少體力消耗活動。",
        ),
        _ => (
            AqiCategory::Hazardous,
            "hazardous",
            "危害",
            Severity::Extreme,
            "Everyone should stay indoors with doors and windows closed; wear a mask if you must go out.",
            "一般民眾應避免戶外活動，室內應緊閉門窗，必要外出應配戴口罩等防護用具；敏感性族群應留在室內並避免體力消耗活動。",
        ),
    }
}

fn aqi_state(
    sensor: &Sensor,
    rules: &AirRules,
    grade: u8,
    aqi: u32,
    pm2_5: Option<f64>,
    pm10: Option<f64>,
    at: DateTime<Utc>,
) -> AlertState {
    let (category, name_en, name_zh, severity, advice_en, advice_zh) = category_text(grade);
    let level = category.as_str();
    let mut state = state_for(RuleId::AirQuality, Some(sensor), grade, level, severity, rules.radius_m);
    state.headline_en = state.headline_en.replacen(&format!(": {level} at"), &format!(": {name_en} at"), 1);
    state.headline_zh = state.headline_zh.replacen(&format!("（{level}）"), &format!("（{name_zh}）"), 1);
    state.description_en = format!("Air quality index {aqi} (MOENV, 12 h/4 h moving averages of PM2.5 and PM10).");
    state.description_zh = format!("空氣品質指標 AQI {aqi}（環境部 PM2.5、PM10 移動平均）。");
    state.instruction_en = advice_en.into();
    state.instruction_zh = advice_zh.into();
    state.value = Some(f64::from(aqi));
    state.unit = Some("AQI".into());
    // Only what changes with the grade: the figures ride in value and evidence.
    state.details.insert("category".into(), json!(level));
    state.details.insert("category_zh".into(), json!(name_zh));
    state.details.insert("method".into(), json!("moenv_2025_pm_moving_average"));
    for (name, value) in [("pm2_5_ma_ugm3", pm2_5), ("pm10_ma_ugm3", pm10), ("aqi", Some(f64::from(aqi)))] {
        if let Some(value) = value {
            let value = (value * 10.0).round() / 10.0;
            state.evidence.push(Evidence { sensor_id: sensor.id.clone(), ts: at, name: name.into(), value });
        }
    }
    state
}

fn hotspot_state(
    sensor: &Sensor,
    rules: &HotspotRules,
    mean: f64,
    median: f64,
    neighbours: usize,
    at: DateTime<Utc>,
) -> AlertState {
    let mut state = state_for(RuleId::AirHotspot, Some(sensor), 1, "hotspot", Severity::Moderate, rules.radius_m);
    state.description_en = format!(
        "PM2.5 {mean:.1} µg/m³ over the last {} min, against a median of {median:.1} at {neighbours} other \
         stations of the district.",
        rules.window_min
    );
    state.description_zh = format!(
        "近 {} 分鐘 PM2.5 平均 {mean:.1} µg/m³，同區其他 {neighbours} 站中位數 {median:.1} µg/m³。",
        rules.window_min
    );
    state.instruction_en = "Check for a local source (burning, construction, idling vehicles).".into();
    state.instruction_zh = "請查察鄰近污染源（露天燃燒、工地、車輛怠速等）。".into();
    state.value = Some((mean * 10.0).round() / 10.0);
    state.unit = Some("µg/m³".into());
    state.details.insert("pollutant".into(), json!("pm2_5"));
    state.details.insert("window_min".into(), json!(rules.window_min));
    for (name, value) in [
        ("pm2_5_window_mean_ugm3", mean),
        ("district_median_pm2_5_ugm3", median),
        ("district_stations", neighbours as f64),
    ] {
        let value = (value * 10.0).round() / 10.0;
        state.evidence.push(Evidence { sensor_id: sensor.id.clone(), ts: at, name: name.into(), value });
    }
    state
}
