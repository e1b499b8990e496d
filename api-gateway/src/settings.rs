//! api-gateway's settings: flags that also read the environment.

use std::net::SocketAddr;

use shippy_service::discovery::DiscoveryArgs;

/// What api-gateway needs to run.
#[derive(Debug, Clone, clap::Args)]
pub struct Settings {
    /// Where the HTTP server (JSON API and web UI) listens.
    #[arg(long, env = "LISTEN_ADDR", default_value = "0.0.0.0:8080")]
    pub listen_addr: SocketAddr,

    /// user-service's address (without Consul).
    #[arg(
        long,
        env = "USER_SERVICE_URL",
        default_value = "http://127.0.0.1:50053"
    )]
    pub user_service_url: String,

    /// consignment-service's address (without Consul).
    #[arg(
        long,
        env = "CONSIGNMENT_SERVICE_URL",
        default_value = "http://127.0.0.1:50051"
    )]
    pub consignment_service_url: String,

    /// vessel-service's address (without Consul).
    #[arg(
        long,
        env = "VESSEL_SERVICE_URL",
        default_value = "http://127.0.0.1:50052"
    )]
    pub vessel_service_url: String,

    /// Where Prometheus scrapes `/metrics`.
    #[arg(long, env = "METRICS_ADDR", default_value = "0.0.0.0:9180")]
    pub metrics_addr: SocketAddr,

    /// Service discovery: Consul, or static addresses.
    #[command(flatten)]
    pub discovery: DiscoveryArgs,
}
