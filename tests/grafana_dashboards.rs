//! The Grafana dashboards (`dashboards/grafana/dashboards/*.json`) cannot rot
//! silently: every SQL query in them (panel targets and template variables) is
//! expanded the way Grafana expands it (template variables in the browser, then
//! the PostgreSQL data source's macros on the server), run against a real
//! database holding the demo city and a few hours of readings of every kind
//! written through the store, once per rollup tier the panels choose between,
//! and checked to return the columns its panel shows and at least one row.
//! Every PromQL expression may name only metrics the daemons register.
//!
//! The test runs on the backend the harness gives: native partitions here, and
//! with TimescaleDB installed the same queries run against hypertables and the
//! rollups' continuous aggregates (their relations have the same names and
//! columns, Contract 1), so one dashboard serves both.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;

use chrono::{DateTime, Duration, DurationRound, SecondsFormat, Utc};
use citygauge_domain::{AirQuality, Kind, Quality, QualityLevel, Reading, RejectReason, Streetlight, Values};
use citygauge_store::{Batch, RejectedMessage, Store, StoreConfig};
use serde_json::Value;
use tokio_postgres::types::Type;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

// ---- Grafana's expansion of a SQL target (I/O-free) -------------------------

/// A template variable's current values; `quoted` when Grafana quotes each
/// value (multi-value or "All"), as its SQL data sources do.
#[derive(Debug, Clone)]
struct Var {
    values: Vec<String>,
    quoted: bool,
}

#[derive(Debug, Clone, Copy)]
struct Scope {
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    interval: Duration,
}

/// Go's `time.RFC3339Nano` in UTC, as Grafana's macros print times.
fn rfc3339_nano(t: DateTime<Utc>) -> String {
    let s = t.to_rfc3339_opts(SecondsFormat::Nanos, true);
    let (head, frac) = s.trim_end_matches('Z').split_once('.').expect("nanosecond format");
    let frac = frac.trim_end_matches('0');
    if frac.is_empty() {
        format!("{head}Z")
    } else {
        format!("{head}.{frac}Z")
    }
}

/// Grafana's `gtime.FormatInterval`: the largest whole unit.
fn format_interval(d: Duration) -> String {
    let ms = d.num_milliseconds();
    for (unit, size) in [("y", 31_536_000_000), ("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000)] {
        if ms >= size {
            return format!("{}{unit}", ms / size);
        }
    }
    format!("{}ms", ms.max(1))
}

/// Grafana's `gtime.ParseInterval` for the units SQL panels use.
fn parse_interval(text: &str) -> Result<f64, String> {
    let text = text.trim().trim_matches('\'');
    let split = text.find(|c: char| !c.is_ascii_digit()).ok_or_else(|| format!("interval {text:?} has no unit"))?;
    let n: f64 = text[..split].parse().map_err(|_| format!("bad interval {text:?}"))?;
    let units = [("ms", 0.001), ("s", 1.0), ("m", 60.0), ("h", 3600.0), ("d", 86_400.0), ("w", 604_800.0)];
    let unit = units.iter().find(|(u, _)| *u == &text[split..]).ok_or_else(|| format!("interval {text:?} unknown"))?.1;
    Ok(n * unit)
}

fn sql_quote(v: &str) -> String {
    format!("'{}'", v.replace('\'', "''"))
}

/// How Grafana's SQL data sources print a variable, by its `${var:format}`.
fn format_var(var: &Var, format: Option<&str>) -> Result<String, String> {
    let joined = |f: &dyn Fn(&str) -> String| var.values.iter().map(|v| f(v)).collect::<Vec<_>>().join(",");
    Ok(match format {
        None if var.quoted => joined(&sql_quote),
        None => joined(&|v: &str| v.replace('\'', "''")),
        Some("sqlstring") => joined(&sql_quote),
        Some("csv" | "raw") => joined(&str::to_string),
        Some(other) => return Err(format!("variable format {other:?} unknown to this test")),
    })
}

fn ident_len(s: &str) -> usize {
    s.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(s.len())
}

/// The browser's step: template variables and `$__interval(_ms)`; macros
/// (`$__name(...)`) are left for the data source.
fn expand_variables(sql: &str, scope: &Scope, vars: &HashMap<String, Var>) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = sql;
    if sql.contains("[[") {
        return Err("deprecated [[variable]] syntax".into());
    }
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        let (name, format, len) = if let Some(body) = rest.strip_prefix("${") {
            let end = body.find('}').ok_or("unclosed ${")?;
            let (name, format) = match body[..end].split_once(':') {
                Some((n, f)) => (n, Some(f)),
                None => (&body[..end], None),
            };
            (name, format, end + 3)
        } else {
            let n = ident_len(&rest[1..]);
            (&rest[1..1 + n], None, n + 1)
        };
        let text = match name {
            "__interval_ms" => scope.interval.num_milliseconds().to_string(),
            "__interval" => format_interval(scope.interval),
            _ if name.starts_with("__") && rest[len..].starts_with('(') => rest[..len].to_string(),
            _ => match vars.get(name) {
                Some(var) => format_var(var, format)?,
                None => return Err(format!("unknown variable or macro ${name}")),
            },
        };
        out.push_str(&text);
        rest = &rest[len..];
    }
    out.push_str(rest);
    Ok(out)
}

