//! The grammar, written with winnow parser combinators.
//!
//! The input is the percent-decoded value of one query option wrapped in a
//! [`LocatingSlice`] (so every node and error knows its byte offset) and a
//! [`Stateful`] [`Budget`] that counts nesting and nodes. Budgets are checked
//! *before* recursing, which is what keeps 10,000 nested parentheses from
//! overflowing the stack.

pub(crate) mod expr;
pub(crate) mod lex;
pub(crate) mod options;

use std::cell::Cell;

use winnow::error::{ErrMode, ParserError};
use winnow::stream::{Location, Stateful, Stream};
use winnow::LocatingSlice;

use crate::error::StaError;
use crate::limits::{MAX_EXPAND_DEPTH, MAX_EXPR_DEPTH, MAX_EXPR_NODES};

/// Nesting and size counters of the option being parsed.
#[derive(Debug, Default)]
pub(crate) struct Budget {
    depth: Cell<usize>,
    nodes: Cell<usize>,
    expand_depth: Cell<usize>,
}

pub(crate) type In<'a> = Stateful<LocatingSlice<&'a str>, &'a Budget>;
pub(crate) type PResult<O> = Result<O, ErrMode<PErr>>;

/// What went wrong, for [`PErr`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PErrKind {
    Syntax,
    Limit { what: String, limit: &'static str, max: u64 },
}

/// The parser's error: a position and a message. `specific` errors come from
/// our own checks and win over winnow's generic "unexpected ..." ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PErr {
    pub pos: usize,
    pub kind: PErrKind,
    pub message: String,
    specific: bool,
}

impl PErr {
    pub fn syntax(pos: usize, message: impl Into<String>) -> PErr {
        PErr { pos, kind: PErrKind::Syntax, message: message.into(), specific: true }
    }

    pub fn limit(pos: usize, what: impl Into<String>, limit: &'static str, max: u64) -> PErr {
        let what = what.into();
        PErr { pos, message: what.clone(), kind: PErrKind::Limit { what, limit, max }, specific: true }
    }

    pub fn into_sta(self, option: &'static str) -> StaError {
        match self.kind {
            PErrKind::Syntax => StaError::Syntax { option, pos: self.pos, message: self.message },
            PErrKind::Limit { what, limit, max } => StaError::Limit { option, pos: self.pos, what, limit, max },
        }
    }
}

/// Describes the next character for "unexpected ..." messages.
pub(crate) fn describe_next(i: &In<'_>) -> String {
    match i.peek_token() {
        None => "the end of the text".to_string(),
        Some(c) => format!("'{c}'"),
    }
}

impl<'a> ParserError<In<'a>> for PErr {
    type Inner = PErr;

    fn from_input(input: &In<'a>) -> Self {
        PErr {
            pos: input.current_token_start(),
            kind: PErrKind::Syntax,
            message: format!("unexpected {}", describe_next(input)),
            specific: false,
        }
    }

    fn into_inner(self) -> Result<Self::Inner, Self> {
        Ok(self)
    }

    /// Of two failed alternatives, report the one that got further.
    fn or(self, other: Self) -> Self {
        if (other.pos, other.specific) > (self.pos, self.specific) {
            other
        } else {
            self
        }
    }
}

pub(crate) fn pos(i: &In<'_>) -> usize {
    i.current_token_start()
}

/// A non-recoverable error at `pos`.
pub(crate) fn cut<O>(err: PErr) -> PResult<O> {
    Err(ErrMode::Cut(err))
}

pub(crate) fn syntax_at<O>(pos: usize, message: impl Into<String>) -> PResult<O> {
    cut(PErr::syntax(pos, message))
}

/// Runs `f` one expression level deeper, refusing before it recurses.
pub(crate) fn nested<'a, O>(i: &mut In<'a>, at: usize, f: impl FnOnce(&mut In<'a>) -> PResult<O>) -> PResult<O> {
    let depth = i.state.depth.get() + 1;
    if depth > MAX_EXPR_DEPTH {
        return cut(PErr::limit(at, "expression nesting", "MAX_EXPR_DEPTH", MAX_EXPR_DEPTH as u64));
    }
    i.state.depth.set(depth);
    let result = f(i);
    i.state.depth.set(depth - 1);
    result
}

/// Counts one more AST node.
pub(crate) fn node(i: &In<'_>, at: usize) -> PResult<()> {
    let n = i.state.nodes.get() + 1;
    if n > MAX_EXPR_NODES {
        return cut(PErr::limit(at, "expression size in nodes", "MAX_EXPR_NODES", MAX_EXPR_NODES as u64));
    }
    i.state.nodes.set(n);
    Ok(())
}

/// Runs `f` with `levels` more levels of `$expand`.
pub(crate) fn expand_levels<'a, O>(
    i: &mut In<'a>,
    at: usize,
    levels: usize,
    f: impl FnOnce(&mut In<'a>) -> PResult<O>,
) -> PResult<O> {
    let before = i.state.expand_depth.get();
    if before + levels > MAX_EXPAND_DEPTH {
        return cut(PErr::limit(at, "$expand depth", "MAX_EXPAND_DEPTH", MAX_EXPAND_DEPTH as u64));
    }
    i.state.expand_depth.set(before + levels);
    let result = f(i);
    i.state.expand_depth.set(before);
    result
}

/// Runs `f` with fresh expression counters (each expression has its own
/// node and depth budget), restoring the outer ones afterwards.
pub(crate) fn fresh_expression<'a, O>(i: &mut In<'a>, f: impl FnOnce(&mut In<'a>) -> PResult<O>) -> PResult<O> {
    let (depth, nodes) = (i.state.depth.replace(0), i.state.nodes.replace(0));
    let result = f(i);
    i.state.depth.set(depth);
    i.state.nodes.set(nodes);
    result
}

/// Parses all of `text` with `f`, which must consume it entirely.
pub(crate) fn run<O>(
    text: &str,
    option: &'static str,
    f: impl FnOnce(&mut In<'_>) -> PResult<O>,
) -> Result<O, StaError> {
    let budget = Budget::default();
    let mut input = In { input: LocatingSlice::new(text), state: &budget };
    let result = f(&mut input).and_then(|o| {
        lex::ws(&mut input)?;
        if input.eof_offset() > 0 {
            return syntax_at(pos(&input), format!("unexpected {}", describe_next(&input)));
        }
        Ok(o)
    });
    result.map_err(|e| match e {
        ErrMode::Backtrack(e) | ErrMode::Cut(e) => e.into_sta(option),
        ErrMode::Incomplete(_) => StaError::Syntax { option, pos: text.len(), message: "unexpected end".into() },
    })
}
