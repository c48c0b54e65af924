//! The span exporter: OTLP over gRPC, each span written straight from the SDK's [`SpanData`]
//! into the protocol's bytes.
//!
//! Why not `opentelemetry-otlp`'s exporter: it first converts every span into
//! `opentelemetry-proto`'s structs (a `Vec` for each id, a `String` for each attribute's key and
//! value, a hash of each span's scope), then prost walks those structs three times to encode
//! them. In a profile of the catalogue exporting every GetMovie call, that was 8% of its CPU
//! (`perf` during `bench tracing`). Here a batch is written in one pass into one buffer, with no
//! allocation per span or attribute. The figures before and after are in the README (Tracing).
//!
//! What it relies on: the wire format of `opentelemetry/proto/trace/v1/trace.proto` (v1, stable)
//! and `SpanData`'s fields. The test `the_bytes_decode_to_what_opentelemetry_proto_makes` decodes
//! a batch that uses every field with `opentelemetry-proto`'s own types and compares it with that
//! crate's conversion of the same spans, so a field written wrong, or missed, fails it.
//!
//! Configured by the standard variables: the endpoint (`http://host:4317`), headers
//! (`OTEL_EXPORTER_OTLP_TRACES_HEADERS` or `OTEL_EXPORTER_OTLP_HEADERS`, `key=value,…` with
//! percent-encoded values) and the time limit of one export (`OTEL_EXPORTER_OTLP_TRACES_TIMEOUT`
//! or `OTEL_EXPORTER_OTLP_TIMEOUT`, milliseconds, 10 s by default). Plain `http://` only, without
//! compression: the collector runs beside the services (in `k8s/`, in the same namespace), and
//! anything else is refused at startup with the reason.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, SystemTime},
};

use anyhow::Context as _;
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, uri::PathAndQuery};
use opentelemetry::{
    Array, InstrumentationScope, KeyValue, Value,
    trace::{SpanContext, SpanId, SpanKind, Status, TraceState},
};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
use opentelemetry_sdk::{
    Resource,
    error::{OTelSdkError, OTelSdkResult},
    trace::{SpanData, SpanExporter},
};
use prost::encoding::{WireType, encode_key, encode_varint};
use tonic::{
    codec::{Codec, EncodeBuf, Encoder},
    metadata::MetadataMap,
    transport::{Channel, Endpoint},
};
use videostore_proto::codec::SliceDecoder;

/// How long one export may take when `OTEL_EXPORTER_OTLP_TIMEOUT` does not say.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Where and how spans are sent.
#[derive(Debug)]
pub(crate) struct ExportConfig {
    pub(crate) endpoint: String,
    pub(crate) headers: HeaderMap,
    pub(crate) timeout: Duration,
}

