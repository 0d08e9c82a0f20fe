//! Diagnosis from several sensors: road flooding with the nearest river low (drainage problem) or high (river backwater).
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
pub struct CompositeRules {
    pub enabled: bool,
}

impl Default for CompositeRules {
    fn default() -> CompositeRules {
        CompositeRules { enabled: true }
    }
}

impl CompositeRules {
    /// `path` is this section's name in the rules file, for error messages.
    pub fn validate(&self, path: &str) -> Result<(), AlertError> {
        let _ = path;
        Ok(())
    }
}

/// This family's state across readings.
#[derive(Debug, Default)]
pub struct Composite {}

impl Composite {
    pub fn observe(
        &mut self,
        cx: &Context<'_>,
        obs: &Observation,
        water: &super::water::Water,
        flood: &super::flood::Flood,
        out: &mut Vec<Assessment>,
    ) {
        let _ = (cx, obs, out, water, flood);
    }

    pub fn tick(
        &mut self,
        cx: &Context<'_>,
        now: DateTime<Utc>,
        water: &super::water::Water,
        flood: &super::flood::Flood,
        out: &mut Vec<Assessment>,
    ) {
        let _ = (cx, now, out, water, flood);
    }
}
