//! One span per call, on both sides of every RPC, and W3C trace context across the wire.
//!
//! Spans are OpenTelemetry spans, made straight through the SDK's tracer (no `tracing` span in
//! between: that bridge cost a tenth of GetMovie's throughput, `bench tracing`), and named and
//! attributed as OpenTelemetry's RPC conventions say: the span's name and `rpc.method` are the
//! fully qualified method (`videostore.catalogue.v1.CatalogueService/GetMovie`),
//! `rpc.system.name` is `grpc`, `rpc.response.status_code` the status code's name (`OK`,
//! `NOT_FOUND`, …), and the kind is SERVER or CLIENT. A server span is an error only for the
//! codes that mean the server failed (UNKNOWN, DEADLINE_EXCEEDED, UNIMPLEMENTED, INTERNAL,
//! UNAVAILABLE, DATA_LOSS); a client span for any code but OK. Errors also carry `error.type`,
//! the code's name.
//!
//! - Servers: [`server_call`], made for each call by the metrics layer ([`crate::metrics`]),
//!   which knows the method and sees the status; the span continues the `traceparent` of the
//!   request (from the browser, the aggregator or any OpenTelemetry client).
//! - Clients: [`TraceClientLayer`] on a channel makes the client span of each call and sends
//!   its context as `traceparent`.
//! - Plain HTTP (the REST facade): [`http_requests`].
//! - The store: [`InSpan::store_span`], a span per transaction or page read inside a call's.
//! - Work shared by several calls (a batch): [`shared_span`].
//!
//! A call's work runs with its OpenTelemetry [`Context`] current, and log lines read their
//! `trace_id` and `span_id` from it ([`crate::telemetry`]). Without export, a call that came
//! with a `traceparent` still runs in its caller's context, so the log lines of every service a
//! request went through carry the same trace id; a call without one costs nothing.
//!
//! Which tracer exports: the process's, set once by [`crate::telemetry::init`] when an OTLP
//! endpoint is configured; or, for tests serving several stores in one process, the one
//! [`export_on_this_thread`] puts in the thread's context.

use std::{
    borrow::Cow,
    future::Future,
    pin::Pin,
    sync::OnceLock,
    task::{Context as TaskContext, Poll},
};

use bytes::Bytes;
use futures::future::BoxFuture;
use http::{HeaderMap, HeaderValue};
use http_body::{Body, Frame, SizeHint};
pub use opentelemetry::{Context, KeyValue};
use opentelemetry::{
    ContextGuard,
    context::FutureExt as _,
    propagation::{Extractor, Injector, TextMapPropagator},
    trace::{
        Link, SpanBuilder, SpanKind, Status, TraceContextExt, TraceId, Tracer as _,
        TracerProvider as _,
    },
};
use opentelemetry_sdk::{
    propagation::TraceContextPropagator,
    trace::{SdkTracer, SdkTracerProvider},
};

/// The tracer of every call in this process, once export is configured.
static PROCESS_TRACER: OnceLock<SdkTracer> = OnceLock::new();

/// A tracer carried in a context: [`export_on_this_thread`].
struct ThreadTracer(SdkTracer);

/// Exports the spans of every call of this process through `provider` (the first provider
/// set stays).
pub(crate) fn export_from_process(provider: &SdkTracerProvider) {
    let _ = PROCESS_TRACER.set(provider.tracer("videostore"));
}

/// Exports the spans of the calls served on this thread through `provider`, until the guard
/// is dropped. For tests that serve whole stores on a one-thread runtime, each test its own.
pub fn export_on_this_thread(provider: &SdkTracerProvider) -> ContextGuard {
    Context::current_with_value(ThreadTracer(provider.tracer("videostore"))).attach()
}

/// The tracer spans made in `cx` are exported through, if any.
fn tracer_of(cx: &Context) -> Option<&SdkTracer> {
    cx.get::<ThreadTracer>().map(|tracer| &tracer.0).or_else(|| PROCESS_TRACER.get())
}

