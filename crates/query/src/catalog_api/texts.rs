//! The words of the catalogue: per dataset (kind) its title, description,
//! keywords and update frequency, per column its description and unit, in
//! English and Traditional Chinese (zh-TW). No I/O.

use citygauge_domain::kind::FieldType;
use citygauge_domain::{Field, Kind};

/// A text in both languages.
#[derive(Debug, Clone, Copy)]
pub struct Text {
    pub en: &'static str,
    pub zh: &'static str,
}

const fn t(en: &'static str, zh: &'static str) -> Text {
    Text { en, zh }
}

#[derive(Debug)]
pub struct DatasetText {
    pub title: Text,
    pub description: Text,
    pub keywords: Vec<Text>,
    /// How often new readings arrive (NDC 更新頻率).
    pub frequency: Text,
    /// DCAT-AP frequency (EU vocabulary).
    pub frequency_uri: &'static str,
    /// EU data theme.
    pub theme_uri: &'static str,
}

const ENVI: &str = "http://publications.europa.eu/resource/authority/data-theme/ENVI";
const ENER: &str = "http://publications.europa.eu/resource/authority/data-theme/ENER";
const CONTINUOUS: &str = "http://publications.europa.eu/resource/authority/frequency/CONT";

pub fn dataset(kind: Kind) -> DatasetText {
    let frequency =
        t("continuous (readings every 1 to 15 minutes; one file per day)", "即時（每1至15分鐘一筆；每日一檔）");
    match kind {
        Kind::Rainfall => DatasetText {
            title: t("Rainfall readings", "雨量觀測資料"),
            description: t(
                "Rain measured by the city's rain gauges: millimetres in each reporting interval, with a quality flag per reading.",
                "本市雨量站之觀測雨量：每一回報時段之雨量（毫米），每筆附品質標記。",
            ),
            keywords: vec![t("rainfall", "雨量"), t("precipitation", "降雨"), t("flood prevention", "防汛")],
            frequency,
            frequency_uri: CONTINUOUS,
            theme_uri: ENVI,
        },
        Kind::WaterLevel => DatasetText {
            title: t("Water level readings (rivers, drainage, sewers)", "水位觀測資料（河川、排水、下水道）"),
            description: t(
                "Water level above each gauge's datum in metres, from river, regional drainage and sewer level gauges, with a quality flag per reading.",
                "河川、區域排水及下水道水位計之水位（公尺，相對各站基準），每筆附品質標記。",
            ),
            keywords: vec![t("water level", "水位"), t("river", "河川"), t("sewer", "下水道"), t("flood prevention", "防汛")],
            frequency,
            frequency_uri: CONTINUOUS,
            theme_uri: ENVI,
        },
        Kind::FloodDepth => DatasetText {
            title: t("Road flood depth readings", "路面淹水深度觀測資料"),
            description: t(
                "Depth of water on roads and in underpasses in centimetres, from road flood sensors, with a quality flag per reading.",
                "道路及地下道淹水感測器之淹水深度（公分），每筆附品質標記。",
            ),
            keywords: vec![t("flood depth", "淹水深度"), t("flooding", "淹水"), t("road", "道路")],
            frequency,
            frequency_uri: CONTINUOUS,
            theme_uri: ENVI,
        },
        Kind::AirQuality => DatasetText {
            title: t("Air quality micro-sensor readings", "空氣品質微型感測器觀測資料"),
            description: t(
                "PM2.5, PM10, O3, NO2, CO, SO2, temperature and relative humidity from air quality micro-sensors, with a quality flag per reading.",
                "空氣品質微型感測器之細懸浮微粒、懸浮微粒、臭氧、二氧化氮、一氧化碳、二氧化硫、溫度及相對濕度，每筆附品質標記。",
            ),
            keywords: vec![t("air quality", "空氣品質"), t("PM2.5", "PM2.5"), t("micro-sensor", "微型感測器")],
            frequency,
            frequency_uri: CONTINUOUS,
            theme_uri: ENVI,
        },
        Kind::Streetlight => DatasetText {
            title: t("Smart streetlight readings", "智慧路燈監測資料"),
            description: t(
                "Lamp state, dimming level, power, energy meter reading, voltage, current and fault code of smart streetlights.",
                "智慧路燈之開關狀態、調光比例、功率、電能表讀數、電壓、電流及故障代碼。",
            ),
            keywords: vec![t("streetlight", "路燈"), t("energy", "能源"), t("smart city", "智慧城市")],
            frequency,
            frequency_uri: CONTINUOUS,
            theme_uri: ENER,
        },
    }
}

