//! Taiwan's air quality index (MOENV AQI) from particulate concentrations.
//!
//! The index is the highest of the pollutants' sub-indices; each sub-index is
//! a linear interpolation inside the breakpoint band its concentration falls
//! in. MOENV computes the PM2.5 and PM10 sub-indices from moving averages,
//! not from the latest value: 0.5 × the mean of the last 12 hours + 0.5 × the
//! mean of the last 4 hours, valid with at least 6 hours of data in the 12
//! and 2 in the 4 (前12小時6筆有效, 前4小時2筆有效; as published by the
//! Taichung EPB with its station table, and quoted on the ASUS AirBox page).
//! [`moving_averages`] applies that rule to a micro-sensor's readings, which
//! come every few minutes, irregularly and with gaps: each hour of the
//! window is the mean of the readings inside it, and the means are over the
//! hours that hold any. One minute's dust therefore moves the index by a
//! fraction, and a station hovering at a band edge does not flip its
//! category every minute. Gases (O3 on 8 h means, CO, SO2, NO2) are left
//! out: micro-sensors rarely measure them to reference quality, and their
//! revised tables could not be verified.
//!
//! The breakpoint tables are MOENV's revision in force since 2025-01-01
//! (民國114年1月1日, announced with the stricter 空氣品質標準 in November
//! 2024; the 2016 tables had PM2.5 0–15.4 and PM10 0–54 as "good"). A
//! later revision is an edit of the tables below.
//!
//! Checked (2026-11-30) against published station figures under the new
//! tables (Taichung EPB, 2025-08-29: PM2.5 16 µg/m³ → AQI 62, PM10 26 → 43,
//! PM10 36 → 57), which pin the first two bands of both tables. The upper
//! bands follow the revision as summarised in review (PM2.5 30.5–50.4,
//! 50.5–125.4, 125.5–225.4; PM10 likewise tightened below 355); they could
//! not be checked against MOENV's own table offline, so they are kept in one
//! place here.

use chrono::{DateTime, Duration, Utc};

/// AQI bands and their category names (the API's `level` values for air).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AqiCategory {
    Good,
    Moderate,
    UnhealthySensitive,
    Unhealthy,
    VeryUnhealthy,
    Hazardous,
}

impl AqiCategory {
    pub fn as_str(self) -> &'static str {
        match self {
            AqiCategory::Good => "good",
            AqiCategory::Moderate => "moderate",
            AqiCategory::UnhealthySensitive => "unhealthy_sensitive",
            AqiCategory::Unhealthy => "unhealthy",
            AqiCategory::VeryUnhealthy => "very_unhealthy",
            AqiCategory::Hazardous => "hazardous",
        }
    }

    /// The category of an index value.
    pub fn of(aqi: u32) -> AqiCategory {
        match aqi {
            0..=50 => AqiCategory::Good,
            51..=100 => AqiCategory::Moderate,
            101..=150 => AqiCategory::UnhealthySensitive,
            151..=200 => AqiCategory::Unhealthy,
            201..=300 => AqiCategory::VeryUnhealthy,
            _ => AqiCategory::Hazardous,
        }
    }
}

/// (concentration low, concentration high, index low, index high).
pub type Band = (f64, f64, u32, u32);

/// PM2.5, µg/m³, truncated to one decimal.
pub const PM2_5: [Band; 6] = [
    (0.0, 12.4, 0, 50),
    (12.5, 30.4, 51, 100),
    (30.5, 50.4, 101, 150),
    (50.5, 125.4, 151, 200),
    (125.5, 225.4, 201, 300),
    (225.5, 325.4, 301, 500),
];

/// PM10, µg/m³, truncated to an integer.
pub const PM10: [Band; 6] = [
    (0.0, 30.0, 0, 50),
    (31.0, 75.0, 51, 100),
    (76.0, 190.0, 101, 150),
    (191.0, 354.0, 151, 200),
    (355.0, 424.0, 201, 300),
    (425.0, 604.0, 301, 500),
];

