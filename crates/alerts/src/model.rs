//! The alert vocabulary: what the engine reads ([`Observation`], [`Sensor`])
//! and what it decides ([`Decision`] about an [`AlertKey`], carrying an
//! [`AlertState`]). The store persists these as JSON, the API serves them,
//! CAP and webhooks render them: their serde form is a public contract.

use chrono::{DateTime, Utc};
use citygauge_domain::{Kind, QualityLevel};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// One committed reading, as the change stream announces it.
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    pub sensor_id: String,
    pub kind: Kind,
    pub ts: DateTime<Utc>,
    pub quality: QualityLevel,
    /// Ingest's quality codes (`spike:level_m`, `out_of_range:depth_cm`, `future_ts`...).
    pub quality_reasons: Vec<String>,
    /// Non-null columns by canonical name (`level_m`, `rain_mm`, `interval_s`,
    /// `depth_cm`, `pm2_5_ugm3`, `lamp_on`, `power_w`, `fault`...).
    pub values: Map<String, Value>,
}

impl Observation {
    pub fn number(&self, column: &str) -> Option<f64> {
        self.values.get(column).and_then(Value::as_f64).filter(|v| v.is_finite())
    }

    /// Good readings are the only ones a hazard rule may rest on.
    pub fn is_good(&self) -> bool {
        self.quality == QualityLevel::Good
    }

    /// Whether the reading's time can be believed. Ingest keeps readings
    /// stamped up to a day ahead (`future_ts`) or before 2000
    /// (`clock_unset`), flagged bad: such a time must not move the engine's
    /// clock (expiring silences, ticking hours ahead) nor a sensor's "last
    /// seen" (which would hide its silence and make every later reading look
    /// late).
    pub fn time_trusted(&self) -> bool {
        !self.quality_reasons.iter().any(|r| r == "future_ts" || r == "clock_unset")
    }
}

/// What the registry says about a sensor, as the engine needs it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Sensor {
    pub id: String,
    pub kind: Option<Kind>,
    /// water_level: `river` / `drainage` / `sewer`; rainfall: `tipping_bucket` / `counter` / `interval`.
    pub subkind: Option<String>,
    pub name: Option<String>,
    pub name_zh: Option<String>,
    pub district: Option<String>,
    pub lon: Option<f64>,
    pub lat: Option<f64>,
    /// The registry's `thresholds` object (`warning_3_m`, `warning_2_m`,
    /// `warning_1_m`, `levee_crest_m`, `range_min`/`range_max`...).
    pub thresholds: Map<String, Value>,
    /// The registry's `installation` object (`cadence_s`, `river_station`...).
    pub installation: Map<String, Value>,
    /// Seconds between readings the sensor is expected to keep.
    pub expected_interval_s: i64,
}

impl Sensor {
    pub fn threshold(&self, key: &str) -> Option<f64> {
        self.thresholds.get(key).and_then(Value::as_f64).filter(|v| v.is_finite())
    }

    pub fn point(&self) -> Option<(f64, f64)> {
        Some((self.lon?, self.lat?))
    }
}

/// Every rule the engine evaluates. The serde name is the stable id used in
/// the database, the API, the rules file and MQTT topics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RuleId {
    /// River / drainage stage against the station's three WRA warning levels.
    WaterLevel,
    /// Stage rising faster than the configured rate; projected time to the next level.
    RateOfRise,
    /// One gauge's rolling accumulations against the CWA classes.
    Rainfall,
    /// A district's worst gauge and how many gauges reach each class.
    DistrictRainfall,
    /// Road-surface flood depth (10 / 30 / 50 cm by default).
    RoadFlooding,
    /// Road flooding while the nearest river is below its warning levels.
    DrainageSuspected,
    /// Road flooding while the nearest river is above level 2.
    RiverBackwater,
    /// A sewage-only line rising during rain.
    SewerRainIngress,
    /// A sewer level creeping up over days in dry weather.
    SewerSediment,
    /// Sewer flow at unusual hours.
    SewerOddHours,
    /// No reading past the expected interval.
    SensorSilent,
    /// The same value for too long (flat-lined).
    SensorFlatline,
    /// Readings outside the physical range (ingest `out_of_range:*`).
    SensorOutOfRange,
    /// Readings flagged as spikes (ingest `spike:*`).
    SensorSpike,
    /// A lamp off when it should be on (dusk to dawn at the pole).
    LampOutage,
    /// A lamp's power outside its normal band.
    LampPower,
    /// A vendor fault code.
    LampFault,
    /// Taiwan AQI category per station (MOENV moving averages).
    AirQuality,
    /// A station far above its district's median.
    AirHotspot,
}

