//! `$filter` parsing: every operator, function and literal kind, and the
//! errors (with positions) for bad input.

use citygauge_sta::{parse_filter, BinaryOp, ExprKind, Func, Literal, StaError};

fn ok(text: &str) -> String {
    match parse_filter(text) {
        Ok(e) => e.to_string(),
        Err(err) => panic!("{text}: {err}"),
    }
}

fn err(text: &str) -> StaError {
    match parse_filter(text) {
        Ok(e) => panic!("{text} parsed as {e}"),
        Err(e) => e,
    }
}

/// The error's position and message.
fn at(text: &str) -> (usize, String) {
    let e = err(text);
    (e.position().unwrap(), e.to_string())
}

#[test]
fn comparison_operators() {
    for op in ["eq", "ne", "gt", "ge", "lt", "le"] {
        assert_eq!(ok(&format!("result {op} 5")), format!("result {op} 5"));
        // Case-insensitive keywords, as FROST-Server accepts them.
        assert_eq!(ok(&format!("result {} 5", op.to_uppercase())), format!("result {op} 5"));
    }
}

#[test]
fn logical_operators_and_precedence() {
    assert_eq!(ok("a eq 1 or b eq 2 and c eq 3"), "(a eq 1) or ((b eq 2) and (c eq 3))");
    assert_eq!(ok("not a eq 1"), "not (a eq 1)");
    assert_eq!(ok("not not endswith(name,'x')"), "not (not (endswith(name,'x')))");
    assert_eq!(ok("(a eq 1 or b eq 2) and c"), "((a eq 1) or (b eq 2)) and c");
}

#[test]
fn arithmetic_operators_and_precedence() {
    for op in ["add", "sub", "mul", "div", "mod"] {
        assert_eq!(ok(&format!("result {op} 2 gt 1")), format!("(result {op} 2) gt 1"));
    }
    assert_eq!(ok("a add b mul c eq 1"), "(a add (b mul c)) eq 1");
    assert_eq!(ok("a sub b sub c eq 1"), "((a sub b) sub c) eq 1");
    assert_eq!(ok("-result lt -5"), "(-(result)) lt -5");
    assert_eq!(ok("(result sub 5) gt 10"), "(result sub 5) gt 10");
}

#[test]
fn every_function_parses_with_its_arity() {
    let cases = [
        "substringof('a',name)",
        "contains(name,'a')",
        "startswith(name,'a')",
        "endswith(name,'a')",
        "length(name) eq 3",
        "indexof(name,'a') eq 1",
        "substring(name,1) eq 'a'",
        "substring(name,1,2) eq 'a'",
        "tolower(name) eq 'a'",
        "toupper(name) eq 'A'",
        "trim(name) eq 'a'",
        "concat(name,'x') eq 'ax'",
        "year(phenomenonTime) eq 2026",
        "month(phenomenonTime) eq 11",
        "day(phenomenonTime) eq 22",
        "hour(phenomenonTime) eq 8",
        "minute(phenomenonTime) eq 0",
        "second(phenomenonTime) eq 0",
        "fractionalseconds(phenomenonTime) eq 0.5",
        "date(phenomenonTime) eq 2026-11-22",
        "time(phenomenonTime) eq 08:00:00",
        "totaloffsetminutes(phenomenonTime) eq 480",
        "phenomenonTime lt now()",
        "phenomenonTime gt mindatetime()",
        "phenomenonTime lt maxdatetime()",
        "round(result) eq 2",
        "floor(result) eq 2",
        "ceiling(result) eq 3",
        "geo.distance(location,geography'POINT(120.3 22.6)') lt 0.01",
        "geo.length(geography'LINESTRING(120 22, 121 23)') gt 1",
        "geo.intersects(location,geography'POINT(120 22)')",
        "st_equals(location,geography'POINT(120 22)')",
        "st_disjoint(location,geography'POINT(120 22)')",
        "st_touches(location,geography'POINT(120 22)')",
        "st_within(location,geography'POLYGON((120 22, 121 22, 121 23, 120 23, 120 22))')",
        "st_overlaps(location,geography'POINT(120 22)')",
        "st_crosses(location,geography'LINESTRING(120 22, 121 23)')",
        "st_intersects(location,geography'MULTIPOINT((120 22), (121 23))')",
        "st_contains(location,geography'POINT(120 22)')",
        "st_relate(location,geography'POINT(120 22)','T*T***FF*')",
    ];
    let mut seen = std::collections::HashSet::new();
    for text in cases {
        let e = parse_filter(text).unwrap_or_else(|e| panic!("{text}: {e}"));
        let mut stack = vec![&e];
        while let Some(e) = stack.pop() {
            match &e.kind {
                ExprKind::Call { func, args } => {
                    seen.insert(*func);
                    stack.extend(args);
                }
                ExprKind::Binary { left, right, .. } => stack.extend([&**left, &**right]),
                _ => {}
            }
        }
        // What the printer writes reads back to the same tree.
        assert_eq!(parse_filter(&e.to_string()).unwrap().without_spans(), e.without_spans(), "{text}");
    }
    for f in Func::all() {
        assert!(seen.contains(&f), "no test for {}", f.name());
    }
}

