//! One stream client: filters the shared events, coalesces what passes into
//! `readings` events (each reading's JSON made once by the hub and shared),
//! sends heartbeats, and says `shutdown` when the service stops. Its output
//! queue is bounded in chunks and in bytes: a client that does not read, or
//! whose task fell behind the broadcast (lagged), is dropped, never slowing
//! anyone else.
//!
//! A client that filters sees few of the events, but its `Last-Event-ID`
//! must follow all of them or it would fall out of the replay ring while
//! idle: so the newest id seen is sent on its own (`id:` without data, which
//! moves `lastEventId` and fires nothing) with heartbeats and whenever it ran
//! far ahead of what was sent.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use citygauge_domain::Kind;
use tokio::sync::{broadcast, mpsc};
use tokio::time::{interval_at, Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use super::hub::{Event, EventBody, Start, StreamReading};
use crate::metrics::Metrics;

/// What a client asked to see; `None` lets everything through.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub kinds: Option<HashSet<Kind>>,
    pub districts: Option<HashSet<String>>,
    pub sensors: Option<HashSet<String>>,
}

impl Filter {
    pub fn passes(&self, r: &StreamReading) -> bool {
        self.kinds.as_ref().is_none_or(|k| k.contains(&r.kind))
            && self.districts.as_ref().is_none_or(|d| r.district.as_ref().is_some_and(|x| d.contains(x)))
            && self.sensors.as_ref().is_none_or(|s| s.contains(&r.sensor_id))
    }
}

#[derive(Debug, Clone, Copy)]
pub struct ClientOptions {
    pub coalesce: Duration,
    pub heartbeat: Duration,
}

/// Chunks queued for one client's connection before it counts as not reading.
pub const CLIENT_QUEUE_CHUNKS: usize = 64;
/// Bytes queued for one client before it counts as not reading.
pub const CLIENT_QUEUE_BYTES: usize = 1 << 20;
/// A `readings` event carries at most about this much data; more is split.
pub const MAX_FRAME_BYTES: usize = 64 << 10;
/// Events the seen id may run ahead of the sent one before it is sent at
/// the next flush, and the longest it waits otherwise.
const ID_LAG_EVENTS: u64 = 64;
const ID_EVERY: Duration = Duration::from_secs(1);

/// Why a client task ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// The client went away.
    Gone,
    /// Dropped: its queue was full or it lagged behind the broadcast.
    Dropped,
    /// The service is stopping; `shutdown` was sent.
    Shutdown,
}

fn frame(event: Option<&str>, id: Option<&str>, data: &str) -> Bytes {
    let mut out = String::with_capacity(data.len() + 48);
    if let Some(event) = event {
        out.push_str("event: ");
        out.push_str(event);
        out.push('\n');
    }
    if let Some(id) = id {
        out.push_str("id: ");
        out.push_str(id);
        out.push('\n');
    }
    for line in data.split('\n') {
        out.push_str("data: ");
        out.push_str(line);
        out.push('\n');
    }
    out.push('\n');
    Bytes::from(out)
}

/// The client's output queue; `queued` counts the bytes not yet taken by
/// the connection (the body stream subtracts what it takes).
#[derive(Debug)]
pub struct Sink {
    pub out: mpsc::Sender<Bytes>,
    pub queued: Arc<AtomicUsize>,
}

impl Sink {
    /// Queues a chunk; one slot is kept free for the final `shutdown`.
    fn send(&self, chunk: Bytes) -> Result<(), End> {
        if self.out.is_closed() {
            return Err(End::Gone);
        }
        if self.out.capacity() <= 1 || self.queued.load(Ordering::Relaxed) + chunk.len() > CLIENT_QUEUE_BYTES {
            return Err(End::Dropped);
        }
        self.push(chunk)
    }