fn sub_index(bands: &[Band], concentration: f64, decimals: i32) -> Option<u32> {
    if !concentration.is_finite() || concentration < 0.0 {
        return None;
    }
    let scale = 10f64.powi(decimals);
    // The nudge keeps an average that lands a rounding error below a
    // decimal (12.3 summed and divided back to 12.299999...) on that decimal.
    let c = (concentration * scale + 1e-6).floor() / scale;
    let last = bands[bands.len() - 1];
    if c > last.1 {
        return Some(last.3); // beyond the table: the top of the scale
    }
    // Truncation leaves no value between bands (12.4 then 12.5).
    let band = bands.iter().find(|b| c <= b.1)?;
    let (c_lo, c_hi, i_lo, i_hi) = band;
    let c = c.max(*c_lo);
    let value = f64::from(i_hi - i_lo) / (c_hi - c_lo) * (c - c_lo) + f64::from(*i_lo);
    Some(value.round() as u32)
}

/// The PM2.5 sub-index of a concentration in µg/m³.
pub fn pm2_5_index(ugm3: f64) -> Option<u32> {
    sub_index(&PM2_5, ugm3, 1)
}

/// The PM10 sub-index of a concentration in µg/m³.
pub fn pm10_index(ugm3: f64) -> Option<u32> {
    sub_index(&PM10, ugm3, 0)
}

/// The index: the higher of the sub-indices available; `None` without either.
pub fn aqi(pm2_5_ugm3: Option<f64>, pm10_ugm3: Option<f64>) -> Option<u32> {
    let a = pm2_5_ugm3.and_then(pm2_5_index);
    let b = pm10_ugm3.and_then(pm10_index);
    a.max(b)
}

/// Hours in MOENV's long and short windows, and how many of them must hold
/// data for the average to count (前12小時6筆有效, 前4小時2筆有效).
pub const LONG_HOURS: usize = 12;
pub const SHORT_HOURS: usize = 4;
pub const LONG_MIN_HOURS: usize = 6;
pub const SHORT_MIN_HOURS: usize = 2;

const HOUR_MS: i64 = 3_600_000;

/// One reading of a station's particulates (µg/m³; either may be missing).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PmReading {
    pub ts: DateTime<Utc>,
    pub pm2_5_ugm3: Option<f64>,
    pub pm10_ugm3: Option<f64>,
}

/// A station's PM2.5 and PM10 concentrations as MOENV's index reads them;
/// `None` where the readings are too few to say.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct MovingAverages {
    pub pm2_5_ugm3: Option<f64>,
    pub pm10_ugm3: Option<f64>,
}

impl MovingAverages {
    /// The index of these concentrations.
    pub fn aqi(&self) -> Option<u32> {
        aqi(self.pm2_5_ugm3, self.pm10_ugm3)
    }
}

/// The readings of one pollutant by hour of the window (hour 0 ends at `now`).
#[derive(Debug, Default)]
struct Hours {
    sum: [f64; LONG_HOURS],
    n: [u32; LONG_HOURS],
}

impl Hours {
    fn add(&mut self, hour: usize, value: Option<f64>) {
        // A negative or non-finite value is a sensor fault, not dust.
        if let Some(v) = value.filter(|v| v.is_finite() && *v >= 0.0) {
            self.sum[hour] += v;
            self.n[hour] += 1;
        }
    }

    /// The mean of the hourly means over the first `hours` hours, if at least
    /// `min_hours` of them hold a reading.
    fn mean(&self, hours: usize, min_hours: usize) -> Option<f64> {
        let (mut total, mut count) = (0.0, 0usize);
        for (sum, n) in self.sum.iter().zip(&self.n).take(hours).filter(|(_, n)| **n > 0) {
            total += sum / f64::from(*n);
            count += 1;
        }
        (count >= min_hours.max(1)).then(|| total / count as f64)
    }

