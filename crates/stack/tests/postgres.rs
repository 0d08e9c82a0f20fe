//! Real PostgreSQL clusters in throwaway dirs: queries, PostGIS, restarts
//! and crashes. Each test has its own cluster and port, so they run in
//! parallel.

use std::process::{Command, Stdio};

use citygauge_stack::{throwaway_dir, Postgres, PostgresOptions, StackError, Toolchain};

fn toolchain() -> Toolchain {
    Toolchain::discover().unwrap_or_else(|e| panic!("the stack's packages are missing: {e}"))
}

fn count(pg: &Postgres, table: &str) -> i64 {
    pg.psql("citygauge", &format!("SELECT count(*) FROM {table}")).unwrap().trim().parse().unwrap()
}

#[test]
fn runs_queries_with_postgis_on_loopback() {
    let dir = throwaway_dir("cg-pg-query-").unwrap();
    let options = PostgresOptions::new(dir.path().join("pg"), "citygauge");
    let pg = Postgres::start(&toolchain(), options).unwrap();

    assert_eq!(pg.psql("citygauge", "SELECT 1 + 1").unwrap().trim(), "2");
    let postgis = pg.psql("citygauge", "SELECT postgis_version()").unwrap();
    assert!(postgis.starts_with('3'), "unexpected PostGIS version {postgis:?}");
    let point = pg.psql("citygauge", "SELECT ST_AsText(ST_SetSRID(ST_MakePoint(4.9, 52.37), 4326))").unwrap();
    assert_eq!(point.trim(), "POINT(4.9 52.37)");

    // Our settings are in force.
    let show = |setting: &str| pg.psql("postgres", &format!("SHOW {setting}")).unwrap();
    assert_eq!(show("listen_addresses").trim(), "127.0.0.1");
    assert_eq!(show("fsync").trim(), "on");
    assert_eq!(show("synchronous_commit").trim(), "on");
    assert_eq!(show("port").trim(), pg.port().to_string());
    assert_eq!(show("data_directory").trim(), pg.data_dir().to_str().unwrap());

    assert_eq!(
        pg.connection_string("citygauge"),
        format!("host=127.0.0.1 port={} user=postgres dbname=citygauge", pg.port())
    );
    assert_eq!(pg.url("citygauge"), format!("postgres://postgres@127.0.0.1:{}/citygauge", pg.port()));
    assert!(pg.log_path().is_file());
}

#[test]
fn restart_keeps_data_and_port() {
    let dir = throwaway_dir("cg-pg-restart-").unwrap();
    let options = PostgresOptions::new(dir.path().join("pg"), "citygauge");
    let mut pg = Postgres::start(&toolchain(), options).unwrap();
    let port = pg.port();
    pg.psql("citygauge", "CREATE TABLE readings AS SELECT g AS id FROM generate_series(1, 500) g").unwrap();

    pg.restart().unwrap();
    assert_eq!(pg.port(), port);
    assert_eq!(count(&pg, "readings"), 500);

    // stop() is idempotent and restart() also starts a stopped server.
    pg.stop().unwrap();
    pg.stop().unwrap();
    assert!(!pg.is_running());
    pg.restart().unwrap();
    assert_eq!(pg.port(), port);
    assert_eq!(count(&pg, "readings"), 500);
}

#[test]
fn kill_then_start_again_recovers_committed_data() {
    let toolchain = toolchain();
    let dir = throwaway_dir("cg-pg-kill-").unwrap();
    let data_dir = dir.path().join("pg");
    let mut pg = Postgres::start(&toolchain, PostgresOptions::new(&data_dir, "citygauge")).unwrap();
    let port = pg.port();
    pg.psql("citygauge", "CREATE TABLE readings (id int)").unwrap();
    pg.psql("citygauge", "INSERT INTO readings VALUES (1)").unwrap();

    // A busy client whose backend is orphaned by the kill: the next start
    // must wait for it to let go of the old shared memory.
    let mut busy = Command::new(toolchain.pg_tool("psql"))
        .args(["-X", "-d", &pg.connection_string("citygauge")])
        .args(["-c", "SELECT pg_sleep(60)"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    while pg
        .psql("postgres", "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep%'")
        .unwrap()
        .trim()
        == "0"
    {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }

    pg.kill().unwrap();
    assert!(!pg.is_running());
    assert!(data_dir.join("postmaster.pid").exists(), "a crash leaves the pid file");
    pg.restart().unwrap();
    assert_eq!(pg.port(), port);
    assert_eq!(count(&pg, "readings"), 1);
    let _ = busy.kill();
    let _ = busy.wait();

    // Crash again, forget the handle, and start anew from the data dir: the
    // recorded port is reused and committed rows survive.
    pg.psql("citygauge", "INSERT INTO readings VALUES (2)").unwrap();
    pg.kill().unwrap();
    drop(pg);
    let pg = Postgres::start(&toolchain, PostgresOptions::new(&data_dir, "citygauge")).unwrap();
    assert_eq!(pg.port(), port);
    assert_eq!(count(&pg, "readings"), 2);
}

#[test]
fn databases_are_created_from_templates() {
    let dir = throwaway_dir("cg-pg-template-").unwrap();
    let options = PostgresOptions::new(dir.path().join("pg"), "citygauge");
    let pg = Postgres::start(&toolchain(), options).unwrap();
    pg.psql("citygauge", "CREATE TABLE stations (name text); INSERT INTO stations VALUES ('dam')").unwrap();

    pg.create_database("test 1", Some("citygauge")).unwrap();
    let copied = pg.psql("test 1", "SELECT name FROM stations").unwrap();
    assert_eq!(copied.trim(), "dam");
    assert!(pg.psql("test 1", "SELECT postgis_version()").is_ok());
    assert!(pg.connection_string("test 1").ends_with("dbname='test 1'"));
    assert!(pg.url("test 1").ends_with("/test%201"));

    let err = pg.create_database("test 1", None).unwrap_err();
    assert!(err.to_string().contains("already exists"), "{err}");
    let err = pg.psql("citygauge", "SELECT * FROM nowhere").unwrap_err();
    assert!(err.to_string().contains("does not exist"), "{err}");
}

#[test]
fn a_running_cluster_is_not_started_twice_and_drop_stops_it() {
    let toolchain = toolchain();
    let dir = throwaway_dir("cg-pg-twice-").unwrap();
    let data_dir = dir.path().join("pg");
    let pg = Postgres::start(&toolchain, PostgresOptions::new(&data_dir, "citygauge")).unwrap();
    let pid = pg.pid().unwrap();

    let err = Postgres::start(&toolchain, PostgresOptions::new(&data_dir, "citygauge")).unwrap_err();
    assert!(matches!(err, StackError::AlreadyRunning { pid: p, .. } if p == pid), "{err}");

    drop(pg);
    assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists(), "postmaster {pid} still running after drop");
}

#[test]
fn an_explicit_port_in_use_is_reported() {
    let squatter = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = squatter.local_addr().unwrap().port();
    let dir = throwaway_dir("cg-pg-port-").unwrap();
    let mut options = PostgresOptions::new(dir.path().join("pg"), "citygauge");
    options.port = Some(port);
    let err = Postgres::start(&toolchain(), options).unwrap_err();
    assert!(matches!(err, StackError::PortInUse { port: p, .. } if p == port), "{err}");
}
