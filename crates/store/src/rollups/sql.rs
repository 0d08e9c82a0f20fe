//! The rollup relations' SQL, generated from [`rollup::columns`] so the 15
//! relations, their backfill and the writer's upsert cannot disagree.

use std::fmt::Write as _;

use citygauge_domain::kind::FieldType;
use citygauge_domain::rollup::{self, ColumnType, Level, RollupColumn, Stat};
use citygauge_domain::Kind;

use crate::Backend;

/// The PostgreSQL interval of a level's buckets.
pub(crate) fn interval(level: Level) -> &'static str {
    match level {
        Level::Minute => "1 minute",
        Level::Hour => "1 hour",
        Level::Day => "1 day",
    }
}

/// `date_bin`/`time_bucket` of `column` at `level`, aligned to the epoch
/// (TimescaleDB's default origin is a UTC midnight, which aligns the same).
pub(super) fn bucket_expr(backend: Backend, level: Level, column: &str) -> String {
    let width = interval(level);
    match backend {
        Backend::Native => format!("date_bin(INTERVAL '{width}', {column}, TIMESTAMPTZ '1970-01-01 00:00:00+00')"),
        Backend::TimescaleDb => format!("time_bucket(INTERVAL '{width}', {column})"),
    }
}

/// A raw column as it is aggregated: integers as float8, so every numeric
/// statistic has one type.
fn source(field: citygauge_domain::Field) -> String {
    match field.field_type() {
        FieldType::Int => format!("{}::float8", field.name()),
        _ => field.name().to_string(),
    }
}

/// The aggregate over raw rows (those of quality good or suspect) for `column`.
pub(super) fn raw_aggregate(backend: Backend, column: &RollupColumn) -> String {
    // CASE rather than FILTER: what TimescaleDB continuous aggregates accept
    // is the narrower language, and both must compute the same.
    match column.stat {
        Stat::N => "count(*)".into(),
        Stat::NSuspect => "sum(CASE WHEN quality = 'suspect' THEN 1 ELSE 0 END)::bigint".into(),
        Stat::FirstTs => "min(ts)".into(),
        Stat::LastTs => "max(ts)".into(),
        Stat::Sum(f) => format!("sum({})", source(f)),
        Stat::Count(f) => format!("count({})", f.name()),
        Stat::Min(f) => format!("min({})", source(f)),
        Stat::Max(f) => format!("max({})", source(f)),
        Stat::True(f) => format!("sum(CASE WHEN {} THEN 1 ELSE 0 END)::bigint", f.name()),
        Stat::Last(f) => match backend {
            Backend::Native => format!("(array_agg({} ORDER BY ts DESC))[1]", source(f)),
            Backend::TimescaleDb => format!("last({}, ts)", source(f)),
        },
    }
}

/// The aggregate over finer rollup rows: TimescaleDB's hierarchical
/// continuous aggregates, and the native views and materialisation.
pub(super) fn rollup_aggregate(backend: Backend, column: &RollupColumn) -> String {
    let name = &column.name;
    match column.stat {
        Stat::N | Stat::NSuspect | Stat::Count(_) | Stat::True(_) => format!("sum({name})::bigint"),
        Stat::FirstTs | Stat::Min(_) => format!("min({name})"),
        Stat::LastTs | Stat::Max(_) => format!("max({name})"),
        Stat::Sum(_) => format!("sum({name})"),
        Stat::Last(_) => match backend {
            Backend::Native => format!("(array_agg({name} ORDER BY last_ts DESC))[1]"),
            Backend::TimescaleDb => format!("last({name}, last_ts)"),
        },
    }
}

pub(super) fn column_list(columns: &[RollupColumn]) -> String {
    columns.iter().map(|c| c.name.as_str()).collect::<Vec<_>>().join(", ")
}

/// Migration 2 for `backend`: the rollup relations, filled from what the raw
/// tables already hold.
pub(crate) fn migration(backend: Backend) -> String {
    let mut sql = String::from(
        "-- citygauge schema, version 2: rollups per sensor and 1 minute / 1 hour / 1 day bucket\n\
         -- (UTC, aligned to the epoch), generated from the kinds' columns. Only readings of\n\
         -- quality good or suspect are aggregated.\n",
    );
    match backend {
        Backend::Native => native(&mut sql),
        Backend::TimescaleDb => timescale(&mut sql),
    }
    sql
}

