//! vessel-service's settings: flags that also read the environment.
//! A bare `long, env` takes both names from the field: `--listen-addr` and
//! `LISTEN_ADDR` for `listen_addr`.

use shippy_auth::{remote::TokenKeys, service::ServiceToken};
use shippy_service::{
    base::{Serve, ports},
    settings::StoreUrl,
};

use crate::domain::AccountQuota;

/// What vessel-service needs to run.
#[derive(Debug, Clone, clap::Args)]
pub struct Settings {
    /// Where vessels and reservations are kept (`DATABASE_URL`).
    #[command(flatten)]
    pub store: StoreUrl,

    /// The secret consignment-service sends with `Reserve`, `Confirm` and
    /// `Release` (at least 32 characters; the same on both). Unset: those
    /// calls are refused (PERMISSION_DENIED), so nothing can be shipped.
    #[arg(long, env, hide_env_values = true)]
    pub service_token: Option<ServiceToken>,

    /// How long a reservation holds its room unless confirmed (e.g. `120s`):
    /// the room of a consignment-service that died mid-way comes back after
    /// this.
    #[arg(long, env, default_value = "120s")]
    pub reservation_ttl: humantime::Duration,

    /// How often held reservations whose time is up are looked for.
    #[arg(long, env, default_value = "5s")]
    pub reservation_sweep_interval: humantime::Duration,

    /// The most containers one account may hold across the fleet, held and
    /// confirmed reservations together (default: a quarter of the seed
    /// fleet's 1 700).
    #[arg(
        long,
        env,
        default_value_t = AccountQuota::DEFAULT.containers,
        value_parser = clap::value_parser!(i64).range(1..)
    )]
    pub account_max_containers: i64,

    /// The most kilograms one account may hold across the fleet, held and
    /// confirmed reservations together (default: a quarter of the seed
    /// fleet's 800 000 kg).
    #[arg(
        long,
        env,
        default_value_t = AccountQuota::DEFAULT.weight,
        value_parser = clap::value_parser!(i64).range(1..)
    )]
    pub account_max_weight: i64,

    /// Where the keys that verify the administrators' tokens `Create` needs
    /// come from (`USER_SERVICE_URL`, `KEYS_REFRESH_INTERVAL`).
    #[command(flatten)]
    pub keys: TokenKeys,

    /// Where it listens, and how it finds its peers: the flags every
    /// service has.
    #[command(flatten)]
    pub serve: Serve<ports::Vessel>,
}

impl Settings {
    /// The per-account cap these settings give.
    pub fn account_quota(&self) -> AccountQuota {
        AccountQuota {
            containers: self.account_max_containers,
            weight: self.account_max_weight,
        }
    }
}
