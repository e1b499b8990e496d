//! Session tokens of shippy-rs, as every service sees them.
//!
//! user-service alone signs tokens (EdDSA JWTs, see its `tokens` module).
//! Everyone else verifies them locally with this crate: [`KeySet`] holds the
//! public keys user-service hands out (`GetPublicKeys`), [`KeySet::verify`]
//! checks a token's signature, algorithm, issuer, audience and expiry, and
//! [`token_from_metadata`] reads the token a client sent, as
//! `authorization: Bearer <jwt>` or the original shippy's `token` key.
//! (The token the command-line programs save is `shippy_cli::saved`.)
//! [`remote::Authenticator`] is the one verifier of the other services:
//! it fetches user-service's public keys (and refetches on an unknown `kid`).
//! [`service::ServiceToken`] is the secret the services share for the calls
//! that are theirs alone (vessel-service's reservations).

mod keys;
pub mod remote;
pub mod service;

pub use keys::{InvalidKey, Jwk, KeySet, PublicKey};
pub use remote::Authenticator;

use jsonwebtoken::{Algorithm, errors::ErrorKind};
use serde::{Deserialize, Serialize};
use tonic::metadata::MetadataMap;

/// Who issues tokens (`iss`).
pub const ISSUER: &str = "shippy-user-service";
/// Who tokens are for (`aud`).
pub const AUDIENCE: &str = "shippy";
/// The JWT algorithm of every token.
pub const ALGORITHM_NAME: &str = "EdDSA";
/// Clock skew tolerated between services, in seconds.
const LEEWAY_SECS: u64 = 30;

/// What a token says. Nothing secret: no password, no hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The user's id.
    pub sub: String,
    /// [`ISSUER`].
    pub iss: String,
    /// [`AUDIENCE`].
    pub aud: String,
    /// Issued at, seconds since the Unix epoch.
    pub iat: u64,
    /// Expires at, seconds since the Unix epoch.
    pub exp: u64,
    /// What the user may do beyond their own data: [`ADMIN_ROLE`] or none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<String>,
}

/// The role of administrators: they list users, read any profile and
/// create vessels.
pub const ADMIN_ROLE: &str = "admin";

impl Claims {
    /// Whether the token carries [`ADMIN_ROLE`].
    pub fn is_admin(&self) -> bool {
        self.roles.iter().any(|role| role == ADMIN_ROLE)
    }
}

/// Why a token was refused. Every variant means `UNAUTHENTICATED`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// The request carried no token.
    #[error("missing token: send `authorization: Bearer <token>` (get one with `user-cli login`)")]
    Missing,
    /// The token has expired.
    #[error("token expired: log in again")]
    Expired,
    /// The token names a key nobody knows.
    #[error("token signed with an unknown key")]
    UnknownKey(String),
    /// Anything else: malformed, forged, wrong algorithm, issuer or audience.
    #[error("invalid token: {0}")]
    Invalid(&'static str),
}

/// Remembers tokens that verified, so a client that sends the same token
/// with every request pays for one signature check, not one per request.
///
/// Only tokens that verified are kept, keyed by the whole token, for at most
/// [`VerifiedTokens::KEEP`] and never past their expiry; a forged token can
/// only hit the cache by being byte-for-byte a token that verified. A
/// remembered token counts only while its key is still in the key set it is
/// checked against, so a revoked key stops its tokens at once.
#[derive(Debug, Clone)]
pub struct VerifiedTokens {
    cache: moka::sync::Cache<String, Verified>,
}

/// A token that verified: the key that signed it and what it says.
#[derive(Debug, Clone)]
struct Verified {
    kid: String,
    claims: Claims,
}

impl Default for VerifiedTokens {
    fn default() -> Self {
        Self::new()
    }
}

impl VerifiedTokens {
    /// The longest a verified token is remembered.
    pub const KEEP: std::time::Duration = std::time::Duration::from_secs(60);

    /// An empty cache holding at most 100 000 tokens.
    pub fn new() -> Self {
        Self {
            cache: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(Self::KEEP)
                .build(),
        }
    }

    /// `token`'s claims, from the cache or by verifying it with `keys`.
    pub fn verify(&self, keys: &KeySet, token: &str) -> Result<Claims, TokenError> {
        let now = u64::try_from(chrono::Utc::now().timestamp()).unwrap_or(0);
        if let Some(verified) = self.cache.get(token) {
            if verified.claims.exp > now && keys.contains(&verified.kid) {
                return Ok(verified.claims);
            }
            self.cache.invalidate(token);
        }
        let claims = keys.verify(token)?;
        let kid = token_kid(token)?;
        self.cache.insert(
            token.to_owned(),
            Verified {
                kid,
                claims: claims.clone(),
            },
        );
        Ok(claims)
    }

    /// Forgets every token (e.g. after the keys changed).
    pub fn clear(&self) {
        self.cache.invalidate_all();
    }
}

