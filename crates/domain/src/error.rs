//! The one error type of the domain crate, and the bounded set of reasons a
//! message can be rejected for (they are metric labels and stored reason codes).

use std::fmt;

/// Why a message, or a record inside it, could not become a reading.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DomainError {
    #[error("payload is {bytes} bytes, over the {limit} byte limit")]
    Oversized { bytes: usize, limit: usize },
    #[error("payload is not valid JSON: {0}")]
    MalformedPayload(String),
    #[error("topic `{0}` matches no known format")]
    UnknownTopic(String),
    #[error("unknown sensor kind `{0}`")]
    UnknownKind(String),
    #[error("invalid sensor id `{0}`: use 1-64 characters from a-z A-Z 0-9 - _ . :")]
    InvalidSensorId(String),
    #[error("unknown field `{field}` for {context}")]
    UnknownField { field: String, context: String },
    #[error("field `{field}`: {problem}")]
    InvalidValue { field: String, problem: String },
    #[error("unknown unit `{0}`")]
    UnknownUnit(String),
    #[error("unit `{unit}` cannot express `{field}` (canonical unit {canonical})")]
    IncompatibleUnit { unit: String, field: String, canonical: String },
    #[error("invalid timestamp: {0}")]
    InvalidTimestamp(String),
    #[error("message carries no readings")]
    NoReadings,
    #[error("sensor `{sensor_id}` is registered as {registered}, not {got}")]
    KindMismatch { sensor_id: String, registered: String, got: String },
    #[error("sensor `{0}` is retired")]
    RetiredSensor(String),
    #[error("no registered sensor has device EUI `{0}` and no device profile names its kind")]
    UnknownDevice(String),
    #[error("device profile `{0}` is not configured")]
    UnknownDeviceProfile(String),
    #[error("timestamp {ts} is {problem}")]
    TimestampOutOfWindow { ts: String, problem: String },
    #[error("{0}")]
    IdentityMismatch(String),
    #[error("sensor `{0}` is not registered, and unknown_sensors = reject")]
    UnknownSensor(String),
    #[error("sensor `{sensor_id}` is not registered, and {max} pending sensors already wait for an operator (max_pending_sensors)")]
    PendingSensorsFull { sensor_id: String, max: usize },
    #[error("topic `{topic}` may not write sensor `{sensor_id}` ({why})")]
    SourceNotAllowed { topic: String, sensor_id: String, why: String },
    #[error("registry file, {location}: {problem}")]
    RegistryFile { location: String, problem: String },
}

/// Bounded reason codes: stored in `rejected_messages.reason` and used as the
/// `reason` label of the rejection metric, so the set must stay small and fixed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RejectReason {
    Oversized,
    MalformedPayload,
    UnknownTopic,
    UnknownKind,
    InvalidSensorId,
    UnknownField,
    InvalidValue,
    InvalidUnit,
    InvalidTimestamp,
    NoReadings,
    KindMismatch,
    RetiredSensor,
    UnknownDevice,
    UnknownDeviceProfile,
    CounterOutOfOrder,
    /// Stamped further back than `max_backfill_days` or further ahead than
    /// `max_future_s` (or a counter value stamped ahead of its receipt).
    TimestampOutOfWindow,
    /// A LoRaWAN uplink whose body names another device than its topic.
    IdentityMismatch,
    /// A record for a sensor its topic is not bound to (`senml_sources`, or a
    /// SenML pack on another sensor's own topic).
    SourceNotAllowed,
    /// A sensor the registry does not know, with `unknown_sensors = reject`.
    UnknownSensor,
    /// A sensor the registry does not know, while `max_pending_sensors`
    /// pending sensors already wait for an operator.
    PendingSensorsFull,
    /// The database refused the row itself (a safety net: should not happen).
    StoreRejected,
    /// The decoder failed on the message (a bug, kept for its report).
    DecoderFault,
}

