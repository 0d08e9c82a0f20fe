//! The SensorThings data model's entity types and navigation properties,
//! to check `$expand` and `$select` before any SQL is built.

use crate::ast::Segment;
use crate::error::{Result, StaError};
use crate::options::QueryOptions;

/// A SensorThings entity type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EntityType {
    Thing,
    Location,
    HistoricalLocation,
    Datastream,
    MultiDatastream,
    Sensor,
    ObservedProperty,
    Observation,
    FeatureOfInterest,
}

use EntityType::*;

impl EntityType {
    pub const ALL: [EntityType; 9] = [
        Thing,
        Location,
        HistoricalLocation,
        Datastream,
        MultiDatastream,
        Sensor,
        ObservedProperty,
        Observation,
        FeatureOfInterest,
    ];

    /// The entity set's name in URLs: `Things`, `ObservedProperties`...
    pub fn set_name(self) -> &'static str {
        match self {
            Thing => "Things",
            Location => "Locations",
            HistoricalLocation => "HistoricalLocations",
            Datastream => "Datastreams",
            MultiDatastream => "MultiDatastreams",
            Sensor => "Sensors",
            ObservedProperty => "ObservedProperties",
            Observation => "Observations",
            FeatureOfInterest => "FeaturesOfInterest",
        }
    }

    pub fn from_set_name(name: &str) -> Option<EntityType> {
        EntityType::ALL.into_iter().find(|e| e.set_name() == name)
    }

    /// Properties other than `id` / `@iot.id`, from the 1.1 data model.
    pub fn properties(self) -> &'static [&'static str] {
        match self {
            Thing => &["name", "description", "properties"],
            Location => &["name", "description", "encodingType", "location", "properties"],
            HistoricalLocation => &["time"],
            Datastream => &[
                "name",
                "description",
                "unitOfMeasurement",
                "observationType",
                "observedArea",
                "phenomenonTime",
                "resultTime",
                "properties",
            ],
            MultiDatastream => &[
                "name",
                "description",
                "unitOfMeasurements",
                "observationType",
                "multiObservationDataTypes",
                "observedArea",
                "phenomenonTime",
                "resultTime",
                "properties",
            ],
            Sensor => &["name", "description", "encodingType", "metadata", "properties"],
            ObservedProperty => &["name", "definition", "description", "properties"],
            Observation => &["phenomenonTime", "resultTime", "result", "resultQuality", "validTime", "parameters"],
            FeatureOfInterest => &["name", "description", "encodingType", "feature", "properties"],
        }
    }

    /// Navigation properties: name, target, and whether it is a collection.
    pub fn navigation(self) -> &'static [(&'static str, EntityType, bool)] {
        match self {
            Thing => &[
                ("Locations", Location, true),
                ("HistoricalLocations", HistoricalLocation, true),
                ("Datastreams", Datastream, true),
                ("MultiDatastreams", MultiDatastream, true),
            ],
            Location => &[("Things", Thing, true), ("HistoricalLocations", HistoricalLocation, true)],
            HistoricalLocation => &[("Thing", Thing, false), ("Locations", Location, true)],
            Datastream => &[
                ("Thing", Thing, false),
                ("Sensor", Sensor, false),
                ("ObservedProperty", ObservedProperty, false),
                ("Observations", Observation, true),
            ],
            MultiDatastream => &[
                ("Thing", Thing, false),
                ("Sensor", Sensor, false),
                ("ObservedProperties", ObservedProperty, true),
                ("Observations", Observation, true),
            ],
            Sensor => &[("Datastreams", Datastream, true), ("MultiDatastreams", MultiDatastream, true)],
            ObservedProperty => &[("Datastreams", Datastream, true), ("MultiDatastreams", MultiDatastream, true)],
            Observation => &[
                ("Datastream", Datastream, false),
                ("MultiDatastream", MultiDatastream, false),
                ("FeatureOfInterest", FeatureOfInterest, false),
            ],
            FeatureOfInterest => &[("Observations", Observation, true)],
        }
    }

    /// The target of a navigation property and whether it is a collection.
    pub fn navigate(self, name: &str) -> Option<(EntityType, bool)> {
        self.navigation().iter().find(|n| n.0 == name).map(|n| (n.1, n.2))
    }

    fn has_property(self, name: &str) -> bool {
        name == "id" || name == "@iot.id" || self.properties().contains(&name) || self.navigate(name).is_some()
    }
}

/// Checks `$expand` navigation paths and `$select` names against the data
/// model, recursively; `entity` is the type the options apply to.
pub fn validate(opts: &QueryOptions, entity: EntityType) -> Result<()> {
    for path in opts.select.iter().flatten() {
        if let Some(Segment::Name(first)) = path.segments.first() {
            if !entity.has_property(first) {
                return Err(StaError::UnknownProperty {
                    option: "$select",
                    pos: 0,
                    message: format!("{} have no property '{first}'", entity.set_name()),
                });
            }
        }
    }
    for e in &opts.expand {
        let mut target = entity;
        for name in &e.path {
            let Some((next, _)) = target.navigate(name) else {
                return Err(StaError::UnknownProperty {
                    option: "$expand",
                    pos: e.span.start,
                    message: format!("{} have no navigation property '{name}'", target.set_name()),
                });
            };
            target = next;
        }
        validate(&e.options, target)?;
    }
    Ok(())
}
