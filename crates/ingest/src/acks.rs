//! Acknowledging messages after their commit, in the order they arrived.
//!
//! MQTT 3.1.1 (4.6) asks a receiver to send PUBACKs in the order the PUBLISH
//! packets came; batches may commit out of order when several writers run, so
//! acks are released only once every earlier message of the same connection
//! has committed. Acks of an earlier connection are dropped: the broker
//! redelivers those messages on the new one, and the (sensor_id, ts) key makes
//! storing them again a no-op. The MQTT poll loop (`mqtt.rs`) runs the
//! sequencer, so acks and reconnects happen in one order.

use std::collections::BTreeMap;

/// Identifies one QoS 1/2 message for its acknowledgement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct AckToken {
    /// Which broker connection it came on.
    pub epoch: u64,
    /// Its place in that connection's arrival order, from 0.
    pub seq: u64,
    pub pkid: u16,
    pub qos: u8,
}

/// Holds committed acks until all earlier ones have committed too.
#[derive(Debug, Default)]
pub(crate) struct AckSequencer {
    epoch: u64,
    next: u64,
    committed: BTreeMap<u64, AckToken>,
}

impl AckSequencer {
    /// Takes newly committed tokens; returns those now releasable, in order,
    /// and how many stale ones (older connections) were dropped.
    pub fn commit(&mut self, tokens: impl IntoIterator<Item = AckToken>, current_epoch: u64) -> (Vec<AckToken>, usize) {
        let mut stale = 0;
        if self.epoch != current_epoch {
            stale += self.committed.len();
            self.epoch = current_epoch;
            self.next = 0;
            self.committed.clear();
        }
        for token in tokens {
            if token.epoch == current_epoch && token.seq >= self.next {
                self.committed.insert(token.seq, token);
            } else {
                stale += 1;
            }
        }
        let mut ready = Vec::new();
        while let Some(token) = self.committed.remove(&self.next) {
            ready.push(token);
            self.next += 1;
        }
        (ready, stale)
    }

    /// Acks waiting for an earlier message to commit.
    pub fn waiting(&self) -> usize {
        self.committed.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn token(epoch: u64, seq: u64) -> AckToken {
        AckToken { epoch, seq, pkid: (seq % 65_535) as u16 + 1, qos: 1 }
    }

    #[test]
    fn holds_acks_until_earlier_messages_commit() {
        let mut s = AckSequencer::default();
        let (ready, _) = s.commit([token(1, 2), token(1, 3)], 1);
        assert!(ready.is_empty());
        let (ready, _) = s.commit([token(1, 0), token(1, 1)], 1);
        assert_eq!(ready.iter().map(|t| t.seq).collect::<Vec<_>>(), [0, 1, 2, 3]);
    }

    #[test]
    fn drops_acks_of_an_earlier_connection() {
        let mut s = AckSequencer::default();
        s.commit([token(1, 1)], 1);
        // The held ack of connection 1 and the late one are both dropped.
        let (ready, stale) = s.commit([token(1, 0), token(2, 0)], 2);
        assert_eq!((ready, stale), (vec![token(2, 0)], 2));
    }

    proptest! {
        /// However batches interleave, every ack is released once, in order.
        #[test]
        fn releases_every_ack_once_in_order(n in 1u64..300, cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..20), seed in any::<u64>()) {
            let mut seqs: Vec<u64> = (0..n).collect();
            // A deterministic shuffle from the seed.
            let mut state = seed | 1;
            for i in (1..seqs.len()).rev() {
                state ^= state << 13; state ^= state >> 7; state ^= state << 17;
                seqs.swap(i, (state % (i as u64 + 1)) as usize);
            }
            let mut bounds: Vec<usize> = cuts.iter().map(|c| c.index(seqs.len())).collect();
            bounds.push(seqs.len());
            bounds.sort_unstable();
            let mut s = AckSequencer::default();
            let mut released = Vec::new();
            let mut start = 0;
            for end in bounds {
                let (ready, stale) = s.commit(seqs[start..end].iter().map(|&q| token(7, q)), 7);
                prop_assert_eq!(stale, 0);
                released.extend(ready.into_iter().map(|t| t.seq));
                start = end;
            }
            prop_assert_eq!(released, (0..n).collect::<Vec<_>>());
            prop_assert_eq!(s.waiting(), 0);
        }
    }
}
