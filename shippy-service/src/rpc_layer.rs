//! The server side of every RPC: one span per request, following
//! OpenTelemetry's RPC conventions (`rpc.system`, `rpc.service`,
//! `rpc.method`, `rpc.grpc.status_code`) and continuing the caller's trace
//! from the W3C `traceparent` metadata; and the request, error and latency
//! metrics per RPC.

use std::{
    collections::HashSet,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Instant,
};

use http::{Request, Response};
use tower::{Layer, Service};
use tracing::Instrument;

use crate::{
    metrics::{RpcErrorLabels, RpcLabels, RpcMetrics},
    telemetry,
};

/// The label of a path the server does not serve: made-up paths must not
/// each add metric series (or log fields) of their own.
pub const UNKNOWN: &str = "unknown";

/// Wraps a gRPC server's services with spans and metrics.
#[derive(Debug, Clone)]
pub struct RpcLayer {
    metrics: RpcMetrics,
    known: Arc<HashSet<String>>,
}

impl RpcLayer {
    /// A layer recording into `metrics`, labelling requests by service and
    /// method for the `known` paths (`/package.Service/Method`) and as
    /// [`UNKNOWN`] otherwise.
    pub fn new(metrics: RpcMetrics, known: HashSet<String>) -> Self {
        Self {
            metrics,
            known: Arc::new(known),
        }
    }
}

impl<S> Layer<S> for RpcLayer {
    type Service = RpcService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RpcService {
            inner,
            metrics: self.metrics.clone(),
            known: self.known.clone(),
        }
    }
}

/// See [`RpcLayer`].
#[derive(Debug, Clone)]
pub struct RpcService<S> {
    inner: S,
    metrics: RpcMetrics,
    known: Arc<HashSet<String>>,
}

/// A known `/package.Service/Method` as (`package.Service`, `Method`);
/// anything else as ([`UNKNOWN`], [`UNKNOWN`]).
fn labels(known: &HashSet<String>, path: &str) -> (String, String) {
    if !known.contains(path) {
        return (UNKNOWN.to_owned(), UNKNOWN.to_owned());
    }
    split_path(path)
}

/// `/package.Service/Method` as (`package.Service`, `Method`).
fn split_path(path: &str) -> (String, String) {
    let trimmed = path.trim_start_matches('/');
    match trimmed.split_once('/') {
        Some((service, method)) => (service.to_owned(), method.to_owned()),
        None => (trimmed.to_owned(), String::new()),
    }
}

/// The gRPC status of a response: in the headers for an error answered
/// without a body ("trailers-only"), otherwise OK (0) for a unary answer.
fn status_code<B>(response: &Response<B>) -> i32 {
    response
        .headers()
        .get("grpc-status")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse().ok())
        .unwrap_or(0)
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for RpcService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    ReqBody: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let (service, method) = labels(&self.known, request.uri().path());
        let span = tracing::info_span!(
            "grpc.server",
            otel.name = %format!("{service}/{method}"),
            otel.kind = "server",
            rpc.system = "grpc",
            rpc.service = %service,
            rpc.method = %method,
            rpc.grpc.status_code = tracing::field::Empty,
            otel.status_code = tracing::field::Empty,
            trace_id = tracing::field::Empty,
            span_id = tracing::field::Empty,
        );
        telemetry::continue_trace(&span, request.headers());
        // The clone that was made ready serves this request.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let metrics = self.metrics.clone();
        Box::pin(async move {
            let started = Instant::now();
            let response = inner.call(request).instrument(span.clone()).await?;
            let code = status_code(&response);
            span.record("rpc.grpc.status_code", code);
            if code != 0 {
                span.record("otel.status_code", "ERROR");
            }
            let labels = RpcLabels { service, method };
            metrics.requests.get_or_create(&labels).inc();
            metrics
                .duration
                .get_or_create(&labels)
                .observe(started.elapsed().as_secs_f64());
            if code != 0 {
                metrics
                    .errors
                    .get_or_create(&RpcErrorLabels {
                        service: labels.service,
                        method: labels.method,
                        code: format!("{:?}", tonic::Code::from_i32(code)),
                    })
                    .inc();
            }
            Ok(response)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_split_into_service_and_method() {
        assert_eq!(
            split_path("/shippy.vessel.v1.VesselService/FindAvailable"),
            (
                "shippy.vessel.v1.VesselService".into(),
                "FindAvailable".into()
            )
        );
        assert_eq!(split_path("/odd"), ("odd".into(), String::new()));
    }

    #[test]
    fn only_known_paths_get_labels_of_their_own() {
        let known = HashSet::from(["/shippy.vessel.v1.VesselService/FindAvailable".to_owned()]);
        assert_eq!(
            labels(&known, "/shippy.vessel.v1.VesselService/FindAvailable").1,
            "FindAvailable"
        );
        for made_up in [
            "/evil.Service/Method1",
            "/shippy.vessel.v1.VesselService/Nope",
            "/",
        ] {
            assert_eq!(labels(&known, made_up), (UNKNOWN.into(), UNKNOWN.into()));
        }
    }
}
