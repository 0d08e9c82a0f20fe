//! Sensor kinds and the fields each one stores.
//!
//! Column names here are a public contract: the time-series tables, dashboards,
//! the query service and open-data consumers all read them.

use std::fmt;
use std::str::FromStr;

use crate::unit::Unit;
use crate::DomainError;

/// What a sensor measures; one time-series table each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Rainfall,
    WaterLevel,
    FloodDepth,
    AirQuality,
    Streetlight,
}

impl Kind {
    pub const ALL: [Kind; 5] =
        [Kind::Rainfall, Kind::WaterLevel, Kind::FloodDepth, Kind::AirQuality, Kind::Streetlight];

    /// The kind's name, also its table name and topic segment.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Rainfall => "rainfall",
            Kind::WaterLevel => "water_level",
            Kind::FloodDepth => "flood_depth",
            Kind::AirQuality => "air_quality",
            Kind::Streetlight => "streetlight",
        }
    }

    /// Fields stored as columns, in table order (after `sensor_id`, `ts`).
    pub fn columns(self) -> &'static [Field] {
        use Field::*;
        match self {
            Kind::Rainfall => &[RainMm, IntervalS],
            Kind::WaterLevel => &[LevelM],
            Kind::FloodDepth => &[DepthCm],
            Kind::AirQuality => &[Pm25, Pm10, O3, No2, Co, So2, TempC, RhPct],
            Kind::Streetlight => &[LampOn, DimPct, PowerW, EnergyKwh, VoltageV, CurrentA, Fault],
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Kind {
    type Err = DomainError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Kind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| DomainError::UnknownKind(s.chars().take(64).collect()))
    }
}

/// How a field's value is typed in JSON and in PostgreSQL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldType {
    Float,
    Int,
    Bool,
    Text,
}

