//! One MQTT message in, the rows it becomes out: decode by topic, content type
//! and shape, resolve each record's sensor in the registry, build the kind's
//! values in canonical units, run the quality checks. Nothing is dropped
//! silently: what cannot be stored comes back as a [`Rejection`] with a reason
//! code and a detail.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use crate::decode::{self, DecodeContext, DeviceProfiles, RawRecord, Records};
use crate::kind::{Field, FieldValue, Kind};
use crate::quality::{self, QualityConfig, SpikeTracker};
use crate::rain::DEFAULT_BUCKET_MM;
use crate::reading::{AirQuality, CounterReading, Quality, QualityLevel, Reading, Streetlight, Values};
use crate::registry::{NewSensor, Registry, SensorInfo, SensorStatus};
use crate::time;
use crate::topic::{self, Route};
use crate::unit::round_significant;
use crate::{DomainError, RejectReason};

/// Everything normalisation is configured with.
#[derive(Debug, Clone)]
pub struct NormaliseConfig {
    /// First segment of the platform's own topics (`city/{kind}/{id}`).
    pub topic_prefix: String,
    /// Zone for timestamps without an offset.
    pub tz: Tz,
    /// Larger payloads are rejected unread.
    pub max_payload_bytes: usize,
    pub profiles: DeviceProfiles,
    pub quality: QualityConfig,
    /// URN prefixes followed by a sensor id in SenML names.
    pub urn_prefixes: Vec<String>,
    /// Topics bound to the sensors they may write.
    pub senml_sources: SourceBindings,
    /// What a reading for a sensor the registry does not know becomes.
    pub unknown_sensors: UnknownSensors,
    /// Past this many pending sensors, new ids are refused.
    pub max_pending_sensors: usize,
}

/// The URN prefix a SenML name may put before a sensor id by default.
pub const DEFAULT_URN_PREFIX: &str = "urn:dev:city:";

impl Default for NormaliseConfig {
    fn default() -> Self {
        NormaliseConfig {
            topic_prefix: topic::DEFAULT_PREFIX.to_string(),
            tz: chrono_tz::Asia::Taipei,
            max_payload_bytes: 256 * 1024,
            profiles: DeviceProfiles::default(),
            quality: QualityConfig::default(),
            urn_prefixes: vec![DEFAULT_URN_PREFIX.to_string()],
            senml_sources: SourceBindings::default(),
            unknown_sensors: UnknownSensors::default(),
            max_pending_sensors: DEFAULT_MAX_PENDING_SENSORS,
        }
    }
}

/// A message as received.
#[derive(Debug, Clone, Copy)]
pub struct Message<'a> {
    pub topic: &'a str,
    pub payload: &'a [u8],
    pub received_at: DateTime<Utc>,
    /// The MQTT 5 content type, when the publisher set one.
    pub content_type: Option<&'a str>,
}

/// The sensor whose own topic a SenML pack came on, and its kind.
type OwnSensor<'a> = Option<(Kind, &'a str)>;

/// How a message's payload is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format<'a> {
    Canonical {
        kind: Kind,
        sensor_id: &'a str,
    },
    /// SenML; on a sensor's own topic, confined to that sensor.
    SenMl {
        own: OwnSensor<'a>,
    },
    ChirpStack {
        dev_eui: &'a str,
    },
    TheThingsStack {
        device_id: &'a str,
    },
}

/// What a content type says about the payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Declared {
    SenMl,
    /// Plain JSON: read as the topic says, never sniffed.
    Json,
    Unknown,
}

fn declared(content_type: Option<&str>) -> Declared {
    let Some(ct) = content_type else { return Declared::Unknown };
    // Parameters (`; charset=utf-8`) do not change the format.
    let essence = ct.split(';').next().unwrap_or("").trim();
    if essence.eq_ignore_ascii_case(decode::senml::CONTENT_TYPE) {
        Declared::SenMl
    } else if essence.eq_ignore_ascii_case("application/json") {
        Declared::Json
    } else {
        Declared::Unknown
    }
}

