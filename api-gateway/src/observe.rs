//! Per request: a span that continues the caller's W3C trace (so the
//! gRPC calls made inside it join the same trace) and the RED metrics
//! (requests, errors, duration) by route.

use std::time::Instant;

use axum::{
    extract::{MatchedPath, Request, State},
    middleware::Next,
    response::Response,
};
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, histogram::Histogram},
};
use shippy_service::{metrics::Metrics, telemetry::propagation::continue_trace};
use tracing::Instrument as _;

/// Labels of the HTTP metrics.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    /// e.g. `GET`.
    pub method: String,
    /// The route template, e.g. `/api/v1/consignments`; `unmatched` otherwise.
    pub route: String,
    /// e.g. `200`.
    pub status: String,
}

/// Labels of the HTTP duration histogram.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    /// e.g. `GET`.
    pub method: String,
    /// The route template.
    pub route: String,
}

/// The gateway's HTTP metrics.
#[derive(Debug, Clone)]
pub struct HttpMetrics {
    requests: Family<HttpLabels, Counter>,
    errors: Family<HttpLabels, Counter>,
    duration: Family<RouteLabels, Histogram>,
}

impl HttpMetrics {
    /// Registers the HTTP metrics in `metrics`.
    pub fn register(metrics: &Metrics) -> Self {
        let this = Self {
            requests: Family::default(),
            errors: Family::default(),
            duration: Family::new_with_constructor(|| {
                Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
                    0.001, 2.0, 14,
                ))
            }),
        };
        metrics.register(
            "http_server_requests",
            "HTTP requests handled",
            this.requests.clone(),
        );
        metrics.register(
            "http_server_errors",
            "HTTP requests answered with a 4xx or 5xx status",
            this.errors.clone(),
        );
        metrics.register(
            "http_server_duration_seconds",
            "How long HTTP requests took",
            this.duration.clone(),
        );
        this
    }
}

/// The middleware: span, trace context, metrics.
pub async fn observe(State(metrics): State<HttpMetrics>, request: Request, next: Next) -> Response {
    // A method label from a fixed set: any other token a client sends would
    // add metric series forever.
    let method = match request.method().as_str() {
        known @ ("GET" | "POST" | "PUT" | "PATCH" | "DELETE" | "HEAD" | "OPTIONS") => known,
        _ => "other",
    }
    .to_owned();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |path| path.as_str().to_owned());
    let span = tracing::info_span!(
        "HTTP request",
        otel.name = %format!("{method} {route}"),
        otel.kind = "server",
        http.request.method = %method,
        http.route = %route,
        http.response.status_code = tracing::field::Empty,
        trace_id = tracing::field::Empty,
        span_id = tracing::field::Empty,
    );
    continue_trace(&span, request.headers());
    let started = Instant::now();
    let response = next.run(request).instrument(span.clone()).await;
    let status = response.status();
    span.record("http.response.status_code", status.as_u16());
    let labels = HttpLabels {
        method: method.clone(),
        route: route.clone(),
        status: status.as_str().to_owned(),
    };
    metrics.requests.get_or_create(&labels).inc();
    if status.is_client_error() || status.is_server_error() {
        metrics.errors.get_or_create(&labels).inc();
    }
    metrics
        .duration
        .get_or_create(&RouteLabels { method, route })
        .observe(started.elapsed().as_secs_f64());
    if status.is_server_error() {
        span.in_scope(|| tracing::warn!(status = status.as_u16(), "request failed"));
    } else {
        span.in_scope(|| tracing::debug!(status = status.as_u16(), "request answered"));
    }
    response
}