/// Every field a reading can carry. Most are stored columns; `RainTips` and
/// `RainCounterMm` are input-only and are turned into `RainMm` by [`crate::rain`].
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
    pub const ALL: [Field; 21] = [
        Field::RainMm,
        Field::IntervalS,
        Field::RainTips,
        Field::RainCounterMm,
        Field::LevelM,
        Field::DepthCm,
        Field::Pm25,
        Field::Pm10,
        Field::O3,
        Field::No2,
        Field::Co,
        Field::So2,
        Field::TempC,
        Field::RhPct,
        Field::LampOn,
        Field::DimPct,
        Field::PowerW,
        Field::EnergyKwh,
        Field::VoltageV,
        Field::CurrentA,
        Field::Fault,
    ];

    /// The column name (canonical JSON key), unit included.
    pub fn name(self) -> &'static str {
        self.spec().0
    }

    pub fn kind(self) -> Kind {
        self.spec().1
    }

    /// The unit the column stores. `None` for booleans and text.
    pub fn canonical_unit(self) -> Option<Unit> {
        self.spec().2
    }

    pub fn field_type(self) -> FieldType {
        match self {
            Field::IntervalS => FieldType::Int,
            Field::LampOn => FieldType::Bool,
            Field::Fault => FieldType::Text,
            _ => FieldType::Float,
        }
    }

    /// Short names accepted where a format names fields freely (SenML record
    /// names, LoRaWAN field maps), besides the column name itself.
    fn aliases(self) -> &'static [&'static str] {
        match self {
            Field::RainMm => &["rain", "rainfall", "precipitation"],
            Field::IntervalS => &["interval"],
            Field::RainTips => &["tips", "rain_count"],
            Field::RainCounterMm => &["rain_counter", "rain_total", "rain_accumulated"],
            Field::LevelM => &["level", "water_level", "stage"],
            Field::DepthCm => &["depth", "flood_depth", "water_depth"],
            Field::Pm25 => &["pm2_5", "pm25", "pm2.5"],
            Field::Pm10 => &["pm10"],
            Field::O3 => &["o3"],
            Field::No2 => &["no2"],
            Field::Co => &["co"],
            Field::So2 => &["so2"],
            Field::TempC => &["temp", "temperature"],
            Field::RhPct => &["rh", "humidity"],
            Field::LampOn => &["lamp", "on"],
            Field::DimPct => &["dim", "dimming"],
            Field::PowerW => &["power"],
            Field::EnergyKwh => &["energy"],
            Field::VoltageV => &["voltage"],
            Field::CurrentA => &["current"],
            Field::Fault => &[],
        }
    }

    /// Column name only: the canonical JSON format is strict.
    pub fn from_column(name: &str) -> Option<Field> {
        Field::ALL.into_iter().find(|f| f.name() == name)
    }

    /// Column name or alias, case-insensitive.
    pub fn from_name_or_alias(name: &str) -> Option<Field> {
        // Names and aliases are lowercase ASCII: compared without lowercasing
        // a copy, as this runs for every record of a pack.
        let is = |known: &str| known.eq_ignore_ascii_case(name);
        Field::ALL.into_iter().find(|f| is(f.name()) || f.aliases().iter().any(|a| is(a)))
    }

    fn spec(self) -> (&'static str, Kind, Option<Unit>) {
        use Kind::*;
        match self {
            Field::RainMm => ("rain_mm", Rainfall, Some(Unit::Millimetre)),
            Field::IntervalS => ("interval_s", Rainfall, Some(Unit::Second)),
            Field::RainTips => ("rain_tips", Rainfall, Some(Unit::Count)),
            Field::RainCounterMm => ("rain_counter_mm", Rainfall, Some(Unit::Millimetre)),
            Field::LevelM => ("level_m", WaterLevel, Some(Unit::Metre)),
            Field::DepthCm => ("depth_cm", FloodDepth, Some(Unit::Centimetre)),
            Field::Pm25 => ("pm2_5_ugm3", AirQuality, Some(Unit::MicrogramPerM3)),
            Field::Pm10 => ("pm10_ugm3", AirQuality, Some(Unit::MicrogramPerM3)),
            Field::O3 => ("o3_ppb", AirQuality, Some(Unit::Ppb)),
            Field::No2 => ("no2_ppb", AirQuality, Some(Unit::Ppb)),
            Field::Co => ("co_ppm", AirQuality, Some(Unit::Ppm)),
            Field::So2 => ("so2_ppb", AirQuality, Some(Unit::Ppb)),
            Field::TempC => ("temp_c", AirQuality, Some(Unit::Celsius)),
            Field::RhPct => ("rh_pct", AirQuality, Some(Unit::RelativeHumidity)),
            Field::LampOn => ("lamp_on", Streetlight, None),
            Field::DimPct => ("dim_pct", Streetlight, Some(Unit::Percent)),
            Field::PowerW => ("power_w", Streetlight, Some(Unit::Watt)),
            Field::EnergyKwh => ("energy_kwh", Streetlight, Some(Unit::KilowattHour)),
            Field::VoltageV => ("voltage_v", Streetlight, Some(Unit::Volt)),
            Field::CurrentA => ("current_a", Streetlight, Some(Unit::Ampere)),
            Field::Fault => ("fault", Streetlight, None),
        }
    }
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A decoded value before normalisation.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldValue {
    Number(f64),
    Bool(bool),
    Text(String),
    Null,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_column_belongs_to_its_kind() {
        for kind in Kind::ALL {
            for field in kind.columns() {
                assert_eq!(field.kind(), kind, "{field}");
            }
        }
    }

    #[test]
    fn names_and_aliases_are_unambiguous() {
        let mut seen = std::collections::HashSet::new();
        for field in Field::ALL {
            assert!(seen.insert(field.name()), "{field}");
            // `from_name_or_alias` compares case-insensitively against these as they are.
            assert_eq!(field.name(), field.name().to_ascii_lowercase());
            assert_eq!(Field::from_name_or_alias(&field.name().to_ascii_uppercase()), Some(field));
            for alias in field.aliases() {
                assert_eq!(*alias, alias.to_ascii_lowercase());
                assert!(seen.insert(alias), "{alias} used twice");
            }
        }
    }

    #[test]
    fn kinds_round_trip_through_their_names() {
        for kind in Kind::ALL {
            assert_eq!(kind.as_str().parse::<Kind>().unwrap(), kind);
        }
        assert_eq!("lava".parse::<Kind>().unwrap_err().reason(), crate::RejectReason::UnknownKind);
    }
}
