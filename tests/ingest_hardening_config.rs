//! Issue 8's options as an operator writes them in the configuration file:
//! `senml_sources` bindings and the timestamp window reach the daemon, and a
//! mistake fails at start naming the option.

use std::process::Command;

fn ingest_with(file: &str) -> String {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("citygauge.toml");
    std::fs::write(&path, file).expect("config written");
    let out = Command::new(env!("CARGO_BIN_EXE_citygauge"))
        .args(["--config", path.to_str().expect("utf-8 path"), "ingest", "--http-listen", "127.0.0.1:0"])
        .env("CITYGAUGE_LOG", "warn")
        .output()
        .expect("runs");
    assert!(!out.status.success(), "a bad option must stop the daemon at start");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn window_and_source_bindings_from_the_file_are_checked_at_start() {
    // Two bindings, each a list of sensors separated by spaces; the second is
    // not a binding, and the message names it (so the list was read item by item).
    let stderr = ingest_with(
        "senml_sources = [\"city/senml/gw-7=kh-aq-* kh-wl-0001\", \"city/senml/gw-8\"]\nmqtt_url = \"mqtt://127.0.0.1:1\"\n",
    );
    assert!(stderr.contains("--senml-sources") && stderr.contains("`city/senml/gw-8`"), "{stderr}");
    assert!(!stderr.contains("gw-7"), "the good binding is accepted: {stderr}");

    let stderr = ingest_with("max_future_s = 60\n");
    assert!(stderr.contains("--max-future-s") && stderr.contains("--future-tolerance-s"), "{stderr}");
    let stderr = ingest_with("max_backfill_days = 0\n");
    assert!(stderr.contains("max-backfill-days"), "{stderr}");
}
