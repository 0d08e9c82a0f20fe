//! The sun's position at a pole: dusk and dawn for the streetlight rules.
//!
//! [`elevation_deg`] is NOAA's solar position algorithm (the Global
//! Monitoring Laboratory's "solar calculator" spreadsheet, itself after
//! Jean Meeus, *Astronomical Algorithms*): good to about a minute of time
//! for sunrise and sunset between 1900 and 2100 at Taiwan's latitudes. It
//! returns the *geometric* elevation of the sun's centre; the conventional
//! sunrise/sunset is when that elevation is -0.833° (34′ of refraction at
//! the horizon plus the sun's 16′ semi-diameter), which is why the lamp rule
//! compares with a configurable elevation rather than 0.
//!
//! Deterministic and cheap (a few dozen floating-point operations), so the
//! lamp rule evaluates it on every reading instead of keeping a per-pole
//! table of dusk and dawn.

use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};

/// The conventional elevation of sunrise and sunset (upper limb on the
/// horizon, standard refraction), degrees.
pub const SUNRISE_ELEVATION_DEG: f64 = -0.833;

/// The sun's geometric elevation above the horizon, degrees, at `t` seen
/// from (`lon`, `lat`) in WGS 84 degrees (east and north positive).
pub fn elevation_deg(t: DateTime<Utc>, lon: f64, lat: f64) -> f64 {
    let jd = t.timestamp_millis() as f64 / 86_400_000.0 + 2_440_587.5;
    let c = (jd - 2_451_545.0) / 36_525.0; // Julian centuries since J2000.0
    let l0 = (280.46646 + c * (36000.76983 + c * 0.0003032)).rem_euclid(360.0);
    let m = 357.52911 + c * (35999.05029 - 0.0001537 * c);
    let e = 0.016708634 - c * (0.000042037 + 0.0000001267 * c);
    let center = m.to_radians().sin() * (1.914602 - c * (0.004817 + 0.000014 * c))
        + (2.0 * m).to_radians().sin() * (0.019993 - 0.000101 * c)
        + (3.0 * m).to_radians().sin() * 0.000289;
    let omega = (125.04 - 1934.136 * c).to_radians();
    let apparent_long = l0 + center - 0.00569 - 0.00478 * omega.sin();
    let mean_obliquity = 23.0 + (26.0 + (21.448 - c * (46.815 + c * (0.00059 - c * 0.001813))) / 60.0) / 60.0;
    let obliquity = (mean_obliquity + 0.00256 * omega.cos()).to_radians();
    let declination = (obliquity.sin() * apparent_long.to_radians().sin()).asin();
    // Equation of time, minutes.
    let y = (obliquity / 2.0).tan().powi(2);
    let (l0r, mr) = (l0.to_radians(), m.to_radians());
    let eot = 4.0
        * (y * (2.0 * l0r).sin() - 2.0 * e * mr.sin() + 4.0 * e * y * mr.sin() * (2.0 * l0r).cos()
            - 0.5 * y * y * (4.0 * l0r).sin()
            - 1.25 * e * e * (2.0 * mr).sin())
        .to_degrees();
    let utc_minutes = (t.timestamp_millis().rem_euclid(86_400_000)) as f64 / 60_000.0;
    let true_solar_minutes = (utc_minutes + eot + 4.0 * lon).rem_euclid(1440.0);
    let hour_angle = (true_solar_minutes / 4.0 - 180.0).to_radians();
    let lat = lat.to_radians();
    let cos_zenith = lat.sin() * declination.sin() + lat.cos() * declination.cos() * hour_angle.cos();
    90.0 - cos_zenith.clamp(-1.0, 1.0).acos().to_degrees()
}

/// When the sun crosses `threshold_deg` upwards (sunrise) and downwards
/// (sunset) on the local calendar `date` in `tz`; `None` when it does not
/// (polar day or night). Found by a 10-minute scan and bisection to a second.
pub fn crossings<Tz: TimeZone>(
    date: NaiveDate,
    tz: &Tz,
    lon: f64,
    lat: f64,
    threshold_deg: f64,
) -> (Option<DateTime<Utc>>, Option<DateTime<Utc>>) {
    let Some(start) = date.and_hms_opt(0, 0, 0).and_then(|n| tz.from_local_datetime(&n).earliest()) else {
        return (None, None);
    };
    let start = start.with_timezone(&Utc);
    let above = |t: DateTime<Utc>| elevation_deg(t, lon, lat) - threshold_deg;
    let step = Duration::minutes(10);
    let (mut rise, mut set) = (None, None);
    let mut t = start;
    let mut prev = above(t);
    while t < start + Duration::hours(24) {
        let next_t = t + step;
        let next = above(next_t);
        if prev < 0.0 && next >= 0.0 && rise.is_none() {
            rise = Some(bisect(t, next_t, &above));
        } else if prev >= 0.0 && next < 0.0 && set.is_none() {
            set = Some(bisect(t, next_t, &above));
        }
        t = next_t;
        prev = next;
    }
    (rise, set)
}

