//! Scenario 1, the old comparison redone: N films from the catalogue's database to a client over
//! each transport, timed from the request to the last film decoded.

use std::time::{Duration, Instant};

use anyhow::Context;
use futures::StreamExt;
use serde::{Deserialize, Serialize};

use crate::services::{cpu_seconds, minor_faults};
use tonic::{Request, transport::Channel};
use videostore_proto::catalogue::{self as pb, catalogue_service_client::CatalogueServiceClient};

/// One transport at one size.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct BulkResult {
    pub(crate) films: usize,
    pub(crate) transport: &'static str,
    /// Median over the runs, seconds.
    pub(crate) seconds: f64,
    /// Fastest run, seconds.
    pub(crate) best_seconds: f64,
    pub(crate) runs: usize,
    /// Bytes on the wire (the body; for gRPC the length-prefixed messages).
    pub(crate) bytes: u64,
    /// Messages (or JSON elements) received.
    pub(crate) messages: u64,
    /// CPU seconds per run spent by the serving processes (catalogue, plus the aggregator for
    /// REST; the ceiling for its rows) and by the client (this process).
    pub(crate) server_cpu_seconds: f64,
    pub(crate) client_cpu_seconds: f64,
    /// Fresh pages the client was given per run (minor page faults): the memory an answer
    /// makes it allocate.
    pub(crate) client_page_faults: u64,
}

/// The old prototype's figures (REST/JSON, gRPC unary, gRPC stream one film per message), by N.
pub(crate) const OLD: &[(usize, f64, f64, f64)] =
    &[(100_000, 1.05, 0.918, 4.45), (500_000, 5.26, 4.39, 25.24)];

const GENRES: &[&str] = &[
    "Drama",
    "Comedy",
    "Thriller",
    "Horror",
    "Romance",
    "Science Fiction",
    "Documentary",
    "Animation",
    "Adventure",
    "Crime",
    "Fantasy",
    "Western",
];
const WORDS: &[&str] = &[
    "Silent", "River", "Midnight", "Garden", "Empire", "Winter", "Glass", "Harbour", "Echo",
    "Crimson", "Paper", "Lantern", "Northern", "Shadow", "Orchard", "Velvet",
];

/// Film number `index` of the benchmark's catalogue: deterministic, about as big as a sample
/// film (title, director, one to three genres, a two-sentence synopsis).
pub(crate) fn film(index: usize) -> pb::Movie {
    let word = |n: usize| WORDS[(index / n + n) % WORDS.len()];
    let genres =
        (0..1 + index % 3).map(|g| GENRES[(index + g * 5) % GENRES.len()].into()).collect();
    pb::Movie {
        id: 0,
        title: format!("The {} {} {index}", word(1), word(7)),
        release_year: 1950 + (index % 76) as i32,
        genres,
        runtime_minutes: 80 + (index % 100) as i32,
        director: format!("{} {}", word(3), word(5)),
        rating: 1 + (index % 5) as i32,
        synopsis: format!(
            "A {} story of a {} keeper who finds a {} letter by the {}. Nothing is what it seems.",
            word(2).to_lowercase(),
            word(4).to_lowercase(),
            word(6).to_lowercase(),
            word(8).to_lowercase()
        ),
        audience_rating: (20 + index % 81) as f32 / 10.0,
        external_key: format!("bench-{index:07}"),
        update_time: None,
    }
}

/// Film number `index` as the catalogue holds it after [`import`] (which gives film `index` the
/// id `index + 1`) and sends it back: with its id and an update time of the size a stored one
/// has (seconds since 1970 and whole milliseconds), so the ceiling streams the same bytes.
pub(crate) fn stored_film(index: usize) -> pb::Movie {
    pb::Movie {
        id: index as i64 + 1,
        update_time: Some(prost_types::Timestamp {
            seconds: 1_795_000_000,
            nanos: ((index * 7_919) % 1_000) as i32 * 1_000_000,
        }),
        ..film(index)
    }
}

