//! Verifying callers' tokens locally, with the public keys user-service
//! hands out (`GetPublicKeys`): what every service but user-service itself
//! uses (consignment-service for every call, vessel-service for `Create`).
//!
//! The keys are fetched at start (retried until user-service answers), again
//! every `KEYS_REFRESH_INTERVAL` ([`KeyRefresh`]) so a key user-service
//! dropped (revoked) stops verifying here within that interval, tokens
//! already remembered as verified included, and again when a token names an
//! unknown `kid` (user-service rotated its key). Refetches for unknown
//! `kid`s happen at most once per [`REFRESH_INTERVAL`], so a flood of forged
//! `kid`s cannot turn into a flood of calls; requests that arrive during a
//! refetch wait for it and then use the new keys. No request waits on
//! user-service otherwise.
//!
//! When user-service cannot be reached, the last keys fetched stay in use,
//! each until its `valid_until` (one `JWT_TTL`, 24 h by default, after
//! user-service last handed it out): by then every token it signed before
//! has expired. After that the key verifies nothing, and with no key left
//! calls are `UNAVAILABLE` until user-service answers again.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use crate::{Claims, KeySet, TokenError, VerifiedTokens, token_from_metadata, token_kid};
use shippy_proto::user::v1::{GetPublicKeysRequest, user_service_client::UserServiceClient};
use shippy_service::telemetry::propagation::TraceInterceptor;
use shippy_service::{
    ApiError, Shutdown,
    discovery::{CallTimeouts, Discovery, InvalidAddress},
    retry::{self, Backoff},
};
use tokio::sync::{Mutex, RwLock};
use tonic::{Request, service::interceptor::InterceptedService, transport::Channel};

/// The shortest time between two fetches of the keys for an unknown `kid`.
pub const REFRESH_INTERVAL: Duration = Duration::from_secs(1);

/// Fetching user-service's keys: connecting, and each call.
pub const KEY_CALLS: CallTimeouts = CallTimeouts {
    connect: Duration::from_secs(1),
    request: Duration::from_secs(3),
};

/// How often the public keys are refetched (`KEYS_REFRESH_INTERVAL`).
#[derive(Debug, Clone, clap::Args)]
pub struct KeyRefresh {
    /// How often user-service's public keys are fetched again, e.g. `30s`: a
    /// key dropped from user-service's key ring (revoked) stops verifying
    /// here within this time (plus user-service's reload).
    #[arg(
        long = "keys-refresh-interval",
        env = "KEYS_REFRESH_INTERVAL",
        default_value_t = KeyRefresh::DEFAULT.into(),
        value_parser = positive_duration
    )]
    pub interval: humantime::Duration,
}

/// Where a service's keys that verify tokens come from: user-service, found
/// by Consul or at `USER_SERVICE_URL`, and fetched again every
/// `KEYS_REFRESH_INTERVAL` ([`Authenticator::discover`]).
#[derive(Debug, Clone, clap::Args)]
pub struct TokenKeys {
    /// user-service's address when Consul is not configured, for the public
    /// keys that verify tokens: `http://host:port`, or `dns:///name:port` to
    /// balance across every address the name resolves to (resolved again
    /// every 5 s).
    #[arg(long, env, default_value = "http://127.0.0.1:50053")]
    pub user_service_url: String,

    /// How often they are fetched again.
    #[command(flatten)]
    pub refresh: KeyRefresh,
}

impl TokenKeys {
    /// The user-service at `user_service_url`, its keys fetched again as
    /// `refresh` says.
    pub fn at(user_service_url: impl Into<String>, refresh: KeyRefresh) -> Self {
        Self {
            user_service_url: user_service_url.into(),
            refresh,
        }
    }
}

impl KeyRefresh {
    /// The default interval.
    pub const DEFAULT: Duration = Duration::from_secs(30);
}

impl Default for KeyRefresh {
    fn default() -> Self {
        Self {
            interval: Self::DEFAULT.into(),
        }
    }
}

