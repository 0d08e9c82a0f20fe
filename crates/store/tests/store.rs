//! The store against a real PostgreSQL: migrations, partitions, the batch
//! writer's exactly-once rule, rain counters, registry import.

use std::collections::BTreeSet;

use chrono::{DateTime, Duration, DurationRound, Utc};
use citygauge_domain::registry::file;
use citygauge_domain::{CounterReading, Kind, NewSensor, Quality, Reading, RejectReason, Values};
use citygauge_store::{partitions, Backend, Batch, Store, StoreConfig, StoreError};
use citygauge_testkit::database;

fn level(sensor: &str, ts: DateTime<Utc>, level_m: f64) -> Reading {
    Reading { sensor_id: sensor.into(), ts, values: Values::WaterLevel { level_m }, quality: Quality::default() }
}

fn hour_ago() -> DateTime<Utc> {
    (Utc::now() - Duration::hours(1)).duration_trunc(Duration::minutes(1)).unwrap()
}

#[tokio::test]
async fn migrations_are_idempotent_and_refuse_a_newer_schema() -> anyhow::Result<()> {
    let db = database().await?;
    let store = Store::new(StoreConfig::new(&db.url))?;
    let report = store.migrate().await?;
    assert!(report.applied.is_empty(), "the template was migrated already");
    assert_eq!(report.version, citygauge_store::migrate::latest_version());
    assert_eq!(db.count("SELECT count(*) FROM schema_migrations").await?, citygauge_store::MIGRATIONS.len() as i64);

    db.client()
        .await?
        .batch_execute("INSERT INTO schema_migrations (version, name, checksum) VALUES (999, 'future', 'x')")
        .await?;
    match store.migrate().await {
        Err(StoreError::SchemaTooNew { found: 999, .. }) => Ok(()),
        other => panic!("expected SchemaTooNew, got {other:?}"),
    }
}

#[tokio::test]
async fn duplicates_of_stored_rows_are_skipped_not_failed() -> anyhow::Result<()> {
    let db = database().await?;
    let store = Store::new(StoreConfig::new(&db.url))?;
    let t = hour_ago();
    let first =
        Batch { readings: vec![level("s1", t, 1.0), level("s1", t + Duration::seconds(60), 1.1)], ..Batch::default() };
    let report = store.write(&first).await?;
    assert_eq!((report.stored(), report.duplicates), (2, 0));

    // A redelivery overlapping what is stored, with an in-batch duplicate too.
    let again = Batch {
        readings: vec![
            level("s1", t, 9.9),
            level("s1", t + Duration::seconds(120), 1.2),
            level("s1", t + Duration::seconds(120), 1.3),
        ],
        ..Batch::default()
    };
    let report = store.write(&again).await?;
    assert_eq!((report.stored(), report.duplicates), (1, 2));
    assert_eq!(report.stored_by_kind[Kind::WaterLevel as usize], 1);
    let client = db.client().await?;
    let first_wins: f64 = client.query_one("SELECT level_m FROM water_level WHERE ts = $1", &[&t]).await?.get(0);
    assert_eq!(first_wins, 1.0, "the stored reading is kept");
    assert_eq!(db.count("SELECT count(*) FROM water_level").await?, 3);
    Ok(())
}

/// Native partitioning or TimescaleDB, whichever this machine's PostgreSQL
/// has: the same writes, each backend's own promises checked.
#[tokio::test]
async fn time_partitioning_follows_the_backend() -> anyhow::Result<()> {
    let db = database().await?;
    let store = Store::new(StoreConfig::new(&db.url))?;
    match store.backend().await? {
        Backend::Native => native_partitions(&db, &store).await,
        Backend::TimescaleDb => timescale_hypertables(&db, &store).await,
    }
}

