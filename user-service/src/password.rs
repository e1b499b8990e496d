//! bcrypt hashing and verification, off the async runtime.
//!
//! bcrypt is slow on purpose (cost 12: a few hundred milliseconds), so every
//! hash and verify runs on tokio's blocking pool and never stalls the
//! threads that serve other requests. Logging in with an unknown email
//! verifies against a dummy hash of the same cost, so it takes as long as a
//! wrong password and the two cannot be told apart by timing.

use crate::domain::{Password, PasswordHash};

/// Hashing failed (not a wrong password: a fault of ours).
#[derive(Debug, thiserror::Error)]
pub enum HashError {
    /// bcrypt refused (e.g. an invalid cost or a corrupt stored hash).
    #[error("bcrypt failed")]
    Bcrypt(#[from] bcrypt::BcryptError),
    /// The blocking task did not finish.
    #[error("the hashing task failed")]
    Task(#[from] tokio::task::JoinError),
}

/// Hashes and verifies passwords at a fixed bcrypt cost.
#[derive(Debug, Clone)]
pub struct PasswordHasher {
    cost: u32,
    /// A hash of a random password at `cost`, verified when a login names no user.
    dummy: PasswordHash,
}

impl PasswordHasher {
    /// A hasher at `cost` (4 to 31; 12 is bcrypt's default).
    pub async fn new(cost: u32) -> Result<Self, HashError> {
        let random = uuid::Uuid::new_v4().to_string();
        let dummy = tokio::task::spawn_blocking(move || bcrypt::non_truncating_hash(random, cost))
            .await??;
        Ok(Self {
            cost,
            dummy: PasswordHash(dummy),
        })
    }

    /// The bcrypt hash of `password`.
    pub async fn hash(&self, password: Password) -> Result<PasswordHash, HashError> {
        let cost = self.cost;
        let hash = tokio::task::spawn_blocking(move || {
            bcrypt::non_truncating_hash(password.expose(), cost)
        })
        .await??;
        Ok(PasswordHash(hash))
    }

    /// Whether `password` matches `hash`. With no hash (no such user) it
    /// spends the same time and answers `false`.
    pub async fn verify(
        &self,
        password: Password,
        hash: Option<PasswordHash>,
    ) -> Result<bool, HashError> {
        let known = hash.is_some();
        let hash = hash.unwrap_or_else(|| self.dummy.clone());
        let matches = tokio::task::spawn_blocking(move || {
            bcrypt::non_truncating_verify(password.expose(), &hash.0)
        })
        .await??;
        Ok(known && matches)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hashes_verify_and_unknown_users_never_match() {
        let hasher = PasswordHasher::new(4).await.unwrap();
        let password = Password::parse_new("correct horse").unwrap();
        let hash = hasher.hash(password.clone()).await.unwrap();
        assert!(hash.0.starts_with("$2b$04$"), "cost 4 bcrypt");
        assert!(
            hasher
                .verify(password.clone(), Some(hash.clone()))
                .await
                .unwrap()
        );
        let wrong = Password::parse_given("battery staple").unwrap();
        assert!(!hasher.verify(wrong, Some(hash)).await.unwrap());
        assert!(!hasher.verify(password, None).await.unwrap());
    }
}
