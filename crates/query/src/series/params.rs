//! The series query string and its validation: every bad value becomes a
//! [`QueryError::BadParameter`] naming the parameter, before any I/O.

use chrono::{DateTime, Duration, Utc};
use citygauge_domain::kind::FieldType;
use citygauge_domain::{Field, Kind};
use serde::{Deserialize, Serialize};

use super::plan::Buckets;
use super::time::{format_duration, parse_duration, parse_instant};
use crate::cache::view::rfc3339;
use crate::params::{given, shown};
use crate::QueryError;

/// The query string of `/series` and `/series.csv`. Every field is taken as
/// text so that a malformed value reaches [`SeriesParams::validate`] and gets
/// an error naming it, rather than a generic query-string rejection.
#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SeriesParams {
    /// Start of the range, inclusive: RFC 3339, epoch seconds, epoch
    /// milliseconds (13+ digits), `now`, or relative to now (`-24h`, `now-7d`).
    /// Default: `to` minus 24 h.
    #[param(example = "-24h")]
    pub from: Option<String>,
    /// End of the range, exclusive; same forms as `from`. Default: now.
    #[param(example = "now")]
    pub to: Option<String>,
    /// Bucket width (`30s`, `5m`, `1h`, `1d`, `1h30m` or seconds; at least
    /// 1 s), or `raw` for the readings themselves. Not together with `points`.
    #[param(example = "5m")]
    pub step: Option<String>,
    /// Point budget, 1 to 10000 (default 1000 when no `step`): the step is the
    /// range over the budget rounded up to a nice step (1s, 5s, ... 1h, 3h, ...
    /// 1d). When the range holds at most this many readings (and `agg` is not
    /// `count`), the readings themselves are returned (`source` `raw`,
    /// `step_s` null).
    #[param(value_type = Option<u32>, example = 1000)]
    pub points: Option<String>,
    /// Aggregate per bucket and column: `avg` (default), `min`, `max`, `sum`,
    /// `last`, `count`. `lamp_on` counts as 0/1 (avg = fraction of readings on).
    #[param(example = "avg")]
    pub agg: Option<String>,
    /// Comma-separated columns of the sensor's kind (e.g. `level_m`). Default:
    /// every numeric and boolean column. `fault` (text) only with `agg=count`.
    #[param(example = "level_m")]
    pub columns: Option<String>,
}

/// How values of one bucket are combined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Agg {
    Avg,
    Min,
    Max,
    Sum,
    Last,
    Count,
}

impl Agg {
    pub const ALL: [Agg; 6] = [Agg::Avg, Agg::Min, Agg::Max, Agg::Sum, Agg::Last, Agg::Count];

    pub fn as_str(self) -> &'static str {
        match self {
            Agg::Avg => "avg",
            Agg::Min => "min",
            Agg::Max => "max",
            Agg::Sum => "sum",
            Agg::Last => "last",
            Agg::Count => "count",
        }
    }

    /// Whether a bucket holding one reading aggregates to that reading's value,
    /// so the readings themselves can stand in for sparse buckets.
    pub fn applies_to_single_readings(self) -> bool {
        self != Agg::Count
    }
}

/// Bounds on what one request may ask for.
#[derive(Debug, Clone)]
pub struct SeriesLimits {
    /// Most rows one response holds: readings for `step=raw`, buckets for an
    /// explicit step (JSON and CSV alike).
    pub max_rows: usize,
    /// Longest range served as raw readings (`step=raw`, or a point budget's
    /// readings); longer ranges need a step.
    pub max_raw_range_s: i64,
    /// Largest `points`.
    pub max_points: u32,
    pub default_points: u32,
    /// Range when `from` is not given.
    pub default_range_s: i64,
    /// Where the kind's raw retention (shared by its 1-minute rollup) begins
    /// for this request; `None`: unknown, nothing assumed deleted.
    pub raw_kept_from: Option<DateTime<Utc>>,
}

impl Default for SeriesLimits {
    fn default() -> Self {
        SeriesLimits {
            max_rows: 100_000,
            max_raw_range_s: 31 * 86_400,
            max_points: 10_000,
            default_points: 1_000,
            default_range_s: 86_400,
            raw_kept_from: None,
        }
    }
}