/// The `kid` a token's header names (read before any verification).
pub fn token_kid(token: &str) -> Result<String, TokenError> {
    let header = jsonwebtoken::decode_header(token).map_err(|error| token_error(error.kind()))?;
    if header.alg != Algorithm::EdDSA {
        return Err(TokenError::Invalid("wrong algorithm"));
    }
    header.kid.ok_or(TokenError::Invalid("no key id"))
}

fn token_error(kind: &ErrorKind) -> TokenError {
    match kind {
        ErrorKind::ExpiredSignature => TokenError::Expired,
        ErrorKind::InvalidSignature => TokenError::Invalid("bad signature"),
        ErrorKind::InvalidAudience => TokenError::Invalid("wrong audience"),
        ErrorKind::InvalidIssuer => TokenError::Invalid("wrong issuer"),
        ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => {
            TokenError::Invalid("wrong algorithm")
        }
        ErrorKind::MissingRequiredClaim(_) => TokenError::Invalid("missing claim"),
        ErrorKind::ImmatureSignature => TokenError::Invalid("not valid yet"),
        _ => TokenError::Invalid("malformed"),
    }
}

/// The token a request carries: `authorization: Bearer <jwt>`, or the
/// original shippy's `token: <jwt>` (gRPC metadata keys are lower-case, so
/// go-micro's `Token` arrives as `token` too).
pub fn token_from_metadata(metadata: &MetadataMap) -> Result<String, TokenError> {
    if let Some(value) = metadata.get("authorization") {
        let value = value
            .to_str()
            .map_err(|_| TokenError::Invalid("authorization is not text"))?;
        let (scheme, token) = value.trim().split_once(' ').ok_or(TokenError::Invalid(
            "authorization must be `Bearer <token>`",
        ))?;
        if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
            return Err(TokenError::Invalid(
                "authorization must be `Bearer <token>`",
            ));
        }
        return Ok(token.trim().to_owned());
    }
    if let Some(value) = metadata.get("token") {
        let token = value
            .to_str()
            .map_err(|_| TokenError::Invalid("token is not text"))?
            .trim();
        if !token.is_empty() {
            return Ok(token.to_owned());
        }
    }
    Err(TokenError::Missing)
}

#[cfg(test)]
mod tests {
    use tonic::metadata::MetadataValue;

    use super::*;

    fn metadata(key: &'static str, value: &str) -> MetadataMap {
        let mut map = MetadataMap::new();
        map.insert(key, MetadataValue::try_from(value).unwrap());
        map
    }

    #[test]
    fn reads_bearer_and_legacy_token_keys() {
        assert_eq!(
            token_from_metadata(&metadata("authorization", "Bearer abc.def.ghi")).unwrap(),
            "abc.def.ghi"
        );
        assert_eq!(
            token_from_metadata(&metadata("authorization", "bearer  xyz ")).unwrap(),
            "xyz"
        );
        assert_eq!(
            token_from_metadata(&metadata("token", "abc")).unwrap(),
            "abc"
        );
        assert_eq!(
            token_from_metadata(&MetadataMap::new()),
            Err(TokenError::Missing)
        );
        assert!(matches!(
            token_from_metadata(&metadata("authorization", "Basic dXNlcg==")),
            Err(TokenError::Invalid(_))
        ));
    }

    #[test]
    fn the_cache_only_remembers_tokens_that_verified() {
        let cache = VerifiedTokens::new();
        let keys = KeySet::new(&[test_key("k", 0)]).unwrap();
        assert!(cache.verify(&keys, "garbage").is_err());
        assert!(cache.cache.get("garbage").is_none());
        let claims = Claims {
            sub: "u1".into(),
            iss: ISSUER.into(),
            aud: AUDIENCE.into(),
            iat: 0,
            exp: u64::MAX,
            roles: Vec::new(),
        };
        let verified = |claims: Claims| Verified {
            kid: "k".into(),
            claims,
        };
        cache
            .cache
            .insert("verified-before".into(), verified(claims.clone()));
        assert_eq!(cache.verify(&keys, "verified-before"), Ok(claims.clone()));
        let expired = Claims { exp: 1, ..claims };
        cache.cache.insert("expired".into(), verified(expired));
        assert!(
            cache.verify(&keys, "expired").is_err(),
            "expired claims are not served"
        );
    }

    /// A test key pair (never used outside tests).
    const TEST_PRIVATE_PEM: &str = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIJ2IILnefH9SdZYQFsBSyfDhLHSVaA7Z9knziQDMzGKt\n-----END PRIVATE KEY-----\n";
    const TEST_PUBLIC_PEM: &str = "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEAZtTqsLFYSort5eXaFSwX2hklI8LgA4d4gl389FPu4GE=\n-----END PUBLIC KEY-----\n";