/// Chooses the format: the content type `application/senml+json` means SenML
/// on any topic; otherwise the topic decides, except that a payload shaped
/// like a SenML pack is SenML on a sensor's own topic or on a topic no format
/// claims (unless the content type says plain JSON).
fn format<'a>(msg: &Message<'a>, prefix: &str) -> Result<Format<'a>, DomainError> {
    let declared = declared(msg.content_type);
    let route = topic::route(msg.topic, prefix);
    let own = match route {
        Ok(Route::Canonical { kind, sensor_id }) => Some((kind, sensor_id)),
        _ => None,
    };
    let senml = || match declared {
        Declared::SenMl => true,
        Declared::Json => false,
        Declared::Unknown => decode::senml::looks_like_senml(msg.payload),
    };
    match route {
        _ if declared == Declared::SenMl => Ok(Format::SenMl { own }),
        Ok(Route::Canonical { kind, sensor_id }) if !senml() => Ok(Format::Canonical { kind, sensor_id }),
        Ok(Route::Canonical { .. }) => Ok(Format::SenMl { own }),
        Ok(Route::SenMl) => Ok(Format::SenMl { own: None }),
        Ok(Route::ChirpStack { dev_eui }) => Ok(Format::ChirpStack { dev_eui }),
        Ok(Route::TheThingsStack { device_id }) => Ok(Format::TheThingsStack { device_id }),
        Err(_) if senml() => Ok(Format::SenMl { own: None }),
        Err(e) => Err(e),
    }
}

/// Why (part of) a message was not stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejection {
    pub reason: RejectReason,
    pub detail: String,
}

/// What one message became.
#[derive(Debug, Default)]
pub struct Decoded {
    pub readings: Vec<Reading>,
    pub counters: Vec<CounterReading>,
    /// Sensors seen for the first time, to be registered as `pending`.
    pub new_sensors: Vec<NewSensor>,
    /// Set when the message, or some of its records, could not be stored.
    pub rejection: Option<Rejection>,
}

/// Stateful normaliser: it remembers auto-registered sensors (until the
/// registry knows them) and each sensor's last good value for the spike test.
#[derive(Debug)]
pub struct Normaliser {
    config: NormaliseConfig,
    pending: PendingSensors,
    spikes: SpikeTracker,
    /// The time bounds of the message being read (see [`Bounds`]).
    bounds: Option<Bounds>,
}

/// What a message's receive time allows, worked out once per message rather
/// than once per reading of a pack (chrono's date arithmetic is not free).
#[derive(Debug, Clone, Copy)]
struct Bounds {
    received_at: DateTime<Utc>,
    /// Earlier than this is refused (`max_backfill`).
    earliest: DateTime<Utc>,
    /// Later than this is refused (`max_future`).
    latest: DateTime<Utc>,
    /// Later than this is flagged `future_ts`.
    future_limit: DateTime<Utc>,
}

impl Normaliser {
    pub fn new(config: NormaliseConfig) -> Self {
        Normaliser { config, pending: PendingSensors::default(), spikes: SpikeTracker::default(), bounds: None }
    }

