//! The public keys that verify tokens: one as user-service publishes it
//! ([`PublicKey`], also as a JWK), and the set a verifier holds
//! ([`KeySet`]), which checks a token's signature and claims.

use std::collections::HashMap;

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::{Deserialize, Serialize};
use shippy_proto::user::v1 as proto;

use crate::{
    ALGORITHM_NAME, AUDIENCE, Claims, ISSUER, LEEWAY_SECS, TokenError, token_error, token_kid,
};

/// A public key that verifies tokens, as user-service publishes it.
#[derive(Debug, Clone)]
pub struct PublicKey {
    /// The `kid` of tokens it verifies.
    pub kid: String,
    /// SubjectPublicKeyInfo PEM.
    pub pem: String,
    /// Tokens it signed expire no later than this, seconds since the epoch.
    pub valid_until: i64,
}

/// A public key as an RFC 7517 JSON Web Key (RFC 8037's `OKP` type for
/// Ed25519), for a JWKS document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Jwk {
    /// `OKP`.
    pub kty: String,
    /// `Ed25519`.
    pub crv: String,
    /// The 32-byte public key, base64url without padding.
    pub x: String,
    /// The `kid` tokens name (the key's RFC 7638 thumbprint).
    pub kid: String,
    /// `sig`.
    #[serde(rename = "use")]
    pub key_use: String,
    /// `EdDSA`.
    pub alg: String,
}

/// The DER prefix of an Ed25519 SubjectPublicKeyInfo (RFC 8410), before the
/// 32 key bytes.
const ED25519_SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

impl PublicKey {
    /// The key as a JWK; `None` if its PEM is not an Ed25519 public key.
    pub fn to_jwk(&self) -> Option<Jwk> {
        use base64::Engine as _;
        let body: String = self
            .pem
            .lines()
            .map(str::trim)
            .filter(|line| !line.starts_with("-----"))
            .collect();
        let der = base64::engine::general_purpose::STANDARD
            .decode(body)
            .ok()?;
        let key = der.strip_prefix(&ED25519_SPKI_PREFIX[..])?;
        if key.len() != 32 {
            return None;
        }
        Some(Jwk {
            kty: "OKP".into(),
            crv: "Ed25519".into(),
            x: base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(key),
            kid: self.kid.clone(),
            key_use: "sig".into(),
            alg: ALGORITHM_NAME.into(),
        })
    }
}

/// A public key that is not an Ed25519 SPKI PEM.
#[derive(Debug, thiserror::Error)]
#[error("public key `{kid}` is not a usable {ALGORITHM_NAME} key")]
pub struct InvalidKey {
    kid: String,
    #[source]
    source: jsonwebtoken::errors::Error,
}

/// The public keys that verify tokens, by `kid`.
///
/// A key whose [`PublicKey::valid_until`] has passed verifies nothing: a
/// verifier that cannot reach user-service keeps the last keys it fetched
/// only until then (user-service says `valid_until` is one token lifetime,
/// `JWT_TTL`, after it answered; every token it had signed by then has
/// expired by then). `valid_until` 0 means no bound.
#[derive(Clone, Default)]
pub struct KeySet {
    keys: HashMap<String, (DecodingKey, i64)>,
    validation: Option<Validation>,
}

impl std::fmt::Debug for KeySet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeySet")
            .field("kids", &self.keys.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl KeySet {
    /// The keys in `keys`; fails on the first unusable one.
    pub fn new<'a>(keys: impl IntoIterator<Item = &'a PublicKey>) -> Result<Self, InvalidKey> {
        let keys = keys
            .into_iter()
            .map(|key| {
                DecodingKey::from_ed_pem(key.pem.as_bytes())
                    .map(|decoding| (key.kid.clone(), (decoding, key.valid_until)))
                    .map_err(|source| InvalidKey {
                        kid: key.kid.clone(),
                        source,
                    })
            })
            .collect::<Result<_, _>>()?;
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.set_audience(&[AUDIENCE]);
        validation.set_issuer(&[ISSUER]);
        validation.set_required_spec_claims(&["exp", "sub", "aud", "iss"]);
        validation.leeway = LEEWAY_SECS;
        validation.validate_nbf = true;
        Ok(Self {
            keys,
            validation: Some(validation),
        })
    }

    /// The keys of a `GetPublicKeys` answer.
    pub fn from_proto(keys: &proto::PublicKeys) -> Result<Self, InvalidKey> {
        let keys: Vec<PublicKey> = keys.keys.iter().map(PublicKey::from).collect();
        Self::new(&keys)
    }

    /// Whether a key with this `kid` is known and still honoured.
    pub fn contains(&self, kid: &str) -> bool {
        self.key(kid).is_some()
    }

    /// The `kid`s of the keys, honoured or not, sorted.
    pub fn kids(&self) -> Vec<&str> {
        let mut kids: Vec<&str> = self.keys.keys().map(String::as_str).collect();
        kids.sort_unstable();
        kids
    }

    /// How many keys are still honoured.
    pub fn len(&self) -> usize {
        let now = chrono::Utc::now().timestamp();
        self.keys
            .values()
            .filter(|(_, until)| honoured(*until, now))
            .count()
    }

    /// Whether none is honoured.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn key(&self, kid: &str) -> Option<&DecodingKey> {
        let (key, until) = self.keys.get(kid)?;
        honoured(*until, chrono::Utc::now().timestamp()).then_some(key)
    }

    /// The claims of `token` if one of these keys signed it with EdDSA, for
    /// [`AUDIENCE`], by [`ISSUER`], and it has not expired.
    pub fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        let kid = token_kid(token)?;
        let (Some(key), Some(validation)) = (self.key(&kid), &self.validation) else {
            return Err(TokenError::UnknownKey(kid));
        };
        let claims = jsonwebtoken::decode::<Claims>(token, key, validation)
            .map_err(|error| token_error(error.kind()))?
            .claims;
        if claims.sub.is_empty() {
            return Err(TokenError::Invalid("no subject"));
        }
        let now = u64::try_from(chrono::Utc::now().timestamp()).unwrap_or(0);
        if claims.iat > now.saturating_add(LEEWAY_SECS) {
            return Err(TokenError::Invalid("issued in the future"));
        }
        Ok(claims)
    }
}

fn honoured(valid_until: i64, now: i64) -> bool {
    valid_until == 0 || now <= valid_until
}

impl From<&proto::PublicKey> for PublicKey {
    fn from(key: &proto::PublicKey) -> Self {
        Self {
            kid: key.kid.clone(),
            pem: key.public_key_pem.clone(),
            valid_until: key.valid_until.map_or(0, |time| time.seconds),
        }
    }
}

impl From<&PublicKey> for proto::PublicKey {
    fn from(key: &PublicKey) -> Self {
        Self {
            kid: key.kid.clone(),
            algorithm: ALGORITHM_NAME.to_owned(),
            public_key_pem: key.pem.clone(),
            valid_until: Some(shippy_proto::Timestamp {
                seconds: key.valid_until,
                nanos: 0,
            }),
        }
    }
}