    fn push(&self, chunk: Bytes) -> Result<(), End> {
        // Counted before it can be taken, so the count never goes below zero.
        let len = chunk.len();
        self.queued.fetch_add(len, Ordering::Relaxed);
        self.out.try_send(chunk).map_err(|e| {
            self.queued.fetch_sub(len, Ordering::Relaxed);
            match e {
                mpsc::error::TrySendError::Full(_) => End::Dropped,
                mpsc::error::TrySendError::Closed(_) => End::Gone,
            }
        })
    }
}

/// The client's position: what is pending, the newest event id it has
/// taken, and the newest id it has sent.
#[derive(Default)]
struct Position {
    pending: Vec<Arc<str>>,
    pending_bytes: usize,
    seen: Option<(String, u64)>,
    sent_seq: u64,
    sent_at: Option<Instant>,
}

impl Position {
    /// Whether the seen id should go out on its own now.
    fn id_due(&self) -> bool {
        self.seen.as_ref().is_some_and(|(_, seq)| {
            *seq >= self.sent_seq + ID_LAG_EVENTS
                || (*seq != self.sent_seq && self.sent_at.is_none_or(|t| t.elapsed() >= ID_EVERY))
        })
    }
}

/// Runs one client until it goes away, is dropped, or the service stops.
pub async fn run(
    filter: Filter,
    start: Start,
    mut rx: broadcast::Receiver<Arc<Event>>,
    sink: Sink,
    options: ClientOptions,
    stop: CancellationToken,
    metrics: Metrics,
) -> End {
    metrics.sse_clients.inc();
    let end = serve(filter, start, &mut rx, &sink, options, stop).await;
    metrics.sse_clients.dec();
    if end == End::Dropped {
        metrics.sse_dropped_clients.inc();
        tracing::debug!("stream: slow client dropped");
    }
    end
}

async fn serve(
    filter: Filter,
    start: Start,
    rx: &mut broadcast::Receiver<Arc<Event>>,
    sink: &Sink,
    options: ClientOptions,
    stop: CancellationToken,
) -> End {
    let mut at = Position::default();
    let mut sent_since_heartbeat = true;
    // Tells EventSource how soon to reconnect after the connection drops.
    if let Err(end) = sink.send(Bytes::from_static(b"retry: 2000\n\n")) {
        return end;
    }
    match start {
        Start::Reset(id) => {
            if let Err(end) = sink.send(frame(Some("reset"), Some(&id), "{}")) {
                return end;
            }
        }
        Start::Replay(events) => {
            for event in events {
                if let Err(end) = take(&event, &filter, &mut at, sink) {
                    return end;
                }
            }
        }
    }
    let mut flush = interval_at(Instant::now() + options.coalesce, options.coalesce);
    flush.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut heartbeat = interval_at(Instant::now() + options.heartbeat, options.heartbeat);
    heartbeat.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        let step = tokio::select! {
            biased;
            _ = stop.cancelled() => {
                // What is pending goes if it fits; `shutdown` always has its
                // slot. Either way the body ends when this task returns.
                let _ = flush_pending(&mut at, sink);
                let _ = sink.push(frame(Some("shutdown"), None, "{}"));
                return End::Shutdown;
            }
            received = rx.recv() => match received {
                Ok(event) => take(&event, &filter, &mut at, sink),
                Err(broadcast::error::RecvError::Lagged(_)) => Err(End::Dropped),
                Err(broadcast::error::RecvError::Closed) => Err(End::Gone),
            },
            _ = flush.tick() => {
                if !at.pending.is_empty() {
                    sent_since_heartbeat = true;
                }
                flush_pending(&mut at, sink).and_then(|()| {
                    if at.id_due() { send_position(&mut at, sink) } else { Ok(()) }
                })
            }
            _ = heartbeat.tick() => {
                let moved = at.seen.as_ref().is_some_and(|(_, seq)| *seq != at.sent_seq);
                if moved {
                    // The id line doubles as the heartbeat.
                    send_position(&mut at, sink)
                } else if std::mem::replace(&mut sent_since_heartbeat, false) {
                    Ok(())
                } else {
                    sink.send(Bytes::from_static(b": heartbeat\n\n"))
                }
            }
        };
        if let Err(end) = step {
            return end;
        }
    }
}