impl ExportConfig {
    /// `endpoint`, with the headers and time limit the standard variables set.
    pub(crate) fn from_env(endpoint: &str) -> anyhow::Result<Self> {
        let headers = match var(["OTEL_EXPORTER_OTLP_TRACES_HEADERS", "OTEL_EXPORTER_OTLP_HEADERS"])
        {
            Some((name, value)) => parse_headers(&value).context(name)?,
            None => HeaderMap::new(),
        };
        let timeout = match var(["OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "OTEL_EXPORTER_OTLP_TIMEOUT"])
        {
            Some((name, value)) => parse_timeout(&value)
                .with_context(|| format!("{name}={value:?} is not a number of milliseconds > 0"))?,
            None => DEFAULT_TIMEOUT,
        };
        if let Some((name, value)) =
            var(["OTEL_EXPORTER_OTLP_TRACES_COMPRESSION", "OTEL_EXPORTER_OTLP_COMPRESSION"])
            && value.trim() != "none"
        {
            anyhow::bail!("{name}={value:?}: spans are sent uncompressed (set it to none)");
        }
        Ok(Self { endpoint: endpoint.to_owned(), headers, timeout })
    }
}

/// The first of `names` set (to more than spaces), and its value: a signal's own variable, then
/// the one for every signal.
pub(crate) fn var(names: [&'static str; 2]) -> Option<(&'static str, String)> {
    names.into_iter().find_map(|name| {
        std::env::var(name).ok().filter(|value| !value.trim().is_empty()).map(|value| (name, value))
    })
}

/// A time limit in milliseconds, more than none.
fn parse_timeout(millis: &str) -> Option<Duration> {
    millis.trim().parse().ok().filter(|&millis| millis > 0).map(Duration::from_millis)
}

/// `key=value,key=value` (values percent-encoded, spaces around each part ignored), as the OTLP
/// exporter specification writes headers.
fn parse_headers(text: &str) -> anyhow::Result<HeaderMap> {
    let mut headers = HeaderMap::new();
    // The values may be secrets (an authorization header): no error message shows one.
    let pairs = text.split(',').map(str::trim).filter(|pair| !pair.is_empty());
    for (number, pair) in pairs.enumerate() {
        let (key, value) = pair
            .split_once('=')
            .with_context(|| format!("header {} has no '=' (key=value)", number + 1))?;
        let name = HeaderName::from_bytes(key.trim().as_bytes())
            .with_context(|| format!("{:?} is not a header name", key.trim()))?;
        let value = percent_encoding::percent_decode_str(value.trim())
            .decode_utf8()
            .with_context(|| format!("the value of {name} is not UTF-8"))?;
        let value = HeaderValue::from_str(&value)
            .with_context(|| format!("the value of {name} is not a header value"))?;
        headers.append(name, value);
    }
    Ok(headers)
}

/// Sends batches of spans to an OTLP/gRPC collector, from a tokio runtime.
///
/// The SDK's batch processor calls [`SpanExporter::export`] from a thread of its own, outside
/// any runtime; the batch is encoded there, and sent by a task on the service's runtime (which
/// the channel needs) while that thread waits.
#[derive(Debug)]
pub(crate) struct OtlpExporter {
    channel: Channel,
    config: ExportConfig,
    runtime: tokio::runtime::Handle,
    resource: EncodedResource,
    /// Whether the last export failed, so that a collector that is away is logged once, and
    /// again when it is back.
    failing: Arc<AtomicBool>,
}

impl OtlpExporter {
    /// An exporter to `config.endpoint`; call it inside a tokio runtime (the sends run on it).
    /// It connects on its first export.
    pub(crate) fn new(config: ExportConfig) -> anyhow::Result<Self> {
        let endpoint = Endpoint::from_shared(config.endpoint.clone())
            .with_context(|| format!("{:?} is not a URL", config.endpoint))?;
        anyhow::ensure!(
            endpoint.uri().scheme_str() == Some("http"),
            "{:?}: spans are sent over plain http:// to a collector beside the service",
            config.endpoint
        );
        let channel = endpoint
            .connect_timeout(config.timeout)
            .timeout(config.timeout)
            .user_agent(concat!("videostore/", env!("CARGO_PKG_VERSION")))?
            .connect_lazy();
        Ok(Self {
            channel,
            config,
            runtime: tokio::runtime::Handle::try_current()
                .context("traces are exported from a tokio runtime")?,
            resource: EncodedResource::default(),
            failing: Arc::default(),
        })
    }
}

impl SpanExporter for OtlpExporter {
    fn export(&self, batch: Vec<SpanData>) -> impl Future<Output = OTelSdkResult> + Send {
        let body = Bytes::from(encode_request(&self.resource, &batch));
        let spans = batch.len();
        drop(batch);
        let mut request = tonic::Request::new(body);
        *request.metadata_mut() = MetadataMap::from_headers(self.config.headers.clone());
        request.set_timeout(self.config.timeout);
        let mut client = tonic::client::Grpc::new(self.channel.clone());
        let sent = self.runtime.spawn(async move {
            client.ready().await.map_err(|error| tonic::Status::unavailable(error.to_string()))?;
            let path = PathAndQuery::from_static(
                "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
            );
            client.unary(request, path, ExportCodec).await
        });
        let failing = Arc::clone(&self.failing);
        let endpoint = self.config.endpoint.clone();
        async move {
            let answer = match sent.await {
                Ok(answer) => answer,
                Err(error) => return Err(OTelSdkError::InternalFailure(error.to_string())),
            };
            let rejected = match &answer {
                Ok(response) => response
                    .get_ref()
                    .partial_success
                    .as_ref()
                    .filter(|partial| partial.rejected_spans > 0)
                    .map(|partial| {
                        format!(
                            "it rejected {} of {spans} spans: {}",
                            partial.rejected_spans, partial.error_message
                        )
                    }),
                Err(status) => Some(format!("{}: {}", status.code(), status.message())),
            };
            match rejected {
                Some(why) => {
                    if !failing.swap(true, Ordering::Relaxed) {
                        tracing::warn!(%endpoint, "spans are not reaching the collector: {why}");
                    }
                    Err(OTelSdkError::InternalFailure(why))
                }
                None => {
                    if failing.swap(false, Ordering::Relaxed) {
                        tracing::info!(%endpoint, "spans reach the collector again");
                    }
                    Ok(())
                }
            }
        }
    }

    fn shutdown_with_timeout(&self, _: Duration) -> OTelSdkResult {
        // Nothing is held back: every export is sent as it is made.
        Ok(())
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.resource = EncodedResource::new(resource);
    }
}

/// Sends a request already encoded, and decodes the collector's answer.
struct ExportCodec;

impl Codec for ExportCodec {
    type Encode = Bytes;
    type Decode = ExportTraceServiceResponse;
    type Encoder = BytesEncoder;
    type Decoder = SliceDecoder<ExportTraceServiceResponse>;

    fn encoder(&mut self) -> Self::Encoder {
        BytesEncoder
    }

    fn decoder(&mut self) -> Self::Decoder {
        SliceDecoder::default()
    }
}

/// Writes a message's bytes as they are.
struct BytesEncoder;

impl Encoder for BytesEncoder {
    type Item = Bytes;
    type Error = tonic::Status;

    fn encode(&mut self, item: Bytes, buf: &mut EncodeBuf<'_>) -> Result<(), tonic::Status> {
        bytes::BufMut::put(buf, item);
        Ok(())
    }
}

/// The resource every span of this process is sent with, encoded once: the body of an OTLP
/// `Resource` message, and the schema URL that goes beside it.
#[derive(Debug, Default)]
pub(crate) struct EncodedResource {
    body: Vec<u8>,
    schema_url: String,
}

impl EncodedResource {
    pub(crate) fn new(resource: &Resource) -> Self {
        let mut body = Vec::new();
        for (key, value) in resource.iter() {
            message(&mut body, 1, |kv| key_value(kv, key.as_str(), value));
        }
        Self { body, schema_url: resource.schema_url().unwrap_or_default().to_owned() }
    }
}

// The messages' field numbers, from opentelemetry/proto/{collector/trace,trace,common,resource}/v1.

/// An `ExportTraceServiceRequest` holding `spans` (one `ResourceSpans`, a `ScopeSpans` per
/// instrumentation scope in the order they first appear).
pub(crate) fn encode_request(resource: &EncodedResource, spans: &[SpanData]) -> Vec<u8> {
    let mut scopes: Vec<(&InstrumentationScope, Vec<u8>)> = Vec::new();
    for span in spans {
        let index = match scopes.iter().position(|(scope, _)| **scope == span.instrumentation_scope)
        {
            Some(index) => index,
            None => {
                scopes.push((&span.instrumentation_scope, Vec::new()));
                scopes.len() - 1
            }
        };
        // ScopeSpans.spans = 2
        message(&mut scopes[index].1, 2, |out| encode_span(out, span));
    }
    let size = scopes.iter().map(|(_, spans)| spans.len()).sum::<usize>();
    let mut request = Vec::with_capacity(size + resource.body.len() + 256);
    // ExportTraceServiceRequest.resource_spans = 1
    message(&mut request, 1, |resource_spans| {
        // ResourceSpans.resource = 1, .scope_spans = 2, .schema_url = 3
        message(resource_spans, 1, |out| out.extend_from_slice(&resource.body));
        for (scope, spans) in &scopes {
            message(resource_spans, 2, |scope_spans| {
                // ScopeSpans.scope = 1, .spans = 2, .schema_url = 3
                message(scope_spans, 1, |out| encode_scope(out, scope));
                scope_spans.extend_from_slice(spans);
                string(scope_spans, 3, scope.schema_url().unwrap_or_default());
            });
        }
        string(resource_spans, 3, &resource.schema_url);
    });
    request
}

/// An `InstrumentationScope`: name = 1, version = 2, attributes = 3.
fn encode_scope(out: &mut Vec<u8>, scope: &InstrumentationScope) {
    string(out, 1, scope.name());
    string(out, 2, scope.version().unwrap_or_default());
    attributes(out, 3, scope.attributes());
}

/// A `Span`.
fn encode_span(out: &mut Vec<u8>, span: &SpanData) {
    let context = &span.span_context;
    bytes_field(out, 1, &context.trace_id().to_bytes());
    bytes_field(out, 2, &context.span_id().to_bytes());
    trace_state(out, 3, context.trace_state());
    if span.parent_span_id != SpanId::INVALID {
        bytes_field(out, 4, &span.parent_span_id.to_bytes());
    }
    string(out, 5, &span.name);
    let kind = match span.span_kind {
        SpanKind::Internal => 1,
        SpanKind::Server => 2,
        SpanKind::Client => 3,
        SpanKind::Producer => 4,
        SpanKind::Consumer => 5,
    };
    varint(out, 6, kind);
    fixed64(out, 7, nanos(span.start_time));
    fixed64(out, 8, nanos(span.end_time));
    attributes(out, 9, &span.attributes);
    varint(out, 10, span.dropped_attributes_count.into());
    for event in &span.events.events {
        message(out, 11, |out| {
            // Event: time_unix_nano = 1, name = 2, attributes = 3, dropped_attributes_count = 4
            fixed64(out, 1, nanos(event.timestamp));
            string(out, 2, &event.name);
            attributes(out, 3, &event.attributes);
            varint(out, 4, event.dropped_attributes_count.into());
        });
    }
    varint(out, 12, span.events.dropped_count.into());
    for link in &span.links.links {
        message(out, 13, |out| {
            // Link: trace_id = 1, span_id = 2, trace_state = 3, attributes = 4,
            // dropped_attributes_count = 5, flags = 6
            let context = &link.span_context;
            bytes_field(out, 1, &context.trace_id().to_bytes());
            bytes_field(out, 2, &context.span_id().to_bytes());
            trace_state(out, 3, context.trace_state());
            attributes(out, 4, &link.attributes);
            varint(out, 5, link.dropped_attributes_count.into());
            fixed32(out, 6, flags(context, context.is_remote()));
        });
    }
    varint(out, 14, span.links.dropped_count.into());
    // Status: message = 2, code = 3 (always present, as the OTLP exporters send it)
    message(out, 15, |out| match &span.status {
        Status::Unset => {}
        Status::Ok => varint(out, 3, 1),
        Status::Error { description } => {
            string(out, 2, description);
            varint(out, 3, 2);
        }
    });
    fixed32(out, 16, flags(context, span.parent_span_is_remote));
}

/// A span's or link's `flags`: its W3C trace flags, and whether its parent (or the linked span)
/// is remote, with the bit that says that is known.
fn flags(context: &SpanContext, remote: bool) -> u32 {
    const HAS_IS_REMOTE: u32 = 0x100;
    const IS_REMOTE: u32 = 0x200;
    u32::from(context.trace_flags().to_u8()) | HAS_IS_REMOTE | if remote { IS_REMOTE } else { 0 }
}

fn nanos(time: SystemTime) -> u64 {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |since| u64::try_from(since.as_nanos()).unwrap_or(u64::MAX))
}

fn trace_state(out: &mut Vec<u8>, tag: u32, state: &TraceState) {
    if *state != TraceState::NONE {
        string(out, tag, &state.header());
    }
}

/// Each attribute as a `KeyValue` in field `tag`.
fn attributes<'a>(out: &mut Vec<u8>, tag: u32, attributes: impl IntoIterator<Item = &'a KeyValue>) {
    for attribute in attributes {
        message(out, tag, |out| key_value(out, attribute.key.as_str(), &attribute.value));
    }
}

/// A `KeyValue`: key = 1, value = 2 (an `AnyValue`, always present).
fn key_value(out: &mut Vec<u8>, key: &str, value: &Value) {
    string(out, 1, key);
    message(out, 2, |out| any_value(out, value));
}

/// An `AnyValue`'s one field (a `oneof`, written even when it holds a default: `0`, `false`,
/// `""`): string_value = 1, bool_value = 2, int_value = 3, double_value = 4, array_value = 5
/// (an `ArrayValue`: values = 1).
fn any_value(out: &mut Vec<u8>, value: &Value) {
    match value {
        Value::String(text) => any_string(out, text.as_str()),
        Value::Bool(value) => any_bool(out, *value),
        Value::I64(value) => any_i64(out, *value),
        Value::F64(value) => any_f64(out, *value),
        Value::Array(array) => message(out, 5, |out| match array {
            Array::Bool(values) => {
                values.iter().for_each(|value| message(out, 1, |out| any_bool(out, *value)));
            }
            Array::I64(values) => {
                values.iter().for_each(|value| message(out, 1, |out| any_i64(out, *value)));
            }
            Array::F64(values) => {
                values.iter().for_each(|value| message(out, 1, |out| any_f64(out, *value)));
            }
            Array::String(values) => values
                .iter()
                .for_each(|value| message(out, 1, |out| any_string(out, value.as_str()))),
            // A kind of array a later `opentelemetry` adds: sent empty rather than wrong.
            _ => {}
        }),
        // A kind of value a later `opentelemetry` adds: an empty `AnyValue`.
        _ => {}
    }
}

fn any_string(out: &mut Vec<u8>, text: &str) {
    encode_key(1, WireType::LengthDelimited, out);
    encode_varint(text.len() as u64, out);
    out.extend_from_slice(text.as_bytes());
}

fn any_bool(out: &mut Vec<u8>, value: bool) {
    encode_key(2, WireType::Varint, out);
    encode_varint(u64::from(value), out);
}

fn any_i64(out: &mut Vec<u8>, value: i64) {
    encode_key(3, WireType::Varint, out);
    // An int64 goes as its two's complement.
    encode_varint(value as u64, out);
}

fn any_f64(out: &mut Vec<u8>, value: f64) {
    encode_key(4, WireType::SixtyFourBit, out);
    out.extend_from_slice(&value.to_le_bytes());
}

/// A message in field `tag`, its body written by `body`: the length is only known once it is
/// written, so it goes in front of it then (moving the body up by that varint's few bytes).
fn message(out: &mut Vec<u8>, tag: u32, body: impl FnOnce(&mut Vec<u8>)) {
    encode_key(tag, WireType::LengthDelimited, out);
    let start = out.len();
    body(out);
    let mut length = [0_u8; 10];
    let mut free = &mut length[..];
    encode_varint((out.len() - start) as u64, &mut free);
    let used = 10 - free.len();
    out.splice(start..start, length[..used].iter().copied());
}

/// Bytes in field `tag`, left out when empty (proto3's default).
fn bytes_field(out: &mut Vec<u8>, tag: u32, bytes: &[u8]) {
    if !bytes.is_empty() {
        encode_key(tag, WireType::LengthDelimited, out);
        encode_varint(bytes.len() as u64, out);
        out.extend_from_slice(bytes);
    }
}

fn string(out: &mut Vec<u8>, tag: u32, text: &str) {
    bytes_field(out, tag, text.as_bytes());
}

/// A varint field, left out when 0.
fn varint(out: &mut Vec<u8>, tag: u32, value: u64) {
    if value != 0 {
        encode_key(tag, WireType::Varint, out);
        encode_varint(value, out);
    }
}

fn fixed64(out: &mut Vec<u8>, tag: u32, value: u64) {
    if value != 0 {
        encode_key(tag, WireType::SixtyFourBit, out);
        out.extend_from_slice(&value.to_le_bytes());
    }
}

fn fixed32(out: &mut Vec<u8>, tag: u32, value: u32) {
    if value != 0 {
        encode_key(tag, WireType::ThirtyTwoBit, out);
        out.extend_from_slice(&value.to_le_bytes());
    }
}

#[cfg(test)]
mod tests {
    use std::{
        borrow::Cow,
        sync::Mutex,
        time::{Duration, SystemTime},
    };

