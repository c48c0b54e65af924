//! `/metrics`: every call counted by method and status code, over gRPC and gRPC-Web, timed to
//! the end of a stream; the exposition is OpenMetrics a real parser reads; it is served on the
//! private admin port when the service has one, and then not on the public one.

use std::{path::PathBuf, process::Command};

use futures::StreamExt;
use testkit::{TestStore, grpc_web};
use tonic::Code;
use videostore_proto::catalogue as cat;

const GET_MOVIE: &str = "videostore.catalogue.v1.CatalogueService/GetMovie";
const STREAM_MOVIES: &str = "videostore.catalogue.v1.CatalogueService/StreamMovies";

async fn scrape(addr: std::net::SocketAddr) -> (reqwest::StatusCode, String, String) {
    let response = reqwest::get(format!("http://{addr}/metrics")).await.expect("a scrape");
    let status = response.status();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|value| value.to_str().unwrap_or_default().to_owned())
        .unwrap_or_default();
    (status, content_type, response.text().await.expect("a body"))
}

/// The value of `rpc_server_call_duration_seconds_<series>` for `method` and `code` (0 if absent).
fn value(text: &str, series: &str, method: &str, code: &str) -> f64 {
    let name = format!("rpc_server_call_duration_seconds_{series}{{");
    text.lines()
        .filter(|line| line.starts_with(&name))
        .filter(|line| line.contains(&format!("rpc_method=\"{method}\"")))
        .filter(|line| line.contains(&format!("rpc_response_status_code=\"{code}\"")))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Python with the Prometheus client library, as `cargo xtask tools` installs it.
fn parser() -> PathBuf {
    let tools = std::env::var_os("VIDEOSTORE_TOOLS_DIR").map_or_else(
        || {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/root".into()))
                .join(".cache/videostore-tools")
        },
        PathBuf::from,
    );
    let python = tools.join("metrics/bin/python3");
    assert!(python.is_file(), "{} is missing: run `cargo xtask tools --browser`", python.display());
    python
}

/// Python's OpenMetrics parser reads `text` (exemplars included) and finds the call durations,
/// a histogram in seconds.
pub(crate) fn assert_parses(text: &str) {
    let script = "import sys\n\
        from prometheus_client.openmetrics.parser import text_string_to_metric_families\n\
        families = {f.name: f for f in text_string_to_metric_families(sys.stdin.read())}\n\
        f = families['rpc_server_call_duration_seconds']\n\
        assert f.type == 'histogram', f.type\n\
        assert f.unit == 'seconds', f.unit\n\
        print(len(f.samples))\n";
    let mut child = Command::new(parser())
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python starts");
    use std::io::Write;
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "the OpenMetrics parser refused /metrics: {}\n{text}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test]
async fn calls_are_counted_by_method_and_code_and_the_exposition_parses() {
    let store = TestStore::start().await;
    let addr = store.catalogue.addr;
    let (_, _, before) = scrape(addr).await;
    let mut catalogue = store.catalogue_client().await;
    for id in [1, 2, 3] {
        catalogue.get_movie(cat::GetMovieRequest { id }).await.unwrap();
    }
    for _ in 0..2 {
        let missing = catalogue.get_movie(cat::GetMovieRequest { id: 999_999 }).await;
        assert_eq!(missing.unwrap_err().code(), Code::NotFound);
    }
    let invalid = catalogue.get_movie(cat::GetMovieRequest { id: 0 }).await;
    assert_eq!(invalid.unwrap_err().code(), Code::InvalidArgument);
    // Over gRPC-Web (HTTP/1.1), as the browser calls.
    let reply = grpc_web::call(
        &store.catalogue.url(),
        &format!("/{GET_MOVIE}"),
        &cat::GetMovieRequest { id: 4 },
        None,
        None,
    )
    .await
    .unwrap();
    assert_eq!(reply.grpc_status(), Some(0));
    // Made-up paths share one series, however many there are.
    let base = store.catalogue.url();
    for path in ["/made.up.Service/One", "/made.up.Service/Two"] {
        let reply = grpc_web::call(&base, path, &cat::GetMovieRequest { id: 1 }, None, None).await;
        assert_eq!(reply.unwrap().grpc_status(), Some(Code::Unimplemented as i32));
    }
    // A server stream, read to its end.
    let films = catalogue
        .stream_movies(cat::StreamMoviesRequest { batch_size: 100, ..Default::default() })
        .await
        .unwrap()
        .into_inner()
        .count()
        .await;
    assert!(films > 0);

    let (status, content_type, after) = scrape(addr).await;
    assert_eq!(status, 200);
    assert!(content_type.starts_with("application/openmetrics-text"), "{content_type}");
    let moved = |series: &str, method: &str, code: &str| {
        value(&after, series, method, code) - value(&before, series, method, code)
    };
    assert_eq!(moved("count", GET_MOVIE, "OK"), 4.0, "three over gRPC, one over gRPC-Web");
    assert_eq!(moved("count", GET_MOVIE, "NOT_FOUND"), 2.0);
    assert_eq!(moved("count", GET_MOVIE, "INVALID_ARGUMENT"), 1.0);
    assert_eq!(moved("count", STREAM_MOVIES, "OK"), 1.0);
    assert_eq!(moved("count", "_OTHER", "UNIMPLEMENTED"), 2.0);
    assert!(!after.contains("made.up"), "no series per made-up path");
    // The buckets are cumulative: the last (+Inf) holds every call; each took some time.
    let last_bucket = |text: &str| {
        text.lines()
            .filter(|line| line.starts_with("rpc_server_call_duration_seconds_bucket{"))
            .filter(|line| line.contains(GET_MOVIE) && line.contains("\"OK\""))
            .filter(|line| line.contains("le=\"+Inf\""))
            .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>()
    };
    assert_eq!(last_bucket(&after) - last_bucket(&before), 4.0);
    assert!(moved("sum", GET_MOVIE, "OK") > 0.0);
    assert!(after.contains("rpc_system_name=\"grpc\""));

    // A real OpenMetrics parser reads it, and finds the histogram.
    assert_parses(&after);
    store.stop().await;
}

#[tokio::test]
async fn with_an_admin_port_metrics_are_served_there_only() {
    let store = TestStore::start().await;
    let mut config = store.stock_config();
    config.server.admin_listen = Some("127.0.0.1:0".parse().unwrap());
    let shutdown = tokio_util::sync::CancellationToken::new();
    let clock = std::sync::Arc::new(stock::clock::SystemClock);
    let app = stock::startup::Application::build(config, clock, shutdown.clone()).await.unwrap();
    let (public, admin) = (app.local_addr(), app.admin_addr().expect("an admin port"));
    let server = tokio::spawn(app.run());
    let channel = TestStore::channel(public).await;
    let mut stock = videostore_proto::stock::stock_service_client::StockServiceClient::new(channel);
    let request = videostore_proto::stock::GetAvailabilityRequest { movie_id: 1 };
    stock.get_availability(request).await.unwrap();
    let (status, _, text) = scrape(admin).await;
    assert_eq!(status, 200);
    assert!(text.contains("# TYPE rpc_server_call_duration_seconds histogram"), "{text}");
    let method = "videostore.stock.v1.StockService/GetAvailability";
    assert_eq!(value(&text, "count", method, "OK"), 1.0, "{text}");
    let (status, _, _) = scrape(public).await;
    assert_ne!(status, 200, "the public port does not show the metrics");
    shutdown.cancel();
    server.await.unwrap().unwrap();
    store.stop().await;
}

/// A plain sample's value (`name` as written, with or without labels), 0 if absent.
fn sample(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|line| line.split([' ', '{']).next() == Some(name))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test]
async fn the_services_show_their_cache_live_streams_and_password_work() {
    use videostore_proto::stock::{self, stock_service_client::StockServiceClient};
    let store = TestStore::start().await;
    // The read cache: the first lookup of a film misses, the next hits.
    let (_, _, before) = scrape(store.catalogue.addr).await;
    let mut catalogue = store.catalogue_client().await;
    for _ in 0..3 {
        catalogue.get_movie(cat::GetMovieRequest { id: 77 }).await.unwrap();
    }
    let (_, _, after) = scrape(store.catalogue.addr).await;
    let moved = |name: &str| sample(&after, name) - sample(&before, name);
    assert_eq!(moved("videostore_cache_misses_total"), 1.0, "{after}");
    assert_eq!(moved("videostore_cache_hits_total"), 2.0);

    // Live streams open now, and Argon2 runs (a sign-in) with nothing left queued.
    let stock_addr = store.stock().addr;
    let (_, _, before) = scrape(stock_addr).await;
    store.register("metrics@example.com", "Metrics", "metrics password").await;
    store.sign_in("metrics@example.com", "metrics password").await;
    let mut watches = Vec::new();
    for _ in 0..2 {
        let mut client = StockServiceClient::new(TestStore::channel(stock_addr).await);
        let request = stock::WatchAvailabilityRequest { movie_ids: vec![1], ..Default::default() };
        let mut watch = client.watch_availability(request).await.unwrap().into_inner();
        watch.message().await.unwrap().expect("the snapshot");
        watches.push(watch);
    }
    let (_, _, during) = scrape(stock_addr).await;
    assert_eq!(sample(&during, "videostore_watch_streams"), 2.0, "{during}");
    let runs = sample(&during, "videostore_password_runs_total")
        - sample(&before, "videostore_password_runs_total");
    assert!(runs >= 2.0, "a registration and a sign-in hash: {runs}");
    assert_eq!(sample(&during, "videostore_password_queue"), 0.0);
    assert!(during.contains("videostore_watch_resyncs_total"));
    drop(watches);
    // A closed stream gives its place back once the server notices.
    let mut open = 2.0;
    for _ in 0..100 {
        let (_, _, now) = scrape(stock_addr).await;
        open = sample(&now, "videostore_watch_streams");
        if open == 0.0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(open, 0.0);
    store.stop().await;
}

#[tokio::test]
async fn the_database_shows_its_connections_and_how_writes_were_committed() {
    use videostore_proto::stock::{self, stock_service_client::StockServiceClient};
    let store = TestStore::start().await;
    let stock_addr = store.stock().addr;
    // The staff account (made at start), not a customer registered now: a registration's
    // mail would be delivered, and removed from the outbox by a commit of its own, while this
    // test counts commits.
    let customer = store.staff_token().await;
    let (_, _, before) = scrape(stock_addr).await;
    // Eight rentals at once: each is committed, some of them together.
    let rents = (0..8).map(|i| {
        let channel = TestStore::channel(stock_addr);
        let customer = customer.clone();
        async move {
            let mut client = StockServiceClient::new(channel.await);
            let request =
                stock::RentRequest { movie_id: 10 + i, days: 1, request_id: format!("commit-{i}") };
            client.rent(testkit::authed(request, &customer)).await.unwrap();
        }
    });
    futures::future::join_all(rents).await;
    let (_, _, after) = scrape(stock_addr).await;
    let moved = |name: &str| sample(&after, name) - sample(&before, name);
    assert_eq!(moved("videostore_db_commit_writes_sum"), 8.0, "every rental committed: {after}");
    let commits = moved("videostore_db_commit_duration_seconds_count");
    assert!((1.0..=8.0).contains(&commits), "8 rentals in 1 to 8 commits: {commits}");
    assert_eq!(moved("videostore_db_commit_writes_count"), commits);
    assert!(moved("videostore_db_commit_duration_seconds_sum") > 0.0);
    // Nothing left waiting or lent out; the readers are there.
    assert!(sample(&after, "videostore_db_connections") >= 4.0);
    assert_eq!(sample(&after, "videostore_db_connections_in_use"), 0.0);
    assert_eq!(sample(&after, "videostore_db_connection_waiters"), 0.0);
    assert_eq!(sample(&after, "videostore_db_writer_queue"), 0.0);
    store.stop().await;
}

#[tokio::test]
async fn on_postgres_the_pool_shows_its_connections() {
    let store = TestStore::start_on(testkit::Backend::Postgres).await;
    let (_, _, text) = scrape(store.stock().addr).await;
    let size = sample(&text, "videostore_db_connections");
    assert!(size >= 1.0, "the pool's size: {text}");
    assert_eq!(sample(&text, "videostore_db_connection_waiters"), 0.0);
    assert!(sample(&text, "videostore_db_connections_in_use") <= size);
    let (_, _, text) = scrape(store.catalogue.addr).await;
    assert!(sample(&text, "videostore_db_connections") >= 1.0, "{text}");
    store.stop().await;
}
