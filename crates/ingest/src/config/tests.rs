use super::*;
use clap::Parser;

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    ingest: IngestConfig,
}

#[test]
fn defaults_are_valid_and_shared_groups_wrap_filters() {
    let cli = Cli::try_parse_from(["x", "--mqtt-shared-group", "ingest"]).unwrap();
    cli.ingest.validate().unwrap();
    assert_eq!(cli.ingest.subscriptions()[0], "$share/ingest/city/#");
}

#[test]
fn mistakes_name_the_option() {
    let err = |args: &[&str]| {
        let mut argv = vec!["x"];
        argv.extend_from_slice(args);
        match Cli::try_parse_from(argv) {
            Err(e) => e.to_string(),
            Ok(cli) => cli.ingest.validate().unwrap_err().to_string(),
        }
    };
    assert!(err(&["--mqtt-url", "http://x"]).contains("--mqtt-url"));
    assert!(err(&["--city-timezone", "Mars/Olympus"]).contains("--city-timezone"));
    assert!(err(&["--batch-max-rows", "0"]).contains("--batch-max-rows"));
    assert!(err(&["--retention-days", "lava=3"]).contains("--retention-days"));
    assert!(err(&["--mqtt-protocol", "4"]).contains("--mqtt-protocol"));
    assert!(err(&["--max-future-s", "60"]).contains("--max-future-s"));
    assert!(err(&["--max-backfill-days", "0"]).contains("--max-backfill-days"));
    assert!(err(&["--senml-sources", "city/senml/gw-7"]).contains("--senml-sources"));
    assert!(err(&["--senml-sources", "city/#/x=kh-aq-*"]).contains("--senml-sources"));
    assert!(err(&["--db-ddl-lock-timeout-ms", "0"]).contains("--db-ddl-lock-timeout-ms"));
    assert!(err(&["--db-lock-timeout-ms", "500"]).contains("--db-ddl-lock-timeout-ms"));
    assert!(err(&["--held-payload-budget-bytes", "1000"]).contains("--held-payload-budget-bytes"));
    assert!(err(&["--held-payload-budget-bytes", "0"]).contains("--held-payload-budget-bytes"));
}

#[test]
fn database_timeouts_reach_every_connection() {
    let store = Cli::try_parse_from(["x"]).unwrap().ingest.store_config();
    assert_eq!(store.statement_timeout, Some(Duration::from_secs(60)));
    assert_eq!(store.lock_timeout, Some(Duration::from_secs(10)));
    assert_eq!(store.ddl_lock_timeout, Duration::from_secs(1));
    let store = Cli::try_parse_from(["x", "--db-statement-timeout-ms", "0", "--db-lock-timeout-ms", "0"])
        .unwrap()
        .ingest
        .store_config();
    assert_eq!((store.statement_timeout, store.lock_timeout), (None, None), "0: the server's setting");
}

#[test]
fn window_spike_and_senml_options_reach_the_normaliser() {
    let cli = Cli::try_parse_from([
        "x",
        "--max-backfill-days",
        "7",
        "--max-future-s",
        "600",
        "--spike-rebaseline-after",
        "5",
        "--senml-urn-prefixes",
        "urn:dev:city:,urn:dev:org:32473-",
        "--senml-sources",
        "city/senml/gw-7=kh-aq-* kh-wl-0001,city/senml/gw-8=kh-rg-*",
    ])
    .unwrap();
    let config = cli.ingest.normalise_config().unwrap();
    assert_eq!(config.quality.max_backfill, chrono::Duration::days(7));
    assert_eq!(config.quality.max_future, chrono::Duration::seconds(600));
    assert_eq!(config.quality.spike_rebaseline_after, 5);
    assert_eq!(config.urn_prefixes, ["urn:dev:city:", "urn:dev:org:32473-"]);
    let allowed = config.senml_sources.for_topic("city/senml/gw-8").unwrap();
    assert!(allowed.permits(&config.senml_sources, "kh-rg-0001"));
    assert!(!allowed.permits(&config.senml_sources, "kh-aq-0001"));

    let defaults = Cli::try_parse_from(["x"]).unwrap().ingest.normalise_config().unwrap();
    assert_eq!(defaults.quality.max_backfill, chrono::Duration::days(30));
    assert_eq!(defaults.urn_prefixes, ["urn:dev:city:"]);
    assert!(defaults.senml_sources.is_empty());
}

