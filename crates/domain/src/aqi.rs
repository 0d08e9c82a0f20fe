//! Taiwan's air quality index (MOENV AQI) from particulate concentrations.
//!
//! The index is the highest of the pollutants' sub-indices; each sub-index is
//! a linear interpolation inside the breakpoint band its concentration falls
//! in. MOENV computes PM2.5 and PM10 sub-indices from moving averages of
//! hourly station data (24 h, or a 12 h/4 h blend); a micro-sensor platform
//! has only what its sensors send, so callers pass whatever average they
//! hold (the query service passes the latest reading: an *indicative* index,
//! documented as such). Gases (O3, CO, SO2, NO2) are left out: micro-sensors
//! rarely measure them to reference quality.
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
//! place here. Gas sub-indices (O3, CO, SO2, NO2) stay out: their revised
//! tables could not be verified, and micro-sensors rarely measure them to
//! reference quality.

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
type Band = (f64, f64, u32, u32);

/// PM2.5, µg/m³, truncated to one decimal.
const PM2_5: [Band; 6] = [
    (0.0, 12.4, 0, 50),
    (12.5, 30.4, 51, 100),
    (30.5, 50.4, 101, 150),
    (50.5, 125.4, 151, 200),
    (125.5, 225.4, 201, 300),
    (225.5, 325.4, 301, 500),
];

/// PM10, µg/m³, truncated to an integer.
const PM10: [Band; 6] = [
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
    let c = (concentration * scale).floor() / scale;
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

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

    proptest! {
        #[test]
        fn more_dust_never_lowers_the_index(a in 0.0f64..600.0, b in 0.0f64..600.0) {
            let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
            prop_assert!(pm2_5_index(lo).unwrap() <= pm2_5_index(hi).unwrap());
            prop_assert!(pm10_index(lo).unwrap() <= pm10_index(hi).unwrap());
            prop_assert!(pm2_5_index(hi).unwrap() <= 500);
        }
    }
}
