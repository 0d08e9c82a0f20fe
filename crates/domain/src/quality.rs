//! Plausibility checks that set a reading's quality flag. They never drop a
//! reading: a broken sensor's data is kept, flagged, for maintenance to see,
//! and flood alerts can ignore what is not `good`.
//!
//! - `out_of_range:<column>` (bad): outside the physical range of the kind, or
//!   of the sensor's own `valid_min`/`valid_max`;
//! - `spike:<column>` (suspect): changed faster than the quantity can, against
//!   the sensor's last good value (a QARTOD-style rate-of-change test), which
//!   re-baselines after a run of consecutive mutually consistent readings;
//!   readings with an untrusted time never change its state;
//! - `future_ts` (bad): stamped later than now plus the tolerance (further
//!   ahead than `max_future`, or further back than `max_backfill`, a reading
//!   is refused instead: [`crate::time::check_window`]);
//! - `clock_unset` (bad): stamped before 2000, a logger whose clock was never set.

use crate::FastHashMap as HashMap;

use chrono::{DateTime, Duration, Utc};

use crate::kind::Field;
use crate::reading::{QualityLevel, Reading, Values};
use crate::registry::SensorInfo;

/// Physical range of each numeric column in its canonical unit.
pub fn physical_range(field: Field) -> (f64, f64) {
    match field {
        Field::RainMm | Field::RainCounterMm => (0.0, 10_000.0),
        Field::IntervalS => (1.0, 86_400.0),
        Field::RainTips => (0.0, 100_000.0),
        // Stage above the station datum: datums differ, so this is wide;
        // per-sensor ranges tighten it.
        Field::LevelM => (-50.0, 500.0),
        Field::DepthCm => (-5.0, 500.0),
        Field::Pm25 => (0.0, 1_000.0),
        Field::Pm10 => (0.0, 2_000.0),
        Field::O3 | Field::No2 | Field::So2 => (0.0, 2_000.0),
        Field::Co => (0.0, 200.0),
        Field::TempC => (-40.0, 70.0),
        Field::RhPct => (0.0, 100.0),
        Field::DimPct => (0.0, 100.0),
        Field::PowerW => (0.0, 5_000.0),
        Field::EnergyKwh => (0.0, 1e9),
        Field::VoltageV => (0.0, 500.0),
        Field::CurrentA => (0.0, 50.0),
        Field::LampOn | Field::Fault => (f64::NEG_INFINITY, f64::INFINITY),
    }
}

/// Rain faster than this is not rain (the world's one-hour record is ~305 mm).
const MAX_RAIN_MM_PER_H: f64 = 350.0;

/// How fast a column can credibly change, for the spike test: a rate per
/// second, and a cap on the whole change however long ago the last good value
/// was (within [`SPIKE_WINDOW`]). The rate alone would let anything through
/// after a gap: at 1 m a minute, a 10-minute cadence allows 10 m, and a river
/// does not rise 5 m in 10 minutes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SpikeLimit {
    pub max_rate_per_s: f64,
    pub max_change: f64,
}

impl SpikeLimit {
    /// The largest credible change over `span_s` seconds.
    fn allowance(self, span_s: f64) -> f64 {
        (self.max_rate_per_s * span_s.max(MIN_RATE_SPAN_S)).min(self.max_change)
    }
}

/// The spike test's limit for a column; `None`: the column is not tested.
pub fn spike_limit(field: Field) -> Option<SpikeLimit> {
    let (per_minute, max_change) = match field {
        // A sewer manhole can surcharge by metres in minutes; more than a
        // metre a minute is a sensor, not water. A flash flood raises a small
        // urban river 1-2 m in half an hour to an hour (the fastest gauged
        // rises are around 2 m in 30 min); between two readings a change of
        // more than 2 m is a glitch, whatever the cadence. A real rise of more
        // than 2 m reaches us in steps, each judged against the one before.
        Field::LevelM => (1.0, 2.0),
        // Water on a road rises through the kerb height within minutes, and a
        // street flood seldom exceeds a metre: 30 cm a minute, at most 100 cm
        // between two readings.
        Field::DepthCm => (30.0, 100.0),
        // Air temperature: a sensor leaving shade or a gust front moves a few
        // degrees a minute; a cold front drops 10-15 degrees in an hour, so 15
        // degrees between two readings is the most that is weather.
        Field::TempC => (5.0, 15.0),
        _ => return None,
    };
    Some(SpikeLimit { max_rate_per_s: per_minute / 60.0, max_change })
}

