//! Registry files: GeoJSON (a FeatureCollection of Points with properties) and
//! CSV, parsed into records the store upserts into `sensors`.
//!
//! GeoJSON properties: `id`, `kind`, `subkind`, `name`, `district`, `status`,
//! `dev_eui`, `device_profile`, `public` (boolean, default true: published as
//! open data), `installation` (object), `thresholds` (object);
//! any other property is kept in `installation`, so nothing a city sends is lost.
//!
//! CSV columns: `id`, `kind`, `lon`, `lat` and optionally the same scalar names
//! as GeoJSON; a column `threshold.<key>` goes into `thresholds`, any other
//! column into `installation` (numbers stay numbers).

use std::collections::HashSet;

use serde_json::{Map, Value};

use super::{normalise_eui, validate_sensor_id, SensorInfo, SensorStatus};
use crate::kind::Kind;
use crate::DomainError;

/// One sensor as a registry file describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct SensorRecord {
    pub id: String,
    pub kind: Kind,
    pub subkind: Option<String>,
    pub name: Option<String>,
    pub district: Option<String>,
    /// WGS84 longitude and latitude, when the sensor has a known place.
    pub location: Option<(f64, f64)>,
    pub status: SensorStatus,
    pub dev_eui: Option<String>,
    pub device_profile: Option<String>,
    pub installation: Map<String, Value>,
    pub thresholds: Map<String, Value>,
    /// Published as open data (SensorThings, downloads, catalogue); a city
    /// leaves out e.g. a company's own meters with `public: false`. Default true.
    pub public: bool,
}

impl SensorRecord {
    /// The part of the record the normaliser uses.
    pub fn info(&self) -> SensorInfo {
        let number = |key: &str| self.installation.get(key).and_then(Value::as_f64);
        SensorInfo {
            id: self.id.clone(),
            kind: self.kind,
            status: self.status,
            bucket_mm: number("bucket_mm"),
            valid_min: number("valid_min"),
            valid_max: number("valid_max"),
            dev_eui: self.dev_eui.clone(),
            device_profile: self.device_profile.clone(),
        }
    }

    /// Other names the sensor is sent under (a SenML base name such as
    /// `urn:dev:ow:10e2073a01080063`): `installation.aliases`, a list of
    /// strings or one string.
    pub fn aliases(&self) -> Vec<String> {
        aliases_of(self.installation.get("aliases"))
    }
}

/// The aliases an `installation.aliases` value lists: a list of strings, or
/// one string of names separated by spaces or `|` (a CSV cell).
pub fn aliases_of(value: Option<&Value>) -> Vec<String> {
    match value {
        Some(Value::String(s)) => split_aliases(s),
        Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).map(str::to_string).collect(),
        _ => Vec::new(),
    }
}

/// A CSV cell lists aliases separated by spaces or `|`.
fn split_aliases(s: &str) -> Vec<String> {
    s.split(|c: char| c == '|' || c.is_whitespace()).filter(|a| !a.is_empty()).map(str::to_string).collect()
}

/// Parses a registry file, choosing the format by the file name's extension.
pub fn parse(file_name: &str, bytes: &[u8]) -> Result<Vec<SensorRecord>, DomainError> {
    let lower = file_name.to_ascii_lowercase();
    if lower.ends_with(".csv") {
        parse_csv(bytes)
    } else if lower.ends_with(".geojson") || lower.ends_with(".json") {
        parse_geojson(bytes)
    } else {
        Err(file_error(file_name, "expected a .geojson, .json or .csv file"))
    }
}

pub fn parse_geojson(bytes: &[u8]) -> Result<Vec<SensorRecord>, DomainError> {
    let doc: Value = serde_json::from_slice(bytes).map_err(|e| file_error("document", e.to_string()))?;
    let features = match doc.get("type").and_then(Value::as_str) {
        Some("FeatureCollection") => doc
            .get("features")
            .and_then(Value::as_array)
            .ok_or_else(|| file_error("document", "FeatureCollection without a `features` array"))?,
        _ => return Err(file_error("document", "expected a GeoJSON FeatureCollection")),
    };
    let mut records = Vec::with_capacity(features.len());
    for (i, feature) in features.iter().enumerate() {
        let location = format!("feature {i}");
        let record = geojson_feature(feature).map_err(|problem| file_error(&location, problem))?;
        records.push(record);
    }
    check_unique(&records)?;
    Ok(records)
}

