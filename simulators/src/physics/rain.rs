//! Rain: moving, growing and decaying Gaussian rain cells over a background.
//!
//! Convective cells are well approximated by Gaussian blobs of intensity
//! drifting with the steering wind; a typhoon adds a broad stratiform shield,
//! spiral rain bands (long, narrow lines of heavy rain sweeping across the
//! city) and frequent intense cells embedded in them.

use std::f64::consts::PI;

use rand::Rng;

use crate::geo::{LonLat, CITY_LAT, CITY_LON};
use crate::rng::SimRng;

/// The large-scale weather a scenario runs under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Weather {
    /// A normal day: dry, with a chance of an afternoon shower.
    Calm,
    /// A typhoon whose rain bands arrive at the simulation start and last
    /// about 13 hours.
    Typhoon,
}

/// One Gaussian rain cell.
#[derive(Debug, Clone)]
pub struct RainCell {
    pub center: LonLat,
    pub sigma_km: f64,
    /// Intensity at the centre at the cell's mature stage, mm/h.
    pub peak_mmh: f64,
    /// Drift velocity (east, north), km/h.
    pub velocity_kmh: (f64, f64),
    pub age_h: f64,
    pub life_h: f64,
}

impl RainCell {
    /// Life-cycle envelope: grows, matures at mid-life, decays.
    fn strength(&self) -> f64 {
        (PI * self.age_h / self.life_h).sin().max(0.0)
    }

    /// Rain intensity this cell produces at `at`, mm/h.
    pub fn intensity_at(&self, at: LonLat) -> f64 {
        let (e, n) = at.km_from(self.center);
        let d2 = e * e + n * n;
        self.peak_mmh * self.strength() * (-d2 / (2.0 * self.sigma_km * self.sigma_km)).exp()
    }

    fn advance(&mut self, dt_h: f64) {
        self.center = self.center.offset_km(self.velocity_kmh.0 * dt_h, self.velocity_kmh.1 * dt_h);
        self.age_h += dt_h;
    }
}

/// A typhoon rain band: a line of heavy rain tens of km long and a few km
/// wide, swept across the city perpendicular to its axis.
#[derive(Debug, Clone)]
pub struct RainBand {
    /// A point on the band's axis.
    pub center: LonLat,
    /// Unit vector (east, north) along the band's axis.
    pub axis: (f64, f64),
    /// Half the band's length, km; the rain tapers off beyond it.
    pub half_length_km: f64,
    /// Across-band standard deviation, km.
    pub sigma_km: f64,
    pub peak_mmh: f64,
    pub velocity_kmh: (f64, f64),
    pub age_h: f64,
    pub life_h: f64,
}

impl RainBand {
    /// Builds up over the first fifth of its life, holds, then weakens over the last fifth.
    fn strength(&self) -> f64 {
        let x = self.age_h / self.life_h;
        (x / 0.2).min(1.0).min((1.0 - x) / 0.2).clamp(0.0, 1.0)
    }

    pub fn intensity_at(&self, at: LonLat) -> f64 {
        let (e, n) = at.km_from(self.center);
        let along = e * self.axis.0 + n * self.axis.1;
        let across = -e * self.axis.1 + n * self.axis.0;
        let beyond = (along.abs() - self.half_length_km).max(0.0);
        let taper = (-beyond * beyond / (2.0 * 16.0)).exp();
        self.peak_mmh * self.strength() * taper * (-across * across / (2.0 * self.sigma_km * self.sigma_km)).exp()
    }

    fn advance(&mut self, dt_h: f64) {
        self.center = self.center.offset_km(self.velocity_kmh.0 * dt_h, self.velocity_kmh.1 * dt_h);
        self.age_h += dt_h;
    }
}

/// When the typhoon's spiral bands cross the city (hours after the start)
/// and how hard they rain at their axis, mm/h: an outer band, the two bands
/// of the core, a trailing band.
const TYPHOON_BANDS: [(f64, f64); 4] = [(1.8, 30.0), (4.6, 85.0), (8.6, 75.0), (11.2, 28.0)];

/// Soft ceiling of rain intensity at a point, mm/h.
const MAX_MMH: f64 = 200.0;

/// The rain over the whole city.
#[derive(Debug, Clone)]
pub struct RainField {
    weather: Weather,
    start_ms: i64,
    rng: SimRng,
    cells: Vec<RainCell>,
    bands: Vec<RainBand>,
    /// How many of [`TYPHOON_BANDS`] have been spawned.
    bands_spawned: usize,
    background_mmh: f64,
    /// Hours since the start of the simulation.
    elapsed_h: f64,
}

