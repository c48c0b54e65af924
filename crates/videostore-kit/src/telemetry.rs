//! Logs and traces.
//!
//! Logs: `tracing`, filtered by `RUST_LOG` (default `info`); `LOG_FORMAT=json` switches to one
//! JSON object per line for log collectors. A line written inside a call carries the call's
//! span: its method and, when there is a trace, `trace_id` and `span_id` (see [`crate::trace`]).
//!
//! Traces: OpenTelemetry spans, exported over OTLP/gRPC when `OTEL_EXPORTER_OTLP_ENDPOINT` (or
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set, configured by the standard variables:
//! `OTEL_SERVICE_NAME` (default: the service's own name), `OTEL_RESOURCE_ATTRIBUTES`,
//! `OTEL_TRACES_SAMPLER` / `OTEL_TRACES_SAMPLER_ARG` (default `parentbased_always_on`),
//! `OTEL_BSP_*` for batching, and `OTEL_SDK_DISABLED=true` to turn export off. Without an
//! endpoint no OpenTelemetry layer is installed, and a call gets a span only when its caller
//! sent a `traceparent` or answers are logged (see [`crate::trace`]).
//!
//! The log filter does not apply to traces: `RUST_LOG=warn` still exports every call's span.

use std::sync::Arc;

use anyhow::Context as _;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::{
    Resource,
    error::{OTelSdkError, OTelSdkResult},
    trace::{SdkTracerProvider, SpanData, SpanExporter},
};
use tracing_subscriber::{
    EnvFilter, Layer, filter::LevelFilter, fmt, prelude::*, registry::LookupSpan,
};

/// Keeps the trace exporter running; [`Telemetry::shutdown`] sends what is still queued.
#[derive(Debug, Default)]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Whether spans are exported.
    pub fn exporting(&self) -> bool {
        self.provider.is_some()
    }

    /// Exports the spans still queued (waiting at most a few seconds for the collector).
    pub async fn shutdown(self) {
        if let Some(provider) = self.provider {
            // Blocks until the exporter thread has sent its last batch; that send runs on
            // this runtime, so wait off it.
            let done = tokio::task::spawn_blocking(move || provider.shutdown()).await;
            if let Ok(Err(error)) = done {
                tracing::warn!(%error, "the last spans were not exported");
            }
        }
    }
}

/// Installs the global subscriber: logs, and traces when an OTLP endpoint is configured.
/// Safe to call more than once (later calls install nothing), which tests that start several
/// services in one process rely on. Call it inside the runtime (the exporter runs on it).
pub fn init(service: &str) -> Telemetry {
    let provider = match provider_from_env(service) {
        Ok(provider) => provider,
        Err(error) => {
            // Logging is not up yet.
            eprintln!("traces are not exported: {error:#}");
            None
        }
    };
    let json = std::env::var("LOG_FORMAT").is_ok_and(|format| format == "json");
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let result = tracing_subscriber::registry()
        .with(log_layer(json, filter, std::io::stdout))
        .with(provider.as_ref().map(span_layer))
        .try_init();
    if result.is_err() {
        return Telemetry::default();
    }
    if let Some(endpoint) = endpoint_from_env() {
        tracing::info!(service, %endpoint, "exporting traces over OTLP");
    }
    Telemetry { provider }
}

/// The log lines, as `filter` lets through, written to `writer`: human-readable, or JSON.
/// Either way a line carries the spans it was written in, outermost first, with their fields:
/// the call's method, `trace_id` and `span_id` (in JSON, under `spans`).
pub fn log_layer<S, W>(json: bool, filter: EnvFilter, writer: W) -> Box<dyn Layer<S> + Send + Sync>
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
    W: for<'w> fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    if json {
        fmt::layer()
            .json()
            .with_current_span(false)
            .with_span_list(true)
            .with_writer(writer)
            .with_filter(filter)
            .boxed()
    } else {
        fmt::layer().with_target(false).with_writer(writer).with_filter(filter).boxed()
    }
}

