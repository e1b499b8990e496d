//! A whole cluster for tests: user-, vessel- and consignment-service
//! in-process on random ports, each with its own fresh database (users in
//! PostgreSQL; vessels and consignments in PostgreSQL or MongoDB), user
//! events on the test NATS.
//!
//! ```ignore
//! let cluster = Cluster::start().await; // PostgreSQL, nothing changed
//! let cluster = Cluster::builder()
//!     .store(StoreKind::MongoDb)
//!     .quota(AccountQuota::DEFAULT)
//!     .settings(|users: &mut UserSettings| users.login.service_token = None)
//!     .start()
//!     .await;
//! ```

use std::{net::SocketAddr, time::Duration};

use consignment_service::settings::Settings as ConsignmentSettings;
use shippy_proto::{
    consignment::v1::shipping_service_client::ShippingServiceClient,
    vessel::v1::{Vessel, vessel_service_client::VesselServiceClient},
};
use shippy_service::{
    Shutdown,
    settings::{Secret, SecretUrl},
};
use shippy_testkit::{
    ServiceProcess, StoreKind, fresh_postgres_database, init_test_logging, wait_for_health,
};
use tonic::transport::Channel;
use tonic_health::pb::health_check_response::ServingStatus;
use user_service::{app::Application as UserApp, settings::Settings as UserSettings, tokens};
use vessel_service::{domain::AccountQuota, settings::Settings as VesselSettings};

use crate::{ADMIN, bearer, settings, spawn, user::signing_key};

/// A change to one service's settings.
type Adjust<S> = Box<dyn FnOnce(&mut S) + Send>;

/// Changes to one service's settings, made after the harness's own.
pub struct Adjustments<S>(Vec<Adjust<S>>);

impl<S> std::fmt::Debug for Adjustments<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} change(s)", self.0.len())
    }
}

impl<S> Adjustments<S> {
    fn apply(self, settings: &mut S) {
        for adjust in self.0 {
            adjust(settings);
        }
    }
}

/// The settings of a service a [`Cluster`] starts, which
/// [`ClusterBuilder::settings`] changes.
pub trait ServiceSettings: Sized {
    /// Where `builder` keeps the changes to these settings.
    fn adjustments(builder: &mut ClusterBuilder) -> &mut Adjustments<Self>;
}

/// Each service's settings, kept in the builder's field of the same name.
macro_rules! service_settings {
    ($($settings:ty => $field:ident),*) => {$(
        impl ServiceSettings for $settings {
            fn adjustments(builder: &mut ClusterBuilder) -> &mut Adjustments<Self> {
                &mut builder.$field
            }
        }
    )*};
}

service_settings!(
    UserSettings => user,
    VesselSettings => vessel,
    ConsignmentSettings => consignment
);

/// The three services, started and serving; dropped, they stop.
#[derive(Debug)]
pub struct Cluster {
    /// user-service's settings, its real address in `serve.listen_addr`.
    pub user_settings: UserSettings,
    pub users: Channel,
    pub vessels: Channel,
    pub shipping: Channel,
    /// The address consignment-service listens on.
    pub shipping_addr: SocketAddr,
    /// The PEM of user-service's signing key, to forge tokens in tests.
    pub key_pem: Secret,
    pub user_shutdown: Shutdown,
    pub vessel_shutdown: Shutdown,
    pub consignment_shutdown: Shutdown,
    /// vessel-service's database.
    pub vessel_database: SecretUrl,
    /// consignment-service's database.
    pub consignment_database: SecretUrl,
    pub user_addr: SocketAddr,
    pub vessel_addr: SocketAddr,
}

/// How a [`Cluster`] is started: [`Cluster::builder`].
#[derive(Debug)]
pub struct ClusterBuilder {
    store: StoreKind,
    quota: AccountQuota,
    databases: String,
    user: Adjustments<UserSettings>,
    vessel: Adjustments<VesselSettings>,
    consignment: Adjustments<ConsignmentSettings>,
}

impl ClusterBuilder {
    /// Vessels and consignments in `store`'s kind of database (PostgreSQL
    /// unless told).
    pub fn store(mut self, store: StoreKind) -> Self {
        self.store = store;
        self
    }

    /// vessel-service caps each account at `quota` ([`settings::UNCAPPED`]
    /// unless told).
    pub fn quota(mut self, quota: AccountQuota) -> Self {
        self.quota = quota;
        self
    }

    /// The fresh databases are named `<prefix>_users`, `<prefix>_vessels`
    /// and `<prefix>_consignments` (`e2e_…` unless told).
    pub fn databases(mut self, prefix: &str) -> Self {
        self.databases = prefix.to_owned();
        self
    }

    /// Changes a service's settings (after the harness's own): user-,
    /// vessel- or consignment-service's, as the closure's argument says,
    /// e.g. `.settings(|vessels: &mut VesselSettings| vessels.serve.discovery = …)`.
    pub fn settings<S: ServiceSettings>(
        mut self,
        adjust: impl FnOnce(&mut S) + Send + 'static,
    ) -> Self {
        S::adjustments(&mut self).0.push(Box::new(adjust));
        self
    }