impl RainField {
    pub fn new(weather: Weather, start_ms: i64, seed: u64) -> Self {
        Self {
            weather,
            start_ms,
            rng: SimRng::derive(seed, "rain"),
            cells: Vec::new(),
            bands: Vec::new(),
            bands_spawned: 0,
            background_mmh: 0.0,
            elapsed_h: 0.0,
        }
    }

    /// Adds a cell (scenario scripting and tests).
    pub fn add_cell(&mut self, cell: RainCell) {
        self.cells.push(cell);
    }

    pub fn cells(&self) -> &[RainCell] {
        &self.cells
    }

    pub fn bands(&self) -> &[RainBand] {
        &self.bands
    }

    /// Typhoon intensity envelope (0..1) at `h` hours after the start: outer
    /// bands for 3 h, the core for 6 h, then 4 h tapering to showers.
    pub fn typhoon_envelope(h: f64) -> f64 {
        match h {
            h if h < 0.0 => 0.0,
            h if h < 3.0 => h / 3.0,
            h if h < 9.0 => 1.0,
            h if h < 13.0 => 1.0 - (h - 9.0) / 4.0 * 0.95,
            _ => 0.05,
        }
    }

    /// 0..1: how stormy it is city-wide (drives faster reporting cadences).
    pub fn storminess(&self) -> f64 {
        match self.weather {
            Weather::Calm => 0.0,
            Weather::Typhoon => Self::typhoon_envelope(self.elapsed_h),
        }
    }

    /// Advances the weather to `now_ms` by `dt_s`: cells drift and age, dead
    /// ones are dropped, new ones spawn per the scenario.
    pub fn step(&mut self, now_ms: i64, dt_s: f64) {
        let dt_h = dt_s / 3600.0;
        self.elapsed_h = (now_ms - self.start_ms) as f64 / 3_600_000.0;
        for cell in &mut self.cells {
            cell.advance(dt_h);
        }
        self.cells.retain(|c| c.age_h < c.life_h);
        for band in &mut self.bands {
            band.advance(dt_h);
        }
        self.bands.retain(|b| b.age_h < b.life_h);
        let hour = crate::timefmt::taipei_hour(now_ms);
        match self.weather {
            Weather::Calm => {
                self.background_mmh = 0.0;
                // Afternoon convection is the only rain on a normal day.
                let rate_per_h = if (13.0..18.0).contains(&hour) { 0.2 } else { 0.01 };
                if self.rng.happens(rate_per_h, dt_h) {
                    let cell = self.spawn_shower();
                    self.cells.push(cell);
                }
            }
            Weather::Typhoon => {
                let e = Self::typhoon_envelope(self.elapsed_h);
                // The stratiform shield pulses slowly between bands.
                let pulse = 0.8 + 0.2 * (self.elapsed_h * 1.3).sin();
                self.background_mmh = if e > 0.1 { (1.0 + 4.0 * e) * pulse } else { 0.0 };
                while let Some(&(at_h, peak)) = TYPHOON_BANDS.get(self.bands_spawned) {
                    // Spawned so that the axis crosses the city centre about `at_h`.
                    let lead_h = 1.2;
                    if self.elapsed_h + lead_h < at_h {
                        break;
                    }
                    self.bands_spawned += 1;
                    let band = self.spawn_band(peak, lead_h);
                    self.bands.push(band);
                }
                if self.rng.happens(1.5 * e, dt_h) {
                    let cell = self.spawn_band_cell(e);
                    self.cells.push(cell);
                }
            }
        }
    }

    /// Rain intensity at `at`, mm/h.
    pub fn intensity_at(&self, at: LonLat) -> f64 {
        // Orographic enhancement: the eastern foothills get more than the coast.
        let orographic = 1.0 + 3.0 * (at.lon - CITY_LON).clamp(-0.05, 0.1);
        let cells: f64 = self.cells.iter().map(|c| c.intensity_at(at)).sum();
        let bands: f64 = self.bands.iter().map(|b| b.intensity_at(at)).sum();
        let total = (self.background_mmh * orographic + cells + bands).max(0.0);
        // Where cells and bands overlap, rain rates saturate (the one-minute
        // rates a gauge sees in a typhoon top out around 200 mm/h) instead of
        // adding up to rates no storm has produced.
        MAX_MMH * (total / MAX_MMH).tanh()
    }

    fn city_center() -> LonLat {
        LonLat::new(CITY_LON, CITY_LAT + 0.04)
    }

    /// A small, slow afternoon shower somewhere over the city.
    fn spawn_shower(&mut self) -> RainCell {
        let r = &mut self.rng;
        let dir = r.random_range(0.0..std::f64::consts::TAU);
        let speed = r.random_range(5.0..15.0);
        let center = Self::city_center().offset_km(r.random_range(-8.0..8.0), r.random_range(-15.0..15.0));
        RainCell {
            center,
            sigma_km: r.random_range(1.5..3.5),
            peak_mmh: r.random_range(5.0..25.0),
            velocity_kmh: (speed * dir.cos(), speed * dir.sin()),
            age_h: 0.0,
            life_h: r.random_range(0.7..1.5),
        }
    }