/// Imports films `from..to` through ImportMovies (client streaming), 1,000 per message.
pub(crate) async fn import(
    channel: Channel,
    staff_token: &str,
    from: usize,
    to: usize,
) -> anyhow::Result<()> {
    let messages = (from..to).step_by(1000).map(move |start| pb::ImportMoviesRequest {
        movies: (start..(start + 1000).min(to)).map(film).collect(),
    });
    let mut request = Request::new(futures::stream::iter(messages));
    request.metadata_mut().insert("authorization", format!("Bearer {staff_token}").parse()?);
    let summary = CatalogueServiceClient::new(channel)
        .max_encoding_message_size(64 << 20)
        .import_movies(request)
        .await?
        .into_inner();
    anyhow::ensure!(
        summary.rejected_count == 0 && (summary.created + summary.updated) as usize == to - from,
        "import of films {from}..{to}: {summary:?}"
    );
    Ok(())
}

/// What one delivery received.
struct Received {
    films: usize,
    bytes: u64,
    messages: u64,
    /// What the client decoded and still holds (the unary answer): freed only after the clock
    /// stops, since the time is to the last film decoded, not to the memory given back.
    held: Option<pb::ExportMoviesResponse>,
}

/// A film as the REST facade spells it.
#[derive(Deserialize)]
#[allow(dead_code)] // Decoded field by field, as a client would; not every field is read.
struct RestFilm {
    id: i64,
    title: String,
    release_year: i32,
    genres: Vec<String>,
    runtime_minutes: i32,
    director: String,
    rating: String,
    synopsis: String,
    audience_rating: f32,
}

/// The export's JSON array, decoded film by film as it arrives (as the gRPC clients decode each
/// message as it arrives), never held whole.
async fn rest(http: &reqwest::Client, aggregator: &str) -> anyhow::Result<Received> {
    let mut response = http
        .get(format!("http://{aggregator}/api/movies/export?order=id"))
        .send()
        .await?
        .error_for_status()?;
    let mut received = Received { films: 0, bytes: 0, messages: 0, held: None };
    let mut array = JsonArray::default();
    while let Some(chunk) = response.chunk().await? {
        received.bytes += chunk.len() as u64;
        array.push(&chunk, |_film: RestFilm| received.films += 1)?;
    }
    anyhow::ensure!(array.closed, "the JSON array was cut short");
    received.messages = received.films as u64;
    Ok(received)
}

/// A JSON array of objects read piece by piece: each element is decoded as soon as it is whole
/// (objects end with their brace, so a piece never ends in what looks like a whole element).
#[derive(Default)]
struct JsonArray {
    /// Bytes received and not yet decoded (at most one element and a piece).
    pending: Vec<u8>,
    opened: bool,
    closed: bool,
}

impl JsonArray {
    fn push<T: serde::de::DeserializeOwned>(
        &mut self,
        piece: &[u8],
        mut element: impl FnMut(T),
    ) -> anyhow::Result<()> {
        self.pending.extend_from_slice(piece);
        let mut at = 0;
        let skip_space = |bytes: &[u8], mut at: usize| {
            while bytes.get(at).is_some_and(|b| b.is_ascii_whitespace()) {
                at += 1;
            }
            at
        };
        loop {
            at = skip_space(&self.pending, at);
            let Some(&next) = self.pending.get(at) else { break };
            anyhow::ensure!(!self.closed, "bytes after the JSON array");
            if !self.opened {
                anyhow::ensure!(next == b'[', "not a JSON array");
                self.opened = true;
                at += 1;
                continue;
            }
            if next == b']' {
                self.closed = true;
                at += 1;
                continue;
            }
            if next == b',' {
                at += 1;
                continue;
            }
            let mut values =
                serde_json::Deserializer::from_slice(&self.pending[at..]).into_iter::<T>();
            match values.next() {
                Some(Ok(value)) => {
                    at += values.byte_offset();
                    element(value);
                }
                // The element goes on in the next piece.
                Some(Err(error)) if error.is_eof() => break,
                Some(Err(error)) => return Err(error).context("decoding a film"),
                None => break,
            }
        }
        self.pending.drain(..at);
        Ok(())
    }
}

