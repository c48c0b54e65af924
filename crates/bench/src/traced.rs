//! What exporting traces costs: GetMovie and GetMoviePage, as ratios to the ceiling, on
//! services that export every call's spans over OTLP to a receiver in this process, and on the
//! same services without export, one after the other.

use std::{
    net::SocketAddr,
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
    trace_service_server::{TraceService, TraceServiceServer},
};
use serde::Serialize;

use crate::{
    services,
    unary::{UnaryResult, unary},
};

/// The two runs' figures.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct TracingCost {
    pub(crate) off: Vec<UnaryResult>,
    pub(crate) on: Vec<UnaryResult>,
    /// Spans the receiver was sent during the run with export on.
    pub(crate) spans_received: u64,
    /// Export on, one trace in ten sampled (`parentbased_traceidratio`, 0.1).
    pub(crate) one_in_ten: Vec<UnaryResult>,
}

/// An OTLP trace endpoint that counts the spans it is sent, and keeps none.
#[derive(Clone, Default)]
struct Counter(Arc<AtomicU64>);

#[tonic::async_trait]
impl TraceService for Counter {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let spans: usize = request
            .get_ref()
            .resource_spans
            .iter()
            .flat_map(|resource| &resource.scope_spans)
            .map(|scope| scope.spans.len())
            .sum();
        self.0.fetch_add(spans as u64, Ordering::Relaxed);
        Ok(tonic::Response::new(ExportTraceServiceResponse { partial_success: None }))
    }
}

async fn receiver(counter: Counter) -> anyhow::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(counter))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    Ok(addr)
}

/// GetMovie and GetMoviePage at `concurrency`, export off, then on (default sampler: every
/// call's spans), then on with one trace in ten sampled.
pub(crate) async fn measure(
    bin_dir: &Path,
    concurrency: usize,
    duration: Duration,
) -> anyhow::Result<TracingCost> {
    let targets = |result: &UnaryResult| {
        matches!(result.target, "catalogue GetMovie" | "aggregator GetMoviePage")
    };
    eprintln!("bench: tracing export off");
    let mut running = services::Running::start(bin_dir, true).await?;
    let off = unary(&running, &[concurrency], duration, Some("Get")).await;
    running.stop();
    let counter = Counter::default();
    let endpoint = receiver(counter.clone()).await?;
    eprintln!("bench: tracing export on, to an OTLP receiver at {endpoint}");
    let mut running = services::Running::start_traced(bin_dir, endpoint, None).await?;
    let on = unary(&running, &[concurrency], duration, Some("Get")).await;
    running.stop();
    let spans_received = counter.0.load(Ordering::Relaxed);
    eprintln!("bench:   the receiver was sent {spans_received} spans");
    eprintln!("bench: tracing export on, one trace in ten sampled");
    let mut running = services::Running::start_traced(bin_dir, endpoint, Some(0.1)).await?;
    let one_in_ten = unary(&running, &[concurrency], duration, Some("Get")).await;
    running.stop();
    Ok(TracingCost {
        off: off?.into_iter().filter(targets).collect(),
        on: on?.into_iter().filter(targets).collect(),
        spans_received,
        one_in_ten: one_in_ten?.into_iter().filter(targets).collect(),
    })
}
