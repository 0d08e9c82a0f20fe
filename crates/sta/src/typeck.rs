//! Type checking of expressions.
//!
//! Runs twice: at parse time with every property untyped ([`Type::Any`]),
//! which catches what is wrong whatever the schema (`length(5)`,
//! `'a' add 1`, a numeric `$filter`), and again during SQL translation with
//! the schema's column types.

use std::fmt;

use crate::ast::{BinaryOp, Expr, ExprKind, Func, Literal, Path, UnaryOp};
use crate::error::{Result, StaError};

/// The type of an expression.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Type {
    Bool,
    Int,
    Float,
    String,
    DateTime,
    Date,
    Time,
    Duration,
    Geometry,
    Null,
    /// A JSON value of unknown type (`properties/district`); the SQL
    /// translation converts it to what it is compared with.
    Json,
    /// Not known yet (a property at parse time, before the schema).
    Any,
}

impl Type {
    fn flexible(self) -> bool {
        matches!(self, Type::Json | Type::Any)
    }

    fn numeric(self) -> bool {
        matches!(self, Type::Int | Type::Float)
    }
}

/// Written with its article, for messages: "an integer", "a string".
impl fmt::Display for Type {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Type::Bool => "a boolean",
            Type::Int => "an integer",
            Type::Float => "a number",
            Type::String => "a string",
            Type::DateTime => "a date-time",
            Type::Date => "a date",
            Type::Time => "a time of day",
            Type::Duration => "a duration",
            Type::Geometry => "a geometry",
            Type::Null => "null",
            Type::Json => "a JSON value",
            Type::Any => "a value",
        })
    }
}

/// Resolves a path's type, or says why it cannot.
pub type Resolver<'a> = dyn Fn(&Path) -> std::result::Result<Type, String> + 'a;

/// The parse-time resolver: every property is untyped.
pub fn untyped(_: &Path) -> std::result::Result<Type, String> {
    Ok(Type::Any)
}

pub(crate) fn type_error(option: &'static str, pos: usize, message: String) -> StaError {
    StaError::Type { option, pos, message }
}

/// The type of a literal.
pub fn literal_type(l: &Literal) -> Type {
    match l {
        Literal::Null => Type::Null,
        Literal::Bool(_) => Type::Bool,
        Literal::Int(_) => Type::Int,
        Literal::Float(_) => Type::Float,
        Literal::String(_) => Type::String,
        Literal::DateTime(_) => Type::DateTime,
        Literal::Date(_) => Type::Date,
        Literal::TimeOfDay(_) => Type::Time,
        Literal::Duration(_) => Type::Duration,
        Literal::Geography(_) => Type::Geometry,
    }
}

/// A `$filter` must be boolean.
pub fn check_filter(e: &Expr, option: &'static str, resolve: &Resolver<'_>) -> Result<Type> {
    let t = check(e, option, resolve)?;
    if !(t == Type::Bool || t.flexible()) {
        return Err(type_error(option, e.span.start, format!("a filter must be a boolean expression, this is {t}")));
    }
    Ok(t)
}

/// An `$orderby` key must be orderable.
pub fn check_orderby(e: &Expr, option: &'static str, resolve: &Resolver<'_>) -> Result<Type> {
    let t = check(e, option, resolve)?;
    if matches!(t, Type::Geometry | Type::Null) {
        return Err(type_error(option, e.span.start, format!("cannot order by {t}")));
    }
    Ok(t)
}

/// The type of `e`, or the first type error in it.
pub fn check(e: &Expr, option: &'static str, resolve: &Resolver<'_>) -> Result<Type> {
    let at = e.span.start;
    match &e.kind {
        ExprKind::Literal(l) => Ok(literal_type(l)),
        ExprKind::Path(p) => resolve(p).map_err(|message| StaError::UnknownProperty { option, pos: at, message }),
        ExprKind::Unary { op, operand } => {
            let t = check(operand, option, resolve)?;
            unary_type(*op, t).map_err(|m| type_error(option, operand.span.start, m))
        }
        ExprKind::Binary { op, left, right } => {
            let (l, r) = (check(left, option, resolve)?, check(right, option, resolve)?);
            if op.is_logical() {
                for (t, side) in [(l, left), (r, right)] {
                    if !(t == Type::Bool || t.flexible()) {
                        let message = format!("the operands of '{}' must be boolean, this is {t}", op.keyword());
                        return Err(type_error(option, side.span.start, message));
                    }
                }
                return Ok(Type::Bool);
            }
            binary_type(*op, l, r).map_err(|m| type_error(option, at, m))
        }
        ExprKind::Call { func, args } => {
            let types = args.iter().map(|a| check(a, option, resolve)).collect::<Result<Vec<_>>>()?;
            call_type(*func, args, &types)
                .map_err(|(k, m)| type_error(option, args.get(k).map_or(at, |a| a.span.start), m))
        }
        ExprKind::In { value, list } => {
            let v = check(value, option, resolve)?;
            let types = list.iter().map(|a| check(a, option, resolve)).collect::<Result<Vec<_>>>()?;
            in_type(v, &types).map_err(|(k, m)| type_error(option, list[k].span.start, m))
        }
        ExprKind::Lambda { var, body, op, .. } => {
            let (Some(var), Some(body)) = (var, body) else { return Ok(Type::Bool) };
            // The schema sees the variable's paths only while translating
            // (it knows the collection's entity type then); here they are untyped.
            let scoped = |p: &Path| match p.segments.first() {
                Some(crate::ast::Segment::Name(n)) if n == var => Ok(Type::Any),
                _ => resolve(p),
            };
            let t = check(body, option, &scoped)?;
            if !(t == Type::Bool || t.flexible()) {
                let message = format!("the condition of {} must be a boolean expression, this is {t}", op.keyword());
                return Err(type_error(option, body.span.start, message));
            }
            Ok(Type::Bool)
        }
    }
}