    /// Seeds the spike test with last good values from the store (see
    /// [`SpikeTracker::seed`]): `(sensor, column, time, value)`.
    pub fn seed_spikes<'a>(&mut self, seeds: impl IntoIterator<Item = (&'a str, Field, DateTime<Utc>, f64)>) {
        for (sensor, field, ts, value) in seeds {
            self.spikes.seed(sensor, field, ts, value);
        }
    }

    /// Forgets auto-registered sensors that the registry now knows.
    pub fn registry_refreshed(&mut self, registry: &Registry) {
        self.pending.confirmed(registry);
    }

    pub fn normalise(&mut self, msg: &Message<'_>, registry: &Registry) -> Decoded {
        let mut out = Decoded::default();
        match self.decode(msg, registry) {
            Err(e) => out.rejection = Some(Rejection { reason: e.reason(), detail: e.to_string() }),
            Ok((records, own)) => {
                let total = records.len();
                out.readings.reserve(total);
                let mut failures = Vec::new();
                let allowed = self.config.senml_sources.for_topic(msg.topic);
                for (i, record) in records.into_iter().enumerate() {
                    let bound = allowed.as_ref().map(|a| (a, &self.config.senml_sources));
                    let result = record
                        .and_then(|r| confine(r, msg.topic, own, bound))
                        .and_then(|r| self.accept(r, msg.received_at, registry, &mut out));
                    if let Err(e) = result {
                        failures.push((i, e));
                    }
                }
                out.rejection = summarise(total, failures);
            }
        }
        out
    }

    /// Decodes the message's records; for SenML on a sensor's own topic, also
    /// that sensor, which every record must be.
    fn decode<'m>(&self, msg: &Message<'m>, registry: &Registry) -> Result<(Records, OwnSensor<'m>), DomainError> {
        if msg.payload.len() > self.config.max_payload_bytes {
            return Err(DomainError::Oversized { bytes: msg.payload.len(), limit: self.config.max_payload_bytes });
        }
        let format = format(msg, &self.config.topic_prefix)?;
        let mut ctx = DecodeContext::new(registry, &self.config.profiles, self.config.tz, msg.received_at);
        ctx.urn_prefixes = &self.config.urn_prefixes;
        let json = || -> Result<serde_json::Value, DomainError> {
            serde_json::from_slice(msg.payload).map_err(|e| DomainError::MalformedPayload(e.to_string()))
        };
        match format {
            Format::Canonical { kind, sensor_id } => {
                Ok((decode::canonical::decode(kind, sensor_id, &json()?, &ctx)?, None))
            }
            // The bulk path reads the payload without building a JSON tree.
            Format::SenMl { own } => {
                ctx.own_sensor = own;
                Ok((decode::senml::decode(msg.payload, &ctx)?, own))
            }
            Format::ChirpStack { dev_eui } => Ok((decode::lorawan::decode_chirpstack(dev_eui, &json()?, &ctx)?, None)),
            Format::TheThingsStack { device_id } => Ok((decode::lorawan::decode_tts(device_id, &json()?, &ctx)?, None)),
        }
    }

    /// Turns one decoded record into a row (or a counter value).
    fn accept(
        &mut self,
        record: RawRecord,
        received_at: DateTime<Utc>,
        registry: &Registry,
        out: &mut Decoded,
    ) -> Result<(), DomainError> {
        let ts = record.ts.unwrap_or(received_at);
        let bounds = self.bounds(received_at);
        if ts < bounds.earliest || ts > bounds.latest {
            let q = &self.config.quality;
            time::check_window(ts, received_at, q.max_backfill, q.max_future)?;
        }
        let sensor = self.resolve(&record, received_at, registry, out)?;
        let mut fields = record.fields;
        // The first value of a field wins, as the first record of a pack does.
        let mut seen = 0u32;
        fields.retain(|(field, _)| {
            let bit = 1u32 << (*field as u32);
            let first = seen & bit == 0;
            seen |= bit;
            first
        });
        let mut quality = Quality::default();
        let values = match record.kind {
            Kind::Rainfall => match rainfall(&fields, sensor, &mut quality)? {
                RainInput::Interval(values) => values,
                RainInput::Counter(counter_mm) => {
                    // Range and time checks apply to counters too.
                    let mut probe = Reading {
                        sensor_id: record.sensor_id,
                        ts,
                        values: Values::Rainfall { rain_mm: 0.0, interval_s: None },
                        quality,
                    };
                    self.check(&mut probe, sensor, received_at);
                    // The store derives intervals from the gauge's last counter
                    // value: a value whose time cannot be trusted would become
                    // that state (one stamped ahead turns every genuine value
                    // after it into `counter_out_of_order`). It is refused.
                    let untrusted = probe.quality.reasons.iter().find(|r| *r == "future_ts" || *r == "clock_unset");
                    if let Some(flag) = untrusted {
                        return Err(DomainError::TimestampOutOfWindow {
                            ts: ts.to_rfc3339(),
                            problem: format!(
                                "`{flag}` for its receipt at {} (future_tolerance_s {}); a rain counter value with an untrusted time would become the gauge's counter state",
                                received_at.to_rfc3339(),
                                self.config.quality.future_tolerance.num_seconds()
                            ),
                        });
                    }
                    let Reading { sensor_id, quality, .. } = probe;
                    out.counters.push(CounterReading { sensor_id, ts, counter_mm, quality });
                    return Ok(());
                }
            },
            Kind::WaterLevel => Values::WaterLevel { level_m: required(&fields, Field::LevelM)? },
            Kind::FloodDepth => Values::FloodDepth { depth_cm: required(&fields, Field::DepthCm)? },
            Kind::AirQuality => Values::AirQuality(air_quality(&fields)?),
            Kind::Streetlight => Values::Streetlight(streetlight(&fields)?),
        };
        let mut reading = Reading { sensor_id: record.sensor_id, ts, values, quality };
        self.check(&mut reading, sensor, received_at);
        out.readings.push(reading);
        Ok(())
    }

    /// "Now" for the checks is when the message arrived, so a replayed or
    /// late-processed message is judged as it was when it came in.
    fn check(&mut self, reading: &mut Reading, sensor: Option<&SensorInfo>, received_at: DateTime<Utc>) {
        let future_limit = self.bounds(received_at).future_limit;
        quality::check_before(reading, sensor, future_limit, &self.config.quality, &mut self.spikes);
    }

    fn bounds(&mut self, received_at: DateTime<Utc>) -> Bounds {
        match self.bounds {
            Some(bounds) if bounds.received_at == received_at => bounds,
            _ => {
                let q = &self.config.quality;
                let bounds = Bounds {
                    received_at,
                    earliest: received_at - q.max_backfill,
                    latest: received_at + q.max_future,
                    future_limit: received_at + q.future_tolerance,
                };
                self.bounds = Some(bounds);
                bounds
            }
        }
    }

    /// Finds the record's sensor, or registers it as pending (as the
    /// `unknown_sensors` policy and the cap allow).
    fn resolve<'r>(
        &mut self,
        record: &RawRecord,
        received_at: DateTime<Utc>,
        registry: &'r Registry,
        out: &mut Decoded,
    ) -> Result<Option<&'r SensorInfo>, DomainError> {
        if let Some(sensor) = registry.get(&record.sensor_id) {
            if sensor.status == SensorStatus::Retired {
                return Err(DomainError::RetiredSensor(sensor.id.clone()));
            }
            if sensor.kind != record.kind {
                return Err(kind_mismatch(&sensor.id, sensor.kind, record.kind));
            }
            return Ok(Some(sensor));
        }
        match self.pending.kind_of(&record.sensor_id) {
            Some(kind) if kind != record.kind => Err(kind_mismatch(&record.sensor_id, kind, record.kind)),
            Some(_) => Ok(None),
            None => {
                let (policy, max) = (self.config.unknown_sensors, self.config.max_pending_sensors);
                self.pending.admit(&record.sensor_id, record.kind, received_at, registry, policy, max)?;
                out.new_sensors.push(NewSensor {
                    id: record.sensor_id.clone(),
                    kind: record.kind,
                    dev_eui: record.device.as_ref().map(|d| d.dev_eui.clone()),
                    device_profile: record.device.as_ref().map(|d| d.device_profile.clone()),
                });
                Ok(None)
            }
        }
    }
}

