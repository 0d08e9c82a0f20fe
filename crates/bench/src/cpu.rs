//! CPU time per process over a measured window, from `/proc/<pid>/stat`.
//!
//! Throughput alone cannot say where a 2-core machine's cycles go once raw
//! COPY already fills both cores: the daemon, PostgreSQL, the broker and the
//! publisher all compete. Dividing each one's CPU time over the window by the
//! readings stored gives figures that compare across runs and machines
//! (microseconds of CPU per reading), and that add up to what the run cost.
//!
//! PostgreSQL is a tree (the postmaster and a process per connection or
//! background task), so it is measured as one: the postmaster's own time,
//! the time of its children that have already exited (`cutime`/`cstime`,
//! which the kernel adds when the postmaster reaps them) and that of its
//! live children. Taking both readings the same way makes the difference
//! exact for children that start or exit inside the window; only one that
//! exits in the instant between the two /proc reads of one snapshot can be
//! missed (a few milliseconds at most, and the benchmark's connections live
//! for the whole run).

use std::io;
use std::time::Duration;

/// The fields of one `/proc/<pid>/stat` line this module uses; times in
/// clock ticks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcStat {
    pub pid: u32,
    /// The executable's name, as the kernel truncates it (may hold spaces
    /// and parentheses).
    pub comm: String,
    pub ppid: u32,
    /// Own user and system time, all threads.
    pub utime: u64,
    pub stime: u64,
    /// User and system time of children this process has waited for.
    pub cutime: u64,
    pub cstime: u64,
}

impl ProcStat {
    fn own(&self) -> u64 {
        self.utime + self.stime
    }

    fn with_reaped_children(&self) -> u64 {
        self.own() + self.cutime + self.cstime
    }
}

/// Parses a `/proc/<pid>/stat` line (proc(5)): `pid (comm) state ppid ...`.
///
/// `comm` is whatever the process named itself and may contain spaces and
/// `)`, so it ends at the *last* `)`; the numbered fields follow it.
pub fn parse_stat(line: &str) -> Option<ProcStat> {
    let (head, rest) = line.rsplit_once(')')?;
    let (pid, comm) = head.split_once(" (")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // fields[0] is field 3 (state) of proc(5); field n is fields[n - 3].
    let field = |n: usize| -> Option<u64> { fields.get(n - 3)?.parse().ok() };
    Some(ProcStat {
        pid: pid.trim().parse().ok()?,
        comm: comm.to_owned(),
        ppid: u32::try_from(field(4)?).ok()?,
        utime: field(14)?,
        stime: field(15)?,
        cutime: field(16)?,
        cstime: field(17)?,
    })
}

fn read_stat(pid: u32) -> io::Result<ProcStat> {
    let line = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    parse_stat(&line).ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, format!("/proc/{pid}/stat: {line}")))
}

/// Clock ticks per second, the unit of /proc's times (USER_HZ).
#[allow(unsafe_code)]
fn ticks_per_second() -> u64 {
    // SAFETY: sysconf(3) takes a constant and touches no memory of ours.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(ticks).ok().filter(|t| *t > 0).unwrap_or(100)
}

fn ticks_to_duration(ticks: u64) -> Duration {
    let hz = ticks_per_second();
    Duration::from_secs(ticks / hz) + Duration::from_nanos((ticks % hz) * 1_000_000_000 / hz)
}

/// What to measure for one part of a run.
#[derive(Debug, Clone, Copy)]
pub enum Source {
    /// One process with all its threads (the daemon, the broker, this one).
    Process(u32),
    /// A process and its children, live and exited (PostgreSQL).
    Tree(u32),
}

impl Source {
    /// This benchmark process: the load generator runs in it.
    pub fn this_process() -> Self {
        Self::Process(std::process::id())
    }

    fn ticks(self) -> io::Result<u64> {
        match self {
            Self::Process(pid) => Ok(read_stat(pid)?.own()),
            Self::Tree(pid) => {
                let root = read_stat(pid)?;
                Ok(root.with_reaped_children() + children_ticks(pid))
            }
        }
    }
}

/// Own plus reaped time of every live child of `parent`.
fn children_ticks(parent: u32) -> u64 {
    let Ok(dir) = std::fs::read_dir("/proc") else { return 0 };
    dir.filter_map(Result::ok)
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        // A process may exit between listing and reading: skip it.
        .filter_map(|pid| read_stat(pid).ok())
        .filter(|stat| stat.ppid == parent)
        .map(|stat| stat.with_reaped_children())
        .sum()
}