#[test]
fn the_default_packet_limit_follows_the_payload_limit_with_mqtt_5() {
    let parse = |args: &[&str]| {
        let mut argv = vec!["x"];
        argv.extend_from_slice(args);
        Cli::try_parse_from(argv).unwrap().ingest
    };
    assert_eq!(parse(&[]).max_packet_bytes(), 256 * 1024 + 64 * 1024);
    assert_eq!(parse(&["--max-payload-bytes", "1000000"]).max_packet_bytes(), 1_000_000 + 64 * 1024);
    assert_eq!(parse(&["--mqtt-max-packet-bytes", "5000"]).max_packet_bytes(), 5000);
    // 3.1.1 cannot tell the broker: a refused packet would break the
    // connection again and again.
    assert_eq!(parse(&["--mqtt-protocol", "3.1.1"]).max_packet_bytes(), 4 * 1024 * 1024);
    assert_eq!(parse(&[]).held_payload_budget_bytes, 64 * 1024 * 1024);
}

#[test]
fn secrets_stay_out_of_debug_and_tls_files_are_checked_at_start() {
    let cli = Cli::try_parse_from([
        "x",
        "--mqtt-username",
        "u",
        "--mqtt-password",
        "hunter2",
        "--database-url",
        "postgres://u:hunter3@db/city",
        "--database-password",
        "hunter4",
    ])
    .unwrap();
    let shown = format!("{:?}", cli.ingest);
    for secret in ["hunter2", "hunter3", "hunter4"] {
        assert!(!shown.contains(secret), "{shown}");
    }
    assert_eq!(cli.ingest.mqtt_password().unwrap().as_deref(), Some("hunter2"));
    let err = |args: &[&str]| {
        let argv = std::iter::once("x").chain(args.iter().copied());
        match Cli::try_parse_from(argv) {
            Err(e) => e.to_string(),
            Ok(cli) => cli.ingest.validate().unwrap_err().to_string(),
        }
    };
    assert!(err(&["--mqtt-ca-file", "/x"]).contains("mqtts://"));
    assert!(err(&["--mqtt-url", "mqtts://b", "--mqtt-ca-file", "/nonexistent/ca.pem"])
        .contains("--mqtt-ca-file /nonexistent/ca.pem"));
    assert!(err(&["--mqtt-password-file", "/nonexistent/pw"]).contains("--mqtt-password-file"));
    assert!(err(&["--mqtt-url", "mqtts://b", "--mqtt-client-cert-file", "/x"]).contains("--mqtt-client-key-file"));
    let tls = Cli::try_parse_from(["x", "--mqtt-url", "mqtts://b"]).unwrap().ingest;
    assert!(tls.mqtt_tls().unwrap().is_some(), "public CAs without --mqtt-ca-file");
}

#[test]
fn unknown_sensor_options_reach_the_normaliser() {
    let defaults = Cli::try_parse_from(["x"]).unwrap().ingest.normalise_config().unwrap();
    assert_eq!((defaults.unknown_sensors, defaults.max_pending_sensors), (UnknownSensors::Pending, 1_000));
    let cli = Cli::try_parse_from(["x", "--unknown-sensors", "reject", "--max-pending-sensors", "20"]).unwrap().ingest;
    let config = cli.normalise_config().unwrap();
    assert_eq!((config.unknown_sensors, config.max_pending_sensors), (UnknownSensors::Reject, 20));
    assert!(Cli::try_parse_from(["x", "--unknown-sensors", "drop"]).is_err());
}

#[test]
fn mqtt_urls() {
    assert_eq!(parse_mqtt_url("mqtt://127.0.0.1:1884").unwrap(), ("127.0.0.1".into(), 1884));
    assert_eq!(parse_mqtt_url("mqtt://broker").unwrap(), ("broker".into(), 1883));
    assert!(parse_mqtt_url("mqtts://broker").is_err());
    assert_eq!(mqtt_endpoint("mqtts://broker").unwrap(), ("broker".into(), 8883, true));
    assert_eq!(mqtt_endpoint("ssl://[::1]:9883").unwrap(), ("::1".into(), 9883, true));
    assert!(mqtt_endpoint("http://broker").unwrap_err().to_string().contains("--mqtt-url"));
}
