//! What every service binds and runs beside its own work: the gRPC
//! listener, `/metrics` on its own port, and (with Consul) its registration;
//! and the order they stop in.

use std::{marker::PhantomData, net::SocketAddr};

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

/// A service's default addresses, for its [`Serve`] settings: one of the
/// rows of [`ports`].
pub trait Ports {
    /// Where its gRPC server listens unless told otherwise, e.g. `0.0.0.0:50052`.
    const LISTEN_ADDR: &'static str;
    /// Where Prometheus scrapes its `/metrics`, e.g. `0.0.0.0:9152`.
    const METRICS_ADDR: &'static str;
}

/// Declares each row of the port plan: a type and its [`Ports`].
macro_rules! port_plan {
    ($($(#[$doc:meta])* $service:ident: $listen:literal, $metrics:literal;)*) => {
        $(
            $(#[$doc])*
            #[derive(Debug, Clone)]
            pub struct $service;

            impl super::Ports for $service {
                const LISTEN_ADDR: &str = $listen;
                const METRICS_ADDR: &str = $metrics;
            }
        )*
    };
}

/// The system's port plan: each service's default addresses, gRPC and
/// metrics, in one table (a service's settings flatten `Serve<its row>`).
/// docker-compose.yml, deploy/kubernetes and the peers' default URLs use
/// the same ports.
pub mod ports {
    port_plan! {
        /// consignment-service.
        Consignment: "0.0.0.0:50051", "0.0.0.0:9151";
        /// vessel-service.
        Vessel: "0.0.0.0:50052", "0.0.0.0:9152";
        /// user-service.
        User: "0.0.0.0:50053", "0.0.0.0:9153";
        /// email-service (gRPC for its health only).
        Email: "0.0.0.0:50054", "0.0.0.0:9154";
    }
}

/// The settings every service has: the two addresses it binds (`P`'s by
/// default) and how it finds its peers. A service's settings flatten it.
#[derive(Debug, Clone, clap::Args)]
pub struct Serve<P: Ports> {
    /// Where the gRPC server listens.
    #[arg(long, env, default_value = P::LISTEN_ADDR)]
    pub listen_addr: SocketAddr,

    /// Where Prometheus scrapes `/metrics`.
    #[arg(long, env, default_value = P::METRICS_ADDR)]
    pub metrics_addr: SocketAddr,

    /// Service discovery: Consul, or static addresses.
    #[command(flatten)]
    pub discovery: DiscoveryArgs,

    #[arg(skip)]
    ports: PhantomData<P>,
}

impl<P: Ports> Serve<P> {
    /// Both addresses on loopback with ports the system picks, and no
    /// Consul: a service started by a test.
    pub fn loopback() -> Self {
        let any_port = SocketAddr::from(([127, 0, 0, 1], 0));
        Self {
            listen_addr: any_port,
            metrics_addr: any_port,
            discovery: DiscoveryArgs::default(),
            ports: PhantomData,
        }
    }

    /// Binds both addresses of service `name`.
    pub async fn bind(&self, name: &'static str) -> Result<ServiceBase, BindError> {
        ServiceBase::bind(name, self.listen_addr, self.metrics_addr, &self.discovery).await
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

    /// The service's name, as it was bound: what it registers under, and
    /// what its database connections are named.
    pub fn name(&self) -> &'static str {
        self.name
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

#[cfg(test)]
mod serve_tests {
    use clap::{CommandFactory, FromArgMatches};

    use super::*;

    #[derive(Debug, clap::Parser)]
    struct Cli<P: Ports + Clone + Send + Sync + 'static> {
        #[command(flatten)]
        serve: Serve<P>,
    }

    fn defaults<P: Ports + Clone + Send + Sync + 'static>() -> (SocketAddr, SocketAddr) {
        // The flags' own defaults, whatever LISTEN_ADDR or METRICS_ADDR say here.
        let command = Cli::<P>::command().mut_args(|arg| arg.env(None));
        let matches = command.try_get_matches_from(["service"]).unwrap();
        let serve = Cli::<P>::from_arg_matches(&matches).unwrap().serve;
        (serve.listen_addr, serve.metrics_addr)
    }

    fn row<P: Ports + Clone + Send + Sync + 'static>() -> (SocketAddr, SocketAddr) {
        (
            P::LISTEN_ADDR.parse().unwrap(),
            P::METRICS_ADDR.parse().unwrap(),
        )
    }

    #[test]
    fn each_service_binds_its_own_defaults() {
        // Parsed one after the other in one process: a default cached by the
        // first would show up in the others.
        let parsed = [
            defaults::<ports::Consignment>(),
            defaults::<ports::Vessel>(),
            defaults::<ports::User>(),
            defaults::<ports::Email>(),
        ];
        let plan = [
            row::<ports::Consignment>(),
            row::<ports::Vessel>(),
            row::<ports::User>(),
            row::<ports::Email>(),
        ];
        assert_eq!(parsed, plan);
        assert_eq!(
            parsed[1],
            (
                "0.0.0.0:50052".parse().unwrap(),
                "0.0.0.0:9152".parse().unwrap()
            )
        );
        // No two services default to one port (they run side by side).
        let mut taken: Vec<u16> = plan
            .iter()
            .flat_map(|(listen, metrics)| [listen.port(), metrics.port()])
            .collect();
        taken.sort_unstable();
        taken.dedup();
        assert_eq!(taken.len(), 2 * plan.len(), "{plan:?}");
    }
}
