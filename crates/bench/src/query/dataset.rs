//! The data set, made without going through ingest: the registry (the demo
//! city repeated until there are `--sensors` of them), a recent day of
//! readings for every sensor, and one-minute water levels for the history
//! sensors over `--history-days`. Everything here is I/O-free and
//! deterministic; [`super::load`] stores it.

use chrono::{DateTime, Duration, DurationRound, Timelike, Utc};
use citygauge_domain::registry::file::SensorRecord;
use citygauge_domain::{AirQuality, Kind, Quality, Reading, Streetlight, Values};
use serde_json::Value;

/// The demo city: its mix of kinds, districts, cadences and thresholds.
const DEMO_CITY: &[u8] = include_bytes!("../../../../deploy/demo-city.geojson");

/// A well-mixed 64-bit hash (splitmix64): the data set's only randomness,
/// so two runs store the same rows.
pub fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// A number in [0, 1) from a hash of `(a, b)`.
pub fn unit(a: u64, b: u64) -> f64 {
    (mix(a.wrapping_mul(0x1_0000_01B3) ^ mix(b)) >> 11) as f64 / (1u64 << 53) as f64
}

/// `n` sensors: the demo city's first, then copies of it with ids suffixed
/// `-c1`, `-c2`, ..., places moved by up to ~200 m, and no device EUI (which
/// must stay unique).
pub fn sensors(n: usize) -> anyhow::Result<Vec<SensorRecord>> {
    let template = citygauge_domain::registry::file::parse_geojson(DEMO_CITY)?;
    Ok((0..n)
        .map(|i| {
            let copy = i / template.len();
            let mut record = template[i % template.len()].clone();
            if copy > 0 {
                record.id = format!("{}-c{copy}", record.id);
                record.name = record.name.map(|name| format!("{name} ({copy})"));
                record.location = record.location.map(|(lon, lat)| {
                    (lon + (unit(i as u64, 1) - 0.5) * 0.004, lat + (unit(i as u64, 2) - 0.5) * 0.004)
                });
                record.dev_eui = None;
                record.device_profile = None;
            }
            record
        })
        .collect())
}

/// The sensors that get a long one-minute history: the first `n` water-level
/// gauges (rivers, drainage and sewers of the demo city).
pub fn history_sensors(sensors: &[SensorRecord], n: usize) -> Vec<String> {
    sensors.iter().filter(|s| s.kind == Kind::WaterLevel).take(n).map(|s| s.id.clone()).collect()
}

/// One minute's level of history sensor `sensor` (its index among them):
/// a seasonal swing, a tide-like daily cycle and a little noise.
pub fn history_level(sensor: usize, minute: i64) -> f64 {
    use std::f64::consts::TAU;
    let phase = sensor as f64 * 0.37;
    let season = (TAU * minute as f64 / 525_600.0 + phase).sin();
    let day = (TAU * minute as f64 / 1_440.0 + phase).sin();
    let noise = unit(sensor as u64, minute as u64) - 0.5;
    ((0.8 + 0.4 * season + 0.15 * day + 0.02 * noise) * 1000.0).round() / 1000.0
}

/// Where a sensor's latest reading stands: most report on time, a few are
/// late (`stale`) and a few have never reported (`no_data`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recency {
    OnTime,
    Stale,
    NoData,
}

pub fn recency(index: usize) -> Recency {
    match mix(index as u64 ^ 0xD00D) % 100 {
        0 | 1 => Recency::NoData,
        2..=4 => Recency::Stale,
        _ => Recency::OnTime,
    }
}

fn cadence_s(record: &SensorRecord) -> i64 {
    record.installation.get("cadence_s").and_then(Value::as_i64).unwrap_or(600).max(60)
}

fn threshold(record: &SensorRecord, key: &str) -> Option<f64> {
    record.thresholds.get(key).and_then(Value::as_f64)
}

/// The last 24 h of each sensor that reports, as of `now`: every 10 minutes
/// for rain gauges and air stations (their summaries aggregate over windows),
/// one latest reading for the others. History sensors get one reading at
/// `now`, after their history. Values put a few sensors of each kind above
/// their thresholds, so every summary has something to say.
pub fn recent_readings(sensors: &[SensorRecord], history: &[String], now: DateTime<Utc>) -> Vec<Reading> {
    let mut readings = Vec::new();
    let ten_minutes = now.duration_trunc(Duration::minutes(10)).unwrap_or(now);
    for (i, record) in sensors.iter().enumerate() {
        let key = i as u64;
        let is_history = history.contains(&record.id);
        let recency = if is_history { Recency::OnTime } else { recency(i) };
        let cadence = cadence_s(record);
        let latest = match recency {
            Recency::NoData => continue,
            Recency::Stale => now - Duration::seconds(cadence * 5),
            Recency::OnTime if is_history => now,
            Recency::OnTime => now - Duration::seconds((unit(key, 3) * cadence as f64 * 0.8) as i64),
        };
        match record.kind {
            Kind::Rainfall | Kind::AirQuality => {
                // A day of readings ending at the latest one.
                let last = ten_minutes.min(latest);
                for step in 0..144 {
                    let ts = last - Duration::minutes(10 * step);
                    readings.push(reading(record, i, ts, step));
                }
            }
            _ => readings.push(reading(record, i, latest, 0)),
        }
    }
    readings
}

