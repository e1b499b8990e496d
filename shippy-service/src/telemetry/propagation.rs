//! W3C trace context (`traceparent`, `tracestate`) across process
//! boundaries: gRPC metadata (a client interceptor, the server layer) and
//! any string map (NATS headers, an outbox row).
//!
//! Without a trace exporter installed there is no context to carry, and
//! these functions do nothing.

use std::collections::HashMap;

use opentelemetry::{
    Context, global,
    propagation::{Extractor, Injector},
    trace::TraceContextExt as _,
};
use tonic::metadata::{MetadataKey, MetadataMap, MetadataValue};
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

struct MetadataInjector<'a>(&'a mut MetadataMap);

impl Injector for MetadataInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(key), Ok(value)) = (
            MetadataKey::from_bytes(key.as_bytes()),
            MetadataValue::try_from(value),
        ) {
            self.0.insert(key, value);
        }
    }
}

struct HeaderExtractor<'a>(&'a http::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|value| value.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|key| key.as_str()).collect()
    }
}

struct MapCarrier<'a>(&'a mut HashMap<String, String>);

impl Injector for MapCarrier<'_> {
    fn set(&mut self, key: &str, value: String) {
        self.0.insert(key.to_owned(), value);
    }
}

struct MapExtractor<'a>(&'a HashMap<String, String>);

impl Extractor for MapExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(String::as_str).collect()
    }
}

/// Makes `span` (not entered yet) a child of the trace the incoming
/// `headers` carry, and records its `trace_id` and `span_id` fields (if it
/// has them) for log correlation.
pub fn continue_trace(span: &Span, headers: &http::HeaderMap) {
    let parent =
        global::get_text_map_propagator(|propagator| propagator.extract(&HeaderExtractor(headers)));
    // Fails only when no OpenTelemetry layer is installed: nothing to continue.
    let _ = span.set_parent(parent);
    record_ids(span);
}

/// Makes `span` a child of the trace in `carrier` (e.g. from NATS headers).
pub fn continue_trace_from_map(span: &Span, carrier: &HashMap<String, String>) {
    let parent =
        global::get_text_map_propagator(|propagator| propagator.extract(&MapExtractor(carrier)));
    let _ = span.set_parent(parent);
    record_ids(span);
}

fn record_ids(span: &Span) {
    let context = span.context();
    let span_context = context.span().span_context().clone();
    if span_context.is_valid() {
        span.record("trace_id", tracing::field::display(span_context.trace_id()));
        span.record("span_id", tracing::field::display(span_context.span_id()));
    }
}

/// The current span's trace context as a string map (empty without tracing).
pub fn current_context_map() -> HashMap<String, String> {
    let context = Span::current().context();
    let mut carrier = HashMap::new();
    global::get_text_map_propagator(|propagator| {
        propagator.inject_context(&context, &mut MapCarrier(&mut carrier));
    });
    carrier
}

/// A client interceptor that sends the current span's trace context with
/// every request: `FooClient::with_interceptor(channel, TraceInterceptor)`.
#[derive(Debug, Clone, Copy, Default)]
pub struct TraceInterceptor;

impl tonic::service::Interceptor for TraceInterceptor {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        let context: Context = Span::current().context();
        global::get_text_map_propagator(|propagator| {
            propagator.inject_context(&context, &mut MetadataInjector(request.metadata_mut()));
        });
        Ok(request)
    }
}
