//! What every service binds and runs beside its own work: the gRPC
//! listener, `/metrics` on its own port, and (with Consul) its registration;
//! and the order they stop in.

use std::net::SocketAddr;

use tokio::{net::TcpListener, task::JoinHandle};

use crate::{
    Shutdown,
    discovery::{Discovery, DiscoveryArgs},
    metrics::Metrics,
    server::{GrpcServer, ServerError},
};

/// An address could not be bound.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {address}")]
pub struct BindError {
    address: SocketAddr,
    #[source]
    source: std::io::Error,
}

/// Why a service could not start (what its `Application::build` answers;
/// `main` reports it and exits non-zero): what any service's start can run
/// into, and `E`, the reasons only that service has.
#[derive(Debug, thiserror::Error)]
pub enum StartError<E> {
    /// An address cannot be bound.
    #[error(transparent)]
    Bind(#[from] BindError),
    /// `NATS_URL` is not usable.
    #[error(transparent)]
    NatsUrl(#[from] crate::nats::InvalidUrl),
    /// The address of a service it calls (`USER_SERVICE_URL`,
    /// `VESSEL_SERVICE_URL`) is not usable.
    #[error(transparent)]
    Address(#[from] crate::discovery::InvalidAddress),
    /// A setting only this service has is not usable.
    #[error(transparent)]
    Service(E),
}

impl<E> StartError<E> {
    /// A reason only this service has: `.map_err(StartError::service)?`.
    pub fn service(error: impl Into<E>) -> Self {
        Self::Service(error.into())
    }
}

async fn bind(address: SocketAddr) -> Result<TcpListener, BindError> {
    TcpListener::bind(address)
        .await
        .map_err(|source| BindError { address, source })
}

/// A background task to wait for when the service stops, with its name for logs.
pub type Task = (&'static str, JoinHandle<()>);

/// The listeners, metrics and discovery of one service.
#[derive(Debug)]
pub struct ServiceBase {
    name: &'static str,
    listener: TcpListener,
    metrics_listener: TcpListener,
    metrics: Metrics,
    discovery: Discovery,
}

impl ServiceBase {
    /// Binds the gRPC and metrics addresses of service `name`.
    pub async fn bind(
        name: &'static str,
        listen_addr: SocketAddr,
        metrics_addr: SocketAddr,
        discovery: &DiscoveryArgs,
    ) -> Result<Self, BindError> {
        Ok(Self {
            name,
            listener: bind(listen_addr).await?,
            metrics_listener: bind(metrics_addr).await?,
            metrics: Metrics::new(),
            discovery: Discovery::new(discovery),
        })
    }

    /// The service's metrics registry.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// How the service finds its peers.
    pub fn discovery(&self) -> &Discovery {
        &self.discovery
    }

    /// Where the gRPC server listens (the real port when asked for port 0).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Where `/metrics` is served.
    pub fn metrics_addr(&self) -> std::io::Result<SocketAddr> {
        self.metrics_listener.local_addr()
    }

    /// Serves `server`, `/metrics` and the Consul registration until
    /// `shutdown` fires; then lets requests in flight finish, deregisters,
    /// and waits for `background` (which watch the same signal).
    pub async fn run(
        self,
        server: GrpcServer,
        shutdown: Shutdown,
        background: Vec<Task>,
    ) -> Result<(), ServerError> {
        let metrics = self.metrics.spawn(self.metrics_listener, shutdown.clone());
        let registration = match self.listener.local_addr() {
            Ok(address) => self
                .discovery
                .register(self.name, address, shutdown.clone()),
            Err(_) => None,
        };
        let served = server.serve(self.listener, shutdown.clone()).await;
        shutdown.trigger();
        let tasks = background
            .into_iter()
            .chain(registration.map(|task| ("Consul registration", task)));
        for (name, task) in tasks {
            if let Err(error) = task.await {
                tracing::error!(%error, "{name} task failed");
            }
        }
        metrics.stopped().await;
        served
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_start_error_says_what_its_cause_says() {
        let mail = std::io::Error::other("SMTP_URL is not a valid SMTP URL");
        let error = StartError::<std::io::Error>::service(mail);
        assert_eq!(error.to_string(), "SMTP_URL is not a valid SMTP URL");
        let bind = BindError {
            address: SocketAddr::from(([127, 0, 0, 1], 9)),
            source: std::io::Error::other("in use"),
        };
        let error = StartError::<std::io::Error>::from(bind);
        assert_eq!(error.to_string(), "cannot listen on 127.0.0.1:9");
        let cause = std::error::Error::source(&error).map(ToString::to_string);
        assert_eq!(
            cause.as_deref(),
            Some("in use"),
            "the cause stays in the chain"
        );
    }
}
