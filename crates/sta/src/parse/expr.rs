//! `$filter` / `$orderby` expressions.
//!
//! Precedence, loosest first: `or`, `and`, `not`, comparison (one per
//! level, not chained), `add`/`sub`, `mul`/`div`/`mod`, unary `-`, primary.
//! `not` binds looser than comparison as in FROST-Server, so
//! `not name eq 'x'` means `not (name eq 'x')`, which is what people mean.

use winnow::combinator::opt;
use winnow::prelude::*;
use winnow::stream::Stream;

use super::lex::{self, is_ident_start, kw, rest, ws};
use super::{describe_next, nested, node, pos, syntax_at, In, PErr, PResult};
use crate::ast::{BinaryOp, Expr, ExprKind, Func, LambdaOp, Literal, Path, Segment, Span, UnaryOp};
use crate::limits::{MAX_EXPR_DEPTH, MAX_PATH_SEGMENTS};

/// An expression with its own node and depth budget.
pub(crate) fn expression(i: &mut In<'_>) -> PResult<Expr> {
    super::fresh_expression(i, |i| {
        let e = or_expr(i)?;
        check_tree_depth(&e)?;
        Ok(e)
    })
}

/// Chains of binary operators are parsed by loops, not recursion, so the
/// tree can be deeper than the parser ever went; measure it without
/// recursion before anything recursive (type checking, SQL, drop) sees it.
fn check_tree_depth(e: &Expr) -> PResult<()> {
    let mut stack = vec![(e, 1usize)];
    while let Some((e, d)) = stack.pop() {
        if d > MAX_EXPR_DEPTH {
            return super::cut(PErr::limit(
                e.span.start,
                "expression nesting",
                "MAX_EXPR_DEPTH",
                MAX_EXPR_DEPTH as u64,
            ));
        }
        match &e.kind {
            ExprKind::Literal(_) | ExprKind::Path(_) => {}
            ExprKind::Unary { operand, .. } => stack.push((operand, d + 1)),
            ExprKind::Binary { left, right, .. } => {
                stack.push((left, d + 1));
                stack.push((right, d + 1));
            }
            ExprKind::Call { args, .. } => stack.extend(args.iter().map(|a| (a, d + 1))),
            ExprKind::In { value, list } => {
                stack.push((value, d + 1));
                stack.extend(list.iter().map(|a| (a, d + 1)));
            }
            ExprKind::Lambda { body, .. } => stack.extend(body.iter().map(|b| (&**b, d + 1))),
        }
    }
    Ok(())
}

fn binary(i: &In<'_>, op: BinaryOp, left: Expr, right: Expr) -> PResult<Expr> {
    node(i, left.span.start)?;
    let span = Span::new(left.span.start, right.span.end);
    Ok(Expr::new(ExprKind::Binary { op, left: Box::new(left), right: Box::new(right) }, span))
}

/// Tries each operator keyword after optional whitespace; backtracks cleanly.
fn operator(i: &mut In<'_>, ops: &[BinaryOp]) -> PResult<Option<(BinaryOp, usize)>> {
    let cp = i.checkpoint();
    ws(i)?;
    let at = pos(i);
    for &op in ops {
        if opt(kw(op.keyword())).parse_next(i)?.is_some() {
            return Ok(Some((op, at)));
        }
    }
    i.reset(&cp);
    Ok(None)
}

/// A left-associative level: `next (op next)*`.
fn left_assoc<'a>(i: &mut In<'a>, ops: &[BinaryOp], next: fn(&mut In<'a>) -> PResult<Expr>) -> PResult<Expr> {
    let mut left = next(i)?;
    while let Some((op, _)) = operator(i, ops)? {
        let right = next(i)?;
        left = binary(i, op, left, right)?;
    }
    Ok(left)
}

pub(crate) fn or_expr(i: &mut In<'_>) -> PResult<Expr> {
    left_assoc(i, &[BinaryOp::Or], and_expr)
}

fn and_expr(i: &mut In<'_>) -> PResult<Expr> {
    left_assoc(i, &[BinaryOp::And], not_expr)
}

fn not_expr(i: &mut In<'_>) -> PResult<Expr> {
    ws(i)?;
    let at = pos(i);
    if opt(kw("not")).parse_next(i)?.is_some() {
        let operand = nested(i, at, not_expr)?;
        node(i, at)?;
        let span = Span::new(at, operand.span.end);
        return Ok(Expr::new(ExprKind::Unary { op: UnaryOp::Not, operand: Box::new(operand) }, span));
    }
    comparison(i)
}

const COMPARISONS: [BinaryOp; 6] = [BinaryOp::Eq, BinaryOp::Ne, BinaryOp::Gt, BinaryOp::Ge, BinaryOp::Lt, BinaryOp::Le];

