//! Water levels from rain: linear reservoirs.
//!
//! A catchment is modelled as two linear reservoirs in series (a Nash cascade
//! with n = 2): storage `S` drains at `S / k`. Two stores give the rounded,
//! delayed hydrograph a real gauge shows (lag, then recession), with one
//! parameter per store. Outflow is mapped to stage with a power-law rating
//! curve `h = base + span * (q / q_design)^0.6`, the usual shape of a channel
//! rating, so sustained rain at the design intensity brings the gauge to its
//! design stage.

/// Fraction of the design rise where river warning level 3 (yellow) sits.
pub const WARNING_3_FRACTION: f64 = 0.55;
/// Fraction of the design rise where warning level 2 (orange) sits.
pub const WARNING_2_FRACTION: f64 = 0.75;
/// Fraction of the design rise where warning level 1 (red) sits.
pub const WARNING_1_FRACTION: f64 = 0.92;
/// Fraction of the design rise where a sewer / drain counts as "high".
pub const HIGH_FRACTION: f64 = 0.8;

/// Catchment-mean rain a river gauge's design stage corresponds to, mm/h:
/// the red warning level is reached after several hours of rain near this
/// (a core typhoon band over the whole catchment), not by one downpour.
const RIVER_DESIGN_MMH: f64 = 36.0;

/// Exponent of the stage-discharge rating curve.
const RATING_EXPONENT: f64 = 0.6;
/// M2 tidal period, hours.
const TIDE_PERIOD_H: f64 = 12.42;

/// Two linear reservoirs in series. Storages in mm, rates in mm/h.
#[derive(Debug, Clone)]
pub struct Cascade {
    k1_h: f64,
    k2_h: f64,
    s1: f64,
    s2: f64,
}

impl Cascade {
    pub fn new(k1_h: f64, k2_h: f64) -> Self {
        Self { k1_h, k2_h, s1: 0.0, s2: 0.0 }
    }

    /// Advances by `dt_h` hours with constant inflow `p_mmh`. Uses the exact
    /// solution of dS/dt = p - S/k for each store, so the step size never
    /// makes it unstable (physics may take big steps at high `--speed`).
    pub fn step(&mut self, p_mmh: f64, dt_h: f64) -> f64 {
        let before = self.s1;
        self.s1 = relax(self.s1, p_mmh * self.k1_h, dt_h / self.k1_h);
        let q1 = 0.5 * (before + self.s1) / self.k1_h;
        self.s2 = relax(self.s2, q1 * self.k2_h, dt_h / self.k2_h);
        self.outflow()
    }

    /// Current outflow, mm/h (equal to the inflow at steady state).
    pub fn outflow(&self) -> f64 {
        self.s2 / self.k2_h
    }
}

/// Exact linear-reservoir update towards equilibrium `eq` over `dt/k`.
fn relax(s: f64, eq: f64, dt_over_k: f64) -> f64 {
    eq + (s - eq) * (-dt_over_k).exp()
}

/// What sort of water a level gauge watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LevelKind {
    River,
    Drainage,
    Sewer,
}

/// A water-level gauge: rain in, stage out.
#[derive(Debug, Clone)]
pub struct LevelGauge {
    pub kind: LevelKind,
    base_m: f64,
    span_m: f64,
    q_design_mmh: f64,
    cascade: Cascade,
    tide_amp_m: f64,
    /// Sewer sediment build-up, m/day (dredging due when it creeps up).
    sediment_m_per_day: f64,
    elapsed_h: f64,
}

impl LevelGauge {
    /// A river gauge whose red warning level is `warning_1_m`. The more river
    /// there is above the gauge (`upstream_km`), the bigger its catchment and
    /// the slower its response, so k grows with it.
    pub fn river(base_m: f64, warning_1_m: f64, upstream_km: f64, tide_amp_m: f64) -> Self {
        let k1 = 0.6 + 0.12 * upstream_km.clamp(0.0, 12.0);
        Self::new(
            LevelKind::River,
            base_m,
            (warning_1_m - base_m) / WARNING_1_FRACTION,
            RIVER_DESIGN_MMH,
            Cascade::new(k1, 1.0),
        )
        .with_tide(tide_amp_m)
    }

    /// An urban drainage channel: fast response, no tide.
    pub fn drainage(base_m: f64, high_m: f64) -> Self {
        Self::new(LevelKind::Drainage, base_m, (high_m - base_m) / HIGH_FRACTION, 80.0, Cascade::new(0.25, 0.3))
    }

    /// A sanitary sewer: rain gets in through illicit connections and cracks
    /// (inflow/infiltration), so it rises with rain, slower than drains.
    pub fn sewer(base_m: f64, high_m: f64, sediment_m_per_day: f64) -> Self {
        let mut g =
            Self::new(LevelKind::Sewer, base_m, (high_m - base_m) / HIGH_FRACTION, 120.0, Cascade::new(0.3, 0.6));
        g.sediment_m_per_day = sediment_m_per_day;
        g
    }

    fn new(kind: LevelKind, base_m: f64, span_m: f64, q_design_mmh: f64, cascade: Cascade) -> Self {
        Self {
            kind,
            base_m,
            span_m: span_m.max(0.1),
            q_design_mmh,
            cascade,
            tide_amp_m: 0.0,
            sediment_m_per_day: 0.0,
            elapsed_h: 0.0,
        }
    }

