//! Servers must not outlive a test binary that is SIGKILLed (no Drop runs).
//!
//! The test re-runs this very binary as the "owner" process, which starts a
//! broker and a cluster and then waits; we SIGKILL the owner and expect the
//! servers to receive their parent-death signals and exit.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use citygauge_stack::{throwaway_dir, Mosquitto, MosquittoOptions, Postgres, PostgresOptions, Toolchain};

/// Set in the owner process to the directory it should use.
const OWNER_DIR: &str = "CITYGAUGE_STACK_TEST_OWNER_DIR";

/// The owner's side; does nothing when run as an ordinary test.
#[test]
fn owner_process() {
    let Some(dir) = std::env::var_os(OWNER_DIR) else {
        return;
    };
    let dir = Path::new(&dir);
    let toolchain = Toolchain::discover().unwrap();
    // Started from this short-lived test thread on purpose: servers must
    // survive the thread and die only with the process.
    let (pg, broker) = std::thread::scope(|s| {
        s.spawn(|| {
            let pg = Postgres::start(&toolchain, PostgresOptions::new(dir.join("pg"), "citygauge")).unwrap();
            let broker = Mosquitto::start(&toolchain, MosquittoOptions::new(dir.join("mqtt"))).unwrap();
            (pg, broker)
        })
        .join()
        .unwrap()
    });
    println!("PIDS {} {}", pg.pid().unwrap(), broker.pid().unwrap());
    std::thread::sleep(Duration::from_millis(500));
    // Still alive although the thread that started them is gone.
    assert!(alive(pg.pid().unwrap()) && alive(broker.pid().unwrap()));
    println!("READY");
    std::thread::sleep(Duration::from_secs(120));
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|stat| !stat.rsplit_once(')').is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')))
}

#[test]
fn servers_die_with_a_killed_owner() {
    let dir = throwaway_dir("cg-hygiene-").unwrap();
    let mut owner = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "owner_process", "--nocapture", "--test-threads=1"])
        .env(OWNER_DIR, dir.path())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut pids = Vec::new();
    for line in BufReader::new(owner.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        // libtest prints "test owner_process ... " on the same line first.
        if let Some((_, rest)) = line.split_once("PIDS ") {
            pids = rest.split(' ').map(|p| p.parse::<u32>().unwrap()).collect();
        }
        if line == "READY" {
            break;
        }
    }
    assert_eq!(pids.len(), 2, "the owner did not start its servers");

    owner.kill().unwrap(); // SIGKILL: no destructors run
    owner.wait().unwrap();

    let deadline = Instant::now() + Duration::from_secs(30);
    while pids.iter().any(|pid| alive(*pid)) {
        assert!(Instant::now() < deadline, "servers {pids:?} outlived their owner");
        std::thread::sleep(Duration::from_millis(50));
    }
}