/// The instant in `[lo, hi]` where `f` changes sign, to the second.
fn bisect(mut lo: DateTime<Utc>, mut hi: DateTime<Utc>, f: &impl Fn(DateTime<Utc>) -> f64) -> DateTime<Utc> {
    let lo_sign = f(lo) >= 0.0;
    while hi - lo > Duration::seconds(1) {
        let mid = lo + (hi - lo) / 2;
        if (f(mid) >= 0.0) == lo_sign {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    lo
}

/// Whether it has been dark (sun below `threshold_deg`) at the pole for at
/// least `after_dusk` and will stay dark for at least `before_dawn`: the
/// hours a lamp must be lit. Lamps switched by photocell or by a timetable
/// come on some minutes after sunset and go off before sunrise; the two
/// grace periods keep those minutes out of the outage rule. The elevation
/// is a smooth curve with one minimum a night, so three samples settle it.
pub fn dark_with_grace(
    t: DateTime<Utc>,
    lon: f64,
    lat: f64,
    threshold_deg: f64,
    after_dusk: Duration,
    before_dawn: Duration,
) -> bool {
    [t, t - after_dusk, t + before_dawn].into_iter().all(|s| elevation_deg(s, lon, lat) < threshold_deg)
}

#[cfg(test)]
mod tests {
    use chrono::FixedOffset;

    use super::*;

    fn taiwan() -> FixedOffset {
        FixedOffset::east_opt(8 * 3600).unwrap()
    }

    fn local(t: DateTime<Utc>) -> String {
        t.with_timezone(&taiwan()).format("%H:%M:%S").to_string()
    }

    fn within(actual: DateTime<Utc>, expected: DateTime<FixedOffset>, tolerance_s: i64) {
        let off = (actual - expected.with_timezone(&Utc)).num_seconds();
        assert!(off.abs() <= tolerance_s, "computed {} vs published {expected} ({off} s)", local(actual));
    }

    #[test]
    fn kaohsiung_sunset_matches_the_weather_bureau() {
        // CWB (Central Weather Bureau) for 2017-12-31: the year's last sunset on
        // the main island at 17:25 in Kaohsiung's Sizihwan (西子灣), as reported by
        // CNA / Taipei Times on 2017-12-12. Sizihwan: 22.6246 N, 120.2637 E.
        let (_, set) = crossings(
            NaiveDate::from_ymd_opt(2017, 12, 31).unwrap(),
            &taiwan(),
            120.2637,
            22.6246,
            SUNRISE_ELEVATION_DEG,
        );
        let published = taiwan().with_ymd_and_hms(2017, 12, 31, 17, 25, 0).unwrap();
        // The bureau gives the minute: within 2 minutes.
        within(set.unwrap(), published, 120);
    }

    #[test]
    fn oluanpi_first_sunrise_matches_the_astronomical_museum() {
        // Taipei Astronomical Museum, first sunrise of 2018 at Oluanpi (鵝鑾鼻),
        // 06:35:13.8 (Taipei Times, 2017-11-19). Oluanpi: 21.9020 N, 120.8527 E.
        let (rise, _) = crossings(
            NaiveDate::from_ymd_opt(2018, 1, 1).unwrap(),
            &taiwan(),
            120.8527,
            21.9020,
            SUNRISE_ELEVATION_DEG,
        );
        let published = taiwan().with_ymd_and_hms(2018, 1, 1, 6, 35, 14).unwrap();
        within(rise.unwrap(), published, 120);
    }

    #[test]
    fn taipei_summer_solstice_day_length() {
        // CWB via CNA (2023-06-21): Taipei has 13 h 42 min of daylight on the solstice.
        let (rise, set) = crossings(
            NaiveDate::from_ymd_opt(2023, 6, 21).unwrap(),
            &taiwan(),
            121.5654,
            25.0330,
            SUNRISE_ELEVATION_DEG,
        );
        let minutes = (set.unwrap() - rise.unwrap()).num_seconds() as f64 / 60.0;
        assert!((minutes - (13.0 * 60.0 + 42.0)).abs() <= 2.0, "{minutes} min");
    }

    #[test]
    fn noon_is_high_and_midnight_is_low() {
        let noon = taiwan().with_ymd_and_hms(2026, 6, 21, 12, 0, 0).unwrap().with_timezone(&Utc);
        let midnight = taiwan().with_ymd_and_hms(2026, 6, 21, 0, 0, 0).unwrap().with_timezone(&Utc);
        // Tropic of Cancer: the June sun is almost overhead in Kaohsiung.
        assert!(elevation_deg(noon, 120.30, 22.63) > 85.0);
        assert!(elevation_deg(midnight, 120.30, 22.63) < -40.0);
    }

    #[test]
    fn grace_periods_keep_twilight_out() {
        let date = NaiveDate::from_ymd_opt(2026, 3, 1).unwrap();
        let (rise, set) = crossings(date, &taiwan(), 121.5654, 25.0330, SUNRISE_ELEVATION_DEG);
        let (rise, set) = (rise.unwrap(), set.unwrap());
        let grace = Duration::minutes(30);
        let dark = |t| dark_with_grace(t, 121.5654, 25.0330, SUNRISE_ELEVATION_DEG, grace, grace);
        assert!(!dark(set - Duration::minutes(5)), "daylight");
        assert!(!dark(set + Duration::minutes(20)), "within the grace after dusk");
        assert!(dark(set + Duration::minutes(31)));
        assert!(dark(rise - Duration::minutes(31)));
        assert!(!dark(rise - Duration::minutes(20)), "within the grace before dawn");
        assert!(!dark(rise + Duration::hours(3)));
    }
}
