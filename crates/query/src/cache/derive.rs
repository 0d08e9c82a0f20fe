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
    /// Air stations: the indicative AQI of a usable reading.
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
            let (value, unit) = match &rain {
                Some(windows) => (entry.latest.as_ref().and(windows[1].1.mm).map(view::round3), "mm"),
                None => view::primary_value(entry, now),
            };
            Derived {
                meta: entry.meta.clone(),
                latest: entry.latest.clone(),
                state: view::state(entry, now, cache.stale_factor),
                level: view::level(entry, now, cache.wet_min_cm, rain.as_ref()),
                aqi: (entry.meta.kind == Kind::AirQuality)
                    .then(|| entry.latest.as_deref().filter(|l| l.quality != QualityLevel::Bad).and_then(view::aqi_of))
                    .flatten(),
                rain,
                value,
                unit,
                energy_today_kwh: entry.energy_today(now, cache.tz),
            }
        })
        .collect();
    Snapshot { now, sensors, districts: data.districts.clone() }
}
