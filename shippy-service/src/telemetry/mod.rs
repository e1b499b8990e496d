//! Logs and traces: the `tracing` subscriber every binary installs first.
//!
//! Logs are human-readable by default, one JSON object per line with
//! `LOG_FORMAT=json` (each line lists its enclosing spans; the request's
//! span carries `trace_id` and `span_id` when traces are exported). With `OTEL_EXPORTER_OTLP_ENDPOINT` set, spans are
//! also exported over OTLP/gRPC (Jaeger accepts it natively) with
//! `service.name`, `service.version` and `service.instance.id`; unset, no
//! OpenTelemetry layer is installed at all, so tracing costs nothing extra.
//! [`propagation`] carries W3C trace context through gRPC metadata and NATS
//! headers.

pub mod propagation;

use std::time::Duration;

use opentelemetry::{KeyValue, global, trace::TracerProvider as _};
use opentelemetry_otlp::{SpanExporter, WithExportConfig as _};
use opentelemetry_sdk::{Resource, propagation::TraceContextPropagator, trace::SdkTracerProvider};
use tracing_subscriber::{EnvFilter, Layer, layer::SubscriberExt, util::SubscriberInitExt};

pub use self::propagation::continue_trace;
use crate::settings::{LogFormat, TelemetryArgs};

/// Which spans are exported: ours at info and above, not the transport's.
const TRACE_FILTER: &str =
    "info,h2=off,hyper=off,hyper_util=off,tower=off,tonic=off,async_nats=off,sqlx=off,mongodb=off";

/// The subscriber could not be installed.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// `RUST_LOG` does not parse as a filter.
    #[error("RUST_LOG / --log-filter is not a valid filter")]
    Filter(#[from] tracing_subscriber::filter::ParseError),
    /// A global subscriber is installed already.
    #[error("a tracing subscriber is installed already")]
    Init(#[from] tracing_subscriber::util::TryInitError),
    /// The OTLP exporter cannot be built from `OTEL_EXPORTER_OTLP_ENDPOINT`.
    #[error("OTEL_EXPORTER_OTLP_ENDPOINT is not usable (expected e.g. http://127.0.0.1:4317)")]
    Exporter(#[from] opentelemetry_otlp::ExporterBuildError),
}

/// Keeps trace export running; [`Telemetry::shutdown`] flushes what is left.
#[derive(Debug)]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Sends the spans still buffered and stops exporting. Call it once the
    /// service has stopped, inside the tokio runtime.
    pub async fn shutdown(self) {
        let Some(provider) = self.provider else {
            return;
        };
        // The exporter runs on tokio while shutdown() blocks: off the runtime.
        match tokio::task::spawn_blocking(move || provider.shutdown()).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => eprintln!("trace export did not finish: {error}"),
            Err(error) => eprintln!("trace export did not finish: {error}"),
        }
    }
}

/// Installs the global subscriber for `service` (the default
/// `OTEL_SERVICE_NAME`). Must run inside a tokio runtime.
pub fn init(args: &TelemetryArgs, service: &'static str) -> Result<Telemetry, TelemetryError> {
    // RUST_LOG filters log lines only; exported spans have their own filter,
    // so quiet logs still give whole traces.
    let filter = EnvFilter::try_new(&args.log_filter)?;
    let logs = match args.log_format {
        LogFormat::Pretty => tracing_subscriber::fmt::layer().with_filter(filter).boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            // Every enclosing span, so a line carries its request's trace_id
            // and span_id (fields of the RPC span).
            .with_current_span(false)
            .with_span_list(true)
            .with_filter(filter)
            .boxed(),
    };
    let provider = match &args.otel_endpoint {
        Some(endpoint) => Some(provider(
            endpoint,
            args.otel_service_name.as_deref().unwrap_or(service),
        )?),
        None => None,
    };
    let traces = provider.as_ref().map(|provider| {
        global::set_text_map_propagator(TraceContextPropagator::new());
        tracing_opentelemetry::layer()
            .with_tracer(provider.tracer(service))
            .with_filter(EnvFilter::new(TRACE_FILTER))
    });
    tracing_subscriber::registry()
        .with(logs)
        .with(traces)
        .try_init()?;
    if let Some(endpoint) = &args.otel_endpoint {
        tracing::info!(%endpoint, "exporting traces over OTLP");
    }
    Ok(Telemetry { provider })
}

fn provider(endpoint: &str, service: &str) -> Result<SdkTracerProvider, TelemetryError> {
    let exporter = SpanExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint)
        .with_timeout(Duration::from_secs(3))
        .build()?;
    let resource = Resource::builder()
        .with_service_name(service.to_owned())
        .with_attributes([
            KeyValue::new("service.version", env!("CARGO_PKG_VERSION")),
            KeyValue::new("service.instance.id", uuid::Uuid::new_v4().to_string()),
        ])
        .build();
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource)
        .build())
}