async fn timescale_hypertables(db: &citygauge_testkit::TestDatabase, store: &Store) -> anyhow::Result<()> {
    let (old, backfill) = (Utc::now() - Duration::days(500), Utc::now() - Duration::days(20));
    let batch = Batch { readings: vec![level("s1", old, 1.0), level("s1", backfill, 1.0)], ..Batch::default() };
    store.write(&batch).await?;
    assert_eq!(db.count("SELECT count(*) FROM water_level").await?, 2);
    assert_eq!(
        db.count("SELECT count(*) FROM timescaledb_information.chunks WHERE hypertable_name = 'water_level'").await?,
        2,
        "one day chunk per day written"
    );
    let job = |proc: &str| {
        format!("SELECT count(*) FROM timescaledb_information.jobs WHERE hypertable_name = 'water_level' AND proc_name = '{proc}'")
    };
    assert_eq!(db.count(&job("policy_compression")).await?, 1);
    assert_eq!(db.count(&job("policy_retention")).await?, 0, "kept forever unless configured");
    let mut config = StoreConfig::new(&db.url);
    config.retention.insert(Kind::WaterLevel, Duration::days(30));
    Store::new(config)?.maintain(Utc::now()).await?;
    assert_eq!(db.count(&job("policy_retention")).await?, 1);
    Ok(())
}

async fn native_partitions(db: &citygauge_testkit::TestDatabase, store: &Store) -> anyhow::Result<()> {
    // Older than the window partitions are made for: lands in the default partition.
    let old = Utc::now() - Duration::days(500);
    store.write(&Batch { readings: vec![level("s1", old, 1.0)], ..Batch::default() }).await?;
    assert_eq!(db.count("SELECT count(*) FROM water_level_default").await?, 1);
    // Backfill 20 days ago: the write makes no DDL (it would queue writers
    // behind its locks); the row waits in the default partition until the
    // wanted day's partition is made, off the write path.
    let backfill = Utc::now() - Duration::days(20);
    store.write(&Batch { readings: vec![level("s1", backfill, 1.0)], ..Batch::default() }).await?;
    let day = partitions::partition_name("water_level", backfill.date_naive());
    assert_eq!(db.count("SELECT count(*) FROM water_level_default").await?, 2);
    assert!(store.partitions_wanted());
    assert_eq!(store.make_wanted_partitions().await?, 1);
    assert!(!store.partitions_wanted());
    assert_eq!(db.count(&format!("SELECT count(*) FROM {day}")).await?, 1);
    assert_eq!(db.count("SELECT count(*) FROM water_level_default").await?, 1);

    // Making the old day's partition moves its row out of the default one.
    let mut client = tokio_postgres::connect(&db.url, tokio_postgres::NoTls).await.map(|(c, conn)| {
        tokio::spawn(conn);
        c
    })?;
    let created = partitions::ensure_days(&mut client, "water_level", &BTreeSet::from([old.date_naive()])).await?;
    assert_eq!(created, 1);
    assert_eq!(db.count("SELECT count(*) FROM water_level_default").await?, 0);
    assert_eq!(db.count("SELECT count(*) FROM water_level").await?, 2);

    // Retention drops whole days past it, and old stray rows.
    let dropped = partitions::drop_expired(&mut client, "water_level", Duration::days(30), Utc::now()).await?;
    assert_eq!(dropped, [partitions::partition_name("water_level", old.date_naive())]);
    assert_eq!(db.count("SELECT count(*) FROM water_level").await?, 1);
    Ok(())
}

#[tokio::test]
async fn counters_become_intervals_across_batches() -> anyhow::Result<()> {
    let db = database().await?;
    let store = Store::new(StoreConfig::new(&db.url))?;
    let t = hour_ago();
    let counter = |minutes: i64, counter_mm: f64| CounterReading {
        sensor_id: "rg".into(),
        ts: t + Duration::minutes(minutes),
        counter_mm,
        quality: Quality::default(),
    };
    store.write(&Batch { counters: vec![counter(0, 50.0)], ..Batch::default() }).await?;
    assert_eq!(db.count("SELECT count(*) FROM rainfall").await?, 0, "the first value only sets the state");
    let report =
        store.write(&Batch { counters: vec![counter(20, 54.5), counter(10, 52.0)], ..Batch::default() }).await?;
    assert_eq!(report.stored(), 2);
    let client = db.client().await?;
    let rows = client.query("SELECT rain_mm, interval_s FROM rainfall ORDER BY ts", &[]).await?;
    let got: Vec<(f64, i32)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(got, [(2.0, 600), (2.5, 600)]);
    // A value older than the stored state cannot become an interval: kept, with a reason.
    let report =
        store.write(&Batch { counters: vec![counter(5, 51.0), counter(20, 54.5)], ..Batch::default() }).await?;
    assert_eq!((report.stored(), report.rejected, report.duplicates), (0, 1, 1));
    let reason: String = client.query_one("SELECT reason FROM rejected_messages", &[]).await?.get(0);
    assert_eq!(reason, RejectReason::CounterOutOfOrder.as_str());
    Ok(())
}

