//! The byte budget on messages held between receipt and commit.
//!
//! Counting messages alone does not bound memory: a full receive window of
//! 4,096 publishes of 4 MiB each is 16 GiB while the database is slow. Each
//! message received takes its payload (and topic) bytes from this budget;
//! they come back when the batch holding it is committed or given up (the
//! [`HeldBytes`] guard travels with the message and is dropped with its
//! batch). While the budget is exhausted the MQTT loop reads nothing more, so
//! TCP backpressure holds the broker back.
//!
//! A message's size is known only once it has been read, so a message is
//! always admitted while the budget is not yet exhausted, and reading stops
//! once it is: what is held never exceeds the budget by more than one
//! message, and a message larger than the whole budget still goes through
//! (nothing can deadlock on it).

use std::sync::Arc;

use prometheus::IntGauge;
use tokio::sync::watch;

/// Bytes held, shared by the MQTT loop (which takes) and whoever drops a
/// batch (which gives back).
#[derive(Debug)]
pub(crate) struct ByteBudget {
    limit: usize,
    /// The bytes held now; a watch so the MQTT loop can wait for a release
    /// without missing one.
    held: watch::Sender<usize>,
    gauge: IntGauge,
}

impl ByteBudget {
    pub fn new(limit: usize, gauge: IntGauge) -> Arc<ByteBudget> {
        gauge.set(0);
        Arc::new(ByteBudget { limit: limit.max(1), held: watch::Sender::new(0), gauge })
    }

    /// Holds the bytes of a message just read (the caller reads only while
    /// the budget is not exhausted).
    pub fn hold(self: &Arc<Self>, bytes: usize) -> HeldBytes {
        if bytes > 0 {
            self.held.send_modify(|held| {
                *held = held.saturating_add(bytes);
                self.gauge.set(i64::try_from(*held).unwrap_or(i64::MAX));
            });
        }
        HeldBytes { budget: Some(self.clone()), bytes }
    }

    /// Whether reading must stop until bytes are released.
    pub fn exhausted(&self) -> bool {
        *self.held.borrow() >= self.limit
    }

    /// Changes of the bytes held: the MQTT loop marks the current value seen
    /// (`borrow_and_update`), checks [`ByteBudget::exhausted`], and if so
    /// waits for the next change.
    pub fn subscribe(&self) -> watch::Receiver<usize> {
        self.held.subscribe()
    }

    #[cfg(test)]
    pub fn held(&self) -> usize {
        *self.held.borrow()
    }

    fn release(&self, bytes: usize) {
        self.held.send_modify(|held| {
            *held = held.saturating_sub(bytes);
            self.gauge.set(i64::try_from(*held).unwrap_or(i64::MAX));
        });
    }
}

/// Bytes taken from a [`ByteBudget`], given back when dropped. The default
/// holds nothing (an empty batch).
#[derive(Debug, Default)]
pub(crate) struct HeldBytes {
    budget: Option<Arc<ByteBudget>>,
    bytes: usize,
}

impl HeldBytes {
    /// Takes over what `other` holds, so a batch gives its messages' bytes
    /// back at once.
    pub fn absorb(&mut self, mut other: HeldBytes) {
        if other.bytes == 0 {
            return;
        }
        match (&self.budget, &other.budget) {
            (Some(mine), Some(theirs)) if !Arc::ptr_eq(mine, theirs) => {
                // Two budgets (never in the daemon): keep each accounted.
                debug_assert!(false, "bytes of two budgets in one batch");
                return;
            }
            _ => {}
        }
        if self.budget.is_none() {
            self.budget = other.budget.take();
        }
        self.bytes += std::mem::take(&mut other.bytes);
    }

    #[cfg(test)]
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

impl Drop for HeldBytes {
    fn drop(&mut self) {
        if let Some(budget) = &self.budget {
            if self.bytes > 0 {
                budget.release(self.bytes);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn budget(limit: usize) -> Arc<ByteBudget> {
        ByteBudget::new(limit, IntGauge::new("held", "held").unwrap())
    }

    #[test]
    fn exhausted_at_the_limit_until_released() {
        let b = budget(100);
        let first = b.hold(60);
        assert!(!b.exhausted());
        let second = b.hold(40);
        assert_eq!((b.held(), b.gauge.get()), (100, 100));
        assert!(b.exhausted(), "the budget is exhausted");
        drop(first);
        assert_eq!(b.held(), 40);
        assert!(!b.exhausted());
        drop(second);
        assert_eq!((b.held(), b.gauge.get()), (0, 0));
    }

    #[test]
    fn a_message_larger_than_the_budget_goes_through() {
        let b = budget(100);
        let big = b.hold(1_000);
        assert!(b.exhausted(), "nothing more is read while it is held");
        drop(big);
        assert!(!b.exhausted());
        assert_eq!(b.held(), 0);
    }

    #[test]
    fn a_batch_gives_back_all_its_messages_bytes_when_dropped() {
        let b = budget(1_000);
        let mut batch = HeldBytes::default();
        for n in [10, 20, 0, 30] {
            batch.absorb(b.hold(n));
        }
        assert_eq!((batch.bytes(), b.held()), (60, 60));
        let mut bigger = HeldBytes::default();
        bigger.absorb(batch);
        assert_eq!(b.held(), 60, "moving the bytes releases nothing");
        drop(bigger);
        assert_eq!(b.held(), 0);
        drop(HeldBytes::default());
    }

    #[tokio::test]
    async fn a_waiter_sees_every_release() {
        let b = budget(10);
        let held = b.hold(10);
        let mut changes = b.subscribe();
        changes.borrow_and_update();
        assert!(b.exhausted());
        // Released between the check and the wait: not missed.
        drop(held);
        tokio::time::timeout(std::time::Duration::from_secs(1), changes.changed()).await.unwrap().unwrap();
        assert!(!b.exhausted());
    }

    proptest! {
        /// Reading only while the budget is not exhausted, and releasing in
        /// any order: what is held is the sum of the live guards, and never
        /// more than the budget plus one message.
        #[test]
        fn held_bytes_are_the_live_guards(ops in prop::collection::vec((any::<bool>(), 0usize..300, any::<prop::sample::Index>()), 1..200)) {
            let limit = 500;
            let b = budget(limit);
            let mut live: Vec<HeldBytes> = Vec::new();
            for (read, bytes, which) in ops {
                if read && !b.exhausted() {
                    live.push(b.hold(bytes));
                } else if !live.is_empty() {
                    live.swap_remove(which.index(live.len()));
                }
                let sum: usize = live.iter().map(HeldBytes::bytes).sum();
                prop_assert_eq!(b.held(), sum);
                prop_assert_eq!(b.exhausted(), sum >= limit);
                prop_assert!(sum < limit + 300);
            }
            live.clear();
            prop_assert_eq!(b.held(), 0);
        }
    }
}
