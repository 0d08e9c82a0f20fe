//! Issue 8, "bounded by what a publisher can send": the daemon's memory is
//! bounded in bytes, not only in messages. While PostgreSQL stalls, large
//! payloads and SenML packs keep coming, many times the held-payload budget;
//! the daemon stops reading from the broker once the budget is exhausted, its
//! peak RSS stays under the documented bound, and after the stall every valid
//! reading is stored (nothing is lost, even if the broker dropped the paused
//! connection meanwhile).
//!
//! The bound: RSS before the stall + `held_payload_budget_bytes` + one
//! message (`max_payload_bytes`) + [`ALLOWANCE`] for what is not counted in
//! the budget (decoded batches, rumqttc's read buffer and its few parsed
//! packets, allocator slack).

mod common;

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use chrono::{DateTime, Utc};
use citygauge_testkit::{eventually, metric, wait_ready, Broker, Cluster, Publisher};
use common::base_time;
use common::process::{postgres_processes, scopeguard};
use serde_json::json;

const MIB: u64 = 1024 * 1024;
const MAX_PAYLOAD_BYTES: usize = 512 * 1024;
const BUDGET_BYTES: u64 = 8 * MIB;
/// Measured (2026-11-30, 2 busy cores): with this 8 MiB budget the peak RSS
/// grew 9-16 MiB over the baseline during the stall and 21-25 MiB by the end
/// of the catch-up after it (MQTT 3.1.1 and 5), so at most 16 MiB of the
/// allowance is used. With the budget set to 1 TiB (as if there were none)
/// the same stream grew it by 72-74 MiB during the stall, and the test fails.
const ALLOWANCE: u64 = 32 * MIB;

/// Canonical water levels padded with JSON whitespace to near
/// `max_payload_bytes`: one reading each.
const BIG: usize = 128;
/// SenML packs of air quality readings, about half `max_payload_bytes`; each
/// comes with a large payload that is not JSON (rejected, kept cut).
const PACKS: usize = 16;
const PACK_RECORDS: usize = 6_000;

