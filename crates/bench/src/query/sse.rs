//! The live stream under load: N EventSource-like clients (one tokio task
//! and one HTTP/1.1 connection each, `/api/v1/stream?districts=X`), while
//! readings are committed at a steady rate with `Store::write` (the writer
//! ingest uses, whose NOTIFYs feed the service). Each reading's `ts` is the
//! moment its batch was built (µs), so receive time minus `ts` is
//! build-to-client delivery, which includes the commit; the writer also
//! notes when each commit returned, for commit-to-client delivery.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::bail;
use chrono::{DateTime, Utc};
use citygauge_store::{Batch, Store, StoreConfig};
use http_body_util::BodyExt;
use tokio_util::sync::CancellationToken;

use super::load::DataSet;
use super::service::{MachineCpu, Service};
use super::tools::percentile;
use super::{dataset, http};

#[derive(Debug, Clone, Copy)]
pub struct SseConfig {
    pub clients: usize,
    pub rate: f64,
    pub seconds: u64,
}

#[derive(Debug, Clone, Default)]
pub struct SseResult {
    pub clients: usize,
    pub districts: usize,
    pub readings_written: u64,
    pub write_rate: f64,
    /// Client receipts of a reading, and how many the filters called for.
    pub deliveries: u64,
    pub expected_deliveries: u64,
    pub events: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub commit_p50_ms: f64,
    pub commit_p99_ms: f64,
    pub write_p99_ms: f64,
    pub starved: usize,
    pub disconnected: usize,
    pub wrong_district: u64,
    pub service_rss_mb: f64,
    pub service_cores: f64,
    pub machine_cores: f64,
}

/// One server-sent event: its `event` name and its `data` lines joined.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Event {
    pub name: String,
    pub data: String,
}

/// Splits a `text/event-stream` into events as bytes arrive.
#[derive(Debug, Default)]
pub struct SseParser {
    pending: String,
    current: Event,
}

impl SseParser {
    pub fn feed(&mut self, bytes: &[u8], out: &mut Vec<Event>) {
        self.pending.push_str(&String::from_utf8_lossy(bytes));
        while let Some(end) = self.pending.find('\n') {
            let line: String = self.pending.drain(..=end).collect();
            let line = line.trim_end_matches(['\n', '\r']);
            if line.is_empty() {
                let event = std::mem::take(&mut self.current);
                if !event.name.is_empty() || !event.data.is_empty() {
                    out.push(event);
                }
            } else if let Some(name) = line.strip_prefix("event:") {
                self.current.name = name.trim_start().to_string();
            } else if let Some(data) = line.strip_prefix("data:") {
                if !self.current.data.is_empty() {
                    self.current.data.push('\n');
                }
                self.current.data.push_str(data.strip_prefix(' ').unwrap_or(data));
            }
            // `id:`, `retry:` and `:` comments (heartbeats) carry nothing measured here.
        }
    }
}

/// The string values of `"key":"..."` in a JSON text, in order: enough to
/// read `ts` and `district` of each item without a full parse, which would
/// cost the load generator more CPU than the service spends.
pub fn string_values<'a>(json: &'a str, key: &str) -> Vec<&'a str> {
    let pattern = format!("\"{key}\":");
    let mut found = Vec::new();
    let mut rest = json;
    while let Some(at) = rest.find(&pattern) {
        rest = rest[at + pattern.len()..].trim_start();
        if let Some(value) = rest.strip_prefix('"') {
            if let Some(end) = value.find('"') {
                found.push(&value[..end]);
                rest = &value[end..];
            }
        }
    }
    found
}

#[derive(Debug, Default)]
struct ClientStats {
    events: u64,
    /// (reading ts, receive time), both µs since the epoch.
    receipts: Vec<(i64, i64)>,
    wrong_district: u64,
    disconnected: bool,
}

fn now_us() -> i64 {
    Utc::now().timestamp_micros()
}

