//! The syntax tree of `$filter` and `$orderby` expressions, and its printer.
//!
//! Every node carries the byte span of the text it came from so type and
//! schema errors can point at it. The printer writes text the parser reads
//! back into the same tree (spans aside): the property tests rely on it, and
//! the server uses it to build `@iot.nextLink`s from parsed options.

use std::fmt;

use chrono::{DateTime, FixedOffset, NaiveDate, NaiveTime, SecondsFormat};

pub use crate::funcs::Func;
pub use crate::wkt::Geometry;

/// Byte range `[start, end)` in the option value the node was parsed from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Span {
    pub start: usize,
    pub end: usize,
}

impl Span {
    pub fn new(start: usize, end: usize) -> Span {
        Span { start, end }
    }
}

/// One expression node.
#[derive(Debug, Clone, PartialEq)]
pub struct Expr {
    pub kind: ExprKind,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ExprKind {
    Literal(Literal),
    /// A property or navigation path: `name`, `Thing/properties/district`.
    Path(Path),
    Unary {
        op: UnaryOp,
        operand: Box<Expr>,
    },
    Binary {
        op: BinaryOp,
        left: Box<Expr>,
        right: Box<Expr>,
    },
    Call {
        func: Func,
        args: Vec<Expr>,
    },
    /// `value in (a, b, c)` (OData 4.01, which STA 1.1 clients send).
    In {
        value: Box<Expr>,
        list: Vec<Expr>,
    },
    /// `Datastreams/any(d: d/name eq 'x')`: a condition over a to-many
    /// navigation property. `var` and `body` are absent in `any()`
    /// ("the collection is not empty").
    Lambda {
        collection: Path,
        op: LambdaOp,
        var: Option<String>,
        body: Option<Box<Expr>>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LambdaOp {
    Any,
    All,
}

impl LambdaOp {
    pub fn keyword(self) -> &'static str {
        match self {
            LambdaOp::Any => "any",
            LambdaOp::All => "all",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UnaryOp {
    Not,
    /// Arithmetic negation of a non-literal (`-result`); `-5` is a literal.
    Neg,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BinaryOp {
    Or,
    And,
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
    Add,
    Sub,
    Mul,
    Div,
    Mod,
}

impl BinaryOp {
    pub const ALL: [BinaryOp; 13] = [
        BinaryOp::Or,
        BinaryOp::And,
        BinaryOp::Eq,
        BinaryOp::Ne,
        BinaryOp::Gt,
        BinaryOp::Ge,
        BinaryOp::Lt,
        BinaryOp::Le,
        BinaryOp::Add,
        BinaryOp::Sub,
        BinaryOp::Mul,
        BinaryOp::Div,
        BinaryOp::Mod,
    ];

    /// The OData keyword.
    pub fn keyword(self) -> &'static str {
        match self {
            BinaryOp::Or => "or",
            BinaryOp::And => "and",
            BinaryOp::Eq => "eq",
            BinaryOp::Ne => "ne",
            BinaryOp::Gt => "gt",
            BinaryOp::Ge => "ge",
            BinaryOp::Lt => "lt",
            BinaryOp::Le => "le",
            BinaryOp::Add => "add",
            BinaryOp::Sub => "sub",
            BinaryOp::Mul => "mul",
            BinaryOp::Div => "div",
            BinaryOp::Mod => "mod",
        }
    }

    pub fn is_comparison(self) -> bool {
        matches!(self, BinaryOp::Eq | BinaryOp::Ne | BinaryOp::Gt | BinaryOp::Ge | BinaryOp::Lt | BinaryOp::Le)
    }

    pub fn is_logical(self) -> bool {
        matches!(self, BinaryOp::And | BinaryOp::Or)
    }
}

/// A `/`-separated path. The first segment is always a name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Path {
    pub segments: Vec<Segment>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Segment {
    Name(String),
    /// `[3]`: an element of a JSON array (`properties/tags[0]`).
    Index(u32),
}

impl Path {
    /// The names only, for schemas that do not care about array indices.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.segments.iter().filter_map(|s| match s {
            Segment::Name(n) => Some(n.as_str()),
            Segment::Index(_) => None,
        })
    }
}

/// An ISO 8601 duration (`duration'P1DT2H'`). Weeks are folded into days.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct IsoDuration {
    pub negative: bool,
    pub years: u32,
    pub months: u32,
    pub days: u32,
    pub hours: u32,
    pub minutes: u32,
    pub seconds: u32,
    pub nanos: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    Null,
    Bool(bool),
    Int(i64),
    /// Always finite: the parser refuses literals that overflow `f64`.
    Float(f64),
    String(String),
    DateTime(DateTime<FixedOffset>),
    Date(NaiveDate),
    TimeOfDay(NaiveTime),
    Duration(IsoDuration),
    /// `geography'POINT(120.3 22.6)'`, WGS 84 longitude/latitude.
    Geography(Geometry),
}

impl Expr {
    pub fn new(kind: ExprKind, span: Span) -> Expr {
        Expr { kind, span }
    }

