//! One span per call, on both sides of every RPC, and W3C trace context across the wire.
//!
//! Spans are `tracing` spans; when traces are exported ([`crate::telemetry`]) each becomes an
//! OpenTelemetry span, named and attributed as OpenTelemetry's RPC conventions say: the span's
//! name and `rpc.method` are the fully qualified method
//! (`videostore.catalogue.v1.CatalogueService/GetMovie`), `rpc.system.name` is `grpc`,
//! `rpc.response.status_code` the status code's name (`OK`, `NOT_FOUND`, …), and the kind is
//! SERVER or CLIENT. A server span is an error only for the codes that mean the server failed
//! (UNKNOWN, DEADLINE_EXCEEDED, UNIMPLEMENTED, INTERNAL, UNAVAILABLE, DATA_LOSS); a client span
//! for any code but OK. Errors also carry `error.type`, the code's name.
//!
//! - Servers: [`server_span`], made for each call by the metrics layer ([`crate::metrics`]),
//!   which knows the method and sees the status; the span continues the `traceparent` of the
//!   request (from the browser, the aggregator or any OpenTelemetry client).
//! - Clients: [`TraceClientLayer`] on a channel makes the client span of each call and sends
//!   its context as `traceparent`.
//! - Plain HTTP (the REST facade): [`http_requests`].
//! - The store: [`store_span`], a span per transaction or page read inside a call's.
//!
//! Log lines written inside a call carry `trace_id` and `span_id` (span fields, so they
//! also appear as attributes of the exported span). Without export, a call's span still carries
//! the `trace_id` of an incoming `traceparent`, so logs of the services a request went through
//! can be matched.

use std::{
    pin::Pin,
    task::{Context, Poll},
};

use bytes::Bytes;
use futures::future::BoxFuture;
use http::{HeaderMap, HeaderValue};
use http_body::{Body, Frame, SizeHint};
pub use opentelemetry::trace::SpanContext;
use opentelemetry::{
    propagation::{Extractor, Injector, TextMapPropagator},
    trace::TraceContextExt,
};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing::{Instrument, Span, field::Empty};
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// Whether a call with `headers` gets a span: when spans are exported, when its caller sent a
/// trace context (so that log lines carry the caller's trace id), or when answers are logged
/// (`RUST_LOG=videostore::rpc=debug`). Otherwise a call costs no span at all: a span per call
/// that nobody reads cost GetMovie 8% of its throughput at `RUST_LOG=info` (`bench unary`).
fn wanted(headers: &HeaderMap) -> bool {
    crate::telemetry::exported()
        || headers.contains_key("traceparent")
        || tracing::enabled!(target: "videostore::rpc", tracing::Level::DEBUG)
}

/// The span of one call a server answers: `method` is fully qualified
/// (`package.Service/Method`), `headers` the request's, whose `traceparent` it continues.
/// [`Span::none`] when nobody would read it (see [`wanted`]).
pub fn server_span(method: &str, headers: &HeaderMap) -> Span {
    if !wanted(headers) {
        return Span::none();
    }
    let span = tracing::info_span!(
        target: "videostore::rpc",
        "rpc",
        otel.name = method,
        otel.kind = "server",
        rpc.system.name = "grpc",
        rpc.method = method,
        rpc.response.status_code = Empty,
        error.type = Empty,
        otel.status_code = Empty,
        trace_id = Empty,
        span_id = Empty,
    );
    continue_trace(&span, headers);
    span
}

/// The span of one plain HTTP request a server answers (`route` as the router names it,
/// `GET /api/movies/{id}`), continuing the request's `traceparent`.
fn http_server_span(method: &http::Method, route: &str, headers: &HeaderMap) -> Span {
    if !wanted(headers) {
        return Span::none();
    }
    let span = tracing::info_span!(
        target: "videostore::http",
        "http",
        otel.name = format_args!("{method} {route}"),
        otel.kind = "server",
        http.request.method = %method,
        http.route = route,
        http.response.status_code = Empty,
        error.type = Empty,
        otel.status_code = Empty,
        trace_id = Empty,
        span_id = Empty,
    );
    continue_trace(&span, headers);
    span
}

/// Axum middleware giving each request of a router its [`http_server_span`] (apply with
/// `route_layer(axum::middleware::from_fn(trace::http_requests))`, so the route is known).
/// The span covers the handler up to the answer's head.
pub async fn http_requests(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or_else(|| request.uri().path().to_owned(), |path| path.as_str().to_owned());
    let span = http_server_span(request.method(), &route, request.headers());
    let response = next.run(request).instrument(span.clone()).await;
    end_http(&span, response.status());
    response
}

/// A span for one store call (a transaction, a page read) inside a call's span, so a slow call
/// shows where its time went: named `operation` (also its `db.operation.name`). Outside a
/// call's span (none was wanted, see [`server_span`]), [`Span::none`].
pub fn store_span(operation: &'static str) -> Span {
    if Span::current().is_none() {
        return Span::none();
    }
    tracing::info_span!(
        target: "videostore::store",
        "store",
        otel.name = operation,
        db.operation.name = operation,
    )
}

/// Records an HTTP answer's status on its span (5xx is the server's failure).
fn end_http(span: &Span, status: http::StatusCode) {
    span.record("http.response.status_code", i64::from(status.as_u16()));
    if status.is_server_error() {
        span.record("error.type", status.as_str());
        span.record("otel.status_code", "ERROR");
    }
}

