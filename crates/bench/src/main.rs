//! `bench`: the video store's benchmark harness (run it through `cargo xtask bench [--quick]`).
//!
//! It starts the real services from their release binaries on free local ports over a fresh
//! database, plus a reference ceiling server, drives load at them from this process, checks the
//! rental invariant afterwards, and writes `report.md` and `results.json`.
//!
//! Scenarios so far: unary throughput and latency (GetMovie direct, GetMoviePage through the
//! aggregator, the REST facade) at several concurrencies as a ratio to the ceiling; committed
//! rent+return pairs per second with 64 customers; resident memory idle and at peak.

mod bulk;
mod ceiling;
mod fanout;
mod load;
mod plot;
mod report;
mod services;
mod wrk;

use std::{net::SocketAddr, path::PathBuf, sync::Arc, time::Duration};

use anyhow::Context;
use clap::{Parser, Subcommand};
use serde::Serialize;
use tonic::{Request, transport::Channel};
use videostore_proto::{
    aggregator::{GetMoviePageRequest, storefront_service_client::StorefrontServiceClient},
    catalogue::{GetMovieRequest, catalogue_service_client::CatalogueServiceClient},
    stock::{
        self, account_service_client::AccountServiceClient,
        stock_service_client::StockServiceClient,
    },
};

#[derive(Parser)]
#[command(name = "bench", about = "Benchmarks of the video store's real services")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs the benchmarks.
    Run {
        /// A 1–2 minute smoke run instead of the full one.
        #[arg(long)]
        quick: bool,
        /// Where report.md and results.json go.
        #[arg(long, default_value = "target/bench")]
        out: PathBuf,
        /// Folder of the release binaries (catalogue, stock, aggregator, bench).
        #[arg(long, default_value = "target/release")]
        bin_dir: PathBuf,
    },
    /// Only the bulk delivery scenario at one size, printed (for profiling a change).
    Bulk {
        /// Films in the catalogue.
        #[arg(long, default_value_t = 500_000)]
        films: usize,
        /// Runs per transport.
        #[arg(long, default_value_t = 5)]
        runs: usize,
        /// Only the transports whose name contains this.
        #[arg(long)]
        only: Option<String>,
        /// Folder of the release binaries.
        #[arg(long, default_value = "target/release")]
        bin_dir: PathBuf,
    },
    /// Only the unary scenario, printed (for profiling a change).
    Unary {
        /// Calls in flight.
        #[arg(long, default_value_t = 64)]
        concurrency: usize,
        /// Seconds per target.
        #[arg(long, default_value_t = 8)]
        seconds: u64,
        /// Only the targets whose name contains this (the ceiling always runs).
        #[arg(long)]
        only: Option<String>,
        /// Folder of the release binaries.
        #[arg(long, default_value = "target/release")]
        bin_dir: PathBuf,
    },
    /// Only the fan-out scenario at one size, printed (for profiling a change).
    Fanout {
        /// Subscribers.
        #[arg(long, default_value_t = 10_000)]
        subscribers: usize,
        /// Rents, one after another.
        #[arg(long, default_value_t = 10)]
        rents: usize,
        /// Folder of the release binaries.
        #[arg(long, default_value = "target/release")]
        bin_dir: PathBuf,
    },
    /// Serves the reference ceiling (started by `run`).
    Ceiling {
        /// Address to listen on.
        #[arg(long)]
        listen: SocketAddr,
        /// The film to answer with, protobuf-encoded.
        #[arg(long)]
        film: PathBuf,
    },
}

/// One unary target at one concurrency.
#[derive(Debug, Clone, Serialize)]
struct UnaryResult {
    target: &'static str,
    #[serde(flatten)]
    measured: load::Measured,
    /// Throughput as a fraction of the ceiling's, measured in slices alternating with this
    /// target's at the same concurrency.
    throughput_vs_ceiling: f64,
    /// That ceiling's calls per second.
    ceiling_throughput: f64,
    /// p99 as a multiple of the ceiling's p99 at the same concurrency.
    p99_vs_ceiling: f64,
}

/// The rentals scenario.
#[derive(Debug, Clone, Serialize)]
struct RentalsResult {
    customers: usize,
    seconds: f64,
    pairs: u64,
    pairs_per_second: f64,
    failed_calls: u64,
    sold_out_refusals: u64,
    invariant_holds: bool,
    open_rentals_left: i64,
}