    use opentelemetry::{
        StringValue,
        trace::{Event, Link, SpanContext, SpanId, TraceFlags, TraceId},
    };
    use opentelemetry_proto::{
        tonic::collector::trace::v1::{
            ExportTracePartialSuccess, ExportTraceServiceRequest,
            trace_service_server::{TraceService, TraceServiceServer},
        },
        transform::{
            common::tonic::ResourceAttributesWithSchema,
            trace::tonic::group_spans_by_resource_and_scope,
        },
    };
    use opentelemetry_sdk::trace::{SpanEvents, SpanLinks};
    use prost::Message as _;

    use super::*;

    fn context(trace: u128, span: u64, sampled: bool, remote: bool, state: &str) -> SpanContext {
        let flags = if sampled { TraceFlags::SAMPLED } else { TraceFlags::default() };
        let state =
            if state.is_empty() { TraceState::NONE } else { state.parse().expect("a trace state") };
        SpanContext::new(TraceId::from(trace), SpanId::from(span), flags, remote, state)
    }

    fn at(nanos: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_nanos(nanos)
    }

    fn scope(name: &'static str) -> InstrumentationScope {
        InstrumentationScope::builder(name)
            .with_version("1.2.3")
            .with_schema_url("https://opentelemetry.io/schemas/1.30.0")
            .with_attributes([KeyValue::new("scope.kind", name)])
            .build()
    }