/// The PostgreSQL data source's macros (Grafana 11, `timescaledb` off).
fn expand_macros(sql: &str, scope: &Scope) -> Result<String, String> {
    let (from, to) = (rfc3339_nano(scope.from), rfc3339_nano(scope.to));
    let mut out = String::new();
    let mut rest = sql;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let n = ident_len(&rest[at + 1..]);
        let name = &rest[at + 1..at + 1 + n];
        let after = &rest[at + 1 + n..];
        let close = after.find(')').filter(|_| after.starts_with('(')).ok_or_else(|| format!("stray ${name}"))?;
        let args: Vec<&str> = after[1..close].split(',').map(str::trim).collect();
        let column = args.first().copied().filter(|c| !c.is_empty());
        let column = || column.ok_or_else(|| format!("${name} needs a column"));
        // A third $__timeGroup argument (fill) only changes Grafana's post-processing.
        let group = |args: &[&str]| -> Result<String, String> {
            let secs = parse_interval(args.get(1).ok_or_else(|| format!("${name} needs an interval"))?)?;
            Ok(format!("floor(extract(epoch from {})/{secs})*{secs}", args[0]))
        };
        // An old-style $__timeGroup directly followed by ',' gets the alias too.
        let alias_by_comma = name == "__timeGroup" && after[close + 1..].starts_with(',');
        out.push_str(&match name {
            "__time" => format!("{} AS \"time\"", column()?),
            "__timeFilter" => format!("{} BETWEEN '{from}' AND '{to}'", column()?),
            "__timeFrom" => format!("'{from}'"),
            "__timeTo" => format!("'{to}'"),
            "__timeGroup" if alias_by_comma => format!("{} AS \"time\"", group(&args)?),
            "__timeGroup" => group(&args)?,
            "__timeGroupAlias" => format!("{} AS \"time\"", group(&args)?),
            "__unixEpochFilter" => {
                let c = column()?;
                format!("{c} >= {} AND {c} <= {}", scope.from.timestamp(), scope.to.timestamp())
            }
            _ => return Err(format!("macro ${name} unknown to this test")),
        });
        rest = &after[close + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

fn expand(sql: &str, scope: &Scope, vars: &HashMap<String, Var>) -> Result<String, String> {
    expand_macros(&expand_variables(sql, scope, vars)?, scope)
}

// ---- PromQL: the metric names an expression reads (I/O-free) ----------------

/// Functions, aggregations and keywords: not metric names.
const PROMQL_WORDS: &str = "sum avg min max count topk bottomk quantile group stddev rate irate increase delta \
                            histogram_quantile abs clamp_min clamp_max bool and or unless offset";
/// Keywords followed by a label list.
const PROMQL_GROUPING: &str = "by without on ignoring group_left group_right";

fn promql_metrics(expr: &str) -> Result<BTreeSet<String>, String> {
    // Label matchers, ranges and grouping labels are not metric names.
    let mut bare = String::new();
    let mut depth = (0, 0);
    for c in expr.chars() {
        match c {
            '{' => depth.0 += 1,
            '}' => depth.0 -= 1,
            '[' => depth.1 += 1,
            ']' => depth.1 -= 1,
            _ if depth == (0, 0) => bare.push(c),
            _ => {}
        }
    }
    let mut metrics = BTreeSet::new();
    let mut rest = bare.as_str();
    while let Some(at) = rest.find(|c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':') {
        rest = &rest[at..];
        let n =
            rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':' || c == '.')).unwrap_or(rest.len());
        let word = &rest[..n];
        rest = rest[n..].trim_start();
        if PROMQL_GROUPING.split_whitespace().any(|w| w == word) {
            if rest.starts_with('(') {
                rest = &rest[rest.find(')').ok_or("unclosed label list")? + 1..];
            }
        } else if word.starts_with(|c: char| c.is_ascii_digit()) || PROMQL_WORDS.split_whitespace().any(|w| w == word) {
            continue;
        } else if rest.starts_with('(') {
            return Err(format!("PromQL function {word} unknown to this test"));
        } else {
            metrics.insert(word.to_string());
        }
    }
    Ok(metrics)
}

