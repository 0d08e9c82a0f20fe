//! Translation of checked expressions to parameterised PostgreSQL/PostGIS.
//!
//! The one rule: no text from the client is ever part of the SQL string.
//! Literals become numbered parameters (`$1`, `$2`...) with an explicit cast
//! that fixes their type on the server, and JSON property names become
//! parameters too; the SQL text is made only of this module's constants and
//! the [`Schema`]'s column expressions, which come from the server's code.

use chrono::{DateTime, FixedOffset, NaiveDate, NaiveTime};

use crate::ast::{BinaryOp, Expr, ExprKind, Literal, Path, Segment, UnaryOp};
use crate::error::{Result, StaError};
use crate::options::OrderBy;
use crate::typeck::{self, type_error, Type};

/// A bound value, in the order of its `$n`.
#[derive(Debug, Clone, PartialEq)]
pub enum SqlParam {
    Text(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    Timestamp(DateTime<FixedOffset>),
    Date(NaiveDate),
    Time(NaiveTime),
}

/// What a property path is in SQL.
#[derive(Debug, Clone, PartialEq)]
pub enum Resolved {
    /// A scalar SQL expression of a known type, e.g. `o.ts` or
    /// `(SELECT t.name FROM things t WHERE t.id = d.thing_id)`. Written by
    /// the server, never containing client text.
    Column { sql: String, ty: Type },
    /// A `jsonb` SQL expression and the keys below it that the client named
    /// (`Thing/properties/district` → `th.properties` and `["district"]`);
    /// the keys are bound as parameters.
    Json { sql: String, keys: Vec<String> },
}

/// Maps the properties and navigation paths of the entity type a filter
/// applies to onto SQL. The server implements one per entity type.
pub trait Schema {
    /// Resolves `path`, or explains why it is unknown (the message is shown
    /// to the client, e.g. "Datastreams have no property 'nmae'").
    fn resolve(&self, path: &Path) -> std::result::Result<Resolved, String>;

    /// The elements of the to-many navigation property `nav` (`Datastreams`
    /// of a Thing) seen through `alias`, for `any`/`all` and for to-many
    /// paths in comparisons; `None` when `nav` is not one. To-one navigation
    /// properties may be given too, as [`Collection::single`]. The default
    /// has no collections.
    fn collection(&self, nav: &str, alias: &str) -> Option<std::result::Result<Collection, String>> {
        let _ = (nav, alias);
        None
    }
}

/// What [`Schema::collection`] returns.
pub struct Collection {
    /// `FROM <source> AS <alias> WHERE <correlation with the outer row>`,
    /// ready for `EXISTS (SELECT 1 {from} AND <condition>)`. Server text only.
    pub from: String,
    /// The elements' schema, its columns qualified by the alias.
    pub schema: Box<dyn Schema>,
    /// A to-one navigation property as a collection of (at most) one: only
    /// opened when a path goes on through a to-many one (`Thing/Locations/name`).
    pub single: bool,
}

impl std::fmt::Debug for Collection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Collection").field("from", &self.from).finish_non_exhaustive()
    }
}

/// Helper for [`Schema`] implementations: the JSON keys after `skip`
/// leading segments, array indices as their decimal text (which is what
/// `jsonb_extract_path` expects for array elements).
pub fn json_keys(path: &Path, skip: usize) -> Vec<String> {
    path.segments
        .iter()
        .skip(skip)
        .map(|s| match s {
            Segment::Name(n) => n.clone(),
            Segment::Index(k) => k.to_string(),
        })
        .collect()
}

/// Accumulates parameters; numbering can start after the server's own.
#[derive(Debug, Clone, Default)]
pub struct SqlBuilder {
    params: Vec<SqlParam>,
    offset: usize,
    /// Subquery aliases handed out (`c1`, `c2`...), unique per statement.
    aliases: usize,
}

impl SqlBuilder {
    /// The first parameter will be `$1`.
    pub fn new() -> SqlBuilder {
        SqlBuilder::default()
    }

