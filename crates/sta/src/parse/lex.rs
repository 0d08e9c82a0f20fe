//! Tokens: whitespace, keywords, identifiers and literals.

use chrono::{FixedOffset, NaiveDate, NaiveTime};
use winnow::ascii::Caseless;
use winnow::combinator::{alt, not, opt, terminated};
use winnow::prelude::*;
use winnow::token::{one_of, take_while};

use super::{cut, pos, syntax_at, In, PErr, PResult};
use crate::ast::{IsoDuration, Literal};
use crate::limits::{MAX_GEOGRAPHY_LITERAL_BYTES, MAX_NUMBER_LITERAL_CHARS, MAX_STRING_LITERAL_BYTES};
use crate::wkt::{Coord, Geometry};

pub(crate) fn ws(i: &mut In<'_>) -> PResult<()> {
    take_while(0.., [' ', '\t', '\r', '\n']).void().parse_next(i)
}

pub(crate) fn is_ident_start(c: char) -> bool {
    c.is_alphabetic() || c == '_' || c == '@'
}

pub(crate) fn is_ident_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_' || c == '@' || c == '.'
}

/// A keyword (case-insensitive) not followed by an identifier character, so
/// `order` is not `or` followed by `der`.
pub(crate) fn kw<'a>(word: &'static str) -> impl Parser<In<'a>, (), winnow::error::ErrMode<PErr>> {
    terminated(Caseless(word), not(one_of(is_ident_char))).void()
}

/// The remaining text, for look-ahead decisions.
pub(crate) fn rest<'a>(i: &In<'a>) -> &'a str {
    std::ops::Deref::deref(&i.input)
}

/// A name: a property, navigation property, function or option name.
pub(crate) fn identifier<'a>(i: &mut In<'a>) -> PResult<&'a str> {
    let at = pos(i);
    let name = (one_of(is_ident_start), take_while(0.., is_ident_char)).take().parse_next(i)?;
    check_name_len(at, name)
}

/// A path segment after a `/`, which may also start with a digit.
pub(crate) fn segment_name<'a>(i: &mut In<'a>) -> PResult<&'a str> {
    let at = pos(i);
    let name = take_while(1.., is_ident_char).parse_next(i)?;
    check_name_len(at, name)
}

fn check_name_len(at: usize, name: &str) -> PResult<&str> {
    if name.len() > MAX_STRING_LITERAL_BYTES {
        return cut(PErr::limit(at, "a name's length", "MAX_STRING_LITERAL_BYTES", MAX_STRING_LITERAL_BYTES as u64));
    }
    Ok(name)
}

/// `'...'` with `''` for a quote. NUL is refused: PostgreSQL text cannot
/// hold it, and no legitimate filter needs it.
pub(crate) fn string_literal(i: &mut In<'_>) -> PResult<String> {
    let start = pos(i);
    '\''.parse_next(i)?;
    let mut out = String::new();
    loop {
        let chunk = take_while(0.., |c| c != '\'').parse_next(i)?;
        out.push_str(chunk);
        if out.len() > MAX_STRING_LITERAL_BYTES {
            return cut(PErr::limit(
                start,
                "string literal length in bytes",
                "MAX_STRING_LITERAL_BYTES",
                MAX_STRING_LITERAL_BYTES as u64,
            ));
        }
        if opt('\'').parse_next(i)?.is_none() {
            return syntax_at(start, "unterminated string literal (a quote inside is written '')");
        }
        if opt('\'').parse_next(i)?.is_some() {
            out.push('\'');
        } else {
            break;
        }
    }
    if let Some(k) = out.find('\0') {
        return syntax_at(start + 1 + k, "NUL character in string literal");
    }
    Ok(out)
}

fn digits<'a>(n: usize) -> impl Parser<In<'a>, &'a str, winnow::error::ErrMode<PErr>> {
    take_while(n, |c: char| c.is_ascii_digit())
}

