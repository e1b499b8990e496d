//! One service in-process on a random port, returned once it listens (not
//! yet serving: wait with [`Running::serving`] or
//! [`shippy_testkit::wait_for_health`] where it matters), as a [`Running`]
//! (or its address and the [`Shutdown`] that stops it).

use std::net::SocketAddr;

use consignment_service::{
    app::Application as ConsignmentApp, settings::Settings as ConsignmentSettings,
};
use shippy_auth::remote::KeyRefresh;
use shippy_service::{
    Shutdown,
    discovery::{CallTimeouts, static_channel},
    server::ServerError,
    settings::SecretUrl,
};
use shippy_testkit::Running;
use tonic::transport::Channel;
use user_service::{app::Application as UserApp, settings::Settings as UserSettings};
use vessel_service::{
    app::Application as VesselApp, domain::AccountQuota, settings::Settings as VesselSettings,
};

use crate::settings;

/// A channel to the gRPC server at `address`.
pub fn channel(address: SocketAddr) -> Channel {
    static_channel(&format!("http://{address}"), CallTimeouts::default()).unwrap()
}

/// A service of this workspace in-process: what [`user`], [`vessel`] and
/// [`consignment`] answer.
pub type Service = Running<ServerError>;

/// Builds `$app` from `$settings` and runs it on a task.
macro_rules! start {
    ($app:ty, $settings:expr) => {{
        let app = <$app>::build($settings).await.expect("the service builds");
        Running::spawn(app.local_addr().unwrap(), |shutdown| app.run(shutdown))
    }};
}

/// Starts user-service with `settings`.
pub async fn user(settings: &UserSettings) -> Service {
    start!(UserApp, settings)
}

/// Starts vessel-service with `settings`.
pub async fn vessel(settings: &VesselSettings) -> Service {
    start!(VesselApp, settings)
}

/// Starts consignment-service with `settings`.
pub async fn consignment(settings: &ConsignmentSettings) -> Service {
    start!(ConsignmentApp, settings)
}

/// Starts user-service with `settings`.
pub async fn user_service(settings: &UserSettings) -> (SocketAddr, Shutdown) {
    user(settings).await.detach()
}

/// Starts vessel-service with `settings`.
pub async fn vessel_service_with_settings(settings: &VesselSettings) -> (SocketAddr, Shutdown) {
    vessel(settings).await.detach()
}

/// Starts consignment-service with `settings`.
pub async fn consignment_service_with_settings(
    settings: &ConsignmentSettings,
) -> (SocketAddr, Shutdown) {
    consignment(settings).await.detach()
}

/// Starts vessel-service on `database_url` (verifying tokens with the keys
/// of the user-service at `user_addr`), no account capped.
pub async fn vessel_service(
    database_url: SecretUrl,
    user_addr: SocketAddr,
) -> (SocketAddr, Shutdown) {
    vessel_service_with(
        database_url,
        user_addr,
        settings::UNCAPPED,
        Default::default(),
    )
    .await
}

/// [`vessel_service`] with the per-account cap `quota`, refetching
/// user-service's keys as `keys` says.
pub async fn vessel_service_with(
    database_url: SecretUrl,
    user_addr: SocketAddr,
    quota: AccountQuota,
    keys: KeyRefresh,
) -> (SocketAddr, Shutdown) {
    let mut settings = settings::vessel(database_url, format!("http://{user_addr}"));
    settings.account_max_containers = quota.containers;
    settings.account_max_weight = quota.weight;
    settings.keys.refresh = keys;
    vessel_service_with_settings(&settings).await
}

/// Starts consignment-service on `database_url`, calling the vessel- and
/// user-service at these addresses.
pub async fn consignment_service(
    database_url: SecretUrl,
    vessel_addr: SocketAddr,
    user_addr: SocketAddr,
) -> (SocketAddr, Shutdown) {
    consignment_service_at(
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
pub async fn consignment_service_at(
    database_url: SecretUrl,
    vessel_service_url: String,
    user_service_url: String,
    keys: KeyRefresh,
) -> (SocketAddr, Shutdown) {
    let mut settings = settings::consignment(database_url, vessel_service_url, user_service_url);
    settings.keys.refresh = keys;
    consignment_service_with_settings(&settings).await
}
