//! What each sensor's figures are at one instant, derived once per summary
//! build under a short read lock and then shared by the overview, the
//! district summaries and the map layers (so they cannot disagree, and the
//! lock is not held while anything is serialised).

use std::collections::BTreeSet;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use citygauge_domain::rain_window::{Accumulation, Window};
use citygauge_domain::{Kind, QualityLevel};

use super::view::{self, Level, State};
use super::{Cache, Latest, SensorMeta};

/// One sensor at `now`.
#[derive(Debug, Clone)]
pub struct Derived {
    pub meta: Arc<SensorMeta>,
    pub latest: Option<Arc<Latest>>,
    pub state: State,
    pub level: Option<Level>,
    /// Rain gauges: the accumulations of the four windows.
    pub rain: Option<[(Window, Accumulation); 4]>,
    /// Air stations: the AQI of the 12 h/4 h moving averages.
    pub aqi: Option<u32>,
    /// The kind's primary figure for map layers, and its unit.
    pub value: Option<f64>,
    pub unit: &'static str,
    /// Streetlights: the meter's advance since the city's midnight, kWh.
    pub energy_today_kwh: Option<f64>,
}

impl Derived {
    /// Silent past its expected interval: its last value is history, not
    /// the current hazard, and summaries count it apart.
    pub fn is_stale(&self) -> bool {
        self.state == State::Stale
    }

    /// The latest reading unless it was flagged `bad`.
    pub fn usable(&self) -> Option<&Latest> {
        self.latest.as_deref().filter(|l| l.quality != QualityLevel::Bad)
    }
}

/// Every sensor in id order, and the district names.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub now: DateTime<Utc>,
    pub sensors: Vec<Derived>,
    pub districts: BTreeSet<String>,
}

/// Derives every sensor's figures at `now` (the clock is a parameter so
/// tests can move it).
pub fn snapshot(cache: &Cache, now: DateTime<Utc>) -> Snapshot {
    let data = cache.read();
    let sensors = data
        .sensors
        .values()
        .map(|entry| {
            let rain = (entry.meta.kind == Kind::Rainfall).then(|| view::rain_windows(entry, now));
            // Averaged once here; level and value reuse it.
            let aqi = (entry.meta.kind == Kind::AirQuality)
                .then(|| entry.latest.as_ref().and_then(|_| view::station_aqi(entry, now)))
                .flatten();
            let (value, unit) = match (&rain, entry.meta.kind) {
                (Some(windows), _) => (entry.latest.as_ref().and(windows[1].1.mm).map(view::round3), "mm"),
                (None, Kind::AirQuality) => (aqi.map(f64::from), "aqi"),
                (None, _) => view::primary_value(entry, now),
            };
            let level = match entry.meta.kind {
                Kind::AirQuality => view::air_level(aqi),
                _ => view::level(entry, now, cache.wet_min_cm, rain.as_ref()),
            };
            Derived {
                meta: entry.meta.clone(),
                latest: entry.latest.clone(),
                state: view::state(entry, now, cache.stale_factor),
                level,
                aqi,
                rain,
                value,
                unit,
                energy_today_kwh: entry.energy_today(now, cache.tz),
            }
        })
        .collect();
    Snapshot { now, sensors, districts: data.districts.clone() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::{CacheData, SensorMeta};
    use chrono::{Duration, TimeZone};
    use citygauge_domain::aqi::AqiCategory;
    use citygauge_domain::SensorStatus;
    use citygauge_store::changes::ChangedReading;

    const STATION: &str = "kh-aq-0001";

    fn air(ts: DateTime<Utc>, pm2_5: f64, quality: QualityLevel) -> ChangedReading {
        let values = serde_json::json!({"pm2_5_ugm3": pm2_5, "pm10_ugm3": 20.0});
        ChangedReading {
            kind: Kind::AirQuality,
            sensor_id: STATION.into(),
            ts,
            quality,
            quality_reasons: Vec::new(),
            values: values.as_object().cloned().unwrap_or_default(),
        }
    }

    fn station_cache() -> Cache {
        let cache = Cache::new(chrono_tz::Asia::Taipei, 3.0, 1.0);
        let meta = SensorMeta {
            district: Some("Sanmin".into()),
            status: SensorStatus::Active,
            expected_interval_s: 60,
            ..SensorMeta::placeholder(STATION, Kind::AirQuality)
        };
        cache.update(|d: &mut CacheData| d.set_registry(vec![meta]));
        cache
    }

    #[test]
    fn minute_readings_around_a_band_edge_do_not_flip_the_category() {
        // PM2.5 alternating 28 and 32 µg/m³ every minute: the latest value
        // is moderate, then unhealthy for sensitive groups, then moderate...
        let (cache, tz) = (station_cache(), chrono_tz::Asia::Taipei);
        let t0 = Utc.with_ymd_and_hms(2026, 11, 30, 0, 0, 0).unwrap();
        let pm = |minute: i64| if minute % 2 == 0 { 28.0 } else { 32.0 };
        let mut seen = std::collections::BTreeSet::new();
        for minute in 0..15 * 60 {
            let now = t0 + Duration::minutes(minute);
            cache.update(|d| d.apply(&air(now, pm(minute), QualityLevel::Good), now, tz));
            let snapshot = snapshot(&cache, now);
            let station = &snapshot.sensors[0];
            let latest = station.latest.as_deref().unwrap();
            assert_eq!(latest.number("pm2_5_ugm3"), Some(pm(minute)), "the values stay the raw latest ones");
            let entry_level = view::level(&cache.read().sensors[STATION], now, 1.0, None);
            assert_eq!(station.level, entry_level, "the stream and the summaries agree");
            if minute < 5 * 60 {
                assert_eq!((station.aqi, station.level), (None, None), "{minute}: too few hours yet");
                continue;
            }
            assert_eq!(station.value, station.aqi.map(f64::from));
            seen.insert(station.level);
        }
        assert_eq!(seen, [Some(Level::Air(AqiCategory::Moderate))].into(), "30 on average: moderate throughout");
        // Kept to the long window.
        let kept = cache.read().sensors[STATION].air.len() as i64;
        assert!(kept <= 12 * 60 + 16, "{kept}");
        // A bad reading is left out of the averages and does not blank the level.
        let now = t0 + Duration::minutes(15 * 60);
        cache.update(|d| d.apply(&air(now, 900.0, QualityLevel::Bad), now, tz));
        assert_eq!(snapshot(&cache, now).sensors[0].level, Some(Level::Air(AqiCategory::Moderate)));
    }
}