    /// The first parameter will be `$(already + 1)`.
    pub fn after(already: usize) -> SqlBuilder {
        SqlBuilder { params: Vec::new(), offset: already, aliases: 0 }
    }

    pub(crate) fn next_alias(&mut self) -> (String, usize) {
        self.aliases += 1;
        (format!("c{}", self.aliases), self.aliases)
    }

    pub(crate) fn bind(&mut self, p: SqlParam, cast: &str) -> String {
        self.params.push(p);
        format!("${}::{cast}", self.offset + self.params.len())
    }

    pub fn params(&self) -> &[SqlParam] {
        &self.params
    }

    pub fn into_params(self) -> Vec<SqlParam> {
        self.params
    }

    /// A `WHERE` condition for a `$filter`.
    pub fn filter(&mut self, expr: &Expr, schema: &dyn Schema) -> Result<String> {
        let t = Translator { b: self, schema, option: "$filter", vars: Vec::new() };
        t.filter(expr)
    }

    /// An `ORDER BY` list (without the keywords) for `$orderby`.
    pub fn orderby(&mut self, keys: &[OrderBy], schema: &dyn Schema) -> Result<String> {
        let mut out = Vec::with_capacity(keys.len());
        for k in keys {
            let mut t = Translator { b: &mut *self, schema, option: "$orderby", vars: Vec::new() };
            typeck::check_orderby(&k.expr, "$orderby", &|p: &Path| t.path_type(p))?;
            let v = t.expr(&k.expr)?;
            out.push(format!("{} {}", v.sql, if k.descending { "DESC" } else { "ASC" }));
        }
        Ok(out.join(", "))
    }
}

/// Translates a `$filter` into a condition and its parameters, `$1` first.
pub fn to_sql(expr: &Expr, schema: &dyn Schema) -> Result<(String, Vec<SqlParam>)> {
    let mut b = SqlBuilder::new();
    let sql = b.filter(expr, schema)?;
    Ok((sql, b.into_params()))
}

/// Translates `$orderby` keys into an `ORDER BY` list and its parameters.
pub fn orderby_to_sql(keys: &[OrderBy], schema: &dyn Schema) -> Result<(String, Vec<SqlParam>)> {
    let mut b = SqlBuilder::new();
    let sql = b.orderby(keys, schema)?;
    Ok((sql, b.into_params()))
}

/// SQL text and its type.
pub(crate) struct Typed {
    pub(crate) sql: String,
    pub(crate) ty: Type,
}

pub(crate) struct Translator<'a> {
    pub(crate) b: &'a mut SqlBuilder,
    pub(crate) schema: &'a dyn Schema,
    pub(crate) option: &'static str,
    /// Lambda variables in scope, innermost last: name, the name shown in
    /// messages, and the schema of the collection's elements.
    pub(crate) vars: Vec<(String, String, Box<dyn Schema>)>,
}

/// Escapes `%`, `_` and `\` for a LIKE pattern (backslash is the default escape).
pub(crate) fn like_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    for c in s.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

