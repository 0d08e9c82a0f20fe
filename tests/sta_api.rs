//! The SensorThings API (`/sta/v1.1`) through the router against the demo
//! city: the service root, spec-shaped entities (insta snapshots), every
//! kind of resource path, the Civil IoT queries, `dataArray`, and the
//! latest-value cache answering exactly what SQL answers.

mod sta_api_support;

use axum::http::StatusCode;
use serde_json::Value;
use sta_api_support::{enc, get, ok, thing, walk, world, ROOT};

fn snapshot_settings() -> insta::Settings {
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path("snapshots");
    settings.set_prepend_module_to_snapshot(false);
    settings
}

#[tokio::test]
async fn root_entities_links_and_paths() -> anyhow::Result<()> {
    let w = world().await?;
    let r = &w.router;

    let root = ok(r, "/sta/v1.1").await;
    let names: Vec<&str> = root["value"].as_array().unwrap().iter().map(|v| v["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "Things",
            "Locations",
            "HistoricalLocations",
            "Datastreams",
            "Sensors",
            "ObservedProperties",
            "Observations",
            "FeaturesOfInterest"
        ]
    );
    let conformance = root["serverSettings"]["conformance"].as_array().unwrap();
    assert!(conformance.iter().any(|c| c.as_str().unwrap().ends_with("/req/datamodel")));
    assert!(!conformance.iter().any(|c| c.as_str().unwrap().contains("create-update-delete")));
    for set in root["value"].as_array().unwrap() {
        let page = ok(r, set["url"].as_str().unwrap()).await;
        assert!(page["value"].is_array(), "{set}");
    }
    // The same handlers under 1.0, with 1.0 links.
    let v10 = ok(r, "/sta/v1.0/Things?$top=1").await;
    assert!(v10["value"][0]["@iot.selfLink"].as_str().unwrap().starts_with("http://sta.example.org/sta/v1.0/Things("));

    let t = thing(&w.url, "kh-wl-0001").await?;
    let expand =
        enc("Locations,Datastreams($expand=Observations($top=1;$orderby=phenomenonTime desc),ObservedProperty)");
    let river = ok(r, &format!("/sta/v1.1/Things({t})?$expand={expand}")).await;
    let ds = t * 16;
    assert_eq!(river["Datastreams"][0]["@iot.id"], ds);
    assert_eq!(river["Datastreams"][0]["Observations"][0]["result"], 2.41);
    assert_eq!(river["Datastreams"][0]["unitOfMeasurement"]["symbol"], "m");
    assert_eq!(river["properties"]["name_zh"], "愛河中正橋水位站");
    let mut observation =
        ok(r, &format!("/sta/v1.1/Datastreams({ds})/Observations?$orderby=phenomenonTime%20desc&$top=1")).await;
    // The token encodes the reading's time.
    let next = observation.as_object_mut().unwrap().remove("@iot.nextLink").unwrap();
    assert!(next.as_str().unwrap().starts_with(&format!(
        "{ROOT}/Datastreams({ds})/Observations?$orderby=phenomenonTime%20desc&$top=1&$skiptoken="
    )));
    // Ids come from a sequence whose position depends on what ran before in
    // the database (a conflicting upsert takes a number too): the snapshots
    // name them by their relation to the Thing's.
    let (mut river_ids, mut observation_ids) = (river.clone(), observation.clone());
    neutral_ids(&mut river_ids, t);
    neutral_ids(&mut observation_ids, t);
    let settings = snapshot_settings();
    settings.bind(|| {
        insta::assert_json_snapshot!("sta_thing_river", river_ids, {
            ".**.phenomenonTime" => "[ts]", ".**.resultTime" => "[ts]", ".Datastreams[].Observations[][\"@iot.id\"]" => "[id]",
            ".Datastreams[].Observations[][\"@iot.selfLink\"]" => "[link]",
            ".Datastreams[].Observations[][\"Datastream@iot.navigationLink\"]" => "[link]",
            ".Datastreams[].Observations[][\"FeatureOfInterest@iot.navigationLink\"]" => "[link]",
            ".Datastreams[][\"Observations@iot.nextLink\"]" => "[link]"
        });
        insta::assert_json_snapshot!("sta_observation_page", observation_ids, {
            ".value[].phenomenonTime" => "[ts]", ".value[].resultTime" => "[ts]", ".value[][\"@iot.id\"]" => "[id]",
            ".value[][\"@iot.selfLink\"]" => "[link]", ".value[][\"Datastream@iot.navigationLink\"]" => "[link]",
            ".value[][\"FeatureOfInterest@iot.navigationLink\"]" => "[link]"
        });
    });

    // Every link of the Thing and of its expansions resolves.
    let mut links = Vec::new();
    collect_links(&river, &mut links);
    assert!(links.len() > 10, "{links:?}");
    for link in &links {
        assert_eq!(get(r, link).await.status, StatusCode::OK, "{link}");
    }

    // Paths: property, $value, $ref, navigation from one entity, Observation ids.
    assert_eq!(ok(r, &format!("/sta/v1.1/Things({t})/name")).await["name"], "Love River at Zhongzheng Bridge");
    let value = get(r, &format!("/sta/v1.1/Things({t})/description/$value")).await;
    assert_eq!(value.text(), "愛河中正橋水位站");
    assert!(value.content_type.starts_with("text/plain"));
    let refs = ok(r, &format!("/sta/v1.1/Things({t})/Datastreams/$ref")).await;
    assert_eq!(refs["value"][0]["@iot.selfLink"], format!("{ROOT}/Datastreams({ds})"));
    assert_eq!(ok(r, &format!("/sta/v1.1/Things({t})/$ref")).await["@iot.selfLink"], format!("{ROOT}/Things({t})"));
    let obs_id = observation["value"][0]["@iot.id"].as_str().unwrap().to_string();
    assert!(obs_id.starts_with(&format!("{ds}-")));
    let by_id = ok(r, &format!("/sta/v1.1/Observations('{obs_id}')")).await;
    assert_eq!(by_id["result"], 2.41);
    let again = ok(r, &format!("/sta/v1.1/Datastreams({ds})/Observations('{obs_id}')")).await;
    assert_eq!(again["@iot.id"], obs_id, "ids are stable between requests");
    let up = ok(r, &format!("/sta/v1.1/Observations('{obs_id}')/Datastream/Thing")).await;
    assert_eq!(up["@iot.id"], t);
    assert_eq!(ok(r, &format!("/sta/v1.1/Datastreams({ds})/ObservedProperty")).await["name"], "Water level");
    let foi = ok(r, &format!("/sta/v1.1/FeaturesOfInterest({t})/Observations?$count=true")).await;
    assert_eq!(foi["@iot.count"], 2);
    let sensor = ok(r, &format!("/sta/v1.1/Sensors({t})/Datastreams")).await;
    assert_eq!(sensor["value"][0]["@iot.id"], ds);
    let location = ok(r, &format!("/sta/v1.1/Locations({t})")).await;
    assert_eq!(location["location"]["type"], "Point");
    assert_eq!(location["encodingType"], "application/geo+json");
    w.service.stop().await;
    Ok(())
}

