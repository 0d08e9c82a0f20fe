//! The `citygauge` binary as an operator uses it: migrate, import the demo
//! city's registry, and fail at start on a bad option, naming it.

use std::process::Command;

use citygauge_testkit::database;

fn citygauge(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_citygauge")).args(args).env("CITYGAUGE_LOG", "warn").output().expect("runs")
}

#[tokio::test]
async fn migrate_and_import_the_demo_city() -> anyhow::Result<()> {
    let db = database().await?;
    let migrate = citygauge(&["migrate", "--database-url", &db.url]);
    assert!(migrate.status.success(), "{}", String::from_utf8_lossy(&migrate.stderr));
    let said = String::from_utf8(migrate.stdout)?;
    let latest = citygauge_store::migrate::latest_version();
    assert!(said.contains(&format!("schema at version {latest}")) && said.contains("time-series backend:"), "{said}");

    let registry = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/demo-city.geojson");
    let import = citygauge(&["sensors", "import", registry, "--database-url", &db.url]);
    assert!(import.status.success(), "{}", String::from_utf8_lossy(&import.stderr));
    assert!(String::from_utf8(import.stdout)?.contains("2375 new"));
    assert_eq!(db.count("SELECT count(*) FROM sensors").await?, 2375);
    assert_eq!(db.count("SELECT count(*) FROM sensors WHERE location IS NULL").await?, 0);
    let rivers = "SELECT count(*) FROM sensors WHERE subkind = 'river' AND thresholds ? 'warning_1_m'";
    assert_eq!(db.count(rivers).await?, 15);

    // Importing again updates, and a broken file changes nothing.
    let again = citygauge(&["sensors", "import", registry, "--database-url", &db.url]);
    assert!(String::from_utf8(again.stdout)?.contains("0 new, 2375 updated"));
    let dir = tempfile::tempdir()?;
    let broken = dir.path().join("broken.csv");
    std::fs::write(&broken, "id,kind,lon,lat\nkh-x-1,rainfall,120.3,22.6\nkh-x-2,volcano,120.3,22.6\n")?;
    let refused = citygauge(&["sensors", "import", broken.to_str().unwrap(), "--database-url", &db.url]);
    assert!(!refused.status.success());
    let stderr = String::from_utf8(refused.stderr)?;
    assert!(stderr.contains("line 3") && stderr.contains("volcano"), "{stderr}");
    assert_eq!(db.count("SELECT count(*) FROM sensors").await?, 2375);
    Ok(())
}

#[test]
fn a_bad_option_fails_at_start_and_names_itself() {
    let cases: [(&[&str], &str); 3] = [
        (&["ingest", "--batch-max-rows", "0"], "--batch-max-rows"),
        (&["ingest", "--mqtt-url", "http://broker"], "--mqtt-url"),
        (&["ingest", "--city-timezone", "Mars/Olympus"], "--city-timezone"),
    ];
    for (args, option) in cases {
        let out = citygauge(args);
        assert!(!out.status.success(), "{args:?} should fail");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(option), "{args:?}: {stderr}");
    }
}
