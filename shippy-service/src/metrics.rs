//! Metrics for Prometheus: one registry per service, served at `/metrics`
//! on the service's metrics port.
//!
//! Every gRPC server counts requests and errors and times them per RPC
//! (through [`crate::rpc_layer`]); services add their own (the outbox
//! backlog, mails sent and failed) with [`Metrics::counter`] and
//! [`Metrics::gauge`].

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
};

use axum::{Router, extract::State, http::header, response::IntoResponse, routing::get};
use prometheus_client::{
    encoding::{EncodeLabelSet, text::encode},
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};
use tokio::net::TcpListener;

use crate::Shutdown;

/// Labels of per-RPC metrics.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RpcLabels {
    /// e.g. `shippy.vessel.v1.VesselService`.
    pub service: String,
    /// e.g. `FindAvailable`.
    pub method: String,
}

/// Labels of per-RPC error counts.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RpcErrorLabels {
    /// e.g. `shippy.vessel.v1.VesselService`.
    pub service: String,
    /// e.g. `FindAvailable`.
    pub method: String,
    /// The gRPC status code's name, e.g. `NotFound`.
    pub code: String,
}

/// The per-RPC metrics of a gRPC server.
#[derive(Debug, Clone)]
pub struct RpcMetrics {
    /// Requests handled.
    pub requests: Family<RpcLabels, Counter>,
    /// Requests answered with a status other than OK.
    pub errors: Family<RpcErrorLabels, Counter>,
    /// How long requests took, in seconds.
    pub duration: Family<RpcLabels, Histogram>,
}

/// A service's metrics registry.
#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Arc<Mutex<Registry>>,
    rpc: RpcMetrics,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A registry holding the RPC metrics.
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let rpc = RpcMetrics {
            requests: Family::default(),
            errors: Family::default(),
            duration: Family::new_with_constructor(|| {
                Histogram::new([
                    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                ])
            }),
        };
        registry.register(
            "grpc_server_requests",
            "gRPC requests handled, by service and method",
            rpc.requests.clone(),
        );
        registry.register(
            "grpc_server_errors",
            "gRPC requests answered with a status other than OK, by service, method and code",
            rpc.errors.clone(),
        );
        registry.register(
            "grpc_server_duration_seconds",
            "How long gRPC requests took, by service and method",
            rpc.duration.clone(),
        );
        Self {
            registry: Arc::new(Mutex::new(registry)),
            rpc,
        }
    }

    /// The per-RPC metrics.
    pub fn rpc(&self) -> &RpcMetrics {
        &self.rpc
    }

    /// Registers and returns a counter (`name` gets the `_total` suffix).
    pub fn counter(&self, name: &str, help: &str) -> Counter {
        let counter = Counter::default();
        self.register(name, help, counter.clone());
        counter
    }

    /// Registers and returns a gauge.
    pub fn gauge(&self, name: &str, help: &str) -> Gauge {
        let gauge = Gauge::default();
        self.register(name, help, gauge.clone());
        gauge
    }

    /// Registers any metric (e.g. a labelled family) under `name`.
    pub fn register(
        &self,
        name: &str,
        help: &str,
        metric: impl prometheus_client::registry::Metric,
    ) {
        match self.registry.lock() {
            Ok(mut registry) => registry.register(name, help, metric),
            Err(poisoned) => poisoned.into_inner().register(name, help, metric),
        }
    }

    /// Registers `metric` (e.g. a labelled family) under `name` and returns
    /// it: the clone registered shares its values.
    pub fn registered<M>(&self, name: &str, help: &str, metric: M) -> M
    where
        M: prometheus_client::registry::Metric + Clone,
    {
        self.register(name, help, metric.clone());
        metric
    }

    /// The metrics in Prometheus' text format.
    pub fn render(&self) -> String {
        let mut text = String::new();
        let registry = match self.registry.lock() {
            Ok(registry) => registry,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Err(error) = encode(&mut text, &registry) {
            tracing::error!(%error, "cannot encode metrics");
        }
        text
    }

    /// Serves `/metrics` on `listener` in a task of its own until
    /// `shutdown` fires; [`MetricsServer::stopped`] waits for it.
    pub fn spawn(&self, listener: TcpListener, shutdown: Shutdown) -> MetricsServer {
        MetricsServer(tokio::spawn(self.clone().serve(listener, shutdown)))
    }

    /// Serves `/metrics` on `listener` until `shutdown` fires.
    pub async fn serve(self, listener: TcpListener, shutdown: Shutdown) -> std::io::Result<()> {
        let address: Option<SocketAddr> = listener.local_addr().ok();
        tracing::info!(?address, "metrics at /metrics");
        let app = Router::new()
            .route("/metrics", get(render))
            .with_state(self);
        axum::serve(listener, app)
            .with_graceful_shutdown(shutdown.wait_owned())
            .await
    }
}

/// `/metrics` served in the background ([`Metrics::spawn`]).
#[derive(Debug)]
pub struct MetricsServer(tokio::task::JoinHandle<std::io::Result<()>>);

impl MetricsServer {
    /// Waits for the server to stop; how it failed, if it did, is logged.
    pub async fn stopped(self) {
        match self.0.await {
            Ok(Err(error)) => tracing::warn!(%error, "metrics server failed"),
            Err(error) => tracing::error!(%error, "metrics server task failed"),
            Ok(Ok(())) => {}
        }
    }
}

async fn render(State(metrics): State<Metrics>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        metrics.render(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_rpc_and_service_metrics() {
        let metrics = Metrics::new();
        let labels = RpcLabels {
            service: "shippy.vessel.v1.VesselService".into(),
            method: "FindAvailable".into(),
        };
        metrics.rpc().requests.get_or_create(&labels).inc();
        metrics.rpc().duration.get_or_create(&labels).observe(0.002);
        metrics.counter("emails_sent", "Mails sent").inc_by(3);
        let text = metrics.render();
        assert!(
            text.contains(r#"grpc_server_requests_total{service="shippy.vessel.v1.VesselService",method="FindAvailable"} 1"#),
            "{text}"
        );
        assert!(
            text.contains("grpc_server_duration_seconds_bucket"),
            "{text}"
        );
        assert!(text.contains("emails_sent_total 3"), "{text}");
    }
}
