//! Translation to parameterised SQL against a test schema.

mod common;

use citygauge_sta::{orderby_to_sql, parse_filter, parse_orderby, to_sql, EntityType, SqlBuilder, SqlParam, StaError};
use common::TestSchema;

fn sql_for(entity: EntityType, filter: &str) -> (String, Vec<SqlParam>) {
    let e = parse_filter(filter).unwrap_or_else(|e| panic!("{filter}: {e}"));
    to_sql(&e, &TestSchema(entity)).unwrap_or_else(|e| panic!("{filter}: {e}"))
}

fn obs(filter: &str) -> String {
    sql_for(EntityType::Observation, filter).0
}

#[test]
fn civil_iot_filter() {
    let (sql, params) = sql_for(
        EntityType::Datastream,
        "Thing/properties/authority_type eq '水利署' and substringof('水位',description)",
    );
    assert_eq!(
        sql,
        "(((jsonb_extract_path(th.properties, $1::text) #>> '{}') = $2::text) AND ((ds.description) LIKE $3::text))"
    );
    assert_eq!(
        params,
        [SqlParam::Text("authority_type".into()), SqlParam::Text("水利署".into()), SqlParam::Text("%水位%".into())]
    );
}

#[test]
fn operators() {
    assert_eq!(obs("result eq 5"), "((o.level_m) = $1::int8)");
    assert_eq!(obs("result ne 5.5"), "((o.level_m) <> $1::float8)");
    assert_eq!(
        obs("result gt 1 and result le 2 or not (result lt 0)"),
        "((((o.level_m) > $1::int8) AND ((o.level_m) <= $2::int8)) OR (NOT ((o.level_m) < $3::int8)))"
    );
    assert_eq!(obs("result ge 1"), "((o.level_m) >= $1::int8)");
    assert_eq!(
        obs("result add 1 sub 2 mul 3 gt 0"),
        "(((o.level_m) + $1::int8) - ($2::int8 * $3::int8)) > $4::int8)".replacen('(', "((", 1)
    );
    assert_eq!(obs("result div 2 gt 1"), "(((o.level_m) / NULLIF($1::int8, 0)) > $2::int8)");
    assert_eq!(obs("interval_s mod 60 eq 0"), "(((o.interval_s) % NULLIF($1::int8, 0)) = $2::int8)");
    assert_eq!(
        obs("result mod 2 eq 0"),
        "((SELECT m.a - m.b * trunc(m.a / NULLIF(m.b, 0)) FROM (SELECT (o.level_m) AS a, $1::int8 AS b OFFSET 0) AS m) = $2::int8)"
    );
    assert_eq!(obs("-result lt 1"), "((-(o.level_m)) < $1::int8)");
    assert_eq!(obs("resultQuality eq null"), "((o.quality) IS NULL)");
    assert_eq!(obs("resultQuality ne null"), "((o.quality) IS NOT NULL)");
    assert_eq!(obs("lamp_on"), "(o.lamp_on)");
    assert_eq!(obs("phenomenonTime gt now() sub duration'P1D'"), "((o.ts) > (now() - ($1::text::interval)))");
    assert_eq!(obs("age lt duration'-PT1H'"), "((now() - o.ts) < (-($1::text::interval)))");
    assert_eq!(obs("phenomenonTime ge 2026-11-22"), "((o.ts) >= $1::date)");
}

