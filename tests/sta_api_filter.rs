//! `$filter` forms beyond OData 4.0 comparisons, through the real API and
//! the harness PostgreSQL: `in` lists, duration arithmetic, `any`/`all`
//! lambdas over to-many navigation, and to-many paths in comparisons
//! ("any" semantics). Every result is checked against the data client-side,
//! and bad forms are 400s that say where.

mod sta_api_support;

use std::collections::{BTreeMap, BTreeSet};

use axum::http::StatusCode;
use chrono::{DateTime, Duration, Utc};
use serde_json::Value;
use sta_api_support::{enc, get, ok, scene, sql, thing, walk, World};

/// The support's world with room for whole-set filters on a loaded test
/// machine (speed is the benchmark's business) and for many requests.
async fn world() -> anyhow::Result<World> {
    let db = citygauge_testkit::database().await?;
    let store = citygauge_testkit::city::demo_city(&db.url).await?;
    citygauge_testkit::city::write(&store, scene(Utc::now())).await?;
    let options = ["--statement-timeout-ms", "60000", "--opendata-requests-per-minute-per-ip", "1000000"];
    let service = citygauge_query::Service::start(citygauge_testkit::query_config(&db.url, &options)?).await?;
    service.wait_ready(std::time::Duration::from_secs(60)).await?;
    let router = service.router();
    Ok(World { service, router, url: db.url.clone(), store })
}

fn ids(values: &[Value]) -> BTreeSet<i64> {
    values.iter().map(|v| v["@iot.id"].as_i64().expect("an integer id")).collect()
}

fn time(v: &Value) -> DateTime<Utc> {
    v["phenomenonTime"].as_str().and_then(|t| t.parse().ok()).expect("a phenomenonTime")
}

/// Every page of `set?$filter=filter` (small pages, so paging is crossed),
/// checked against its own `@iot.count`.
async fn filtered(r: &axum::Router, set: &str, filter: &str, extra: &str) -> Vec<Value> {
    let first = format!("/sta/v1.1/{set}?$count=true&$top=50&$filter={}{extra}", enc(filter));
    let all = walk(r, &first).await;
    let count = ok(r, &first).await["@iot.count"].as_u64().unwrap();
    assert_eq!(count, all.len() as u64, "{set} {filter}: @iot.count equals what nextLinks reach");
    all
}

#[tokio::test]
async fn in_lists_match_what_they_list() -> anyhow::Result<()> {
    let w = world().await?;
    let r = &w.router;
    let db = sql(&w.url).await?;
    let visible = "public AND status = 'active'";
    let districts: Vec<String> = db
        .query(&format!("SELECT DISTINCT district FROM sensors WHERE {visible} ORDER BY 1 LIMIT 2"), &[])
        .await?
        .iter()
        .map(|row| row.get(0))
        .collect();
    let expected: i64 = db
        .query_one(&format!("SELECT count(*) FROM sensors WHERE {visible} AND district = ANY($1)"), &[&districts])
        .await?
        .get(0);
    let filter = format!("properties/district in ('{}', '{}')", districts[0], districts[1]);
    let things = filtered(r, "Things", &filter, "").await;
    assert_eq!(things.len() as i64, expected, "{filter}");
    assert!(expected > 0);
    for t in &things {
        assert!(districts.iter().any(|d| t["properties"]["district"] == d.as_str()), "{filter} returned {t}");
    }
    // Chinese text in the list, and through a to-one path.
    let zh = filtered(r, "Datastreams", "Thing/properties/name_zh in ('愛河中正橋水位站','不存在的站')", "").await;
    let river = thing(&w.url, "kh-wl-0001").await?;
    assert_eq!(ids(&zh), BTreeSet::from([river * 16]));

    // Numbers: the scene's rain gauge reported 1.0 ..= 18.0 mm.
    let rain = thing(&w.url, "kh-rg-0001").await? * 16;
    let obs = filtered(r, &format!("Datastreams({rain})/Observations"), "result in (1, 2.0, 3, 99)", "").await;
    let mut results: Vec<f64> = obs.iter().map(|o| o["result"].as_f64().unwrap()).collect();
    results.sort_by(f64::total_cmp);
    assert_eq!(results, [1.0, 2.0, 3.0]);
    let negated = filtered(r, &format!("Datastreams({rain})/Observations"), "not (result in (1, 2, 3))", "").await;
    assert_eq!(negated.len(), 15);
    assert!(negated.iter().all(|o| o["result"].as_f64().unwrap() > 3.0));
    w.service.stop().await;
    Ok(())
}

