//! Native backend, schema version 5: the rollups as TimescaleDB keeps its
//! continuous aggregates, so that the writer no longer merges every batch
//! into them (three upserts per sensor and bucket cost several times the
//! COPY of the rows, see BENCHMARKS.md).
//!
//! - `{kind}_{1m,1h,1d}_done` hold closed buckets, materialised in bulk by
//!   [`super::materialise`] below a watermark per kind
//!   (`rollup_watermarks.done_to`, a minute boundary).
//! - `{kind}_{1m,1h,1d}` become views: the materialised rows below the
//!   watermark (at each level, the watermark's bucket at that level), and
//!   above it the aggregation of the finer level computed at query time
//!   (TimescaleDB's "real-time aggregation"), so the relation names, columns
//!   and answers stay what the query service, Grafana and the open-data API
//!   read, and current readings show at once.
//! - Rows that arrive below the watermark (late readings, backfills) are
//!   noted by the writer in `rollup_invalidations` and their buckets are
//!   recomputed by the next materialisation: until then (seconds, the
//!   daemon's interval) the views show those buckets without them, as
//!   TimescaleDB shows late rows only after a refresh.

use std::fmt::Write as _;

use citygauge_domain::rollup::{self, Level};
use citygauge_domain::Kind;

use super::sql::{bucket_expr, column_list, interval, raw_aggregate, rollup_aggregate};
use crate::Backend;

/// The table of a relation's materialised (closed) buckets.
pub(crate) fn done(kind: Kind, level: Level) -> String {
    format!("{}_done", rollup::relation(kind, level))
}

/// The watermark of `kind` in SQL: everything below it is materialised.
fn watermark(kind: Kind) -> String {
    format!("(SELECT done_to FROM rollup_watermarks WHERE kind = '{}')", kind.as_str())
}

/// The level a level is built from, and that source's time column.
fn finer(level: Level) -> Option<Level> {
    match level {
        Level::Minute => None,
        Level::Hour => Some(Level::Minute),
        Level::Day => Some(Level::Hour),
    }
}

/// `SELECT sensor_id, bucket, <aggregates> FROM <source> WHERE <time> >= $from
/// [AND <time> < $to] GROUP BY 1, 2` for `level` of `kind`, where `source`
/// is the raw table (minute) or the finer relation named by `finer_relation`.
fn aggregate_select(kind: Kind, level: Level, finer_relation: impl Fn(Kind, Level) -> String, range: &str) -> String {
    let columns = rollup::columns(kind);
    let (source, time, aggregates, only_counted): (String, &str, Vec<String>, &str) = match finer(level) {
        None => (
            kind.as_str().to_string(),
            "ts",
            columns.iter().map(|c| raw_aggregate(Backend::Native, c)).collect(),
            "quality <> 'bad' AND ",
        ),
        Some(finer) => (
            finer_relation(kind, finer),
            "bucket",
            columns.iter().map(|c| rollup_aggregate(Backend::Native, c)).collect(),
            "",
        ),
    };
    format!(
        "SELECT sensor_id, {} AS bucket, {}\n  FROM {source}\n WHERE {only_counted}{}\n GROUP BY 1, 2",
        bucket_expr(Backend::Native, level, time),
        aggregates.join(", "),
        range.replace("{time}", time),
    )
}

