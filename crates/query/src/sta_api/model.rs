//! The mapping of the registry and the time-series tables onto the
//! SensorThings data model: which kind's columns become Datastreams, with
//! which ObservedProperty and unit, and how ids are formed. One table,
//! [`STREAMS`], drives the SQL, the rendering and the README's mapping table.

use citygauge_domain::Kind;

/// A Datastream's id is `sta_id * IDS_PER_THING + column index`.
pub const IDS_PER_THING: i64 = 16;

const MEASUREMENT: &str = "http://www.opengis.net/def/observationType/OGC-OM/2.0/OM_Measurement";
const TRUTH: &str = "http://www.opengis.net/def/observationType/OGC-OM/2.0/OM_TruthObservation";
const CATEGORY: &str = "http://www.opengis.net/def/observationType/OGC-OM/2.0/OM_CategoryObservation";

/// A unit: its name, UCUM code and QUDT definition.
#[derive(Debug, Clone, Copy)]
pub struct Uom {
    pub name: &'static str,
    pub symbol: &'static str,
    pub definition: &'static str,
}

const fn uom(name: &'static str, symbol: &'static str, definition: &'static str) -> Option<Uom> {
    Some(Uom { name, symbol, definition })
}

/// One value column that is published as a Datastream.
#[derive(Debug, Clone, Copy)]
pub struct Stream {
    pub kind: Kind,
    /// Index of the column in `Kind::columns()`: the low part of the id.
    pub index: i64,
    pub column: &'static str,
    pub observed_property: i64,
    pub observation_type: &'static str,
    /// `None` for truth and category observations (rendered as nulls).
    pub uom: Option<Uom>,
}

/// A fixed ObservedProperty.
#[derive(Debug, Clone, Copy)]
pub struct ObservedProperty {
    pub id: i64,
    pub name: &'static str,
    pub name_zh: &'static str,
    pub definition: &'static str,
    pub description: &'static str,
}

/// Every ObservedProperty; ids are stable (part of the public API).
pub const OBSERVED_PROPERTIES: &[ObservedProperty] = &[
    op(
        1,
        "Rainfall",
        "雨量",
        "http://vocab.nerc.ac.uk/standard_name/thickness_of_rainfall_amount/",
        "Rain fallen in the interval ending at the phenomenon time",
    ),
    op(
        2,
        "Water level",
        "水位",
        "http://vocab.nerc.ac.uk/standard_name/water_surface_height_above_reference_datum/",
        "Stage above the station datum",
    ),
    op(3, "Flood depth", "淹水深度", "http://qudt.org/vocab/quantitykind/Depth", "Water depth on the road surface"),
    op(
        4,
        "PM2.5",
        "細懸浮微粒",
        "http://vocab.nerc.ac.uk/standard_name/mass_concentration_of_pm2p5_ambient_aerosol_particles_in_air/",
        "Mass concentration of PM2.5 in air",
    ),
    op(
        5,
        "PM10",
        "懸浮微粒",
        "http://vocab.nerc.ac.uk/standard_name/mass_concentration_of_pm10_ambient_aerosol_particles_in_air/",
        "Mass concentration of PM10 in air",
    ),
    op(
        6,
        "Ozone",
        "臭氧",
        "http://vocab.nerc.ac.uk/standard_name/mole_fraction_of_ozone_in_air/",
        "Mole fraction of ozone in air",
    ),
    op(
        7,
        "Nitrogen dioxide",
        "二氧化氮",
        "http://vocab.nerc.ac.uk/standard_name/mole_fraction_of_nitrogen_dioxide_in_air/",
        "Mole fraction of NO2 in air",
    ),
    op(
        8,
        "Carbon monoxide",
        "一氧化碳",
        "http://vocab.nerc.ac.uk/standard_name/mole_fraction_of_carbon_monoxide_in_air/",
        "Mole fraction of CO in air",
    ),
    op(
        9,
        "Sulfur dioxide",
        "二氧化硫",
        "http://vocab.nerc.ac.uk/standard_name/mole_fraction_of_sulfur_dioxide_in_air/",
        "Mole fraction of SO2 in air",
    ),
    op(
        10,
        "Air temperature",
        "氣溫",
        "http://vocab.nerc.ac.uk/standard_name/air_temperature/",
        "Air temperature at the station",
    ),
    op(
        11,
        "Relative humidity",
        "相對濕度",
        "http://vocab.nerc.ac.uk/standard_name/relative_humidity/",
        "Relative humidity at the station",
    ),
    op(12, "Lamp on", "路燈開關", "urn:citygauge:observedProperty:lamp_on", "Whether the lamp is lit"),
    op(
        13,
        "Dimming level",
        "調光比例",
        "urn:citygauge:observedProperty:dim_level",
        "Dimming level of the lamp, 100 is full output",
    ),
    op(14, "Electric power", "功率", "http://qudt.org/vocab/quantitykind/ActivePower", "Power drawn by the lamp"),
    op(
        15,
        "Electric energy",
        "累計電能",
        "http://qudt.org/vocab/quantitykind/Energy",
        "Cumulative energy meter reading",
    ),
    op(16, "Voltage", "電壓", "http://qudt.org/vocab/quantitykind/Voltage", "Supply voltage"),
    op(
        17,
        "Electric current",
        "電流",
        "http://qudt.org/vocab/quantitykind/ElectricCurrent",
        "Current drawn by the lamp",
    ),
    op(
        18,
        "Fault code",
        "故障碼",
        "urn:citygauge:observedProperty:fault_code",
        "Vendor fault code reported by the lamp controller",
    ),
];

