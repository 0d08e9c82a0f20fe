//! The SensorThings API's guarantees: paging through `@iot.nextLink` never
//! skips nor repeats while readings arrive, a non-public (or retired)
//! sensor is absent from every entity set, expansion, count and by-id
//! path, and every bad input is a 400 that says where and why.

mod sta_api_support;

use axum::http::StatusCode;
use chrono::{Duration, Utc};
use citygauge_testkit::city::{self, rain};
use serde_json::Value;
use sta_api_support::{enc, get, ok, sql, thing, walk, world};

fn ids(values: &[Value]) -> Vec<String> {
    values.iter().map(|v| v["@iot.id"].to_string()).collect()
}

#[tokio::test]
async fn paging_never_skips_or_repeats_while_data_arrives() -> anyhow::Result<()> {
    let w = world().await?;
    let r = &w.router;
    let rain_ds = thing(&w.url, "kh-rg-0001").await? * 16;
    let first = format!("/sta/v1.1/Datastreams({rain_ds})/Observations?$top=4&$count=true");
    let before = walk(r, &first).await;
    assert_eq!(before.len(), 18);
    assert_eq!(ok(r, &first).await["@iot.count"], 18, "@iot.count equals what nextLinks reach");

    // For each order, page while new readings land before and after the cursor.
    let now = Utc::now();
    for (k, order) in ["", "&$orderby=phenomenonTime%20desc", "&$orderby=result%20desc"].into_iter().enumerate() {
        let mut seen: Vec<String> = Vec::new();
        let mut next = Some(format!("/sta/v1.1/Datastreams({rain_ds})/Observations?$top=4{order}"));
        let mut step = 0i64;
        while let Some(link) = next {
            let page = ok(r, &link).await;
            seen.extend(ids(page["value"].as_array().unwrap()));
            next = page["@iot.nextLink"].as_str().map(str::to_string);
            assert!(next.as_deref().is_none_or(|n| n.contains("$skiptoken=")), "{next:?}");
            step += 1;
            let offset = (k as i64) * 1000 + step;
            let arriving = vec![
                rain("kh-rg-0001", now - Duration::days(2) - Duration::seconds(offset), 3.0, 600),
                rain("kh-rg-0001", now + Duration::seconds(offset), 3.0, 600),
            ];
            city::write(&w.store, arriving).await?;
        }
        let mut unique = seen.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), seen.len(), "order {order:?}: an entity was repeated");
        for id in ids(&before) {
            assert!(seen.contains(&id), "order {order:?}: {id} was skipped");
        }
    }
    // $skip is still honoured.
    let all = ok(r, &format!("/sta/v1.1/Datastreams({rain_ds})/Observations?$top=1000")).await;
    let skipped = ok(r, &format!("/sta/v1.1/Datastreams({rain_ds})/Observations?$skip=5&$top=3")).await;
    assert_eq!(skipped["value"].as_array().unwrap()[..], all["value"].as_array().unwrap()[5..8]);
    w.service.stop().await;
    Ok(())
}