/// The columns the spike test covers, for seeding its state from the store.
pub fn spike_fields() -> impl Iterator<Item = Field> {
    Field::ALL.into_iter().filter(|&f| spike_limit(f).is_some())
}

/// The spike test looks back at most this far: a value after a longer silence
/// is a new baseline, not judged (a gauge back from hours of outage may read
/// anything). Within it, an hourly gauge is still tested, against the cap.
pub const SPIKE_WINDOW: Duration = Duration::hours(3);
/// Rates are computed over at least a minute, so jitter between two readings a
/// second apart is not a spike.
const MIN_RATE_SPAN_S: f64 = 60.0;

/// How readings are judged in time and against their neighbours.
#[derive(Debug, Clone, Copy)]
pub struct QualityConfig {
    /// How far ahead of now a timestamp may be (clock drift) before it is bad.
    pub future_tolerance: Duration,
    /// Readings stamped earlier than now minus this are refused
    /// (`timestamp_out_of_window`), see [`crate::time::check_window`].
    pub max_backfill: Duration,
    /// Readings stamped later than now plus this are refused; between
    /// `future_tolerance` and this they are kept, flagged `future_ts`.
    pub max_future: Duration,
    /// The spike test trusts a new level after this many consecutive readings
    /// that agree with each other but not with the last good value: then the
    /// old value was the outlier (or the level really moved), and the run's
    /// last reading is not flagged.
    pub spike_rebaseline_after: u32,
}

/// Defaults of [`QualityConfig`], also the daemon's option defaults.
pub const DEFAULT_FUTURE_TOLERANCE_S: i64 = 300;
pub const DEFAULT_MAX_BACKFILL_DAYS: i64 = 30;
pub const DEFAULT_MAX_FUTURE_S: i64 = 86_400;
pub const DEFAULT_SPIKE_REBASELINE_AFTER: u32 = 3;

impl Default for QualityConfig {
    fn default() -> Self {
        QualityConfig {
            future_tolerance: Duration::seconds(DEFAULT_FUTURE_TOLERANCE_S),
            max_backfill: Duration::days(DEFAULT_MAX_BACKFILL_DAYS),
            max_future: Duration::seconds(DEFAULT_MAX_FUTURE_S),
            spike_rebaseline_after: DEFAULT_SPIKE_REBASELINE_AFTER,
        }
    }
}

/// One value at one time.
#[derive(Debug, Clone, Copy)]
struct Point {
    ts: DateTime<Utc>,
    value: f64,
}

/// The spike test's state for one (sensor, column): the last good value, and
/// the run of consecutive readings that disagreed with it but agree with each
/// other (a candidate new level).
#[derive(Debug)]
struct Track {
    field: Field,
    anchor: Point,
    run: Vec<Point>,
}

/// The spike test's state per sensor. Keyed by sensor so the per-reading
/// lookup borrows the id instead of cloning it. Only readings whose own time
/// is credible (not `future_ts`, not `clock_unset`) and in range ever change it.
#[derive(Debug, Default)]
pub struct SpikeTracker {
    tracks: HashMap<String, Vec<Track>>,
}

impl SpikeTracker {
    fn track(&mut self, sensor: &str, field: Field) -> Option<&mut Track> {
        self.tracks.get_mut(sensor)?.iter_mut().find(|t| t.field == field)
    }

    /// Seeds the last good value of `sensor`'s `field` from the store, as a
    /// daemon starts: the first reading after a restart is then judged like
    /// any other instead of being trusted blindly. Every daemon on a shared
    /// subscription seeds from the same stored rows, so a sensor's next
    /// reading meets the same baseline whichever daemon receives it. A value
    /// the tracker already holds wins unless the seed is newer; a seed of a
    /// column the test does not cover is ignored.
    pub fn seed(&mut self, sensor: &str, field: Field, ts: DateTime<Utc>, value: f64) {
        if spike_limit(field).is_none() || !value.is_finite() {
            return;
        }
        let point = Point { ts, value };
        match self.track(sensor, field) {
            Some(track) if track.anchor.ts >= ts => {}
            Some(track) => {
                track.anchor = point;
                track.run.clear();
            }
            None => self.start(sensor, field, point),
        }
    }

    fn start(&mut self, sensor: &str, field: Field, anchor: Point) {
        let tracks = match self.tracks.get_mut(sensor) {
            Some(tracks) => tracks,
            None => self.tracks.entry(sensor.to_string()).or_default(),
        };
        tracks.push(Track { field, anchor, run: Vec::new() });
    }
}

