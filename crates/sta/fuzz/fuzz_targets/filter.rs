//! Arbitrary bytes as a query string through decoding, parsing, type
//! checking against a server-shaped schema and SQL generation: nothing may
//! panic, every error points inside the text it is about, and no SQL is
//! produced that contains a quote the schema did not write.

#![no_main]

use citygauge_sta::sql::json_keys;
use citygauge_sta::{
    orderby_to_sql, parse_filter, to_sql, validate, EntityType, Path, QueryOptions, Resolved, Schema, Type,
};
use libfuzzer_sys::fuzz_target;

struct Sample(EntityType);

fn col(sql: &str, ty: Type) -> Result<Resolved, String> {
    Ok(Resolved::Column { sql: sql.to_string(), ty })
}

impl Schema for Sample {
    fn resolve(&self, path: &Path) -> Result<Resolved, String> {
        let names: Vec<&str> = path.names().collect();
        match (self.0, names.as_slice()) {
            (_, ["id"] | ["@iot.id"]) => col("e.id", Type::Int),
            (EntityType::Thing | EntityType::Datastream, ["name"]) => col("e.name", Type::String),
            (EntityType::Thing | EntityType::Datastream, ["description"]) => col("e.description", Type::String),
            (EntityType::Thing, ["properties", ..]) => {
                Ok(Resolved::Json { sql: "e.props".into(), keys: json_keys(path, 1) })
            }
            (EntityType::Thing, ["Locations", "location"]) => col("loc.geom", Type::Geometry),
            (EntityType::Datastream, ["phenomenonTime"]) => col("e.phenomenon_end", Type::DateTime),
            (EntityType::Datastream, ["Thing", "properties", ..]) => {
                Ok(Resolved::Json { sql: "th.props".into(), keys: json_keys(path, 2) })
            }
            (EntityType::Observation, ["result"]) => col("o.value", Type::Float),
            (EntityType::Observation, ["phenomenonTime" | "resultTime"]) => col("o.ts", Type::DateTime),
            (EntityType::Observation, ["resultQuality"]) => col("o.quality", Type::String),
            (EntityType::Observation, ["Datastream", "Thing", "properties", ..]) => {
                Ok(Resolved::Json { sql: "th.props".into(), keys: json_keys(path, 3) })
            }
            (EntityType::Observation, ["FeatureOfInterest", "feature"]) => col("foi.geom", Type::Geometry),
            (e, _) => Err(format!("{} have no property '{path}'", e.set_name())),
        }
    }
}

fn check_sql(sql: &str) {
    // The schema and translator write only these quoted constants; a client
    // literal would show up as any other quoted text.
    let stripped = ["'number'", "'boolean'", "'string'", "'{}'", "'UTC'", "'-infinity'", "'infinity'"]
        .iter()
        .fold(sql.to_string(), |s, k| s.replace(k, ""));
    assert!(!stripped.contains('\''), "client text in SQL: {sql}");
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    match parse_filter(text) {
        Ok(f) => {
            for e in [EntityType::Observation, EntityType::Thing, EntityType::Datastream] {
                match to_sql(&f, &Sample(e)) {
                    Ok((sql, _)) => check_sql(&sql),
                    Err(err) => assert!(err.position().is_some_and(|p| p <= text.len()), "{err}"),
                }
            }
        }
        Err(err) => assert!(err.position().is_some_and(|p| p <= text.len()), "{text:?}: {err}"),
    }
    if let Ok(q) = QueryOptions::from_query_string(text) {
        for e in [EntityType::Observation, EntityType::Thing, EntityType::Datastream] {
            if validate(&q, e).is_err() {
                continue;
            }
            if let Some(f) = &q.filter {
                if let Ok((sql, _)) = to_sql(f, &Sample(e)) {
                    check_sql(&sql);
                }
            }
            if let Ok((sql, _)) = orderby_to_sql(&q.orderby, &Sample(e)) {
                check_sql(&sql);
            }
        }
    }
});
