//! A real SensorThings client, FROST's Python client library from PyPI
//! (`frost-sta-client`, pinned below), walks Things -> Datastreams ->
//! Observations of the query service listening on a port, paging through
//! the client's own iterator (so it follows `@iot.nextLink`), and fetches
//! single entities by integer and by string id. What it saw must be what
//! the database holds for the public sensors, and nothing of the company's
//! non-public gauge.
//!
//! The client lives in a virtual environment cached under
//! `target/python-venvs/`. With CITYGAUGE_REQUIRE_PYTHON_CLIENT=1
//! (deploy/test.sh sets it) Debian's python3-venv is installed when missing
//! and any failure to set the client up fails the test; without it, a
//! machine without python3 or without network skips with a note.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, ensure, Context};
use chrono::{DateTime, Utc};
use citygauge_domain::registry::file;
use citygauge_store::{Store, StoreConfig};
use citygauge_testkit::city::{air, depth, level, rain, write};
use citygauge_testkit::{database, query_config, InProcessQuery};
use serde_json::Value;

/// The client release the test installs (a change makes a fresh venv).
const FROST_VERSION: &str = "1.1.53";
/// `$top` of every collection the client reads: small, so it pages.
const PAGE: usize = 3;
const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/frost_walk.py");

/// Four public sensors and a company's gauge that is not public.
const REGISTRY: &str = r#"{"type": "FeatureCollection", "features": [
 {"type": "Feature", "geometry": {"type": "Point", "coordinates": [120.30458, 22.64908]},
  "properties": {"id": "fc-rg-0001", "kind": "rainfall", "subkind": "tipping_bucket", "name": "Sanmin rain gauge",
   "district": "Sanmin", "installation": {"name_zh": "三民區公所雨量站", "cadence_s": 600}}},
 {"type": "Feature", "geometry": {"type": "Point", "coordinates": [120.288421, 22.628323]},
  "properties": {"id": "fc-wl-0001", "kind": "water_level", "subkind": "river", "name": "Love River gauge",
   "district": "Yancheng", "installation": {"name_zh": "愛河中正橋水位站", "cadence_s": 600}}},
 {"type": "Feature", "geometry": {"type": "Point", "coordinates": [120.310443, 22.639071]},
  "properties": {"id": "fc-fd-0001", "kind": "flood_depth", "name": "Juemin Rd underpass", "district": "Sanmin"}},
 {"type": "Feature", "geometry": {"type": "Point", "coordinates": [120.3228, 22.655671]},
  "properties": {"id": "fc-aq-0001", "kind": "air_quality", "name": "Jiuru 1st Rd air sensor", "district": "Sanmin"}},
 {"type": "Feature", "geometry": {"type": "Point", "coordinates": [120.352912, 22.709039]},
  "properties": {"id": "fc-sw-0001", "kind": "water_level", "subkind": "sewer", "name": "Fengren Rd sewer manhole",
   "district": "Renwu", "public": false}}
]}"#;

/// Single-value kinds: the sensor, its table and its one published column.
const SINGLE: [(&str, &str, &str); 3] = [
    ("fc-rg-0001", "rainfall", "rain_mm"),
    ("fc-wl-0001", "water_level", "level_m"),
    ("fc-fd-0001", "flood_depth", "depth_cm"),
];
/// The air sensor's seeded columns and their index among its Datastreams.
const AIR: [(&str, i64); 2] = [("pm2_5_ugm3", 0), ("pm10_ugm3", 1)];

fn readings(now: DateTime<Utc>) -> Vec<citygauge_domain::Reading> {
    // Odd microseconds, so an id that loses precision cannot match.
    let ago = |k: i64| now - chrono::Duration::minutes(10 * k) - chrono::Duration::microseconds(7 * k + 3);
    let mut out: Vec<_> = (0..11).map(|k| rain("fc-rg-0001", ago(k), 0.5 * k as f64, 600)).collect();
    out.extend((0..4).map(|k| level("fc-wl-0001", ago(k), 2.0 + k as f64 / 10.0)));
    out.extend((0..5).map(|k| level("fc-sw-0001", ago(k), 0.3)));
    out.push(depth("fc-fd-0001", ago(2), 12.0));
    out.extend((0..7).map(|k| air("fc-aq-0001", ago(k), 30.0 + k as f64, 50.0 + k as f64)));
    out
}

