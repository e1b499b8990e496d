//! consignment-service's settings: flags that also read the environment.

use std::net::SocketAddr;

use shippy_service::{discovery::DiscoveryArgs, settings::SecretUrl};

/// What consignment-service needs to run.
#[derive(Debug, Clone, clap::Args)]
pub struct Settings {
    /// Where the gRPC server listens.
    #[arg(long, env = "LISTEN_ADDR", default_value = "0.0.0.0:50051")]
    pub listen_addr: SocketAddr,

    /// The consignment store: `postgres://user:password@host:5432/db` or
    /// `mongodb://host:27017/db`, chosen by the scheme.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: SecretUrl,

    /// vessel-service's address when Consul is not configured:
    /// `http://host:port`, or `dns:///name:port` to balance across every
    /// address the name resolves to (e.g. a Kubernetes headless Service),
    /// resolved again every 5 s.
    #[arg(
        long,
        env = "VESSEL_SERVICE_URL",
        default_value = "http://127.0.0.1:50052"
    )]
    pub vessel_service_url: String,

    /// user-service's address (for the public keys that verify tokens);
    /// `http://host:port` or `dns:///name:port`, as for vessel-service.
    #[arg(
        long,
        env = "USER_SERVICE_URL",
        default_value = "http://127.0.0.1:50053"
    )]
    pub user_service_url: String,

    /// Where Prometheus scrapes `/metrics`.
    #[arg(long, env = "METRICS_ADDR", default_value = "0.0.0.0:9151")]
    pub metrics_addr: SocketAddr,

    /// Service discovery: Consul, or static addresses.
    #[command(flatten)]
    pub discovery: DiscoveryArgs,
}