/// Refuses a record its topic may not write: SenML on a sensor's own topic
/// writes only that sensor; a topic bound in `senml_sources` only its sensors.
fn confine(
    record: RawRecord,
    topic: &str,
    own: Option<(Kind, &str)>,
    bound: Option<(&Allowed, &SourceBindings)>,
) -> Result<RawRecord, DomainError> {
    let refuse = |why: String| DomainError::SourceNotAllowed {
        topic: topic.chars().take(128).collect(),
        sensor_id: record.sensor_id.clone(),
        why,
    };
    if let Some((kind, id)) = own {
        if record.sensor_id != id {
            return Err(refuse(format!("a SenML pack on sensor `{id}`'s own topic writes only that sensor")));
        }
        if record.kind != kind {
            return Err(kind_mismatch(id, kind, record.kind));
        }
    }
    if let Some((allowed, all)) = bound {
        if !allowed.permits(all, &record.sensor_id) {
            return Err(refuse(format!("senml_sources binds it by {}", allowed.filters(all))));
        }
    }
    Ok(record)
}

fn kind_mismatch(sensor_id: &str, registered: Kind, got: Kind) -> DomainError {
    DomainError::KindMismatch {
        sensor_id: sensor_id.to_string(),
        registered: registered.to_string(),
        got: got.to_string(),
    }
}