    /// The same tree with every span zeroed, to compare shapes.
    pub fn without_spans(&self) -> Expr {
        let kind = match &self.kind {
            ExprKind::Literal(l) => ExprKind::Literal(l.clone()),
            ExprKind::Path(p) => ExprKind::Path(p.clone()),
            ExprKind::Unary { op, operand } => ExprKind::Unary { op: *op, operand: Box::new(operand.without_spans()) },
            ExprKind::Binary { op, left, right } => ExprKind::Binary {
                op: *op,
                left: Box::new(left.without_spans()),
                right: Box::new(right.without_spans()),
            },
            ExprKind::Call { func, args } => {
                ExprKind::Call { func: *func, args: args.iter().map(Expr::without_spans).collect() }
            }
            ExprKind::In { value, list } => ExprKind::In {
                value: Box::new(value.without_spans()),
                list: list.iter().map(Expr::without_spans).collect(),
            },
            ExprKind::Lambda { collection, op, var, body } => ExprKind::Lambda {
                collection: collection.clone(),
                op: *op,
                var: var.clone(),
                body: body.as_ref().map(|b| Box::new(b.without_spans())),
            },
        };
        Expr { kind, span: Span::default() }
    }

    fn is_atomic(&self) -> bool {
        matches!(self.kind, ExprKind::Literal(_) | ExprKind::Path(_) | ExprKind::Call { .. } | ExprKind::Lambda { .. })
    }
}

impl fmt::Display for IsoDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.negative {
            f.write_str("-")?;
        }
        f.write_str("P")?;
        for (v, u) in [(self.years, 'Y'), (self.months, 'M'), (self.days, 'D')] {
            if v > 0 {
                write!(f, "{v}{u}")?;
            }
        }
        let has_time = self.hours > 0 || self.minutes > 0 || self.seconds > 0 || self.nanos > 0;
        let empty = !has_time && self.years == 0 && self.months == 0 && self.days == 0;
        if has_time || empty {
            f.write_str("T")?;
            for (v, u) in [(self.hours, 'H'), (self.minutes, 'M')] {
                if v > 0 {
                    write!(f, "{v}{u}")?;
                }
            }
            if self.seconds > 0 || self.nanos > 0 || empty {
                write!(f, "{}", self.seconds)?;
                if self.nanos > 0 {
                    let frac = format!("{:09}", self.nanos);
                    write!(f, ".{}", frac.trim_end_matches('0'))?;
                }
                f.write_str("S")?;
            }
        }
        Ok(())
    }
}

impl fmt::Display for Literal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Literal::Null => f.write_str("null"),
            Literal::Bool(b) => write!(f, "{b}"),
            Literal::Int(i) => write!(f, "{i}"),
            // `{:?}` is the shortest text that reads back to the same f64 and
            // always has a `.` or an exponent, so it stays a Float.
            Literal::Float(x) => write!(f, "{x:?}"),
            Literal::String(s) => write!(f, "'{}'", s.replace('\'', "''")),
            Literal::DateTime(d) => f.write_str(&d.to_rfc3339_opts(SecondsFormat::AutoSi, true)),
            Literal::Date(d) => write!(f, "{}", d.format("%Y-%m-%d")),
            Literal::TimeOfDay(t) => write!(f, "{}", t.format("%H:%M:%S%.f")),
            Literal::Duration(d) => write!(f, "duration'{d}'"),
            Literal::Geography(g) => write!(f, "geography'{g}'"),
        }
    }
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, s) in self.segments.iter().enumerate() {
            match s {
                Segment::Name(n) if i == 0 => f.write_str(n)?,
                Segment::Name(n) => write!(f, "/{n}")?,
                Segment::Index(k) => write!(f, "[{k}]")?,
            }
        }
        Ok(())
    }
}

/// Writes an operand, parenthesised unless it is atomic, so that the text
/// reads back with the same grouping whatever the precedences.
struct Operand<'a>(&'a Expr);

impl fmt::Display for Operand<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_atomic() {
            write!(f, "{}", self.0)
        } else {
            write!(f, "({})", self.0)
        }
    }
}

impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            ExprKind::Literal(l) => write!(f, "{l}"),
            ExprKind::Path(p) => write!(f, "{p}"),
            ExprKind::Unary { op: UnaryOp::Not, operand } => write!(f, "not ({operand})"),
            ExprKind::Unary { op: UnaryOp::Neg, operand } => write!(f, "-({operand})"),
            ExprKind::Binary { op, left, right } => {
                write!(f, "{} {} {}", Operand(left), op.keyword(), Operand(right))
            }
            ExprKind::Call { func, args } => {
                write!(f, "{}(", func.name())?;
                for (i, a) in args.iter().enumerate() {
                    if i > 0 {
                        f.write_str(",")?;
                    }
                    write!(f, "{a}")?;
                }
                f.write_str(")")
            }
            ExprKind::In { value, list } => {
                write!(f, "{} in (", Operand(value))?;
                for (i, a) in list.iter().enumerate() {
                    if i > 0 {
                        f.write_str(",")?;
                    }
                    write!(f, "{a}")?;
                }
                f.write_str(")")
            }
            ExprKind::Lambda { collection, op, var, body } => {
                write!(f, "{collection}/{}(", op.keyword())?;
                if let (Some(v), Some(b)) = (var, body) {
                    write!(f, "{v}:{b}")?;
                }
                f.write_str(")")
            }
        }
    }
}
