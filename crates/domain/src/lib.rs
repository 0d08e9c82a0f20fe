//! The city's measurement rules, free of I/O.
//!
//! Everything here is a pure function of its inputs: what sensor kinds exist and
//! which columns they store ([`kind`]), unit conversion ([`unit`]), timestamp
//! parsing in the city's time zone ([`time`]), the wire formats sensors speak
//! ([`decode`]: canonical JSON, SenML, LoRaWAN network-server uplinks), and the
//! normalisation and plausibility checks that turn a decoded record into a
//! stored [`Reading`] ([`normalise`], [`quality`], [`rain`]).
//!
//! The ingest daemon owns the I/O around it; tests here need no database.

pub mod aqi;
pub mod decode;
mod error;
pub mod kind;
pub mod normalise;
pub mod quality;
pub mod rain;
pub mod rain_window;
pub mod reading;
pub mod registry;
pub mod rollup;
pub mod time;
pub mod topic;
pub mod unit;

pub use error::{DomainError, RejectReason};
pub use kind::{Field, FieldValue, Kind};
pub use normalise::{Decoded, Message, NormaliseConfig, Normaliser};
pub use reading::{AirQuality, CounterReading, Quality, QualityLevel, Reading, Streetlight, Values};
pub use registry::{NewSensor, Registry, SensorInfo, SensorStatus};
pub use unit::Unit;

/// Hash maps keyed by sensor ids on the per-reading path (registry, spike
/// test, pending sensors, the writer's per-batch maps): foldhash instead of
/// SipHash, several times cheaper on short keys. Its seed is random per
/// process, so colliding ids cannot be prepared offline, and the ids these
/// maps hold are registered sensors or pending ones, whose number is capped
/// (`max_pending_sensors`).
pub type FastHashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
/// A set with [`FastHashMap`]'s hasher.
pub type FastHashSet<K> = std::collections::HashSet<K, foldhash::fast::RandomState>;
