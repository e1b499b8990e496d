//! user-service's settings: flags that also read the environment.
//! A bare `long, env` takes both names from the field: `--listen-addr` and
//! `LISTEN_ADDR` for `listen_addr`.

use std::path::PathBuf;

use shippy_service::{
    base::{Serve, ports},
    nats,
    settings::SecretUrl,
};

/// What user-service needs to run.
#[derive(Debug, Clone, clap::Args)]
pub struct Settings {
    /// The user database: `postgres://user:password@host:5432/users`.
    #[arg(long, env, hide_env_values = true)]
    pub database_url: SecretUrl,

    /// The NATS server `user.created` events go to.
    #[arg(long, env, default_value = nats::DEFAULT_URL, hide_env_values = true)]
    pub nats_url: SecretUrl,

    /// PEM file of Ed25519 PKCS#8 private keys: the first signs tokens, the
    /// others (older or next keys) verify too. Read again when it changes
    /// (checked every second) and on SIGHUP; a bad file changes nothing.
    /// Missing (its directory exists): created with one new key and kept.
    /// Unset (and no JWT_SIGNING_KEYS_CONSUL_KEY): a fresh key per start.
    #[arg(long, env)]
    pub jwt_signing_key_file: Option<PathBuf>,

    /// How long a token is valid, e.g. `24h`, `30m`.
    #[arg(long, env, default_value = "24h")]
    pub jwt_ttl: humantime::Duration,

    /// bcrypt cost (4–31); each step doubles the time a hash takes.
    #[arg(long, env, default_value_t = 12,
          value_parser = clap::value_parser!(u32).range(4..=31))]
    pub bcrypt_cost: u32,

    /// The JetStream stream that keeps user events.
    #[arg(long, env = "USER_EVENTS_STREAM", default_value = "USERS")]
    pub events_stream: String,

    /// The subject `user.created` events are published on.
    #[arg(long, env, default_value = shippy_proto::events::USER_CREATED_SUBJECT)]
    pub user_created_subject: String,

    /// Emails of administrators, comma-separated: their tokens carry the
    /// `admin` role (list users, read any profile, create vessels).
    #[arg(long, env, value_delimiter = ',', num_args = 0..)]
    pub admin_emails: Vec<String>,

    /// Failed-login throttling.
    #[command(flatten)]
    pub login: crate::throttle::LoginLimits,

    /// The signing keys in Consul KV, instead of JWT_SIGNING_KEY_FILE.
    #[command(flatten)]
    pub keys: crate::keys::KeySourceArgs,

    /// Where it listens, and how it finds its peers: the flags every
    /// service has.
    #[command(flatten)]
    pub serve: Serve<ports::User>,
}