/// `id: <newest seen>` alone: moves the client's `Last-Event-ID`.
fn send_position(at: &mut Position, sink: &Sink) -> Result<(), End> {
    let Some((id, seq)) = &at.seen else { return Ok(()) };
    sink.send(Bytes::from(format!("id: {id}\n\n")))?;
    at.sent_seq = *seq;
    at.sent_at = Some(Instant::now());
    Ok(())
}

/// Takes one shared event: readings are filtered into the pending batch;
/// alerts and resets go out at once (after what is pending, keeping order).
fn take(event: &Event, filter: &Filter, at: &mut Position, sink: &Sink) -> Result<(), End> {
    match &event.body {
        EventBody::Readings(readings) => {
            for r in readings.iter().filter(|r| filter.passes(r)) {
                at.pending_bytes += r.json.len() + 1;
                at.pending.push(r.json.clone());
            }
            at.seen = Some((event.id(), event.seq));
            if at.pending_bytes >= MAX_FRAME_BYTES {
                flush_pending(at, sink)?;
            }
            Ok(())
        }
        EventBody::Alert(alert) => {
            flush_pending(at, sink)?;
            at.seen = Some((event.id(), event.seq));
            sink.send(frame(Some("alert"), Some(&event.id()), &alert.to_string()))?;
            at.sent_seq = event.seq;
            Ok(())
        }
        EventBody::Reset => {
            at.pending.clear();
            at.pending_bytes = 0;
            at.seen = Some((event.id(), event.seq));
            sink.send(frame(Some("reset"), Some(&event.id()), "{}"))?;
            at.sent_seq = event.seq;
            Ok(())
        }
    }
}

