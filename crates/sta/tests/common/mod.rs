//! A small schema shaped like the server's: Datastreams joined to their
//! Thing (`th`) and, for Observations, the time-series row (`o`).

#![allow(dead_code)]

use citygauge_sta::sql::json_keys;
use citygauge_sta::{Collection, EntityType, Path, Resolved, Schema, Type};

pub struct TestSchema(pub EntityType);

fn col(sql: &str, ty: Type) -> Result<Resolved, String> {
    Ok(Resolved::Column { sql: sql.to_string(), ty })
}

impl Schema for TestSchema {
    fn resolve(&self, path: &Path) -> Result<Resolved, String> {
        let names: Vec<&str> = path.names().collect();
        match (self.0, names.as_slice()) {
            (_, ["id"] | ["@iot.id"]) => col("e.id", Type::Int),
            (EntityType::Datastream, ["name"]) => col("ds.name", Type::String),
            (EntityType::Datastream, ["description"]) => col("ds.description", Type::String),
            (EntityType::Datastream, ["phenomenonTime"]) => col("ds.phenomenon_end", Type::DateTime),
            (EntityType::Datastream, ["Thing", "name"]) => col("th.name", Type::String),
            (EntityType::Datastream, ["Thing", "properties", ..]) => {
                Ok(Resolved::Json { sql: "th.properties".into(), keys: json_keys(path, 2) })
            }
            (EntityType::Datastream, ["Thing", "Locations", "location"]) => col("loc.geom", Type::Geometry),
            (EntityType::Datastream, ["properties", ..]) => {
                Ok(Resolved::Json { sql: "ds.properties".into(), keys: json_keys(path, 1) })
            }
            (EntityType::Thing, ["name"]) => col("th.name", Type::String),
            (EntityType::Thing, ["properties", ..]) => {
                Ok(Resolved::Json { sql: "th.properties".into(), keys: json_keys(path, 1) })
            }
            (EntityType::Thing, ["Locations", "location"]) => col("loc.geom", Type::Geometry),
            (EntityType::Observation, ["result"]) => col("o.level_m", Type::Float),
            (EntityType::Observation, ["phenomenonTime"] | ["resultTime"]) => col("o.ts", Type::DateTime),
            (EntityType::Observation, ["resultQuality"]) => col("o.quality", Type::String),
            (EntityType::Observation, ["Datastream", "Thing", "properties", ..]) => {
                Ok(Resolved::Json { sql: "th.properties".into(), keys: json_keys(path, 3) })
            }
            (EntityType::Observation, ["FeatureOfInterest", "feature"]) => col("foi.geom", Type::Geometry),
            (EntityType::Observation, ["interval_s"]) => col("o.interval_s", Type::Int),
            (EntityType::Observation, ["lamp_on"]) => col("o.lamp_on", Type::Bool),
            (EntityType::Observation, ["day"]) => col("o.ts::date", Type::Date),
            (EntityType::Observation, ["clock"]) => col("o.ts::time", Type::Time),
            (EntityType::Observation, ["age"]) => col("now() - o.ts", Type::Duration),
            (e, _) => Err(format!("{} have no property '{path}'", e.set_name())),
        }
    }

    /// Things' Datastreams and Datastreams' Observations (for `any`/`all`).
    fn collection(&self, nav: &str, alias: &str) -> Option<Result<Collection, String>> {
        let (table, key, et) = match (self.0, nav) {
            (EntityType::Thing, "Datastreams") => ("datastreams", "thing_id", EntityType::Datastream),
            (EntityType::Datastream, "Observations") => ("observations", "ds_id", EntityType::Observation),
            _ => return None,
        };
        let from = format!("FROM {table} AS {alias} WHERE {alias}.{key} = e.id");
        Some(Ok(Collection { from, schema: Box::new(TestSchema(et)), single: false }))
    }
}
