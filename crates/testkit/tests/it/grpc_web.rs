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

    // ExportMovies' one message is sent in pieces; over gRPC-Web it is still one frame.
    let reply = grpc_web::call(
        &store.catalogue.url(),
        "/videostore.catalogue.v1.CatalogueService/ExportMovies",
        &cat::ExportMoviesRequest { order_by: cat::MovieOrder::Id as i32, ..Default::default() },
        None,
        None,
    )
    .await
    .unwrap();
    assert_eq!(reply.grpc_status(), Some(0), "{}", reply.grpc_message());
    let exports: Vec<cat::ExportMoviesResponse> = reply.decode();
    assert_eq!(exports.len(), 1);
    let ids: Vec<i64> = exports[0].movies.iter().map(|film| film.id).collect();
    assert_eq!(ids, (1..=600).collect::<Vec<i64>>());

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
        &stock::WatchAvailabilityRequest { movie_ids: vec![21], resume_from: Vec::new() },
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

/// Every unary and server-streaming RPC once over gRPC-Web on HTTP/1.1, as the browser calls
/// them. (Client and bidirectional streaming cannot be made from a browser.)
#[tokio::test]
async fn every_browser_callable_rpc_answers_over_grpc_web() {
    use videostore_proto::aggregator as agg;
    let store = TestStore::start().await;
    let staff = store.staff_token().await;
    let (_, customer) = store.customer("Browser").await;
    let catalogue = store.catalogue.url();
    let stock_url = store.stock().url();
    let front = store.aggregator.url();

    async fn ok<M: prost::Message + Default>(
        base: &str,
        path: &str,
        request: &impl prost::Message,
        token: Option<&str>,
    ) -> Vec<M> {
        let reply = grpc_web::call(base, path, request, token, Some("http://localhost:8080"))
            .await
            .unwrap();
        assert_eq!(reply.http_status, 200, "{path}");
        assert_eq!(reply.grpc_status(), Some(0), "{path}: {}", reply.grpc_message());
        reply.decode()
    }
    const CAT: &str = "/videostore.catalogue.v1.CatalogueService/";
    const STOCK: &str = "/videostore.stock.v1.StockService/";
    const ACCOUNTS: &str = "/videostore.stock.v1.AccountService/";
    const FRONT: &str = "/videostore.aggregator.v1.StorefrontService/";

    let movie: Vec<cat::Movie> =
        ok(&catalogue, &format!("{CAT}GetMovie"), &cat::GetMovieRequest { id: 1 }, None).await;
    assert_eq!(movie[0].id, 1);
    let detail: Vec<cat::MovieDetail> = ok(
        &catalogue,
        &format!("{CAT}GetMovieDetail"),
        &cat::GetMovieDetailRequest { id: 1, related_limit: 2 },
        None,
    )
    .await;
    assert_eq!(detail[0].related.len(), 2);
    let batch: Vec<cat::BatchGetMoviesResponse> = ok(
        &catalogue,
        &format!("{CAT}BatchGetMovies"),
        &cat::BatchGetMoviesRequest { ids: vec![2, 3] },
        None,
    )
    .await;
    assert_eq!(batch[0].movies.len(), 2);
    let list: Vec<cat::ListMoviesResponse> = ok(
        &catalogue,
        &format!("{CAT}ListMovies"),
        &cat::ListMoviesRequest { page_size: 7, ..Default::default() },
        None,
    )
    .await;
    assert_eq!(list[0].movies.len(), 7);
    let genres: Vec<cat::ListGenresResponse> =
        ok(&catalogue, &format!("{CAT}ListGenres"), &cat::ListGenresRequest {}, None).await;
    assert!(!genres[0].genres.is_empty());
    let new_film =
        cat::Movie { title: "Made in a browser".into(), release_year: 2024, ..Default::default() };
    let created: Vec<cat::Movie> = ok(
        &catalogue,
        &format!("{CAT}CreateMovie"),
        &cat::CreateMovieRequest { movie: Some(new_film), ..Default::default() },
        Some(&staff),
    )
    .await;
    let id = created[0].id;
    let updated: Vec<cat::Movie> = ok(
        &catalogue,
        &format!("{CAT}UpdateMovie"),
        &cat::UpdateMovieRequest {
            movie: Some(cat::Movie { id, director: "A. Browser".into(), ..Default::default() }),
            update_mask: Some(prost_types::FieldMask { paths: vec!["director".into()] }),
        },
        Some(&staff),
    )
    .await;
    assert_eq!(updated[0].director, "A. Browser");
    let deleted = grpc_web::call(
        &catalogue,
        &format!("{CAT}DeleteMovie"),
        &cat::DeleteMovieRequest { id },
        Some(&staff),
        None,
    )
    .await
    .unwrap();
    assert_eq!(deleted.grpc_status(), Some(0), "{}", deleted.grpc_message());

    let availability: Vec<stock::Availability> = ok(
        &stock_url,
        &format!("{STOCK}GetAvailability"),
        &stock::GetAvailabilityRequest { movie_id: 30 },
        None,
    )
    .await;
    assert!(availability[0].stocked);
    let many: Vec<stock::BatchGetAvailabilityResponse> = ok(
        &stock_url,
        &format!("{STOCK}BatchGetAvailability"),
        &stock::BatchGetAvailabilityRequest { movie_ids: vec![30, 31] },
        None,
    )
    .await;
    assert_eq!(many[0].availabilities.len(), 2);
    let eur = |minor| Some(stock::Money { currency_code: "EUR".into(), minor_units: minor });
    let set: Vec<stock::Availability> = ok(
        &stock_url,
        &format!("{STOCK}SetInventory"),
        &stock::SetInventoryRequest {
            movie_id: 30,
            copies_owned: 4,
            rental_price_per_day: eur(199),
            purchase_price: eur(999),
        },
        Some(&staff),
    )
    .await;
    assert_eq!(set[0].copies_owned, 4);
    let rental: Vec<stock::Rental> = ok(
        &stock_url,
        &format!("{STOCK}Rent"),
        &stock::RentRequest { movie_id: 30, days: 3, request_id: "browser-rent".into() },
        Some(&customer),
    )
    .await;
    let mine: Vec<stock::Rental> = ok(
        &stock_url,
        &format!("{STOCK}ListMyRentals"),
        &stock::ListMyRentalsRequest { include_returned: true },
        Some(&customer),
    )
    .await;
    assert_eq!(
        mine.iter().map(|r| r.id).collect::<Vec<_>>(),
        [rental[0].id],
        "streamed, one message per rental"
    );
    let returned: Vec<stock::Rental> = ok(
        &stock_url,
        &format!("{STOCK}Return"),
        &stock::ReturnRequest { rental_id: rental[0].id },
        Some(&customer),
    )
    .await;
    assert_eq!(returned[0].state, stock::RentalState::Returned as i32);
    let bought: Vec<stock::Purchase> = ok(
        &stock_url,
        &format!("{STOCK}Purchase"),
        &stock::PurchaseRequest { movie_id: 30, request_id: "browser-buy".into() },
        Some(&customer),
    )
    .await;
    assert_eq!(bought[0].price.as_ref().unwrap().minor_units, 999);

    let registered: Vec<stock::RegisterResponse> = ok(
        &stock_url,
        &format!("{ACCOUNTS}Register"),
        &stock::RegisterRequest {
            email: "web@example.com".into(),
            name: "Web".into(),
            password: "web password".into(),
        },
        None,
    )
    .await;
    assert!(registered[0].confirm_before.is_some());
    let code = store
        .mailbox()
        .confirmation_code("web@example.com", std::time::Duration::from_secs(10))
        .await
        .expect("a confirmation mail");
    let confirmed: Vec<stock::SignInResponse> = ok(
        &stock_url,
        &format!("{ACCOUNTS}ConfirmEmail"),
        &stock::ConfirmEmailRequest { code, password: "web password".into() },
        None,
    )
    .await;
    let account = [confirmed[0].account.clone().unwrap()];
    let signed_in: Vec<stock::SignInResponse> = ok(
        &stock_url,
        &format!("{ACCOUNTS}SignIn"),
        &stock::SignInRequest { email: "web@example.com".into(), password: "web password".into() },
        None,
    )
    .await;
    let me: Vec<stock::Account> = ok(
        &stock_url,
        &format!("{ACCOUNTS}GetMe"),
        &stock::GetMeRequest {},
        Some(&signed_in[0].token),
    )
    .await;
    assert_eq!(me[0].id, account[0].id);

    let page: Vec<agg::MoviePage> = ok(
        &front,
        &format!("{FRONT}GetMoviePage"),
        &agg::GetMoviePageRequest { movie_id: 30, related_limit: 1 },
        None,
    )
    .await;
    assert_eq!(page[0].stock.as_ref().unwrap().availability.as_ref().unwrap().copies_owned, 3);
    let shelf: Vec<agg::ListStorefrontResponse> = ok(
        &front,
        &format!("{FRONT}ListStorefront"),
        &agg::ListStorefrontRequest { page_size: 4, ..Default::default() },
        None,
    )
    .await;
    assert_eq!(shelf[0].items.len(), 4);
    store.stop().await;
}

