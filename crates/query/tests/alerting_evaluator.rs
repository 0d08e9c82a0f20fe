//! The live evaluator on a real PostgreSQL: readings written through the
//! store's writer (so the change stream announces them exactly as in
//! production), alerts, events and CAP messages read back from the tables.
//!
//! - a river rising through the three levels raises, escalates, clears;
//! - a restart mid-storm: no duplicate alert, a missed clear applied, an
//!   alert raised while down raised once;
//! - an alert that rests on days of history (a sewer line's sediment fit
//!   over a week of daily minima) survives a restart, and a replay warms the
//!   line up over its days while a river gauge gets its 25 h;
//! - two evaluators on one database: one evaluates, every alert fires once,
//!   and killing the leader's connection hands over within seconds;
//! - replaying the same readings gives the live timeline.

mod alerting_support;

use std::time::Duration;

use alerting_support::*;
use anyhow::Context;
use chrono::{DateTime, Utc};
use citygauge_query::alerting::{leader, replay};
use citygauge_testkit::eventually;
use clap::Parser;
use serde_json::{json, Value};

#[tokio::test]
async fn alerting_river_rises_escalates_and_clears() -> anyhow::Result<()> {
    let (db, store) = city(&["kh-wl-0001"]).await?;
    let observer = db.client().await?;
    let evaluator = Evaluator::start(&db)?;
    evaluator.wait_leading().await?;
    let at = clock();
    let g = "kh-wl-0001";
    rise(&store, g, &at, 0, &[1.2, 1.5, 2.1, 2.2]).await;
    wait_for(&db, g, "open", 1).await?;
    // An operator acknowledges; the escalation re-opens it for all to see.
    observer
        .execute(
            "UPDATE alerts SET state = 'acknowledged', acknowledged_at = now(), acknowledged_by = 'op'
              WHERE subject = $1 AND rule = 'water_level'",
            &[&g],
        )
        .await
        .map_err(|e| anyhow::anyhow!("acknowledge: {e:?}"))?;
    rise(&store, g, &at, 4, &[2.7, 2.8]).await;
    wait_for(&db, g, "open", 2).await?;
    rise(&store, g, &at, 6, &[3.2, 3.3, 3.2]).await;
    wait_for(&db, g, "open", 3).await?;
    rise(&store, g, &at, 9, &[2.4, 1.9, 1.5, 1.4, 1.3, 1.2, 1.1]).await;
    wait_for(&db, g, "resolved", 1).await?;

    let all = alerts(&db, g).await?;
    assert_eq!(all.len(), 1, "one alert: {all:?}");
    assert_eq!(all[0].2.as_deref(), Some("engine"));
    let kinds: Vec<String> = events(&db, g).await?.into_iter().map(|(k, _)| k).collect();
    assert_eq!(kinds.first().map(String::as_str), Some("raised"), "{kinds:?}");
    assert_eq!(kinds.last().map(String::as_str), Some("resolved"), "{kinds:?}");
    assert!(kinds.iter().filter(|k| *k == "escalated").count() == 2, "{kinds:?}");
    let row = observer
        .query_one(
            "SELECT peak_grade, acknowledged_at IS NULL, raised_at, ST_Area(area) FROM alerts WHERE subject = $1",
            &[&g],
        )
        .await?;
    assert_eq!(row.get::<_, i16>(0), 3);
    assert!(row.get::<_, bool>(1), "escalation cleared the acknowledgement");
    assert_eq!(row.get::<_, DateTime<Utc>>(2), at(3), "raised when the second reading confirmed it");
    assert!(row.get::<_, f64>(3) > 3.0e6, "a 1 km circle around the gauge");

    // The CAP chain: Alert, Updates, Cancel, each referencing all earlier ones.
    let messages = observer.query("SELECT identifier, msg_type, body FROM alert_messages ORDER BY id", &[]).await?;
    let types: Vec<String> = messages.iter().map(|m| m.get(1)).collect();
    assert_eq!(types.first().map(String::as_str), Some("Alert"), "{types:?}");
    assert_eq!(types.last().map(String::as_str), Some("Cancel"), "{types:?}");
    assert!(types[1..types.len() - 1].iter().all(|t| t == "Update"), "{types:?}");
    let mut earlier: Vec<Value> = Vec::new();
    for (n, m) in messages.iter().enumerate() {
        let identifier: String = m.get(0);
        let body: Value = m.get(2);
        assert!(identifier.starts_with(SENDER) && identifier.ends_with(&format!(":{}", n + 1)), "{identifier}");
        assert_eq!(body["references"], Value::from(earlier.clone()), "message {identifier}");
        let sent = body["sent"].as_str().unwrap();
        assert!(sent.ends_with("+08:00"), "CAP times carry the city's offset: {sent}");
        earlier.push(json!({"sender": body["sender"], "identifier": identifier, "sent": body["sent"]}));
    }
    // Every message the live path stored renders to a schema-valid CAP 1.2 document.
    let documents: Vec<String> = messages
        .iter()
        .map(|m| {
            let message: citygauge_alerts::Message = serde_json::from_value(m.get(2))?;
            Ok(citygauge_alerts::cap::render_linked(&message, "http://citygauge.test")?)
        })
        .collect::<anyhow::Result<_>>()?;
    validate_cap(&documents)?;
    assert!(evaluator.metrics.alert_decisions.with_label_values(&["raised"]).get() == 1);
    evaluator.stop().await
}

