//! Logs and traces.
//!
//! Logs: `tracing`, filtered by `RUST_LOG` (default `info`); `LOG_FORMAT=json` switches to one
//! JSON object per line for log collectors. A line written inside a call that has a trace
//! carries its `trace_id` and `span_id` (see [`crate::trace`]); `RUST_LOG=videostore::rpc=debug`
//! logs every call's answer with its method and code.
//!
//! Traces: OpenTelemetry spans, exported over OTLP/gRPC (by `otlp`) when
//! `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set, configured by
//! the standard variables: `OTEL_EXPORTER_OTLP_HEADERS`, `OTEL_EXPORTER_OTLP_TIMEOUT`,
//! `OTEL_SERVICE_NAME` (default: the service's own name), `OTEL_RESOURCE_ATTRIBUTES`,
//! `OTEL_TRACES_SAMPLER` / `OTEL_TRACES_SAMPLER_ARG` (default `parentbased_always_on`),
//! `OTEL_BSP_*` for batching, and `OTEL_SDK_DISABLED=true` to turn export off. Without an
//! endpoint no span is made (see [`crate::trace`]).
//!
//! The log filter does not apply to traces: `RUST_LOG=warn` still exports every call's span.

use std::io::IsTerminal as _;

use anyhow::Context as _;
use opentelemetry_sdk::{Resource, trace::SdkTracerProvider};
use tracing::{
    Level,
    field::{Field, Visit},
};
use tracing_log::NormalizeEvent as _;
use tracing_subscriber::{
    EnvFilter, Layer,
    fmt::{
        self, FormatEvent, FormatFields,
        format::Writer,
        time::{FormatTime, SystemTime},
    },
    prelude::*,
    registry::LookupSpan,
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

/// Installs the global subscriber (logs), and the span exporter when an OTLP endpoint is
/// configured. Safe to call more than once (later calls install nothing), which tests that
/// start several services in one process rely on. Call it inside the runtime (the exporter
/// runs on it).
pub fn init(service: &str) -> Telemetry {
    let json = std::env::var("LOG_FORMAT").is_ok_and(|format| format == "json");
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let logs = if json || !std::io::stdout().is_terminal() {
        log_layer(json, filter, std::io::stdout)
    } else {
        // Coloured levels for a person at a terminal.
        fmt::layer().event_format(HumanLine).with_filter(filter).boxed()
    };
    let result = tracing_subscriber::registry().with(logs).try_init();
    if result.is_err() {
        return Telemetry::default();
    }
    let provider = match provider_from_env(service) {
        Ok(provider) => provider,
        Err(error) => {
            tracing::error!("traces are not exported: {error:#}");
            None
        }
    };
    if let Some(provider) = &provider {
        crate::trace::export_from_process(provider);
        if let Some(endpoint) = endpoint_from_env() {
            tracing::info!(service, %endpoint, "exporting traces over OTLP");
        }
    }
    Telemetry { provider }
}

/// The log lines, as `filter` lets through, written to `writer`: human-readable (without
/// colours), or JSON (one object per line: `timestamp`, `level`, `target`, `fields`). A line written inside a call
/// that has a trace carries its `trace_id` and `span_id` (see [`crate::trace`]).
pub fn log_layer<S, W>(json: bool, filter: EnvFilter, writer: W) -> Box<dyn Layer<S> + Send + Sync>
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
    W: for<'w> fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    if json {
        fmt::layer().event_format(JsonLine).with_writer(writer).with_filter(filter).boxed()
    } else {
        fmt::layer()
            .event_format(HumanLine)
            .with_ansi(false)
            .with_writer(writer)
            .with_filter(filter)
            .boxed()
    }
}

/// `2026-11-30T09:32:34.123456Z  WARN stock too slow budget_ms=40 trace_id=… span_id=…`: the
/// time, the level, the `tracing` spans the line was written in (if any), its fields, its
/// trace.
struct HumanLine;