/// Everything one run measured.
#[derive(Debug, Clone, Serialize)]
struct Results {
    mode: &'static str,
    machine: String,
    unary: Vec<UnaryResult>,
    rentals: RentalsResult,
    bulk: Vec<bulk::BulkResult>,
    fanout: Vec<fanout::FanoutResult>,
    /// `wrk -t1 -c10` on the REST film endpoint, or why it did not run.
    wrk: Result<wrk::WrkResult, String>,
    memory: Vec<services::Memory>,
}

/// The same allocator as the services: the client's decoding is part of every bulk timing.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The environment variable that sets mimalloc's purge policy (mimalloc reads it at start).
const PURGE_POLICY: &str = "MIMALLOC_PURGE_DECOMMITS";

/// The load generator gives memory it frees back to the kernel lazily (`MADV_FREE`: the pages stay
/// mapped until the kernel needs them) instead of at once (`MADV_DONTNEED`, mimalloc's default: the
/// next use of a page faults and zeroes it). A client that decodes the 105 MB unary answer into
/// 500,000 films frees about 300 MB afterwards; given back at once, the next such call faults and
/// zeroes it all afresh, which on this machine cost the client 0.3 s of CPU per call (0.64 vs 0.35
/// s): a cost of the load generator's allocator, not of the store. mimalloc takes the policy from
/// its environment only, so the bench starts itself again with it set, unless it is set already
/// (`MIMALLOC_PURGE_DECOMMITS=1` measures with mimalloc's default). Services and the ceiling server
/// are started without any `MIMALLOC_*` setting.
fn free_memory_lazily() -> anyhow::Result<()> {
    use std::os::unix::process::CommandExt;
    if std::env::var_os(PURGE_POLICY).is_some() {
        return Ok(());
    }
    let error = std::process::Command::new(std::env::current_exe()?)
        .args(std::env::args_os().skip(1))
        .env(PURGE_POLICY, "0")
        .exec();
    Err(error).context("starting the bench again with its allocator's purge policy set")
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let command = Cli::parse().command;
    if !matches!(command, Command::Ceiling { .. }) {
        free_memory_lazily()?;
    }
    match command {
        Command::Ceiling { listen, film } => {
            let film = prost::Message::decode(std::fs::read(film)?.as_slice())?;
            ceiling::serve(listen, film).await
        }
        Command::Run { quick, out, bin_dir } => run(quick, out, bin_dir).await,
        Command::Unary { concurrency, seconds, only, bin_dir } => {
            let mut running = services::Running::start(&bin_dir, true).await?;
            eprintln!(
                "bench: pids catalogue {}, stock {}, aggregator {}",
                running.pid("catalogue").unwrap_or(0),
                running.pid("stock").unwrap_or(0),
                running.pid("aggregator").unwrap_or(0)
            );
            let duration = Duration::from_secs(seconds);
            unary(&running, &[concurrency], duration, only.as_deref()).await?;
            running.stop();
            Ok(())
        }
        Command::Fanout { subscribers, rents, bin_dir } => {
            let mut running = services::Running::start(&bin_dir, true).await?;
            let staff = staff_token(running.stock).await?;
            let customer = register(running.stock, "fanout@example.com").await?;
            let result = fanout::measure(
                running.stock,
                running.pid("stock").unwrap_or(0),
                &staff,
                &customer,
                100,
                subscribers,
                rents,
            )
            .await?;
            eprintln!("{result:?}");
            running.stop();
            Ok(())
        }
        Command::Bulk { films, runs, bin_dir, only } => {
            let mut running = services::Running::start(&bin_dir, false).await?;
            let staff = staff_token(running.stock).await?;
            let catalogue = channels(running.catalogue, 1).await?.remove(0);
            if bulk::total(catalogue.clone()).await? != films {
                let started = std::time::Instant::now();
                bulk::import(catalogue.clone(), &staff, 0, films).await?;
                eprintln!(
                    "bench: {films} films imported in {:.1} s",
                    started.elapsed().as_secs_f64()
                );
            }
            bulk::wait_for_total(catalogue, films).await?;
            eprintln!("bench: catalogue pid {}", running.pid("catalogue").unwrap_or(0));
            bulk::measure(films, runs, &running, only.as_deref()).await?;
            eprintln!("{:?}", running.memory("after")?);
            running.stop();
            Ok(())
        }
    }
}