/// CPU readings of named parts, taken at the start of a window.
#[derive(Debug)]
pub struct Meter {
    parts: Vec<(&'static str, Source, u64)>,
}

impl Meter {
    /// Reads every part's CPU time now.
    pub fn start(parts: &[(&'static str, Source)]) -> io::Result<Self> {
        let parts =
            parts.iter().map(|(name, source)| Ok((*name, *source, source.ticks()?))).collect::<io::Result<_>>()?;
        Ok(Self { parts })
    }

    /// Each part's CPU time since [`Meter::start`].
    pub fn stop(&self) -> io::Result<CpuUse> {
        let parts = self
            .parts
            .iter()
            .map(|(name, source, before)| Ok((*name, ticks_to_duration(source.ticks()?.saturating_sub(*before)))))
            .collect::<io::Result<_>>()?;
        Ok(CpuUse { parts })
    }
}

/// CPU time each part of a run used.
#[derive(Debug, Clone, Default)]
pub struct CpuUse {
    pub parts: Vec<(&'static str, Duration)>,
}

impl CpuUse {
    /// Microseconds of CPU per item (reading, row), per part.
    pub fn per_item_us(&self, items: u64) -> Vec<(&'static str, f64)> {
        self.parts.iter().map(|(name, cpu)| (*name, cpu.as_secs_f64() * 1e6 / items.max(1) as f64)).collect()
    }

    /// One part's microseconds per item, if measured.
    pub fn part_us(&self, name: &str, items: u64) -> Option<f64> {
        self.per_item_us(items).into_iter().find(|(part, _)| *part == name).map(|(_, us)| us)
    }

    /// "daemon 1.72, postgres 3.01, ... (total 6.10) us of CPU per reading".
    pub fn line(&self, items: u64, per: &str) -> String {
        let parts = self.per_item_us(items);
        let total: f64 = parts.iter().map(|(_, us)| us).sum();
        let list: Vec<String> = parts.iter().map(|(name, us)| format!("{name} {us:.2}")).collect();
        format!("CPU per {per}: {} (total {total:.2}) us", list.join(", "))
    }

    /// The same as JSON: `{"daemon": 1.72, ...}` in microseconds per item.
    pub fn json(&self, items: u64) -> serde_json::Value {
        self.per_item_us(items).into_iter().map(|(name, us)| (name.to_owned(), serde_json::json!(us))).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_stat_line_with_spaces_and_parentheses_in_comm() {
        // From proc(5): pid (comm) state ppid pgrp session tty tpgid flags
        // minflt cminflt majflt cmajflt utime stime cutime cstime ...
        let line = "4242 (my (odd) name) S 17 4242 4242 0 -1 4194560 120 30 0 0 731 129 55 8 20 0 3 0 \
                    1234 2000000 500 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n";
        let stat = parse_stat(line).unwrap();
        assert_eq!(
            stat,
            ProcStat {
                pid: 4242,
                comm: "my (odd) name".into(),
                ppid: 17,
                utime: 731,
                stime: 129,
                cutime: 55,
                cstime: 8
            }
        );
        assert_eq!(stat.own(), 860);
        assert_eq!(stat.with_reaped_children(), 923);
        let plain = parse_stat("1 (postgres: walwriter ) S 0 1 1 0 -1 0 0 0 0 0 5 6 7 8 20").unwrap();
        assert_eq!((plain.comm.as_str(), plain.utime, plain.cstime), ("postgres: walwriter ", 5, 8));
    }

    #[test]
    fn refuses_truncated_lines() {
        assert_eq!(parse_stat(""), None);
        assert_eq!(parse_stat("12 (x) S 1 2 3"), None);
        assert_eq!(parse_stat("x (y) S 1 1 1 0 -1 0 0 0 0 0 5 6 7 8"), None);
    }

    #[test]
    fn this_process_burns_measurable_cpu() {
        let meter =
            Meter::start(&[("self", Source::this_process()), ("tree", Source::Tree(std::process::id()))]).unwrap();
        let spin = std::time::Instant::now();
        let mut x = 0u64;
        while spin.elapsed() < Duration::from_millis(200) {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
        }
        let used = meter.stop().unwrap();
        let own = used.parts[0].1;
        // Ticks are 10 ms; a loaded machine may give us less than the wall time.
        assert!(own >= Duration::from_millis(20) && own <= Duration::from_millis(400), "{own:?}");
        assert!(used.parts[1].1 >= own);
        let line = used.line(1_000, "reading");
        assert!(line.starts_with("CPU per reading: self "), "{line}");
        assert!(used.part_us("self", 1_000).unwrap() > 10.0);
        assert_eq!(used.json(1_000).as_object().unwrap().len(), 2);
    }

    #[test]
    fn a_reaped_child_is_counted_in_the_tree() {
        let meter = Meter::start(&[("tree", Source::Tree(std::process::id()))]).unwrap();
        // A child that burns CPU and exits inside the window.
        let status = std::process::Command::new("sh")
            .args(["-c", "i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done"])
            .status()
            .unwrap();
        assert!(status.success());
        let used = meter.stop().unwrap();
        assert!(used.parts[0].1 >= Duration::from_millis(10), "{:?}", used.parts);
    }
}
