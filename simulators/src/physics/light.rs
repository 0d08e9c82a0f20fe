//! Smart streetlights: photocell schedule from the sun, midnight dimming,
//! power and energy metering, faults.

use chrono::Datelike;

use crate::geo::{CITY_LAT, CITY_LON};
use crate::rng::SimRng;
use crate::timefmt::{to_taipei, TAIPEI_OFFSET_S};

/// Local (Taipei) sunrise and sunset, hours after midnight.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SunTimes {
    pub sunrise_h: f64,
    pub sunset_h: f64,
}

/// Sunrise and sunset for the city on the local day containing `epoch_ms`,
/// with NOAA's low-precision solar formulas (good to a minute or two, far
/// better than photocells are).
pub fn sun_times(epoch_ms: i64) -> SunTimes {
    let day_of_year = f64::from(to_taipei(epoch_ms).ordinal());
    let g = std::f64::consts::TAU / 365.0 * (day_of_year - 1.0);
    let eq_time_min = 229.18
        * (0.000075 + 0.001868 * g.cos()
            - 0.032077 * g.sin()
            - 0.014615 * (2.0 * g).cos()
            - 0.040849 * (2.0 * g).sin());
    let decl = 0.006918 - 0.399912 * g.cos() + 0.070257 * g.sin() - 0.006758 * (2.0 * g).cos()
        + 0.000907 * (2.0 * g).sin()
        - 0.002697 * (3.0 * g).cos()
        + 0.00148 * (3.0 * g).sin();
    let lat = CITY_LAT.to_radians();
    // 90.833 deg: the sun's upper limb on the horizon, with refraction.
    let cos_ha = 90.833_f64.to_radians().cos() / (lat.cos() * decl.cos()) - lat.tan() * decl.tan();
    let ha_deg = cos_ha.clamp(-1.0, 1.0).acos().to_degrees();
    let offset_min = TAIPEI_OFFSET_S as f64 / 60.0;
    let to_local_h = |utc_min: f64| (utc_min + offset_min) / 60.0;
    SunTimes {
        sunrise_h: to_local_h(720.0 - 4.0 * (CITY_LON + ha_deg) - eq_time_min),
        sunset_h: to_local_h(720.0 - 4.0 * (CITY_LON - ha_deg) - eq_time_min),
    }
}

/// A streetlight fault code, as the lamp controller reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LampFault {
    /// The LED module or driver died: dark while it should be lit.
    LampFailure,
    /// No supply on the circuit.
    PowerLoss,
    /// The controller stopped answering; the management system reports it.
    CommTimeout,
}

impl LampFault {
    pub fn code(self) -> &'static str {
        match self {
            LampFault::LampFailure => "lamp_failure",
            LampFault::PowerLoss => "power_loss",
            LampFault::CommTimeout => "comm_timeout",
        }
    }
}

/// What the lamp controller measures at one instant.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LampState {
    pub on: bool,
    pub dim_pct: f64,
    pub power_w: f64,
    pub voltage_v: f64,
    pub current_a: f64,
}

/// Controller standby draw, W.
const STANDBY_W: f64 = 1.2;

/// One streetlight.
#[derive(Debug, Clone)]
pub struct Lamp {
    pub rated_w: f64,
    /// Metered energy, kWh: only ever increases.
    pub energy_kwh: f64,
    /// Output after midnight, % of full.
    pub night_dim_pct: f64,
    pub fault: Option<LampFault>,
}

impl Lamp {
    pub fn new(rated_w: f64, energy_kwh: f64, night_dim_pct: f64) -> Self {
        Self { rated_w, energy_kwh, night_dim_pct, fault: None }
    }

    /// Scheduled output (% of full) at local `hour`: the photocell switches on
    /// a few minutes after sunset and off a few minutes before sunrise, and the
    /// lamp dims between midnight and 05:00 when roads are empty.
    pub fn scheduled_dim_pct(&self, hour: f64, sun: SunTimes) -> f64 {
        let dark = hour >= sun.sunset_h + 0.1 || hour < sun.sunrise_h - 0.1;
        match (dark, hour < 5.0) {
            (false, _) => 0.0,
            (true, true) => self.night_dim_pct,
            (true, false) => 100.0,
        }
    }

