//! What the alerting tests share: a small city of river gauges, evaluators
//! run directly (no HTTP service around them), storms written through the
//! store's writer, and readers of the alert tables.

#![allow(dead_code)]

use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, DurationRound, Utc};
use citygauge_alerts::RuleSet;
use citygauge_query::alerting::evaluator::{self, EvaluatorContext};
use citygauge_query::metrics::Metrics;
use citygauge_store::{Store, StoreConfig};
use citygauge_testkit::city::{level, write};
use citygauge_testkit::{database, eventually, query_config, TestDatabase};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio_postgres::NoTls;
use tokio_util::sync::CancellationToken;

pub const SENDER: &str = "citygauge@city.example.gov.tw";
pub const WAIT: Duration = Duration::from_secs(30);

/// A database with `gauges` river gauges (levels 2.0 / 2.6 / 3.1 m) and a
/// rule set in force that confirms quickly (2 readings up, 2 readings and
/// 2 minutes down) without rate-of-rise or silence alerts, so a storm takes
/// minutes of reading time.
pub async fn city(gauges: &[&str]) -> anyhow::Result<(TestDatabase, Store)> {
    let db = database().await?;
    let client = db.client().await?;
    for (i, id) in gauges.iter().enumerate() {
        client
            .execute(
                "INSERT INTO sensors (id, kind, subkind, name, district, location, installation, thresholds, status)
                 VALUES ($1, 'water_level', 'river', $2, 'Lingya',
                         ST_SetSRID(ST_MakePoint($3, 22.62), 4326), '{\"cadence_s\": 60}',
                         '{\"warning_3_m\": 2.0, \"warning_2_m\": 2.6, \"warning_1_m\": 3.1}', 'active')",
                &[id, &format!("Gauge {id}"), &(120.30 + 0.01 * i as f64)],
            )
            .await?;
    }
    let mut rules = RuleSet::default();
    rules.water_level.rate.enabled = false;
    rules.water_level.confirm.raise_readings = 2;
    rules.water_level.confirm.clear_readings = 2;
    rules.water_level.confirm.clear_dwell_s = 120;
    // The storms below happen in the recent past (dwell times need minutes
    // of readings) while the evaluator's clock is the wall clock: every
    // gauge would look silent between batches.
    rules.health.silent_kinds.clear();
    client.execute("INSERT INTO alert_rule_sets (rules, changed_by) VALUES ($1, 'test')", &[&rules.to_json()]).await?;
    let store = Store::new(StoreConfig::new(&db.url))?;
    Ok((db, store))
}

pub fn pool(url: &str) -> anyhow::Result<Pool> {
    let config: tokio_postgres::Config = url.parse()?;
    let manager = Manager::from_config(config, NoTls, ManagerConfig { recycling_method: RecyclingMethod::Fast });
    Ok(Pool::builder(manager).max_size(4).build()?)
}

/// One replica's evaluator, run directly (no HTTP service around it).
pub struct Evaluator {
    pub stop: CancellationToken,
    pub task: tokio::task::JoinHandle<()>,
    pub metrics: Metrics,
}

impl Evaluator {
    pub fn start(db: &TestDatabase) -> anyhow::Result<Evaluator> {
        Evaluator::start_with(db, &[])
    }

    /// With further `query` options.
    pub fn start_with(db: &TestDatabase, extra: &[&str]) -> anyhow::Result<Evaluator> {
        let mut args = vec!["--alerts-tick-ms", "200", "--alerts-leader-poll-ms", "100"];
        args.extend_from_slice(extra);
        let config = query_config(&db.url, &args)?;
        let metrics = Metrics::new();
        let context = EvaluatorContext {
            pool: pool(&db.url)?,
            database: db.url.parse()?,
            config: std::sync::Arc::new(config.alerting),
            timezone: chrono_tz::Asia::Taipei,
            metrics: metrics.clone(),
        };
        let stop = CancellationToken::new();
        let task = tokio::spawn(evaluator::run(context, stop.clone()));
        Ok(Evaluator { stop, task, metrics })
    }

    pub fn leading(&self) -> bool {
        self.metrics.alert_leader.get() == 1
    }

    /// Waits until it evaluates the change stream (lease held, warmed up).
    pub async fn wait_leading(&self) -> anyhow::Result<()> {
        eventually("the evaluator to lead", WAIT, || async { Ok(self.leading().then_some(())) }).await
    }

    pub async fn stop(self) -> anyhow::Result<()> {
        self.stop.cancel();
        tokio::time::timeout(WAIT, self.task).await.context("evaluator stop")??;
        Ok(())
    }
}