    fn blend(&self) -> Option<f64> {
        Some(0.5 * self.mean(LONG_HOURS, LONG_MIN_HOURS)? + 0.5 * self.mean(SHORT_HOURS, SHORT_MIN_HOURS)?)
    }
}

/// MOENV's PM2.5 and PM10 concentrations at `now` from a station's readings
/// (any order; readings outside `(now - 12 h, now]` are ignored): 0.5 × the
/// 12 h mean + 0.5 × the 4 h mean, where a window's mean is over its hours
/// (each the mean of its readings) that hold data, and is only taken with
/// at least [`LONG_MIN_HOURS`] / [`SHORT_MIN_HOURS`] such hours. A station
/// first heard an hour ago, or silent for the last three, has no figure:
/// never one made from a single reading.
pub fn moving_averages(readings: impl IntoIterator<Item = PmReading>, now: DateTime<Utc>) -> MovingAverages {
    let (mut pm2_5, mut pm10) = (Hours::default(), Hours::default());
    let start = now - Duration::hours(LONG_HOURS as i64);
    for r in readings.into_iter().filter(|r| r.ts > start && r.ts <= now) {
        // Hour k is (now - (k+1) h, now - k h], like the windows.
        let hour = ((now - r.ts).num_milliseconds() / HOUR_MS).clamp(0, LONG_HOURS as i64 - 1) as usize;
        pm2_5.add(hour, r.pm2_5_ugm3);
        pm10.add(hour, r.pm10_ugm3);
    }
    MovingAverages { pm2_5_ugm3: pm2_5.blend(), pm10_ugm3: pm10.blend() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    #[test]
    fn band_edges_follow_the_2025_table() {
        // PM2.5: every band's both edges.
        for (c, i) in [
            (0.0, 0),
            (12.4, 50),
            (12.5, 51),
            (30.4, 100),
            (30.5, 101),
            (50.4, 150),
            (50.5, 151),
            (125.4, 200),
            (125.5, 201),
            (225.4, 300),
            (225.5, 301),
            (325.4, 500),
        ] {
            assert_eq!(pm2_5_index(c), Some(i), "PM2.5 {c}");
        }
        assert_eq!(pm2_5_index(12.45), Some(50), "truncated to 12.4, not rounded up");
        assert_eq!(pm2_5_index(900.0), Some(500));
        // PM10.
        for (c, i) in
            [(0.0, 0), (30.0, 50), (31.0, 51), (75.0, 100), (76.0, 101), (190.0, 150), (191.0, 151), (354.0, 200)]
        {
            assert_eq!(pm10_index(c), Some(i), "PM10 {c}");
        }
        assert_eq!(pm10_index(30.9), Some(50), "truncated to 30");
        // Station figures published under the new tables (Taichung EPB, 2025-08-29).
        assert_eq!(pm10_index(26.0), Some(43));
        assert_eq!(pm10_index(36.0), Some(57));
        assert_eq!(pm2_5_index(-1.0), None);
        assert_eq!(pm2_5_index(f64::NAN), None);
    }

    #[test]
    fn the_index_is_the_worst_pollutant() {
        assert_eq!(aqi(Some(10.0), Some(80.0)), Some(103));
        assert_eq!(aqi(Some(40.0), None), Some(aqi(Some(40.0), Some(1.0)).unwrap()));
        assert_eq!(aqi(None, None), None);
        assert_eq!(AqiCategory::of(aqi(Some(40.0), None).unwrap()), AqiCategory::UnhealthySensitive);
        assert_eq!(AqiCategory::of(aqi(Some(14.0), None).unwrap()), AqiCategory::Moderate, "good under the 2016 table");
        assert_eq!(AqiCategory::of(0).as_str(), "good");
        assert_eq!(AqiCategory::of(301).as_str(), "hazardous");
    }

    fn now() -> DateTime<Utc> {
        use chrono::TimeZone;
        Utc.with_ymd_and_hms(2026, 11, 30, 12, 0, 0).unwrap()
    }

    /// PM2.5 `pm2_5` and PM10 twice that, `minutes_ago` before [`now`].
    fn at(minutes_ago: i64, pm2_5: f64) -> PmReading {
        PmReading { ts: now() - Duration::minutes(minutes_ago), pm2_5_ugm3: Some(pm2_5), pm10_ugm3: Some(pm2_5 * 2.0) }
    }

    #[test]
    fn twelve_and_four_hour_means_are_blended() {
        // 12 h of 10-minute readings: 10 µg/m³ in the older 8 h, 30 in the last 4.
        let readings: Vec<_> = (0..72).map(|k| at(k * 10, if k < 24 { 30.0 } else { 10.0 })).collect();
        let m = moving_averages(readings.iter().copied(), now());
        // 12 h mean (4 × 30 + 8 × 10) / 12 = 16.67; 4 h mean 30.
        let expected = 0.5 * (200.0 / 12.0) + 0.5 * 30.0;
        assert!((m.pm2_5_ugm3.unwrap() - expected).abs() < 1e-9, "{m:?}");
        assert!((m.pm10_ugm3.unwrap() - 2.0 * expected).abs() < 1e-9, "{m:?}");
        assert_eq!(m.aqi(), aqi(Some(expected), Some(2.0 * expected)));
        // The latest reading alone (30 → AQI 99) is not the index (23.3 → 81).
        assert_eq!(m.aqi(), Some(pm2_5_index(expected).unwrap().max(pm10_index(2.0 * expected).unwrap())));
    }

    #[test]
    fn hours_weigh_alike_whatever_their_cadence() {
        // Hours 0-5: one reading each at 20, except hour 0 which has sixty at 50
        // (a one-minute burst). Hour means: 50, 20, 20, 20, 20, 20.
        let mut readings: Vec<_> = (0..60).map(|m| at(m, 50.0)).collect();
        readings.extend((1..6).map(|h| at(h * 60 + 30, 20.0)));
        let m = moving_averages(readings, now());
        let expected = 0.5 * (150.0 / 6.0) + 0.5 * (110.0 / 4.0);
        assert!((m.pm2_5_ugm3.unwrap() - expected).abs() < 1e-9, "{m:?}");
    }

    #[test]
    fn too_few_hours_give_no_figure() {
        let one = moving_averages([at(1, 40.0)], now());
        assert_eq!((one, one.aqi()), (MovingAverages::default(), None), "never a number from one reading");
        // Five hours of data: the 12 h mean lacks its sixth hour.
        let five = moving_averages((0..5).map(|h| at(h * 60 + 5, 40.0)), now());
        assert_eq!(five.aqi(), None);
        let six = moving_averages((0..6).map(|h| at(h * 60 + 5, 40.0)), now());
        assert!(six.aqi().is_some());
        // Hours 3-11 only: one hour in the last four is too few.
        let gap = moving_averages((3..12).map(|h| at(h * 60 + 5, 40.0)), now());
        assert_eq!(gap.aqi(), None, "silent for the last three hours");
        let back = moving_averages((2..12).map(|h| at(h * 60 + 5, 40.0)), now());
        assert!((back.pm2_5_ugm3.unwrap() - 40.0).abs() < 1e-9, "{back:?}");
        // Only PM2.5: PM10 has no figure, the index comes from PM2.5.
        let pm2_5_only = (0..8).map(|h| PmReading { pm10_ugm3: None, ..at(h * 60, 40.0) });
        let m = moving_averages(pm2_5_only, now());
        assert_eq!((m.pm10_ugm3, m.aqi()), (None, pm2_5_index(40.0)));
    }

    #[test]
    fn the_windows_are_half_open_and_bad_values_are_skipped() {
        let base: Vec<_> = (0..8).map(|h| at(h * 60 + 30, 10.0)).collect();
        let with = |extra: PmReading| {
            let mut r = base.clone();
            r.push(extra);
            moving_averages(r, now()).pm2_5_ugm3.unwrap()
        };
        let plain = moving_averages(base.clone(), now()).pm2_5_ugm3.unwrap();
        assert!((plain - 10.0).abs() < 1e-9);
        assert_eq!(with(at(12 * 60, 500.0)), plain, "12 h ago exactly is outside");
        assert_eq!(with(at(-1, 500.0)), plain, "the future is outside");
        assert!(with(at(0, 500.0)) > plain, "now is inside");
        assert_eq!(with(at(5, -3.0)), plain);
        assert_eq!(with(at(5, f64::NAN)), plain);
    }

    #[test]
    fn a_station_hovering_at_a_band_edge_keeps_its_category() {
        // Minute readings alternating 28 and 32 µg/m³ around 30.4 (moderate |
        // unhealthy for sensitive groups): the latest value's category flips
        // every minute, the index's does not.
        let reading = |m: i64| at(m, if m % 2 == 0 { 32.0 } else { 28.0 });
        let categories: BTreeSet<_> = (0..120)
            .map(|step| {
                let t = now() + Duration::minutes(step);
                let readings = (-step..12 * 60).map(reading).map(|r| PmReading { pm10_ugm3: None, ..r });
                AqiCategory::of(moving_averages(readings, t).aqi().unwrap())
            })
            .collect();
        assert_eq!(categories, [AqiCategory::Moderate].into(), "30 on average");
        let latest: BTreeSet<_> = [28.0, 32.0].map(|c| AqiCategory::of(pm2_5_index(c).unwrap())).into();
        assert_eq!(latest.len(), 2, "the test straddles the edge");
    }

    proptest! {
        #[test]
        fn a_steady_station_reads_its_concentration(
            c in 0.0f64..400.0,
            gaps in proptest::collection::vec(1i64..50, 20..200),
        ) {
            // Irregular readings of one concentration over 13 h, never an hour apart.
            let mut minutes_ago = 0;
            let mut readings = Vec::new();
            for gap in gaps.iter().cycle() {
                readings.push(PmReading { pm10_ugm3: Some(c), ..at(minutes_ago, c) });
                minutes_ago += gap;
                if minutes_ago > 13 * 60 { break; }
            }
            let m = moving_averages(readings, now());
            let (pm2_5, pm10) = (m.pm2_5_ugm3.unwrap(), m.pm10_ugm3.unwrap());
            prop_assert!((pm2_5 - c).abs() < 1e-9 * c.max(1.0), "{pm2_5} vs {c}");
            prop_assert!((pm10 - c).abs() < 1e-9 * c.max(1.0), "{pm10} vs {c}");
            prop_assert_eq!(m.aqi(), aqi(Some(c), Some(c)));
        }

        #[test]
        fn moving_averages_never_panic(
            readings in proptest::collection::vec(
                (-2_000i64..2_000, proptest::option::of(-1e6f64..1e6), proptest::option::of(proptest::num::f64::ANY)),
                0..100,
            ),
        ) {
            let readings = readings.into_iter().map(|(minutes_ago, a, b)| PmReading {
                ts: now() - Duration::minutes(minutes_ago),
                pm2_5_ugm3: a,
                pm10_ugm3: b,
            });
            let m = moving_averages(readings, now());
            prop_assert!(m.pm2_5_ugm3.is_none_or(|c| c.is_finite() && c >= 0.0));
            let _ = m.aqi();
        }

        #[test]
        fn more_dust_never_lowers_the_index(a in 0.0f64..600.0, b in 0.0f64..600.0) {
            let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
            prop_assert!(pm2_5_index(lo).unwrap() <= pm2_5_index(hi).unwrap());
            prop_assert!(pm10_index(lo).unwrap() <= pm10_index(hi).unwrap());
            prop_assert!(pm2_5_index(hi).unwrap() <= 500);
        }
    }
}
