//! Sensor health: silent, flat-lined, out of range, spiking. Evaluated before every hazard, which it can suppress.
//!
//! (Skeleton: the helper that owns this file fills in the rules and state.)

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{Assessment, Context};
use crate::model::Observation;
use crate::AlertError;

/// Settings of this family (a section of the rules file).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HealthRules {
    pub enabled: bool,
}

impl Default for HealthRules {
    fn default() -> HealthRules {
        HealthRules { enabled: true }
    }
}

impl HealthRules {
    /// `path` is this section's name in the rules file, for error messages.
    pub fn validate(&self, path: &str) -> Result<(), AlertError> {
        let _ = path;
        Ok(())
    }
}

/// This family's state across readings.
#[derive(Debug, Default)]
pub struct Health {}

impl Health {
    pub fn observe(&mut self, cx: &Context<'_>, obs: &Observation, out: &mut Vec<Assessment>) {
        let _ = (cx, obs, out);
    }

    pub fn tick(&mut self, cx: &Context<'_>, now: DateTime<Utc>, out: &mut Vec<Assessment>) {
        let _ = (cx, now, out);
    }
}

impl Health {
    /// The health alert that makes `sensor_id`'s readings suspect, if any.
    pub fn suspect(&self, sensor_id: &str) -> Option<crate::model::AlertKey> {
        let _ = sensor_id;
        None
    }
}
