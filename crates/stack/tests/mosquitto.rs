//! Real Mosquitto brokers in throwaway dirs, driven with mosquitto_pub and
//! mosquitto_sub (Debian package mosquitto-clients).

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use citygauge_stack::{throwaway_dir, Mosquitto, MosquittoOptions, StackError, Toolchain};

fn toolchain() -> Toolchain {
    Toolchain::discover().unwrap_or_else(|e| panic!("the stack's packages are missing: {e}"))
}

fn client(program: &str, broker: &Mosquitto) -> Command {
    let mut cmd = Command::new(program);
    cmd.args(["-h", "127.0.0.1", "-p", &broker.port().to_string()]);
    cmd
}

/// Creates a persistent session `id` subscribed to `topic` at QoS 1, then
/// disconnects, so the broker queues what is published meanwhile.
fn create_session(broker: &Mosquitto, id: &str, topic: &str) {
    let status = client("mosquitto_sub", broker)
        .args(["-c", "-i", id, "-q", "1", "-t", topic, "-E"])
        .status()
        .expect("mosquitto_sub (Debian package mosquitto-clients) must be installed");
    assert!(status.success());
}

/// Publishes `messages` at QoS 1, one per line, over a single connection.
fn publish(broker: &Mosquitto, topic: &str, messages: &[String]) {
    let mut publisher =
        client("mosquitto_pub", broker).args(["-q", "1", "-t", topic, "-l"]).stdin(Stdio::piped()).spawn().unwrap();
    let mut stdin = publisher.stdin.take().unwrap();
    for message in messages {
        writeln!(stdin, "{message}").unwrap();
    }
    drop(stdin);
    assert!(publisher.wait().unwrap().success());
}

/// Resumes session `id` and returns the first `expected` messages it receives.
fn receive(broker: &Mosquitto, id: &str, topic: &str, expected: usize) -> Vec<String> {
    let Output { stdout, .. } = client("mosquitto_sub", broker)
        .args(["-c", "-i", id, "-q", "1", "-t", topic])
        .args(["-C", &expected.to_string(), "-W", "20"])
        .output()
        .unwrap();
    String::from_utf8(stdout).unwrap().lines().map(str::to_owned).collect()
}

fn readings(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("reading {i}")).collect()
}

#[test]
fn publishes_and_subscribes() {
    let dir = throwaway_dir("cg-mqtt-pubsub-").unwrap();
    let broker = Mosquitto::start(&toolchain(), MosquittoOptions::new(dir.path().join("mqtt"))).unwrap();
    assert_eq!(broker.url(), format!("mqtt://127.0.0.1:{}", broker.port()));

    let mut subscriber = client("mosquitto_sub", &broker)
        .args(["-t", "city/#", "-C", "1", "-W", "10", "-v"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    // The subscriber may not have subscribed yet: publish until it got one.
    // (Its single line of output fits the pipe, so it never blocks on it.)
    let mut rounds = 0;
    while subscriber.try_wait().unwrap().is_none() {
        rounds += 1;
        assert!(rounds < 100, "the subscriber received nothing");
        let status = client("mosquitto_pub", &broker).args(["-t", "city/flood/level", "-m", "42"]).status().unwrap();
        assert!(status.success());
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut received = String::new();
    subscriber.stdout.take().unwrap().read_to_string(&mut received).unwrap();
    assert_eq!(received.trim(), "city/flood/level 42");
    let log = std::fs::read_to_string(broker.log_path()).unwrap();
    assert!(log.contains("New client connected"), "{log}");
}

#[test]
fn restart_keeps_a_persistent_sessions_queue_beyond_the_default_limit() {
    // More than the default max_queued_messages (1000), which would drop the rest.
    const N: usize = 2_500;
    let dir = throwaway_dir("cg-mqtt-restart-").unwrap();
    let mut broker = Mosquitto::start(&toolchain(), MosquittoOptions::new(dir.path().join("mqtt"))).unwrap();
    let port = broker.port();
    create_session(&broker, "cg-ingest", "city/readings/#");
    let sent = readings(N);
    publish(&broker, "city/readings/station-1", &sent);

    broker.restart().unwrap();
    assert_eq!(broker.port(), port);
    assert!(broker.data_dir().join("mosquitto.db").is_file());

    let received = receive(&broker, "cg-ingest", "city/readings/#", N);
    assert_eq!(received.len(), N);
    assert_eq!(received.into_iter().collect::<BTreeSet<_>>(), sent.into_iter().collect::<BTreeSet<_>>());
}

#[test]
fn kill_then_restart_keeps_autosaved_messages() {
    const N: usize = 200;
    let dir = throwaway_dir("cg-mqtt-kill-").unwrap();
    let mut broker = Mosquitto::start(&toolchain(), MosquittoOptions::new(dir.path().join("mqtt"))).unwrap();
    let port = broker.port();
    create_session(&broker, "cg-ingest", "city/readings/#");
    publish(&broker, "city/readings/station-2", &readings(N));
    // autosave_interval 1 saves within about two seconds.
    std::thread::sleep(Duration::from_millis(3_500));

    broker.kill().unwrap();
    assert!(!broker.is_running());
    broker.restart().unwrap();
    assert_eq!(broker.port(), port);
    assert_eq!(receive(&broker, "cg-ingest", "city/readings/#", N).len(), N);
}

#[test]
fn a_new_start_reuses_the_recorded_port() {
    let toolchain = toolchain();
    let dir = throwaway_dir("cg-mqtt-port-").unwrap();
    let data_dir = dir.path().join("mqtt");
    let broker = Mosquitto::start(&toolchain, MosquittoOptions::new(&data_dir)).unwrap();
    let (port, pid) = (broker.port(), broker.pid().unwrap());
    drop(broker);
    assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists());

    let broker = Mosquitto::start(&toolchain, MosquittoOptions::new(&data_dir)).unwrap();
    assert_eq!(broker.port(), port);
}

#[test]
fn an_explicit_port_in_use_is_reported() {
    let squatter = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = squatter.local_addr().unwrap().port();
    let dir = throwaway_dir("cg-mqtt-taken-").unwrap();
    let mut options = MosquittoOptions::new(dir.path().join("mqtt"));
    options.port = Some(port);
    let err = Mosquitto::start(&toolchain(), options).unwrap_err();
    assert!(matches!(err, StackError::PortInUse { port: p, .. } if p == port), "{err}");
}
