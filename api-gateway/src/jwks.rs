//! `GET /.well-known/jwks.json`: the public keys that verify shippy's
//! tokens as an RFC 7517 JWK Set (Ed25519 keys as RFC 8037 `OKP`), from
//! user-service's `GetPublicKeys` — every key of its ring, the signing one
//! first. Caches may keep it for `KEYS_REFRESH_INTERVAL` at most, the time
//! shippy's own verifiers take to notice a key was dropped.
//!
//! The gateway asks user-service (through its circuit breaker) at most once
//! per [`FRESH_FOR`] and one call at a time, however many clients ask;
//! requests are answered from the last set while a newer one is fetched, so
//! while user-service cannot answer, that set is served at once, as shippy's
//! verifiers use it: each key until its `valid_until` (then 503).

use std::{
    sync::{Arc, PoisonError, RwLock},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use axum::{
    Json, Router,
    extract::State,
    http::{HeaderValue, header},
    response::{IntoResponse, Response},
    routing::get,
};
use shippy_proto::user::v1::{GetPublicKeysRequest, user_service_client::UserServiceClient};
use shippy_service::telemetry::propagation::TraceInterceptor;
use tokio::sync::{Mutex, OwnedMutexGuard};
use tonic::Code;

use crate::{error::HttpError, upstream::Guarded};

/// Where the key set is served.
pub const PATH: &str = "/.well-known/jwks.json";

/// How long an answer of user-service is served before it is asked again.
pub const FRESH_FOR: Duration = Duration::from_secs(1);

#[derive(Debug, Clone)]
struct Jwks {
    users: Guarded,
    cache_control: HeaderValue,
    /// user-service's last answer.
    last: Arc<RwLock<Option<Arc<Fetched>>>>,
    /// Held by the one fetch in flight.
    fetching: Arc<Mutex<()>>,
}

/// One answer of user-service.
#[derive(Debug)]
struct Fetched {
    at: Instant,
    /// Each key with its `valid_until` (seconds since the epoch).
    keys: Vec<(i64, shippy_auth::Jwk)>,
}

/// The JWKS route: keys from user-service through `users`, cacheable for
/// `max_age` (whole seconds, rounded down).
pub fn routes(users: Guarded, max_age: Duration) -> Router {
    let cache_control = HeaderValue::from_str(&format!("public, max-age={}", max_age.as_secs()))
        .unwrap_or(HeaderValue::from_static("no-store"));
    Router::new().route(PATH, get(document)).with_state(Jwks {
        users,
        cache_control,
        last: Arc::default(),
        fetching: Arc::default(),
    })
}

async fn document(State(jwks): State<Jwks>) -> Result<Response, HttpError> {
    let fetched = jwks.current().await?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| {
            i64::try_from(since.as_secs()).unwrap_or(i64::MAX)
        });
    let keys: Vec<&shippy_auth::Jwk> = fetched
        .keys
        .iter()
        .filter(|(valid_until, _)| *valid_until > now)
        .map(|(_, jwk)| jwk)
        .collect();
    if keys.is_empty() && !fetched.keys.is_empty() {
        return Err(HttpError::new(
            Code::Unavailable,
            "the keys user-service last gave are past their valid_until and it cannot give new ones; retry shortly",
        ));
    }
    let mut response = Json(serde_json::json!({ "keys": keys })).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, jwks.cache_control);
    Ok(response)
}

impl Jwks {
    /// The set to serve. A set younger than [`FRESH_FOR`] is served as it
    /// is; an older one is served at once while one fetch in the background
    /// renews it (none starts while one is in flight), so no request waits
    /// for a hung user-service once a set is known. Only with no set yet does
    /// a request wait, for its turn to fetch. Fetches run as tasks of their
    /// own: a client that gives up cancels nothing, and the breaker sees
    /// every outcome.
    async fn current(&self) -> Result<Arc<Fetched>, HttpError> {
        if let Some(fetched) = self.known() {
            if fetched.at.elapsed() >= FRESH_FOR
                && let Ok(turn) = Arc::clone(&self.fetching).try_lock_owned()
            {
                let jwks = self.clone();
                tokio::spawn(async move { jwks.renew(turn).await });
            }
            return Ok(fetched);
        }
        let jwks = self.clone();
        let first = tokio::spawn(async move {
            let turn = Arc::clone(&jwks.fetching).lock_owned().await;
            // Fetched by the one before, meanwhile?
            match jwks.known() {
                Some(fetched) => Ok(fetched),
                None => jwks.renew(turn).await,
            }
        });
        first.await.map_err(|error| {
            HttpError::new(Code::Internal, format!("the key fetch failed: {error}"))
        })?
    }

    fn known(&self) -> Option<Arc<Fetched>> {
        self.last
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Fetches the set (holding `_turn`, the one fetch in flight) and keeps it.
    async fn renew(&self, _turn: OwnedMutexGuard<()>) -> Result<Arc<Fetched>, HttpError> {
        match fetch(self.users.clone()).await {
            Ok(fetched) => {
                let fetched = Arc::new(fetched);
                *self.last.write().unwrap_or_else(PoisonError::into_inner) =
                    Some(Arc::clone(&fetched));
                Ok(fetched)
            }
            Err(error) => {
                if let Some(fetched) = self.known() {
                    tracing::warn!(
                        error = %shippy_service::text::excerpt(&error.message),
                        age_seconds = fetched.at.elapsed().as_secs(),
                        "user-service cannot give its keys; the JWKS serves the last set it gave"
                    );
                }
                Err(error)
            }
        }
    }
}

/// Asks user-service for its keys.
async fn fetch(users: Guarded) -> Result<Fetched, HttpError> {
    let answer = UserServiceClient::with_interceptor(users, TraceInterceptor)
        .get_public_keys(GetPublicKeysRequest {})
        .await?
        .into_inner();
    let keys = answer
        .keys
        .iter()
        .filter_map(|key| {
            let key = shippy_auth::PublicKey::from(key);
            let jwk = key.to_jwk();
            if jwk.is_none() {
                tracing::warn!(
                    kid = %shippy_service::text::excerpt(&key.kid),
                    "user-service published a key that is not Ed25519; left out of the JWKS"
                );
            }
            Some((key.valid_until, jwk?))
        })
        .collect();
    Ok(Fetched {
        at: Instant::now(),
        keys,
    })
}