#[tokio::test]
async fn durations_shift_times() -> anyhow::Result<()> {
    let w = world().await?;
    let r = &w.router;
    let rain = thing(&w.url, "kh-rg-0001").await? * 16;
    let set = format!("Datastreams({rain})/Observations");
    let every = filtered(r, &set, "result ne null", "").await;
    assert_eq!(every.len(), 18);
    // The server's now() lies between these two instants.
    let before = Utc::now();
    let recent = filtered(r, &set, "phenomenonTime ge now() sub duration'PT1H30M'", "").await;
    let after = Utc::now();
    let window = Duration::minutes(90);
    for o in &recent {
        assert!(time(o) >= before - window, "{o} is older than 90 minutes");
    }
    for o in &every {
        if time(o) >= after - window {
            assert!(ids_of(&recent).contains(&o["@iot.id"]), "{o} is recent but was not returned");
        }
    }
    assert!((8..=10).contains(&recent.len()), "readings every 10 minutes: {}", recent.len());

    // Adding to the property side, days, and the date functions.
    let shifted =
        filtered(r, &set, "phenomenonTime add duration'P1D' gt now() and phenomenonTime lt maxdatetime()", "").await;
    assert_eq!(shifted.len(), 18);
    let none = filtered(r, &set, "phenomenonTime add duration'PT1M' lt now() sub duration'P1D'", "").await;
    assert!(none.is_empty(), "{none:?}");
    let today = filtered(
        r,
        &set,
        "date(phenomenonTime) ge date(now() sub duration'P1D') and totaloffsetminutes(phenomenonTime) eq 0 \
         and fractionalseconds(phenomenonTime) lt 1 and phenomenonTime gt mindatetime()",
        "",
    )
    .await;
    assert_eq!(today.len(), 18);
    w.service.stop().await;
    Ok(())
}

fn ids_of(values: &[Value]) -> Vec<Value> {
    values.iter().map(|v| v["@iot.id"].clone()).collect()
}

/// Every Datastream with Observations, and its results (from the
/// Datastreams' own Observations collections).
async fn observed(r: &axum::Router) -> BTreeMap<i64, Vec<Option<f64>>> {
    let with_obs = filtered(r, "Datastreams", "Observations/any()", "").await;
    let mut out = BTreeMap::new();
    for ds in ids(&with_obs) {
        let obs = walk(r, &format!("/sta/v1.1/Datastreams({ds})/Observations?$top=1000")).await;
        assert!(!obs.is_empty(), "Observations/any() returned {ds}, which has none");
        out.insert(ds, obs.iter().map(|o| o["result"].as_f64()).collect());
    }
    out
}

