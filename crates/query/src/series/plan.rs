//! Which data answers a series request: the readings themselves, or buckets
//! aggregated from the coarsest stored rollup that fits the step. I/O-free.

use chrono::{DateTime, TimeZone, Utc};
use serde::Serialize;

use super::params::{Resolution, SeriesLimits, SeriesRequest};

/// Where a series' values come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub enum Source {
    /// The raw table (readings, or buckets aggregated from readings).
    #[serde(rename = "raw")]
    Raw,
    #[serde(rename = "1m")]
    Minute,
    #[serde(rename = "1h")]
    Hour,
    #[serde(rename = "1d")]
    Day,
}

impl Source {
    /// The rollup's bucket width in seconds; `None` for the raw table.
    pub fn width_s(self) -> Option<i64> {
        match self {
            Source::Raw => None,
            Source::Minute => Some(60),
            Source::Hour => Some(3_600),
            Source::Day => Some(86_400),
        }
    }

    /// The relation's name suffix (`water_level_1h`), per Contract 1.
    pub fn suffix(self) -> &'static str {
        match self {
            Source::Raw => "",
            Source::Minute => "_1m",
            Source::Hour => "_1h",
            Source::Day => "_1d",
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Source::Raw => "raw",
            Source::Minute => "1m",
            Source::Hour => "1h",
            Source::Day => "1d",
        }
    }

    /// The coarsest rollup whose buckets tile a step exactly: a day step reads
    /// the daily rollup, 12 h the hourly one, 90 s the raw table.
    pub fn for_step(step_s: i64) -> Source {
        [Source::Day, Source::Hour, Source::Minute]
            .into_iter()
            .find(|s| s.width_s().is_some_and(|w| step_s % w == 0))
            .unwrap_or(Source::Raw)
    }
}

/// Output buckets: `[from_s, to_s)` in epoch seconds, both multiples of
/// `step_s`, so every bucket is whole (a rollup bucket never straddles two).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Buckets {
    pub step_s: i64,
    pub from_s: i64,
    pub to_s: i64,
    pub source: Source,
}

impl Buckets {
    /// The buckets covering `[from, to)`, aligned to multiples of the step
    /// since the epoch.
    pub fn covering(from: DateTime<Utc>, to: DateTime<Utc>, step_s: i64) -> Buckets {
        let from_s = from.timestamp().div_euclid(step_s) * step_s;
        let end = to.timestamp() + i64::from(to.timestamp_subsec_nanos() > 0);
        let to_s = (end + step_s - 1).div_euclid(step_s) * step_s;
        Buckets { step_s, from_s, to_s: to_s.max(from_s + step_s), source: Source::for_step(step_s) }
    }

    pub fn count(&self) -> i64 {
        (self.to_s - self.from_s) / self.step_s
    }

    pub fn from(&self) -> DateTime<Utc> {
        epoch(self.from_s)
    }

    pub fn to(&self) -> DateTime<Utc> {
        epoch(self.to_s)
    }
}

pub(crate) fn epoch(seconds: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(seconds, 0).single().unwrap_or_default()
}

/// What to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// The readings in `[from, to)`, at most `limit` of them. More than that
    /// means `fallback` when there is one, else a bad range.
    Readings {
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        limit: usize,
        fallback: Option<Buckets>,
    },
    Buckets(Buckets),
}

/// Steps a point budget is rounded up to: values a person reads at a glance,
/// each a multiple of the rollup below it where possible.
const NICE_STEPS: [i64; 19] = [
    1, 5, 10, 30, 60, 300, 600, 900, 1_800, 3_600, 10_800, 21_600, 43_200, 86_400, 172_800, 604_800, 1_209_600,
    2_419_200, 4_838_400,
];

/// The smallest nice step giving at most `points` buckets over `range_s`
/// (beyond the table: whole days).
pub fn nice_step(range_s: i64, points: u32) -> i64 {
    let points = i64::from(points.max(1));
    let wanted = ((range_s + points - 1) / points).max(1);
    NICE_STEPS.into_iter().find(|&s| s >= wanted).unwrap_or_else(|| (wanted + 86_399) / 86_400 * 86_400)
}

