//! Transport security, through the real binary: readings arrive over
//! `mqtts://` (CA checked, password from a file) and are stored over a
//! `verify-full` TLS connection (password from a file); no password ever
//! reaches the log; a certificate from the wrong CA is refused with a
//! message naming the option; the query service honours `sslmode` too.
//!
//! The PostgreSQL role used here may log in over TLS with its password
//! only (pg_hba `hostnossl ... reject`), so a stored row is proof of both.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use citygauge_testkit::{
    enable_postgres_tls, eventually, http_get, wait_ready, Cluster, LoggedProcess, Publisher, TestPki, TlsBroker,
};
use common::{base_time, free_addr};

const ROLE: &str = "citygauge_tls";
const MQTT_USER: &str = "gauge-gateway";

struct Tls {
    pki: TestPki,
    cluster: Cluster,
    broker: TlsBroker,
    db_password: String,
    mqtt_password: String,
    db_password_file: PathBuf,
    mqtt_password_file: PathBuf,
}

/// A TLS-only role on a cluster of our own, a TLS broker, passwords in files.
async fn setup() -> anyhow::Result<Tls> {
    let pki = TestPki::generate()?;
    let cluster = Cluster::start().await?;
    let nonce = format!("{}{}", std::process::id(), chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0));
    let (db_password, mqtt_password) = (format!("db-secret-{nonce}"), format!("mqtt-secret-{nonce}"));
    enable_postgres_tls(&cluster, &pki, ROLE, &db_password).await?;
    let broker = TlsBroker::start(&pki, MQTT_USER, &mqtt_password)?;
    let store = citygauge_store::Store::new(citygauge_store::StoreConfig::new(cluster.url()))?;
    let records = citygauge_domain::registry::file::parse("test.geojson", common::REGISTRY.as_bytes())?;
    store.import_sensors(&records).await?;
    // Mounted secrets usually end with a newline; it is not part of the password.
    let db_password_file = pki.dir.path().join("db-password");
    std::fs::write(&db_password_file, format!("{db_password}\n"))?;
    let mqtt_password_file = pki.dir.path().join("mqtt-password");
    std::fs::write(&mqtt_password_file, format!("{mqtt_password}\n"))?;
    Ok(Tls { pki, cluster, broker, db_password, mqtt_password, db_password_file, mqtt_password_file })
}

impl Tls {
    /// The TLS role's connection string; `localhost` is the certificate's name.
    fn db_url(&self, sslmode: &str) -> String {
        format!("host=localhost port={} user={ROLE} dbname=citygauge sslmode={sslmode}", self.cluster.postgres.port())
    }

    fn daemon_args(&self, http: SocketAddr, db_ca: &Path, mqtt_ca: &Path) -> Vec<String> {
        let args = [
            ("--mqtt-url", self.broker.tls_url()),
            ("--mqtt-ca-file", path(mqtt_ca)),
            ("--mqtt-username", MQTT_USER.into()),
            ("--mqtt-password-file", path(&self.mqtt_password_file)),
            ("--mqtt-client-id", "tls-daemon".into()),
            ("--database-url", self.db_url("verify-full")),
            ("--database-ca-file", path(db_ca)),
            ("--database-password-file", path(&self.db_password_file)),
            ("--http-listen", http.to_string()),
            ("--flush-interval-ms", "20".into()),
        ];
        std::iter::once("ingest".to_string()).chain(args.into_iter().flat_map(|(k, v)| [k.to_string(), v])).collect()
    }

    async fn count(&self, sql: &str) -> anyhow::Result<i64> {
        citygauge_testkit::count(&self.cluster.url(), sql).await
    }

    /// Connections of `application_name` LIKE `app`, by whether they use TLS.
    async fn tls_connections(&self, app: &str) -> anyhow::Result<(i64, i64)> {
        let sql = |ssl: bool| {
            format!(
                "SELECT count(*) FROM pg_stat_ssl JOIN pg_stat_activity USING (pid)
                 WHERE usename = '{ROLE}' AND application_name LIKE '{app}' AND ssl = {ssl}"
            )
        };
        Ok((self.count(&sql(true)).await?, self.count(&sql(false)).await?))
    }
}

fn path(p: &Path) -> String {
    p.display().to_string()
}

