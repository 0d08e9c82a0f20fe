//! The change-stream item written by hand: the same bytes `serde_json` would
//! produce for [`super`]'s wire format, without building a `Value` per column
//! or a `String` per timestamp. The writer announces every stored reading, so
//! this runs once per row on the ingest hot path (it was ~9 % of the daemon's
//! CPU on the pack path through serde).

use chrono::{DateTime, Datelike, SecondsFormat, Timelike, Utc};
use citygauge_domain::kind::FieldType;
use citygauge_domain::{Field, Reading, Streetlight, Values};

/// Appends `reading`'s item to `out`, each text cut to `max_text` bytes and
/// the reasons to `max_reasons`.
pub(super) fn write_item(out: &mut String, reading: &Reading, max_text: usize, max_reasons: usize) {
    out.push_str("{\"k\":\"");
    out.push_str(reading.kind().as_str());
    out.push_str("\",\"s\":");
    write_str(out, truncated(&reading.sensor_id, max_text));
    out.push_str(",\"t\":\"");
    write_ts(out, reading.ts);
    out.push_str("\",\"q\":\"");
    out.push_str(reading.quality.level.as_str());
    out.push('"');
    if !reading.quality.reasons.is_empty() && max_reasons > 0 {
        out.push_str(",\"qr\":[");
        for (i, reason) in reading.quality.reasons.iter().take(max_reasons).enumerate() {
            if i > 0 {
                out.push(',');
            }
            write_str(out, truncated(reason, max_text));
        }
        out.push(']');
    }
    out.push_str(",\"x\":{");
    let mut first = true;
    for &field in reading.kind().columns() {
        let mark = out.len();
        if !first {
            out.push(',');
        }
        out.push('"');
        out.push_str(field.name());
        out.push_str("\":");
        if write_value(out, &reading.values, field, max_text) {
            first = false;
        } else {
            out.truncate(mark);
        }
    }
    out.push_str("}}");
}

/// Writes a column's value; `false` (having written nothing useful) when it
/// is null, or a number JSON cannot carry.
fn write_value(out: &mut String, values: &Values, field: Field, max_text: usize) -> bool {
    match (values, field.field_type()) {
        (Values::Rainfall { interval_s: Some(v), .. }, FieldType::Int) if field == Field::IntervalS => {
            out.push_str(itoa::Buffer::new().format(*v));
            true
        }
        (Values::Streetlight(Streetlight { lamp_on: Some(v), .. }), FieldType::Bool) if field == Field::LampOn => {
            out.push_str(if *v { "true" } else { "false" });
            true
        }
        (Values::Streetlight(Streetlight { fault: Some(v), .. }), FieldType::Text) if field == Field::Fault => {
            write_str(out, truncated(v, max_text));
            true
        }
        (_, FieldType::Float) => match values.number(field) {
            Some(v) if v.is_finite() => {
                out.push_str(zmij::Buffer::new().format_finite(v));
                true
            }
            _ => false,
        },
        _ => false,
    }
}

/// A JSON string, escaped as `serde_json` escapes it.
fn write_str(out: &mut String, s: &str) {
    out.push('"');
    let mut start = 0;
    for (i, &b) in s.as_bytes().iter().enumerate() {
        let short = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x08 => "\\b",
            0x0c => "\\f",
            0..=0x1f => "",
            _ => continue,
        };
        out.push_str(&s[start..i]);
        if short.is_empty() {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.push_str("\\u00");
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0xf)]));
        } else {
            out.push_str(short);
        }
        start = i + 1;
    }
    out.push_str(&s[start..]);
    out.push('"');
}

/// RFC 3339 in UTC with `Z`, fractional digits as chrono's `AutoSi` writes them.
fn write_ts(out: &mut String, ts: DateTime<Utc>) {
    let nanos = ts.nanosecond();
    let year = ts.year();
    if !(0..=9999).contains(&year) || nanos >= 1_000_000_000 {
        // Years outside four digits, and leap seconds: chrono's own rules.
        out.push_str(&ts.to_rfc3339_opts(SecondsFormat::AutoSi, true));
        return;
    }
    let mut buf = *b"0000-00-00T00:00:00";
    put_digits(&mut buf[0..4], year as u32);
    put_digits(&mut buf[5..7], ts.month());
    put_digits(&mut buf[8..10], ts.day());
    put_digits(&mut buf[11..13], ts.hour());
    put_digits(&mut buf[14..16], ts.minute());
    put_digits(&mut buf[17..19], ts.second());
    out.push_str(std::str::from_utf8(&buf).unwrap_or_default());
    let (value, digits) = if nanos == 0 {
        (0, 0)
    } else if nanos.is_multiple_of(1_000_000) {
        (nanos / 1_000_000, 3)
    } else if nanos.is_multiple_of(1_000) {
        (nanos / 1_000, 6)
    } else {
        (nanos, 9)
    };
    if digits > 0 {
        let mut frac = [b'0'; 10];
        frac[0] = b'.';
        put_digits(&mut frac[1..=digits], value);
        out.push_str(std::str::from_utf8(&frac[..=digits]).unwrap_or_default());
    }
    out.push('Z');
}

/// Writes `value` zero-padded into all of `buf`.
fn put_digits(buf: &mut [u8], mut value: u32) {
    for slot in buf.iter_mut().rev() {
        *slot = b'0' + (value % 10) as u8;
        value /= 10;
    }
}

pub(super) fn truncated(s: &str, max_bytes: usize) -> &str {
    if s.len() <= max_bytes {
        return s;
    }
    let mut end = max_bytes;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}
