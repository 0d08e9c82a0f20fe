//! One kind's readings of one day, out of PostgreSQL as a row stream
//! (`query_raw`) and into CSV or JSON chunks on a bounded channel: the day is
//! never held in memory, whoever reads the channel (a response body, the
//! cache file writer) sets the pace.
//!
//! Columns: `sensor_id`, `ts` (RFC 3339 in the city's offset), the kind's
//! value columns (their names end in their unit: `level_m`, `pm2_5_ugm3`),
//! `quality`, `quality_reasons`. Rows in sensor, then time order.

use bytes::Bytes;
use chrono::{DateTime, SecondsFormat, Utc};
use citygauge_domain::kind::FieldType;
use citygauge_domain::{Field, Kind};
use futures_util::{pin_mut, TryStreamExt};
use tokio::sync::mpsc;

use super::cache::{fingerprint, Fingerprint};
use crate::open_data::public_sensors;
use crate::QueryError;

/// A file's format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    Csv,
    Json,
}

impl Format {
    pub fn extension(self) -> &'static str {
        match self {
            Format::Csv => "csv",
            Format::Json => "json",
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::Csv => "text/csv; charset=utf-8",
            Format::Json => "application/json",
        }
    }
}

/// Bytes gathered before a chunk is sent.
const CHUNK_BYTES: usize = 64 * 1024;

/// The readings of public sensors of `kind` in `[from, to)`.
fn select_sql(kind: Kind) -> String {
    let columns: String = kind.columns().iter().map(|f| format!(", t.{}", f.name())).collect();
    format!(
        "SELECT t.sensor_id, t.ts{columns}, t.quality, t.quality_reasons
           FROM {table} t JOIN sensors s ON s.id = t.sensor_id
          WHERE s.kind = $1 AND {public} AND t.ts >= $2 AND t.ts < $3
          ORDER BY t.sensor_id, t.ts",
        table = kind.as_str(),
        public = public_sensors("s"),
    )
}

/// The header line (CSV) or nothing (JSON has its names in every row).
pub fn csv_header(kind: Kind) -> Vec<String> {
    let mut names = vec!["sensor_id".to_string(), "ts".to_string()];
    names.extend(kind.columns().iter().map(|f| f.name().to_string()));
    names.extend(["quality".to_string(), "quality_reasons".to_string()]);
    names
}

/// One cell, as text (CSV) and JSON.
fn cell(row: &tokio_postgres::Row, index: usize, field: Field) -> serde_json::Value {
    match field.field_type() {
        FieldType::Float => row.get::<_, Option<f64>>(index).map_or(serde_json::Value::Null, serde_json::Value::from),
        FieldType::Int => row.get::<_, Option<i32>>(index).map_or(serde_json::Value::Null, serde_json::Value::from),
        FieldType::Bool => row.get::<_, Option<bool>>(index).map_or(serde_json::Value::Null, serde_json::Value::from),
        FieldType::Text => row.get::<_, Option<String>>(index).map_or(serde_json::Value::Null, serde_json::Value::from),
    }
}