#[tokio::test]
async fn hidden_sensors_appear_nowhere() -> anyhow::Result<()> {
    let w = world().await?;
    let r = &w.router;
    let db = sql(&w.url).await?;
    let t = thing(&w.url, "kh-wl-0001").await?;
    let retired = thing(&w.url, "kh-wl-0002").await?;
    let ds = t * 16;
    let obs = ok(r, &format!("/sta/v1.1/Datastreams({ds})/Observations?$top=1")).await;
    let obs_id = obs["value"][0]["@iot.id"].as_str().unwrap().to_string();
    let count = |set: &'static str| async move {
        ok(r, &format!("/sta/v1.1/{set}?$count=true&$top=1")).await["@iot.count"].as_i64().unwrap()
    };
    let sets =
        ["Things", "Locations", "HistoricalLocations", "Datastreams", "Sensors", "FeaturesOfInterest", "Observations"];
    let mut counts = Vec::new();
    for set in sets {
        counts.push(count(set).await);
    }
    let authority = format!(
        "/sta/v1.1/Datastreams?$count=true&$top=1000&$filter={}",
        enc("Thing/properties/authority_type eq '水利局'")
    );
    let authority_before = ok(r, &authority).await["@iot.count"].as_i64().unwrap();

    db.execute("UPDATE sensors SET public = false WHERE id = 'kh-wl-0001'", &[]).await?;
    db.execute("UPDATE sensors SET status = 'retired' WHERE id = 'kh-wl-0002'", &[]).await?;

    for (k, set) in sets.iter().enumerate() {
        let fewer = if *set == "Observations" { 3 } else { 2 };
        assert_eq!(count(set).await, counts[k] - fewer, "{set}");
    }
    for hidden in [t, retired] {
        for path in ["Things", "Locations", "HistoricalLocations", "Sensors", "FeaturesOfInterest"] {
            let reply = get(r, &format!("/sta/v1.1/{path}({hidden})")).await;
            assert_eq!(reply.status, StatusCode::NOT_FOUND, "{path}({hidden})");
        }
        assert_eq!(get(r, &format!("/sta/v1.1/Datastreams({})", hidden * 16)).await.status, StatusCode::NOT_FOUND);
        assert_eq!(get(r, &format!("/sta/v1.1/Things({hidden})/Datastreams")).await.status, StatusCode::NOT_FOUND);
    }
    assert_eq!(get(r, &format!("/sta/v1.1/Observations('{obs_id}')")).await.status, StatusCode::NOT_FOUND);
    assert_eq!(get(r, &format!("/sta/v1.1/Datastreams({ds})/Observations")).await.status, StatusCode::NOT_FOUND);
    assert_eq!(ok(r, &authority).await["@iot.count"].as_i64().unwrap(), authority_before - 2);
    let by_filter = ok(r, &format!("/sta/v1.1/Observations?$filter={}", enc(&format!("Datastream/id eq {ds}")))).await;
    assert_eq!(by_filter["value"], Value::Array(vec![]));
    let by_sensor = ok(r, &format!("/sta/v1.1/Things?$filter={}", enc("properties/sensor_id eq 'kh-wl-0001'"))).await;
    assert_eq!(by_sensor["value"], Value::Array(vec![]));
    // Expansions, the cache-served one included, and navigation from shared entities.
    let through_property = walk(
        r,
        &format!(
            "/sta/v1.1/ObservedProperties(2)/Datastreams?$top=200&$expand={}",
            enc("Observations($top=1;$orderby=phenomenonTime desc),Thing")
        ),
    )
    .await;
    assert!(!through_property.is_empty());
    let found: Vec<String> = ids(&through_property);
    assert!(!found.contains(&ds.to_string()) && !found.contains(&(retired * 16).to_string()));
    let expanded =
        ok(r, &format!("/sta/v1.1/ObservedProperties(2)?$expand={}", enc("Datastreams($top=1000;$count=true)"))).await;
    assert_eq!(
        expanded["Datastreams@iot.count"].as_i64().unwrap(),
        expanded["Datastreams"].as_array().unwrap().len() as i64
    );
    assert!(!ids(expanded["Datastreams"].as_array().unwrap()).contains(&ds.to_string()));
    w.service.stop().await;
    Ok(())
}

