//! Putting vessel-service together: bind, open the store, serve, and keep
//! health true to whether the store answers.

use std::{net::SocketAddr, time::Duration};

use shippy_auth::{Authenticator, service::ServiceToken};
use shippy_proto::vessel::v1::vessel_service_server::{SERVICE_NAME, VesselServiceServer};
use shippy_service::{
    Shutdown,
    base::ServiceBase,
    readiness::{self, Ready},
    server::{GrpcServer, ServerError},
    sweep,
};

use crate::{
    api::{Reservations, VesselApi},
    fleet,
    settings::Settings,
    store::{Store, VesselStore},
};

/// How long a store operation waits for a database connection.
const STORE_TIMEOUT: Duration = Duration::from_secs(3);

/// The largest request decoded: a vessel or a specification is a few
/// hundred bytes.
const MAX_REQUEST_BYTES: usize = 64 * 1024;

/// Why vessel-service could not start; its own reason: `DATABASE_URL`
/// does not name a usable store.
pub type StartError = shippy_service::base::StartError<shippy_store::OpenError>;

/// vessel-service, bound and ready to run.
#[derive(Debug)]
pub struct Application {
    base: ServiceBase,
    server: GrpcServer,
    store: Store,
    ready: Ready,
    auth: Authenticator,
    sweep_interval: Duration,
    /// Stops the Consul watch behind the channel to user-service.
    background: Shutdown,
}

impl Application {
    /// Binds the listen address and opens the store, without waiting for the
    /// database: health answers `NOT_SERVING` until the store is ready.
    pub async fn build(settings: &Settings) -> Result<Self, StartError> {
        let base = settings.serve.bind("vessel-service").await?;
        let store = Store::open(&settings.store.database_url, STORE_TIMEOUT, base.name())
            .await
            .map_err(StartError::service)?;
        tracing::info!(store = store.kind(), url = %settings.store.database_url, "vessel store configured");

        let background = Shutdown::new();
        let auth = Authenticator::discover(base.discovery(), &settings.keys, &background)?;

        let ready = Ready::new();
        if settings.service_token.is_none() {
            tracing::warn!(
                "no SERVICE_TOKEN: Reserve, Confirm and Release are refused, so no consignment can be shipped"
            );
        }
        let api = VesselApi::new(
            store.clone(),
            ready.clone(),
            auth.clone(),
            Reservations {
                ttl: settings.reservation_ttl.into(),
                service_token: settings.service_token.clone(),
                quota: settings.account_quota(),
            },
        );
        let server = GrpcServer::new(shippy_proto::FILE_DESCRIPTOR_SET, base.metrics().clone())
            .max_message_bytes(MAX_REQUEST_BYTES)
            .trust_forwarded_client(settings.service_token.as_ref().map(ServiceToken::vouch))
            .add_service(
                VesselServiceServer::new(api).max_decoding_message_size(MAX_REQUEST_BYTES),
            );
        server.health().set(&[SERVICE_NAME], false).await;
        Ok(Self {
            base,
            server,
            store,
            ready,
            auth,
            sweep_interval: settings.reservation_sweep_interval.into(),
            background,
        })
    }

    /// The address the server listens on (the real port when asked for port 0).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.base.local_addr()
    }

    /// The address `/metrics` is served on.
    pub fn metrics_addr(&self) -> std::io::Result<SocketAddr> {
        self.base.metrics_addr()
    }

    /// Serves until `shutdown` fires, preparing the store and fetching
    /// user-service's keys in the background (only `Create` needs them).
    pub async fn run(self, shutdown: Shutdown) -> Result<(), ServerError> {
        let sweeper = tokio::spawn(sweep_expired(
            self.store.clone(),
            self.ready.clone(),
            self.sweep_interval,
            shutdown.clone(),
        ));
        let readiness = tokio::spawn(readiness::watch(
            self.server.watched("vessel store", self.ready),
            shutdown.clone(),
            self.store,
            |store| async move {
                store.prepare().await?;
                fleet::seed(&store).await
            },
            |store| async move { store.ping().await },
        ));
        let keys = {
            let auth = self.auth;
            let shutdown = shutdown.clone();
            tokio::spawn(async move { auth.fetch_until_ready(&shutdown).await })
        };
        let served = self
            .base
            .run(
                self.server,
                shutdown,
                vec![
                    ("store readiness", readiness),
                    ("token keys", keys),
                    ("reservation expiry", sweeper),
                ],
            )
            .await;
        self.background.trigger();
        served
    }
}

/// Gives back the room of held reservations whose time is up, every
/// `interval` while `ready`, until `shutdown`. A failed sweep is logged and
/// tried again at the next tick: the room waits, nothing is lost.
async fn sweep_expired(store: Store, ready: Ready, interval: Duration, shutdown: Shutdown) {
    sweep::every(interval, ready, shutdown, || expire(&store)).await;
}

/// One round of [`sweep_expired`].
async fn expire(store: &Store) {
    match store.expire().await {
        Ok(0) => {}
        Ok(expired) => tracing::info!(expired, "expired reservations gave their room back"),
        Err(error) => tracing::warn!(error = %error, "expiring reservations failed; trying again"),
    }
}