async fn unary(channel: Channel, measure_bytes: bool) -> anyhow::Result<Received> {
    let response = CatalogueServiceClient::new(channel)
        .max_decoding_message_size(512 << 20)
        .export_movies(pb::ExportMoviesRequest {
            order_by: pb::MovieOrder::Id as i32,
            ..Default::default()
        })
        .await?
        .into_inner();
    Ok(Received {
        films: response.movies.len(),
        bytes: if measure_bytes { prost::Message::encoded_len(&response) as u64 + 5 } else { 0 },
        messages: 1,
        held: Some(response),
    })
}

async fn stream(
    channel: Channel,
    batch_size: i32,
    films_header: Option<usize>,
    measure_bytes: bool,
) -> anyhow::Result<Received> {
    let mut request = Request::new(pb::StreamMoviesRequest {
        order_by: pb::MovieOrder::Id as i32,
        batch_size,
        ..Default::default()
    });
    if let Some(films) = films_header {
        request.metadata_mut().insert("x-films", films.to_string().parse()?);
    }
    let mut stream = CatalogueServiceClient::new(channel)
        .max_decoding_message_size(16 << 20)
        .stream_movies(request)
        .await?
        .into_inner();
    let mut received = Received { films: 0, bytes: 0, messages: 0, held: None };
    while let Some(batch) = stream.message().await? {
        received.films += batch.movies.len();
        if measure_bytes {
            received.bytes += prost::Message::encoded_len(&batch) as u64 + 5;
        }
        received.messages += 1;
    }
    Ok(received)
}

/// StreamMovies over gRPC-Web on HTTP/1.1, as the browser receives it: length-prefixed frames in
/// the response body, decoded as they arrive, the trailers frame last.
async fn grpc_web(http: &reqwest::Client, catalogue: &str) -> anyhow::Result<Received> {
    let message =
        pb::StreamMoviesRequest { order_by: pb::MovieOrder::Id as i32, ..Default::default() };
    let encoded = prost::Message::encode_to_vec(&message);
    let mut body = Vec::with_capacity(encoded.len() + 5);
    body.push(0);
    body.extend_from_slice(&(encoded.len() as u32).to_be_bytes());
    body.extend_from_slice(&encoded);
    let response = http
        .post(format!("http://{catalogue}/videostore.catalogue.v1.CatalogueService/StreamMovies"))
        .header("content-type", "application/grpc-web+proto")
        .header("x-grpc-web", "1")
        .body(body)
        .send()
        .await?
        .error_for_status()?;
    let mut chunks = response.bytes_stream();
    let mut buffer: Vec<u8> = Vec::new();
    let mut received = Received { films: 0, bytes: 0, messages: 0, held: None };
    let mut status = None;
    while let Some(chunk) = chunks.next().await {
        buffer.extend_from_slice(&chunk?);
        let mut at = 0;
        while buffer.len() - at >= 5 {
            let flag = buffer[at];
            let length = u32::from_be_bytes(buffer[at + 1..at + 5].try_into()?) as usize;
            if buffer.len() - at - 5 < length {
                break;
            }
            let frame = &buffer[at + 5..at + 5 + length];
            if flag & 0x80 != 0 {
                let trailers = String::from_utf8_lossy(frame);
                status = trailers.lines().find_map(|line| {
                    line.strip_prefix("grpc-status:").map(|v| v.trim().to_owned())
                });
            } else {
                let batch: pb::StreamMoviesResponse = prost::Message::decode(frame)?;
                received.films += batch.movies.len();
                received.messages += 1;
            }
            received.bytes += 5 + length as u64;
            at += 5 + length;
        }
        buffer.drain(..at);
    }
    anyhow::ensure!(status.as_deref() == Some("0"), "gRPC-Web stream ended with {status:?}");
    Ok(received)
}

/// The transports, in the order they take turns.
const TRANSPORTS: &[&str] = &[
    "REST/JSON (aggregator, streamed JSON array)",
    "gRPC unary (ExportMovies, one message)",
    "gRPC stream, one film per message (the old way)",
    "gRPC stream, batches of 500 (StreamMovies default)",
    "gRPC stream, batches of 5000 (the largest batch)",
    "gRPC-Web stream, batches of 500 (as the browser gets it)",
    "reference ceiling: stream from memory, one film per message",
    "reference ceiling: stream from memory, batches of 5000",
];

