//! consignment-service's settings: flags that also read the environment.
//! A bare `long, env` takes both names from the field: `--listen-addr` and
//! `LISTEN_ADDR` for `listen_addr`.

use shippy_auth::{remote::TokenKeys, service::ServiceToken};
use shippy_service::{
    base::{Serve, ports},
    settings::StoreUrl,
};

/// What consignment-service needs to run.
#[derive(Debug, Clone, clap::Args)]
pub struct Settings {
    /// Where consignments are kept (`DATABASE_URL`).
    #[command(flatten)]
    pub store: StoreUrl,

    /// vessel-service's address when Consul is not configured:
    /// `http://host:port`, or `dns:///name:port` to balance across every
    /// address the name resolves to (e.g. a Kubernetes headless Service),
    /// resolved again every 5 s.
    #[arg(long, env, default_value = "http://127.0.0.1:50052")]
    pub vessel_service_url: String,

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

    /// Where the keys that verify callers' tokens come from
    /// (`USER_SERVICE_URL`, `KEYS_REFRESH_INTERVAL`).
    #[command(flatten)]
    pub keys: TokenKeys,

    /// Where it listens, and how it finds its peers: the flags every
    /// service has.
    #[command(flatten)]
    pub serve: Serve<ports::Consignment>,
}
