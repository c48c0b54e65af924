//! An OTLP/gRPC trace endpoint for tests: it keeps every span it is sent.

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use opentelemetry_proto::tonic::{
    collector::trace::v1::{
        ExportTraceServiceRequest, ExportTraceServiceResponse,
        trace_service_server::{TraceService, TraceServiceServer},
    },
    trace::v1::Span,
};
use tonic::{Request, Response, Status};

/// An OTLP trace endpoint that keeps every span it is sent.
#[derive(Clone, Default)]
pub struct Receiver(Arc<Mutex<Vec<Span>>>);

#[tonic::async_trait]
impl TraceService for Receiver {
    async fn export(
        &self,
        request: Request<ExportTraceServiceRequest>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        let mut spans = self.0.lock().unwrap();
        for resource in request.into_inner().resource_spans {
            for scope in resource.scope_spans {
                spans.extend(scope.spans);
            }
        }
        Ok(Response::new(ExportTraceServiceResponse { partial_success: None }))
    }
}

impl Receiver {
    /// Serves on a free port of 127.0.0.1 until the test ends.
    pub async fn start(self) -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(TraceServiceServer::new(self))
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
        );
        addr
    }

    /// Every span received so far.
    pub fn spans(&self) -> Vec<Span> {
        self.0.lock().unwrap().clone()
    }

    /// The spans of trace `trace` received so far.
    pub fn trace(&self, trace: &[u8]) -> Vec<Span> {
        self.0.lock().unwrap().iter().filter(|span| span.trace_id == trace).cloned().collect()
    }
}

/// A receiver on a free port, and a tracer provider exporting to it (batches, the default
/// sampler), as a service's would with `OTEL_EXPORTER_OTLP_ENDPOINT` pointing there.
pub async fn exporting_to_a_receiver() -> (Receiver, opentelemetry_sdk::trace::SdkTracerProvider) {
    let receiver = Receiver::default();
    let endpoint = format!("http://{}", receiver.clone().start().await);
    let provider = videostore_kit::telemetry::otlp_provider("tests", &endpoint)
        .expect("a provider exporting to the receiver");
    (receiver, provider)
}

/// Each span's name and kind.
pub fn names(spans: &[Span]) -> Vec<String> {
    spans.iter().map(|span| format!("{} {:?}", span.name, span.kind())).collect()
}

/// Waits (at most 10 s) until the receiver holds the spans of `trace` that `ready` wants.
pub async fn received(
    receiver: &Receiver,
    provider: &opentelemetry_sdk::trace::SdkTracerProvider,
    trace: &[u8],
    ready: impl Fn(&[Span]) -> bool,
) -> Vec<Span> {
    for _ in 0..100 {
        // Flushing blocks until the export, which runs on this test's one thread: wait off it.
        let flushing = provider.clone();
        tokio::task::spawn_blocking(move || flushing.force_flush()).await.unwrap().unwrap();
        let spans = receiver.trace(trace);
        if ready(&spans) {
            return spans;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the trace's spans did not arrive: {:#?}", names(&receiver.trace(trace)));
}