/// Makes `span` a child of the caller's span named in `headers`, and records the ids its log
/// lines carry.
fn continue_trace(span: &Span, headers: &HeaderMap) {
    let parent = TraceContextPropagator::new().extract(&FromHeaders(headers));
    let caller = parent.span().span_context().clone();
    if caller.is_valid() {
        // Fails only when traces are not exported (no layer to take it): the trace id below
        // still ties the logs together.
        let _ = span.set_parent(parent);
    }
    // Starts the exported span (if any) now, so its ids are known.
    let own = span.context().span().span_context().clone();
    if own.is_valid() {
        span.record("trace_id", tracing::field::display(own.trace_id()));
        span.record("span_id", tracing::field::display(own.span_id()));
    } else if caller.is_valid() {
        span.record("trace_id", tracing::field::display(caller.trace_id()));
    }
}

/// The trace id of `span` if it is exported and sampled (for a histogram's exemplar).
pub(crate) fn sampled_trace_id(span: &Span) -> Option<String> {
    if span.is_none() {
        return None;
    }
    let context = span.context();
    let span_context = context.span().span_context().clone();
    (span_context.is_valid() && span_context.is_sampled())
        .then(|| span_context.trace_id().to_string())
}

/// Records a call's status on its span (see the module's description for which are errors).
pub fn end_call(span: &Span, code: tonic::Code, client: bool) {
    let name = code_name(code);
    span.record("rpc.response.status_code", name);
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
        span.record("error.type", name);
        span.record("otel.status_code", "ERROR");
    }
}

/// The context of the current span, to link to from work done on its behalf elsewhere (a
/// batch that serves several callers). Invalid when traces are not exported.
pub fn current_context() -> SpanContext {
    Span::current().context().span().span_context().clone()
}

/// Adds `links` to `span`: the callers it works for besides its parent.
pub fn link(span: &Span, links: impl IntoIterator<Item = SpanContext>) {
    for link in links {
        span.add_link(link);
    }
}

/// Makes `span` a child of `parent` (when valid), e.g. a batch's span of its first caller's.
pub fn set_parent(span: &Span, parent: SpanContext) {
    if parent.is_valid() {
        let _ = span.set_parent(opentelemetry::Context::new().with_remote_span_context(parent));
    }
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
/// (see the module's description).
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

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        let method = request.uri().path().trim_start_matches('/');
        // Without export, a client span has nothing to send on.
        let span = if !crate::telemetry::exported() {
            Span::none()
        } else {
            tracing::info_span!(
                target: "videostore::rpc",
                "rpc.client",
                otel.name = method,
                otel.kind = "client",
                rpc.system.name = "grpc",
                rpc.method = method,
                rpc.response.status_code = Empty,
                error.type = Empty,
                otel.status_code = Empty,
            )
        };
        let context = span.context();
        if context.span().span_context().is_valid() {
            TraceContextPropagator::new()
                .inject_context(&context, &mut IntoHeaders(request.headers_mut()));
        }
        let answer = {
            let _entered = span.enter();
            self.inner.call(request)
        };
        Box::pin(
            async move {
                let span = Span::current();
                let response = match answer.await {
                    Ok(response) => response,
                    Err(error) => {
                        // The call never reached the server (tonic answers UNAVAILABLE).
                        end_call(&span, tonic::Code::Unavailable, true);
                        return Err(error);
                    }
                };
                let mut span = Some(span);
                // A trailers-only answer (most errors) has its status in its head.
                if let Some(code) = status_of(response.headers()) {
                    end_call(span.as_ref().expect("just set"), code, true);
                    span = None;
                }
                Ok(response.map(|body| TracedBody { body, span }))
            }
            .instrument(span),
        )
    }
}

/// An answer's body, whose trailers (with the status) end its client span.
pub struct TracedBody<B> {
    body: B,
    span: Option<Span>,
}

impl<B: Body<Data = Bytes> + Unpin> Body for TracedBody<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.body).poll_frame(cx);
        if let Some(code) = answered(&polled)
            && let Some(span) = this.span.take()
        {
            end_call(&span, code, true);
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

impl<B> Drop for TracedBody<B> {
    fn drop(&mut self) {
        // Dropped before its status: the caller stopped reading (a stream it let go).
        if let Some(span) = self.span.take() {
            end_call(&span, tonic::Code::Cancelled, true);
        }
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
    use tracing_subscriber::{EnvFilter, layer::SubscriberExt};

    use super::*;

    fn with_traceparent() -> HeaderMap {
        let mut headers = HeaderMap::new();
        let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        headers.insert("traceparent", HeaderValue::from_static(traceparent));
        headers
    }

    const METHOD: &str = "videostore.catalogue.v1.CatalogueService/GetMovie";

    #[test]
    fn a_call_nobody_would_read_gets_no_span() {
        let logs = crate::telemetry::log_layer(false, EnvFilter::new("info"), std::io::sink);
        let _guard = tracing::subscriber::set_default(tracing_subscriber::registry().with(logs));
        assert!(server_span(METHOD, &HeaderMap::new()).is_none());
        // The caller's trace id is worth a span: the call's log lines carry it.
        assert!(!server_span(METHOD, &with_traceparent()).is_none());
    }

    #[test]
    fn every_call_gets_a_span_when_answers_are_logged_or_spans_exported() {
        let logs = crate::telemetry::log_layer(
            false,
            EnvFilter::new("videostore::rpc=debug"),
            std::io::sink,
        );
        let guard = tracing::subscriber::set_default(tracing_subscriber::registry().with(logs));
        assert!(!server_span(METHOD, &HeaderMap::new()).is_none());
        drop(guard);

        let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
        let logs = crate::telemetry::log_layer(false, EnvFilter::new("warn"), std::io::sink);
        let _guard = tracing::subscriber::set_default(
            tracing_subscriber::registry().with(logs).with(crate::telemetry::span_layer(&provider)),
        );
        let span = server_span(METHOD, &HeaderMap::new());
        assert!(!span.is_none());
        assert!(span.context().span().span_context().is_valid(), "the exported span has ids");
    }
}