#[tokio::test]
async fn lambdas_hold_for_some_or_every_element() -> anyhow::Result<()> {
    let w = world().await?;
    let r = &w.router;
    let data = observed(r).await;
    // Every Datastream of the scene's sensors that has a reading is there.
    for sensor in ["kh-wl-0001", "kh-fd-0001", "kh-rg-0001", "kh-aq-0001", "kh-sl-000001"] {
        let t = thing(&w.url, sensor).await?;
        let page = ok(r, &format!("/sta/v1.1/Things({t})/Datastreams?$expand={}", enc("Observations($top=1)"))).await;
        for ds in page["value"].as_array().unwrap() {
            let has = !ds["Observations"].as_array().unwrap().is_empty();
            assert_eq!(data.contains_key(&ds["@iot.id"].as_i64().unwrap()), has, "{sensor}: {ds}");
        }
    }
    let holds = |k: &i64, pred: &dyn Fn(&[Option<f64>]) -> bool| pred(&data[k]);
    let any_gt3: BTreeSet<i64> =
        data.keys().filter(|k| holds(k, &|v| v.iter().any(|x| x.is_some_and(|x| x > 3.0)))).copied().collect();
    let all_gt3: BTreeSet<i64> =
        data.keys().filter(|k| holds(k, &|v| v.iter().all(|x| x.is_some_and(|x| x > 3.0)))).copied().collect();
    assert!(!any_gt3.is_empty() && any_gt3 != all_gt3 && !all_gt3.is_empty(), "the data tells them apart");

    let got = ids(&filtered(r, "Datastreams", "Observations/any(o: o/result gt 3)", "").await);
    assert_eq!(got, any_gt3);
    let got = ids(&filtered(r, "Datastreams", "Observations/any() and Observations/all(o: o/result gt 3)", "").await);
    assert_eq!(got, all_gt3);
    // `all` over an empty collection holds: every Datastream without readings.
    let count = |filter: &str| {
        let path = format!("/sta/v1.1/Datastreams?$count=true&$top=1&$filter={}", enc(filter));
        async move { ok(r, &path).await["@iot.count"].as_u64().unwrap() }
    };
    let vacuous = count("Observations/all(o: o/result gt 1e9)").await;
    assert_eq!(vacuous, count("id ge 0").await - data.len() as u64);

    // Nested: Things with some Datastream with some reading over 30.
    let over30: BTreeSet<i64> =
        data.iter().filter(|(_, v)| v.iter().any(|x| x.is_some_and(|x| x > 30.0))).map(|(ds, _)| ds / 16).collect();
    let got = ids(&filtered(r, "Things", "Datastreams/any(d: d/Observations/any(o: o/result gt 30))", "").await);
    assert_eq!(got, over30);
    // The same through a to-many path: "some element" semantics.
    let got = ids(&filtered(r, "Things", "Datastreams/Observations/result gt 30", "").await);
    assert_eq!(got, over30);
    // Inside an expansion (read per parent through LATERAL).
    let aq = thing(&w.url, "kh-aq-0001").await?;
    let nested = enc("Datastreams($filter=Observations/any(o: o/result gt 30))");
    let page = ok(r, &format!("/sta/v1.1/Things({aq})?$expand={nested}")).await;
    let expected: BTreeSet<i64> = data
        .iter()
        .filter(|(ds, v)| **ds / 16 == aq && v.iter().any(|x| x.is_some_and(|x| x > 30.0)))
        .map(|(ds, _)| *ds)
        .collect();
    assert!(!expected.is_empty());
    assert_eq!(ids(page["Datastreams"].as_array().unwrap()), expected);
    w.service.stop().await;
    Ok(())
}