impl RuleId {
    pub const ALL: [RuleId; 19] = [
        RuleId::WaterLevel,
        RuleId::RateOfRise,
        RuleId::Rainfall,
        RuleId::DistrictRainfall,
        RuleId::RoadFlooding,
        RuleId::DrainageSuspected,
        RuleId::RiverBackwater,
        RuleId::SewerRainIngress,
        RuleId::SewerSediment,
        RuleId::SewerOddHours,
        RuleId::SensorSilent,
        RuleId::SensorFlatline,
        RuleId::SensorOutOfRange,
        RuleId::SensorSpike,
        RuleId::LampOutage,
        RuleId::LampPower,
        RuleId::LampFault,
        RuleId::AirQuality,
        RuleId::AirHotspot,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RuleId::WaterLevel => "water_level",
            RuleId::RateOfRise => "rate_of_rise",
            RuleId::Rainfall => "rainfall",
            RuleId::DistrictRainfall => "district_rainfall",
            RuleId::RoadFlooding => "road_flooding",
            RuleId::DrainageSuspected => "drainage_suspected",
            RuleId::RiverBackwater => "river_backwater",
            RuleId::SewerRainIngress => "sewer_rain_ingress",
            RuleId::SewerSediment => "sewer_sediment",
            RuleId::SewerOddHours => "sewer_odd_hours",
            RuleId::SensorSilent => "sensor_silent",
            RuleId::SensorFlatline => "sensor_flatline",
            RuleId::SensorOutOfRange => "sensor_out_of_range",
            RuleId::SensorSpike => "sensor_spike",
            RuleId::LampOutage => "lamp_outage",
            RuleId::LampPower => "lamp_power",
            RuleId::LampFault => "lamp_fault",
            RuleId::AirQuality => "air_quality",
            RuleId::AirHotspot => "air_hotspot",
        }
    }

    pub fn parse(s: &str) -> Option<RuleId> {
        RuleId::ALL.into_iter().find(|r| r.as_str() == s)
    }

    pub fn class(self) -> Class {
        match self {
            RuleId::WaterLevel
            | RuleId::RateOfRise
            | RuleId::Rainfall
            | RuleId::DistrictRainfall
            | RuleId::RoadFlooding
            | RuleId::AirQuality
            | RuleId::AirHotspot => Class::Hazard,
            RuleId::DrainageSuspected
            | RuleId::RiverBackwater
            | RuleId::SewerRainIngress
            | RuleId::SewerSediment
            | RuleId::SewerOddHours => Class::Diagnosis,
            RuleId::SensorSilent
            | RuleId::SensorFlatline
            | RuleId::SensorOutOfRange
            | RuleId::SensorSpike
            | RuleId::LampOutage
            | RuleId::LampPower
            | RuleId::LampFault => Class::Maintenance,
        }
    }

    /// CAP 1.2 `category`.
    pub fn cap_category(self) -> &'static str {
        match self {
            RuleId::Rainfall | RuleId::DistrictRainfall => "Met",
            RuleId::WaterLevel | RuleId::RateOfRise | RuleId::RoadFlooding => "Geo",
            RuleId::AirQuality | RuleId::AirHotspot => "Env",
            RuleId::SewerSediment | RuleId::SewerOddHours | RuleId::SewerRainIngress => "Infra",
            RuleId::DrainageSuspected | RuleId::RiverBackwater => "Infra",
            _ => "Infra",
        }
    }

    /// The event name for people, English and Traditional Chinese.
    pub fn event_name(self) -> (&'static str, &'static str) {
        match self {
            RuleId::WaterLevel => ("River water level warning", "河川水位警戒"),
            RuleId::RateOfRise => ("Rapid water level rise", "水位快速上升"),
            RuleId::Rainfall => ("Heavy rain", "豪大雨"),
            RuleId::DistrictRainfall => ("Heavy rain in district", "行政區豪大雨"),
            RuleId::RoadFlooding => ("Road flooding", "道路積淹水"),
            RuleId::DrainageSuspected => ("Drainage problem suspected", "疑似排水不良"),
            RuleId::RiverBackwater => ("River backwater", "河川水位頂托"),
            RuleId::SewerRainIngress => ("Rain entering the sewage network", "雨水流入污水管"),
            RuleId::SewerSediment => ("Sediment build-up, dredging due", "管線淤積需清淤"),
            RuleId::SewerOddHours => ("Possible illegal discharge", "疑似非法排放"),
            RuleId::SensorSilent => ("Sensor silent", "感測器無回傳"),
            RuleId::SensorFlatline => ("Sensor flat-lined", "感測器數值停滯"),
            RuleId::SensorOutOfRange => ("Sensor out of range", "感測器數值超出範圍"),
            RuleId::SensorSpike => ("Sensor spiking", "感測器數值突波"),
            RuleId::LampOutage => ("Streetlight off at night", "路燈夜間不亮"),
            RuleId::LampPower => ("Streetlight power abnormal", "路燈功率異常"),
            RuleId::LampFault => ("Streetlight fault", "路燈故障"),
            RuleId::AirQuality => ("Air quality", "空氣品質"),
            RuleId::AirHotspot => ("Air pollution hot spot", "空污熱點"),
        }
    }
}