fn comparison(i: &mut In<'_>) -> PResult<Expr> {
    let left = additive(i)?;
    let e = if let Some(at) = in_keyword(i)? {
        in_list(i, at, left)?
    } else {
        let Some((op, _)) = operator(i, &COMPARISONS)? else { return Ok(left) };
        let right = additive(i)?;
        binary(i, op, left, right)?
    };
    if let Some((op2, at)) = operator(i, &COMPARISONS)? {
        return syntax_at(at, format!("'{}' cannot follow a comparison; add parentheses", op2.keyword()));
    }
    if let Some(at) = in_keyword(i)? {
        return syntax_at(at, "'in' cannot follow a comparison; add parentheses");
    }
    Ok(e)
}

/// The `in` keyword after an operand, if there.
fn in_keyword(i: &mut In<'_>) -> PResult<Option<usize>> {
    let cp = i.checkpoint();
    ws(i)?;
    let at = pos(i);
    if opt(kw("in")).parse_next(i)?.is_some() {
        return Ok(Some(at));
    }
    i.reset(&cp);
    Ok(None)
}

/// `(a, b, c)` after `value in`.
fn in_list(i: &mut In<'_>, at: usize, value: Expr) -> PResult<Expr> {
    ws(i)?;
    if opt('(').parse_next(i)?.is_none() {
        return syntax_at(pos(i), format!("expected '(' and a list of values after 'in', found {}", describe_next(i)));
    }
    let mut list = Vec::new();
    loop {
        ws(i)?;
        if list.is_empty() && rest(i).starts_with(')') {
            return syntax_at(pos(i), "the list after 'in' is empty; give at least one value");
        }
        list.push(nested(i, at, or_expr)?);
        ws(i)?;
        if opt(')').parse_next(i)?.is_some() {
            break;
        }
        if opt(',').parse_next(i)?.is_none() {
            return syntax_at(
                pos(i),
                format!("expected ',' or ')' in the list after 'in', found {}", describe_next(i)),
            );
        }
    }
    node(i, value.span.start)?;
    let span = Span::new(value.span.start, pos(i));
    Ok(Expr::new(ExprKind::In { value: Box::new(value), list }, span))
}

fn additive(i: &mut In<'_>) -> PResult<Expr> {
    left_assoc(i, &[BinaryOp::Add, BinaryOp::Sub], multiplicative)
}

fn multiplicative(i: &mut In<'_>) -> PResult<Expr> {
    left_assoc(i, &[BinaryOp::Mul, BinaryOp::Div, BinaryOp::Mod], unary)
}

fn unary(i: &mut In<'_>) -> PResult<Expr> {
    ws(i)?;
    let at = pos(i);
    let mut chars = rest(i).chars();
    if chars.next() == Some('-') && !chars.next().is_some_and(|c| c.is_ascii_digit()) {
        let _ = i.next_token();
        let operand = nested(i, at, unary)?;
        node(i, at)?;
        let span = Span::new(at, operand.span.end);
        return Ok(Expr::new(ExprKind::Unary { op: UnaryOp::Neg, operand: Box::new(operand) }, span));
    }
    primary(i)
}

fn literal(i: &In<'_>, at: usize, lit: Literal) -> PResult<Expr> {
    node(i, at)?;
    Ok(Expr::new(ExprKind::Literal(lit), Span::new(at, pos(i))))
}

fn primary(i: &mut In<'_>) -> PResult<Expr> {
    ws(i)?;
    let at = pos(i);
    let Some(c) = rest(i).chars().next() else {
        return syntax_at(at, "expected a value, property or function call, found the end of the text");
    };
    if c == '(' {
        let _ = i.next_token();
        let inner = nested(i, at, or_expr)?;
        ws(i)?;
        if opt(')').parse_next(i)?.is_none() {
            return syntax_at(pos(i), format!("expected ')' to close the '(' at {at}, found {}", describe_next(i)));
        }
        return Ok(inner);
    }
    if c == '\'' {
        let s = lex::string_literal(i)?;
        return literal(i, at, Literal::String(s));
    }
    if c.is_ascii_digit() || c == '-' {
        if let Some(t) = opt(lex::temporal).parse_next(i)? {
            return literal(i, at, t);
        }
        let n = lex::number(i)?;
        return literal(i, at, n);
    }
    if !is_ident_start(c) {
        return syntax_at(at, format!("expected a value, property or function call, found '{c}'"));
    }
    let name = lex::identifier(i)?;
    // Typed literals: keyword immediately followed by a quote.
    if opt('\'').parse_next(i)?.is_some() {
        let lit = match name.to_ascii_lowercase().as_str() {
            "geography" | "geometry" => Literal::Geography(lex::geography_body(i, at)?),
            "duration" => Literal::Duration(lex::duration_body(i, at)?),
            _ => return syntax_at(at, format!("unknown typed literal {name}'...' (expected geography or duration)")),
        };
        return literal(i, at, lit);
    }
    let next = rest(i).trim_start_matches([' ', '\t', '\r', '\n']).chars().next();
    if next == Some('(') {
        return call(i, at, name);
    }
    if next != Some('/') && next != Some('[') {
        match name {
            "true" => return literal(i, at, Literal::Bool(true)),
            "false" => return literal(i, at, Literal::Bool(false)),
            "null" => return literal(i, at, Literal::Null),
            _ => {}
        }
    }
    path_rest(i, at, name)
}

