//! `GET /.well-known/jwks.json`: the public keys that verify shippy's
//! tokens as an RFC 7517 JWK Set (Ed25519 keys as RFC 8037 `OKP`), from
//! user-service's `GetPublicKeys` — every key of its ring, the signing one
//! first. Caches may keep it for `KEYS_REFRESH_INTERVAL` at most, the time
//! shippy's own verifiers take to notice a key was dropped.

use std::time::Duration;

use axum::{
    Json, Router,
    extract::State,
    http::{HeaderValue, header},
    response::{IntoResponse, Response},
    routing::get,
};
use shippy_proto::user::v1::{GetPublicKeysRequest, user_service_client::UserServiceClient};
use shippy_service::telemetry::propagation::TraceInterceptor;
use tonic::transport::Channel;

use crate::error::HttpError;

/// Where the key set is served.
pub const PATH: &str = "/.well-known/jwks.json";

#[derive(Debug, Clone)]
struct Jwks {
    users: Channel,
    cache_control: HeaderValue,
}

/// The JWKS route: keys from user-service through `users`, cacheable for
/// `max_age` (whole seconds, rounded down).
pub fn routes(users: Channel, max_age: Duration) -> Router {
    let cache_control = HeaderValue::from_str(&format!("public, max-age={}", max_age.as_secs()))
        .unwrap_or(HeaderValue::from_static("no-store"));
    Router::new().route(PATH, get(document)).with_state(Jwks {
        users,
        cache_control,
    })
}

async fn document(State(jwks): State<Jwks>) -> Result<Response, HttpError> {
    let answer = UserServiceClient::with_interceptor(jwks.users, TraceInterceptor)
        .get_public_keys(GetPublicKeysRequest {})
        .await?
        .into_inner();
    let keys: Vec<shippy_auth::Jwk> = answer
        .keys
        .iter()
        .filter_map(|key| {
            let jwk = shippy_auth::PublicKey::from(key).to_jwk();
            if jwk.is_none() {
                tracing::warn!(
                    kid = %shippy_service::text::excerpt(&key.kid),
                    "user-service published a key that is not Ed25519; left out of the JWKS"
                );
            }
            jwk
        })
        .collect();
    let mut response = Json(serde_json::json!({ "keys": keys })).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, jwks.cache_control);
    Ok(response)
}
