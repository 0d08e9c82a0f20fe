//! The OData 4.01 forms STA 1.1 clients send: `in` lists, `any`/`all`
//! lambdas over to-many navigation properties, to-many paths in
//! comparisons ("any" semantics), and duration arithmetic — parsing,
//! printing, type errors with positions, limits, and the SQL shapes.

use citygauge_sta::{parse_filter, to_sql, Collection, EntityType, Path, Resolved, Schema, SqlParam, StaError, Type};

/// Entities seen through an alias, with collections correlated on it.
struct S {
    et: EntityType,
    alias: String,
}

fn root(et: EntityType) -> S {
    S { et, alias: "e".into() }
}

impl Schema for S {
    fn resolve(&self, path: &Path) -> Result<Resolved, String> {
        let a = &self.alias;
        let names: Vec<&str> = path.names().collect();
        let col = |c: &str, ty| Ok(Resolved::Column { sql: format!("{a}.{c}"), ty });
        match (self.et, names.as_slice()) {
            (_, ["id"]) => col("id", Type::Int),
            (EntityType::Observation, ["result"]) => Ok(Resolved::Json { sql: format!("{a}.result"), keys: vec![] }),
            (EntityType::Observation, ["phenomenonTime"]) => col("ts", Type::DateTime),
            (EntityType::Observation, _) => Err(format!("Observations have no property '{path}'")),
            (_, ["name"]) => col("name", Type::String),
            (_, ["properties", ..]) => {
                Ok(Resolved::Json { sql: format!("{a}.properties"), keys: citygauge_sta::sql::json_keys(path, 1) })
            }
            (EntityType::Datastream, ["ObservedProperty", "name"]) => Ok(Resolved::Column {
                sql: format!("(SELECT op.name FROM ops op WHERE op.id = {a}.op_id)"),
                ty: Type::String,
            }),
            (EntityType::Datastream, ["Thing", "properties", ..]) => Ok(Resolved::Json {
                sql: format!("(SELECT t.properties FROM things t WHERE t.id = {a}.thing_id)"),
                keys: citygauge_sta::sql::json_keys(path, 2),
            }),
            (et, _) => Err(format!("{} have no property '{path}'", et.set_name())),
        }
    }

    fn collection(&self, nav: &str, alias: &str) -> Option<Result<Collection, String>> {
        if (self.et, nav) == (EntityType::Datastream, "Thing") {
            let from = format!("FROM things AS {alias} WHERE {alias}.id = {}.thing_id", self.alias);
            let schema = Box::new(S { et: EntityType::Thing, alias: alias.to_string() });
            return Some(Ok(Collection { from, schema, single: true }));
        }
        let (table, key, et) = match (self.et, nav) {
            (EntityType::Thing, "Datastreams") => ("datastreams", "thing_id", EntityType::Datastream),
            (EntityType::Thing, "Locations") => ("locations", "id", EntityType::Location),
            (EntityType::Location, "Things") => ("things", "id", EntityType::Thing),
            (EntityType::Datastream, "Observations") => ("observations", "ds_id", EntityType::Observation),
            _ => return None,
        };
        let from = format!("FROM {table} AS {alias} WHERE {alias}.{key} = {}.id", self.alias);
        Some(Ok(Collection { from, schema: Box::new(S { et, alias: alias.to_string() }), single: false }))
    }
}

fn sql(et: EntityType, filter: &str) -> (String, Vec<SqlParam>) {
    let e = parse_filter(filter).unwrap_or_else(|e| panic!("{filter}: {e}"));
    to_sql(&e, &root(et)).unwrap_or_else(|e| panic!("{filter}: {e}"))
}

fn printed(filter: &str) -> String {
    parse_filter(filter).unwrap_or_else(|e| panic!("{filter}: {e}")).to_string()
}

/// Parse and translate; the error's position and text.
fn refused(et: EntityType, filter: &str) -> (usize, String) {
    let e: StaError = match parse_filter(filter) {
        Err(e) => e,
        Ok(ast) => match to_sql(&ast, &root(et)) {
            Err(e) => e,
            Ok((sql, _)) => panic!("{filter} was accepted as {sql}"),
        },
    };
    (e.position().unwrap_or_else(|| panic!("{filter}: {e} has no position")), e.to_string())
}