async fn channels(addr: SocketAddr, count: usize) -> anyhow::Result<Vec<Channel>> {
    let mut channels = Vec::with_capacity(count);
    for _ in 0..count {
        channels.push(
            Channel::from_shared(format!("http://{addr}"))?.tcp_nodelay(true).connect().await?,
        );
    }
    Ok(channels)
}

async fn run(quick: bool, out: PathBuf, bin_dir: PathBuf) -> anyhow::Result<()> {
    let (concurrencies, seconds, rental_seconds): (&[usize], u64, u64) =
        if quick { (&[1, 64], 2, 3) } else { (&[1, 16, 64, 256], 8, 15) };
    let duration = Duration::from_secs(seconds);
    let mut running = services::Running::start(&bin_dir, true).await?;
    eprintln!("bench: services up; measuring idle memory");
    let idle = running.memory("idle")?;

    let unary = unary(&running, concurrencies, duration, None).await?;
    let rest_base = format!("http://{}", running.aggregator);

    eprintln!("bench: wrk -t1 -c10 on the REST film endpoint");
    let wrk = wrk::run(&rest_base, "/api/movies/42", duration);
    match &wrk {
        Ok(w) => eprintln!("bench:   {:.0} requests/s", w.requests_per_second),
        Err(reason) => eprintln!("bench:   skipped: {reason}"),
    }

    eprintln!("bench: rentals with 64 customers");
    let rentals = rentals(&running, Duration::from_secs(rental_seconds)).await?;
    let peak = running.memory("after unary and rentals")?;

    // Live availability fan-out.
    let (audiences, rents): (&[usize], usize) =
        if quick { (&[500], 3) } else { (&[1_000, 10_000], 10) };
    let staff = staff_token(running.stock).await?;
    let customer = register(running.stock, "fanout@example.com").await?;
    let mut fanout = Vec::new();
    let mut fanout_memory = Vec::new();
    for (index, &subscribers) in audiences.iter().enumerate() {
        eprintln!("bench: fan-out to {subscribers} subscribers");
        let result = fanout::measure(
            running.stock,
            running.pid("stock").unwrap_or(0),
            &staff,
            &customer,
            100 + index as i64,
            subscribers,
            rents,
        )
        .await?;
        eprintln!(
            "bench:   p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms, {} B per subscriber, CPU per \
             delivery {:.1} µs stock, {:.1} µs subscribers",
            result.p50_us as f64 / 1000.0,
            result.p99_us as f64 / 1000.0,
            result.max_us as f64 / 1000.0,
            result.bytes_per_subscriber,
            result.stock_cpu_us_per_delivery,
            result.client_cpu_us_per_delivery
        );
        fanout.push(result);
        fanout_memory.extend(
            running
                .memory(if index == 0 {
                    "after fan-out (first size)"
                } else {
                    "after fan-out (largest)"
                })?
                .into_iter()
                .filter(|m| m.service == "stock"),
        );
    }
    running.stop();

    // Bulk delivery, over a catalogue of exactly N films.
    let (sizes, runs): (&[usize], usize) =
        if quick { (&[20_000], 1) } else { (&[100_000, 500_000], 5) };
    let mut bulk_running = services::Running::start(&bin_dir, false).await?;
    let mut bulk = Vec::new();
    let mut bulk_memory = Vec::new();
    let staff = staff_token(bulk_running.stock).await?;
    let mut imported = 0;
    for &films in sizes {
        eprintln!("bench: importing films {imported}..{films}");
        let catalogue = channels(bulk_running.catalogue, 1).await?.remove(0);
        let started = std::time::Instant::now();
        bulk::import(catalogue.clone(), &staff, imported, films).await?;
        eprintln!(
            "bench:   {} films imported in {:.1} s",
            films - imported,
            started.elapsed().as_secs_f64()
        );
        imported = films;
        bulk::wait_for_total(catalogue, films).await?;
        eprintln!("bench: bulk delivery of {films} films");
        bulk.extend(bulk::measure(films, runs, &bulk_running, None).await?);
        bulk_memory.extend(bulk_running.memory(if films == sizes[0] {
            "after bulk delivery (first size)"
        } else {
            "after bulk delivery (largest size)"
        })?);
    }
    bulk_running.stop();

    let results = Results {
        mode: if quick { "quick" } else { "full" },
        machine: services::machine(),
        unary,
        rentals,
        bulk,
        fanout,
        wrk,
        memory: idle.into_iter().chain(peak).chain(fanout_memory).chain(bulk_memory).collect(),
    };
    std::fs::create_dir_all(&out)?;
    std::fs::write(out.join("results.json"), serde_json::to_string_pretty(&results)?)?;
    std::fs::write(out.join("report.md"), report::markdown(&results))?;
    plot::write_all(&results, &out)?;
    eprintln!(
        "bench: wrote {} and {}",
        out.join("report.md").display(),
        out.join("results.json").display()
    );
    anyhow::ensure!(
        results.rentals.invariant_holds,
        "the rental invariant does not hold after the run"
    );
    anyhow::ensure!(
        results.unary.iter().all(|u| u.measured.calls > 0),
        "a unary target answered no call"
    );
    anyhow::ensure!(results.fanout.iter().all(|f| f.missed == 0), "a subscriber missed a change");
    Ok(())
}

