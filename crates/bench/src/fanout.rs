//! Scenario 5, live availability fan-out: N `WatchAvailability` subscribers on one stock
//! process; a rent is committed, and the time until each subscriber has the change is measured.

use std::{
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use hdrhistogram::Histogram;
use serde::Serialize;
use tokio::sync::Notify;
use tonic::{Request, transport::Channel};
use videostore_proto::stock::{self, stock_service_client::StockServiceClient};

/// Subscribers per HTTP/2 connection (servers commonly allow 100 concurrent streams).
const STREAMS_PER_CONNECTION: usize = 100;

/// What one fan-out size measured.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct FanoutResult {
    pub(crate) subscribers: usize,
    pub(crate) connections: usize,
    /// Rents committed, one after another, each awaited by every subscriber.
    pub(crate) rents: usize,
    /// From just before the Rent call (so including the commit) to a subscriber decoding the
    /// change, over every (rent, subscriber) pair, microseconds.
    pub(crate) p50_us: u64,
    pub(crate) p99_us: u64,
    pub(crate) max_us: u64,
    /// Changes that never arrived within 10 s.
    pub(crate) missed: u64,
    /// Stock's resident memory before the subscribers connected and with all of them held, KiB.
    pub(crate) stock_rss_before_kib: u64,
    pub(crate) stock_rss_with_subscribers_kib: u64,
    /// (with − before) ÷ subscribers, bytes.
    pub(crate) bytes_per_subscriber: u64,
    /// CPU time while the rents ran, per change delivered to one subscriber, microseconds: of
    /// the stock service, and of this process (the subscribers).
    pub(crate) stock_cpu_us_per_delivery: f64,
    pub(crate) client_cpu_us_per_delivery: f64,
}

/// One rent in progress: when it started, and how many subscribers still have to see it.
struct Round {
    started: Mutex<Instant>,
    remaining: AtomicUsize,
    done: Notify,
    latencies: Mutex<Histogram<u64>>,
}

fn authed<T>(token: &str, message: T) -> anyhow::Result<Request<T>> {
    let mut request = Request::new(message);
    request.metadata_mut().insert("authorization", format!("Bearer {token}").parse()?);
    Ok(request)
}

/// Holds `subscribers` watchers of `movie_id`, spread over the replicas `stocks`, then commits
/// `rents` rents one at a time through the first.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn measure(
    stocks: &[SocketAddr],
    stock_pid: u32,
    staff: &str,
    customer: &str,
    movie_id: i64,
    subscribers: usize,
    rents: usize,
) -> anyhow::Result<FanoutResult> {
    let connections = subscribers.div_ceil(STREAMS_PER_CONNECTION).max(stocks.len());
    let mut channels = Vec::with_capacity(connections);
    for index in 0..connections {
        let stock_addr = stocks[index % stocks.len()];
        channels.push(
            Channel::from_shared(format!("http://{stock_addr}"))?
                .tcp_nodelay(true)
                .connect()
                .await?,
        );
    }
    let mut stock_client = StockServiceClient::new(channels[0].clone());
    stock_client
        .set_inventory(authed(
            staff,
            stock::SetInventoryRequest {
                movie_id,
                copies_owned: 100_000,
                rental_price_per_day: Some(stock::Money {
                    currency_code: "EUR".into(),
                    minor_units: 199,
                }),
                purchase_price: Some(stock::Money {
                    currency_code: "EUR".into(),
                    minor_units: 999,
                }),
            },
        )?)
        .await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = crate::services::rss_kib(stock_pid);

    let round = Arc::new(Round {
        started: Mutex::new(Instant::now()),
        remaining: AtomicUsize::new(0),
        done: Notify::new(),
        latencies: Mutex::new(Histogram::new_with_bounds(1, 60_000_000, 3)?),
    });
    let subscribed = Arc::new(AtomicUsize::new(0));
    let all_subscribed = Arc::new(Notify::new());
    let mut tasks = Vec::with_capacity(subscribers);
    for index in 0..subscribers {
        let mut client = StockServiceClient::new(channels[index % connections].clone());
        let (round, subscribed, all_subscribed) =
            (Arc::clone(&round), Arc::clone(&subscribed), Arc::clone(&all_subscribed));
        tasks.push(tokio::spawn(async move {
            let mut stream = match client
                .watch_availability(stock::WatchAvailabilityRequest {
                    movie_ids: vec![movie_id],
                    resume_from: Vec::new(),
                })
                .await
            {
                Ok(response) => response.into_inner(),
                Err(status) => return Err(anyhow::anyhow!("subscribing: {status}")),
            };
            let mut seen_version = 0;
            while let Some(message) = stream.message().await? {
                let Some(availability) = message.availabilities.first() else {
                    continue; // A heartbeat.
                };
                if message.snapshot {
                    if seen_version == 0
                        && subscribed.fetch_add(1, Ordering::AcqRel) + 1 == subscribers
                    {
                        all_subscribed.notify_one();
                    }
                    seen_version = availability.version;
                    continue;
                }
                if availability.version <= seen_version {
                    continue;
                }
                seen_version = availability.version;
                let started = *round.started.lock().expect("not poisoned");
                let latency = started.elapsed().as_micros().max(1) as u64;
                let _ = round.latencies.lock().expect("not poisoned").record(latency);
                if round.remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
                    round.done.notify_one();
                }
            }
            Ok::<_, anyhow::Error>(())
        }));
    }
    tokio::time::timeout(Duration::from_secs(120), all_subscribed.notified()).await.map_err(
        |_| {
            anyhow::anyhow!(
                "only {} of {subscribers} subscribers got their snapshot within 120 s",
                subscribed.load(Ordering::Acquire)
            )
        },
    )?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let with_subscribers = crate::services::rss_kib(stock_pid);

    let mut customer_client = StockServiceClient::new(channels[0].clone());
    let mut missed = 0u64;
    let cpu = || {
        (crate::services::cpu_seconds(stock_pid), crate::services::cpu_seconds(std::process::id()))
    };
    let (stock_cpu_before, client_cpu_before) = cpu();
    for rent in 0..rents {
        round.remaining.store(subscribers, Ordering::Release);
        *round.started.lock().expect("not poisoned") = Instant::now();
        customer_client
            .rent(authed(
                customer,
                stock::RentRequest {
                    movie_id,
                    days: 1,
                    request_id: format!("fanout-{subscribers}-{rent}"),
                },
            )?)
            .await?;
        if tokio::time::timeout(Duration::from_secs(10), round.done.notified()).await.is_err() {
            missed += round.remaining.load(Ordering::Acquire) as u64;
        }
        // Let the stragglers' sockets drain before the next rent starts its clock.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (stock_cpu_after, client_cpu_after) = cpu();
    let per_delivery = |seconds: f64| seconds * 1e6 / (rents * subscribers).max(1) as f64;
    for task in &tasks {
        task.abort();
    }
    drop(channels);
    let latencies = round.latencies.lock().expect("not poisoned").clone();
    Ok(FanoutResult {
        subscribers,
        connections,
        rents,
        p50_us: latencies.value_at_quantile(0.50),
        p99_us: latencies.value_at_quantile(0.99),
        max_us: latencies.max(),
        missed,
        stock_rss_before_kib: before,
        stock_rss_with_subscribers_kib: with_subscribers,
        bytes_per_subscriber: with_subscribers.saturating_sub(before) * 1024
            / subscribers.max(1) as u64,
        stock_cpu_us_per_delivery: per_delivery(stock_cpu_after - stock_cpu_before),
        client_cpu_us_per_delivery: per_delivery(client_cpu_after - client_cpu_before),
    })
}