fn call(i: &mut In<'_>, at: usize, name: &str) -> PResult<Expr> {
    let Some(func) = Func::from_name(name) else {
        return syntax_at(at, format!("unknown function '{name}'"));
    };
    ws(i)?;
    let _ = i.next_token(); // the '(' seen by the caller
    let (min, max) = func.arity();
    let mut args = Vec::new();
    ws(i)?;
    if opt(')').parse_next(i)?.is_none() {
        loop {
            args.push(nested(i, at, or_expr)?);
            ws(i)?;
            if opt(')').parse_next(i)?.is_some() {
                break;
            }
            let here = pos(i);
            if opt(',').parse_next(i)?.is_some() {
                if args.len() >= max {
                    return syntax_at(here, arity_message(func, min, max, args.len() + 1));
                }
                continue;
            }
            if args.len() >= max {
                return syntax_at(here, format!("expected ')' after the arguments of {}", func.name()));
            }
            return syntax_at(here, format!("expected ',' or ')' in the arguments of {}", func.name()));
        }
    }
    if args.len() < min || args.len() > max {
        return syntax_at(at, arity_message(func, min, max, args.len()));
    }
    node(i, at)?;
    Ok(Expr::new(ExprKind::Call { func, args }, Span::new(at, pos(i))))
}

fn arity_message(func: Func, min: usize, max: usize, got: usize) -> String {
    let want = match (min, max) {
        (0, 0) => "no arguments".to_string(),
        (1, 1) => "1 argument".to_string(),
        (a, b) if a == b => format!("{a} arguments"),
        (a, b) => format!("{a} or {b} arguments"),
    };
    let got = if got > max { format!("more than {max}") } else { got.to_string() };
    format!("{} takes {want}, not {got}", func.name())
}

/// The rest of a path after its first name.
pub(crate) fn path_rest(i: &mut In<'_>, at: usize, first: &str) -> PResult<Expr> {
    let mut segments = vec![Segment::Name(first.to_string())];
    loop {
        let seg_at = pos(i);
        if opt('/').parse_next(i)?.is_some() {
            let Ok(name) = lex::segment_name(i) else {
                return syntax_at(pos(i), format!("expected a property name after '/', found {}", describe_next(i)));
            };
            if matches!(name, "any" | "all") && rest(i).starts_with('(') {
                let op = if name == "any" { LambdaOp::Any } else { LambdaOp::All };
                return lambda(i, at, Path { segments }, op);
            }
            segments.push(Segment::Name(name.to_string()));
        } else if opt('[').parse_next(i)?.is_some() {
            let digits = opt(winnow::token::take_while(1..=9, |c: char| c.is_ascii_digit())).parse_next(i)?;
            let (Some(digits), Some(_)) = (digits, opt(']').parse_next(i)?) else {
                return syntax_at(seg_at, "expected an array index like [0]");
            };
            segments.push(Segment::Index(digits.parse().unwrap_or(0)));
        } else {
            break;
        }
        if segments.len() > MAX_PATH_SEGMENTS {
            return super::cut(PErr::limit(
                seg_at,
                "path length in segments",
                "MAX_PATH_SEGMENTS",
                MAX_PATH_SEGMENTS as u64,
            ));
        }
    }
    node(i, at)?;
    Ok(Expr::new(ExprKind::Path(Path { segments }), Span::new(at, pos(i))))
}

/// `any(d: ...)`, `all(d: ...)` or `any()` after a collection path.
fn lambda(i: &mut In<'_>, at: usize, collection: Path, op: LambdaOp) -> PResult<Expr> {
    let open = pos(i);
    let _ = i.next_token(); // the '(' seen by the caller
    ws(i)?;
    let kwd = op.keyword();
    let (var, body) = if opt(')').parse_next(i)?.is_some() {
        if op == LambdaOp::All {
            return syntax_at(open, "all() needs a condition, like all(o: o/result gt 0)");
        }
        (None, None)
    } else {
        let var_at = pos(i);
        let Ok(var) = lex::identifier(i) else {
            return syntax_at(var_at, format!("expected a variable name in {kwd}(...), like {kwd}(d: d/name eq 'x')"));
        };
        if collection.segments.first() == Some(&Segment::Name(var.to_string())) {
            return syntax_at(
                var_at,
                format!("the variable '{var}' hides the property of the same name; pick another"),
            );
        }
        ws(i)?;
        if opt(':').parse_next(i)?.is_none() {
            return syntax_at(pos(i), format!("expected ':' after the variable '{var}' of {kwd}"));
        }
        let body = nested(i, at, or_expr)?;
        ws(i)?;
        if opt(')').parse_next(i)?.is_none() {
            return syntax_at(pos(i), format!("expected ')' to close {kwd}( at {open}, found {}", describe_next(i)));
        }
        (Some(var.to_string()), Some(Box::new(body)))
    };
    node(i, at)?;
    Ok(Expr::new(ExprKind::Lambda { collection, op, var, body }, Span::new(at, pos(i))))
}
