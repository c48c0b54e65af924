//! `bench`: the video store's benchmark harness (run it through `cargo xtask bench [--quick]`).
//!
//! It starts the real services from their release binaries on free local ports over a fresh
//! database, plus a reference ceiling server, drives load at them from this process, checks the
//! rental invariant afterwards, and writes `report.md` and `results.json`.
//!
//! # Layout
//! - `services`: the release binaries started on free ports over a fresh database, and their
//!   memory; `ceiling`: the reference server.
//! - The scenarios: `unary` (throughput and latency as a ratio to the ceiling), `wrk` (the old
//!   chain's test), `rentals` (committed pairs per second, then the invariant), `fanout` (one
//!   change to N live subscribers), `bulk` (N films over five transports), `abuse` (what the
//!   abuse limits leave a real customer during floods).
//! - `load`: the closed-loop load generator; `clients`: connections and accounts.
//! - `report` and `plot`: `report.md`, `results.json` and the SVG plots.

mod abuse;
mod bulk;
mod ceiling;
mod clients;
mod fanout;
mod load;
mod plot;
mod postgres;
mod rentals;
mod report;
mod services;
mod traced;
mod unary;
mod wrk;

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use anyhow::Context;
use clap::{Parser, Subcommand};
use serde::Serialize;

use crate::{
    clients::{channels, register, staff_token},
    rentals::{RentalsResult, rentals},
    unary::{UnaryResult, unary},
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
    /// Only the tracing scenario: GetMovie and GetMoviePage with trace export on against off.
    Tracing {
        /// Calls in flight.
        #[arg(long, default_value_t = 64)]
        concurrency: usize,
        /// Seconds per target.
        #[arg(long, default_value_t = 8)]
        seconds: u64,
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
    /// Only the rentals scenario on the embedded database, printed (for profiling a change).
    Rentals {
        /// Seconds of renting and returning.
        #[arg(long, default_value_t = 20)]
        seconds: u64,
        /// Folder of the release binaries.
        #[arg(long, default_value = "target/release")]
        bin_dir: PathBuf,
    },
    /// Only the abuse scenario, printed.
    Abuse {
        /// The short version `run --quick` runs.
        #[arg(long)]
        quick: bool,
        /// Films in the catalogue the searches look through.
        #[arg(long, default_value_t = 20_000)]
        films: usize,
        /// Folder of the release binaries.
        #[arg(long, default_value = "target/release")]
        bin_dir: PathBuf,
    },
    /// Only the PostgreSQL scenarios, printed (for profiling a change).
    Postgres {
        /// The short version `run --quick` runs.
        #[arg(long)]
        quick: bool,
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
    /// The store on PostgreSQL.
    postgres: postgres::PostgresResults,
    /// What the abuse limits leave a real customer.
    abuse: Abuse,
    /// GetMovie and GetMoviePage with trace export on and off.
    tracing: traced::TracingCost,
    memory: Vec<services::Memory>,
}

/// The abuse scenario's figures.
#[derive(Debug, Clone, Serialize)]
struct Abuse {
    sign_in: abuse::SignInFlood,
    big_requests: Vec<abuse::BigRequests>,
    search: abuse::SearchFlood,
}

/// Sizes of the abuse scenario: (real customers, flooding callers, seconds per flood).
fn abuse_sizes(quick: bool) -> (usize, usize, Duration) {
    if quick { (8, 32, Duration::from_secs(2)) } else { (40, 64, Duration::from_secs(8)) }
}

/// The sign-in flood, on services with their limits as shipped.
async fn sign_in_flood(
    bin_dir: &std::path::Path,
    quick: bool,
) -> anyhow::Result<abuse::SignInFlood> {
    let (customers, concurrency, _) = abuse_sizes(quick);
    let mut limited = services::Running::start_with_limits(bin_dir).await?;
    eprintln!("bench: a real sign-in during a flood of {concurrency} failing sign-ins");
    let result = abuse::sign_in_flood(&limited, customers, concurrency).await;
    limited.stop();
    let result = result?;
    eprintln!(
        "bench:   alone p50 {:.0} ms, max {:.0} ms; flooded p50 {:.0} ms, max {:.0} ms ({} tries \
         at most, {} gave up); flood: {} checked, {} refused",
        result.alone.p50_ms,
        result.alone.max_ms,
        result.flooded.p50_ms,
        result.flooded.max_ms,
        result.most_tries,
        result.gave_up,
        result.flood_checked,
        result.flood_refused
    );
    Ok(result)
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
        Command::Abuse { quick, films, bin_dir } => {
            let (_, concurrency, duration) = abuse_sizes(quick);
            let sign_in = sign_in_flood(&bin_dir, quick).await?;
            eprintln!("{sign_in:#?}");
            let mut running = services::Running::start(&bin_dir, true).await?;
            let big = abuse::big_requests(&running, concurrency, duration).await;
            running.stop();
            eprintln!("{:#?}", big?);
            let mut running = services::Running::start(&bin_dir, false).await?;
            let staff = staff_token(running.stock).await?;
            let catalogue = channels(running.catalogue, 1).await?.remove(0);
            bulk::import(catalogue.clone(), &staff, 0, films).await?;
            bulk::wait_for_total(catalogue, films).await?;
            let search = abuse::search_flood(&running, films, concurrency, duration).await;
            running.stop();
            eprintln!("{:#?}", search?);
            Ok(())
        }
        Command::Postgres { quick, bin_dir } => {
            let results = postgres::measure(&bin_dir, quick).await?;
            eprintln!("{results:#?}");
            Ok(())
        }
        Command::Tracing { concurrency, seconds, bin_dir } => {
            let cost = traced::measure(&bin_dir, concurrency, Duration::from_secs(seconds)).await?;
            eprintln!("{cost:#?}");
            Ok(())
        }
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
            let customer = register(&running, "fanout@example.com").await?;
            let result = fanout::measure(
                &running.stocks,
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
        Command::Rentals { seconds, bin_dir } => {
            let mut running = services::Running::start(&bin_dir, true).await?;
            let result = rentals(&running, Duration::from_secs(seconds)).await?;
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
    let customer = register(&running, "fanout@example.com").await?;
    let mut fanout = Vec::new();
    let mut fanout_memory = Vec::new();
    for (index, &subscribers) in audiences.iter().enumerate() {
        eprintln!("bench: fan-out to {subscribers} subscribers");
        let result = fanout::measure(
            &running.stocks,
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
    let (_, flood_concurrency, flood_duration) = abuse_sizes(quick);
    eprintln!("bench: memory under the most expensive requests");
    let big_requests = abuse::big_requests(&running, flood_concurrency, flood_duration).await?;
    for big in &big_requests {
        eprintln!(
            "bench:   {}: RSS {:.1} → peak {:.1} MiB at {:.0} calls/s",
            big.service,
            big.rss_before_kib as f64 / 1024.0,
            big.rss_peak_kib as f64 / 1024.0,
            big.measured.throughput
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
    let mut search = None;
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
        if films == sizes[0] {
            eprintln!("bench: GetMovie during worst-case searches of {films} films");
            let flood =
                abuse::search_flood(&bulk_running, films, flood_concurrency, flood_duration);
            let flood = flood.await?;
            eprintln!(
                "bench:   GetMovie p99 alone {:.2} ms, during {} searches {:.2} ms",
                flood.alone.p99_us as f64 / 1000.0,
                flood.searches,
                flood.flooded.p99_us as f64 / 1000.0
            );
            search = Some(flood);
        }
        eprintln!("bench: bulk delivery of {films} films");
        bulk.extend(bulk::measure(films, runs, &bulk_running, None).await?);
        bulk_memory.extend(bulk_running.memory(if films == sizes[0] {
            "after bulk delivery (first size)"
        } else {
            "after bulk delivery (largest size)"
        })?);
    }
    bulk_running.stop();

    let tracing = traced::measure(&bin_dir, 64, duration).await?;
    let on_postgres = postgres::measure(&bin_dir, quick).await?;
    let sign_in = sign_in_flood(&bin_dir, quick).await?;
    let abuse = Abuse {
        sign_in,
        big_requests,
        search: search.context("the search flood ran on the first bulk size")?,
    };

    let results = Results {
        mode: if quick { "quick" } else { "full" },
        machine: services::machine(),
        unary,
        rentals,
        bulk,
        fanout,
        wrk,
        postgres: on_postgres,
        abuse,
        tracing,
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
    anyhow::ensure!(
        results.postgres.rentals.iter().all(|(_, r)| r.invariant_holds),
        "the stock invariant does not hold on PostgreSQL"
    );
    anyhow::ensure!(
        results.abuse.sign_in.gave_up == 0,
        "a real customer could not sign in during the sign-in flood"
    );
    anyhow::ensure!(
        results.postgres.fanout.missed == 0,
        "a subscriber missed a change on PostgreSQL"
    );
    Ok(())
}
