//! gRPC-Web over HTTP/1.1, as the browser app calls the services: unary, server streaming,
//! errors readable through CORS, and the preflight.

use testkit::{TestStore, grpc_web};
use videostore_proto::{catalogue as cat, stock};

#[tokio::test]
async fn unary_and_streaming_calls_work_over_http1() {
    let store = TestStore::start().await;
    let reply = grpc_web::call(
        &store.catalogue.url(),
        "/videostore.catalogue.v1.CatalogueService/GetMovie",
        &cat::GetMovieRequest { id: 6 },
        None,
        Some("http://localhost:8080"),
    )
    .await
    .unwrap();
    assert_eq!(reply.http_status, 200);
    assert_eq!(reply.grpc_status(), Some(0));
    let movies: Vec<cat::Movie> = reply.decode();
    assert_eq!(movies[0].id, 6);

    let reply = grpc_web::call(
        &store.catalogue.url(),
        "/videostore.catalogue.v1.CatalogueService/StreamMovies",
        &cat::StreamMoviesRequest { batch_size: 100, ..Default::default() },
        None,
        None,
    )
    .await
    .unwrap();
    let batches: Vec<cat::StreamMoviesResponse> = reply.decode();
    assert_eq!(batches.len(), 6);
    assert_eq!(batches.iter().map(|b| b.movies.len()).sum::<usize>(), 600);
    assert_eq!(reply.grpc_status(), Some(0));

    let page = grpc_web::call(
        &store.aggregator.url(),
        "/videostore.aggregator.v1.StorefrontService/GetMoviePage",
        &videostore_proto::aggregator::GetMoviePageRequest { movie_id: 9, related_limit: 2 },
        None,
        None,
    )
    .await
    .unwrap();
    let pages: Vec<videostore_proto::aggregator::MoviePage> = page.decode();
    assert!(pages[0].stock.as_ref().unwrap().known);
    store.stop().await;
}

#[tokio::test]
async fn errors_reach_the_browser_with_code_and_message() {
    let store = TestStore::start().await;
    let reply = grpc_web::call(
        &store.catalogue.url(),
        "/videostore.catalogue.v1.CatalogueService/GetMovie",
        &cat::GetMovieRequest { id: 31_337 },
        None,
        Some("http://localhost:8080"),
    )
    .await
    .unwrap();
    assert_eq!(reply.grpc_status(), Some(5), "NOT_FOUND");
    assert_eq!(reply.grpc_message(), "no film has id 31337");
    let exposed = reply.headers.get("access-control-expose-headers").cloned().unwrap_or_default();
    for header in ["grpc-status", "grpc-message", "grpc-status-details-bin"] {
        assert!(exposed.contains(header), "{header} not exposed: {exposed}");
    }
    let (_, token) = store.customer("Web").await;
    let reply = grpc_web::call(
        &store.stock().url(),
        "/videostore.stock.v1.StockService/Rent",
        &stock::RentRequest { movie_id: 1, days: 2, request_id: "web-1".into() },
        Some(&token),
        Some("http://localhost:8080"),
    )
    .await
    .unwrap();
    assert_eq!(reply.grpc_status(), Some(0), "{}", reply.grpc_message());
    let rentals: Vec<stock::Rental> = reply.decode();
    assert_eq!(rentals[0].days, 2);
    store.stop().await;
}

#[tokio::test]
async fn cors_preflight_allows_the_grpc_web_headers() {
    let store = TestStore::start().await;
    let response = reqwest::Client::new()
        .request(
            reqwest::Method::OPTIONS,
            format!("{}/videostore.stock.v1.StockService/Rent", store.stock().url()),
        )
        .header("origin", "http://localhost:8080")
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "authorization,content-type,x-grpc-web,x-user-agent,grpc-timeout",
        )
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success());
    let headers = response.headers();
    let allowed = headers["access-control-allow-headers"].to_str().unwrap().to_lowercase();
    for header in ["authorization", "content-type", "x-grpc-web", "x-user-agent", "grpc-timeout"] {
        assert!(allowed.contains(header), "{header} not allowed: {allowed}");
    }
    assert!(headers.contains_key("access-control-max-age"));
    store.stop().await;
}

#[tokio::test]
async fn live_availability_streams_over_http1_as_changes_commit() {
    use prost::Message;
    let store = TestStore::start().await;
    let mut live = grpc_web::open_stream(
        &store.stock().url(),
        "/videostore.stock.v1.StockService/WatchAvailability",
        &stock::WatchAvailabilityRequest { movie_ids: vec![21] },
    )
    .await
    .unwrap();
    let first =
        stock::WatchAvailabilityResponse::decode(live.next_message().await.unwrap().unwrap())
            .unwrap();
    assert!(first.snapshot);
    let before = first.availabilities[0].copies_available;

    let (_, token) = store.customer("Live").await;
    let reply = grpc_web::call(
        &store.stock().url(),
        "/videostore.stock.v1.StockService/Rent",
        &stock::RentRequest { movie_id: 21, days: 1, request_id: "live-1".into() },
        Some(&token),
        None,
    )
    .await
    .unwrap();
    assert_eq!(reply.grpc_status(), Some(0), "{}", reply.grpc_message());
    let change = tokio::time::timeout(std::time::Duration::from_secs(5), live.next_message())
        .await
        .expect("the change arrives while the stream stays open")
        .unwrap()
        .unwrap();
    let change = stock::WatchAvailabilityResponse::decode(change).unwrap();
    assert!(!change.snapshot);
    assert_eq!(change.availabilities[0].copies_available, before - 1);
    store.stop().await;
}
