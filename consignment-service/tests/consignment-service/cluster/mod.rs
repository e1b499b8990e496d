//! A whole cluster for tests: user-, vessel- and consignment-service
//! in-process on random ports, each with its own fresh database (users in
//! PostgreSQL; vessels and consignments in PostgreSQL or MongoDB), user
//! events on the test NATS. Shared by consignment-service's end-to-end tests
//! and consignment-cli's tests (through `#[path]`).
#![allow(dead_code, clippy::expect_used, clippy::unwrap_used)]

use std::{net::SocketAddr, time::Duration};

use consignment_service::{
    app::Application as ConsignmentApp, settings::Settings as ConsignmentSettings,
};
use shippy_proto::{
    consignment::v1::shipping_service_client::ShippingServiceClient,
    user::v1::{User, user_service_client::UserServiceClient},
};
use shippy_service::{
    Shutdown,
    discovery::{CallTimeouts, static_channel},
    settings::SecretUrl,
};
use shippy_testkit::{
    StoreKind, fresh_postgres_database, infra_var, init_test_logging, wait_for_health,
};
use tonic::transport::Channel;
use tonic_health::pb::health_check_response::ServingStatus;
use user_service::{app::Application as UserApp, settings::Settings as UserSettings, tokens};
use vessel_service::{
    app::Application as VesselApp, domain::AccountQuota, settings::Settings as VesselSettings,
};

pub const PASSWORD: &str = "correct horse battery";
/// The cluster's administrator (`ADMIN_EMAILS`).
pub const ADMIN: &str = "admin@example.com";

pub struct Cluster {
    pub user_settings: UserSettings,
    pub users: Channel,
    pub vessels: Channel,
    pub shipping: Channel,
    /// The address consignment-service listens on.
    pub shipping_addr: std::net::SocketAddr,
    pub key_pem: String,
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

/// A per-account cap no test reaches by accident: tests of the fleet's room
/// (and of big consignments) let one account take all of it. The cap's own
/// tests start the cluster with [`AccountQuota::DEFAULT`].
pub const UNCAPPED: AccountQuota = AccountQuota {
    containers: 1 << 40,
    weight: 1 << 50,
};

/// Starts vessel-service on `database_url` (verifying tokens with the keys
/// of the user-service at `user_addr`) without waiting for it to serve.
pub async fn spawn_vessel_service(
    database_url: SecretUrl,
    user_addr: SocketAddr,
) -> (SocketAddr, Shutdown) {
    spawn_vessel_service_with(database_url, user_addr, UNCAPPED, Default::default()).await
}

/// [`spawn_vessel_service`] with the per-account cap `quota`, refetching
/// user-service's keys as `keys` says.
pub async fn spawn_vessel_service_with(
    database_url: SecretUrl,
    user_addr: SocketAddr,
    quota: AccountQuota,
    keys: shippy_auth::remote::KeyRefresh,
) -> (SocketAddr, Shutdown) {
    let app = VesselApp::build(&VesselSettings {
        listen_addr: "127.0.0.1:0".parse().unwrap(),
        database_url,
        user_service_url: format!("http://{user_addr}"),
        service_token: Some(shippy_testkit::SERVICE_TOKEN.parse().unwrap()),
        reservation_ttl: shippy_testkit::RESERVATION_TTL.into(),
        reservation_sweep_interval: Duration::from_millis(100).into(),
        account_max_containers: quota.containers,
        account_max_weight: quota.weight,
        metrics_addr: "127.0.0.1:0".parse().unwrap(),
        discovery: Default::default(),
        keys,
    })
    .await
    .unwrap();
    let address = app.local_addr().unwrap();
    let shutdown = Shutdown::new();
    tokio::spawn(app.run(shutdown.clone()));
    (address, shutdown)
}

/// Starts consignment-service on `database_url`, calling the vessel- and
/// user-service at these addresses, without waiting for it to serve.
pub async fn spawn_consignment_service(
    database_url: SecretUrl,
    vessel_addr: SocketAddr,
    user_addr: SocketAddr,
) -> (SocketAddr, Shutdown) {
    spawn_consignment_service_at(
        database_url,
        format!("http://{vessel_addr}"),
        format!("http://{user_addr}"),
        Default::default(),
    )
    .await
}

/// Starts consignment-service on `database_url`, finding the vessel- and
/// user-service at these URLs (`http://…` or `dns:///…`), refetching
/// user-service's keys as `keys` says.
pub async fn spawn_consignment_service_at(
    database_url: SecretUrl,
    vessel_service_url: String,
    user_service_url: String,
    keys: shippy_auth::remote::KeyRefresh,
) -> (SocketAddr, Shutdown) {
    let app = ConsignmentApp::build(&ConsignmentSettings {
        listen_addr: "127.0.0.1:0".parse().unwrap(),
        database_url,
        vessel_service_url,
        user_service_url,
        service_token: Some(shippy_testkit::SERVICE_TOKEN.parse().unwrap()),
        recovery_interval: Duration::from_millis(200).into(),
        recovery_after: Duration::from_secs(1).into(),
        metrics_addr: "127.0.0.1:0".parse().unwrap(),
        discovery: Default::default(),
        keys,
    })
    .await
    .unwrap();
    let address = app.local_addr().unwrap();
    let shutdown = Shutdown::new();
    tokio::spawn(app.run(shutdown.clone()));
    (address, shutdown)
}

pub fn channel(address: std::net::SocketAddr) -> Channel {
    static_channel(&format!("http://{address}"), CallTimeouts::default()).unwrap()
}

impl Cluster {
    /// Vessels and consignments in PostgreSQL.
    pub async fn start() -> Self {
        Self::start_on(StoreKind::Postgres).await
    }

