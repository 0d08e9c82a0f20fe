//! Sampling of rejected messages before they are kept in `rejected_messages`:
//! a misconfigured device that sends the same bad message many times a
//! second must not fill the disk. The first `per_minute` rejections of each
//! (topic, reason) in a minute are kept; the rest are only counted (every
//! rejection is still counted by reason, and its MQTT message acknowledged:
//! a rejected message is handled, not lost).
//!
//! I/O-free and bounded in memory: keys are hashes of (topic, reason), so a
//! long topic costs no more than a short one; at most `max_keys` are tracked,
//! and a minute's further keys share one overflow allowance, so even a flood
//! of distinct topics keeps at most `(max_keys + 1) * per_minute` rows a
//! minute. Everything is forgotten when the minute ends.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, Hasher};
use std::time::{Duration, Instant};

use citygauge_domain::RejectReason;

/// How long a sampling window lasts.
pub(crate) const WINDOW: Duration = Duration::from_secs(60);
/// Keys tracked per window (16 bytes of counts each, plus the map's slack).
pub(crate) const DEFAULT_MAX_KEYS: usize = 100_000;

#[derive(Debug)]
pub(crate) struct RejectSampler {
    /// Kept per key per window; 0 keeps every rejected message.
    per_minute: u32,
    max_keys: usize,
    /// When the current window ends; `None` until the first rejection.
    window_end: Option<Instant>,
    kept: HashMap<u64, u32>,
    /// Kept this window for keys beyond `max_keys`.
    overflow: u32,
    hasher: std::collections::hash_map::RandomState,
}

impl RejectSampler {
    pub fn new(per_minute: u32, max_keys: usize) -> Self {
        RejectSampler {
            per_minute,
            max_keys,
            window_end: None,
            kept: HashMap::new(),
            overflow: 0,
            hasher: Default::default(),
        }
    }

    /// Whether this rejection is kept in `rejected_messages`; `now` is the
    /// caller's clock (tests pass their own).
    pub fn keep(&mut self, topic: &str, reason: RejectReason, now: Instant) -> bool {
        if self.per_minute == 0 {
            return true;
        }
        match self.window_end {
            Some(end) if now < end => {}
            _ => {
                // A new window: forget the last one, and give the memory back
                // after a flood rather than holding its peak for ever.
                self.kept = HashMap::new();
                self.overflow = 0;
                self.window_end = Some(now + WINDOW);
            }
        }
        let key = self.key(topic, reason);
        let tracked = self.kept.len();
        let count = match self.kept.get_mut(&key) {
            Some(count) => count,
            None if tracked < self.max_keys => self.kept.entry(key).or_insert(0),
            None => &mut self.overflow,
        };
        if *count < self.per_minute {
            *count += 1;
            true
        } else {
            false
        }
    }

    fn key(&self, topic: &str, reason: RejectReason) -> u64 {
        let mut h = self.hasher.build_hasher();
        topic.hash(&mut h);
        reason.as_str().hash(&mut h);
        h.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The clock is injected: `at(ms)` is `ms` after a fixed start.
    fn clock() -> impl Fn(u64) -> Instant {
        let start = Instant::now();
        move |ms| start + Duration::from_millis(ms)
    }

    #[test]
    fn keeps_the_first_n_per_topic_and_reason_each_minute() {
        let at = clock();
        let mut s = RejectSampler::new(3, DEFAULT_MAX_KEYS);
        let mut kept = |topic: &str, reason, now| (0..10).filter(|_| s.keep(topic, reason, now)).count();
        assert_eq!(kept("city/water_level/x", RejectReason::MalformedPayload, at(0)), 3);
        assert_eq!(kept("city/water_level/y", RejectReason::MalformedPayload, at(1)), 3, "per topic");
        assert_eq!(kept("city/water_level/x", RejectReason::Oversized, at(2)), 3, "per reason");
        assert_eq!(kept("city/water_level/x", RejectReason::MalformedPayload, at(59_999)), 0, "same minute");
        assert_eq!(kept("city/water_level/x", RejectReason::MalformedPayload, at(60_000)), 3, "a new minute");
        assert_eq!(kept("city/water_level/x", RejectReason::MalformedPayload, at(119_999)), 0);
    }

    #[test]
    fn memory_is_bounded_by_the_key_cap() {
        let at = clock();
        let mut s = RejectSampler::new(2, 100);
        let kept = (0..10_000).filter(|i| s.keep(&format!("city/x/{i}"), RejectReason::MalformedPayload, at(0)));
        // One message for each of 100 tracked keys, then the further keys'
        // shared overflow allowance of 2.
        assert_eq!(kept.count(), 102);
        assert_eq!(s.kept.len(), 100);
        assert!(s.keep("city/x/5000", RejectReason::MalformedPayload, at(60_000)));
        assert_eq!(s.kept.len(), 1, "cleared when the minute ends");
    }

    #[test]
    fn zero_keeps_everything() {
        let mut s = RejectSampler::new(0, 1);
        let now = Instant::now();
        assert!((0..1_000).all(|i| s.keep(&format!("t{i}"), RejectReason::MalformedPayload, now)));
    }
}