/// Minutes from a start an hour ago (whole minutes), so a storm's readings
/// lie in the recent past.
pub fn clock() -> impl Fn(i64) -> DateTime<Utc> {
    let base = (Utc::now() - chrono::Duration::minutes(90)).duration_trunc(chrono::Duration::minutes(1)).unwrap();
    move |minute| base + chrono::Duration::minutes(minute)
}

/// Writes `levels` for `gauge`, one a minute from `minute`, one batch each.
pub async fn rise(store: &Store, gauge: &str, at: &impl Fn(i64) -> DateTime<Utc>, minute: i64, levels: &[f64]) {
    for (i, v) in levels.iter().enumerate() {
        write(store, vec![level(gauge, at(minute + i as i64), *v)]).await.expect("write");
    }
}

/// (state, grade, resolved_by) of the alerts of `rule` about `subject`, oldest first.
pub async fn alerts(db: &TestDatabase, subject: &str) -> anyhow::Result<Vec<(String, i16, Option<String>)>> {
    let client = db.client().await?;
    let rows = client
        .query(
            "SELECT state, grade, resolved_by FROM alerts WHERE rule = 'water_level' AND subject = $1 ORDER BY id",
            &[&subject],
        )
        .await?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1), r.get(2))).collect())
}

/// Waits until the latest alert about `subject` is in `state` at `grade`.
pub async fn wait_for(db: &TestDatabase, subject: &str, state: &str, grade: i16) -> anyhow::Result<()> {
    let waited = eventually(&format!("{subject} {state} at grade {grade}"), WAIT, || async {
        let all = alerts(db, subject).await?;
        Ok(all.last().filter(|(s, g, _)| s == state && *g == grade).map(|_| ()))
    })
    .await;
    match waited {
        Ok(()) => Ok(()),
        Err(e) => Err(e.context(dump(db).await?)),
    }
}

/// Every alert and event, for a failing test's message.
pub async fn dump(db: &TestDatabase) -> anyhow::Result<String> {
    let client = db.client().await?;
    let rows = client
        .query(
            "SELECT a.id, a.rule, a.subject, a.state, e.at, e.kind, e.grade FROM alerts a
               JOIN alert_events e ON e.alert_id = a.id ORDER BY a.id, e.id",
            &[],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| {
            let at: DateTime<Utc> = r.get(4);
            format!(
                "alert {} {} {} {}: {} {} {}",
                r.get::<_, i64>(0),
                r.get::<_, String>(1),
                r.get::<_, String>(2),
                r.get::<_, String>(3),
                at.format("%H:%M:%S"),
                r.get::<_, String>(5),
                r.get::<_, Option<i16>>(6).unwrap_or(0)
            )
        })
        .collect::<Vec<_>>()
        .join("\n"))
}

/// (kind, grade) of every event of the alerts about `subject`.
pub async fn events(db: &TestDatabase, subject: &str) -> anyhow::Result<Vec<(String, i16)>> {
    let client = db.client().await?;
    let rows = client
        .query(
            "SELECT e.kind, e.grade FROM alert_events e JOIN alerts a ON a.id = e.alert_id
              WHERE a.subject = $1 AND a.rule = 'water_level' ORDER BY e.id",
            &[&subject],
        )
        .await?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// Validates CAP documents against the OASIS CAP 1.2 schema with xmllint
/// (installed when missing if `CITYGAUGE_REQUIRE_XMLLINT=1`, as
/// deploy/test.sh sets; otherwise skipped when absent).
pub fn validate_cap(documents: &[String]) -> anyhow::Result<()> {
    let required = std::env::var("CITYGAUGE_REQUIRE_XMLLINT").is_ok_and(|v| v == "1");
    let xmllint = if required {
        citygauge_stack::ensure_xmllint()?
    } else {
        match citygauge_stack::ensure_xmllint() {
            Ok(path) => path,
            Err(error) => {
                eprintln!("skipping CAP schema validation: {error}");
                return Ok(());
            }
        }
    };
    let schema = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../alerts/tests/fixtures/CAP-v1.2.xsd");
    let dir = tempfile::tempdir()?;
    let mut files = Vec::new();
    for (i, document) in documents.iter().enumerate() {
        let file = dir.path().join(format!("message-{i}.xml"));
        std::fs::write(&file, document)?;
        files.push(file);
    }
    let out = std::process::Command::new(xmllint).arg("--noout").arg("--schema").arg(&schema).args(&files).output()?;
    anyhow::ensure!(
        out.status.success(),
        "CAP documents fail the OASIS schema:\n{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        documents.join("\n\n")
    );
    Ok(())
}
