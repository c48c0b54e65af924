//! Bounded resources: request sizes held per method (every call's request is refused past
//! 64 KiB before it is decoded, except ImportMovies batches; the largest valid requests still
//! pass), live streams capped per client and per server, and streams per connection.

use testkit::{TestStore, authed};
use tonic::Code;
use videostore_proto::{catalogue as cat, stock};

fn film(key: String, synopsis: String) -> cat::Movie {
    cat::Movie {
        title: format!("Film {key}"),
        release_year: 2001,
        genres: vec!["Drama".into()],
        runtime_minutes: 100,
        director: "Someone".into(),
        rating: cat::MpaaRating::Pg as i32,
        synopsis,
        audience_rating: 7.0,
        external_key: key,
        ..Default::default()
    }
}

#[tokio::test]
async fn oversized_requests_are_refused_before_decoding_and_imports_still_take_batches() {
    let store = TestStore::start().await;
    let staff = store.staff_token().await;

    // Two million ids (about 6 MB) to a call that takes at most 1,000.
    let mut stock_client = store.stock_client().await;
    let huge = stock::WatchAvailabilityRequest {
        movie_ids: (1..=2_000_000).collect(),
        resume_from: Vec::new(),
    };
    let refused = stock_client.watch_availability(huge).await.unwrap_err();
    assert_eq!(refused.code(), Code::OutOfRange, "{refused:?}");
    assert!(refused.message().contains("too large"), "{}", refused.message());
    // The largest valid one passes, and the server is none the worse.
    let most = stock::WatchAvailabilityRequest {
        movie_ids: (1..=1_000).collect(),
        resume_from: (1..=1_000)
            .map(|id| stock::FilmVersion { movie_id: id, version: 1 << 40 })
            .collect(),
    };
    stock_client.watch_availability(most).await.unwrap();
    stock_client.get_availability(stock::GetAvailabilityRequest { movie_id: 3 }).await.unwrap();

    // A film's longest synopsis (5,000 four-byte characters) is fine; 100 KB is refused
    // before decoding (it used to be decoded, then found too long).
    let mut catalogue = store.catalogue_client().await;
    let create = |key: &str, synopsis: String| {
        authed(
            cat::CreateMovieRequest {
                movie: Some(film(key.into(), synopsis)),
                request_id: String::new(),
            },
            &staff,
        )
    };
    catalogue.create_movie(create("longest", "🎬".repeat(5_000))).await.unwrap();
    let refused =
        catalogue.create_movie(create("too-long", "x".repeat(100_000))).await.unwrap_err();
    assert_eq!(refused.code(), Code::OutOfRange, "{refused:?}");

    // An import batch of about 1.2 MB in one message is taken.
    let batch: Vec<cat::Movie> =
        (0..2_000).map(|i| film(format!("batch-{i}"), "s".repeat(500))).collect();
    let summary = catalogue
        .import_movies(authed(
            futures::stream::iter([cat::ImportMoviesRequest { movies: batch }]),
            &staff,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((summary.created, summary.rejected_count), (2_000, 0));
    store.stop().await;
}

/// Live streams are capped per client and per process, with a retry hint; a closed stream
/// gives its place back. Clients are told apart by the front door's X-Forwarded-For (the test's
/// 127.0.0.1 is a trusted proxy here).
#[tokio::test]
async fn live_streams_are_capped_per_client_and_per_server() {
    use std::time::Duration;

    use tonic_types::StatusExt;

    let mut store = TestStore::start().await;
    store.stop_stock().await;
    let mut config = store.stock_config();
    config.watches_per_client = 2;
    config.max_watches = 3;
    config.server.trusted_proxies = "127.0.0.1".into();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let clock: std::sync::Arc<dyn ::stock::clock::Clock> = store.clock.clone();
    let app = ::stock::startup::Application::build(config, clock, shutdown.clone()).await.unwrap();
    let channel = TestStore::channel(app.local_addr()).await;
    let server = tokio::spawn(app.run());
    let watch = |client: &'static str| {
        let mut stock = stock::stock_service_client::StockServiceClient::new(channel.clone());
        async move {
            let mut request = tonic::Request::new(stock::WatchAvailabilityRequest {
                movie_ids: vec![1],
                resume_from: Vec::new(),
            });
            request.metadata_mut().insert("x-forwarded-for", client.parse().unwrap());
            stock.watch_availability(request).await.map(tonic::Response::into_inner)
        }
    };
    let refused = |status: tonic::Status, whose: &str| {
        assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
        assert!(status.message().contains(whose), "{}", status.message());
        let retry = status.get_details_retry_info().and_then(|info| info.retry_delay);
        assert_eq!(retry, Some(Duration::from_secs(5)));
    };

    let first = watch("203.0.113.1").await.unwrap();
    let _second = watch("203.0.113.1").await.unwrap();
    refused(watch("203.0.113.1").await.unwrap_err(), "this address");
    let _other = watch("203.0.113.2").await.unwrap();
    refused(watch("203.0.113.3").await.unwrap_err(), "this server");
    // A stream the client closes gives its place back.
    drop(first);
    let mut tries = 0;
    let _third = loop {
        match watch("203.0.113.3").await {
            Ok(stream) => break stream,
            Err(_) if tries < 50 => {
                tries += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(status) => panic!("the closed stream's place never came back: {status:?}"),
        }
    };
    shutdown.cancel();
    server.await.unwrap().unwrap();
    store.start_stock().await;
    store.stop().await;
}

/// One connection holds at most 1,024 streams at once (`MAX_STREAMS_PER_CONNECTION`, sent to
/// the client in the server's HTTP/2 SETTINGS): with that many live streams open on it, a next
/// call waits until one of them ends; another connection is not held up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_connection_holds_at_most_1024_streams_at_once() {
    use std::time::Duration;
    let store = TestStore::start().await;
    let channel = TestStore::channel(store.catalogue.addr).await;
    let mut catalogue = cat::catalogue_service_client::CatalogueServiceClient::new(channel);
    let mut streams = Vec::new();
    for _ in 0..videostore_kit::serve::MAX_STREAMS_PER_CONNECTION {
        let opened = catalogue.watch_changes(cat::WatchChangesRequest {});
        let stream = tokio::time::timeout(Duration::from_secs(5), opened).await;
        streams.push(stream.expect("room for 1,024 streams").unwrap().into_inner());
    }
    let get = cat::GetMovieRequest { id: 1 };
    let mut waiting = Box::pin(catalogue.get_movie(get));
    let held = tokio::time::timeout(Duration::from_millis(500), &mut waiting).await;
    assert!(held.is_err(), "a call past the streams on the connection was not held: {held:?}");
    // Elsewhere, nothing waits.
    let mut other = store.catalogue_client().await;
    tokio::time::timeout(Duration::from_secs(5), other.get_movie(get)).await.unwrap().unwrap();
    streams.pop();
    let answered = tokio::time::timeout(Duration::from_secs(5), waiting).await;
    assert_eq!(answered.unwrap().unwrap().into_inner().id, 1, "let in once a call ended");

    // The SETTINGS the server sent: its stream limit per connection.
    let tcp = tokio::net::TcpStream::connect(store.catalogue.addr).await.unwrap();
    let (client, connection) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(connection);
    let mut client = client.ready().await.unwrap();
    let request = http::Request::post("/grpc.health.v1.Health/Check")
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(())
        .unwrap();
    let (response, mut body) = client.send_request(request, false).unwrap();
    body.send_data(bytes::Bytes::from_static(&[0, 0, 0, 0, 0]), true).unwrap();
    assert_eq!(response.await.unwrap().status(), 200);
    let limit = videostore_kit::serve::MAX_STREAMS_PER_CONNECTION as usize;
    assert_eq!(client.current_max_send_streams(), limit);
    drop(streams);
    store.stop().await;
}

/// The catalogue's long streams (WatchChanges, LookupMovies) are capped per client as stock's
/// live streams are: past the cap a new one is refused at once with a hint of when to come back,
/// and a stream that ends gives its place back.
#[tokio::test]
async fn the_catalogues_long_streams_are_capped_per_client() {
    let data = tempfile::tempdir().unwrap();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let config = catalogue::config::Config {
        max_streams: 100,
        streams_per_client: 2,
        ..TestStore::catalogue_config(data.path())
    };
    let app = catalogue::startup::Application::build(config, shutdown.clone()).await.unwrap();
    let addr = app.local_addr();
    let running = tokio::spawn(app.run());
    let mut catalogue =
        cat::catalogue_service_client::CatalogueServiceClient::new(TestStore::channel(addr).await);
    let watch = catalogue.watch_changes(cat::WatchChangesRequest {}).await.unwrap();
    let (asking, lookups) = tokio::sync::mpsc::channel::<cat::LookupMoviesRequest>(1);
    let lookups = tokio_stream::wrappers::ReceiverStream::new(lookups);
    let lookup = catalogue.lookup_movies(lookups).await.unwrap();
    let refused = catalogue.watch_changes(cat::WatchChangesRequest {}).await.unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted);
    assert!(refused.message().contains("this address"), "{}", refused.message());
    let retry = tonic_types::StatusExt::get_details_retry_info(&refused);
    assert!(retry.and_then(|info| info.retry_delay).is_some(), "a hint of when to come back");
    drop(watch);
    // The server notices the stream is gone, and its place is free again.
    let mut again = Err(refused);
    for _ in 0..100 {
        again = catalogue.watch_changes(cat::WatchChangesRequest {}).await;
        if again.is_ok() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let again = again.expect("a place once a stream ended");
    // Now full again; a LookupMovies whose caller has no more to ask gives its place back too.
    drop(asking);
    drop(lookup);
    let mut third = Err(tonic::Status::internal("not tried"));
    for _ in 0..100 {
        third = catalogue.watch_changes(cat::WatchChangesRequest {}).await;
        if third.is_ok() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    third.expect("a place once the lookups ended");
    drop(again);
    shutdown.cancel();
    running.await.unwrap().unwrap();
}

/// One connection has at most 256 calls (`MAX_CALLS_PER_CONNECTION`) waiting for their answer
/// at once: with 255 slow pages in flight a 256th call still goes through, with 256 the next
/// waits until one ends, and another connection is not held up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_connection_has_at_most_256_calls_waiting_for_an_answer() {
    use std::time::Duration;
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
    use videostore_proto::aggregator as agg;
    let store = TestStore::start().await;
    // A stock service that takes connections and never answers: every page waits for its
    // deadline (5 s), with its place on the connection held.
    let black_hole = testkit::BlackHole::start().await;
    let hole = black_hole.addr;
    let mut config = TestStore::aggregator_config(
        &store.catalogue.url(),
        &format!("http://{hole}"),
        Duration::from_secs(30),
    );
    config.default_deadline_ms = 5_000;
    let (front, _) = TestStore::spawn_aggregator_with(config).await;
    let channel = TestStore::channel(front.addr).await;
    let storefront = agg::storefront_service_client::StorefrontServiceClient::new(channel.clone());
    let slow_page = || {
        let mut storefront = storefront.clone();
        tokio::spawn(async move {
            let page = agg::GetMoviePageRequest { movie_id: 2, related_limit: 1 };
            storefront.get_movie_page(page).await
        })
    };
    let limit = videostore_kit::serve::MAX_CALLS_PER_CONNECTION;
    let mut pages: Vec<_> = (0..limit - 1).map(|_| slow_page()).collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let check = || HealthCheckRequest { service: String::new() };
    let mut health = HealthClient::new(channel);
    let answered = tokio::time::timeout(Duration::from_secs(1), health.check(check())).await;
    answered.expect("the 256th call has a place").unwrap();

    pages.push(slow_page());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut waiting = Box::pin(health.check(check()));
    let held = tokio::time::timeout(Duration::from_secs(1), &mut waiting).await;
    assert!(held.is_err(), "a 257th call was not held: {held:?}");
    // Elsewhere, nothing waits.
    let mut other = HealthClient::new(TestStore::channel(front.addr).await);
    tokio::time::timeout(Duration::from_secs(1), other.check(check())).await.unwrap().unwrap();
    // Once the pages have their answers (without stock, at their deadline), it goes through.
    let answered = tokio::time::timeout(Duration::from_secs(15), waiting).await;
    answered.expect("let in once a call ended").unwrap();
    for page in pages {
        let page = page.await.unwrap().expect("a page, without its stock").into_inner();
        assert_eq!(page.movie.unwrap().id, 2);
    }
    drop(black_hole);
    front.stop().await;
    store.stop().await;
}

/// A peer that vanishes without a word (it no longer answers HTTP/2 PINGs) is closed after
/// the keepalive's ping goes unanswered, and the long stream it held gives its place back; a
/// peer that answers keeps its idle stream.
#[tokio::test]
async fn a_silent_connection_is_pinged_and_closed_and_its_stream_place_freed() {
    use std::time::{Duration, Instant};
    use tokio::io::AsyncWriteExt;
    let data = tempfile::tempdir().unwrap();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let keepalive = Duration::from_millis(600);
    let mut config = catalogue::config::Config {
        max_streams: 100,
        streams_per_client: 1,
        ..TestStore::catalogue_config(data.path())
    };
    config.server.http2_keepalive_ms = keepalive.as_millis() as u64;
    let app = catalogue::startup::Application::build(config, shutdown.clone()).await.unwrap();
    let addr = app.local_addr();
    let running = tokio::spawn(app.run());

    // A bare HTTP/2 peer opens WatchChanges, the one stream this address may hold.
    let mut peer = tokio::net::TcpStream::connect(addr).await.unwrap();
    peer.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").await.unwrap();
    peer.write_all(&h2_frame(SETTINGS, 0, 0, &[])).await.unwrap();
    let (kind, flags, _) = read_h2_frame(&mut peer).await.expect("the server's SETTINGS");
    assert_eq!((kind, flags), (SETTINGS, 0));
    peer.write_all(&h2_frame(SETTINGS, ACK, 0, &[])).await.unwrap();
    let mut block = Vec::new();
    for (name, value) in [
        (":method", "POST"),
        (":scheme", "http"),
        (":path", "/videostore.catalogue.v1.CatalogueService/WatchChanges"),
        (":authority", "localhost"),
        ("content-type", "application/grpc"),
        ("te", "trailers"),
    ] {
        // HPACK: a literal field, not indexed, with a literal name (lengths under 127).
        block.push(0);
        block.push(name.len() as u8);
        block.extend_from_slice(name.as_bytes());
        block.push(value.len() as u8);
        block.extend_from_slice(value.as_bytes());
    }
    peer.write_all(&h2_frame(HEADERS, END_HEADERS, 1, &block)).await.unwrap();
    peer.write_all(&h2_frame(DATA, END_STREAM, 1, &[0, 0, 0, 0, 0])).await.unwrap();
    // The stream is open once its answer's headers come.
    loop {
        let (kind, _, stream) = read_h2_frame(&mut peer).await.expect("the answer's headers");
        if (kind, stream) == (HEADERS, 1) {
            break;
        }
    }
    let mut catalogue =
        cat::catalogue_service_client::CatalogueServiceClient::new(TestStore::channel(addr).await);
    let refused = catalogue.watch_changes(cat::WatchChangesRequest {}).await.unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted, "the place is held");

    // Now the peer says nothing more. The server pings it, and closes it when no answer comes.
    let silent_since = Instant::now();
    let mut pinged = false;
    let closed = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some((kind, _, _)) = read_h2_frame(&mut peer).await {
            pinged |= kind == PING;
            if kind == GOAWAY {
                break;
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the silent connection is still open after 10 s");
    assert!(pinged, "no PING before the connection was closed");
    assert!(silent_since.elapsed() >= keepalive, "closed before a ping could go unanswered");

    // Its place is free again (the server notices the stream is gone at once).
    let mut watch = Err(refused);
    for _ in 0..100 {
        watch = catalogue.watch_changes(cat::WatchChangesRequest {}).await;
        if watch.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut watch = watch.expect("the place of the vanished peer is free").into_inner();
    // A client that answers its pings keeps an idle stream through several of them (after the
    // empty message every WatchChanges opens with).
    let opened = watch.message().await.unwrap().expect("the opening message");
    assert_eq!(opened, cat::WatchChangesResponse::default());
    let quiet = tokio::time::timeout(keepalive * 4, watch.message()).await;
    assert!(quiet.is_err(), "the answering client's stream ended: {quiet:?}");
    let refused = catalogue.watch_changes(cat::WatchChangesRequest {}).await.unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted, "its stream still holds the place");
    drop(watch);
    shutdown.cancel();
    running.await.unwrap().unwrap();
}

const DATA: u8 = 0;
const HEADERS: u8 = 1;
const SETTINGS: u8 = 4;
const PING: u8 = 6;
const GOAWAY: u8 = 7;
const ACK: u8 = 1;
const END_STREAM: u8 = 1;
const END_HEADERS: u8 = 4;

/// An HTTP/2 frame: a 9-byte head (length, type, flags, stream) and its payload.
fn h2_frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let mut frame = (payload.len() as u32).to_be_bytes()[1..].to_vec();
    frame.extend_from_slice(&[kind, flags]);
    frame.extend_from_slice(&stream.to_be_bytes());
    frame.extend_from_slice(payload);
    frame
}

/// The next frame's type, flags and stream; `None` once the connection is closed.
async fn read_h2_frame(peer: &mut tokio::net::TcpStream) -> Option<(u8, u8, u32)> {
    use tokio::io::AsyncReadExt;
    let mut head = [0u8; 9];
    peer.read_exact(&mut head).await.ok()?;
    let length = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
    let mut payload = vec![0; length];
    peer.read_exact(&mut payload).await.ok()?;
    let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
    Some((head[3], head[4], stream))
}
