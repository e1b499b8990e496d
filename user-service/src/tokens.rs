//! Signing session tokens: EdDSA (Ed25519) JWTs, signed with a key ring
//! that can be replaced while the service runs.
//!
//! A ring is one or more PKCS#8 `PRIVATE KEY` blocks (from
//! `JWT_SIGNING_KEY_FILE`, a Consul KV value, or one key generated at
//! start): the first signs new tokens; the others are older (or next) keys
//! whose tokens are honoured too. [`TokenSigner::replace`] swaps the whole
//! ring at once (`crate::keys` follows the source and calls it), so a
//! request signs and verifies with one ring, the old or the new one. A key's
//! `kid` is its RFC 7638 JWK thumbprint.

use std::{path::Path, sync::Arc, time::Duration};

use arc_swap::{ArcSwap, Guard};
use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use chrono::Utc;
use ed25519_dalek::{
    SigningKey,
    pkcs8::{DecodePrivateKey, EncodePrivateKey, EncodePublicKey, spki::der::pem::LineEnding},
};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use sha2::{Digest, Sha256};
use shippy_auth::{AUDIENCE, Claims, ISSUER, KeySet, PublicKey};

use crate::domain::UserId;

/// The signing keys could not be loaded or used. `source` names where they
/// come from (`JWT_SIGNING_KEY_FILE /path`, `Consul KV key …`).
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The key file cannot be read.
    #[error("cannot read {path}")]
    Read {
        /// The source.
        path: String,
        /// Why not.
        #[source]
        source: std::io::Error,
    },
    /// The source holds no usable Ed25519 private key.
    #[error(
        "{path} holds no Ed25519 PKCS#8 private key (`-----BEGIN PRIVATE KEY-----`); \
         make one with `openssl genpkey -algorithm ed25519` or `user-service keys rotate`"
    )]
    NoKey {
        /// The source.
        path: String,
    },
    /// A block is not an Ed25519 PKCS#8 key.
    #[error("{path}: {reason}")]
    Invalid {
        /// The source.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// Encoding a key or a token failed.
    #[error("cannot encode a key or token")]
    Encode(#[source] shippy_service::error::BoxError),
}

struct Key {
    kid: String,
    encoding: EncodingKey,
    public_pem: String,
}

/// One set of keys: the first signs, all verify.
pub struct Ring {
    keys: Vec<Key>,
    verifier: KeySet,
}

impl std::fmt::Debug for Ring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ring").field("kids", &self.kids()).finish()
    }
}

impl Ring {
    /// The ring of `keys` (`keys[0]` signs); at least one.
    pub fn new(keys: &[SigningKey]) -> Result<Self, KeyError> {
        if keys.is_empty() {
            return Err(KeyError::Encode("a key ring needs at least one key".into()));
        }
        let keys = keys
            .iter()
            .map(|key| {
                let verifying = key.verifying_key();
                let public_pem = verifying
                    .to_public_key_pem(LineEnding::LF)
                    .map_err(|error| KeyError::Encode(error.into()))?;
                let der = key
                    .to_pkcs8_der()
                    .map_err(|error| KeyError::Encode(error.into()))?;
                Ok(Key {
                    kid: thumbprint(verifying.as_bytes()),
                    encoding: EncodingKey::from_ed_der(der.as_bytes()),
                    public_pem,
                })
            })
            .collect::<Result<Vec<_>, KeyError>>()?;
        // The ring verifies its own tokens for as long as it is the ring.
        let public_keys: Vec<PublicKey> = keys
            .iter()
            .map(|key| PublicKey {
                kid: key.kid.clone(),
                pem: key.public_pem.clone(),
                valid_until: 0,
            })
            .collect();
        let verifier = KeySet::new(&public_keys).map_err(|error| KeyError::Encode(error.into()))?;
        Ok(Self { keys, verifier })
    }

    /// The ring in PEM text (`source` names it in errors).
    pub fn parse(text: &str, source: &str) -> Result<Self, KeyError> {
        Self::new(&parse_keys(text, source)?)
    }

    /// The keys' `kid`s, the signing one first.
    pub fn kids(&self) -> Vec<&str> {
        self.keys.iter().map(|key| key.kid.as_str()).collect()
    }
}

/// The key ring that signs tokens, and how long tokens live.
pub struct TokenSigner {
    ring: ArcSwap<Ring>,
    ttl: Duration,
}

impl std::fmt::Debug for TokenSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSigner")
            .field("ring", &self.ring.load())
            .field("ttl", &self.ttl)
            .finish()
    }
}