fn geojson_feature(feature: &Value) -> Result<SensorRecord, String> {
    let mut properties = match feature.get("properties") {
        Some(Value::Object(p)) => p.clone(),
        _ => return Err("missing `properties` object".into()),
    };
    let location = match feature.get("geometry") {
        None | Some(Value::Null) => None,
        Some(geometry) => Some(point(geometry)?),
    };
    let mut installation = match properties.remove("installation") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(m)) => m,
        Some(_) => return Err("`installation` must be an object".into()),
    };
    let thresholds = match properties.remove("thresholds") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(m)) => m,
        Some(_) => return Err("`thresholds` must be an object".into()),
    };
    let mut take = |key: &str| -> Result<Option<String>, String> {
        match properties.remove(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.trim().to_string())),
            Some(other) => Err(format!("`{key}` must be a string, got {other}")),
        }
    };
    let scalars = Scalars {
        id: take("id")?,
        kind: take("kind")?,
        subkind: take("subkind")?,
        name: take("name")?,
        district: take("district")?,
        status: take("status")?,
        dev_eui: take("dev_eui")?,
        device_profile: take("device_profile")?,
        public: match properties.remove("public") {
            None | Some(Value::Null) => None,
            Some(Value::Bool(b)) => Some(b.to_string()),
            Some(other) => return Err(format!("`public` must be true or false, got {other}")),
        },
    };
    // Whatever else the city put in the properties is installation metadata.
    installation.extend(properties);
    scalars.into_record(location, installation, thresholds)
}

fn point(geometry: &Value) -> Result<(f64, f64), String> {
    if geometry.get("type").and_then(Value::as_str) != Some("Point") {
        return Err("geometry must be a Point".into());
    }
    let coords = geometry.get("coordinates").and_then(Value::as_array).ok_or("Point without coordinates")?;
    match coords.as_slice() {
        [lon, lat, ..] => match (lon.as_f64(), lat.as_f64()) {
            (Some(lon), Some(lat)) => check_lon_lat(lon, lat),
            _ => Err("coordinates must be numbers".into()),
        },
        _ => Err("a Point needs [longitude, latitude]".into()),
    }
}

fn check_lon_lat(lon: f64, lat: f64) -> Result<(f64, f64), String> {
    if (-180.0..=180.0).contains(&lon) && (-90.0..=90.0).contains(&lat) {
        Ok((lon, lat))
    } else {
        Err(format!("({lon}, {lat}) is not a WGS84 longitude, latitude"))
    }
}

pub fn parse_csv(bytes: &[u8]) -> Result<Vec<SensorRecord>, DomainError> {
    let mut reader = csv::ReaderBuilder::new().trim(csv::Trim::All).from_reader(bytes);
    let headers = reader.headers().map_err(|e| file_error("header", e.to_string()))?.clone();
    for required in ["id", "kind"] {
        if !headers.iter().any(|h| h == required) {
            return Err(file_error("header", format!("missing column `{required}`")));
        }
    }
    let mut records = Vec::new();
    for (i, row) in reader.records().enumerate() {
        // Line 1 is the header.
        let location = format!("line {}", i + 2);
        let row = row.map_err(|e| file_error(&location, e.to_string()))?;
        let record = csv_row(&headers, &row).map_err(|problem| file_error(&location, problem))?;
        records.push(record);
    }
    check_unique(&records)?;
    Ok(records)
}

fn csv_row(headers: &csv::StringRecord, row: &csv::StringRecord) -> Result<SensorRecord, String> {
    let mut scalars = Scalars::default();
    let (mut lon, mut lat) = (None, None);
    let mut installation = Map::new();
    let mut thresholds = Map::new();
    for (header, cell) in headers.iter().zip(row.iter()) {
        if cell.is_empty() {
            continue;
        }
        let text = Some(cell.to_string());
        match header {
            "id" => scalars.id = text,
            "kind" => scalars.kind = text,
            "subkind" => scalars.subkind = text,
            "name" => scalars.name = text,
            "district" => scalars.district = text,
            "status" => scalars.status = text,
            "dev_eui" => scalars.dev_eui = text,
            "device_profile" => scalars.device_profile = text,
            "public" => scalars.public = text,
            "lon" | "longitude" => lon = Some(cell.parse::<f64>().map_err(|_| format!("`{header}` is not a number"))?),
            "lat" | "latitude" => lat = Some(cell.parse::<f64>().map_err(|_| format!("`{header}` is not a number"))?),
            other => {
                let (target, key) = match other.strip_prefix("threshold.") {
                    Some(key) => (&mut thresholds, key),
                    None => (&mut installation, other.strip_prefix("installation.").unwrap_or(other)),
                };
                target.insert(key.to_string(), csv_value(cell));
            }
        }
    }
    let location = match (lon, lat) {
        (Some(lon), Some(lat)) => Some(check_lon_lat(lon, lat)?),
        (None, None) => None,
        _ => return Err("give both `lon` and `lat`, or neither".into()),
    };
    scalars.into_record(location, installation, thresholds)
}

