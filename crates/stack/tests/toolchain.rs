//! The real machine's toolchain, as the other tests and `citygauge dev` see it.

use citygauge_stack::{ensure_installed, Toolchain, MIN_PG_MAJOR};

#[test]
fn discovers_postgres_with_postgis_and_mosquitto_2() {
    let toolchain = Toolchain::discover().unwrap_or_else(|e| panic!("{e}"));
    assert!(toolchain.pg_major() >= MIN_PG_MAJOR);
    assert!(toolchain.pg_tool("initdb").is_file());
    assert!(toolchain.pg_tool("psql").is_file());
    assert!(toolchain.mosquitto().is_file());
    assert!(toolchain.mosquitto_version().starts_with("2."));
}

#[test]
fn ensure_installed_installs_nothing_when_all_is_there() {
    // With everything installed this must not touch apt at all.
    assert_eq!(ensure_installed().unwrap(), Toolchain::discover().unwrap());
}