/// Runs every check on `reading` and records what fired in its quality flag.
pub fn check(
    reading: &mut Reading,
    sensor: Option<&SensorInfo>,
    now: DateTime<Utc>,
    config: &QualityConfig,
    spikes: &mut SpikeTracker,
) {
    check_before(reading, sensor, now + config.future_tolerance, config, spikes);
}

/// [`check`] with "now plus the tolerance" worked out by the caller: the
/// normaliser does it once per message, not once per reading of a pack.
pub fn check_before(
    reading: &mut Reading,
    sensor: Option<&SensorInfo>,
    future_limit: DateTime<Utc>,
    config: &QualityConfig,
    spikes: &mut SpikeTracker,
) {
    let mut credible_time = true;
    if reading.ts > future_limit {
        reading.quality.flag(QualityLevel::Bad, "future_ts");
        credible_time = false;
    }
    if reading.ts.timestamp() < 946_684_800 {
        reading.quality.flag(QualityLevel::Bad, "clock_unset");
        credible_time = false;
    }
    let kind = reading.kind();
    for &field in kind.columns() {
        let Some(value) = reading.values.number(field) else {
            continue;
        };
        let (mut min, mut max) = physical_range(field);
        if let Some(sensor) = sensor.filter(|_| is_main_field(field)) {
            min = sensor.valid_min.unwrap_or(min);
            max = sensor.valid_max.unwrap_or(max);
        }
        if !(min..=max).contains(&value) {
            reading.quality.flag(QualityLevel::Bad, format!("out_of_range:{field}"));
            continue;
        }
        // A reading whose time cannot be trusted says nothing about the rate
        // of change, and must not become the value others are judged by.
        if let (Some(limit), true) = (spike_limit(field), credible_time) {
            let point = Point { ts: reading.ts, value };
            if spike_check(&reading.sensor_id, field, point, limit, config.spike_rebaseline_after, spikes) {
                reading.quality.flag(QualityLevel::Suspect, format!("spike:{field}"));
            }
        }
    }
    check_rain_rate(reading);
}

/// Flags rain faster than any storm; counter gauges run it once the store has
/// worked out their interval.
pub fn check_rain_rate(reading: &mut Reading) {
    if let Values::Rainfall { rain_mm, interval_s } = reading.values {
        let hours = interval_s.map_or(1.0, |s| f64::from(s).max(60.0) / 3600.0);
        if rain_mm / hours > MAX_RAIN_MM_PER_H && !reading.quality.reasons.iter().any(|r| r == "out_of_range:rain_mm") {
            reading.quality.flag(QualityLevel::Bad, "out_of_range:rain_mm");
        }
    }
}

/// Whether going from `a` to `b` is faster than the quantity can change.
fn too_fast(a: Point, b: Point, limit: SpikeLimit) -> bool {
    let span = (b.ts - a.ts).num_milliseconds().abs() as f64 / 1000.0;
    (b.value - a.value).abs() > limit.allowance(span)
}

/// The rate-of-change test against the last good value; `true` is a spike.
/// A run of `rebaseline_after` consecutive readings that agree with each other
/// but not with the last good value replaces it: one wild value (a first value
/// that was wrong, a glitch) costs at most `rebaseline_after - 1` flags.
fn spike_check(
    sensor: &str,
    field: Field,
    point: Point,
    limit: SpikeLimit,
    rebaseline_after: u32,
    spikes: &mut SpikeTracker,
) -> bool {
    let Some(track) = spikes.track(sensor, field) else {
        spikes.start(sensor, field, point);
        return false;
    };
    if (point.ts - track.anchor.ts).abs() > SPIKE_WINDOW {
        // Older values say nothing: start again from this one.
        track.anchor = point;
        track.run.clear();
        return false;
    }
    if !too_fast(track.anchor, point, limit) {
        if point.ts > track.anchor.ts {
            track.anchor = point;
        }
        track.run.clear();
        return false;
    }
    match track.run.last() {
        Some(&last) if !too_fast(last, point, limit) => track.run.push(point),
        _ => {
            track.run.clear();
            track.run.push(point);
        }
    }
    if track.run.len() >= rebaseline_after.max(1) as usize {
        let newest = track.run.iter().copied().max_by_key(|p| p.ts).unwrap_or(point);
        track.anchor = newest;
        track.run.clear();
        return false;
    }
    true
}

