//! The rule configuration: one document (TOML in `deploy/alert-rules.toml`,
//! JSON through the admin API) with a section per rule family, plus
//! overrides per district and per station. Defaults ship with the platform;
//! every change is validated, and an error names the field.
//!
//! An override is a partial document: its `set` table is merged over the
//! defaults (district overrides first, then station overrides, in file
//! order) for the sensors it matches.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::engine::{air, composite, flood, health, rain, sewer, streetlight, water};
use citygauge_domain::Kind;

use crate::model::{MsgStatus, Sensor};
use crate::AlertError;

/// Every rule's settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RuleSet {
    /// CAP `status` of every alert this rule set produces: `Actual`, or
    /// `Exercise` / `Test` for a drill (reaches only opted-in subscribers).
    pub status: MsgStatus,
    /// CAP `sender` (an address that identifies the city's alerting authority).
    pub sender: String,
    /// Name of the sending authority shown to people (CAP `senderName`).
    pub sender_name: String,
    /// The city's IANA time zone: night hours, dusk and dawn, CAP offsets.
    pub timezone: String,
    pub water_level: water::WaterLevelRules,
    pub rainfall: rain::RainfallRules,
    pub road_flooding: flood::FloodRules,
    pub composite: composite::CompositeRules,
    pub sewer: sewer::SewerRules,
    pub health: health::HealthRules,
    pub streetlight: streetlight::StreetlightRules,
    pub air: air::AirRules,
    pub overrides: Vec<Override>,
}

impl Default for RuleSet {
    fn default() -> RuleSet {
        RuleSet {
            status: MsgStatus::Actual,
            sender: "citygauge@city.example.gov.tw".into(),
            sender_name: "City Water Resources Bureau".into(),
            timezone: "Asia/Taipei".into(),
            water_level: Default::default(),
            rainfall: Default::default(),
            road_flooding: Default::default(),
            composite: Default::default(),
            sewer: Default::default(),
            health: Default::default(),
            streetlight: Default::default(),
            air: Default::default(),
            overrides: Vec::new(),
        }
    }
}

/// Settings for some districts and/or stations.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Override {
    /// Districts it applies to (all their sensors).
    pub districts: Vec<String>,
    /// Sensor ids it applies to.
    pub sensors: Vec<String>,
    /// A partial rule set (any section, any field), merged over the defaults.
    pub set: Map<String, Value>,
}

impl Override {
    fn matches_district(&self, sensor: &Sensor) -> bool {
        sensor.district.as_ref().is_some_and(|d| self.districts.iter().any(|x| x == d))
    }

    fn matches_sensor(&self, sensor: &Sensor) -> bool {
        self.sensors.contains(&sensor.id)
    }
}

impl RuleSet {
    pub fn from_toml(text: &str) -> Result<RuleSet, AlertError> {
        let rules: RuleSet = toml::from_str(text).map_err(|e| AlertError::RulesSyntax(e.to_string()))?;
        rules.validate()?;
        Ok(rules)
    }

    pub fn from_json(value: Value) -> Result<RuleSet, AlertError> {
        let rules: RuleSet = serde_json::from_value(value).map_err(|e| AlertError::RulesSyntax(e.to_string()))?;
        rules.validate()?;
        Ok(rules)
    }