/// The context a call with `headers` runs in: when spans are exported, a span of its own made
/// by `span` under the caller's (the `traceparent`'s) or the current one; without export, the
/// caller's context alone, so that log lines carry its trace id; `None` when there is neither
/// (then the call costs nothing).
fn start_call(
    headers: &HeaderMap,
    span: impl FnOnce(&SdkTracer, &Context) -> opentelemetry_sdk::trace::Span,
) -> Option<Context> {
    Context::map_current(|current| {
        let caller = headers
            .contains_key("traceparent")
            .then(|| {
                TraceContextPropagator::new().extract_with_context(current, &FromHeaders(headers))
            })
            .filter(|caller| caller.span().span_context().is_valid());
        let parent = caller.as_ref().unwrap_or(current);
        match tracer_of(current) {
            Some(tracer) => Some(parent.with_span(span(tracer, parent))),
            None => caller,
        }
    })
}

/// The context of one call a server answers, its span named `method` (fully qualified,
/// `package.Service/Method`): see [`start_call`].
pub fn server_call(method: &'static str, headers: &HeaderMap) -> Option<Context> {
    start_call(headers, |tracer, parent| {
        let builder = SpanBuilder::from_name(method)
            .with_kind(SpanKind::Server)
            .with_attributes(rpc_attributes(method.into()));
        tracer.build_with_context(builder, parent)
    })
}

/// A call span's attributes when it starts (both sides; [`end_call`] adds the status).
fn rpc_attributes(method: Cow<'static, str>) -> [KeyValue; 2] {
    [KeyValue::new("rpc.system.name", "grpc"), KeyValue::new("rpc.method", method)]
}

/// Axum middleware giving each request of a router its span, named by its route (`GET
/// /api/movies/{id}`) and continuing its `traceparent` (apply with
/// `route_layer(axum::middleware::from_fn(trace::http_requests))`, so the route is known).
/// The span covers the handler up to the answer's head.
pub async fn http_requests(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let method = request.method().clone();
    let trace = start_call(request.headers(), |tracer, parent| {
        let route = request
            .extensions()
            .get::<axum::extract::MatchedPath>()
            .map_or_else(|| request.uri().path().to_owned(), |path| path.as_str().to_owned());
        let builder = SpanBuilder::from_name(format!("{method} {route}"))
            .with_kind(SpanKind::Server)
            .with_attributes([
                KeyValue::new("http.request.method", method.as_str().to_owned()),
                KeyValue::new("http.route", route),
            ]);
        tracer.build_with_context(builder, parent)
    });
    let Some(trace) = trace else { return next.run(request).await };
    let response = next.run(request).with_context(trace.clone()).await;
    // The answer's status on the span (5xx is the server's failure).
    let span = trace.span();
    let status = response.status();
    span.set_attribute(KeyValue::new("http.response.status_code", i64::from(status.as_u16())));
    if status.is_server_error() {
        span.set_attribute(KeyValue::new("error.type", status.as_str().to_owned()));
        span.set_status(Status::error(""));
    }
    span.end();
    response
}

pin_project_lite::pin_project! {
    /// A future run in a trace's context: see [`InSpan`] and [`shared_span`].
    pub struct Spanned<F> {
        #[pin]
        inner: F,
        // The context it runs in, until it completes.
        trace: Option<Context>,
        // Whether that context's span is this future's own, to end when it completes (not a
        // caller's, which it only carries on).
        owned: bool,
    }
}

impl<F: Future> Future for Spanned<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, task: &mut TaskContext<'_>) -> Poll<F::Output> {
        let this = self.project();
        let polled = {
            let _attached = this.trace.clone().map(Context::attach);
            this.inner.poll(task)
        };
        if polled.is_ready()
            && let Some(trace) = this.trace.take()
            && *this.owned
        {
            trace.span().end();
        }
        polled
    }
}

/// Store calls in spans of their own.
pub trait InSpan: Future + Sized {
    /// This store call (a transaction, a page read) in a span named `operation` (also its
    /// `db.operation.name`) under the current call's, so that a slow call shows where its time
    /// went. Only inside a call whose span is exported: otherwise the call as it is.
    fn store_span(self, operation: &'static str) -> Spanned<Self> {
        let trace = Context::map_current(|cx| {
            if !cx.span().is_recording() {
                return None;
            }
            let builder = SpanBuilder::from_name(operation)
                .with_kind(SpanKind::Internal)
                .with_attributes([KeyValue::new("db.operation.name", operation)]);
            let span = tracer_of(cx)?.build_with_context(builder, cx);
            Some(cx.with_span(span))
        });
        Spanned { inner: self, trace, owned: true }
    }
}