#[test]
fn in_lists_parse_print_and_translate() {
    assert_eq!(printed("result in (1, 2, 3)"), "result in (1,2,3)");
    assert_eq!(
        printed("Thing/properties/district IN ('三民區','苓雅區')"),
        "Thing/properties/district in ('三民區','苓雅區')"
    );
    assert_eq!(printed("not id in (1) and name in ('a')"), "(not (id in (1))) and (name in ('a'))");
    assert_eq!(printed("(id add 1) in (2)"), "(id add 1) in (2)");

    let (s, p) = sql(EntityType::Thing, "id in (1, 2, 3)");
    assert_eq!(s, "((e.id) IN ($1::int8, $2::int8, $3::int8))");
    assert_eq!(p, [SqlParam::Int(1), SqlParam::Int(2), SqlParam::Int(3)]);
    // A JSON value is read as the items' type; the keys and values are parameters.
    let (s, p) = sql(EntityType::Datastream, "Thing/properties/district in ('三民區','苓雅區')");
    assert_eq!(
        s,
        "((jsonb_extract_path((SELECT t.properties FROM things t WHERE t.id = e.thing_id), $1::text) #>> '{}') IN ($2::text, $3::text))"
    );
    assert_eq!(p[1], SqlParam::Text("三民區".into()));
    let (s, _) = sql(EntityType::Observation, "result in (1, 2.5)");
    assert!(
        s.starts_with("((CASE WHEN jsonb_typeof((e.result)) = 'number'") && s.ends_with("IN ($1::int8, $2::float8))"),
        "{s}"
    );
    assert_eq!(sql(EntityType::Thing, "name in (null)").0, "((e.name) IS NULL)");
    assert_eq!(sql(EntityType::Thing, "name in ('a', null)").0, "((e.name) IN ($1::text) OR (e.name) IS NULL)");
}

#[test]
fn bad_in_lists_are_refused_in_place() {
    assert_eq!(
        refused(EntityType::Thing, "id in ()"),
        (7, "$filter at 7: the list after 'in' is empty; give at least one value".into())
    );
    let (pos, msg) = refused(EntityType::Thing, "id in 1");
    assert_eq!(pos, 6, "{msg}");
    assert!(msg.contains("expected '(' and a list of values after 'in'"), "{msg}");
    let (pos, msg) = refused(EntityType::Thing, "id in (1 2)");
    assert_eq!(pos, 9, "{msg}");
    let (pos, msg) = refused(EntityType::Thing, "id in (1, 'a')");
    assert_eq!(pos, 10, "{msg}");
    assert!(msg.contains("of one type: an integer and a string"), "{msg}");
    let (pos, msg) = refused(EntityType::Thing, "name in (1)");
    assert_eq!(pos, 9, "{msg}");
    assert!(msg.contains("cannot compare a string with an integer with 'in'"), "{msg}");
    let (pos, msg) = refused(EntityType::Thing, "properties/x in (1, 'a')");
    assert_eq!(pos, 20, "{msg}");
    assert!(msg.contains("of one type"), "{msg}");
    let (pos, msg) = refused(EntityType::Thing, "id in (1) eq true");
    assert_eq!(pos, 10, "{msg}");
    let (pos, msg) = refused(EntityType::Thing, "id in (geography'POINT(1 2)')");
    assert_eq!(pos, 7, "{msg}");
}

#[test]
fn lambdas_parse_and_print() {
    assert_eq!(
        printed("Datastreams/any(d: d/ObservedProperty/name eq 'Water level')"),
        "Datastreams/any(d:d/ObservedProperty/name eq 'Water level')"
    );
    assert_eq!(
        printed("Observations/all(o:o/result gt 3) and Observations/any()"),
        "Observations/all(o:o/result gt 3) and Observations/any()"
    );
    assert_eq!(
        printed("Datastreams/any(d:d/Observations/any(o:o/result gt d/id))"),
        "Datastreams/any(d:d/Observations/any(o:o/result gt d/id))"
    );
    // `any` and `all` are still property names where no '(' follows.
    assert_eq!(printed("properties/any eq 1"), "properties/any eq 1");
}