/// Metric names registered by the daemons, read from their sources as text.
fn registered_metrics() -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for file in ["crates/ingest/src/metrics.rs", "crates/query/src/metrics.rs"] {
        let Ok(text) = std::fs::read_to_string(Path::new(ROOT).join(file)) else { continue };
        let mut rest = text.as_str();
        while let Some(at) = rest.find("citygauge_") {
            let n = ident_len(&rest[at..]);
            names.insert(rest[at..at + n].to_string());
            rest = &rest[at + n..];
        }
    }
    names
}

fn metric_exists(name: &str, registered: &BTreeSet<String>) -> bool {
    registered.contains(name)
        || ["_bucket", "_sum", "_count"].iter().any(|s| name.strip_suffix(s).is_some_and(|b| registered.contains(b)))
}

// ---- What a panel expects of its query's result (I/O-free) ------------------

#[derive(Debug, Clone, Copy, PartialEq)]
enum Col {
    Number,
    Time,
    Text,
    Other,
}

fn col_kind(t: &Type) -> Col {
    match *t {
        Type::INT2 | Type::INT4 | Type::INT8 | Type::FLOAT4 | Type::FLOAT8 | Type::NUMERIC => Col::Number,
        Type::TIMESTAMPTZ | Type::TIMESTAMP | Type::DATE => Col::Time,
        Type::TEXT | Type::VARCHAR | Type::NAME | Type::BPCHAR => Col::Text,
        _ => Col::Other,
    }
}

/// Checks a result's columns against the panel; `Err` says what is wrong.
fn check_columns(panel: &Value, target: &Value, columns: &[(String, Col)]) -> Result<(), String> {
    let names: BTreeSet<&str> = columns.iter().map(|(n, _)| n.as_str()).collect();
    let numeric = columns.iter().filter(|(n, c)| *c == Col::Number && n != "time").count();
    if let Some((name, _)) = columns.iter().find(|(_, c)| *c == Col::Other) {
        return Err(format!("column {name} has a type Grafana shows as neither number, time nor text"));
    }
    let format = target["format"].as_str().unwrap_or("time_series");
    let mut long = false;
    if format == "time_series" {
        match columns.iter().find(|(n, _)| n == "time") {
            Some((_, Col::Time | Col::Number)) => {}
            _ => return Err("a time series needs a `time` column of time or epoch".into()),
        }
        if numeric == 0 {
            return Err("a time series needs a numeric value column".into());
        }
        long = columns.iter().any(|(_, c)| *c == Col::Text);
    } else if format != "table" {
        return Err(format!("format {format:?} unknown to this test"));
    }
    for transformation in panel["transformations"].as_array().into_iter().flatten() {
        if let Some(index) = transformation["options"]["indexByName"].as_object() {
            let want: BTreeSet<&str> = index.keys().map(String::as_str).collect();
            if want != names {
                return Err(format!("the panel shows columns {want:?}, the query returns {names:?}"));
            }
        }
    }
    // Long time series are pivoted, so their overrides name pivoted fields.
    if !long {
        for o in panel["fieldConfig"]["overrides"].as_array().into_iter().flatten() {
            let name = o["matcher"]["options"].as_str().unwrap_or_default();
            if o["matcher"]["id"] == "byName" && !names.contains(name) {
                return Err(format!("an override names column {name:?}, not returned"));
            }
        }
    }
    if let Some(x) = panel["options"]["xField"].as_str() {
        if !columns.iter().any(|(n, c)| n == x && *c == Col::Text) {
            return Err(format!("the bar chart's x field {x:?} is not a text column"));
        }
    }
    if matches!(panel["type"].as_str(), Some("stat" | "barchart" | "bargauge")) && numeric == 0 {
        return Err("nothing numeric to show".into());
    }
    Ok(())
}

