//! The CI half of the `$filter` fuzzing (the other half is `fuzz/`, run with
//! `cargo +nightly fuzz run filter`): arbitrary and grammar-shaped hostile
//! text through parsing, type checking and SQL generation never panics,
//! every error points inside the text, and no literal reaches the SQL text.

mod common;

use citygauge_sta::{orderby_to_sql, parse_filter, to_sql, validate, EntityType, QueryOptions, StaError};
use common::TestSchema;
use proptest::prelude::*;

const ENTITIES: [EntityType; 3] = [EntityType::Observation, EntityType::Thing, EntityType::Datastream];

/// Every string literal the generator writes starts with this, so its
/// absence from the SQL shows the literal was bound.
const MARK: char = 'Ꙩ';

fn string_literal() -> impl Strategy<Value = String> {
    prop_oneof![
        "[^\u{0}]{0,12}",
        "[' ;%_\\\\-]{0,8}",
        Just("'; DROP TABLE sensors; --".to_string()),
        Just("三民區".to_string()),
        Just("\u{202e}\u{feff}😀".to_string()),
    ]
    .prop_map(|s| format!("'{MARK}{}'", s.replace('\'', "''")))
}

fn number() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<i64>().prop_map(|n| n.to_string()),
        any::<f64>().prop_map(|x| format!("{x:e}")),
        "[0-9]{20,60}",
        Just("1e999".to_string()),
        Just("-0.0".to_string()),
        Just("9223372036854775808".to_string()),
    ]
}

fn atom() -> impl Strategy<Value = String> {
    let paths = [
        "name",
        "description",
        "result",
        "phenomenonTime",
        "resultTime",
        "id",
        "@iot.id",
        "Thing/properties/district",
        "properties/x/0",
        "Datastream/Thing/properties/district",
        "Thing/Locations/location",
        "nmae",
        "Thing/properties/'",
        "Datastreams/name",
        "Datastreams/Observations/result",
        "Observations/phenomenonTime",
        "d/name",
        "o/result",
    ];
    prop_oneof![
        prop::sample::select(paths.to_vec()).prop_map(str::to_string),
        string_literal(),
        number(),
        prop::sample::select(vec![
            "true",
            "null",
            "2024-01-01T00:00:00Z",
            "2024-13-45T99:00:00+25:00",
            "geography'POINT(120.3 22.6)'",
            "geography'POLYGON((0 0,1 0,1 1,0 0))'",
            "duration'P1DT2H'",
            "12:30:00",
        ])
        .prop_map(str::to_string),
    ]
}

fn filter_text() -> impl Strategy<Value = String> {
    let ops = ["eq", "ne", "gt", "ge", "lt", "le", "and", "or", "add", "sub", "mul", "div", "mod", "has"];
    let funcs = [
        "length",
        "tolower",
        "toupper",
        "trim",
        "concat",
        "substring",
        "substringof",
        "contains",
        "startswith",
        "endswith",
        "indexof",
        "round",
        "floor",
        "ceiling",
        "year",
        "hour",
        "now",
        "geo.distance",
        "st_within",
        "frobnicate",
    ];
    atom().prop_recursive(6, 64, 4, move |inner| {
        prop_oneof![
            (inner.clone(), prop::sample::select(ops.to_vec()), inner.clone())
                .prop_map(|(l, op, r)| format!("{l} {op} {r}")),
            inner.clone().prop_map(|x| format!("not ({x})")),
            inner.clone().prop_map(|x| format!("-{x}")),
            inner.clone().prop_map(|x| format!("({x})")),
            (prop::sample::select(funcs.to_vec()), prop::collection::vec(inner.clone(), 0..4))
                .prop_map(|(f, args)| format!("{f}({})", args.join(","))),
            (inner.clone(), prop::collection::vec(inner.clone(), 0..4))
                .prop_map(|(x, list)| format!("{x} in ({})", list.join(","))),
            (
                prop::sample::select(vec!["Datastreams", "Observations", "d/Observations", "name", "Thing/Locations"]),
                prop::sample::select(vec!["any", "all"]),
                prop::sample::select(vec!["d", "o", ""]),
                inner.clone()
            )
                .prop_map(|(c, op, v, x)| if v.is_empty() {
                    format!("{c}/{op}()")
                } else {
                    format!("{c}/{op}({v}: {x})")
                }),
            (0usize..80, inner.clone(), 0usize..80).prop_map(|(open, x, close)| format!(
                "{}{x}{}",
                "(".repeat(open),
                ")".repeat(close)
            )),
        ]
    })
}

fn error_points_inside(err: &StaError, text: &str) -> Result<(), TestCaseError> {
    if let Some(pos) = err.position() {
        prop_assert!(pos <= text.len(), "{err} is outside {} bytes", text.len());
    }
    prop_assert!(!err.to_string().contains("SELECT"), "{err}");
    Ok(())
}

/// Every bound parameter is used, and no `$n` points past them (PostgreSQL
/// refuses a statement whose parameter count differs from the values sent).
fn params_match(sql: &str, n: usize) -> Result<(), TestCaseError> {
    let mut used = vec![false; n];
    for piece in sql.split('$').skip(1) {
        let digits: String = piece.chars().take_while(char::is_ascii_digit).collect();
        let k: usize = digits.parse().map_err(|_| TestCaseError::fail(format!("bare $ in {sql}")))?;
        prop_assert!((1..=n).contains(&k), "${} of {} in {}", k, n, sql);
        used[k - 1] = true;
    }
    prop_assert!(used.iter().all(|u| *u), "unused parameter in {} ({} bound)", sql, n);
    Ok(())
}