#[tokio::test]
async fn import_upserts_and_takes_euis_from_pending_sensors() -> anyhow::Result<()> {
    let db = database().await?;
    let store = Store::new(StoreConfig::new(&db.url))?;
    // A LoRaWAN device that reported before it was registered.
    let pending = NewSensor {
        id: "lora-70b3d57ed0001234".into(),
        kind: Kind::FloodDepth,
        dev_eui: Some("70b3d57ed0001234".into()),
        device_profile: Some("flood-radar-v1".into()),
    };
    store.write(&Batch { new_sensors: vec![pending], ..Batch::default() }).await?;
    let csv = "id,kind,name,lon,lat,dev_eui,device_profile,threshold.alert_cm\n\
               kh-fd-0007,flood_depth,Jiuru Rd underpass,120.33,22.63,70B3D57ED0001234,flood-radar-v1,10\n";
    let records = file::parse("sensors.csv", csv.as_bytes())?;
    let report = store.import_sensors(&records).await?;
    assert_eq!((report.inserted, report.updated, report.superseded), (1, 0, 1));
    let again = store.import_sensors(&records).await?;
    assert_eq!((again.inserted, again.updated), (0, 1));

    let client = db.client().await?;
    let row = client
        .query_one("SELECT status, ST_X(location), thresholds->>'alert_cm' FROM sensors WHERE id = 'kh-fd-0007'", &[])
        .await?;
    assert_eq!(
        (row.get::<_, String>(0), row.get::<_, f64>(1), row.get::<_, String>(2)),
        ("active".into(), 120.33, "10".into())
    );
    let old = client.query_one("SELECT status, dev_eui FROM sensors WHERE id = 'lora-70b3d57ed0001234'", &[]).await?;
    assert_eq!((old.get::<_, String>(0), old.get::<_, Option<String>>(1)), ("retired".into(), None));
    let registry = store.load_registry().await?;
    assert_eq!(registry.by_dev_eui("70b3d57ed0001234").map(|s| s.id.as_str()), Some("kh-fd-0007"));
    Ok(())
}

#[tokio::test]
async fn the_loaded_registry_knows_the_aliases_the_file_gave() -> anyhow::Result<()> {
    use citygauge_domain::registry::NamedSensor;
    let db = database().await?;
    let store = Store::new(StoreConfig::new(&db.url))?;
    // A list in GeoJSON, a `|`-separated cell in CSV: both are stored as given.
    let csv = "id,kind,lon,lat,aliases\n\
               kh-aq-0201,air_quality,120.30,22.62,urn:dev:ow:10e2073a01080063|airbox-77\n";
    let records = file::parse("sensors.csv", csv.as_bytes())?;
    assert_eq!(records[0].aliases(), ["urn:dev:ow:10e2073a01080063", "airbox-77"]);
    store.import_sensors(&records).await?;
    let registry = store.load_registry().await?;
    for name in ["urn:dev:ow:10e2073a01080063", "airbox-77"] {
        match registry.lookup_name(name, &[]) {
            NamedSensor::Registered(sensor) => assert_eq!(sensor.id, "kh-aq-0201", "{name}"),
            _ => panic!("{name} does not resolve to kh-aq-0201"),
        }
    }
    Ok(())
}

#[tokio::test]
async fn a_database_error_names_the_servers_reason() -> anyhow::Result<()> {
    let db = database().await?;
    let store = Store::new(StoreConfig::new(&db.url))?;
    let client = store.client().await?;
    let error = client.batch_execute("SELECT * FROM no_such_table").await.unwrap_err();
    let shown = citygauge_store::StoreError::Postgres(error).to_string();
    assert!(shown.contains("42P01") && shown.contains("no_such_table"), "{shown}");
    Ok(())
}

/// A plain connection of the test's own, beside the store's pool.
async fn raw_client(url: &str) -> anyhow::Result<tokio_postgres::Client> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    Ok(client)
}

