//! consignment-service's settings: flags that also read the environment.
//! A bare `long, env` takes both names from the field: `--listen-addr` and
//! `LISTEN_ADDR` for `listen_addr`.

use shippy_auth::service::ServiceToken;
use shippy_service::{
    base::{Ports, Serve},
    settings::SecretUrl,
};

/// What consignment-service needs to run.
#[derive(Debug, Clone, clap::Args)]
pub struct Settings {
    /// The consignment store: `postgres://user:password@host:5432/db` or
    /// `mongodb://host:27017/db`, chosen by the scheme.
    #[arg(long, env, hide_env_values = true)]
    pub database_url: SecretUrl,

    /// vessel-service's address when Consul is not configured:
    /// `http://host:port`, or `dns:///name:port` to balance across every
    /// address the name resolves to (e.g. a Kubernetes headless Service),
    /// resolved again every 5 s.
    #[arg(long, env, default_value = "http://127.0.0.1:50052")]
    pub vessel_service_url: String,

    /// user-service's address (for the public keys that verify tokens);
    /// `http://host:port` or `dns:///name:port`, as for vessel-service.
    #[arg(long, env, default_value = "http://127.0.0.1:50053")]
    pub user_service_url: String,

    /// The secret vessel-service's reservations need (at least 32
    /// characters; the same on both). Unset: vessel-service refuses them,
    /// so no consignment can be placed.
    #[arg(long, env, hide_env_values = true)]
    pub service_token: Option<ServiceToken>,

    /// How often consignments a create or cancel left half-done (the
    /// process died mid-way) are looked for and finished.
    #[arg(long, env, default_value = "10s")]
    pub recovery_interval: humantime::Duration,

    /// How old a half-done consignment must be before the recovery sweep
    /// finishes it: longer than any create takes (the 30 s request timeout),
    /// and well under vessel-service's RESERVATION_TTL.
    #[arg(long, env, default_value = "30s")]
    pub recovery_after: humantime::Duration,

    /// How often the keys that verify tokens are refetched (`KEYS_REFRESH_INTERVAL`).
    #[command(flatten)]
    pub keys: shippy_auth::remote::KeyRefresh,

    /// Where it listens, and how it finds its peers: the flags every
    /// service has.
    #[command(flatten)]
    pub serve: Serve<Settings>,
}

impl Ports for Settings {
    const LISTEN_ADDR: &str = "0.0.0.0:50051";
    const METRICS_ADDR: &str = "0.0.0.0:9151";
}
