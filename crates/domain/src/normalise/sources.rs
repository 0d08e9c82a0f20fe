//! `senml_sources`: topics bound to the sensors they may write, so that broker
//! ACLs written per topic can confine a gateway. A binding is
//! `<topic filter>=<sensor> <sensor>...`, where a topic filter may use MQTT's
//! `+` and `#`, and a sensor is an id or an id prefix ending in `*`:
//!
//! ```text
//! city/senml/gw-7=kh-aq-* kh-wl-0001
//! city/senml/district-+/#=kh-rg-*
//! ```
//!
//! A message on a topic that matches some binding may only write the sensors
//! of the bindings it matches (their union); a record for another sensor is
//! refused (`source_not_allowed`), the rest of the pack is kept. Topics that
//! match no binding are not confined.

use crate::registry::validate_sensor_id;
use crate::DomainError;

/// Every configured binding.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SourceBindings(Vec<Binding>);

#[derive(Debug, Clone, PartialEq)]
struct Binding {
    filter: String,
    sensors: Vec<SensorPattern>,
}

#[derive(Debug, Clone, PartialEq)]
enum SensorPattern {
    Id(String),
    Prefix(String),
}

impl SensorPattern {
    fn matches(&self, sensor_id: &str) -> bool {
        match self {
            SensorPattern::Id(id) => id == sensor_id,
            SensorPattern::Prefix(prefix) => sensor_id.starts_with(prefix.as_str()),
        }
    }
}

/// The bindings a topic matched (by their place in [`SourceBindings`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allowed {
    bindings: Vec<usize>,
}

impl Allowed {
    fn bindings<'b>(&'b self, all: &'b SourceBindings) -> impl Iterator<Item = &'b Binding> + 'b {
        self.bindings.iter().filter_map(|&i| all.0.get(i))
    }

    pub fn permits(&self, all: &SourceBindings, sensor_id: &str) -> bool {
        self.bindings(all).any(|b| b.sensors.iter().any(|p| p.matches(sensor_id)))
    }

    /// The filters that bound the topic, for a rejection's detail.
    pub fn filters(&self, all: &SourceBindings) -> String {
        let filters: Vec<&str> = self.bindings(all).map(|b| b.filter.as_str()).collect();
        filters.join(", ")
    }
}

impl SourceBindings {
    /// Parses `filter=sensor sensor...` bindings; errors name the option.
    pub fn parse<S: AsRef<str>>(specs: &[S]) -> Result<Self, DomainError> {
        let mut bindings = Vec::new();
        for spec in specs {
            let spec = spec.as_ref().trim();
            if spec.is_empty() {
                continue;
            }
            let bad = |problem: String| DomainError::invalid("senml_sources", format!("`{spec}`: {problem}"));
            let (filter, sensors) =
                spec.split_once('=').ok_or_else(|| bad("expected <topic filter>=<sensor id or prefix*> ...".into()))?;
            let filter = filter.trim();
            validate_filter(filter).map_err(|p| bad(p.into()))?;
            let mut patterns = Vec::new();
            for pattern in sensors.split_whitespace() {
                let parsed = match pattern.strip_suffix('*') {
                    Some("") => SensorPattern::Prefix(String::new()),
                    Some(prefix) => {
                        // A prefix is the start of a valid id.
                        validate_sensor_id(prefix).map_err(|e| bad(e.to_string()))?;
                        SensorPattern::Prefix(prefix.to_string())
                    }
                    None => {
                        validate_sensor_id(pattern).map_err(|e| bad(e.to_string()))?;
                        SensorPattern::Id(pattern.to_string())
                    }
                };
                patterns.push(parsed);
            }
            if patterns.is_empty() {
                return Err(bad("names no sensor".into()));
            }
            bindings.push(Binding { filter: filter.to_string(), sensors: patterns });
        }
        Ok(SourceBindings(bindings))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The bindings `topic` matches, or `None` when it is not confined.
    pub fn for_topic(&self, topic: &str) -> Option<Allowed> {
        if self.0.is_empty() {
            return None;
        }
        let bindings: Vec<usize> = (0..self.0.len()).filter(|&i| filter_matches(&self.0[i].filter, topic)).collect();
        (!bindings.is_empty()).then_some(Allowed { bindings })
    }
}

fn validate_filter(filter: &str) -> Result<(), &'static str> {
    if filter.is_empty() {
        return Err("empty topic filter");
    }
    let levels: Vec<&str> = filter.split('/').collect();
    for (i, level) in levels.iter().enumerate() {
        if level.contains('#') && (*level != "#" || i != levels.len() - 1) {
            return Err("`#` must be a whole last level of the topic filter");
        }
        if level.contains('+') && *level != "+" {
            return Err("`+` must be a whole level of the topic filter");
        }
    }
    Ok(())
}

/// MQTT topic filter matching (MQTT 5 section 4.7).
fn filter_matches(filter: &str, topic: &str) -> bool {
    let mut topic_levels = topic.split('/');
    for level in filter.split('/') {
        match level {
            "#" => return true,
            "+" => {
                if topic_levels.next().is_none() {
                    return false;
                }
            }
            exact => {
                if topic_levels.next() != Some(exact) {
                    return false;
                }
            }
        }
    }
    topic_levels.next().is_none()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_match_filters_as_mqtt_does() {
        for (filter, topic, want) in [
            ("city/senml/gw-7", "city/senml/gw-7", true),
            ("city/senml/gw-7", "city/senml/gw-77", false),
            ("city/senml/+", "city/senml/gw-7", true),
            ("city/senml/+", "city/senml/gw-7/x", false),
            ("city/senml/#", "city/senml", true),
            ("city/senml/#", "city/senml/a/b", true),
            ("city/+/kh-wl-0001", "city/water_level/kh-wl-0001", true),
            ("#", "anything/at/all", true),
        ] {
            assert_eq!(filter_matches(filter, topic), want, "{filter} ~ {topic}");
        }
    }

    #[test]
    fn a_bound_topic_writes_only_its_sensors() {
        let bindings = SourceBindings::parse(&[
            "city/senml/gw-7=kh-aq-* kh-wl-0001",
            "city/senml/+=kh-rg-0001",
            "city/senml/open=*",
        ])
        .unwrap();
        let permits = |topic: &str, id: &str| bindings.for_topic(topic).unwrap().permits(&bindings, id);
        for id in ["kh-aq-0201", "kh-wl-0001", "kh-rg-0001"] {
            assert!(permits("city/senml/gw-7", id), "{id}");
        }
        assert!(!permits("city/senml/gw-7", "kh-wl-0002"));
        assert_eq!(bindings.for_topic("city/senml/gw-7").unwrap().filters(&bindings), "city/senml/gw-7, city/senml/+");
        assert!(permits("city/senml/gw-8", "kh-rg-0001") && !permits("city/senml/gw-8", "kh-aq-0201"));
        assert!(permits("city/senml/open", "anything"));
        assert!(bindings.for_topic("city/water_level/kh-wl-0001").is_none(), "unbound topics are not confined");
    }

    #[test]
    fn mistakes_name_the_option() {
        for bad in ["city/senml/gw-7", "city/senml/gw-7=", "city/#/x=a", "city/s+=a", "city/senml/gw=a/b", "=a"] {
            let err = SourceBindings::parse(&[bad]).unwrap_err().to_string();
            assert!(err.contains("senml_sources"), "{bad}: {err}");
        }
    }
}