    fn with_tide(mut self, amp_m: f64) -> Self {
        self.tide_amp_m = amp_m;
        self
    }

    /// Advances the catchment by `dt_s` seconds of (areal mean) rain.
    pub fn step(&mut self, rain_mmh: f64, dt_s: f64) {
        let dt_h = dt_s / 3600.0;
        self.cascade.step(rain_mmh, dt_h);
        self.elapsed_h += dt_h;
    }

    /// Stage above datum at local hour `hour` (0-24) and epoch hour `abs_h`
    /// (for the tide's phase), without sensor noise.
    pub fn level_m(&self, hour: f64, abs_h: f64) -> f64 {
        let q = self.cascade.outflow().max(0.0);
        let rise = self.span_m * (q / self.q_design_mmh).powf(RATING_EXPONENT);
        let tide = self.tide_amp_m * (std::f64::consts::TAU * abs_h / TIDE_PERIOD_H).sin();
        let extra = match self.kind {
            LevelKind::Sewer => {
                0.1 * self.span_m * dry_weather_flow(hour) + self.sediment_m_per_day * self.elapsed_h / 24.0
            }
            _ => 0.0,
        };
        (self.base_m + rise + tide + extra).max(0.02)
    }
}

/// Diurnal sewage flow pattern (0..~1): morning and evening peaks, low at night.
fn dry_weather_flow(hour: f64) -> f64 {
    let bump = |centre: f64, width: f64| (-((hour - centre) / width).powi(2)).exp();
    0.7 * bump(8.5, 2.0) + 0.9 * bump(20.0, 2.5) + 0.2
}

/// A road-surface depression: water ponds when rain exceeds what the local
/// drainage can take, and drains away afterwards.
#[derive(Debug, Clone)]
pub struct Pond {
    depth_cm: f64,
    capacity_mmh: f64,
    /// Ponded depth per mm of excess rain (how much surrounding runoff the low
    /// spot collects).
    gain_cm_per_mm: f64,
    drain_k_h: f64,
}

impl Pond {
    pub fn new(capacity_mmh: f64, gain_cm_per_mm: f64, drain_k_h: f64) -> Self {
        Self { depth_cm: 0.0, capacity_mmh, gain_cm_per_mm, drain_k_h }
    }

    pub fn step(&mut self, rain_mmh: f64, dt_s: f64) {
        let inflow_cmh = self.gain_cm_per_mm * (rain_mmh - self.capacity_mmh).max(0.0);
        self.depth_cm = relax(self.depth_cm, inflow_cmh * self.drain_k_h, dt_s / 3600.0 / self.drain_k_h);
    }

    /// Water depth as the sensor reports it: ultrasonic/radar depth sensors
    /// have a ~0.5 cm dead band, so a dry road reads exactly 0.
    pub fn depth_cm(&self) -> f64 {
        if self.depth_cm < 0.5 {
            0.0
        } else {
            self.depth_cm
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Steps a gauge through 1 h of heavy rain then 10 h dry, in 1-min steps,
    /// returning the level every minute.
    fn hydrograph(mut gauge: LevelGauge) -> Vec<f64> {
        (0..11 * 60)
            .map(|minute| {
                gauge.step(if minute < 60 { 60.0 } else { 0.0 }, 60.0);
                gauge.level_m(12.0, 0.0)
            })
            .collect()
    }

    #[test]
    fn river_level_lags_rain_and_recedes() {
        let levels = hydrograph(LevelGauge::river(1.0, 3.0, 4.0, 0.0));
        let (peak_min, peak) =
            levels.iter().copied().enumerate().fold((0, 0.0), |a, (i, l)| if l > a.1 { (i, l) } else { a });
        assert!(peak_min > 60, "peak at minute {peak_min} should come after the rain stops");
        assert!(peak > 1.5, "peak {peak} should rise well above base");
        assert!(levels[10] < levels[59], "still rising during the rain");
        assert!(levels[levels.len() - 1] < 1.2, "recedes towards base");
    }

    #[test]
    fn drains_respond_faster_than_rivers() {
        let peak_at = |levels: Vec<f64>| levels.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).unwrap().0;
        let river = peak_at(hydrograph(LevelGauge::river(1.0, 3.0, 4.0, 0.0)));
        let drain = peak_at(hydrograph(LevelGauge::drainage(0.3, 1.5)));
        assert!(drain < river, "drain peak {drain} vs river {river}");
    }

    #[test]
    fn sustained_design_rain_reaches_warning_1() {
        let mut g = LevelGauge::river(1.0, 3.0, 2.0, 0.0);
        for _ in 0..24 * 60 {
            g.step(50.0, 60.0);
        }
        assert!(g.level_m(12.0, 0.0) > 3.0);
    }

    #[test]
    fn pond_fills_only_above_capacity_and_drains() {
        let mut pond = Pond::new(50.0, 0.6, 0.4);
        for _ in 0..60 {
            pond.step(40.0, 60.0);
        }
        assert_eq!(pond.depth_cm(), 0.0, "rain below capacity doesn't pond");
        for _ in 0..60 {
            pond.step(100.0, 60.0);
        }
        let flooded = pond.depth_cm();
        assert!(flooded > 10.0, "{flooded}");
        for _ in 0..6 * 60 {
            pond.step(0.0, 60.0);
        }
        assert_eq!(pond.depth_cm(), 0.0);
    }
}
