//! A secret the services share: vessel-service's reservation RPCs (`Reserve`,
//! `Confirm`, `Release`) take calls only with it, so a user's own client,
//! holding nothing but a user token and the public protos, can neither take a
//! fleet's room nor give back the room of a consignment that still uses it.
//!
//! The caller sends it as `x-service-token` metadata ([`ServiceToken::attach`]);
//! the callee compares SHA-256 digests ([`ServiceToken::check`]), so how long
//! the comparison takes says nothing about the secret.

use std::{fmt, net::IpAddr, str::FromStr, sync::Arc};

use sha2::{Digest, Sha256};
use shippy_service::{
    ApiError,
    admission::{CLIENT_ADDRESS_KEY, Vouch},
};
use tonic::{
    Request,
    codegen::http::HeaderMap,
    metadata::{AsciiMetadataValue, MetadataMap},
};

/// The metadata key the secret travels in.
pub const METADATA_KEY: &str = "x-service-token";
/// The shortest secret accepted: guessing it must be hopeless.
pub const MIN_LEN: usize = 32;
/// The longest secret accepted.
const MAX_LEN: usize = 1024;

/// The shared secret (never printed).
#[derive(Clone)]
pub struct ServiceToken {
    value: AsciiMetadataValue,
    digest: [u8; 32],
}

impl fmt::Debug for ServiceToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ServiceToken(<redacted>)")
    }
}

/// Why a configured secret is not usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "SERVICE_TOKEN must be {MIN_LEN} to {MAX_LEN} printable ASCII characters without spaces \
     (e.g. `openssl rand -hex 32`)"
)]
pub struct InvalidServiceToken;

impl FromStr for ServiceToken {
    type Err = InvalidServiceToken;

    fn from_str(secret: &str) -> Result<Self, Self::Err> {
        let secret = secret.trim();
        if !(MIN_LEN..=MAX_LEN).contains(&secret.len())
            || !secret.bytes().all(|b| b.is_ascii_graphic())
        {
            return Err(InvalidServiceToken);
        }
        let value = AsciiMetadataValue::try_from(secret).map_err(|_| InvalidServiceToken)?;
        Ok(Self {
            value,
            digest: Sha256::digest(secret.as_bytes()).into(),
        })
    }
}

impl ServiceToken {
    /// Adds the secret to an outgoing request.
    pub fn attach<T>(&self, request: &mut Request<T>) {
        request
            .metadata_mut()
            .insert(METADATA_KEY, self.value.clone());
    }

    /// Whether `metadata` carries this secret.
    pub fn matches(&self, metadata: &MetadataMap) -> bool {
        metadata
            .get(METADATA_KEY)
            .is_some_and(|sent| self.is(sent.as_bytes()))
    }

    /// Whether request `headers` carry this secret.
    pub fn vouches(&self, headers: &HeaderMap) -> bool {
        headers
            .get(METADATA_KEY)
            .is_some_and(|sent| self.is(sent.as_bytes()))
    }

    fn is(&self, sent: &[u8]) -> bool {
        <[u8; 32]>::from(Sha256::digest(sent)) == self.digest
    }

    /// This secret as the server's [`Vouch`]: calls that carry it may name
    /// the client they are forwarded for.
    pub fn vouch(&self) -> Vouch {
        let token = self.clone();
        Arc::new(move |headers| token.vouches(headers))
    }

    /// Adds the secret and the address of the client a call is forwarded
    /// for (the api-gateway calling for a browser).
    pub fn forward_for<T>(&self, request: &mut Request<T>, client: IpAddr) {
        self.attach(request);
        if let Ok(value) = AsciiMetadataValue::try_from(client.to_string()) {
            request.metadata_mut().insert(CLIENT_ADDRESS_KEY, value);
        }
    }

