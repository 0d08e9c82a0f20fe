//! The open-data routes in the OpenAPI document: SensorThings at
//! `/sta/v1.1` and `/sta/v1.0`, the bulk downloads and the catalogue at
//! `/opendata/v1`. Their handlers take the path apart themselves (OData
//! paths such as `Things(3)/Datastreams` do not fit axum's extractors), so
//! the operations are built here rather than from handler annotations; a
//! test checks every entity set of both versions is listed.

use utoipa::openapi::path::{HttpMethod, OperationBuilder, ParameterBuilder, ParameterIn, PathItem};
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::{ContentBuilder, OpenApi, OpenApiBuilder, PathsBuilder, Ref, Required, ResponseBuilder, Tag};

/// The entity sets served (MultiDatastreams are not; see the README).
pub const ENTITY_SETS: [&str; 8] = [
    "Things",
    "Locations",
    "HistoricalLocations",
    "Datastreams",
    "Sensors",
    "ObservedProperties",
    "Observations",
    "FeaturesOfInterest",
];

/// The SensorThings query options: name, type, description.
const QUERY_OPTIONS: [(&str, Type, &str); 8] = [
    ("$filter", Type::String, "OData filter over the set's properties and to-one navigation paths (`Thing/properties/district eq '三民區'`), with the functions of SensorThings 1.1; refused forms get 400 naming the position."),
    ("$orderby", Type::String, "Comma-separated `property [asc|desc]` keys."),
    ("$top", Type::Integer, "Page size (default 100, at most 10000)."),
    ("$skip", Type::Integer, "Entities to skip; prefer following `@iot.nextLink`."),
    ("$count", Type::Boolean, "`true` adds `@iot.count`, the size of the whole filtered set."),
    ("$select", Type::String, "Comma-separated properties to return."),
    ("$expand", Type::String, "Navigation properties to include, with nested options after `;` in parentheses (`Observations($top=1;$orderby=phenomenonTime desc)`)."),
    ("$resultFormat", Type::String, "`dataArray` (Observations only): compact arrays per Datastream."),
];

fn string_schema(ty: Type) -> ObjectBuilder {
    ObjectBuilder::new().schema_type(ty)
}

fn query(name: &str, ty: Type, description: &str) -> ParameterBuilder {
    ParameterBuilder::new()
        .name(name)
        .parameter_in(ParameterIn::Query)
        .required(Required::False)
        .description(Some(description))
        .schema(Some(string_schema(ty)))
}

fn path_param(name: &str, description: &str) -> ParameterBuilder {
    ParameterBuilder::new()
        .name(name)
        .parameter_in(ParameterIn::Path)
        .required(Required::True)
        .description(Some(description))
        .schema(Some(string_schema(Type::String)))
}

fn api_key() -> ParameterBuilder {
    ParameterBuilder::new()
        .name("X-API-Key")
        .parameter_in(ParameterIn::Header)
        .required(Required::False)
        .description(Some(
            "An open-data API key (`citygauge opendata key create`) with its own quota; `?api_key=` works too.",
        ))
        .schema(Some(string_schema(Type::String)))
}

fn error(description: &str) -> ResponseBuilder {
    ResponseBuilder::new()
        .description(description)
        .content("application/json", ContentBuilder::new().schema(Some(Ref::from_schema_name("ErrorBody"))).build())
}

fn json(description: &str) -> ResponseBuilder {
    ResponseBuilder::new()
        .description(description)
        .content("application/json", ContentBuilder::new().schema(Some(string_schema(Type::Object))).build())
}

/// An operation of the open-data routes with the responses every one of
/// them can give besides its own.
fn operation(tag: &str, summary: &str, ok: ResponseBuilder, params: Vec<ParameterBuilder>) -> OperationBuilder {
    let mut op = OperationBuilder::new().tag(tag).summary(Some(summary)).response("200", ok);
    for p in params.into_iter().chain([api_key()]) {
        op = op.parameter(p);
    }
    op.response("400", error("A malformed path or query option; `parameter` names it."))
        .response("404", error("No such entity, or a sensor that is not public."))
        .response("429", error("Over the client's rate limit; `Retry-After` says when to retry (seconds)."))
}