/// How finely the series is resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolution {
    /// `step=raw`: the readings, never aggregated.
    Raw,
    /// An explicit step, seconds.
    Step(i64),
    /// A point budget (given or the default).
    Points(u32),
}

/// A validated request: every value known good for the kind.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesRequest {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub resolution: Resolution,
    pub agg: Agg,
    pub columns: Vec<Field>,
}

impl SeriesParams {
    /// Checks every parameter against `kind` and `limits`, relative times
    /// against `now`. The first problem found is returned.
    pub fn validate(&self, kind: Kind, now: DateTime<Utc>, limits: &SeriesLimits) -> Result<SeriesRequest, QueryError> {
        let to = match given(&self.to) {
            Some(text) => parse_instant(text, now).map_err(|why| QueryError::bad("to", why))?,
            None => now,
        };
        let from = match given(&self.from) {
            Some(text) => parse_instant(text, now).map_err(|why| QueryError::bad("from", why))?,
            None => to - Duration::seconds(limits.default_range_s),
        };
        if from >= to {
            return Err(QueryError::bad("from", format!("must be before to ({})", rfc3339(to))));
        }
        let range_s = (to - from).num_seconds();

        let agg = match given(&self.agg) {
            None => Agg::Avg,
            Some(text) => Agg::ALL.into_iter().find(|a| a.as_str() == text).ok_or_else(|| {
                QueryError::bad("agg", format!("{:?} is not one of avg, min, max, sum, last, count", shown(text)))
            })?,
        };

        let resolution = match (given(&self.step), given(&self.points)) {
            (Some(_), Some(_)) => return Err(QueryError::bad("points", "give either step or points, not both")),
            (Some("raw"), None) => {
                if given(&self.agg).is_some() {
                    return Err(QueryError::bad("agg", "raw readings are not aggregated; drop agg or give a step"));
                }
                if range_s > limits.max_raw_range_s {
                    return Err(QueryError::bad(
                        "from",
                        format!(
                            "raw readings cover at most {} at once; narrow from/to or give a step",
                            format_duration(limits.max_raw_range_s)
                        ),
                    ));
                }
                Resolution::Raw
            }
            (Some(text), None) => {
                let step = parse_duration(text).map_err(|why| QueryError::bad("step", why))?;
                if step < 1 {
                    return Err(QueryError::bad("step", "must be at least 1s"));
                }
                let buckets = Buckets::covering(from, to, step).count();
                if buckets > i64::try_from(limits.max_rows).unwrap_or(i64::MAX) {
                    return Err(QueryError::bad(
                        "step",
                        format!(
                            "{} over this range makes {buckets} buckets, more than {}; give a larger step or a shorter range",
                            format_duration(step),
                            limits.max_rows
                        ),
                    ));
                }
                Resolution::Step(step)
            }
            (None, Some(text)) => {
                let points: u32 = text
                    .parse()
                    .map_err(|_| QueryError::bad("points", format!("{:?} is not a whole number", shown(text))))?;
                if points == 0 || points > limits.max_points {
                    return Err(QueryError::bad("points", format!("must be between 1 and {}", limits.max_points)));
                }
                Resolution::Points(points)
            }
            (None, None) => Resolution::Points(limits.default_points),
        };

        let columns = match given(&self.columns) {
            None => kind.columns().iter().copied().filter(|f| f.field_type() != FieldType::Text).collect(),
            Some(text) => parse_columns(text, kind)?,
        };
        for field in &columns {
            if field.field_type() == FieldType::Text && agg != Agg::Count {
                return Err(QueryError::bad(
                    "columns",
                    format!("{field} is a text column; only agg=count applies to it"),
                ));
            }
        }
        Ok(SeriesRequest { from, to, resolution, agg, columns })
    }
}