fn text(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::Null => String::new(),
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// What one export needs.
#[derive(Debug, Clone)]
pub struct Export {
    pub kind: Kind,
    pub format: Format,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub timezone: chrono_tz::Tz,
    pub statement_timeout_ms: u64,
    /// Also count the day's fingerprint in the rows' snapshot (for the cache).
    pub fingerprint: bool,
}

/// Runs the export on `client`, sending chunks to `tx`; stops early (Ok)
/// when the receiver is gone. With `export.fingerprint`, returns the
/// fingerprint of exactly the rows sent (same repeatable-read snapshot).
pub async fn run(
    client: &mut deadpool_postgres::Client,
    export: &Export,
    tx: &mpsc::Sender<Result<Bytes, std::io::Error>>,
) -> Result<Option<Fingerprint>, QueryError> {
    let transaction = client
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await?;
    // The pool's statement timeout suits API queries, not a whole day.
    transaction.batch_execute(&format!("SET LOCAL statement_timeout = {}", export.statement_timeout_ms)).await?;
    let kind_name = export.kind.as_str();
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 3] = [&kind_name, &export.from, &export.to];
    let rows = transaction.query_raw(&select_sql(export.kind), params).await?;
    pin_mut!(rows);
    let mut buffer: Vec<u8> = Vec::with_capacity(CHUNK_BYTES + 4096);
    let columns = export.kind.columns();
    let mut first = true;
    match export.format {
        Format::Csv => write_csv_record(&mut buffer, &csv_header(export.kind))?,
        Format::Json => buffer.extend_from_slice(b"["),
    }
    while let Some(row) = rows.try_next().await? {
        let ts: DateTime<Utc> = row.get(1);
        let ts = ts.with_timezone(&export.timezone).to_rfc3339_opts(SecondsFormat::AutoSi, false);
        let values: Vec<serde_json::Value> =
            columns.iter().enumerate().map(|(i, field)| cell(&row, i + 2, *field)).collect();
        let quality: String = row.get(columns.len() + 2);
        let reasons: Vec<String> = row.get::<_, Option<Vec<String>>>(columns.len() + 3).unwrap_or_default();
        let sensor: String = row.get(0);
        match export.format {
            Format::Csv => {
                let mut record = vec![sensor, ts];
                record.extend(values.iter().map(text));
                record.extend([quality, reasons.join("|")]);
                write_csv_record(&mut buffer, &record)?;
            }
            Format::Json => {
                let mut object = serde_json::Map::with_capacity(columns.len() + 4);
                object.insert("sensor_id".into(), sensor.into());
                object.insert("ts".into(), ts.into());
                for (field, value) in columns.iter().zip(values) {
                    object.insert(field.name().into(), value);
                }
                object.insert("quality".into(), quality.into());
                object.insert("quality_reasons".into(), reasons.into());
                buffer.extend_from_slice(if first { b"\n" } else { b",\n" });
                serde_json::to_writer(&mut buffer, &object).map_err(|e| QueryError::Internal(e.to_string()))?;
            }
        }
        first = false;
        if buffer.len() >= CHUNK_BYTES && !send(tx, &mut buffer).await {
            return Ok(None);
        }
    }
    if export.format == Format::Json {
        buffer.extend_from_slice(b"\n]\n");
    }
    let fingerprint = match export.fingerprint {
        true => Some(fingerprint(&*transaction, export.kind, export.from, export.to).await?),
        false => None,
    };
    transaction.commit().await?;
    send(tx, &mut buffer).await;
    Ok(fingerprint)
}

fn write_csv_record(buffer: &mut Vec<u8>, record: &[String]) -> Result<(), QueryError> {
    let mut writer = csv::WriterBuilder::new().has_headers(false).from_writer(&mut *buffer);
    writer.write_record(record).map_err(|e| QueryError::Internal(e.to_string()))?;
    writer.flush().map_err(QueryError::Io)?;
    Ok(())
}

/// Sends the buffer as one chunk; false when nobody listens any more.
async fn send(tx: &mpsc::Sender<Result<Bytes, std::io::Error>>, buffer: &mut Vec<u8>) -> bool {
    if buffer.is_empty() {
        return true;
    }
    let chunk = Bytes::from(std::mem::replace(buffer, Vec::with_capacity(CHUNK_BYTES + 4096)));
    tx.send(Ok(chunk)).await.is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_value_column_is_selected_from_public_sensors_only() {
        for kind in Kind::ALL {
            let sql = select_sql(kind);
            for field in kind.columns() {
                assert!(sql.contains(&format!("t.{}", field.name())), "{kind}: {field}");
            }
            assert!(sql.contains("s.public AND s.status = 'active'"), "{sql}");
            assert_eq!(csv_header(kind).len(), kind.columns().len() + 4);
        }
    }

    #[test]
    fn csv_cells_are_quoted_when_they_must_be() {
        let mut buffer = Vec::new();
        write_csv_record(&mut buffer, &["a".into(), "x,\"y\"".into(), String::new()]).unwrap();
        assert_eq!(String::from_utf8(buffer).unwrap(), "a,\"x,\"\"y\"\"\",\n");
    }
}
