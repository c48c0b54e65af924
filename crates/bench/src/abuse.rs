//! Scenario 6, abuse: what the abuse limits leave a real customer.
//!
//! - Sign-in during a sign-in flood: the stock service runs with its limits as shipped, behind
//!   127.0.0.1 as a trusted proxy, so that every flooding call can come from an address of its
//!   own (`x-forwarded-for`: a distributed flood, which the per-address limit cannot stop).
//!   Real customers, each from their own address, sign in meanwhile, honouring the retry hints
//!   they get: the time until they are signed in.
//! - Memory of each service under a flood of the most expensive requests a client may send
//!   (the largest batches and pages).
//! - GetMovie's latency during a flood of worst-case searches (eight long words that match
//!   nothing, so every title is looked at), against GetMovie alone.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use serde::Serialize;
use tonic::{Code, Request, transport::Channel};
use tonic_types::StatusExt;
use videostore_proto::{
    aggregator::{ListStorefrontRequest, storefront_service_client::StorefrontServiceClient},
    catalogue::{
        BatchGetMoviesRequest, GetMovieRequest, ListMoviesRequest, MovieFilter,
        catalogue_service_client::CatalogueServiceClient,
    },
    stock::{
        BatchGetAvailabilityRequest, RegisterRequest, SignInRequest,
        account_service_client::AccountServiceClient, stock_service_client::StockServiceClient,
    },
};

use crate::{clients::channels, load, services};

/// Latencies of some calls, milliseconds.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Latency {
    pub(crate) calls: usize,
    pub(crate) p50_ms: f64,
    pub(crate) max_ms: f64,
}

impl Latency {
    fn of(mut samples: Vec<Duration>) -> Self {
        samples.sort();
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        Self {
            calls: samples.len(),
            p50_ms: samples.get(samples.len() / 2).copied().map_or(0.0, ms),
            max_ms: samples.last().copied().map_or(0.0, ms),
        }
    }
}

/// A real sign-in, alone and during a flood.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct SignInFlood {
    /// Flooding callers in flight.
    pub(crate) flood_concurrency: usize,
    /// Flood calls answered (UNAUTHENTICATED: wrong credentials).
    pub(crate) flood_checked: u64,
    /// Flood calls refused RESOURCE_EXHAUSTED at once (the password queue was full).
    pub(crate) flood_refused: u64,
    /// Real customers signing in with nobody else about.
    pub(crate) alone: Latency,
    /// Real customers signing in during the flood: the time until signed in, retries included.
    pub(crate) flooded: Latency,
    /// The most tries one of them needed.
    pub(crate) most_tries: u32,
    /// Real sign-ins that had not succeeded after 30 s.
    pub(crate) gave_up: usize,
}

/// A service's memory under a flood of its most expensive requests.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct BigRequests {
    pub(crate) service: &'static str,
    pub(crate) request: &'static str,
    #[serde(flatten)]
    pub(crate) measured: load::Measured,
    pub(crate) rss_before_kib: u64,
    pub(crate) rss_peak_kib: u64,
}

/// GetMovie alone and during a flood of worst-case searches.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct SearchFlood {
    pub(crate) films: usize,
    /// Searching callers in flight.
    pub(crate) search_concurrency: usize,
    pub(crate) alone: load::Measured,
    pub(crate) flooded: load::Measured,
    /// The searches answered meanwhile.
    pub(crate) searches: u64,
}

/// `request` as if forwarded by the trusted proxy for `client`.
fn from<T>(client: String, message: T) -> Request<T> {
    let mut request = Request::new(message);
    request.metadata_mut().insert("x-forwarded-for", client.parse().expect("an address"));
    request
}

/// Signs in until it works, waiting as told between tries: (time taken, tries), or `None`.
async fn sign_in(channel: Channel, client: String, email: String) -> Option<(Duration, u32)> {
    let mut accounts = AccountServiceClient::new(channel);
    let started = Instant::now();
    let mut tries = 0;
    while started.elapsed() < Duration::from_secs(30) {
        tries += 1;
        let request = SignInRequest { email: email.clone(), password: PASSWORD.into() };
        match accounts.sign_in(from(client.clone(), request)).await {
            Ok(_) => return Some((started.elapsed(), tries)),
            Err(status) if status.code() == Code::ResourceExhausted => {
                let wait = status.get_details_retry_info().and_then(|info| info.retry_delay);
                tokio::time::sleep(wait.unwrap_or(Duration::from_secs(1))).await;
            }
            Err(_) => return None,
        }
    }
    None
}

