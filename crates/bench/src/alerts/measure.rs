//! What the run measured, from the database's commit timestamps, the
//! notifications heard and the webhooks received; and the percentiles.

use std::collections::HashMap;

use chrono::{DateTime, Utc};

use super::probe::Raised;
use super::receiver::Hook;

/// Latencies in ms: p50 / p95 / p99 / max over `n`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Summary {
    pub n: usize,
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
}

impl Summary {
    /// Nearest-rank percentiles (with 200 samples, p99 is the second largest).
    pub fn of(mut ms: Vec<f64>) -> Summary {
        ms.retain(|v| v.is_finite());
        if ms.is_empty() {
            return Summary::default();
        }
        ms.sort_by(f64::total_cmp);
        let rank = |p: f64| ms[((p * ms.len() as f64).ceil() as usize).clamp(1, ms.len()) - 1];
        Summary { n: ms.len(), p50: rank(0.50), p95: rank(0.95), p99: rank(0.99), max: ms[ms.len() - 1] }
    }

    pub fn figures(&self) -> String {
        format!("{:.1} / {:.1} / {:.1} / {:.1} ms", self.p50, self.p95, self.p99, self.max)
    }
}

fn ms(from: DateTime<Utc>, to: DateTime<Utc>) -> f64 {
    (to - from).num_microseconds().unwrap_or(i64::MAX) as f64 / 1_000.0
}

/// One measured alert, every time on this machine's clock.
#[derive(Debug, Clone)]
pub struct Sample {
    pub gauge: String,
    /// Publish of the reading that completes the confirmation (its `ts`).
    pub published: DateTime<Utc>,
    /// Commit of that reading's row.
    pub reading_committed: Option<DateTime<Utc>>,
    pub alert_id: Option<i64>,
    /// The alert's `raised_at` (the engine's decision time: the reading's ts).
    pub raised_at: Option<DateTime<Utc>>,
    /// Commit of the transaction that stored the alert (its `raised` event).
    pub alert_committed: Option<DateTime<Utc>>,
    /// When this process heard the alert's `citygauge_alerts` notification.
    pub alert_heard: Option<DateTime<Utc>>,
    /// When the receiver got the alert's first webhook.
    pub webhook: Option<DateTime<Utc>>,
}

/// An alert's id, `raised_at` and the commit of its `raised` event.
type StoredAlert = (i64, DateTime<Utc>, Option<DateTime<Utc>>);

/// The samples of the measured gauges (`published` by gauge).
pub async fn samples(
    db: &tokio_postgres::Client,
    published: &[(String, DateTime<Utc>)],
    heard: &HashMap<String, Raised>,
    hooks: &[Hook],
) -> anyhow::Result<Vec<Sample>> {
    let gauges: Vec<String> = published.iter().map(|(g, _)| g.clone()).collect();
    let readings: HashMap<(String, DateTime<Utc>), DateTime<Utc>> = db
        .query(
            "SELECT sensor_id, ts, pg_xact_commit_timestamp(xmin) FROM water_level WHERE sensor_id = ANY($1)",
            &[&gauges],
        )
        .await?
        .iter()
        .map(|r| ((r.get(0), r.get(1)), r.get(2)))
        .collect();
    let alerts: HashMap<String, StoredAlert> = db
        .query(
            "SELECT a.subject, a.id, a.raised_at,
                    (SELECT pg_xact_commit_timestamp(e.xmin) FROM alert_events e
                      WHERE e.alert_id = a.id AND e.kind = 'raised' ORDER BY e.id LIMIT 1)
               FROM alerts a WHERE a.rule = 'water_level' AND a.subject = ANY($1)",
            &[&gauges],
        )
        .await?
        .iter()
        .map(|r| (r.get(0), (r.get(1), r.get(2), r.get(3))))
        .collect();
    // The first webhook of each alert: its `Alert` message.
    let mut webhooks: HashMap<i64, DateTime<Utc>> = HashMap::new();
    for hook in hooks {
        let body: serde_json::Value = serde_json::from_slice(&hook.body).unwrap_or_default();
        if body["msg_type"] == "Alert" {
            if let Some(id) = body["alert_id"].as_i64() {
                let at = webhooks.entry(id).or_insert(hook.at);
                *at = (*at).min(hook.at);
            }
        }
    }
    Ok(published
        .iter()
        .map(|(gauge, published)| {
            let alert = alerts.get(gauge);
            let alert_id = alert.map(|a| a.0);
            Sample {
                gauge: gauge.clone(),
                published: *published,
                reading_committed: readings.get(&(gauge.clone(), *published)).copied(),
                alert_id,
                raised_at: alert.map(|a| a.1),
                alert_committed: alert.and_then(|a| a.2),
                alert_heard: heard.get(gauge).map(|r| r.at),
                webhook: alert_id.and_then(|id| webhooks.get(&id).copied()),
            }
        })
        .collect())
}

/// The figures over the samples.
#[derive(Debug, Clone, Default)]
pub struct Figures {
    pub reading_committed: Summary,
    pub alert_committed: Summary,
    pub alert_heard: Summary,
    pub webhook: Summary,
    /// Reading commit to alert commit: what evaluating and storing add.
    pub evaluation: Summary,
    /// Alert commit to webhook receipt: what the outbox and HTTP add.
    pub delivery: Summary,
    /// Alerts whose `raised_at` is not the confirming reading's `ts`.
    pub misattributed: usize,
    pub missing_alerts: usize,
    pub missing_webhooks: usize,
}

pub fn figures(samples: &[Sample]) -> Figures {
    let series = |f: &dyn Fn(&Sample) -> Option<f64>| Summary::of(samples.iter().filter_map(f).collect());
    Figures {
        reading_committed: series(&|s| s.reading_committed.map(|t| ms(s.published, t))),
        alert_committed: series(&|s| s.alert_committed.map(|t| ms(s.published, t))),
        alert_heard: series(&|s| s.alert_heard.map(|t| ms(s.published, t))),
        webhook: series(&|s| s.webhook.map(|t| ms(s.published, t))),
        evaluation: series(&|s| Some(ms(s.reading_committed?, s.alert_committed?))),
        delivery: series(&|s| Some(ms(s.alert_committed?, s.webhook?))),
        misattributed: samples.iter().filter(|s| s.raised_at.is_some_and(|r| r != s.published)).count(),
        missing_alerts: samples.iter().filter(|s| s.alert_committed.is_none()).count(),
        missing_webhooks: samples.iter().filter(|s| s.webhook.is_none()).count(),
    }
}

/// Publish-to-commit of the other traffic's readings stamped in `[from, to]`.
pub async fn traffic_floor(
    db: &tokio_postgres::Client,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> anyhow::Result<Summary> {
    let rows = db
        .query(
            "SELECT (extract(epoch FROM pg_xact_commit_timestamp(xmin) - ts) * 1000)::float8
               FROM water_level WHERE sensor_id LIKE 'bg-%' AND ts BETWEEN $1 AND $2",
            &[&from, &to],
        )
        .await?;
    Ok(Summary::of(rows.iter().map(|r| r.get(0)).collect()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let s = Summary::of((1..=200).map(f64::from).collect());
        assert_eq!((s.n, s.p50, s.p95, s.p99, s.max), (200, 100.0, 190.0, 198.0, 200.0));
        let one = Summary::of(vec![7.0]);
        assert_eq!((one.p50, one.p99, one.max), (7.0, 7.0, 7.0));
        assert_eq!(Summary::of(vec![]).n, 0);
    }
}