impl<F: Future> InSpan for F {}

/// The context of the current call, for work done on its behalf elsewhere (a batch that serves
/// several callers: [`shared_span`]).
pub fn current() -> Context {
    Context::current()
}

/// `work` done for several `callers` at once (a batch), in a span named `name` with
/// `attributes`: the child of the first caller whose span is recorded, linked to every other
/// sampled caller's, so that each caller's trace shows the work that served it. When no
/// caller's span is recorded (export off, or none sampled), `work` runs in the first caller's
/// context without a span of its own, so that the calls it makes carry that trace on.
pub fn shared_span<F: Future>(
    name: &'static str,
    attributes: Vec<KeyValue>,
    callers: &[Context],
    work: F,
) -> Spanned<F> {
    let recorded = callers.iter().position(|caller| caller.span().is_recording());
    let span = recorded.and_then(|parent| {
        let parent = &callers[parent];
        let links = callers
            .iter()
            .filter(|caller| !std::ptr::eq(*caller, parent))
            .map(|caller| caller.span().span_context().clone())
            .filter(|span| span.is_valid() && span.is_sampled())
            .map(Link::with_context)
            .collect();
        let builder = SpanBuilder::from_name(name)
            .with_kind(SpanKind::Internal)
            .with_attributes(attributes)
            .with_links(links);
        let span = tracer_of(parent)?.build_with_context(builder, parent);
        Some(parent.with_span(span))
    });
    match span {
        Some(trace) => Spanned { inner: work, trace: Some(trace), owned: true },
        None => Spanned { inner: work, trace: callers.first().cloned(), owned: false },
    }
}

/// The trace id of a call's span if it is exported and sampled (for a histogram's exemplar).
pub(crate) fn sampled_trace_id(trace: &Context) -> Option<TraceId> {
    let span = trace.span();
    let context = span.span_context();
    (span.is_recording() && context.is_sampled()).then(|| context.trace_id())
}

/// The ids a log line written now carries: the trace's, and the span's when it is this
/// process's own and exported (not the caller's when spans are not exported, nor one that was
/// not sampled).
pub(crate) fn log_ids() -> Option<(TraceId, Option<opentelemetry::trace::SpanId>)> {
    Context::map_current(|cx| {
        let span = cx.span();
        let context = span.span_context();
        let own = !context.is_remote() && context.is_sampled();
        context.is_valid().then(|| (context.trace_id(), own.then(|| context.span_id())))
    })
}

/// Records a call's status on its span and ends it (see the module's description for which
/// are errors).
pub(crate) fn end_call(trace: &Context, code: tonic::Code, client: bool) {
    let span = trace.span();
    if !span.is_recording() {
        return;
    }
    let name = code_name(code);
    span.set_attribute(KeyValue::new("rpc.response.status_code", name));
    let server_failed = matches!(
        code,
        tonic::Code::Unknown
            | tonic::Code::DeadlineExceeded
            | tonic::Code::Unimplemented
            | tonic::Code::Internal
            | tonic::Code::Unavailable
            | tonic::Code::DataLoss
    );
    if code != tonic::Code::Ok && (client || server_failed) {
        span.set_attribute(KeyValue::new("error.type", name));
        span.set_status(Status::error(""));
    }
    span.end();
}

struct FromHeaders<'a>(&'a HeaderMap);

impl Extractor for FromHeaders<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|value| value.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

struct IntoHeaders<'a>(&'a mut HeaderMap);

impl Injector for IntoHeaders<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) =
            (http::HeaderName::from_bytes(key.as_bytes()), HeaderValue::from_str(&value))
        {
            self.0.insert(name, value);
        }
    }
}

/// Makes a client span for each call through a channel and sends its context as `traceparent`
/// (see the module's description). Without export, the caller's `traceparent` goes on as it
/// came, so that the callee's log lines carry the same trace id.
#[derive(Debug, Clone, Copy, Default)]
pub struct TraceClientLayer;

impl<S> tower::Layer<S> for TraceClientLayer {
    type Service = TraceClient<S>;

    fn layer(&self, inner: S) -> Self::Service {
        TraceClient { inner }
    }
}

/// See [`TraceClientLayer`].
#[derive(Debug, Clone)]
pub struct TraceClient<S> {
    inner: S,
}