fn collect_links(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                if k.ends_with("@iot.navigationLink") || k == "@iot.selfLink" {
                    out.push(v.as_str().unwrap().to_string());
                }
                collect_links(v, out);
            }
        }
        Value::Array(a) => a.iter().for_each(|v| collect_links(v, out)),
        _ => {}
    }
}

#[tokio::test]
async fn civil_iot_queries_and_the_cache() -> anyhow::Result<()> {
    let w = world().await?;
    let r = &w.router;
    let db = sta_api_support::sql(&w.url).await?;
    let rivers: i64 = db
        .query_one("SELECT count(*) FROM sensors WHERE kind = 'water_level' AND public AND status = 'active'", &[])
        .await?
        .get(0);

    // The first Civil IoT query: water levels of an authority, by description.
    let q = format!(
        "/sta/v1.1/Datastreams?$count=true&$expand={}&$filter={}",
        enc("Thing,Thing/Locations,Observations($orderby=phenomenonTime desc;$top=1)"),
        enc("Thing/properties/authority_type eq '水利局' and substringof('水位',description)")
    );
    let first = ok(r, &q).await;
    assert_eq!(first["@iot.count"], rivers);
    let all = walk(r, &q).await;
    assert_eq!(all.len() as i64, rivers, "@iot.count equals what nextLinks reach");
    for ds in &all {
        assert!(ds["description"].as_str().unwrap().contains("水位"));
        assert_eq!(ds["Thing"]["properties"]["authority_type"], "水利局");
        assert_eq!(ds["Thing"]["Locations"][0]["location"]["type"], "Point");
    }
    let t = thing(&w.url, "kh-wl-0001").await?;
    let river = all.iter().find(|d| d["@iot.id"] == t * 16).expect("the river gauge");
    assert_eq!(river["Observations"][0]["result"], 2.41);

    // The second: Things with their Locations and latest Observations.
    let aq = thing(&w.url, "kh-aq-0001").await?;
    let q2 = format!(
        "/sta/v1.1/Things?$expand={}&$filter={}",
        enc("Locations,Datastreams($expand=Observations($top=1;$orderby=phenomenonTime desc))"),
        enc("properties/sensor_id eq 'kh-aq-0001'")
    );
    let things = ok(r, &q2).await;
    assert_eq!(things["value"].as_array().unwrap().len(), 1);
    let station = &things["value"][0];
    assert_eq!(station["@iot.id"], aq);
    assert_eq!(station["Datastreams"].as_array().unwrap().len(), 8);
    let pm25 = station["Datastreams"].as_array().unwrap().iter().find(|d| d["@iot.id"] == aq * 16).unwrap();
    assert_eq!(pm25["Observations"][0]["result"], 40.0, "the newest of the scene's readings");
    let gases = station["Datastreams"].as_array().unwrap().iter().find(|d| d["@iot.id"] == aq * 16 + 2).unwrap();
    assert_eq!(gases["Observations"], Value::Array(vec![]), "no ozone readings");

    // The cache answers what SQL answers: the same expansion with a filter
    // that holds for every row must go to SQL and give the same JSON.
    let via = |filter: &str| {
        format!(
            "/sta/v1.1/Datastreams?$filter={}&$expand={}",
            enc("Thing/properties/district eq 'Sanmin' and Thing/properties/kind ne 'streetlight'"),
            enc(&format!("Observations($orderby=phenomenonTime desc;$top=1{filter})"))
        )
    };
    // The nested nextLinks differ by the filter they carry (and the cache
    // cannot tell whether older readings exist); paging is tested apart.
    let without_next = |mut all: Vec<Value>| {
        all.iter_mut().for_each(|d| drop(d.as_object_mut().unwrap().remove("Observations@iot.nextLink")));
        all
    };
    let cached = without_next(walk(r, &via("")).await);
    let from_sql = without_next(walk(r, &via(";$filter=result ne null")).await);
    assert!(cached.iter().filter(|d| d["Observations"].as_array().is_some_and(|o| !o.is_empty())).count() >= 3);
    assert_eq!(cached, from_sql);

    // Chinese text round-trips in filters and results.
    let zh = ok(r, &format!("/sta/v1.1/Things?$filter={}", enc("properties/name_zh eq '愛河中正橋水位站'"))).await;
    assert_eq!(zh["value"][0]["description"], "愛河中正橋水位站");
    w.service.stop().await;
    Ok(())
}

