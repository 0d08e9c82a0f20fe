//! The settings of each health check, and the flat-line detectors: a water
//! level or flood depth that repeats the same value, and a rain gauge that
//! reports no rain for an hour while its district's other gauges report
//! heavy rain.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use citygauge_domain::rain_window::{accumulate_iter, RainInterval};
use serde::{Deserialize, Serialize};

use crate::engine::debounce::Confirm;
use crate::engine::water::support;
use crate::AlertError;

/// Rule `sensor_flatline` (section `health.flatline`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FlatlineRules {
    pub enabled: bool,
    /// Water level / flood depth: at least this many consecutive readings
    /// within the epsilon...
    pub readings: u32,
    /// ...spanning at least this long (a river stage measured to the
    /// millimetre does not hold still for an hour; a storm makes that blind
    /// hour costly, so not longer).
    pub min_duration_s: i64,
    /// Same value for `level_m`, metres (a radar gauge's resolution).
    pub epsilon_m: f64,
    /// Same value for `depth_cm`, centimetres.
    pub epsilon_cm: f64,
    /// A road sensor at or below this depth is a dry road, which may read
    /// the same for weeks: not flat-lined.
    pub dry_cm: f64,
    /// Rain gauges: no rain for `rain_window_s` while another gauge of the
    /// district has `rain_district_mm` or more in the same window.
    pub rain_enabled: bool,
    pub rain_window_s: i64,
    /// Well above what a working gauge could miss (CWA heavy rain is 40 mm/h).
    pub rain_district_mm: f64,
    /// Leaving a flat line needs this many readings that move.
    pub confirm: Confirm,
}

impl Default for FlatlineRules {
    fn default() -> FlatlineRules {
        FlatlineRules {
            enabled: true,
            readings: 6,
            min_duration_s: 3_600,
            epsilon_m: 0.001,
            epsilon_cm: 0.1,
            dry_cm: 1.0,
            rain_enabled: true,
            rain_window_s: 3_600,
            rain_district_mm: 20.0,
            confirm: Confirm { raise_readings: 1, clear_readings: 3, clear_dwell_s: 0 },
        }
    }
}

impl FlatlineRules {
    pub fn validate(&self, path: &str) -> Result<(), AlertError> {
        if self.readings < 2 {
            return Err(AlertError::invalid(format!("{path}.readings"), "must be at least 2"));
        }
        support::seconds(path, "min_duration_s", self.min_duration_s, 7 * 86_400)?;
        support::non_negative(path, "epsilon_m", self.epsilon_m)?;
        support::non_negative(path, "epsilon_cm", self.epsilon_cm)?;
        support::non_negative(path, "dry_cm", self.dry_cm)?;
        support::seconds(path, "rain_window_s", self.rain_window_s, 86_400)?;
        support::positive(path, "rain_district_mm", self.rain_district_mm)?;
        self.confirm.validate(&format!("{path}.confirm"))
    }
}

/// Rule `sensor_out_of_range` (ingest's `out_of_range:*`, bad readings).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OutOfRangeRules {
    pub enabled: bool,
    /// Raised on the first bad reading; cleared after three in-range
    /// readings over at least 10 min.
    pub confirm: Confirm,
}

impl Default for OutOfRangeRules {
    fn default() -> OutOfRangeRules {
        OutOfRangeRules { enabled: true, confirm: Confirm { raise_readings: 1, clear_readings: 3, clear_dwell_s: 600 } }
    }
}

/// Rule `sensor_spike` (ingest's `spike:*`, suspect readings).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SpikeRules {
    pub enabled: bool,
    /// Spikes within `window_s` that raise the alert. The sensor is suspect
    /// from its first spike (hazards ignore it) until `quiet_s` without one.
    pub count: u32,
    pub window_s: i64,
    /// Cleared (and trusted again) after this long without a spike.
    pub quiet_s: i64,
}

impl Default for SpikeRules {
    fn default() -> SpikeRules {
        SpikeRules { enabled: true, count: 2, window_s: 3_600, quiet_s: 1_800 }
    }
}