    /// Vessels and consignments in `store`'s kind of database.
    pub async fn start_on(store: StoreKind) -> Self {
        Self::start_with(store, UNCAPPED).await
    }

    /// [`Cluster::start_on`], vessel-service capping each account at `quota`.
    pub async fn start_with(store: StoreKind, quota: AccountQuota) -> Self {
        init_test_logging();
        let unique = uuid::Uuid::new_v4().simple().to_string();
        let key_pem = tokens::generate_pem(1).unwrap();
        let key_file = std::env::temp_dir().join(format!("e2e-key-{unique}.pem"));
        std::fs::write(&key_file, &key_pem).unwrap();

        let user_settings = UserSettings {
            listen_addr: "127.0.0.1:0".parse().unwrap(),
            database_url: fresh_postgres_database("e2e_users").await,
            nats_url: infra_var("TEST_NATS_URL").parse().unwrap(),
            jwt_signing_key_file: Some(key_file),
            jwt_ttl: Duration::from_secs(3600).into(),
            bcrypt_cost: 4,
            admin_emails: vec![ADMIN.into()],
            login: Default::default(),
            events_stream: format!("USERS_{unique}"),
            user_created_subject: format!("test.{unique}.user.created"),
            metrics_addr: "127.0.0.1:0".parse().unwrap(),
            discovery: Default::default(),
            keys: Default::default(),
        };
        let user_app = UserApp::build(&user_settings).await.unwrap();
        let user_addr = user_app.local_addr().unwrap();
        let user_shutdown = Shutdown::new();
        tokio::spawn(user_app.run(user_shutdown.clone()));

        let vessel_database = store.fresh_database("e2e_vessels").await;
        let (vessel_addr, vessel_shutdown) = spawn_vessel_service_with(
            vessel_database.clone(),
            user_addr,
            quota,
            Default::default(),
        )
        .await;
        let consignment_database = store.fresh_database("e2e_consignments").await;
        let (consignment_addr, consignment_shutdown) =
            spawn_consignment_service(consignment_database.clone(), vessel_addr, user_addr).await;
        for address in [user_addr, vessel_addr, consignment_addr] {
            wait_for_health(&channel(address), ServingStatus::Serving).await;
        }
        let mut user_settings = user_settings;
        user_settings.listen_addr = user_addr;
        Self {
            user_settings,
            users: channel(user_addr),
            vessels: channel(vessel_addr),
            shipping: channel(consignment_addr),
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

    pub fn shipping(&self) -> ShippingServiceClient<Channel> {
        ShippingServiceClient::new(self.shipping.clone())
    }

    /// Creates a user, logs in, returns (id, token).
    pub async fn user(&self, email: &str) -> (String, String) {
        let mut users = UserServiceClient::new(self.users.clone());
        let id = users
            .create(User {
                name: "Someone".into(),
                email: email.into(),
                password: PASSWORD.into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .user
            .unwrap()
            .id;
        let token = users
            .auth(User {
                email: email.into(),
                password: PASSWORD.into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .token;
        (id, token)
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
    ) -> (shippy_testkit::ServiceProcess, SecretUrl) {
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
        let process = shippy_testkit::ServiceProcess::start("consignment-service", &env).await;
        (process, database)
    }
}

impl Cluster {
    /// Creates a vessel as the administrator.
    pub async fn create_vessel(&self, capacity: i32, max_weight: i32) {
        use shippy_proto::vessel::v1::{Vessel, vessel_service_client::VesselServiceClient};
        let (_, token) = self.user(ADMIN).await;
        let mut request = tonic::Request::new(Vessel {
            name: "Test Vessel".into(),
            capacity,
            max_weight,
            ..Default::default()
        });
        request
            .metadata_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
        VesselServiceClient::new(self.vessels.clone())
            .create(request)
            .await
            .expect("an admin creates a vessel");
    }

    /// Restarts user-service on the same address with a new signing key,
    /// keeping the old one for verification (a key rotation).
    pub async fn rotate_user_key(&mut self) {
        self.user_shutdown.trigger();
        let key_file = self.user_settings.jwt_signing_key_file.clone().unwrap();
        let rotated = tokens::generate_pem(1).unwrap() + &self.key_pem;
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
