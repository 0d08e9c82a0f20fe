//! The query service: the read side of citygauge. A JSON API over the cache
//! of latest values and over the raw tables and their rollups, a live stream
//! of what ingest commits, and the control-room page, all served by one
//! axum router.
//!
//! - [`run`]: the service on a listener until a shutdown token fires;
//! - [`Service`] + [`router`]: the same without a listener, for tests
//!   (`Router::oneshot`);
//! - the query layer under each `*_api` module (`sensors_api::list`,
//!   `districts_api::summary::summarise`, `overview_api::compute`,
//!   `map_api::layer`, `stream_api::hub::Hub`) is callable directly.

pub mod alerting;
pub mod alerts_api;
pub mod cache;
pub mod catalog_api;
pub mod config;
mod credentials;
pub mod districts_api;
pub mod downloads_api;
mod error;
pub mod fair_use;
pub mod health_api;
pub mod map_api;
pub mod metrics;
mod mqtt_out;
pub mod open_data;
pub mod openapi;
pub mod overview_api;
pub mod params;
pub mod sensors_api;
pub mod series;
pub mod series_api;
pub mod server;
pub mod sta_api;
pub mod sta_mqtt;
pub mod stream_api;
pub mod web;

pub use config::QueryConfig;
pub use error::{ErrorBody, QueryError};
pub use server::{router, run, AppState, Service};