async fn client(
    addr: SocketAddr,
    district: String,
    connected: Arc<AtomicUsize>,
    stop: CancellationToken,
) -> anyhow::Result<ClientStats> {
    let path = format!("/api/v1/stream?districts={district}");
    let response = http::request(addr, &path, &[("accept", "text/event-stream")]).await?;
    if response.status() != 200 {
        bail!("GET {path}: {}", response.status());
    }
    connected.fetch_add(1, Ordering::Relaxed);
    let mut body = response.into_body();
    let (mut parser, mut events, mut stats) = (SseParser::default(), Vec::new(), ClientStats::default());
    loop {
        let frame = tokio::select! {
            _ = stop.cancelled() => break,
            frame = body.frame() => frame,
        };
        let Some(Ok(frame)) = frame else {
            stats.disconnected = true;
            break;
        };
        let Ok(data) = frame.into_data() else { continue };
        let received = now_us();
        parser.feed(&data, &mut events);
        for event in events.drain(..) {
            if event.name != "readings" {
                continue;
            }
            stats.events += 1;
            for ts in string_values(&event.data, "ts") {
                if let Ok(ts) = DateTime::parse_from_rfc3339(ts) {
                    stats.receipts.push((ts.timestamp_micros(), received));
                }
            }
            stats.wrong_district +=
                string_values(&event.data, "district").iter().filter(|d| **d != district).count() as u64;
        }
    }
    Ok(stats)
}