#[test]
fn literals() {
    let lit = |text: &str| match parse_filter(&format!("x eq {text}")).unwrap().kind {
        ExprKind::Binary { op: BinaryOp::Eq, right, .. } => match right.kind {
            ExprKind::Literal(l) => l,
            other => panic!("{other:?}"),
        },
        other => panic!("{other:?}"),
    };
    assert_eq!(lit("'it''s'"), Literal::String("it's".into()));
    assert_eq!(lit("'三民區'"), Literal::String("三民區".into()));
    assert_eq!(lit("42"), Literal::Int(42));
    assert_eq!(lit("-42"), Literal::Int(-42));
    assert_eq!(lit("2.5"), Literal::Float(2.5));
    assert_eq!(lit("-1.5e3"), Literal::Float(-1500.0));
    assert_eq!(lit("true"), Literal::Bool(true));
    assert_eq!(lit("false"), Literal::Bool(false));
    assert_eq!(lit("null"), Literal::Null);
    let Literal::DateTime(d) = lit("2026-11-22T08:00:00+08:00") else { panic!() };
    assert_eq!(d.to_rfc3339(), "2026-11-22T08:00:00+08:00");
    let Literal::DateTime(d) = lit("2026-11-22T00:00:00.125Z") else { panic!() };
    assert_eq!(d.timestamp_subsec_millis(), 125);
    // An unescaped '+' arrives as a space; it is still an offset.
    let Literal::DateTime(d) = lit("2026-11-22T08:00:00 08:00") else { panic!() };
    assert_eq!(d.offset().local_minus_utc(), 8 * 3600);
    assert!(matches!(lit("2026-11-22"), Literal::Date(_)));
    assert!(matches!(lit("08:30:00"), Literal::TimeOfDay(_)));
    let Literal::Duration(p) = lit("duration'P1DT2H30M'") else { panic!() };
    assert_eq!((p.days, p.hours, p.minutes), (1, 2, 30));
    assert_eq!(p.to_string(), "P1DT2H30M");
    let e = parse_filter("st_equals(location, geography'SRID=4326;POINT(120.3 22.6)')").unwrap();
    assert_eq!(e.to_string(), "st_equals(location,geography'POINT(120.3 22.6)')");
}

#[test]
fn navigation_paths() {
    assert_eq!(
        ok("Datastream/Thing/properties/district eq '三民區'"),
        "Datastream/Thing/properties/district eq '三民區'"
    );
    assert_eq!(ok("properties/tags[0] eq 'a'"), "properties/tags[0] eq 'a'");
    assert_eq!(ok("@iot.id eq 3"), "@iot.id eq 3");
    assert!(parse_filter("st_within(Thing/Locations/location, geography'POINT(1 2)')").is_ok());
}

