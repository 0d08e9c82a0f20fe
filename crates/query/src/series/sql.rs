//! The SQL of a series. Only names from [`Kind`] and [`Field`] (after
//! validation) are spliced in; every value the client chose is a bind
//! parameter. Every value column comes back as `float8`.
//!
//! The same aggregate is written twice, once over readings and once over a
//! rollup's partial aggregates (Contract 1), so that both give the same
//! answer for the same buckets:
//!
//! | agg   | readings            | rollup                                         |
//! |-------|---------------------|------------------------------------------------|
//! | avg   | `avg(c)`            | `sum(c_sum) / sum(c_n)`                        |
//! | min   | `min(c)`            | `min(c_min)`                                   |
//! | max   | `max(c)`            | `max(c_max)`                                   |
//! | sum   | `sum(c)`            | `sum(c_sum)`, null when `sum(c_n) = 0`         |
//! | count | `count(c)`          | `sum(c_n)`                                     |
//! | last  | `c` at the latest ts | `c_last` of the row with the latest `last_ts` |
//!
//! `lamp_on` is 0/1 (min: all on, max: any on); `fault` only counts.

use citygauge_domain::kind::FieldType;
use citygauge_domain::{Field, Kind};

use super::params::Agg;
use super::plan::Source;

/// Only these readings count, in raw aggregation as in the rollups.
const USABLE: &str = "quality IN ('good', 'suspect')";

/// Buckets start at multiples of the step since the epoch (Contract 3).
const ORIGIN: &str = "'1970-01-01T00:00:00Z'::timestamptz";

/// The readings in `[$2, $3)`, oldest first, at most `$4` (int8) of them.
/// Columns: `ts`, `quality`, then one per field.
pub fn readings(kind: Kind, columns: &[Field]) -> String {
    let values: Vec<String> = columns.iter().map(|&f| format!(", {}", as_float(f, f.name()))).collect();
    format!(
        "SELECT ts, quality{values} FROM {table} \
         WHERE sensor_id = $1 AND ts >= $2 AND ts < $3 AND {USABLE} ORDER BY ts LIMIT $4",
        values = values.concat(),
        table = kind.as_str(),
    )
}

/// Buckets of `$4` seconds (float8) in `[$2, $3)` from `source`, oldest
/// first, only those holding readings. Columns: `b` (bucket start), then one
/// per field.
pub fn buckets(kind: Kind, source: Source, agg: Agg, columns: &[Field]) -> String {
    let (time, filter) = match source {
        Source::Raw => ("ts", USABLE),
        // A rollup row for readings that were all `bad` would be an empty
        // bucket; raw aggregation never sees one.
        _ => ("bucket", "n > 0"),
    };
    let values: Vec<String> = columns
        .iter()
        .map(|&f| {
            let expression = match source {
                Source::Raw => from_readings(f, agg),
                _ => from_rollup(f, agg),
            };
            format!(", {expression} AS {}", f.name())
        })
        .collect();
    format!(
        "SELECT date_bin(make_interval(secs => $4), {time}, {ORIGIN}) AS b{values} \
         FROM {table}{suffix} WHERE sensor_id = $1 AND {time} >= $2 AND {time} < $3 AND {filter} \
         GROUP BY 1 ORDER BY 1",
        values = values.concat(),
        table = kind.as_str(),
        suffix = source.suffix(),
    )
}

/// A stored value as float8: booleans as 0/1.
fn as_float(field: Field, expression: &str) -> String {
    match field.field_type() {
        FieldType::Bool => format!("({expression})::int::float8"),
        _ => format!("({expression})::float8"),
    }
}

fn from_readings(field: Field, agg: Agg) -> String {
    let c = field.name();
    // Booleans aggregate as 0/1.
    let v = match field.field_type() {
        FieldType::Bool => format!("{c}::int"),
        _ => c.to_string(),
    };
    match agg {
        Agg::Avg => format!("avg({v})::float8"),
        Agg::Min => format!("min({v})::float8"),
        Agg::Max => format!("max({v})::float8"),
        Agg::Sum => format!("sum({v})::float8"),
        Agg::Count => format!("count({c})::float8"),
        Agg::Last => format!("((array_agg({v} ORDER BY ts DESC))[1])::float8"),
    }
}

fn from_rollup(field: Field, agg: Agg) -> String {
    let c = field.name();
    match field.field_type() {
        FieldType::Bool => {
            let (n, on) = (format!("sum({c}_n)"), format!("sum({c}_true)"));
            match agg {
                Agg::Avg => format!("({on}::float8 / nullif({n}, 0))"),
                Agg::Min => format!("(CASE WHEN {n} > 0 THEN ({on} = {n})::int::float8 END)"),
                Agg::Max => format!("(CASE WHEN {n} > 0 THEN ({on} > 0)::int::float8 END)"),
                Agg::Sum => format!("(CASE WHEN {n} > 0 THEN {on}::float8 END)"),
                Agg::Count => format!("{n}::float8"),
                Agg::Last => format!("((array_agg({c}_last ORDER BY last_ts DESC))[1])::int::float8"),
            }
        }
        // Validation lets text columns through only for counting.
        FieldType::Text => format!("sum({c}_n)::float8"),
        FieldType::Float | FieldType::Int => match agg {
            Agg::Avg => format!("(sum({c}_sum) / nullif(sum({c}_n), 0))::float8"),
            Agg::Min => format!("min({c}_min)::float8"),
            Agg::Max => format!("max({c}_max)::float8"),
            Agg::Sum => format!("(CASE WHEN sum({c}_n) > 0 THEN sum({c}_sum) END)::float8"),
            Agg::Count => format!("sum({c}_n)::float8"),
            Agg::Last => format!("((array_agg({c}_last ORDER BY last_ts DESC))[1])::float8"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rollup_sql_names_the_relation_and_partial_aggregates() {
        let sql = buckets(Kind::WaterLevel, Source::Hour, Agg::Avg, &[Field::LevelM]);
        assert!(sql.contains("FROM water_level_1h WHERE sensor_id = $1 AND bucket >= $2 AND bucket < $3 AND n > 0"));
        assert!(sql.contains("(sum(level_m_sum) / nullif(sum(level_m_n), 0))::float8 AS level_m"), "{sql}");
        let sql = buckets(Kind::Streetlight, Source::Day, Agg::Last, &[Field::LampOn, Field::PowerW]);
        assert!(sql.contains("(array_agg(lamp_on_last ORDER BY last_ts DESC))[1])::int::float8 AS lamp_on"), "{sql}");
        assert!(sql.contains("FROM streetlight_1d "), "{sql}");
    }

    #[test]
    fn raw_sql_filters_quality_and_binds_every_value() {
        let sql = buckets(Kind::Rainfall, Source::Raw, Agg::Sum, &[Field::RainMm, Field::IntervalS]);
        assert!(sql.contains("FROM rainfall WHERE sensor_id = $1 AND ts >= $2 AND ts < $3 AND quality IN"), "{sql}");
        assert!(sql.contains("sum(interval_s)::float8 AS interval_s"), "{sql}");
        let sql = readings(Kind::Streetlight, &[Field::LampOn]);
        assert_eq!(
            sql,
            "SELECT ts, quality, (lamp_on)::int::float8 FROM streetlight WHERE sensor_id = $1 AND ts >= $2 \
             AND ts < $3 AND quality IN ('good', 'suspect') ORDER BY ts LIMIT $4"
        );
    }
}