fn sql_is_clean(sql: &str) -> Result<(), TestCaseError> {
    prop_assert!(!sql.contains(MARK), "literal text in SQL: {sql}");
    // The quoted constants the translator itself writes; anything else quoted
    // would be client text.
    let stripped = ["'number'", "'boolean'", "'string'", "'{}'", "'UTC'", "'-infinity'", "'infinity'"]
        .iter()
        .fold(sql.to_string(), |s, k| s.replace(k, ""));
    prop_assert!(!stripped.contains('\''), "quoted text in SQL: {sql}");
    Ok(())
}

fn through_everything(text: &str) -> Result<(), TestCaseError> {
    match parse_filter(text) {
        Ok(f) => {
            for e in ENTITIES {
                match to_sql(&f, &TestSchema(e)) {
                    Ok((sql, params)) => {
                        sql_is_clean(&sql)?;
                        params_match(&sql, params.len())?;
                    }
                    Err(err) => {
                        prop_assert!(err.position().is_some(), "{err}");
                        error_points_inside(&err, text)?;
                    }
                }
            }
        }
        Err(err) => {
            prop_assert!(err.position().is_some(), "{text:?}: {err}");
            error_points_inside(&err, text)?;
        }
    }
    Ok(())
}

fn query_string(raw: &str) -> Result<(), TestCaseError> {
    match QueryOptions::from_query_string(raw) {
        Ok(q) => {
            for e in ENTITIES {
                if validate(&q, e).is_err() {
                    continue;
                }
                if let Some(Ok((sql, _))) = q.filter.as_ref().map(|f| to_sql(f, &TestSchema(e))) {
                    sql_is_clean(&sql)?;
                }
                if let Ok((sql, _)) = orderby_to_sql(&q.orderby, &TestSchema(e)) {
                    sql_is_clean(&sql)?;
                }
            }
        }
        Err(err) => error_points_inside(&err, raw)?,
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1024, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_text_is_refused_in_place(text in any::<String>()) {
        through_everything(&text)?;
        query_string(&text)?;
        query_string(&format!("$filter={text}&$orderby={text}"))?;
    }

    #[test]
    fn grammar_shaped_filters_are_safe(text in filter_text()) {
        through_everything(&text)?;
        let encoded: String = text.bytes().map(|b| format!("%{b:02X}")).collect();
        query_string(&format!("$filter={encoded}&$orderby=phenomenonTime%20desc,result"))?;
        query_string(&format!("$expand=Datastreams($filter={encoded})"))?;
    }
}

#[test]
fn huge_inputs_are_limits_not_crashes() {
    for text in [
        "(".repeat(10_000),
        format!("{}name{}", "(".repeat(10_000), ")".repeat(10_000)),
        "not ".repeat(10_000) + "true",
        format!("name eq '{}'", "x".repeat(1 << 20)),
        format!("result eq {}", "9".repeat(1 << 20)),
        vec!["name eq 'a'"; 5_000].join(" or "),
    ] {
        let err = parse_filter(&text).expect_err("refused");
        assert!(err.position().is_some_and(|p| p <= text.len()), "{err}");
    }
}

/// Nesting within the limits must not make the SQL grow faster than the
/// text: an operator that repeats an operand would double it per level.
#[test]
fn sql_grows_linearly_with_nesting() {
    let wraps: [fn(&str) -> String; 9] = [
        |x| format!("({x} mod 2.5)"),
        |x| format!("(2.5 mod {x})"),
        |x| format!("round({x})"),
        |x| format!("({x} div 3)"),
        |x| format!("-({x})"),
        |x| format!("length(concat(trim(tolower(substring(name, {x}))), 'a'))"),
        |x| format!("indexof(name, substring(description, {x}, 2))"),
        |x| format!("(Thing/properties/a mod {x})"),
        |x| format!("floor(ceiling({x}) add 1)"),
    ];
    for (k, wrap) in wraps.iter().enumerate() {
        let mut text = "result".to_string();
        let mut depth = 0;
        loop {
            let next = wrap(&text);
            if parse_filter(&format!("{next} gt 1")).is_err() {
                break;
            }
            text = next;
            depth += 1;
        }
        assert!(depth >= 4, "wrap {k} stopped at depth {depth}");
        let filter = format!("{text} gt 1");
        let f = parse_filter(&filter).unwrap();
        let (sql, _) = to_sql(&f, &TestSchema(EntityType::Observation))
            .or_else(|_| to_sql(&f, &TestSchema(EntityType::Datastream)))
            .unwrap_or_default();
        assert!(
            sql.len() < 400 * filter.len() + 2_000,
            "wrap {k}: {} bytes of SQL for {} of text",
            sql.len(),
            filter.len()
        );
    }
}

#[test]
fn found_by_the_api_properties() {
    let text = "not (substringof(tolower('good'),substring(Thing/properties/district,5)))";
    let f = parse_filter(text).unwrap();
    let (sql, params) = to_sql(&f, &TestSchema(EntityType::Datastream)).unwrap();
    params_match(&sql, params.len()).unwrap();
}