    /// Spans that use every field the encoder writes, each value's default among them, over two
    /// scopes taking turns.
    fn batch() -> Vec<SpanData> {
        let every_kind_of_value = vec![
            KeyValue::new("rpc.method", "videostore.catalogue.v1.CatalogueService/GetMovie"),
            KeyValue::new("empty", ""),
            KeyValue::new("owned", String::from("owned text")),
            KeyValue::new("yes", true),
            KeyValue::new("no", false),
            KeyValue::new("zero", 0_i64),
            KeyValue::new("negative", -42_i64),
            KeyValue::new("big", i64::MAX),
            KeyValue::new("half", 0.5_f64),
            KeyValue::new("float zero", 0.0_f64),
            KeyValue::new("bools", Value::Array(Array::Bool(vec![true, false]))),
            KeyValue::new("ints", Value::Array(Array::I64(vec![0, -1, 300]))),
            KeyValue::new("floats", Value::Array(Array::F64(vec![1.5, 0.0]))),
            KeyValue::new(
                "strings",
                Value::Array(Array::String(vec![StringValue::from("a"), StringValue::from("")])),
            ),
            KeyValue::new("no strings", Value::Array(Array::String(vec![]))),
        ];
        let mut events = SpanEvents::default();
        events.events = vec![
            Event::new("retried", at(1_764_500_000_150_000_000), vec![], 0),
            Event::new(
                "answered",
                at(1_764_500_000_200_000_000),
                vec![KeyValue::new("films", 2_i64)],
                1,
            ),
        ];
        events.dropped_count = 4;
        let mut links = SpanLinks::default();
        links.links = vec![
            Link::new(
                context(0xdef, 0x33, true, true, "k=v"),
                vec![KeyValue::new("caller", 2_i64)],
                5,
            ),
            Link::with_context(context(0x123, 0x44, false, false, "")),
        ];
        links.dropped_count = 6;
        let server = SpanData {
            span_context: context(0xabc, 0x11, true, false, "vendor=a,other=b"),
            parent_span_id: SpanId::from(0x22),
            parent_span_is_remote: true,
            span_kind: SpanKind::Server,
            name: Cow::Owned("videostore.catalogue.v1.CatalogueService/GetMovie".into()),
            start_time: at(1_764_500_000_123_456_789),
            end_time: at(1_764_500_000_223_456_789),
            attributes: every_kind_of_value,
            dropped_attributes_count: 3,
            events,
            links,
            status: Status::error("the store failed"),
            instrumentation_scope: scope("videostore"),
        };
        let bare = SpanData {
            span_context: context(0xabc, 0x55, false, false, ""),
            parent_span_id: SpanId::INVALID,
            parent_span_is_remote: false,
            span_kind: SpanKind::Internal,
            name: Cow::Borrowed("rent"),
            start_time: SystemTime::UNIX_EPOCH,
            end_time: at(1),
            attributes: vec![],
            dropped_attributes_count: 0,
            events: SpanEvents::default(),
            links: SpanLinks::default(),
            status: Status::Unset,
            instrumentation_scope: scope("other"),
        };
        let client = SpanData {
            span_context: context(0xabc, 0x66, true, false, ""),
            parent_span_id: SpanId::from(0x11),
            span_kind: SpanKind::Client,
            status: Status::Ok,
            ..bare.clone()
        };
        let producer = SpanData {
            span_kind: SpanKind::Producer,
            instrumentation_scope: InstrumentationScope::builder("bare").build(),
            ..bare.clone()
        };
        let consumer = SpanData { span_kind: SpanKind::Consumer, ..bare.clone() };
        vec![server, bare, client, producer, consumer]
    }

