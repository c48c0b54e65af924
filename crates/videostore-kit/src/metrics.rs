//! Prometheus metrics, served at `GET /metrics` (OpenMetrics text) on the service's port, or on
//! its private admin port when it has one (so never through the public Ingress host).
//!
//! Every gRPC call is timed from its arrival to the end of its answer (a stream's last message)
//! into `rpc_server_call_duration_seconds`, labelled as OpenTelemetry's RPC conventions name
//! `rpc.server.call.duration`: `rpc_system_name="grpc"`, `rpc_method` (fully qualified,
//! `videostore.catalogue.v1.CatalogueService/GetMovie`) and `rpc_response_status_code` (`OK`,
//! `NOT_FOUND`, …). Its count per method and code gives the rate and the errors, its buckets the
//! latency. Calls over gRPC-Web count alike (recorded inside the translation). A call whose
//! caller went away before its end counts as `CANCELLED`, or `DEADLINE_EXCEEDED` past the
//! answer limit ([`crate::timeout::ANSWER_WITHIN`]). A path that is no method of the contracts
//! counts as `rpc_method="_OTHER"` (as OpenTelemetry names unknown methods), so made-up paths
//! cannot grow the series without bound. When the call's span is exported and sampled, its
//! trace id is its bucket's exemplar (`# {trace_id="…"}`).
//!
//! The same layer gives each call its trace ([`crate::trace::server_call`]).
//!
//! A service adds its own gauges and counters with [`Metrics::register`].

use std::{
    collections::HashMap,
    pin::Pin,
    sync::{Arc, Mutex, OnceLock},
    task::{Context, Poll},
    time::Instant,
};

use crate::trace::{code_name, status_of};
use axum::response::IntoResponse;
use bytes::Bytes;
use futures::future::BoxFuture;
use http::{HeaderValue, header::CONTENT_TYPE};
use http_body::{Body, Frame, SizeHint};
use opentelemetry::context::FutureExt as _;
use prometheus_client::{
    encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder},
    metrics::{exemplar::HistogramWithExemplars, family::Family},
    registry::{Metric, Registry, Unit},
};

/// Upper bounds of the duration buckets, in seconds: OpenTelemetry's advice for RPC durations,
/// with finer ones below 5 ms, where this store's reads answer.
const BUCKETS: [f64; 19] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75,
    1.0, 2.5, 5.0, 7.5, 10.0,
];

/// The labels of one call's duration.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Call {
    rpc_system_name: &'static str,
    rpc_method: String,
    rpc_response_status_code: &'static str,
}

/// An exemplar's labels: the trace of a call that fell in a bucket, so a slow bucket leads to
/// a slow call's trace.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Traced {
    trace_id: TraceIdLabel,
}

/// A trace id as a label value (32 hex digits), written only when the exemplar is scraped.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
struct TraceIdLabel(opentelemetry::trace::TraceId);

impl EncodeLabelValue for TraceIdLabel {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> std::fmt::Result {
        std::fmt::Write::write_fmt(encoder, format_args!("{}", self.0))
    }
}

type CallDurations = HistogramWithExemplars<Traced>;
type CallFamily = Family<Call, CallDurations, fn() -> CallDurations>;

fn durations() -> CallDurations {
    HistogramWithExemplars::new(BUCKETS.into_iter())
}

/// The durations of one method's calls, by status code, each made on first use: a call finds
/// its histogram without building a label set.
struct MethodDurations {
    name: &'static str,
    by_code: [OnceLock<CallDurations>; 17],
}

impl MethodDurations {
    fn new(name: &'static str) -> Arc<Self> {
        Arc::new(Self { name, by_code: std::array::from_fn(|_| OnceLock::new()) })
    }
}

