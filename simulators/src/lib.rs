//! `citygauge-sim`: a believable smart city over MQTT, and a load generator.
//!
//! * **City mode** ([`run_city`]) reads the sensor registry (GeoJSON, see
//!   `deploy/demo-city.geojson`) and publishes every sensor at its cadence in
//!   accelerated simulated time: moving rain cells, rivers and drains that
//!   respond with lag, road flooding, air quality cycles, streetlights. Sensors
//!   publish canonical JSON, SenML packs via gateways, or LoRaWAN uplinks via
//!   ChirpStack / The Things Stack, as their registry `transport` says.
//!   Scenarios: `calm`, `typhoon`, `faults`.
//! * **Load mode** ([`run_load`]) publishes synthetic sensors at a paced rate
//!   over several connections and reports exactly how many distinct
//!   (sensor_id, ts) readings it published.
//!
//! The `registry` subcommand regenerates the demo city deterministically.

pub mod city;
pub mod geo;
pub mod load;
pub mod mqtt;
pub mod payload;
pub mod physics;
pub mod profiles;
pub mod reading;
pub mod registry;
pub mod rng;
pub mod timefmt;

pub use city::{run_city, CityConfig, CityStats, Scenario};
pub use load::{run_load, LoadConfig, LoadFormat, LoadKind, LoadStats};
pub use registry::{GenerateOptions, Kind, Registry, Transport};
