//! The fan-out of the change stream to SSE clients: one `broadcast` channel
//! (a slow client lags and is dropped, never slowing the others) and a
//! bounded replay ring for `Last-Event-ID` resume.
//!
//! Event ids are `<epoch>-<seq>`: the epoch changes whenever continuity is
//! lost (service restart, change-stream reconnect), so an id from before
//! cannot resume and gets `event: reset` instead.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use citygauge_domain::Kind;
use serde::Serialize;
use serde_json::{Map, Value};
use tokio::sync::broadcast;
use utoipa::ToSchema;

/// One reading as stream clients receive it (the documented shape; on the
/// wire each is serialised once, see [`StreamReading`]).
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = StreamReading)]
pub struct StreamReadingView {
    pub sensor_id: String,
    pub kind: &'static str,
    pub district: Option<String>,
    /// RFC 3339 UTC.
    pub ts: String,
    pub quality: &'static str,
    #[schema(value_type = Object)]
    pub values: Map<String, Value>,
    pub state: crate::cache::view::State,
    pub level: Option<crate::cache::view::Level>,
}

/// A reading in the fan-out: what filters look at, and its JSON made once
/// and shared by every client that lets it through.
#[derive(Debug, Clone)]
pub struct StreamReading {
    pub kind: Kind,
    pub sensor_id: String,
    pub district: Option<String>,
    pub json: Arc<str>,
}

impl StreamReading {
    pub fn new(kind: Kind, view: &StreamReadingView) -> StreamReading {
        StreamReading {
            kind,
            sensor_id: view.sensor_id.clone(),
            district: view.district.clone(),
            // Serialising our own type cannot fail.
            json: serde_json::to_string(view).unwrap_or_else(|_| "{}".into()).into(),
        }
    }
}

#[derive(Debug)]
pub enum EventBody {
    Readings(Vec<StreamReading>),
    Alert(Value),
    Reset,
}

#[derive(Debug)]
pub struct Event {
    pub epoch: u64,
    pub seq: u64,
    pub body: EventBody,
}

impl Event {
    pub fn id(&self) -> String {
        format!("{}-{}", self.epoch, self.seq)
    }
}

#[derive(Debug)]
struct Ring {
    epoch: u64,
    seq: u64,
    events: VecDeque<Arc<Event>>,
}

/// What a new client starts from.
#[derive(Debug)]
pub enum Start {
    /// Fresh, or resumed: these events first, then the live ones.
    Replay(Vec<Arc<Event>>),
    /// The id cannot be resumed from: tell the client to reload; the event
    /// carries the current id, so the client's next `Last-Event-ID` resumes.
    Reset(String),
}

#[derive(Debug)]
pub struct Hub {
    tx: broadcast::Sender<Arc<Event>>,
    ring: Mutex<Ring>,
    ring_max: usize,
}

/// Events a client task may fall behind by before it is dropped.
const BROADCAST_CAPACITY: usize = 4_096;

impl Hub {
    pub fn new(replay_events: usize) -> Hub {
        let (tx, _) = broadcast::channel(BROADCAST_CAPACITY);
        let epoch = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(1);
        Hub { tx, ring: Mutex::new(Ring { epoch, seq: 0, events: VecDeque::new() }), ring_max: replay_events }
    }

    fn publish(&self, body: EventBody) {
        let mut ring = self.ring.lock().unwrap_or_else(|e| e.into_inner());
        ring.seq += 1;
        let event = Arc::new(Event { epoch: ring.epoch, seq: ring.seq, body });
        if self.ring_max > 0 {
            if ring.events.len() >= self.ring_max {
                ring.events.pop_front();
            }
            ring.events.push_back(event.clone());
        }
        // Sent under the lock, so subscribe-then-replay sees no gap or overlap.
        let _ = self.tx.send(event);
    }

    pub fn readings(&self, readings: Vec<StreamReading>) {
        if !readings.is_empty() {
            self.publish(EventBody::Readings(readings));
        }
    }

    pub fn alert(&self, alert: Value) {
        self.publish(EventBody::Alert(alert));
    }

    /// Continuity is lost (the change stream reconnected and the cache was
    /// rebuilt): a new epoch, an empty ring, and `reset` to every client.
    pub fn reset(&self) {
        let mut ring = self.ring.lock().unwrap_or_else(|e| e.into_inner());
        ring.epoch += 1;
        ring.seq = 0;
        ring.events.clear();
        let event = Arc::new(Event { epoch: ring.epoch, seq: 0, body: EventBody::Reset });
        let _ = self.tx.send(event);
    }

    /// The newest event id (what a client that saw everything would send).
    pub fn last_id(&self) -> String {
        let ring = self.ring.lock().unwrap_or_else(|e| e.into_inner());
        format!("{}-{}", ring.epoch, ring.seq)
    }

    /// Subscribes, and says what to send first given the client's
    /// `Last-Event-ID` (atomically: nothing is missed or sent twice).
    pub fn subscribe(&self, last_event_id: Option<&str>) -> (broadcast::Receiver<Arc<Event>>, Start) {
        let ring = self.ring.lock().unwrap_or_else(|e| e.into_inner());
        let rx = self.tx.subscribe();
        let Some(last) = last_event_id else { return (rx, Start::Replay(Vec::new())) };
        let parsed = last.split_once('-').and_then(|(e, s)| Some((e.parse::<u64>().ok()?, s.parse::<u64>().ok()?)));
        let start = match parsed {
            Some((epoch, seq)) if epoch == ring.epoch && seq <= ring.seq => {
                let oldest_kept = ring.events.front().map(|e| e.seq).unwrap_or(ring.seq + 1);
                if seq + 1 >= oldest_kept {
                    Start::Replay(ring.events.iter().filter(|e| e.seq > seq).cloned().collect())
                } else {
                    Start::Reset(format!("{}-{}", ring.epoch, ring.seq))
                }
            }
            _ => Start::Reset(format!("{}-{}", ring.epoch, ring.seq)),
        };
        (rx, start)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading(id: &str) -> StreamReading {
        StreamReading {
            kind: Kind::WaterLevel,
            sensor_id: id.into(),
            district: None,
            json: format!("{{\"sensor_id\":\"{id}\"}}").into(),
        }
    }

    #[test]
    fn resume_replays_what_was_missed_and_resets_otherwise() {
        let hub = Hub::new(3);
        hub.readings(vec![reading("a")]);
        let first = hub.last_id();
        for id in ["b", "c", "d"] {
            hub.readings(vec![reading(id)]);
        }
        // Events 2..=4 are kept; resuming after 1 replays them all.
        let (_, start) = hub.subscribe(Some(&first));
        let Start::Replay(events) = start else { panic!("expected a replay") };
        assert_eq!(events.iter().map(|e| e.seq).collect::<Vec<_>>(), [2, 3, 4]);
        let (_, start) = hub.subscribe(Some(&hub.last_id()));
        assert!(matches!(start, Start::Replay(ref e) if e.is_empty()));
        hub.readings(vec![reading("e")]); // event 1 was 2 behind: now gone
        assert!(matches!(hub.subscribe(Some(&first)).1, Start::Reset(ref id) if *id == hub.last_id()));
        assert!(matches!(hub.subscribe(Some("1-1")).1, Start::Reset(_)), "another epoch");
        assert!(matches!(hub.subscribe(Some("garbage")).1, Start::Reset(_)));
        let before = hub.last_id();
        hub.reset();
        assert!(matches!(hub.subscribe(Some(&before)).1, Start::Reset(_)));
    }
}