#[tokio::test]
async fn to_many_navigation_in_comparisons() -> anyhow::Result<()> {
    let w = world().await?;
    let r = &w.router;
    let db = sql(&w.url).await?;
    let rivers: BTreeSet<i64> = db
        .query("SELECT sta_id FROM sensors WHERE kind = 'water_level' AND public AND status = 'active'", &[])
        .await?
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert!(rivers.len() > 1);
    let expand = format!("&$expand={}", enc("Datastreams($select=id;$expand=ObservedProperty($select=name))"));
    let lambda = filtered(r, "Things", "Datastreams/any(d: d/ObservedProperty/name eq 'Water level')", &expand).await;
    for t in &lambda {
        let names: Vec<&Value> =
            t["Datastreams"].as_array().unwrap().iter().map(|d| &d["ObservedProperty"]["name"]).collect();
        assert!(names.iter().any(|n| *n == "Water level"), "{t}");
    }
    assert_eq!(ids(&lambda), rivers);
    let path = filtered(r, "Things", "Datastreams/ObservedProperty/name eq 'Water level'", "").await;
    assert_eq!(ids(&path), rivers);
    // `not` of an "any" path: Things with no such Datastream.
    let others = ok(
        r,
        &format!(
            "/sta/v1.1/Things?$count=true&$top=1&$filter={}",
            enc("not (Datastreams/ObservedProperty/name eq 'Water level')")
        ),
    )
    .await;
    let total = ok(r, "/sta/v1.1/Things?$count=true&$top=1").await["@iot.count"].as_u64().unwrap();
    assert_eq!(others["@iot.count"].as_u64().unwrap(), total - rivers.len() as u64);

    // Locations by their Things' names, and ObservedProperties by Datastreams.
    let river = thing(&w.url, "kh-wl-0001").await?;
    let name = ok(r, &format!("/sta/v1.1/Things({river})")).await["name"].as_str().unwrap().to_string();
    let locations = filtered(r, "Locations", &format!("Things/name eq '{name}'"), "").await;
    assert_eq!(ids(&locations), BTreeSet::from([river]));
    let ops = filtered(r, "ObservedProperties", &format!("Datastreams/any(d: d/Thing/name eq '{name}')"), "").await;
    let names: Vec<&str> = ops.iter().map(|o| o["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["Water level"]);
    // Through a to-one hop, as a path and as a lambda.
    let own = ids(&walk(r, &format!("/sta/v1.1/Things({river})/Datastreams")).await);
    let hop = filtered(r, "Datastreams", &format!("Thing/Locations/name eq '{name}'"), "").await;
    assert_eq!(ids(&hop), own);
    let hop = filtered(r, "Datastreams", &format!("Thing/Locations/any(l: l/name eq '{name}')"), "").await;
    assert_eq!(ids(&hop), own);
    w.service.stop().await;
    Ok(())
}

#[tokio::test]
async fn bad_forms_are_400s_that_say_where() -> anyhow::Result<()> {
    let w = world().await?;
    let r = &w.router;
    let cases = [
        ("Things", "id in ()", "at 7: the list after 'in' is empty"),
        ("Things", "name in ('a', 1)", "at 14: "),
        ("Things", "Datastreams/all()", "at 15: all() needs a condition"),
        ("Things", "Datastreams/any(d d/name eq 'x')", "at 18: expected ':'"),
        ("Things", "Datastreams/any(d: d/nmae eq 'x')", "at 19: Datastreams have no property 'nmae'"),
        ("Things", "Datastreams/any(d: d/name)", "at 19: the condition of any must be a boolean"),
        ("Things", "name/any(n: n/x eq 1)", "at 0: 'name' is not a to-many navigation property"),
        ("Things", "Datastreams/nmae eq 'x'", "at 0: Datastreams have no property 'nmae'"),
        ("Things", "Datastreams/name eq 1", "at 0: cannot compare a string with an integer"),
        ("Things", "Datastreams eq 1", "at 0: 'Datastreams' is a collection of Things"),
        ("Datastreams", "Thing/any()", "at 0: 'Thing' is one entity, not a collection"),
        ("Observations", "phenomenonTime ge now() sub duration'P1X'", "at 38: expected a number followed by"),
        ("Observations", "phenomenonTime ge now() mul duration'P1D'", "at 18: 'mul' needs two numbers"),
        ("Things", &format!("id in ({})", vec!["1"; 300].join(",")), "MAX_EXPR_NODES"),
    ];
    let deep = (0..40).fold("o/result gt 1".to_string(), |body, k| format!("Observations/any(v{k}: {body})"));
    for (set, filter, message) in
        cases.iter().map(|(s, f, m)| (*s, f.to_string(), *m)).chain([("Datastreams", deep, "MAX_EXPR_DEPTH")])
    {
        let reply = get(r, &format!("/sta/v1.1/{set}?$filter={}", enc(&filter))).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{filter}: {}", reply.text());
        let body = reply.json();
        assert_eq!(body["parameter"], "$filter", "{filter}: {body}");
        let text = body["message"].as_str().unwrap();
        assert!(text.contains(message), "{filter}: {text}");
        assert!(!text.to_lowercase().contains("select "), "no SQL reaches a client: {text}");
    }
    w.service.stop().await;
    Ok(())
}
