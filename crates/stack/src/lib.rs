//! Starts and stops citygauge's real infrastructure on one machine: a
//! project-local PostgreSQL cluster with PostGIS and a Mosquitto 2 broker,
//! each in its own data directory, on free loopback ports, without system
//! services or well-known ports.
//!
//! [`setup`] installs the Debian packages and stops and disables the system
//! services Debian starts with them (a cluster on 5432, a broker on 1883),
//! so that nothing answers where citygauge's default URLs point.
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
mod services;
mod sys;
mod toolchain;
mod web;

pub use dirs::throwaway_dir;
pub use error::{Result, StackError};
pub use install::{ensure_installed, setup, Installed};
pub use mosquitto::{Mosquitto, MosquittoOptions};
pub use postgres::{Postgres, PostgresOptions};
pub use services::{listening, Action, ServicesReport, SystemServices, DEFAULT_PORTS};
pub use toolchain::{Toolchain, MIN_PG_MAJOR};
pub use web::{ensure_chromium, ensure_python3_venv, ensure_web_built, ensure_xmllint, find_chromium};
