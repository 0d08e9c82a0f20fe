//! Properties: print/parse round trip on generated trees, no panic on any
//! input, and no client text in the SQL whatever the literal.

mod common;

use chrono::{FixedOffset, NaiveDate, NaiveTime, TimeZone};
use citygauge_sta::ast::IsoDuration;
use citygauge_sta::{
    parse_expr, parse_filter, to_sql, BinaryOp, Coord, EntityType, Expr, ExprKind, Func, Geometry, LambdaOp, Literal,
    Path, QueryOptions, Segment, Span, SqlParam, UnaryOp,
};
use common::TestSchema;
use proptest::prelude::*;

const RESERVED: [&str; 16] =
    ["and", "or", "not", "eq", "ne", "gt", "ge", "lt", "le", "add", "sub", "mul", "div", "mod", "true", "false"];

fn name() -> impl Strategy<Value = String> {
    "[a-zA-Z_][a-zA-Z0-9_]{0,8}"
        .prop_filter("keyword", |s| !RESERVED.contains(&s.to_ascii_lowercase().as_str()) && s != "null")
}

fn path() -> impl Strategy<Value = Path> {
    (
        name(),
        prop::collection::vec(prop_oneof![name().prop_map(Segment::Name), (0u32..100).prop_map(Segment::Index)], 0..3),
    )
        .prop_map(|(first, rest)| Path { segments: std::iter::once(Segment::Name(first)).chain(rest).collect() })
}

fn literal() -> impl Strategy<Value = Literal> {
    prop_oneof![
        Just(Literal::Null),
        any::<bool>().prop_map(Literal::Bool),
        any::<i64>().prop_map(Literal::Int),
        any::<f64>().prop_filter("finite", |x| x.is_finite()).prop_map(Literal::Float),
        "[^\u{0}]{0,20}".prop_map(Literal::String),
        (-62_135_596_800i64..253_402_000_000, -50_400i32..50_400).prop_map(|(secs, off)| {
            let off = FixedOffset::east_opt(off / 60 * 60).unwrap();
            Literal::DateTime(off.timestamp_opt(secs, 0).unwrap())
        }),
        (0i32..9999, 1u32..13, 1u32..29).prop_map(|(y, m, d)| Literal::Date(NaiveDate::from_ymd_opt(y, m, d).unwrap())),
        (0u32..24, 0u32..60, 0u32..60, 0u32..1_000_000_000)
            .prop_map(|(h, m, s, n)| Literal::TimeOfDay(NaiveTime::from_hms_nano_opt(h, m, s, n).unwrap())),
        (any::<bool>(), 0u32..100, 0u32..13, 0u32..40, 0u32..24, 0u32..60, 0u32..60, 0u32..1000).prop_map(
            |(negative, years, months, days, hours, minutes, seconds, ms)| {
                Literal::Duration(IsoDuration {
                    negative,
                    years,
                    months,
                    days,
                    hours,
                    minutes,
                    seconds,
                    nanos: ms * 1_000_000,
                })
            }
        ),
        (-180.0f64..180.0, -90.0f64..90.0).prop_map(|(x, y)| Literal::Geography(Geometry::Point(Coord { x, y }))),
    ]
}

fn e(kind: ExprKind) -> Expr {
    Expr::new(kind, Span::default())
}

