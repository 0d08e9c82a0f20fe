//! Properties of `$filter` and `$orderby` through the real API and the
//! harness PostgreSQL: generated valid filters over Observations, Things
//! and Datastreams answer 200, every returned entity satisfies the filter
//! when evaluated client-side, `@iot.count` equals the client-side count
//! over the whole set, and the page is sorted by the `$orderby` keys.
//! Hostile input is a 400, never a 500 nor an SQL error.

mod sta_api_props_eval;
mod sta_api_support;

use std::cmp::Ordering;

use axum::http::StatusCode;
use chrono::{DateTime, Duration, DurationRound, Utc};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::Value;
use sta_api_props_eval::{at, jsonb_cmp, keeps, E, V};
use sta_api_support::{enc, get, scene, walk, World};

/// The support's world, with the per-address rate limit out of the way
/// (these tests make hundreds of requests from one address).
async fn world() -> anyhow::Result<World> {
    let db = citygauge_testkit::database().await?;
    let store = citygauge_testkit::city::demo_city(&db.url).await?;
    citygauge_testkit::city::write(&store, scene(Utc::now())).await?;
    let config = citygauge_testkit::query_config(&db.url, &["--opendata-requests-per-minute-per-ip", "1000000"])?;
    let service = citygauge_query::Service::start(config).await?;
    service.wait_ready(std::time::Duration::from_secs(60)).await?;
    let router = service.router();
    Ok(World { service, router, url: db.url.clone(), store })
}

#[derive(Clone, Copy, Debug)]
enum Key {
    Id,
    Text,
    Time,
    Json,
}

struct Set {
    name: &'static str,
    nums: &'static [&'static str],
    texts: &'static [&'static str],
    times: &'static [&'static str],
    flags: &'static [&'static str],
    orders: &'static [(&'static str, Key)],
}

const SETS: [Set; 3] = [
    Set {
        name: "Observations",
        nums: &["result"],
        texts: &["resultQuality/quality"],
        times: &["phenomenonTime"],
        flags: &["result"],
        orders: &[("phenomenonTime", Key::Time), ("result", Key::Json)],
    },
    Set {
        name: "Things",
        nums: &["id", "properties/cadence_s", "properties/bucket_mm"],
        texts: &["name", "description", "properties/district", "properties/kind", "properties/vendor"],
        times: &[],
        flags: &[],
        orders: &[
            ("id", Key::Id),
            ("name", Key::Text),
            ("properties/district", Key::Json),
            ("properties/cadence_s", Key::Json),
        ],
    },
    Set {
        name: "Datastreams",
        nums: &["id"],
        texts: &["name", "description", "properties/kind", "properties/column", "unitOfMeasurement/symbol"],
        times: &[],
        flags: &[],
        orders: &[
            ("id", Key::Id),
            ("name", Key::Text),
            ("properties/kind", Key::Json),
            ("unitOfMeasurement/symbol", Key::Json),
        ],
    },
];

const WORDS: [&str; 18] = [
    "Sanmin",
    "Lingya",
    "gauge",
    "rain",
    "Rainfall",
    "a",
    "",
    "%",
    "_",
    "'",
    "三民",
    "mm",
    "rainfall",
    "good",
    "Texas Electronics",
    "R",
    "\\",
    " e",
];

fn b(e: E) -> Box<E> {
    Box::new(e)
}

fn num_expr(set: &'static Set) -> BoxedStrategy<E> {
    let leaf = prop_oneof![
        prop::sample::select(set.nums).prop_map(E::Num),
        (-20i64..40).prop_map(|n| E::Lit(V::Int(n))),
        (-40i64..80).prop_map(|n| E::Lit(V::Float(n as f64 / 2.0))),
    ];
    let text = text_expr(set);
    let leaf = prop_oneof![
        4 => leaf,
        1 => text.clone().prop_map(|t| E::Call("length", vec![t])),
        1 => (text.clone(), text).prop_map(|(s, t)| E::Call("indexof", vec![s, t])),
    ];
    leaf.prop_recursive(3, 12, 2, |inner| {
        prop_oneof![
            (prop::sample::select(&["add", "sub", "mul", "div"][..]), inner.clone(), inner.clone())
                .prop_map(|(op, x, y)| E::Arith(op, b(x), b(y))),
            inner.clone().prop_map(|x| E::Neg(b(x))),
            (prop::sample::select(&["round", "floor", "ceiling"][..]), inner).prop_map(|(f, x)| E::Call(f, vec![x])),
        ]
    })
    .boxed()
}