/// Picks the source for a validated request.
///
/// - `step=raw`: the readings, at most `max_rows` (more is a bad range).
/// - a step: buckets from the coarsest rollup that tiles it.
/// - a point budget: when the range is short enough for raw data
///   (`max_raw_range_s`) and the aggregate is not `count`, the readings if
///   there are at most `points` of them: a zoomed-in chart then shows what the
///   sensor sent, not a bucket grid finer than its cadence, full of gaps.
///   Otherwise buckets of the nice step for the budget.
/// - a point budget whose range reaches back before `limits.raw_kept_from`:
///   buckets from the hourly rollup or coarser, as the raw table and the
///   1-minute rollup no longer hold that part and would come back empty.
///   Explicit steps and `step=raw` are the client's choice and stay as asked.
pub fn plan(request: &SeriesRequest, limits: &SeriesLimits) -> Plan {
    let (from, to) = (request.from, request.to);
    match request.resolution {
        Resolution::Raw => Plan::Readings { from, to, limit: limits.max_rows, fallback: None },
        Resolution::Step(step_s) => Plan::Buckets(Buckets::covering(from, to, step_s)),
        Resolution::Points(points) => {
            let range_s = (to - from).num_seconds().max(1);
            let step_s = nice_step(range_s, points);
            if limits.raw_kept_from.is_some_and(|kept_from| from < kept_from) {
                // Nice steps from an hour up are whole hours; shorter ones become one.
                let hours = (step_s + 3_599) / 3_600;
                return Plan::Buckets(Buckets::covering(from, to, hours * 3_600));
            }
            let buckets = Buckets::covering(from, to, step_s);
            if range_s <= limits.max_raw_range_s && request.agg.applies_to_single_readings() {
                let limit = usize::try_from(points).unwrap_or(usize::MAX);
                Plan::Readings { from, to, limit, fallback: Some(buckets) }
            } else {
                Plan::Buckets(buckets)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::Duration;

    use super::super::params::Agg;
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn request(from: &str, to: &str, resolution: Resolution, agg: Agg) -> SeriesRequest {
        SeriesRequest { from: t(from), to: t(to), resolution, agg, columns: vec![] }
    }

    #[test]
    fn the_coarsest_rollup_that_tiles_the_step() {
        for (step, source) in [
            (1, Source::Raw),
            (30, Source::Raw),
            (90, Source::Raw),
            (60, Source::Minute),
            (300, Source::Minute),
            (5_400, Source::Minute),
            (3_600, Source::Hour),
            (43_200, Source::Hour),
            (90_000, Source::Hour),
            (86_400, Source::Day),
            (604_800, Source::Day),
        ] {
            assert_eq!(Source::for_step(step), source, "step {step}");
        }
    }

    #[test]
    fn nice_steps_round_up() {
        assert_eq!(nice_step(3_600, 1000), 5);
        assert_eq!(nice_step(60, 1000), 1);
        assert_eq!(nice_step(86_400, 1000), 300);
        assert_eq!(nice_step(86_400, 288), 300);
        assert_eq!(nice_step(86_400, 287), 600);
        assert_eq!(nice_step(365 * 86_400, 1000), 43_200);
        assert_eq!(nice_step(100 * 365 * 86_400, 1), 36_500 * 86_400);
        for points in [1, 7, 100, 1000, 10_000] {
            for range in [1, 59, 3_600, 86_400 * 3, 86_400 * 400] {
                let step = nice_step(range, points);
                assert!((range + step - 1) / step <= i64::from(points), "{range} {points} {step}");
            }
        }
    }

    #[test]
    fn a_year_at_a_thousand_points_reads_the_hourly_rollup() {
        let r = request("2025-11-30T00:00:00Z", "2026-11-30T00:00:00Z", Resolution::Points(1000), Agg::Avg);
        let Plan::Buckets(b) = plan(&r, &SeriesLimits::default()) else { panic!("expected buckets") };
        assert_eq!((b.step_s, b.source), (43_200, Source::Hour));
        assert_eq!(b.count(), 730);
    }

    #[test]
    fn short_ranges_try_the_readings_first() {
        let r = request("2026-11-29T03:00:00Z", "2026-11-30T03:00:00Z", Resolution::Points(1000), Agg::Avg);
        let Plan::Readings { limit, fallback: Some(b), .. } = plan(&r, &SeriesLimits::default()) else {
            panic!("expected readings")
        };
        assert_eq!(limit, 1000);
        assert_eq!((b.step_s, b.source, b.count()), (300, Source::Minute, 288));
        // Counting needs buckets even when there are few readings.
        let r = SeriesRequest { agg: Agg::Count, ..r };
        assert!(matches!(plan(&r, &SeriesLimits::default()), Plan::Buckets(_)));
    }

    #[test]
    fn explicit_steps_and_raw() {
        let r = request("2026-11-30T00:00:10Z", "2026-11-30T00:59:59.5Z", Resolution::Step(600), Agg::Max);
        let Plan::Buckets(b) = plan(&r, &SeriesLimits::default()) else { panic!() };
        assert_eq!((b.from(), b.to(), b.count()), (t("2026-11-30T00:00:00Z"), t("2026-11-30T01:00:00Z"), 6));
        let r = request("2026-11-30T00:00:00Z", "2026-11-30T00:00:30Z", Resolution::Step(30), Agg::Avg);
        let Plan::Buckets(b) = plan(&r, &SeriesLimits::default()) else { panic!() };
        assert_eq!((b.source, b.count()), (Source::Raw, 1));
        let r = request("2026-11-30T00:00:00Z", "2026-11-30T00:00:30Z", Resolution::Raw, Agg::Avg);
        assert_eq!(
            plan(&r, &SeriesLimits::default()),
            Plan::Readings { from: r.from, to: r.to, limit: 100_000, fallback: None }
        );
    }

    #[test]
    fn ranges_older_than_the_raw_retention_read_the_hourly_rollup() {
        let kept = SeriesLimits { raw_kept_from: Some(t("2026-10-31T00:00:00Z")), ..SeriesLimits::default() };
        // A day, 60 days ago, at 1000 points: 5-minute buckets would read
        // the 1-minute rollup, long deleted there.
        let old = request("2026-10-01T00:00:00Z", "2026-10-02T00:00:00Z", Resolution::Points(1000), Agg::Avg);
        assert!(matches!(plan(&old, &SeriesLimits::default()), Plan::Readings { .. }), "without retention");
        let Plan::Buckets(b) = plan(&old, &kept) else { panic!("expected buckets") };
        assert_eq!((b.step_s, b.source, b.count()), (3_600, Source::Hour, 24));
        // A year: already hourly or coarser.
        let year = request("2025-11-30T00:00:00Z", "2026-11-30T00:00:00Z", Resolution::Points(1000), Agg::Avg);
        let Plan::Buckets(b) = plan(&year, &kept) else { panic!() };
        assert_eq!((b.step_s, b.source), (43_200, Source::Hour));
        // Recent ranges and explicit steps: as without retention.
        let recent = request("2026-11-29T00:00:00Z", "2026-11-30T00:00:00Z", Resolution::Points(1000), Agg::Avg);
        assert_eq!(plan(&recent, &kept), plan(&recent, &SeriesLimits::default()));
        let stepped = SeriesRequest { resolution: Resolution::Step(300), ..old };
        assert_eq!(plan(&stepped, &kept), plan(&stepped, &SeriesLimits::default()));
    }

    #[test]
    fn buckets_cover_the_range_whole() {
        let from = t("2026-11-30T00:00:00Z");
        for (offset, step, count) in [(1, 60, 1), (59, 60, 1), (60, 60, 1), (3_601, 3_600, 2), (86_399, 86_400, 1)] {
            let to = from + Duration::seconds(offset);
            let b = Buckets::covering(from, to, step);
            assert!(b.from() <= from && b.to() >= to && b.from_s % step == 0 && b.to_s % step == 0);
            assert_eq!(b.count(), count, "{offset} {step}");
        }
    }
}
