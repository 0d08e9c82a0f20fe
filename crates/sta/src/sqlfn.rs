//! SQL for the built-in functions. Times are taken in UTC (PostgreSQL keeps
//! `timestamptz` in UTC; `AT TIME ZONE 'UTC'` makes the result independent
//! of the session's TimeZone). Geometry columns are SRID 4326 `geometry`.

use crate::ast::{Expr, ExprKind, Func, Literal};
use crate::error::Result;
use crate::sql::{Translator, Typed};
use crate::typeck::Type;

/// Which argument of `f`, if a string literal, is bound as a LIKE pattern
/// (with these prefix and suffix) so an index can serve `startswith` and
/// `substringof`.
pub(crate) fn like_needle(f: Func, arg: usize) -> Option<(&'static str, &'static str)> {
    match (f, arg) {
        (Func::SubstringOf, 0) | (Func::Contains, 1) => Some(("%", "%")),
        (Func::StartsWith, 1) => Some(("", "%")),
        (Func::EndsWith, 1) => Some(("%", "")),
        _ => None,
    }
}

fn is_string_literal(e: &Expr) -> bool {
    matches!(e.kind, ExprKind::Literal(Literal::String(_)))
}

/// `x` in UTC when it is a date-time; dates and times as they are.
fn utc(v: &Typed) -> String {
    if v.ty == Type::DateTime {
        format!("({} AT TIME ZONE 'UTC')", v.sql)
    } else {
        v.sql.clone()
    }
}

pub(crate) fn call(t: &mut Translator<'_>, f: Func, args: &[Expr], vals: Vec<Typed>, ty: Type) -> Result<Typed> {
    use Func::*;
    // String arguments of JSON type are read as text, numbers as float8.
    let want = |k: usize| match f {
        Round | Floor | Ceiling => Type::Float,
        _ if k == 1 && f == Substring => Type::Int,
        _ if k == 2 && f == Substring => Type::Int,
        _ => Type::String,
    };
    let v: Vec<Typed> = vals.into_iter().enumerate().map(|(k, v)| t.coerce(v, want(k))).collect();
    let a = |k: usize| v[k].sql.clone();
    let sql = match f {
        SubstringOf if is_string_literal(&args[0]) => format!("({} LIKE {})", a(1), a(0)),
        SubstringOf => format!("(strpos({}, {}) > 0)", a(1), a(0)),
        Contains if is_string_literal(&args[1]) => format!("({} LIKE {})", a(0), a(1)),
        Contains => format!("(strpos({}, {}) > 0)", a(0), a(1)),
        StartsWith if is_string_literal(&args[1]) => format!("({} LIKE {})", a(0), a(1)),
        StartsWith => format!("starts_with({}, {})", a(0), a(1)),
        EndsWith if is_string_literal(&args[1]) => format!("({} LIKE {})", a(0), a(1)),
        EndsWith => format!("(right({}, char_length({})) = {})", a(0), a(1), a(1)),
        Length => format!("char_length({})::int8", a(0)),
        IndexOf => format!("(strpos({}, {}) - 1)::int8", a(0), a(1)),
        // Clamped so that no integer argument can make substr() fail.
        Substring => {
            let start = format!("(GREATEST(LEAST({}, 2147483646), 0) + 1)::int4", a(1));
            match v.get(2) {
                Some(n) => format!("substr({}, {start}, GREATEST(LEAST({}, 2147483647), 0)::int4)", a(0), n.sql),
                None => format!("substr({}, {start})", a(0)),
            }
        }
        ToLower => format!("lower({})", a(0)),
        ToUpper => format!("upper({})", a(0)),
        Trim => format!("btrim({})", a(0)),
        Concat => format!("({} || {})", a(0), a(1)),
        Year => format!("EXTRACT(YEAR FROM {})::int8", utc(&v[0])),
        Month => format!("EXTRACT(MONTH FROM {})::int8", utc(&v[0])),
        Day => format!("EXTRACT(DAY FROM {})::int8", utc(&v[0])),
        Hour => format!("EXTRACT(HOUR FROM {})::int8", utc(&v[0])),
        Minute => format!("EXTRACT(MINUTE FROM {})::int8", utc(&v[0])),
        Second => format!("floor(EXTRACT(SECOND FROM {}))::int8", utc(&v[0])),
        FractionalSeconds => {
            let s = format!("EXTRACT(SECOND FROM {})", utc(&v[0]));
            format!("({s} - floor({s}))::float8")
        }
        Date => format!("{}::date", utc(&v[0])),
        Time => format!("{}::time", utc(&v[0])),
        // timestamptz does not keep the offset it was written with: every
        // stored time is UTC, offset 0.
        TotalOffsetMinutes => format!("(CASE WHEN {} IS NULL THEN NULL ELSE 0 END)::int8", a(0)),
        Now => "now()".to_string(),
        MinDateTime => "'-infinity'::timestamptz".to_string(),
        MaxDateTime => "'infinity'::timestamptz".to_string(),
        Round if ty == Type::Int => a(0),
        Floor if ty == Type::Int => a(0),
        Ceiling if ty == Type::Int => a(0),
        // OData rounds halves away from zero; round(float8) rounds them to
        // even. The operand once, in a subquery the planner keeps (OFFSET 0).
        Round => format!(
            "(SELECT CASE WHEN abs(r.v - trunc(r.v)) >= 0.5 THEN trunc(r.v) + sign(r.v) ELSE trunc(r.v) END \
             FROM (SELECT {}::float8 AS v OFFSET 0) AS r)",
            a(0)
        ),
        Floor => format!("floor({}::float8)", a(0)),
        Ceiling => format!("ceil({}::float8)", a(0)),
        // On geography, so distances and lengths are in metres.
        GeoDistance => format!("ST_Distance(({})::geography, ({})::geography)", a(0), a(1)),
        GeoLength => format!("ST_Length(({})::geography)", a(0)),
        GeoIntersects | StIntersects => format!("ST_Intersects({}, {})", a(0), a(1)),
        StEquals => format!("ST_Equals({}, {})", a(0), a(1)),
        StDisjoint => format!("ST_Disjoint({}, {})", a(0), a(1)),
        StTouches => format!("ST_Touches({}, {})", a(0), a(1)),
        StWithin => format!("ST_Within({}, {})", a(0), a(1)),
        StOverlaps => format!("ST_Overlaps({}, {})", a(0), a(1)),
        StCrosses => format!("ST_Crosses({}, {})", a(0), a(1)),
        StContains => format!("ST_Contains({}, {})", a(0), a(1)),
        StRelate => format!("ST_Relate({}, {}, {})", a(0), a(1), a(2)),
    };
    Ok(Typed { sql, ty })
}
