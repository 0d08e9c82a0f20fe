//! A tiny `$filter` subset for the API properties: generated as a tree,
//! printed as filter text, and evaluated on an entity's JSON the way the
//! server's SQL does (three-valued logic, JSON values coerced to the type
//! the other side needs or NULL, C collation), so every returned entity can
//! be checked client-side.

use std::cmp::Ordering;
use std::fmt;

use chrono::{DateTime, Timelike, Utc};
use serde_json::Value;

/// A value during evaluation; `None` is SQL NULL.
#[derive(Debug, Clone, PartialEq)]
pub enum V {
    Int(i64),
    Float(f64),
    Str(String),
    Bool(bool),
    Time(DateTime<Utc>),
}

#[derive(Debug, Clone)]
pub enum E {
    /// A property path and the type it is read as.
    Num(&'static str),
    Text(&'static str),
    Time(&'static str),
    Flag(&'static str),
    Lit(V),
    Arith(&'static str, Box<E>, Box<E>),
    Neg(Box<E>),
    Call(&'static str, Vec<E>),
    Cmp(&'static str, Box<E>, Box<E>),
    Logic(&'static str, Box<E>, Box<E>),
    Not(Box<E>),
    /// `value in (a, b)`: SQL `IN`, true if one equals, else NULL if one is NULL.
    In(Box<E>, Vec<E>),
}

impl fmt::Display for E {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            E::Num(p) | E::Text(p) | E::Time(p) | E::Flag(p) => f.write_str(p),
            E::Lit(V::Int(n)) => write!(f, "{n}"),
            E::Lit(V::Float(x)) => write!(f, "{x:?}"),
            E::Lit(V::Str(s)) => write!(f, "'{}'", s.replace('\'', "''")),
            E::Lit(V::Bool(b)) => write!(f, "{b}"),
            E::Lit(V::Time(t)) => write!(f, "{}", t.format("%Y-%m-%dT%H:%M:%SZ")),
            E::Arith(op, a, b) | E::Cmp(op, a, b) | E::Logic(op, a, b) => write!(f, "({a} {op} {b})"),
            E::Neg(a) => write!(f, "-({a})"),
            E::Not(a) => write!(f, "not ({a})"),
            E::In(a, list) => {
                write!(f, "({a} in (")?;
                for (k, x) in list.iter().enumerate() {
                    write!(f, "{}{x}", if k > 0 { "," } else { "" })?;
                }
                f.write_str("))")
            }
            E::Call(name, args) => {
                write!(f, "{name}(")?;
                for (k, a) in args.iter().enumerate() {
                    write!(f, "{}{a}", if k > 0 { "," } else { "" })?;
                }
                f.write_str(")")
            }
        }
    }
}

/// The JSON at a `/`-separated path (`properties/district`).
pub fn at<'a>(entity: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('/').try_fold(entity, |v, k| v.get(k))
}

fn num(v: &Value) -> Option<V> {
    match v {
        Value::Number(n) => n.as_i64().map(V::Int).or_else(|| n.as_f64().map(V::Float)),
        _ => None,
    }
}

fn f(v: &V) -> f64 {
    match v {
        V::Int(n) => *n as f64,
        V::Float(x) => *x,
        _ => f64::NAN,
    }
}

fn chars_index(s: &str, needle: &str) -> i64 {
    s.find(needle).map_or(-1, |b| s[..b].chars().count() as i64)
}

/// Rounds half away from zero, as OData's `round` is defined.
fn round(x: f64) -> f64 {
    x.round()
}

pub fn eval(e: &E, entity: &Value) -> Option<V> {
    match e {
        // Top-level id columns are integers; JSON numbers are read as float8.
        E::Num(p) if *p == "id" || *p == "@iot.id" => at(entity, "@iot.id").and_then(num),
        E::Num(p) => at(entity, p).and_then(num).map(|v| V::Float(f(&v))),
        E::Text(p) => at(entity, p).and_then(|v| v.as_str()).map(|s| V::Str(s.to_string())),
        E::Time(p) => at(entity, p).and_then(|v| v.as_str()).and_then(|s| s.parse().ok()).map(V::Time),
        E::Flag(p) => at(entity, p).and_then(|v| v.as_bool()).map(V::Bool),
        E::Lit(v) => Some(v.clone()),
        E::Neg(a) => match eval(a, entity)? {
            V::Int(n) => Some(V::Int(n.wrapping_neg())),
            v => Some(V::Float(-f(&v))),
        },
        E::Arith(op, a, b) => {
            let (a, b) = (eval(a, entity)?, eval(b, entity)?);
            match (&a, &b) {
                (V::Int(x), V::Int(y)) => match *op {
                    "add" => x.checked_add(*y).map(V::Int),
                    "sub" => x.checked_sub(*y).map(V::Int),
                    "mul" => x.checked_mul(*y).map(V::Int),
                    _ => x.checked_div(*y).map(V::Int),
                },
                _ => {
                    let (x, y) = (f(&a), f(&b));
                    match *op {
                        "add" => Some(V::Float(x + y)),
                        "sub" => Some(V::Float(x - y)),
                        "mul" => Some(V::Float(x * y)),
                        _ => (y != 0.0).then(|| V::Float(x / y)),
                    }
                }
            }
        }
        E::Call(name, args) => {
            let vals: Option<Vec<V>> = args.iter().map(|a| eval(a, entity)).collect();
            let vals = vals?;
            let s = |k: usize| match &vals[k] {
                V::Str(s) => s.clone(),
                other => panic!("{other:?} is not a string"),
            };
            let i = |k: usize| match &vals[k] {
                V::Int(n) => *n,
                other => panic!("{other:?} is not an integer"),
            };
            Some(match *name {
                "length" => V::Int(s(0).chars().count() as i64),
                "tolower" => V::Str(s(0).to_ascii_lowercase()),
                "toupper" => V::Str(s(0).to_ascii_uppercase()),
                "trim" => V::Str(s(0).trim_matches(' ').to_string()),
                "concat" => V::Str(s(0) + &s(1)),
                "indexof" => V::Int(chars_index(&s(0), &s(1))),
                "substring" => {
                    let skip = i(1).max(0) as usize;
                    let take = if vals.len() > 2 { i(2).max(0) as usize } else { usize::MAX };
                    V::Str(s(0).chars().skip(skip).take(take).collect())
                }
                "startswith" => V::Bool(s(0).starts_with(&s(1))),
                "endswith" => V::Bool(s(0).ends_with(&s(1))),
                "substringof" => V::Bool(s(1).contains(&s(0))),
                // On an integer they are the identity, and stay integers.
                "round" | "floor" | "ceiling" if matches!(vals[0], V::Int(_)) => vals[0].clone(),
                "round" => V::Float(round(f(&vals[0]))),
                "floor" => V::Float(f(&vals[0]).floor()),
                "ceiling" => V::Float(f(&vals[0]).ceil()),
                "hour" | "minute" => match &vals[0] {
                    V::Time(t) => V::Int(if *name == "hour" { t.hour() } else { t.minute() } as i64),
                    other => panic!("{other:?} is not a time"),
                },
                other => panic!("no evaluator for {other}"),
            })
        }
        E::Cmp(op, a, b) => {
            let (a, b) = (eval(a, entity)?, eval(b, entity)?);
            let ord = match (&a, &b) {
                (V::Str(x), V::Str(y)) => x.as_bytes().cmp(y.as_bytes()),
                (V::Time(x), V::Time(y)) => x.cmp(y),
                (V::Bool(x), V::Bool(y)) => x.cmp(y),
                (V::Int(x), V::Int(y)) => x.cmp(y),
                _ => f(&a).partial_cmp(&f(&b))?,
            };
            Some(V::Bool(match *op {
                "eq" => ord == Ordering::Equal,
                "ne" => ord != Ordering::Equal,
                "gt" => ord == Ordering::Greater,
                "ge" => ord != Ordering::Less,
                "lt" => ord == Ordering::Less,
                _ => ord != Ordering::Greater,
            }))
        }
        E::Logic(op, a, b) => {
            let (a, b) = (truth(eval(a, entity)), truth(eval(b, entity)));
            let v = if *op == "and" {
                match (a, b) {
                    (Some(false), _) | (_, Some(false)) => Some(false),
                    (Some(true), Some(true)) => Some(true),
                    _ => None,
                }
            } else {
                match (a, b) {
                    (Some(true), _) | (_, Some(true)) => Some(true),
                    (Some(false), Some(false)) => Some(false),
                    _ => None,
                }
            };
            v.map(V::Bool)
        }
        E::Not(a) => truth(eval(a, entity)).map(|b| V::Bool(!b)),
        E::In(a, list) => {
            let mut unknown = false;
            for x in list {
                match truth(eval(&E::Cmp("eq", a.clone(), Box::new(x.clone())), entity)) {
                    Some(true) => return Some(V::Bool(true)),
                    Some(false) => {}
                    None => unknown = true,
                }
            }
            (!unknown).then_some(V::Bool(false))
        }
    }
}

fn truth(v: Option<V>) -> Option<bool> {
    match v? {
        V::Bool(b) => Some(b),
        other => panic!("{other:?} is not a boolean"),
    }
}

/// Whether `$filter` keeps the entity (only a true predicate does).
pub fn keeps(e: &E, entity: &Value) -> bool {
    truth(eval(e, entity)) == Some(true)
}

/// PostgreSQL's jsonb order (Object > Array > Boolean > Number > String >
/// Null), strings in C collation, a missing key (SQL NULL) last.
pub fn jsonb_cmp(a: Option<&Value>, b: Option<&Value>) -> Ordering {
    fn rank(v: &Value) -> u8 {
        match v {
            Value::Null => 0,
            Value::String(_) => 1,
            Value::Number(_) => 2,
            Value::Bool(_) => 3,
            Value::Array(_) => 4,
            Value::Object(_) => 5,
        }
    }
    match (a, b) {
        (None, None) => Ordering::Equal,
        (None, Some(_)) => Ordering::Greater,
        (Some(_), None) => Ordering::Less,
        (Some(x), Some(y)) => rank(x).cmp(&rank(y)).then_with(|| match (x, y) {
            (Value::String(s), Value::String(t)) => s.as_bytes().cmp(t.as_bytes()),
            (Value::Number(m), Value::Number(n)) => {
                m.as_f64().unwrap().partial_cmp(&n.as_f64().unwrap()).unwrap_or(Ordering::Equal)
            }
            (Value::Bool(p), Value::Bool(q)) => p.cmp(q),
            _ => Ordering::Equal,
        }),
    }
}