fn big_level(ts: DateTime<Utc>) -> String {
    let head = format!(r#"{{"ts":"{}","level_m":1.5"#, ts.to_rfc3339());
    format!("{head}{}}}", " ".repeat(MAX_PAYLOAD_BYTES - 64 - head.len()))
}

fn pack(t0: DateTime<Utc>, p: usize) -> String {
    let mut records =
        vec![json!({"bn": "kh-aq-0002/", "bt": t0.timestamp(), "bu": "ug/m3", "n": "pm2_5", "v": 20.0, "t": p * 100})];
    records
        .extend((1..PACK_RECORDS).map(|i| json!({"n": "pm2_5", "v": 20.0, "t": p as f64 * 100.0 + i as f64 * 0.01})));
    serde_json::Value::Array(records).to_string()
}

/// RSS now and its peak, in bytes, from /proc.
fn rss(pid: u32) -> anyhow::Result<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let field = |name: &str| -> anyhow::Result<u64> {
        let line = status.lines().find(|l| l.starts_with(name)).ok_or_else(|| anyhow::anyhow!("no {name}"))?;
        let kb: u64 = line.split_whitespace().nth(1).ok_or_else(|| anyhow::anyhow!("{line}"))?.parse()?;
        Ok(kb * 1024)
    };
    Ok((field("VmRSS:")?, field("VmHWM:")?))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_stays_bounded_while_the_database_stalls_mqtt_5() -> anyhow::Result<()> {
    bounded_through_a_stall("5").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_stays_bounded_while_the_database_stalls_mqtt_3_1_1() -> anyhow::Result<()> {
    bounded_through_a_stall("3.1.1").await
}

async fn bounded_through_a_stall(protocol: &str) -> anyhow::Result<()> {
    let cluster = Cluster::start().await?;
    let store = citygauge_store::Store::new(citygauge_store::StoreConfig::new(cluster.url()))?;
    store
        .import_sensors(&citygauge_domain::registry::file::parse("test.geojson", common::REGISTRY.as_bytes())?)
        .await?;
    let broker = Broker::start().await?;
    let http: SocketAddr = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let client_id = format!("bounded-{}", protocol.replace('.', ""));
    let budget = BUDGET_BYTES.to_string();
    let max_payload = MAX_PAYLOAD_BYTES.to_string();
    let mut daemon = Daemon(
        Command::new(env!("CARGO_BIN_EXE_citygauge"))
            .arg("ingest")
            .args(["--mqtt-url", &broker.url(), "--database-url", &cluster.url(), "--mqtt-client-id", &client_id])
            .args(["--mqtt-protocol", protocol, "--http-listen", &http.to_string(), "--flush-interval-ms", "20"])
            .args(["--max-payload-bytes", &max_payload, "--held-payload-budget-bytes", &budget])
            // The broker drops a client it has not heard from in 1.5 keep-alives:
            // the stall below is longer, so the paused connection is usually
            // lost too, and the counts must stay exact through that.
            .args(["--mqtt-keep-alive-s", "5"])
            .env("CITYGAUGE_LOG", "error")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()?,
    );
    let pid = daemon.0.id();
    wait_ready(http).await?;

    // Warm up every path the stall will take, then take the baseline.
    let t0 = base_time();
    let mut publisher = Publisher::connect(broker.port(), &format!("{client_id}-publisher")).await?;
    publisher.publish("city/water_level/kh-wl-0001", big_level(t0 - chrono::Duration::minutes(30))).await?;
    publisher.publish("city/senml/gw-1", pack(t0 - chrono::Duration::minutes(50), 0)).await?;
    publisher.publish("city/water_level/kh-wl-0001", "x".repeat(MAX_PAYLOAD_BYTES - 64)).await?;
    publisher.wait_acked(Duration::from_secs(30)).await?;
    let stored = |sql: &'static str, want: i64| {
        let url = cluster.url();
        async move {
            eventually(sql, Duration::from_secs(120), || async {
                Ok((citygauge_testkit::count(&url, sql).await? >= want).then_some(()))
            })
            .await
        }
    };
    stored("SELECT count(*) FROM air_quality", PACK_RECORDS as i64).await?;
    stored("SELECT count(*) FROM rejected_messages", 1).await?;
    stored("SELECT count(*) FROM water_level", 1).await?;
    let (baseline, _) = rss(pid)?;

    // Stall PostgreSQL: the postmaster first, then its backends.
    let postmaster = cluster.postgres.pid().expect("running");
    let signal = |sig: &str, pid: u32| {
        Command::new("kill").arg(sig).arg("--").arg(pid.to_string()).stderr(Stdio::null()).status()
    };
    assert!(signal("-STOP", postmaster)?.success());
    let pids = postgres_processes(postmaster)?;
    for &pid in &pids[1..] {
        signal("-STOP", pid)?;
    }
    let resume = scopeguard(move || {
        for &pid in &pids {
            let _ = signal("-CONT", pid);
        }
    });

    // Many times the budget, interleaved: big payloads, packs and junk.
    let mut sent = 0u64;
    for i in 0..BIG {
        publisher.publish("city/water_level/kh-wl-0001", big_level(t0 + chrono::Duration::seconds(i as i64))).await?;
        sent += MAX_PAYLOAD_BYTES as u64;
        if i % (BIG / PACKS) == 0 {
            let p = i / (BIG / PACKS) + 1; // 1..=PACKS
            publisher.publish("city/senml/gw-1", pack(t0, p)).await?;
            publisher.publish("city/water_level/kh-wl-0001", "x".repeat(MAX_PAYLOAD_BYTES - 64)).await?;
            sent += 2 * MAX_PAYLOAD_BYTES as u64;
        }
    }
    publisher.wait_acked(Duration::from_secs(60)).await?;
    assert!(sent >= 10 * BUDGET_BYTES);
    // The daemon has read until the budget ran out, and stopped there.
    let held = eventually("the budget exhausted", Duration::from_secs(30), || async {
        let held = metric(http, "citygauge_ingest_held_payload_bytes").await?;
        Ok((held >= BUDGET_BYTES as f64).then_some(held))
    })
    .await?;
    assert!(held < (BUDGET_BYTES + 2 * MAX_PAYLOAD_BYTES as u64) as f64, "held {held} bytes");
    // Past 1.5 keep-alives: the broker may drop the connection that is not read.
    tokio::time::sleep(Duration::from_secs(10)).await;
    let bound = baseline + BUDGET_BYTES + MAX_PAYLOAD_BYTES as u64 + ALLOWANCE;
    let within_bound = |when: &str| -> anyhow::Result<()> {
        let (_, peak) = rss(pid)?;
        anyhow::ensure!(
            peak <= bound,
            "{when}: peak RSS {} MiB over the bound {} MiB (baseline {} MiB, {} MiB published during the stall)",
            peak / MIB,
            bound / MIB,
            baseline / MIB,
            sent / MIB
        );
        Ok(())
    };
    within_bound("during the stall")?;

    drop(resume);
    // Every valid reading stored, every junk payload rejected.
    stored("SELECT count(*) FROM water_level", 1 + BIG as i64).await?;
    stored("SELECT count(*) FROM air_quality", ((PACKS + 1) * PACK_RECORDS) as i64).await?;
    // (Rejected messages of one topic are sampled when kept, but all counted.)
    let rejected = metric(http, "citygauge_ingest_rejected_messages_total").await?;
    assert!(rejected >= (1 + PACKS) as f64, "{rejected} rejections counted");
    let paused = metric(http, "citygauge_ingest_held_payload_paused_seconds_total").await?;
    assert!(paused > 0.0, "the MQTT loop paused ({paused} s)");
    // A pause past 1.5 keep-alives usually loses the connection (the broker
    // then redelivers what was unacked), but not always: whether it did is
    // the broker's timing, so it is not asserted. Either way the counts below
    // must be exact (the fault tests check reconnects themselves).
    // Catching up, the budget holds too.
    within_bound("after the stall")?;
    // Exactly once, whatever was redelivered after the connection was lost.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(citygauge_testkit::count(&cluster.url(), "SELECT count(*) FROM water_level").await?, 1 + BIG as i64);
    daemon.terminate()
}

/// The daemon process, killed if the test fails.
struct Daemon(Child);

impl Daemon {
    fn terminate(&mut self) -> anyhow::Result<()> {
        Command::new("kill").args(["-TERM", &self.0.id().to_string()]).status()?;
        let status = self.0.wait()?;
        anyhow::ensure!(status.success(), "the daemon exited with {status}");
        Ok(())
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
