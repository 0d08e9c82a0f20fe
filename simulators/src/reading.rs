//! One observation in canonical terms, before it is encoded in some wire
//! format. Keeping readings format-neutral lets the same physics feed
//! canonical JSON, SenML packs and LoRaWAN uplinks.

use std::sync::Arc;

/// A canonical column of the ingest contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Field {
    RainMm,
    IntervalS,
    RainTips,
    RainCounterMm,
    LevelM,
    DepthCm,
    Pm25,
    Pm10,
    O3,
    No2,
    Co,
    So2,
    TempC,
    RhPct,
    LampOn,
    DimPct,
    PowerW,
    EnergyKwh,
    VoltageV,
    CurrentA,
    Fault,
}

impl Field {
    /// Column name in canonical JSON.
    pub fn column(self) -> &'static str {
        match self {
            Field::RainMm => "rain_mm",
            Field::IntervalS => "interval_s",
            Field::RainTips => "rain_tips",
            Field::RainCounterMm => "rain_counter_mm",
            Field::LevelM => "level_m",
            Field::DepthCm => "depth_cm",
            Field::Pm25 => "pm2_5_ugm3",
            Field::Pm10 => "pm10_ugm3",
            Field::O3 => "o3_ppb",
            Field::No2 => "no2_ppb",
            Field::Co => "co_ppm",
            Field::So2 => "so2_ppb",
            Field::TempC => "temp_c",
            Field::RhPct => "rh_pct",
            Field::LampOn => "lamp_on",
            Field::DimPct => "dim_pct",
            Field::PowerW => "power_w",
            Field::EnergyKwh => "energy_kwh",
            Field::VoltageV => "voltage_v",
            Field::CurrentA => "current_a",
            Field::Fault => "fault",
        }
    }

    /// SenML record name suffix (the column without its unit suffix).
    pub fn senml_name(self) -> &'static str {
        match self {
            Field::RainMm => "rain",
            Field::IntervalS => "interval",
            Field::RainTips => "rain_tips",
            Field::RainCounterMm => "rain_counter",
            Field::LevelM => "level",
            Field::DepthCm => "depth",
            Field::Pm25 => "pm2_5",
            Field::Pm10 => "pm10",
            Field::O3 => "o3",
            Field::No2 => "no2",
            Field::Co => "co",
            Field::So2 => "so2",
            Field::TempC => "temp",
            Field::RhPct => "rh",
            Field::LampOn => "lamp_on",
            Field::DimPct => "dim",
            Field::PowerW => "power",
            Field::EnergyKwh => "energy",
            Field::VoltageV => "voltage",
            Field::CurrentA => "current",
            Field::Fault => "fault",
        }
    }

    /// The canonical unit as an IANA SenML unit symbol (`None` for booleans
    /// and strings); tip counts are `count` (RFC 8798's counter unit).
    pub fn senml_unit(self) -> Option<&'static str> {
        Some(match self {
            Field::RainMm | Field::RainCounterMm => "mm",
            Field::IntervalS => "s",
            Field::RainTips => "count",
            Field::LevelM => "m",
            Field::DepthCm => "cm",
            Field::Pm25 | Field::Pm10 => "ug/m3",
            Field::O3 | Field::No2 | Field::So2 => "ppb",
            Field::Co => "ppm",
            Field::TempC => "Cel",
            Field::RhPct => "%RH",
            Field::DimPct => "%",
            Field::PowerW => "W",
            Field::EnergyKwh => "kWh",
            Field::VoltageV => "V",
            Field::CurrentA => "A",
            Field::LampOn | Field::Fault => return None,
        })
    }

    /// An alternative SenML unit for the same quantity and how to convert a
    /// canonical value into it (`alt = canonical * scale + offset`). Gateways
    /// with the "alternate units" style use these so the normaliser has real
    /// conversions to do.
    pub fn senml_alt_unit(self) -> Option<(&'static str, f64, f64)> {
        Some(match self {
            Field::LevelM => ("cm", 100.0, 0.0),
            Field::DepthCm => ("mm", 10.0, 0.0),
            Field::TempC => ("K", 1.0, 273.15),
            Field::PowerW => ("kW", 0.001, 0.0),
            Field::EnergyKwh => ("Wh", 1000.0, 0.0),
            Field::O3 | Field::No2 | Field::So2 => ("ppm", 0.001, 0.0),
            _ => return None,
        })
    }

    /// Decimal places a real instrument would report.
    pub fn decimals(self) -> i32 {
        match self {
            Field::LevelM | Field::CurrentA | Field::Co => 3,
            Field::EnergyKwh => 2,
            Field::IntervalS | Field::RainTips | Field::DimPct => 0,
            _ => 1,
        }
    }
}

/// A reading's value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Num(f64),
    Int(i64),
    Bool(bool),
    Str(&'static str),
    Null,
}

impl Value {
    /// The numeric value, if any (integers widen to f64).
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Value::Num(v) => Some(v),
            Value::Int(v) => Some(v as f64),
            _ => None,
        }
    }
}

/// Rounds `v` to `decimals` places, so payloads carry `2.41` rather than
/// `2.4100000000000001`.
pub fn round_to(v: f64, decimals: i32) -> f64 {
    let p = 10f64.powi(decimals);
    (v * p).round() / p
}

/// One sensor's observation at one instant.
#[derive(Debug, Clone, PartialEq)]
pub struct Reading {
    pub sensor_id: Arc<str>,
    /// Observation time, epoch milliseconds.
    pub ts_ms: i64,
    pub values: Vec<(Field, Value)>,
}

impl Reading {
    pub fn new(sensor_id: Arc<str>, ts_ms: i64) -> Self {
        Self { sensor_id, ts_ms, values: Vec::with_capacity(8) }
    }

    /// Adds a numeric field rounded to the instrument's resolution.
    pub fn num(&mut self, field: Field, v: f64) -> &mut Self {
        self.values.push((field, Value::Num(round_to(v, field.decimals()))));
        self
    }

    pub fn push(&mut self, field: Field, v: Value) -> &mut Self {
        self.values.push((field, v));
        self
    }

    pub fn get(&self, field: Field) -> Option<&Value> {
        self.values.iter().find(|(f, _)| *f == field).map(|(_, v)| v)
    }
}