#[test]
fn lambdas_translate_to_exists() {
    let (s, p) = sql(EntityType::Thing, "Datastreams/any(d: d/ObservedProperty/name eq 'Water level')");
    assert_eq!(
        s,
        "EXISTS (SELECT 1 FROM datastreams AS c1 WHERE c1.thing_id = e.id AND (((SELECT op.name FROM ops op WHERE op.id = c1.op_id)) = $1::text))"
    );
    assert_eq!(p, [SqlParam::Text("Water level".into())]);
    assert_eq!(
        sql(EntityType::Datastream, "Observations/all(o: o/phenomenonTime gt 2026-01-01T00:00:00Z)").0,
        "(NOT EXISTS (SELECT 1 FROM observations AS c1 WHERE c1.ds_id = e.id AND (((c1.ts) > $1::timestamptz)) IS NOT TRUE))"
    );
    assert_eq!(
        sql(EntityType::Thing, "Locations/any()").0,
        "EXISTS (SELECT 1 FROM locations AS c1 WHERE c1.id = e.id)"
    );
    // Nested, with the outer variable and the entity itself in the body.
    assert_eq!(
        sql(EntityType::Thing, "Datastreams/any(d: d/Observations/any(o: o/id eq d/id and name eq 'x'))").0,
        "EXISTS (SELECT 1 FROM datastreams AS c1 WHERE c1.thing_id = e.id AND EXISTS (SELECT 1 FROM observations AS c2 \
         WHERE c2.ds_id = c1.id AND (((c2.id) = (c1.id)) AND ((e.name) = $1::text))))"
    );
}

#[test]
fn to_many_paths_mean_any() {
    assert_eq!(
        sql(EntityType::Thing, "Datastreams/ObservedProperty/name eq 'x'").0,
        "EXISTS (SELECT 1 FROM datastreams AS c1 WHERE c1.thing_id = e.id AND (((SELECT op.name FROM ops op WHERE op.id = c1.op_id)) = $1::text))"
    );
    assert_eq!(
        sql(EntityType::Location, "Things/name eq 'x' or startswith(Things/name, 'k')").0,
        "(EXISTS (SELECT 1 FROM things AS c1 WHERE c1.id = e.id AND ((c1.name) = $1::text)) OR \
         EXISTS (SELECT 1 FROM things AS c2 WHERE c2.id = e.id AND ((c2.name) LIKE $2::text)))"
    );
    // Two levels of collections nest.
    assert_eq!(
        sql(EntityType::Thing, "Datastreams/Observations/result in (1)").0,
        "EXISTS (SELECT 1 FROM datastreams AS c1 WHERE c1.thing_id = e.id AND EXISTS (SELECT 1 FROM observations AS c2 \
         WHERE c2.ds_id = c1.id AND ((CASE WHEN jsonb_typeof((c2.result)) = 'number' THEN ((c2.result) #>> '{}')::float8 END) IN ($1::int8))))"
    );
    // Through a to-one hop: the one Thing, then some of its Locations; a
    // to-one path alone stays the schema's scalar.
    assert_eq!(
        sql(EntityType::Datastream, "Thing/Locations/name eq 'x' and Thing/properties/k eq 1").0,
        "(EXISTS (SELECT 1 FROM things AS c1 WHERE c1.id = e.thing_id AND EXISTS (SELECT 1 FROM locations AS c2 \
         WHERE c2.id = c1.id AND ((c2.name) = $1::text))) AND ((CASE WHEN jsonb_typeof(jsonb_extract_path((SELECT t.properties \
         FROM things t WHERE t.id = e.thing_id), $2::text)) = 'number' THEN (jsonb_extract_path((SELECT t.properties FROM things t \
         WHERE t.id = e.thing_id), $2::text) #>> '{}')::float8 END) = $3::int8))"
    );
    assert_eq!(
        sql(EntityType::Datastream, "Thing/Locations/all(l: l/name ne 'x')").0,
        "EXISTS (SELECT 1 FROM things AS c1 WHERE c1.id = e.thing_id AND (NOT EXISTS (SELECT 1 FROM locations AS c2 \
         WHERE c2.id = c1.id AND (((c2.name) <> $1::text)) IS NOT TRUE)))"
    );
    // Types are those of the elements' properties.
    let (pos, msg) = refused(EntityType::Thing, "Datastreams/name eq 1");
    assert_eq!(pos, 0, "{msg}");
    assert!(msg.contains("cannot compare a string with an integer"), "{msg}");
}

