//! The front door (Debian's nginx with the Ingress's routing table, `front-door`): each path goes
//! where the Ingress sends it, over HTTPS and HTTP/2, health and reflection stay off the public
//! host, and a live stream passes through unbuffered.

use std::time::{Duration, Instant};

use prost::Message;
use testkit::{Backend, STAFF_EMAIL, STAFF_PASSWORD, front::FrontedStore, grpc_web};
use tonic::Code;
use videostore_proto::{aggregator as agg, catalogue as cat, stock};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_of_the_ingress_reaches_its_service_over_https_and_http2() {
    let front = FrontedStore::start(Backend::Sqlite, 1).await;
    let https = front.https_client();
    let base = front.url();

    // The app, and a deep link into it, from the store front.
    for path in ["/", "/movies/5"] {
        let page = https.get(format!("{base}{path}")).send().await.unwrap();
        assert_eq!(page.version(), reqwest::Version::HTTP_2, "{path}");
        assert_eq!(page.status(), 200, "{path}");
        let html = page.text().await.unwrap();
        assert!(html.contains("videostore-config"), "{path}: {html}");
    }
    // REST, from the store front.
    let film = https.get(format!("{base}/api/movies/3")).send().await.unwrap();
    assert_eq!(film.status(), 200);
    let film: serde_json::Value = film.json().await.unwrap();
    assert_eq!(film["id"], 3);

    // gRPC-Web to every service of the Ingress's table: a method only that service has
    // answers, so the path reached the right one.
    let ok = |reply: &grpc_web::Reply| {
        assert_eq!(reply.grpc_status(), Some(0), "{}", reply.grpc_message());
    };
    let movie = call(
        &https,
        &base,
        "/videostore.catalogue.v1.CatalogueService/GetMovie",
        &cat::GetMovieRequest { id: 3 },
    )
    .await;
    ok(&movie);
    assert_eq!(movie.decode::<cat::Movie>()[0].id, 3);
    let availability = call(
        &https,
        &base,
        "/videostore.stock.v1.StockService/GetAvailability",
        &stock::GetAvailabilityRequest { movie_id: 3 },
    )
    .await;
    ok(&availability);
    let signed_in = call(
        &https,
        &base,
        "/videostore.stock.v1.AccountService/SignIn",
        &stock::SignInRequest { email: STAFF_EMAIL.into(), password: STAFF_PASSWORD.into() },
    )
    .await;
    ok(&signed_in);
    let page = call(
        &https,
        &base,
        "/videostore.aggregator.v1.StorefrontService/GetMoviePage",
        &agg::GetMoviePageRequest { movie_id: 3, related_limit: 2 },
    )
    .await;
    ok(&page);

    // Health and reflection are not on the public host: `/` goes to the store front, which
    // serves them on its private port only.
    let health = tonic_health::pb::HealthCheckRequest { service: String::new() };
    let reply = call(&https, &base, "/grpc.health.v1.Health/Check", &health).await;
    assert_eq!(reply.grpc_status(), Some(Code::Unimplemented as i32));
    let list = tonic_reflection::pb::v1::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(
            tonic_reflection::pb::v1::server_reflection_request::MessageRequest::ListServices(
                String::new(),
            ),
        ),
    };
    let reply =
        call(&https, &base, "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo", &list)
            .await;
    assert_eq!(reply.grpc_status(), Some(Code::Unimplemented as i32));
    let mut private = tonic_health::pb::health_client::HealthClient::new(
        testkit::TestStore::channel(front.aggregator_admin).await,
    );
    assert_eq!(
        private.check(health).await.unwrap().into_inner().status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );

    // A live stream through the proxy: the snapshot, then a rent made elsewhere, at once.
    let mut live = grpc_web::open_stream_with(
        &https,
        &base,
        "/videostore.stock.v1.StockService/WatchAvailability",
        &stock::WatchAvailabilityRequest { movie_ids: vec![21], resume_from: Vec::new() },
    )
    .await
    .unwrap();
    assert_eq!(live.version, reqwest::Version::HTTP_2);
    let first =
        stock::WatchAvailabilityResponse::decode(live.next_message().await.unwrap().unwrap())
            .unwrap();
    assert!(first.snapshot);
    let before = first.availabilities[0].copies_available;
    let (_, token) = front.store.customer("Door").await;
    let mut stock_client = front.store.stock_client().await;
    let rented = Instant::now();
    stock_client
        .rent(testkit::authed(
            stock::RentRequest { movie_id: 21, days: 1, request_id: "door-1".into() },
            &token,
        ))
        .await
        .unwrap();
    let change = tokio::time::timeout(Duration::from_secs(5), live.next_message())
        .await
        .expect("the change passes the proxy at once, unbuffered")
        .unwrap()
        .unwrap();
    eprintln!("rent acknowledged → change through nginx: {:?}", rented.elapsed());
    let change = stock::WatchAvailabilityResponse::decode(change).unwrap();
    assert_eq!(change.availabilities[0].copies_available, before - 1);

    front.stop().await;
}

/// One gRPC-Web call through the front door, which must have gone over HTTP/2.
async fn call(
    https: &reqwest::Client,
    base: &str,
    path: &str,
    request: &impl prost::Message,
) -> grpc_web::Reply {
    let reply = grpc_web::call_with(https, base, path, request, None, None).await.unwrap();
    assert_eq!(reply.version, reqwest::Version::HTTP_2, "{path}");
    reply
}