#[tokio::test]
async fn alerting_restart_mid_storm_keeps_state() -> anyhow::Result<()> {
    let (db, store) = city(&["kh-wl-0001", "kh-wl-0002", "kh-wl-0003", "kh-wl-0004"]).await?;
    let (clears, escalates, new, probe) = ("kh-wl-0001", "kh-wl-0002", "kh-wl-0003", "kh-wl-0004");
    let at = clock();
    let first = Evaluator::start(&db)?;
    first.wait_leading().await?;
    rise(&store, clears, &at, 0, &[1.5, 2.7, 2.8]).await;
    rise(&store, escalates, &at, 0, &[1.5, 2.1, 2.2]).await;
    wait_for(&db, clears, "open", 2).await?;
    wait_for(&db, escalates, "open", 1).await?;
    first.stop().await?;

    // While no one evaluates: one river falls back, one rises, one starts.
    rise(&store, clears, &at, 3, &[1.2, 1.1, 1.0, 1.0]).await;
    rise(&store, escalates, &at, 3, &[2.7, 2.8, 2.9]).await;
    rise(&store, new, &at, 3, &[2.1, 2.2]).await;

    let second = Evaluator::start(&db)?;
    wait_for(&db, clears, "resolved", 2).await?;
    wait_for(&db, escalates, "open", 2).await?;
    wait_for(&db, new, "open", 1).await?;
    let resolved = alerts(&db, clears).await?;
    assert_eq!(resolved, [("resolved".to_string(), 2, Some("engine".to_string()))], "the missed clear");
    let client = db.client().await?;
    let row = client.query_one("SELECT resolved_at, raised_at FROM alerts WHERE subject = $1", &[&clears]).await?;
    let resolved_at: DateTime<Utc> = row.get(0);
    assert!(resolved_at >= at(4) && resolved_at <= at(6), "resolved when the readings cleared it: {resolved_at}");
    let raised: DateTime<Utc> =
        client.query_one("SELECT raised_at FROM alerts WHERE subject = $1", &[&new]).await?.get(0);
    assert_eq!(raised, at(4), "raised while down, dated by its readings");
    second.stop().await?;

    // A third start with nothing new changes nothing: the probe's alert
    // shows the reconciliation is done.
    let before = db.count("SELECT count(*) FROM alert_events").await?;
    let third = Evaluator::start(&db)?;
    rise(&store, probe, &at, 10, &[2.1, 2.2]).await;
    wait_for(&db, probe, "open", 1).await?;
    assert_eq!(db.count("SELECT count(*) FROM alert_events").await?, before + 1, "only the probe's raise");
    for gauge in [clears, escalates, new] {
        assert_eq!(alerts(&db, gauge).await?.len(), 1, "{gauge} raised once");
    }
    assert_eq!(
        events(&db, escalates).await?,
        [("raised".to_string(), 1), ("escalated".to_string(), 2)],
        "the escalation while down stored once"
    );
    third.stop().await
}

