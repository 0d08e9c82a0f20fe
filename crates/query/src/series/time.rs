//! Parsing of the time-like query parameters: instants (`from`, `to`) and
//! durations (`step`). Pure functions; errors are plain reasons that the
//! caller attaches to the parameter's name.

use chrono::{DateTime, Duration, TimeZone, Utc};

use crate::params::shown;

/// The instants a series may start or end at. Bounded so that no arithmetic
/// on them (alignment, gap filling) can overflow, and so that a typo such as
/// milliseconds sent as seconds is refused instead of silently read.
pub const EARLIEST: i64 = 0; // 1970-01-01T00:00:00Z
pub const LATEST: i64 = 7_258_118_400; // 2200-01-01T00:00:00Z

/// The longest duration accepted anywhere: a century, which also keeps the
/// digits of any accepted text short.
pub const MAX_DURATION_S: i64 = 100 * 366 * 86_400;

/// Whole seconds per unit suffix, largest first (the order [`format_duration`]
/// writes them in).
const UNITS: [(&str, i64); 5] = [("w", 604_800), ("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)];

/// Parses a duration: whole seconds (`300`) or one or more `<integer><unit>`
/// parts with units `w`, `d`, `h`, `m`, `s` (`30s`, `5m`, `1h30m`, `1d`).
/// Returns seconds; zero is returned as is (the caller decides if it is allowed).
pub fn parse_duration(text: &str) -> Result<i64, String> {
    let s = text.trim();
    if s.is_empty() {
        return Err("empty; expected a duration such as 30s, 5m, 1h, 1d or seconds".into());
    }
    if s.bytes().all(|b| b.is_ascii_digit()) {
        return bounded_seconds(s.parse::<i64>().ok());
    }
    let mut total: i64 = 0;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(format!("{:?} is not a duration; expected e.g. 30s, 5m, 1h, 1d or seconds", shown(text)));
        }
        let number: Option<i64> = rest[..digits].parse().ok();
        rest = &rest[digits..];
        let unit_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let Some((_, per)) = UNITS.iter().find(|(name, _)| *name == unit) else {
            return Err(if unit.is_empty() {
                format!("{:?}: every number needs a unit (w, d, h, m, s)", shown(text))
            } else if unit == "ms" || unit == "us" || unit == "ns" {
                "sub-second durations are not supported; the finest step is 1s".into()
            } else {
                format!("unknown unit {:?}; use w, d, h, m or s", shown(unit))
            });
        };
        let part = number.and_then(|n| n.checked_mul(*per));
        total = bounded_seconds(part.and_then(|p| total.checked_add(p)))?;
    }
    Ok(total)
}

fn bounded_seconds(seconds: Option<i64>) -> Result<i64, String> {
    match seconds {
        Some(s) if s <= MAX_DURATION_S => Ok(s),
        _ => Err("too long; at most 100 years".into()),
    }
}

/// The canonical text of a duration in seconds: `1d2h`, `5m`, `90s` -> `1m30s`.
pub fn format_duration(seconds: i64) -> String {
    if seconds <= 0 {
        return "0s".into();
    }
    let mut rest = seconds;
    let mut out = String::new();
    for (name, per) in UNITS {
        if rest >= per {
            out.push_str(&(rest / per).to_string());
            out.push_str(name);
            rest %= per;
        }
    }
    out
}

/// Parses an instant: RFC 3339 (`2026-11-30T03:00:00Z`), epoch seconds
/// (`1764471600`, fractions allowed), epoch milliseconds (13 digits or more),
/// `now`, or relative to now (`-24h`, `now-7d`, `now+1h`).
pub fn parse_instant(text: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, String> {
    let s = text.trim();
    if s.is_empty() {
        return Err("empty; expected RFC 3339, epoch seconds or milliseconds, or now/-24h".into());
    }
    let relative = if s == "now" {
        Some((1, "0"))
    } else if let Some(rest) = s.strip_prefix("now-").or_else(|| s.strip_prefix('-')) {
        Some((-1, rest))
    } else {
        s.strip_prefix("now+").map(|rest| (1, rest))
    };
    let t = if let Some((sign, duration)) = relative {
        let seconds = parse_duration(duration)?;
        now.checked_add_signed(Duration::seconds(sign * seconds))
    } else if s.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        epoch(s)?
    } else {
        match DateTime::parse_from_rfc3339(s) {
            Ok(t) => Some(t.with_timezone(&Utc)),
            Err(e) => {
                return Err(format!(
                    "{:?} is not a time ({e}); expected RFC 3339 such as 2026-11-30T03:00:00Z, epoch seconds or milliseconds, or now/-24h",
                    shown(text)
                ))
            }
        }
    };
    match t {
        Some(t) if (EARLIEST..LATEST).contains(&t.timestamp()) => Ok(t),
        _ => Err("out of range; times must fall between 1970 and 2200".into()),
    }
}