    /// One resource for the whole test run: its attributes come out in the order of its hash
    /// map, which differs from one `Resource` to the next.
    fn resource() -> &'static Resource {
        static RESOURCE: std::sync::OnceLock<Resource> = std::sync::OnceLock::new();
        RESOURCE.get_or_init(|| {
            Resource::builder_empty()
                .with_schema_url(
                    [
                        KeyValue::new("service.name", "catalogue"),
                        KeyValue::new("service.instance.id", "catalogue-0"),
                        KeyValue::new("host.cpus", 2_i64),
                    ],
                    "https://opentelemetry.io/schemas/1.30.0",
                )
                .build()
        })
    }

    /// What opentelemetry-otlp's exporter sends for `spans`: opentelemetry-proto's conversion.
    fn their_request(spans: Vec<SpanData>) -> ExportTraceServiceRequest {
        let resource = ResourceAttributesWithSchema::from(resource());
        ExportTraceServiceRequest {
            resource_spans: group_spans_by_resource_and_scope(spans, &resource),
        }
    }

    #[test]
    fn the_bytes_decode_to_what_opentelemetry_proto_makes() {
        let ours = encode_request(&EncodedResource::new(resource()), &batch());
        let decoded = ExportTraceServiceRequest::decode(ours.as_slice()).expect("our bytes decode");
        let theirs = their_request(batch());
        // The batch did reach every part of the request.
        let scopes = &theirs.resource_spans[0].scope_spans;
        assert_eq!(scopes.len(), 3);
        assert_eq!(scopes.iter().map(|scope| scope.spans.len()).sum::<usize>(), 5);
        assert_eq!(decoded, theirs);
        // And the bytes are what prost writes for it, field for field (no default written).
        assert_eq!(ours.len(), theirs.encoded_len());
    }