fn num<T: std::str::FromStr + Default>(s: &str) -> T {
    // Only called on ASCII digit runs of bounded width, which always parse.
    s.parse().unwrap_or_default()
}

fn date(i: &mut In<'_>) -> PResult<NaiveDate> {
    let at = pos(i);
    let (y, _, m, _, d) = (digits(4), '-', digits(2), '-', digits(2)).parse_next(i)?;
    match NaiveDate::from_ymd_opt(num(y), num(m), num(d)) {
        Some(date) => Ok(date),
        None => syntax_at(at, format!("invalid date {y}-{m}-{d}")),
    }
}

fn time_of_day(i: &mut In<'_>) -> PResult<NaiveTime> {
    let at = pos(i);
    let (h, _, m, sec) =
        (digits(2), ':', digits(2), opt((':', digits(2), opt(('.', take_while(1..=9, |c: char| c.is_ascii_digit()))))))
            .parse_next(i)?;
    let (s, nanos) = match sec {
        None => (0, 0),
        Some((_, s, frac)) => {
            (num(s), frac.map_or(0, |(_, f): (char, &str)| num::<u32>(f) * 10u32.pow(9 - f.len() as u32)))
        }
    };
    match NaiveTime::from_hms_nano_opt(num(h), num(m), s, nanos) {
        Some(t) => Ok(t),
        None => syntax_at(at, "invalid time of day"),
    }
}

/// `Z` or `+08:00`. A space stands for `+`: clients that forget to escape
/// `+` in a query string send `T10:00:00 08:00`, and nothing else can follow
/// a time that way.
fn offset(i: &mut In<'_>) -> PResult<FixedOffset> {
    let at = pos(i);
    let secs = alt((
        one_of(['Z', 'z']).value(0),
        (one_of(['+', '-', ' ']), digits(2), ':', digits(2)).map(|(sign, h, _, m): (char, &str, char, &str)| {
            let s = num::<i32>(h) * 3600 + num::<i32>(m) * 60;
            if sign == '-' {
                -s
            } else {
                s
            }
        }),
    ))
    .parse_next(i)?;
    match FixedOffset::east_opt(secs) {
        Some(o) if secs.abs() < 24 * 3600 => Ok(o),
        _ => syntax_at(at, "invalid time zone offset"),
    }
}

/// Date, date-time or time of day; backtracks when the text is not shaped
/// like one, so the caller can try a number.
pub(crate) fn temporal(i: &mut In<'_>) -> PResult<Literal> {
    alt((date_or_datetime, time_of_day.map(Literal::TimeOfDay))).parse_next(i)
}

fn date_or_datetime(i: &mut In<'_>) -> PResult<Literal> {
    let d = date(i)?;
    if opt(one_of(['T', 't'])).parse_next(i)?.is_none() {
        return Ok(Literal::Date(d));
    }
    let at = pos(i);
    let t = match time_of_day(i) {
        Ok(t) => t,
        Err(_) => return syntax_at(at, "expected a time (HH:MM:SS) after 'T'"),
    };
    let at = pos(i);
    let off = match offset(i) {
        Ok(o) => o,
        Err(winnow::error::ErrMode::Backtrack(_)) => {
            return syntax_at(at, "expected a time zone (Z or an offset like +08:00) after the time")
        }
        Err(e) => return Err(e),
    };
    match d.and_time(t).and_local_timezone(off).single() {
        Some(dt) => Ok(Literal::DateTime(dt)),
        None => syntax_at(at, "invalid date-time"),
    }
}