#[tokio::test]
async fn every_bad_input_is_a_400_that_says_where() -> anyhow::Result<()> {
    let w = world().await?;
    let r = &w.router;
    let long_expand = "Datastreams($expand=Thing($expand=Datastreams($expand=Thing($expand=Locations))))";
    let cases: Vec<(String, &str, &str)> = vec![
        ("/sta/v1.1/Thingz".into(), "path", "not an entity set"),
        ("/sta/v1.1/Things(abc)".into(), "path", "not an id"),
        ("/sta/v1.1/Observations('nope')".into(), "path", "not an Observation id"),
        ("/sta/v1.1/Things/Datastreams".into(), "path", "give an id first"),
        ("/sta/v1.1/Things(1)/nmae".into(), "path", "no property"),
        ("/sta/v1.1/MultiDatastreams".into(), "path", "not an entity set"),
        (format!("/sta/v1.1/Things?$filter={}", enc("name eq")), "$filter", "at "),
        (format!("/sta/v1.1/Things?$filter={}", enc("nmae eq 'x'")), "$filter", "at 0"),
        (format!("/sta/v1.1/Things?$filter={}", enc("name eq 'x' and length(5) gt 1")), "$filter", "at "),
        (format!("/sta/v1.1/Things?$filter={}", enc("name eq x; DROP TABLE sensors; --")), "$filter", "at "),
        ("/sta/v1.1/Things?$top=10001".into(), "$top", "MAX_TOP"),
        (format!("/sta/v1.1/Things?$expand={}", enc(long_expand)), "$expand", "MAX_EXPAND_DEPTH"),
        ("/sta/v1.1/Things?$expand=Observations".into(), "$expand", "no navigation property"),
        ("/sta/v1.1/Things?$foo=1".into(), "query", "unknown query option"),
        ("/sta/v1.1/Things?$skiptoken=zz".into(), "$skiptoken", "not a token"),
        (format!("/sta/v1.1/Things?$skiptoken={}", hex_json("[\"1\",\"2\"]")), "$skiptoken", "not a token"),
        (format!("/sta/v1.1/Things?$skiptoken={}", hex_json("[\"x\"]")), "query", "invalid for its type"),
        ("/sta/v1.1/Things?$resultFormat=dataArray".into(), "$resultFormat", "Observations only"),
        (format!("/sta/v1.1/Locations?$orderby={}", enc("location")), "$orderby", "at 0"),
        (format!("/sta/v1.1/Observations?$filter={}", enc("result mul 1e300 mul 1e300 gt 1")), "query", "out of range"),
        (
            format!("/sta/v1.1/Things?$filter={}", enc(&format!("name eq '{}'", "x".repeat(5000)))),
            "$filter",
            "MAX_STRING_LITERAL_BYTES",
        ),
        (format!("/sta/v1.1/Things?$filter={}", enc(&"(".repeat(10_000))), "$filter", "MAX_EXPR_DEPTH"),
    ];
    // A token's time at the end of chrono's range, in both window
    // directions (ascending by default, newest first): once a panic on
    // overflowing the search window.
    let rain_ds = thing(&w.url, "kh-rg-0001").await? * 16;
    for (token, order) in
        [("+262142-12-31 23:59:59+00", ""), ("-262143-01-01 00:00:00+00", "&$orderby=phenomenonTime%20desc")]
    {
        let path = format!(
            "/sta/v1.1/Datastreams({rain_ds})/Observations?$skiptoken={}{order}",
            hex_json(&format!("[\"{token}\"]"))
        );
        let reply = get(r, &path).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{path}: {}", reply.text());
    }
    for (path, parameter, message) in cases {
        let reply = get(r, &path).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{path}: {}", reply.text());
        let body = reply.json();
        assert_eq!(body["parameter"], parameter, "{path}: {body}");
        let text = body["message"].as_str().unwrap();
        assert!(text.contains(message), "{path}: {text}");
        assert!(!text.to_lowercase().contains("select "), "no SQL reaches a client: {text}");
    }
    // An injection attempt inside a literal is only a literal.
    let quoted = format!("/sta/v1.1/Things?$filter={}", enc("name eq 'x''; DROP TABLE sensors; --'"));
    assert_eq!(ok(r, &quoted).await["value"], Value::Array(vec![]));
    assert!(ok(r, "/sta/v1.1/Things?$top=1").await["value"].as_array().is_some_and(|v| v.len() == 1));
    // Unknown ids are 404.
    assert_eq!(get(r, "/sta/v1.1/Things(999999999)").await.status, StatusCode::NOT_FOUND);
    assert_eq!(get(r, "/sta/v1.1/Observations('16-5')").await.status, StatusCode::NOT_FOUND);
    w.service.stop().await;
    Ok(())
}

fn hex_json(s: &str) -> String {
    s.bytes().map(|b| format!("{b:02x}")).collect()
}
