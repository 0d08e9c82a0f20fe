//! The control room's alerts panel in a real headless Chromium, end to end:
//! with the page open, a river gauge publishes readings over MQTT that cross
//! its yellow warning level (`warning_3_m`); the ingest daemon stores them,
//! the query service's live evaluator raises the alert, and the page shows it
//! without a reload (SSE `event: alert`); its timeline opens, and an operator
//! signs in with a token and acknowledges it; the database then holds it
//! acknowledged by that operator.
//!
//! The platform is the one the other browser test runs (PostgreSQL with the
//! demo city, Mosquitto, the ingest daemon, the query service in-process with
//! its evaluator; the page built by `citygauge_stack::ensure_web_built`). The
//! operator token is inserted hashed (sha256) into `operator_tokens`, as
//! `citygauge alerts token` would.
//!
//! Skipped, with a message, when Chromium is missing unless
//! `CITYGAUGE_REQUIRE_BROWSER` is set (then it is installed).

mod common;

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, Utc};
use citygauge_testkit::{
    city, database, eventually, ingest_config, query_config, Broker, InProcessDaemon, InProcessQuery, Publisher,
};
use common::browser::{artifacts_dir, built_page, chromium, run_script};

/// The river gauge the alert is about (Love River at Minzu Bridge, Zuoying,
/// in the demo city: `warning_3_m` 2.73, `warning_2_m` 3.38).
const SENSOR: &str = "kh-wl-0004";
/// Below the yellow level, ten minutes before the page opens.
const BASELINE_M: f64 = 2.48;
/// Two readings above yellow and below orange: the default rules confirm a
/// level with two (`water_level.confirm.raise_readings`).
const CROSSING_M: [f64; 2] = [2.91, 2.97];
const TOKEN: &str = "browser-test-operator-token-0123456789";
const OPERATOR: &str = "browser-test";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alert_appears_live_and_is_acknowledged() -> anyhow::Result<()> {
    let Some(chromium) = chromium("the alerts browser test")? else {
        return Ok(());
    };
    let (page_dir, dist) = built_page().await?;

    let db = database().await?;
    drop(city::demo_city(&db.url).await?);
    let broker = Broker::start().await?;
    let daemon = InProcessDaemon::start(ingest_config(&broker.url(), &db.url, "alerts-browser-test", &[])?).await?;
    let client = db.client().await?;
    client
        .execute(
            "INSERT INTO operator_tokens (name, role, token_sha256) VALUES ($1, 'operator', sha256(convert_to($2, 'UTF8')))",
            &[&OPERATOR, &TOKEN],
        )
        .await?;

    // The gauge was below its warning levels before the page opened.
    let mut publisher = Publisher::connect(broker.port(), "alerts-browser-test-publisher").await?;
    publisher.publish(&topic(), level(Utc::now() - chrono::Duration::minutes(10), BASELINE_M)).await?;
    publisher.wait_acked(Duration::from_secs(30)).await?;
    let stored = format!("SELECT count(*) FROM water_level WHERE sensor_id = '{SENSOR}'");
    eventually("the baseline reading to be stored", Duration::from_secs(30), || async {
        Ok((db.count(&stored).await? >= 1).then_some(()))
    })
    .await?;

    let mut config = query_config(&db.url, &[])?;
    config.web_dir = dist;
    let query = InProcessQuery::start(config).await?;
    // Raised by the live path (the change stream), not the warm-up's catch-up.
    eventually("the evaluator to take the lease and warm up", Duration::from_secs(60), || async {
        let (_, metrics) = query.get("/metrics").await?;
        Ok(metrics.lines().any(|l| l == "citygauge_alerts_leader 1").then_some(()))
    })
    .await?;

    let artifacts = artifacts_dir();
    let outcome = drive_browser(&page_dir, &chromium, &query.url(""), &artifacts, &mut publisher).await;
    let outcome = match outcome {
        Ok(id) => Ok(id),
        Err(error) => Err(error.context(what_the_database_holds(&client).await)),
    };
    query.stop().await?;
    daemon.stop().await?;
    let id = outcome?;

    let row =
        client.query_one("SELECT rule, subject, state, acknowledged_by FROM alerts WHERE id = $1", &[&id]).await?;
    let got: (String, String, String, Option<String>) = (row.get(0), row.get(1), row.get(2), row.get(3));
    assert_eq!(
        (got.0.as_str(), got.1.as_str(), got.2.as_str(), got.3.as_deref()),
        ("water_level", SENSOR, "acknowledged", Some(OPERATOR)),
        "alert {id} in the database"
    );
    let raised_by: String = client
        .query_one("SELECT actor FROM alert_events WHERE alert_id = $1 AND kind = 'raised'", &[&id])
        .await?
        .get(0);
    assert_eq!(raised_by, "engine");
    let shot = artifacts.join("control-room-alerts.png");
    let size = std::fs::metadata(&shot).with_context(|| format!("screenshot {}", shot.display()))?.len();
    assert!(size > 10_000, "{} is only {size} bytes", shot.display());
    Ok(())
}

