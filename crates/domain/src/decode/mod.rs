//! Wire formats into [`RawRecord`]s: one sensor, one time, fields already in
//! canonical units. Registry checks and quality flags come after, in
//! [`crate::normalise`].

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde_json::Value;

use crate::kind::{Field, FieldType, FieldValue, Kind};
use crate::registry::Registry;
use crate::time::json_type;
use crate::unit::Unit;
use crate::DomainError;

pub mod canonical;
pub mod lorawan;
pub mod senml;

pub use lorawan::{DeviceProfile, DeviceProfileConfig, DeviceProfiles};

/// One sensor's fields at one time, decoded but not yet checked.
#[derive(Debug, Clone, PartialEq)]
pub struct RawRecord {
    pub sensor_id: String,
    pub kind: Kind,
    /// `None` when the message carried no time: the receive time is used.
    pub ts: Option<DateTime<Utc>>,
    pub fields: Vec<(Field, FieldValue)>,
    /// For LoRaWAN devices not in the registry: how to register them.
    pub device: Option<DeviceIdentity>,
}

/// A LoRaWAN device's identity, kept when it is auto-registered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceIdentity {
    pub dev_eui: String,
    pub device_profile: String,
}

/// What decoders may consult: all of it in memory.
#[derive(Debug, Clone, Copy)]
pub struct DecodeContext<'a> {
    pub registry: &'a Registry,
    pub profiles: &'a DeviceProfiles,
    pub tz: Tz,
    pub received_at: DateTime<Utc>,
    /// URN prefixes that precede a sensor id in SenML names (`urn:dev:city:`).
    pub urn_prefixes: &'a [String],
    /// For SenML on a sensor's own topic (`{prefix}/{kind}/{sensor_id}`): the
    /// sensor a record means when its name has no sensor part.
    pub own_sensor: Option<(Kind, &'a str)>,
}

impl<'a> DecodeContext<'a> {
    /// A context with no URN prefixes and no own sensor.
    pub fn new(
        registry: &'a Registry,
        profiles: &'a DeviceProfiles,
        tz: Tz,
        received_at: DateTime<Utc>,
    ) -> DecodeContext<'a> {
        DecodeContext { registry, profiles, tz, received_at, urn_prefixes: &[], own_sensor: None }
    }
}

/// A message's records: each decoded, or the reason it could not be.
pub type Records = Vec<Result<RawRecord, DomainError>>;

/// A decoded scalar, before it is checked against the field it feeds.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Scalar<'a> {
    Null,
    Number(f64),
    Bool(bool),
    Text(&'a str),
    /// Anything else (an array, an object), described for the error.
    Other(&'static str),
}

/// Reads a JSON value as `field`, converting a number from `unit` (the field's
/// canonical unit when `None`).
pub(crate) fn field_value(field: Field, value: &Value, unit: Option<Unit>) -> Result<FieldValue, DomainError> {
    let scalar = match value {
        Value::Null => Scalar::Null,
        Value::Bool(b) => Scalar::Bool(*b),
        Value::Number(n) => n.as_f64().map_or(Scalar::Other("a number out of range"), Scalar::Number),
        Value::String(s) => Scalar::Text(s),
        other => Scalar::Other(json_type(other)),
    };
    field_scalar(field, scalar, unit)
}

/// Checks a scalar against `field`'s type and converts it to the canonical unit.
pub(crate) fn field_scalar(field: Field, value: Scalar<'_>, unit: Option<Unit>) -> Result<FieldValue, DomainError> {
    let wrong = |expected: &str| {
        let got = match value {
            Scalar::Null => "null",
            Scalar::Number(_) => "a number",
            Scalar::Bool(_) => "a boolean",
            Scalar::Text(_) => "a string",
            Scalar::Other(what) => what,
        };
        DomainError::invalid(field.name(), format!("expected {expected}, got {got}"))
    };
    match (field.field_type(), value) {
        (_, Scalar::Null) => Ok(FieldValue::Null),
        (FieldType::Float | FieldType::Int, Scalar::Number(n)) => {
            let n = convert(field, n, unit)?;
            if !n.is_finite() {
                return Err(DomainError::invalid(field.name(), "not a finite number"));
            }
            if field.field_type() == FieldType::Int && (n.fract() != 0.0 || n.abs() > f64::from(i32::MAX)) {
                return Err(DomainError::invalid(field.name(), format!("expected a whole number, got {n}")));
            }
            Ok(FieldValue::Number(n))
        }
        (FieldType::Float | FieldType::Int, _) => Err(wrong("a number")),
        (FieldType::Bool, Scalar::Bool(b)) => Ok(FieldValue::Bool(b)),
        (FieldType::Bool, _) => Err(wrong("true or false")),
        (FieldType::Text, Scalar::Text(s)) => Ok(FieldValue::Text(s.chars().take(200).collect())),
        (FieldType::Text, _) => Err(wrong("a string")),
    }
}

/// Converts a number into the field's canonical unit.
pub(crate) fn convert(field: Field, value: f64, unit: Option<Unit>) -> Result<f64, DomainError> {
    let (Some(from), Some(to)) = (unit, field.canonical_unit()) else {
        return Ok(value);
    };
    from.convert(value, to).ok_or_else(|| DomainError::IncompatibleUnit {
        unit: from.symbol().to_string(),
        field: field.name().to_string(),
        canonical: to.symbol().to_string(),
    })
}