/// An integer or decimal literal, optionally signed, with an exponent.
pub(crate) fn number(i: &mut In<'_>) -> PResult<Literal> {
    let at = pos(i);
    let text = (
        opt('-'),
        take_while(1.., |c: char| c.is_ascii_digit()),
        opt(('.', take_while(1.., |c: char| c.is_ascii_digit()))),
        opt((one_of(['e', 'E']), opt(one_of(['+', '-'])), take_while(1.., |c: char| c.is_ascii_digit()))),
    )
        .take()
        .parse_next(i)?;
    if text.len() > MAX_NUMBER_LITERAL_CHARS {
        return cut(PErr::limit(
            at,
            "number literal length",
            "MAX_NUMBER_LITERAL_CHARS",
            MAX_NUMBER_LITERAL_CHARS as u64,
        ));
    }
    if !text.contains(['.', 'e', 'E']) {
        return match text.parse::<i64>() {
            Ok(n) => Ok(Literal::Int(n)),
            Err(_) => syntax_at(at, "integer literal out of range (write it as a decimal, e.g. 1.0e20)"),
        };
    }
    match text.parse::<f64>() {
        Ok(x) if x.is_finite() => Ok(Literal::Float(x)),
        _ => syntax_at(at, "number literal out of range"),
    }
}

/// `duration'P1DT2H30M'` (the prefix is already consumed up to the quote).
pub(crate) fn duration_body(i: &mut In<'_>, start: usize) -> PResult<IsoDuration> {
    let mut d = IsoDuration { negative: opt('-').parse_next(i)?.is_some(), ..IsoDuration::default() };
    if opt(one_of(['P', 'p'])).parse_next(i)?.is_none() {
        return syntax_at(pos(i), "expected 'P' to start an ISO 8601 duration");
    }
    let mut in_time = false;
    let mut any = false;
    loop {
        if !in_time && opt(one_of(['T', 't'])).parse_next(i)?.is_some() {
            in_time = true;
            continue;
        }
        let at = pos(i);
        let Some(n) = opt(take_while(1..=9, |c: char| c.is_ascii_digit())).parse_next(i)? else { break };
        let frac = opt(('.', take_while(1..=9, |c: char| c.is_ascii_digit()))).parse_next(i)?;
        let unit = opt(one_of(|c: char| c.is_ascii_alphabetic())).parse_next(i)?.map(|c| c.to_ascii_uppercase());
        let n: u32 = num(n);
        let field = match (in_time, unit) {
            (false, Some('Y')) => &mut d.years,
            (false, Some('M')) => &mut d.months,
            (false, Some('W')) => {
                d.days = d.days.saturating_add(n.saturating_mul(7));
                any = true;
                continue;
            }
            (false, Some('D')) => &mut d.days,
            (true, Some('H')) => &mut d.hours,
            (true, Some('M')) => &mut d.minutes,
            (true, Some('S')) => {
                if let Some((_, f)) = frac {
                    d.nanos = num::<u32>(f) * 10u32.pow(9 - f.len() as u32);
                }
                &mut d.seconds
            }
            _ => return syntax_at(at, "expected a number followed by Y, M, W or D (or H, M, S after T)"),
        };
        if frac.is_some() && unit != Some('S') {
            return syntax_at(at, "only seconds may have a fraction in a duration");
        }
        *field = n;
        any = true;
    }
    if !any {
        return syntax_at(start, "empty duration");
    }
    if opt('\'').parse_next(i)?.is_none() {
        return syntax_at(pos(i), "expected ' to end the duration");
    }
    Ok(d)
}

fn float(i: &mut In<'_>) -> PResult<f64> {
    let at = pos(i);
    match number(i)? {
        Literal::Int(n) => Ok(n as f64),
        Literal::Float(x) => Ok(x),
        _ => syntax_at(at, "expected a coordinate"),
    }
}

fn coord(i: &mut In<'_>) -> PResult<Coord> {
    ws(i)?;
    let at = pos(i);
    let x = float(i).map_err(|_| winnow::error::ErrMode::Cut(PErr::syntax(at, "expected a longitude")))?;
    ws(i)?;
    let at = pos(i);
    let y = float(i)
        .map_err(|_| winnow::error::ErrMode::Cut(PErr::syntax(at, "expected a latitude after the longitude")))?;
    ws(i)?;
    Ok(Coord { x, y })
}