/// One reading of `record` (sensor number `i`) at `ts`; `step` counts back
/// from the latest.
pub fn reading(record: &SensorRecord, i: usize, ts: DateTime<Utc>, step: i64) -> Reading {
    let key = i as u64;
    let r = unit(key, 10 + step as u64);
    let values = match record.kind {
        Kind::Rainfall => {
            // Storms over a quarter of the gauges, heavier in the last hours.
            let storm = unit(key, 4) < 0.25;
            let rain =
                if storm && step < 36 { (r * 12.0 * (1.0 - step as f64 / 36.0) * 10.0).round() / 10.0 } else { 0.0 };
            Values::Rainfall { rain_mm: rain, interval_s: Some(600) }
        }
        Kind::WaterLevel => {
            let level = match (threshold(record, "warning_3_m"), threshold(record, "high_m")) {
                (Some(w3), _) => w3 * (0.4 + 0.8 * unit(key, 5)),
                (None, Some(high)) => high * (0.3 + 0.9 * unit(key, 5)),
                _ => 1.0,
            };
            Values::WaterLevel { level_m: (level * 1000.0).round() / 1000.0 }
        }
        Kind::FloodDepth => {
            let depth = match unit(key, 6) {
                u if u < 0.85 => 0.0,
                u if u < 0.95 => 2.0 + 7.0 * r,
                u if u < 0.99 => 10.0 + 19.0 * r,
                _ => 30.0 + 20.0 * r,
            };
            Values::FloodDepth { depth_cm: (depth * 10.0).round() / 10.0 }
        }
        Kind::AirQuality => {
            let base = 8.0 + 60.0 * unit(key, 7);
            Values::AirQuality(AirQuality {
                pm2_5_ugm3: Some(((base * (0.8 + 0.4 * r)) * 10.0).round() / 10.0),
                pm10_ugm3: Some((base * 1.6 * (0.8 + 0.4 * r)).round()),
                o3_ppb: Some((20.0 + 30.0 * r).round()),
                no2_ppb: Some((10.0 + 20.0 * r).round()),
                co_ppm: Some(((0.2 + 0.5 * r) * 100.0).round() / 100.0),
                so2_ppb: Some((1.0 + 4.0 * r).round()),
                temp_c: Some(((24.0 + 6.0 * r) * 10.0).round() / 10.0),
                rh_pct: Some((60.0 + 30.0 * r).round()),
            })
        }
        Kind::Streetlight => {
            // Lamps are on between 18:00 and 06:00 in Taiwan (UTC+8).
            let hour = (ts.hour() + 8) % 24;
            let on = !(6..18).contains(&hour);
            let rated = record.installation.get("rated_w").and_then(Value::as_f64).unwrap_or(80.0);
            let fault = (unit(key, 8) < 0.02).then(|| "E07".to_string());
            Values::Streetlight(Streetlight {
                lamp_on: Some(on && fault.is_none()),
                dim_pct: Some(if on { 100.0 } else { 0.0 }),
                power_w: Some(if on && fault.is_none() {
                    (rated * (0.95 + 0.1 * r) * 10.0).round() / 10.0
                } else {
                    0.0
                }),
                energy_kwh: Some((1000.0 + 2000.0 * unit(key, 9)).round()),
                voltage_v: Some(220.0),
                current_a: Some(if on { (rated / 220.0 * 100.0).round() / 100.0 } else { 0.0 }),
                fault,
            })
        }
    };
    Reading { sensor_id: record.id.clone(), ts, values, quality: Quality::default() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sensors_repeat_the_demo_city_with_unique_ids() {
        let all = sensors(10_000).unwrap();
        assert_eq!(all.len(), 10_000);
        let ids: std::collections::HashSet<&str> = all.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(ids.len(), 10_000);
        let euis: Vec<&String> = all.iter().filter_map(|s| s.dev_eui.as_ref()).collect();
        let unique: std::collections::HashSet<&&String> = euis.iter().collect();
        assert_eq!(euis.len(), unique.len());
        let districts: std::collections::HashSet<&str> = all.iter().filter_map(|s| s.district.as_deref()).collect();
        assert_eq!(districts.len(), 18);
        assert!(all.iter().all(|s| citygauge_domain::registry::validate_sensor_id(&s.id).is_ok()));
    }

    #[test]
    fn history_sensors_are_water_level_gauges() {
        let all = sensors(3_000).unwrap();
        let history = history_sensors(&all, 100);
        assert_eq!(history.len(), 100);
        assert!(history.iter().all(|id| all.iter().any(|s| &s.id == id && s.kind == Kind::WaterLevel)));
        let level = history_level(3, 12_345);
        assert!((0.0..2.0).contains(&level) && level == history_level(3, 12_345));
    }

    #[test]
    fn recent_readings_cover_every_kind_and_leave_some_sensors_silent() {
        let all = sensors(2_375).unwrap();
        let now = DateTime::parse_from_rfc3339("2026-11-30T12:34:56Z").unwrap().with_timezone(&Utc);
        let history = history_sensors(&all, 10);
        let readings = recent_readings(&all, &history, now);
        for kind in Kind::ALL {
            assert!(readings.iter().any(|r| r.kind() == kind), "{kind}");
        }
        let reporting: std::collections::HashSet<&str> = readings.iter().map(|r| r.sensor_id.as_str()).collect();
        assert!(reporting.len() < all.len() && reporting.len() > all.len() * 9 / 10);
        assert!(readings.iter().all(|r| r.ts <= now && r.ts > now - Duration::hours(26)));
        assert!(readings.iter().any(|r| r.sensor_id == history[0] && r.ts == now));
        // Unique (sensor, ts), as the tables require.
        let keys: std::collections::HashSet<(&str, DateTime<Utc>)> =
            readings.iter().map(|r| (r.sensor_id.as_str(), r.ts)).collect();
        assert_eq!(keys.len(), readings.len());
    }
}
