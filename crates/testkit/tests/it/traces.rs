//! One trace from the caller through the aggregator to catalogue and stock, received by a real
//! OTLP/gRPC endpoint; and the trace id on every log line written inside a call.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use opentelemetry_proto::tonic::{
    common::v1::any_value,
    trace::v1::{Span, span::SpanKind, status::StatusCode},
};
use testkit::{
    TestStore,
    otlp::{exporting_to_a_receiver, names, received},
};
use tonic::{Code, Request};
use tracing_subscriber::{EnvFilter, layer::SubscriberExt};
use videostore_proto::aggregator as pb;

/// A log writer that keeps what it is given.
#[derive(Clone, Default)]
struct Lines(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Lines {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Lines {
    /// JSON log lines (answers included) written here, as the services write them.
    fn layer<S>(&self) -> Box<dyn tracing_subscriber::Layer<S> + Send + Sync>
    where
        S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    {
        let writer = self.clone();
        videostore_kit::telemetry::log_layer(
            true,
            EnvFilter::new("videostore::rpc=debug,info"),
            move || writer.clone(),
        )
    }

    fn json(&self) -> Vec<serde_json::Value> {
        String::from_utf8(self.0.lock().unwrap().clone())
            .unwrap()
            .lines()
            .map(|line| serde_json::from_str(line).expect("each log line is one JSON object"))
            .collect()
    }
}

/// A W3C `traceparent` as a caller sends it: its trace id, its span id, and the header.
fn caller() -> (Vec<u8>, Vec<u8>, String) {
    let trace: [u8; 16] = rand::random();
    let span: [u8; 8] = rand::random();
    let header = format!("00-{}-{}-01", hex(&trace), hex(&span));
    (trace.to_vec(), span.to_vec(), header)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

fn with_traceparent<T>(message: T, traceparent: &str) -> Request<T> {
    let mut request = Request::new(message);
    request.metadata_mut().insert("traceparent", traceparent.parse().unwrap());
    request
}

fn attribute<'a>(span: &'a Span, key: &str) -> Option<&'a any_value::Value> {
    span.attributes
        .iter()
        .find(|attribute| attribute.key == key)
        .and_then(|attribute| attribute.value.as_ref()?.value.as_ref())
}

fn text<'a>(span: &'a Span, key: &str) -> Option<&'a str> {
    match attribute(span, key)? {
        any_value::Value::StringValue(text) => Some(text),
        _ => None,
    }
}

fn is_error(span: &Span) -> bool {
    span.status.as_ref().is_some_and(|status| status.code == StatusCode::Error as i32)
}

/// The one span of `kind` named `name` in `spans`.
fn only<'a>(spans: &'a [Span], kind: SpanKind, name: &str) -> &'a Span {
    let found: Vec<&Span> =
        spans.iter().filter(|span| span.kind == kind as i32 && span.name == name).collect();
    assert_eq!(found.len(), 1, "one {kind:?} span {name}, among {:#?}", names(spans));
    found[0]
}

/// Whether `span` descends from `ancestor` within `spans`.
fn descends(spans: &[Span], span: &Span, ancestor: &Span) -> bool {
    let by_id: HashMap<&[u8], &Span> = spans.iter().map(|s| (s.span_id.as_slice(), s)).collect();
    let mut parent = span.parent_span_id.as_slice();
    while let Some(up) = by_id.get(parent) {
        if up.span_id == ancestor.span_id {
            return true;
        }
        parent = up.parent_span_id.as_slice();
    }
    false
}

/// Checks a call's pair of spans, client and server, under `caller`: the client span descends
/// from it, the server span is the client span's child; both are named and attributed per the
/// RPC conventions with status `code`. Returns the server span.
fn call_under<'a>(spans: &'a [Span], caller: &Span, method: &str, code: &str) -> &'a Span {
    let client = only(spans, SpanKind::Client, method);
    let server = only(spans, SpanKind::Server, method);
    assert!(descends(spans, client, caller), "{method}'s client span is under its caller");
    assert_eq!(
        server.parent_span_id, client.span_id,
        "{method}'s server span is its client's child"
    );
    for span in [client, server] {
        assert_eq!(text(span, "rpc.system.name"), Some("grpc"));
        assert_eq!(text(span, "rpc.method"), Some(method));
        assert_eq!(
            text(span, "rpc.response.status_code"),
            Some(code),
            "{:?} {:?}",
            span.attributes.iter().map(|a| &a.key).collect::<Vec<_>>(),
            span.status
        );
    }
    // Any code but OK fails the client; NOT_FOUND is no failure of the server's.
    assert_eq!(is_error(client), code != "OK", "{method} client span status");
    assert!(!is_error(server), "{method} server span status");
    server
}