fn text_expr(set: &'static Set) -> BoxedStrategy<E> {
    let leaf = prop_oneof![
        prop::sample::select(set.texts).prop_map(E::Text),
        prop::sample::select(&WORDS[..]).prop_map(|w| E::Lit(V::Str(w.to_string()))),
    ];
    leaf.prop_recursive(2, 6, 2, |inner| {
        prop_oneof![
            (prop::sample::select(&["tolower", "toupper", "trim"][..]), inner.clone())
                .prop_map(|(f, x)| E::Call(f, vec![x])),
            (inner.clone(), inner.clone()).prop_map(|(x, y)| E::Call("concat", vec![x, y])),
            (inner, 0i64..6, prop::option::of(0i64..6)).prop_map(|(x, s, n)| {
                let mut args = vec![x, E::Lit(V::Int(s))];
                args.extend(n.map(|n| E::Lit(V::Int(n))));
                E::Call("substring", args)
            }),
        ]
    })
    .boxed()
}

fn bool_expr(set: &'static Set, base: DateTime<Utc>) -> BoxedStrategy<E> {
    let cmp = || prop::sample::select(&["eq", "ne", "gt", "ge", "lt", "le"][..]);
    let mut atoms: Vec<(u32, BoxedStrategy<E>)> = vec![
        (3, (cmp(), num_expr(set), num_expr(set)).prop_map(|(op, x, y)| E::Cmp(op, b(x), b(y))).boxed()),
        (2, (cmp(), text_expr(set), text_expr(set)).prop_map(|(op, x, y)| E::Cmp(op, b(x), b(y))).boxed()),
        (
            1,
            (num_expr(set), prop::collection::vec((-40i64..80).prop_map(|n| E::Lit(V::Float(n as f64 / 2.0))), 1..4))
                .prop_map(|(x, list)| E::In(b(x), list))
                .boxed(),
        ),
        (
            1,
            (text_expr(set), prop::collection::vec(prop::sample::select(&WORDS[..]), 1..4))
                .prop_map(|(x, words)| E::In(b(x), words.iter().map(|w| E::Lit(V::Str(w.to_string()))).collect()))
                .boxed(),
        ),
        (
            2,
            (prop::sample::select(&["startswith", "endswith", "substringof"][..]), text_expr(set), text_expr(set))
                .prop_map(|(f, x, y)| E::Call(f, vec![x, y]))
                .boxed(),
        ),
    ];
    if !set.times.is_empty() {
        let times = prop::sample::select(set.times);
        atoms.push((
            2,
            (cmp(), times.clone(), 0i64..400)
                .prop_map(move |(op, p, m)| E::Cmp(op, b(E::Time(p)), b(E::Lit(V::Time(base - Duration::minutes(m))))))
                .boxed(),
        ));
        atoms.push((
            1,
            (cmp(), prop::sample::select(&["hour", "minute"][..]), times, 0i64..60)
                .prop_map(|(op, f, p, n)| E::Cmp(op, b(E::Call(f, vec![E::Time(p)])), b(E::Lit(V::Int(n)))))
                .boxed(),
        ));
    }
    if !set.flags.is_empty() {
        let flags = prop::sample::select(set.flags);
        atoms.push((1, flags.clone().prop_map(E::Flag).boxed()));
        atoms.push((
            1,
            (flags, any::<bool>()).prop_map(|(p, v)| E::Cmp("eq", b(E::Flag(p)), b(E::Lit(V::Bool(v))))).boxed(),
        ));
    }
    prop::strategy::Union::new_weighted(atoms)
        .prop_recursive(3, 8, 2, |inner| {
            prop_oneof![
                (prop::sample::select(&["and", "or"][..]), inner.clone(), inner.clone())
                    .prop_map(|(op, x, y)| E::Logic(op, b(x), b(y))),
                inner.prop_map(|x| E::Not(b(x))),
            ]
        })
        .boxed()
}

