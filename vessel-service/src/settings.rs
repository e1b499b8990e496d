//! vessel-service's settings: flags that also read the environment.
//! A bare `long, env` takes both names from the field: `--listen-addr` and
//! `LISTEN_ADDR` for `listen_addr`.

use shippy_auth::service::ServiceToken;
use shippy_service::{
    base::{Ports, Serve},
    settings::SecretUrl,
};

use crate::domain::AccountQuota;

/// What vessel-service needs to run.
#[derive(Debug, Clone, clap::Args)]
pub struct Settings {
    /// The vessel store: `postgres://user:password@host:5432/db` or
    /// `mongodb://host:27017/db`, chosen by the scheme.
    #[arg(long, env, hide_env_values = true)]
    pub database_url: SecretUrl,

    /// user-service's address (for the public keys that verify the admin
    /// tokens `Create` needs).
    #[arg(long, env, default_value = "http://127.0.0.1:50053")]
    pub user_service_url: String,

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

    /// How often the keys that verify tokens are refetched (`KEYS_REFRESH_INTERVAL`).
    #[command(flatten)]
    pub keys: shippy_auth::remote::KeyRefresh,

    /// Where it listens, and how it finds its peers: the flags every
    /// service has.
    #[command(flatten)]
    pub serve: Serve<Settings>,
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

impl Ports for Settings {
    const LISTEN_ADDR: &str = "0.0.0.0:50052";
    const METRICS_ADDR: &str = "0.0.0.0:9152";
}
