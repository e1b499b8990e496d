//! `GET /.well-known/jwks.json`: the public keys that verify shippy's
//! tokens as an RFC 7517 JWK Set (Ed25519 keys as RFC 8037 `OKP`), from
//! user-service's `GetPublicKeys` — every key of its ring, the signing one
//! first. Caches may keep it for `KEYS_REFRESH_INTERVAL` at most, the time
//! shippy's own verifiers take to notice a key was dropped.
//!
//! The gateway asks user-service (through its circuit breaker) at most once
//! per [`FRESH_FOR`], however many clients ask at once; while user-service
//! cannot answer, the last set it gave is served as shippy's verifiers use
//! it: each key until its `valid_until`.

use std::{
    sync::Arc,
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
use tokio::sync::Mutex;

use crate::{error::HttpError, upstream::Guarded};

/// Where the key set is served.
pub const PATH: &str = "/.well-known/jwks.json";

/// How long an answer of user-service is served before it is asked again.
pub const FRESH_FOR: Duration = Duration::from_secs(1);

#[derive(Debug, Clone)]
struct Jwks {
    users: Guarded,
    cache_control: HeaderValue,
    /// The last answer; locked while it is renewed, so concurrent requests
    /// wait for one call instead of each making their own.
    last: Arc<Mutex<Option<Fetched>>>,
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
    })
}

async fn document(State(jwks): State<Jwks>) -> Result<Response, HttpError> {
    let keys = {
        let mut last = jwks.last.lock().await;
        let fresh = last
            .as_ref()
            .is_some_and(|fetched| fetched.at.elapsed() < FRESH_FOR);
        if !fresh {
            match fetch(jwks.users.clone()).await {
                Ok(fetched) => *last = Some(fetched),
                Err(error) => {
                    let Some(fetched) = last.as_ref() else {
                        return Err(error);
                    };
                    tracing::warn!(
                        error = %shippy_service::text::excerpt(&error.message),
                        age_seconds = fetched.at.elapsed().as_secs(),
                        "user-service cannot give its keys; the JWKS serves the last set it gave"
                    );
                }
            }
        }
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| {
                i64::try_from(since.as_secs()).unwrap_or(i64::MAX)
            });
        last.as_ref().map_or_else(Vec::new, |fetched| {
            fetched
                .keys
                .iter()
                .filter(|(valid_until, _)| *valid_until > now)
                .map(|(_, jwk)| jwk.clone())
                .collect::<Vec<_>>()
        })
    };
    let mut response = Json(serde_json::json!({ "keys": keys })).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, jwks.cache_control);
    Ok(response)
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