/// A freshly signed token.
#[derive(Debug, Clone)]
pub struct SignedToken {
    /// The JWT.
    pub token: String,
    /// Its `exp`, seconds since the epoch.
    pub expires_at: u64,
}

/// The key set of the ring in use when it was asked for.
pub struct Verifier(Guard<Arc<Ring>>);

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::ops::Deref for Verifier {
    type Target = KeySet;

    fn deref(&self) -> &KeySet {
        &self.0.verifier
    }
}

impl TokenSigner {
    /// Keys from a PEM file (the first block signs), or one fresh key.
    pub fn load(path: Option<&Path>, ttl: Duration) -> Result<Self, KeyError> {
        let keys = match path {
            Some(path) => read_or_create_keys(path)?,
            None => {
                tracing::warn!(
                    "neither JWT_SIGNING_KEY_FILE nor JWT_SIGNING_KEYS_CONSUL_KEY is set: signing with \
                     a key generated for this run; tokens stop working when the service restarts \
                     (fine for a demo, not for production)"
                );
                vec![generate_key()?]
            }
        };
        Ok(Self::new(Ring::new(&keys)?, ttl))
    }

    /// A signer with `ring`.
    pub fn new(ring: Ring, ttl: Duration) -> Self {
        tracing::info!(kids = ?ring.kids(), "token signing keys loaded");
        Self {
            ring: ArcSwap::from_pointee(ring),
            ttl,
        }
    }

    /// Puts `ring` in place of the current one, at once for every request
    /// that starts after; whether its keys differ from the current ones.
    pub fn replace(&self, ring: Ring) -> bool {
        let old = self.ring.swap(Arc::new(ring));
        let new = self.ring.load();
        let changed = old.kids() != new.kids();
        if changed {
            tracing::info!(kids = ?new.kids(), old = ?old.kids(), "token signing keys replaced");
        }
        changed
    }

    /// The `kid`s of the ring in use, the signing one first.
    pub fn kids(&self) -> Vec<String> {
        self.ring
            .load()
            .kids()
            .into_iter()
            .map(str::to_owned)
            .collect()
    }

    /// A token for `user` with `roles`, valid for the TTL from now.
    pub fn sign(&self, user: UserId, roles: &[&str]) -> Result<SignedToken, KeyError> {
        let ring = self.ring.load();
        let key = ring
            .keys
            .first()
            .ok_or_else(|| KeyError::Encode("no signing key".into()))?;
        let now = u64::try_from(Utc::now().timestamp()).unwrap_or(0);
        let claims = Claims {
            sub: user.to_string(),
            iss: ISSUER.to_owned(),
            aud: AUDIENCE.to_owned(),
            iat: now,
            exp: now + self.ttl.as_secs(),
            roles: roles.iter().map(|&role| role.to_owned()).collect(),
        };
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(key.kid.clone());
        let token = jsonwebtoken::encode(&header, &claims, &key.encoding)
            .map_err(|error| KeyError::Encode(error.into()))?;
        Ok(SignedToken {
            token,
            expires_at: claims.exp,
        })
    }

    /// The public keys of every key of the ring, for `GetPublicKeys`.
    /// `valid_until` is computed now: a token signed now (or earlier, by an
    /// older key) expires within one TTL from now, so a verifier that
    /// cannot ask again may honour the key until then and no longer.
    pub fn public_keys(&self) -> Vec<PublicKey> {
        let valid_until =
            Utc::now().timestamp() + i64::try_from(self.ttl.as_secs()).unwrap_or(i64::MAX);
        self.ring
            .load()
            .keys
            .iter()
            .map(|key| PublicKey {
                kid: key.kid.clone(),
                pem: key.public_pem.clone(),
                valid_until,
            })
            .collect()
    }

    /// Verifies tokens signed by any key of the ring in use now.
    pub fn verifier(&self) -> Verifier {
        Verifier(self.ring.load())
    }
}

fn generate_key() -> Result<SigningKey, KeyError> {
    // rand's thread RNG is a CSPRNG seeded from the operating system.
    Ok(SigningKey::from_bytes(&rand::random::<[u8; 32]>()))
}

/// Reads the key file; when it is missing but its directory exists (a fresh
/// volume), writes one new key there first (mode 0600, never over an existing
/// file), so the keys outlive restarts. A missing directory stays an error.
fn read_or_create_keys(path: &Path) -> Result<Vec<SigningKey>, KeyError> {
    match read_keys(path) {
        Err(KeyError::Read { source, .. })
            if source.kind() == std::io::ErrorKind::NotFound
                && path
                    .parent()
                    .is_some_and(|dir| dir.as_os_str().is_empty() || dir.is_dir()) =>
        {
            create_key_file(path)?;
            read_keys(path)
        }
        other => other,
    }
}