/// The column a sensor's `valid_min`/`valid_max` speak of.
fn is_main_field(field: Field) -> bool {
    matches!(field, Field::RainMm | Field::LevelM | Field::DepthCm)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kind::Kind;
    use crate::reading::Quality;
    use crate::registry::SensorStatus;

    fn level(minute: i64, level_m: f64) -> Reading {
        Reading {
            sensor_id: "kh-wl-0001".into(),
            ts: DateTime::from_timestamp(1_795_305_600 + minute * 60, 0).unwrap(),
            values: Values::WaterLevel { level_m },
            quality: Quality::default(),
        }
    }

    fn run(reading: &mut Reading, sensor: Option<&SensorInfo>, spikes: &mut SpikeTracker) {
        let now = DateTime::from_timestamp(1_795_305_600 + 86_400, 0).unwrap();
        check(reading, sensor, now, &QualityConfig::default(), spikes);
    }

    #[test]
    fn flags_spikes_against_the_last_good_value() {
        let mut spikes = SpikeTracker::default();
        let levels = [(0, 2.0), (1, 2.1), (2, 9.0), (3, 2.2), (13, 4.0)];
        let flags: Vec<_> = levels
            .iter()
            .map(|&(m, v)| {
                let mut r = level(m, v);
                run(&mut r, None, &mut spikes);
                r.quality.reasons.join(",")
            })
            .collect();
        // 2.1 -> 9.0 in a minute is a spike; 2.2 after it compares with 2.1;
        // +1.8 m in ten minutes is a fast but credible rise.
        assert_eq!(flags, ["", "", "spike:level_m", "", ""]);
    }

    #[test]
    fn a_lasting_new_level_is_trusted_after_a_run_and_a_glitch_is_not() {
        let mut spikes = SpikeTracker::default();
        let flag = |m, v, spikes: &mut SpikeTracker| {
            let mut r = level(m, v);
            run(&mut r, None, spikes);
            r.quality.reasons.join(",")
        };
        assert_eq!(flag(0, 2.0, &mut spikes), "");
        // A jump that lasts (a sensor re-mounted, a gate opened): the first
        // readings are suspect, then the run of consistent readings wins.
        let jump: Vec<_> = (1..=4).map(|m| flag(m, 5.0, &mut spikes)).collect();
        assert_eq!(jump, ["spike:level_m", "spike:level_m", "", ""]);
        // Alternating glitches never form a run.
        let glitches: Vec<_> =
            [(5, 9.0), (6, 5.0), (7, 1.0), (8, 5.0)].iter().map(|&(m, v)| flag(m, v, &mut spikes)).collect();
        assert_eq!(glitches, ["spike:level_m", "", "spike:level_m", ""]);
    }

    fn flags(spikes: &mut SpikeTracker, readings: &[(i64, f64)]) -> Vec<String> {
        readings
            .iter()
            .map(|&(m, v)| {
                let mut r = level(m, v);
                run(&mut r, None, spikes);
                r.quality.reasons.join(",")
            })
            .collect()
    }

    #[test]
    fn the_allowance_is_capped_whatever_the_cadence() {
        // At a 10-minute cadence the rate alone would allow 10 m.
        let mut spikes = SpikeTracker::default();
        assert_eq!(flags(&mut spikes, &[(0, 2.0), (10, 7.0), (20, 2.1)]), ["", "spike:level_m", ""]);
        // Nor does an hour and a half of silence let a 5 m jump through.
        let mut spikes = SpikeTracker::default();
        assert_eq!(flags(&mut spikes, &[(0, 2.0), (90, 7.0)]), ["", "spike:level_m"]);
    }

    #[test]
    fn a_flash_flood_rise_is_not_a_spike() {
        // 1.5 m in 30 minutes at a 5-minute cadence, then 3 m in an hour at a
        // 10-minute cadence: more than the cap in all, each step credible.
        let mut spikes = SpikeTracker::default();
        let rise: Vec<_> = (0..=6).map(|i| (i * 5, 1.0 + 0.25 * i as f64)).collect();
        assert!(flags(&mut spikes, &rise).iter().all(String::is_empty));
        let rise: Vec<_> = (1..=6).map(|i| (30 + i * 10, 2.5 + 0.5 * i as f64)).collect();
        assert!(flags(&mut spikes, &rise).iter().all(String::is_empty));
    }

    #[test]
    fn a_new_level_after_a_long_silence_is_a_new_baseline() {
        let mut spikes = SpikeTracker::default();
        // 6 h without data, then the level is 5 m lower: accepted, and it is
        // the value the next readings are judged by.
        assert_eq!(flags(&mut spikes, &[(0, 7.0), (360, 2.0), (370, 2.1), (380, 7.0)]), ["", "", "", "spike:level_m"]);
    }

    #[test]
    fn a_seed_from_the_store_judges_the_first_reading() {
        let mut spikes = SpikeTracker::default();
        spikes.seed("kh-wl-0001", Field::LevelM, level(0, 0.0).ts, 2.0);
        assert_eq!(flags(&mut spikes, &[(10, 7.0), (20, 2.1)]), ["spike:level_m", ""]);
        // An older seed never replaces what the tracker has seen since.
        spikes.seed("kh-wl-0001", Field::LevelM, level(5, 0.0).ts, 9.0);
        assert_eq!(flags(&mut spikes, &[(30, 2.2)]), [""]);
        // A seed older than the window says nothing.
        let mut spikes = SpikeTracker::default();
        spikes.seed("kh-wl-0001", Field::LevelM, level(0, 0.0).ts, 2.0);
        assert_eq!(flags(&mut spikes, &[(240, 7.0)]), [""]);
        // Columns the test does not cover are not seeded.
        spikes.seed("kh-aq-0001", Field::Pm25, level(0, 0.0).ts, 20.0);
        assert!(!spikes.tracks.contains_key("kh-aq-0001"));
    }

    proptest::proptest! {
        /// Whatever the cadence within the window, a jump larger than the cap
        /// is flagged, and a change within the per-minute rate and the cap is not.
        #[test]
        fn the_cap_holds_at_any_cadence(
            gap_min in 1i64..180,
            base in 0.0f64..10.0,
            jump in 2.01f64..50.0,
            down in proptest::bool::ANY,
        ) {
            let jump = if down { -jump } else { jump };
            let mut spikes = SpikeTracker::default();
            let got = flags(&mut spikes, &[(0, base), (gap_min, base + jump)]);
            proptest::prop_assert_eq!(got, ["", "spike:level_m"]);
            let credible = (gap_min as f64).min(2.0) * 0.99;
            let mut spikes = SpikeTracker::default();
            let got = flags(&mut spikes, &[(0, base), (gap_min, base + credible)]);
            proptest::prop_assert_eq!(got, ["", ""]);
        }
    }

    #[test]
    fn readings_with_an_untrusted_time_leave_the_state_alone() {
        let mut spikes = SpikeTracker::default();
        let mut unset = level(0, 9.0);
        unset.ts = DateTime::from_timestamp(60, 0).unwrap();
        run(&mut unset, None, &mut spikes);
        let mut future = level(60 * 48, 9.0);
        run(&mut future, None, &mut spikes);
        assert!(spikes.tracks.is_empty(), "{spikes:?}");
    }

    #[test]
    fn flags_ranges_times_and_rain_rates() {
        let mut spikes = SpikeTracker::default();
        let mut sensor = SensorInfo::new("kh-wl-0001", Kind::WaterLevel, SensorStatus::Active);
        sensor.valid_max = Some(6.0);
        let mut high = level(0, 7.5);
        run(&mut high, Some(&sensor), &mut spikes);
        assert_eq!(
            (high.quality.level, high.quality.reasons.clone()),
            (QualityLevel::Bad, vec!["out_of_range:level_m".into()])
        );

        let mut future = level(60 * 48, 2.0);
        run(&mut future, None, &mut spikes);
        assert_eq!(future.quality.reasons, ["future_ts"]);

        let mut epoch = level(0, 2.0);
        epoch.ts = DateTime::from_timestamp(0, 0).unwrap();
        run(&mut epoch, None, &mut spikes);
        assert_eq!(epoch.quality.reasons, ["clock_unset"]);

        let mut cloudburst = level(0, 0.0);
        cloudburst.values = Values::Rainfall { rain_mm: 80.0, interval_s: Some(600) };
        run(&mut cloudburst, None, &mut spikes);
        assert_eq!(cloudburst.quality.reasons, ["out_of_range:rain_mm"]);
        let mut taoyuan = level(0, 0.0);
        taoyuan.values = Values::Rainfall { rain_mm: 117.0, interval_s: Some(3600) };
        run(&mut taoyuan, None, &mut spikes);
        assert!(taoyuan.quality.is_good(), "117 mm in an hour happened in Taoyuan");
    }
}