/// Sends what is pending as `readings` events of at most about
/// [`MAX_FRAME_BYTES`] each; the last carries the newest id taken.
fn flush_pending(at: &mut Position, sink: &Sink) -> Result<(), End> {
    if at.pending.is_empty() {
        return Ok(());
    }
    let pending = std::mem::take(&mut at.pending);
    at.pending_bytes = 0;
    let mut start = 0;
    while start < pending.len() {
        let mut end = start;
        let mut size = 2;
        while end < pending.len() && (end == start || size + pending[end].len() < MAX_FRAME_BYTES) {
            size += pending[end].len() + 1;
            end += 1;
        }
        let mut data = String::with_capacity(size);
        data.push('[');
        for (i, json) in pending[start..end].iter().enumerate() {
            if i > 0 {
                data.push(',');
            }
            data.push_str(json);
        }
        data.push(']');
        let last = end == pending.len();
        let id = if last { at.seen.as_ref().map(|(id, _)| id.as_str()) } else { None };
        sink.send(frame(Some("readings"), id, &data))?;
        if last {
            at.sent_seq = at.seen.as_ref().map_or(at.sent_seq, |(_, seq)| *seq);
            at.sent_at = Some(Instant::now());
        }
        start = end;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stream_api::hub::Hub;

    fn reading(id: &str, district: &str) -> StreamReading {
        StreamReading {
            kind: Kind::FloodDepth,
            sensor_id: id.into(),
            district: Some(district.into()),
            json: format!("{{\"sensor_id\":\"{id}\",\"district\":\"{district}\"}}").into(),
        }
    }

    fn sink(out: mpsc::Sender<Bytes>) -> Sink {
        Sink { out, queued: Arc::new(AtomicUsize::new(0)) }
    }

    fn options() -> ClientOptions {
        ClientOptions { coalesce: Duration::from_millis(20), heartbeat: Duration::from_secs(60) }
    }

    /// A client of `hub` (resuming after `last_id`) on a queue of `chunks`.
    struct Client {
        task: tokio::task::JoinHandle<End>,
        rx: mpsc::Receiver<Bytes>,
        stop: CancellationToken,
    }

    fn client(hub: &Hub, filter: Filter, last_id: Option<&str>, chunks: usize) -> Client {
        let (out, rx) = mpsc::channel(chunks);
        let (brx, start) = hub.subscribe(last_id);
        let stop = CancellationToken::new();
        let task = tokio::spawn(run(filter, start, brx, sink(out), options(), stop.clone(), Metrics::new()));
        Client { task, rx, stop }
    }

    impl Client {
        /// Stops it; what it sent stays readable in `rx`.
        async fn shutdown(&mut self) -> End {
            self.stop.cancel();
            (&mut self.task).await.unwrap()
        }
    }

    async fn next_event(rx: &mut mpsc::Receiver<Bytes>) -> String {
        loop {
            let chunk = rx.recv().await.expect("stream open");
            let text = String::from_utf8(chunk.to_vec()).unwrap();
            if text.starts_with("event:") {
                return text;
            }
        }
    }

    #[tokio::test]
    async fn a_client_that_never_reads_is_dropped_and_the_others_go_on() {
        let hub = Hub::new(16);
        let metrics = Metrics::new();
        let stop = CancellationToken::new();
        let spawn = |out: mpsc::Sender<Bytes>| {
            let (rx, start) = hub.subscribe(None);
            tokio::spawn(run(Filter::default(), start, rx, sink(out), options(), stop.clone(), metrics.clone()))
        };
        let (slow_tx, _slow_rx_never_read) = mpsc::channel(4);
        let slow = spawn(slow_tx);
        let (fast_tx, mut fast_rx) = mpsc::channel(CLIENT_QUEUE_CHUNKS);
        let fast = spawn(fast_tx);
        for round in 0..20 {
            hub.readings(vec![reading(&format!("kh-fd-{round:04}"), "Sanmin")]);
            let event = next_event(&mut fast_rx).await;
            assert!(event.contains(&format!("kh-fd-{round:04}")), "{event}");
        }
        assert_eq!(slow.await.unwrap(), End::Dropped);
        assert_eq!(metrics.sse_dropped_clients.get(), 1);
        stop.cancel();
        assert_eq!(fast.await.unwrap(), End::Shutdown);
        let mut rest = String::new();
        while let Some(chunk) = fast_rx.recv().await {
            rest.push_str(std::str::from_utf8(&chunk).unwrap());
        }
        assert!(rest.contains("event: shutdown"), "{rest}");
        assert_eq!(metrics.sse_clients.get(), 0);
    }

    #[tokio::test]
    async fn a_client_holding_many_bytes_is_dropped_and_shutdown_always_has_a_slot() {
        let hub = Hub::new(16);
        // Plenty of chunks, but the bytes nobody takes add up.
        let Client { task, mut rx, .. } = client(&hub, Filter::default(), None, 10_000);
        let big = "x".repeat(10_000);
        for round in 0..200 {
            hub.readings(vec![StreamReading {
                json: format!("{{\"pad\":\"{big}\",\"n\":{round}}}").into(),
                ..reading("kh-fd-0001", "Sanmin")
            }]);
            tokio::task::yield_now().await;
        }
        let ended = tokio::time::timeout(Duration::from_secs(30), task).await.expect("dropped, not left running");
        assert_eq!(ended.unwrap(), End::Dropped, "1 MiB queued and unread");
        let mut total = 0;
        while let Ok(chunk) = rx.try_recv() {
            assert!(chunk.len() <= MAX_FRAME_BYTES + 11_000, "frames are bounded: {}", chunk.len());
            total += chunk.len();
        }
        assert!(total <= CLIENT_QUEUE_BYTES, "{total}");

        // With its queue one chunk short of full, a stopping client still says goodbye.
        let mut c = client(&hub, Filter::default(), None, 3);
        hub.readings(vec![reading("kh-fd-0002", "Sanmin")]);
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(c.shutdown().await, End::Shutdown);
        let mut all = String::new();
        while let Some(chunk) = c.rx.recv().await {
            all.push_str(std::str::from_utf8(&chunk).unwrap());
        }
        assert!(all.ends_with("event: shutdown\ndata: {}\n\n"), "{all}");
    }

    #[tokio::test]
    async fn a_big_replay_is_split_into_bounded_frames() {
        let hub = Hub::new(1_000);
        let first = hub.last_id();
        for round in 0..300 {
            let pad = "y".repeat(1_000);
            hub.readings(vec![StreamReading {
                json: format!("{{\"pad\":\"{pad}\",\"n\":{round}}}").into(),
                ..reading("kh-fd-0001", "Sanmin")
            }]);
        }
        let mut c = client(&hub, Filter::default(), Some(&first), CLIENT_QUEUE_CHUNKS);
        let mut seen = 0;
        while seen < 300 {
            let event = next_event(&mut c.rx).await;
            assert!(event.len() <= MAX_FRAME_BYTES + 2_000, "{}", event.len());
            seen += event.matches("\"n\":").count();
        }
        c.shutdown().await;
    }

    #[tokio::test]
    async fn a_filtered_client_keeps_its_last_event_id_current() {
        let hub = Hub::new(16);
        let filter = Filter { districts: Some(["Sanmin".to_string()].into()), ..Filter::default() };
        let mut c = client(&hub, filter, None, CLIENT_QUEUE_CHUNKS);
        hub.readings(vec![reading("a", "Sanmin")]);
        let _ = next_event(&mut c.rx).await;
        // Many events it does not see, far more than the replay ring holds.
        for round in 0..200 {
            hub.readings(vec![reading(&format!("kh-fd-{round:04}"), "Gushan")]);
        }
        let newest = hub.last_id();
        let mut last_id = String::new();
        while last_id != newest {
            let chunk = tokio::time::timeout(Duration::from_secs(30), c.rx.recv())
                .await
                .unwrap_or_else(|_| panic!("no `id: {newest}` sent; last was `{last_id}`"))
                .expect("stream open");
            let text = String::from_utf8(chunk.to_vec()).unwrap();
            assert!(!text.contains("Gushan"), "{text}");
            if let Some(line) = text.lines().find(|l| l.starts_with("id: ")) {
                last_id = line["id: ".len()..].to_string();
            }
        }
        // Reconnecting with it resumes; it does not reset.
        assert!(matches!(hub.subscribe(Some(&last_id)).1, Start::Replay(ref e) if e.is_empty()));
        c.shutdown().await;
    }

    #[tokio::test]
    async fn filters_and_coalescing() {
        let hub = Hub::new(16);
        let filter = Filter { districts: Some(["Sanmin".to_string()].into()), ..Filter::default() };
        let mut c = client(&hub, filter, None, CLIENT_QUEUE_CHUNKS);
        hub.readings(vec![reading("a", "Sanmin"), reading("b", "Gushan")]);
        hub.readings(vec![reading("c", "Sanmin")]);
        let event = next_event(&mut c.rx).await;
        assert!(event.contains("\"a\"") && !event.contains("\"b\""), "{event}");
        let data = event.lines().find(|l| l.starts_with("data: ")).unwrap();
        let parsed: serde_json::Value = serde_json::from_str(&data["data: ".len()..]).unwrap();
        assert!(parsed.is_array(), "{data}");
        let id_line = event.lines().find(|l| l.starts_with("id: ")).unwrap().to_string();
        if !event.contains("\"c\"") {
            let second = next_event(&mut c.rx).await;
            assert!(second.contains("\"c\""));
        } else {
            assert_eq!(id_line, format!("id: {}", hub.last_id()), "coalesced under the newest id");
        }
        c.shutdown().await;
    }
}