/// One transport's runs so far.
struct Runs {
    transport: &'static str,
    /// The serving processes' pids.
    servers: Vec<u32>,
    times: Vec<Duration>,
    server_cpu: f64,
    client_cpu: f64,
    client_faults: u64,
    /// What the untimed warm-up run received.
    warm_up: Option<Received>,
}

/// Every transport (those containing `only`, if given) at `films` films, `runs` times each. The
/// transports take turns, one run each per round after an untimed warm-up round, so that the
/// machine's changes of speed (tens of percent here, from one minute to the next) fall on all of
/// them alike instead of on whichever ran during a slow spell.
pub(crate) async fn measure(
    films: usize,
    runs: usize,
    running: &crate::services::Running,
    only: Option<&str>,
) -> anyhow::Result<Vec<BulkResult>> {
    let (catalogue, aggregator, ceiling) = (running.catalogue, running.aggregator, running.ceiling);
    let connect = |addr: std::net::SocketAddr| async move {
        Channel::from_shared(format!("http://{addr}"))?
            .tcp_nodelay(true)
            .initial_stream_window_size(Some(4 << 20))
            .initial_connection_window_size(Some(8 << 20))
            .connect()
            .await
            .context("connecting")
    };
    let catalogue_channel = connect(catalogue).await?;
    let ceiling_channel = connect(ceiling).await?;
    let http = reqwest::Client::builder().tcp_nodelay(true).build()?;
    let (catalogue_addr, aggregator_addr) = (catalogue.to_string(), aggregator.to_string());
    let mut all: Vec<Runs> = TRANSPORTS
        .iter()
        .filter(|transport| only.is_none_or(|only| transport.contains(only)))
        .map(|&transport| Runs {
            transport,
            servers: if transport.starts_with("reference") {
                vec!["ceiling"]
            } else if transport.starts_with("REST") {
                vec!["catalogue", "aggregator"]
            } else {
                vec!["catalogue"]
            }
            .into_iter()
            .filter_map(|name| running.pid(name))
            .collect(),
            times: Vec::with_capacity(runs),
            server_cpu: 0.0,
            client_cpu: 0.0,
            client_faults: 0,
            warm_up: None,
        })
        .collect();
    let client_cpu = || cpu_seconds(std::process::id());
    // Round 0 is the warm-up: it fills the caches and measures the bytes on the wire (which
    // takes a walk over every film the timed runs leave out).
    for round in 0..=runs {
        let warm_up = round == 0;
        for transport in &mut all {
            let server_cpu = || transport.servers.iter().map(|&pid| cpu_seconds(pid)).sum::<f64>();
            let (server_before, client_before) = (server_cpu(), client_cpu());
            let faults_before = minor_faults(std::process::id());
            let name = transport.transport;
            let started = Instant::now();
            let mut received = match name.split(' ').next() {
                Some("REST/JSON") => rest(&http, &aggregator_addr).await?,
                Some("gRPC-Web") => grpc_web(&http, &catalogue_addr).await?,
                Some("reference") if name.contains("5000") => {
                    stream(ceiling_channel.clone(), 5000, Some(films), warm_up).await?
                }
                Some("reference") => {
                    stream(ceiling_channel.clone(), 1, Some(films), warm_up).await?
                }
                _ if name.contains("unary") => unary(catalogue_channel.clone(), warm_up).await?,
                _ if name.contains("one film") => {
                    stream(catalogue_channel.clone(), 1, None, warm_up).await?
                }
                _ if name.contains("5000") => {
                    stream(catalogue_channel.clone(), 5000, None, warm_up).await?
                }
                _ => stream(catalogue_channel.clone(), 0, None, warm_up).await?,
            };
            let elapsed = started.elapsed();
            // Freed once timed (its CPU still counts below).
            drop(received.held.take());
            anyhow::ensure!(
                received.films == films,
                "{name}: {} films arrived, not {films}",
                received.films
            );
            if warm_up {
                transport.warm_up = Some(received);
            } else {
                transport.times.push(elapsed);
                transport.server_cpu += server_cpu() - server_before;
                transport.client_cpu += client_cpu() - client_before;
                transport.client_faults += minor_faults(std::process::id()) - faults_before;
            }
        }
    }
    // The ceiling is only a ceiling if it delivers what the catalogue does.
    let bytes = |name: &str| {
        all.iter().find(|t| t.transport == name).and_then(|t| Some(t.warm_up.as_ref()?.bytes))
    };
    if let (Some(ours), Some(ceiling)) = (
        bytes("gRPC stream, batches of 5000 (the largest batch)"),
        bytes("reference ceiling: stream from memory, batches of 5000"),
    ) {
        anyhow::ensure!(
            ours.abs_diff(ceiling) * 200 <= ours,
            "the ceiling streamed {ceiling} bytes where the catalogue streamed {ours}"
        );
    }
    let mut results = Vec::with_capacity(all.len());
    for mut transport in all {
        transport.times.sort();
        let received = transport.warm_up.expect("the warm-up run");
        let median = transport.times[transport.times.len() / 2];
        let (server_cpu_seconds, client_cpu_seconds) =
            (transport.server_cpu / runs as f64, transport.client_cpu / runs as f64);
        let client_page_faults = transport.client_faults / runs as u64;
        eprintln!(
            "bench:   {films} films, {}: {:.3} s ({:.1} MB in {} messages; CPU per run: server \
             {server_cpu_seconds:.2} s, client {client_cpu_seconds:.2} s; client page faults \
             {client_page_faults})",
            transport.transport,
            median.as_secs_f64(),
            received.bytes as f64 / 1e6,
            received.messages,
        );
        results.push(BulkResult {
            films,
            transport: transport.transport,
            seconds: median.as_secs_f64(),
            best_seconds: transport.times[0].as_secs_f64(),
            runs,
            bytes: received.bytes,
            messages: received.messages,
            server_cpu_seconds,
            client_cpu_seconds,
            client_page_faults,
        });
    }
    Ok(results)
}

