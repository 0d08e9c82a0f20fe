//! One sensor's series against a real PostgreSQL, readings written through
//! the store's writer: the readings themselves, raw aggregation with gaps,
//! CSV, and (the property) every rollup's answer equal to raw aggregation
//! over the same buckets.

use anyhow::Context;
use chrono::{DateTime, Duration, DurationRound, Utc};
use citygauge_domain::{Field, Kind, Quality, QualityLevel, Reading, Streetlight, Values};
use citygauge_query::series::{self, Agg, Buckets, Series, SeriesLimits, SeriesParams, Source};
use citygauge_query::QueryError;
use citygauge_store::{Batch, Store, StoreConfig};
use citygauge_testkit::database;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use tokio_postgres::Client;

fn params(query: &[(&str, &str)]) -> SeriesParams {
    let object: serde_json::Map<String, serde_json::Value> =
        query.iter().map(|(k, v)| (k.to_string(), serde_json::Value::from(*v))).collect();
    serde_json::from_value(object.into()).expect("series params")
}

fn rfc(t: DateTime<Utc>) -> String {
    t.to_rfc3339()
}

fn quality(level: QualityLevel) -> Quality {
    let reasons = if level == QualityLevel::Good { vec![] } else { vec!["spike:test".to_string()] };
    Quality { level, reasons }
}

fn level(sensor: &str, ts: DateTime<Utc>, level_m: f64, q: QualityLevel) -> Reading {
    Reading { sensor_id: sensor.into(), ts, values: Values::WaterLevel { level_m }, quality: quality(q) }
}

/// Two hours of one-minute readings from `base`: minute 10 suspect, minute
/// 20 bad, nothing from minute 30 to 44.
fn two_hours(base: DateTime<Utc>) -> Vec<Reading> {
    (0..120)
        .filter(|m| !(30..45).contains(m))
        .map(|m| {
            let q = match m {
                10 => QualityLevel::Suspect,
                20 => QualityLevel::Bad,
                _ => QualityLevel::Good,
            };
            level("wl-1", base + Duration::minutes(m), 1.0 + m as f64 / 8.0, q)
        })
        .collect()
}

fn day_start(days_ago: i64) -> DateTime<Utc> {
    (Utc::now() - Duration::days(days_ago)).duration_trunc(Duration::days(1)).unwrap()
}

fn bad_parameter(result: Result<Series, QueryError>) -> (&'static str, String) {
    match result {
        Err(QueryError::BadParameter { name, reason }) => (name, reason),
        other => panic!("expected a bad parameter, got {other:?}"),
    }
}