    #[test]
    fn no_spans_make_an_empty_resource_spans() {
        let ours = encode_request(&EncodedResource::new(resource()), &[]);
        let decoded = ExportTraceServiceRequest::decode(ours.as_slice()).unwrap();
        assert_eq!(decoded, their_request(vec![]));
    }

    #[test]
    fn headers_are_key_value_pairs_with_percent_encoded_values() {
        let headers =
            parse_headers(" authorization=Bearer%20s3cret%3D%3D , x-tenant = shop,,").unwrap();
        assert_eq!(headers.len(), 2);
        assert_eq!(headers["authorization"], "Bearer s3cret==");
        assert_eq!(headers["x-tenant"], "shop");
        assert!(parse_headers("").unwrap().is_empty());
        for (wrong, why) in [
            ("x-tenant=shop,Bearer s3cret", "header 2 has no '=' (key=value)"),
            ("bad header=x", "\"bad header\" is not a header name"),
            ("x=%ff", "the value of x is not UTF-8"),
            ("x=line%0Abreak", "the value of x is not a header value"),
        ] {
            let error = parse_headers(wrong).expect_err(wrong).to_string();
            assert_eq!(error, why);
            assert!(!error.contains("s3cret"), "a header's value is never shown: {error}");
        }
    }

    #[test]
    fn a_time_limit_is_a_positive_number_of_milliseconds() {
        assert_eq!(parse_timeout(" 2500 "), Some(Duration::from_millis(2500)));
        for wrong in ["0", "-1", "2.5", "10s", ""] {
            assert_eq!(parse_timeout(wrong), None, "{wrong:?}");
        }
    }