/// Every panel, including those inside collapsed rows.
fn panels(dashboard: &Value) -> Vec<&Value> {
    let mut all = Vec::new();
    for p in dashboard["panels"].as_array().into_iter().flatten() {
        all.push(p);
        all.extend(p["panels"].as_array().into_iter().flatten());
    }
    all
}

fn datasource_uid<'a>(panel: &'a Value, target: &'a Value) -> &'a str {
    target["datasource"]["uid"].as_str().or(panel["datasource"]["uid"].as_str()).unwrap_or_default()
}

fn dashboards() -> Vec<(String, Value)> {
    let dir = Path::new(ROOT).join("dashboards/grafana/dashboards");
    let mut files: Vec<_> =
        std::fs::read_dir(&dir).expect("dashboards dir").map(|e| e.expect("entry").path()).collect();
    files.sort();
    let all: Vec<_> = files
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .map(|p| {
            let text = std::fs::read_to_string(&p).expect("readable");
            (p.file_name().unwrap().to_string_lossy().into_owned(), serde_json::from_str(&text).expect("valid JSON"))
        })
        .collect();
    assert!(all.len() >= 2, "expected the dashboards in {}", dir.display());
    all
}

// ---- The database: the demo city and a few hours of every kind --------------

/// Every sensor reports every 10 min for 4 h up to now; some readings suspect
/// or bad, a third of the road sensors wet, some lamps faulty.
fn reading(i: usize, step: usize, ts: DateTime<Utc>, id: &str, kind: Kind, warning_3: Option<f64>) -> Reading {
    let x = step as f64;
    let values = match kind {
        Kind::Rainfall => Values::Rainfall { rain_mm: ((i + step) % 4) as f64 * 0.5, interval_s: Some(600) },
        Kind::WaterLevel => Values::WaterLevel { level_m: warning_3.unwrap_or(1.0) * (0.5 + x / 40.0) },
        Kind::FloodDepth => Values::FloodDepth { depth_cm: if i.is_multiple_of(3) { x * 1.5 } else { 0.0 } },
        Kind::AirQuality => Values::AirQuality(AirQuality {
            pm2_5_ugm3: Some(8.0 + (i % 40) as f64 + x),
            pm10_ugm3: Some(20.0 + (i % 60) as f64),
            ..AirQuality::default()
        }),
        Kind::Streetlight => {
            let on = (i + step).is_multiple_of(2);
            Values::Streetlight(Streetlight {
                lamp_on: Some(on),
                power_w: Some(if on { 80.0 } else { 0.0 }),
                energy_kwh: Some(1000.0 + i as f64 + x * 0.013),
                fault: i.is_multiple_of(97).then(|| "lamp_failure".to_string()),
                ..Streetlight::default()
            })
        }
    };
    let quality = match (i + step) % 11 {
        0 => Quality { level: QualityLevel::Suspect, reasons: vec!["spike".into()] },
        5 => Quality { level: QualityLevel::Bad, reasons: vec!["out_of_range".into()] },
        _ => Quality::default(),
    };
    Reading { sensor_id: id.to_string(), ts, values, quality }
}