/// How many films the catalogue has.
pub(crate) async fn total(channel: Channel) -> anyhow::Result<usize> {
    Ok(CatalogueServiceClient::new(channel)
        .list_movies(pb::ListMoviesRequest { page_size: 1, ..Default::default() })
        .await?
        .into_inner()
        .total_size as usize)
}

/// Waits until the catalogue has `films` films (imports commit in batches).
pub(crate) async fn wait_for_total(channel: Channel, films: usize) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let total = total(channel.clone()).await?;
        if total == films {
            return Ok(());
        }
        anyhow::ensure!(Instant::now() < deadline, "the catalogue has {total} films, not {films}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, Deserialize, PartialEq)]
    struct Item {
        name: String,
        n: i64,
    }

    fn decode(text: &str, piece: usize) -> anyhow::Result<(Vec<Item>, bool)> {
        let mut array = JsonArray::default();
        let mut items = Vec::new();
        for part in text.as_bytes().chunks(piece) {
            array.push(part, |item: Item| items.push(item))?;
        }
        Ok((items, array.closed))
    }

    /// Elements arrive whole whatever the pieces, brackets and commas inside strings included.
    #[test]
    fn a_json_array_decodes_element_by_element_across_any_pieces() {
        let text = r#" [ {"name":"a, [b]","n":1},{"name":"q\"uo\\te}","n":-2} ,
            {"n":3,"name":"é東"} ] "#;
        let expected = vec![
            Item { name: "a, [b]".into(), n: 1 },
            Item { name: "q\"uo\\te}".into(), n: -2 },
            Item { name: "é東".into(), n: 3 },
        ];
        for piece in 1..text.len() {
            assert_eq!(decode(text, piece).unwrap(), (expected.clone(), true), "pieces of {piece}");
        }
        assert_eq!(decode("[]", 1).unwrap(), (vec![], true));
        assert!(!decode(r#"[{"name":"a","n":1}"#, 3).unwrap().1, "not closed");
        assert!(decode(r#"{"name":"a","n":1}"#, 3).is_err(), "not an array");
        assert!(decode(r#"[{"name":1,"n":1}]"#, 3).is_err(), "a bad element");
        assert!(decode("[] []", 2).is_err(), "bytes after the array");
    }
}
