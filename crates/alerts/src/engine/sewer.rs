//! Sewers: rain entering a sewage-only line, sediment build-up, flow at unusual hours.
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
pub struct SewerRules {
    pub enabled: bool,
}

impl Default for SewerRules {
    fn default() -> SewerRules {
        SewerRules { enabled: true }
    }
}

impl SewerRules {
    /// `path` is this section's name in the rules file, for error messages.
    pub fn validate(&self, path: &str) -> Result<(), AlertError> {
        let _ = path;
        Ok(())
    }
}

/// This family's state across readings.
#[derive(Debug, Default)]
pub struct Sewer {}

impl Sewer {
    pub fn observe(
        &mut self,
        cx: &Context<'_>,
        obs: &Observation,
        rain: &super::rain::Rain,
        out: &mut Vec<Assessment>,
    ) {
        let _ = (cx, obs, out, rain);
    }

    pub fn tick(&mut self, cx: &Context<'_>, now: DateTime<Utc>, rain: &super::rain::Rain, out: &mut Vec<Assessment>) {
        let _ = (cx, now, out, rain);
    }
}
