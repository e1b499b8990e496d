//! The signing keys in a Consul KV value: read (blocking queries, as the
//! seed follows its config) and written with check-and-set.

use std::time::Duration;

use rs_consul::{Consul, ConsulError, CreateOrUpdateKeyRequest, ReadKeyRequest};
use shippy_service::{discovery::DiscoveryArgs, settings::Secret};

/// How long one blocking query waits for a change.
pub const WAIT: Duration = Duration::from_secs(30);
/// How long a read or write may take beyond the blocking wait.
const TIMEOUT: Duration = Duration::from_secs(10);

/// A KV call failed; the message is safe to log (Consul's words escaped).
#[derive(Debug, thiserror::Error)]
pub enum KvError {
    /// No Consul agent is configured.
    #[error("JWT_SIGNING_KEYS_CONSUL_KEY needs CONSUL_HTTP_ADDR (the Consul agent holding it)")]
    NoAgent,
    /// The key name is not a plain KV path.
    #[error(
        "JWT_SIGNING_KEYS_CONSUL_KEY {0} is not a Consul KV key (letters, digits, `/`, `_`, `-`, `.`; e.g. `shippy/jwt/signing-keys`)"
    )]
    BadKey(String),
    /// The key does not exist.
    #[error(
        "Consul KV key {0} does not exist: put the signing keys there, e.g. `user-service keys rotate --consul-key {0}` (with a token that may write it)"
    )]
    Missing(String),
    /// The key holds no value.
    #[error("Consul KV key {0} is empty")]
    Empty(String),
    /// Consul refused the read for want of permission.
    #[error(
        "Consul refused to read or write KV key {0} (403): CONSUL_HTTP_TOKEN's policy needs `key_prefix \"shippy/jwt/\" {{ policy = \"read\" }}` (\"write\" for `keys` commands)"
    )]
    Forbidden(String),
    /// Someone else changed the key between our read and our write.
    #[error("Consul KV key {0} changed meanwhile; run the command again")]
    Conflict(String),
    /// Anything else: unreachable, timed out, a bad answer.
    #[error("Consul KV key {key}: {reason}")]
    Failed {
        /// The key.
        key: String,
        /// What went wrong (escaped).
        reason: String,
    },
}

/// A value read, and the index to wait on for its next change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Value {
    /// The text.
    pub text: String,
    /// Consul's `ModifyIndex` of the key.
    pub index: u64,
}

/// One KV key at one Consul agent.
#[derive(Clone)]
pub struct KvKey {
    consul: std::sync::Arc<Consul>,
    key: String,
}

impl std::fmt::Debug for KvKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KvKey").field("key", &self.key).finish()
    }
}

impl KvKey {
    /// `key` at the agent `discovery` names (with its ACL token).
    pub fn new(key: &str, discovery: &DiscoveryArgs) -> Result<Self, KvError> {
        Self::at(
            key,
            discovery.consul_http_addr.as_deref(),
            discovery.consul_http_token.as_ref(),
        )
    }

    /// `key` at the agent at `address` (`127.0.0.1:8500` or `http://…`).
    pub fn at(key: &str, address: Option<&str>, token: Option<&Secret>) -> Result<Self, KvError> {
        let address = address
            .filter(|address| !address.is_empty())
            .ok_or(KvError::NoAgent)?;
        let valid = !key.is_empty()
            && key.len() <= 256
            && !key.starts_with('/')
            && key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '_' | '-' | '.'));
        if !valid {
            return Err(KvError::BadKey(shippy_service::text::excerpt(key)));
        }
        let base = if address.contains("://") {
            address.trim_end_matches('/').to_owned()
        } else {
            format!("http://{}", address.trim_end_matches('/'))
        };
        let consul = Consul::new(rs_consul::Config {
            address: base,
            token: token.map(|token| token.expose().to_owned()),
            ..Default::default()
        });
        Ok(Self {
            consul: std::sync::Arc::new(consul),
            key: key.to_owned(),
        })
    }

    /// The key's name.
    pub fn name(&self) -> &str {
        &self.key
    }

    /// The value now (`after` None), or once its index passes `after` (at
    /// most [`WAIT`] later: then the same value again).
    pub async fn read(&self, after: Option<u64>) -> Result<Value, KvError> {
        let request = ReadKeyRequest {
            key: &self.key,
            index: after,
            wait: WAIT,
            ..Default::default()
        };
        let answer = tokio::time::timeout(WAIT + TIMEOUT, self.consul.read_key(request))
            .await
            .map_err(|_| self.failed("Consul did not answer in time"))?
            .map_err(|error| self.error(&error))?;
        let entry = answer
            .response
            .into_iter()
            .find(|entry| entry.key == self.key)
            .ok_or_else(|| KvError::Missing(self.key.clone()))?;
        let text = entry.value.unwrap_or_default();
        if text.trim().is_empty() {
            return Err(KvError::Empty(self.key.clone()));
        }
        Ok(Value {
            text,
            index: u64::try_from(entry.modify_index)
                .unwrap_or(0)
                .max(answer.index),
        })
    }

    /// Writes `text` if the key is still at `index` (0: only if it does not
    /// exist yet).
    pub async fn write(&self, text: &str, index: u64) -> Result<(), KvError> {
        let request = CreateOrUpdateKeyRequest {
            key: &self.key,
            check_and_set: Some(i64::try_from(index).unwrap_or(i64::MAX)),
            ..Default::default()
        };
        let written = tokio::time::timeout(
            TIMEOUT,
            self.consul
                .create_or_update_key(request, text.as_bytes().to_vec()),
        )
        .await
        .map_err(|_| self.failed("Consul did not answer in time"))?
        .map_err(|error| self.error(&error))?
        .0;
        if !written {
            return Err(KvError::Conflict(self.key.clone()));
        }
        Ok(())
    }

    fn failed(&self, reason: &str) -> KvError {
        KvError::Failed {
            key: self.key.clone(),
            reason: reason.to_owned(),
        }
    }

    fn error(&self, error: &ConsulError) -> KvError {
        match error {
            ConsulError::UnexpectedResponseCode(status, _) if status.as_u16() == 404 => {
                KvError::Missing(self.key.clone())
            }
            ConsulError::UnexpectedResponseCode(status, _) if status.as_u16() == 403 => {
                KvError::Forbidden(self.key.clone())
            }
            other => self.failed(&shippy_service::text::excerpt(
                &shippy_service::error::chain(other),
            )),
        }
    }
}