/// Epoch seconds, or milliseconds when the integer has 13 digits or more
/// (seconds that large are centuries past [`LATEST`]).
fn epoch(s: &str) -> Result<Option<DateTime<Utc>>, String> {
    if s.len() > 20 {
        return Ok(None);
    }
    let malformed = || format!("{:?} is not an epoch time", shown(s));
    if let Some((whole, fraction)) = s.split_once('.') {
        if whole.is_empty() || fraction.is_empty() || fraction.contains('.') {
            return Err(malformed());
        }
        let seconds: i64 = whole.parse().map_err(|_| malformed())?;
        // Nanoseconds from at most nine fraction digits; more are rounded off.
        let digits: String = fraction.chars().chain(std::iter::repeat('0')).take(9).collect();
        let nanos: u32 = digits.parse().map_err(|_| malformed())?;
        return Ok(Utc.timestamp_opt(seconds, nanos).single());
    }
    let n: i64 = s.parse().map_err(|_| malformed())?;
    Ok(if s.len() >= 13 { Utc.timestamp_millis_opt(n).single() } else { Utc.timestamp_opt(n, 0).single() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn now() -> DateTime<Utc> {
        "2026-11-30T03:00:00Z".parse().unwrap()
    }

    #[test]
    fn durations() {
        for (text, seconds) in [
            ("30s", 30),
            ("5m", 300),
            ("1h", 3600),
            ("1d", 86_400),
            ("2w", 1_209_600),
            ("1h30m", 5400),
            ("300", 300),
            (" 15m ", 900),
            ("0s", 0),
        ] {
            assert_eq!(parse_duration(text), Ok(seconds), "{text}");
        }
        for bad in ["", "m", "5x", "5 m", "-5m", "1.5h", "500ms", "5M", "99999999999999999999s", "1h5", "h1"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} should fail");
        }
        assert_eq!(format_duration(5400), "1h30m");
        assert_eq!(format_duration(90), "1m30s");
        assert_eq!(format_duration(86_400 * 8), "1w1d");
    }

    #[test]
    fn instants() {
        let t = |s: &str| parse_instant(s, now());
        let at = |s: &str| s.parse::<DateTime<Utc>>().unwrap();
        assert_eq!(t("2026-11-30T03:00:00Z"), Ok(at("2026-11-30T03:00:00Z")));
        assert_eq!(t("2026-11-30T11:00:00+08:00"), Ok(at("2026-11-30T03:00:00Z")));
        assert_eq!(t("1764471600"), Ok(at("2025-11-30T03:00:00Z")));
        assert_eq!(t("1764471600000"), Ok(at("2025-11-30T03:00:00Z")));
        assert_eq!(t("1764471600.5"), Ok(at("2025-11-30T03:00:00.5Z")));
        assert_eq!(t("now"), Ok(now()));
        assert_eq!(t("-24h"), Ok(now() - Duration::hours(24)));
        assert_eq!(t("now-7d"), Ok(now() - Duration::days(7)));
        assert_eq!(t("now+1h"), Ok(now() + Duration::hours(1)));
        for bad in [
            "",
            "yesterday",
            "2026-13-01T00:00:00Z",
            "2026-11-30",
            "1.2.3",
            ".5",
            "5.",
            "now-",
            "now*2",
            "99999999999999999999999",
            "1969-12-31T23:59:59Z",
            "2200-01-01T00:00:00Z",
            "-100000w",
        ] {
            assert!(t(bad).is_err(), "{bad:?} should fail");
        }
    }

    proptest! {
        #[test]
        fn duration_parser_never_panics(s in "\\PC{0,24}") {
            let _ = parse_duration(&s);
        }

        #[test]
        fn durations_round_trip(seconds in 1i64..MAX_DURATION_S) {
            prop_assert_eq!(parse_duration(&format_duration(seconds)), Ok(seconds));
            prop_assert_eq!(parse_duration(&seconds.to_string()), Ok(seconds));
        }

        #[test]
        fn instant_parser_never_panics(s in "\\PC{0,40}", digits in "[0-9.+-]{0,24}") {
            let _ = parse_instant(&s, now());
            let _ = parse_instant(&digits, now());
            let _ = parse_instant(&format!("now-{digits}"), now());
        }

        #[test]
        fn instants_round_trip(seconds in EARLIEST..LATEST, millis in 0u32..1000) {
            let t = Utc.timestamp_opt(seconds, millis * 1_000_000).unwrap();
            let rfc = t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true);
            prop_assert_eq!(parse_instant(&rfc, now()), Ok(t));
            let whole = Utc.timestamp_opt(seconds, 0).unwrap();
            prop_assert_eq!(parse_instant(&seconds.to_string(), now()), Ok(whole));
            if seconds >= 1_000_000_000 {
                prop_assert_eq!(parse_instant(&t.timestamp_millis().to_string(), now()), Ok(t));
            }
        }
    }
}