/// A column of the files: name, type, unit symbol (empty: none), description.
#[derive(Debug)]
pub struct Column {
    pub name: &'static str,
    pub field_type: &'static str,
    pub unit: &'static str,
    pub description: Text,
}

fn field_text(field: Field) -> (&'static str, Text) {
    use Field::*;
    match field {
        RainMm => ("mm", t("rain in the interval ending at ts", "至觀測時間止之時段雨量")),
        IntervalS => ("s", t("length of that interval", "時段長度")),
        LevelM => ("m", t("water level above the gauge's datum", "水位（相對測站基準）")),
        DepthCm => ("cm", t("flood depth on the road surface", "路面淹水深度")),
        Pm25 => ("μg/m³", t("PM2.5 concentration", "細懸浮微粒濃度")),
        Pm10 => ("μg/m³", t("PM10 concentration", "懸浮微粒濃度")),
        O3 => ("ppb", t("ozone", "臭氧")),
        No2 => ("ppb", t("nitrogen dioxide", "二氧化氮")),
        Co => ("ppm", t("carbon monoxide", "一氧化碳")),
        So2 => ("ppb", t("sulphur dioxide", "二氧化硫")),
        TempC => ("°C", t("air temperature", "氣溫")),
        RhPct => ("%", t("relative humidity", "相對濕度")),
        LampOn => ("", t("lamp switched on", "燈具開啟")),
        DimPct => ("%", t("dimming level", "調光比例")),
        PowerW => ("W", t("power drawn", "耗用功率")),
        EnergyKwh => ("kWh", t("energy meter reading (cumulative)", "電能表累計讀數")),
        VoltageV => ("V", t("supply voltage", "供電電壓")),
        CurrentA => ("A", t("current drawn", "電流")),
        Fault => ("", t("vendor fault code, empty when none", "廠商故障代碼，無故障時為空")),
        RainTips | RainCounterMm => ("", t("input only, not stored", "僅供輸入，不儲存")),
    }
}

/// Every column of `kind`'s files, in file order.
pub fn columns(kind: Kind) -> Vec<Column> {
    let mut columns = vec![
        Column { name: "sensor_id", field_type: "string", unit: "", description: t("sensor id", "感測器代碼") },
        Column {
            name: "ts",
            field_type: "datetime",
            unit: "",
            description: t("observation time, RFC 3339 with the city's UTC offset", "觀測時間（RFC 3339，含本市時區）"),
        },
    ];
    for field in kind.columns() {
        let (unit, description) = field_text(*field);
        let field_type = match field.field_type() {
            FieldType::Float => "number",
            FieldType::Int => "integer",
            FieldType::Bool => "boolean",
            FieldType::Text => "string",
        };
        columns.push(Column { name: field.name(), field_type, unit, description });
    }
    columns.push(Column {
        name: "quality",
        field_type: "string",
        unit: "",
        description: t("good, suspect or bad", "品質：good（良好）、suspect（存疑）、bad（不良）"),
    });
    columns.push(Column {
        name: "quality_reasons",
        field_type: "string",
        unit: "",
        description: t(
            "codes of the checks that fired (CSV: separated by |; JSON: a list)",
            "觸發之檢核代碼（CSV 以 | 分隔；JSON 為陣列）",
        ),
    });
    columns
}

/// Taiwan's Open Government Data License, version 1.0.
pub const LICENSE_NAME: Text = t("Open Government Data License, version 1.0", "政府資料開放授權條款-第1版");
pub const LICENSE_URL: &str = "https://data.gov.tw/license";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_column_of_every_kind_is_described_with_its_unit() {
        for kind in Kind::ALL {
            let columns = columns(kind);
            assert_eq!(columns.len(), crate::downloads_api::export::csv_header(kind).len());
            for (column, header) in columns.iter().zip(crate::downloads_api::export::csv_header(kind)) {
                assert_eq!(column.name, header);
                assert!(!column.description.en.is_empty() && !column.description.zh.is_empty());
            }
            for field in kind.columns() {
                let unit = field_text(*field).0;
                assert_eq!(unit.is_empty(), field.canonical_unit().is_none(), "{field}");
            }
        }
    }
}
