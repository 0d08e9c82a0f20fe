//! The query options of a SensorThings request and their parsing from a
//! query string, nested `$expand(...;...)` options included.

use std::fmt;

use crate::ast::{Expr, Path, Span};
use crate::error::{Result, StaError};
use crate::limits::MAX_QUERY_BYTES;
use crate::parse::{self, options as p};
use crate::typeck;

/// `$resultFormat` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResultFormat {
    /// The compact `dataArray` encoding of Observations.
    DataArray,
}

/// One `$orderby` key.
#[derive(Debug, Clone, PartialEq)]
pub struct OrderBy {
    pub expr: Expr,
    pub descending: bool,
}

/// One `$expand` item: a navigation path (`Thing/Locations`) and the options
/// for the last entity on it (`Observations($top=1;$orderby=phenomenonTime desc)`).
#[derive(Debug, Clone, PartialEq)]
pub struct Expand {
    /// Navigation property names, at least one.
    pub path: Vec<String>,
    pub options: QueryOptions,
    /// Where the item starts and ends in the `$expand` value.
    pub span: Span,
}

/// Query options at one level (the request, or inside an `$expand`).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct QueryOptions {
    pub filter: Option<Expr>,
    pub expand: Vec<Expand>,
    /// `None` means all properties; `$select` paths otherwise.
    pub select: Option<Vec<Path>>,
    pub orderby: Vec<OrderBy>,
    pub top: Option<u64>,
    pub skip: Option<u64>,
    pub count: Option<bool>,
    /// Only meaningful at the top level.
    pub result_format: Option<ResultFormat>,
}

/// Decodes one query-string component as OData clients encode it: `+` is a
/// space (HTML form encoding, which `requests` and most browsers use) and
/// `%XX` a byte; the result must be UTF-8. A literal plus is sent as `%2B`.
pub fn decode_component(raw: &str) -> Result<String> {
    let spaced = raw.replace('+', " ");
    percent_encoding::percent_decode_str(&spaced)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| StaError::QueryString(format!("'{}' is not UTF-8 once percent-decoded", truncate(raw))))
}

fn truncate(s: &str) -> String {
    s.chars().take(40).collect()
}

impl QueryOptions {
    /// Parses a raw query string (the part after `?`, still percent-encoded).
    /// Parameters that do not start with `$` are ignored (they belong to the
    /// server: API keys and the like); unknown `$` options are refused.
    pub fn from_query_string(raw: &str) -> Result<QueryOptions> {
        if raw.len() > MAX_QUERY_BYTES {
            return Err(StaError::Limit {
                option: "query string",
                pos: MAX_QUERY_BYTES,
                what: "query string length in bytes".into(),
                limit: "MAX_QUERY_BYTES",
                max: MAX_QUERY_BYTES as u64,
            });
        }
        let mut pairs = Vec::new();
        for part in raw.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = part.split_once('=').unwrap_or((part, ""));
            pairs.push((decode_component(k)?, decode_component(v)?));
        }
        Self::from_pairs(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
    }

    /// Builds options from already-decoded `(name, value)` pairs, as a web
    /// framework's query extractor yields them.
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Result<QueryOptions> {
        let mut opts = QueryOptions::default();
        let mut seen: Vec<&'static str> = Vec::new();
        for (key, value) in pairs {
            if !key.starts_with('$') {
                continue;
            }
            let Some(name) = p::option_name(&key[1..]) else {
                return Err(StaError::UnknownOption(key.chars().take(64).collect()));
            };
            if seen.contains(&name) {
                return Err(StaError::DuplicateOption(name.to_string()));
            }
            seen.push(name);
            parse::run(value, name, |i| p::option_value(i, name, &mut opts, true))?;
        }
        opts.type_check()?;
        Ok(opts)
    }

