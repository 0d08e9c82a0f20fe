//! OGC SensorThings API 1.1 query options, I/O-free: parsing of the query
//! string (`$filter`, `$expand` with nested `;` options, `$select`,
//! `$orderby`, `$top`, `$skip`, `$count`, `$resultFormat`), type checking,
//! and translation of `$filter` / `$orderby` to parameterised PostgreSQL and
//! PostGIS SQL.
//!
//! ```
//! use citygauge_sta::QueryOptions;
//! let q = QueryOptions::from_query_string(
//!     "$filter=Thing/properties/district%20eq%20'%E4%B8%89%E6%B0%91%E5%8D%80'&$top=10",
//! )
//! .unwrap();
//! assert_eq!(q.top, Some(10));
//! assert_eq!(q.filter.unwrap().to_string(), "Thing/properties/district eq '三民區'");
//! ```
//!
//! # Why winnow
//!
//! The grammar is written with [winnow](https://docs.rs/winnow), a parser
//! combinator library: it is maintained by the maintainer of `toml_edit`
//! (whose parser it is, and which this workspace already builds, so it adds
//! no new dependency), it parses `&str` with byte offsets through
//! `LocatingSlice`, lets a parser carry state (`Stateful`) for the depth and
//! size budgets, and its error type is ours to define, so every error has a
//! position and a specific message. nom lacks the located/stateful input
//! out of the box and chumsky's recursion and error recovery are more than
//! this grammar needs, at a much larger compile cost.
//!
//! # Safety of the SQL
//!
//! See [`sql`]: literals and JSON keys are always bound parameters, and
//! limits ([`limits`]) bound the size and depth of what a client can send.
//!
//! # Fuzzing
//!
//! `crates/sta/fuzz` is a cargo-fuzz target (excluded from the workspace, it
//! needs nightly): `cd crates/sta && cargo +nightly fuzz run filter` feeds
//! arbitrary bytes through decoding, parsing, type checking and SQL
//! generation. CI runs the stable half, `tests/hostile.rs` (proptest).

pub mod ast;
mod error;
mod funcs;
pub mod limits;
pub mod model;
mod options;
mod parse;
pub mod sql;
mod sqlfn;
mod sqlnav;
pub mod typeck;
mod wkt;

pub use ast::{BinaryOp, Expr, ExprKind, Func, LambdaOp, Literal, Path, Segment, Span, UnaryOp};
pub use error::{Result, StaError};
pub use model::{validate, EntityType};
pub use options::{
    decode_component, parse_expand, parse_expr, parse_filter, parse_orderby, Expand, OrderBy, QueryOptions,
    ResultFormat,
};
pub use sql::{orderby_to_sql, to_sql, Collection, Resolved, Schema, SqlBuilder, SqlParam};
pub use typeck::Type;
pub use wkt::{Coord, Geometry};
