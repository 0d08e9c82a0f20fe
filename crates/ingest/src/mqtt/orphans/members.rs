//! Who is away, as the membership topic tells it, and when to try taking
//! each one's session over. No I/O: the watcher feeds it what it hears.

use std::collections::HashMap;
use std::time::Duration;

use tokio::time::Instant;

use super::{STATUS_OFFLINE, STATUS_ONLINE, STATUS_STOPPED};

#[derive(Debug)]
struct Away {
    /// Still away as far as we heard (an `online` or a cleared status while
    /// its drain runs leaves the entry until the drain ends).
    away: bool,
    draining: bool,
    next_try: Instant,
}

/// How a drain attempt ended, as far as scheduling cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Attempt {
    /// Drained (or the member came back): nothing more to do for it.
    Done,
    /// Not drained (another survivor holds the lock, the connection
    /// failed): try again later if it is still away.
    Retry,
}

#[derive(Debug)]
pub(crate) struct Members {
    own: String,
    /// Before taking over a member that stopped cleanly: time to come back
    /// from a restart without a survivor taking its session meanwhile.
    stopped_grace: Duration,
    retry: Duration,
    away: HashMap<String, Away>,
}

impl Members {
    pub fn new(own: &str, stopped_grace: Duration, retry: Duration) -> Members {
        Members { own: own.to_string(), stopped_grace, retry, away: HashMap::new() }
    }

    /// A retained status heard for `member` (an empty payload: cleared by
    /// the survivor that drained it). Unknown payloads are ignored.
    pub fn heard(&mut self, member: &str, payload: &[u8], now: Instant) {
        if member == self.own || member.is_empty() {
            // Our own will, left from a connection we have since replaced.
            return;
        }
        let delay = match payload {
            p if p == STATUS_OFFLINE.as_bytes() => Duration::ZERO,
            p if p == STATUS_STOPPED.as_bytes() => self.stopped_grace,
            p if p.is_empty() || p == STATUS_ONLINE.as_bytes() => {
                if let Some(entry) = self.away.get_mut(member) {
                    if entry.draining {
                        entry.away = false;
                    } else {
                        self.away.remove(member);
                    }
                }
                return;
            }
            _ => return,
        };
        let entry =
            self.away.entry(member.to_string()).or_insert(Away { away: true, draining: false, next_try: now + delay });
        if !entry.away {
            entry.away = true;
            entry.next_try = now + delay;
        }
    }

    /// Members whose session should be tried now; they are marked as being
    /// drained until [`Members::ended`].
    pub fn due(&mut self, now: Instant) -> Vec<String> {
        let mut due: Vec<String> = self
            .away
            .iter_mut()
            .filter(|(_, e)| e.away && !e.draining && e.next_try <= now)
            .map(|(id, e)| {
                e.draining = true;
                id.clone()
            })
            .collect();
        due.sort();
        due
    }

    pub fn ended(&mut self, member: &str, attempt: Attempt, now: Instant) {
        let Some(entry) = self.away.get_mut(member) else { return };
        entry.draining = false;
        if !entry.away || attempt == Attempt::Done {
            self.away.remove(member);
        } else {
            entry.next_try = now + self.retry;
        }
    }

    /// When the next attempt is due, if any is waiting.
    pub fn next_due(&self) -> Option<Instant> {
        self.away.values().filter(|e| e.away && !e.draining).map(|e| e.next_try).min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GRACE: Duration = Duration::from_secs(5);
    const RETRY: Duration = Duration::from_secs(7);

    fn members() -> Members {
        Members::new("me", GRACE, RETRY)
    }

    #[test]
    fn a_dead_member_is_due_at_once_a_stopped_one_after_the_grace() {
        let mut m = members();
        let t = Instant::now();
        m.heard("a", b"offline", t);
        m.heard("b", b"stopped", t);
        m.heard("me", b"offline", t);
        m.heard("c", b"online", t);
        assert_eq!(m.due(t), ["a"]);
        assert!(m.due(t).is_empty(), "a is being drained");
        assert_eq!(m.next_due(), Some(t + GRACE));
        assert_eq!(m.due(t + GRACE), ["b"]);
    }

    #[test]
    fn a_member_back_online_is_forgotten_and_a_failed_attempt_retried() {
        let mut m = members();
        let t = Instant::now();
        m.heard("a", b"offline", t);
        m.heard("a", b"online", t);
        assert!(m.due(t).is_empty());
        m.heard("b", b"offline", t);
        assert_eq!(m.due(t), ["b"]);
        m.ended("b", Attempt::Retry, t);
        assert!(m.due(t).is_empty());
        assert_eq!(m.due(t + RETRY), ["b"]);
        m.ended("b", Attempt::Done, t + RETRY);
        assert_eq!(m.next_due(), None);
    }

    #[test]
    fn online_while_draining_ends_it_without_retry_and_offline_again_revives_it() {
        let mut m = members();
        let t = Instant::now();
        m.heard("a", b"offline", t);
        assert_eq!(m.due(t), ["a"]);
        m.heard("a", b"", t);
        m.ended("a", Attempt::Retry, t);
        assert_eq!(m.next_due(), None, "cleared while draining: nothing to retry");
        m.heard("a", b"offline", t);
        assert_eq!(m.due(t), ["a"]);
        m.heard("a", b"online", t);
        m.heard("a", b"offline", t);
        m.ended("a", Attempt::Retry, t);
        assert_eq!(m.due(t + RETRY), ["a"], "away again: retried");
    }
}
