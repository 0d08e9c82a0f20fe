//! Timestamps as sensors send them.
//!
//! Accepted: RFC 3339 (`2026-11-22T08:00:00+08:00`, `...Z`), a local time with no
//! offset (`2026-11-22 08:00:00`, `2026/11/22 08:00`), read in the city's time
//! zone, and epoch numbers in seconds, milliseconds, microseconds or
//! nanoseconds, told apart by magnitude (seconds up to 1e11, i.e. year 5138).

use chrono::{DateTime, Duration, LocalResult, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;
use serde_json::Value;

use crate::DomainError;

const NAIVE_FORMATS: [&str; 6] = [
    "%Y-%m-%dT%H:%M:%S%.f",
    "%Y-%m-%d %H:%M:%S%.f",
    "%Y-%m-%dT%H:%M",
    "%Y-%m-%d %H:%M",
    "%Y/%m/%d %H:%M:%S%.f",
    "%Y/%m/%d %H:%M",
];

/// The instants a reading may carry: a clock that was never set reads 1970
/// (kept, flagged `clock_unset`); beyond these bounds a value is not a time a
/// sensor could mean, and PostgreSQL could not store all of them.
const EARLIEST_YEAR: i32 = 1900;
const LATEST_YEAR: i32 = 9999;

/// Refuses instants outside the years a reading can have.
pub fn in_range(t: DateTime<Utc>) -> Result<DateTime<Utc>, DomainError> {
    use chrono::Datelike;
    if (EARLIEST_YEAR..=LATEST_YEAR).contains(&t.year()) {
        Ok(t)
    } else {
        Err(DomainError::InvalidTimestamp(format!("{t} is outside the years {EARLIEST_YEAR} to {LATEST_YEAR}")))
    }
}

/// Refuses a reading stamped outside the window the platform stores:
/// `max_backfill` before its receipt (a logger uploading its memory after an
/// outage is welcome; older history is an import, not a stream) to
/// `max_future` after it (clock drift, a wrong time zone). Outside it, a row
/// would be a partition or chunk made for nothing, or a value that moves a
/// gauge's state years ahead.
pub fn check_window(
    ts: DateTime<Utc>,
    received_at: DateTime<Utc>,
    max_backfill: Duration,
    max_future: Duration,
) -> Result<(), DomainError> {
    let out = |problem: String| DomainError::TimestampOutOfWindow { ts: ts.to_rfc3339(), problem };
    if ts < received_at - max_backfill {
        return Err(out(format!(
            "{} before its receipt at {}; readings older than max_backfill_days ({}) are not stored",
            span(received_at - ts),
            received_at.to_rfc3339(),
            max_backfill.num_days()
        )));
    }
    if ts > received_at + max_future {
        return Err(out(format!(
            "{} after its receipt at {}; readings further ahead than max_future_s ({}) are not stored: check the sender's clock and time zone",
            span(ts - received_at),
            received_at.to_rfc3339(),
            max_future.num_seconds()
        )));
    }
    Ok(())
}

/// A duration as people read it: `3 days`, `47 min`.
fn span(d: Duration) -> String {
    let s = d.num_seconds();
    match s {
        s if s >= 2 * 86_400 => format!("{} days", s / 86_400),
        s if s >= 2 * 3600 => format!("{} h", s / 3600),
        s if s >= 120 => format!("{} min", s / 60),
        s => format!("{s} s"),
    }
}

/// Parses a JSON timestamp: a string (RFC 3339 or local) or an epoch number.
pub fn parse_json(value: &Value, tz: Tz) -> Result<DateTime<Utc>, DomainError> {
    match value {
        Value::String(s) => parse_str(s, tz),
        Value::Number(n) => n.as_f64().ok_or_else(|| invalid(&n.to_string())).and_then(from_epoch),
        other => Err(DomainError::InvalidTimestamp(format!(
            "expected a string or an epoch number, got {}",
            json_type(other)
        ))),
    }
}

/// Parses RFC 3339, or a local date-time without offset in `tz`.
pub fn parse_str(s: &str, tz: Tz) -> Result<DateTime<Utc>, DomainError> {
    parse_str_unchecked(s, tz).and_then(in_range)
}

fn parse_str_unchecked(s: &str, tz: Tz) -> Result<DateTime<Utc>, DomainError> {
    let s = s.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    // RFC 3339 with a space instead of `T`, as many loggers print it.
    if let Ok(t) = DateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f%:z") {
        return Ok(t.with_timezone(&Utc));
    }
    for format in NAIVE_FORMATS {
        if let Ok(naive) = NaiveDateTime::parse_from_str(s, format) {
            return local_to_utc(naive, tz).ok_or_else(|| invalid(s));
        }
    }
    Err(invalid(s))
}

