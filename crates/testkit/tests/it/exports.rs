//! Exports are bounded: a client that stops reading one holds a few chunks of it in the server,
//! not the catalogue; only a few run at once, and more are refused with a retry hint; and the
//! store front's stalled downloads never hold up its pages.

use std::{net::SocketAddr, time::Duration};

use testkit::{TestStore, authed};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpSocket, TcpStream},
};
use tonic::Code;
use videostore_proto::catalogue as cat;

/// 2,000 films of about 20 KB each: a 40 MB export, far more than any buffer on the way.
async fn import_big_films(store: &TestStore) {
    let staff = store.staff_token().await;
    let mut catalogue = store.catalogue_client().await;
    let batches = (0..4).map(|batch| cat::ImportMoviesRequest {
        movies: (0..500)
            .map(|i| cat::Movie {
                title: format!("Long film {batch}-{i}"),
                release_year: 1990,
                genres: vec!["Drama".into()],
                runtime_minutes: 100,
                rating: cat::MpaaRating::Pg as i32,
                synopsis: "🎬".repeat(5_000),
                audience_rating: 7.0,
                external_key: format!("long-{batch}-{i}"),
                ..Default::default()
            })
            .collect(),
    });
    let summary = catalogue
        .import_movies(authed(futures::stream::iter(batches.collect::<Vec<_>>()), &staff))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(summary.created, 2_000);
}

/// A client that sends `request` and then never reads: a connection with a tiny receive buffer.
async fn stalled(addr: SocketAddr, request: &[u8]) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stream = socket.connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    // The answer has begun: its status line is there to read.
    let mut first = [0u8; 12];
    stream.read_exact(&mut first).await.unwrap();
    assert_eq!(&first, b"HTTP/1.1 200", "{}", String::from_utf8_lossy(&first));
    stream
}

/// A gRPC-Web ExportMovies of the whole catalogue, as raw HTTP/1.1.
fn grpc_web_export(addr: SocketAddr) -> Vec<u8> {
    let body = testkit::grpc_web::frame(&cat::ExportMoviesRequest::default());
    let mut request = format!(
        "POST /videostore.catalogue.v1.CatalogueService/ExportMovies HTTP/1.1\r\nhost: {addr}\r\n\
         content-type: application/grpc-web+proto\r\nx-grpc-web: 1\r\ncontent-length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(&body);
    request
}

#[tokio::test]
async fn stalled_grpc_exports_take_their_places_and_give_them_back_when_they_go() {
    let store = TestStore::start().await;
    import_big_films(&store).await;
    let addr = store.catalogue.addr;
    let first = stalled(addr, &grpc_web_export(addr)).await;
    let second = stalled(addr, &grpc_web_export(addr)).await;

    // Two exports run at once; a third is told to come back, and the pages still answer.
    let mut client = store.catalogue_client().await.max_decoding_message_size(64 << 20);
    let refused = client.export_movies(cat::ExportMoviesRequest::default()).await.unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    assert!(refused.message().contains("try again"), "{}", refused.message());
    let page = client
        .list_movies(cat::ListMoviesRequest { page_size: 5, ..Default::default() })
        .await
        .unwrap();
    assert_eq!(page.into_inner().movies.len(), 5);

    // The stalled clients go: their places come back, and a whole export can be had.
    drop((first, second));
    let mut tries = 0;
    let whole = loop {
        match client.export_movies(cat::ExportMoviesRequest::default()).await {
            Ok(export) => break export.into_inner(),
            Err(status) if status.code() == Code::ResourceExhausted && tries < 100 => {
                tries += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(status) => panic!("the export was refused after its places were freed: {status:?}"),
        }
    };
    assert_eq!(whole.movies.len(), 2_600);
    store.stop().await;
}

#[tokio::test]
async fn stalled_rest_downloads_do_not_hold_up_pages_and_are_capped() {
    let store = TestStore::start().await;
    import_big_films(&store).await;
    let addr = store.aggregator.addr;
    let export = format!("GET /api/movies/export HTTP/1.1\r\nhost: {addr}\r\n\r\n").into_bytes();
    // Four downloads whose clients read nothing, as `curl --limit-rate 1` would.
    let mut downloads = Vec::new();
    for _ in 0..4 {
        downloads.push(stalled(addr, &export).await);
    }

    // Pages still answer (each stalled download has stopped its catalogue stream by now).
    let http = reqwest::Client::new();
    let base = store.aggregator.url();
    for id in [1, 2, 3] {
        let page = tokio::time::timeout(
            Duration::from_secs(20),
            http.get(format!("{base}/api/movies/{id}")).send(),
        )
        .await
        .expect("a film page waited on stalled downloads")
        .unwrap();
        assert_eq!(page.status(), 200);
    }
    // A fifth download is refused with a hint of when to come back.
    let refused = http.get(format!("{base}/api/movies/export")).send().await.unwrap();
    assert_eq!(refused.status(), 429);
    assert_eq!(refused.headers()["retry-after"], "5");
    let body: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "RESOURCE_EXHAUSTED", "{body}");

    // When they go, a whole download can be had again.
    drop(downloads);
    let mut tries = 0;
    let whole = loop {
        let response = http.get(format!("{base}/api/movies/export")).send().await.unwrap();
        if response.status() == 429 && tries < 100 {
            tries += 1;
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        }
        assert_eq!(response.status(), 200);
        break response.json::<Vec<serde_json::Value>>().await.unwrap();
    };
    assert_eq!(whole.len(), 2_600);
    store.stop().await;
}