#[test]
fn syntax_errors_name_the_position() {
    let (pos, msg) = at("substringof('水位',description");
    assert_eq!(pos, "substringof('水位',description".len());
    assert!(msg.contains("expected ')' after the arguments of substringof"), "{msg}");
    let text = "Thing/properties/x eq 'a' and substringof('b', name";
    assert_eq!(at(text).0, text.len());
    assert_eq!(at("(name eq 'a'").0, 12);
    assert!(at("(name eq 'a'").1.contains("to close the '(' at 0"));
    assert_eq!(at("name eq 'abc").0, 8);
    assert!(at("name eq 'abc").1.contains("unterminated string"));
    assert_eq!(at("name eq 'a')").0, 11);
    assert_eq!(at("frobnicate(name) eq 1").0, 0);
    assert!(at("frobnicate(name) eq 1").1.contains("unknown function 'frobnicate'"));
    assert!(at("length(name, 'x') eq 1").1.contains("length takes 1 argument"));
    assert!(at("substring(name) eq 'x'").1.contains("substring takes 2 or 3 arguments, not 1"));
    assert!(at("now(1) gt x").1.contains("now takes no arguments"));
    assert_eq!(at("name eq").0, 7);
    assert_eq!(at("a eq 1 eq 2").0, 7);
    assert!(at("time eq 2026-13-01").1.contains("invalid date"));
    assert!(at("time eq 2026-11-01T10:00:00").1.contains("time zone"));
    assert!(at("st_within(l, geography'POINT(200 22)')").1.contains("outside longitude"));
    assert!(at("st_within(l, geography'POLYGON((0 0, 1 0, 1 1, 0 0.5))')").1.contains("end where it starts"));
    assert!(at("x eq 99999999999999999999").1.contains("out of range"));
    assert!(at("name eq 'a\0b'").1.contains("NUL"));
}

#[test]
fn type_errors_name_the_position() {
    let (pos, msg) = at("length(1) eq 1");
    assert_eq!(pos, 7);
    assert!(msg.contains("must be a string, this is an integer"), "{msg}");
    assert_eq!(at("name eq 'a' and 5").0, 16);
    assert!(at("result add 'x' gt 1").1.contains("'add' needs"));
    assert!(at("result add 1").1.contains("must be a boolean expression"));
    assert!(at("'a' eq 1").1.contains("cannot compare a string with an integer"));
    assert!(at("geography'POINT(1 2)' eq geography'POINT(1 2)'").1.contains("st_equals"));
    assert!(at("x gt null").1.contains("null can only be compared with eq or ne"));
    assert!(at("st_relate(a, b, 'nope')").1.contains("DE-9IM"));
    assert!(at("substring(name, 1.5) eq 'x'").1.contains("must be an integer"));
    assert!(matches!(err("length(1) eq 1"), StaError::Type { .. }));
}

#[test]
fn limits_are_enforced_and_named() {
    let deep = format!("{}name eq 'x'{}", "(".repeat(10_000), ")".repeat(10_000));
    let e = err(&deep);
    assert!(matches!(e, StaError::Limit { limit: "MAX_EXPR_DEPTH", .. }), "{e}");
    let nots = format!("{}true", "not ".repeat(10_000));
    assert!(matches!(err(&nots), StaError::Limit { limit: "MAX_EXPR_DEPTH", .. }));
    let calls = format!("{}name{} eq 'x'", "tolower(".repeat(10_000), ")".repeat(10_000));
    assert!(matches!(err(&calls), StaError::Limit { limit: "MAX_EXPR_DEPTH", .. }));
    let negs = format!("{}result gt 1", "-".repeat(10_000));
    assert!(matches!(err(&negs), StaError::Limit { limit: "MAX_EXPR_DEPTH", .. }));
    // A long chain is parsed by a loop but is still a deep tree.
    let chain = format!("result{} gt 1", " add 1".repeat(100));
    assert!(matches!(err(&chain), StaError::Limit { .. }), "{}", err(&chain));
    let wide = vec!["a eq 1"; 200].join(" or ");
    assert!(matches!(err(&wide), StaError::Limit { .. }));
    let huge = format!("name eq '{}'", "x".repeat(100_000));
    let e = err(&huge);
    assert!(matches!(e, StaError::Limit { limit: "MAX_STRING_LITERAL_BYTES", pos: 8, .. }), "{e}");
    let long_number = format!("x eq {}", "1".repeat(100));
    assert!(matches!(err(&long_number), StaError::Limit { limit: "MAX_NUMBER_LITERAL_CHARS", .. }));
    let long_path = format!("a{} eq 1", "/b".repeat(100));
    assert!(matches!(err(&long_path), StaError::Limit { limit: "MAX_PATH_SEGMENTS", .. }));
}

#[test]
fn injection_attempts_are_just_strings_or_errors() {
    // Inside quotes it is a string; outside it is not the grammar.
    assert!(parse_filter("name eq 'x'' OR 1=1 --'").is_ok());
    assert!(err("name eq 'x' OR 1=1 --").position().is_some());
    assert!(err("name eq 'x'; DROP TABLE things; --").position().is_some());
    assert!(err("name eq 1); DELETE FROM observations; --").position().is_some());
    assert!(err("name/*comment*/ eq 1").position().is_some());
}
