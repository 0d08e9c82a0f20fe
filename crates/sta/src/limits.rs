//! Limits on what a client may ask for. Every one is enforced while parsing,
//! before any allocation or recursion it guards, and a request over a limit
//! gets an error naming the constant ([`crate::StaError::Limit`]).
//!
//! They exist because the open-data API is public: a query string is
//! attacker-controlled input that ends up as SQL on the time-series tables.

/// The whole query string, in bytes, before percent-decoding. Large enough for
/// a district polygon in a `geography'POLYGON(...)'` literal.
pub const MAX_QUERY_BYTES: usize = 64 * 1024;

/// Nesting of a `$filter` / `$orderby` expression: parentheses, function
/// arguments, `not`, unary minus and chains of binary operators all count.
/// The parser checks this before it recurses, so 10,000 `(` are refused
/// without touching the stack.
pub const MAX_EXPR_DEPTH: usize = 32;

/// AST nodes in one expression (paths, literals, operators, calls).
pub const MAX_EXPR_NODES: usize = 256;

/// Bytes of one string literal after `''` unescaping.
pub const MAX_STRING_LITERAL_BYTES: usize = 1024;

/// Bytes of one `geography'...'` literal (its WKT text).
pub const MAX_GEOGRAPHY_LITERAL_BYTES: usize = 16 * 1024;

/// Characters of one numeric literal (digits, sign, point, exponent).
pub const MAX_NUMBER_LITERAL_CHARS: usize = 40;

/// Segments of one property path (`Datastream/Thing/properties/district` is 4).
pub const MAX_PATH_SEGMENTS: usize = 16;

/// Levels of `$expand`: each path segment and each nested `$expand` counts,
/// so `Datastreams($expand=Observations)` is 2 and `Thing/Locations` is 2.
pub const MAX_EXPAND_DEPTH: usize = 4;

/// Comma-separated items in one `$expand`, `$select` or `$orderby`.
pub const MAX_LIST_ITEMS: usize = 32;

/// The largest `$top` a client may ask for (the server pages beyond it).
pub const MAX_TOP: u64 = 10_000;

/// The largest `$skip`; deeper pages are reached through `@iot.nextLink`.
pub const MAX_SKIP: u64 = 1_000_000;
