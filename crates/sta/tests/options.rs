//! Query strings: the Civil IoT queries, nesting, decoding, limits.

use citygauge_sta::{validate, EntityType, QueryOptions, ResultFormat, StaError};

fn q(raw: &str) -> QueryOptions {
    QueryOptions::from_query_string(raw).unwrap_or_else(|e| panic!("{raw}: {e}"))
}

fn bad(raw: &str) -> StaError {
    QueryOptions::from_query_string(raw).expect_err(raw)
}

const CIVIL_IOT_1: &str = "$expand=Thing,Thing/Locations,Observations($orderby=phenomenonTime%20desc;$top=1)\
&$filter=Thing/properties/authority_type%20eq%20'%E6%B0%B4%E5%88%A9%E7%BD%B2'%20and%20substringof('%E6%B0%B4%E4%BD%8D',description)";
const CIVIL_IOT_2: &str = "$expand=Locations,Datastreams($expand=Observations($top=1;$orderby=phenomenonTime+desc))";

#[test]
fn civil_iot_datastreams_query() {
    let o = q(CIVIL_IOT_1);
    assert_eq!(o.expand.len(), 3);
    assert_eq!(o.expand[1].path, ["Thing", "Locations"]);
    let obs = &o.expand[2];
    assert_eq!(obs.path, ["Observations"]);
    assert_eq!(obs.options.top, Some(1));
    assert!(obs.options.orderby[0].descending);
    assert_eq!(
        o.filter.as_ref().unwrap().to_string(),
        "(Thing/properties/authority_type eq '水利署') and substringof('水位',description)"
    );
    validate(&o, EntityType::Datastream).unwrap();
}

#[test]
fn civil_iot_things_query() {
    let o = q(CIVIL_IOT_2);
    let ds = &o.expand[1];
    assert_eq!(ds.path, ["Datastreams"]);
    let obs = &ds.options.expand[0];
    assert_eq!((obs.options.top, obs.options.orderby.len()), (Some(1), 1));
    assert_eq!(
        o.to_string(),
        "$expand=Locations,Datastreams($expand=Observations($orderby=phenomenonTime desc;$top=1))"
    );
    validate(&o, EntityType::Thing).unwrap();
}

#[test]
fn all_options_and_their_printing() {
    let o = q("$select=id,name,properties/district&$orderby=name,phenomenonTime%20desc&$top=100&$skip=200\
&$count=true&$resultFormat=dataArray&api_key=ignored&$filter=name%20eq%20'a%2Bb'");
    assert_eq!(o.select.as_ref().unwrap().len(), 3);
    assert_eq!(o.orderby.len(), 2);
    assert!(!o.orderby[0].descending && o.orderby[1].descending);
    assert_eq!((o.top, o.skip, o.count), (Some(100), Some(200), Some(true)));
    assert_eq!(o.result_format, Some(ResultFormat::DataArray));
    assert_eq!(o.filter.as_ref().unwrap().to_string(), "name eq 'a+b'");
    // Printing and parsing again gives the same options (for nextLinks).
    let again = QueryOptions::from_pairs(o.to_string().split('&').map(|kv| kv.split_once('=').unwrap())).unwrap();
    assert_eq!(again.to_string(), o.to_string());
}

#[test]
fn chinese_text_round_trips_encoded_or_not() {
    let o = q("$filter=Thing/properties/district+eq+'%E4%B8%89%E6%B0%91%E5%8D%80'");
    assert_eq!(o.filter.unwrap().to_string(), "Thing/properties/district eq '三民區'");
    let o = QueryOptions::from_pairs([("$filter", "Thing/properties/district eq '三民區'")]).unwrap();
    assert_eq!(o.filter.unwrap().to_string(), "Thing/properties/district eq '三民區'");
}

#[test]
fn nested_options_everywhere() {
    let o = q("$expand=Datastreams($select=name;$filter=name%20eq%20'x;)';$count=true;$skip=2;\
$expand=Observations($filter=result%20gt%201))");
    let ds = &o.expand[0].options;
    assert_eq!(ds.filter.as_ref().unwrap().to_string(), "name eq 'x;)'");
    assert_eq!((ds.count, ds.skip), (Some(true), Some(2)));
    assert!(ds.expand[0].options.filter.is_some());
}

#[test]
fn bad_query_strings() {
    assert!(matches!(bad("$frobnicate=1"), StaError::UnknownOption(_)));
    assert!(matches!(bad("$top=1&$top=2"), StaError::DuplicateOption(_)));
    assert!(matches!(bad("$top=-1"), StaError::Syntax { option: "$top", pos: 0, .. }));
    assert!(matches!(bad("$top=10001"), StaError::Limit { limit: "MAX_TOP", .. }));
    assert!(matches!(bad("$skip=99999999999"), StaError::Limit { limit: "MAX_SKIP", .. }));
    assert!(matches!(bad("$count=maybe"), StaError::Syntax { .. }));
    assert!(matches!(bad("$resultFormat=csv"), StaError::Syntax { .. }));
    assert!(matches!(bad("$filter=name%FF"), StaError::QueryString(_)));
    assert!(matches!(bad(&"a".repeat(70_000)), StaError::Limit { limit: "MAX_QUERY_BYTES", .. }));
    let e = bad("$expand=Observations($top=1;$orderby=phenomenonTime%20desc");
    assert_eq!(e.position(), Some(48), "{e}");
    let e = bad("$expand=Observations($top=1,$skip=1)");
    assert!(e.to_string().contains("expected ';' or ')'"), "{e}");
    let e = bad("$expand=Observations($resultFormat=dataArray)");
    assert!(e.to_string().contains("not allowed inside $expand"), "{e}");
    let e = bad("$expand=Observations($filter=length(1)%20eq%201)");
    assert!(matches!(e, StaError::Type { option: "$expand", .. }), "{e}");
    let e = bad("$expand=A($expand=B($expand=C($expand=D($expand=E))))");
    assert!(matches!(e, StaError::Limit { limit: "MAX_EXPAND_DEPTH", .. }), "{e}");
    let e = bad(&format!("$expand={}", "A($expand=".repeat(5000)));
    assert!(matches!(e, StaError::Limit { limit: "MAX_EXPAND_DEPTH", .. }), "{e}");
    assert!(matches!(bad("$expand=A/B/C/D/E"), StaError::Limit { limit: "MAX_EXPAND_DEPTH", .. }));
    let many = vec!["name"; 40].join(",");
    assert!(matches!(bad(&format!("$select={many}")), StaError::Limit { limit: "MAX_LIST_ITEMS", .. }));
}

#[test]
fn validation_against_the_data_model() {
    assert!(validate(&q("$expand=Thing/Locations"), EntityType::Datastream).is_ok());
    let e = validate(&q("$expand=Things"), EntityType::Datastream).unwrap_err();
    assert!(e.to_string().contains("Datastreams have no navigation property 'Things'"), "{e}");
    let e = validate(&q("$expand=Datastreams($expand=Sensr)"), EntityType::Thing).unwrap_err();
    assert!(e.to_string().contains("'Sensr'"), "{e}");
    assert!(validate(&q("$select=id,name,Datastreams"), EntityType::Thing).is_ok());
    assert!(validate(&q("$select=nmae"), EntityType::Thing).is_err());
}
