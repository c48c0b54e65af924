//! A click in the browser starts a trace that the services continue.

use std::time::Duration;

use fantoccini::Locator;
use opentelemetry_proto::tonic::trace::v1::{Span, span::SpanKind};
use testkit::{
    TestStore,
    otlp::{exporting_to_a_receiver, names, received},
};

use crate::harness::{self, Browser};

/// This test's runtime has one thread, which runs every server task, so their spans all go to
/// the provider it sets; Chromium is another process.
#[tokio::test]
async fn a_film_page_opened_in_the_browser_is_one_trace_through_the_services() {
    let _one_at_a_time = harness::lock().await;
    let (receiver, provider) = exporting_to_a_receiver().await;
    let _export = videostore_kit::trace::export_on_this_thread(&provider);
    let store = TestStore::start().await;
    let browser = Browser::start().await;
    let page = browser.session().await;
    page.goto(&format!("{}/movies/5", store.aggregator.url())).await.unwrap();
    page.wait().for_element(Locator::Css("article.movie h1")).await.unwrap();

    // The page's combined view, called by the browser with a traceparent of its own.
    let method = "videostore.aggregator.v1.StorefrontService/GetMoviePage";
    let is_page = |span: &Span| span.name == method && span.kind == SpanKind::Server as i32;
    let mut found = None;
    for _ in 0..100 {
        let flushing = provider.clone();
        tokio::task::spawn_blocking(move || flushing.force_flush()).await.unwrap().unwrap();
        found = receiver.spans().into_iter().find(is_page);
        if found.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let front =
        found.unwrap_or_else(|| panic!("no page span among {:?}", names(&receiver.spans())));
    let catalogue = "videostore.catalogue.v1.CatalogueService/GetMovieDetail";
    let spans = received(&receiver, &provider, &front.trace_id, |spans| {
        spans.iter().any(|span| span.name == catalogue && span.kind == SpanKind::Server as i32)
    })
    .await;
    // Its parent is the browser's span: sent, not exported.
    assert_eq!(front.parent_span_id.len(), 8, "the page's span has the browser's as parent");
    assert!(spans.iter().all(|span| span.span_id != front.parent_span_id));
    assert!(
        spans.iter().any(|span| span.name == catalogue && span.kind == SpanKind::Client as i32)
    );

    page.close().await.unwrap();
    browser.stop();
    store.stop().await;
    provider.shutdown().ok();
}