impl<S, B, R> tower::Service<http::Request<B>> for TraceClient<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    R: Body<Data = Bytes> + Send + Unpin + 'static,
{
    type Response = http::Response<TracedBody<R>>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        let trace = Context::map_current(|current| match tracer_of(current) {
            Some(tracer) => {
                let path = request.uri().path();
                let method: Cow<'static, str> = match crate::metrics::method_name(path) {
                    Some(name) => name.into(),
                    None => path.trim_start_matches('/').to_owned().into(),
                };
                let builder = SpanBuilder::from_name(method.clone())
                    .with_kind(SpanKind::Client)
                    .with_attributes(rpc_attributes(method));
                Some(current.with_span(tracer.build_with_context(builder, current)))
            }
            None => current.span().span_context().is_valid().then(|| current.clone()),
        });
        if let Some(trace) = &trace {
            TraceContextPropagator::new()
                .inject_context(trace, &mut IntoHeaders(request.headers_mut()));
        }
        let mut call = ClientCall(trace);
        let answer = self.inner.call(request);
        Box::pin(async move {
            let response = match answer.await {
                Ok(response) => response,
                Err(error) => {
                    // The call never reached the server (tonic answers UNAVAILABLE).
                    call.end(tonic::Code::Unavailable);
                    return Err(error);
                }
            };
            // A trailers-only answer (most errors) has its status in its head.
            if let Some(code) = status_of(response.headers()) {
                call.end(code);
            }
            Ok(response.map(|body| TracedBody { body, call }))
        })
    }
}

/// A client call's trace, until its status is known; one dropped before (the caller stopped
/// waiting, or stopped reading a stream) ends CANCELLED.
struct ClientCall(Option<Context>);

impl ClientCall {
    fn end(&mut self, code: tonic::Code) {
        if let Some(trace) = self.0.take() {
            end_call(&trace, code, true);
        }
    }
}

impl Drop for ClientCall {
    fn drop(&mut self) {
        self.end(tonic::Code::Cancelled);
    }
}

/// An answer's body, whose trailers (with the status) end its client span.
pub struct TracedBody<B> {
    body: B,
    call: ClientCall,
}