impl<S, N> FormatEvent<S, N> for HumanLine
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &fmt::FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        SystemTime.format_time(&mut writer)?;
        let level = *event.metadata().level();
        if writer.has_ansi_escapes() {
            let colour = match level {
                Level::ERROR => 31,
                Level::WARN => 33,
                Level::INFO => 32,
                Level::DEBUG => 34,
                Level::TRACE => 35,
            };
            write!(writer, " \x1b[{colour}m{level:>5}\x1b[0m ")?;
        } else {
            write!(writer, " {level:>5} ")?;
        }
        for span in ctx.event_scope().into_iter().flat_map(|scope| scope.from_root()) {
            write!(writer, "{}", span.name())?;
            if let Some(fields) = span.extensions().get::<fmt::FormattedFields<N>>()
                && !fields.is_empty()
            {
                write!(writer, "{{{fields}}}")?;
            }
            writer.write_str(": ")?;
        }
        ctx.field_format().format_fields(writer.by_ref(), event)?;
        if let Some((trace_id, span_id)) = crate::trace::log_ids() {
            write!(writer, " trace_id={trace_id}")?;
            if let Some(span_id) = span_id {
                write!(writer, " span_id={span_id}")?;
            }
        }
        writeln!(writer)
    }
}

/// One JSON object per line: `timestamp`, `level`, `target`, `fields` (with `message`), and
/// `trace_id` and `span_id` inside a traced call.
struct JsonLine;

impl<S, N> FormatEvent<S, N> for JsonLine
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _: &fmt::FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        let mut timestamp = String::new();
        SystemTime.format_time(&mut Writer::new(&mut timestamp))?;
        let mut fields = JsonFields::default();
        event.record(&mut fields);
        // A record of the `log` crate (rustls, tokio-postgres) names its own target.
        let normalized = event.normalized_metadata();
        let metadata = normalized.as_ref().unwrap_or_else(|| event.metadata());
        let mut line = serde_json::Map::new();
        line.insert("timestamp".into(), timestamp.into());
        line.insert("level".into(), metadata.level().as_str().into());
        line.insert("target".into(), metadata.target().into());
        line.insert("fields".into(), fields.0.into());
        if let Some((trace_id, span_id)) = crate::trace::log_ids() {
            line.insert("trace_id".into(), trace_id.to_string().into());
            if let Some(span_id) = span_id {
                line.insert("span_id".into(), span_id.to_string().into());
            }
        }
        writeln!(writer, "{}", serde_json::Value::Object(line))
    }
}

/// An event's fields as a JSON object, numbers and booleans as such; without the `log.*`
/// fields a record of the `log` crate carries (its target is the line's).
#[derive(Default)]
struct JsonFields(serde_json::Map<String, serde_json::Value>);

impl JsonFields {
    fn insert(&mut self, field: &Field, value: serde_json::Value) {
        if !field.name().starts_with("log.") {
            self.0.insert(field.name().into(), value);
        }
    }
}

impl Visit for JsonFields {
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.insert(field, value.into());
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.insert(field, value.into());
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.insert(field, value.into());
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.insert(field, value.into());
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.insert(field, value.into());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.insert(field, format!("{value:?}").into());
    }
}

/// The configured OTLP endpoint, if any (the traces' own variable first).
fn endpoint_from_env() -> Option<String> {
    if std::env::var("OTEL_SDK_DISABLED")
        .is_ok_and(|disabled| disabled.eq_ignore_ascii_case("true"))
    {
        return None;
    }
    crate::otlp::var(["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"])
        .map(|(_, endpoint)| endpoint)
}

fn provider_from_env(service: &str) -> anyhow::Result<Option<SdkTracerProvider>> {
    endpoint_from_env().map(|endpoint| otlp_provider(service, &endpoint)).transpose()
}

