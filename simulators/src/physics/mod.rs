//! The simulated city's physics: weather, water, air and light. Each model is
//! deterministic given its seed and independent of how readings are encoded.

pub mod air;
pub mod hydro;
pub mod light;
pub mod rain;