    /// Starts the three services and waits until each is serving.
    pub async fn start(self) -> Cluster {
        init_test_logging();
        let prefix = &self.databases;
        let (key_pem, key_file) = signing_key();

        let mut user_settings =
            settings::user(fresh_postgres_database(&format!("{prefix}_users")).await);
        user_settings.jwt_signing_key_file = Some(key_file);
        self.user.apply(&mut user_settings);
        let (user_addr, user_shutdown) = spawn::user_service(&user_settings).await;

        let vessel_database = self
            .store
            .fresh_database(&format!("{prefix}_vessels"))
            .await;
        let mut vessel_settings =
            settings::vessel(vessel_database.clone(), format!("http://{user_addr}"));
        vessel_settings.account_max_containers = self.quota.containers;
        vessel_settings.account_max_weight = self.quota.weight;
        self.vessel.apply(&mut vessel_settings);
        let (vessel_addr, vessel_shutdown) =
            spawn::vessel_service_with_settings(&vessel_settings).await;

        let consignment_database = self
            .store
            .fresh_database(&format!("{prefix}_consignments"))
            .await;
        let mut consignment_settings = settings::consignment(
            consignment_database.clone(),
            format!("http://{vessel_addr}"),
            format!("http://{user_addr}"),
        );
        self.consignment.apply(&mut consignment_settings);
        let (consignment_addr, consignment_shutdown) =
            spawn::consignment_service_with_settings(&consignment_settings).await;

        for address in [user_addr, vessel_addr, consignment_addr] {
            wait_for_health(&spawn::channel(address), ServingStatus::Serving).await;
        }
        user_settings.serve.listen_addr = user_addr;
        Cluster {
            user_settings,
            users: spawn::channel(user_addr),
            vessels: spawn::channel(vessel_addr),
            shipping: spawn::channel(consignment_addr),
            shipping_addr: consignment_addr,
            key_pem,
            user_shutdown,
            vessel_shutdown,
            consignment_shutdown,
            vessel_database,
            consignment_database,
            user_addr,
            vessel_addr,
        }
    }
}

impl Cluster {
    /// A cluster as [`ClusterBuilder`] is told: vessels and consignments in
    /// PostgreSQL, no account capped, unless changed. (Discovery, like any
    /// other setting, is an extra setting: [`ClusterBuilder::settings`].)
    pub fn builder() -> ClusterBuilder {
        ClusterBuilder {
            store: StoreKind::Postgres,
            quota: settings::UNCAPPED,
            databases: "e2e".to_owned(),
            user: Adjustments(Vec::new()),
            vessel: Adjustments(Vec::new()),
            consignment: Adjustments(Vec::new()),
        }
    }

    /// Vessels and consignments in PostgreSQL, nothing changed.
    pub async fn start() -> Self {
        Self::builder().start().await
    }

    pub fn shipping(&self) -> ShippingServiceClient<Channel> {
        ShippingServiceClient::new(self.shipping.clone())
    }

    /// Creates a user, logs in, returns (id, token).
    pub async fn user(&self, email: &str) -> (String, String) {
        let id = crate::create_user(self.users.clone(), "Someone", email).await;
        (id, crate::login(self.users.clone(), email).await)
    }

    /// Creates a vessel as the administrator.
    pub async fn create_vessel(&self, capacity: i32, max_weight: i32) {
        let (_, token) = self.user(ADMIN).await;
        let vessel = Vessel {
            name: "Test Vessel".into(),
            capacity,
            max_weight,
            ..Default::default()
        };
        VesselServiceClient::new(self.vessels.clone())
            .create(bearer(vessel, &token))
            .await
            .expect("an admin creates a vessel");
    }

    /// A consignment-service process (the real binary, to be killed) on a
    /// fresh PostgreSQL database named after `name`, wired to this cluster,
    /// with `extra` settings; and that database, for a test to hold its
    /// tables. The database notices a dead client even while its statement
    /// waits, so a killed process leaves no statement running.
    pub async fn consignment_process(
        &self,
        name: &str,
        extra: &[(&str, String)],
    ) -> (ServiceProcess, SecretUrl) {
        let database = fresh_postgres_database(name).await;
        let url = format!(
            "{}?options=-c%20client_connection_check_interval%3D100",
            database.expose()
        );
        let mut env = vec![
            ("DATABASE_URL", url),
            ("VESSEL_SERVICE_URL", format!("http://{}", self.vessel_addr)),
            ("USER_SERVICE_URL", format!("http://{}", self.user_addr)),
        ];
        env.extend(extra.iter().cloned());
        let process = ServiceProcess::start("consignment-service", &env).await;
        (process, database)
    }

    /// Restarts user-service on the same address with a new signing key,
    /// keeping the old one for verification (a key rotation).
    pub async fn rotate_user_key(&mut self) {
        self.user_shutdown.trigger();
        let key_file = self.user_settings.jwt_signing_key_file.clone().unwrap();
        let rotated = tokens::generate_pem(1).unwrap() + self.key_pem.expose();
        std::fs::write(&key_file, rotated).unwrap();
        let mut app = None;
        for _ in 0..50 {
            // The old server lets go of the port once it has stopped.
            match UserApp::build(&self.user_settings).await {
                Ok(built) => {
                    app = Some(built);
                    break;
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
        self.user_shutdown = Shutdown::new();
        tokio::spawn(
            app.expect("user-service restarts")
                .run(self.user_shutdown.clone()),
        );
        wait_for_health(&self.users, ServingStatus::Serving).await;
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.user_shutdown.trigger();
        self.vessel_shutdown.trigger();
        self.consignment_shutdown.trigger();
    }
}