impl<B: Body<Data = Bytes> + Unpin> Body for TracedBody<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.body).poll_frame(cx);
        if let Some(code) = answered(&polled) {
            this.call.end(code);
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

/// The status an answer's body reached with this frame, if it did: its trailers' status, or
/// UNKNOWN for a body that failed or ended without one (malformed).
pub(crate) fn answered<E>(polled: &Poll<Option<Result<Frame<Bytes>, E>>>) -> Option<tonic::Code> {
    match polled {
        Poll::Ready(Some(Ok(frame))) => frame.trailers_ref().and_then(status_of),
        Poll::Ready(Some(Err(_)) | None) => Some(tonic::Code::Unknown),
        Poll::Pending => None,
    }
}

/// The status code in `headers`, if they carry one. Bytes that did not decode count as
/// INVALID_ARGUMENT, as the server answers them ([`crate::undecodable`]).
pub(crate) fn status_of(headers: &HeaderMap) -> Option<tonic::Code> {
    let code = headers.get("grpc-status")?.to_str().ok()?.parse::<i32>().ok()?;
    if code == 13 && crate::undecodable::is_undecodable(headers) {
        return Some(tonic::Code::InvalidArgument);
    }
    Some(tonic::Code::from_i32(code))
}

/// A status code's name, as gRPC writes it.
pub(crate) fn code_name(code: tonic::Code) -> &'static str {
    match code {
        tonic::Code::Ok => "OK",
        tonic::Code::Cancelled => "CANCELLED",
        tonic::Code::Unknown => "UNKNOWN",
        tonic::Code::InvalidArgument => "INVALID_ARGUMENT",
        tonic::Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        tonic::Code::NotFound => "NOT_FOUND",
        tonic::Code::AlreadyExists => "ALREADY_EXISTS",
        tonic::Code::PermissionDenied => "PERMISSION_DENIED",
        tonic::Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        tonic::Code::FailedPrecondition => "FAILED_PRECONDITION",
        tonic::Code::Aborted => "ABORTED",
        tonic::Code::OutOfRange => "OUT_OF_RANGE",
        tonic::Code::Unimplemented => "UNIMPLEMENTED",
        tonic::Code::Internal => "INTERNAL",
        tonic::Code::Unavailable => "UNAVAILABLE",
        tonic::Code::DataLoss => "DATA_LOSS",
        tonic::Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

#[cfg(test)]
mod tests {
    use opentelemetry::trace::TraceContextExt;

    use super::*;

    const CALLER: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    fn with_traceparent() -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert("traceparent", HeaderValue::from_static(CALLER));
        headers
    }

    const METHOD: &str = "videostore.catalogue.v1.CatalogueService/GetMovie";

    #[test]
    fn without_export_a_call_runs_in_its_callers_trace_or_in_none() {
        assert!(server_call(METHOD, &HeaderMap::new()).is_none(), "nothing to carry");
        let trace = server_call(METHOD, &with_traceparent()).expect("the caller's trace");
        let _attached = trace.attach();
        let (trace_id, span_id) = log_ids().expect("log lines carry the caller's trace id");
        assert_eq!(trace_id.to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(span_id, None, "the caller's span is not this call's");
    }

    #[test]
    fn with_export_every_call_has_a_span_under_its_callers() {
        let provider = SdkTracerProvider::builder().build();
        let _export = export_on_this_thread(&provider);

        let trace = server_call(METHOD, &HeaderMap::new()).expect("a span");
        assert!(trace.span().is_recording());
        assert!(sampled_trace_id(&trace).is_some(), "sampled: an exemplar");

        let trace = server_call(METHOD, &with_traceparent()).expect("a span");
        let own = trace.span().span_context().clone();
        assert_eq!(own.trace_id().to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_ne!(own.span_id().to_string(), "00f067aa0ba902b7");
        let _attached = trace.clone().attach();
        assert_eq!(log_ids(), Some((own.trace_id(), Some(own.span_id()))));
        end_call(&trace, tonic::Code::Ok, false);
        assert!(!trace.span().is_recording(), "ended");
        assert_eq!(sampled_trace_id(&trace), None, "an ended span names no exemplar");
    }

    #[tokio::test]
    async fn a_batch_runs_under_its_first_recorded_caller_and_ends_no_callers_span() {
        let span_of_work = || async { Context::map_current(|cx| cx.span().span_context().clone()) };
        // Without export: in the first caller's trace, so the calls it makes carry it on.
        let caller = server_call(METHOD, &with_traceparent()).unwrap();
        let work = shared_span("batch", vec![], std::slice::from_ref(&caller), span_of_work());
        assert_eq!(work.await.trace_id().to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");

        // With export: a caller whose trace was not sampled, then one whose trace was.
        let provider = SdkTracerProvider::builder().build();
        let _export = export_on_this_thread(&provider);
        let mut unsampled = HeaderMap::new();
        let traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00";
        unsampled.insert("traceparent", HeaderValue::from_static(traceparent));
        let unsampled = server_call(METHOD, &unsampled).unwrap();
        assert!(!unsampled.span().is_recording());
        let sampled = server_call(METHOD, &HeaderMap::new()).unwrap();
        let callers = [unsampled, sampled.clone()];
        let batch = shared_span("batch", vec![], &callers, span_of_work()).await;
        let caller = sampled.span().span_context().clone();
        assert_eq!(batch.trace_id(), caller.trace_id(), "under the sampled caller");
        assert_ne!(batch.span_id(), caller.span_id(), "in a span of its own");
        assert!(sampled.span().is_recording(), "the caller's span is the caller's to end");
    }

    #[tokio::test]
    async fn a_store_call_has_a_span_only_inside_an_exported_calls() {
        let outside = async {}.store_span("get films");
        assert!(outside.trace.is_none());

        let trace = server_call(METHOD, &with_traceparent()).unwrap();
        let _attached = trace.attach();
        assert!(async {}.store_span("get films").trace.is_none(), "not exported");

        let provider = SdkTracerProvider::builder().build();
        let _export = export_on_this_thread(&provider);
        let trace = server_call(METHOD, &HeaderMap::new()).unwrap();
        let _attached = trace.clone().attach();
        let inside = async {}.store_span("get films");
        let store = inside.trace.as_ref().expect("a store span").span().span_context().clone();
        assert_eq!(store.trace_id(), trace.span().span_context().trace_id());
        inside.await;
    }
}