fn order(set: &'static Set) -> impl Strategy<Value = Vec<(&'static str, Key, bool)>> {
    prop::sample::subsequence(set.orders.to_vec(), 1..=2)
        .prop_shuffle()
        .prop_flat_map(|keys| {
            let n = keys.len();
            (Just(keys), prop::collection::vec(any::<bool>(), n))
        })
        .prop_map(|(keys, desc)| keys.into_iter().zip(desc).map(|((p, k), d)| (p, k, d)).collect())
}

fn key_cmp(a: &Value, b: &Value, path: &str, key: Key) -> Ordering {
    let path = if path == "id" { "@iot.id" } else { path };
    let (x, y) = (at(a, path), at(b, path));
    match key {
        Key::Id => x.and_then(Value::as_i64).cmp(&y.and_then(Value::as_i64)),
        Key::Text => x.and_then(Value::as_str).map(str::as_bytes).cmp(&y.and_then(Value::as_str).map(str::as_bytes)),
        Key::Time => {
            let t = |v: Option<&Value>| v.and_then(Value::as_str).and_then(|s| s.parse::<DateTime<Utc>>().ok());
            t(x).cmp(&t(y))
        }
        Key::Json => jsonb_cmp(x, y),
    }
}

#[test]
fn generated_filters_hold_client_side() -> anyhow::Result<()> {
    let rt = tokio::runtime::Runtime::new()?;
    let w = rt.block_on(world())?;
    let base = Utc::now().duration_trunc(Duration::seconds(1))?;
    let mut all: Vec<Vec<Value>> = Vec::new();
    for set in &SETS {
        all.push(rt.block_on(walk(&w.router, &format!("/sta/v1.1/{}?$top=10000", set.name))));
    }
    // Found by this test: $count with a JSON key in $orderby was a 500, and
    // round() rounded halves to even.
    let pinned = format!("/sta/v1.1/Things?$count=true&$top=1&$orderby={}", enc("properties/district desc"));
    assert_eq!(rt.block_on(get(&w.router, &pinned)).status, StatusCode::OK);
    let halves = format!("/sta/v1.1/Things?$count=true&$top=1&$filter={}", enc("round(properties/bucket_mm) eq 1"));
    let bucket = |v: &Value| at(v, "properties/bucket_mm").and_then(Value::as_f64);
    assert!(all[1].iter().any(|v| bucket(v) == Some(0.5)), "the demo city has 0.5 mm buckets");
    let expected = all[1].iter().filter(|v| bucket(v).map(f64::round) == Some(1.0)).count() as u64;
    assert_eq!(rt.block_on(get(&w.router, &halves)).json()["@iot.count"].as_u64(), Some(expected));
    let cases = (0..SETS.len()).prop_flat_map(|k| {
        let set: &'static Set = &SETS[k];
        (Just(k), bool_expr(set, base), order(set))
    });
    let mut runner = TestRunner::new(Config { cases: 64, failure_persistence: None, ..Config::default() });
    let result = runner.run(&cases, |(k, filter, keys)| {
        let set = &SETS[k];
        let orderby: Vec<String> =
            keys.iter().map(|(p, _, desc)| format!("{p}{}", if *desc { " desc" } else { "" })).collect();
        let path = format!(
            "/sta/v1.1/{}?$count=true&$top=100&$filter={}&$orderby={}",
            set.name,
            enc(&filter.to_string()),
            enc(&orderby.join(","))
        );
        let reply = rt.block_on(get(&w.router, &path));
        let text = reply.text();
        if reply.status == StatusCode::BAD_REQUEST && text.contains("out of range") {
            return Ok(());
        }
        prop_assert_eq!(reply.status, StatusCode::OK, "{}: {}", filter, text);
        let page = reply.json();
        let values = page["value"].as_array().cloned().unwrap_or_default();
        for v in &values {
            prop_assert!(keeps(&filter, v), "{} returned {} which does not satisfy it", filter, v);
        }
        let expected = all[k].iter().filter(|v| keeps(&filter, v)).count();
        prop_assert_eq!(page["@iot.count"].as_u64(), Some(expected as u64), "{}: count", filter);
        prop_assert_eq!(values.len(), expected.min(100));
        for pair in values.windows(2) {
            let ord = keys.iter().fold(Ordering::Equal, |acc, (p, key, desc)| {
                acc.then_with(|| {
                    let o = key_cmp(&pair[0], &pair[1], p, *key);
                    if *desc {
                        o.reverse()
                    } else {
                        o
                    }
                })
            });
            prop_assert!(ord != Ordering::Greater, "not sorted by {:?}: {} before {}", orderby, pair[0], pair[1]);
        }
        Ok(())
    });
    rt.block_on(w.service.stop());
    result.map_err(|e| anyhow::anyhow!("{e}"))
}

