//! Air quality: diurnal cycles, regional pollution episodes, rain washout.
//!
//! Street-level PM in Kaohsiung follows traffic (morning and evening rush) and
//! the nocturnal boundary layer (a shallow inversion at night traps PM), is
//! raised for days at a time by regional episodes (stagnant north-easterly
//! flow in the dry season) and drops sharply when rain scavenges particles.

use rand::Rng;

use crate::rng::SimRng;

/// A bump centred on `centre` (hours) with `width` hours.
fn bump(hour: f64, centre: f64, width: f64) -> f64 {
    // Wrap around midnight so a 23:00 centre also lifts 01:00.
    let d = (hour - centre + 36.0).rem_euclid(24.0) - 12.0;
    (-(d / width).powi(2)).exp()
}

/// Traffic activity, 0..~0.4 above baseline.
fn traffic(hour: f64) -> f64 {
    0.35 * bump(hour, 8.0, 1.5) + 0.3 * bump(hour, 18.5, 2.0)
}

/// City-wide state shared by every air sensor.
#[derive(Debug, Clone)]
pub struct AirRegion {
    rng: SimRng,
    /// (peak factor, start, end) of the current episode, hours since start.
    episode: Option<(f64, f64, f64)>,
    elapsed_h: f64,
}

impl AirRegion {
    pub fn new(seed: u64) -> Self {
        Self { rng: SimRng::derive(seed, "air"), episode: None, elapsed_h: 0.0 }
    }

    /// Starts an episode now lasting `hours` (scenarios and tests).
    pub fn start_episode(&mut self, factor: f64, hours: f64) {
        self.episode = Some((factor, self.elapsed_h, self.elapsed_h + hours));
    }

    pub fn step(&mut self, dt_s: f64) {
        let dt_h = dt_s / 3600.0;
        self.elapsed_h += dt_h;
        if self.episode.is_some_and(|(_, _, end)| self.elapsed_h > end) {
            self.episode = None;
        }
        // About one episode every three days.
        if self.episode.is_none() && self.rng.happens(1.0 / 72.0, dt_h) {
            let factor = self.rng.random_range(1.8..3.0);
            let hours = self.rng.random_range(4.0..10.0);
            self.start_episode(factor, hours);
        }
    }

    /// Multiplier on PM from the current episode, ramping in and out over an
    /// hour so sensors see a build-up rather than a step.
    pub fn episode_factor(&self) -> f64 {
        match self.episode {
            None => 1.0,
            Some((factor, start, end)) => {
                let ramp = ((self.elapsed_h - start).min(end - self.elapsed_h)).clamp(0.0, 1.0);
                1.0 + (factor - 1.0) * ramp
            }
        }
    }
}

/// One low-cost air sensor.
#[derive(Debug, Clone)]
pub struct AirSensor {
    base_pm25: f64,
    pm10_ratio: f64,
    industrial: bool,
    pub gases: bool,
    /// Recently fallen rain, mm, decaying over ~3 h: drives washout.
    washout_mm: f64,
}

/// One set of air readings in canonical units.
#[derive(Debug, Clone, PartialEq)]
pub struct AirSample {
    pub pm25: f64,
    pub pm10: f64,
    pub temp_c: f64,
    pub rh_pct: f64,
    /// (o3 ppb, no2 ppb, co ppm, so2 ppb) for sensors with gas cells.
    pub gases: Option<(f64, f64, f64, f64)>,
}

impl AirSensor {
    pub fn new(rng: &mut SimRng, industrial: bool, gases: bool) -> Self {
        let base = rng.random_range(10.0..22.0) * if industrial { 1.35 } else { 1.0 };
        Self { base_pm25: base, pm10_ratio: rng.random_range(1.5..2.1), industrial, gases, washout_mm: 0.0 }
    }

    pub fn step(&mut self, rain_mmh: f64, dt_s: f64) {
        let dt_h = dt_s / 3600.0;
        self.washout_mm = self.washout_mm * (-dt_h / 3.0).exp() + rain_mmh * dt_h;
    }

    /// Samples the sensor at local hour `hour` with current local rain.
    pub fn sample(&self, hour: f64, region: &AirRegion, rain_mmh: f64, rng: &mut SimRng) -> AirSample {
        let inversion = 0.35 * bump(hour, 3.0, 3.0);
        let washout = 1.0 / (1.0 + self.washout_mm / 4.0);
        let noise = (0.08 * rng.gaussian()).exp();
        let pm25 = self.base_pm25 * (1.0 + traffic(hour) + inversion) * region.episode_factor() * washout * noise;
        let coarse_noise = (0.1 * rng.gaussian()).exp();
        let pm10 = pm25 * self.pm10_ratio * coarse_noise;
        // November in Kaohsiung: ~22 °C at dawn, ~29 °C mid-afternoon.
        let cooling = (rain_mmh / 8.0).min(3.5);
        let temp_c = 25.5 + 3.5 * (std::f64::consts::TAU * (hour - 14.0) / 24.0).cos() - cooling + 0.3 * rng.gaussian();
        let rh_pct = (72.0 - 3.0 * (temp_c - 25.5) + 4.0 * rain_mmh.min(6.0) + 2.0 * rng.gaussian()).clamp(30.0, 99.0);
        let gases = self.gases.then(|| {
            let sun = (std::f64::consts::PI * (hour - 8.0) / 10.0).sin().max(0.0);
            let o3 = (12.0 + 38.0 * sun) * (1.0 + 0.2 * (region.episode_factor() - 1.0)) * washout.sqrt();
            let industry = if self.industrial { 1.0 } else { 0.0 };
            let no2 = 8.0 + 45.0 * traffic(hour) + 6.0 * industry + 1.5 * rng.gaussian();
            let co = 0.25 + 0.9 * traffic(hour) + 0.03 * rng.gaussian();
            let so2 = 1.5 + 4.0 * industry + 0.4 * rng.gaussian();
            (o3.max(1.0), no2.max(1.0), co.max(0.05), so2.max(0.2))
        });
        AirSample { pm25, pm10, temp_c, rh_pct, gases }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mean_pm25(sensor: &AirSensor, region: &AirRegion, hour: f64) -> f64 {
        let mut rng = SimRng::new(3);
        (0..200).map(|_| sensor.sample(hour, region, 0.0, &mut rng).pm25).sum::<f64>() / 200.0
    }

    #[test]
    fn pm_peaks_at_rush_hour_and_night_above_midday() {
        let sensor = AirSensor::new(&mut SimRng::new(1), false, true);
        let region = AirRegion::new(1);
        let (rush, night, noon) =
            (mean_pm25(&sensor, &region, 8.0), mean_pm25(&sensor, &region, 3.0), mean_pm25(&sensor, &region, 13.0));
        assert!(rush > noon * 1.2 && night > noon * 1.15, "{rush} {night} {noon}");
    }

    #[test]
    fn rain_washes_out_pm_and_episodes_raise_it() {
        let mut sensor = AirSensor::new(&mut SimRng::new(1), false, false);
        let mut region = AirRegion::new(1);
        let dry = mean_pm25(&sensor, &region, 13.0);
        region.start_episode(2.5, 6.0);
        for _ in 0..120 {
            region.step(60.0);
        }
        assert!(mean_pm25(&sensor, &region, 13.0) > 2.0 * dry);
        let region = AirRegion::new(1);
        for _ in 0..60 {
            sensor.step(20.0, 60.0);
        }
        assert!(mean_pm25(&sensor, &region, 13.0) < 0.4 * dry);
    }
}