#[tokio::test]
async fn readings_raw_buckets_gaps_and_csv() -> anyhow::Result<()> {
    let db = database().await?;
    let store = Store::new(StoreConfig::new(&db.url))?;
    let base = day_start(2) + Duration::hours(6);
    let written = two_hours(base);
    store.write(&Batch { readings: written.clone(), ..Batch::default() }).await?;
    let client = db.client().await?;
    let now = Utc::now();
    let range = [("from", rfc(base)), ("to", rfc(base + Duration::hours(2)))];
    let with = |extra: &[(&'static str, &'static str)]| {
        let mut query: Vec<(&str, &str)> = range.iter().map(|(k, v)| (*k, v.as_str())).collect();
        query.extend_from_slice(extra);
        params(&query)
    };
    let kept: Vec<&Reading> = written.iter().filter(|r| r.quality.level != QualityLevel::Bad).collect();

    // The readings themselves: bad ones left out, quality shown.
    let raw = series::query(&client, "wl-1", Kind::WaterLevel, &with(&[("step", "raw")]), now).await?;
    assert_eq!((raw.source, raw.step_s, raw.agg), (Source::Raw, None, None));
    assert_eq!(raw.t, kept.iter().map(|r| r.ts).collect::<Vec<_>>());
    let values: Vec<Option<f64>> = kept.iter().map(|r| r.values.number(Field::LevelM)).collect();
    assert_eq!(raw.columns.get("level_m").unwrap(), values);
    let quality = raw.quality.as_ref().unwrap();
    assert_eq!(quality[10], "suspect");
    assert!(quality.iter().enumerate().all(|(i, q)| i == 10 || q == "good"));

    // A point budget above the reading count gives the same readings.
    let auto = series::query(&client, "wl-1", Kind::WaterLevel, &with(&[("points", "200")]), now).await?;
    assert_eq!((auto.t.len(), auto.source), (kept.len(), Source::Raw));

    // Buckets from the raw table (90 s tiles no rollup); a gap is null.
    let binned =
        series::query(&client, "wl-1", Kind::WaterLevel, &with(&[("step", "90s"), ("agg", "max")]), now).await?;
    assert_eq!((binned.source, binned.step_s, binned.t.len()), (Source::Raw, Some(90), 80));
    for (i, t) in binned.t.iter().enumerate() {
        let inside = kept.iter().filter(|r| r.ts >= *t && r.ts < *t + Duration::seconds(90));
        let expected = inside.filter_map(|r| r.values.number(Field::LevelM)).reduce(f64::max);
        assert_eq!(binned.columns.get("level_m").unwrap()[i], expected, "bucket {t}");
    }
    let gap = binned.t.iter().position(|t| *t == base + Duration::minutes(33)).unwrap();
    assert_eq!(binned.columns.get("level_m").unwrap()[gap], None);
    let json = serde_json::to_value(&binned)?;
    assert_eq!(json["columns"]["level_m"][gap], serde_json::Value::Null);
    assert_eq!(json["t"][0], base.timestamp());

    // Counting per bucket; an empty bucket is a gap, not zero.
    let counts =
        series::query(&client, "wl-1", Kind::WaterLevel, &with(&[("step", "30m"), ("agg", "count")]), now).await?;
    assert_eq!(counts.columns.get("level_m").unwrap(), [Some(29.0), Some(15.0), Some(30.0), Some(30.0)]);

    // More readings than the cap: a 400 naming the range.
    let limits = SeriesLimits { max_rows: 50, ..SeriesLimits::default() };
    let (name, reason) = bad_parameter(
        series::query_with_limits(&client, "wl-1", Kind::WaterLevel, &with(&[("step", "raw")]), now, &limits).await,
    );
    assert_eq!(name, "from");
    assert!(reason.contains("more than 50 readings"), "{reason}");

    // CSV reads back to the same values, gaps as empty cells.
    for (query, quality_column) in [(with(&[("step", "raw")]), true), (with(&[("step", "90s"), ("agg", "max")]), false)]
    {
        let series = series::query(&client, "wl-1", Kind::WaterLevel, &query, now).await?;
        let csv = series::query_csv(&client, "wl-1", Kind::WaterLevel, &query, now).await?;
        let mut reader = csv::Reader::from_reader(csv.as_ref());
        let header: Vec<String> = reader.headers()?.iter().map(String::from).collect();
        let expected_header: &[&str] = if quality_column { &["ts", "level_m", "quality"] } else { &["ts", "level_m"] };
        assert_eq!(header, expected_header);
        let mut rows = 0;
        for (i, record) in reader.records().enumerate() {
            let record = record?;
            assert_eq!(record[0].parse::<DateTime<Utc>>()?, series.t[i]);
            let value = if record[1].is_empty() { None } else { Some(record[1].parse::<f64>()?) };
            assert_eq!(value, series.columns.get("level_m").unwrap()[i]);
            if quality_column {
                assert_eq!(&record[2], series.quality.as_ref().unwrap()[i]);
            }
            rows += 1;
        }
        assert_eq!(rows, series.t.len());
    }

    // A sensor without data: every bucket a gap.
    let empty = series::query(&client, "nobody", Kind::WaterLevel, &with(&[("step", "90s")]), now).await?;
    assert!(empty.t.len() == 80 && empty.columns.get("level_m").unwrap().iter().all(Option::is_none));
    Ok(())
}

#[tokio::test]
async fn bad_parameters_are_refused_before_the_database() -> anyhow::Result<()> {
    let db = database().await?;
    let client = db.client().await?;
    let query = [("from", "-1d"), ("to", "-2d")];
    let (name, _) = bad_parameter(series::query(&client, "x", Kind::WaterLevel, &params(&query), Utc::now()).await);
    assert_eq!(name, "from");
    let query = [("columns", "level_m,pm10_ugm3")];
    let (name, _) = bad_parameter(series::query(&client, "x", Kind::WaterLevel, &params(&query), Utc::now()).await);
    assert_eq!(name, "columns");
    Ok(())
}

// ---- the property: a rollup answers what raw aggregation answers ----

/// Readings of one streetlight and one rain gauge over three days, random
/// values (some missing), random quality, offsets that may collide.
#[derive(Debug, Clone)]
struct Case {
    lights: Vec<(i64, QualityLevel, Streetlight)>,
    rain: Vec<(i64, QualityLevel, f64, Option<i32>)>,
}

const SPAN_S: i64 = 3 * 86_400;

fn quality_level() -> impl Strategy<Value = QualityLevel> {
    prop_oneof![6 => Just(QualityLevel::Good), 2 => Just(QualityLevel::Suspect), 1 => Just(QualityLevel::Bad)]
}

fn hundredths(max: i64) -> impl Strategy<Value = Option<f64>> {
    proptest::option::weighted(0.8, (0..max).prop_map(|x| x as f64 / 100.0))
}

fn case() -> impl Strategy<Value = Case> {
    let light = (
        0..SPAN_S,
        quality_level(),
        proptest::option::weighted(0.9, any::<bool>()),
        hundredths(10_000),
        hundredths(25_000),
        hundredths(1_000_000),
        proptest::option::weighted(0.2, prop_oneof![Just("E01"), Just("E17")]),
    )
        .prop_map(|(offset, q, lamp_on, dim_pct, power_w, energy_kwh, fault)| {
            let light = Streetlight {
                lamp_on,
                dim_pct,
                power_w,
                energy_kwh,
                voltage_v: None,
                current_a: None,
                fault: fault.map(String::from),
            };
            (offset, q, light)
        });
    let rain = (0..SPAN_S, quality_level(), 0..2_000i64, proptest::option::weighted(0.7, 60..900i32))
        .prop_map(|(offset, q, mm, interval)| (offset, q, mm as f64 / 100.0, interval));
    (proptest::collection::vec(light, 1..150), proptest::collection::vec(rain, 1..150))
        .prop_map(|(lights, rain)| Case { lights, rain })
}

