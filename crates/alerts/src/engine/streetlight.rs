//! Streetlights: lamp off between dusk and dawn at the pole, power outside its band, vendor fault codes.
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
pub struct StreetlightRules {
    pub enabled: bool,
}

impl Default for StreetlightRules {
    fn default() -> StreetlightRules {
        StreetlightRules { enabled: true }
    }
}

impl StreetlightRules {
    /// `path` is this section's name in the rules file, for error messages.
    pub fn validate(&self, path: &str) -> Result<(), AlertError> {
        let _ = path;
        Ok(())
    }
}

/// This family's state across readings.
#[derive(Debug, Default)]
pub struct Lights {}

impl Lights {
    pub fn observe(&mut self, cx: &Context<'_>, obs: &Observation, out: &mut Vec<Assessment>) {
        let _ = (cx, obs, out);
    }

    pub fn tick(&mut self, cx: &Context<'_>, now: DateTime<Utc>, out: &mut Vec<Assessment>) {
        let _ = (cx, now, out);
    }
}
