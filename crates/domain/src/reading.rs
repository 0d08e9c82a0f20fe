//! A normalised reading: one row of one time-series table.

use chrono::{DateTime, Utc};

use crate::kind::{Field, Kind};

/// One row for a kind's table, every value in its canonical unit.
#[derive(Debug, Clone, PartialEq)]
pub struct Reading {
    pub sensor_id: String,
    pub ts: DateTime<Utc>,
    pub values: Values,
    pub quality: Quality,
}

impl Reading {
    pub fn kind(&self) -> Kind {
        self.values.kind()
    }
}

/// The value columns of each kind's table.
#[derive(Debug, Clone, PartialEq)]
pub enum Values {
    Rainfall { rain_mm: f64, interval_s: Option<i32> },
    WaterLevel { level_m: f64 },
    FloodDepth { depth_cm: f64 },
    AirQuality(AirQuality),
    Streetlight(Streetlight),
}

impl Values {
    pub fn kind(&self) -> Kind {
        match self {
            Values::Rainfall { .. } => Kind::Rainfall,
            Values::WaterLevel { .. } => Kind::WaterLevel,
            Values::FloodDepth { .. } => Kind::FloodDepth,
            Values::AirQuality(_) => Kind::AirQuality,
            Values::Streetlight(_) => Kind::Streetlight,
        }
    }

    /// The numeric value of a stored column, for checks that treat columns alike.
    pub fn number(&self, field: Field) -> Option<f64> {
        match (self, field) {
            (Values::Rainfall { rain_mm, .. }, Field::RainMm) => Some(*rain_mm),
            (Values::Rainfall { interval_s, .. }, Field::IntervalS) => interval_s.map(f64::from),
            (Values::WaterLevel { level_m }, Field::LevelM) => Some(*level_m),
            (Values::FloodDepth { depth_cm }, Field::DepthCm) => Some(*depth_cm),
            (Values::AirQuality(a), f) => a.get(f),
            (Values::Streetlight(s), f) => s.get(f),
            _ => None,
        }
    }
}

/// Air-quality micro-sensor columns; any subset may be present.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AirQuality {
    pub pm2_5_ugm3: Option<f64>,
    pub pm10_ugm3: Option<f64>,
    pub o3_ppb: Option<f64>,
    pub no2_ppb: Option<f64>,
    pub co_ppm: Option<f64>,
    pub so2_ppb: Option<f64>,
    pub temp_c: Option<f64>,
    pub rh_pct: Option<f64>,
}

impl AirQuality {
    pub fn get(&self, field: Field) -> Option<f64> {
        match field {
            Field::Pm25 => self.pm2_5_ugm3,
            Field::Pm10 => self.pm10_ugm3,
            Field::O3 => self.o3_ppb,
            Field::No2 => self.no2_ppb,
            Field::Co => self.co_ppm,
            Field::So2 => self.so2_ppb,
            Field::TempC => self.temp_c,
            Field::RhPct => self.rh_pct,
            _ => None,
        }
    }

    pub(crate) fn slot(&mut self, field: Field) -> Option<&mut Option<f64>> {
        Some(match field {
            Field::Pm25 => &mut self.pm2_5_ugm3,
            Field::Pm10 => &mut self.pm10_ugm3,
            Field::O3 => &mut self.o3_ppb,
            Field::No2 => &mut self.no2_ppb,
            Field::Co => &mut self.co_ppm,
            Field::So2 => &mut self.so2_ppb,
            Field::TempC => &mut self.temp_c,
            Field::RhPct => &mut self.rh_pct,
            _ => return None,
        })
    }
}

/// Smart streetlight columns; any subset may be present.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Streetlight {
    pub lamp_on: Option<bool>,
    pub dim_pct: Option<f64>,
    pub power_w: Option<f64>,
    /// The meter reading, not a delta.
    pub energy_kwh: Option<f64>,
    pub voltage_v: Option<f64>,
    pub current_a: Option<f64>,
    /// A vendor fault code, `None` when the lamp reports no fault.
    pub fault: Option<String>,
}

impl Streetlight {
    pub fn get(&self, field: Field) -> Option<f64> {
        match field {
            Field::DimPct => self.dim_pct,
            Field::PowerW => self.power_w,
            Field::EnergyKwh => self.energy_kwh,
            Field::VoltageV => self.voltage_v,
            Field::CurrentA => self.current_a,
            _ => None,
        }
    }

    pub(crate) fn slot(&mut self, field: Field) -> Option<&mut Option<f64>> {
        Some(match field {
            Field::DimPct => &mut self.dim_pct,
            Field::PowerW => &mut self.power_w,
            Field::EnergyKwh => &mut self.energy_kwh,
            Field::VoltageV => &mut self.voltage_v,
            Field::CurrentA => &mut self.current_a,
            _ => return None,
        })
    }
}

/// How far a reading can be trusted. Ordered: a worse check wins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub enum QualityLevel {
    #[default]
    Good,
    Suspect,
    Bad,
}

impl QualityLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            QualityLevel::Good => "good",
            QualityLevel::Suspect => "suspect",
            QualityLevel::Bad => "bad",
        }
    }
}

/// The quality flag stored with every row, with the codes of the checks that
/// fired (e.g. `out_of_range:level_m`, `spike:depth_cm`, `future_ts`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Quality {
    pub level: QualityLevel,
    pub reasons: Vec<String>,
}

impl Quality {
    pub fn flag(&mut self, level: QualityLevel, reason: impl Into<String>) {
        self.level = self.level.max(level);
        self.reasons.push(reason.into());
    }

    pub fn is_good(&self) -> bool {
        self.level == QualityLevel::Good
    }
}

/// A cumulative rain counter value; it becomes interval rain only against the
/// sensor's previous counter value, which the store holds (see [`crate::rain`]).
#[derive(Debug, Clone, PartialEq)]
pub struct CounterReading {
    pub sensor_id: String,
    pub ts: DateTime<Utc>,
    pub counter_mm: f64,
    pub quality: Quality,
}
