//! Rain accumulations over sliding windows, and the CWA rainfall classes.
//!
//! A gauge reading is the rain that fell in the interval ending at its `ts`.
//! The accumulation over a window `(end - w, end]` sums the readings whose
//! `ts` lies inside it, whatever the gauge's reporting interval, so a storm
//! gives the same sums from a one-minute and a ten-minute gauge on windows
//! aligned to both. Coverage says how much of the window the summed intervals
//! account for: a silent gauge is *incomplete*, never "no rain".

use chrono::{DateTime, Duration, Utc};

/// One interval reading of a gauge.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RainInterval {
    pub ts: DateTime<Utc>,
    pub rain_mm: f64,
    /// Length of the interval; `None` when the gauge did not say (the caller's
    /// default cadence is used for coverage).
    pub interval_s: Option<i64>,
}

/// The windows the control room reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Window {
    Min10,
    Hour1,
    Hour3,
    Hour24,
}

impl Window {
    pub const ALL: [Window; 4] = [Window::Min10, Window::Hour1, Window::Hour3, Window::Hour24];

    pub fn seconds(self) -> i64 {
        match self {
            Window::Min10 => 600,
            Window::Hour1 => 3_600,
            Window::Hour3 => 3 * 3_600,
            Window::Hour24 => 24 * 3_600,
        }
    }

    /// The key used in JSON (`10m`, `1h`, `3h`, `24h`).
    pub fn as_str(self) -> &'static str {
        match self {
            Window::Min10 => "10m",
            Window::Hour1 => "1h",
            Window::Hour3 => "3h",
            Window::Hour24 => "24h",
        }
    }
}

/// Rain in one window.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Accumulation {
    /// Sum of the readings inside the window; `None` when there is none.
    pub mm: Option<f64>,
    /// Seconds of the window the readings' intervals cover, at most the window.
    pub covered_s: i64,
    pub window_s: i64,
}

impl Accumulation {
    /// Fraction of the window covered, 0..=1.
    pub fn coverage(&self) -> f64 {
        if self.window_s <= 0 {
            return 0.0;
        }
        (self.covered_s as f64 / self.window_s as f64).clamp(0.0, 1.0)
    }

    /// Whether the window is accounted for up to `tolerance_s` (typically
    /// the gauge's reporting interval: the interval in progress at the
    /// window's end cannot have been reported yet).
    pub fn is_complete(&self, tolerance_s: i64) -> bool {
        self.covered_s + tolerance_s.max(0) >= self.window_s
    }
}

/// The accumulation over `(end - window_s, end]` of `readings` (any order).
/// An interval that starts before the window counts its rain (its `ts` is
/// inside) but only its part inside the window towards coverage.
pub fn accumulate(
    readings: &[RainInterval],
    end: DateTime<Utc>,
    window_s: i64,
    default_interval_s: i64,
) -> Accumulation {
    accumulate_iter(readings.iter().copied(), end, window_s, default_interval_s)
}

/// [`accumulate`] over any sequence of readings (no copy into a slice).
pub fn accumulate_iter(
    readings: impl IntoIterator<Item = RainInterval>,
    end: DateTime<Utc>,
    window_s: i64,
    default_interval_s: i64,
) -> Accumulation {
    let start = end - Duration::seconds(window_s);
    let mut mm = None;
    let mut covered = 0i64;
    for r in readings.into_iter().filter(|r| r.ts > start && r.ts <= end) {
        *mm.get_or_insert(0.0) += r.rain_mm;
        let interval = r.interval_s.unwrap_or(default_interval_s).max(0);
        let interval_start = r.ts - Duration::seconds(interval);
        let inside = (r.ts - interval_start.max(start)).num_seconds();
        covered += inside.max(0);
    }
    Accumulation { mm, covered_s: covered.min(window_s), window_s }
}

/// Central Weather Administration rainfall classes (since 2015), worst last.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum RainClass {
    #[default]
    None,
    /// 大雨: 80 mm in 24 h or 40 mm in 1 h.
    Heavy,
    /// 豪雨: 200 mm in 24 h or 100 mm in 3 h.
    ExtremelyHeavy,
    /// 大豪雨: 350 mm in 24 h, or 200 mm in 3 h (see [`ClassRules`]).
    Torrential,
    /// 超大豪雨: 500 mm in 24 h.
    ExtremelyTorrential,
}

impl RainClass {
    pub fn as_str(self) -> &'static str {
        match self {
            RainClass::None => "none",
            RainClass::Heavy => "heavy",
            RainClass::ExtremelyHeavy => "extremely_heavy",
            RainClass::Torrential => "torrential",
            RainClass::ExtremelyTorrential => "extremely_torrential",
        }
    }
}

/// Options of the class table.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClassRules {
    /// Count 200 mm in 3 h as torrential (CWA practice since about 2020,
    /// hence the default; `false` gives the 2015 table).
    pub torrential_3h: bool,
}

impl Default for ClassRules {
    fn default() -> ClassRules {
        ClassRules { torrential_3h: true }
    }
}

