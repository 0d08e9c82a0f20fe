//! The flood-warning engine, free of I/O so every rule is tested without a
//! database or a broker:
//!
//! - [`rules`]: the rule configuration (defaults, per-district and
//!   per-station overrides, validation that names the field);
//! - [`engine`]: the evaluators and the state machine that turns readings
//!   and clock ticks into [`Decision`]s (raise, escalate, de-escalate,
//!   resolve, suppress), with hysteresis and confirmation so nothing flaps;
//! - [`model`]: the alert vocabulary shared by the engine, the store, the
//!   HTTP API and the notifiers;
//! - [`cap`] / [`atom`]: CAP 1.2 documents and the Atom feed of active alerts
//!   ([`geocode`]: the Taiwan town codes their areas carry);
//! - [`signing`]: the webhook signature scheme (HMAC-SHA256 over a timestamp
//!   and the body).
//!
//! The I/O shell (the live evaluator on the change stream, the outbox, the
//! webhook and MQTT notifiers, the operator API) lives in `citygauge-query`.

pub mod atom;
pub mod cap;
pub mod engine;
mod error;
pub mod geocode;
pub mod model;
pub mod rules;
pub mod signing;

pub use engine::{Engine, Input};
pub use error::AlertError;
pub use model::{
    AlertKey, AlertState, Area, Change, Class, Decision, Evidence, Message, MessageRef, MsgStatus, MsgType,
    Observation, RuleId, Sensor, Severity,
};
pub use rules::RuleSet;
