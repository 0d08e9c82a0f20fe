//! Rollups: per sensor and time bucket, the aggregates the query service reads
//! instead of raw rows. This module is the arithmetic, free of I/O; the store
//! turns [`columns`] into tables (or TimescaleDB continuous aggregates) and
//! merges [`Partial`]s into stored rows with the same rules as [`Partial::merge`].
//!
//! Per bucket: `n` readings of quality good or suspect (`bad` ones are left
//! out), `n_suspect`, `first_ts`, `last_ts`; per numeric column `c`: `c_sum`,
//! `c_n` (non-null count), `c_min`, `c_max`, `c_last` (its value at `last_ts`,
//! null if that reading lacked it); per boolean column: `c_n`, `c_true`,
//! `c_last`; per text column: `c_n`, `c_last`.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};

use crate::kind::{Field, FieldType, Kind};
use crate::reading::{QualityLevel, Reading, Values};

/// A bucket width. Buckets are aligned to the Unix epoch (UTC midnight for days).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Level {
    Minute,
    Hour,
    Day,
}

impl Level {
    /// Finest first: each level is built from (and divides) the next.
    pub const ALL: [Level; 3] = [Level::Minute, Level::Hour, Level::Day];

    /// The relation suffix: `1m`, `1h`, `1d`.
    pub fn suffix(self) -> &'static str {
        match self {
            Level::Minute => "1m",
            Level::Hour => "1h",
            Level::Day => "1d",
        }
    }

    pub fn width(self) -> Duration {
        Duration::seconds(self.width_s())
    }

    pub fn width_s(self) -> i64 {
        match self {
            Level::Minute => 60,
            Level::Hour => 3_600,
            Level::Day => 86_400,
        }
    }

    /// The start of the bucket holding `ts` (PostgreSQL's `date_bin` with the
    /// epoch as origin; earlier times round down too).
    pub fn bucket(self, ts: DateTime<Utc>) -> DateTime<Utc> {
        let width = self.width_s() * 1_000_000;
        let micros = ts.timestamp_micros();
        DateTime::from_timestamp_micros(micros - micros.rem_euclid(width)).unwrap_or(ts)
    }
}

/// The relation holding `kind`'s rollups at `level`, e.g. `water_level_1h`.
pub fn relation(kind: Kind, level: Level) -> String {
    format!("{}_{}", kind.as_str(), level.suffix())
}

/// What a rollup column holds, and so how two partial values merge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stat {
    /// Readings aggregated (bigint; merged by adding).
    N,
    /// Of those, readings flagged suspect (bigint; adding).
    NSuspect,
    /// Earliest reading (timestamptz; least).
    FirstTs,
    /// Latest reading (timestamptz; greatest).
    LastTs,
    /// Sum of a numeric column (float8, null when no value; adding).
    Sum(Field),
    /// Non-null values of a column (bigint; adding).
    Count(Field),
    /// Smallest value (float8; least).
    Min(Field),
    /// Largest value (float8; greatest).
    Max(Field),
    /// True values of a boolean column (bigint; adding).
    True(Field),
    /// The column at `last_ts` (float8, boolean or text; the later row's).
    Last(Field),
}

/// How a rollup column is typed in PostgreSQL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnType {
    BigInt,
    Float,
    Bool,
    Text,
    Timestamp,
}

impl ColumnType {
    pub fn sql(self) -> &'static str {
        match self {
            ColumnType::BigInt => "bigint",
            ColumnType::Float => "double precision",
            ColumnType::Bool => "boolean",
            ColumnType::Text => "text",
            ColumnType::Timestamp => "timestamp with time zone",
        }
    }
}

/// One column of a rollup relation (after `sensor_id`, `bucket`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RollupColumn {
    pub name: String,
    pub stat: Stat,
    pub column_type: ColumnType,
}

