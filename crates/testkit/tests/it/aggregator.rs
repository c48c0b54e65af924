//! The store front: combined views over gRPC and REST, deadlines, and degradation.

use std::time::{Duration, Instant};

use testkit::TestStore;
use tonic::{Code, Request};
use videostore_proto::{aggregator as pb, catalogue::MovieFilter};

#[tokio::test]
async fn movie_page_combines_film_stock_and_related_films() {
    let store = TestStore::start().await;
    let mut front = store.storefront_client().await;
    let page = front
        .get_movie_page(pb::GetMoviePageRequest { movie_id: 3, related_limit: 5 })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(page.movie.unwrap().id, 3);
    let stock = page.stock.unwrap();
    assert!(stock.known);
    let availability = stock.availability.unwrap();
    assert_eq!(availability.movie_id, 3);
    assert!(availability.rental_price_per_day.is_some());
    assert_eq!(page.related.len(), 5);
    let missing = front
        .get_movie_page(pb::GetMoviePageRequest { movie_id: 424_242, related_limit: 0 })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
    store.stop().await;
}

#[tokio::test]
async fn storefront_lists_a_page_with_each_films_stock() {
    let store = TestStore::start().await;
    let mut front = store.storefront_client().await;
    let page = front
        .list_storefront(pb::ListStorefrontRequest {
            filter: Some(MovieFilter { genre: "Comedy".into(), ..Default::default() }),
            page_size: 12,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(page.items.len(), 12);
    assert!(page.total_size > 12);
    for item in &page.items {
        let movie = item.movie.as_ref().unwrap();
        let stock = item.stock.as_ref().unwrap();
        assert!(stock.known);
        assert_eq!(stock.availability.as_ref().unwrap().movie_id, movie.id);
    }
    let next = front
        .list_storefront(pb::ListStorefrontRequest {
            filter: Some(MovieFilter { genre: "Comedy".into(), ..Default::default() }),
            page_size: 12,
            page_token: page.next_page_token.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(next.items.iter().all(|n| {
        page.items.iter().all(|p| p.movie.as_ref().unwrap().id != n.movie.as_ref().unwrap().id)
    }));
    store.stop().await;
}

#[tokio::test]
async fn with_stock_stopped_the_page_still_comes_back_in_time() {
    let mut store = TestStore::start().await;
    store.stop_stock().await;
    let mut front = store.storefront_client().await;
    let mut request = Request::new(pb::GetMoviePageRequest { movie_id: 4, related_limit: 3 });
    request.set_timeout(Duration::from_millis(800));
    let started = Instant::now();
    let page = front.get_movie_page(request).await.unwrap().into_inner();
    assert!(started.elapsed() < Duration::from_millis(800));
    assert_eq!(page.movie.unwrap().id, 4);
    assert!(!page.stock.unwrap().known);
    let list = front
        .list_storefront(pb::ListStorefrontRequest { page_size: 5, ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(list.items.len(), 5);
    assert!(list.items.iter().all(|i| !i.stock.as_ref().unwrap().known));

    // And it recovers when stock is back.
    store.start_stock().await;
    let mut recovered = false;
    for _ in 0..50 {
        let page = front
            .get_movie_page(pb::GetMoviePageRequest { movie_id: 4, related_limit: 0 })
            .await
            .unwrap()
            .into_inner();
        if page.stock.unwrap().known {
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(recovered, "availability is known again once stock is back");
    store.stop().await;
}

#[tokio::test]
async fn a_hanging_stock_service_cannot_hold_the_page_past_the_deadline() {
    let store = TestStore::start().await;
    let black_hole = testkit::BlackHole::start().await;
    let hole_addr = black_hole.addr;
    let front_service = TestStore::spawn_aggregator(
        &store.catalogue.url(),
        &format!("http://{hole_addr}"),
        Duration::from_secs(10),
    )
    .await;
    let mut front =
        videostore_proto::aggregator::storefront_service_client::StorefrontServiceClient::new(
            TestStore::channel(front_service.addr).await,
        );
    // The deadline is far below the aggregator's own stock timeout (10 s), and far enough
    // above the page's work that a loaded machine (CI beside other builds) still makes it.
    let deadline = Duration::from_secs(2);
    let mut request = Request::new(pb::GetMoviePageRequest { movie_id: 2, related_limit: 2 });
    request.set_timeout(deadline);
    let started = Instant::now();
    let page = front.get_movie_page(request).await.unwrap().into_inner();
    let took = started.elapsed();
    assert!(took < deadline, "took {took:?}");
    assert_eq!(page.movie.unwrap().id, 2);
    assert!(!page.stock.unwrap().known);
    drop(black_hole);
    front_service.stop().await;
    store.stop().await;
}

#[tokio::test]
async fn rest_facade_lists_and_shows_films_as_json() {
    let store = TestStore::start().await;
    let base = store.aggregator.url();
    let http = reqwest::Client::new();
    let list: serde_json::Value = http
        .get(format!("{base}/api/movies?q=am%C3%A9lie&page_size=5&order=year&desc=true"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let movies = list["movies"].as_array().unwrap();
    assert!(!movies.is_empty());
    assert!(list["total_size"].as_i64().unwrap() >= movies.len() as i64);
    for movie in movies {
        assert!(movie["title"].as_str().unwrap().contains("Amélie"));
        assert_eq!(movie["availability"]["known"], true);
        assert_eq!(movie["availability"]["rental_price_per_day"]["currency"], "EUR");
    }
    let years: Vec<i64> = movies.iter().map(|m| m["release_year"].as_i64().unwrap()).collect();
    assert!(years.windows(2).all(|w| w[0] >= w[1]));

    let one = http.get(format!("{base}/api/movies/8?related=3")).send().await.unwrap();
    assert_eq!(one.status(), 200);
    assert_eq!(one.headers()["content-type"], "application/json");
    let one: serde_json::Value = one.json().await.unwrap();
    assert_eq!(one["id"], 8);
    assert_eq!(one["related"].as_array().unwrap().len(), 3);

    for (path, status, code) in [
        ("/api/movies/0", 400, "INVALID_ARGUMENT"),
        ("/api/movies/abc", 400, "INVALID_ARGUMENT"),
        ("/api/movies/9999999", 404, "NOT_FOUND"),
        ("/api/movies?page_size=500", 400, "INVALID_ARGUMENT"),
        ("/api/movies?order=price", 400, "INVALID_ARGUMENT"),
        ("/api/movies?min_year=abc", 400, "INVALID_ARGUMENT"),
        ("/api/movies/8?related=abc", 400, "INVALID_ARGUMENT"),
        ("/api/movies/8?related=-1", 400, "INVALID_ARGUMENT"),
    ] {
        let response = http.get(format!("{base}{path}")).send().await.unwrap();
        assert_eq!(response.status(), status, "{path}");
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], code, "{path}");
        assert!(!body["error"]["message"].as_str().unwrap().is_empty());
    }
    store.stop().await;
}

#[tokio::test]
async fn rest_export_streams_every_matching_film_as_one_json_array() {
    let store = TestStore::start().await;
    let base = store.aggregator.url();
    let http = reqwest::Client::new();
    let response = http.get(format!("{base}/api/movies/export")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    let all: Vec<serde_json::Value> = response.json().await.unwrap();
    assert_eq!(all.len(), 600);
    let ids: std::collections::HashSet<i64> =
        all.iter().map(|m| m["id"].as_i64().unwrap()).collect();
    assert_eq!(ids.len(), 600, "each film once");
    let titles: Vec<String> =
        all.iter().map(|m| catalogue::domain::fold(m["title"].as_str().unwrap())).collect();
    assert!(titles.windows(2).all(|w| w[0] <= w[1]), "in title order");

    let horror: Vec<serde_json::Value> = http
        .get(format!("{base}/api/movies/export?genre=horror&order=rating&desc=true"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(!horror.is_empty() && horror.len() < 600);
    assert!(horror.iter().all(|m| m["genres"].as_array().unwrap().iter().any(|g| g == "Horror")));
    let ratings: Vec<f64> = horror.iter().map(|m| m["audience_rating"].as_f64().unwrap()).collect();
    assert!(ratings.windows(2).all(|w| w[0] >= w[1]));

    let none: Vec<serde_json::Value> = http
        .get(format!("{base}/api/movies/export?q=no%20such%20film%20anywhere"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(none.is_empty());

    let bad = http.get(format!("{base}/api/movies/export?order=price")).send().await.unwrap();
    assert_eq!(bad.status(), 400);
    let body: serde_json::Value = bad.json().await.unwrap();
    assert_eq!(body["error"]["code"], "INVALID_ARGUMENT");
    store.stop().await;
}

#[tokio::test]
async fn every_service_reports_health_and_serves_reflection() {
    use tonic_health_client::{HealthCheckRequest, HealthClient, serving};
    let store = TestStore::start().await;
    for addr in [store.catalogue.addr, store.stock().addr, store.aggregator.addr] {
        let mut health = HealthClient::new(TestStore::channel(addr).await);
        let status = health
            .check(HealthCheckRequest { service: String::new() })
            .await
            .unwrap()
            .into_inner()
            .status;
        assert_eq!(status, serving(), "{addr}");
    }
    store.stop().await;
}

/// The generated health client, under a short name.
mod tonic_health_client {
    pub(crate) use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

    pub(crate) fn serving() -> i32 {
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    }
}

/// Reflection in both versions (v1, and v1alpha for Python's grpcio-reflection, older grpcurl,
/// Postman and Evans) lists exactly the services each port answers, and describes them.
#[tokio::test]
async fn reflection_lists_each_ports_own_services_in_both_versions() {
    use tonic_reflection::pb::{v1, v1alpha};
    let store = TestStore::start().await;
    let standard = [
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection",
    ];
    for (addr, own) in [
        (store.catalogue.addr, vec!["videostore.catalogue.v1.CatalogueService"]),
        (
            store.stock().addr,
            vec!["videostore.stock.v1.AccountService", "videostore.stock.v1.StockService"],
        ),
        (store.aggregator.addr, vec!["videostore.aggregator.v1.StorefrontService"]),
    ] {
        let mut expected: Vec<String> =
            own.iter().chain(&standard).map(|name| (*name).to_owned()).collect();
        expected.sort();

        let request = v1::ServerReflectionRequest {
            host: String::new(),
            message_request: Some(v1::server_reflection_request::MessageRequest::ListServices(
                String::new(),
            )),
        };
        let mut client = v1::server_reflection_client::ServerReflectionClient::new(
            TestStore::channel(addr).await,
        );
        let mut responses = client
            .server_reflection_info(futures::stream::iter([request]))
            .await
            .unwrap()
            .into_inner();
        let response = futures::StreamExt::next(&mut responses).await.unwrap().unwrap();
        let Some(v1::server_reflection_response::MessageResponse::ListServicesResponse(list)) =
            response.message_response
        else {
            panic!("expected a service list");
        };
        let mut names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
        names.sort();
        assert_eq!(names, expected, "v1 on {addr}");

        // v1alpha: the same list, and a service's file (what a client needs to call it).
        let mut client = v1alpha::server_reflection_client::ServerReflectionClient::new(
            TestStore::channel(addr).await,
        );
        let requests = [
            v1alpha::ServerReflectionRequest {
                host: String::new(),
                message_request: Some(
                    v1alpha::server_reflection_request::MessageRequest::ListServices(String::new()),
                ),
            },
            v1alpha::ServerReflectionRequest {
                host: String::new(),
                message_request: Some(
                    v1alpha::server_reflection_request::MessageRequest::FileContainingSymbol(
                        own[0].to_owned(),
                    ),
                ),
            },
        ];
        let mut responses = client
            .server_reflection_info(futures::stream::iter(requests))
            .await
            .unwrap()
            .into_inner();
        let response = futures::StreamExt::next(&mut responses).await.unwrap().unwrap();
        let Some(v1alpha::server_reflection_response::MessageResponse::ListServicesResponse(list)) =
            response.message_response
        else {
            panic!("expected a service list");
        };
        let mut names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
        names.sort();
        assert_eq!(names, expected, "v1alpha on {addr}");
        let response = futures::StreamExt::next(&mut responses).await.unwrap().unwrap();
        let Some(v1alpha::server_reflection_response::MessageResponse::FileDescriptorResponse(
            files,
        )) = response.message_response
        else {
            panic!("expected the file of {}", own[0]);
        };
        assert!(!files.file_descriptor_proto.is_empty());
    }
    store.stop().await;
}

/// The app and REST answer with security headers; the page's policy allows its own start-up
/// script, WebAssembly and calls to catalogue and stock; only content-hashed files are cached
/// for good. (The browser tests run the app under this policy.)
#[tokio::test]
async fn the_app_and_rest_answer_with_security_headers() {
    let store = TestStore::start().await;
    let http = reqwest::Client::new();
    let base = store.aggregator.url();
    let get = |path: &str| http.get(format!("{base}{path}")).send();
    let page = get("/movies/3").await.unwrap();
    let header = |response: &reqwest::Response, name: &str| {
        response.headers().get(name).map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default()
    };
    let policy = header(&page, "content-security-policy");
    assert!(policy.contains("script-src 'self' 'wasm-unsafe-eval' 'sha256-"), "{policy}");
    assert!(policy.contains(&format!("connect-src 'self' {}", store.catalogue.url())), "{policy}");
    assert!(policy.contains(&store.stock().url()), "{policy}");
    assert!(policy.contains("frame-ancestors 'none'"), "{policy}");
    assert_eq!(header(&page, "x-content-type-options"), "nosniff");
    assert_eq!(header(&page, "referrer-policy"), "no-referrer");
    assert_eq!(header(&page, "cache-control"), "no-cache");
    let html = page.text().await.unwrap();

    // The hashed files trunk wrote are immutable.
    let wasm = html.split('"').find(|part| part.ends_with("_bg.wasm")).expect("the wasm file");
    let asset = get(wasm).await.unwrap();
    assert_eq!(asset.status(), 200);
    assert_eq!(header(&asset, "cache-control"), "public, max-age=31536000, immutable");
    assert_eq!(header(&asset, "x-content-type-options"), "nosniff");

    let film = get("/api/movies/3").await.unwrap();
    assert_eq!(film.status(), 200);
    assert_eq!(
        header(&film, "content-security-policy"),
        "default-src 'none'; frame-ancestors 'none'"
    );
    assert_eq!(header(&film, "x-content-type-options"), "nosniff");
    let bad = get("/api/movies/0").await.unwrap();
    assert_eq!(header(&bad, "x-content-type-options"), "nosniff");
    store.stop().await;
}

/// Behind a public proxy (the Ingress routes `/` to the aggregator), health and reflection live
/// on a private port: the public one answers neither, over gRPC or gRPC-Web.
#[tokio::test]
async fn with_an_admin_address_health_and_reflection_leave_the_public_port() {
    use tonic_health_client::{HealthCheckRequest, HealthClient, serving};
    use tonic_reflection::pb::v1::{
        ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
        server_reflection_request::MessageRequest,
    };
    let store = TestStore::start().await;
    let mut config = TestStore::aggregator_config(
        &store.catalogue.url(),
        &store.stock().url(),
        Duration::from_millis(300),
    );
    config.server.admin_listen = Some("127.0.0.1:0".parse().unwrap());
    let (front, admin) = TestStore::spawn_aggregator_with(config).await;
    let admin = admin.expect("an admin address");
    assert_ne!(admin, front.addr);

    let check = HealthCheckRequest { service: String::new() };
    let public = HealthClient::new(TestStore::channel(front.addr).await).check(check.clone()).await;
    assert_eq!(public.unwrap_err().code(), Code::Unimplemented);
    let private = HealthClient::new(TestStore::channel(admin).await).check(check.clone()).await;
    assert_eq!(private.unwrap().into_inner().status, serving());
    let reflection = |addr| async move {
        let request = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        };
        ServerReflectionClient::new(TestStore::channel(addr).await)
            .server_reflection_info(futures::stream::iter([request]))
            .await
            .map(|_| ())
    };
    assert_eq!(reflection(front.addr).await.unwrap_err().code(), Code::Unimplemented);
    reflection(admin).await.unwrap();
    // gRPC-Web, as a browser through the proxy would call it.
    let web =
        testkit::grpc_web::call(&front.url(), "/grpc.health.v1.Health/Check", &check, None, None)
            .await
            .unwrap();
    assert_eq!(web.grpc_status(), Some(Code::Unimplemented as i32));
    // The store front itself still serves on the public port.
    let page = testkit::grpc_web::call(
        &front.url(),
        "/videostore.aggregator.v1.StorefrontService/GetMoviePage",
        &pb::GetMoviePageRequest { movie_id: 3, related_limit: 1 },
        None,
        None,
    )
    .await
    .unwrap();
    assert_eq!(page.grpc_status(), Some(0), "{}", page.grpc_message());

    front.stop().await;
    store.stop().await;
}

#[tokio::test]
async fn a_film_page_follows_staff_edits_made_in_the_catalogue() {
    use videostore_proto::catalogue as cat;
    let store = TestStore::start().await;
    let staff = store.staff_token().await;
    let mut front = store.storefront_client().await;
    let mut catalogue = store.catalogue_client().await;
    let page = |front: &mut videostore_proto::aggregator::storefront_service_client::StorefrontServiceClient<_>| {
        let mut front = front.clone();
        async move {
            front
                .get_movie_page(pb::GetMoviePageRequest { movie_id: 4, related_limit: 3 })
                .await
                .unwrap()
                .into_inner()
        }
    };
    // Read twice: the second may come from the aggregator's memory.
    let before = page(&mut front).await;
    assert_eq!(page(&mut front).await.movie, before.movie);

    let renamed = cat::Movie { id: 4, title: "Renamed for the page".into(), ..Default::default() };
    catalogue
        .update_movie(testkit::authed(
            cat::UpdateMovieRequest {
                movie: Some(renamed),
                update_mask: Some(prost_types::FieldMask { paths: vec!["title".into()] }),
            },
            &staff,
        ))
        .await
        .unwrap();
    // The catalogue announces the write; the page must show it promptly, and then for good.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let title = page(&mut front).await.movie.unwrap().title;
        if title == "Renamed for the page" {
            break;
        }
        assert!(Instant::now() < deadline, "the page still shows {title:?} 5 s after the edit");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    for _ in 0..20 {
        assert_eq!(page(&mut front).await.movie.unwrap().title, "Renamed for the page");
    }
    store.stop().await;
}

#[tokio::test]
async fn concurrent_pages_each_get_their_own_films_current_stock() {
    let store = TestStore::start().await;
    // A distinct number of copies per film, so any mix-up between pages shows.
    for movie_id in 1..=40 {
        crate::stock::set_copies(&store, movie_id, movie_id as i32).await;
    }
    let front = store.storefront_client().await;
    let pages = (1..=40).map(|movie_id| {
        let mut front = front.clone();
        async move {
            let page = front
                .get_movie_page(pb::GetMoviePageRequest { movie_id, related_limit: 1 })
                .await
                .unwrap()
                .into_inner();
            (movie_id, page)
        }
    });
    let shelves = (0..5).map(|page| {
        let mut front = front.clone();
        async move {
            front
                .list_storefront(pb::ListStorefrontRequest {
                    order_by: videostore_proto::catalogue::MovieOrder::Id as i32,
                    page_size: 8,
                    page_token: String::new(),
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner()
                .items
                .into_iter()
                .skip(page)
                .collect::<Vec<_>>()
        }
    });
    let (pages, shelves) =
        tokio::join!(futures::future::join_all(pages), futures::future::join_all(shelves));
    for (movie_id, page) in pages {
        let stock = page.stock.unwrap();
        assert!(stock.known);
        let availability = stock.availability.unwrap();
        assert_eq!(availability.movie_id, movie_id);
        assert_eq!(availability.copies_owned, movie_id as i32);
    }
    for item in shelves.into_iter().flatten() {
        let availability = item.stock.unwrap().availability.unwrap();
        assert_eq!(availability.movie_id, item.movie.unwrap().id);
        assert_eq!(i64::from(availability.copies_owned), availability.movie_id);
    }
    store.stop().await;
}