#[tokio::test]
async fn every_connection_bounds_its_statements_and_lock_waits() -> anyhow::Result<()> {
    let db = database().await?;
    let mut config = StoreConfig::new(&db.url);
    config.statement_timeout = Some(std::time::Duration::from_millis(700));
    config.lock_timeout = Some(std::time::Duration::from_millis(300));
    let store = Store::new(config)?;
    let client = store.client().await?;
    let shown: String = client.query_one("SHOW statement_timeout", &[]).await?.get(0);
    assert_eq!(shown, "700ms");
    let shown: String = client.query_one("SHOW lock_timeout", &[]).await?.get(0);
    assert_eq!(shown, "300ms");
    let slow = StoreError::Postgres(client.batch_execute("SELECT pg_sleep(10)").await.unwrap_err());
    assert_eq!(
        (slow.sqlstate().map(|c| c.code()), slow.class()),
        (Some("57014"), citygauge_store::ErrorClass::Transient)
    );
    drop(client);

    // A write behind a lock that is never released fails, transiently, in
    // about lock_timeout; without it the write would wait for ever.
    let mut holder = raw_client(&db.url).await?;
    let held = holder.transaction().await?;
    held.batch_execute("LOCK TABLE water_level IN ACCESS EXCLUSIVE MODE").await?;
    let started = std::time::Instant::now();
    let batch = Batch { readings: vec![level("s1", hour_ago(), 1.0)], ..Batch::default() };
    let error = tokio::time::timeout(std::time::Duration::from_secs(10), store.write(&batch))
        .await
        .expect("the write waits at most lock_timeout")
        .unwrap_err();
    assert_eq!(error.sqlstate().map(|c| c.code()), Some("55P03"), "{error}");
    assert!(error.is_transient());
    assert!(started.elapsed() < std::time::Duration::from_secs(3), "{:?}", started.elapsed());
    held.rollback().await?;
    store.write(&Batch { readings: vec![level("s1", hour_ago(), 1.0)], ..Batch::default() }).await?;
    Ok(())
}

/// Partition DDL needs an ACCESS EXCLUSIVE lock on the default partition;
/// while it waits for it, writers into that partition queue behind it. It
/// gives up after its own lock_timeout (and is retried later), so they wait
/// that long at most.
#[tokio::test]
async fn partition_ddl_never_holds_writers_up_for_long() -> anyhow::Result<()> {
    let db = database().await?;
    let mut config = StoreConfig::new(&db.url);
    config.ddl_lock_timeout = std::time::Duration::from_millis(1_500);
    let store = std::sync::Arc::new(Store::new(config)?);
    if store.backend().await? != Backend::Native {
        return Ok(());
    }
    let backfill = Utc::now() - Duration::days(20);
    store.write(&Batch { readings: vec![level("s1", backfill, 1.0)], ..Batch::default() }).await?;
    assert!(store.partitions_wanted());

    // A long transaction writing into the default partition (a slow backfill).
    let mut holder = raw_client(&db.url).await?;
    let held = holder.transaction().await?;
    held.batch_execute("LOCK TABLE water_level_default IN ROW EXCLUSIVE MODE").await?;

    let ddl = tokio::spawn({
        let store = store.clone();
        async move {
            let started = std::time::Instant::now();
            (store.make_wanted_partitions().await, started.elapsed())
        }
    });
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    // Another backfilled day, into the default partition: queued behind the
    // DDL's lock request until the DDL gives up.
    let started = std::time::Instant::now();
    let other_day = Utc::now() - Duration::days(21);
    tokio::time::timeout(
        std::time::Duration::from_secs(10),
        store.write(&Batch { readings: vec![level("s1", other_day, 1.0)], ..Batch::default() }),
    )
    .await
    .expect("the writer is not held up indefinitely")?;
    assert!(started.elapsed() < std::time::Duration::from_secs(4), "{:?}", started.elapsed());

    let (made, waited) = ddl.await?;
    let error = made.unwrap_err();
    assert!(error.is_transient() && matches!(error, StoreError::Partition(_)), "{error}");
    assert!(waited < std::time::Duration::from_secs(4), "{waited:?}");
    assert!(store.partitions_wanted(), "the day is tried again later");

    held.commit().await?;
    assert_eq!(store.make_wanted_partitions().await?, 2);
    assert_eq!(db.count("SELECT count(*) FROM water_level_default").await?, 0);
    assert_eq!(db.count("SELECT count(*) FROM water_level").await?, 2);
    Ok(())
}
