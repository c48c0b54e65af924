//! The store on PostgreSQL: committed rent+return pairs per second with one stock replica and
//! with three (the invariant checked after each), commit → receipt latency for subscribers
//! spread over three replicas (a rent on one reaches watchers on the others through the
//! database's feed), and GetMovie / GetMoviePage with the catalogue on PostgreSQL as ratios to
//! the ceiling. The cluster is a throwaway one started for the run, durable (fsync on), on this
//! machine beside everything else.

use std::{path::Path, time::Duration};

use serde::Serialize;

use crate::{
    clients::{register, staff_token},
    fanout::{self, FanoutResult},
    rentals::{RentalsResult, rentals},
    services::{Limits, OnPostgres, Running},
    unary::{UnaryResult, unary},
};

/// What the PostgreSQL scenarios measured.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct PostgresResults {
    /// Rentals with one stock replica, then with three.
    pub(crate) rentals: Vec<(usize, RentalsResult)>,
    /// Subscribers spread over three replicas, rents through one of them.
    pub(crate) fanout: FanoutResult,
    /// GetMovie and GetMoviePage at 64 in flight, the catalogue on PostgreSQL.
    pub(crate) unary: Vec<UnaryResult>,
}

/// Runs every PostgreSQL scenario (shorter with `quick`).
pub(crate) async fn measure(bin_dir: &Path, quick: bool) -> anyhow::Result<PostgresResults> {
    let cluster = testdb::Cluster::start(testdb::Durability::Durable)?;
    let (seconds, subscribers, rents) = if quick { (2, 100, 3) } else { (10, 1_000, 10) };
    let mut all_rentals = Vec::new();
    let mut fanout = None;
    let mut unary_results = Vec::new();
    for replicas in [1, 3] {
        let postgres = OnPostgres {
            catalogue_url: cluster.database()?,
            stock_url: cluster.database()?,
            stock_replicas: replicas,
        };
        let mut running = Running::start_on(bin_dir, true, Some(&postgres), Limits::Off).await?;
        if replicas == 1 {
            eprintln!("bench: on PostgreSQL, GetMovie and GetMoviePage at 64 in flight");
            let measured = unary(&running, &[64], Duration::from_secs(seconds), None).await?;
            unary_results.extend(measured.into_iter().filter(|u| !u.target.contains("REST")));
        }
        eprintln!(
            "bench: on PostgreSQL, rentals with 64 customers over {replicas} stock replica(s)"
        );
        let result = rentals(&running, Duration::from_secs(seconds)).await?;
        eprintln!(
            "bench:   {:.0} pairs/s, invariant {}",
            result.pairs_per_second,
            if result.invariant_holds { "holds" } else { "BROKEN" }
        );
        all_rentals.push((replicas, result));
        if replicas == 3 {
            eprintln!("bench: on PostgreSQL, fan-out to {subscribers} subscribers over 3 replicas");
            let staff = staff_token(running.stock).await?;
            let customer = register(&running, "pg-fanout@example.com").await?;
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
            eprintln!(
                "bench:   p50 {:.1} ms, p99 {:.1} ms, missed {}",
                result.p50_us as f64 / 1000.0,
                result.p99_us as f64 / 1000.0,
                result.missed
            );
            fanout = Some(result);
        }
        running.stop();
    }
    Ok(PostgresResults {
        rentals: all_rentals,
        fanout: fanout.expect("the three-replica round ran"),
        unary: unary_results,
    })
}
