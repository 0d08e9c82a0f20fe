//! How a cached sensor is shown: its `state` (is it reporting?) and `level`
//! (what its latest value means), by the rules of the API contract.

use chrono::{DateTime, SecondsFormat, Utc};
use citygauge_domain::aqi::{self, AqiCategory};
use citygauge_domain::rain_window::{self, Accumulation, ClassRules, RainClass, Window};
use citygauge_domain::{Kind, QualityLevel, SensorStatus};
use serde::Serialize;
use serde_json::{Map, Value};
use utoipa::ToSchema;

use super::{Entry, Latest, SensorMeta};

/// Whether a sensor is reporting as expected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Ok,
    /// Its latest reading is older than `stale_factor` × its expected interval.
    Stale,
    /// Reserved for the alert engine; not produced yet.
    Alerting,
    Pending,
    Retired,
    NoData,
}

impl State {
    pub const ALL: [State; 6] =
        [State::Ok, State::Stale, State::Alerting, State::Pending, State::Retired, State::NoData];

    pub fn as_str(self) -> &'static str {
        match self {
            State::Ok => "ok",
            State::Stale => "stale",
            State::Alerting => "alerting",
            State::Pending => "pending",
            State::Retired => "retired",
            State::NoData => "no_data",
        }
    }

    pub fn parse(s: &str) -> Option<State> {
        State::ALL.into_iter().find(|st| st.as_str() == s)
    }
}

pub fn state(entry: &Entry, now: DateTime<Utc>, stale_factor: f64) -> State {
    match entry.meta.status {
        SensorStatus::Retired => State::Retired,
        SensorStatus::Pending => State::Pending,
        SensorStatus::Active => match entry.latest.as_ref().map(|l| l.ts).or(entry.last_seen) {
            None => State::NoData,
            Some(seen) => {
                let age = (now - seen).num_milliseconds() as f64 / 1000.0;
                if age > stale_factor * entry.meta.expected_interval_s as f64 {
                    State::Stale
                } else {
                    State::Ok
                }
            }
        },
    }
}

/// The rain a gauge saw in each window ending at `now` (read straight from
/// the gauge's map: nothing is copied, as this runs under the cache's lock).
pub fn rain_windows(entry: &Entry, now: DateTime<Utc>) -> [(Window, Accumulation); 4] {
    Window::ALL.map(|w| {
        (w, rain_window::accumulate_iter(entry.rain_intervals(), now, w.seconds(), entry.meta.expected_interval_s))
    })
}

pub fn rain_class(windows: &[(Window, Accumulation); 4]) -> RainClass {
    let mm = |w: Window| windows.iter().find(|(x, _)| *x == w).and_then(|(_, a)| a.mm);
    rain_window::classify(mm(Window::Hour1), mm(Window::Hour3), mm(Window::Hour24), ClassRules::default())
}

/// An air station's AQI at `now`, MOENV's way: from the 12 h/4 h moving
/// averages of its PM2.5 and PM10 (the latest minute's values would flip a
/// station at a band edge back and forth). `None` until the station has
/// enough hours of readings, or after it fell silent.
pub fn station_aqi(entry: &Entry, now: DateTime<Utc>) -> Option<u32> {
    aqi::moving_averages(entry.pm_readings(), now).aqi()
}

/// The level of an air station with this AQI.
pub fn air_level(aqi: Option<u32>) -> Option<Level> {
    aqi.map(|aqi| Level::Air(AqiCategory::of(aqi)))
}

/// River gauges: which of the station's warning levels the water reached.
pub fn river_warning(meta: &SensorMeta, level_m: f64) -> Option<u8> {
    [(1u8, "warning_1_m"), (2, "warning_2_m"), (3, "warning_3_m")]
        .into_iter()
        .find(|(_, key)| meta.threshold(key).is_some_and(|t| level_m >= t))
        .map(|(n, _)| n)
}

/// What a sensor's latest value means; on the wire the same snake_case
/// strings for every kind (`warning_3`, `wet`, `unhealthy_sensitive`, `on`...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Level {
    // Water level: river gauges against their warning levels; drainage `high`.
    Normal,
    Warning3,
    Warning2,
    Warning1,
    High,
    // Flood depth.
    Wet,
    Alert,
    Severe,
    /// Air: the MOENV AQI category, by its own name.
    Air(AqiCategory),
    // Streetlights.
    On,
    Off,
    Fault,
    /// Rain: the CWA class, by its own name (declared in order of severity).
    Rain(RainClass),
}

