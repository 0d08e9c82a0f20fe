//! One sensor's time series: Contract 3's `/series` (JSON) and `/series.csv`.
//!
//! [`SeriesParams::validate`] turns the query string into a [`SeriesRequest`]
//! (no I/O; every bad value is a 400 naming its parameter), [`plan`] picks the
//! readings or the coarsest rollup that fits the step (no I/O), [`sql`] writes
//! the statement, and [`query`] runs it and fills gaps: a bucket without
//! readings is `null` in every column, never zero.
//!
//! The caller resolves the sensor first (unknown id: 404) and passes its kind.

mod csv;
mod params;
mod plan;
mod sql;
mod time;

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use citygauge_domain::{Field, Kind};
use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;
use tokio_postgres::GenericClient;

pub use self::csv::{to_csv, CONTENT_TYPE as CSV_CONTENT_TYPE};
pub use self::params::{Agg, Resolution, SeriesLimits, SeriesParams, SeriesRequest};
pub use self::plan::{nice_step, plan, Buckets, Plan, Source};
pub use self::time::{format_duration, parse_duration, parse_instant};
use crate::QueryError;

/// One sensor's series, column-major: `t[i]` is the time of row `i` of every
/// column.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Series {
    pub sensor_id: String,
    #[serde(serialize_with = "kind_name")]
    #[schema(value_type = String, example = "water_level")]
    pub kind: Kind,
    /// Start of the first bucket (or the requested `from` for readings).
    pub from: DateTime<Utc>,
    /// End of the last bucket, exclusive (or the requested `to` for readings).
    pub to: DateTime<Utc>,
    /// Bucket width in seconds; null when these are the readings themselves.
    pub step_s: Option<i64>,
    pub source: Source,
    /// The aggregate applied; null for the readings themselves.
    pub agg: Option<Agg>,
    /// Bucket starts (or reading times) in epoch seconds, oldest first.
    #[serde(serialize_with = "epoch_seconds")]
    #[schema(value_type = Vec<f64>, example = json!([1764471600, 1764471900]))]
    pub t: Vec<DateTime<Utc>>,
    /// Values per column in the requested order; `null` is a gap (or a
    /// reading without that value).
    #[schema(value_type = BTreeMap<String, Vec<Option<f64>>>)]
    pub columns: Columns,
    /// For the readings themselves: each one's quality (`good`, `suspect`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quality: Option<Vec<String>>,
}

/// The columns of a series, in order; serialised as a JSON object.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Columns(pub Vec<(Field, Vec<Option<f64>>)>);

impl Columns {
    pub fn iter(&self) -> impl Iterator<Item = &(Field, Vec<Option<f64>>)> {
        self.0.iter()
    }

    pub fn get(&self, name: &str) -> Option<&[Option<f64>]> {
        self.0.iter().find(|(f, _)| f.name() == name).map(|(_, v)| v.as_slice())
    }
}

impl Serialize for Columns {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (field, values) in &self.0 {
            map.serialize_entry(field.name(), values)?;
        }
        map.end()
    }
}

fn kind_name<S: Serializer>(kind: &Kind, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(kind.as_str())
}

/// Whole seconds as JSON integers; a reading with a fraction as a decimal.
fn epoch_seconds<S: Serializer>(t: &[DateTime<Utc>], serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_seq(t.iter().map(|t| match t.timestamp_subsec_nanos() {
        0 => EpochSeconds::Whole(t.timestamp()),
        nanos => EpochSeconds::Fraction(t.timestamp() as f64 + f64::from(nanos) / 1e9),
    }))
}

#[derive(Serialize)]
#[serde(untagged)]
enum EpochSeconds {
    Whole(i64),
    Fraction(f64),
}

/// The series for `params`, with the default [`SeriesLimits`].
pub async fn query(
    client: &impl GenericClient,
    sensor_id: &str,
    kind: Kind,
    params: &SeriesParams,
    now: DateTime<Utc>,
) -> Result<Series, QueryError> {
    query_with_limits(client, sensor_id, kind, params, now, &SeriesLimits::default()).await
}

