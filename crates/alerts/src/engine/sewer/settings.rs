//! The `[sewer]` section of the rules file: settings, defaults and validation.

use serde::{Deserialize, Serialize};

use crate::engine::debounce::Confirm;
use crate::AlertError;

/// Settings of this family (the `[sewer]` section of the rules file).
///
/// No national standard sets these figures; the defaults are starting
/// points for a city's own tuning per line (through station overrides).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SewerRules {
    pub enabled: bool,
    /// Hours after the last rain in the district before a line counts as dry.
    pub dry_after_rain_h: i64,
    /// Radius of the alert's area around the manhole, metres.
    pub radius_m: f64,
    pub ingress: IngressRules,
    pub sediment: SedimentRules,
    pub odd_hours: OddHoursRules,
}

impl Default for SewerRules {
    fn default() -> SewerRules {
        SewerRules {
            enabled: true,
            dry_after_rain_h: 12,
            radius_m: 100.0,
            ingress: IngressRules::default(),
            sediment: SedimentRules::default(),
            odd_hours: OddHoursRules::default(),
        }
    }
}

/// Rain entering a sewage-only line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IngressRules {
    pub enabled: bool,
    /// The rise is measured from the lowest level in this many minutes.
    pub window_min: i64,
    /// A rise this large during rain raises, metres (above the few
    /// centimetres of a sewage line's ordinary diurnal swing over half an hour).
    pub rise_m: f64,
    /// Metres the rise must fall below `rise_m` to clear.
    pub margin_m: f64,
    pub confirm: Confirm,
}

impl Default for IngressRules {
    fn default() -> IngressRules {
        IngressRules {
            enabled: true,
            window_min: 30,
            rise_m: 0.15,
            margin_m: 0.05,
            confirm: Confirm { raise_readings: 2, clear_readings: 3, clear_dwell_s: 1800 },
        }
    }
}

/// Sediment build-up: the dry-weather minimum creeping up over days.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SedimentRules {
    pub enabled: bool,
    /// Days fitted (the latest complete days).
    pub days: u32,
    /// Usable (dry, enough readings) days needed among them.
    pub min_days: u32,
    /// Dry readings a day needs to be usable.
    pub min_day_readings: u32,
    /// Least-squares slope of the daily dry minimum that raises, cm/day.
    pub slope_cm_per_day: f64,
    /// cm/day the slope must fall below `slope_cm_per_day` to clear.
    pub margin_cm_per_day: f64,
    /// Coefficient of determination the fit needs (a steady creep, not noise).
    pub min_r2: f64,
    /// Daily evaluations below the bar that clear.
    pub clear_days: u32,
}

impl Default for SedimentRules {
    fn default() -> SedimentRules {
        SedimentRules {
            enabled: true,
            days: 7,
            min_days: 5,
            min_day_readings: 12,
            slope_cm_per_day: 1.0,
            margin_cm_per_day: 0.3,
            min_r2: 0.6,
            clear_days: 2,
        }
    }
}

/// Flow at unusual hours.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OddHoursRules {
    pub enabled: bool,
    /// Local hour the quiet window starts (inclusive).
    pub start_hour: u32,
    /// Local hour it ends (exclusive).
    pub end_hour: u32,
    /// Metres above the night baseline that raise.
    pub excess_m: f64,
    /// Metres below `excess_m` the level must fall to clear.
    pub margin_m: f64,
    /// Previous nights the baseline is the median of.
    pub baseline_days: u32,
    /// Usable nights needed for a baseline.
    pub min_baseline_days: u32,
    pub confirm: Confirm,
}

impl Default for OddHoursRules {
    fn default() -> OddHoursRules {
        OddHoursRules {
            enabled: true,
            start_hour: 1,
            end_hour: 5,
            excess_m: 0.10,
            margin_m: 0.03,
            baseline_days: 7,
            min_baseline_days: 3,
            confirm: Confirm { raise_readings: 3, clear_readings: 3, clear_dwell_s: 0 },
        }
    }
}

