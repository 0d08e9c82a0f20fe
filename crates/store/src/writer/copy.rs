//! PostgreSQL's binary COPY format written by hand for our fixed column
//! types. `BinaryCopyInWriter` takes each row as a slice of `dyn ToSql`,
//! checks every value's type and awaits once per row; here a row is a few
//! `put_*` calls into one buffer, sent in large chunks. The format is the
//! documented one (`COPY ... FROM STDIN BINARY`): a signature and two zero
//! words, then per row a 16-bit field count and each field as a 32-bit length
//! (-1 for NULL) and its binary value, then -1 as the trailer.

use bytes::{BufMut, Bytes, BytesMut};
use chrono::{DateTime, NaiveDate, Utc};
use citygauge_domain::{Reading, Values};
use futures_util::SinkExt;
use tokio_postgres::{CopyInSink, Transaction};

use crate::StoreError;

const SIGNATURE: &[u8] = b"PGCOPY\n\xff\r\n\0";
/// A chunk is sent once the buffer holds this much.
const CHUNK_BYTES: usize = 64 * 1024;
/// `text`'s type oid, for the elements of `quality_reasons`.
const TEXT_OID: u32 = 25;

/// Binary COPY of `rows` (all of `kind`'s table) with `statement`; returns
/// the row count PostgreSQL reports.
pub(super) async fn copy_readings(tx: &Transaction<'_>, statement: &str, rows: &[&Reading]) -> Result<u64, StoreError> {
    let sink: CopyInSink<Bytes> = tx.copy_in(statement).await?;
    let mut sink = std::pin::pin!(sink);
    let mut buf = BytesMut::with_capacity(CHUNK_BYTES + 4096);
    buf.put_slice(SIGNATURE);
    buf.put_i32(0);
    buf.put_i32(0);
    for r in rows {
        encode_row(&mut buf, r)?;
        if buf.len() >= CHUNK_BYTES {
            sink.send(buf.split().freeze()).await?;
        }
    }
    buf.put_i16(-1);
    sink.send(buf.split().freeze()).await?;
    Ok(sink.as_mut().finish().await?)
}

/// One row in the column order of `copy_statement`: sensor_id, ts, the kind's
/// columns, quality, quality_reasons.
pub(super) fn encode_row(buf: &mut BytesMut, r: &Reading) -> Result<(), StoreError> {
    let columns = r.kind().columns().len();
    buf.put_i16((columns + 4) as i16);
    text(buf, &r.sensor_id);
    timestamptz(buf, r.ts)?;
    match &r.values {
        Values::Rainfall { rain_mm, interval_s } => {
            float8(buf, Some(*rain_mm));
            match interval_s {
                Some(v) => {
                    buf.put_i32(4);
                    buf.put_i32(*v);
                }
                None => buf.put_i32(-1),
            }
        }
        Values::WaterLevel { level_m } => float8(buf, Some(*level_m)),
        Values::FloodDepth { depth_cm } => float8(buf, Some(*depth_cm)),
        Values::AirQuality(a) => {
            for v in [a.pm2_5_ugm3, a.pm10_ugm3, a.o3_ppb, a.no2_ppb, a.co_ppm, a.so2_ppb, a.temp_c, a.rh_pct] {
                float8(buf, v);
            }
        }
        Values::Streetlight(s) => {
            match s.lamp_on {
                Some(on) => {
                    buf.put_i32(1);
                    buf.put_u8(u8::from(on));
                }
                None => buf.put_i32(-1),
            }
            for v in [s.dim_pct, s.power_w, s.energy_kwh, s.voltage_v, s.current_a] {
                float8(buf, v);
            }
            match s.fault.as_deref() {
                Some(fault) => text(buf, &super::without_nul(fault)),
                None => buf.put_i32(-1),
            }
        }
    }
    text(buf, r.quality.level.as_str());
    text_array(buf, &r.quality.reasons);
    Ok(())
}

fn text(buf: &mut BytesMut, s: &str) {
    buf.put_i32(s.len() as i32);
    buf.put_slice(s.as_bytes());
}

fn float8(buf: &mut BytesMut, v: Option<f64>) {
    match v {
        Some(v) => {
            buf.put_i32(8);
            buf.put_f64(v);
        }
        None => buf.put_i32(-1),
    }
}

/// Microseconds since 2000-01-01 UTC, as tokio-postgres computes them.
fn timestamptz(buf: &mut BytesMut, ts: DateTime<Utc>) -> Result<(), StoreError> {
    let epoch = NaiveDate::from_ymd_opt(2000, 1, 1).and_then(|d| d.and_hms_opt(0, 0, 0)).unwrap_or_default();
    let micros = ts
        .naive_utc()
        .signed_duration_since(epoch)
        .num_microseconds()
        .ok_or_else(|| StoreError::Encode(format!("timestamp {ts} is out of PostgreSQL's range")))?;
    buf.put_i32(8);
    buf.put_i64(micros);
    Ok(())
}

/// A one-dimensional `text[]` without NULLs; an empty list is stored as NULL,
/// as the writer always did.
fn text_array(buf: &mut BytesMut, items: &[String]) {
    if items.is_empty() {
        buf.put_i32(-1);
        return;
    }
    let len: usize = 20 + items.iter().map(|s| 4 + s.len()).sum::<usize>();
    buf.put_i32(len as i32);
    buf.put_i32(1); // dimensions
    buf.put_i32(0); // no NULL elements
    buf.put_u32(TEXT_OID);
    buf.put_i32(items.len() as i32);
    buf.put_i32(1); // lower bound
    for item in items {
        text(buf, item);
    }
}
