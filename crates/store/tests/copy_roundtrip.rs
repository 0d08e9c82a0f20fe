//! The writer's hand-written binary COPY against a real PostgreSQL: random
//! readings of every kind (nulls, extreme floats, odd text, quality reasons,
//! microsecond times) are stored and read back column by column, equal.

use chrono::{Duration, DurationRound, Utc};
use citygauge_domain::{AirQuality, Kind, Quality, QualityLevel, Reading, Streetlight, Values};
use citygauge_store::{Batch, Store, StoreConfig};
use citygauge_testkit::database;
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::TestRunner;

fn number() -> impl Strategy<Value = f64> {
    prop_oneof![
        Just(0.0),
        Just(-0.0),
        Just(f64::MAX),
        Just(f64::MIN_POSITIVE),
        -1e6f64..1e6,
        proptest::num::f64::NORMAL | proptest::num::f64::SUBNORMAL,
    ]
}

fn maybe() -> impl Strategy<Value = Option<f64>> {
    proptest::option::of(number())
}

fn values() -> impl Strategy<Value = Values> {
    let air = (maybe(), maybe(), maybe(), maybe(), maybe(), maybe(), maybe(), maybe()).prop_map(
        |(a, b, c, d, e, f, g, h)| {
            Values::AirQuality(AirQuality {
                pm2_5_ugm3: a,
                pm10_ugm3: b,
                o3_ppb: c,
                no2_ppb: d,
                co_ppm: e,
                so2_ppb: f,
                temp_c: g,
                rh_pct: h,
            })
        },
    );
    let light = (
        proptest::option::of(any::<bool>()),
        maybe(),
        maybe(),
        maybe(),
        maybe(),
        maybe(),
        proptest::option::of("\\PC{0,8}|[a-z\\x00]{0,4}"),
    )
        .prop_map(|(lamp_on, dim_pct, power_w, energy_kwh, voltage_v, current_a, fault)| {
            Values::Streetlight(Streetlight { lamp_on, dim_pct, power_w, energy_kwh, voltage_v, current_a, fault })
        });
    prop_oneof![
        (number(), proptest::option::of(any::<i32>()))
            .prop_map(|(rain_mm, interval_s)| Values::Rainfall { rain_mm, interval_s }),
        number().prop_map(|level_m| Values::WaterLevel { level_m }),
        number().prop_map(|depth_cm| Values::FloodDepth { depth_cm }),
        air,
        light,
    ]
}

fn reading() -> impl Strategy<Value = Reading> {
    (
        "[a-z0-9-]{1,12}|\\PC{1,6}",
        0i64..20 * 86_400_000_000,
        values(),
        proptest::collection::vec("[a-z_:0-9]{1,16}|\\PC{1,4}", 0..3),
    )
        .prop_map(|(sensor_id, micros_ago, values, reasons)| {
            let now = Utc::now().duration_trunc(Duration::microseconds(1)).unwrap();
            let level = if reasons.is_empty() { QualityLevel::Good } else { QualityLevel::Suspect };
            Reading {
                sensor_id,
                ts: now - Duration::microseconds(micros_ago),
                values,
                quality: Quality { level, reasons },
            }
        })
}

/// The row as stored: every column as text, PostgreSQL's own rendering.
async fn stored(client: &tokio_postgres::Client, kind: Kind) -> anyhow::Result<Vec<String>> {
    let columns: Vec<String> = kind.columns().iter().map(|f| format!("{}::text", f.name())).collect();
    let sql = format!(
        "SELECT concat_ws('|', sensor_id, (extract(epoch FROM ts) * 1000000)::bigint::text, {}, quality, \
         quality_reasons::text) FROM {} ORDER BY sensor_id, ts",
        columns.join(", "),
        kind.as_str()
    );
    Ok(client.query(&sql, &[]).await?.iter().map(|r| r.get::<_, String>(0)).collect())
}

/// The same row as the reading says it should be stored, rendered through a
/// text-format query of the same values (so float and array text match).
async fn expected(client: &tokio_postgres::Client, readings: &[&Reading], kind: Kind) -> anyhow::Result<Vec<String>> {
    let mut rows = Vec::new();
    for r in readings.iter().filter(|r| r.kind() == kind) {
        let mut parts = vec![r.sensor_id.clone(), r.ts.timestamp_micros().to_string()];
        for &field in kind.columns() {
            let text: Option<String> = match (&r.values, field) {
                (Values::Rainfall { interval_s, .. }, citygauge_domain::Field::IntervalS) => {
                    interval_s.map(|v| v.to_string())
                }
                (Values::Streetlight(s), citygauge_domain::Field::LampOn) => s.lamp_on.map(|b| b.to_string()),
                (Values::Streetlight(s), citygauge_domain::Field::Fault) => {
                    s.fault.as_ref().map(|f| f.replace('\0', "\u{FFFD}"))
                }
                (values, field) => match values.number(field) {
                    Some(v) => Some(client.query_one("SELECT $1::float8::text", &[&v]).await?.get(0)),
                    None => None,
                },
            };
            // concat_ws skips NULLs.
            parts.extend(text);
        }
        parts.push(r.quality.level.as_str().to_string());
        if !r.quality.reasons.is_empty() {
            parts.push(client.query_one("SELECT $1::text[]::text", &[&r.quality.reasons]).await?.get(0));
        }
        rows.push((r.sensor_id.clone(), r.ts, parts.join("|")));
    }
    rows.sort_by(|a, b| (a.0.as_bytes(), a.1).cmp(&(b.0.as_bytes(), b.1)));
    Ok(rows.into_iter().map(|(_, _, row)| row).collect())
}

#[tokio::test]
async fn random_readings_round_trip_through_binary_copy() -> anyhow::Result<()> {
    let db = database().await?;
    let store = Store::new(StoreConfig::new(&db.url))?;
    let client = db.client().await?;
    let mut runner = TestRunner::default();
    let batch_strategy = proptest::collection::vec(reading(), 150..250);
    let mut all: Vec<Reading> = Vec::new();
    for _ in 0..4 {
        let mut readings = batch_strategy.new_tree(&mut runner).map_err(anyhow::Error::msg)?.current();
        // One row per (sensor, time), and never one stored before.
        readings.retain(|r| !all.iter().any(|a| a.sensor_id == r.sensor_id && a.ts == r.ts));
        let mut keys = std::collections::HashSet::new();
        readings.retain(|r| keys.insert((r.sensor_id.clone(), r.ts)));
        let report = store.write(&Batch { readings: readings.clone(), ..Batch::default() }).await?;
        assert_eq!(report.stored(), readings.len() as u64);
        all.extend(readings);
    }
    let refs: Vec<&Reading> = all.iter().collect();
    for kind in Kind::ALL {
        let mut got = stored(&client, kind).await?;
        let mut want = expected(&client, &refs, kind).await?;
        // The database's collation orders ids; compare as sets of rows.
        got.sort();
        want.sort();
        assert_eq!(got, want, "{kind}");
    }
    Ok(())
}
