//! The open-data catalogue through the router against the demo city: each
//! dataset's NDC metadata (insta snapshot), the DCAT-AP JSON-LD catalogue's
//! shape, the list of datasets and days, and coverage that leaves out the
//! sensors the registry keeps to itself.

use std::time::Duration;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::Router;
use citygauge_query::downloads_api::{day_start, today};
use citygauge_query::Service;
use citygauge_testkit::city::{self, level, rain};
use citygauge_testkit::{database, query_config};
use serde_json::Value;
use tower::ServiceExt;

async fn get(router: &Router, path: &str) -> (StatusCode, String, Value) {
    let request = Request::get(path).header(header::HOST, "data.example.tw").body(Body::empty()).unwrap();
    let response = router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let content_type =
        response.headers().get(header::CONTENT_TYPE).map(|v| v.to_str().unwrap().to_string()).unwrap_or_default();
    let body = axum::body::to_bytes(response.into_body(), 16 << 20).await.unwrap();
    let json =
        serde_json::from_slice(&body).unwrap_or_else(|e| panic!("{path}: {e}: {}", String::from_utf8_lossy(&body)));
    (status, content_type, json)
}

const TZ: chrono_tz::Tz = chrono_tz::Asia::Taipei;

/// The demo city with its company-owned sewer gauge moved far out of town
/// (had it counted, the bbox would reach it), and readings three days back.
async fn service() -> anyhow::Result<(Service, Router, citygauge_testkit::TestDatabase)> {
    let db = database().await?;
    let store = city::demo_city(&db.url).await?;
    db.client()
        .await?
        .execute(
            "UPDATE sensors SET location = ST_SetSRID(ST_MakePoint(121.9, 25.2), 4326) WHERE id = 'kh-sw-0010'",
            &[],
        )
        .await?;
    let first = today(TZ) - chrono::Duration::days(3);
    let at = |days: i64, s: i64| day_start(TZ, first + chrono::Duration::days(days)) + chrono::Duration::seconds(s);
    city::write(
        &store,
        vec![
            level("kh-wl-0001", at(0, 3_600), 2.0),
            level("kh-wl-0001", at(2, 3_600), 2.1),
            // The private gauge's data reaches further back: not counted either.
            level("kh-sw-0010", at(-5, 3_600), 0.2),
            rain("kh-rg-0001", at(1, 600), 1.5, 600),
        ],
    )
    .await?;
    // Days back are below the rollups' watermark until materialised (the
    // ingest daemon does it in its maintenance).
    store.refresh_rollups().await?;
    let config = query_config(&db.url, &["--opendata-contact-email", "opendata@kcg.example.tw"])?;
    let service = Service::start(config).await?;
    service.wait_ready(Duration::from_secs(60)).await?;
    let router = service.router();
    Ok((service, router, db))
}

