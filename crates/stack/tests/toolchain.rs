//! The real machine's toolchain, as the other tests and `citygauge dev` see it.

use citygauge_stack::{ensure_installed, listening, setup, SystemServices, Toolchain, DEFAULT_PORTS, MIN_PG_MAJOR};

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

/// After `citygauge setup` nothing of Debian's answers where the default URLs
/// point (the harness's own servers use ports >= 10000), and a second run
/// finds nothing left to do. Like `setup` itself (deploy/test.sh runs it
/// first), this stops and disables Debian's services unless told to keep them.
#[test]
fn setup_leaves_the_default_ports_to_us() {
    if std::env::var_os("CITYGAUGE_KEEP_SYSTEM_SERVICES").is_some_and(|v| !v.is_empty() && v != "false") {
        eprintln!("skipped: CITYGAUGE_KEEP_SYSTEM_SERVICES is set");
        return;
    }
    let first = setup(SystemServices::Disable).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(first.services.failed, Vec::<String>::new(), "{}", first.services);
    assert_eq!(first.services.still_listening, Vec::<u16>::new(), "{}", first.services);
    for port in DEFAULT_PORTS {
        assert!(!listening(port), "something listens on 127.0.0.1:{port} after setup");
    }
    let again = setup(SystemServices::Disable).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(again.services.actions, Vec::new(), "setup is not idempotent: {}", again.services);
}