#[tokio::test]
async fn frost_python_client_walks_things_datastreams_observations() -> anyhow::Result<()> {
    let Some(python) = tokio::task::spawn_blocking(frost_python).await?? else { return Ok(()) };

    let db = database().await?;
    let store = Store::new(StoreConfig::new(&db.url))?;
    store.import_sensors(&file::parse("frost.geojson", REGISTRY.as_bytes())?).await?;
    write(&store, readings(Utc::now())).await?;
    let query = InProcessQuery::start(query_config(&db.url, &[])?).await?;

    let root = query.url("/sta/v1.1");
    let out =
        tokio::time::timeout(Duration::from_secs(180), tokio::task::spawn_blocking(move || run_walk(&python, &root)))
            .await
            .context("the FROST client walk took over 3 minutes")???;

    let client = db.client().await?;
    let hidden: i64 = client.query_one("SELECT sta_id FROM sensors WHERE id = 'fc-sw-0001'", &[]).await?.get(0);
    let mut expected_things: Vec<(i64, String)> = client
        .query("SELECT sta_id, id FROM sensors WHERE public AND status = 'active' ORDER BY sta_id", &[])
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    expected_things.sort();
    ensure!(expected_things.len() == 4, "the registry holds the four public sensors: {expected_things:?}");
    let things = out["things"].as_array().context("things")?;
    let mut seen: Vec<(i64, String)> = things
        .iter()
        .map(|t| (t["id"].as_i64().unwrap_or(-1), t["sensor_id"].as_str().unwrap_or_default().to_string()))
        .collect();
    seen.sort();
    assert_eq!(seen, expected_things, "the client's Things");
    let text = out.to_string();
    assert!(!text.contains("fc-sw-0001") && !text.contains("Fengren"), "the non-public gauge leaked: {text}");

    let mut next_links = things.len().div_ceil(PAGE).saturating_sub(1);
    for thing in things {
        let (sta, sensor) = (thing["id"].as_i64().unwrap(), thing["sensor_id"].as_str().unwrap());
        assert_ne!(sta, hidden);
        assert_eq!(thing["locations"], serde_json::json!([sta]), "{sensor}: its Location has its id");
        let datastreams = thing["datastreams"].as_array().unwrap();
        next_links += datastreams.len().div_ceil(PAGE).saturating_sub(1);
        let count = query.get(&format!("/sta/v1.1/Things({sta})/Datastreams?$count=true&$top=1")).await?;
        let count: Value = serde_json::from_str(&count.1)?;
        assert_eq!(count["@iot.count"], datastreams.len(), "{sensor}: Datastreams reached vs @iot.count");
        for ds in datastreams {
            let id = ds["id"].as_i64().context("integer Datastream id")?;
            assert_eq!(id / 16, sta, "{sensor}: Datastream {id} belongs to its Thing");
            let observations = ds["observations"].as_array().unwrap();
            next_links += observations.len().div_ceil(PAGE).saturating_sub(1);
            let seeded = match SINGLE.iter().find(|s| s.0 == sensor) {
                Some((_, table, column)) if id == sta * 16 => Some((*table, *column)),
                Some(_) => bail!("{sensor}: one Datastream expected, got {id}"),
                None => AIR.iter().find(|a| sta * 16 + a.1 == id).map(|a| ("air_quality", a.0)),
            };
            let expected = match seeded {
                Some((table, column)) => observations_in_db(&client, id, sensor, table, column).await?,
                // Air-quality columns nothing was written to.
                None => Vec::new(),
            };
            let got: Vec<(String, f64)> = observations
                .iter()
                .map(|o| {
                    (o["id"].as_str().unwrap_or("not a string").to_string(), o["result"].as_f64().unwrap_or(f64::NAN))
                })
                .collect();
            assert_eq!(got, expected, "{sensor}: Datastream {id}'s Observations, newest first");
        }
    }
    // The nested-$expand walk pages its Things too, and sees the same tree.
    next_links += things.len().div_ceil(PAGE).saturating_sub(1);
    let tree: serde_json::Map<String, Value> = things
        .iter()
        .map(|t| {
            let streams = t["datastreams"].as_array().unwrap().iter().map(|d| {
                let ids: Vec<Value> = d["observations"].as_array().unwrap().iter().map(|o| o["id"].clone()).collect();
                (d["id"].to_string(), Value::from(ids))
            });
            (t["id"].to_string(), Value::Object(streams.collect()))
        })
        .collect();
    assert_eq!(out["expanded"], Value::Object(tree), "Things with Datastreams and Observations expanded");
    let followed =
        out["requests"].as_array().unwrap().iter().filter(|u| u.as_str().unwrap().contains("skiptoken")).count();
    assert_eq!(followed, next_links, "nextLinks the client followed (no page skipped or repeated)");

    let found = &out["found"];
    let first = things
        .iter()
        .flat_map(|t| t["datastreams"].as_array().unwrap())
        .find(|d| !d["observations"].as_array().unwrap().is_empty())
        .context("some observation")?;
    assert_eq!(found["datastream"], first["id"]);
    assert_eq!(found["observation"], first["observations"][0]["id"]);
    assert_eq!(found["observation_result"], first["observations"][0]["result"]);
    query.stop().await
}