    /// A spiral band lying NNW-SSE, swept north-eastwards by the monsoonal
    /// flow, placed so its axis reaches the city centre `lead_h` hours from
    /// now (give or take its offset along the track).
    fn spawn_band(&mut self, peak_mmh: f64, lead_h: f64) -> RainBand {
        let r = &mut self.rng;
        let heading = (60.0 + r.random_range(-15.0..15.0_f64)).to_radians(); // towards ENE
        let speed = r.random_range(18.0..28.0);
        let (ux, uy) = (heading.sin(), heading.cos());
        let back = speed * lead_h;
        let along = r.random_range(-6.0..6.0);
        let center = Self::city_center().offset_km(-ux * back + uy * along, -uy * back - ux * along);
        RainBand {
            center,
            axis: (uy, -ux),
            half_length_km: r.random_range(12.0..22.0),
            sigma_km: r.random_range(3.0..5.0),
            peak_mmh: peak_mmh * r.random_range(0.85..1.15),
            velocity_kmh: (speed * ux, speed * uy),
            age_h: 0.0,
            life_h: 2.0 * lead_h + r.random_range(0.3..1.0),
        }
    }

    /// An intense band cell entering from the south-west (the monsoonal flow a
    /// typhoon drags over southern Taiwan), crossing the city mid-life.
    fn spawn_band_cell(&mut self, envelope: f64) -> RainCell {
        let r = &mut self.rng;
        let heading = (45.0 + r.random_range(-25.0..25.0_f64)).to_radians(); // towards NE
        let speed = r.random_range(20.0..35.0);
        let (ux, uy) = (heading.sin(), heading.cos());
        let across = r.random_range(-18.0..18.0);
        let life_h: f64 = r.random_range(1.5..3.0);
        let back = speed * life_h / 2.0; // so the cell matures over the city
        let center = Self::city_center().offset_km(-ux * back + uy * across, -uy * back - ux * across);
        RainCell {
            center,
            sigma_km: r.random_range(3.0..6.0),
            peak_mmh: r.random_range(30.0..90.0) * (0.7 + 0.3 * envelope),
            velocity_kmh: (speed * ux, speed * uy),
            age_h: 0.0,
            life_h,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cell() -> RainCell {
        RainCell {
            center: LonLat::new(120.30, 22.60),
            sigma_km: 3.0,
            peak_mmh: 80.0,
            velocity_kmh: (30.0, 0.0),
            age_h: 0.0,
            life_h: 2.0,
        }
    }

    #[test]
    fn rain_cell_moves_with_the_wind_and_grows_then_decays() {
        let mut field = RainField::new(Weather::Calm, 0, 1);
        field.add_cell(cell());
        let east_of_start = LonLat::new(120.30, 22.60).offset_km(15.0, 0.0);
        let before = field.intensity_at(east_of_start);
        let mut peak = 0.0f64;
        for minute in 1..=30 {
            field.step(minute * 60_000, 60.0);
            peak = peak.max(field.cells()[0].strength());
        }
        let moved = field.cells()[0].center.distance_km(LonLat::new(120.30, 22.60));
        assert!((moved - 15.0).abs() < 0.1, "moved {moved} km in 30 min at 30 km/h");
        assert!(field.intensity_at(east_of_start) > 10.0 * before.max(0.01));
        // After its life the cell is gone.
        for minute in 31..=150 {
            field.step(minute * 60_000, 60.0);
        }
        assert!(field.cells().iter().all(|c| c.age_h < c.life_h));
        assert!(peak > 0.4);
    }

    #[test]
    fn intensity_falls_off_with_distance() {
        let mut c = cell();
        c.age_h = 1.0; // mature
        let at = |km: f64| c.intensity_at(c.center.offset_km(km, 0.0));
        assert!((at(0.0) - 80.0).abs() < 1e-9);
        assert!(at(3.0) < at(1.0) && at(10.0) < 1.0);
    }

    #[test]
    fn typhoon_rains_hard_and_calm_mostly_does_not() {
        let probe = LonLat::new(120.32, 22.65);
        let total = |weather| {
            let mut f = RainField::new(weather, 0, 42);
            (1..=12 * 60)
                .map(|m| {
                    f.step(m * 60_000, 60.0);
                    f.intensity_at(probe) / 60.0
                })
                .sum::<f64>()
        };
        let typhoon = total(Weather::Typhoon);
        let calm = total(Weather::Calm);
        assert!(typhoon > 150.0, "typhoon 12 h total {typhoon} mm");
        assert!(calm < 30.0, "calm 12 h total {calm} mm");
    }
}