/// A migrated database with the demo city and its readings; returns the
/// database and the first reading's time.
async fn city_with_readings() -> anyhow::Result<(citygauge_testkit::TestDatabase, DateTime<Utc>)> {
    let db = citygauge_testkit::database().await?;
    let store = Store::new(StoreConfig::new(&db.url))?;
    let geojson = std::fs::read(Path::new(ROOT).join("deploy/demo-city.geojson"))?;
    store.import_sensors(&citygauge_domain::registry::file::parse("demo-city.geojson", &geojson)?).await?;
    let client = db.client().await?;
    let sql = "SELECT id, kind, (thresholds->>'warning_3_m')::float8 FROM sensors ORDER BY id";
    let sensors: Vec<(String, Kind, Option<f64>)> = client
        .query(sql, &[])
        .await?
        .iter()
        .map(|r| Ok((r.get(0), r.get::<_, String>(1).parse()?, r.get(2))))
        .collect::<anyhow::Result<_>>()?;
    let end = Utc::now().duration_trunc(Duration::minutes(10))?;
    let start = end - Duration::hours(4);
    for step in 0..=24 {
        let ts = start + Duration::minutes(10 * step as i64);
        let readings = sensors.iter().enumerate().map(|(i, (id, kind, w))| reading(i, step, ts, id, *kind, *w));
        store.write(&Batch { readings: readings.collect(), ..Batch::default() }).await?;
    }
    let rejected = [RejectReason::UnknownKind, RejectReason::InvalidValue, RejectReason::MalformedPayload]
        .into_iter()
        .map(|reason| RejectedMessage {
            received_at: end - Duration::minutes(5),
            topic: "city/water_level/kh-wl-0001".into(),
            payload: b"{\"level_m\": \"high\"}".to_vec().into(),
            payload_bytes: 19,
            reason,
            detail: "made by the dashboards test".into(),
        });
    store.write(&Batch { rejected: rejected.collect(), ..Batch::default() }).await?;
    store.touch_sensors(&sensors.iter().map(|(id, _, _)| (id.clone(), end)).collect::<Vec<_>>()).await?;
    Ok((db, start))
}

async fn run(
    client: &tokio_postgres::Client,
    sql: &str,
) -> Result<(Vec<(String, Col)>, Vec<tokio_postgres::Row>), String> {
    let said = |e: tokio_postgres::Error| e.as_db_error().map_or_else(|| e.to_string(), |d| d.message().to_string());
    let statement = client.prepare(sql).await.map_err(said)?;
    let columns = statement.columns().iter().map(|c| (c.name().to_string(), col_kind(c.type_()))).collect();
    let rows = client.query(&statement, &[]).await.map_err(said)?;
    Ok((columns, rows))
}

