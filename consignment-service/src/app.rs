//! Putting consignment-service together: bind, open the store, reach
//! vessel-service and user-service, serve.

use std::{net::SocketAddr, time::Duration};

use shippy_proto::consignment::v1::shipping_service_server::{SERVICE_NAME, ShippingServiceServer};
use shippy_service::{
    Shutdown,
    base::ServiceBase,
    discovery::CallTimeouts,
    readiness::{self, Ready},
    server::{GrpcServer, ServerError},
};

use shippy_auth::{Authenticator, service::ServiceToken};

use crate::{api::ShippingApi, saga::Saga, settings::Settings, store::Store, vessels::Vessels};

/// How long a store operation waits for a database connection.
const STORE_TIMEOUT: Duration = Duration::from_secs(3);
/// Calls to other services: connecting, and each call.
const CALLS: CallTimeouts = CallTimeouts {
    connect: Duration::from_secs(1),
    request: Duration::from_secs(3),
};
/// The deadline of each call to vessel-service (`Reserve`, `Confirm`,
/// `Release`), retries included.
const VESSEL_DEADLINE: Duration = Duration::from_secs(2);

/// Why consignment-service could not start; its own reason: `DATABASE_URL`
/// does not name a usable store.
pub type StartError = shippy_service::base::StartError<shippy_store::OpenError>;

/// Why consignment-service cannot serve yet.
#[derive(Debug, thiserror::Error)]
enum NotReady {
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    Keys(#[from] shippy_auth::remote::FetchError),
}

/// consignment-service, bound and ready to run.
#[derive(Debug)]
pub struct Application {
    base: ServiceBase,
    background: Shutdown,
    server: GrpcServer,
    store: Store,
    ready: Ready,
    auth: Authenticator,
    saga: Saga,
    recovery: (Duration, Duration),
}

impl Application {
    /// Binds the listen address and opens the store and the channels to
    /// vessel-service and user-service, waiting for none of them.
    pub async fn build(settings: &Settings) -> Result<Self, StartError> {
        let base = settings.serve.bind("consignment-service").await?;
        let metrics = base.metrics().clone();
        let store = Store::open(&settings.store.database_url, STORE_TIMEOUT, base.name())
            .await
            .map_err(StartError::service)?;
        tracing::info!(store = store.kind(), url = %settings.store.database_url, "consignment store configured");
        // Stops the Consul watches behind the channels when the service stops.
        let background = Shutdown::new();
        let discovery = base.discovery();
        let vessels = Vessels::new(
            discovery.channel(
                "vessel-service",
                &settings.vessel_service_url,
                CALLS,
                &background,
            )?,
            VESSEL_DEADLINE,
            settings.service_token.clone(),
        );
        if settings.service_token.is_none() {
            tracing::warn!(
                "no SERVICE_TOKEN: vessel-service will refuse every reservation, so no consignment can be placed"
            );
        }
        let saga = Saga::new(store.clone(), vessels);
        let auth = Authenticator::discover(discovery, &settings.keys, &background)?;

        let ready = Ready::new();
        let api = ShippingApi::new(store.clone(), ready.clone(), auth.clone(), saga.clone());
        let server = GrpcServer::new(shippy_proto::FILE_DESCRIPTOR_SET, metrics.clone())
            .max_message_bytes(crate::domain::MAX_REQUEST_BYTES)
            .trust_forwarded_client(settings.service_token.as_ref().map(ServiceToken::vouch))
            .add_service(
                ShippingServiceServer::new(api)
                    .max_decoding_message_size(crate::domain::MAX_REQUEST_BYTES),
            );
        server.health().set(&[SERVICE_NAME], false).await;
        Ok(Self {
            base,
            background,
            server,
            store,
            ready,
            auth,
            saga,
            recovery: (
                settings.recovery_interval.into(),
                settings.recovery_after.into(),
            ),
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

    /// Serves until `shutdown` fires; prepares the store and fetches the
    /// token keys in the background: health is `NOT_SERVING` until both
    /// are done.
    pub async fn run(self, shutdown: Shutdown) -> Result<(), ServerError> {
        let (interval, older_than) = self.recovery;
        let recovery = tokio::spawn(self.saga.recover_until(
            interval,
            older_than,
            self.ready.clone(),
            shutdown.clone(),
        ));
        let readiness = tokio::spawn(readiness::watch(
            self.server
                .watched("consignment store and token keys", self.ready),
            shutdown.clone(),
            (self.store, self.auth),
            // Not ready, so NOT_SERVING, until it can verify tokens too.
            |(store, auth)| async move {
                store.prepare().await.map_err(NotReady::Store)?;
                let keys = auth.ensure_keys().await.map_err(NotReady::Keys)?;
                tracing::info!(keys, "token keys fetched from user-service");
                Ok::<(), NotReady>(())
            },
            |(store, _)| async move { store.ping().await },
        ));
        let served = self
            .base
            .run(
                self.server,
                shutdown,
                vec![("readiness", readiness), ("recovery sweep", recovery)],
            )
            .await;
        self.background.trigger();
        served
    }
}
