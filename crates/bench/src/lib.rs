//! Benchmarks of citygauge on one machine, each measured against the
//! physical limit of the same machine in the same run:
//!
//! - `citygauge-bench` (src/main.rs): ingest, against raw binary COPY and the
//!   broker alone;
//! - `citygauge-query-bench` ([`query`]): the query service under HTTP load
//!   and with 1,000 live-stream clients, against the best bare SQL;
//! - `citygauge-alerts-bench` ([`alerts`]): publish to alert row and to
//!   webhook under 5,000 messages/s of other traffic, against publish to
//!   reading row;
//! - `citygauge-sta-bench` ([`sta`]): the SensorThings API at a fixed
//!   request rate, against the same answers as bare SQL at the same rate.

pub mod alerts;
pub mod common;
pub mod cpu;
pub mod pgbench;
pub mod query;
pub mod sta;