/// The class of the accumulations a gauge reports (missing windows count as
/// no evidence, not as zero: the class is what the rain that *was* seen
/// reaches).
pub fn classify(mm_1h: Option<f64>, mm_3h: Option<f64>, mm_24h: Option<f64>, rules: ClassRules) -> RainClass {
    let (h1, h3, h24) = (mm_1h.unwrap_or(0.0), mm_3h.unwrap_or(0.0), mm_24h.unwrap_or(0.0));
    if h24 >= 500.0 {
        RainClass::ExtremelyTorrential
    } else if h24 >= 350.0 || (rules.torrential_3h && h3 >= 200.0) {
        RainClass::Torrential
    } else if h24 >= 200.0 || h3 >= 100.0 {
        RainClass::ExtremelyHeavy
    } else if h24 >= 80.0 || h1 >= 40.0 {
        RainClass::Heavy
    } else {
        RainClass::None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use proptest::prelude::*;

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 30, 0, 0, 0).unwrap()
    }

    fn every(step_s: i64, rain: &[f64]) -> Vec<RainInterval> {
        rain.iter()
            .enumerate()
            .map(|(i, mm)| RainInterval {
                ts: t0() + Duration::seconds(step_s * (i as i64 + 1)),
                rain_mm: *mm,
                interval_s: Some(step_s),
            })
            .collect()
    }

    #[test]
    fn windows_are_half_open_and_coverage_counts_silence() {
        let readings = every(600, &[1.0, 2.0, 3.0]); // at 10, 20, 30 min
        let end = t0() + Duration::minutes(30);
        let a = accumulate(&readings, end, 600, 600);
        assert_eq!((a.mm, a.covered_s, a.is_complete(0)), (Some(3.0), 600, true));
        let hour = accumulate(&readings, end, 3600, 600);
        assert_eq!(hour.mm, Some(6.0));
        assert!(!hour.is_complete(600) && (hour.coverage() - 0.5).abs() < 1e-9, "{hour:?}");
        let late = accumulate(&readings, end + Duration::minutes(3), 1_800, 600);
        assert!(late.is_complete(600) && !late.is_complete(0), "{late:?}");
        let silent = accumulate(&readings, end + Duration::hours(2), 600, 600);
        assert_eq!((silent.mm, silent.coverage()), (None, 0.0), "silence is no data, not zero rain");
        // A reading at the window's start belongs to the previous window.
        let edge = accumulate(&readings, t0() + Duration::minutes(20), 600, 600);
        assert_eq!(edge.mm, Some(2.0));
    }

    #[test]
    fn cwa_classes() {
        let c = |h1, h3, h24| classify(Some(h1), Some(h3), Some(h24), ClassRules::default());
        assert_eq!(c(10.0, 20.0, 50.0), RainClass::None);
        assert_eq!(c(40.0, 40.0, 40.0), RainClass::Heavy);
        assert_eq!(c(0.0, 0.0, 80.0), RainClass::Heavy);
        assert_eq!(c(50.0, 100.0, 100.0), RainClass::ExtremelyHeavy);
        assert_eq!(c(0.0, 0.0, 350.0), RainClass::Torrential);
        assert_eq!(c(0.0, 210.0, 210.0), RainClass::Torrential, "200 mm in 3 h counts by default");
        assert_eq!(c(0.0, 199.9, 210.0), RainClass::ExtremelyHeavy);
        let table_2015 = classify(Some(0.0), Some(210.0), Some(210.0), ClassRules { torrential_3h: false });
        assert_eq!(table_2015, RainClass::ExtremelyHeavy);
        assert_eq!(c(0.0, 0.0, 500.0).as_str(), "extremely_torrential");
        assert_eq!(classify(None, None, None, ClassRules::default()), RainClass::None);
    }

    proptest! {
        /// The same storm reported every 1, 5, 10 or 60 minutes gives the same
        /// sums on windows aligned to the coarsest interval.
        #[test]
        fn sums_do_not_depend_on_the_reporting_interval(
            minutes in proptest::collection::vec(0u32..30, 180),
            end_hour in 1i64..=3,
        ) {
            let per_minute: Vec<f64> = minutes.iter().map(|m| f64::from(*m) / 10.0).collect();
            let end = t0() + Duration::hours(end_hour);
            let mut sums = Vec::new();
            for step in [1usize, 5, 10, 60] {
                let coarse: Vec<f64> = per_minute.chunks(step).map(|c| c.iter().sum()).collect();
                let readings = every(step as i64 * 60, &coarse);
                for window in [Window::Hour1, Window::Hour3] {
                    let a = accumulate(&readings, end, window.seconds(), 600);
                    sums.push((step, window, a.mm.unwrap_or(0.0), a.covered_s));
                }
            }
            for w in [Window::Hour1, Window::Hour3] {
                let of: Vec<_> = sums.iter().filter(|s| s.1 == w).collect();
                for s in &of {
                    prop_assert!((s.2 - of[0].2).abs() < 1e-6, "{:?}", of);
                    prop_assert_eq!(s.3, of[0].3);
                }
            }
        }
    }
}