fn get(op: OperationBuilder) -> PathItem {
    PathItem::new(HttpMethod::Get, op)
}

fn sta_paths(mut paths: PathsBuilder, version: &str) -> PathsBuilder {
    let base = format!("/sta/{version}");
    let tag = "sensorthings";
    let options = || QUERY_OPTIONS.iter().map(|(n, t, d)| query(n, t.clone(), d)).collect::<Vec<_>>();
    paths = paths.path(
        base.clone(),
        get(operation(
            tag,
            "The service root: every entity set (and, in v1.1, the conformance classes)",
            json("The root document"),
            Vec::new(),
        )),
    );
    for set in ENTITY_SETS {
        paths = paths.path(
            format!("{base}/{set}"),
            get(operation(
                tag,
                &format!("{set}: a page of the collection"),
                json("`{value, @iot.count?, @iot.nextLink?}`"),
                options(),
            )),
        );
        let id = path_param(
            "id",
            "The entity id: a number, or for an Observation `'<datastream>-<microseconds>'` in quotes.",
        );
        paths = paths.path(
            format!("{base}/{set}({{id}})"),
            get(operation(
                tag,
                &format!("One of the {set}"),
                json("The entity"),
                vec![
                    id,
                    query("$select", Type::String, QUERY_OPTIONS[5].2),
                    query("$expand", Type::String, QUERY_OPTIONS[6].2),
                ],
            )),
        );
        let id = path_param("id", "The entity id.");
        let nav = path_param("path", "A navigation property (`Datastreams`, `Thing`, ...), a property (`name`), a property's `$value`, or `$ref`.");
        let mut params = vec![id, nav];
        params.extend(options());
        paths = paths.path(
            format!("{base}/{set}({{id}})/{{path}}"),
            get(operation(
                tag,
                &format!("Navigation, property and $value paths below one of the {set}"),
                json("The related entities, or the property"),
                params,
            )),
        );
    }
    paths
}

fn opendata_paths(paths: PathsBuilder) -> PathsBuilder {
    let tag = "opendata";
    let kind = || path_param("kind", "rainfall, water_level, flood_depth, air_quality or streetlight");
    let file = ResponseBuilder::new()
        .description("The day's readings of public sensors, streamed (`ETag`, `Last-Modified`; 304 on `If-None-Match`)")
        .content("text/csv", ContentBuilder::new().schema(Some(string_schema(Type::String))).build())
        .content("application/json", ContentBuilder::new().schema(Some(string_schema(Type::Array))).build());
    paths
        .path(
            "/opendata/v1/datasets",
            get(operation(tag, "The datasets: one per kind", json("The dataset list"), Vec::new())),
        )
        .path(
            "/opendata/v1/datasets/{kind}",
            get(operation(
                tag,
                "A dataset's metadata (National Development Council fields)",
                json("The metadata document"),
                vec![kind()],
            )),
        )
        .path(
            "/opendata/v1/datasets/{kind}/days",
            get(operation(
                tag,
                "The day files of a dataset",
                json("Days with readings and their file links"),
                vec![kind()],
            )),
        )
        .path(
            "/opendata/v1/catalog.jsonld",
            get(operation(tag, "The DCAT-AP catalogue a portal harvests", json("JSON-LD"), Vec::new())),
        )
        .path(
            "/opendata/v1/{kind}/{file}",
            get(operation(
                tag,
                "One day of a kind: `YYYY-MM-DD.csv` or `.json` (city time)",
                file,
                vec![kind(), path_param("file", "`YYYY-MM-DD.csv` or `YYYY-MM-DD.json`")],
            )),
        )
}

/// The open-data part of the document, merged into [`super::document`].
pub fn openapi() -> OpenApi {
    let mut paths = PathsBuilder::new();
    for version in ["v1.1", "v1.0"] {
        paths = sta_paths(paths, version);
    }
    let mut doc = OpenApiBuilder::new().paths(opendata_paths(paths)).build();
    let mut sta = Tag::new("sensorthings");
    sta.description = Some("OGC SensorThings API 1.1 (read), public active sensors only".into());
    let mut od = Tag::new("opendata");
    od.description = Some("Bulk downloads and the catalogue".into());
    doc.tags = Some(vec![sta, od]);
    doc
}