/// Hazards reach the public; diagnoses and maintenance reach the city's staff.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Class {
    Hazard,
    Diagnosis,
    Maintenance,
}

/// CAP 1.2 severity, ordered (`Minor < Moderate < Severe < Extreme`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Severity {
    Unknown,
    Minor,
    Moderate,
    Severe,
    Extreme,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Unknown => "Unknown",
            Severity::Minor => "Minor",
            Severity::Moderate => "Moderate",
            Severity::Severe => "Severe",
            Severity::Extreme => "Extreme",
        }
    }

    pub fn parse(s: &str) -> Option<Severity> {
        [Severity::Unknown, Severity::Minor, Severity::Moderate, Severity::Severe, Severity::Extreme]
            .into_iter()
            .find(|v| v.as_str().eq_ignore_ascii_case(s))
    }
}

/// CAP 1.2 `urgency`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Urgency {
    Immediate,
    Expected,
    Future,
    Past,
    Unknown,
}

/// CAP 1.2 `certainty`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Certainty {
    Observed,
    Likely,
    Possible,
    Unlikely,
    Unknown,
}

/// CAP 1.2 `status`, carried from the rule set (or a drill) to every
/// subscriber: Test and Exercise reach only subscribers that opted in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum MsgStatus {
    #[default]
    Actual,
    Exercise,
    System,
    Test,
    Draft,
}

impl MsgStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            MsgStatus::Actual => "Actual",
            MsgStatus::Exercise => "Exercise",
            MsgStatus::System => "System",
            MsgStatus::Test => "Test",
            MsgStatus::Draft => "Draft",
        }
    }

    pub fn parse(s: &str) -> Option<MsgStatus> {
        [MsgStatus::Actual, MsgStatus::Exercise, MsgStatus::System, MsgStatus::Test, MsgStatus::Draft]
            .into_iter()
            .find(|v| v.as_str().eq_ignore_ascii_case(s))
    }
}

/// One alert: at most one open per key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct AlertKey {
    pub rule: RuleId,
    /// A sensor id for per-sensor rules, `district:<name>` for district rules.
    pub subject: String,
}

impl AlertKey {
    pub fn sensor(rule: RuleId, sensor_id: &str) -> AlertKey {
        AlertKey { rule, subject: sensor_id.to_string() }
    }

    pub fn district(rule: RuleId, district: &str) -> AlertKey {
        AlertKey { rule, subject: format!("district:{district}") }
    }
}

/// Where an alert applies: never a bare point (CAP areas are circles or polygons).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Area {
    /// Centre (WGS 84) and radius in metres.
    Circle { lon: f64, lat: f64, radius_m: f64 },
    /// A closed ring of (lon, lat), first point repeated last.
    Polygon { ring: Vec<(f64, f64)> },
}

/// A reading an alert rests on, shown to operators and in replays.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    pub sensor_id: String,
    pub ts: DateTime<Utc>,
    /// Column or derived figure (`level_m`, `rain_3h_mm`, `depth_cm`, `rise_m_per_h`).
    pub name: String,
    pub value: f64,
}