fn expr() -> impl Strategy<Value = Expr> {
    let leaf = prop_oneof![literal().prop_map(|l| e(ExprKind::Literal(l))), path().prop_map(|p| e(ExprKind::Path(p)))];
    leaf.prop_recursive(4, 48, 3, |inner| {
        let funcs: Vec<Func> = Func::all().collect();
        prop_oneof![
            (prop_oneof![Just(UnaryOp::Not), Just(UnaryOp::Neg)], inner.clone())
                .prop_map(|(op, x)| e(ExprKind::Unary { op, operand: Box::new(x) })),
            (prop::sample::select(BinaryOp::ALL.to_vec()), inner.clone(), inner.clone())
                .prop_map(|(op, l, r)| e(ExprKind::Binary { op, left: Box::new(l), right: Box::new(r) })),
            (inner.clone(), prop::collection::vec(inner.clone(), 1..4))
                .prop_map(|(v, list)| e(ExprKind::In { value: Box::new(v), list })),
            (path(), any::<bool>(), name(), prop::option::of(inner.clone())).prop_filter_map(
                "lambda",
                |(collection, all, var, body)| {
                    let op = if all { LambdaOp::All } else { LambdaOp::Any };
                    let hides = collection.names().next() == Some(var.as_str());
                    let (var, body) = match body {
                        Some(b) if !hides => (Some(var), Some(Box::new(b))),
                        None if !all => (None, None),
                        _ => return None,
                    };
                    Some(e(ExprKind::Lambda { collection, op, var, body }))
                }
            ),
            (prop::sample::select(funcs), prop::collection::vec(inner, 0..4)).prop_filter_map(
                "arity",
                |(func, args)| {
                    let (min, max) = func.arity();
                    (min..=max).contains(&args.len()).then(|| e(ExprKind::Call { func, args }))
                }
            ),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn print_then_parse_is_identity(ast in expr()) {
        let text = ast.to_string();
        let back = parse_expr(&text).map_err(|err| TestCaseError::fail(format!("{text}: {err}")))?;
        prop_assert_eq!(back.without_spans(), ast.without_spans(), "{}", text);
    }

    #[test]
    fn the_parser_never_panics(text in any::<String>()) {
        let _ = parse_filter(&text);
        let _ = QueryOptions::from_query_string(&text);
    }

    #[test]
    fn the_parser_never_panics_on_near_misses(text in "[a-z()',/ $=;&%0-9.:TZ+\\-\\[\\]]{0,60}") {
        let _ = parse_filter(&text);
        let _ = QueryOptions::from_query_string(&text);
        let _ = QueryOptions::from_query_string(&format!("$filter={text}"));
        let _ = QueryOptions::from_query_string(&format!("$expand=Datastreams({text})"));
    }

    /// Whatever the client writes inside a literal, or as a JSON key, the
    /// SQL text is the same and the text arrives only as a parameter.
    #[test]
    fn literals_never_reach_the_sql_text(s in "[^\u{0}]{0,40}", key in "[^\u{0}'/\\[()]{1,20}") {
        let quoted = s.replace('\'', "''");
        let base = to_sql(&parse_filter("name eq 'x'").unwrap(), &TestSchema(EntityType::Datastream)).unwrap().0;
        let f = parse_filter(&format!("name eq '{quoted}'")).unwrap();
        let (sql, params) = to_sql(&f, &TestSchema(EntityType::Datastream)).unwrap();
        prop_assert_eq!(&sql, &base);
        prop_assert_eq!(params, vec![SqlParam::Text(s.clone())]);

        let f = parse_filter(&format!("startswith(name,'{quoted}') or substringof('{quoted}', description)")).unwrap();
        let (sql, _) = to_sql(&f, &TestSchema(EntityType::Datastream)).unwrap();
        prop_assert_eq!(sql, "(((ds.name) LIKE $1::text) OR ((ds.description) LIKE $2::text))");

        // JSON keys are client text too; a key that parses is bound.
        let key = key.trim();
        if let Ok(f) = parse_filter(&format!("Thing/properties/{key} eq 1")) {
            let (sql, params) = to_sql(&f, &TestSchema(EntityType::Datastream)).unwrap();
            prop_assert!(!sql.contains(key) || key.len() < 3, "{}", sql);
            prop_assert_eq!(&params[0], &SqlParam::Text(key.to_string()));
        }
    }

    #[test]
    fn nul_is_refused(a in "[a-z]{0,5}", b in "[a-z]{0,5}") {
        let refused = parse_filter(&format!("name eq '{a}\u{0}{b}'")).is_err();
        prop_assert!(refused);
    }
}
