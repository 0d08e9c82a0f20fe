//! A shared-subscription member that dies and never returns does not strand
//! its share: Mosquitto keeps queuing a dead member's share to its session
//! for as long as the session lives (here an hour), and a survivor takes that
//! session over, stores what was queued through the normal pipeline, and
//! ends it. With takeover switched off, the same run leaves readings missing.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, Utc};
use citygauge_testkit::{database, eventually, metric, wait_ready, BinaryDaemon, Broker, Publisher, TestDatabase};
use common::{base_time, free_addr, publish_paced, wait_count};

const SENSORS: usize = 20;
/// Readings published before the kill (both members busy), and in all.
const BEFORE: usize = 300;
const TOTAL: usize = 1_500;
/// Long, as in production: the dead member's session outlives the test.
const SESSION_EXPIRY_S: &str = "3600";
const COUNT: &str = "SELECT count(*) FROM water_level WHERE sensor_id LIKE 'or-wl-%'";

fn message(t0: DateTime<Utc>, i: usize) -> (String, String) {
    let sensor = format!("or-wl-{:03}", i % SENSORS);
    let ts = t0 + chrono::Duration::seconds((i / SENSORS) as i64);
    (format!("city/water_level/{sensor}"), format!(r#"{{"ts":"{}","level_m":1.5}}"#, ts.to_rfc3339()))
}

async fn publish_range(
    publisher: &mut Publisher,
    t0: DateTime<Utc>,
    range: std::ops::Range<usize>,
) -> anyhow::Result<()> {
    publish_paced(publisher, range, Duration::from_millis(20), |i| message(t0, i)).await
}

/// `citygauge ingest` in the shared group `orphans`.
fn member(
    broker: &Broker,
    db: &TestDatabase,
    id: &str,
    http: SocketAddr,
    protocol: &str,
    takeover: bool,
    drain_idle_ms: &str,
) -> anyhow::Result<BinaryDaemon> {
    let args: Vec<String> = [
        "--mqtt-url",
        &broker.url(),
        "--database-url",
        &db.url,
        "--mqtt-client-id",
        id,
        "--http-listen",
        &http.to_string(),
        "--mqtt-protocol",
        protocol,
        "--mqtt-shared-group",
        "orphans",
        "--mqtt-session-expiry-s",
        SESSION_EXPIRY_S,
        "--orphan-takeover",
        if takeover { "true" } else { "false" },
        "--orphan-drain-idle-ms",
        drain_idle_ms,
        "--flush-interval-ms",
        "20",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    BinaryDaemon::start(Path::new(env!("CARGO_BIN_EXE_citygauge")), &args)
}

struct Run {
    db: TestDatabase,
    broker: Broker,
    survivor: BinaryDaemon,
    http_b: SocketAddr,
    publisher: Publisher,
    t0: DateTime<Utc>,
}

/// Two members; both take a share of `BEFORE` readings; `a` is SIGKILLed
/// and the rest is published at once (a's will reaches the survivor while
/// the broker still routes to a's session).
async fn kill_one_member(protocol: &str, takeover: bool, drain_idle_ms: &str) -> anyhow::Result<Run> {
    let db = database().await?;
    let broker = Broker::start().await?;
    let (http_a, http_b) = (free_addr()?, free_addr()?);
    let mut a = member(&broker, &db, "orphan-a", http_a, protocol, takeover, drain_idle_ms)?;
    wait_ready(http_a).await?;
    let survivor = member(&broker, &db, "orphan-b", http_b, protocol, takeover, drain_idle_ms)?;
    wait_ready(http_b).await?;

    let t0 = base_time();
    let mut publisher = Publisher::connect(broker.port(), "orphan-publisher").await?;
    publish_range(&mut publisher, t0, 0..BEFORE).await?;
    wait_count(&db, COUNT, BEFORE as i64).await?;
    assert!(metric(http_a, "citygauge_ingest_messages_received_total").await? > 0.0, "a had its share");
    a.kill()?; // SIGKILL: the broker publishes a's will
    publish_range(&mut publisher, t0, BEFORE..TOTAL).await?;
    publisher.wait_acked(Duration::from_secs(30)).await?;
    Ok(Run { db, broker, survivor, http_b, publisher, t0 })
}

async fn survivor_drains_the_dead_members_share(protocol: &str) -> anyhow::Result<()> {
    // Every part kept alive to the end (an unbound field would stop the broker).
    let Run { db, broker: _broker, mut survivor, http_b, publisher: _publisher, .. } =
        kill_one_member(protocol, true, "500").await?;
    // Every reading the broker acknowledged is stored, those queued to the
    // dead member's session included...
    let waited = wait_count(&db, COUNT, TOTAL as i64).await;
    let drained = metric(http_b, "citygauge_ingest_orphan_messages_drained_total").await?;
    waited.map_err(|e| anyhow::anyhow!("{e} (messages drained from a's session: {drained})"))?;
    // ...which really held some: the survivor stored them from there.
    assert!(drained > 0.0, "the dead member's session held part of the stream");
    eventually("the drained session ended", Duration::from_secs(30), || async {
        Ok((metric(http_b, "citygauge_ingest_orphan_sessions_drained_total").await? >= 1.0).then_some(()))
    })
    .await?;
    // Exactly once: nothing more arrives, nothing twice (the key forbids it).
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(db.count(COUNT).await?, TOTAL as i64);
    assert!(survivor.terminate()?.success());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_survivor_drains_a_dead_members_share_v5() -> anyhow::Result<()> {
    survivor_drains_the_dead_members_share("5").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_survivor_drains_a_dead_members_share_v311() -> anyhow::Result<()> {
    survivor_drains_the_dead_members_share("3.1.1").await
}

/// The same run with takeover off: the dead member's share stays queued to
/// its session (for the hour it lives), so readings the broker acknowledged
/// are missing. Proves the run above exercises a real gap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_takeover_a_dead_members_share_is_stranded() -> anyhow::Result<()> {
    let Run { db, broker: _broker, mut survivor, http_b, publisher: _publisher, .. } =
        kill_one_member("5", false, "500").await?;
    // Wait until the survivor has stored everything it will get: the count
    // stops moving for two seconds (a minute at most).
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let mut last = -1;
    let stored = loop {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let now = db.count(COUNT).await?;
        if now == last || std::time::Instant::now() >= deadline {
            break now;
        }
        last = now;
    };
    assert!(stored < TOTAL as i64, "some of the stream stays stranded in the dead session: {stored} of {TOTAL}");
    assert_eq!(metric(http_b, "citygauge_ingest_orphan_messages_drained_total").await?, 0.0);
    assert!(survivor.terminate()?.success());
    Ok(())
}

/// The dead member comes back while a survivor still holds its session (a
/// long drain idle time keeps it there): the member's CONNECT takes the
/// session over, the survivor stops without reconnecting as it, and the
/// member gets its share again (it subscribes anew: the survivor had
/// removed the session's subscriptions). Nothing is lost or stored twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_that_comes_back_takes_its_session_from_the_survivor() -> anyhow::Result<()> {
    let Run { db, broker, mut survivor, http_b, mut publisher, t0 } = kill_one_member("5", true, "600000").await?;
    wait_count(&db, COUNT, TOTAL as i64).await?;
    assert!(metric(http_b, "citygauge_ingest_orphan_messages_drained_total").await? > 0.0, "b drained a's share");

    let http_a = free_addr()?;
    let mut a = member(&broker, &db, "orphan-a", http_a, "5", true, "600000")?;
    wait_ready(http_a).await?;
    eventually("the survivor to give the session back", Duration::from_secs(30), || async {
        Ok((metric(http_b, "citygauge_ingest_orphan_drains_interrupted_total").await? >= 1.0).then_some(()))
    })
    .await?;
    let more = TOTAL + 600;
    publish_range(&mut publisher, t0, TOTAL..more).await?;
    publisher.wait_acked(Duration::from_secs(30)).await?;
    wait_count(&db, COUNT, more as i64).await?;
    assert!(metric(http_a, "citygauge_ingest_messages_received_total").await? > 0.0, "a has its share again");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(db.count(COUNT).await?, more as i64);
    assert_eq!(metric(http_b, "citygauge_ingest_orphan_drains_interrupted_total").await?, 1.0, "b let go once");
    assert_eq!(metric(http_b, "citygauge_ingest_orphan_sessions_drained_total").await?, 0.0);
    assert!(a.terminate()?.success());
    assert!(survivor.terminate()?.success());
    Ok(())
}

/// The survivor is stopped (SIGTERM) while it still holds the dead member's
/// session: it stops cleanly and leaves the session (with its expiry) to the
/// member, which finds its subscriptions gone and restores them. The
/// stopped survivor's own session still gets its share of the group: after
/// the grace for restarts, the member takes that one over in turn. Nothing
/// is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_survivor_stopped_mid_drain_leaves_the_session_to_its_member() -> anyhow::Result<()> {
    let Run { db, broker, mut survivor, http_b, mut publisher, t0 } = kill_one_member("5", true, "600000").await?;
    wait_count(&db, COUNT, TOTAL as i64).await?;
    assert!(metric(http_b, "citygauge_ingest_orphan_messages_drained_total").await? > 0.0, "b drained a's share");
    assert!(survivor.terminate()?.success(), "b stops cleanly while draining");

    let http_a = free_addr()?;
    let mut a = member(&broker, &db, "orphan-a", http_a, "5", true, "600000")?;
    wait_ready(http_a).await?;
    let more = TOTAL + 300;
    publish_range(&mut publisher, t0, TOTAL..more).await?;
    publisher.wait_acked(Duration::from_secs(30)).await?;
    wait_count(&db, COUNT, more as i64).await?;
    assert_eq!(
        metric(http_a, "citygauge_ingest_messages_received_total").await?,
        300.0,
        "a got the stream: its own share, and b's share from b's session"
    );
    assert!(metric(http_a, "citygauge_ingest_orphan_messages_drained_total").await? > 0.0, "a drained b's session");
    assert!(a.terminate()?.success());
    Ok(())
}