use crate::clients::PASSWORD;

/// A real customer's sign-in, alone and during a flood of failing sign-ins from `concurrency`
/// callers, each call from an address of its own.
pub(crate) async fn sign_in_flood(
    running: &services::Running,
    customers: usize,
    concurrency: usize,
) -> anyhow::Result<SignInFlood> {
    let channel = channels(running.stock, 1).await?.remove(0);
    let customer =
        |n: usize| (format!("198.51.100.{}", n % 250 + 1), format!("real-{n}@example.com"));
    let mut accounts = AccountServiceClient::new(channel.clone());
    for n in 0..customers {
        let (client, email) = customer(n);
        let register = RegisterRequest { email, name: "Real".into(), password: PASSWORD.into() };
        crate::clients::register_with(&mut accounts, &running.mailbox, from(client, register))
            .await?;
    }
    let mut alone = Vec::new();
    for n in 0..customers {
        let (client, email) = customer(n);
        let (took, _) = sign_in(channel.clone(), client, email)
            .await
            .ok_or_else(|| anyhow::anyhow!("a real sign-in failed with nobody else about"))?;
        alone.push(took);
    }

    let flooding = Arc::new(AtomicBool::new(true));
    let (checked, refused) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let flood_channels = channels(running.stock, 8).await?;
    let flood: Vec<_> = (0..concurrency)
        .map(|worker| {
            let mut accounts = AccountServiceClient::new(flood_channels[worker % 8].clone());
            let (flooding, checked, refused) =
                (Arc::clone(&flooding), Arc::clone(&checked), Arc::clone(&refused));
            tokio::spawn(async move {
                let mut call = 0u32;
                while flooding.load(Ordering::Relaxed) {
                    call += 1;
                    let client = format!("10.{}.{}.{}", worker, call / 250 % 250, call % 250 + 1);
                    let request = SignInRequest {
                        email: format!("nobody-{worker}-{call}@example.com"),
                        password: "a guess at a password".into(),
                    };
                    match accounts.sign_in(from(client, request)).await {
                        Err(status) if status.code() == Code::ResourceExhausted => {
                            refused.fetch_add(1, Ordering::Relaxed);
                        }
                        _ => {
                            checked.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            })
        })
        .collect();
    // The flood is in full swing before the first real customer comes.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut flooded = Vec::new();
    let (mut most_tries, mut gave_up) = (0, 0);
    let real: Vec<_> = (0..customers)
        .map(|n| {
            let (client, email) = customer(n);
            let channel = channel.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(250) * n as u32).await;
                sign_in(channel, client, email).await
            })
        })
        .collect();
    for outcome in futures::future::join_all(real).await {
        match outcome? {
            Some((took, tries)) => {
                flooded.push(took);
                most_tries = most_tries.max(tries);
            }
            None => gave_up += 1,
        }
    }
    flooding.store(false, Ordering::Relaxed);
    futures::future::join_all(flood).await;
    Ok(SignInFlood {
        flood_concurrency: concurrency,
        flood_checked: checked.load(Ordering::Relaxed),
        flood_refused: refused.load(Ordering::Relaxed),
        alone: Latency::of(alone),
        flooded: Latency::of(flooded),
        most_tries,
        gave_up,
    })
}

/// `service`'s memory while `call` (of `request`) runs from `concurrency` callers for
/// `duration`: its RSS before, and the highest sampled every 20 ms meanwhile.
async fn under_flood<F, Fut>(
    running: &services::Running,
    (service, request): (&'static str, &'static str),
    concurrency: usize,
    duration: Duration,
    call: F,
) -> BigRequests
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let pid = running.pid(service).unwrap_or(0);
    let rss_before_kib = services::rss_kib(pid);
    let sampling = Arc::new(AtomicBool::new(true));
    let sampler = {
        let sampling = Arc::clone(&sampling);
        tokio::spawn(async move {
            let mut peak = 0;
            while sampling.load(Ordering::Relaxed) {
                peak = peak.max(services::rss_kib(pid));
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            peak
        })
    };
    let measured = load::run(concurrency, duration, call).await;
    sampling.store(false, Ordering::Relaxed);
    let rss_peak_kib = sampler.await.unwrap_or(0);
    BigRequests { service, request, measured, rss_before_kib, rss_peak_kib }
}