/// The fully qualified name (`package.Service/Method`) of every method of the store's
/// contracts, health and reflection, by its path (`/package.Service/Method`). Made once per
/// process, and kept as long as it runs, so that a call's span is named without an allocation.
fn method_names() -> &'static HashMap<String, &'static str> {
    static NAMES: OnceLock<HashMap<String, &'static str>> = OnceLock::new();
    NAMES.get_or_init(|| {
        use prost::Message;
        let sets = [
            videostore_proto::FILE_DESCRIPTOR_SET,
            tonic_health::pb::FILE_DESCRIPTOR_SET,
            tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET,
            tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
        ];
        let mut names = HashMap::new();
        for set in sets {
            let set = prost_types::FileDescriptorSet::decode(set).expect("built-in descriptors");
            for file in set.file {
                for service in &file.service {
                    for method in &service.method {
                        let name =
                            format!("{}.{}/{}", file.package(), service.name(), method.name());
                        let name: &'static str = Box::leak(name.into_boxed_str());
                        names.insert(format!("/{name}"), name);
                    }
                }
            }
        }
        names
    })
}

/// The fully qualified name of the method at `path` (`/package.Service/Method`), if it is one
/// of the store's contracts, health or reflection.
pub(crate) fn method_name(path: &str) -> Option<&'static str> {
    method_names().get(path).copied()
}

/// Every method's durations, by its path (`/package.Service/Method`).
struct Durations {
    family: CallFamily,
    methods: HashMap<String, Arc<MethodDurations>>,
    other: Arc<MethodDurations>,
}

impl Durations {
    /// For the methods of the store's contracts, health and reflection.
    fn new(family: CallFamily) -> Self {
        let methods = method_names()
            .iter()
            .map(|(path, name)| (path.clone(), MethodDurations::new(name)))
            .collect();
        Self { family, methods, other: MethodDurations::new("_OTHER") }
    }

    fn of(&self, path: &str) -> Arc<MethodDurations> {
        Arc::clone(self.methods.get(path).unwrap_or(&self.other))
    }

    fn observe(
        &self,
        method: &MethodDurations,
        code: tonic::Code,
        seconds: f64,
        trace: Option<Traced>,
    ) {
        let index = (code as usize).min(16);
        let histogram = method.by_code[index].get_or_init(|| {
            self.family.get_or_create_owned(&Call {
                rpc_system_name: "grpc",
                rpc_method: method.name.to_string(),
                rpc_response_status_code: code_name(code),
            })
        });
        histogram.observe(seconds, trace, None);
    }
}

/// One server's metrics: the registry `/metrics` shows, and the call durations.
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Mutex<Registry>>,
    calls: Arc<Durations>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A registry holding the call durations.
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let family = CallFamily::new_with_constructor(durations);
        registry.register_with_unit(
            "rpc_server_call_duration",
            "Duration of gRPC calls, from arrival to the end of the answer",
            Unit::Seconds,
            family.clone(),
        );
        Self { registry: Arc::new(Mutex::new(registry)), calls: Arc::new(Durations::new(family)) }
    }

    /// Adds a metric of the service's own (a name without the unit; `help` ends without a dot).
    pub fn register(&self, name: &str, help: &str, metric: impl Metric) {
        self.registry.lock().unwrap_or_else(|e| e.into_inner()).register(name, help, metric);
    }

    /// Adds a metric of the service's own with its unit (`name` without it).
    pub fn register_with_unit(&self, name: &str, help: &str, unit: Unit, metric: impl Metric) {
        self.registry
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .register_with_unit(name, help, unit, metric);
    }

    /// Adds figures read afresh at each scrape.
    pub fn register_collector(&self, collector: Box<dyn prometheus_client::collector::Collector>) {
        self.registry.lock().unwrap_or_else(|e| e.into_inner()).register_collector(collector);
    }

    /// The metrics in OpenMetrics text.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        let registry = self.registry.lock().unwrap_or_else(|e| e.into_inner());
        prometheus_client::encoding::text::encode(&mut text, &registry)
            .expect("writing to a String cannot fail");
        text
    }

    /// The layer that times every gRPC call (apply it to the gRPC routes, inside gRPC-Web).
    pub fn layer(&self) -> MetricsLayer {
        MetricsLayer { calls: Arc::clone(&self.calls) }
    }

    /// `GET /metrics`.
    pub fn route(&self) -> axum::Router {
        let metrics = self.clone();
        axum::Router::new().route(
            "/metrics",
            axum::routing::get(move || {
                let metrics = metrics.clone();
                async move {
                    let content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8";
                    ([(CONTENT_TYPE, HeaderValue::from_static(content_type))], metrics.encode())
                        .into_response()
                }
            }),
        )
    }
}