/// The template variables' values, evaluated in order as Grafana does; a
/// multi-value or "All" variable takes every value, a single one the first.
async fn variables(
    client: &tokio_postgres::Client,
    dashboard: &Value,
    scope: &Scope,
) -> Result<HashMap<String, Var>, String> {
    let mut vars = HashMap::new();
    for v in dashboard["templating"]["list"].as_array().into_iter().flatten() {
        let name = v["name"].as_str().unwrap_or_default();
        if v["type"] != "query" || v["datasource"]["uid"] != "citygauge-pg" {
            return Err(format!("variable {name}: only SQL query variables are known to this test"));
        }
        let query = v["query"].as_str().or(v["query"]["rawSql"].as_str()).unwrap_or_default();
        let sql = expand(query, scope, &vars).map_err(|e| format!("variable {name}: {e}"))?;
        let (columns, rows) = run(client, &sql).await.map_err(|e| format!("variable {name}: {e}\n{sql}"))?;
        let value_col = columns.iter().position(|(n, _)| n == "__value").unwrap_or(0);
        let values: Vec<String> = rows.iter().filter_map(|r| r.try_get(value_col).ok()).collect();
        if values.is_empty() {
            return Err(format!("variable {name} has no values\n{sql}"));
        }
        let quoted = v["multi"] == true || v["includeAll"] == true;
        let values = if quoted { values } else { values[..1].to_vec() };
        vars.insert(name.to_string(), Var { values, quoted });
    }
    Ok(vars)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_sql_query_returns_what_its_panel_shows() -> anyhow::Result<()> {
    let (db, start) = city_with_readings().await?;
    let client = db.client().await?;
    let now = Utc::now();
    let recent = start - Duration::minutes(30);
    // One scenario per tier the panels pick from $__interval_ms (raw, 1 min, 1 h, 1 day).
    let scenarios = [
        ("raw, 20 s buckets", Scope { from: recent, to: now, interval: Duration::seconds(20) }),
        ("1 min rollups, 5 min buckets", Scope { from: recent, to: now, interval: Duration::minutes(5) }),
        ("1 h rollups, a week", Scope { from: now - Duration::days(7), to: now, interval: Duration::hours(2) }),
        ("1 day rollups, a year", Scope { from: now - Duration::days(400), to: now, interval: Duration::days(1) }),
    ];
    let mut failures = Vec::new();
    let mut checked = 0;
    for (file, dashboard) in dashboards() {
        let vars = match variables(&client, &dashboard, &scenarios[0].1).await {
            Ok(vars) => vars,
            Err(e) => {
                failures.push(format!("{file}: {e}"));
                continue;
            }
        };
        for panel in panels(&dashboard) {
            let mut vars = vars.clone();
            if let Some(name) = panel["repeat"].as_str() {
                // A repeated panel runs once per value; the first stands for all.
                vars.get_mut(name).map(|v| v.values.truncate(1)).ok_or_else(|| anyhow::anyhow!("repeat {name}"))?;
            }
            for target in panel["targets"].as_array().into_iter().flatten() {
                if datasource_uid(panel, target) != "citygauge-pg" {
                    continue;
                }
                let at = format!(
                    "{file} / {} / {}",
                    panel["title"].as_str().unwrap_or("untitled"),
                    target["refId"].as_str().unwrap_or("?")
                );
                let raw = target["rawSql"].as_str().unwrap_or_default();
                let min = panel["interval"].as_str().map(parse_interval).transpose().map_err(anyhow::Error::msg)?;
                for (label, scope) in &scenarios {
                    let min = Duration::milliseconds((min.unwrap_or(0.0) * 1000.0) as i64);
                    let scope = Scope { interval: scope.interval.max(min), ..*scope };
                    let sql = match expand(raw, &scope, &vars) {
                        Ok(sql) => sql,
                        Err(e) => {
                            failures.push(format!("{at}: {e}"));
                            break;
                        }
                    };
                    checked += 1;
                    let outcome = match run(&client, &sql).await {
                        Err(e) => Err(e),
                        Ok((_, rows)) if rows.is_empty() => Err("no rows, though the data covers it".into()),
                        Ok((columns, _)) => check_columns(panel, target, &columns),
                    };
                    if let Err(e) = outcome {
                        failures.push(format!("{at} ({label}): {e}\n{sql}"));
                    }
                }
            }
        }
    }
    assert!(failures.is_empty(), "{} of {checked} query runs failed:\n\n{}", failures.len(), failures.join("\n\n"));
    assert!(checked > 40, "only {checked} query runs: were the dashboards found?");
    Ok(())
}

#[test]
fn dashboards_are_provisionable() {
    let datasources =
        std::fs::read_to_string(Path::new(ROOT).join("dashboards/grafana/provisioning/datasources/citygauge.yaml"))
            .expect("data source provisioning file");
    let provider =
        std::fs::read_to_string(Path::new(ROOT).join("dashboards/grafana/provisioning/dashboards/citygauge.yaml"))
            .expect("dashboard provider file");
    assert!(provider.contains("type: file"), "the dashboard provider reads files");
    let mut uids = BTreeSet::new();
    for (file, dashboard) in dashboards() {
        assert!(dashboard["schemaVersion"].as_u64().is_some_and(|v| v >= 39), "{file}: Grafana 11 schema");
        assert!(uids.insert(dashboard["uid"].as_str().expect("uid").to_string()), "{file}: uid taken");
        let mut ids = BTreeSet::new();
        for panel in panels(&dashboard) {
            assert!(ids.insert(panel["id"].as_u64().expect("panel id")), "{file}: panel id {} twice", panel["id"]);
            for target in panel["targets"].as_array().into_iter().flatten() {
                let uid = datasource_uid(panel, target);
                assert!(datasources.contains(&format!("uid: {uid}\n")), "{file}: data source {uid:?} not provisioned");
                let query = if uid == "citygauge-prom" { &target["expr"] } else { &target["rawSql"] };
                assert!(query.as_str().is_some_and(|q| !q.is_empty()), "{file} / {}: empty query", panel["title"]);
            }
        }
    }
}

#[test]
fn prometheus_expressions_name_registered_metrics() {
    let registered = registered_metrics();
    assert!(registered.contains("citygauge_ingest_readings_stored_total"), "read the ingest metrics: {registered:?}");
    let mut expressions = 0;
    for (file, dashboard) in dashboards() {
        for panel in panels(&dashboard) {
            for target in panel["targets"].as_array().into_iter().flatten() {
                if datasource_uid(panel, target) != "citygauge-prom" {
                    continue;
                }
                expressions += 1;
                let expr = target["expr"].as_str().unwrap_or_default();
                let metrics = promql_metrics(expr).unwrap_or_else(|e| panic!("{file}: {e} in {expr}"));
                assert!(!metrics.is_empty(), "{file}: no metric in {expr}");
                for m in metrics {
                    assert!(metric_exists(&m, &registered), "{file} / {}: no metric {m} is registered", panel["title"]);
                }
            }
        }
    }
    assert!(expressions > 5, "only {expressions} PromQL expressions found");
}

#[test]
fn expansion_follows_grafana() {
    let from = DateTime::parse_from_rfc3339("2026-11-30T01:00:00Z").unwrap().to_utc();
    let scope = Scope { from, to: from + Duration::milliseconds(90_500), interval: Duration::minutes(5) };
    let vars = HashMap::from([
        ("district".to_string(), Var { values: vec!["Sanmin".into(), "O'Hare".into()], quoted: true }),
        ("sensor".to_string(), Var { values: vec!["kh-wl-0001".into()], quoted: false }),
    ]);
    let sql = "SELECT $__timeGroupAlias(ts, $__interval), $__timeGroup(ts, '1h') FROM t \
               WHERE $__timeFilter(ts) AND d IN ($district) AND s = '$sensor' AND x IN (${district:sqlstring}) \
               AND ms = $__interval_ms AND $__unixEpochFilter(e) AND ${sensor:csv} = ''";
    assert_eq!(
        expand(sql, &scope, &vars).unwrap(),
        "SELECT floor(extract(epoch from ts)/300)*300 AS \"time\", floor(extract(epoch from ts)/3600)*3600 FROM t \
         WHERE ts BETWEEN '2026-11-30T01:00:00Z' AND '2026-11-30T01:01:30.5Z' AND d IN ('Sanmin','O''Hare') \
         AND s = 'kh-wl-0001' AND x IN ('Sanmin','O''Hare') AND ms = 300000 \
         AND e >= 1796000400 AND e <= 1796000490 AND kh-wl-0001 = ''"
    );
    assert_eq!(
        expand("$__timeGroup(ts, '1m'), 1", &scope, &vars).unwrap(),
        "floor(extract(epoch from ts)/60)*60 AS \"time\", 1"
    );
    assert_eq!(format_interval(Duration::seconds(90)), "1m");
    for bad in ["$__timeFliter(ts)", "$unknown", "[[sensor]]", "$__timeGroup(ts)", "${sensor:json}", "$__timeFilter"] {
        assert!(expand(bad, &scope, &vars).is_err(), "{bad} should fail");
    }
}

#[test]
fn promql_metric_names() {
    let expr = "histogram_quantile(0.99, sum by (le, route) (rate(a_seconds_bucket{job=\"x\"}[$__rate_interval]))) \
                / on (route) group_left sum(b_total) > 0";
    let names: Vec<String> = promql_metrics(expr).unwrap().into_iter().collect();
    assert_eq!(names, ["a_seconds_bucket", "b_total"]);
    assert!(promql_metrics("label_join(x, \"a\")").is_err(), "unknown functions are not taken for metrics");
    assert!(metric_exists("a_bucket", &BTreeSet::from(["a".to_string()])));
}