    #[test]
    fn only_a_plain_http_endpoint_is_taken() {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let _inside = runtime.enter();
        let config = |endpoint: &str| ExportConfig {
            endpoint: endpoint.into(),
            headers: HeaderMap::new(),
            timeout: DEFAULT_TIMEOUT,
        };
        assert!(OtlpExporter::new(config("http://127.0.0.1:4317")).is_ok());
        let https = OtlpExporter::new(config("https://collector:4317")).unwrap_err();
        assert!(https.to_string().contains("plain http://"), "{https}");
        assert!(OtlpExporter::new(config("not a url")).is_err());
    }

    /// A collector that keeps each request and its metadata, and rejects `reject` spans of each.
    #[derive(Clone, Default)]
    struct Collector {
        received: Arc<Mutex<Vec<(MetadataMap, ExportTraceServiceRequest)>>>,
        reject: i64,
    }

    #[tonic::async_trait]
    impl TraceService for Collector {
        async fn export(
            &self,
            request: tonic::Request<ExportTraceServiceRequest>,
        ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
            let (metadata, _, request) = request.into_parts();
            self.received.lock().unwrap().push((metadata, request));
            let partial_success = (self.reject > 0).then(|| ExportTracePartialSuccess {
                rejected_spans: self.reject,
                error_message: "too old".into(),
            });
            Ok(tonic::Response::new(ExportTraceServiceResponse { partial_success }))
        }
    }

