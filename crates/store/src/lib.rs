//! PostgreSQL side of citygauge: the schema and its migrations, time-series
//! partitioning (TimescaleDB hypertables when the extension is loaded, native
//! range partitions otherwise), the sensor registry, the batch writer that
//! stores readings with binary COPY, exactly once per (sensor_id, ts), the
//! rollups per 1 minute / 1 hour / 1 day ([`rollups`]) and the change stream
//! announcing committed rows with NOTIFY ([`changes`]).

pub mod changes;
mod connect;
mod error;
pub mod migrate;
pub mod partitions;
pub mod registry;
pub mod rollups;
mod store;
pub mod tls;
pub mod writer;

pub use connect::{redact, ConnectOptions, Database, Secret, SslMode};
pub use error::{class_of, ErrorClass, StoreError};
pub use migrate::{Backend, BackendPreference, MIGRATIONS};
pub use store::{LastGood, Store, StoreConfig};
pub use writer::{Batch, RejectedMessage, WriteReport};