impl RejectReason {
    /// Every reason, for pre-registering metric label values.
    pub const ALL: [RejectReason; 22] = [
        Self::Oversized,
        Self::MalformedPayload,
        Self::UnknownTopic,
        Self::UnknownKind,
        Self::InvalidSensorId,
        Self::UnknownField,
        Self::InvalidValue,
        Self::InvalidUnit,
        Self::InvalidTimestamp,
        Self::NoReadings,
        Self::KindMismatch,
        Self::RetiredSensor,
        Self::UnknownDevice,
        Self::UnknownDeviceProfile,
        Self::CounterOutOfOrder,
        Self::TimestampOutOfWindow,
        Self::IdentityMismatch,
        Self::SourceNotAllowed,
        Self::UnknownSensor,
        Self::PendingSensorsFull,
        Self::StoreRejected,
        Self::DecoderFault,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Oversized => "oversized",
            Self::MalformedPayload => "malformed_payload",
            Self::UnknownTopic => "unknown_topic",
            Self::UnknownKind => "unknown_kind",
            Self::InvalidSensorId => "invalid_sensor_id",
            Self::UnknownField => "unknown_field",
            Self::InvalidValue => "invalid_value",
            Self::InvalidUnit => "invalid_unit",
            Self::InvalidTimestamp => "invalid_timestamp",
            Self::NoReadings => "no_readings",
            Self::KindMismatch => "kind_mismatch",
            Self::RetiredSensor => "retired_sensor",
            Self::UnknownDevice => "unknown_device",
            Self::UnknownDeviceProfile => "unknown_device_profile",
            Self::CounterOutOfOrder => "counter_out_of_order",
            Self::TimestampOutOfWindow => "timestamp_out_of_window",
            Self::IdentityMismatch => "identity_mismatch",
            Self::SourceNotAllowed => "source_not_allowed",
            Self::UnknownSensor => "unknown_sensor",
            Self::PendingSensorsFull => "pending_sensors_full",
            Self::StoreRejected => "store_rejected",
            Self::DecoderFault => "decoder_fault",
        }
    }
}

impl fmt::Display for RejectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl DomainError {
    /// The stored reason code for this error.
    pub fn reason(&self) -> RejectReason {
        match self {
            Self::Oversized { .. } => RejectReason::Oversized,
            Self::MalformedPayload(_) => RejectReason::MalformedPayload,
            Self::UnknownTopic(_) => RejectReason::UnknownTopic,
            Self::UnknownKind(_) => RejectReason::UnknownKind,
            Self::InvalidSensorId(_) => RejectReason::InvalidSensorId,
            Self::UnknownField { .. } => RejectReason::UnknownField,
            Self::InvalidValue { .. } | Self::RegistryFile { .. } => RejectReason::InvalidValue,
            Self::UnknownUnit(_) | Self::IncompatibleUnit { .. } => RejectReason::InvalidUnit,
            Self::InvalidTimestamp(_) => RejectReason::InvalidTimestamp,
            Self::NoReadings => RejectReason::NoReadings,
            Self::KindMismatch { .. } => RejectReason::KindMismatch,
            Self::RetiredSensor(_) => RejectReason::RetiredSensor,
            Self::UnknownDevice(_) => RejectReason::UnknownDevice,
            Self::UnknownDeviceProfile(_) => RejectReason::UnknownDeviceProfile,
            Self::TimestampOutOfWindow { .. } => RejectReason::TimestampOutOfWindow,
            Self::IdentityMismatch(_) => RejectReason::IdentityMismatch,
            Self::SourceNotAllowed { .. } => RejectReason::SourceNotAllowed,
            Self::UnknownSensor(_) => RejectReason::UnknownSensor,
            Self::PendingSensorsFull { .. } => RejectReason::PendingSensorsFull,
        }
    }

    pub(crate) fn invalid(field: impl Into<String>, problem: impl Into<String>) -> Self {
        Self::InvalidValue { field: field.into(), problem: problem.into() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reason_codes_are_distinct_and_cover_the_new_ones() {
        let codes: std::collections::BTreeSet<&str> = RejectReason::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(codes.len(), RejectReason::ALL.len());
        for code in ["timestamp_out_of_window", "identity_mismatch", "source_not_allowed"] {
            assert!(codes.contains(code), "{code}");
        }
        let errors = [
            DomainError::TimestampOutOfWindow { ts: "t".into(), problem: "p".into() },
            DomainError::IdentityMismatch("x".into()),
            DomainError::SourceNotAllowed { topic: "t".into(), sensor_id: "s".into(), why: "w".into() },
        ];
        for error in errors {
            assert!(RejectReason::ALL.contains(&error.reason()), "{error}");
        }
    }
}
