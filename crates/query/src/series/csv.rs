//! A series as CSV: header `ts,<columns...>` (`quality` last for raw
//! readings), RFC 3339 UTC times, an empty cell for a null.

use super::Series;
use crate::cache::view::rfc3339;
use crate::QueryError;

/// The media type of [`to_csv`]'s output.
pub const CONTENT_TYPE: &str = "text/csv; charset=utf-8";

/// Writes `series` as CSV. Row count is bounded by the series' own limits
/// ([`super::SeriesLimits::max_rows`]), so the whole text is built in memory.
pub fn to_csv(series: &Series) -> Result<bytes::Bytes, QueryError> {
    let internal = |e: ::csv::Error| QueryError::Internal(format!("writing csv: {e}"));
    let mut out = ::csv::Writer::from_writer(Vec::with_capacity(64 * (series.t.len() + 1)));
    let mut header: Vec<&str> = vec!["ts"];
    header.extend(series.columns.iter().map(|(field, _)| field.name()));
    if series.quality.is_some() {
        header.push("quality");
    }
    out.write_record(&header).map_err(internal)?;
    let mut record: Vec<String> = Vec::with_capacity(header.len());
    for (row, ts) in series.t.iter().enumerate() {
        record.clear();
        record.push(rfc3339(*ts));
        for (_, values) in series.columns.iter() {
            // `{}` writes the shortest text that reads back as the same f64.
            record.push(values[row].map(|v| v.to_string()).unwrap_or_default());
        }
        if let Some(quality) = &series.quality {
            record.push(quality[row].clone());
        }
        out.write_record(&record).map_err(internal)?;
    }
    let bytes = out.into_inner().map_err(|e| QueryError::Internal(format!("writing csv: {e}")))?;
    Ok(bytes.into())
}
