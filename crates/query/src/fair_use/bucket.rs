//! Token buckets per client, in memory and bounded: a client may make a
//! minute's worth of requests at once, then one every `60 / per_minute`
//! seconds. I/O-free; the clock is tokio's, so tests can pause it.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// What a request may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allowed,
    /// Refused; a token is back after this long (whole seconds, at least 1).
    Limited {
        retry_after: Duration,
    },
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn refill(&mut self, per_minute: u32, now: Instant) {
        let rate = f64::from(per_minute) / 60.0;
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate).min(f64::from(per_minute));
        self.at = now;
    }
}

/// Buckets keyed by client. At most `max` clients are remembered: when full,
/// buckets that have refilled completely (idle clients, the same as new
/// ones) are swept, at most once a second so a flood of new addresses
/// cannot make every request scan the map; clients that still find no room
/// share one overflow bucket, so memory stays bounded whatever arrives.
#[derive(Debug)]
pub struct Buckets<K> {
    inner: Mutex<Inner<K>>,
    max: usize,
}

#[derive(Debug)]
struct Inner<K> {
    map: HashMap<K, Bucket>,
    overflow: Option<Bucket>,
    swept: Option<Instant>,
}

impl<K: Hash + Eq + Clone> Buckets<K> {
    pub fn new(max: usize) -> Buckets<K> {
        Buckets { inner: Mutex::new(Inner { map: HashMap::new(), overflow: None, swept: None }), max: max.max(1) }
    }

    /// Takes a token from `key`'s bucket (of `per_minute` requests a minute) if it has one.
    pub fn check(&self, key: &K, per_minute: u32, now: Instant) -> Decision {
        let per_minute = per_minute.max(1);
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let inner = &mut *inner;
        if !inner.map.contains_key(key) && inner.map.len() >= self.max {
            let due = inner.swept.is_none_or(|at| now.saturating_duration_since(at) >= Duration::from_secs(1));
            if due {
                inner.swept = Some(now);
                inner.map.retain(|_, bucket| {
                    let mut b = *bucket;
                    b.refill(per_minute, now);
                    b.tokens < f64::from(per_minute)
                });
            }
        }
        let fresh = Bucket { tokens: f64::from(per_minute), at: now };
        let bucket = if inner.map.contains_key(key) || inner.map.len() < self.max {
            inner.map.entry(key.clone()).or_insert(fresh)
        } else {
            inner.overflow.get_or_insert(fresh)
        };
        bucket.refill(per_minute, now);
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            return Decision::Allowed;
        }
        let rate = f64::from(per_minute) / 60.0;
        let wait = ((1.0 - bucket.tokens) / rate).ceil().max(1.0);
        Decision::Limited { retry_after: Duration::from_secs(wait as u64) }
    }

    pub fn len(&self) -> usize {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_minutes_worth_then_one_per_interval() {
        let buckets = Buckets::new(10);
        let start = Instant::now();
        for _ in 0..6 {
            assert_eq!(buckets.check(&"a", 6, start), Decision::Allowed);
        }
        assert_eq!(buckets.check(&"a", 6, start), Decision::Limited { retry_after: Duration::from_secs(10) });
        assert_eq!(buckets.check(&"b", 6, start), Decision::Allowed, "clients are apart");
        let later = start + Duration::from_secs(4);
        assert_eq!(buckets.check(&"a", 6, later), Decision::Limited { retry_after: Duration::from_secs(6) });
        assert_eq!(buckets.check(&"a", 6, start + Duration::from_secs(10)), Decision::Allowed);
        assert_eq!(
            buckets.check(&"a", 6, start + Duration::from_secs(10)),
            Decision::Limited { retry_after: Duration::from_secs(10) }
        );
    }

    #[test]
    fn memory_stays_bounded_and_idle_clients_are_forgotten() {
        let buckets = Buckets::new(3);
        let start = Instant::now();
        for ip in 0..3 {
            assert_eq!(buckets.check(&ip, 1, start), Decision::Allowed);
        }
        // Full of busy clients: newcomers share the overflow bucket.
        assert_eq!(buckets.check(&3, 1, start), Decision::Allowed);
        assert!(matches!(buckets.check(&4, 1, start), Decision::Limited { .. }));
        assert_eq!(buckets.len(), 3);
        // A minute on, the first three are idle (refilled): swept for newcomers.
        let later = start + Duration::from_secs(61);
        assert_eq!(buckets.check(&5, 1, later), Decision::Allowed);
        assert_eq!(buckets.len(), 1);
    }
}
