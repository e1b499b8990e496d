//! Putting user-service together: bind, open the database and NATS, serve,
//! relay the outbox, keep health true to the database.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use shippy_auth::service::ServiceToken;
use shippy_proto::user::v1::user_service_server::{SERVICE_NAME, UserServiceServer};
use shippy_service::{
    Shutdown,
    base::ServiceBase,
    nats::InvalidUrl,
    readiness::{self, Ready},
    server::{GrpcServer, ServerError},
};
use tokio::sync::Notify;

use crate::{
    api::{Access, UserApi},
    domain::InvalidInput,
    keys::{self, KeySource, SourceError},
    password::{HashError, PasswordHasher},
    relay::{EventPublisher, Relay},
    roles::Admins,
    settings::Settings,
    store::UserStore,
    throttle::LoginThrottle,
    tokens::TokenSigner,
};

/// The largest request decoded: a user, a token or a page request is at
/// most a few kilobytes.
const MAX_REQUEST_BYTES: usize = 64 * 1024;
/// How long a database operation waits for a connection.
const STORE_TIMEOUT: Duration = Duration::from_secs(3);

/// Why user-service could not start.
pub type StartError = shippy_service::base::StartError<Unusable>;

/// A setting only user-service has that cannot work.
#[derive(Debug, thiserror::Error)]
pub enum Unusable {
    /// `DATABASE_URL` is not a usable PostgreSQL URL.
    #[error(transparent)]
    DatabaseUrl(#[from] shippy_store::OpenError),
    /// The signing keys cannot be loaded.
    #[error(transparent)]
    Keys(#[from] SourceError),
    /// `ADMIN_EMAILS` lists something that is not an email.
    #[error("{0}")]
    Admins(InvalidInput),
    /// bcrypt cannot hash at the configured cost.
    #[error("bcrypt cannot hash at the configured cost")]
    Hasher(#[from] HashError),
}

/// user-service, bound and ready to run.
#[derive(Debug)]
pub struct Application {
    base: ServiceBase,
    server: GrpcServer,
    store: UserStore,
    ready: Ready,
    relay: Relay,
    keys: KeyFollower,
}

/// What follows the key source while the service runs.
#[derive(Debug)]
struct KeyFollower {
    source: KeySource,
    signer: Arc<TokenSigner>,
    failures: prometheus_client::metrics::counter::Counter,
    hangups: keys::Hangups,
}

impl Application {
    /// Binds the listen address, loads the keys and opens the database and
    /// NATS without waiting for either: health answers `NOT_SERVING` until
    /// the database is migrated; events wait in the outbox until NATS answers.
    pub async fn build(settings: &Settings) -> Result<Self, StartError> {
        // Before anything that can wait: a SIGHUP from now on rereads the keys.
        let hangups = keys::Hangups::listen();
        let base = settings.serve.bind("user-service").await?;
        let metrics = base.metrics().clone();
        // The same pool as vessel- and consignment-service open.
        let pool = shippy_store::open_postgres(&settings.database_url, STORE_TIMEOUT, base.name())
            .map_err(StartError::service)?;
        let store = UserStore::new(pool);
        tracing::info!(url = %settings.database_url, "user store configured");

        let publisher =
            EventPublisher::connect(settings.nats_url.expose(), &settings.events_stream)
                .await
                .map_err(InvalidUrl::of(&settings.nats_url))?;
        let source = KeySource::new(
            settings.jwt_signing_key_file.as_deref(),
            &settings.keys,
            &settings.serve.discovery,
        )
        .map_err(StartError::service)?;
        let signer = Arc::new(
            source
                .load(settings.jwt_ttl.into())
                .await
                .map_err(StartError::service)?,
        );
        let keys = KeyFollower {
            source,
            signer: signer.clone(),
            failures: keys::failures_counter(&metrics),
            hangups,
        };
        let hasher = PasswordHasher::new(settings.bcrypt_cost)
            .await
            .map_err(StartError::service)?;
        let admins = Admins::parse(&settings.admin_emails)
            .map_err(|invalid| StartError::Service(Unusable::Admins(invalid)))?;
        tracing::info!(admins = admins.len(), "administrators configured");

        let ready = Ready::new();
        let wake_relay = Arc::new(Notify::new());
        let api = UserApi::new(
            store.clone(),
            hasher,
            signer,
            ready.clone(),
            wake_relay.clone(),
            settings.user_created_subject.clone(),
            Access {
                admins,
                throttle: LoginThrottle::new(settings.login.clone()),
            },
        );
        let server = GrpcServer::new(shippy_proto::FILE_DESCRIPTOR_SET, metrics.clone())
            .max_message_bytes(MAX_REQUEST_BYTES)
            .trust_forwarded_client(
                settings
                    .login
                    .service_token
                    .as_ref()
                    .map(ServiceToken::vouch),
            )
            .add_service(UserServiceServer::new(api).max_decoding_message_size(MAX_REQUEST_BYTES));
        server.health().set(&[SERVICE_NAME], false).await;
        let relay = Relay::new(
            store.clone(),
            publisher,
            settings.user_created_subject.clone(),
            wake_relay,
            metrics.gauge(
                "outbox_pending_events",
                "Events in the outbox not yet published to NATS",
            ),
        );
        Ok(Self {
            base,
            server,
            store,
            ready,
            relay,
            keys,
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

    /// Serves until `shutdown` fires; migrates the database and relays the
    /// outbox in the background.
    pub async fn run(self, shutdown: Shutdown) -> Result<(), ServerError> {
        let readiness = tokio::spawn(readiness::watch(
            self.server.watched("user database", self.ready.clone()),
            shutdown.clone(),
            self.store,
            |store| async move { store.migrate().await },
            |store| async move { store.ping().await },
        ));
        let relay = tokio::spawn(self.relay.run(self.ready, shutdown.clone()));
        let keys = tokio::spawn(keys::follow(
            self.keys.source,
            self.keys.signer,
            self.keys.failures,
            self.keys.hangups,
            shutdown.clone(),
        ));
        self.base
            .run(
                self.server,
                shutdown,
                vec![
                    ("store readiness", readiness),
                    ("outbox relay", relay),
                    ("signing key source", keys),
                ],
            )
            .await
    }
}
