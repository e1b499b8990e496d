//! Where the signing keys come from, and following them while the service
//! runs: `JWT_SIGNING_KEY_FILE` (checked every second and at once on
//! `SIGHUP`, so an atomic rename, an edit in place and a Kubernetes Secret's
//! symlink swap are all seen) or `JWT_SIGNING_KEYS_CONSUL_KEY` (a Consul KV
//! value followed with blocking queries). A source that cannot be read,
//! is empty or holds a bad key changes nothing: the last good ring stays,
//! one line is logged per change of the source, and
//! `signing_key_reload_failures_total` counts it. `admin` is the
//! operator's `user-service keys …` command.

pub mod admin;
pub mod consul;
mod watch;

use std::{path::PathBuf, time::Duration};

use shippy_service::{discovery::DiscoveryArgs, metrics::Metrics};

pub use watch::{Hangups, follow};

use crate::tokens::{KeyError, Ring, TokenSigner};

/// How often the key file is read again.
pub const FILE_CHECK_INTERVAL: Duration = Duration::from_secs(1);
/// How long the first read of a Consul KV key is retried at start.
const CONSUL_START_ATTEMPTS: u32 = 15;

/// Where the keys come from, besides `JWT_SIGNING_KEY_FILE`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct KeySourceArgs {
    /// A Consul KV key (e.g. `shippy/jwt/signing-keys`) holding the signing
    /// keys as PEM blocks (the first signs), followed live with blocking
    /// queries; read with CONSUL_HTTP_ADDR and CONSUL_HTTP_TOKEN. The
    /// alternative to JWT_SIGNING_KEY_FILE.
    #[arg(
        long = "jwt-signing-keys-consul-key",
        env = "JWT_SIGNING_KEYS_CONSUL_KEY",
        conflicts_with = "jwt_signing_key_file"
    )]
    pub consul_key: Option<String>,
}

/// The key source of a running service.
#[derive(Debug, Clone)]
pub enum KeySource {
    /// One key made at start; nothing to follow.
    Generated,
    /// A PEM file.
    File(PathBuf),
    /// A Consul KV key.
    Consul(consul::KvKey),
}

/// The keys could not be loaded at start.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The keys themselves.
    #[error(transparent)]
    Keys(#[from] KeyError),
    /// Consul's KV store.
    #[error(transparent)]
    Kv(#[from] consul::KvError),
}

impl KeySource {
    /// The source the settings name.
    pub fn new(
        file: Option<&std::path::Path>,
        args: &KeySourceArgs,
        discovery: &DiscoveryArgs,
    ) -> Result<Self, SourceError> {
        Ok(match (&args.consul_key, file) {
            (Some(key), _) => Self::Consul(consul::KvKey::new(key, discovery)?),
            (None, Some(path)) => Self::File(path.to_owned()),
            (None, None) => Self::Generated,
        })
    }

    /// The signer with the source's keys now: a missing key file in an
    /// existing directory is created with one key; a Consul key is read
    /// (retried for a while if Consul does not answer, not if it says the
    /// key is missing or bad).
    pub async fn load(&self, ttl: Duration) -> Result<TokenSigner, SourceError> {
        match self {
            Self::Generated => Ok(TokenSigner::load(None, ttl)?),
            Self::File(path) => Ok(TokenSigner::load(Some(path), ttl)?),
            Self::Consul(kv) => {
                let mut attempt = 0;
                let value = loop {
                    attempt += 1;
                    match kv.read(None).await {
                        Ok(value) => break value,
                        Err(error @ consul::KvError::Failed { .. })
                            if attempt < CONSUL_START_ATTEMPTS =>
                        {
                            tracing::warn!(%error, "cannot read the signing keys yet; retrying");
                            tokio::time::sleep(Duration::from_secs(1)).await;
                        }
                        Err(error) => return Err(error.into()),
                    }
                };
                let ring = Ring::parse(&value.text, &kv_source(kv.name()))?;
                Ok(TokenSigner::new(ring, ttl))
            }
        }
    }
}

/// How a Consul key is named in errors.
pub fn kv_source(key: &str) -> String {
    format!("Consul KV key {key}")
}

/// Counts sources that could not be used.
pub fn failures_counter(metrics: &Metrics) -> prometheus_client::metrics::counter::Counter {
    metrics.counter(
        "signing_key_reload_failures",
        "Changes of the signing key source (JWT_SIGNING_KEY_FILE or JWT_SIGNING_KEYS_CONSUL_KEY) that could not be used: the last good keys stayed",
    )
}