/// The columns of `kind`'s rollup relations, in table order.
pub fn columns(kind: Kind) -> Vec<RollupColumn> {
    let col = |name: String, stat, column_type| RollupColumn { name, stat, column_type };
    let mut out = vec![
        col("n".into(), Stat::N, ColumnType::BigInt),
        col("n_suspect".into(), Stat::NSuspect, ColumnType::BigInt),
        col("first_ts".into(), Stat::FirstTs, ColumnType::Timestamp),
        col("last_ts".into(), Stat::LastTs, ColumnType::Timestamp),
    ];
    for &field in kind.columns() {
        let name = field.name();
        match field.field_type() {
            FieldType::Float | FieldType::Int => out.extend([
                col(format!("{name}_sum"), Stat::Sum(field), ColumnType::Float),
                col(format!("{name}_n"), Stat::Count(field), ColumnType::BigInt),
                col(format!("{name}_min"), Stat::Min(field), ColumnType::Float),
                col(format!("{name}_max"), Stat::Max(field), ColumnType::Float),
                col(format!("{name}_last"), Stat::Last(field), ColumnType::Float),
            ]),
            FieldType::Bool => out.extend([
                col(format!("{name}_n"), Stat::Count(field), ColumnType::BigInt),
                col(format!("{name}_true"), Stat::True(field), ColumnType::BigInt),
                col(format!("{name}_last"), Stat::Last(field), ColumnType::Bool),
            ]),
            FieldType::Text => out.extend([
                col(format!("{name}_n"), Stat::Count(field), ColumnType::BigInt),
                col(format!("{name}_last"), Stat::Last(field), ColumnType::Text),
            ]),
        }
    }
    out
}

/// One column's aggregate within a bucket.
#[derive(Debug, Clone, PartialEq)]
pub enum ColumnAgg {
    Number { sum: Option<f64>, n: i64, min: Option<f64>, max: Option<f64>, last: Option<f64> },
    Bool { n: i64, n_true: i64, last: Option<bool> },
    Text { n: i64, last: Option<String> },
}

/// A stored value of one rollup cell.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum CellValue<'a> {
    Int(i64),
    Float(Option<f64>),
    Bool(Option<bool>),
    Text(Option<&'a str>),
    Timestamp(DateTime<Utc>),
}

/// The aggregate of some readings of one sensor in one bucket.
#[derive(Debug, Clone, PartialEq)]
pub struct Partial {
    pub n: i64,
    pub n_suspect: i64,
    pub first_ts: DateTime<Utc>,
    pub last_ts: DateTime<Utc>,
    /// Parallel to the kind's [`Kind::columns`].
    pub columns: Vec<(Field, ColumnAgg)>,
}

impl Partial {
    /// The aggregate of one reading; `None` for a `bad` one, which rollups leave out.
    pub fn of(reading: &Reading) -> Option<Partial> {
        if reading.quality.level == QualityLevel::Bad {
            return None;
        }
        let columns = reading
            .kind()
            .columns()
            .iter()
            .map(|&field| {
                let agg = match field.field_type() {
                    FieldType::Float | FieldType::Int => {
                        let v = reading.values.number(field);
                        ColumnAgg::Number { sum: v, n: i64::from(v.is_some()), min: v, max: v, last: v }
                    }
                    FieldType::Bool => {
                        let v = bool_value(&reading.values, field);
                        ColumnAgg::Bool { n: i64::from(v.is_some()), n_true: i64::from(v == Some(true)), last: v }
                    }
                    FieldType::Text => {
                        let v = text_value(&reading.values, field).map(str::to_owned);
                        ColumnAgg::Text { n: i64::from(v.is_some()), last: v }
                    }
                };
                (field, agg)
            })
            .collect();
        Some(Partial {
            n: 1,
            n_suspect: i64::from(reading.quality.level == QualityLevel::Suspect),
            first_ts: reading.ts,
            last_ts: reading.ts,
            columns,
        })
    }

