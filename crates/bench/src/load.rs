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

/// Latencies and errors of some calls.
struct Sample {
    histogram: Histogram<u64>,
    errors: u64,
    seconds: f64,
}

impl Sample {
    fn new() -> Self {
        let histogram = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("valid bounds");
        Self { histogram, errors: 0, seconds: 0.0 }
    }

    fn add(&mut self, other: Sample) {
        self.histogram.add(other.histogram).expect("same bounds");
        self.errors += other.errors;
        self.seconds += other.seconds;
    }

    fn measured(&self, concurrency: usize) -> Measured {
        Measured {
            concurrency,
            calls: self.histogram.len(),
            errors: self.errors,
            throughput: self.histogram.len() as f64 / self.seconds.max(1e-9),
            p50_us: self.histogram.value_at_quantile(0.50),
            p99_us: self.histogram.value_at_quantile(0.99),
            p999_us: self.histogram.value_at_quantile(0.999),
        }
    }
}

/// Calls `call` from `concurrency` tasks until `until`, recording each latency.
async fn drive<F, Fut>(concurrency: usize, until: Instant, call: &Arc<F>) -> Sample
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = bool> + Send,
{
    let started = Instant::now();
    let workers: Vec<_> = (0..concurrency)
        .map(|worker| {
            let call = Arc::clone(call);
            tokio::spawn(async move {
                let mut sample = Sample::new();
                while Instant::now() < until {
                    let begun = Instant::now();
                    if call(worker).await {
                        let _ = sample.histogram.record(begun.elapsed().as_micros().max(1) as u64);
                    } else {
                        sample.errors += 1;
                    }
                }
                sample
            })
        })
        .collect();
    let mut sample = Sample::new();
    for worker in futures::future::join_all(workers).await {
        sample.add(worker.expect("a load worker panicked"));
    }
    sample.seconds = started.elapsed().as_secs_f64();
    sample
}

/// A short untimed run: connections opened, caches filled.
async fn warm_up<F, Fut>(concurrency: usize, duration: Duration, call: &Arc<F>)
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = bool> + Send,
{
    drive(concurrency, Instant::now() + Duration::from_millis(300).min(duration / 4), call).await;
}

/// Runs `call` from `concurrency` tasks for `duration` (after a short warm-up) and measures.
pub(crate) async fn run<F, Fut>(concurrency: usize, duration: Duration, call: F) -> Measured
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = bool> + Send,
{
    let call = Arc::new(call);
    warm_up(concurrency, duration, &call).await;
    drive(concurrency, Instant::now() + duration, &call).await.measured(concurrency)
}

/// Runs `call` and `reference` for `duration` each, in alternating slices of `slice`, so that
/// a change in the machine's speed during the run (this one's varies by tens of percent
/// from minute to minute) affects both alike; measures both.
pub(crate) async fn paired<F, Fut, G, Gut>(
    concurrency: usize,
    duration: Duration,
    slice: Duration,
    call: &Arc<F>,
    reference: &Arc<G>,
) -> (Measured, Measured)
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = bool> + Send,
    G: Fn(usize) -> Gut + Send + Sync + 'static,
    Gut: Future<Output = bool> + Send,
{
    warm_up(concurrency, duration, call).await;
    warm_up(concurrency, duration, reference).await;
    let (mut measured, mut measured_reference) = (Sample::new(), Sample::new());
    while measured.seconds < duration.as_secs_f64() {
        let slice = slice.min(duration.saturating_sub(Duration::from_secs_f64(measured.seconds)));
        let slice = slice.max(Duration::from_millis(50));
        measured_reference.add(drive(concurrency, Instant::now() + slice, reference).await);
        measured.add(drive(concurrency, Instant::now() + slice, call).await);
    }
    (measured.measured(concurrency), measured_reference.measured(concurrency))
}