/// `value in (list)`: every element must be comparable with the value and
/// the elements with each other (one SQL `IN` list has one type).
pub(crate) fn in_type(v: Type, types: &[Type]) -> std::result::Result<Type, (usize, String)> {
    let mut first: Option<Type> = None;
    for (k, &t) in types.iter().enumerate() {
        comparable(BinaryOp::Eq, v, t).map_err(|m| (k, m.replace("using eq", "with 'in'")))?;
        match first {
            Some(f) if t != Type::Null && !t.flexible() => {
                comparable(BinaryOp::Eq, f, t)
                    .map_err(|_| (k, format!("the values after 'in' must be of one type: {f} and {t}")))?;
            }
            None if t != Type::Null && !t.flexible() => first = Some(t),
            _ => {}
        }
    }
    Ok(Type::Bool)
}

pub(crate) fn unary_type(op: UnaryOp, t: Type) -> std::result::Result<Type, String> {
    match op {
        UnaryOp::Not if t == Type::Bool || t.flexible() => Ok(Type::Bool),
        UnaryOp::Not => Err(format!("'not' needs a boolean, this is {t}")),
        UnaryOp::Neg if t.numeric() || t == Type::Duration || t == Type::Any => Ok(t),
        UnaryOp::Neg if t == Type::Json => Ok(Type::Float),
        UnaryOp::Neg => Err(format!("'-' needs a number or a duration, this is {t}")),
    }
}

/// Whether two types can be compared with `op`.
pub(crate) fn comparable(op: BinaryOp, l: Type, r: Type) -> std::result::Result<(), String> {
    use Type::*;
    let equality = matches!(op, BinaryOp::Eq | BinaryOp::Ne);
    let ok = match (l, r) {
        (Null, _) | (_, Null) => {
            if !equality {
                return Err(format!("null can only be compared with eq or ne, not {}", op.keyword()));
            }
            !(l == Geometry || r == Geometry)
        }
        (Geometry, _) | (_, Geometry) => {
            return Err("geometries cannot be compared with operators; use st_equals, st_within, ...".into())
        }
        (Any, _) | (_, Any) => true,
        (Json, t) | (t, Json) => matches!(t, Json | String | Int | Float | Bool),
        (a, b) if a.numeric() && b.numeric() => true,
        (DateTime, Date) | (Date, DateTime) => true,
        (a, b) => a == b,
    };
    if ok {
        Ok(())
    } else {
        Err(format!("cannot compare {l} with {r} using {}", op.keyword()))
    }
}

pub(crate) fn binary_type(op: BinaryOp, l: Type, r: Type) -> std::result::Result<Type, String> {
    use Type::*;
    if op.is_comparison() {
        return comparable(op, l, r).map(|()| Bool);
    }
    let num = |t: Type| t.numeric() || t.flexible();
    let result = match (op, l, r) {
        (_, Any, Any) => Some(Any),
        (_, a, b) if a.numeric() && b.numeric() => Some(if a == Int && b == Int { Int } else { Float }),
        (_, a, b) if num(a) && num(b) => Some(Float),
        (BinaryOp::Add | BinaryOp::Sub, DateTime, Duration | Any) => Some(DateTime),
        (BinaryOp::Add, Duration | Any, DateTime) => Some(DateTime),
        (BinaryOp::Sub, DateTime, DateTime) => Some(Duration),
        (BinaryOp::Sub, Any, DateTime) => Some(Any),
        (BinaryOp::Add | BinaryOp::Sub, Duration, Duration) | (BinaryOp::Sub, Duration, Any) => Some(Duration),
        // An untyped side may be a date-time (`phenomenonTime add
        // duration'PT1H'`) or a duration: not known until the schema says.
        (BinaryOp::Add | BinaryOp::Sub, Any, Duration) | (BinaryOp::Add, Duration, Any) => Some(Any),
        _ => None,
    };
    result.ok_or_else(|| match op {
        BinaryOp::Add | BinaryOp::Sub => format!(
            "'{}' needs two numbers, a date-time and a duration, or two durations; got {l} and {r}",
            op.keyword()
        ),
        _ => format!("'{}' needs two numbers, got {l} and {r}", op.keyword()),
    })
}