    /// Folds `other` (same sensor, bucket and kind) into `self`. Associative
    /// and, for rows with distinct timestamps, commutative: the order batches
    /// commit in does not change a rollup.
    pub fn merge(&mut self, other: &Partial) {
        let later = other.last_ts > self.last_ts;
        self.n += other.n;
        self.n_suspect += other.n_suspect;
        self.first_ts = self.first_ts.min(other.first_ts);
        self.last_ts = self.last_ts.max(other.last_ts);
        for ((_, mine), (_, theirs)) in self.columns.iter_mut().zip(&other.columns) {
            match (mine, theirs) {
                (
                    ColumnAgg::Number { sum, n, min, max, last },
                    ColumnAgg::Number { sum: s2, n: n2, min: min2, max: max2, last: last2 },
                ) => {
                    *sum = add_opt(*sum, *s2);
                    *n += n2;
                    *min = pick(*min, *min2, f64::min);
                    *max = pick(*max, *max2, f64::max);
                    if later {
                        *last = *last2;
                    }
                }
                (ColumnAgg::Bool { n, n_true, last }, ColumnAgg::Bool { n: n2, n_true: t2, last: last2 }) => {
                    *n += n2;
                    *n_true += t2;
                    if later {
                        *last = *last2;
                    }
                }
                (ColumnAgg::Text { n, last }, ColumnAgg::Text { n: n2, last: last2 }) => {
                    *n += n2;
                    if later {
                        last.clone_from(last2);
                    }
                }
                // Partials of one kind have the same columns.
                _ => debug_assert!(false, "merging partials of different kinds"),
            }
        }
    }

    /// The cell of column `stat`.
    pub fn value(&self, stat: Stat) -> CellValue<'_> {
        let column = |field: Field| self.columns.iter().find(|(f, _)| *f == field).map(|(_, agg)| agg);
        match stat {
            Stat::N => CellValue::Int(self.n),
            Stat::NSuspect => CellValue::Int(self.n_suspect),
            Stat::FirstTs => CellValue::Timestamp(self.first_ts),
            Stat::LastTs => CellValue::Timestamp(self.last_ts),
            Stat::Sum(f) => CellValue::Float(match column(f) {
                Some(ColumnAgg::Number { sum, .. }) => *sum,
                _ => None,
            }),
            Stat::Count(f) => CellValue::Int(match column(f) {
                Some(ColumnAgg::Number { n, .. } | ColumnAgg::Bool { n, .. } | ColumnAgg::Text { n, .. }) => *n,
                None => 0,
            }),
            Stat::Min(f) => CellValue::Float(match column(f) {
                Some(ColumnAgg::Number { min, .. }) => *min,
                _ => None,
            }),
            Stat::Max(f) => CellValue::Float(match column(f) {
                Some(ColumnAgg::Number { max, .. }) => *max,
                _ => None,
            }),
            Stat::True(f) => CellValue::Int(match column(f) {
                Some(ColumnAgg::Bool { n_true, .. }) => *n_true,
                _ => 0,
            }),
            Stat::Last(f) => match column(f) {
                Some(ColumnAgg::Number { last, .. }) => CellValue::Float(*last),
                Some(ColumnAgg::Bool { last, .. }) => CellValue::Bool(*last),
                Some(ColumnAgg::Text { last, .. }) => CellValue::Text(last.as_deref()),
                None => CellValue::Float(None),
            },
        }
    }
}

fn add_opt(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a + b),
        (a, b) => a.or(b),
    }
}

fn pick(a: Option<f64>, b: Option<f64>, f: fn(f64, f64) -> f64) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(f(a, b)),
        (a, b) => a.or(b),
    }
}

fn bool_value(values: &Values, field: Field) -> Option<bool> {
    match (values, field) {
        (Values::Streetlight(s), Field::LampOn) => s.lamp_on,
        _ => None,
    }
}

fn text_value(values: &Values, field: Field) -> Option<&str> {
    match (values, field) {
        (Values::Streetlight(s), Field::Fault) => s.fault.as_deref(),
        _ => None,
    }
}

/// Partials of one kind at one level, by (sensor_id, bucket), in key order
/// (the order the store writes them in, so concurrent writers lock rows in
/// one order).
#[derive(Debug, Clone, PartialEq)]
pub struct Rollup {
    kind: Kind,
    level: Level,
    groups: BTreeMap<(String, DateTime<Utc>), Partial>,
}

impl Rollup {
    pub fn new(kind: Kind, level: Level) -> Rollup {
        Rollup { kind, level, groups: BTreeMap::new() }
    }

