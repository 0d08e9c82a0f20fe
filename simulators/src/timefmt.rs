//! Timestamp formatting for payloads.
//!
//! The ingest contract accepts RFC 3339, epoch seconds or milliseconds, and a
//! local time without offset (read as Asia/Taipei). Real fleets are a mix, so
//! each simulated sensor sticks to one [`TsStyle`]. The writers here are
//! allocation-free because the load generator formats one per reading.

use chrono::{DateTime, FixedOffset, TimeZone};
use serde_json::Value;

/// Taiwan has had no daylight saving since 1979: Asia/Taipei is fixed UTC+8.
pub const TAIPEI_OFFSET_S: i64 = 8 * 3600;

/// Asia/Taipei as a chrono offset.
pub fn taipei() -> FixedOffset {
    FixedOffset::east_opt(TAIPEI_OFFSET_S as i32).expect("valid offset")
}

/// Epoch milliseconds as a Taipei-local `DateTime`.
pub fn to_taipei(epoch_ms: i64) -> DateTime<FixedOffset> {
    taipei().timestamp_millis_opt(epoch_ms).single().expect("timestamp in chrono's range")
}

/// Local hour of day in Taipei as a fraction (e.g. 13.5 = 13:30).
pub fn taipei_hour(epoch_ms: i64) -> f64 {
    let local_s = epoch_ms.div_euclid(1000) + TAIPEI_OFFSET_S;
    local_s.rem_euclid(86_400) as f64 / 3600.0
}

/// How a sensor writes `ts` in canonical JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TsStyle {
    /// `2026-11-22T08:00:00+08:00`
    Rfc3339Taipei,
    /// `2026-11-22T00:00:00Z`
    Rfc3339Utc,
    /// `1795305600` (a JSON number)
    EpochSeconds,
    /// `1795305600000` (a JSON number)
    EpochMillis,
    /// `2026-11-22T08:00:00`, wall-clock time the platform reads as Asia/Taipei
    LocalNaive,
}

impl TsStyle {
    pub const ALL: [TsStyle; 5] =
        [TsStyle::Rfc3339Taipei, TsStyle::Rfc3339Utc, TsStyle::EpochSeconds, TsStyle::EpochMillis, TsStyle::LocalNaive];

    /// The timestamp as a JSON value. Sub-second precision is only written
    /// when present, as real loggers report whole seconds.
    pub fn to_json(self, epoch_ms: i64) -> Value {
        match self {
            TsStyle::EpochSeconds if epoch_ms % 1000 == 0 => Value::from(epoch_ms / 1000),
            TsStyle::EpochSeconds => Value::from(epoch_ms as f64 / 1000.0),
            TsStyle::EpochMillis => Value::from(epoch_ms),
            _ => {
                let mut buf = Vec::with_capacity(32);
                self.write_text(&mut buf, epoch_ms);
                Value::String(String::from_utf8(buf).expect("ascii"))
            }
        }
    }

    /// Writes the textual (RFC 3339 / naive) forms without quotes.
    fn write_text(self, buf: &mut Vec<u8>, epoch_ms: i64) {
        let millis = epoch_ms % 1000 != 0;
        match self {
            TsStyle::Rfc3339Utc => write_datetime(buf, epoch_ms, 0, millis, b"Z"),
            TsStyle::LocalNaive => write_datetime(buf, epoch_ms, TAIPEI_OFFSET_S, millis, b""),
            _ => write_datetime(buf, epoch_ms, TAIPEI_OFFSET_S, millis, b"+08:00"),
        }
    }
}

/// Appends `YYYY-MM-DDTHH:MM:SS[.mmm]{suffix}` for `epoch_ms` shifted by
/// `offset_s` (the wall time at that offset).
pub fn write_datetime(buf: &mut Vec<u8>, epoch_ms: i64, offset_s: i64, millis: bool, suffix: &[u8]) {
    let local_ms = epoch_ms + offset_s * 1000;
    let secs = local_ms.div_euclid(1000);
    let ms = local_ms.rem_euclid(1000);
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let sod = secs.rem_euclid(86_400);
    push_digits(buf, y as u32, 4);
    buf.push(b'-');
    push_digits(buf, m, 2);
    buf.push(b'-');
    push_digits(buf, d, 2);
    buf.push(b'T');
    push_digits(buf, (sod / 3600) as u32, 2);
    buf.push(b':');
    push_digits(buf, (sod / 60 % 60) as u32, 2);
    buf.push(b':');
    push_digits(buf, (sod % 60) as u32, 2);
    if millis {
        buf.push(b'.');
        push_digits(buf, ms as u32, 3);
    }
    buf.extend_from_slice(suffix);
}

/// Appends `value` zero-padded to exactly `width` digits.
fn push_digits(buf: &mut Vec<u8>, value: u32, width: u32) {
    let mut div = 10u32.pow(width - 1);
    while div > 0 {
        buf.push(b'0' + (value / div % 10) as u8);
        div /= 10;
    }
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's
/// `civil_from_days`), branch-light and exact for any i64 day count we use.
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{NaiveDateTime, SecondsFormat};
    use proptest::prelude::*;

    fn text(style: TsStyle, ms: i64) -> String {
        style.to_json(ms).as_str().expect("text style").to_owned()
    }

    proptest! {
        #[test]
        fn rfc3339_matches_chrono(ms in 0i64..4_102_444_800_000) {
            let ms = ms - ms % 1000; // whole seconds: chrono then omits fractions too
            let expected = to_taipei(ms).to_rfc3339_opts(SecondsFormat::Secs, false);
            prop_assert_eq!(text(TsStyle::Rfc3339Taipei, ms), expected.clone());
            let utc = DateTime::parse_from_rfc3339(&text(TsStyle::Rfc3339Utc, ms)).unwrap();
            prop_assert_eq!(utc.timestamp_millis(), ms);
            let naive = NaiveDateTime::parse_from_str(&text(TsStyle::LocalNaive, ms), "%Y-%m-%dT%H:%M:%S").unwrap();
            prop_assert_eq!(naive.and_utc().timestamp() - TAIPEI_OFFSET_S, ms / 1000);
        }
    }

    #[test]
    fn millis_and_epoch_forms() {
        let ms = 1_795_305_600_250; // 2026-11-22T08:00:00.250+08:00
        assert_eq!(text(TsStyle::Rfc3339Taipei, ms), "2026-11-22T08:00:00.250+08:00");
        assert_eq!(TsStyle::EpochMillis.to_json(ms), Value::from(ms));
        assert_eq!(TsStyle::EpochSeconds.to_json(ms - 250), Value::from(1_795_305_600));
        assert!((taipei_hour(ms) - 8.0).abs() < 0.001);
    }
}
