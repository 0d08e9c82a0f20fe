//! The evaluator with the rest of the alert lifecycle, on a real PostgreSQL:
//! an operator's hand resolution (through `ops::resolve`, as the API does)
//! keeps the engine quiet at that grade, across a restart too; the rules
//! file is installed once; road sensors get their nearest river gauge.

mod alerting_support;

use alerting_support::*;
use citygauge_alerts::RuleSet;
use citygauge_query::alerting::auth::Operator;
use citygauge_query::alerting::{history, ops};
use citygauge_testkit::database;
use serde_json::Value;

#[tokio::test]
async fn alerting_operator_resolution_holds_until_the_river_rises() -> anyhow::Result<()> {
    let (g, probe) = ("kh-wl-0001", "kh-wl-0002");
    let (db, store) = city(&[g, probe]).await?;
    let evaluator = Evaluator::start(&db)?;
    evaluator.wait_leading().await?;
    let at = clock();
    rise(&store, g, &at, 0, &[1.5, 2.1, 2.2]).await;
    wait_for(&db, g, "open", 1).await?;
    let mut client = db.client().await?;
    let id: i64 = client.query_one("SELECT id FROM alerts WHERE subject = $1", &[&g]).await?.get(0);
    let op = Operator { name: "duty officer".into(), admin: false };
    ops::resolve(&mut client, id, &op, "checked on site: debris on the gauge", chrono_tz::Asia::Taipei).await?;

    // Still at yellow: nothing new. The probe shows the readings were seen.
    rise(&store, g, &at, 3, &[2.2, 2.3, 2.25]).await;
    rise(&store, probe, &at, 3, &[2.1, 2.2]).await;
    wait_for(&db, probe, "open", 1).await?;
    assert_eq!(alerts(&db, g).await?, [("resolved".into(), 1, Some("duty officer".into()))]);

    // A restart remembers the hand resolution.
    evaluator.stop().await?;
    let evaluator = Evaluator::start(&db)?;
    evaluator.wait_leading().await?;
    rise(&store, g, &at, 6, &[2.3]).await;
    rise(&store, probe, &at, 5, &[2.7, 2.8]).await;
    wait_for(&db, probe, "open", 2).await?;
    assert_eq!(alerts(&db, g).await?.len(), 1, "not raised again at the same grade");

    // Orange is news: a new alert.
    rise(&store, g, &at, 7, &[2.7, 2.8]).await;
    wait_for(&db, g, "open", 2).await?;
    assert_eq!(alerts(&db, g).await?.len(), 2);
    evaluator.stop().await
}

#[tokio::test]
async fn alerting_rules_file_is_installed_once() -> anyhow::Result<()> {
    let db = database().await?;
    let file = std::env::temp_dir().join(format!("citygauge-{}-rules.toml", db.name));
    std::fs::write(&file, "sender_name = 'Kaohsiung Water Resources Bureau'\n[water_level]\nmargin_m = 0.05\n")?;
    let path = file.display().to_string();
    for _ in 0..2 {
        let evaluator = Evaluator::start_with(&db, &["--alert-rules-file", &path])?;
        evaluator.wait_leading().await?;
        evaluator.stop().await?;
    }
    let _ = std::fs::remove_file(&file);
    let client = db.client().await?;
    let rows = client.query("SELECT rules, changed_by FROM alert_rule_sets", &[]).await?;
    assert_eq!(rows.len(), 1, "installed once");
    assert_eq!(rows[0].get::<_, String>(1), "file");
    let rules = RuleSet::from_json(rows[0].get::<_, Value>(0))?;
    assert_eq!((rules.sender_name.as_str(), rules.water_level.margin_m), ("Kaohsiung Water Resources Bureau", 0.05));
    Ok(())
}

#[tokio::test]
async fn alerting_road_sensors_get_the_nearest_river_gauge() -> anyhow::Result<()> {
    let db = database().await?;
    let client = db.client().await?;
    let sensors = [
        ("river-a", "water_level", "river", 120.300, "{}", "active"),
        ("river-b", "water_level", "river", 120.320, "{}", "active"),
        ("drain-c", "water_level", "drainage", 120.3045, "{}", "active"),
        ("river-pending", "water_level", "river", 120.3051, "{}", "pending"),
        ("road-near-a", "flood_depth", "", 120.305, "{}", "active"),
        ("road-far", "flood_depth", "", 120.400, "{}", "active"),
        ("road-mapped", "flood_depth", "", 120.305, r#"{"river_station": "river-b"}"#, "active"),
    ];
    for (id, kind, subkind, lon, installation, status) in sensors {
        let installation: Value = serde_json::from_str(installation)?;
        let subkind = Some(subkind).filter(|s| !s.is_empty());
        client
            .execute(
                "INSERT INTO sensors (id, kind, subkind, location, installation, status)
                 VALUES ($1, $2, $3, ST_SetSRID(ST_MakePoint($4, 22.62), 4326), $5, $6)",
                &[&id, &kind, &subkind, &lon, &installation, &status],
            )
            .await?;
    }
    let loaded = history::sensors(&client, &RuleSet::default()).await?;
    let station = |id: &str| {
        let sensor = loaded.iter().find(|s| s.id == id).expect(id);
        sensor.installation.get("river_station").and_then(Value::as_str).map(str::to_string)
    };
    assert!(loaded.iter().all(|s| s.id != "river-pending"), "only active sensors");
    assert_eq!(station("road-near-a").as_deref(), Some("river-a"), "nearest river gauge, not the drain");
    assert_eq!(station("road-far"), None, "none within 3 km");
    assert_eq!(station("road-mapped").as_deref(), Some("river-b"), "the registry's mapping wins");
    let mut wide = RuleSet::default();
    wide.composite.radius_m = 20_000.0;
    let loaded = history::sensors(&client, &wide).await?;
    let far = loaded.iter().find(|s| s.id == "road-far").unwrap();
    assert_eq!(far.installation["river_station"], "river-b", "the radius is the rules'");
    Ok(())
}
