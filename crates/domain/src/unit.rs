//! Units as sensors send them, and conversion into each column's canonical unit.
//!
//! Symbols follow the IANA SenML units registry (RFC 8428 and RFC 8798) where
//! it has one (`m`, `Cel`, `%RH`, `ug/m3`, `kWh` ...) and accept the spellings
//! vendors actually use besides (`inch`, `degF`, `µg/m³` ...).

use std::fmt;

use crate::DomainError;

/// A physical dimension: only units of the same dimension convert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dimension {
    Length,
    MassConcentration,
    MixingRatio,
    Temperature,
    Ratio,
    Power,
    Energy,
    Voltage,
    Current,
    Time,
    Count,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Unit {
    Metre,
    Centimetre,
    Millimetre,
    Kilometre,
    Inch,
    Foot,
    MicrogramPerM3,
    MilligramPerM3,
    Ppb,
    Ppm,
    Celsius,
    Kelvin,
    Fahrenheit,
    /// Percent, as a 0-100 number.
    Percent,
    /// Relative humidity in percent, SenML `%RH`.
    RelativeHumidity,
    /// A 0-1 ratio, SenML `/`.
    Ratio,
    Watt,
    Milliwatt,
    Kilowatt,
    WattHour,
    KilowattHour,
    MegawattHour,
    Joule,
    Volt,
    Millivolt,
    Ampere,
    Milliampere,
    Second,
    Millisecond,
    Minute,
    Hour,
    Count,
}

impl Unit {
    /// Parses a unit symbol; unknown symbols are an error that names them.
    pub fn parse(symbol: &str) -> Result<Unit, DomainError> {
        use Unit::*;
        let unit = match symbol.trim() {
            "m" => Metre,
            "cm" => Centimetre,
            "mm" => Millimetre,
            "km" => Kilometre,
            "in" | "inch" | "inches" => Inch,
            "ft" | "foot" | "feet" => Foot,
            "ug/m3" | "µg/m3" | "μg/m3" | "ug/m^3" | "µg/m³" | "μg/m³" | "ug/m³" => MicrogramPerM3,
            "mg/m3" | "mg/m^3" | "mg/m³" => MilligramPerM3,
            "ppb" => Ppb,
            "ppm" => Ppm,
            "Cel" | "degC" | "°C" | "C" | "celsius" => Celsius,
            "K" => Kelvin,
            "degF" | "°F" | "F" | "Far" | "fahrenheit" => Fahrenheit,
            "%" => Percent,
            "%RH" | "%rh" => RelativeHumidity,
            "/" => Ratio,
            "W" => Watt,
            "mW" => Milliwatt,
            "kW" => Kilowatt,
            "Wh" => WattHour,
            "kWh" => KilowattHour,
            "MWh" => MegawattHour,
            "J" => Joule,
            "V" => Volt,
            "mV" => Millivolt,
            "A" => Ampere,
            "mA" => Milliampere,
            "s" => Second,
            "ms" => Millisecond,
            "min" => Minute,
            "h" => Hour,
            "count" | "1" | "tips" => Count,
            other => return Err(DomainError::UnknownUnit(other.chars().take(32).collect())),
        };
        Ok(unit)
    }

    /// The SenML symbol (or the common one where SenML has none).
    pub fn symbol(self) -> &'static str {
        use Unit::*;
        match self {
            Metre => "m",
            Centimetre => "cm",
            Millimetre => "mm",
            Kilometre => "km",
            Inch => "in",
            Foot => "ft",
            MicrogramPerM3 => "ug/m3",
            MilligramPerM3 => "mg/m3",
            Ppb => "ppb",
            Ppm => "ppm",
            Celsius => "Cel",
            Kelvin => "K",
            Fahrenheit => "degF",
            Percent => "%",
            RelativeHumidity => "%RH",
            Ratio => "/",
            Watt => "W",
            Milliwatt => "mW",
            Kilowatt => "kW",
            WattHour => "Wh",
            KilowattHour => "kWh",
            MegawattHour => "MWh",
            Joule => "J",
            Volt => "V",
            Millivolt => "mV",
            Ampere => "A",
            Milliampere => "mA",
            Second => "s",
            Millisecond => "ms",
            Minute => "min",
            Hour => "h",
            Count => "count",
        }
    }

    /// Dimension and the affine map `base = value * scale + offset` into the
    /// dimension's base unit (metre, ug/m3, ppb, kelvin, ratio, watt, watt-hour,
    /// volt, ampere, second, count).
    fn affine(self) -> (Dimension, f64, f64) {
        use Dimension as D;
        use Unit::*;
        match self {
            Metre => (D::Length, 1.0, 0.0),
            Centimetre => (D::Length, 0.01, 0.0),
            Millimetre => (D::Length, 0.001, 0.0),
            Kilometre => (D::Length, 1000.0, 0.0),
            Inch => (D::Length, 0.0254, 0.0),
            Foot => (D::Length, 0.3048, 0.0),
            MicrogramPerM3 => (D::MassConcentration, 1.0, 0.0),
            MilligramPerM3 => (D::MassConcentration, 1000.0, 0.0),
            Ppb => (D::MixingRatio, 1.0, 0.0),
            Ppm => (D::MixingRatio, 1000.0, 0.0),
            Kelvin => (D::Temperature, 1.0, 0.0),
            Celsius => (D::Temperature, 1.0, 273.15),
            Fahrenheit => (D::Temperature, 5.0 / 9.0, 273.15 - 32.0 * 5.0 / 9.0),
            Ratio => (D::Ratio, 1.0, 0.0),
            Percent | RelativeHumidity => (D::Ratio, 0.01, 0.0),
            Watt => (D::Power, 1.0, 0.0),
            Milliwatt => (D::Power, 0.001, 0.0),
            Kilowatt => (D::Power, 1000.0, 0.0),
            WattHour => (D::Energy, 1.0, 0.0),
            KilowattHour => (D::Energy, 1000.0, 0.0),
            MegawattHour => (D::Energy, 1_000_000.0, 0.0),
            Joule => (D::Energy, 1.0 / 3600.0, 0.0),
            Volt => (D::Voltage, 1.0, 0.0),
            Millivolt => (D::Voltage, 0.001, 0.0),
            Ampere => (D::Current, 1.0, 0.0),
            Milliampere => (D::Current, 0.001, 0.0),
            Second => (D::Time, 1.0, 0.0),
            Millisecond => (D::Time, 0.001, 0.0),
            Minute => (D::Time, 60.0, 0.0),
            Hour => (D::Time, 3600.0, 0.0),
            Count => (D::Count, 1.0, 0.0),
        }
    }

    pub fn dimension(self) -> Dimension {
        self.affine().0
    }

    /// Converts `value` from `self` into `target`, or `None` across dimensions.
    pub fn convert(self, value: f64, target: Unit) -> Option<f64> {
        if self == target {
            return Some(value);
        }
        let (from_dim, from_scale, from_offset) = self.affine();
        let (to_dim, to_scale, to_offset) = target.affine();
        if from_dim != to_dim {
            return None;
        }
        let base = value * from_scale + from_offset;
        Some(round_significant((base - to_offset) / to_scale))
    }
}

