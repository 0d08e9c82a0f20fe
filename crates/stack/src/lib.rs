//! Starts and stops citygauge's real infrastructure on one machine: a
//! project-local PostgreSQL cluster with PostGIS and a Mosquitto 2 broker,
//! each in its own data directory, on free loopback ports, without system
//! services or well-known ports.
//!
//! Also builds the control-room page with npm when its build is stale
//! ([`ensure_web_built`]) and finds Debian's Chromium for its browser test.
//!
//! Used by `citygauge dev` (persistent data dirs under `.citygauge/`), by
//! the test harness (throwaway dirs, servers restarted and killed
//! mid-stream) and by benchmarks.
//!
//! ```no_run
//! use citygauge_stack::{throwaway_dir, Mosquitto, MosquittoOptions, Postgres, PostgresOptions, Toolchain};
//!
//! # fn main() -> Result<(), citygauge_stack::StackError> {
//! let toolchain = Toolchain::discover()?;
//! let dir = throwaway_dir("citygauge-")?;
//! let mut pg = Postgres::start(&toolchain, PostgresOptions::new(dir.path().join("pg"), "citygauge"))?;
//! let broker = Mosquitto::start(&toolchain, MosquittoOptions::new(dir.path().join("mqtt")))?;
//! println!("{} {}", pg.url("citygauge"), broker.url());
//! pg.restart()?; // same port, same data
//! # Ok(()) }
//! ```
//!
//! Servers are children of this process and die with it (see
//! [`Postgres`] and [`Mosquitto`]); dropping a handle stops its server.

#![warn(missing_docs)]

mod dirs;
mod error;
mod install;
mod mosquitto;
mod ports;
mod postgres;
mod process;
mod sys;
mod toolchain;
mod web;

pub use dirs::throwaway_dir;
pub use error::{Result, StackError};
pub use install::ensure_installed;
pub use mosquitto::{Mosquitto, MosquittoOptions};
pub use postgres::{Postgres, PostgresOptions};
pub use toolchain::{Toolchain, MIN_PG_MAJOR};
pub use web::{ensure_chromium, ensure_web_built, ensure_xmllint, find_chromium};