impl Level {
    /// Every level, in declaration order (the schema's list of values).
    const ALL: [Level; 22] = [
        Level::Normal,
        Level::Warning3,
        Level::Warning2,
        Level::Warning1,
        Level::High,
        Level::Wet,
        Level::Alert,
        Level::Severe,
        Level::Air(AqiCategory::Good),
        Level::Air(AqiCategory::Moderate),
        Level::Air(AqiCategory::UnhealthySensitive),
        Level::Air(AqiCategory::Unhealthy),
        Level::Air(AqiCategory::VeryUnhealthy),
        Level::Air(AqiCategory::Hazardous),
        Level::On,
        Level::Off,
        Level::Fault,
        Level::Rain(RainClass::None),
        Level::Rain(RainClass::Heavy),
        Level::Rain(RainClass::ExtremelyHeavy),
        Level::Rain(RainClass::Torrential),
        Level::Rain(RainClass::ExtremelyTorrential),
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Level::Normal => "normal",
            Level::Warning3 => "warning_3",
            Level::Warning2 => "warning_2",
            Level::Warning1 => "warning_1",
            Level::High => "high",
            Level::Wet => "wet",
            Level::Alert => "alert",
            Level::Severe => "severe",
            Level::Air(category) => category.as_str(),
            Level::On => "on",
            Level::Off => "off",
            Level::Fault => "fault",
            Level::Rain(class) => class.as_str(),
        }
    }
}

impl Serialize for Level {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl utoipa::PartialSchema for Level {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .description(Some(
                "What a sensor's latest value means; on the wire the same snake_case\nstrings for every kind (`warning_3`, `wet`, `unhealthy_sensitive`, `on`...).",
            ))
            .enum_values(Some(Level::ALL.map(Level::as_str)))
            .into()
    }
}

impl ToSchema for Level {}

/// The kind's classification of the latest value; `None` without a usable
/// reading (none, or flagged `bad`: sensor health comes before hazard).
/// Rain gauges are classed from `windows` when the caller has them, and
/// air stations from their AQI's moving averages (which leave `bad`
/// readings out; gating on the latest one would bring back the flapping).
pub fn level(
    entry: &Entry,
    now: DateTime<Utc>,
    wet_min_cm: f64,
    windows: Option<&[(Window, Accumulation); 4]>,
) -> Option<Level> {
    let meta = &entry.meta;
    if meta.kind == Kind::Rainfall {
        entry.latest.as_ref()?;
        let class = match windows {
            Some(w) => rain_class(w),
            None => rain_class(&rain_windows(entry, now)),
        };
        return Some(Level::Rain(class));
    }
    if meta.kind == Kind::AirQuality {
        entry.latest.as_ref()?;
        return air_level(station_aqi(entry, now));
    }
    let latest = entry.latest.as_deref().filter(|l| l.quality != QualityLevel::Bad)?;
    Some(match meta.kind {
        Kind::Rainfall => unreachable!("handled above"),
        Kind::WaterLevel => {
            let level_m = latest.number("level_m")?;
            if meta.subkind.as_deref() == Some("river") {
                match river_warning(meta, level_m) {
                    Some(1) => Level::Warning1,
                    Some(2) => Level::Warning2,
                    Some(_) => Level::Warning3,
                    None => Level::Normal,
                }
            } else if meta.threshold("high_m").is_some_and(|h| level_m >= h) {
                Level::High
            } else {
                Level::Normal
            }
        }
        Kind::FloodDepth => {
            let depth = latest.number("depth_cm")?;
            if meta.threshold("severe_cm").is_some_and(|t| depth >= t) {
                Level::Severe
            } else if meta.threshold("alert_cm").is_some_and(|t| depth >= t) {
                Level::Alert
            } else if depth > 0.0 && depth >= wet_min_cm {
                Level::Wet
            } else {
                Level::Normal
            }
        }
        Kind::AirQuality => unreachable!("handled above"),
        Kind::Streetlight => {
            if latest.values.get("fault").is_some_and(|f| !f.is_null()) {
                Level::Fault
            } else {
                match latest.values.get("lamp_on").and_then(Value::as_bool)? {
                    true => Level::On,
                    false => Level::Off,
                }
            }
        }
    })
}