fn summarise(total: usize, failures: Vec<(usize, DomainError)>) -> Option<Rejection> {
    let (first_index, first) = failures.first()?;
    let detail = if total == 1 {
        first.to_string()
    } else {
        format!("{} of {total} records rejected; first, record {first_index}: {first}", failures.len())
    };
    Some(Rejection { reason: first.reason(), detail })
}

enum RainInput {
    Interval(Values),
    Counter(f64),
}

fn rainfall(
    fields: &[(Field, FieldValue)],
    sensor: Option<&SensorInfo>,
    quality: &mut Quality,
) -> Result<RainInput, DomainError> {
    let interval_s = match number(fields, Field::IntervalS) {
        Some(s) if s >= 1.0 => Some(s as i32),
        Some(s) => return Err(DomainError::invalid("interval_s", format!("must be at least 1 second, got {s}"))),
        None => None,
    };
    let given: Vec<Field> = [Field::RainMm, Field::RainTips, Field::RainCounterMm]
        .into_iter()
        .filter(|f| number(fields, *f).is_some())
        .collect();
    match given.as_slice() {
        [Field::RainMm] => Ok(RainInput::Interval(Values::Rainfall {
            rain_mm: number(fields, Field::RainMm).unwrap_or_default(),
            interval_s,
        })),
        [Field::RainTips] => {
            let tips = number(fields, Field::RainTips).unwrap_or_default();
            if tips < 0.0 || tips.fract() != 0.0 {
                return Err(DomainError::invalid("rain_tips", format!("must be a whole count, got {tips}")));
            }
            let bucket_mm = match sensor.and_then(|s| s.bucket_mm) {
                Some(b) => b,
                None => {
                    quality.flag(QualityLevel::Suspect, "assumed_bucket_mm");
                    DEFAULT_BUCKET_MM
                }
            };
            Ok(RainInput::Interval(Values::Rainfall { rain_mm: round_significant(tips * bucket_mm), interval_s }))
        }
        [Field::RainCounterMm] => Ok(RainInput::Counter(number(fields, Field::RainCounterMm).unwrap_or_default())),
        [] => Err(DomainError::invalid("rain_mm", "missing: send rain_mm, rain_tips or rain_counter_mm")),
        _ => Err(DomainError::invalid("rain_mm", "send only one of rain_mm, rain_tips, rain_counter_mm")),
    }
}

fn number(fields: &[(Field, FieldValue)], field: Field) -> Option<f64> {
    fields.iter().find_map(|(f, v)| match v {
        FieldValue::Number(n) if *f == field => Some(*n),
        _ => None,
    })
}

fn required(fields: &[(Field, FieldValue)], field: Field) -> Result<f64, DomainError> {
    number(fields, field).ok_or_else(|| DomainError::invalid(field.name(), "missing or null"))
}

fn air_quality(fields: &[(Field, FieldValue)]) -> Result<AirQuality, DomainError> {
    let mut air = AirQuality::default();
    for (field, value) in fields {
        if let (Some(slot), FieldValue::Number(n)) = (air.slot(*field), value) {
            *slot = Some(*n);
        }
    }
    if air == AirQuality::default() {
        return Err(DomainError::NoReadings);
    }
    Ok(air)
}

fn streetlight(fields: &[(Field, FieldValue)]) -> Result<Streetlight, DomainError> {
    let mut light = Streetlight::default();
    for (field, value) in fields {
        match (field, value) {
            (Field::LampOn, FieldValue::Bool(b)) => light.lamp_on = Some(*b),
            (Field::Fault, FieldValue::Text(code)) if !code.is_empty() => light.fault = Some(code.clone()),
            (field, FieldValue::Number(n)) => {
                if let Some(slot) = light.slot(*field) {
                    *slot = Some(*n);
                }
            }
            _ => {}
        }
    }
    // A message that only says "no fault" is still a report worth a row.
    let says_no_fault = fields.iter().any(|(f, v)| *f == Field::Fault && matches!(v, FieldValue::Null));
    if light == Streetlight::default() && !says_no_fault {
        return Err(DomainError::NoReadings);
    }
    Ok(light)
}

mod pending;
mod sources;
use pending::PendingSensors;
pub use pending::{UnknownSensors, DEFAULT_MAX_PENDING_SENSORS};
pub use sources::{Allowed, SourceBindings};

#[cfg(test)]
mod hardening;
#[cfg(test)]
mod tests;