    /// Type-checks every `$filter` (must be boolean) and `$orderby` key here
    /// and in nested expansions, with properties still untyped; the SQL
    /// translation checks again against the real column types.
    fn type_check(&self) -> Result<()> {
        if let Some(f) = &self.filter {
            typeck::check_filter(f, "$filter", &typeck::untyped)?;
        }
        for o in &self.orderby {
            typeck::check_orderby(&o.expr, "$orderby", &typeck::untyped)?;
        }
        for e in &self.expand {
            e.options.type_check().map_err(|err| in_expand(err, e.span.start))?;
        }
        Ok(())
    }
}

/// Errors inside an expansion are reported against `$expand`, whose value
/// the positions are relative to.
fn in_expand(err: StaError, _at: usize) -> StaError {
    match err {
        StaError::Type { pos, message, .. } => StaError::Type { option: "$expand", pos, message },
        other => other,
    }
}

/// Parses a `$filter` value on its own (decoded text).
pub fn parse_filter(text: &str) -> Result<Expr> {
    let e = parse::run(text, "$filter", parse::expr::expression)?;
    typeck::check_filter(&e, "$filter", &typeck::untyped)?;
    Ok(e)
}

/// Parses an expression without type checking: the grammar alone (for
/// tools and tests; requests go through [`parse_filter`]).
pub fn parse_expr(text: &str) -> Result<Expr> {
    parse::run(text, "$filter", parse::expr::expression)
}

/// Parses an `$expand` value on its own (decoded text).
pub fn parse_expand(text: &str) -> Result<Vec<Expand>> {
    let mut opts = QueryOptions::default();
    parse::run(text, "$expand", |i| p::option_value(i, "$expand", &mut opts, true))?;
    opts.type_check()?;
    Ok(opts.expand)
}

/// Parses an `$orderby` value on its own (decoded text).
pub fn parse_orderby(text: &str) -> Result<Vec<OrderBy>> {
    let mut opts = QueryOptions::default();
    parse::run(text, "$orderby", |i| p::option_value(i, "$orderby", &mut opts, true))?;
    opts.type_check()?;
    Ok(opts.orderby)
}

struct Joined<'a, T>(&'a [T], &'static str);

impl<T: fmt::Display> fmt::Display for Joined<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (k, item) in self.0.iter().enumerate() {
            if k > 0 {
                f.write_str(self.1)?;
            }
            write!(f, "{item}")?;
        }
        Ok(())
    }
}

impl fmt::Display for OrderBy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.expr, if self.descending { " desc" } else { " asc" })
    }
}

impl fmt::Display for Expand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", Joined(&self.path, "/"))?;
        if self.options != QueryOptions::default() {
            f.write_str("(")?;
            self.options.write(f, ";")?;
            f.write_str(")")?;
        }
        Ok(())
    }
}

impl QueryOptions {
    fn write(&self, f: &mut fmt::Formatter<'_>, sep: &str) -> fmt::Result {
        let mut parts: Vec<String> = Vec::new();
        if let Some(e) = &self.filter {
            parts.push(format!("$filter={e}"));
        }
        if !self.expand.is_empty() {
            parts.push(format!("$expand={}", Joined(&self.expand, ",")));
        }
        if let Some(s) = &self.select {
            parts.push(format!("$select={}", Joined(s, ",")));
        }
        if !self.orderby.is_empty() {
            parts.push(format!("$orderby={}", Joined(&self.orderby, ",")));
        }
        if let Some(t) = self.top {
            parts.push(format!("$top={t}"));
        }
        if let Some(s) = self.skip {
            parts.push(format!("$skip={s}"));
        }
        if let Some(c) = self.count {
            parts.push(format!("$count={c}"));
        }
        if let Some(ResultFormat::DataArray) = self.result_format {
            parts.push("$resultFormat=dataArray".into());
        }
        f.write_str(&parts.join(sep))
    }
}

/// The options as a query string (not percent-encoded), e.g. to build
/// `@iot.nextLink`; parsing it again gives the same options.
impl fmt::Display for QueryOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write(f, "&")
    }
}
