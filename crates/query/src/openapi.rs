//! The OpenAPI 3.1 document, generated from the handlers' annotations, and a
//! small self-contained page that renders it (no internet needed).

use std::sync::OnceLock;

use axum::http::HeaderMap;
use axum::response::{Html, Response};
use utoipa::OpenApi;

use crate::cache::prepared::Prepared;
use crate::cache::view::{LatestView, SensorView, State};
use crate::districts_api::summary::{
    AirSummary, DistrictSummary, FloodItem, RainSummary, RainWindowSummary, RiverSummary, RoadFlooding, SensorCounts,
    Streetlights,
};
use crate::districts_api::DistrictList;
use crate::health_api::Readiness;
use crate::overview_api::{
    Overview, OverviewAir, OverviewIngest, OverviewLights, OverviewRain, OverviewRivers, OverviewRoads,
};
use crate::sensors_api::SensorList;
use crate::stream_api::hub::StreamReadingView;
use crate::ErrorBody;

#[path = "openapi_open_data.rs"]
mod open_data;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "citygauge query API",
        description = "The city's sensors, their latest readings, district and city summaries, series, map layers, a live stream, and alerts (CAP 1.2, Atom). Alert actions need `Authorization: Bearer <token>` (`citygauge alerts token create`). Errors are `{code, message, parameter?, field?}`."
    ),
    paths(
        crate::sensors_api::list_handler,
        crate::sensors_api::one_handler,
        crate::districts_api::list_handler,
        crate::districts_api::one_handler,
        crate::districts_api::sensors_handler,
        crate::overview_api::handler,
        crate::map_api::sensors_handler,
        crate::map_api::districts_handler,
        crate::stream_api::handler,
        crate::health_api::healthz,
        crate::health_api::readyz,
        crate::health_api::metrics,
    ),
    components(schemas(
        ErrorBody, SensorView, LatestView, State, SensorList, DistrictList, DistrictSummary, SensorCounts,
        RainSummary, RainWindowSummary, RiverSummary, RoadFlooding, FloodItem, AirSummary, Streetlights,
        Overview, OverviewRain, OverviewRivers, OverviewRoads, OverviewAir, OverviewLights, OverviewIngest,
        StreamReadingView, Readiness,
    )),
    tags(
        (name = "sensors", description = "Sensors with their latest readings"),
        (name = "series", description = "One sensor's history"),
        (name = "districts", description = "District summaries"),
        (name = "overview", description = "City-wide figures"),
        (name = "map", description = "GeoJSON layers"),
        (name = "stream", description = "Server-Sent Events"),
        (name = "health", description = "Operations"),
    )
)]
struct ApiDoc;

/// The document, with the series, alert and open-data routes merged in.
pub fn document() -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    doc.merge(crate::series_api::openapi());
    doc.merge(crate::alerts_api::openapi());
    doc.merge(crate::alerts_api::subscriptions::openapi());
    doc.merge(open_data::openapi());
    doc
}

fn prepared() -> &'static Prepared {
    static DOC: OnceLock<Prepared> = OnceLock::new();
    DOC.get_or_init(|| Prepared::json(&document(), false))
}

/// The OpenAPI 3.1 document of this API.
pub async fn json_handler(headers: HeaderMap) -> Response {
    prepared().respond(&headers)
}

/// A browsable page rendering the document.
pub async fn docs_handler() -> Html<&'static str> {
    Html(DOCS_PAGE)
}

const DOCS_PAGE: &str = r##"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>citygauge API</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body{font-family:system-ui,sans-serif;max-width:60em;margin:2em auto;padding:0 1em;color:#222}
h2{border-bottom:1px solid #ccc;margin-top:2em}.op{border:1px solid #ddd;border-radius:6px;margin:.8em 0;padding:.6em 1em}
.m{font-weight:bold;color:#fff;background:#2a7;padding:.1em .5em;border-radius:4px;margin-right:.5em}
code,pre{background:#f5f5f5;padding:.1em .3em;border-radius:3px}pre{padding:.6em;overflow:auto;font-size:.85em}
table{border-collapse:collapse}td,th{border:1px solid #ddd;padding:.2em .5em;text-align:left;vertical-align:top}
details{margin:.4em 0}
</style></head><body>
<h1 id="title">citygauge API</h1><p id="desc"></p>
<p>Machine-readable: <a href="/api/v1/openapi.json">/api/v1/openapi.json</a> (OpenAPI 3.1).</p>
<div id="ops">Loading…</div><h2>Schemas</h2><div id="schemas"></div>
<script>
const esc = s => String(s ?? "").replace(/[&<>"]/g, c => ({"&":"&amp;","<":"&lt;",">":"&gt;",'"':"&quot;"}[c]));
fetch("/api/v1/openapi.json").then(r => r.json()).then(doc => {
  document.getElementById("title").textContent = doc.info.title + " " + doc.info.version;
  document.getElementById("desc").textContent = doc.info.description || "";
  const byTag = {};
  for (const [path, item] of Object.entries(doc.paths)) for (const [method, op] of Object.entries(item)) {
    (byTag[(op.tags || ["other"])[0]] ||= []).push([path, method, op]);
  }
  let html = "";
  for (const [tag, ops] of Object.entries(byTag)) {
    html += `<h2>${esc(tag)}</h2>`;
    for (const [path, method, op] of ops) {
      html += `<div class="op"><span class="m">${esc(method.toUpperCase())}</span><code>${esc(path)}</code>`;
      html += `<p>${esc(op.summary || "")} ${esc(op.description || "")}</p>`;
      if (op.parameters && op.parameters.length) {
        html += "<table><tr><th>parameter</th><th>in</th><th>description</th></tr>";
        for (const p of op.parameters) html += `<tr><td><code>${esc(p.name)}</code>${p.required ? " *" : ""}</td><td>${esc(p.in)}</td><td>${esc(p.description)}</td></tr>`;
        html += "</table>";
      }
      html += "<ul>";
      for (const [status, r] of Object.entries(op.responses || {})) {
        const ref = JSON.stringify(r.content || {}).match(/#\/components\/schemas\/(\w+)/);
        html += `<li><b>${esc(status)}</b> ${esc(r.description)}${ref ? ` → <a href="#schema-${esc(ref[1])}">${esc(ref[1])}</a>` : ""}</li>`;
      }
      html += "</ul></div>";
    }
  }
  document.getElementById("ops").innerHTML = html;
  let schemas = "";
  for (const [name, schema] of Object.entries((doc.components || {}).schemas || {})) {
    schemas += `<details id="schema-${esc(name)}"><summary><code>${esc(name)}</code></summary><pre>${esc(JSON.stringify(schema, null, 2))}</pre></details>`;
  }
  document.getElementById("schemas").innerHTML = schemas;
}).catch(e => { document.getElementById("ops").textContent = "Could not load the document: " + e; });
</script></body></html>
"##;