pub async fn run(service: &Service, url: &str, data: &DataSet, config: SseConfig) -> anyhow::Result<SseResult> {
    let mut by_district: HashMap<String, Vec<usize>> = HashMap::new();
    for (i, sensor) in data.sensors.iter().enumerate() {
        if let Some(district) = &sensor.district {
            by_district.entry(district.clone()).or_default().push(i);
        }
    }
    let mut districts: Vec<String> = by_district.keys().cloned().collect();
    districts.sort();
    let mut clients_per_district: HashMap<String, u64> = HashMap::new();
    let (connected, stop) = (Arc::new(AtomicUsize::new(0)), CancellationToken::new());
    let mut tasks = Vec::with_capacity(config.clients);
    for i in 0..config.clients {
        let district = districts[i % districts.len()].clone();
        *clients_per_district.entry(district.clone()).or_default() += 1;
        tasks.push(tokio::spawn(client(service.addr, district, connected.clone(), stop.clone())));
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while connected.load(Ordering::Relaxed) < config.clients {
        if Instant::now() > deadline || tasks.iter().any(|t| t.is_finished()) {
            stop.cancel();
            bail!("only {} of {} stream clients connected", connected.load(Ordering::Relaxed), config.clients);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!("sse: {} clients connected over {} districts", config.clients, districts.len());

    // The writer: batches every 50 ms (ingest's default flush interval).
    let store = Store::new(StoreConfig::new(url))?;
    let commits: Arc<Mutex<HashMap<i64, i64>>> = Arc::default();
    let (mut owed, mut written, mut next_sensor) = (0.0, 0u64, 0usize);
    let mut written_per_district: HashMap<&str, u64> = HashMap::new();
    let mut write_ms = Vec::new();
    let (cpu, service_cpu, started) = (MachineCpu::now(), service.cpu_seconds(), Instant::now());
    let mut ticks = tokio::time::interval(Duration::from_millis(50));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut last = Instant::now();
    while started.elapsed() < Duration::from_secs(config.seconds) {
        ticks.tick().await;
        owed += config.rate * last.elapsed().as_secs_f64();
        last = Instant::now();
        let n = owed.floor() as usize;
        if n == 0 {
            continue;
        }
        owed -= n as f64;
        let built = Utc::now();
        let ts = DateTime::from_timestamp_micros(built.timestamp_micros()).unwrap_or(built);
        let mut readings = Vec::with_capacity(n);
        for _ in 0..n {
            let i = next_sensor % data.sensors.len();
            next_sensor += 1;
            let sensor = &data.sensors[i];
            if let Some(district) = &sensor.district {
                *written_per_district.entry(district.as_str()).or_default() += 1;
            }
            readings.push(dataset::reading(sensor, i, ts, 0));
        }
        store.write(&Batch { readings, ..Batch::default() }).await?;
        let committed = now_us();
        write_ms.push((committed - ts.timestamp_micros()) as f64 / 1e3);
        commits.lock().map_err(|_| anyhow::anyhow!("poisoned"))?.insert(ts.timestamp_micros(), committed);
        written += n as u64;
    }
    let elapsed = started.elapsed();
    // Coalesced events are at most a few hundred ms behind.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let service_cores = (service.cpu_seconds() - service_cpu) / started.elapsed().as_secs_f64();
    let machine_cores = MachineCpu::now().busy_cores_since(&cpu, started.elapsed());
    stop.cancel();

    let commits = commits.lock().map_err(|_| anyhow::anyhow!("poisoned"))?.clone();
    let mut result = SseResult {
        clients: config.clients,
        districts: districts.len(),
        readings_written: written,
        write_rate: written as f64 / elapsed.as_secs_f64(),
        expected_deliveries: written_per_district
            .iter()
            .map(|(d, n)| n * clients_per_district.get(*d).copied().unwrap_or(0))
            .sum(),
        service_cores,
        machine_cores,
        service_rss_mb: service.peak_rss_mb()?,
        ..SseResult::default()
    };
    let (mut from_build, mut from_commit) = (Vec::new(), Vec::new());
    for task in tasks {
        let stats = task.await??;
        result.events += stats.events;
        result.wrong_district += stats.wrong_district;
        result.starved += usize::from(stats.receipts.is_empty());
        result.disconnected += usize::from(stats.disconnected);
        for (ts, received) in stats.receipts {
            // Only the readings this run wrote (not the data set's).
            let Some(committed) = commits.get(&ts) else { continue };
            result.deliveries += 1;
            from_build.push((received - ts) as f64 / 1e3);
            from_commit.push((received - committed) as f64 / 1e3);
        }
    }
    for v in [&mut from_build, &mut from_commit, &mut write_ms] {
        v.sort_by(f64::total_cmp);
    }
    result.p50_ms = percentile(&from_build, 50.0);
    result.p99_ms = percentile(&from_build, 99.0);
    result.max_ms = from_build.last().copied().unwrap_or(0.0);
    result.commit_p50_ms = percentile(&from_commit, 50.0);
    result.commit_p99_ms = percentile(&from_commit, 99.0);
    result.write_p99_ms = percentile(&write_ms, 99.0);
    Ok(result)
}

/// Lets this process (and the service it starts) hold the stream
/// connections: the soft limit on open files raised to the hard limit.
#[allow(unsafe_code)]
pub fn raise_fd_limit(needed: u64) -> anyhow::Result<u64> {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit and setrlimit read or write only the struct we pass,
    // which lives for the whole call.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return Err(std::io::Error::last_os_error().into());
        }
        limit.rlim_cur = limit.rlim_max;
        if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
            return Err(std::io::Error::last_os_error().into());
        }
    }
    if limit.rlim_cur < needed {
        bail!("the open-file limit is {} (hard), {needed} are needed: raise it (ulimit -Hn)", limit.rlim_cur);
    }
    Ok(limit.rlim_cur)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_split_across_chunks_and_heartbeats_ignored() {
        let mut parser = SseParser::default();
        let mut out = Vec::new();
        parser.feed(b": heartbeat\n\nevent: readings\nid: 1-2\ndata: [{\"ts\":", &mut out);
        assert!(out.is_empty());
        parser.feed(b"\"2026-11-30T12:00:00.5Z\"}]\r\n\r\nevent: reset\ndata: {}\n\n", &mut out);
        assert_eq!(
            out,
            vec![
                Event { name: "readings".into(), data: "[{\"ts\":\"2026-11-30T12:00:00.5Z\"}]".into() },
                Event { name: "reset".into(), data: "{}".into() },
            ]
        );
    }

    #[test]
    fn string_values_are_read_in_order() {
        let json = r#"[{"sensor_id":"a","district":"Sanmin","ts":"t1","values":{"level_m":1}},{"district": "Lingya","ts":"t2"}]"#;
        assert_eq!(string_values(json, "ts"), vec!["t1", "t2"]);
        assert_eq!(string_values(json, "district"), vec!["Sanmin", "Lingya"]);
        assert!(string_values("[]", "ts").is_empty());
    }
}