/// (state, kinds of its events) of each sewer sediment alert about `line`, oldest first.
async fn sediment_alerts(
    db: &citygauge_testkit::TestDatabase,
    line: &str,
) -> anyhow::Result<Vec<(String, Vec<String>)>> {
    let client = db.client().await?;
    let rows = client
        .query(
            "SELECT a.state, array_agg(e.kind ORDER BY e.id) FROM alerts a JOIN alert_events e ON e.alert_id = a.id
              WHERE a.rule = 'sewer_sediment' AND a.subject = $1 GROUP BY a.id ORDER BY a.id",
            &[&line],
        )
        .await?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

#[tokio::test]
async fn alerting_sewer_sediment_alert_survives_a_restart() -> anyhow::Result<()> {
    use chrono::DurationRound;
    use citygauge_domain::Kind;
    use citygauge_query::alerting::history::{self, HistoryPlan};

    let (db, store) = city(&["kh-wl-0001"]).await?;
    let (river, line, gauge, elsewhere) = ("kh-wl-0001", "kh-sw-0001", "kh-rf-0001", "kh-rf-0002");
    let client = db.client().await?;
    for (id, kind, subkind, district) in [
        (line, "water_level", "sewer", "Lingya"),
        (gauge, "rainfall", "tipping_bucket", "Lingya"),
        (elsewhere, "rainfall", "tipping_bucket", "Zuoying"),
    ] {
        client
            .execute(
                "INSERT INTO sensors (id, kind, subkind, name, district, location, installation, thresholds, status)
                 VALUES ($1, $2, $3, $1, $4, ST_SetSRID(ST_MakePoint(120.31, 22.63), 4326),
                         '{\"cadence_s\": 3600}', '{}', 'active')",
                &[&id, &kind, &subkind, &district],
            )
            .await?;
    }
    // Nine dry days of hourly levels whose daily minimum creeps up 2 cm a
    // day (with a small swing within the day), then a river reading three
    // days ago and one two hours ago. All stored before anyone evaluates.
    let hours = chrono::Duration::hours;
    let now = Utc::now().duration_trunc(hours(1))?;
    let start = now - chrono::Duration::days(9);
    let mut readings: Vec<_> = (0..9 * 24)
        .map(|h| {
            let level = 0.30 + 0.02 * h as f64 / 24.0 + 0.005 * (h % 4) as f64;
            citygauge_testkit::city::level(line, start + hours(h), level)
        })
        .collect();
    readings.push(citygauge_testkit::city::level(river, now - chrono::Duration::days(3), 1.0));
    readings.push(citygauge_testkit::city::level(river, now - hours(2), 1.1));
    citygauge_testkit::city::write(&store, readings).await?;

    // The first evaluator finds the creep in its warm-up and raises it once.
    let first = Evaluator::start(&db)?;
    first.wait_leading().await?;
    let raised = sediment_alerts(&db, line).await?;
    assert_eq!(raised, [("open".to_string(), vec!["raised".to_string()])], "{}", dump(&db).await?);
    first.stop().await?;

    // A restart rebuilds the week of minima: the alert stays open, nothing is
    // resolved or raised again.
    let before = db.count("SELECT count(*) FROM alert_events").await?;
    let second = Evaluator::start(&db)?;
    second.wait_leading().await?;
    assert_eq!(sediment_alerts(&db, line).await?, raised, "{}", dump(&db).await?);
    assert_eq!(db.count("SELECT count(*) FROM alert_events").await?, before, "{}", dump(&db).await?);
    second.stop().await?;

    // The plan: the line back its days, its district's rain gauge further
    // (wet or dry days), the river and the other district's gauge their windows.
    let (rules, _) = history::rules_in_force(&client, None, false).await?;
    let sensors = history::sensors(&client, &rules).await?;
    let from = now - hours(1);
    let plan = HistoryPlan::new(&rules, &sensors, replay::WARMUP, from);
    let water = plan.kind(Kind::WaterLevel).unwrap();
    assert_eq!(water.from, from - replay::WARMUP, "river gauges: the minimum");
    let (sewer_from, ids) = water.long.clone().unwrap();
    assert_eq!(ids, [line]);
    assert_eq!(sewer_from, from - rules.warmup_for(Kind::WaterLevel));
    assert!(sewer_from <= from - chrono::Duration::days(8));
    let rain = plan.kind(Kind::Rainfall).unwrap();
    assert_eq!(rain.from, from - rules.warmup_for(Kind::Rainfall).max(replay::WARMUP));
    let (rain_from, gauges) = rain.long.clone().unwrap();
    assert_eq!(gauges, [gauge], "only the rain gauges of the lines' districts");
    assert!(rain_from < sewer_from - hours(12), "the rain that made the first days wet");
    assert_eq!(plan.start(), rain_from);
    for kind in [Kind::FloodDepth, Kind::AirQuality, Kind::Streetlight] {
        assert_eq!(plan.kind(kind).unwrap().long, None);
    }

    // A replay warms up the same way: the alert is open at its start, and
    // the river's reading three days back was not read.
    let pool = pool(&db.url)?;
    let timeline = replay::replay(&pool, from, now, None).await?;
    assert_eq!(timeline.warmup_from, plan.start());
    let open: Vec<(&str, &str)> =
        timeline.open_at_start.iter().map(|e| (e.rule.as_str(), e.subject.as_str())).collect();
    assert!(open.contains(&("sewer_sediment", line)), "{open:?}");
    let line_readings = (0..9 * 24).filter(|h| start + hours(*h) > sewer_from).count() as u64;
    assert_eq!(timeline.readings, line_readings + 1, "the line's days and the river's last reading");
    Ok(())
}

/// The backend that holds the evaluation lease.
async fn lease_holder(client: &tokio_postgres::Client) -> anyhow::Result<Option<i32>> {
    let row = client
        .query_opt(
            "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND database =
                    (SELECT oid FROM pg_database WHERE datname = current_database())
                AND ((classid::bigint << 32) | objid::bigint) = $1",
            &[&leader::LEASE_KEY],
        )
        .await?;
    Ok(row.map(|r| r.get(0)))
}

#[tokio::test]
async fn alerting_two_evaluators_fire_once_and_fail_over() -> anyhow::Result<()> {
    let (db, store) = city(&["kh-wl-0001", "kh-wl-0002"]).await?;
    let observer = db.client().await?;
    let (a, b) = (Evaluator::start(&db)?, Evaluator::start(&db)?);
    eventually("one leader", WAIT, || async { Ok((a.leading() || b.leading()).then_some(())) }).await?;
    let at = clock();
    rise(&store, "kh-wl-0001", &at, 0, &[1.5, 2.1, 2.2, 2.3]).await;
    wait_for(&db, "kh-wl-0001", "open", 1).await?;
    eventually("one leader", WAIT, || async { Ok((a.leading() ^ b.leading()).then_some(())) }).await?;
    let holder = lease_holder(&observer).await?.context("the lease is held")?;

    // Kill the leader's connection: the other takes over within seconds.
    let was_a = a.leading();
    observer.execute("SELECT pg_terminate_backend($1)", &[&holder]).await?;
    let killed = std::time::Instant::now();
    eventually("the other replica to lead", Duration::from_secs(10), || async {
        let other = if was_a { b.leading() } else { a.leading() };
        let new_holder = lease_holder(&observer).await?;
        Ok((other && new_holder.is_some_and(|p| p != holder)).then_some(()))
    })
    .await?;
    assert!(killed.elapsed() < Duration::from_secs(5), "took over in {:?}", killed.elapsed());

    rise(&store, "kh-wl-0001", &at, 4, &[2.7, 2.8]).await;
    rise(&store, "kh-wl-0002", &at, 4, &[2.1, 2.2]).await;
    wait_for(&db, "kh-wl-0001", "open", 2).await?;
    wait_for(&db, "kh-wl-0002", "open", 1).await?;
    // Let both settle (the deposed one is back on standby), then count.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert!(a.leading() ^ b.leading(), "exactly one leader");
    assert_eq!(db.count("SELECT count(*) FROM alerts").await?, 2);
    assert_eq!(
        db.count("SELECT count(*) FROM alert_events WHERE kind IN ('raised', 'escalated')").await?,
        3,
        "every alert fired once"
    );
    assert_eq!(db.count("SELECT count(*) FROM alert_messages").await?, 3);
    a.stop().await?;
    b.stop().await
}

/// The rule set of [`city`] as a rules file.
const RULES_TOML: &str = "[water_level.rate]\nenabled = false\n\
    [water_level.confirm]\nraise_readings = 2\nclear_readings = 2\nclear_dwell_s = 120\n\
    [health]\nsilent_kinds = []\n";

#[derive(clap::Parser)]
struct Cli {
    #[command(flatten)]
    args: replay::ReplayArgs,
}

#[tokio::test]
async fn alerting_replay_gives_the_live_timeline() -> anyhow::Result<()> {
    let (db, store) = city(&["kh-wl-0001", "kh-wl-0002"]).await?;
    let evaluator = Evaluator::start(&db)?;
    evaluator.wait_leading().await?;
    let at = clock();
    rise(&store, "kh-wl-0001", &at, 0, &[1.5, 2.1, 2.2, 2.7, 2.8, 3.3, 3.4, 2.3, 2.2, 2.1, 1.0, 0.9, 0.8]).await;
    rise(&store, "kh-wl-0002", &at, 2, &[2.65, 2.7, 2.75, 2.3, 2.2, 2.25, 2.3]).await;
    wait_for(&db, "kh-wl-0001", "resolved", 1).await?;
    wait_for(&db, "kh-wl-0002", "open", 1).await?;
    evaluator.stop().await?;

    let client = db.client().await?;
    let live: Vec<(DateTime<Utc>, String, String, i16)> = client
        .query(
            "SELECT e.at, a.subject, e.kind, e.grade FROM alert_events e JOIN alerts a ON a.id = e.alert_id
              WHERE e.kind IN ('raised', 'escalated', 'deescalated', 'resolved') ORDER BY e.at, a.subject, e.id",
            &[],
        )
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect();
    let pool = pool(&db.url)?;
    let timeline = replay::replay(&pool, at(-1), at(14), None).await?;
    let mut replayed: Vec<(DateTime<Utc>, String, String, i16)> = timeline
        .entries
        .iter()
        .filter(|e| e.change.notifies())
        .map(|e| (e.at, e.subject.clone(), e.change.as_str().to_string(), i16::from(e.grade)))
        .collect();
    replayed.sort();
    assert!(live.len() >= 5, "{live:?}");
    assert_eq!(replayed, live);
    let raised = timeline.entries.iter().find(|e| e.change.as_str() == "raised").unwrap();
    assert!(!raised.evidence.is_empty(), "the readings behind it");
    assert_eq!(timeline.open_at_end, 1);
    let text = replay::text(&timeline);
    assert!(text.contains("kh-wl-0001") && text.contains("escalated"), "{text}");

    // The command line, with the same rules from a file, as JSON.
    let file = std::env::temp_dir().join(format!("citygauge-{}-rules.toml", db.name));
    std::fs::write(&file, RULES_TOML)?;
    let (from, to) = (at(-1).to_rfc3339(), at(14).to_rfc3339());
    let file = file.display().to_string();
    let argv =
        ["replay", "--from", &from, "--to", &to, "--rules", &file, "--format", "json", "--database-url", &db.url];
    let out = replay::command(Cli::try_parse_from(argv)?.args).await?;
    let _ = std::fs::remove_file(&file);
    let cli: replay::Timeline = serde_json::from_str(&out)?;
    assert_eq!(cli.rules_source, citygauge_query::alerting::history::RulesSource::Given);
    assert_eq!(cli.entries, timeline.entries);

    // Bounded and ordered periods.
    let err = replay::replay(&pool, at(0), at(0) + chrono::Duration::days(32), None).await.unwrap_err();
    assert!(matches!(err, citygauge_query::QueryError::Invalid { ref field, .. } if field == "to"), "{err}");
    assert!(replay::replay(&pool, at(5), at(1), None).await.is_err());
    Ok(())
}
