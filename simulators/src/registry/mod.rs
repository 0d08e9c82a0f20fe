//! The sensor registry: a GeoJSON FeatureCollection of Point features whose
//! properties describe each sensor (see `deploy/demo-city.geojson`).
//!
//! The same types read the file for the simulator and write it for the
//! `registry` subcommand, so the two can't drift apart.

mod generate;
pub mod places;

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::geo::LonLat;

pub use generate::{generate, GenerateOptions};

#[cfg(test)]
mod tests;

/// Sensor kind; the `{kind}` segment of canonical topics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
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

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Rainfall => "rainfall",
            Kind::WaterLevel => "water_level",
            Kind::FloodDepth => "flood_depth",
            Kind::AirQuality => "air_quality",
            Kind::Streetlight => "streetlight",
        }
    }
}

/// How a sensor's data reaches the broker.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Transport {
    /// Canonical JSON on `city/{kind}/{sensor_id}`.
    #[default]
    Canonical,
    /// SenML packs from a gateway on `city/senml/{gateway_id}`.
    Senml,
    /// LoRaWAN via ChirpStack v4's MQTT integration.
    Chirpstack,
    /// LoRaWAN via The Things Stack v3's MQTT integration.
    Tts,
}

/// Installation metadata. Everything is optional because each kind uses a
/// different subset; unknown keys in a hand-edited file are ignored.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Installation {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name_zh: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vendor: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mounted_at: Option<String>,
    /// Elevation of the gauge zero above mean sea level (TWVD2001), m.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub datum_m: Option<f64>,
    /// Typical dry-weather level above the gauge datum, m.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub base_level_m: Option<f64>,
    /// Tipping-bucket resolution, mm per tip.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bucket_mm: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub river: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub river_zh: Option<String>,
    /// Distance upstream from the river mouth, km.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub river_km: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pipe_diameter_m: Option<f64>,
    /// Rain intensity the local road drainage can carry away, mm/h.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub drain_capacity_mmh: Option<f64>,
    /// Streetlight lamp rating, W.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rated_w: Option<f64>,
    /// Whether an air sensor also measures gases (O3, NO2, CO, SO2).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gases: Option<bool>,
    /// SenML gateway that forwards this sensor's data.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gateway_id: Option<String>,
    /// Normal reporting interval, s.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cadence_s: Option<u32>,
}

/// Alert thresholds; which keys are present depends on the kind.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Thresholds {
    /// River warning level 3 (yellow, lowest), m above datum.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warning_3_m: Option<f64>,
    /// River warning level 2 (orange), m above datum.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warning_2_m: Option<f64>,
    /// River warning level 1 (red, highest), m above datum.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warning_1_m: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alert_cm: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub severe_cm: Option<f64>,
    /// Sewer / drainage high level, m above datum.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub high_m: Option<f64>,
}

/// The `properties` of one feature.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SensorProps {
    pub id: String,
    pub kind: Kind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subkind: Option<String>,
    pub name: String,
    pub district: String,
    #[serde(default)]
    pub installation: Installation,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thresholds: Option<Thresholds>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dev_eui: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_profile: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transport: Option<Transport>,
    /// Published as open data; only `"public": false` is written.
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub public: bool,
}

fn yes() -> bool {
    true
}

fn is_true(b: &bool) -> bool {
    *b
}

#[derive(Debug, Serialize, Deserialize)]
struct Geometry {
    #[serde(rename = "type")]
    kind: String,
    coordinates: [f64; 2],
}

#[derive(Debug, Serialize, Deserialize)]
struct Feature {
    #[serde(rename = "type")]
    kind: String,
    geometry: Geometry,
    properties: SensorProps,
}

#[derive(Debug, Deserialize)]
struct FeatureCollection {
    #[serde(rename = "type")]
    kind: String,
    features: Vec<Feature>,
}

/// A registered sensor with its location.
#[derive(Debug, Clone)]
pub struct Sensor {
    /// Shared id, cloned into every reading without allocating.
    pub id: Arc<str>,
    pub at: LonLat,
    pub props: SensorProps,
}

