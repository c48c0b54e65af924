//! Unary throughput and latency: GetMovie direct, GetMoviePage through the aggregator and the
//! REST film endpoint, each in slices taking turns with the reference ceiling.

use std::{sync::Arc, time::Duration};

use serde::Serialize;
use tonic::{Request, transport::Channel};
use videostore_proto::{
    aggregator::{GetMoviePageRequest, storefront_service_client::StorefrontServiceClient},
    catalogue::{GetMovieRequest, catalogue_service_client::CatalogueServiceClient},
};

use crate::{clients::channels, load, services};

/// Connections each target's calls spread over.
pub(crate) const CONNECTIONS: usize = 4;
/// Two targets measured together take turns this long.
pub(crate) const SLICE: Duration = Duration::from_secs(1);

/// One unary target at one concurrency.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct UnaryResult {
    pub(crate) target: &'static str,
    #[serde(flatten)]
    pub(crate) measured: load::Measured,
    /// Throughput as a fraction of the ceiling's, measured in slices alternating with this
    /// target's at the same concurrency.
    pub(crate) throughput_vs_ceiling: f64,
    /// That ceiling's calls per second.
    pub(crate) ceiling_throughput: f64,
    /// p99 as a multiple of the ceiling's p99 at the same concurrency.
    pub(crate) p99_vs_ceiling: f64,
}

/// Unary throughput and latency of each target (those containing `only`, if given) at each
/// concurrency, as a ratio to the ceiling at the same concurrency.
pub(crate) async fn unary(
    running: &services::Running,
    concurrencies: &[usize],
    duration: Duration,
    only: Option<&str>,
) -> anyhow::Result<Vec<UnaryResult>> {
    let ceiling = channels(running.ceiling, CONNECTIONS).await?;
    let catalogue = channels(running.catalogue, CONNECTIONS).await?;
    let aggregator = channels(running.aggregator, CONNECTIONS).await?;
    let http = reqwest::Client::builder().pool_max_idle_per_host(256).tcp_nodelay(true).build()?;
    let rest_base = format!("http://{}", running.aggregator);
    let wanted = |target: &str| only.is_none_or(|only| target.contains(only));
    let mut unary = Vec::new();
    for &concurrency in concurrencies {
        eprintln!("bench: unary at concurrency {concurrency}");
        let get_movie =
            |pool: Vec<Channel>| move |worker: usize| get_movie(pool[worker % pool.len()].clone());
        // Each target runs in alternating slices with the ceiling: every figure is a ratio to
        // the ceiling measured over the same stretch of time.
        let reference = Arc::new(get_movie(ceiling.clone()));
        let mut measured = Vec::new();
        if wanted("catalogue GetMovie") {
            let direct = Arc::new(get_movie(catalogue.clone()));
            let (direct, ceiling) =
                load::paired(concurrency, duration, SLICE, &direct, &reference).await;
            measured.push(("reference ceiling GetMovie", ceiling.clone(), ceiling.clone()));
            measured.push(("catalogue GetMovie", direct, ceiling));
        }
        if wanted("aggregator GetMoviePage") {
            let pool = aggregator.clone();
            let page = Arc::new(move |worker: usize| movie_page(pool[worker % pool.len()].clone()));
            let (page, ceiling) =
                load::paired(concurrency, duration, SLICE, &page, &reference).await;
            measured.push(("aggregator GetMoviePage", page, ceiling));
        }
        if wanted("aggregator REST") {
            let (http, base) = (http.clone(), rest_base.clone());
            let rest = Arc::new(move |_| {
                let (http, base) = (http.clone(), base.clone());
                async move {
                    let id = 1 + rand::random::<u32>() % 600;
                    match http.get(format!("{base}/api/movies/{id}")).send().await {
                        Ok(response) => {
                            response.status().is_success() && response.bytes().await.is_ok()
                        }
                        Err(_) => false,
                    }
                }
            });
            let (rest, ceiling) =
                load::paired(concurrency, duration, SLICE, &rest, &reference).await;
            measured.push(("aggregator REST GET /api/movies/{id}", rest, ceiling));
        }
        for (target, measured, ceiling) in measured {
            let throughput_vs_ceiling = measured.throughput / ceiling.throughput.max(1.0);
            eprintln!(
                "bench:   {target} at {concurrency}: {:.0} calls/s ({throughput_vs_ceiling:.2}× \
                 the ceiling's {:.0}), p99 {:.2} ms",
                measured.throughput,
                ceiling.throughput,
                measured.p99_us as f64 / 1000.0
            );
            unary.push(UnaryResult {
                target,
                throughput_vs_ceiling,
                p99_vs_ceiling: measured.p99_us as f64 / ceiling.p99_us.max(1) as f64,
                ceiling_throughput: ceiling.throughput,
                measured,
            });
        }
    }
    Ok(unary)
}

/// One GetMovie of a film among the first 600 over `channel`; whether it was answered.
pub(crate) async fn get_movie(channel: Channel) -> bool {
    let mut client = CatalogueServiceClient::new(channel);
    let id = 1 + (rand::random::<u32>() % 600) as i64;
    client.get_movie(GetMovieRequest { id }).await.is_ok()
}

/// One GetMoviePage of a film among the first 600, with six related films, over `channel`;
/// whether it was answered with the film's stock known.
pub(crate) async fn movie_page(channel: Channel) -> bool {
    let mut client = StorefrontServiceClient::new(channel);
    let movie_id = 1 + (rand::random::<u32>() % 600) as i64;
    let mut request = Request::new(GetMoviePageRequest { movie_id, related_limit: 6 });
    request.set_timeout(Duration::from_secs(5));
    client
        .get_movie_page(request)
        .await
        .is_ok_and(|page| page.get_ref().stock.as_ref().is_some_and(|stock| stock.known))
}