/// Bytes that are not the request message are the caller's mistake: INVALID_ARGUMENT over
/// gRPC and gRPC-Web, not INTERNAL; the server is none the worse.
#[tokio::test]
async fn bytes_that_are_not_the_request_are_invalid_argument() {
    let store = TestStore::start().await;
    let path = "/videostore.catalogue.v1.CatalogueService/GetMovie";
    // Field 1 (the id, a varint) sent as length-delimited bytes.
    let garbage = vec![0xde, 0xad, 0xbe, 0xef];

    let mut grpc = tonic::client::Grpc::new(TestStore::channel(store.catalogue.addr).await);
    grpc.ready().await.unwrap();
    let refused = grpc
        .unary(
            tonic::Request::new(garbage.clone()),
            tonic::codegen::http::uri::PathAndQuery::from_static(path),
            videostore_proto::codec::RawCodec::<Vec<u8>>::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{refused:?}");
    assert!(refused.message().contains("does not decode"), "{}", refused.message());

    let web =
        testkit::grpc_web::call(&store.catalogue.url(), path, &garbage, None, None).await.unwrap();
    assert_eq!(web.grpc_status(), Some(3), "{}", web.grpc_message());

    // A film still comes back whole.
    let film = store
        .catalogue_client()
        .await
        .get_movie(videostore_proto::catalogue::GetMovieRequest { id: 1 })
        .await
        .unwrap();
    assert_eq!(film.into_inner().id, 1);
    store.stop().await;
}

/// With its default settings a service lets in the app it serves (:8080) and no other origin:
/// the live-reload app's (:8000) only in development (`cargo xtask up --dev`).
#[tokio::test]
async fn by_default_only_the_served_apps_origin_is_let_in() {
    use videostore_kit::config::DEFAULT_CORS_ORIGINS;

    let data = tempfile::tempdir().unwrap();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let mut config = TestStore::catalogue_config(data.path());
    config.server.cors_origins = DEFAULT_CORS_ORIGINS.into();
    let app = catalogue::startup::Application::build(config, shutdown.clone()).await.unwrap();
    let url =
        format!("http://{}/videostore.catalogue.v1.CatalogueService/GetMovie", app.local_addr());
    let running = tokio::spawn(app.run());
    let preflight = |origin: &'static str| {
        reqwest::Client::new()
            .request(reqwest::Method::OPTIONS, &url)
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "content-type,x-grpc-web")
            .send()
    };
    for origin in ["http://127.0.0.1:8080", "http://localhost:8080"] {
        let allowed = preflight(origin).await.unwrap();
        assert_eq!(allowed.headers()["access-control-allow-origin"], origin);
    }
    for origin in ["http://127.0.0.1:8000", "http://localhost:8000", "https://evil.example"] {
        let refused = preflight(origin).await.unwrap();
        assert!(refused.headers().get("access-control-allow-origin").is_none(), "{origin}");
    }
    shutdown.cancel();
    running.await.unwrap().unwrap();
}