#[tokio::test]
async fn metadata_carries_the_ndc_fields_and_public_coverage() -> anyhow::Result<()> {
    let (service, router, db) = service().await?;
    let (status, _, metadata) = get(&router, "/opendata/v1/datasets/water_level").await;
    assert_eq!(status, StatusCode::OK, "{metadata}");

    let first = today(TZ) - chrono::Duration::days(3);
    assert_eq!(metadata["temporal_coverage"]["start"], first.to_string(), "the private gauge's older day is left out");
    assert_eq!(metadata["temporal_coverage"]["end"], (first + chrono::Duration::days(2)).to_string());
    let public = "SELECT count(*) FROM sensors WHERE kind = 'water_level' AND public AND status = 'active'";
    let expected = db.count(public).await?;
    assert_eq!(metadata["spatial_coverage"]["sensors"], expected);
    assert!(expected < db.count("SELECT count(*) FROM sensors WHERE kind = 'water_level'").await?);
    let bbox: Vec<f64> = serde_json::from_value(metadata["spatial_coverage"]["bbox"].clone())?;
    assert!(bbox[2] < 121.0 && bbox[3] < 23.5, "the far-away private gauge is outside: {bbox:?}");
    let max_lon = "SELECT (ST_XMax(ST_Extent(location)::box3d) * 1e6)::bigint FROM sensors
                    WHERE kind = 'water_level' AND public AND status = 'active'";
    assert_eq!((bbox[2] * 1e6).round() as i64, db.count(max_lon).await?);

    let fields: Vec<&str> =
        metadata["fields"].as_array().unwrap().iter().map(|f| f["name"].as_str().unwrap()).collect();
    assert_eq!(fields, ["sensor_id", "ts", "level_m", "quality", "quality_reasons"]);
    let settings = {
        let mut s = insta::Settings::clone_current();
        s.set_snapshot_path("snapshots");
        s.set_prepend_module_to_snapshot(false);
        s
    };
    settings.bind(|| {
        insta::assert_json_snapshot!("opendata_metadata_water_level", metadata, {
            ".temporal_coverage.start" => "[day]", ".temporal_coverage.end" => "[day]"
        });
    });
    let (_, _, air) = get(&router, "/opendata/v1/datasets/air_quality").await;
    let units: Vec<&str> = air["fields"].as_array().unwrap().iter().filter_map(|f| f["unit"].as_str()).collect();
    assert_eq!(units, ["μg/m³", "μg/m³", "ppb", "ppb", "ppm", "ppb", "°C", "%"]);
    assert_eq!(air["temporal_coverage"]["start"], Value::Null, "no readings yet");
    assert_eq!(get(&router, "/opendata/v1/datasets/lava").await.0, StatusCode::BAD_REQUEST);

    // The list of datasets, and of a dataset's days (newest first).
    let (_, _, list) = get(&router, "/opendata/v1/datasets").await;
    let kinds: Vec<&str> = list["datasets"].as_array().unwrap().iter().map(|d| d["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["rainfall", "water_level", "flood_depth", "air_quality", "streetlight"]);
    assert_eq!(list["catalog"], "http://data.example.tw/opendata/v1/catalog.jsonld");
    let (_, _, days) = get(&router, "/opendata/v1/datasets/water_level/days").await;
    let days = days["days"].as_array().unwrap();
    assert_eq!(days.len(), 3);
    let last = first + chrono::Duration::days(2);
    assert_eq!(days[0]["csv"], format!("http://data.example.tw/opendata/v1/water_level/{last}.csv"));
    service.stop().await;
    Ok(())
}

#[tokio::test]
async fn the_dcat_catalogue_is_harvestable_json_ld() -> anyhow::Result<()> {
    let (service, router, _db) = service().await?;
    let (status, content_type, catalog) = get(&router, "/opendata/v1/catalog.jsonld").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(content_type, "application/ld+json");
    for prefix in ["dcat", "dct", "foaf", "vcard", "xsd"] {
        assert!(catalog["@context"][prefix].as_str().unwrap().starts_with("http://"), "{prefix}");
    }
    assert_eq!(catalog["@type"], "dcat:Catalog");
    assert_eq!(catalog["@id"], "http://data.example.tw/opendata/v1/catalog.jsonld");
    assert_eq!(catalog["dct:license"]["@id"], "https://data.gov.tw/license");
    assert_eq!(catalog["dct:publisher"]["@type"], "foaf:Agent");
    let datasets = catalog["dcat:dataset"].as_array().unwrap();
    assert_eq!(datasets.len(), 5);
    for dataset in datasets {
        assert_eq!(dataset["@type"], "dcat:Dataset");
        assert!(dataset["@id"].as_str().unwrap().starts_with("http://data.example.tw/opendata/v1/datasets/"));
        assert_eq!(dataset["dct:license"]["@id"], "https://data.gov.tw/license");
        assert_eq!(dataset["dct:publisher"]["@id"], catalog["dct:publisher"]["@id"]);
        let languages: Vec<&str> =
            dataset["dct:title"].as_array().unwrap().iter().map(|t| t["@language"].as_str().unwrap()).collect();
        assert_eq!(languages, ["en", "zh-TW"]);
        assert_eq!(dataset["dcat:contactPoint"]["@type"], "vcard:Organization");
        assert_eq!(dataset["dcat:contactPoint"]["vcard:hasEmail"]["@id"], "mailto:opendata@kcg.example.tw");
        assert_eq!(dataset["dct:temporal"]["@type"], "dct:PeriodOfTime");
        assert!(dataset["dcat:keyword"].as_array().unwrap().len() >= 4);
        let distributions = dataset["dcat:distribution"].as_array().unwrap();
        assert_eq!(distributions.len(), 2);
        for distribution in distributions {
            assert_eq!(distribution["@type"], "dcat:Distribution");
            assert!(distribution["dcat:accessURL"]["@id"].as_str().unwrap().ends_with("/days"));
            assert!(distribution["dct:format"]["@id"].as_str().unwrap().contains("file-type/"));
        }
    }
    let water = datasets.iter().find(|d| d["dct:identifier"] == "citygauge-water-level").unwrap();
    let wkt = water["dct:spatial"]["dcat:bbox"]["@value"].as_str().unwrap();
    assert!(wkt.starts_with("POLYGON((") && !wkt.contains("121.9"), "{wkt}");
    let first = today(TZ) - chrono::Duration::days(3);
    assert_eq!(water["dct:temporal"]["dcat:startDate"]["@value"], first.to_string());
    let last = first + chrono::Duration::days(2);
    let csv = &water["dcat:distribution"][0];
    assert_eq!(csv["dcat:downloadURL"]["@id"], format!("http://data.example.tw/opendata/v1/water_level/{last}.csv"));
    assert_eq!(csv["dcat:mediaType"]["@id"], "http://www.iana.org/assignments/media-types/text/csv");
    let air = datasets.iter().find(|d| d["dct:identifier"] == "citygauge-air-quality").unwrap();
    assert!(air["dcat:distribution"][0].get("dcat:downloadURL").is_none(), "no day with data yet");
    service.stop().await;
    Ok(())
}

/// The served OpenAPI document lists every open-data route: each entity set
/// the SensorThings root names, in both versions, with the query options and
/// the 400/404/429 answers, and each `/opendata/v1` route the router serves.
#[tokio::test]
async fn the_openapi_document_lists_the_open_data_routes() -> anyhow::Result<()> {
    let (service, router, _db) = service().await?;
    let (status, _, doc) = get(&router, "/api/v1/openapi.json").await;
    assert_eq!(status, StatusCode::OK);
    let paths = &doc["paths"];
    let (_, _, root) = get(&router, "/sta/v1.1").await;
    let sets: Vec<&str> = root["value"].as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(sets.len(), 8, "{root}");
    for version in ["v1.1", "v1.0"] {
        assert!(paths[format!("/sta/{version}")]["get"].is_object(), "the {version} root is not documented");
        for set in &sets {
            for path in [format!("/sta/{version}/{set}"), format!("/sta/{version}/{set}({{id}})/{{path}}")] {
                let op = &paths[path.as_str()]["get"];
                assert!(op.is_object(), "{path} is not documented");
                let names: Vec<&str> =
                    op["parameters"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
                for option in ["$filter", "$orderby", "$top", "$skip", "$count", "$select", "$expand", "X-API-Key"] {
                    assert!(names.contains(&option), "{path}: no {option} in {names:?}");
                }
                for code in ["200", "400", "404", "429"] {
                    assert!(op["responses"][code].is_object(), "{path}: no {code}");
                }
            }
            assert!(paths[format!("/sta/{version}/{set}({{id}})")]["get"].is_object(), "{set}(id)");
        }
    }
    assert!(paths.get("/sta/v1.1/MultiDatastreams").is_none(), "not served, not documented");
    for path in [
        "/opendata/v1/datasets",
        "/opendata/v1/datasets/{kind}",
        "/opendata/v1/datasets/{kind}/days",
        "/opendata/v1/catalog.jsonld",
        "/opendata/v1/{kind}/{file}",
    ] {
        assert_eq!(
            paths[path]["get"]["responses"]["429"]["content"]["application/json"]["schema"]["$ref"],
            "#/components/schemas/ErrorBody",
            "{path}"
        );
    }
    // The documented download is served as documented.
    let days = get(&router, "/opendata/v1/datasets/water_level/days").await;
    assert_eq!(days.0, StatusCode::OK, "{}", days.2);
    service.stop().await;
    Ok(())
}
