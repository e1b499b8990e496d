//! Verifying callers' tokens locally, with the public keys user-service
//! hands out (`GetPublicKeys`): what every service but user-service itself
//! uses (consignment-service for every call, vessel-service for `Create`).
//!
//! The keys are fetched at start (retried until user-service answers) and
//! again when a token names an unknown `kid` (user-service rotated its key).
//! Those refetches happen at most once per [`REFRESH_INTERVAL`], so a flood
//! of forged `kid`s cannot turn into a flood of calls; requests that arrive
//! during a refetch wait for it and then use the new keys. No request waits
//! on user-service otherwise.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use crate::{Claims, KeySet, TokenError, VerifiedTokens, token_from_metadata, token_kid};
use shippy_proto::user::v1::{GetPublicKeysRequest, user_service_client::UserServiceClient};
use shippy_service::telemetry::propagation::TraceInterceptor;
use shippy_service::{
    ApiError, Shutdown,
    retry::{self, Backoff},
};
use tokio::sync::{Mutex, RwLock};
use tonic::{Request, service::interceptor::InterceptedService, transport::Channel};

/// The shortest time between two fetches of the keys.
pub const REFRESH_INTERVAL: Duration = Duration::from_secs(1);

/// The keys could not be fetched.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// user-service did not answer.
    #[error("user-service did not hand out its keys: {0}")]
    Call(#[from] tonic::Status),
    /// It answered keys this service cannot use.
    #[error(transparent)]
    Keys(#[from] crate::InvalidKey),
}

/// Verifies tokens with user-service's public keys, kept up to date.
#[derive(Debug, Clone)]
pub struct Authenticator {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    client: UserServiceClient<InterceptedService<Channel, TraceInterceptor>>,
    keys: RwLock<KeySet>,
    verified: VerifiedTokens,
    /// When an unknown `kid` last made us refetch; also serialises refetches.
    last_refresh: Mutex<Option<Instant>>,
}

impl Authenticator {
    /// An authenticator that fetches keys through `channel` (to user-service).
    pub fn new(channel: Channel) -> Self {
        Self {
            inner: Arc::new(Inner {
                client: UserServiceClient::with_interceptor(channel, TraceInterceptor),
                keys: RwLock::new(KeySet::default()),
                verified: VerifiedTokens::new(),
                last_refresh: Mutex::new(None),
            }),
        }
    }

    /// Fetches the keys, retrying with backoff until user-service answers or
    /// `shutdown` fires.
    pub async fn fetch_until_ready(&self, shutdown: &Shutdown) {
        let fetched = retry::until_ready(
            "user-service's token keys",
            Backoff::default(),
            shutdown,
            || self.fetch(),
        )
        .await;
        if let Some(count) = fetched {
            tracing::info!(keys = count, "token keys fetched from user-service");
        }
    }

    /// Fetches the keys unless some are held already; how many are held.
    /// For readiness: a service that verifies tokens is not ready without.
    pub async fn ensure_keys(&self) -> Result<usize, FetchError> {
        let held = self.inner.keys.read().await.len();
        if held > 0 {
            return Ok(held);
        }
        self.fetch().await
    }

    async fn fetch(&self) -> Result<usize, FetchError> {
        let answer = self
            .inner
            .client
            .clone()
            .get_public_keys(GetPublicKeysRequest {})
            .await?
            .into_inner();
        let keys = KeySet::from_proto(&answer)?;
        let count = keys.len();
        *self.inner.keys.write().await = keys;
        Ok(count)
    }

    /// Refetches unless that happened less than [`REFRESH_INTERVAL`] ago.
    async fn refresh(&self) {
        let mut last = self.inner.last_refresh.lock().await;
        if last.is_some_and(|at| at.elapsed() < REFRESH_INTERVAL) {
            return;
        }
        *last = Some(Instant::now());
        match self.fetch().await {
            Ok(count) => tracing::info!(keys = count, "token keys refetched for an unknown kid"),
            Err(error) => tracing::warn!(%error, "cannot refetch token keys"),
        }
    }

    /// The verified claims of the token `request` carries, if they hold
    /// the [`crate::ADMIN_ROLE`]: no token is `UNAUTHENTICATED`, another
    /// user's token `PERMISSION_DENIED`.
    pub async fn authenticate_admin<T>(
        &self,
        request: &Request<T>,
        what: &str,
    ) -> Result<Claims, ApiError> {
        let claims = self.authenticate(request).await?;
        if !claims.is_admin() {
            return Err(ApiError::PermissionDenied(format!(
                "{what} is for admins (accounts listed in user-service's ADMIN_EMAILS)"
            )));
        }
        Ok(claims)
    }

    /// The verified claims of the token `request` carries.
    pub async fn authenticate<T>(&self, request: &Request<T>) -> Result<Claims, ApiError> {
        let token = token_from_metadata(request.metadata()).map_err(unauthenticated)?;
        self.verify(&token).await
    }

    /// The verified claims of `token` (remembered for a while: a client
    /// sends the same token with every request).
    pub async fn verify(&self, token: &str) -> Result<Claims, ApiError> {
        let kid = token_kid(token).map_err(unauthenticated)?;
        if !self.inner.keys.read().await.contains(&kid) {
            self.refresh().await;
        }
        let keys = self.inner.keys.read().await;
        if keys.is_empty() {
            return Err(ApiError::Unavailable {
                message: "cannot verify tokens yet: user-service has not handed out its keys; retry shortly"
                    .into(),
                source: None,
            });
        }
        self.inner
            .verified
            .verify(&keys, token)
            .map_err(unauthenticated)
    }
}

fn unauthenticated(error: TokenError) -> ApiError {
    ApiError::Unauthenticated(error.to_string())
}