const fn op(
    id: i64,
    name: &'static str,
    name_zh: &'static str,
    definition: &'static str,
    description: &'static str,
) -> ObservedProperty {
    ObservedProperty { id, name, name_zh, definition, description }
}

const fn st(
    kind: Kind,
    index: i64,
    column: &'static str,
    observed_property: i64,
    observation_type: &'static str,
    uom: Option<Uom>,
) -> Stream {
    Stream { kind, index, column, observed_property, observation_type, uom }
}

/// Every published column. `rainfall.interval_s` is not a quantity of its
/// own: it is the rain Observation's `parameters.interval_s`.
pub const STREAMS: &[Stream] = &[
    st(Kind::Rainfall, 0, "rain_mm", 1, MEASUREMENT, uom("millimetre", "mm", "http://qudt.org/vocab/unit/MilliM")),
    st(Kind::WaterLevel, 0, "level_m", 2, MEASUREMENT, uom("metre", "m", "http://qudt.org/vocab/unit/M")),
    st(Kind::FloodDepth, 0, "depth_cm", 3, MEASUREMENT, uom("centimetre", "cm", "http://qudt.org/vocab/unit/CentiM")),
    st(
        Kind::AirQuality,
        0,
        "pm2_5_ugm3",
        4,
        MEASUREMENT,
        uom("microgram per cubic metre", "ug/m3", "http://qudt.org/vocab/unit/MicroGM-PER-M3"),
    ),
    st(
        Kind::AirQuality,
        1,
        "pm10_ugm3",
        5,
        MEASUREMENT,
        uom("microgram per cubic metre", "ug/m3", "http://qudt.org/vocab/unit/MicroGM-PER-M3"),
    ),
    st(
        Kind::AirQuality,
        2,
        "o3_ppb",
        6,
        MEASUREMENT,
        uom("part per billion", "[ppb]", "http://qudt.org/vocab/unit/PPB"),
    ),
    st(
        Kind::AirQuality,
        3,
        "no2_ppb",
        7,
        MEASUREMENT,
        uom("part per billion", "[ppb]", "http://qudt.org/vocab/unit/PPB"),
    ),
    st(
        Kind::AirQuality,
        4,
        "co_ppm",
        8,
        MEASUREMENT,
        uom("part per million", "[ppm]", "http://qudt.org/vocab/unit/PPM"),
    ),
    st(
        Kind::AirQuality,
        5,
        "so2_ppb",
        9,
        MEASUREMENT,
        uom("part per billion", "[ppb]", "http://qudt.org/vocab/unit/PPB"),
    ),
    st(
        Kind::AirQuality,
        6,
        "temp_c",
        10,
        MEASUREMENT,
        uom("degree Celsius", "Cel", "http://qudt.org/vocab/unit/DEG_C"),
    ),
    st(Kind::AirQuality, 7, "rh_pct", 11, MEASUREMENT, uom("percent", "%", "http://qudt.org/vocab/unit/PERCENT")),
    st(Kind::Streetlight, 0, "lamp_on", 12, TRUTH, None),
    st(Kind::Streetlight, 1, "dim_pct", 13, MEASUREMENT, uom("percent", "%", "http://qudt.org/vocab/unit/PERCENT")),
    st(Kind::Streetlight, 2, "power_w", 14, MEASUREMENT, uom("watt", "W", "http://qudt.org/vocab/unit/W")),
    st(
        Kind::Streetlight,
        3,
        "energy_kwh",
        15,
        MEASUREMENT,
        uom("kilowatt hour", "kW.h", "http://qudt.org/vocab/unit/KiloW-HR"),
    ),
    st(Kind::Streetlight, 4, "voltage_v", 16, MEASUREMENT, uom("volt", "V", "http://qudt.org/vocab/unit/V")),
    st(Kind::Streetlight, 5, "current_a", 17, MEASUREMENT, uom("ampere", "A", "http://qudt.org/vocab/unit/A")),
    st(Kind::Streetlight, 6, "fault", 18, CATEGORY, None),
];

