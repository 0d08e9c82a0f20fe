//! The plans PostgreSQL picks for `any`/`all` over Observations: the
//! `EXISTS` subquery must be an index probe on the kind table's
//! `(sensor_id, ts)` key per Datastream, never a scan of the table.

use citygauge_sta::{parse_filter, EntityType, SqlBuilder, SqlParam};
use citygauge_testkit::{city, database};
use tokio_postgres::types::ToSql;

use super::{source, EntitySchema, ObsScope};

fn as_sql(p: &SqlParam) -> &(dyn ToSql + Sync) {
    match p {
        SqlParam::Text(s) => s,
        SqlParam::Int(n) => n,
        SqlParam::Float(x) => x,
        SqlParam::Bool(b) => b,
        SqlParam::Timestamp(t) => t,
        SqlParam::Date(d) => d,
        SqlParam::Time(t) => t,
    }
}

async fn plan(db: &tokio_postgres::Client, et: EntityType, filter: &str) -> String {
    let mut b = SqlBuilder::new();
    let cond = b.filter(&parse_filter(filter).unwrap(), &EntitySchema::new(et)).unwrap();
    let sql = format!("EXPLAIN SELECT e.id FROM ({}) AS e WHERE {cond}", source(et, ObsScope::All));
    let params: Vec<&(dyn ToSql + Sync)> = b.params().iter().map(as_sql).collect();
    let rows = db.query(&sql, &params).await.unwrap_or_else(|e| panic!("{filter}: {e}\n{sql}"));
    rows.iter().map(|r| r.get::<_, String>(0)).collect::<Vec<_>>().join("\n")
}

fn estimated_rows(line: &str) -> u64 {
    line.split("rows=").nth(1).and_then(|r| r.split(' ').next()).and_then(|n| n.parse().ok()).unwrap_or(u64::MAX)
}

#[tokio::test]
async fn observation_lambdas_probe_the_primary_key() -> anyhow::Result<()> {
    let test_db = database().await?;
    let _store = city::demo_city(&test_db.url).await?;
    let (db, connection) = tokio_postgres::connect(&test_db.url, tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    // 400,000 readings over the first 40 river gauges, a minute apart.
    db.batch_execute(
        "INSERT INTO water_level (sensor_id, ts, level_m) \
         SELECT s.id, now() - g * interval '1 minute', (g % 500) / 100.0 \
         FROM (SELECT id FROM sensors WHERE kind = 'water_level' ORDER BY id LIMIT 40) s, generate_series(1, 10000) g; \
         ANALYZE water_level; ANALYZE sensors;",
    )
    .await?;
    for filter in [
        "Observations/any(o: o/result gt 3)",
        "Observations/any(o: o/phenomenonTime gt now() sub duration'PT1H')",
        "Observations/all(o: o/result lt 4.5)",
        "Thing/name eq 'x' or Observations/phenomenonTime gt now() sub duration'P1D'",
    ] {
        let plan = plan(&db, EntityType::Datastream, filter).await;
        // Partitions (native) or chunks (TimescaleDB) of the kind table.
        let water: Vec<&str> =
            plan.lines().filter(|l| l.contains(" on water_level") || l.contains("water_level_")).collect();
        assert!(!water.is_empty(), "{filter}:\n{plan}");
        // Empty (future) partitions may be "scanned" at no cost; none with rows.
        let scans = water.iter().filter(|l| l.contains("Seq Scan") && estimated_rows(l) > 10);
        assert_eq!(scans.count(), 0, "{filter}:\n{plan}");
        assert!(
            plan.contains("Index Cond: (sensor_id = s.id)") || plan.contains("Index Cond: ((sensor_id = s.id)"),
            "{filter}:\n{plan}"
        );
    }
    let plan =
        plan(&db, EntityType::Datastream, "Observations/any(o: o/phenomenonTime gt now() sub duration'PT1H')").await;
    assert!(
        plan.contains("Index Cond: ((sensor_id = s.id) AND (ts > (now() - "),
        "the time bound is part of the index condition:\n{plan}"
    );
    Ok(())
}