/// `( item, item, ... )` in WKT.
fn wkt_list<'a, T>(i: &mut In<'a>, mut item: impl FnMut(&mut In<'a>) -> PResult<T>) -> PResult<Vec<T>> {
    ws(i)?;
    if opt('(').parse_next(i)?.is_none() {
        return syntax_at(pos(i), "expected '(' in the geometry");
    }
    let mut out = vec![item(i)?];
    loop {
        ws(i)?;
        if opt(',').parse_next(i)?.is_some() {
            out.push(item(i)?);
        } else if opt(')').parse_next(i)?.is_some() {
            return Ok(out);
        } else {
            return syntax_at(pos(i), "expected ',' or ')' in the geometry");
        }
    }
}

fn point_in_multipoint(i: &mut In<'_>) -> PResult<Coord> {
    ws(i)?;
    if opt('(').parse_next(i)?.is_some() {
        let c = coord(i)?;
        if opt(')').parse_next(i)?.is_none() {
            return syntax_at(pos(i), "expected ')' after the point");
        }
        Ok(c)
    } else {
        coord(i)
    }
}

/// The body of `geography'...'`: optional `SRID=4326;` and WKT, then `'`.
pub(crate) fn geography_body(i: &mut In<'_>, start: usize) -> PResult<Geometry> {
    let len = rest(i).find('\'').unwrap_or(usize::MAX);
    if len == usize::MAX {
        return syntax_at(start, "unterminated geography literal");
    }
    if len > MAX_GEOGRAPHY_LITERAL_BYTES {
        return cut(PErr::limit(
            start,
            "geography literal length in bytes",
            "MAX_GEOGRAPHY_LITERAL_BYTES",
            MAX_GEOGRAPHY_LITERAL_BYTES as u64,
        ));
    }
    ws(i)?;
    if opt(Caseless("SRID=")).parse_next(i)?.is_some() {
        let at = pos(i);
        let srid = take_while(1..=9, |c: char| c.is_ascii_digit()).parse_next(i)?;
        if srid != "4326" || opt(';').parse_next(i)?.is_none() {
            return syntax_at(at, "only SRID=4326; is supported");
        }
    }
    ws(i)?;
    let at = pos(i);
    let tag: &str = opt(take_while(1.., |c: char| c.is_ascii_alphabetic())).parse_next(i)?.unwrap_or_default();
    let geometry = match tag.to_ascii_uppercase().as_str() {
        "POINT" => {
            let mut pts = wkt_list(i, coord)?;
            if pts.len() != 1 {
                return syntax_at(at, "a POINT has exactly one coordinate pair");
            }
            Geometry::Point(pts.remove(0))
        }
        "LINESTRING" => Geometry::LineString(wkt_list(i, coord)?),
        "POLYGON" => Geometry::Polygon(wkt_list(i, |i| wkt_list(i, coord))?),
        "MULTIPOINT" => Geometry::MultiPoint(wkt_list(i, point_in_multipoint)?),
        "MULTILINESTRING" => Geometry::MultiLineString(wkt_list(i, |i| wkt_list(i, coord))?),
        "MULTIPOLYGON" => Geometry::MultiPolygon(wkt_list(i, |i| wkt_list(i, |i| wkt_list(i, coord)))?),
        _ => return syntax_at(
            at,
            "expected POINT, LINESTRING, POLYGON, MULTIPOINT, MULTILINESTRING or MULTIPOLYGON in the geography literal",
        ),
    };
    ws(i)?;
    if opt('\'').parse_next(i)?.is_none() {
        return syntax_at(pos(i), "expected ' to end the geography literal");
    }
    if let Err(message) = geometry.validate() {
        return syntax_at(at, message);
    }
    Ok(geometry)
}
