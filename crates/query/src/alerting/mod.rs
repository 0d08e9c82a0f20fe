//! The I/O shell around the alert engine (`citygauge-alerts`):
//!
//! - [`evaluator`]: the live evaluator. One replica at a time holds the
//!   evaluation lease ([`leader`]); it warms the engine up on stored readings
//!   ([`history`]), reconciles with the alerts the database holds open, then
//!   evaluates each reading as it is committed (the change stream) and the
//!   clock's ticks, storing each decision ([`persist`]) in one transaction
//!   with its events, its CAP message and the webhook deliveries it owes.
//! - [`replay`]: the same engine over a past period, notifying no one.
//! - [`ops`] / [`auth`]: what operators do (acknowledge, resolve, notes,
//!   silences, rule changes), behind bearer tokens.
//! - [`webhooks`] / [`delivery`] / [`mqtt`]: the notifiers reading the outbox.

pub mod auth;
pub mod config;
pub mod delivery;
pub mod evaluator;
pub mod history;
pub mod leader;
pub mod mqtt;
pub mod ops;
pub mod persist;
pub mod replay;
pub mod webhooks;

pub use config::AlertingConfig;