#[test]
fn bad_lambdas_are_refused_in_place() {
    let cases: &[(EntityType, &str, usize, &str)] = &[
        (EntityType::Thing, "Datastreams/all()", 15, "all() needs a condition"),
        (EntityType::Thing, "Datastreams/any(d d/name eq 'x')", 18, "expected ':' after the variable 'd' of any"),
        (EntityType::Thing, "Datastreams/any(1: x)", 16, "expected a variable name"),
        (EntityType::Thing, "Datastreams/any(d: d/name eq 'x'", 32, "expected ')' to close any("),
        (EntityType::Thing, "Datastreams/any(Datastreams: Datastreams/name eq 'x')", 16, "hides the property"),
        (
            EntityType::Thing,
            "Datastreams/any(d: d/name)",
            19,
            "the condition of any must be a boolean expression, this is a string",
        ),
        (EntityType::Thing, "Datastreams/any(d: d/nmae eq 'x')", 19, "Datastreams have no property 'nmae'"),
        (EntityType::Thing, "Datastreams/any(d: d eq 1)", 19, "'d' is an element of a collection"),
        (EntityType::Thing, "name/any(n: n/x eq 1)", 0, "'name' is not a to-many navigation property here"),
        (EntityType::Datastream, "Thing/any()", 0, "'Thing' is one entity, not a collection"),
        (
            EntityType::Thing,
            "Datastreams/Observations/any()",
            0,
            "'Datastreams' in 'Datastreams/Observations' is a collection itself",
        ),
        (EntityType::Datastream, "Thing/Locations/nmae eq 'x'", 0, "Locations have no property 'nmae'"),
        (EntityType::Thing, "Datastreams eq 1", 0, "have no property 'Datastreams'"),
    ];
    for &(et, filter, pos, message) in cases {
        let (p, m) = refused(et, filter);
        assert!(m.contains(message), "{filter}: {m}");
        assert_eq!(p, pos, "{filter}: {m}");
    }
}

#[test]
fn limits_apply_to_the_new_forms() {
    // Nesting through lambdas counts towards MAX_EXPR_DEPTH.
    let mut deep = "o/result gt 1".to_string();
    for k in 0..40 {
        deep = format!("Observations/any(v{k}: {deep})");
    }
    let (_, msg) = refused(EntityType::Thing, &deep);
    assert!(msg.contains("MAX_EXPR_DEPTH"), "{msg}");
    // Every item of an `in` list is a node.
    let long = format!("id in ({})", vec!["1"; 300].join(","));
    let (_, msg) = refused(EntityType::Thing, &long);
    assert!(msg.contains("MAX_EXPR_NODES"), "{msg}");
    let huge = format!("name in ('{}')", "x".repeat(2000));
    let (pos, msg) = refused(EntityType::Thing, &huge);
    assert_eq!(pos, 9, "{msg}");
    assert!(msg.contains("MAX_STRING_LITERAL_BYTES"), "{msg}");
}

#[test]
fn durations_and_date_arithmetic() {
    assert_eq!(printed("phenomenonTime ge now() sub duration'P1D'"), "phenomenonTime ge (now() sub duration'P1D')");
    assert_eq!(
        printed("phenomenonTime add duration'PT1H30M' lt now()"),
        "(phenomenonTime add duration'PT1H30M') lt now()"
    );
    assert_eq!(
        printed("phenomenonTime gt 2026-11-30T00:00:00Z sub duration'P1W'"),
        "phenomenonTime gt (2026-11-30T00:00:00Z sub duration'P7D')"
    );
    let (s, p) = sql(EntityType::Observation, "phenomenonTime add duration'PT1H30M' lt now()");
    assert_eq!(s, "(((e.ts) + ($1::text::interval)) < now())");
    assert_eq!(p, [SqlParam::Text("PT1H30M".into())]);
    let (s, _) = sql(
        EntityType::Observation,
        "date(phenomenonTime) ge date(now() sub duration'P1D') and totaloffsetminutes(phenomenonTime) eq 0 and fractionalseconds(phenomenonTime) lt 1 and phenomenonTime lt maxdatetime()",
    );
    assert!(s.contains("::date >= ((now() - ($1::text::interval)) AT TIME ZONE 'UTC')::date"), "{s}");
    for (bad, pos, message) in [
        ("phenomenonTime ge now() sub duration'P1X'", 38, "expected a number followed by Y, M, W or D"),
        ("phenomenonTime ge now() sub duration'1D'", 37, "expected 'P'"),
        ("phenomenonTime ge now() sub duration'P'", 28, "empty duration"),
        ("phenomenonTime ge now() mul duration'P1D'", 18, "'mul' needs two numbers"),
        ("phenomenonTime add phenomenonTime gt now()", 0, "'add' needs two numbers, a date-time and a duration"),
        ("duration'P1D' sub phenomenonTime gt now()", 0, "cannot compare a duration with a date-time"),
    ] {
        let (p, m) = refused(EntityType::Observation, bad);
        assert!(m.contains(message), "{bad}: {m}");
        assert_eq!(p, pos, "{bad}: {m}");
    }
}