fn create_key_file(path: &Path) -> Result<(), KeyError> {
    use std::io::Write as _;
    let failed = |source| KeyError::Read {
        path: path.display().to_string(),
        source,
    };
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(path) {
        Ok(mut file) => {
            file.write_all(generate_pem(1)?.as_bytes())
                .and_then(|()| file.sync_all())
                .map_err(failed)?;
            tracing::warn!(
                path = %path.display(),
                "JWT_SIGNING_KEY_FILE did not exist: created it with a new signing key"
            );
            Ok(())
        }
        // Another instance created it first: use theirs.
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(error) => Err(failed(error)),
    }
}

fn read_keys(path: &Path) -> Result<Vec<SigningKey>, KeyError> {
    let shown = file_source(path);
    let text = std::fs::read_to_string(path).map_err(|source| KeyError::Read {
        path: shown.clone(),
        source,
    })?;
    parse_keys(&text, &shown)
}

/// How a key file is named in errors.
pub fn file_source(path: &Path) -> String {
    format!("JWT_SIGNING_KEY_FILE {}", path.display())
}

/// The Ed25519 keys of the `PRIVATE KEY` blocks in `text`, in order; at
/// least one. `source` names where the text came from, in errors.
pub fn parse_keys(text: &str, source: &str) -> Result<Vec<SigningKey>, KeyError> {
    let blocks = pem::parse_many(text).map_err(|error| KeyError::Invalid {
        path: source.to_owned(),
        reason: error.to_string(),
    })?;
    // The PEM parser stops quietly at a block it cannot finish: a file read
    // while being written (`cat new.pem old.pem > keys.pem`) would lose its
    // later keys. Every block begun must have been read, and nothing may
    // follow the last one.
    let begun = text.matches("-----BEGIN ").count();
    if begun != blocks.len() || (begun > 0 && !text.trim_end().ends_with("-----")) {
        return Err(KeyError::Invalid {
            path: source.to_owned(),
            reason: format!(
                "{begun} PEM blocks begun, {} complete: the text ends in an unfinished block \
                 (still being written?)",
                blocks.len()
            ),
        });
    }
    let keys = blocks
        .iter()
        .filter(|block| block.tag() == "PRIVATE KEY")
        .map(|block| {
            SigningKey::from_pkcs8_der(block.contents()).map_err(|error| KeyError::Invalid {
                path: source.to_owned(),
                reason: format!("not an Ed25519 private key ({error})"),
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    if keys.is_empty() {
        return Err(KeyError::NoKey {
            path: source.to_owned(),
        });
    }
    Ok(keys)
}

/// `keys` as PKCS#8 PEM blocks, in order.
pub fn to_pem(keys: &[SigningKey]) -> Result<String, KeyError> {
    let mut text = String::new();
    for key in keys {
        let pem = key
            .to_pkcs8_pem(LineEnding::LF)
            .map_err(|error| KeyError::Encode(error.into()))?;
        text.push_str(&pem);
    }
    Ok(text)
}

/// The `kid` of `key`.
pub fn kid_of(key: &SigningKey) -> String {
    thumbprint(key.verifying_key().as_bytes())
}

/// A new random key.
pub fn new_key() -> Result<SigningKey, KeyError> {
    generate_key()
}

/// Writes `count` fresh keys as PKCS#8 PEM, for tests and key rotation.
pub fn generate_pem(count: usize) -> Result<String, KeyError> {
    let mut text = String::new();
    for _ in 0..count {
        let pem = generate_key()?
            .to_pkcs8_pem(LineEnding::LF)
            .map_err(|error| KeyError::Encode(error.into()))?;
        text.push_str(&pem);
    }
    Ok(text)
}

/// RFC 7638 JWK thumbprint of an Ed25519 public key.
fn thumbprint(public_key: &[u8; 32]) -> String {
    let x = URL_SAFE_NO_PAD.encode(public_key);
    let canonical = format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{x}"}}"#);
    URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()))
}

#[cfg(test)]
mod tests {
    use shippy_auth::TokenError;

    use super::*;

    const DAY: Duration = Duration::from_secs(86_400);

    #[test]
    fn a_ring_read_while_being_written_is_refused_not_cut_short() {
        let two = generate_pem(2).unwrap();
        assert_eq!(parse_keys(&two, "keys.pem").unwrap().len(), 2);
        // Cut inside the second block: the first alone must not be taken.
        let cut = &two[..two.len() - 40];
        assert!(matches!(
            parse_keys(cut, "keys.pem"),
            Err(KeyError::Invalid { reason, .. }) if reason.contains("unfinished")
        ));
        // Cut right after the second block's BEGIN line, too.
        let second = two.rfind("-----BEGIN").unwrap();
        assert!(parse_keys(&two[..second + 28], "keys.pem").is_err());
    }

    #[test]
    fn valid_until_is_computed_when_asked_not_at_start() {
        let ttl = Duration::from_secs(60);
        let signer = TokenSigner::load(None, ttl).unwrap();
        std::thread::sleep(Duration::from_millis(1100));
        let asked_at = Utc::now().timestamp();
        let keys = signer.public_keys();
        assert!(
            keys[0].valid_until >= asked_at + 60,
            "a token signed now expires at {} or later, the key said {}",
            asked_at + 60,
            keys[0].valid_until
        );
    }

    #[test]
    fn signed_tokens_verify_and_carry_no_secret() {
        let signer = TokenSigner::load(None, DAY).unwrap();
        let user = UserId::generate();
        let signed = signer.sign(user, &[]).unwrap();
        let claims = signer.verifier().verify(&signed.token).unwrap();
        assert_eq!(claims.sub, user.to_string());
        assert_eq!(
            (claims.iss.as_str(), claims.aud.as_str()),
            (ISSUER, AUDIENCE)
        );
        assert_eq!(claims.exp, claims.iat + DAY.as_secs());
        assert!(
            claims.exp > claims.iat,
            "not expired at creation (original defect 1)"
        );
    }

    #[test]
    fn another_key_is_a_forgery() {
        let ours = TokenSigner::load(None, DAY).unwrap();
        let theirs = TokenSigner::load(None, DAY).unwrap();
        let forged = theirs.sign(UserId::generate(), &[]).unwrap().token;
        assert!(matches!(
            ours.verifier().verify(&forged),
            Err(TokenError::UnknownKey(_))
        ));
    }

    #[test]
    fn older_keys_in_the_file_still_verify_but_do_not_sign() {
        let dir = std::env::temp_dir().join(format!("shippy-keys-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let old_pem = generate_pem(1).unwrap();
        let old_file = dir.join("old.pem");
        std::fs::write(&old_file, &old_pem).unwrap();
        let old = TokenSigner::load(Some(&old_file), DAY).unwrap();
        let old_token = old.sign(UserId::generate(), &[]).unwrap().token;

        let rotated_file = dir.join("rotated.pem");
        std::fs::write(&rotated_file, generate_pem(1).unwrap() + &old_pem).unwrap();
        let rotated = TokenSigner::load(Some(&rotated_file), DAY).unwrap();
        assert_eq!(rotated.public_keys().len(), 2);
        rotated
            .verifier()
            .verify(&old_token)
            .expect("old tokens still verify");
        let new_token = rotated.sign(UserId::generate(), &[]).unwrap().token;
        assert_ne!(
            shippy_auth::token_kid(&new_token).unwrap(),
            shippy_auth::token_kid(&old_token).unwrap(),
            "the first key signs"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_missing_file_in_an_existing_directory_is_created_once_and_kept() {
        let dir = std::env::temp_dir().join(format!("shippy-newkey-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("jwt.pem");
        let first = TokenSigner::load(Some(&file), DAY).unwrap();
        let token = first.sign(UserId::generate(), &[]).unwrap().token;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&file).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "only the owner reads the key");
        }
        // A restart reads the same key: old tokens still verify.
        let again = TokenSigner::load(Some(&file), DAY).unwrap();
        again
            .verifier()
            .verify(&token)
            .expect("same key after restart");
        assert_eq!(again.public_keys()[0].kid, first.public_keys()[0].kid);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_missing_directory_is_not_created() {
        let file = std::env::temp_dir()
            .join(format!("shippy-nodir-{}", uuid::Uuid::new_v4()))
            .join("jwt.pem");
        let error = TokenSigner::load(Some(&file), DAY).unwrap_err();
        assert!(error.to_string().contains("cannot read"), "{error}");
        assert!(!file.exists());
    }

    #[test]
    fn a_file_without_a_private_key_is_refused() {
        let file = std::env::temp_dir().join(format!("shippy-nokey-{}", uuid::Uuid::new_v4()));
        std::fs::write(&file, "not a key").unwrap();
        let error = TokenSigner::load(Some(&file), DAY).unwrap_err();
        assert!(error.to_string().contains("no Ed25519"), "{error}");
        std::fs::remove_file(file).unwrap();
    }
}