#[tokio::test]
async fn a_movie_page_is_one_trace_from_caller_to_catalogue_and_stock() {
    let (receiver, provider) = exporting_to_a_receiver().await;
    let lines = Lines::default();
    // The test's runtime has one thread, which runs every server task: all their spans go to
    // this provider, all their log lines through this subscriber.
    let _export = videostore_kit::trace::export_on_this_thread(&provider);
    let _guard =
        tracing::subscriber::set_default(tracing_subscriber::registry().with(lines.layer()));
    let store = TestStore::start().await;
    let mut front = store.storefront_client().await;

    // A page, as the web app asks for it.
    let (trace, parent, header) = caller();
    let request = pb::GetMoviePageRequest { movie_id: 3, related_limit: 5 };
    front.get_movie_page(with_traceparent(request, &header)).await.unwrap();
    let page = "videostore.aggregator.v1.StorefrontService/GetMoviePage";
    let catalogue = "videostore.catalogue.v1.CatalogueService/GetMovieDetail";
    let stock = "videostore.stock.v1.StockService/BatchGetAvailability";
    let spans = received(&receiver, &provider, &trace, |spans| {
        [(SpanKind::Server, page), (SpanKind::Server, catalogue), (SpanKind::Server, stock)]
            .iter()
            .all(|(kind, name)| spans.iter().any(|s| s.kind == *kind as i32 && s.name == *name))
    })
    .await;
    let front_span = only(&spans, SpanKind::Server, page);
    assert_eq!(front_span.parent_span_id, parent, "the page continues the caller's trace");
    assert_eq!(text(front_span, "rpc.method"), Some(page));
    assert_eq!(text(front_span, "rpc.response.status_code"), Some("OK"));
    let detail = call_under(&spans, front_span, catalogue, "OK");
    call_under(&spans, front_span, stock, "OK");
    // The store call inside shows where the catalogue's time went.
    let related = only(&spans, SpanKind::Internal, "related films");
    assert_eq!(related.parent_span_id, detail.span_id);
    assert_eq!(text(related, "db.operation.name"), Some("related films"));

    // A log line written inside a call carries its trace and span ids: here each call's answer.
    let answers: HashMap<String, String> = lines
        .json()
        .into_iter()
        .filter(|line| line["fields"]["message"] == "answered" && line["trace_id"] == hex(&trace))
        .map(|line| {
            let method = line["fields"]["rpc.method"].as_str().unwrap().to_owned();
            (method, line["span_id"].as_str().unwrap_or_default().to_owned())
        })
        .collect();
    assert_eq!(answers.get(page), Some(&hex(&front_span.span_id)), "{answers:?}");
    assert_eq!(answers.get(catalogue), Some(&hex(&detail.span_id)), "{answers:?}");

    // The page's duration bucket names its trace (an exemplar), so a slow bucket leads to a
    // slow call.
    let metrics = reqwest::get(format!("{}/metrics", store.aggregator.url()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let exemplar = format!("# {{trace_id=\"{}\"}}", hex(&trace));
    assert!(
        metrics.lines().any(|line| line.contains(page) && line.contains(&exemplar)),
        "an exemplar of the page's trace in {metrics}"
    );
    crate::metrics::assert_parses(&metrics);

    // A film that does not exist: the caller's mistake, the catalogue's NOT_FOUND, both named.
    let (trace, _, header) = caller();
    let request = pb::GetMoviePageRequest { movie_id: 424_242, related_limit: 0 };
    let refused = front.get_movie_page(with_traceparent(request, &header)).await.unwrap_err();
    assert_eq!(refused.code(), Code::NotFound);
    let spans = received(&receiver, &provider, &trace, |spans| {
        spans.iter().filter(|s| s.name == page || s.name == catalogue).count() == 3
    })
    .await;
    let front_span = only(&spans, SpanKind::Server, page);
    assert_eq!(text(front_span, "rpc.response.status_code"), Some("NOT_FOUND"));
    assert!(!is_error(front_span));
    call_under(&spans, front_span, catalogue, "NOT_FOUND");

    // REST continues a `traceparent` header too.
    let (trace, parent, header) = caller();
    let answer = reqwest::Client::new()
        .get(format!("{}/api/movies/4", store.aggregator.url()))
        .header("traceparent", header)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    let route = "GET /api/movies/{id}";
    let spans = received(&receiver, &provider, &trace, |spans| {
        spans.iter().any(|s| s.name == route) && spans.iter().any(|s| s.name == stock)
    })
    .await;
    let rest = only(&spans, SpanKind::Server, route);
    assert_eq!(rest.parent_span_id, parent);
    assert!(
        matches!(
            attribute(rest, "http.response.status_code"),
            Some(any_value::Value::IntValue(200))
        ),
        "{:?}",
        rest.attributes
    );
    call_under(&spans, rest, stock, "OK");

    store.stop().await;
    provider.shutdown().ok();
}

#[tokio::test]
async fn a_stock_lookup_shared_by_several_pages_links_to_each_of_them() {
    let (receiver, provider) = exporting_to_a_receiver().await;
    let _export = videostore_kit::trace::export_on_this_thread(&provider);
    let store = TestStore::start().await;
    let front = store.storefront_client().await;

    // Many pages at once: while two stock calls are out, the others' lookups share the next.
    let callers: Vec<_> = (0..32).map(|_| caller()).collect();
    let pages = callers.iter().enumerate().map(|(i, (_, _, header))| {
        let mut front = front.clone();
        let request = pb::GetMoviePageRequest { movie_id: 1 + i as i64, related_limit: 0 };
        async move { front.get_movie_page(with_traceparent(request, header)).await.unwrap() }
    });
    futures::future::join_all(pages).await;
    store.stop().await;

    let page = "videostore.aggregator.v1.StorefrontService/GetMoviePage";
    let mut pages = Vec::new();
    let mut lookups = Vec::new();
    for (trace, _, _) in &callers {
        let spans = received(&receiver, &provider, trace, |spans| {
            spans.iter().any(|s| s.name == page && s.kind == SpanKind::Server as i32)
        })
        .await;
        pages.push(only(&spans, SpanKind::Server, page).clone());
        lookups.extend(spans.into_iter().filter(|span| span.name == "stock lookup"));
    }
    // Each page is the parent of the lookup that served it, or linked from it.
    for page in &pages {
        let parent = lookups.iter().any(|lookup| lookup.parent_span_id == page.span_id);
        let linked = lookups.iter().any(|lookup| {
            lookup
                .links
                .iter()
                .any(|link| link.trace_id == page.trace_id && link.span_id == page.span_id)
        });
        assert!(parent ^ linked, "each page is served by one lookup, as its parent or by a link");
    }
    assert!(
        lookups.len() < pages.len(),
        "lookups were shared: {} for {}",
        lookups.len(),
        pages.len()
    );
    provider.shutdown().ok();
}

#[tokio::test]
async fn without_export_log_lines_still_carry_the_callers_trace_id() {
    let lines = Lines::default();
    let _guard =
        tracing::subscriber::set_default(tracing_subscriber::registry().with(lines.layer()));
    let store = TestStore::start().await;
    let mut front = store.storefront_client().await;
    let (trace, _, header) = caller();
    let request = pb::GetMoviePageRequest { movie_id: 3, related_limit: 5 };
    front.get_movie_page(with_traceparent(request, &header)).await.unwrap();
    store.stop().await;

    // The aggregator's answer and the catalogue's and stock's it called on the page's behalf
    // carry the caller's trace id (and no span id: without export there is no span of their own).
    let answered: Vec<serde_json::Value> = lines
        .json()
        .into_iter()
        .filter(|line| line["fields"]["message"] == "answered" && line["trace_id"] == hex(&trace))
        .collect();
    let methods: Vec<&str> =
        answered.iter().filter_map(|line| line["fields"]["rpc.method"].as_str()).collect();
    for method in [
        "videostore.aggregator.v1.StorefrontService/GetMoviePage",
        "videostore.catalogue.v1.CatalogueService/GetMovieDetail",
        // Through the shared stock lookup, in the page's trace.
        "videostore.stock.v1.StockService/BatchGetAvailability",
    ] {
        assert!(methods.contains(&method), "{method} in {methods:?} of {:#?}", lines.json());
    }
    assert!(answered.iter().all(|line| line.get("span_id").is_none()), "{answered:#?}");
}
