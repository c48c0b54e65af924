//! Serves the browser app (trunk's `dist/`) on the aggregator's port: http://localhost:8080 is
//! the one address a person opens.
//!
//! `index.html` is served for every app route (deep links like `/movies/42` work on reload),
//! with the services' public addresses written into its `videostore-config` meta tag, so the
//! app calls catalogue and stock directly wherever they are.

use std::{path::PathBuf, sync::Arc};

use axum::{
    Router,
    body::Body,
    extract::{Path, Request, State},
    http::{StatusCode, header},
    response::{Html, IntoResponse, Response},
    routing::get,
};
use tower::ServiceExt;
use tower_http::services::ServeFile;

/// The services' addresses as the browser must use them.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct PublicEndpoints {
    /// Catalogue.
    pub(crate) catalogue: String,
    /// Stock.
    pub(crate) stock: String,
    /// Aggregator (empty: the page's own origin).
    pub(crate) aggregator: String,
}

#[derive(Clone)]
struct App {
    dir: PathBuf,
    index: Arc<String>,
}

const PLACEHOLDER: &str = r#"<meta name="videostore-config" content="" />"#;

fn escape_attribute(text: &str) -> String {
    text.replace('&', "&amp;").replace('"', "&quot;").replace('<', "&lt;").replace('>', "&gt;")
}

/// Routes for the app in `dir`, or `None` (logged) when it has not been built.
pub(crate) fn router(dir: PathBuf, endpoints: &PublicEndpoints) -> Option<Router> {
    let index_path = dir.join("index.html");
    let Ok(index) = std::fs::read_to_string(&index_path) else {
        tracing::warn!(
            path = %index_path.display(),
            "no web app to serve (build it with `trunk build --release`); serving the APIs only"
        );
        return None;
    };
    let config = serde_json::to_string(endpoints).expect("endpoints serialise");
    let injected =
        format!(r#"<meta name="videostore-config" content="{}" />"#, escape_attribute(&config));
    if !index.contains(PLACEHOLDER) {
        tracing::warn!(
            "index.html has no videostore-config placeholder; the app will guess addresses"
        );
    }
    let index = Arc::new(index.replace(PLACEHOLDER, &injected));
    let app = App { dir, index };
    Some(
        Router::new()
            .route("/", get(index_page))
            .route("/{file}", get(asset_or_page))
            .route("/movies/{id}", get(index_page))
            .with_state(app),
    )
}

async fn index_page(State(app): State<App>) -> Response {
    ([(header::CACHE_CONTROL, "no-cache")], Html(app.index.as_str().to_owned())).into_response()
}

/// A built file (`web-<hash>_bg.wasm`, `style-<hash>.css`, …), else the app page (a client-side
/// route such as `/account`).
async fn asset_or_page(
    State(app): State<App>,
    Path(file): Path<String>,
    request: Request,
) -> Response {
    let safe = !file.is_empty() && !file.starts_with('.') && !file.contains(['/', '\\']);
    let path = app.dir.join(&file);
    if safe && file != "index.html" && path.is_file() {
        return match ServeFile::new(path).oneshot(request).await {
            Ok(response) => {
                let (mut parts, body) = response.into_parts();
                // File names carry a content hash: cache them for good.
                parts.headers.insert(
                    header::CACHE_CONTROL,
                    header::HeaderValue::from_static("public, max-age=31536000, immutable"),
                );
                Response::from_parts(parts, Body::new(body))
            }
            Err(error) => {
                tracing::error!(%error, "serving a web asset");
                StatusCode::INTERNAL_SERVER_ERROR.into_response()
            }
        };
    }
    index_page(State(app)).await
}