    /// The rollup of `readings` (those of other kinds are ignored).
    pub fn of<'a>(kind: Kind, level: Level, readings: impl IntoIterator<Item = &'a Reading>) -> Rollup {
        let mut rollup = Rollup::new(kind, level);
        for reading in readings {
            rollup.add(reading);
        }
        rollup
    }

    pub fn kind(&self) -> Kind {
        self.kind
    }

    pub fn level(&self) -> Level {
        self.level
    }

    /// Adds one reading; `bad` readings and other kinds' are left out.
    pub fn add(&mut self, reading: &Reading) {
        if reading.kind() != self.kind {
            return;
        }
        let Some(partial) = Partial::of(reading) else { return };
        let bucket = self.level.bucket(reading.ts);
        self.insert((reading.sensor_id.clone(), bucket), partial);
    }

    fn insert(&mut self, key: (String, DateTime<Utc>), partial: Partial) {
        match self.groups.get_mut(&key) {
            Some(existing) => existing.merge(&partial),
            None => {
                self.groups.insert(key, partial);
            }
        }
    }

    /// Folds in another rollup of the same kind and level.
    pub fn merge(&mut self, other: &Rollup) {
        debug_assert_eq!((self.kind, self.level), (other.kind, other.level));
        for (key, partial) in &other.groups {
            self.insert(key.clone(), partial.clone());
        }
    }

    /// This rollup at a coarser `level`: cheaper than adding the readings
    /// again, since a finer bucket lies wholly in one coarser bucket.
    pub fn coarsen(&self, level: Level) -> Rollup {
        debug_assert!(level >= self.level);
        let mut out = Rollup::new(self.kind, level);
        for ((sensor, bucket), partial) in &self.groups {
            out.insert((sensor.clone(), level.bucket(*bucket)), partial.clone());
        }
        out
    }

    pub fn groups(&self) -> &BTreeMap<(String, DateTime<Utc>), Partial> {
        &self.groups
    }

    pub fn len(&self) -> usize {
        self.groups.len()
    }

    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use proptest::prelude::*;

    use super::*;
    use crate::reading::{AirQuality, Quality, Streetlight};

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn buckets_are_aligned_to_the_epoch() {
        let ts = at("2026-11-30T03:04:59.999Z");
        assert_eq!(Level::Minute.bucket(ts), at("2026-11-30T03:04:00Z"));
        assert_eq!(Level::Hour.bucket(ts), at("2026-11-30T03:00:00Z"));
        assert_eq!(Level::Day.bucket(ts), at("2026-11-30T00:00:00Z"));
        assert_eq!(Level::Minute.bucket(at("1969-12-31T23:59:30Z")), at("1969-12-31T23:59:00Z"));
        assert_eq!(relation(Kind::WaterLevel, Level::Hour), "water_level_1h");
    }

    #[test]
    fn columns_follow_the_kind() {
        let names = |kind| columns(kind).into_iter().map(|c| c.name).collect::<Vec<_>>();
        assert_eq!(
            names(Kind::WaterLevel),
            [
                "n",
                "n_suspect",
                "first_ts",
                "last_ts",
                "level_m_sum",
                "level_m_n",
                "level_m_min",
                "level_m_max",
                "level_m_last"
            ]
        );
        let light = names(Kind::Streetlight);
        for name in ["lamp_on_n", "lamp_on_true", "lamp_on_last", "fault_n", "fault_last", "energy_kwh_max"] {
            assert!(light.iter().any(|n| n == name), "{name}");
        }
        assert_eq!(columns(Kind::AirQuality).len(), 4 + 8 * 5);
    }

    #[test]
    fn bad_readings_are_left_out_and_last_is_the_latest_row() {
        let ts = at("2026-11-30T03:00:10Z");
        let light = |secs: i64, power_w: Option<f64>, level: QualityLevel| Reading {
            sensor_id: "sl".into(),
            ts: ts + Duration::seconds(secs),
            values: Values::Streetlight(Streetlight { lamp_on: Some(true), power_w, ..Streetlight::default() }),
            quality: Quality { level, reasons: vec![] },
        };
        let readings = [
            light(0, Some(80.0), QualityLevel::Good),
            light(20, None, QualityLevel::Suspect),
            light(40, Some(999.0), QualityLevel::Bad),
        ];
        let rollup = Rollup::of(Kind::Streetlight, Level::Minute, &readings);
        let partial = &rollup.groups()[&("sl".to_string(), at("2026-11-30T03:00:00Z"))];
        assert_eq!((partial.n, partial.n_suspect, partial.last_ts), (2, 1, ts + Duration::seconds(20)));
        assert_eq!(partial.value(Stat::Max(Field::PowerW)), CellValue::Float(Some(80.0)));
        assert_eq!(partial.value(Stat::Count(Field::PowerW)), CellValue::Int(1));
        assert_eq!(partial.value(Stat::Last(Field::PowerW)), CellValue::Float(None), "the latest row had none");
        assert_eq!(partial.value(Stat::True(Field::LampOn)), CellValue::Int(2));
        assert!(Rollup::of(Kind::Streetlight, Level::Minute, &readings[2..]).is_empty());
    }

    fn reading(kind: usize, sensor: u8, offset_ms: i64, v: [Option<i16>; 3], bad: u8) -> Reading {
        let ts = Utc.with_ymd_and_hms(2026, 11, 29, 22, 0, 0).unwrap() + Duration::milliseconds(offset_ms);
        // Multiples of 1/4: sums are exact in any order.
        let f = |i: usize| v[i].map(|x| f64::from(x) / 4.0);
        let values = match kind {
            0 => Values::Rainfall { rain_mm: f(0).unwrap_or(0.0), interval_s: v[1].map(i32::from) },
            1 => Values::WaterLevel { level_m: f(0).unwrap_or(1.0) },
            2 => Values::AirQuality(AirQuality { pm2_5_ugm3: f(0), temp_c: f(1), ..AirQuality::default() }),
            _ => Values::Streetlight(Streetlight {
                lamp_on: v[0].map(|x| x > 0),
                power_w: f(1),
                fault: v[2].filter(|x| *x > 50).map(|x| format!("E{x}")),
                ..Streetlight::default()
            }),
        };
        let level =
            [QualityLevel::Good, QualityLevel::Good, QualityLevel::Suspect, QualityLevel::Bad][usize::from(bad % 4)];
        Reading { sensor_id: format!("s{sensor}"), ts, values, quality: Quality { level, reasons: vec![] } }
    }

    fn readings() -> impl Strategy<Value = Vec<Reading>> {
        let one = (
            0usize..4,
            0u8..3,
            0i64..(3 * 86_400_000),
            proptest::array::uniform3(proptest::option::of(-400i16..400)),
            any::<u8>(),
        );
        proptest::collection::vec(one, 0..120).prop_map(|rows| {
            let mut seen = std::collections::HashSet::new();
            rows.into_iter()
                // A set: one row per (sensor, ts), as the tables keep.
                .filter(|r| seen.insert((r.1, r.2 / 1000 * 1000)))
                .map(|(kind, sensor, ms, v, bad)| reading(kind, sensor, ms / 1000 * 1000, v, bad))
                .collect()
        })
    }

    proptest! {
        #[test]
        fn merging_partials_in_any_split_and_order_is_aggregating_at_once(
            readings in readings(),
            cuts in proptest::collection::vec(0usize..200, 0..6),
            order_seed in any::<u64>(),
        ) {
            for kind in [Kind::Rainfall, Kind::WaterLevel, Kind::AirQuality, Kind::Streetlight] {
                for level in Level::ALL {
                    let whole = Rollup::of(kind, level, &readings);
                    // Shuffle (deterministically from the seed), split at the cuts.
                    let mut shuffled: Vec<&Reading> = readings.iter().collect();
                    let n = shuffled.len();
                    for i in (1..n).rev() {
                        let j = (order_seed.wrapping_mul(6364136223846793005).wrapping_add(i as u64) % (i as u64 + 1)) as usize;
                        shuffled.swap(i, j);
                    }
                    let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (n + 1)).collect();
                    cuts.extend([0, n]);
                    cuts.sort_unstable();
                    let parts: Vec<Rollup> =
                        cuts.windows(2).map(|w| Rollup::of(kind, level, shuffled[w[0]..w[1]].iter().copied())).collect();
                    let mut merged = Rollup::new(kind, level);
                    for part in parts.iter().rev() {
                        merged.merge(part);
                    }
                    prop_assert_eq!(&merged, &whole);
                    if level != Level::Minute {
                        prop_assert_eq!(&Rollup::of(kind, Level::Minute, &readings).coarsen(level), &whole);
                    }
                }
            }
        }
    }
}