#[tokio::test]
async fn filters_orders_and_data_array() -> anyhow::Result<()> {
    let w = world().await?;
    let r = &w.router;
    let rain = thing(&w.url, "kh-rg-0001").await? * 16;

    let q = format!(
        "/sta/v1.1/Datastreams({rain})/Observations?$filter={}&$orderby={}&$count=true",
        enc("result gt 5 and phenomenonTime lt now()"),
        enc("result desc")
    );
    let page = ok(r, &q).await;
    let results: Vec<f64> = page["value"].as_array().unwrap().iter().map(|o| o["result"].as_f64().unwrap()).collect();
    assert_eq!(page["@iot.count"], results.len());
    assert!(!results.is_empty() && results.iter().all(|x| *x > 5.0), "{results:?}");
    assert!(results.windows(2).all(|p| p[0] >= p[1]), "sorted: {results:?}");
    assert_eq!(page["value"][0]["parameters"]["interval_s"], 600);

    // dataArray: one block for the Datastream, components and rows.
    let da = ok(r, &format!("/sta/v1.1/Datastreams({rain})/Observations?$resultFormat=dataArray&$top=50")).await;
    let block = &da["value"][0];
    assert_eq!(block["Datastream@iot.navigationLink"], format!("{ROOT}/Datastreams({rain})"));
    assert_eq!(block["components"][0], "id");
    assert_eq!(block["dataArray@iot.count"], 18);
    assert_eq!(block["dataArray"].as_array().unwrap().len(), 18);
    let picked = ok(
        r,
        &format!(
            "/sta/v1.1/Observations?$resultFormat=dataArray&$select=result,id&$filter={}",
            enc(&format!("Datastream/id eq {rain}"))
        ),
    )
    .await;
    assert_eq!(picked["value"][0]["components"], serde_json::json!(["id", "result"]));

    // The MQTT extension's rendering is the HTTP API's.
    let newest =
        ok(r, &format!("/sta/v1.1/Datastreams({rain})/Observations?$top=1&$orderby=phenomenonTime%20desc")).await;
    let db = sta_api_support::sql(&w.url).await?;
    let row = db
        .query_one(
            "SELECT ts, rain_mm, interval_s, quality, coalesce(quality_reasons, '{}') FROM rainfall \
             WHERE sensor_id = 'kh-rg-0001' ORDER BY ts DESC LIMIT 1",
            &[],
        )
        .await?;
    let mut values = serde_json::Map::new();
    values.insert("rain_mm".into(), row.get::<_, f64>(1).into());
    values.insert("interval_s".into(), row.get::<_, i32>(2).into());
    let (quality, reasons): (String, Vec<String>) = (row.get(3), row.get(4));
    let published = citygauge_query::sta_api::observations_of_reading(
        ROOT,
        rain / 16,
        citygauge_domain::Kind::Rainfall,
        row.get(0),
        &values,
        &quality,
        &reasons,
    );
    assert_eq!(published.len(), 1, "interval_s is a parameter, not a Datastream");
    assert_eq!(published[0].0, rain);
    assert_eq!(Value::Object(published[0].1.clone()), newest["value"][0]);

    // $select, $skip, geo and string functions.
    let sel = ok(r, "/sta/v1.1/Things?$select=name&$top=2").await;
    assert!(sel["value"][0].as_object().unwrap().keys().eq(["name"].iter()));
    let all_rain = ok(r, &format!("/sta/v1.1/Datastreams({rain})/Observations?$orderby=phenomenonTime")).await;
    let skipped =
        ok(r, &format!("/sta/v1.1/Datastreams({rain})/Observations?$orderby=phenomenonTime&$skip=3&$top=2")).await;
    assert_eq!(skipped["value"][0], all_rain["value"][3]);
    assert_eq!(skipped["value"][1], all_rain["value"][4]);
    let near = ok(
        r,
        &format!(
            "/sta/v1.1/Locations?$filter={}",
            enc("geo.distance(location, geography'POINT(120.288421 22.628323)') lt 0.0001")
        ),
    )
    .await;
    assert_eq!(near["value"][0]["@iot.id"], thing(&w.url, "kh-wl-0001").await?);
    let ops = ok(r, &format!("/sta/v1.1/ObservedProperties?$filter={}", enc("startswith(tolower(name), 'pm')"))).await;
    assert_eq!(ops["value"].as_array().unwrap().len(), 2);
    w.service.stop().await;
    Ok(())
}