/// Station metadata defaults by kind: the category shown in
/// `Thing/properties/category` and the responsible authority
/// (`authority_type`, overridable per sensor in `installation.authority_type`).
pub fn category(kind: Kind) -> (&'static str, &'static str) {
    match kind {
        Kind::Rainfall => ("雨量", "水利局"),
        Kind::WaterLevel => ("水位", "水利局"),
        Kind::FloodDepth => ("淹水", "水利局"),
        Kind::AirQuality => ("空氣品質", "環保局"),
        Kind::Streetlight => ("路燈", "工務局"),
    }
}

pub fn observed_property(id: i64) -> Option<&'static ObservedProperty> {
    OBSERVED_PROPERTIES.iter().find(|o| o.id == id)
}

/// The stream of a Datastream id's kind and index.
pub fn stream(kind: Kind, index: i64) -> Option<&'static Stream> {
    STREAMS.iter().find(|s| s.kind == kind && s.index == index)
}

/// The stream of a column name (column names are unique across kinds, which
/// the tests check).
pub fn stream_of_column(column: &str) -> Option<&'static Stream> {
    STREAMS.iter().find(|s| s.column == column)
}

/// Splits an Observation id `"<datastream id>-<microseconds since epoch>"`.
pub fn parse_observation_id(text: &str) -> Option<(i64, i64)> {
    let (ds, us) = text.split_once('-')?;
    let ds: i64 = ds.parse().ok()?;
    // A leading '-' (a time before 1970) arrives as "7--123".
    let us: i64 = us.parse().ok()?;
    (ds >= 0).then_some((ds, us))
}

pub fn observation_id(datastream: i64, micros: i64) -> String {
    format!("{datastream}-{micros}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_match_the_kind_columns_and_have_unique_ids() {
        for s in STREAMS {
            assert_eq!(s.kind.columns()[s.index as usize].name(), s.column);
            assert!(s.index < IDS_PER_THING);
            assert!(observed_property(s.observed_property).is_some());
            // The SQL embeds these constants between single quotes.
            assert!(!s.column.contains('\''));
            assert_eq!(stream_of_column(s.column).map(|f| (f.kind, f.index)), Some((s.kind, s.index)), "{}", s.column);
        }
        for o in OBSERVED_PROPERTIES {
            for t in [o.name, o.name_zh, o.definition, o.description] {
                assert!(!t.contains('\''), "{t}");
            }
        }
    }

    #[test]
    fn observation_ids_round_trip() {
        assert_eq!(parse_observation_id(&observation_id(49, 1_700_000_000_000_000)), Some((49, 1_700_000_000_000_000)));
        assert_eq!(parse_observation_id("7--5"), Some((7, -5)));
        assert_eq!(parse_observation_id("x-1"), None);
        assert_eq!(parse_observation_id("7"), None);
    }
}