fn close(a: &[Option<f64>], b: &[Option<f64>]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| match (x, y) {
            (Some(x), Some(y)) => (x - y).abs() <= 1e-9 * x.abs().max(1.0),
            (None, None) => true,
            _ => false,
        })
}

async fn check(store: &Store, client: &Client, n: usize, case: &Case) -> anyhow::Result<()> {
    let base = day_start(4);
    let (light_id, rain_id) = (format!("sl-{n}"), format!("rg-{n}"));
    let at = |offset: i64| base + Duration::seconds(offset);
    let mut readings: Vec<Reading> = case
        .lights
        .iter()
        .map(|(offset, q, light)| Reading {
            sensor_id: light_id.clone(),
            ts: at(*offset),
            values: Values::Streetlight(light.clone()),
            quality: quality(*q),
        })
        .collect();
    readings.extend(case.rain.iter().map(|(offset, q, rain_mm, interval_s)| Reading {
        sensor_id: rain_id.clone(),
        ts: at(*offset),
        values: Values::Rainfall { rain_mm: *rain_mm, interval_s: *interval_s },
        quality: quality(*q),
    }));
    // Three batches, the middle one delivered twice: rollups must count each
    // stored reading once.
    let third = readings.len().div_ceil(3);
    let chunks: Vec<&[Reading]> = readings.chunks(third).collect();
    for chunk in chunks.iter().chain(chunks.get(1)) {
        store.write(&Batch { readings: chunk.to_vec(), ..Batch::default() }).await?;
    }
    // TimescaleDB: what a refresh policy materialised between batches shows
    // later rows after the next refresh (native: a no-op).
    store.refresh_rollups().await?;

    let streetlight_columns = [Field::LampOn, Field::DimPct, Field::PowerW, Field::EnergyKwh];
    let targets: [(&str, Kind, &[Field]); 2] = [
        (&light_id, Kind::Streetlight, &streetlight_columns),
        (&rain_id, Kind::Rainfall, &[Field::RainMm, Field::IntervalS]),
    ];
    for (sensor, kind, columns) in targets {
        for step in [60, 300, 3_600, 10_800, 86_400] {
            let rolled = Buckets::covering(base, at(SPAN_S), step);
            assert_ne!(rolled.source, Source::Raw);
            let raw = Buckets { source: Source::Raw, ..rolled };
            for agg in Agg::ALL {
                let from_rollup = series::read_buckets(client, sensor, kind, agg, columns, &rolled).await?;
                let from_raw = series::read_buckets(client, sensor, kind, agg, columns, &raw).await?;
                assert_eq!(from_rollup.t, from_raw.t);
                for field in columns {
                    let (a, b) = (from_rollup.columns.get(field.name()), from_raw.columns.get(field.name()));
                    anyhow::ensure!(
                        close(a.unwrap(), b.unwrap()),
                        "{kind} {field} agg={} step={step}: rollup {a:?} raw {b:?}",
                        agg.as_str()
                    );
                }
            }
        }
        if kind == Kind::Streetlight {
            // Fault codes: counted only.
            let rolled = Buckets::covering(base, at(SPAN_S), 3_600);
            let raw = Buckets { source: Source::Raw, ..rolled };
            let a = series::read_buckets(client, sensor, kind, Agg::Count, &[Field::Fault], &rolled).await?;
            let b = series::read_buckets(client, sensor, kind, Agg::Count, &[Field::Fault], &raw).await?;
            anyhow::ensure!(a.columns == b.columns, "fault counts: rollup {:?} raw {:?}", a.columns, b.columns);
        }
    }

    // The public entry point picks the rollup for a step it tiles.
    let query = params(&[("from", &rfc(base)), ("to", &rfc(at(SPAN_S))), ("step", "1h"), ("columns", "rain_mm")]);
    let series = series::query(client, &rain_id, Kind::Rainfall, &query, Utc::now()).await?;
    anyhow::ensure!(series.source == Source::Hour && series.t.len() == 72, "{series:?}");
    Ok(())
}

#[test]
fn rollups_agree_with_raw_aggregation() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Runtime::new()?;
    let db = runtime.block_on(database())?;
    let store = Store::new(StoreConfig::new(&db.url))?;
    let client = runtime.block_on(db.client())?;
    let mut runner = TestRunner::new(Config { cases: 6, failure_persistence: None, ..Config::default() });
    let n = std::sync::atomic::AtomicUsize::new(0);
    runner
        .run(&case(), |case| {
            let n = n.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            runtime.block_on(check(&store, &client, n, &case)).map_err(|e| TestCaseError::fail(format!("{e:#}")))
        })
        .map_err(|e| anyhow::anyhow!("{e}"))
        .context("rollups against raw aggregation")
}