    /// The city's time zone (validated at load; UTC+8 Taipei if somehow not).
    pub fn tz(&self) -> chrono_tz::Tz {
        self.timezone.parse().unwrap_or(chrono_tz::Asia::Taipei)
    }

    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }

    /// Checks every section and every override (merged over the defaults).
    pub fn validate(&self) -> Result<(), AlertError> {
        if self.sender.trim().is_empty() || self.sender.contains([' ', ',', '<', '&']) {
            return Err(AlertError::invalid("sender", "must be non-empty without spaces, commas, '<' or '&' (CAP)"));
        }
        if self.timezone.parse::<chrono_tz::Tz>().is_err() {
            return Err(AlertError::invalid("timezone", format!("`{}` is not an IANA time zone", self.timezone)));
        }
        self.validate_sections("")?;
        for (i, o) in self.overrides.iter().enumerate() {
            let path = format!("overrides[{i}]");
            if o.districts.is_empty() && o.sensors.is_empty() {
                return Err(AlertError::invalid(path, "names no district and no sensor"));
            }
            if o.set.contains_key("overrides") {
                return Err(AlertError::invalid(format!("{path}.set.overrides"), "overrides cannot nest"));
            }
            let merged = self.merged(&[o]).map_err(|e| match e {
                AlertError::RulesSyntax(why) => AlertError::invalid(format!("{path}.set"), why),
                other => other,
            })?;
            merged.validate_sections(&format!("{path}.set."))?;
        }
        Ok(())
    }

    fn validate_sections(&self, prefix: &str) -> Result<(), AlertError> {
        let p = |name: &str| format!("{prefix}{name}");
        self.water_level.validate(&p("water_level"))?;
        self.rainfall.validate(&p("rainfall"))?;
        self.road_flooding.validate(&p("road_flooding"))?;
        self.composite.validate(&p("composite"))?;
        self.sewer.validate(&p("sewer"))?;
        self.health.validate(&p("health"))?;
        self.streetlight.validate(&p("streetlight"))?;
        self.air.validate(&p("air"))?;
        Ok(())
    }

    /// The rules for `sensor` after its overrides, or `None` when none
    /// applies (the city-wide set does).
    pub fn effective_for(&self, sensor: &Sensor) -> Option<RuleSet> {
        self.effective_by_overrides(&self.overrides_for(sensor))
    }

    /// The indices of the overrides that apply to `sensor`, in the order
    /// they are merged (district overrides, then station overrides, each in
    /// file order). Sensors with the same list share the same rules, so the
    /// engine merges once per list, not once per sensor.
    pub fn overrides_for(&self, sensor: &Sensor) -> Vec<usize> {
        let district = self.overrides.iter().enumerate().filter(|(_, o)| o.matches_district(sensor));
        let station = self.overrides.iter().enumerate().filter(|(_, o)| o.matches_sensor(sensor));
        district.chain(station).map(|(i, _)| i).collect()
    }

    /// The rules after the overrides at `indices` ([`RuleSet::overrides_for`]);
    /// `None` for none.
    pub fn effective_by_overrides(&self, indices: &[usize]) -> Option<RuleSet> {
        let applicable: Vec<&Override> = indices.iter().filter_map(|i| self.overrides.get(*i)).collect();
        if applicable.is_empty() {
            return None;
        }
        // Validated at load, so merging cannot fail here; fall back to the defaults if it does.
        self.merged(&applicable).ok()
    }

    fn merged(&self, overrides: &[&Override]) -> Result<RuleSet, AlertError> {
        let mut base = serde_json::to_value(RuleSet { overrides: Vec::new(), ..self.clone() })
            .map_err(|e| AlertError::RulesSyntax(e.to_string()))?;
        for o in overrides {
            merge(&mut base, &Value::Object(o.set.clone()));
        }
        serde_json::from_value(base).map_err(|e| AlertError::RulesSyntax(e.to_string()))
    }
}

impl RuleSet {
    /// How much stored history a restarted engine (or a replay) must run
    /// through before its state stands where it stood live: the longest
    /// window any rule of `kind` reads, over the city-wide rules and every
    /// override. Shorter, and a restart resolves alerts that still hold (a
    /// sewer's sediment fit needs days of dry minima).
    pub fn warmup_for(&self, kind: Kind) -> chrono::Duration {
        let merged = self.overrides.iter().filter_map(|o| self.merged(&[o]).ok());
        std::iter::once(self.sections_warmup(kind))
            .chain(merged.map(|r| r.sections_warmup(kind)))
            .max()
            .unwrap_or_else(chrono::Duration::zero)
    }

    /// The longest [`RuleSet::warmup_for`] of any kind.
    pub fn warmup(&self) -> chrono::Duration {
        Kind::ALL.into_iter().map(|k| self.warmup_for(k)).max().unwrap_or_else(chrono::Duration::zero)
    }

