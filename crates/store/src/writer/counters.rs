//! Rain counter values become interval rows here, against the counter state
//! stored with the rows (see [`citygauge_domain::rain`]): in the batch's
//! transaction, under a per-gauge lock, so restarts and several daemons agree.

use std::collections::{HashMap, HashSet};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use citygauge_domain::quality;
use citygauge_domain::rain::{counter_step, CounterState, CounterStep};
use citygauge_domain::{CounterReading, QualityLevel, Reading, RejectReason, Values};
use tokio_postgres::Transaction;

use super::RejectedMessage;
use crate::StoreError;

#[derive(Default)]
pub(super) struct ResolvedCounters {
    pub readings: Vec<Reading>,
    pub rejected: Vec<RejectedMessage>,
    pub duplicates: u64,
}

/// Turns counter values into interval rows against the state stored with the
/// rows (locked for this transaction), and moves the state on.
pub(super) async fn resolve_counters(
    tx: &Transaction<'_>,
    counters: &[CounterReading],
) -> Result<ResolvedCounters, StoreError> {
    let mut out = ResolvedCounters::default();
    if counters.is_empty() {
        return Ok(out);
    }
    let mut ids: Vec<&str> = counters.iter().map(|c| c.sensor_id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    // Serialise writers per gauge even before its state row exists (FOR UPDATE
    // locks only rows that do): two first values must not both be "first".
    // Sorted, so concurrent writers take the locks in one order.
    tx.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended('citygauge.rain_counter.' || id, 0))
           FROM unnest($1::text[]) AS id ORDER BY id",
        &[&ids],
    )
    .await?;
    let rows = tx
        .query(
            "SELECT sensor_id, ts, counter_mm FROM rain_counter_state WHERE sensor_id = ANY($1) ORDER BY sensor_id FOR UPDATE",
            &[&ids],
        )
        .await?;
    let mut state: HashMap<String, CounterState> =
        rows.iter().map(|r| (r.get(0), CounterState { ts: r.get(1), counter_mm: r.get(2) })).collect();
    let mut ordered: Vec<&CounterReading> = counters.iter().collect();
    ordered.sort_by(|a, b| (&a.sensor_id, a.ts).cmp(&(&b.sensor_id, b.ts)));
    let mut changed = HashSet::new();
    // Older than the gauge's state: a redelivery, or a value never seen.
    let mut late: Vec<(&CounterReading, DateTime<Utc>)> = Vec::new();
    let now = Utc::now();
    for c in ordered {
        // The normaliser refuses these already; a value whose time cannot be
        // trusted must never become the state all later values are judged by.
        if let Some(flag) = c.quality.reasons.iter().find(|r| *r == "future_ts" || *r == "clock_unset") {
            let detail = format!("counter value flagged `{flag}` cannot move the gauge's counter state");
            out.rejected.push(counter_rejection(c, RejectReason::TimestampOutOfWindow, detail, now));
            continue;
        }
        let prev = state.get(&c.sensor_id).copied();
        match counter_step(prev, c.ts, c.counter_mm) {
            CounterStep::Interval { rain_mm, interval_s, reset } => {
                let mut reading = Reading {
                    sensor_id: c.sensor_id.clone(),
                    ts: c.ts,
                    values: Values::Rainfall { rain_mm, interval_s: Some(interval_s) },
                    quality: c.quality.clone(),
                };
                if reset {
                    reading.quality.flag(QualityLevel::Suspect, "counter_reset");
                }
                // The rain-rate check needs the interval, known only now.
                quality::check_rain_rate(&mut reading);
                out.readings.push(reading);
            }
            CounterStep::First => {}
            CounterStep::Duplicate => {
                out.duplicates += 1;
                continue;
            }
            CounterStep::OutOfOrder => {
                late.push((c, prev.map_or(c.ts, |p| p.ts)));
                continue;
            }
        }
        state.insert(c.sensor_id.clone(), CounterState { ts: c.ts, counter_mm: c.counter_mm });
        changed.insert(c.sensor_id.as_str());
    }
    let ids: Vec<&str> = changed.into_iter().collect();
    let ts: Vec<DateTime<Utc>> = ids.iter().map(|id| state[*id].ts).collect();
    let values: Vec<f64> = ids.iter().map(|id| state[*id].counter_mm).collect();
    tx.execute(
        "INSERT INTO rain_counter_state (sensor_id, ts, counter_mm)
         SELECT * FROM unnest($1::text[], $2::timestamptz[], $3::float8[])
         ON CONFLICT (sensor_id) DO UPDATE SET ts = EXCLUDED.ts, counter_mm = EXCLUDED.counter_mm
          WHERE rain_counter_state.ts < EXCLUDED.ts",
        &[&ids, &ts, &values],
    )
    .await?;
    if !late.is_empty() {
        let seen = already_seen(tx, &late).await?;
        for (i, (c, state_ts)) in late.into_iter().enumerate() {
            if seen.contains(&i) {
                out.duplicates += 1;
            } else {
                let detail = format!("counter value at {} is older than the stored state at {state_ts}", c.ts);
                out.rejected.push(counter_rejection(c, RejectReason::CounterOutOfOrder, detail, now));
            }
        }
    }
    Ok(out)
}

/// Which of the `late` counter values (older than their gauge's state) were
/// already processed: a message redelivered after a newer one committed (a
/// lost ack, concurrent writers) is a duplicate, not a rejection. A value was
/// processed if a rainfall row has its time, or if the next row after it is
/// the interval that starts at it (a gauge's first value makes no row of its
/// own, only the state the next interval is measured from). `interval_s` is
/// the gap in whole seconds, truncated: the interval starts within the second
/// before `ts - interval_s` (sub-second gaps are stored as 1 s).
async fn already_seen(
    tx: &Transaction<'_>,
    late: &[(&CounterReading, DateTime<Utc>)],
) -> Result<HashSet<usize>, StoreError> {
    let ids: Vec<&str> = late.iter().map(|(c, _)| c.sensor_id.as_str()).collect();
    let ts: Vec<DateTime<Utc>> = late.iter().map(|(c, _)| c.ts).collect();
    let rows = tx
        .query(
            "SELECT c.i - 1 FROM unnest($1::text[], $2::timestamptz[]) WITH ORDINALITY AS c(sensor_id, ts, i)
               CROSS JOIN LATERAL (
                 SELECT r.ts, r.interval_s FROM rainfall r
                  WHERE r.sensor_id = c.sensor_id AND r.ts >= c.ts
                  ORDER BY r.ts LIMIT 1) n
              WHERE n.ts = c.ts
                 OR (n.interval_s IS NOT NULL
                     AND c.ts > n.ts - make_interval(secs => n.interval_s + 1)
                     AND c.ts <= n.ts - make_interval(secs => CASE WHEN n.interval_s <= 1 THEN 0 ELSE n.interval_s END))",
            &[&ids, &ts],
        )
        .await?;
    Ok(rows.iter().map(|r| r.get::<_, i64>(0) as usize).collect())
}

fn counter_rejection(c: &CounterReading, reason: RejectReason, detail: String, now: DateTime<Utc>) -> RejectedMessage {
    let payload = serde_json::json!({"sensor_id": c.sensor_id, "ts": c.ts, "rain_counter_mm": c.counter_mm});
    let payload = Bytes::from(payload.to_string());
    RejectedMessage {
        received_at: now,
        topic: format!("citygauge/rain-counter/{}", c.sensor_id),
        payload_bytes: payload.len(),
        payload,
        reason,
        detail,
    }
}