#[test]
fn functions() {
    let cases = [
        ("substringof(resultQuality,'abc')", "(strpos($1::text, (o.quality)) > 0)"),
        ("contains(resultQuality,'a%_\\b')", "((o.quality) LIKE $1::text)"),
        ("startswith(resultQuality,'ok')", "((o.quality) LIKE $1::text)"),
        ("endswith(resultQuality,'ok')", "((o.quality) LIKE $1::text)"),
        ("startswith(resultQuality,resultQuality)", "starts_with((o.quality), (o.quality))"),
        ("length(resultQuality) eq 2", "(char_length((o.quality))::int8 = $1::int8)"),
        ("indexof(resultQuality,'k') eq 1", "((strpos((o.quality), $1::text) - 1)::int8 = $2::int8)"),
        ("substring(resultQuality,1,1) eq 'k'", "(substr((o.quality), (GREATEST(LEAST($1::int8, 2147483646), 0) + 1)::int4, GREATEST(LEAST($2::int8, 2147483647), 0)::int4) = $3::text)"),
        ("tolower(resultQuality) eq toupper(trim(concat(resultQuality,'x')))", "(lower((o.quality)) = upper(btrim(((o.quality) || $1::text))))"),
        ("year(phenomenonTime) eq 2026", "(EXTRACT(YEAR FROM ((o.ts) AT TIME ZONE 'UTC'))::int8 = $1::int8)"),
        ("month(day) eq 11", "(EXTRACT(MONTH FROM (o.ts::date))::int8 = $1::int8)"),
        ("hour(clock) eq 8", "(EXTRACT(HOUR FROM (o.ts::time))::int8 = $1::int8)"),
        ("second(phenomenonTime) eq 0", "(floor(EXTRACT(SECOND FROM ((o.ts) AT TIME ZONE 'UTC')))::int8 = $1::int8)"),
        ("date(phenomenonTime) eq 2026-11-22", "(((o.ts) AT TIME ZONE 'UTC')::date = $1::date)"),
        ("time(phenomenonTime) lt 08:00:00", "(((o.ts) AT TIME ZONE 'UTC')::time < $1::time)"),
        ("phenomenonTime gt mindatetime()", "((o.ts) > '-infinity'::timestamptz)"),
        (
            "round(result) eq 2",
            "((SELECT CASE WHEN abs(r.v - trunc(r.v)) >= 0.5 THEN trunc(r.v) + sign(r.v) ELSE trunc(r.v) END \
             FROM (SELECT (o.level_m)::float8 AS v OFFSET 0) AS r) = $1::int8)",
        ),
        ("ceiling(result) eq floor(result)", "(ceil((o.level_m)::float8) = floor((o.level_m)::float8))"),
        ("round(interval_s) eq 60", "((o.interval_s) = $1::int8)"),
        ("geo.distance(FeatureOfInterest/feature, geography'POINT(120.3 22.6)') lt 500", "(ST_Distance(((foi.geom))::geography, (ST_GeomFromText($1::text, 4326))::geography) < $2::int8)"),
        ("geo.length(FeatureOfInterest/feature) gt 1", "(ST_Length(((foi.geom))::geography) > $1::int8)"),
        ("st_within(FeatureOfInterest/feature, geography'POLYGON((120 22, 121 22, 121 23, 120 23, 120 22))')", "ST_Within((foi.geom), ST_GeomFromText($1::text, 4326))"),
        ("geo.intersects(FeatureOfInterest/feature, geography'POINT(1 2)')", "ST_Intersects((foi.geom), ST_GeomFromText($1::text, 4326))"),
        ("st_relate(FeatureOfInterest/feature, geography'POINT(1 2)', 'T*T***FF*')", "ST_Relate((foi.geom), ST_GeomFromText($1::text, 4326), $2::text)"),
    ];
    for (filter, want) in cases {
        assert_eq!(obs(filter), want, "{filter}");
    }
    let (_, params) = sql_for(EntityType::Observation, "contains(resultQuality,'a%_\\b')");
    assert_eq!(params, [SqlParam::Text("%a\\%\\_\\\\b%".into())]);
    let (_, params) =
        sql_for(EntityType::Observation, "st_within(FeatureOfInterest/feature, geography'POINT( 120.30  22.6 )')");
    assert_eq!(params, [SqlParam::Text("POINT(120.3 22.6)".into())]);
}

#[test]
fn json_properties_take_the_other_sides_type() {
    let (sql, params) = sql_for(EntityType::Thing, "properties/elevation_m gt 10");
    assert_eq!(sql, "((CASE WHEN jsonb_typeof(jsonb_extract_path(th.properties, $1::text)) = 'number' THEN (jsonb_extract_path(th.properties, $1::text) #>> '{}')::float8 END) > $2::int8)");
    assert_eq!(params[0], SqlParam::Text("elevation_m".into()));
    let (sql, params) = sql_for(EntityType::Thing, "properties/tags[0] eq 'a'");
    assert_eq!(sql, "((jsonb_extract_path(th.properties, $1::text, $2::text) #>> '{}') = $3::text)");
    assert_eq!(params[1], SqlParam::Text("0".into()));
    assert!(sql_for(EntityType::Thing, "properties/active").0.contains("'boolean'"));
}

#[test]
fn orderby_and_parameter_offsets() {
    let keys = parse_orderby("phenomenonTime desc,result add 1").unwrap();
    let (sql, params) = orderby_to_sql(&keys, &TestSchema(EntityType::Observation)).unwrap();
    assert_eq!(sql, "(o.ts) DESC, ((o.level_m) + $1::int8) ASC");
    assert_eq!(params, [SqlParam::Int(1)]);
    let mut b = SqlBuilder::after(2);
    let f = parse_filter("result gt 1").unwrap();
    assert_eq!(b.filter(&f, &TestSchema(EntityType::Observation)).unwrap(), "((o.level_m) > $3::int8)");
    let geo = parse_orderby("FeatureOfInterest/feature").unwrap();
    assert!(matches!(orderby_to_sql(&geo, &TestSchema(EntityType::Observation)), Err(StaError::Type { .. })));
}

#[test]
fn schema_errors_and_types_against_real_columns() {
    let e = to_sql(&parse_filter("nmae eq 'x'").unwrap(), &TestSchema(EntityType::Datastream)).unwrap_err();
    assert!(matches!(e, StaError::UnknownProperty { pos: 0, .. }), "{e}");
    assert!(e.to_string().contains("Datastreams have no property 'nmae'"));
    // Fine at parse time (untyped), wrong against the schema.
    let e = to_sql(&parse_filter("result eq 'high'").unwrap(), &TestSchema(EntityType::Observation)).unwrap_err();
    assert!(e.to_string().contains("cannot compare a number with a string"), "{e}");
    let e = to_sql(
        &parse_filter("st_within(result, geography'POINT(1 2)')").unwrap(),
        &TestSchema(EntityType::Observation),
    )
    .unwrap_err();
    assert_eq!(e.position(), Some(10));
    let e = to_sql(&parse_filter("result").unwrap(), &TestSchema(EntityType::Observation)).unwrap_err();
    assert!(e.to_string().contains("must be a boolean expression"));
}