fn topic() -> String {
    format!("city/water_level/{SENSOR}")
}

/// A canonical water-level reading.
fn level(ts: DateTime<Utc>, level_m: f64) -> String {
    format!(r#"{{"ts":"{}","level_m":{level_m:.3}}}"#, ts.to_rfc3339())
}

/// Publishes the readings that cross the yellow level: stamped a few
/// seconds apart ending now, with a few millimetres of wobble (a real
/// gauge's noise; identical values would also look flat-lined).
async fn publish_crossing(publisher: &mut Publisher) -> anyhow::Result<()> {
    let now = Utc::now();
    let wobble = f64::from(now.timestamp_subsec_millis() % 7) / 1000.0;
    for (i, value) in CROSSING_M.iter().enumerate() {
        let ts = now - chrono::Duration::seconds(4 * (CROSSING_M.len() - 1 - i) as i64);
        publisher.publish(&topic(), level(ts, value + wobble * if i % 2 == 0 { 1.0 } else { -1.0 })).await?;
    }
    publisher.wait_acked(Duration::from_secs(10)).await
}

/// The gauge's readings and alerts, to explain a failure.
async fn what_the_database_holds(client: &tokio_postgres::Client) -> String {
    let readings = client
        .query(
            "SELECT ts::text, level_m, quality || coalesce(' ' || array_to_string(quality_reasons, ','), '')
               FROM water_level WHERE sensor_id = $1 ORDER BY ts",
            &[&SENSOR],
        )
        .await
        .map(|rows| {
            rows.iter()
                .map(|r| format!("{} {} {}", r.get::<_, String>(0), r.get::<_, f64>(1), r.get::<_, String>(2)))
                .collect::<Vec<_>>()
                .join("; ")
        })
        .unwrap_or_else(|e| e.to_string());
    let alerts = client
        .query("SELECT id, rule, subject, state, level FROM alerts ORDER BY id LIMIT 20", &[])
        .await
        .map(|rows| {
            rows.iter()
                .map(|r| {
                    let (id, rule, subject, state, level): (i64, String, String, String, String) =
                        (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4));
                    format!("{id} {rule} {subject} {state} {level}")
                })
                .collect::<Vec<_>>()
                .join("; ")
        })
        .unwrap_or_else(|e| e.to_string());
    format!("{SENSOR} readings: [{readings}]; alerts: [{alerts}]")
}

/// Runs `tests/alerts.mjs`; publishes the crossing readings when it asks.
/// Returns the id of the alert the page showed.
async fn drive_browser(
    page_dir: &Path,
    chromium: &Path,
    base: &str,
    artifacts: &Path,
    publisher: &mut Publisher,
) -> anyhow::Result<i64> {
    let env = [
        ("CITYGAUGE_URL", base),
        ("CITYGAUGE_TOKEN", TOKEN),
        ("CITYGAUGE_ALERT_RULE", "water_level"),
        ("CITYGAUGE_ALERT_SUBJECT", SENSOR),
        ("CITYGAUGE_ALERT_LEVEL", "yellow"),
        ("CITYGAUGE_ALERT_SEVERITY", "Moderate"),
    ];
    let mut shown = None;
    run_script(page_dir, "tests/alerts.mjs", &env, artifacts, chromium, async |line: &str| {
        let mut answer = None;
        if line == "citygauge-browser: raise" {
            publish_crossing(publisher).await?;
            answer = Some("published");
        }
        if let Some(id) = line.strip_prefix("citygauge-browser: alert ") {
            shown = Some(id.parse::<i64>().with_context(|| format!("alert id {id:?}"))?);
        }
        Ok(answer)
    })
    .await?;
    shown.context("the script never named the alert it showed")
}