fn binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_citygauge"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readings_over_mqtts_are_stored_over_tls_and_no_password_is_logged() -> anyhow::Result<()> {
    let tls = setup().await?;
    let http = free_addr()?;
    let mut daemon = LoggedProcess::start(binary(), &tls.daemon_args(http, &tls.pki.ca, &tls.pki.ca), &[])?;
    if let Err(e) = wait_ready(http).await {
        anyhow::bail!("{e}\n{}", daemon.output());
    }
    let (tls_conns, plain_conns) = tls.tls_connections("citygauge%").await?;
    assert!(tls_conns > 0 && plain_conns == 0, "TLS {tls_conns}, plain {plain_conns}\n{}", daemon.output());

    let mut publisher = Publisher::connect(tls.broker.plain_port, "tls-publisher").await?;
    let t0 = base_time();
    for i in 0..20 {
        let ts = (t0 + chrono::Duration::seconds(i)).to_rfc3339();
        publisher.publish("city/water_level/kh-wl-0001", format!(r#"{{"ts":"{ts}","level_m":1.5}}"#)).await?;
    }
    publisher.wait_acked(Duration::from_secs(10)).await?;
    let stored = eventually("20 readings stored", Duration::from_secs(30), || async {
        let n = tls.count("SELECT count(*) FROM water_level WHERE sensor_id = 'kh-wl-0001'").await?;
        Ok((n >= 20).then_some(n))
    })
    .await;
    assert!(stored.is_ok(), "{stored:?}\n{}", daemon.output());
    assert!(daemon.terminate()?.success(), "{}", daemon.output());

    let output = daemon.output();
    assert!(output.contains("mqtt: connected"), "{output}");
    for secret in [&tls.db_password, &tls.mqtt_password] {
        assert!(!output.contains(secret.as_str()), "a password reached the log:\n{output}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_from_another_ca_is_refused_naming_the_option() -> anyhow::Result<()> {
    let tls = setup().await?;

    // The database's: nothing to retry, the daemon stops and says which file.
    let mut daemon =
        LoggedProcess::start(binary(), &tls.daemon_args(free_addr()?, &tls.pki.other_ca, &tls.pki.ca), &[])?;
    let mut status = None;
    for _ in 0..300 {
        status = daemon.exited()?;
        if status.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let output = daemon.output();
    assert!(status.is_some_and(|s| !s.success()), "{status:?}\n{output}");
    assert!(output.contains("--database-ca-file"), "{output}");
    assert!(output.contains("certificate"), "{output}");

    // The broker's: never connected, never ready, and the log names the option.
    let http = free_addr()?;
    let daemon = LoggedProcess::start(binary(), &tls.daemon_args(http, &tls.pki.ca, &tls.pki.other_ca), &[])?;
    let named = eventually("the log to name --mqtt-ca-file", Duration::from_secs(30), || async {
        Ok(daemon.output().contains("--mqtt-ca-file").then_some(()))
    })
    .await;
    let output = daemon.output();
    assert!(named.is_ok(), "{output}");
    assert!(!output.contains("mqtt: connected"), "{output}");
    if let Ok((status, _)) = http_get(http, "/readyz").await {
        assert_ne!(status, 200, "{output}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_query_service_honours_sslmode() -> anyhow::Result<()> {
    let tls = setup().await?;
    let (ca, password) = (path(&tls.pki.ca), path(&tls.db_password_file));
    let files = ["--database-ca-file", &ca, "--database-password-file", &password];

    // verify-full with the CA: ready, and every connection of it encrypted.
    let config = citygauge_testkit::query_config(&tls.db_url("verify-full"), &files)?;
    let query = citygauge_testkit::InProcessQuery::start(config).await?;
    let (status, _) = query.get("/api/v1/sensors").await?;
    assert_eq!(status, 200);
    let (tls_conns, plain_conns) = tls.tls_connections("citygauge-query%").await?;
    assert!(tls_conns > 0 && plain_conns == 0, "TLS {tls_conns}, plain {plain_conns}");
    query.stop().await?;

    // sslmode=disable is honoured too: this role may not log in without TLS.
    let config = citygauge_testkit::query_config(&tls.db_url("disable"), &files)?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let http = listener.local_addr()?;
    let stop = tokio_util::sync::CancellationToken::new();
    let task = tokio::spawn(citygauge_query::run(config, listener, stop.clone()));
    tokio::time::sleep(Duration::from_secs(3)).await;
    let ready = http_get(http, "/readyz").await.map(|(status, _)| status);
    assert!(!matches!(ready, Ok(200)), "ready without TLS: {ready:?}");
    stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
    Ok(())
}