    /// Serves `collector` on `addr` (port 0: a free one) until the test ends; its URL.
    async fn start_on(addr: std::net::SocketAddr, collector: Collector) -> String {
        let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(TraceServiceServer::new(collector))
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
        );
        format!("http://{addr}")
    }

    async fn start(collector: Collector) -> String {
        start_on(([127, 0, 0, 1], 0).into(), collector).await
    }

    fn exporter(endpoint: String, headers: &str) -> OtlpExporter {
        let headers = parse_headers(headers).unwrap();
        let mut exporter =
            OtlpExporter::new(ExportConfig { endpoint, headers, timeout: Duration::from_secs(5) })
                .unwrap();
        exporter.set_resource(resource());
        exporter
    }

    #[tokio::test]
    async fn a_batch_reaches_the_collector_with_the_configured_headers() {
        let collector = Collector::default();
        let endpoint = start(collector.clone()).await;
        let exporter = exporter(endpoint, "authorization=Bearer%20s3cret,x-tenant=shop");
        exporter.export(batch()).await.expect("the collector took the batch");
        exporter.export(batch()[..1].to_vec()).await.expect("and the next");
        let received = collector.received.lock().unwrap();
        assert_eq!(received.len(), 2);
        let (metadata, request) = &received[0];
        assert_eq!(request, &their_request(batch()));
        assert_eq!(received[1].1, their_request(batch()[..1].to_vec()));
        assert_eq!(metadata.get("authorization").unwrap(), "Bearer s3cret");
        assert_eq!(metadata.get("x-tenant").unwrap(), "shop");
        assert!(metadata.get("user-agent").unwrap().to_str().unwrap().starts_with("videostore/"));
        // The time limit travels with each call.
        assert!(metadata.get("grpc-timeout").is_some());
    }

    #[tokio::test]
    async fn spans_the_collector_rejects_fail_the_export() {
        let collector = Collector { reject: 2, ..Collector::default() };
        let exporter = exporter(start(collector).await, "");
        let error = exporter.export(batch()).await.unwrap_err();
        assert!(error.to_string().contains("rejected 2 of 5 spans: too old"), "{error}");
    }

    #[tokio::test]
    async fn an_export_to_no_collector_fails_and_the_next_one_to_a_collector_succeeds() {
        // A port nothing listens on (bound, then let go).
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let exporter = exporter(format!("http://{addr}"), "");
        let error = exporter.export(batch()).await.unwrap_err();
        assert!(error.to_string().contains("unavailable: tcp connect error"), "{error}");
        assert!(exporter.failing.load(Ordering::Relaxed));
        // The collector comes up on that port: the exporter reconnects.
        let collector = Collector::default();
        start_on(addr, collector.clone()).await;
        exporter.export(batch()).await.expect("sent once the collector is there");
        assert!(!exporter.failing.load(Ordering::Relaxed));
        assert_eq!(collector.received.lock().unwrap().len(), 1);
    }
}