/// Rounds away the binary noise arithmetic adds (123 mm is 12.3 cm, not
/// 12.299999999999999; 7 tips of 0.2 mm are 1.4 mm) while keeping far more
/// digits than any sensor has. Every derived value goes through it.
pub fn round_significant(x: f64) -> f64 {
    const DIGITS: i32 = 12;
    if x == 0.0 || !x.is_finite() {
        return x;
    }
    let magnitude = x.abs().log10().ceil() as i32;
    let scale = 10f64.powi(DIGITS - magnitude);
    if !scale.is_finite() || scale == 0.0 {
        return x;
    }
    (x * scale).round() / scale
}

impl fmt::Display for Unit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.symbol())
    }
}

#[cfg(test)]
mod tests {
    use super::Unit::*;
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9 * b.abs().max(1.0)
    }

    #[test]
    fn converts_the_units_cities_receive() {
        let cases = [
            (Centimetre, 241.0, Metre, 2.41),
            (Millimetre, 2410.0, Metre, 2.41),
            (Inch, 1.0, Millimetre, 25.4),
            (Millimetre, 123.0, Centimetre, 12.3),
            (Ppm, 0.035, Ppb, 35.0),
            (Ppb, 1200.0, Ppm, 1.2),
            (MilligramPerM3, 0.012, MicrogramPerM3, 12.0),
            (Kilowatt, 0.12, Watt, 120.0),
            (WattHour, 1500.0, KilowattHour, 1.5),
            (Fahrenheit, 212.0, Celsius, 100.0),
            (Fahrenheit, 32.0, Celsius, 0.0),
            (Kelvin, 300.15, Celsius, 27.0),
            (Ratio, 0.4, Percent, 40.0),
            (Minute, 10.0, Second, 600.0),
        ];
        for (from, value, to, want) in cases {
            let got = from.convert(value, to).unwrap();
            assert!(close(got, want), "{value} {from} -> {got} {to}, want {want}");
        }
    }

    #[test]
    fn conversions_are_exact_to_the_digits_people_read() {
        assert_eq!(Millimetre.convert(123.0, Centimetre), Some(12.3));
        assert_eq!(Centimetre.convert(241.0, Metre), Some(2.41));
        assert_eq!(Fahrenheit.convert(86.0, Celsius), Some(30.0));
        assert_eq!(Ppm.convert(0.035, Ppb), Some(35.0));
    }

    #[test]
    fn refuses_to_convert_across_dimensions() {
        assert_eq!(Metre.convert(1.0, Celsius), None);
        assert_eq!(Ppm.convert(1.0, MicrogramPerM3), None);
    }

    #[test]
    fn parses_senml_and_vendor_symbols() {
        assert_eq!(Unit::parse("Cel").unwrap(), Celsius);
        assert_eq!(Unit::parse("%RH").unwrap(), RelativeHumidity);
        assert_eq!(Unit::parse("µg/m³").unwrap(), MicrogramPerM3);
        assert_eq!(Unit::parse("degF").unwrap(), Fahrenheit);
        assert!(matches!(Unit::parse("furlong"), Err(DomainError::UnknownUnit(u)) if u == "furlong"));
        for unit in [Metre, Celsius, Fahrenheit, RelativeHumidity, Ratio, KilowattHour, Count] {
            assert_eq!(Unit::parse(unit.symbol()).unwrap(), unit);
        }
    }
}