    /// The client a call is for: the address it names in
    /// [`CLIENT_ADDRESS_KEY`] when it carries the secret `expected` holds,
    /// else its TCP peer. A call without the secret cannot choose the
    /// address it is counted under.
    pub fn client_of<T>(expected: Option<&ServiceToken>, request: &Request<T>) -> Option<IpAddr> {
        let forwarded = expected
            .filter(|token| token.matches(request.metadata()))
            .and_then(|_| request.metadata().get(CLIENT_ADDRESS_KEY))
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.trim().parse().ok());
        forwarded.or_else(|| request.remote_addr().map(|address| address.ip()))
    }

    /// `Ok` when `request` carries the secret `expected` holds;
    /// `PERMISSION_DENIED` naming `what` otherwise, and always when no secret
    /// is configured (reservations then come from no one).
    pub fn check<T>(
        expected: Option<&ServiceToken>,
        request: &Request<T>,
        what: &str,
    ) -> Result<(), ApiError> {
        match expected {
            Some(token) if token.matches(request.metadata()) => Ok(()),
            Some(_) => Err(ApiError::PermissionDenied(format!(
                "{what} is for the services only: it needs the shared `{METADATA_KEY}`"
            ))),
            None => Err(ApiError::PermissionDenied(format!(
                "{what} is refused: this service has no SERVICE_TOKEN configured, so it takes \
                 reservations from no one (set the same SERVICE_TOKEN on it and on \
                 consignment-service)"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn short_spaced_or_control_secrets_are_refused() {
        assert!(SECRET.parse::<ServiceToken>().is_ok());
        for bad in [
            "",
            "short",
            &format!("{SECRET} x"),
            &format!("{SECRET}\u{1}"),
            &"x".repeat(MAX_LEN + 1),
        ] {
            assert_eq!(
                bad.parse::<ServiceToken>().err(),
                Some(InvalidServiceToken),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn only_the_same_secret_passes_the_check() {
        let token: ServiceToken = SECRET.parse().unwrap();
        let mut request = Request::new(());
        assert!(ServiceToken::check(Some(&token), &request, "Reserve").is_err());
        token.attach(&mut request);
        assert!(ServiceToken::check(Some(&token), &request, "Reserve").is_ok());
        let other: ServiceToken = SECRET.replace('0', "1").parse().unwrap();
        assert!(matches!(
            ServiceToken::check(Some(&other), &request, "Reserve"),
            Err(ApiError::PermissionDenied(message)) if message.contains("Reserve")
        ));
        assert!(matches!(
            ServiceToken::check(None, &request, "Reserve"),
            Err(ApiError::PermissionDenied(message)) if message.contains("SERVICE_TOKEN")
        ));
        assert_eq!(format!("{token:?}"), "ServiceToken(<redacted>)");
    }

    #[test]
    fn only_a_call_with_the_secret_names_its_client() {
        let token: ServiceToken = SECRET.parse().unwrap();
        let client: IpAddr = "203.0.113.9".parse().unwrap();
        let mut forwarded = Request::new(());
        token.forward_for(&mut forwarded, client);
        assert_eq!(
            ServiceToken::client_of(Some(&token), &forwarded),
            Some(client)
        );
        assert!(token.vouch()(&forwarded.metadata().clone().into_headers()));

        // Anyone else naming an address is not believed (no TCP peer here: none).
        let mut forged = Request::new(());
        forged
            .metadata_mut()
            .insert(CLIENT_ADDRESS_KEY, "203.0.113.9".parse().unwrap());
        assert_eq!(ServiceToken::client_of(Some(&token), &forged), None);
        let other: ServiceToken = SECRET.replace('0', "1").parse().unwrap();
        other.attach(&mut forged);
        assert_eq!(ServiceToken::client_of(Some(&token), &forged), None);
        assert!(!token.vouches(&forged.metadata().clone().into_headers()));
        // Without a configured secret, nobody names a client.
        assert_eq!(ServiceToken::client_of(None, &forwarded), None);
    }
}