impl Sensor {
    pub fn new(props: SensorProps, at: LonLat) -> Self {
        Self { id: Arc::from(props.id.as_str()), at, props }
    }

    pub fn kind(&self) -> Kind {
        self.props.kind
    }

    pub fn subkind(&self) -> &str {
        self.props.subkind.as_deref().unwrap_or("")
    }

    pub fn transport(&self) -> Transport {
        self.props.transport.unwrap_or_default()
    }
}

/// All sensors of a city.
#[derive(Debug, Clone, Default)]
pub struct Registry {
    pub name: String,
    pub sensors: Vec<Sensor>,
}

impl Registry {
    /// Reads and validates a registry GeoJSON file.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading registry {}", path.display()))?;
        Self::from_geojson(&text).with_context(|| format!("parsing registry {}", path.display()))
    }

    pub fn from_geojson(text: &str) -> Result<Self> {
        let fc: FeatureCollection = serde_json::from_str(text)?;
        if fc.kind != "FeatureCollection" {
            bail!("expected a FeatureCollection, found {:?}", fc.kind);
        }
        let mut sensors = Vec::with_capacity(fc.features.len());
        for f in fc.features {
            if f.geometry.kind != "Point" {
                bail!("{}: only Point geometries are supported", f.properties.id);
            }
            let [lon, lat] = f.geometry.coordinates;
            sensors.push(Sensor::new(f.properties, LonLat::new(lon, lat)));
        }
        let registry = Registry { name: String::new(), sensors };
        registry.validate()?;
        Ok(registry)
    }

    /// Checks the invariants the simulator and the daemon rely on.
    pub fn validate(&self) -> Result<()> {
        let mut seen = HashSet::new();
        for s in &self.sensors {
            let p = &s.props;
            if !seen.insert(p.id.as_str()) {
                bail!("duplicate sensor id {}", p.id);
            }
            if let Some(eui) = &p.dev_eui {
                let ok = eui.len() == 16 && eui.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
                if !ok {
                    bail!("{}: dev_eui must be 16 lowercase hex chars", p.id);
                }
            }
            let lorawan = matches!(s.transport(), Transport::Chirpstack | Transport::Tts);
            if lorawan && (p.dev_eui.is_none() || p.device_profile.is_none()) {
                bail!("{}: LoRaWAN sensors need dev_eui and device_profile", p.id);
            }
            if s.transport() == Transport::Senml && p.installation.gateway_id.is_none() {
                bail!("{}: SenML sensors need installation.gateway_id", p.id);
            }
            if s.subkind() == "tipping_bucket" && p.installation.bucket_mm.is_none() {
                bail!("{}: tipping-bucket gauges need installation.bucket_mm", p.id);
            }
        }
        Ok(())
    }

    /// Serialises as GeoJSON with one feature per line: compact, yet diffs of
    /// the committed file stay readable.
    pub fn to_geojson(&self) -> String {
        let mut out = String::with_capacity(self.sensors.len() * 600);
        out.push_str("{\"type\":\"FeatureCollection\",");
        out.push_str(&format!("\"name\":{},", serde_json::Value::from(self.name.as_str())));
        out.push_str("\"features\":[\n");
        for (i, s) in self.sensors.iter().enumerate() {
            let feature = Feature {
                kind: "Feature".into(),
                geometry: Geometry { kind: "Point".into(), coordinates: [s.at.lon, s.at.lat] },
                properties: s.props.clone(),
            };
            out.push_str(&serde_json::to_string(&feature).expect("registry serialises"));
            out.push_str(if i + 1 < self.sensors.len() { ",\n" } else { "\n" });
        }
        out.push_str("]}\n");
        out
    }

    /// Number of sensors of `kind` (and `subkind`, if given).
    pub fn count(&self, kind: Kind, subkind: Option<&str>) -> usize {
        self.sensors.iter().filter(|s| s.kind() == kind && subkind.is_none_or(|sk| s.subkind() == sk)).count()
    }
}
