//! The caller's bearer token: the one place the gateway reads
//! `authorization: Bearer <JWT>`. [`Bearer`] is an extractor; a request
//! without a well-formed token is answered 401 in the JSON error shape
//! before anything else of it is read. Whether the token is valid, the
//! services decide: the gateway passes the header on as it came.

use axum::{
    extract::{FromRequestParts, Request},
    http::{HeaderMap, header, request::Parts},
    middleware::Next,
    response::Response,
};
use tonic::metadata::{AsciiMetadataValue, MetadataValue};

use crate::{error::HttpError, forwarding::Caller};

/// The longest `authorization` header taken.
const MAX_AUTHORIZATION_BYTES: usize = 8 * 1024;

/// A well-formed bearer token: `authorization: Bearer <JWT>`, the JWT being
/// three base64url parts joined by dots.
#[derive(Debug, Clone)]
pub struct Bearer {
    token: String,
    /// The header as it came, passed on to the services as gRPC metadata.
    header: AsciiMetadataValue,
}

impl Bearer {
    /// The token of `headers`, or 401 saying how to send one.
    pub fn from_headers(headers: &HeaderMap) -> Result<Self, HttpError> {
        let missing = || {
            HttpError::unauthenticated(
                "missing token: send `authorization: Bearer <token>` \
                 (get one from POST /api/v1/login)",
            )
        };
        let value = headers.get(header::AUTHORIZATION).ok_or_else(missing)?;
        if value.len() > MAX_AUTHORIZATION_BYTES {
            return Err(HttpError::unauthenticated(
                "the authorization header is too long to be a token",
            ));
        }
        let text = value.to_str().map_err(|_| missing())?;
        let token = text
            .strip_prefix("Bearer ")
            .or_else(|| text.strip_prefix("bearer "))
            .ok_or_else(missing)?
            .trim();
        if !is_jwt(token) {
            return Err(HttpError::unauthenticated(
                "the token is not a JWT (three base64url parts joined by dots); \
                 get one from POST /api/v1/login",
            ));
        }
        let header = MetadataValue::try_from(value.as_bytes()).map_err(|_| {
            HttpError::unauthenticated("the authorization header must be `Bearer <token>`")
        })?;
        Ok(Self {
            token: token.to_owned(),
            header,
        })
    }

    /// The token itself (without `Bearer `).
    pub fn token(&self) -> &str {
        &self.token
    }

    /// `message` as a call made for `caller` with this token.
    pub fn request<T>(&self, caller: &Caller, message: T) -> tonic::Request<T> {
        let mut request = caller.request(message);
        request
            .metadata_mut()
            .insert("authorization", self.header.clone());
        request
    }
}

/// Three non-empty base64url parts joined by dots.
fn is_jwt(token: &str) -> bool {
    let base64url = |part: &str| {
        !part.is_empty()
            && part
                .bytes()
                .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_')
    };
    let parts: Vec<&str> = token.split('.').collect();
    parts.len() == 3 && parts.into_iter().all(base64url)
}

impl<S: Send + Sync> FromRequestParts<S> for Bearer {
    type Rejection = HttpError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, HttpError> {
        Self::from_headers(&parts.headers)
    }
}

/// Layer of the routes that need a signed-in caller: a request without a
/// well-formed token is 401 before its body is read, so an anonymous caller
/// learns nothing of the body's schema and sends no body for nothing.
pub async fn require_bearer(_: Bearer, request: Request, next: Next) -> Response {
    next.run(request).await
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn headers(authorization: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, authorization.parse().unwrap());
        headers
    }

    #[test]
    fn a_bearer_jwt_is_taken_and_passed_on_as_it_came() {
        for (sent, token) in [
            ("Bearer a.b.c", "a.b.c"),
            ("bearer a-1.b_2.c3 ", "a-1.b_2.c3"),
        ] {
            let bearer = Bearer::from_headers(&headers(sent)).unwrap();
            assert_eq!(bearer.token(), token);
            assert_eq!(bearer.header, sent);
        }
    }

    #[test]
    fn anything_else_is_401_saying_what_to_send() {
        let long = format!("Bearer {}", "a".repeat(MAX_AUTHORIZATION_BYTES));
        for (headers, says) in [
            (HeaderMap::new(), "missing token"),
            (headers("Basic dXNlcg=="), "missing token"),
            (headers("Bearer a.b"), "not a JWT"),
            (headers("Bearer a..c"), "not a JWT"),
            (headers("Bearer a.b.c+"), "not a JWT"),
            (headers(&long), "too long"),
        ] {
            let error = Bearer::from_headers(&headers).unwrap_err();
            assert_eq!(error.code, tonic::Code::Unauthenticated);
            assert!(error.message.contains(says), "{}", error.message);
        }
    }
}
