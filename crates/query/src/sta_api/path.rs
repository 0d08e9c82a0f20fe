//! Resource paths after `/sta/v1.1/`: an entity set, an optional `(id)`,
//! navigation properties (each with an optional id), and at the end a
//! property, a property's `$value`, or `$ref`.
//!
//! `Things(3)/Datastreams`, `Datastreams(49)/Observations`,
//! `Observations('49-1700000000000000')/Datastream/Thing`,
//! `Things(3)/name/$value`, `Things/$ref`.

use citygauge_sta::EntityType;

use super::model;

/// An entity's key: an integer, or an Observation's (datastream, microseconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {
    Int(i64),
    Obs(i64, i64),
}

/// One step: an entity set or navigation property, maybe with an id.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub name: String,
    pub entity: EntityType,
    pub many: bool,
    pub key: Option<Key>,
}

/// What the path ends with after its entity steps.
#[derive(Debug, Clone, PartialEq)]
pub enum Tail {
    Entities,
    Property(String),
    Value(String),
    Ref,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ResourcePath {
    pub steps: Vec<Step>,
    pub tail: Tail,
}

/// Splits `Name(key)` into the name and the key text.
fn split_key(segment: &str) -> Result<(&str, Option<&str>), String> {
    match segment.find('(') {
        None => Ok((segment, None)),
        Some(open) => {
            let Some(inner) = segment[open + 1..].strip_suffix(')') else {
                return Err(format!("'{}' has no closing ')'", clip(segment)));
            };
            Ok((&segment[..open], Some(inner)))
        }
    }
}

fn clip(s: &str) -> String {
    s.chars().take(60).collect()
}

fn parse_key(entity: EntityType, text: &str) -> Result<Key, String> {
    let unquoted = text.strip_prefix('\'').and_then(|t| t.strip_suffix('\''));
    let bare = unquoted.unwrap_or(text);
    if entity == EntityType::Observation {
        return model::parse_observation_id(bare).map(|(d, us)| Key::Obs(d, us)).ok_or_else(|| {
            format!("'{}' is not an Observation id (they look like '49-1700000000000000')", clip(text))
        });
    }
    match bare.parse::<i64>() {
        Ok(n) if n >= 0 => Ok(Key::Int(n)),
        _ => Err(format!("'{}' is not an id of {} (a non-negative integer)", clip(text), entity.set_name())),
    }
}

impl ResourcePath {
    /// Parses the percent-decoded path below the version prefix.
    pub fn parse(rest: &str) -> Result<ResourcePath, String> {
        let mut parts = rest.trim_end_matches('/').split('/').peekable();
        let mut steps: Vec<Step> = Vec::new();
        let mut tail = Tail::Entities;
        while let Some(part) = parts.next() {
            let (name, key) = split_key(part)?;
            let nav = match steps.last() {
                None => EntityType::from_set_name(name)
                    .filter(|e| *e != EntityType::MultiDatastream)
                    .map(|e| (e, true))
                    .ok_or_else(|| format!("'{}' is not an entity set", clip(name)))?,
                Some(prev) => {
                    if prev.many && prev.key.is_none() {
                        if name == "$ref" && parts.peek().is_none() {
                            tail = Tail::Ref;
                            break;
                        }
                        return Err(format!("'{}' cannot follow a collection; give an id first", clip(name)));
                    }
                    match prev.entity.navigate(name) {
                        Some((EntityType::MultiDatastream, _)) => {
                            return Err("MultiDatastreams are not served".to_string())
                        }
                        Some(n) => n,
                        None if name == "$ref" && parts.peek().is_none() => {
                            tail = Tail::Ref;
                            break;
                        }
                        None if key.is_none() && prev.entity.properties().contains(&name) => {
                            tail = match parts.next() {
                                None => Tail::Property(name.to_string()),
                                Some("$value") if parts.peek().is_none() => Tail::Value(name.to_string()),
                                Some(other) => {
                                    return Err(format!("'{}' cannot follow the property '{name}'", clip(other)))
                                }
                            };
                            break;
                        }
                        None => {
                            return Err(format!(
                                "{} have no property or navigation property '{}'",
                                prev.entity.set_name(),
                                clip(name)
                            ))
                        }
                    }
                }
            };
            let (entity, many) = nav;
            let key = match key {
                Some(_) if !many => return Err(format!("'{name}' is a single entity and takes no id")),
                Some(k) => Some(parse_key(entity, k)?),
                None => None,
            };
            steps.push(Step { name: name.to_string(), entity, many, key });
        }
        if steps.is_empty() {
            return Err("the path names no entity set".into());
        }
        if matches!(tail, Tail::Property(_) | Tail::Value(_)) {
            if let Some(last) = steps.last() {
                if last.many && last.key.is_none() {
                    return Err("a property needs a single entity".into());
                }
            }
        }
        Ok(ResourcePath { steps, tail })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        let p = ResourcePath::parse("Things(3)/Datastreams").unwrap();
        assert_eq!(p.steps.len(), 2);
        let p = ResourcePath::parse("Things(3)/name/$value").unwrap();
        assert_eq!(p.tail, Tail::Value("name".into()));
        let p = ResourcePath::parse("Observations('49-17')/Datastream/Thing").unwrap();
        assert_eq!(p.steps[0].key, Some(Key::Obs(49, 17)));
        assert_eq!(ResourcePath::parse("Things/$ref").unwrap().tail, Tail::Ref);
        assert_eq!(ResourcePath::parse("Things(1)/Locations/$ref").unwrap().tail, Tail::Ref);
        for bad in [
            "Thingz",
            "Things(x)",
            "Things(1",
            "Things/Datastreams",
            "Things(1)/nope",
            "Datastreams(1)/Thing(2)",
            "Things(1)/name/x",
            "MultiDatastreams",
            "Things(-1)",
        ] {
            assert!(ResourcePath::parse(bad).is_err(), "{bad}");
        }
    }
}