/// CSV cells are text; numbers and booleans keep their type in JSON.
fn csv_value(cell: &str) -> Value {
    if let Ok(n) = cell.parse::<i64>() {
        return Value::from(n);
    }
    if let Some(n) = cell.parse::<f64>().ok().and_then(serde_json::Number::from_f64) {
        return Value::Number(n);
    }
    match cell {
        "true" => Value::Bool(true),
        "false" => Value::Bool(false),
        _ => Value::String(cell.to_string()),
    }
}

#[derive(Default)]
struct Scalars {
    id: Option<String>,
    kind: Option<String>,
    subkind: Option<String>,
    name: Option<String>,
    district: Option<String>,
    status: Option<String>,
    dev_eui: Option<String>,
    device_profile: Option<String>,
    public: Option<String>,
}

impl Scalars {
    fn into_record(
        self,
        location: Option<(f64, f64)>,
        installation: Map<String, Value>,
        thresholds: Map<String, Value>,
    ) -> Result<SensorRecord, String> {
        let id = self.id.ok_or("missing `id`")?;
        validate_sensor_id(&id).map_err(|e| e.to_string())?;
        let kind: Kind = self.kind.ok_or("missing `kind`")?.parse().map_err(|e: DomainError| e.to_string())?;
        let status = match self.status {
            Some(s) => s.parse().map_err(|e: DomainError| e.to_string())?,
            None => SensorStatus::Active,
        };
        if kind == Kind::WaterLevel {
            if let Some(sub) = &self.subkind {
                if !matches!(sub.as_str(), "river" | "drainage" | "sewer") {
                    return Err(format!("water_level subkind `{sub}` is not river, drainage or sewer"));
                }
            }
        }
        for key in ["bucket_mm", "valid_min", "valid_max"] {
            if let Some(v) = installation.get(key) {
                if !v.is_number() {
                    return Err(format!("installation `{key}` must be a number"));
                }
            }
        }
        match installation.get("aliases") {
            None | Some(Value::String(_)) => {}
            Some(Value::Array(items)) if items.iter().all(Value::is_string) => {}
            Some(_) => return Err("installation `aliases` must be a string or a list of strings".into()),
        }
        let public = match self.public.as_deref().map(str::to_ascii_lowercase).as_deref() {
            None | Some("true" | "yes" | "1") => true,
            Some("false" | "no" | "0") => false,
            Some(other) => return Err(format!("`public` `{other}` is not true or false")),
        };
        let dev_eui = self.dev_eui.map(|e| normalise_eui(&e));
        if let Some(eui) = &dev_eui {
            if eui.len() != 16 {
                return Err(format!("dev_eui `{eui}` is not 16 hex digits"));
            }
        }
        Ok(SensorRecord {
            id,
            kind,
            subkind: self.subkind,
            name: self.name,
            district: self.district,
            location,
            status,
            dev_eui,
            device_profile: self.device_profile,
            installation,
            thresholds,
            public,
        })
    }
}

fn check_unique(records: &[SensorRecord]) -> Result<(), DomainError> {
    let mut ids = HashSet::new();
    let mut euis = HashSet::new();
    let mut aliases = HashSet::new();
    for record in records {
        for alias in record.aliases() {
            if !aliases.insert(alias.clone()) {
                return Err(file_error(&record.id, format!("alias `{alias}` appears twice")));
            }
        }
    }
    for record in records {
        if aliases.contains(&record.id) {
            return Err(file_error(&record.id, "sensor id is also another sensor's alias"));
        }
        if !ids.insert(record.id.as_str()) {
            return Err(file_error(&record.id, "sensor id appears twice"));
        }
        if let Some(eui) = &record.dev_eui {
            if !euis.insert(eui.as_str()) {
                return Err(file_error(&record.id, format!("dev_eui `{eui}` appears twice")));
            }
        }
    }
    Ok(())
}

