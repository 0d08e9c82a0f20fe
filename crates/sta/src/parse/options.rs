//! Option values: `$expand` (with nested `;`-separated options), `$select`,
//! `$orderby`, `$top`, `$skip`, `$count`, `$resultFormat`, `$filter`.

use winnow::ascii::Caseless;
use winnow::combinator::opt;
use winnow::prelude::*;
use winnow::token::take_while;

use super::expr::expression;
use super::lex::{identifier, kw, segment_name, ws};
use super::{describe_next, expand_levels, pos, syntax_at, In, PErr, PResult};
use crate::ast::{ExprKind, Path};
use crate::limits::{MAX_LIST_ITEMS, MAX_SKIP, MAX_TOP};
use crate::options::{Expand, OrderBy, QueryOptions, ResultFormat};

const NAMES: [&str; 8] = ["$filter", "$expand", "$select", "$orderby", "$top", "$skip", "$count", "$resultFormat"];

/// The canonical name of an option given without its `$`, ignoring case.
pub(crate) fn option_name(name: &str) -> Option<&'static str> {
    NAMES.into_iter().find(|n| n[1..].eq_ignore_ascii_case(name))
}

/// Parses the value of option `name` into `opts`.
pub(crate) fn option_value(i: &mut In<'_>, name: &'static str, opts: &mut QueryOptions, top: bool) -> PResult<()> {
    ws(i)?;
    match name {
        "$filter" => opts.filter = Some(expression(i)?),
        "$expand" => opts.expand = expand_list(i)?,
        "$select" => opts.select = Some(list(i, "$select", select_item)?),
        "$orderby" => opts.orderby = list(i, "$orderby", orderby_item)?,
        "$top" => opts.top = Some(count_value(i, "$top", MAX_TOP, "MAX_TOP")?),
        "$skip" => opts.skip = Some(count_value(i, "$skip", MAX_SKIP, "MAX_SKIP")?),
        "$count" => {
            let at = pos(i);
            opts.count = Some(if opt(kw("true")).parse_next(i)?.is_some() {
                true
            } else if opt(kw("false")).parse_next(i)?.is_some() {
                false
            } else {
                return syntax_at(at, "$count must be true or false");
            });
        }
        "$resultFormat" if top => {
            let at = pos(i);
            if opt(Caseless("dataArray")).parse_next(i)?.is_none() {
                return syntax_at(at, "the only $resultFormat is dataArray");
            }
            opts.result_format = Some(ResultFormat::DataArray);
        }
        _ => return syntax_at(pos(i), format!("{name} is not allowed inside $expand")),
    }
    Ok(())
}

/// `item (, item)*`, at most [`MAX_LIST_ITEMS`].
fn list<'a, T>(i: &mut In<'a>, what: &str, mut item: impl FnMut(&mut In<'a>) -> PResult<T>) -> PResult<Vec<T>> {
    let mut out = vec![item(i)?];
    loop {
        ws(i)?;
        let at = pos(i);
        if opt(',').parse_next(i)?.is_none() {
            return Ok(out);
        }
        if out.len() >= MAX_LIST_ITEMS {
            return super::cut(PErr::limit(
                at,
                format!("number of {what} items"),
                "MAX_LIST_ITEMS",
                MAX_LIST_ITEMS as u64,
            ));
        }
        ws(i)?;
        out.push(item(i)?);
    }
}

fn count_value(i: &mut In<'_>, name: &str, max: u64, limit: &'static str) -> PResult<u64> {
    let at = pos(i);
    let Some(digits) = opt(take_while(1..=20, |c: char| c.is_ascii_digit())).parse_next(i)? else {
        return syntax_at(at, format!("{name} must be a non-negative integer, found {}", describe_next(i)));
    };
    match digits.parse::<u64>() {
        Ok(n) if n <= max => Ok(n),
        _ => super::cut(PErr::limit(at, format!("{name} value {digits}"), limit, max)),
    }
}

fn select_item(i: &mut In<'_>) -> PResult<Path> {
    let at = pos(i);
    let Ok(first) = identifier(i) else {
        return syntax_at(at, format!("expected a property name in $select, found {}", describe_next(i)));
    };
    let e = super::expr::path_rest(i, at, first)?;
    match e.kind {
        ExprKind::Path(p) => Ok(p),
        _ => syntax_at(at, "expected a property path"),
    }
}

fn orderby_item(i: &mut In<'_>) -> PResult<OrderBy> {
    let expr = expression(i)?;
    ws(i)?;
    let descending = if opt(kw("desc")).parse_next(i)?.is_some() {
        true
    } else {
        let _ = opt(kw("asc")).parse_next(i)?;
        false
    };
    Ok(OrderBy { expr, descending })
}

fn expand_list(i: &mut In<'_>) -> PResult<Vec<Expand>> {
    list(i, "$expand", expand_item)
}

/// `Nav(/Nav)*` with optional `( $option=value (; $option=value)* )`.
fn expand_item(i: &mut In<'_>) -> PResult<Expand> {
    let start = pos(i);
    let mut path = Vec::new();
    loop {
        let at = pos(i);
        let name = if path.is_empty() { identifier(i) } else { segment_name(i) };
        let Ok(name) = name else {
            return syntax_at(at, format!("expected a navigation property in $expand, found {}", describe_next(i)));
        };
        path.push(name.to_string());
        if opt('/').parse_next(i)?.is_none() {
            break;
        }
    }
    let levels = path.len();
    let options = expand_levels(i, start, levels, |i| {
        ws(i)?;
        let mut options = QueryOptions::default();
        if opt('(').parse_next(i)?.is_some() {
            nested_options(i, &mut options)?;
        }
        Ok(options)
    })?;
    Ok(Expand { path, options, span: super::super::ast::Span::new(start, pos(i)) })
}

/// The inside of `(...)` after an expand path; consumes the closing `)`.
fn nested_options(i: &mut In<'_>, opts: &mut QueryOptions) -> PResult<()> {
    let mut seen: Vec<&'static str> = Vec::new();
    ws(i)?;
    if opt(')').parse_next(i)?.is_some() {
        return Ok(());
    }
    loop {
        ws(i)?;
        let at = pos(i);
        let name = opt(('$', take_while(1.., |c: char| c.is_ascii_alphabetic())).take()).parse_next(i)?;
        let Some(name) = name else {
            return syntax_at(
                at,
                format!("expected a query option like $top=1 inside $expand, found {}", describe_next(i)),
            );
        };
        let Some(canonical) = option_name(&name[1..]) else {
            return syntax_at(at, format!("unknown query option '{name}'"));
        };
        if seen.contains(&canonical) {
            return syntax_at(at, format!("{canonical} is given twice in one $expand"));
        }
        seen.push(canonical);
        ws(i)?;
        if opt('=').parse_next(i)?.is_none() {
            return syntax_at(pos(i), format!("expected '=' after {canonical}"));
        }
        option_value(i, canonical, opts, false)?;
        ws(i)?;
        if opt(';').parse_next(i)?.is_some() {
            continue;
        }
        if opt(')').parse_next(i)?.is_some() {
            return Ok(());
        }
        return syntax_at(
            pos(i),
            format!("expected ';' or ')' after the value of {canonical}, found {}", describe_next(i)),
        );
    }
}