/// The kind's primary figure and its unit (map layers): rain over 1 h, the
/// water level, the flood depth, the AQI (moving averages), the lamp's power.
pub fn primary_value(entry: &Entry, now: DateTime<Utc>) -> (Option<f64>, &'static str) {
    let latest = entry.latest.as_deref();
    match entry.meta.kind {
        Kind::Rainfall => {
            let value = latest.and_then(|_| {
                rain_window::accumulate_iter(entry.rain_intervals(), now, 3_600, entry.meta.expected_interval_s).mm
            });
            (value.map(round3), "mm")
        }
        Kind::WaterLevel => (latest.and_then(|l| l.number("level_m")), "m"),
        Kind::FloodDepth => (latest.and_then(|l| l.number("depth_cm")), "cm"),
        Kind::AirQuality => (latest.and_then(|_| station_aqi(entry, now)).map(f64::from), "aqi"),
        Kind::Streetlight => (latest.and_then(|l| l.number("power_w")), "W"),
    }
}

pub fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

pub fn rfc3339(ts: DateTime<Utc>) -> String {
    ts.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// A sensor's latest reading as the API shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct LatestView {
    /// RFC 3339 UTC.
    pub ts: String,
    /// Seconds since `ts` when the response was made.
    pub age_s: i64,
    /// `good`, `suspect` or `bad`.
    pub quality: &'static str,
    pub quality_reasons: Vec<String>,
    /// Non-null columns by canonical name (`level_m`, `pm2_5_ugm3`, `lamp_on`...).
    #[schema(value_type = Object)]
    pub values: Map<String, Value>,
}

/// A sensor with its latest reading, state and level.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SensorView {
    pub id: String,
    /// `rainfall`, `water_level`, `flood_depth`, `air_quality` or `streetlight`.
    pub kind: &'static str,
    pub subkind: Option<String>,
    pub name: Option<String>,
    pub name_zh: Option<String>,
    pub district: Option<String>,
    /// Registry status: `active`, `pending` or `retired`.
    pub status: &'static str,
    pub lon: Option<f64>,
    pub lat: Option<f64>,
    #[schema(value_type = Object)]
    pub thresholds: Map<String, Value>,
    pub expected_interval_s: i64,
    pub state: State,
    /// The kind's classification of the latest value, or null.
    pub level: Option<Level>,
    pub latest: Option<LatestView>,
    /// Only on `/api/v1/sensors/{id}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub installation: Option<Map<String, Value>>,
}

impl SensorView {
    /// Without `latest.age_s`, which only moves with the clock.
    pub fn untimed(&self) -> SensorView {
        let mut view = self.clone();
        if let Some(latest) = view.latest.as_mut() {
            latest.age_s = 0;
        }
        view
    }
}

pub fn latest_view(latest: &Latest, now: DateTime<Utc>) -> LatestView {
    LatestView {
        ts: rfc3339(latest.ts),
        age_s: (now - latest.ts).num_seconds().max(0),
        quality: latest.quality.as_str(),
        quality_reasons: latest.quality_reasons.clone(),
        values: latest.values.clone(),
    }
}

pub fn sensor_view(entry: &Entry, now: DateTime<Utc>, cache: &super::Cache, with_installation: bool) -> SensorView {
    let meta = &entry.meta;
    SensorView {
        id: meta.id.clone(),
        kind: meta.kind.as_str(),
        subkind: meta.subkind.clone(),
        name: meta.name.clone(),
        name_zh: meta.name_zh.clone(),
        district: meta.district.clone(),
        status: meta.status.as_str(),
        lon: meta.lon,
        lat: meta.lat,
        thresholds: meta.thresholds.clone(),
        expected_interval_s: meta.expected_interval_s,
        state: state(entry, now, cache.stale_factor),
        level: level(entry, now, cache.wet_min_cm, None),
        latest: entry.latest.as_deref().map(|l| latest_view(l, now)),
        installation: with_installation.then(|| meta.installation.clone()),
    }
}