/// The Observations of one column, newest first, as `(@iot.id, result)`.
async fn observations_in_db(
    client: &tokio_postgres::Client,
    datastream: i64,
    sensor: &str,
    table: &str,
    column: &str,
) -> anyhow::Result<Vec<(String, f64)>> {
    // Table and column come from the constants above, never from input.
    let sql = format!(
        "SELECT (extract(epoch FROM ts) * 1000000)::int8, {column} FROM {table} \
         WHERE sensor_id = $1 AND {column} IS NOT NULL ORDER BY ts DESC"
    );
    let rows = client.query(&sql, &[&sensor]).await?;
    ensure!(!rows.is_empty(), "{sensor}: readings were seeded");
    Ok(rows.iter().map(|r| (format!("{datastream}-{}", r.get::<_, i64>(0)), r.get(1))).collect())
}

/// Runs tests/python/frost_walk.py and parses its JSON summary.
fn run_walk(python: &Path, root: &str) -> anyhow::Result<Value> {
    let out = Command::new(python)
        .args([SCRIPT, root, &PAGE.to_string()])
        // A proxy in the environment must not see requests to ourselves.
        .env("NO_PROXY", "127.0.0.1,localhost")
        .env("no_proxy", "127.0.0.1,localhost")
        .output()
        .context("running the FROST client")?;
    ensure!(
        out.status.success(),
        "the FROST client failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).with_context(|| format!("its output: {}", String::from_utf8_lossy(&out.stdout)))
}

/// The venv's python with the pinned client, or `None` to skip.
fn frost_python() -> anyhow::Result<Option<PathBuf>> {
    let required = std::env::var("CITYGAUGE_REQUIRE_PYTHON_CLIENT").as_deref() == Ok("1");
    match prepare_venv(required) {
        Ok(python) => Ok(Some(python)),
        Err(e) if required => Err(e.context("CITYGAUGE_REQUIRE_PYTHON_CLIENT=1: the FROST Python client is required")),
        Err(e) => {
            eprintln!(
                "skipping the FROST client test: {e:#}; CITYGAUGE_REQUIRE_PYTHON_CLIENT=1 installs python3-venv \
                 when missing and makes it required"
            );
            Ok(None)
        }
    }
}

/// `target/python-venvs/frost-<version>`, made once with `python3 -m venv`
/// and `pip install`: built beside it and renamed into place, so a test run
/// that is interrupted (or runs concurrently) never leaves a half venv.
fn prepare_venv(required: bool) -> anyhow::Result<PathBuf> {
    let venvs = Path::new(env!("CARGO_TARGET_TMPDIR")).parent().context("target directory")?.join("python-venvs");
    let dir = venvs.join(format!("frost-{FROST_VERSION}"));
    if has_client(&dir) {
        return Ok(dir.join("bin/python"));
    }
    let python3 = if required { citygauge_stack::ensure_python3_venv()? } else { PathBuf::from("python3") };
    let building = venvs.join(format!(".frost-{FROST_VERSION}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&building);
    std::fs::create_dir_all(&venvs)?;
    run(Command::new(&python3).args(["-m", "venv"]).arg(&building), "python3 -m venv (Debian: python3-venv)")?;
    let pip = [
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "--timeout",
        "30",
        &format!("frost-sta-client=={FROST_VERSION}"),
    ];
    let installed = run(Command::new(building.join("bin/python")).args(pip), "pip install frost-sta-client from PyPI");
    if let Err(e) = installed {
        let _ = std::fs::remove_dir_all(&building);
        return Err(e);
    }
    if std::fs::rename(&building, &dir).is_err() {
        // Another run finished first: use its venv.
        let _ = std::fs::remove_dir_all(&building);
    }
    ensure!(has_client(&dir), "frost-sta-client {FROST_VERSION} is not importable from {}", dir.display());
    Ok(dir.join("bin/python"))
}

fn has_client(venv: &Path) -> bool {
    let probe = "import frost_sta_client, importlib.metadata as m; print(m.version('frost-sta-client'))";
    Command::new(venv.join("bin/python"))
        .args(["-c", probe])
        .output()
        .is_ok_and(|out| out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == FROST_VERSION)
}

fn run(cmd: &mut Command, what: &str) -> anyhow::Result<()> {
    let out = cmd.output().with_context(|| what.to_string())?;
    ensure!(out.status.success(), "{what} failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr).trim());
    Ok(())
}
