//! Putting vessel-service together: bind, open the store, serve, and keep
//! health true to whether the store answers.

use std::{net::SocketAddr, time::Duration};

use shippy_proto::vessel::v1::vessel_service_server::{SERVICE_NAME, VesselServiceServer};
use shippy_service::{
    Shutdown,
    discovery::Discovery,
    metrics::Metrics,
    readiness::{self, Ready, Watched},
    server::{GrpcServer, Health, ServerError},
};
use tokio::net::TcpListener;

use crate::{
    api::VesselApi,
    fleet,
    settings::Settings,
    store::{OpenError, Store, VesselStore},
};

/// How long a store operation waits for a database connection.
const STORE_TIMEOUT: Duration = Duration::from_secs(3);
/// How often a ready store is checked, to keep health true.
const PROBE_INTERVAL: Duration = Duration::from_secs(5);

/// vessel-service could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The listen address cannot be bound.
    #[error("cannot listen on {address}")]
    Bind {
        /// The address asked for.
        address: SocketAddr,
        /// Why not.
        #[source]
        source: std::io::Error,
    },
    /// `DATABASE_URL` does not name a usable store.
    #[error(transparent)]
    Store(#[from] OpenError),
}

/// vessel-service, bound and ready to run.
#[derive(Debug)]
pub struct Application {
    listener: TcpListener,
    metrics_listener: TcpListener,
    metrics: Metrics,
    discovery: Discovery,
    server: GrpcServer,
    health: Health,
    store: Store,
    ready: Ready,
}

impl Application {
    /// Binds the listen address and opens the store, without waiting for the
    /// database: health answers `NOT_SERVING` until the store is ready.
    pub async fn build(settings: &Settings) -> Result<Self, StartError> {
        let listener = TcpListener::bind(settings.listen_addr)
            .await
            .map_err(|source| StartError::Bind {
                address: settings.listen_addr,
                source,
            })?;
        let metrics_listener =
            TcpListener::bind(settings.metrics_addr)
                .await
                .map_err(|source| StartError::Bind {
                    address: settings.metrics_addr,
                    source,
                })?;
        let metrics = Metrics::new();
        let store = Store::open(&settings.database_url, STORE_TIMEOUT).await?;
        tracing::info!(store = store.kind(), url = %settings.database_url, "vessel store configured");

        let ready = Ready::new();
        let api = VesselApi::new(store.clone(), ready.clone());
        let server = GrpcServer::new(shippy_proto::FILE_DESCRIPTOR_SET, metrics.clone())
            .add_service(VesselServiceServer::new(api));
        let health = server.health();
        health.set(&[SERVICE_NAME], false).await;
        Ok(Self {
            listener,
            metrics_listener,
            metrics,
            discovery: Discovery::new(&settings.discovery),
            server,
            health,
            store,
            ready,
        })
    }

    /// The address the server listens on (the real port when asked for port 0).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The address `/metrics` is served on.
    pub fn metrics_addr(&self) -> std::io::Result<SocketAddr> {
        self.metrics_listener.local_addr()
    }

    /// Serves until `shutdown` fires, preparing the store in the background.
    pub async fn run(self, shutdown: Shutdown) -> Result<(), ServerError> {
        let metrics_server = tokio::spawn(
            self.metrics
                .clone()
                .serve(self.metrics_listener, shutdown.clone()),
        );
        let registration = match self.listener.local_addr() {
            Ok(address) => self
                .discovery
                .register("vessel-service", address, shutdown.clone()),
            Err(_) => None,
        };
        let store = self.store;
        let readiness = tokio::spawn(readiness::watch(
            Watched {
                what: "vessel store",
                services: vec![SERVICE_NAME],
                probe_interval: PROBE_INTERVAL,
            },
            self.health,
            self.ready,
            shutdown.clone(),
            {
                let store = store.clone();
                move || {
                    let store = store.clone();
                    async move {
                        store.prepare().await?;
                        fleet::seed(&store).await
                    }
                }
            },
            move || {
                let store = store.clone();
                async move { store.ping().await }
            },
        ));
        let served = self.server.serve(self.listener, shutdown.clone()).await;
        shutdown.trigger();
        if let Err(error) = readiness.await {
            tracing::error!(%error, "store readiness task failed");
        }
        if let Some(registration) = registration
            && let Err(error) = registration.await
        {
            tracing::error!(%error, "Consul registration task failed");
        }
        match metrics_server.await {
            Ok(Err(error)) => tracing::warn!(%error, "metrics server failed"),
            Err(error) => tracing::error!(%error, "metrics server task failed"),
            Ok(Ok(())) => {}
        }
        served
    }
}