fn native(sql: &mut String) {
    for kind in Kind::ALL {
        let columns = rollup::columns(kind);
        for level in Level::ALL {
            let name = rollup::relation(kind, level);
            let _ = writeln!(
                sql,
                "\nCREATE TABLE {name} (\n    sensor_id text NOT NULL,\n    bucket timestamptz NOT NULL,"
            );
            for c in &columns {
                let not_null = matches!(c.column_type, ColumnType::BigInt | ColumnType::Timestamp);
                let _ =
                    writeln!(sql, "    {} {}{},", c.name, c.column_type.sql(), if not_null { " NOT NULL" } else { "" });
            }
            // Hour and day rows are rewritten by every batch in their bucket:
            // room on the page keeps those updates HOT.
            let fill = if level == Level::Minute { "" } else { " WITH (fillfactor = 80)" };
            let _ = writeln!(sql, "    PRIMARY KEY (sensor_id, bucket)\n){fill};");
            // Retention and city-wide queries select by time; BRIN is nearly
            // free to keep, rows arriving roughly in time order.
            let _ = writeln!(sql, "CREATE INDEX {name}_bucket_idx ON {name} USING brin (bucket);");
            let _ = writeln!(
                sql,
                "COMMENT ON TABLE {name} IS 'Rollup of {} per sensor and {} bucket, maintained by the ingest writer.';",
                kind.as_str(),
                interval(level)
            );
            // Rows stored before this migration get their rollups here; from
            // now on the writer adds each batch's rows as it commits them.
            let aggregates: Vec<String> = columns.iter().map(|c| raw_aggregate(Backend::Native, c)).collect();
            let _ = writeln!(
                sql,
                "INSERT INTO {name} (sensor_id, bucket, {})\nSELECT sensor_id, {}, {}\n  FROM {} WHERE quality <> 'bad'\n GROUP BY 1, 2;",
                column_list(&columns),
                bucket_expr(Backend::Native, level, "ts"),
                aggregates.join(", "),
                kind.as_str()
            );
        }
    }
}

/// Refresh windows of the TimescaleDB policies: (start_offset, end_offset,
/// schedule_interval). Readings arriving later than the start offset reach
/// the materialised buckets only through a manual refresh.
pub(crate) fn policy(level: Level) -> (&'static str, &'static str, &'static str) {
    match level {
        Level::Minute => ("7 days", "1 minute", "1 minute"),
        Level::Hour => ("7 days", "1 hour", "10 minutes"),
        Level::Day => ("35 days", "1 day", "1 hour"),
    }
}

fn timescale(sql: &mut String) {
    for kind in Kind::ALL {
        let columns = rollup::columns(kind);
        for level in Level::ALL {
            let name = rollup::relation(kind, level);
            let (select, from) = match level {
                Level::Minute => (
                    columns
                        .iter()
                        .map(|c| format!("{} AS {}", raw_aggregate(Backend::TimescaleDb, c), c.name))
                        .collect::<Vec<_>>(),
                    format!("{} WHERE quality <> 'bad'", kind.as_str()),
                ),
                Level::Hour | Level::Day => {
                    let finer = if level == Level::Hour { Level::Minute } else { Level::Hour };
                    (
                        columns
                            .iter()
                            .map(|c| format!("{} AS {}", rollup_aggregate(Backend::TimescaleDb, c), c.name))
                            .collect(),
                        rollup::relation(kind, finer),
                    )
                }
            };
            let time = if level == Level::Minute { "ts" } else { "bucket" };
            let bucket = bucket_expr(Backend::TimescaleDb, level, time);
            // Real-time aggregation: what the last refresh did not cover is
            // computed from the source at query time, so reads are current.
            let _ = writeln!(
                sql,
                "\nCREATE MATERIALIZED VIEW {name}\n  WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS\nSELECT sensor_id, {bucket} AS bucket,\n       {}\n  FROM {from}\n GROUP BY sensor_id, {bucket}\n  WITH NO DATA;",
                select.join(",\n       ")
            );
            let (start, end, every) = policy(level);
            let _ = writeln!(
                sql,
                "SELECT add_continuous_aggregate_policy('{name}', start_offset => INTERVAL '{start}', end_offset => INTERVAL '{end}', schedule_interval => INTERVAL '{every}');"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_relation_is_made_on_both_backends() {
        for backend in [Backend::Native, Backend::TimescaleDb] {
            let sql = migration(backend);
            for kind in Kind::ALL {
                for level in Level::ALL {
                    let name = rollup::relation(kind, level);
                    assert!(sql.contains(&format!(" {name}\n")) || sql.contains(&format!(" {name} (")), "{name}");
                }
            }
            assert!(sql.contains("level_m_last"), "{sql}");
        }
        assert!(migration(Backend::TimescaleDb).contains("FROM water_level_1h\n"));
    }
}