/// `text` as `$filter`: must be refused with a 400 that shows no SQL.
async fn refused(router: &axum::Router, option: &str, text: &str) -> Result<(), String> {
    let reply = get(router, &format!("/sta/v1.1/Things?{option}={}", enc(text))).await;
    let body = reply.text();
    let shown: String = text.chars().take(60).collect();
    if reply.status != StatusCode::BAD_REQUEST {
        return Err(format!("{option}={shown}...: {} {}", reply.status, body.chars().take(300).collect::<String>()));
    }
    if body.contains("SELECT") || body.contains("syntax error at or near") {
        return Err(format!("{option}={shown}: SQL reached the client: {body}"));
    }
    Ok(())
}

#[test]
fn hostile_filters_are_400() -> anyhow::Result<()> {
    let rt = tokio::runtime::Runtime::new()?;
    let w = rt.block_on(world())?;
    let r = &w.router;
    let hostile = [
        "'; DROP TABLE sensors; --".to_string(),
        "name eq 'x' or 1 eq 1; DROP TABLE sensors; --".to_string(),
        "name eq 'a' union select * from sensors".to_string(),
        "1 eq 1) or (1 eq 1".to_string(),
        "name eq \"x\"".to_string(),
        "name eq 'a\u{0}'".to_string(),
        "name eq $1".to_string(),
        "properties/district')) OR 1=1 -- eq 'x'".to_string(),
        "(".repeat(10_000),
        format!("{}name eq 'a'{}", "(".repeat(10_000), ")".repeat(10_000)),
        format!("name eq '{}'", "x".repeat(60_000)),
        format!("result gt {}", "9".repeat(60_000)),
        vec!["name eq 'a'"; 2_000].join(" or "),
    ];
    let mut failures = Vec::new();
    for text in &hostile {
        for option in ["$filter", "$orderby"] {
            if let Err(e) = rt.block_on(refused(r, option, text)) {
                failures.push(e);
            }
        }
    }
    // Nesting up to and past the limits: fast, and 200 or 400.
    let mut nested = "result".to_string();
    for _ in 0..30 {
        nested = format!("({nested} mod 2.5)");
        let reply = rt.block_on(get(r, &format!("/sta/v1.1/Observations?$filter={}", enc(&format!("{nested} gt 1")))));
        if reply.status != StatusCode::OK && reply.status != StatusCode::BAD_REQUEST {
            failures.push(format!("{nested}: {} {}", reply.status, reply.text()));
        }
    }
    // Arbitrary text: 200 or a clean 400, never a 500.
    let mut runner = TestRunner::new(Config { cases: 64, failure_persistence: None, ..Config::default() });
    let arbitrary = runner.run(&(any::<String>(), "[a-z()' /0-9.,-]{0,40}"), |(x, y)| {
        for text in [x, y] {
            let reply = rt.block_on(get(r, &format!("/sta/v1.1/Observations?$filter={}", enc(&text))));
            let ok = reply.status == StatusCode::OK || reply.status == StatusCode::BAD_REQUEST;
            prop_assert!(ok, "{:?}: {} {}", text, reply.status, reply.text());
            prop_assert!(!reply.text().contains("SELECT"), "{}", reply.text());
        }
        Ok(())
    });
    // The table is still there and the service still answers.
    let still = rt.block_on(get(r, "/sta/v1.1/Things?$top=1"));
    rt.block_on(w.service.stop());
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    arbitrary.map_err(|e| anyhow::anyhow!("{e}"))?;
    assert_eq!(still.status, StatusCode::OK);
    Ok(())
}