    fn sections_warmup(&self, kind: Kind) -> chrono::Duration {
        use chrono::Duration as D;
        let health = &self.health;
        // Silence is judged from the last reading; flat lines and spikes from their windows.
        let interval = D::seconds(health.default_interval_s);
        let health_w = D::seconds(health.flatline.min_duration_s)
            .max(D::seconds(health.spike.window_s))
            .max(D::seconds(health.flatline.rain_window_s) + interval);
        let family = match kind {
            // The 24 h class window must be complete: its first interval too.
            Kind::Rainfall => {
                D::hours(24) + D::seconds(self.rainfall.default_interval_s) + D::seconds(self.rainfall.late_s)
            }
            Kind::WaterLevel => D::seconds(self.water_level.rate.window_s).max(self.sewer.warmup()),
            Kind::FloodDepth => D::seconds(self.road_flooding.confirm.clear_dwell_s),
            Kind::AirQuality => self.air.warmup(),
            Kind::Streetlight => self.streetlight.warmup(),
        };
        family.max(health_w)
    }
}

/// Merges `patch` into `base`: objects key by key, anything else replaced.
fn merge(base: &mut Value, patch: &Value) {
    match (base, patch) {
        (Value::Object(b), Value::Object(p)) => {
            for (k, v) in p {
                merge(b.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
        (b, p) => *b = p.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_validate_and_round_trip() {
        let rules = RuleSet::default();
        rules.validate().unwrap();
        assert_eq!(RuleSet::from_json(rules.to_json()).unwrap(), rules);
        let text = toml::to_string(&rules).unwrap();
        assert_eq!(RuleSet::from_toml(&text).unwrap(), rules);
    }

    #[test]
    fn errors_name_the_field() {
        let err = RuleSet::from_toml("[water_level]\nno_such_field = 1\n").unwrap_err().to_string();
        assert!(err.contains("no_such_field"), "{err}");
        let err = RuleSet::from_toml("sender = ''\n").unwrap_err().to_string();
        assert!(err.contains("sender"), "{err}");
        let err = RuleSet::from_toml("[[overrides]]\nset = {}\n").unwrap_err().to_string();
        assert!(err.contains("overrides[0]"), "{err}");
        let err = RuleSet::from_toml("[[overrides]]\ndistricts = ['a']\n[overrides.set.water_level]\nbogus = 1\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("overrides[0].set") && err.contains("bogus"), "{err}");
    }

    #[test]
    fn warmup_covers_the_longest_window_of_each_kind() {
        let rules = RuleSet::default();
        assert!(rules.warmup_for(Kind::Rainfall) > chrono::Duration::hours(24), "the 24 h class window");
        assert!(rules.warmup_for(Kind::AirQuality) >= chrono::Duration::hours(12), "MOENV's 12 h average");
        assert!(rules.warmup_for(Kind::Streetlight) >= chrono::Duration::hours(24), "last night's lamps");
        assert!(rules.warmup_for(Kind::WaterLevel) >= chrono::Duration::days(8), "the sewer sediment fit");
        assert_eq!(rules.warmup(), rules.warmup_for(Kind::WaterLevel));
        // An override that lengthens a window lengthens the warm-up.
        let longer =
            RuleSet::from_toml("[[overrides]]\nsensors = ['s']\nset = { sewer = { sediment = { days = 20 } } }\n")
                .unwrap();
        assert!(longer.warmup_for(Kind::WaterLevel) >= chrono::Duration::days(21));
    }

    #[test]
    fn station_overrides_win_over_district_overrides() {
        let rules = RuleSet::from_toml(
            "[[overrides]]\nsensors = ['s1']\nset = { sender_name = 'station' }\n\
             [[overrides]]\ndistricts = ['d']\nset = { sender_name = 'district' }\n",
        )
        .unwrap();
        let s1 = Sensor { id: "s1".into(), district: Some("d".into()), ..Sensor::default() };
        let s2 = Sensor { id: "s2".into(), district: Some("d".into()), ..Sensor::default() };
        let s3 = Sensor { id: "s3".into(), district: Some("e".into()), ..Sensor::default() };
        assert_eq!(rules.effective_for(&s1).unwrap().sender_name, "station");
        assert_eq!(rules.effective_for(&s2).unwrap().sender_name, "district");
        assert!(rules.effective_for(&s3).is_none());
    }
}