/// The layer that turns `tracing` spans (INFO and above, whatever `RUST_LOG` says) into
/// OpenTelemetry spans of `provider`.
pub fn span_layer<S>(provider: &SdkTracerProvider) -> impl Layer<S> + Send + Sync + use<S>
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a> + Send + Sync,
{
    tracing_opentelemetry::layer()
        .with_tracer(provider.tracer("videostore"))
        // Semantic-convention attributes only: no source locations, threads or targets.
        .with_location(false)
        .with_threads(false)
        .with_target(false)
        .with_level(false)
        .with_tracked_inactivity(false)
        .with_filter(Exported)
}

/// The exporting layer's filter: spans and events at INFO and above. Also how a call finds out
/// whether its spans are exported ([`exported`]): the subscriber hands it out when asked for
/// its type.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Exported;

impl<S> tracing_subscriber::layer::Filter<S> for Exported {
    fn enabled(
        &self,
        metadata: &tracing::Metadata<'_>,
        _: &tracing_subscriber::layer::Context<'_, S>,
    ) -> bool {
        *metadata.level() <= tracing::Level::INFO
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        Some(LevelFilter::INFO)
    }
}

/// Whether the current subscriber exports spans (has [`span_layer`]).
pub(crate) fn exported() -> bool {
    tracing::dispatcher::get_default(|dispatch| dispatch.downcast_ref::<Exported>().is_some())
}

/// The configured OTLP endpoint, if any (the traces' own variable first).
fn endpoint_from_env() -> Option<String> {
    if std::env::var("OTEL_SDK_DISABLED")
        .is_ok_and(|disabled| disabled.eq_ignore_ascii_case("true"))
    {
        return None;
    }
    ["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"]
        .into_iter()
        .find_map(|name| std::env::var(name).ok().filter(|value| !value.trim().is_empty()))
}

fn provider_from_env(service: &str) -> anyhow::Result<Option<SdkTracerProvider>> {
    endpoint_from_env().map(|endpoint| otlp_provider(service, &endpoint)).transpose()
}

/// A tracer provider exporting over OTLP/gRPC to `endpoint` (`http://host:4317`), in batches,
/// with the sampler and resource the standard variables configure, named `service` unless
/// `OTEL_SERVICE_NAME` (or `service.name` in `OTEL_RESOURCE_ATTRIBUTES`) says otherwise.
/// Call it inside a tokio runtime: exports run on it.
pub fn otlp_provider(service: &str, endpoint: &str) -> anyhow::Result<SdkTracerProvider> {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint)
        .build()
        .with_context(|| format!("the OTLP endpoint {endpoint:?}"))?;
    let exporter = OnRuntime {
        inner: Arc::new(exporter),
        runtime: tokio::runtime::Handle::try_current()
            .context("traces are exported from a tokio runtime")?,
    };
    let detected = Resource::builder().build();
    let unnamed = detected
        .get(&opentelemetry::Key::from_static_str("service.name"))
        .is_none_or(|name| name.as_str().starts_with("unknown_service"));
    let resource = if unnamed {
        Resource::builder().with_service_name(service.to_owned()).build()
    } else {
        detected
    };
    Ok(SdkTracerProvider::builder().with_resource(resource).with_batch_exporter(exporter).build())
}

/// An exporter whose sends run on a tokio runtime.
///
/// The SDK's batch processor exports from a thread of its own, outside any runtime, and the
/// tonic exporter's connection needs one ("there is no reactor running"). Each batch is sent
/// by a task on the service's runtime; the processor's thread waits for it.
#[derive(Debug)]
struct OnRuntime {
    inner: Arc<opentelemetry_otlp::SpanExporter>,
    runtime: tokio::runtime::Handle,
}

impl SpanExporter for OnRuntime {
    fn export(&self, batch: Vec<SpanData>) -> impl Future<Output = OTelSdkResult> + Send {
        let inner = Arc::clone(&self.inner);
        let sent = self.runtime.spawn(async move { inner.export(batch).await });
        async move {
            sent.await.unwrap_or_else(|error| Err(OTelSdkError::InternalFailure(error.to_string())))
        }
    }

    fn shutdown_with_timeout(&self, timeout: std::time::Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        // The processor sets the resource once, before the first export: the exporter is not
        // shared yet.
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.set_resource(resource);
        }
    }
}