/// See [`Metrics::layer`].
#[derive(Clone)]
pub struct MetricsLayer {
    calls: Arc<Durations>,
}

impl std::fmt::Debug for MetricsLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricsLayer").finish_non_exhaustive()
    }
}

impl<S> tower::Layer<S> for MetricsLayer {
    type Service = TimeCalls<S>;

    fn layer(&self, inner: S) -> Self::Service {
        TimeCalls { inner, calls: Arc::clone(&self.calls) }
    }
}

/// See [`Metrics::layer`].
#[derive(Clone)]
pub struct TimeCalls<S> {
    inner: S,
    calls: Arc<Durations>,
}

impl<S> std::fmt::Debug for TimeCalls<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TimeCalls").finish_non_exhaustive()
    }
}

impl<S, B, R> tower::Service<http::Request<B>> for TimeCalls<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
    R: Body<Data = Bytes> + Send + Unpin + 'static,
{
    type Response = http::Response<TimedBody<R>>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let method = self.calls.of(request.uri().path());
        let trace = crate::trace::server_call(method.name, request.headers());
        let mut timing = Timing {
            method,
            calls: Arc::clone(&self.calls),
            started: Instant::now(),
            trace,
            finished: false,
        };
        let answer = {
            let _attached = timing.trace.clone().map(opentelemetry::Context::attach);
            self.inner.call(request)
        };
        Box::pin(async move {
            let response = match &timing.trace {
                Some(trace) => answer.with_context(trace.clone()).await?,
                None => answer.await?,
            };
            // A trailers-only answer (most errors) has its status in its head.
            if let Some(code) = status_of(response.headers()) {
                timing.finish(code);
            }
            Ok(response.map(|body| TimedBody { body, timing }))
        })
    }
}

/// A call being timed and traced: recorded once, when its status is known or when it is
/// dropped; its span ends then.
struct Timing {
    calls: Arc<Durations>,
    method: Arc<MethodDurations>,
    started: Instant,
    /// The context the call's work runs in (its span, when exported), if it has a trace.
    trace: Option<opentelemetry::Context>,
    finished: bool,
}

impl Timing {
    fn finish(&mut self, code: tonic::Code) {
        if std::mem::replace(&mut self.finished, true) {
            return;
        }
        // An exported (sampled) call's trace becomes its bucket's exemplar.
        let trace = self.trace.as_ref();
        let exemplar = trace
            .and_then(crate::trace::sampled_trace_id)
            .map(|id| Traced { trace_id: TraceIdLabel(id) });
        self.calls.observe(&self.method, code, self.started.elapsed().as_secs_f64(), exemplar);
        if tracing::enabled!(target: "videostore::rpc", tracing::Level::DEBUG) {
            // In the call's context, so that the line carries its trace.
            let _attached = trace.cloned().map(opentelemetry::Context::attach);
            let method = self.method.name;
            tracing::debug!(target: "videostore::rpc", code = code_name(code), rpc.method = method, "answered");
        }
        if let Some(trace) = trace {
            crate::trace::end_call(trace, code, false);
        }
    }
}

impl Drop for Timing {
    fn drop(&mut self) {
        if !self.finished {
            let late = self.started.elapsed() >= crate::timeout::ANSWER_WITHIN;
            self.finish(if late { tonic::Code::DeadlineExceeded } else { tonic::Code::Cancelled });
        }
    }
}

/// An answer's body, which records its call when its trailers (with the status) go by.
pub struct TimedBody<B> {
    body: B,
    timing: Timing,
}

impl<B: Body<Data = Bytes> + Unpin> Body for TimedBody<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.get_mut();
        // The stream's handler runs in its call's trace.
        let polled = {
            let _attached = this.timing.trace.clone().map(opentelemetry::Context::attach);
            Pin::new(&mut this.body).poll_frame(cx)
        };
        if let Some(code) = crate::trace::answered(&polled) {
            this.timing.finish(code);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