/// Every Observation of a Datastream: one page, or the test is wrong.
async fn direct(r: &axum::Router, ds: &Value, query: &str) -> Vec<Value> {
    let page = ok(r, &format!("/sta/v1.1/Datastreams({ds})/Observations?{query}&$top=1000")).await;
    assert!(page["@iot.nextLink"].is_null());
    page["value"].as_array().unwrap().clone()
}

/// An expanded collection plus everything its `Observations@iot.nextLink` leads to.
async fn expanded_then_walked(r: &axum::Router, ds: &Value) -> (Vec<Value>, bool) {
    let mut all = ds["Observations"].as_array().unwrap().clone();
    let link = ds["Observations@iot.nextLink"].as_str();
    if let Some(link) = link {
        assert!(link.starts_with(&format!("{ROOT}/Datastreams({})/Observations?", ds["@iot.id"])), "{link}");
        all.extend(walk(r, link).await);
    }
    (all, link.is_some())
}

#[tokio::test]
async fn expanded_collections_continue_with_next_links() -> anyhow::Result<()> {
    let w = world().await?;
    let r = &w.router;

    // Many parents in one request, nested options the links must carry.
    let options = ["$filter=result gt 2.0", "$orderby=phenomenonTime desc", "$select=id,result"];
    let nested = format!("{};$top=3", options.join(";"));
    let q = format!(
        "/sta/v1.1/Datastreams?$filter={}&$expand={}",
        enc("Thing/properties/sensor_id eq 'kh-rg-0001' or Thing/properties/sensor_id eq 'kh-wl-0001'"),
        enc(&format!("Observations({nested})"))
    );
    let (mut linked, mut short) = (0, 0);
    for ds in walk(r, &q).await {
        let expected = direct(r, &ds["@iot.id"], &enc_query(&options.join("&"))).await;
        let (got, has_link) = expanded_then_walked(r, &ds).await;
        assert_eq!(got, expected, "every child exactly once, in order: {}", ds["@iot.id"]);
        assert_eq!(has_link, expected.len() > 3, "a link exactly when children are cut: {}", ds["@iot.id"]);
        if has_link {
            linked += 1
        } else if !expected.is_empty() {
            short += 1
        }
    }
    assert!(linked >= 1 && short >= 1, "linked {linked}, short {short}");

    // The latest Observation from the cache links to the older ones too.
    let aq = thing(&w.url, "kh-aq-0001").await?;
    let latest = enc("Observations($top=1;$orderby=phenomenonTime desc)");
    let pm25 = ok(r, &format!("/sta/v1.1/Datastreams({})?$expand={latest}", aq * 16)).await;
    let (got, has_link) = expanded_then_walked(r, &pm25).await;
    assert!(has_link);
    assert_eq!(got.len(), 36);
    assert_eq!(got, direct(r, &pm25["@iot.id"], &enc_query("$orderby=phenomenonTime desc")).await);
    w.service.stop().await;
    Ok(())
}