fn file_error(location: &str, problem: impl Into<String>) -> DomainError {
    DomainError::RegistryFile { location: location.to_string(), problem: problem.into() }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GEOJSON: &str = r#"{"type": "FeatureCollection", "features": [
      {"type": "Feature", "geometry": {"type": "Point", "coordinates": [120.2991, 22.6394]},
       "properties": {"id": "kh-wl-0001", "kind": "water_level", "subkind": "river",
         "name": "Love River at Jianguo Bridge", "district": "Sanmin", "transport": "senml",
         "installation": {"datum_m": 0.0}, "thresholds": {"warning_3_m": 2.0, "warning_2_m": 2.6, "warning_1_m": 3.1}}},
      {"type": "Feature", "geometry": null,
       "properties": {"id": "kh-fd-0003", "kind": "flood_depth", "dev_eui": "70B3D57ED0001234", "device_profile": "flood-radar-v1"}}
    ]}"#;

    #[test]
    fn reads_geojson_points_with_properties() {
        let records = parse("demo.geojson", GEOJSON.as_bytes()).unwrap();
        assert_eq!(records.len(), 2);
        let river = &records[0];
        assert_eq!(river.kind, Kind::WaterLevel);
        assert_eq!(river.location, Some((120.2991, 22.6394)));
        assert_eq!(river.thresholds["warning_1_m"], 3.1);
        assert_eq!(river.installation["transport"], "senml", "unknown properties are kept");
        assert_eq!(records[1].dev_eui.as_deref(), Some("70b3d57ed0001234"));
        assert_eq!(records[1].info().device_profile.as_deref(), Some("flood-radar-v1"));
        assert!(records.iter().all(|r| r.public), "public unless the file says otherwise");
        let private = GEOJSON.replacen(r#""kind": "flood_depth","#, r#""kind": "flood_depth", "public": false,"#, 1);
        let records = parse("demo.geojson", private.as_bytes()).unwrap();
        assert!(records[0].public && !records[1].public);
        assert!(!records[1].installation.contains_key("public"), "a column, not installation metadata");
        let csv = "id,kind,public\nkh-a,rainfall,false\nkh-b,rainfall,\nkh-c,rainfall,maybe\n";
        assert!(parse("s.csv", csv.as_bytes()).unwrap_err().to_string().contains("line 4"));
        let records = parse("s.csv", csv.rsplit_once("kh-c").unwrap().0.as_bytes()).unwrap();
        assert_eq!(records.iter().map(|r| r.public).collect::<Vec<_>>(), [false, true]);
    }

    #[test]
    fn reads_csv_with_threshold_and_installation_columns() {
        let csv = "id,kind,subkind,name,district,lon,lat,threshold.warning_1_m,bucket_mm,vendor\n\
                   kh-wl-0002,water_level,river,Qianzhen River,Qianzhen,120.32,22.59,3.5,,Acme\n\
                   kh-rg-0001,rainfall,tipping_bucket,Sanmin rain,Sanmin,120.30,22.65,,0.5,Acme\n";
        let records = parse("sensors.csv", csv.as_bytes()).unwrap();
        assert_eq!(records[0].thresholds["warning_1_m"], 3.5);
        assert_eq!(records[1].info().bucket_mm, Some(0.5));
        assert_eq!(records[1].installation["vendor"], "Acme");
    }

    #[test]
    fn aliases_come_from_the_installation() {
        let csv =
            "id,kind,aliases\nkh-aq-0201,air_quality,urn:dev:ow:10e2073a01080063|aq-201\nkh-aq-0202,air_quality,\n";
        let records = parse("s.csv", csv.as_bytes()).unwrap();
        assert_eq!(records[0].aliases(), ["urn:dev:ow:10e2073a01080063", "aq-201"]);
        assert!(records[1].aliases().is_empty());
        let registry = super::super::Registry::from_records(&records);
        assert_eq!(registry.by_alias("aq-201").unwrap().id, "kh-aq-0201");
        let geojson = r#"{"type": "FeatureCollection", "features": [{"type": "Feature", "geometry": null,
            "properties": {"id": "kh-aq-0201", "kind": "air_quality", "installation": {"aliases": ["a1", "a2"]}}}]}"#;
        assert_eq!(parse("s.geojson", geojson.as_bytes()).unwrap()[0].aliases(), ["a1", "a2"]);
        let twice = "id,kind,aliases\nkh-a,air_quality,x\nkh-b,air_quality,x\n";
        assert!(parse("s.csv", twice.as_bytes()).unwrap_err().to_string().contains("alias `x` appears twice"));
        let clash = "id,kind,aliases\nkh-a,air_quality,kh-b\nkh-b,air_quality,\n";
        assert!(parse("s.csv", clash.as_bytes()).unwrap_err().to_string().contains("another sensor's alias"));
        let bad = r#"{"type": "FeatureCollection", "features": [{"type": "Feature", "geometry": null,
            "properties": {"id": "kh-a", "kind": "air_quality", "installation": {"aliases": [1]}}}]}"#;
        assert!(parse("s.geojson", bad.as_bytes()).unwrap_err().to_string().contains("aliases"));
    }

    #[test]
    fn names_the_place_of_a_mistake() {
        let cases = [
            ("id,kind\nkh-x,volcano\n", "line 2"),
            ("id,kind,lon\nkh-x,rainfall,abc\n", "line 2"),
            ("id,kind\nkh-x,rainfall\nkh-x,rainfall\n", "twice"),
            ("id,name\nkh-x,x\n", "missing column `kind`"),
            ("id,kind,lon,lat\nkh-x,rainfall,200,22\n", "WGS84"),
        ];
        for (csv, needle) in cases {
            let err = parse("s.csv", csv.as_bytes()).unwrap_err().to_string();
            assert!(err.contains(needle), "{err} should mention {needle}");
        }
        assert!(parse("s.txt", b"").is_err());
        assert!(parse("s.geojson", b"{\"type\": \"Feature\"}").is_err());
    }
}
