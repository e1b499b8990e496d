//! The gRPC server every shippy service runs.
//!
//! [`GrpcServer`] always serves `grpc.health.v1.Health` and server reflection
//! (v1 and v1alpha) beside the service's own RPCs, so grpcurl,
//! grpc_health_probe and Consul's gRPC check work against any of them. It
//! serves on a listener the caller bound and stops on a [`Shutdown`], so
//! tests bind port 0 and production binds the configured address.

use std::{convert::Infallible, time::Duration};

use http::{Request, Response};
use tokio::net::TcpListener;
use tonic::{
    body::Body,
    server::NamedService,
    service::Routes,
    transport::{Server, server::TcpIncoming},
};
use tonic_health::{
    ServingStatus,
    server::{HealthReporter, HealthService},
};
use tower_service::Service;

use crate::{Shutdown, metrics::Metrics, rpc_layer::RpcLayer};

/// The server could not be put together or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// A descriptor set handed to reflection did not decode.
    #[error("reflection cannot read the service descriptors")]
    Reflection(#[from] tonic_reflection::server::Error),
    /// The transport failed while serving.
    #[error("gRPC server failed")]
    Transport(#[from] tonic::transport::Error),
}

/// A gRPC server with health and reflection already in place.
#[derive(Debug)]
pub struct GrpcServer {
    routes: Routes,
    metrics: Metrics,
    health: Health,
    descriptor_set: &'static [u8],
    services: Vec<&'static str>,
}

/// The services every server has, whatever it adds.
const STANDARD_SERVICES: [&str; 3] = [
    "grpc.health.v1.Health",
    "grpc.reflection.v1.ServerReflection",
    "grpc.reflection.v1alpha.ServerReflection",
];

impl GrpcServer {
    /// A server whose reflection describes the services it serves, taken
    /// from `descriptor_set` (an encoded `FileDescriptorSet`, such as
    /// `shippy_proto::FILE_DESCRIPTOR_SET`), plus health and reflection.
    ///
    /// Every request gets a span and is counted and timed in `metrics`.
    pub fn new(descriptor_set: &'static [u8], metrics: Metrics) -> Self {
        let reporter = HealthReporter::new();
        let health_server = tonic_health::pb::health_server::HealthServer::new(
            HealthService::from_health_reporter(reporter.clone()),
        );
        Self {
            routes: Routes::new(health_server),
            metrics,
            health: Health { reporter },
            descriptor_set,
            services: STANDARD_SERVICES.to_vec(),
        }
    }

    /// The handle that sets what `grpc.health.v1.Health` answers.
    pub fn health(&self) -> Health {
        self.health.clone()
    }

    /// Adds one of the service's own gRPC services (a generated `*Server`);
    /// reflection lists it.
    pub fn add_service<S>(mut self, service: S) -> Self
    where
        S: Service<Request<Body>, Response = Response<Body>, Error = Infallible>
            + NamedService
            + Clone
            + Send
            + Sync
            + 'static,
        S::Future: Send + 'static,
    {
        self.services.push(S::NAME);
        self.routes = self.routes.add_service(service);
        self
    }

    /// Serves on `listener` until `shutdown` fires, then lets requests in
    /// flight finish and returns.
    pub async fn serve(self, listener: TcpListener, shutdown: Shutdown) -> Result<(), ServerError> {
        let routes = self
            .routes
            .add_service(reflection(self.descriptor_set, &self.services).build_v1()?)
            .add_service(reflection(self.descriptor_set, &self.services).build_v1alpha()?);
        let address = listener.local_addr().ok();
        tracing::info!(?address, services = ?self.services, "gRPC server listening");
        Server::builder()
            .http2_keepalive_interval(Some(Duration::from_secs(30)))
            .layer(RpcLayer::new(self.metrics.rpc().clone()))
            .add_routes(routes)
            .serve_with_incoming_shutdown(
                // No Nagle: small unary answers must not wait for the peer's
                // delayed ACK (it cost 40 ms a request before this).
                TcpIncoming::from(listener).with_nodelay(Some(true)),
                shutdown.wait_owned(),
            )
            .await?;
        tracing::info!(?address, "gRPC server stopped");
        Ok(())
    }
}

fn reflection(
    descriptor_set: &'static [u8],
    services: &[&'static str],
) -> tonic_reflection::server::Builder<'static> {
    services.iter().fold(
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(descriptor_set)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET),
        |builder, service| builder.with_service_name(*service),
    )
}

/// Sets what `grpc.health.v1.Health` answers, for the whole server (the
/// empty service name) and for each named service together.
#[derive(Debug, Clone)]
pub struct Health {
    reporter: HealthReporter,
}

impl Health {
    /// Answers `SERVING` (`ready`) or `NOT_SERVING` for the whole server
    /// and for each of `services` (full names such as
    /// `shippy.vessel.v1.VesselService`).
    pub async fn set(&self, services: &[&str], ready: bool) {
        let status = if ready {
            ServingStatus::Serving
        } else {
            ServingStatus::NotServing
        };
        self.reporter.set_service_status("", status).await;
        for service in services {
            self.reporter.set_service_status(service, status).await;
        }
    }
}