/// What an alert says now. Serialised into the database and each notification.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertState {
    /// 1 = lowest grade of the rule, ascending with danger (a river at WRA
    /// level 3/yellow is grade 1, level 1/red is grade 3).
    pub grade: u8,
    /// The grade's stable name (`yellow`, `orange`, `red`; `heavy_rain`,
    /// `extremely_heavy_rain`...; `wet`, `flooded`...).
    pub level: String,
    pub severity: Severity,
    pub urgency: Urgency,
    pub certainty: Certainty,
    pub headline_en: String,
    pub headline_zh: String,
    pub description_en: String,
    pub description_zh: String,
    /// What people should do; empty for maintenance alerts.
    #[serde(default)]
    pub instruction_en: String,
    #[serde(default)]
    pub instruction_zh: String,
    #[serde(default)]
    pub sensor_id: Option<String>,
    #[serde(default)]
    pub district: Option<String>,
    #[serde(default)]
    pub area: Option<Area>,
    /// The figure compared with the thresholds, and its unit.
    #[serde(default)]
    pub value: Option<f64>,
    #[serde(default)]
    pub unit: Option<String>,
    /// Seconds until the next warning level (or the levee crest) at the current rate.
    #[serde(default)]
    pub lead_time_s: Option<i64>,
    #[serde(default)]
    pub evidence: Vec<Evidence>,
    /// Rule-specific figures (accumulations per window, peak depth, AQI...).
    #[serde(default)]
    pub details: Map<String, Value>,
}

/// What changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Change {
    Raised,
    Escalated,
    Deescalated,
    /// Same grade, new figures (peak, lead time): stored, not notified.
    Updated,
    /// The condition cleared past its hysteresis.
    Resolved,
    /// A hazard that would have been raised or escalated rests on a suspect
    /// sensor; `state.details.suppressed_by` names the health alert.
    Suppressed,
}

impl Change {
    pub fn as_str(self) -> &'static str {
        match self {
            Change::Raised => "raised",
            Change::Escalated => "escalated",
            Change::Deescalated => "deescalated",
            Change::Updated => "updated",
            Change::Resolved => "resolved",
            Change::Suppressed => "suppressed",
        }
    }

    /// Whether subscribers hear of it (CAP Alert / Update / Cancel).
    pub fn notifies(self) -> bool {
        matches!(self, Change::Raised | Change::Escalated | Change::Deescalated | Change::Resolved)
    }
}

/// One decision of the engine.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    pub key: AlertKey,
    pub change: Change,
    /// The time of the reading (or tick) that decided it.
    pub at: DateTime<Utc>,
    /// The alert after the change (for `Resolved`, the last state with the
    /// clearing figures).
    pub state: AlertState,
}

/// CAP 1.2 `msgType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum MsgType {
    Alert,
    Update,
    Cancel,
}

impl MsgType {
    pub fn as_str(self) -> &'static str {
        match self {
            MsgType::Alert => "Alert",
            MsgType::Update => "Update",
            MsgType::Cancel => "Cancel",
        }
    }

    /// The message a notifying change produces (`None` for changes that do not notify).
    pub fn for_change(change: Change) -> Option<MsgType> {
        match change {
            Change::Raised => Some(MsgType::Alert),
            Change::Escalated | Change::Deescalated => Some(MsgType::Update),
            Change::Resolved => Some(MsgType::Cancel),
            Change::Updated | Change::Suppressed => None,
        }
    }
}

/// An earlier message, as CAP `references` names it (`sender,identifier,sent`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MessageRef {
    pub sender: String,
    pub identifier: String,
    pub sent: DateTime<chrono::FixedOffset>,
}

/// One notification about an alert: immutable once stored (the outbox row
/// `alert_messages.body`), rendered as CAP, sent to webhooks and MQTT.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// The database id of the alert.
    pub alert_id: i64,
    /// Globally unique: `<sender>:<alert id>:<message sequence>`.
    pub identifier: String,
    pub sender: String,
    pub sender_name: String,
    /// With the city's offset (CAP requires an explicit one, e.g. `+08:00`).
    pub sent: DateTime<chrono::FixedOffset>,
    pub status: MsgStatus,
    pub msg_type: MsgType,
    /// Every earlier message of the same alert, oldest first.
    pub references: Vec<MessageRef>,
    pub key: AlertKey,
    pub change: Change,
    pub state: AlertState,
}
