//! What exporting traces costs: GetMovie and GetMoviePage on services that export their spans
//! over OTLP to a receiver in this process, against the same calls on services without export,
//! both running at once and measured in alternating slices (as every target is against the
//! ceiling), so that the machine's changes of speed fall on both alike. Measured one after the
//! other instead, the same runs gave on ÷ off anywhere from 0.82 to 1.00.

use std::{
    convert::Infallible,
    net::SocketAddr,
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use futures::future::BoxFuture;
use serde::Serialize;
use tonic::{
    body::Body,
    codegen::{Service, http},
    server::{Grpc, NamedService, UnaryService},
    transport::Channel,
};
use videostore_proto::codec::ProstCodec;

use crate::{
    clients::channels,
    load::{self, Measured},
    services,
    unary::{CONNECTIONS, SLICE, get_movie, movie_page},
};

/// What export costs one target: its calls with export on and off, in alternating slices.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Paired {
    pub(crate) target: &'static str,
    pub(crate) off: Measured,
    pub(crate) on: Measured,
    /// Throughput with export on over throughput without.
    pub(crate) on_over_off: f64,
}

/// The scenario's figures.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct TracingCost {
    /// Every call's spans exported (the default sampler, `parentbased_always_on`).
    pub(crate) every_call: Vec<Paired>,
    /// Spans the receiver was sent meanwhile.
    pub(crate) spans_received: u64,
    /// One trace in ten sampled (`parentbased_traceidratio`, 0.1).
    pub(crate) one_in_ten: Vec<Paired>,
}

/// Just enough of OTLP's `ExportTraceServiceRequest` to count its spans: each span is left as
/// its bytes. The receiver stands for a collector on another machine, so it should take as
/// little of these two cores as it can: decoding every span in full cost about as much CPU as
/// encoding it cost the services.
#[derive(Clone, PartialEq, prost::Message)]
struct ExportRequest {
    #[prost(message, repeated, tag = "1")]
    resource_spans: Vec<ResourceSpans>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct ResourceSpans {
    #[prost(message, repeated, tag = "2")]
    scope_spans: Vec<ScopeSpans>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct ScopeSpans {
    #[prost(bytes = "bytes", repeated, tag = "2")]
    spans: Vec<prost::bytes::Bytes>,
}

/// `ExportTraceServiceResponse` with no partial success: every span taken.
#[derive(Clone, PartialEq, prost::Message)]
struct ExportResponse {}

/// An OTLP/gRPC trace endpoint that counts the spans it is sent, and keeps none.
#[derive(Clone, Default)]
struct Counter(Arc<AtomicU64>);

impl NamedService for Counter {
    const NAME: &'static str = "opentelemetry.proto.collector.trace.v1.TraceService";
}

impl UnaryService<ExportRequest> for Counter {
    type Response = ExportResponse;
    type Future = std::future::Ready<Result<tonic::Response<ExportResponse>, tonic::Status>>;

    fn call(&mut self, request: tonic::Request<ExportRequest>) -> Self::Future {
        let spans: usize = request
            .get_ref()
            .resource_spans
            .iter()
            .flat_map(|resource| &resource.scope_spans)
            .map(|scope| scope.spans.len())
            .sum();
        self.0.fetch_add(spans as u64, Ordering::Relaxed);
        std::future::ready(Ok(tonic::Response::new(ExportResponse {})))
    }
}

/// Its one method, `Export`.
impl Service<http::Request<Body>> for Counter {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let mut grpc = Grpc::new(ProstCodec::<ExportResponse, ExportRequest>::default());
        let counter = self.clone();
        Box::pin(async move { Ok(grpc.unary(counter, request).await) })
    }
}

async fn receiver(counter: Counter) -> anyhow::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(counter)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    Ok(addr)
}

/// GetMovie and GetMoviePage at `concurrency`: on services exporting every call's spans, then
/// one trace in ten, each against services without export.
pub(crate) async fn measure(
    bin_dir: &Path,
    concurrency: usize,
    duration: Duration,
) -> anyhow::Result<TracingCost> {
    let counter = Counter::default();
    let endpoint = receiver(counter.clone()).await?;
    let mut off = services::Running::start_traced(bin_dir, None).await?;
    let mut every_call = services::Running::start_traced(bin_dir, Some((endpoint, None))).await?;
    let mut one_in_ten =
        services::Running::start_traced(bin_dir, Some((endpoint, Some(0.1)))).await?;
    eprintln!(
        "bench: tracing export on (every call, to an OTLP receiver at {endpoint}) against off"
    );
    let measured = against(&every_call, &off, concurrency, duration).await;
    let spans_received = counter.0.load(Ordering::Relaxed);
    eprintln!("bench:   the receiver was sent {spans_received} spans");
    eprintln!("bench: tracing export on (one trace in ten) against off");
    let tenth = against(&one_in_ten, &off, concurrency, duration).await;
    for running in [&mut off, &mut every_call, &mut one_in_ten] {
        running.stop();
    }
    // Nothing counted means the export or the receiver's reading of it is broken, and "on"
    // measured nothing.
    anyhow::ensure!(spans_received > 0, "no spans reached the OTLP receiver");
    Ok(TracingCost { every_call: measured?, spans_received, one_in_ten: tenth? })
}

/// GetMovie and GetMoviePage on `on` and `off` in alternating slices.
async fn against(
    on: &services::Running,
    off: &services::Running,
    concurrency: usize,
    duration: Duration,
) -> anyhow::Result<Vec<Paired>> {
    let (catalogues, aggregators) =
        ((on.catalogue, off.catalogue), (on.aggregator, off.aggregator));
    Ok(vec![
        paired("catalogue GetMovie", catalogues, get_movie, concurrency, duration).await?,
        paired("aggregator GetMoviePage", aggregators, movie_page, concurrency, duration).await?,
    ])
}

/// `call` on the service at `on` and at `off`, in alternating slices.
async fn paired<Fut>(
    target: &'static str,
    (on, off): (SocketAddr, SocketAddr),
    call: fn(Channel) -> Fut,
    concurrency: usize,
    duration: Duration,
) -> anyhow::Result<Paired>
where
    Fut: Future<Output = bool> + Send + 'static,
{
    let calls =
        |pool: Vec<Channel>| Arc::new(move |worker: usize| call(pool[worker % pool.len()].clone()));
    let on_calls = calls(channels(on, CONNECTIONS).await?);
    let off_calls = calls(channels(off, CONNECTIONS).await?);
    let (on, off) = load::paired(concurrency, duration, SLICE, &on_calls, &off_calls).await;
    let on_over_off = on.throughput / off.throughput.max(1.0);
    eprintln!(
        "bench:   {target} at {}: {:.0} calls/s with export, {:.0} without: {on_over_off:.2}",
        on.concurrency, on.throughput, off.throughput
    );
    Ok(Paired { target, off, on, on_over_off })
}