/// Each service's memory under `concurrency` callers of its most expensive requests.
pub(crate) async fn big_requests(
    running: &services::Running,
    concurrency: usize,
    duration: Duration,
) -> anyhow::Result<Vec<BigRequests>> {
    let ids: Vec<i64> = (1..=1000).map(|n| 1 + n % 600).collect();
    let catalogue = channels(running.catalogue, 4).await?;
    let batch = ids.clone();
    let catalogue = under_flood(
        running,
        ("catalogue", "BatchGetMovies of 1,000 ids (the most allowed)"),
        concurrency,
        duration,
        move |worker| {
            let mut client = CatalogueServiceClient::new(catalogue[worker % 4].clone());
            let ids = batch.clone();
            async move { client.batch_get_movies(BatchGetMoviesRequest { ids }).await.is_ok() }
        },
    )
    .await;
    let stock = channels(running.stock, 4).await?;
    let stock = under_flood(
        running,
        ("stock", "BatchGetAvailability of 1,000 ids (the most allowed)"),
        concurrency,
        duration,
        move |worker| {
            let mut client = StockServiceClient::new(stock[worker % 4].clone());
            let request = BatchGetAvailabilityRequest { movie_ids: ids.clone() };
            async move { client.batch_get_availability(request).await.is_ok() }
        },
    )
    .await;
    let aggregator = channels(running.aggregator, 4).await?;
    let aggregator = under_flood(
        running,
        ("aggregator", "ListStorefront of 100 films with their stock (the largest page)"),
        concurrency,
        duration,
        move |worker| {
            let mut client = StorefrontServiceClient::new(aggregator[worker % 4].clone());
            let request = ListStorefrontRequest { page_size: 100, ..Default::default() };
            async move { client.list_storefront(request).await.is_ok() }
        },
    )
    .await;
    Ok(vec![catalogue, stock, aggregator])
}

/// GetMovie alone, then during `search_concurrency` callers of worst-case searches.
pub(crate) async fn search_flood(
    running: &services::Running,
    films: usize,
    search_concurrency: usize,
    duration: Duration,
) -> anyhow::Result<SearchFlood> {
    const READERS: usize = 4;
    let readers = channels(running.catalogue, 1).await?;
    let get_movie = move |_worker: usize| {
        let mut client = CatalogueServiceClient::new(readers[0].clone());
        async move {
            let id = 1 + (rand::random::<u64>() % films as u64) as i64;
            client.get_movie(GetMovieRequest { id }).await.is_ok()
        }
    };
    let get_movie = Arc::new(get_movie);
    let alone = {
        let get_movie = Arc::clone(&get_movie);
        load::run(READERS, duration, move |worker| get_movie(worker)).await
    };

    let searching = Arc::new(AtomicBool::new(true));
    let searches = Arc::new(AtomicU64::new(0));
    let searchers = channels(running.catalogue, 4).await?;
    // Eight different long words (the most a search may have), none in any title.
    let words: Vec<String> = (0..8).map(|n| format!("zq{n}{}", "x".repeat(20))).collect::<Vec<_>>();
    let query = words.join(" ");
    let flood: Vec<_> = (0..search_concurrency)
        .map(|worker| {
            let mut client = CatalogueServiceClient::new(searchers[worker % 4].clone());
            let (searching, searches, query) =
                (Arc::clone(&searching), Arc::clone(&searches), query.clone());
            tokio::spawn(async move {
                while searching.load(Ordering::Relaxed) {
                    let request = ListMoviesRequest {
                        filter: Some(MovieFilter { query: query.clone(), ..Default::default() }),
                        page_size: 100,
                        ..Default::default()
                    };
                    if client.list_movies(request).await.is_ok() {
                        searches.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let flooded = load::run(READERS, duration, move |worker| get_movie(worker)).await;
    searching.store(false, Ordering::Relaxed);
    futures::future::join_all(flood).await;
    Ok(SearchFlood {
        films,
        search_concurrency,
        alone,
        flooded,
        searches: searches.load(Ordering::Relaxed),
    })
}
