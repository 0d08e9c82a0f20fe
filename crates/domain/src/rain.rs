//! Rain gauges report three ways; the `rainfall` table stores one: the rain
//! that fell in the interval ending at `ts`.
//!
//! - interval millimetres: stored as they come;
//! - tipping-bucket counts: tips times the bucket size (registry
//!   `installation.bucket_mm`, the 0.5 mm bucket Taiwan's gauges commonly use
//!   when the registry does not say, flagged `assumed_bucket_mm`);
//! - cumulative counters: the difference from the previous counter value of
//!   the same sensor, kept by the store in the same transaction as the rows
//!   so that restarts and several daemons agree ([`counter_step`]).

use chrono::{DateTime, Utc};

use crate::unit::round_significant;

/// Bucket size assumed when the registry has none.
pub const DEFAULT_BUCKET_MM: f64 = 0.5;

/// The last counter value the store holds for a sensor.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CounterState {
    pub ts: DateTime<Utc>,
    pub counter_mm: f64,
}

/// What one counter value means against the previous one.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum CounterStep {
    /// Rain in the interval since the previous value.
    Interval { rain_mm: f64, interval_s: i32, reset: bool },
    /// The first value seen: it only sets the state.
    First,
    /// The same time as the stored state: a duplicate, nothing to store.
    Duplicate,
    /// Older than the stored state: cannot be turned into an interval.
    OutOfOrder,
}

/// Counter resets smaller than this are treated as sensor noise, not resets.
const NOISE_MM: f64 = 0.05;

/// Turns a counter value into interval rain against the previous state.
///
/// A counter that went down means the logger reset (reboot, rollover): the new
/// value is the rain since the reset, a lower bound for the interval, flagged
/// so. A long gap is not an error: the row's `interval_s` says how long it is.
pub fn counter_step(prev: Option<CounterState>, ts: DateTime<Utc>, counter_mm: f64) -> CounterStep {
    let Some(prev) = prev else {
        return CounterStep::First;
    };
    if ts == prev.ts {
        return CounterStep::Duplicate;
    }
    if ts < prev.ts {
        return CounterStep::OutOfOrder;
    }
    let interval_s = i32::try_from((ts - prev.ts).num_seconds().max(1)).unwrap_or(i32::MAX);
    let delta = round_significant(counter_mm - prev.counter_mm);
    if delta >= -NOISE_MM {
        CounterStep::Interval { rain_mm: delta.max(0.0), interval_s, reset: false }
    } else {
        CounterStep::Interval { rain_mm: counter_mm.max(0.0), interval_s, reset: true }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;

    fn t(minutes: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_795_305_600, 0).unwrap() + Duration::minutes(minutes)
    }

    fn state(minutes: i64, counter_mm: f64) -> Option<CounterState> {
        Some(CounterState { ts: t(minutes), counter_mm })
    }

    #[test]
    fn differences_successive_values() {
        assert_eq!(counter_step(None, t(0), 10.0), CounterStep::First);
        assert_eq!(
            counter_step(state(0, 10.0), t(10), 12.5),
            CounterStep::Interval { rain_mm: 2.5, interval_s: 600, reset: false }
        );
        assert_eq!(
            counter_step(state(0, 100.1), t(10), 100.3),
            CounterStep::Interval { rain_mm: 0.2, interval_s: 600, reset: false },
            "no float noise in the difference"
        );
        assert_eq!(
            counter_step(state(0, 10.0), t(10), 9.98),
            CounterStep::Interval { rain_mm: 0.0, interval_s: 600, reset: false },
            "jitter below the noise floor is no rain, not a reset"
        );
    }

    #[test]
    fn handles_resets_gaps_and_disorder() {
        assert_eq!(
            counter_step(state(0, 250.0), t(10), 1.5),
            CounterStep::Interval { rain_mm: 1.5, interval_s: 600, reset: true }
        );
        assert_eq!(
            counter_step(state(0, 10.0), t(180), 40.0),
            CounterStep::Interval { rain_mm: 30.0, interval_s: 10_800, reset: false }
        );
        assert_eq!(counter_step(state(10, 10.0), t(10), 10.0), CounterStep::Duplicate);
        assert_eq!(counter_step(state(10, 10.0), t(5), 9.0), CounterStep::OutOfOrder);
    }
}