/// Registers a customer and returns their token.
async fn register(stock: SocketAddr, email: &str) -> anyhow::Result<String> {
    let channel = channels(stock, 1).await?.remove(0);
    let mut accounts = AccountServiceClient::new(channel);
    accounts
        .register(stock::RegisterRequest {
            email: email.into(),
            name: "Bench customer".into(),
            password: "bench password".into(),
        })
        .await?;
    Ok(accounts
        .sign_in(stock::SignInRequest { email: email.into(), password: "bench password".into() })
        .await?
        .into_inner()
        .token)
}

/// A staff token from the stock service at `stock`.
/// Unary throughput and latency of each target (those containing `only`, if given) at each
/// concurrency, as a ratio to the ceiling at the same concurrency.
async fn unary(
    running: &services::Running,
    concurrencies: &[usize],
    duration: Duration,
    only: Option<&str>,
) -> anyhow::Result<Vec<UnaryResult>> {
    const CONNECTIONS: usize = 4;
    /// Target and ceiling take turns this long.
    const SLICE: Duration = Duration::from_secs(1);
    let ceiling = channels(running.ceiling, CONNECTIONS).await?;
    let catalogue = channels(running.catalogue, CONNECTIONS).await?;
    let aggregator = channels(running.aggregator, CONNECTIONS).await?;
    let http = reqwest::Client::builder().pool_max_idle_per_host(256).tcp_nodelay(true).build()?;
    let rest_base = format!("http://{}", running.aggregator);
    let wanted = |target: &str| only.is_none_or(|only| target.contains(only));
    let mut unary = Vec::new();
    for &concurrency in concurrencies {
        eprintln!("bench: unary at concurrency {concurrency}");
        let get_movie = |pool: Vec<Channel>| {
            move |worker: usize| {
                let mut client = CatalogueServiceClient::new(pool[worker % pool.len()].clone());
                async move {
                    let id = 1 + (rand::random::<u32>() % 600) as i64;
                    client.get_movie(GetMovieRequest { id }).await.is_ok()
                }
            }
        };
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
            let page = Arc::new(move |worker: usize| {
                let mut client = StorefrontServiceClient::new(pool[worker % pool.len()].clone());
                async move {
                    let movie_id = 1 + (rand::random::<u32>() % 600) as i64;
                    let mut request =
                        Request::new(GetMoviePageRequest { movie_id, related_limit: 6 });
                    request.set_timeout(Duration::from_secs(5));
                    client.get_movie_page(request).await.is_ok_and(|page| {
                        page.get_ref().stock.as_ref().is_some_and(|stock| stock.known)
                    })
                }
            });
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

async fn staff_token(stock: SocketAddr) -> anyhow::Result<String> {
    let channel = channels(stock, 1).await?.remove(0);
    Ok(AccountServiceClient::new(channel)
        .sign_in(stock::SignInRequest {
            email: services::STAFF_EMAIL.into(),
            password: services::STAFF_PASSWORD.into(),
        })
        .await?
        .into_inner()
        .token)
}

/// 64 customers renting and returning as fast as they can; then the invariant.
async fn rentals(running: &services::Running, duration: Duration) -> anyhow::Result<RentalsResult> {
    const CUSTOMERS: usize = 64;
    const FILMS: i64 = 8;
    let stock_channels = channels(running.stock, 4).await?;
    let mut accounts = AccountServiceClient::new(stock_channels[0].clone());
    let staff = accounts
        .sign_in(stock::SignInRequest {
            email: services::STAFF_EMAIL.into(),
            password: services::STAFF_PASSWORD.into(),
        })
        .await?
        .into_inner()
        .token;
    let mut stock_client = StockServiceClient::new(stock_channels[0].clone());
    for movie_id in 1..=FILMS {
        let mut request = Request::new(stock::SetInventoryRequest {
            movie_id,
            copies_owned: 10_000,
            rental_price_per_day: Some(stock::Money {
                currency_code: "EUR".into(),
                minor_units: 199,
            }),
            purchase_price: Some(stock::Money { currency_code: "EUR".into(), minor_units: 999 }),
        });
        request.metadata_mut().insert("authorization", format!("Bearer {staff}").parse()?);
        stock_client.set_inventory(request).await?;
    }
    let mut tokens = Vec::with_capacity(CUSTOMERS);
    for index in 0..CUSTOMERS {
        let email = format!("bench{index}@example.com");
        accounts
            .register(stock::RegisterRequest {
                email: email.clone(),
                name: format!("Bench {index}"),
                password: "bench password".into(),
            })
            .await?;
        let token = accounts
            .sign_in(stock::SignInRequest { email, password: "bench password".into() })
            .await?
            .into_inner()
            .token;
        tokens.push(token);
    }
    let tokens = Arc::new(tokens);
    let tokens_for_check = Arc::clone(&tokens);
    let pool = stock_channels.clone();
    let sold_out = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let refusals = Arc::clone(&sold_out);
    let counter = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let measured = load::run(CUSTOMERS, duration, move |worker| {
        let mut client = StockServiceClient::new(pool[worker % pool.len()].clone());
        let token = tokens[worker].clone();
        let refusals = Arc::clone(&refusals);
        let sequence = counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        async move {
            let authed = |message| {
                let mut request = Request::new(message);
                request
                    .metadata_mut()
                    .insert("authorization", format!("Bearer {token}").parse().expect("ascii"));
                request
            };
            let movie_id = 1 + (worker as i64 % FILMS);
            let rental = match client
                .rent(authed(stock::RentRequest {
                    movie_id,
                    days: 1,
                    request_id: format!("bench-{worker}-{sequence}"),
                }))
                .await
            {
                Ok(rental) => rental.into_inner(),
                Err(status) => {
                    if status.code() == tonic::Code::FailedPrecondition {
                        refusals.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    return false;
                }
            };
            let returned = Request::new(stock::ReturnRequest { rental_id: rental.id });
            let mut returned = returned;
            returned
                .metadata_mut()
                .insert("authorization", format!("Bearer {token}").parse().expect("ascii"));
            client.r#return(returned).await.is_ok()
        }
    })
    .await;

    // The invariant, checked from outside: for every film, copies available = copies owned −
    // open rentals (counted from every customer's own list).
    let availability = stock_client
        .batch_get_availability(stock::BatchGetAvailabilityRequest {
            movie_ids: (1..=FILMS).collect(),
        })
        .await?
        .into_inner()
        .availabilities;
    let mut open = std::collections::HashMap::<i64, i64>::new();
    for token in tokens_for_check.iter() {
        let mut request = Request::new(stock::ListMyRentalsRequest { include_returned: false });
        request.metadata_mut().insert("authorization", format!("Bearer {token}").parse()?);
        let mut stream = stock_client.list_my_rentals(request).await?.into_inner();
        while let Some(rental) = stream.message().await? {
            *open.entry(rental.movie_id).or_default() += 1;
        }
    }
    let open_left: i64 = open.values().sum();
    let invariant_holds = availability.iter().all(|a| {
        i64::from(a.copies_available)
            == i64::from(a.copies_owned) - open.get(&a.movie_id).copied().unwrap_or(0)
    });
    Ok(RentalsResult {
        customers: CUSTOMERS,
        seconds: duration.as_secs_f64(),
        pairs: measured.calls,
        pairs_per_second: measured.throughput,
        failed_calls: measured.errors,
        sold_out_refusals: sold_out.load(std::sync::atomic::Ordering::Relaxed),
        invariant_holds,
        open_rentals_left: open_left,
    })
}