/// Schema migration 5 for `backend` (TimescaleDB: nothing to do).
pub(crate) fn migration(backend: Backend) -> String {
    let mut sql = String::from(
        "-- citygauge schema, version 5: native rollups materialised in bulk behind a\n\
         -- watermark, read through views that aggregate the rest at query time.\n",
    );
    if backend == Backend::TimescaleDb {
        sql.push_str("-- TimescaleDB: the rollups are continuous aggregates; nothing changes.\n");
        return sql;
    }
    sql.push_str(
        "\nCREATE TABLE rollup_watermarks (\n    kind        text PRIMARY KEY,\n    \
         -- Buckets below done_to (a minute boundary) are materialised; the hour and\n    \
         -- day tables hold the whole hours and days below it.\n    \
         done_to     timestamptz NOT NULL,\n    \
         -- What a running materialisation will cover: writers note rows below it.\n    \
         pending_to  timestamptz NOT NULL\n);\n\
         COMMENT ON TABLE rollup_watermarks IS 'How far each kind''s rollups are materialised.';\n\
         \nCREATE TABLE rollup_invalidations (\n    \
         id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,\n    \
         kind        text NOT NULL,\n    \
         from_ts     timestamptz NOT NULL,\n    \
         to_ts       timestamptz NOT NULL,\n    \
         sensor_ids  text[] NOT NULL\n);\n\
         COMMENT ON TABLE rollup_invalidations IS 'Rows written below the watermark: their buckets are recomputed.';\n",
    );
    for kind in Kind::ALL {
        let columns = rollup::columns(kind);
        // The tables the writer kept exact until now hold every closed
        // bucket; a kind without rows starts at the epoch (nothing
        // materialised, everything aggregated at query time until the first
        // materialisation finds where its rows begin).
        let _ = writeln!(
            sql,
            "\nINSERT INTO rollup_watermarks (kind, done_to, pending_to)\n\
             SELECT '{0}', mark, mark FROM (SELECT CASE WHEN EXISTS (SELECT 1 FROM {0})\n    \
             THEN date_bin(INTERVAL '1 minute', now(), TIMESTAMPTZ '1970-01-01 00:00:00+00')\n    \
             ELSE TIMESTAMPTZ '1970-01-01 00:00:00+00' END AS mark) AS m;",
            kind.as_str()
        );
        for level in Level::ALL {
            let name = rollup::relation(kind, level);
            let done = done(kind, level);
            let _ = writeln!(sql, "ALTER TABLE {name} RENAME TO {done};");
            let _ = writeln!(sql, "ALTER INDEX {name}_pkey RENAME TO {done}_pkey;");
            let _ = writeln!(sql, "ALTER INDEX {name}_bucket_idx RENAME TO {done}_bucket_idx;");
            let _ = writeln!(
                sql,
                "COMMENT ON TABLE {done} IS 'Closed {} buckets of {}, materialised below rollup_watermarks.done_to.';",
                interval(level),
                kind.as_str()
            );
            let edge = format!(
                "date_bin(INTERVAL '{}', {}, TIMESTAMPTZ '1970-01-01 00:00:00+00')",
                interval(level),
                watermark(kind)
            );
            let live = aggregate_select(kind, level, rollup::relation, &format!("{{time}} >= {edge}"));
            let _ = writeln!(
                sql,
                "CREATE VIEW {name} AS\nSELECT sensor_id, bucket, {list}\n  FROM {done}\n WHERE bucket < {edge}\nUNION ALL\n{live};",
                list = column_list(&columns),
            );
            let _ = writeln!(
                sql,
                "COMMENT ON VIEW {name} IS 'Rollup of {} per sensor and {} bucket: materialised buckets, and the rest aggregated at query time.';",
                kind.as_str(),
                interval(level)
            );
        }
    }
    sql
}

/// The statement that (re)computes `[$1, $2)` of `kind`'s materialised
/// buckets at `level` from the level below (raw rows for minutes), for every
/// sensor or, with `sensors`, for those in `$3`; a stored bucket is replaced
/// whole, so recomputing is idempotent.
pub(crate) fn materialise(kind: Kind, level: Level, sensors: bool) -> String {
    let columns = rollup::columns(kind);
    let mut range = String::from("{time} >= $1 AND {time} < $2");
    if sensors {
        range.push_str(" AND sensor_id = ANY($3)");
    }
    let select = aggregate_select(kind, level, done, &range);
    let updates: Vec<String> = columns.iter().map(|c| format!("{0} = EXCLUDED.{0}", c.name)).collect();
    format!(
        "INSERT INTO {} (sensor_id, bucket, {})\n{select}\n ORDER BY 1, 2\nON CONFLICT (sensor_id, bucket) DO UPDATE SET {}",
        done(kind, level),
        column_list(&columns),
        updates.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_relation_becomes_a_view_over_its_materialised_table() {
        let sql = migration(Backend::Native);
        for kind in Kind::ALL {
            for level in Level::ALL {
                let name = rollup::relation(kind, level);
                assert!(sql.contains(&format!("ALTER TABLE {name} RENAME TO {name}_done;")), "{name}");
                assert!(sql.contains(&format!("CREATE VIEW {name} AS")), "{name}");
            }
        }
        assert!(sql.contains("FROM water_level_1m\n WHERE bucket >= date_bin(INTERVAL '1 hour', (SELECT done_to"));
        assert!(sql.contains("FROM water_level\n WHERE quality <> 'bad' AND ts >= date_bin(INTERVAL '1 minute'"));
        assert!(!migration(Backend::TimescaleDb).contains("CREATE"));
    }

    #[test]
    fn materialising_replaces_buckets_from_the_finer_level() {
        let minute = materialise(Kind::WaterLevel, Level::Minute, false);
        assert!(minute.starts_with("INSERT INTO water_level_1m_done (sensor_id, bucket, n, "));
        assert!(minute.contains("FROM water_level\n WHERE quality <> 'bad' AND ts >= $1 AND ts < $2\n"));
        assert!(minute.contains("level_m_min = EXCLUDED.level_m_min"));
        let hour = materialise(Kind::WaterLevel, Level::Hour, true);
        assert!(hour.contains("FROM water_level_1m_done\n WHERE bucket >= $1 AND bucket < $2 AND sensor_id = ANY($3)"));
        assert!(hour.contains("(array_agg(level_m_last ORDER BY last_ts DESC))[1]"));
    }
}