/// Parameter classes of built-in functions.
#[derive(Clone, Copy)]
enum P {
    Str,
    Num,
    Int,
    /// date-time or date
    DateLike,
    /// date-time or time of day
    TimeLike,
    DateTime,
    Geo,
}

fn accepts(p: P, t: Type) -> bool {
    use Type::*;
    t == Any
        || match p {
            P::Str => matches!(t, String | Json),
            P::Num => matches!(t, Int | Float | Json),
            P::Int => t == Int,
            P::DateLike => matches!(t, DateTime | Date),
            P::TimeLike => matches!(t, DateTime | Time),
            P::DateTime => t == DateTime,
            P::Geo => t == Geometry,
        }
}

fn describe(p: P) -> &'static str {
    match p {
        P::Str => "a string",
        P::Num => "a number",
        P::Int => "an integer",
        P::DateLike => "a date-time or date",
        P::TimeLike => "a date-time or time of day",
        P::DateTime => "a date-time",
        P::Geo => "a geometry",
    }
}

fn signature(f: Func) -> (&'static [P], Type) {
    use Func::*;
    match f {
        SubstringOf | Contains | StartsWith | EndsWith => (&[P::Str, P::Str], Type::Bool),
        Length => (&[P::Str], Type::Int),
        IndexOf => (&[P::Str, P::Str], Type::Int),
        Substring => (&[P::Str, P::Int, P::Int], Type::String),
        ToLower | ToUpper | Trim => (&[P::Str], Type::String),
        Concat => (&[P::Str, P::Str], Type::String),
        Year | Month | Day => (&[P::DateLike], Type::Int),
        Hour | Minute | Second => (&[P::TimeLike], Type::Int),
        FractionalSeconds => (&[P::TimeLike], Type::Float),
        Date => (&[P::DateTime], Type::Date),
        Time => (&[P::DateTime], Type::Time),
        TotalOffsetMinutes => (&[P::DateTime], Type::Int),
        Now | MinDateTime | MaxDateTime => (&[], Type::DateTime),
        Round | Floor | Ceiling => (&[P::Num], Type::Float),
        GeoDistance => (&[P::Geo, P::Geo], Type::Float),
        GeoLength => (&[P::Geo], Type::Float),
        GeoIntersects | StEquals | StDisjoint | StTouches | StWithin | StOverlaps | StCrosses | StIntersects
        | StContains => (&[P::Geo, P::Geo], Type::Bool),
        StRelate => (&[P::Geo, P::Geo, P::Str], Type::Bool),
    }
}

/// Whether `f` is a condition (so a to-many path in it means "any").
pub(crate) fn returns_bool(f: Func) -> bool {
    signature(f).1 == Type::Bool
}

/// The result type of a call, or the index of the bad argument and why.
pub(crate) fn call_type(f: Func, args: &[Expr], types: &[Type]) -> std::result::Result<Type, (usize, String)> {
    let (params, result) = signature(f);
    for (k, (&p, &t)) in params.iter().zip(types).enumerate() {
        if !accepts(p, t) {
            let nth = ["first", "second", "third"][k.min(2)];
            return Err((k, format!("the {nth} argument of {} must be {}, this is {t}", f.name(), describe(p))));
        }
    }
    if f == Func::StRelate {
        match args.get(2).map(|a| &a.kind) {
            Some(ExprKind::Literal(Literal::String(s)))
                if s.len() == 9 && s.chars().all(|c| matches!(c, '0' | '1' | '2' | 'T' | 'F' | '*')) => {}
            _ => {
                return Err((
                    2,
                    "the pattern of st_relate must be a 9-character DE-9IM string literal like 'T*T***FF*'".into(),
                ))
            }
        }
    }
    // round/floor/ceiling keep integers integral.
    if matches!(f, Func::Round | Func::Floor | Func::Ceiling) && types.first() == Some(&Type::Int) {
        return Ok(Type::Int);
    }
    Ok(result)
}