impl OutOfRangeRules {
    pub fn validate(&self, path: &str) -> Result<(), AlertError> {
        self.confirm.validate(&format!("{path}.confirm"))
    }
}

impl SpikeRules {
    pub fn validate(&self, path: &str) -> Result<(), AlertError> {
        support::at_least_one(path, "count", self.count)?;
        support::seconds(path, "window_s", self.window_s, 7 * 86_400)?;
        support::seconds(path, "quiet_s", self.quiet_s, 7 * 86_400)
    }
}

/// A run of readings within epsilon of each other.
#[derive(Debug, Clone, Default)]
pub(super) struct Run {
    start: Option<DateTime<Utc>>,
    min: f64,
    max: f64,
    count: u32,
}

impl Run {
    /// Adds a reading; `true` when the run is a flat line now.
    pub fn push(&mut self, at: DateTime<Utc>, value: f64, epsilon: f64, rules: &FlatlineRules) -> bool {
        let (min, max) = (self.min.min(value), self.max.max(value));
        if self.start.is_some() && max - min <= epsilon {
            self.min = min;
            self.max = max;
            self.count += 1;
        } else {
            *self = Run { start: Some(at), min: value, max: value, count: 1 };
        }
        let span = self.start.map_or(0, |s| (at - s).num_seconds());
        self.count >= rules.readings && span >= rules.min_duration_s
    }

    pub fn since(&self) -> Option<DateTime<Utc>> {
        self.start
    }

    pub fn value(&self) -> f64 {
        (self.min + self.max) / 2.0
    }
}

/// Recent rain of one gauge, for the dry-gauge check.
#[derive(Debug, Clone, Default)]
pub(super) struct RainLog {
    pub district: Option<String>,
    pub interval_s: i64,
    readings: BTreeMap<DateTime<Utc>, (f64, Option<i64>)>,
}

impl RainLog {
    pub fn push(&mut self, at: DateTime<Utc>, mm: f64, interval_s: Option<i64>, keep_s: i64) {
        self.readings.insert(at, (mm, interval_s));
        self.readings = self.readings.split_off(&(at - Duration::seconds(keep_s)));
    }

    /// Rain over the `window_s` ending at `now`, when the data covers it.
    pub fn complete_sum(&self, now: DateTime<Utc>, window_s: i64) -> Option<f64> {
        let start = now - Duration::seconds(window_s);
        let inside = self.readings.range(start..=now).map(|(ts, (mm, i))| RainInterval {
            ts: *ts,
            rain_mm: *mm,
            interval_s: *i,
        });
        let acc = accumulate_iter(inside, now, window_s, self.interval_s);
        acc.is_complete(self.interval_s).then(|| acc.mm.unwrap_or(0.0))
    }
}

/// The dry-gauge verdicts at `now`: gauge id → `Some(true)` (no rain while
/// the district's wettest other gauge has `rain_district_mm`), `Some(false)`
/// (it reports rain: healthy), `None` (nothing to say).
pub(super) fn dry_gauges(
    logs: &BTreeMap<String, RainLog>,
    now: DateTime<Utc>,
    rules: &FlatlineRules,
) -> BTreeMap<String, Option<bool>> {
    let sums: BTreeMap<&String, (Option<&String>, Option<f64>)> =
        logs.iter().map(|(id, l)| (id, (l.district.as_ref(), l.complete_sum(now, rules.rain_window_s)))).collect();
    sums.iter()
        .map(|(id, (district, sum))| {
            let verdict = match sum {
                Some(mm) if *mm > 0.0 => Some(false),
                Some(_) => {
                    let wet_neighbour = district.is_some_and(|d| {
                        sums.iter().any(|(other, (od, os))| {
                            other != id && *od == Some(d) && os.is_some_and(|mm| mm >= rules.rain_district_mm)
                        })
                    });
                    wet_neighbour.then_some(true)
                }
                None => None,
            };
            ((*id).clone(), verdict)
        })
        .collect()
}
