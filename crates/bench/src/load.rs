//! The load generator: a fixed number of callers in flight for a fixed time, latencies in an
//! HDR histogram.

use std::{
    future::Future,
    sync::Arc,
    time::{Duration, Instant},
};

use hdrhistogram::Histogram;
use serde::Serialize;

/// What one run measured.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Measured {
    /// Callers in flight.
    pub(crate) concurrency: usize,
    /// Completed calls.
    pub(crate) calls: u64,
    /// Failed calls.
    pub(crate) errors: u64,
    /// Calls per second.
    pub(crate) throughput: f64,
    /// Latency percentiles, microseconds.
    pub(crate) p50_us: u64,
    /// 99th percentile.
    pub(crate) p99_us: u64,
    /// 99.9th percentile.
    pub(crate) p999_us: u64,
}

/// Runs `call` from `concurrency` tasks for `duration` (after a short warm-up) and measures.
pub(crate) async fn run<F, Fut>(concurrency: usize, duration: Duration, call: F) -> Measured
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = bool> + Send,
{
    let call = Arc::new(call);
    // Warm-up: connections, caches.
    let warm_until = Instant::now() + Duration::from_millis(300).min(duration / 4);
    let warm: Vec<_> = (0..concurrency)
        .map(|worker| {
            let call = Arc::clone(&call);
            tokio::spawn(async move {
                while Instant::now() < warm_until {
                    call(worker).await;
                }
            })
        })
        .collect();
    futures::future::join_all(warm).await;

    let started = Instant::now();
    let until = started + duration;
    let workers: Vec<_> = (0..concurrency)
        .map(|worker| {
            let call = Arc::clone(&call);
            tokio::spawn(async move {
                let mut histogram =
                    Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("valid bounds");
                let mut errors = 0u64;
                while Instant::now() < until {
                    let begun = Instant::now();
                    if call(worker).await {
                        let _ = histogram.record(begun.elapsed().as_micros().max(1) as u64);
                    } else {
                        errors += 1;
                    }
                }
                (histogram, errors)
            })
        })
        .collect();
    let mut histogram = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("valid bounds");
    let mut errors = 0;
    for worker in futures::future::join_all(workers).await {
        let (part, failed) = worker.expect("a load worker panicked");
        histogram.add(part).expect("same bounds");
        errors += failed;
    }
    let elapsed = started.elapsed().as_secs_f64();
    Measured {
        concurrency,
        calls: histogram.len(),
        errors,
        throughput: histogram.len() as f64 / elapsed,
        p50_us: histogram.value_at_quantile(0.50),
        p99_us: histogram.value_at_quantile(0.99),
        p999_us: histogram.value_at_quantile(0.999),
    }
}