    fn test_token(kid: &str) -> String {
        let now = u64::try_from(chrono::Utc::now().timestamp()).unwrap();
        let claims = Claims {
            sub: "u1".into(),
            iss: ISSUER.into(),
            aud: AUDIENCE.into(),
            iat: now,
            exp: now + 3600,
            roles: Vec::new(),
        };
        let mut header = jsonwebtoken::Header::new(Algorithm::EdDSA);
        header.kid = Some(kid.into());
        let key = jsonwebtoken::EncodingKey::from_ed_pem(TEST_PRIVATE_PEM.as_bytes()).unwrap();
        jsonwebtoken::encode(&header, &claims, &key).unwrap()
    }

    fn test_key(kid: &str, valid_until: i64) -> PublicKey {
        PublicKey {
            kid: kid.into(),
            pem: TEST_PUBLIC_PEM.into(),
            valid_until,
        }
    }

    #[test]
    fn a_cached_verification_ends_when_its_key_leaves_the_set() {
        let cache = VerifiedTokens::new();
        let token = test_token("k1");
        let with = KeySet::new(&[test_key("k1", 0)]).unwrap();
        assert!(cache.verify(&with, &token).is_ok(), "verifies with its key");
        let without = KeySet::new(&[test_key("k2", 0)]).unwrap();
        assert!(
            matches!(
                cache.verify(&without, &token),
                Err(TokenError::UnknownKey(_))
            ),
            "a revoked key's token is refused though it verified a moment ago"
        );
        assert!(cache.verify(&with, &token).is_ok());
    }

    #[test]
    fn a_public_key_becomes_an_okp_jwk_whose_thumbprint_is_its_kid() {
        use base64::Engine as _;
        use sha2::Digest as _;
        let jwk = test_key("k1", 0).to_jwk().unwrap();
        assert_eq!(
            (
                jwk.kty.as_str(),
                jwk.crv.as_str(),
                jwk.key_use.as_str(),
                jwk.alg.as_str()
            ),
            ("OKP", "Ed25519", "sig", "EdDSA")
        );
        assert_eq!(jwk.x, "ZtTqsLFYSort5eXaFSwX2hklI8LgA4d4gl389FPu4GE");
        // RFC 7638: the thumbprint of the required members, sorted.
        let canonical = format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{}"}}"#, jwk.x);
        let thumbprint = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(sha2::Sha256::digest(canonical.as_bytes()));
        assert_eq!(thumbprint.len(), 43);
        let json = serde_json::to_value(&jwk).unwrap();
        assert_eq!(json["use"], "sig");
        assert!(
            PublicKey {
                pem: "not a key".into(),
                ..test_key("k", 0)
            }
            .to_jwk()
            .is_none()
        );
    }

    #[test]
    fn a_key_past_its_valid_until_verifies_nothing() {
        let token = test_token("k1");
        let now = chrono::Utc::now().timestamp();
        let fresh = KeySet::new(&[test_key("k1", now + 60)]).unwrap();
        assert!(fresh.verify(&token).is_ok());
        let stale = KeySet::new(&[test_key("k1", now - 1)]).unwrap();
        assert!(matches!(
            stale.verify(&token),
            Err(TokenError::UnknownKey(_))
        ));
        assert!(stale.is_empty(), "no key is honoured any more");
        assert_eq!(stale.kids(), ["k1"]);
    }

    #[test]
    fn garbage_and_alg_none_are_refused_without_a_panic() {
        let keys = KeySet::default();
        for token in [
            "",
            "garbage",
            "a.b.c",
            // {"alg":"none","typ":"JWT"} . {"sub":"x"} .
            "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiJ4In0.",
            // {"alg":"HS256","kid":"k"} . {} . sig
            "eyJhbGciOiJIUzI1NiIsImtpZCI6ImsifQ.e30.c2ln",
        ] {
            assert!(keys.verify(token).is_err(), "{token:?} accepted");
        }
    }
}

#[cfg(test)]
mod properties {
    use proptest::prelude::*;
    use tonic::metadata::{MetadataMap, MetadataValue};

    use super::*;

    proptest! {
        /// Whatever a caller sends as a token, it is refused with an error, never a panic.
        #[test]
        fn arbitrary_tokens_are_errors_not_panics(token in any::<String>(), dotted in "[A-Za-z0-9_=.-]{0,300}") {
            let keys = KeySet::default();
            let cache = VerifiedTokens::new();
            for token in [&token, &dotted] {
                let _ = token_kid(token);
                prop_assert!(keys.verify(token).is_err());
                prop_assert!(cache.verify(&keys, token).is_err());
            }
        }

        /// Any metadata value is read or refused, never a panic.
        #[test]
        fn arbitrary_metadata_is_read_or_refused(value in "[ -~]{0,300}", bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            for key in ["authorization", "token"] {
                if let Ok(value) = MetadataValue::try_from(value.as_str()) {
                    let mut map = MetadataMap::new();
                    map.insert(key, value);
                    let _ = token_from_metadata(&map);
                }
                if let Ok(value) = MetadataValue::try_from(bytes.as_slice()) {
                    let mut map = MetadataMap::new();
                    map.insert(key, value);
                    let _ = token_from_metadata(&map);
                }
            }
        }
    }
}