/// `enc` of each value of `k=v&k=v`.
fn enc_query(q: &str) -> String {
    q.split('&')
        .map(|kv| kv.split_once('=').map_or(kv.to_string(), |(k, v)| format!("{k}={}", enc(v))))
        .collect::<Vec<_>>()
        .join("&")
}

/// Replaces the Thing id `t` and its Datastreams' ids (`t * 16 + k`) in ids
/// and links with `T` and `T*16+k`.
fn neutral_ids(value: &mut serde_json::Value, t: i64) {
    let name = |id: i64| match id - t * 16 {
        k if (0..16).contains(&k) => Some(format!("T*16+{k}")),
        _ if id == t => Some("T".to_string()),
        _ => None,
    };
    match value {
        serde_json::Value::Object(map) => {
            for (key, v) in map.iter_mut() {
                match (key.as_str(), v.as_i64().and_then(name)) {
                    ("@iot.id", Some(named)) => *v = serde_json::Value::String(named),
                    _ => neutral_ids(v, t),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(|v| neutral_ids(v, t)),
        serde_json::Value::String(text) => {
            for k in 0..16 {
                *text = text.replace(&format!("({})", t * 16 + k), &format!("(T*16+{k})"));
            }
            *text = text.replace(&format!("({t})"), "(T)");
        }
        _ => {}
    }
}

/// A Datastream's `phenomenonTime` and `resultTime`: `"<first>/<last>"` of
/// its Observations, from the `(sensor_id, ts)` probes or the cache, in
/// every place a Datastream is rendered; omitted without Observations;
/// never for a sensor that is not public.
#[tokio::test]
async fn datastream_times_span_their_observations() -> anyhow::Result<()> {
    let w = world().await?;
    let r = &w.router;
    let db = sta_api_support::sql(&w.url).await?;
    let (river, aq) = (thing(&w.url, "kh-wl-0001").await?, thing(&w.url, "kh-aq-0001").await?);
    // Ozone only in an older reading stored behind the cache's back: both
    // of its ends come from the probes (the cached newest has no ozone).
    db.execute(
        "INSERT INTO air_quality (sensor_id, ts, o3_ppb) VALUES ('kh-aq-0001', now() - interval '100 minutes', 31)",
        &[],
    )
    .await?;
    let span = |table: &str, sensor: &str, column: &str| {
        let sql = format!(
            "SELECT to_char(min(ts) AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') || '/' || \
             to_char(max(ts) AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') \
             FROM {table} WHERE sensor_id = '{sensor}' AND {column} IS NOT NULL"
        );
        let db = &db;
        async move { db.query_one(sql.as_str(), &[]).await.map(|row| row.get::<_, Option<String>>(0)) }
    };
    let level = span("water_level", "kh-wl-0001", "level_m").await?.expect("the river has readings");
    let ozone = span("air_quality", "kh-aq-0001", "o3_ppb").await?.expect("ozone was stored");
    assert!(level.contains('/'), "{level}");

    let one = ok(r, &format!("/sta/v1.1/Datastreams({})", river * 16)).await;
    assert_eq!(one["phenomenonTime"], level.as_str(), "{one}");
    assert_eq!(one["resultTime"], level.as_str(), "{one}");
    let property = ok(r, &format!("/sta/v1.1/Datastreams({})/phenomenonTime", river * 16)).await;
    assert_eq!(property["phenomenonTime"], level.as_str());
    let value = get(r, &format!("/sta/v1.1/Datastreams({})/resultTime/$value", river * 16)).await;
    assert_eq!(value.text(), level);
    let selected = ok(r, &format!("/sta/v1.1/Datastreams({})?$select=name", river * 16)).await;
    assert!(selected.get("phenomenonTime").is_none(), "{selected}");

    // In collections and expansions, both directions.
    let station = ok(r, &format!("/sta/v1.1/Things({aq})?$expand=Datastreams($select=id,phenomenonTime)")).await;
    let by_column = |k: i64| station["Datastreams"].as_array().unwrap().iter().find(|d| d["@iot.id"] == aq * 16 + k);
    assert_eq!(by_column(2).unwrap()["phenomenonTime"], ozone.as_str(), "{station}");
    let pm25 = span("air_quality", "kh-aq-0001", "pm2_5_ugm3").await?.unwrap();
    assert_eq!(by_column(0).unwrap()["phenomenonTime"], pm25.as_str(), "{station}");
    // Sulfur dioxide was never measured: no interval at all.
    assert!(by_column(5).unwrap().get("phenomenonTime").is_none(), "{station}");
    let listed = ok(r, &format!("/sta/v1.1/Things({river})/Datastreams")).await;
    assert_eq!(listed["value"][0]["phenomenonTime"], level.as_str());
    let up = ok(r, &format!("/sta/v1.1/Datastreams({})/Observations?$top=1&$expand=Datastream", river * 16)).await;
    assert_eq!(up["value"][0]["Datastream"]["resultTime"], level.as_str(), "{up}");

    // A sensor made private: no Datastream of it, hence no interval, anywhere.
    db.execute("UPDATE sensors SET public = false WHERE id = 'kh-wl-0001'", &[]).await?;
    let all = walk(r, "/sta/v1.1/Datastreams?$select=id,phenomenonTime&$top=500").await;
    assert!(all.iter().all(|d| d["@iot.id"] != river * 16), "a private sensor's Datastream is listed");
    assert!(all.iter().any(|d| d["phenomenonTime"] == ozone.as_str()), "the public ones keep theirs");
    w.service.stop().await;
    Ok(())
}
