//! The MQTT ingestion daemon: `citygauge ingest`.
//!
//! Data path, each stage joined to the next by a bounded channel so memory
//! stays bounded when the database is slow or down:
//!
//! ```text
//! broker -> mqtt (poll loop) -> pipeline (decode, normalise, batch) -> writer (COPY, commit)
//!                ^                                                        |
//!                +------------- acker (PUBACK after commit, in order) <---+
//! ```
//!
//! A message is acknowledged to the broker only after the transaction that
//! stored it (as rows, or in `rejected_messages`) commits: at-least-once from
//! the broker, exactly-once in the tables thanks to the (sensor_id, ts) key.

mod acks;
mod budget;
pub mod config;
mod error;
mod http;
pub mod metrics;
mod mqtt;
mod pipeline;
mod run;
mod sampler;
mod supervise;
mod writer;

pub use config::IngestConfig;
pub use error::IngestError;
pub use http::wait_until_ready;
pub use run::run;