/// The series for `params` within `limits`.
pub async fn query_with_limits(
    client: &impl GenericClient,
    sensor_id: &str,
    kind: Kind,
    params: &SeriesParams,
    now: DateTime<Utc>,
    limits: &SeriesLimits,
) -> Result<Series, QueryError> {
    let request = params.validate(kind, now, limits)?;
    run(client, sensor_id, kind, &request, limits).await
}

/// The series as CSV (see [`to_csv`]), with the default [`SeriesLimits`]:
/// at most 100,000 rows; more readings than that (`step=raw`) is a 400
/// naming `from`, more buckets (an explicit step) a 400 naming `step`.
pub async fn query_csv(
    client: &impl GenericClient,
    sensor_id: &str,
    kind: Kind,
    params: &SeriesParams,
    now: DateTime<Utc>,
) -> Result<bytes::Bytes, QueryError> {
    to_csv(&query(client, sensor_id, kind, params, now).await?)
}

/// Runs a validated request.
pub async fn run(
    client: &impl GenericClient,
    sensor_id: &str,
    kind: Kind,
    request: &SeriesRequest,
    limits: &SeriesLimits,
) -> Result<Series, QueryError> {
    let buckets = match plan(request, limits) {
        Plan::Buckets(buckets) => buckets,
        Plan::Readings { from, to, limit, fallback } => {
            let statement = sql::readings(kind, &request.columns);
            // One more than the limit tells "exactly the limit" from "too many".
            let fetch = i64::try_from(limit).unwrap_or(i64::MAX).saturating_add(1);
            let rows = client.query(statement.as_str(), &[&sensor_id, &from, &to, &fetch]).await?;
            match fallback {
                _ if rows.len() <= limit => return readings_series(sensor_id, kind, request, from, to, &rows),
                Some(buckets) => buckets,
                None => {
                    return Err(QueryError::bad(
                        "from",
                        format!("the range holds more than {limit} readings; narrow from/to or give a step"),
                    ))
                }
            }
        }
    };
    read_buckets(client, sensor_id, kind, request.agg, &request.columns, &buckets).await
}

/// The buckets of `buckets` from its `source`, whatever the planner would
/// pick: tests compare a rollup's answer with raw aggregation this way.
pub async fn read_buckets(
    client: &impl GenericClient,
    sensor_id: &str,
    kind: Kind,
    agg: Agg,
    fields: &[Field],
    buckets: &Buckets,
) -> Result<Series, QueryError> {
    let statement = sql::buckets(kind, buckets.source, agg, fields);
    let step = buckets.step_s as f64;
    let rows = client.query(statement.as_str(), &[&sensor_id, &buckets.from(), &buckets.to(), &step]).await?;
    let mut found = Vec::with_capacity(rows.len());
    for row in &rows {
        let bucket: DateTime<Utc> = row.try_get(0)?;
        let values = (1..=fields.len()).map(|i| row.try_get(i)).collect::<Result<Vec<_>, _>>()?;
        found.push((bucket.timestamp(), values));
    }
    tracing::debug!(sensor_id, source = buckets.source.as_str(), step_s = buckets.step_s, rows = rows.len(), "series");
    let (t, columns) = fill(buckets, fields, found);
    Ok(Series {
        sensor_id: sensor_id.to_string(),
        kind,
        from: buckets.from(),
        to: buckets.to(),
        step_s: Some(buckets.step_s),
        source: buckets.source,
        agg: Some(agg),
        t,
        columns,
        quality: None,
    })
}