/// A tracer provider exporting over OTLP/gRPC to `endpoint` (`http://host:4317`), in batches,
/// with the headers, time limit, sampler and resource the standard variables configure (see
/// `otlp`), named `service` unless `OTEL_SERVICE_NAME` (or `service.name` in
/// `OTEL_RESOURCE_ATTRIBUTES`) says otherwise. Call it inside a tokio runtime: exports run on it.
pub fn otlp_provider(service: &str, endpoint: &str) -> anyhow::Result<SdkTracerProvider> {
    let config = crate::otlp::ExportConfig::from_env(endpoint)
        .with_context(|| format!("the OTLP endpoint {endpoint:?}"))?;
    let exporter = crate::otlp::OtlpExporter::new(config)
        .with_context(|| format!("the OTLP endpoint {endpoint:?}"))?;
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

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use http::HeaderMap;

    use super::*;

    /// A log writer that keeps what it is given.
    #[derive(Clone, Default)]
    struct Lines(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Lines {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Lines {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
        }
    }

    /// Logs a line outside any call and one inside a traced call, in `json` or not; the lines
    /// and the call's trace and span ids.
    fn outside_and_inside_a_call(json: bool) -> (String, String, String) {
        let lines = Lines::default();
        let writer = lines.clone();
        let _logs =
            tracing::subscriber::set_default(tracing_subscriber::registry().with(log_layer(
                json,
                EnvFilter::new("info"),
                move || writer.clone(),
            )));
        let provider = SdkTracerProvider::builder().build();
        let _export = crate::trace::export_on_this_thread(&provider);
        tracing::info!(films = 3, "outside");
        let call = crate::trace::server_call("a.B/C", &HeaderMap::new()).unwrap();
        let _inside = call.attach();
        tracing::warn!(late = true, "inside");
        let (trace_id, span_id) = crate::trace::log_ids().unwrap();
        (lines.text(), trace_id.to_string(), span_id.unwrap().to_string())
    }

    #[test]
    fn a_json_line_inside_a_call_carries_its_trace_and_span_ids() {
        let (text, trace_id, span_id) = outside_and_inside_a_call(true);
        let lines: Vec<serde_json::Value> =
            text.lines().map(|line| serde_json::from_str(line).unwrap()).collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert_eq!(lines[0]["level"], "INFO");
        assert_eq!(lines[0]["fields"], serde_json::json!({"message": "outside", "films": 3}));
        assert!(lines[0].get("trace_id").is_none(), "no call, no trace: {text}");
        assert_eq!(lines[1]["level"], "WARN");
        assert_eq!(lines[1]["fields"], serde_json::json!({"message": "inside", "late": true}));
        assert_eq!(lines[1]["trace_id"], trace_id.as_str());
        assert_eq!(lines[1]["span_id"], span_id.as_str());
        assert!(lines[1]["timestamp"].as_str().is_some_and(|time| time.ends_with('Z')));
    }

    #[test]
    fn a_json_line_of_the_log_crate_names_its_own_target() {
        let lines = Lines::default();
        let writer = lines.clone();
        let _logs =
            tracing::subscriber::set_default(tracing_subscriber::registry().with(log_layer(
                true,
                EnvFilter::new("info"),
                move || writer.clone(),
            )));
        // As rustls and tokio-postgres log, through the `log` crate.
        let record = log::Record::builder()
            .args(format_args!("peer closed connection"))
            .level(log::Level::Warn)
            .target("rustls::conn")
            .module_path(Some("rustls::conn"))
            .build();
        tracing_log::format_trace(&record).unwrap();
        let line: serde_json::Value = serde_json::from_str(lines.text().trim()).unwrap();
        assert_eq!(line["target"], "rustls::conn");
        assert_eq!(line["level"], "WARN");
        assert_eq!(line["fields"], serde_json::json!({"message": "peer closed connection"}));
    }

    #[test]
    fn a_human_line_inside_a_call_ends_with_its_trace_and_span_ids() {
        let (text, trace_id, span_id) = outside_and_inside_a_call(false);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert!(lines[0].ends_with(" INFO outside films=3"), "{text}");
        assert!(
            lines[1].ends_with(&format!(
                " WARN inside late=true trace_id={trace_id} span_id={span_id}"
            )),
            "{text}"
        );
    }
}