impl SewerRules {
    /// `path` is this section's name in the rules file, for error messages.
    pub fn validate(&self, path: &str) -> Result<(), AlertError> {
        let err = |field: &str, why: &str| Err(AlertError::invalid(format!("{path}.{field}"), why));
        if !(0..=168).contains(&self.dry_after_rain_h) {
            return err("dry_after_rain_h", "must be 0..=168");
        }
        if !(1.0..=5_000.0).contains(&self.radius_m) {
            return err("radius_m", "must be 1..=5000 m");
        }
        let i = &self.ingress;
        if !(5..=360).contains(&i.window_min) {
            return err("ingress.window_min", "must be 5..=360");
        }
        if !(0.01..=10.0).contains(&i.rise_m) {
            return err("ingress.rise_m", "must be 0.01..=10 m");
        }
        if !(0.0..i.rise_m).contains(&i.margin_m) {
            return err("ingress.margin_m", "must be at least 0 and below ingress.rise_m");
        }
        i.confirm.validate(&format!("{path}.ingress.confirm"))?;
        let s = &self.sediment;
        if !(3..=60).contains(&s.days) {
            return err("sediment.days", "must be 3..=60");
        }
        if !(3..=s.days).contains(&s.min_days) {
            return err("sediment.min_days", "must be at least 3 and at most sediment.days");
        }
        if !(1..=10_000).contains(&s.min_day_readings) {
            return err("sediment.min_day_readings", "must be 1..=10000");
        }
        if !(0.05..=100.0).contains(&s.slope_cm_per_day) {
            return err("sediment.slope_cm_per_day", "must be 0.05..=100");
        }
        if !(0.0..s.slope_cm_per_day).contains(&s.margin_cm_per_day) {
            return err("sediment.margin_cm_per_day", "must be at least 0 and below sediment.slope_cm_per_day");
        }
        if !(0.0..=1.0).contains(&s.min_r2) {
            return err("sediment.min_r2", "must be 0..=1");
        }
        if !(1..=30).contains(&s.clear_days) {
            return err("sediment.clear_days", "must be 1..=30");
        }
        let o = &self.odd_hours;
        if o.start_hour > 23 {
            return err("odd_hours.start_hour", "must be 0..=23");
        }
        if o.end_hour > 24 || o.end_hour == o.start_hour {
            return err("odd_hours.end_hour", "must be 0..=24 and differ from odd_hours.start_hour");
        }
        if !(0.01..=10.0).contains(&o.excess_m) {
            return err("odd_hours.excess_m", "must be 0.01..=10 m");
        }
        if !(0.0..o.excess_m).contains(&o.margin_m) {
            return err("odd_hours.margin_m", "must be at least 0 and below odd_hours.excess_m");
        }
        if !(1..=60).contains(&o.baseline_days) {
            return err("odd_hours.baseline_days", "must be 1..=60");
        }
        if !(1..=o.baseline_days).contains(&o.min_baseline_days) {
            return err("odd_hours.min_baseline_days", "must be at least 1 and at most odd_hours.baseline_days");
        }
        o.confirm.validate(&format!("{path}.odd_hours.confirm"))
    }
}

impl SewerRules {
    /// How much stored history a restarted engine must replay for these
    /// rules to stand where they stood: the sediment fit's days (and the
    /// night baseline's) plus the day in progress.
    pub fn warmup(&self) -> chrono::Duration {
        let days = self.sediment.days.max(self.odd_hours.baseline_days) + 1;
        chrono::Duration::days(i64::from(days)).max(chrono::Duration::minutes(self.ingress.window_min))
    }
}

impl OddHoursRules {
    /// Whether local `hour` is inside the quiet window (which may span midnight).
    pub(super) fn contains(&self, hour: u32) -> bool {
        if self.start_hour < self.end_hour {
            (self.start_hour..self.end_hour).contains(&hour)
        } else {
            hour >= self.start_hour || hour < self.end_hour
        }
    }
}