fn readings_series(
    sensor_id: &str,
    kind: Kind,
    request: &SeriesRequest,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    rows: &[tokio_postgres::Row],
) -> Result<Series, QueryError> {
    let mut t = Vec::with_capacity(rows.len());
    let mut quality = Vec::with_capacity(rows.len());
    let mut columns: Vec<(Field, Vec<Option<f64>>)> =
        request.columns.iter().map(|&f| (f, Vec::with_capacity(rows.len()))).collect();
    for row in rows {
        t.push(row.try_get(0)?);
        quality.push(row.try_get(1)?);
        for (i, (_, values)) in columns.iter_mut().enumerate() {
            values.push(row.try_get(i + 2)?);
        }
    }
    tracing::debug!(sensor_id, source = "raw", rows = rows.len(), "series of readings");
    Ok(Series {
        sensor_id: sensor_id.to_string(),
        kind,
        from,
        to,
        step_s: None,
        source: Source::Raw,
        agg: None,
        t,
        columns: Columns(columns),
        quality: Some(quality),
    })
}

/// Every bucket of `buckets`, in order, with the values found for it; a
/// bucket nothing was found for is `None` in every column.
fn fill(buckets: &Buckets, fields: &[Field], found: Vec<(i64, Vec<Option<f64>>)>) -> (Vec<DateTime<Utc>>, Columns) {
    let n = usize::try_from(buckets.count()).unwrap_or(0);
    let t: Vec<DateTime<Utc>> = (0..n).map(|i| plan::epoch(buckets.from_s + i as i64 * buckets.step_s)).collect();
    let mut columns: Vec<(Field, Vec<Option<f64>>)> = fields.iter().map(|&f| (f, vec![None; n])).collect();
    let by_bucket: BTreeMap<i64, Vec<Option<f64>>> = found.into_iter().collect();
    for (start, values) in by_bucket {
        let offset = start - buckets.from_s;
        let Ok(i) = usize::try_from(offset / buckets.step_s) else { continue };
        if offset % buckets.step_s != 0 || i >= n {
            continue;
        }
        for ((_, column), value) in columns.iter_mut().zip(values) {
            column[i] = value;
        }
    }
    (t, Columns(columns))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gaps_are_null_in_every_column() {
        let buckets = Buckets { step_s: 60, from_s: 600, to_s: 900, source: Source::Minute };
        let found = vec![(660, vec![Some(1.0), None]), (840, vec![Some(3.0), Some(4.0)]), (900, vec![Some(9.0), None])];
        let (t, columns) = fill(&buckets, &[Field::PowerW, Field::DimPct], found);
        assert_eq!(t.iter().map(|t| t.timestamp()).collect::<Vec<_>>(), [600, 660, 720, 780, 840]);
        assert_eq!(columns.get("power_w").unwrap(), [None, Some(1.0), None, None, Some(3.0)]);
        assert_eq!(columns.get("dim_pct").unwrap(), [None, None, None, None, Some(4.0)]);
    }

    #[test]
    fn json_shape() {
        let series = Series {
            sensor_id: "kh-wl-0001".into(),
            kind: Kind::WaterLevel,
            from: plan::epoch(1_764_471_600),
            to: plan::epoch(1_764_472_200),
            step_s: Some(300),
            source: Source::Minute,
            agg: Some(Agg::Avg),
            t: vec![plan::epoch(1_764_471_600), "2025-11-30T03:05:00.5Z".parse().unwrap()],
            columns: Columns(vec![(Field::LevelM, vec![Some(2.41), None])]),
            quality: None,
        };
        assert_eq!(
            serde_json::to_value(&series).unwrap(),
            serde_json::json!({
                "sensor_id": "kh-wl-0001", "kind": "water_level",
                "from": "2025-11-30T03:00:00Z", "to": "2025-11-30T03:10:00Z",
                "step_s": 300, "source": "1m", "agg": "avg",
                "t": [1_764_471_600, 1_764_471_900.5], "columns": {"level_m": [2.41, null]}
            })
        );
        let csv = String::from_utf8(to_csv(&series).unwrap().to_vec()).unwrap();
        assert_eq!(csv, "ts,level_m\n2025-11-30T03:00:00Z,2.41\n2025-11-30T03:05:00.500Z,\n");
    }
}