    /// The controller's readings at local `hour`, given any fault.
    pub fn state(&self, hour: f64, sun: SunTimes, rng: &mut SimRng) -> LampState {
        let voltage_v = if self.fault == Some(LampFault::PowerLoss) { 0.0 } else { 220.0 + 2.5 * rng.gaussian() };
        let dim = match self.fault {
            None | Some(LampFault::CommTimeout) => self.scheduled_dim_pct(hour, sun),
            Some(_) => 0.0,
        };
        let power_w = match (voltage_v > 0.0, dim > 0.0) {
            (false, _) => 0.0,
            (true, true) => self.rated_w * dim / 100.0 * (1.0 + 0.01 * rng.gaussian()),
            (true, false) => STANDBY_W,
        };
        // LED drivers run near unity power factor; the idle controller doesn't.
        let pf = if dim > 0.0 { 0.95 } else { 0.5 };
        let current_a = if voltage_v > 0.0 { power_w / (voltage_v * pf) } else { 0.0 };
        LampState { on: dim > 0.0, dim_pct: dim, power_w, voltage_v, current_a }
    }

    /// Integrates energy over `dt_s` at the scheduled (noise-free) power.
    pub fn step(&mut self, hour: f64, sun: SunTimes, dt_s: f64) {
        let power = match self.fault {
            Some(LampFault::PowerLoss) => 0.0,
            Some(LampFault::LampFailure) => STANDBY_W,
            _ => {
                let dim = self.scheduled_dim_pct(hour, sun);
                if dim > 0.0 {
                    self.rated_w * dim / 100.0
                } else {
                    STANDBY_W
                }
            }
        };
        self.energy_kwh += power * dt_s / 3.6e6;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Epoch ms of a Taipei local date/time.
    fn local(y: i32, m: u32, d: u32, h: u32) -> i64 {
        let naive = chrono::NaiveDate::from_ymd_opt(y, m, d).unwrap().and_hms_opt(h, 0, 0).unwrap();
        (naive.and_utc().timestamp() - TAIPEI_OFFSET_S) * 1000
    }

    #[test]
    fn sun_times_are_plausible_for_kaohsiung() {
        let nov = sun_times(local(2026, 11, 22, 12));
        assert!((6.1..6.5).contains(&nov.sunrise_h) && (17.0..17.4).contains(&nov.sunset_h), "{nov:?}");
        let june = sun_times(local(2026, 6, 21, 12));
        assert!((5.2..5.5).contains(&june.sunrise_h) && (18.7..19.0).contains(&june.sunset_h), "{june:?}");
    }

    #[test]
    fn streetlights_on_at_night_dimmed_after_midnight_off_at_noon() {
        let mut rng = SimRng::new(1);
        let lamp = Lamp::new(100.0, 1000.0, 50.0);
        let sun = sun_times(local(2026, 11, 22, 12));
        let at = |h: f64, rng: &mut SimRng| lamp.state(h, sun, rng);
        let evening = at(22.0, &mut rng);
        assert!(evening.on && evening.dim_pct == 100.0 && (90.0..110.0).contains(&evening.power_w));
        let late = at(2.0, &mut rng);
        assert!(late.on && late.dim_pct == 50.0 && late.power_w < 60.0);
        let noon = at(12.0, &mut rng);
        assert!(!noon.on && noon.power_w < 2.0);
    }

    #[test]
    fn energy_only_increases_and_faults_go_dark() {
        let sun = sun_times(local(2026, 11, 22, 12));
        let mut lamp = Lamp::new(100.0, 10.0, 50.0);
        let mut last = lamp.energy_kwh;
        for minute in 0..24 * 60 {
            lamp.step(f64::from(minute) / 60.0, sun, 60.0);
            assert!(lamp.energy_kwh >= last);
            last = lamp.energy_kwh;
        }
        // ~12.5 h lit, some at half power: roughly 1.0-1.3 kWh a night.
        assert!((10.9..11.4).contains(&lamp.energy_kwh), "{}", lamp.energy_kwh);
        lamp.fault = Some(LampFault::PowerLoss);
        let s = lamp.state(22.0, sun, &mut SimRng::new(2));
        assert!(!s.on && s.voltage_v == 0.0 && s.power_w == 0.0);
    }
}