/// A duration flag's parser (clap's `value_parser`): a humantime duration
/// above zero (a zero interval or timeout would spin or refuse everything).
/// api-gateway's timeouts use it too.
pub fn positive_duration(text: &str) -> Result<humantime::Duration, String> {
    let duration: humantime::Duration = text.parse().map_err(|error| format!("{error}"))?;
    if duration.is_zero() {
        return Err("must be above zero, e.g. `30s`".into());
    }
    Ok(duration)
}

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
    /// When a refetch for an unknown `kid` last finished; also serialises
    /// those refetches.
    last_refresh: Mutex<Option<Instant>>,
    /// Fetches started so far: each answer is applied only if no fetch
    /// started after it was applied already, so a slow older answer (the
    /// periodic fetch racing a refetch) cannot bring back a revoked key.
    fetches: std::sync::atomic::AtomicU64,
    /// The number of the fetch whose answer the held keys are; guarded by
    /// the `keys` lock.
    applied: std::sync::atomic::AtomicU64,
}

impl Authenticator {
    /// An authenticator that fetches keys through `channel` (to user-service)
    /// and again every `refresh.interval`, for as long as it (or a clone) lives.
    /// Needs a Tokio runtime.
    pub fn new(channel: Channel, refresh: &KeyRefresh) -> Self {
        let inner = Arc::new(Inner {
            client: UserServiceClient::with_interceptor(channel, TraceInterceptor),
            keys: RwLock::new(KeySet::default()),
            verified: VerifiedTokens::new(),
            last_refresh: Mutex::new(None),
            fetches: std::sync::atomic::AtomicU64::new(0),
            applied: std::sync::atomic::AtomicU64::new(0),
        });
        tokio::spawn(refresh_every(
            Arc::downgrade(&inner),
            refresh.interval.into(),
        ));
        Self { inner }
    }

    /// An authenticator on the user-service `discovery` finds (Consul, or
    /// `keys.user_service_url`: `http://host:port` or `dns:///name:port`),
    /// its calls bounded by [`KEY_CALLS`]; the watch behind the channel
    /// stops with `background`.
    pub fn discover(
        discovery: &Discovery,
        keys: &TokenKeys,
        background: &Shutdown,
    ) -> Result<Self, InvalidAddress> {
        let channel = discovery.channel(
            "user-service",
            &keys.user_service_url,
            KEY_CALLS,
            background,
        )?;
        Ok(Self::new(channel, &keys.refresh))
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
        self.inner.fetch().await
    }

    /// Refetches unless one finished less than [`REFRESH_INTERVAL`] ago, or
    /// after this caller began to wait (callers waiting behind a slow
    /// refetch take its answer rather than each asking again).
    async fn refresh(&self) {
        let asked = Instant::now();
        let mut last = self.inner.last_refresh.lock().await;
        if last.is_some_and(|at| at >= asked || at.elapsed() < REFRESH_INTERVAL) {
            return;
        }
        let fetched = self.fetch().await;
        *last = Some(Instant::now());
        match fetched {
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
                message: "cannot verify tokens: user-service has not handed out its keys (or not for too long); retry shortly"
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

impl Inner {
    async fn fetch(&self) -> Result<usize, FetchError> {
        use std::sync::atomic::Ordering;
        let number = self.fetches.fetch_add(1, Ordering::SeqCst) + 1;
        let answer = self
            .client
            .clone()
            .get_public_keys(GetPublicKeysRequest {})
            .await?
            .into_inner();
        let keys = KeySet::from_proto(&answer)?;
        let count = keys.len();
        let mut held = self.keys.write().await;
        if self.applied.load(Ordering::SeqCst) > number {
            // A fetch started later was applied already: this answer is older.
            return Ok(held.len());
        }
        self.applied.store(number, Ordering::SeqCst);
        if held.kids() != keys.kids() {
            tracing::info!(kids = ?keys.kids(), "token keys changed");
        }
        *held = keys;
        Ok(count)
    }
}

/// Refetches the keys every `interval` until the authenticator is dropped;
/// a failed fetch keeps the keys held (see the module's doc for how long).
async fn refresh_every(inner: std::sync::Weak<Inner>, interval: Duration) {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.tick().await;
    loop {
        ticks.tick().await;
        let Some(inner) = inner.upgrade() else {
            return;
        };
        if let Err(error) = inner.fetch().await {
            tracing::warn!(
                %error,
                "cannot refetch token keys; the last ones fetched stay in use until their valid_until"
            );
        }
    }
}

fn unauthenticated(error: TokenError) -> ApiError {
    ApiError::Unauthenticated(error.to_string())
}
