//! The control-room page (`/`), the citizens' page (`/public`) and their
//! assets, from the built files in `web_dir`. A missing build gets a page
//! saying how to make it; unknown `/api/...` paths get a JSON 404.

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use tower::ServiceExt;
use tower_http::services::{ServeDir, ServeFile};

use crate::server::AppState;
use crate::QueryError;

async fn page(state: &AppState, file: &str, request: Request) -> Response {
    let path = state.web_dir.join(file);
    if !path.is_file() {
        return missing_build(state, file);
    }
    match ServeFile::new(path).oneshot(request).await {
        Ok(response) => response.into_response(),
        Err(never) => match never {},
    }
}

fn missing_build(state: &AppState, file: &str) -> Response {
    // The server's own path is for its operator's log, not for every visitor.
    tracing::debug!(dir = %state.web_dir.display(), file, "web: page not built");
    let escape = |s: &str| s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;");
    let body = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>citygauge: page not built</title></head>\
         <body style=\"font-family: sans-serif; max-width: 42em; margin: 3em auto\">\
         <h1>The control-room page is not built</h1>\
         <p><code>{file}</code> was not found in the directory given by the option <code>--web-dir</code>.</p>\
         <p>Build it with:</p><pre>cd dashboards/control-room &amp;&amp; npm ci &amp;&amp; npm run build</pre>\
         <p>(<code>citygauge dev</code> and <code>deploy/test.sh</code> do this when the build is missing.)\
         Meanwhile the API is up: <a href=\"/api/docs\">/api/docs</a>, \
         <a href=\"/api/v1/overview\">/api/v1/overview</a>.</p></body></html>",
        file = escape(file),
    );
    (StatusCode::SERVICE_UNAVAILABLE, Html(body)).into_response()
}

pub async fn index(State(state): State<AppState>, request: Request) -> Response {
    page(&state, "index.html", request).await
}

pub async fn public(State(state): State<AppState>, request: Request) -> Response {
    page(&state, "public.html", request).await
}

pub async fn fallback(State(state): State<AppState>, request: Request) -> Response {
    if request.uri().path().starts_with("/api/") {
        return QueryError::not_found("route").into_response();
    }
    match ServeDir::new(&state.web_dir).oneshot(request).await {
        Ok(response) => response.into_response(),
        Err(never) => match never {},
    }
}