/// Reads an epoch number whose unit is told by its magnitude.
pub fn from_epoch(x: f64) -> Result<DateTime<Utc>, DomainError> {
    if !x.is_finite() || x < 0.0 {
        return Err(invalid(&x.to_string()));
    }
    let nanos = if x < 1e11 {
        x * 1e9
    } else if x < 1e14 {
        x * 1e6
    } else if x < 1e17 {
        x * 1e3
    } else {
        x
    };
    if nanos >= i64::MAX as f64 {
        return Err(invalid(&x.to_string()));
    }
    in_range(DateTime::from_timestamp_nanos(nanos.round() as i64))
}

fn local_to_utc(naive: NaiveDateTime, tz: Tz) -> Option<DateTime<Utc>> {
    match tz.from_local_datetime(&naive) {
        LocalResult::Single(t) => Some(t.with_timezone(&Utc)),
        // A repeated hour at a DST change: the earlier instant, as loggers that
        // ignore DST would mean.
        LocalResult::Ambiguous(earliest, _) => Some(earliest.with_timezone(&Utc)),
        LocalResult::None => None,
    }
}

fn invalid(s: &str) -> DomainError {
    DomainError::InvalidTimestamp(format!(
        "`{}` is not RFC 3339, a local date-time or an epoch number",
        truncate(s, 64)
    ))
}

fn truncate(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}

pub(crate) fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const TAIPEI: Tz = chrono_tz::Asia::Taipei;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn reads_rfc3339_with_any_offset() {
        let want = utc("2026-11-22T00:00:00Z");
        for s in ["2026-11-22T08:00:00+08:00", "2026-11-22T00:00:00Z", "2026-11-22 08:00:00+08:00"] {
            assert_eq!(parse_str(s, TAIPEI).unwrap(), want, "{s}");
        }
    }

    #[test]
    fn reads_local_times_in_the_city_zone() {
        let want = utc("2026-11-22T00:00:00Z");
        for s in ["2026-11-22T08:00:00", "2026-11-22 08:00:00", "2026/11/22 08:00", "2026-11-22 08:00:00.000"] {
            assert_eq!(parse_str(s, TAIPEI).unwrap(), want, "{s}");
        }
        assert_eq!(parse_str("2026-11-22 08:00:00", chrono_tz::UTC).unwrap(), utc("2026-11-22T08:00:00Z"));
    }

    #[test]
    fn tells_epoch_units_by_magnitude() {
        let want = utc("2026-11-22T00:00:00Z");
        let secs = want.timestamp();
        for value in [json!(secs), json!(secs * 1000), json!(secs * 1_000_000), json!(secs as f64)] {
            assert_eq!(parse_json(&value, TAIPEI).unwrap(), want, "{value}");
        }
        assert_eq!(parse_json(&json!(1.5), TAIPEI).unwrap().timestamp_subsec_millis(), 500);
    }

    #[test]
    fn the_window_names_the_option_that_refused() {
        let now = utc("2026-11-22T00:00:00Z");
        let (back, ahead) = (Duration::days(30), Duration::hours(24));
        for ok in [now, now - Duration::days(30), now + Duration::hours(24), now - Duration::minutes(1)] {
            assert!(check_window(ok, now, back, ahead).is_ok(), "{ok}");
        }
        let old = check_window(now - Duration::days(31), now, back, ahead).unwrap_err();
        assert_eq!(old.reason().as_str(), "timestamp_out_of_window");
        assert!(
            old.to_string().contains("31 days before") && old.to_string().contains("max_backfill_days (30)"),
            "{old}"
        );
        let ahead_err = check_window(utc("2099-01-01T00:00:00Z"), now, back, ahead).unwrap_err().to_string();
        assert!(
            ahead_err.contains("2099-01-01T00:00:00+00:00") && ahead_err.contains("max_future_s (86400)"),
            "{ahead_err}"
        );
    }

    #[test]
    fn rejects_what_is_not_a_time() {
        for value in [
            json!("yesterday"),
            json!(true),
            json!(-5),
            json!(null),
            json!("2026-13-01T00:00:00Z"),
            json!("-5000-01-01 00:00"),
            json!("1899-12-31T23:59:59Z"),
            json!(1e30),
        ] {
            assert!(matches!(parse_json(&value, TAIPEI), Err(DomainError::InvalidTimestamp(_))), "{value}");
        }
    }
}