impl Translator<'_> {
    fn filter(mut self, e: &Expr) -> Result<String> {
        typeck::check_filter(e, self.option, &|p: &Path| self.path_type(p))?;
        let v = self.expr(e)?;
        Ok(self.coerce(v, Type::Bool).sql)
    }

    /// Converts a JSON value to `target` without ever failing at run time:
    /// values of another JSON type become NULL (so they match nothing).
    pub(crate) fn coerce(&self, v: Typed, target: Type) -> Typed {
        if v.ty != Type::Json {
            return v;
        }
        let j = v.sql;
        let sql = match target {
            Type::Float | Type::Int => {
                format!("(CASE WHEN jsonb_typeof({j}) = 'number' THEN ({j} #>> '{{}}')::float8 END)")
            }
            Type::Bool => format!("(CASE WHEN jsonb_typeof({j}) = 'boolean' THEN ({j} #>> '{{}}')::boolean END)"),
            Type::Json => return Typed { sql: j, ty: Type::Json },
            _ => format!("({j} #>> '{{}}')"),
        };
        Typed { sql, ty: if target == Type::Int { Type::Float } else { target } }
    }

    fn literal(&mut self, l: &Literal) -> Typed {
        let ty = typeck::literal_type(l);
        let sql = match l {
            Literal::Null => "NULL".to_string(),
            Literal::Bool(b) => self.b.bind(SqlParam::Bool(*b), "boolean"),
            Literal::Int(n) => self.b.bind(SqlParam::Int(*n), "int8"),
            Literal::Float(x) => self.b.bind(SqlParam::Float(*x), "float8"),
            Literal::String(s) => self.b.bind(SqlParam::Text(s.clone()), "text"),
            Literal::DateTime(d) => self.b.bind(SqlParam::Timestamp(*d), "timestamptz"),
            Literal::Date(d) => self.b.bind(SqlParam::Date(*d), "date"),
            Literal::TimeOfDay(t) => self.b.bind(SqlParam::Time(*t), "time"),
            Literal::Duration(d) => {
                let magnitude = crate::ast::IsoDuration { negative: false, ..*d };
                let p = self.b.bind(SqlParam::Text(magnitude.to_string()), "text");
                if d.negative {
                    format!("(-({p}::interval))")
                } else {
                    format!("({p}::interval)")
                }
            }
            Literal::Geography(g) => {
                format!("ST_GeomFromText({}, 4326)", self.b.bind(SqlParam::Text(g.to_string()), "text"))
            }
        };
        Typed { sql, ty }
    }

    fn path(&mut self, e: &Expr, p: &Path) -> Result<Typed> {
        let resolved = self
            .scoped(p)
            .and_then(|(schema, rest)| schema.resolve(&rest))
            .map_err(|message| StaError::UnknownProperty { option: self.option, pos: e.span.start, message })?;
        Ok(match resolved {
            Resolved::Column { sql, ty } => Typed { sql: format!("({sql})"), ty },
            Resolved::Json { sql, keys } if keys.is_empty() => Typed { sql: format!("({sql})"), ty: Type::Json },
            Resolved::Json { sql, keys } => {
                let keys: Vec<String> = keys.into_iter().map(|k| self.b.bind(SqlParam::Text(k), "text")).collect();
                Typed { sql: format!("jsonb_extract_path({sql}, {})", keys.join(", ")), ty: Type::Json }
            }
        })
    }

    pub(crate) fn expr(&mut self, e: &Expr) -> Result<Typed> {
        let condition = match &e.kind {
            ExprKind::Binary { op, .. } => op.is_comparison(),
            ExprKind::In { .. } => true,
            ExprKind::Call { func, .. } => typeck::returns_bool(*func),
            _ => false,
        };
        if condition {
            if let Some((var, nav)) = self.to_many_path(e) {
                return self.implicit_any(e, var, nav);
            }
        }
        match &e.kind {
            ExprKind::Lambda { collection, op, var, body } => self.lambda(e, collection, *op, var, body),
            ExprKind::In { value, list } => self.in_list(value, list),
            ExprKind::Literal(l) => Ok(self.literal(l)),
            ExprKind::Path(p) => self.path(e, p),
            ExprKind::Unary { op, operand } => {
                let v = self.expr(operand)?;
                let ty = typeck::unary_type(*op, v.ty).map_err(|m| type_error(self.option, operand.span.start, m))?;
                Ok(match op {
                    UnaryOp::Not => Typed { sql: format!("(NOT {})", self.coerce(v, Type::Bool).sql), ty },
                    UnaryOp::Neg => Typed { sql: format!("(-{})", self.coerce(v, Type::Float).sql), ty },
                })
            }
            ExprKind::Binary { op, left, right } => {
                let (l, r) = (self.expr(left)?, self.expr(right)?);
                self.binary(e, *op, l, r)
            }
            ExprKind::Call { func, args } => {
                // A literal needle of startswith & co. is bound as a LIKE
                // pattern rather than as itself (sqlfn uses it as such).
                let mut vals = Vec::with_capacity(args.len());
                for (k, a) in args.iter().enumerate() {
                    vals.push(match (crate::sqlfn::like_needle(*func, k), &a.kind) {
                        (Some((pre, suf)), ExprKind::Literal(Literal::String(s))) => {
                            let p = self.b.bind(SqlParam::Text(format!("{pre}{}{suf}", like_escape(s))), "text");
                            Typed { sql: p, ty: Type::String }
                        }
                        _ => self.expr(a)?,
                    });
                }
                let types: Vec<Type> = vals.iter().map(|v| v.ty).collect();
                let ty = typeck::call_type(*func, args, &types)
                    .map_err(|(k, m)| type_error(self.option, args.get(k).map_or(e.span.start, |a| a.span.start), m))?;
                crate::sqlfn::call(self, *func, args, vals, ty)
            }
        }
    }

    fn binary(&mut self, e: &Expr, op: BinaryOp, l: Typed, r: Typed) -> Result<Typed> {
        if op.is_logical() {
            let (l, r) = (self.coerce(l, Type::Bool), self.coerce(r, Type::Bool));
            let kw = if op == BinaryOp::And { "AND" } else { "OR" };
            return Ok(Typed { sql: format!("({} {kw} {})", l.sql, r.sql), ty: Type::Bool });
        }
        let ty = typeck::binary_type(op, l.ty, r.ty).map_err(|m| type_error(self.option, e.span.start, m))?;
        if op.is_comparison() {
            return Ok(Typed { sql: self.comparison(op, l, r), ty });
        }
        let numeric = matches!(ty, Type::Int | Type::Float);
        let (l, r) = if numeric { (self.coerce(l, Type::Float), self.coerce(r, Type::Float)) } else { (l, r) };
        let (a, b) = (l.sql, r.sql);
        // Division by zero is NULL (matches nothing) rather than a SQL error.
        let sql = match op {
            BinaryOp::Add => format!("({a} + {b})"),
            BinaryOp::Sub => format!("({a} - {b})"),
            BinaryOp::Mul => format!("({a} * {b})"),
            BinaryOp::Div => format!("({a} / NULLIF({b}, 0))"),
            BinaryOp::Mod if ty == Type::Int => format!("({a} % NULLIF({b}, 0))"),
            // Each operand once (a subquery names them): repeating them
            // would double the SQL per nesting level; OFFSET 0 keeps the
            // planner from inlining them back (and doubling its work).
            _ => format!(
                "(SELECT m.a - m.b * trunc(m.a / NULLIF(m.b, 0)) FROM (SELECT {a} AS a, {b} AS b OFFSET 0) AS m)"
            ),
        };
        Ok(Typed { sql, ty })
    }

    fn comparison(&mut self, op: BinaryOp, l: Typed, r: Typed) -> String {
        if l.ty == Type::Null || r.ty == Type::Null {
            let v = if l.ty == Type::Null { r } else { l };
            let v = self.coerce(v, Type::String);
            let not = if op == BinaryOp::Ne { " NOT" } else { "" };
            return format!("({} IS{not} NULL)", v.sql);
        }
        // A JSON value takes the type of the other side; two JSON values
        // compare as jsonb for equality and as text for ordering.
        let target = match (l.ty, r.ty) {
            (Type::Json, Type::Json) if matches!(op, BinaryOp::Eq | BinaryOp::Ne) => Type::Json,
            (Type::Json, Type::Json) => Type::String,
            (Type::Json, t) | (t, Type::Json) => t,
            (t, _) => t,
        };
        let (l, r) = (self.coerce(l, target), self.coerce(r, target));
        let sym = match op {
            BinaryOp::Eq => "=",
            BinaryOp::Ne => "<>",
            BinaryOp::Gt => ">",
            BinaryOp::Ge => ">=",
            BinaryOp::Lt => "<",
            _ => "<=",
        };
        format!("({} {sym} {})", l.sql, r.sql)
    }
}
