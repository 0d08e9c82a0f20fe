//! A small HTTP load generator in the manner of wrk2: a fixed pool of
//! keep-alive HTTP/1.1 connections (hyper), requests scheduled at fixed
//! intervals, and each latency measured from the request's intended send
//! time, not from when a connection became free. A server that stalls thus
//! pays for every request it delayed (no coordinated omission), as a real
//! population of clients would make it. Without a rate it is closed-loop:
//! every connection sends its next request as soon as the last one is
//! answered, which gives the highest rate the machine sustains.
//!
//! Every latency is kept (a 15 s run at 1,000/s is 15,000 numbers), so the
//! percentiles are exact rather than histogram buckets.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::Request;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::query::dataset::mix;
use crate::query::service::{process_cpu_seconds, MachineCpu};
use crate::query::tools::{percentile, Measured};

/// One load: requests spread over `paths` (drawn by a hash of the request
/// number, so consecutive requests hit different entities), all with `headers`.
#[derive(Debug, Clone)]
pub struct Load {
    pub paths: Vec<String>,
    pub headers: Vec<(String, String)>,
    /// Requests per second; `None`: closed-loop, as fast as answers come.
    pub rate: Option<f64>,
    pub connections: usize,
    pub seconds: f64,
    pub warmup_seconds: f64,
}

/// What one phase saw.
#[derive(Debug, Default)]
struct Tally {
    latencies_us: Vec<u64>,
    errors: u64,
    bytes: u64,
}

/// Runs `load` against `addr` (a warm-up, then the measured phase) and
/// reports it with the CPU of this process (the load tool), of `service_pid`
/// and of the machine.
pub async fn run(addr: SocketAddr, load: &Load, service_pid: Option<u32>) -> anyhow::Result<Measured> {
    if load.warmup_seconds > 0.0 {
        phase(addr, load, load.warmup_seconds).await?;
    }
    let me = std::process::id();
    let (tool0, service0, machine0) = (
        process_cpu_seconds(me)?,
        service_pid.and_then(|p| process_cpu_seconds(p).ok()).unwrap_or(0.0),
        MachineCpu::now(),
    );
    let started = Instant::now();
    let (mut tally, seconds) = phase(addr, load, load.seconds).await?;
    let wall = started.elapsed();
    let service1 = service_pid.and_then(|p| process_cpu_seconds(p).ok()).unwrap_or(0.0);
    tally.latencies_us.sort_unstable();
    let sorted: Vec<f64> = tally.latencies_us.iter().map(|&us| us as f64).collect();
    Ok(Measured {
        requests: sorted.len() as u64,
        seconds,
        p50_ms: percentile(&sorted, 50.0) / 1e3,
        p99_ms: percentile(&sorted, 99.0) / 1e3,
        max_ms: sorted.last().copied().unwrap_or(0.0) / 1e3,
        errors: tally.errors,
        bytes: tally.bytes,
        tool_cores: (process_cpu_seconds(me)? - tool0) / wall.as_secs_f64(),
        service_cores: (service1 - service0) / wall.as_secs_f64(),
        machine_cores: MachineCpu::now().busy_cores_since(&machine0, wall),
    })
}

/// One phase of `seconds`; returns what it saw and how long it took to send
/// and answer everything (the rate's denominator).
async fn phase(addr: SocketAddr, load: &Load, seconds: f64) -> anyhow::Result<(Tally, f64)> {
    let start = Instant::now() + Duration::from_millis(20);
    let deadline = start + Duration::from_secs_f64(seconds);
    let total = load.rate.map(|r| (r * seconds).round() as u64);
    let next = Arc::new(AtomicU64::new(0));
    let shared = Arc::new(load.clone());
    let mut workers = Vec::new();
    for _ in 0..load.connections.max(1) {
        let (next, load) = (next.clone(), shared.clone());
        workers.push(tokio::spawn(async move {
            let mut tally = Tally::default();
            let mut sender = None;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let intended = match (load.rate, total) {
                    // A server that fell behind does not get the rest of
                    // the schedule after the end: its achieved rate shows it.
                    (Some(rate), Some(total)) if i < total && Instant::now() < deadline => {
                        start + Duration::from_secs_f64(i as f64 / rate)
                    }
                    (Some(_), _) => break,
                    (None, _) => {
                        let now = Instant::now().max(start);
                        if now >= deadline {
                            break;
                        }
                        now
                    }
                };
                tokio::time::sleep_until(intended.into()).await;
                let path = &load.paths[(mix(i) % load.paths.len() as u64) as usize];
                // Latencies of answers only: a refusal (503) is quick and
                // would flatter the percentiles; refusals count as errors.
                match send(addr, &mut sender, path, &load.headers).await {
                    Ok(Some(bytes)) => {
                        tally.bytes += bytes;
                        tally.latencies_us.push(intended.elapsed().as_micros() as u64);
                    }
                    Ok(None) => tally.errors += 1,
                    Err(_) => {
                        tally.errors += 1;
                        sender = None;
                    }
                }
            }
            tally
        }));
    }
    let mut tally = Tally::default();
    for worker in workers {
        let t = worker.await?;
        tally.latencies_us.extend(t.latencies_us);
        tally.errors += t.errors;
        tally.bytes += t.bytes;
    }
    // Until the last answer: an open-loop run that kept up lasts its
    // schedule, one that fell behind longer (and its rate shows it).
    let seconds = Instant::now().duration_since(start).as_secs_f64();
    Ok((tally, seconds))
}

type Sender = hyper::client::conn::http1::SendRequest<Empty<Bytes>>;

/// `GET path` on the connection, opened first when there is none; the body
/// is read whole. `None`: a status other than 200.
async fn send(
    addr: SocketAddr,
    sender: &mut Option<Sender>,
    path: &str,
    headers: &[(String, String)],
) -> anyhow::Result<Option<u64>> {
    if sender.as_ref().is_none_or(|s| s.is_closed()) {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let (s, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(connection);
        *sender = Some(s);
    }
    let Some(s) = sender.as_mut() else { anyhow::bail!("no connection") };
    s.ready().await?;
    let mut request = Request::builder().uri(path).header("host", addr.to_string());
    for (name, value) in headers {
        request = request.header(name.as_str(), value.as_str());
    }
    let response = s.send_request(request.body(Empty::<Bytes>::new())?).await?;
    let status = response.status().as_u16();
    let body = response.into_body().collect().await?.to_bytes();
    Ok((status == 200).then_some(body.len() as u64))
}