fn parse_columns(text: &str, kind: Kind) -> Result<Vec<Field>, QueryError> {
    let mut columns = Vec::new();
    for name in text.split(',').map(str::trim) {
        if name.is_empty() {
            return Err(QueryError::bad("columns", "empty column name; give a comma-separated list"));
        }
        let field = kind.columns().iter().copied().find(|f| f.name() == name).ok_or_else(|| {
            let known: Vec<&str> = kind.columns().iter().map(|f| f.name()).collect();
            QueryError::bad("columns", format!("{kind} has no column {:?}; it has {}", shown(name), known.join(", ")))
        })?;
        if columns.contains(&field) {
            return Err(QueryError::bad("columns", format!("{field} is listed twice")));
        }
        columns.push(field);
    }
    Ok(columns)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        "2026-11-30T03:00:00Z".parse().unwrap()
    }

    fn params(query: &[(&str, &str)]) -> SeriesParams {
        let mut p = SeriesParams::default();
        for (key, value) in query {
            let slot = match *key {
                "from" => &mut p.from,
                "to" => &mut p.to,
                "step" => &mut p.step,
                "points" => &mut p.points,
                "agg" => &mut p.agg,
                "columns" => &mut p.columns,
                other => panic!("{other}"),
            };
            *slot = Some(value.to_string());
        }
        p
    }

    fn check(kind: Kind, query: &[(&str, &str)]) -> Result<SeriesRequest, QueryError> {
        params(query).validate(kind, now(), &SeriesLimits::default())
    }

    #[test]
    fn defaults_are_the_last_day_at_a_thousand_points() {
        let r = check(Kind::Streetlight, &[]).unwrap();
        assert_eq!((r.from, r.to), (now() - Duration::days(1), now()));
        assert_eq!((r.resolution, r.agg), (Resolution::Points(1000), Agg::Avg));
        let names: Vec<&str> = r.columns.iter().map(|f| f.name()).collect();
        assert_eq!(names, ["lamp_on", "dim_pct", "power_w", "energy_kwh", "voltage_v", "current_a"]);
    }

    #[test]
    fn good_values_are_read() {
        let r = check(
            Kind::AirQuality,
            &[("from", "-7d"), ("to", "now-1h"), ("step", "1h"), ("agg", "max"), ("columns", "pm10_ugm3, pm2_5_ugm3")],
        )
        .unwrap();
        assert_eq!((r.from, r.to), (now() - Duration::days(7), now() - Duration::hours(1)));
        assert_eq!((r.resolution, r.agg), (Resolution::Step(3600), Agg::Max));
        assert_eq!(r.columns, [Field::Pm10, Field::Pm25]);
        let r = check(Kind::Streetlight, &[("points", "10000"), ("agg", "count"), ("columns", "fault")]).unwrap();
        assert_eq!(r.resolution, Resolution::Points(10_000));
        let r = check(Kind::WaterLevel, &[("step", "raw"), ("from", "-31d")]).unwrap();
        assert_eq!(r.resolution, Resolution::Raw);
    }

    /// An empty value is an absent one, as for every other route.
    #[test]
    fn empty_values_are_absent() {
        let empty = [("from", ""), ("to", " "), ("step", ""), ("points", ""), ("agg", ""), ("columns", "")];
        assert_eq!(check(Kind::Streetlight, &empty).unwrap(), check(Kind::Streetlight, &[]).unwrap());
        let r = check(Kind::WaterLevel, &[("step", "raw"), ("agg", "")]).unwrap();
        assert_eq!((r.resolution, r.agg), (Resolution::Raw, Agg::Avg));
    }

    /// Every bad value: the parameter it names, and a word of the reason.
    #[test]
    fn every_bad_value_names_its_parameter() {
        type Case<'a> = (Kind, &'a [(&'a str, &'a str)], &'a str, &'a str);
        let cases: &[Case] = &[
            (Kind::WaterLevel, &[("from", "yesterday")], "from", "not a time"),
            (Kind::WaterLevel, &[("from", "1900-01-01T00:00:00Z")], "from", "out of range"),
            (Kind::WaterLevel, &[("to", "2026-11-31T00:00:00Z")], "to", "not a time"),
            (Kind::WaterLevel, &[("to", "now+")], "to", "empty"),
            (Kind::WaterLevel, &[("from", "now"), ("to", "-1h")], "from", "before to"),
            (Kind::WaterLevel, &[("from", "now"), ("to", "now")], "from", "before to"),
            (Kind::WaterLevel, &[("step", "0")], "step", "at least 1s"),
            (Kind::WaterLevel, &[("step", "0s")], "step", "at least 1s"),
            (Kind::WaterLevel, &[("step", "500ms")], "step", "sub-second"),
            (Kind::WaterLevel, &[("step", "5 minutes")], "step", "unit"),
            (Kind::WaterLevel, &[("step", "fast")], "step", "not a duration"),
            (Kind::WaterLevel, &[("step", "-5m")], "step", "not a duration"),
            (Kind::WaterLevel, &[("step", "1s"), ("from", "-30d")], "step", "buckets"),
            (Kind::WaterLevel, &[("step", "5m"), ("points", "100")], "points", "not both"),
            (Kind::WaterLevel, &[("step", "raw"), ("from", "-32d")], "from", "at most"),
            (Kind::WaterLevel, &[("step", "raw"), ("agg", "avg")], "agg", "not aggregated"),
            (Kind::WaterLevel, &[("points", "0")], "points", "between 1 and 10000"),
            (Kind::WaterLevel, &[("points", "10001")], "points", "between 1 and 10000"),
            (Kind::WaterLevel, &[("points", "-1")], "points", "whole number"),
            (Kind::WaterLevel, &[("points", "1e3")], "points", "whole number"),
            (Kind::WaterLevel, &[("points", "99999999999")], "points", "whole number"),
            (Kind::WaterLevel, &[("agg", "median")], "agg", "not one of"),
            (Kind::WaterLevel, &[("agg", "AVG")], "agg", "not one of"),
            (Kind::WaterLevel, &[("columns", "depth_cm")], "columns", "no column"),
            (Kind::WaterLevel, &[("columns", "level")], "columns", "no column"),
            (Kind::WaterLevel, &[("columns", "level_m,")], "columns", "empty"),
            (Kind::WaterLevel, &[("columns", "level_m,level_m")], "columns", "twice"),
            (Kind::Streetlight, &[("columns", "fault")], "columns", "text column"),
            (Kind::Streetlight, &[("columns", "power_w,fault"), ("agg", "sum")], "columns", "text column"),
            (Kind::Streetlight, &[("columns", "fault"), ("agg", "last")], "columns", "text column"),
        ];
        for (kind, query, name, reason) in cases {
            match check(*kind, query) {
                Err(QueryError::BadParameter { name: got, reason: why }) => {
                    assert_eq!(got, *name, "{query:?}: {why}");
                    assert!(why.contains(reason), "{query:?}: {why:?} lacks {reason:?}");
                }
                other => panic!("{query:?}: expected a bad {name}, got {other:?}"),
            }
        }
    }

    proptest::proptest! {
        /// Any text in any parameter: a request or a bad parameter, never a
        /// panic or another error.
        #[test]
        fn validation_is_total(
            values in proptest::collection::vec(proptest::option::of("[-+a-z0-9_:.,TZ ]{0,24}"), 6),
            kind in proptest::sample::select(Kind::ALL.to_vec()),
        ) {
            let mut v = values.into_iter();
            let p = SeriesParams {
                from: v.next().flatten(),
                to: v.next().flatten(),
                step: v.next().flatten(),
                points: v.next().flatten(),
                agg: v.next().flatten(),
                columns: v.next().flatten(),
            };
            match p.validate(kind, now(), &SeriesLimits::default()) {
                Ok(r) => proptest::prop_assert!(r.from < r.to && !r.columns.is_empty()),
                Err(QueryError::BadParameter { .. }) => {}
                Err(other) => proptest::prop_assert!(false, "{other:?}"),
            }
        }
    }

    #[test]
    fn the_query_string_deserialises_as_text() {
        let p: SeriesParams =
            serde_json::from_value(serde_json::json!({"points": "abc", "step": "5m", "columns": "a,b"})).unwrap();
        assert_eq!((p.points.as_deref(), p.step.as_deref()), (Some("abc"), Some("5m")));
    }
}
