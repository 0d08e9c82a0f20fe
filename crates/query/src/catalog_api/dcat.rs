//! The DCAT-AP catalogue as JSON-LD: a `dcat:Catalog` with a `dcat:Dataset`
//! per kind and a `dcat:Distribution` per file format. A distribution's
//! `dcat:accessURL` is the dataset's list of day files and its
//! `dcat:downloadURL` the latest closed day's file; `dct:description` states
//! the URL pattern. Written for ckanext-dcat's harvester (rdflib reads it).

use citygauge_domain::Kind;
use serde_json::{json, Value};

use super::texts::{self, Text, LICENSE_URL};
use super::Coverage;
use crate::open_data::OpenDataConfig;

fn langs(text: Text) -> Value {
    json!([{"@value": text.en, "@language": "en"}, {"@value": text.zh, "@language": "zh-TW"}])
}

fn id(uri: impl Into<String>) -> Value {
    json!({"@id": uri.into()})
}

fn date(day: Option<chrono::NaiveDate>) -> Value {
    day.map_or(Value::Null, |d| json!({"@value": d.to_string(), "@type": "xsd:date"}))
}

/// The bbox as a WKT polygon (GeoDCAT-AP's `dcat:bbox`).
fn wkt([x0, y0, x1, y1]: [f64; 4]) -> String {
    format!("POLYGON(({x0} {y0},{x1} {y0},{x1} {y1},{x0} {y1},{x0} {y0}))")
}

pub fn context() -> Value {
    json!({
        "dcat": "http://www.w3.org/ns/dcat#",
        "dct": "http://purl.org/dc/terms/",
        "foaf": "http://xmlns.com/foaf/0.1/",
        "vcard": "http://www.w3.org/2006/vcard/ns#",
        "xsd": "http://www.w3.org/2001/XMLSchema#",
        "locn": "http://www.w3.org/ns/locn#",
        "gsp": "http://www.opengis.net/ont/geosparql#",
    })
}

/// `today`: the city's date (its file still grows, so it is never the download URL).
pub fn catalog(config: &OpenDataConfig, datasets: &[(Kind, Coverage)], base: &str, today: chrono::NaiveDate) -> Value {
    let publisher = json!({
        "@id": format!("{base}/opendata/v1/catalog.jsonld#publisher"),
        "@type": "foaf:Agent",
        "foaf:name": [
            {"@value": config.opendata_publisher, "@language": "en"},
            {"@value": config.opendata_publisher_zh, "@language": "zh-TW"},
        ],
    });
    let contact = json!({
        "@type": "vcard:Organization",
        "vcard:fn": config.opendata_contact_name,
        "vcard:hasEmail": id(format!("mailto:{}", config.opendata_contact_email)),
    });
    let datasets: Vec<Value> =
        datasets.iter().map(|(kind, coverage)| dataset(*kind, coverage, base, &publisher, &contact, today)).collect();
    json!({
        "@context": context(),
        "@id": format!("{base}/opendata/v1/catalog.jsonld"),
        "@type": "dcat:Catalog",
        "dct:title": langs(Text { en: "City sensor open data", zh: "城市感測器開放資料" }),
        "dct:description": langs(Text {
            en: "Readings of the city's public sensors: one file per kind and day, CSV and JSON, and an OGC SensorThings API.",
            zh: "本市公開感測器之觀測資料：每類每日一檔（CSV、JSON），並提供 OGC SensorThings API。",
        }),
        "dct:publisher": publisher,
        "dct:license": id(LICENSE_URL),
        "dct:language": [id("http://publications.europa.eu/resource/authority/language/ENG"),
                         id("http://publications.europa.eu/resource/authority/language/ZHO")],
        "foaf:homepage": id(format!("{base}/opendata/v1/datasets")),
        "dcat:dataset": datasets,
    })
}

fn dataset(
    kind: Kind,
    coverage: &Coverage,
    base: &str,
    publisher: &Value,
    contact: &Value,
    today: chrono::NaiveDate,
) -> Value {
    let text = texts::dataset(kind);
    let landing = format!("{base}/opendata/v1/datasets/{kind}");
    let days = format!("{landing}/days");
    let distributions: Vec<Value> = [("CSV", "csv", "text/csv"), ("JSON", "json", "application/json")]
        .into_iter()
        .map(|(name, extension, media)| {
            let mut distribution = json!({
                "@id": format!("{landing}#{extension}"),
                "@type": "dcat:Distribution",
                "dct:title": format!("{} ({name}, one file per day)", text.title.en),
                "dct:description": format!(
                    "One file per day of the city's time zone: {base}/opendata/v1/{kind}/YYYY-MM-DD.{extension}; the list of days is at the access URL."
                ),
                "dcat:accessURL": id(days.clone()),
                "dct:format": id(format!("http://publications.europa.eu/resource/authority/file-type/{name}")),
                "dcat:mediaType": id(format!("http://www.iana.org/assignments/media-types/{media}")),
                "dct:license": id(LICENSE_URL),
            });
            // The latest closed day (today's file still grows).
            let latest = coverage.last_day.map(|last| {
                if last >= today { last.pred_opt().unwrap_or(last) } else { last }
            });
            if let (Some(latest), Some(first)) = (latest, coverage.first_day) {
                if latest >= first {
                    distribution["dcat:downloadURL"] = id(format!("{base}/opendata/v1/{kind}/{latest}.{extension}"));
                }
            }
            distribution
        })
        .collect();
    let mut dataset = json!({
        "@id": landing,
        "@type": "dcat:Dataset",
        "dct:identifier": super::ndc::identifier(kind),
        "dct:title": langs(text.title),
        "dct:description": langs(text.description),
        "dcat:keyword": text.keywords.iter().flat_map(|k| [
            json!({"@value": k.en, "@language": "en"}), json!({"@value": k.zh, "@language": "zh-TW"})
        ]).collect::<Vec<_>>(),
        "dcat:theme": id(text.theme_uri),
        "dct:accrualPeriodicity": id(text.frequency_uri),
        "dct:publisher": id(publisher["@id"].as_str().unwrap_or_default()),
        "dct:license": id(LICENSE_URL),
        "dcat:contactPoint": contact,
        "dcat:landingPage": id(landing.clone()),
        "dcat:distribution": distributions,
        "dct:temporal": {
            "@type": "dct:PeriodOfTime",
            "dcat:startDate": date(coverage.first_day),
            "dcat:endDate": date(coverage.last_day),
        },
    });
    if let Some(bbox) = coverage.bbox {
        dataset["dct:spatial"] = json!({
            "@type": "dct:Location",
            "dcat:bbox": {"@value": wkt(bbox), "@type": "gsp:wktLiteral"},
        });
    }
    dataset
}
