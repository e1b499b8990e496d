//! Every error the API answers, as `{"error": {"code", "message"}}` with
//! the HTTP status of its gRPC code: the one place that mapping lives.

use axum::{
    Json,
    extract::{
        FromRequest, FromRequestParts, Request,
        rejection::{JsonRejection, PathRejection, QueryRejection},
    },
    http::{HeaderValue, StatusCode, header, request::Parts},
    response::{IntoResponse, Response},
};
use std::time::Duration;

use serde::Serialize;
use shippy_service::{error::whole_seconds, text::clipped};
use tonic::Code;

/// The most characters of a parser's explanation (which may quote the
/// caller's input) an error message repeats.
const MESSAGE_CHARS: usize = 300;

/// An error response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpError {
    /// The gRPC code, which decides the HTTP status.
    pub code: Code,
    /// What went wrong, for a person.
    pub message: String,
    /// When a retry can succeed, sent as `Retry-After`; a `RESOURCE_EXHAUSTED`
    /// without one says 1 s.
    pub retry_after: Option<Duration>,
}

impl HttpError {
    /// An error with `code` and `message`, and no retry hint.
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    /// An `INVALID_ARGUMENT` (400).
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(Code::InvalidArgument, message)
    }

    /// An `UNAUTHENTICATED` (401).
    pub fn unauthenticated(message: impl Into<String>) -> Self {
        Self::new(Code::Unauthenticated, message)
    }
}

/// The HTTP status that matches a gRPC code.
pub fn http_status(code: Code) -> StatusCode {
    match code {
        Code::Ok => StatusCode::OK,
        Code::InvalidArgument | Code::OutOfRange => StatusCode::BAD_REQUEST,
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::AlreadyExists | Code::Aborted => StatusCode::CONFLICT,
        Code::FailedPrecondition => StatusCode::UNPROCESSABLE_ENTITY,
        Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
        Code::Unavailable | Code::Cancelled => StatusCode::SERVICE_UNAVAILABLE,
        Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        Code::Unknown | Code::Internal | Code::DataLoss => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// The code's name as the protos spell it, e.g. `INVALID_ARGUMENT`.
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

impl From<tonic::Status> for HttpError {
    fn from(status: tonic::Status) -> Self {
        // A status made here by the transport (it has a source error) would
        // describe our network; a service's own status never has one.
        let local = std::error::Error::source(&status).is_some();
        // tonic reports its own deadline passing as CANCELLED: it is the
        // service not answering in time. Any other status tonic makes (a
        // refused connection, or one that broke mid-call: UNKNOWN when the
        // service was killed while answering) is the service unreachable,
        // which a retry may cure: 503, not 500.
        let code = match (local, status.code()) {
            (true, _) if timed_out(&status) => Code::DeadlineExceeded,
            (true, _) => Code::Unavailable,
            (false, code) => code,
        };
        let message = match code {
            Code::DeadlineExceeded if local => {
                "a service this request needs did not answer in time; retry shortly".to_owned()
            }
            _ if local => "a service this request needs is unreachable; retry shortly".to_owned(),
            _ if status.message().is_empty() => code_name(status.code()).to_lowercase(),
            _ => status.message().to_owned(),
        };
        Self {
            code,
            message,
            // From the status's metadata: its text is for people.
            retry_after: shippy_service::error::retry_after(&status),
        }
    }
}

/// Whether `status` was made by tonic because its call's timeout passed.
fn timed_out(status: &tonic::Status) -> bool {
    let mut cause = std::error::Error::source(status);
    while let Some(error) = cause {
        if error.is::<tonic::TimeoutExpired>() {
            return true;
        }
        cause = error.source();
    }
    false
}

impl From<JsonRejection> for HttpError {
    fn from(rejection: JsonRejection) -> Self {
        let message = match &rejection {
            JsonRejection::MissingJsonContentType(_) => {
                "send the body as JSON with `content-type: application/json`".to_owned()
            }
            _ if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                return Self::new(
                    Code::OutOfRange,
                    format!(
                        "the request body is larger than {} bytes",
                        crate::app::MAX_BODY_BYTES
                    ),
                );
            }
            _ => format!(
                "the request body is not the JSON expected: {}",
                clipped(&rejection.body_text(), MESSAGE_CHARS)
            ),
        };
        Self::invalid(message)
    }
}

impl From<PathRejection> for HttpError {
    fn from(rejection: PathRejection) -> Self {
        Self::invalid(format!(
            "bad path: {}",
            clipped(&rejection.body_text(), MESSAGE_CHARS)
        ))
    }
}

impl From<QueryRejection> for HttpError {
    fn from(rejection: QueryRejection) -> Self {
        Self::invalid(format!(
            "bad query string: {}",
            clipped(&rejection.body_text(), MESSAGE_CHARS)
        ))
    }
}

/// Any axum extractor `E` (`Json`, `Query`, `Path`, …) whose rejection is
/// answered in the JSON error shape, through `HttpError`'s `From` for it.
#[derive(Debug)]
pub struct Input<E>(pub E);

impl<S, E> FromRequest<S> for Input<E>
where
    E: FromRequest<S>,
    HttpError: From<E::Rejection>,
    S: Send + Sync,
{
    type Rejection = HttpError;

    async fn from_request(request: Request, state: &S) -> Result<Self, HttpError> {
        Ok(Self(E::from_request(request, state).await?))
    }
}

/// The same for the extractors that read only the request's head.
impl<S: Send + Sync, E: FromRequestParts<S>> FromRequestParts<S> for Input<E>
where
    HttpError: From<E::Rejection>,
{
    type Rejection = HttpError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, HttpError> {
        let extracted = E::from_request_parts(parts, state).await;
        extracted.map(Self).map_err(HttpError::from)
    }
}

#[derive(Serialize)]
struct Body<'a> {
    error: Inner<'a>,
}

#[derive(Serialize)]
struct Inner<'a> {
    code: &'a str,
    message: &'a str,
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        // A body over the limit is reported as 413, not as OUT_OF_RANGE's 400.
        let status = if self.code == Code::OutOfRange && self.message.contains("larger than") {
            StatusCode::PAYLOAD_TOO_LARGE
        } else {
            http_status(self.code)
        };
        let mut response = (
            status,
            Json(Body {
                error: Inner {
                    code: code_name(self.code),
                    message: &self.message,
                },
            }),
        )
            .into_response();
        // Only a wait the service named: a RESOURCE_EXHAUSTED without one
        // (an account's quota) is not cured by waiting.
        if let Some(seconds) = self.retry_after.map(whole_seconds) {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_the_issue_names_has_its_status() {
        for (code, status) in [
            (Code::InvalidArgument, 400),
            (Code::Unauthenticated, 401),
            (Code::PermissionDenied, 403),
            (Code::NotFound, 404),
            (Code::AlreadyExists, 409),
            (Code::FailedPrecondition, 422),
            (Code::ResourceExhausted, 429),
            (Code::Unavailable, 503),
            (Code::DeadlineExceeded, 504),
            (Code::Internal, 500),
        ] {
            assert_eq!(http_status(code).as_u16(), status, "{code:?}");
        }
    }

    #[test]
    fn a_connection_that_broke_mid_call_is_unavailable_not_a_500() {
        // What tonic answers when the service is killed while answering:
        // UNKNOWN, made from the transport's error (found by make chaos).
        let broken = tonic::Status::from_error(Box::new(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "connection reset by peer",
        )));
        assert_eq!(broken.code(), Code::Unknown);
        let error = HttpError::from(broken);
        assert_eq!(error.code, Code::Unavailable);
        assert_eq!(
            error.message,
            "a service this request needs is unreachable; retry shortly"
        );
        assert_eq!(
            error.into_response().status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
        // A service's own UNKNOWN (no transport error in it) stays a 500.
        let own = HttpError::from(tonic::Status::unknown("odd"));
        assert_eq!(own.code, Code::Unknown);
    }

    #[test]
    fn retry_after_comes_from_the_statuss_metadata_not_its_text() {
        let mut status = tonic::Status::resource_exhausted("too many; retry in 42s");
        status
            .metadata_mut()
            .insert(shippy_service::error::RETRY_AFTER_SECONDS, 7.into());
        let response = HttpError::from(status).into_response();
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()[header::RETRY_AFTER], "7");

        // Only text: the message is not parsed, and without a wait named
        // (a quota, which waiting does not cure) there is no Retry-After.
        let response =
            HttpError::from(tonic::Status::resource_exhausted("slow down; retry in 42s"))
                .into_response();
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert!(!response.headers().contains_key(header::RETRY_AFTER));
        // Any error may carry a wait (an open circuit's 503).
        let open = HttpError {
            retry_after: Some(Duration::from_millis(2500)),
            ..HttpError::new(Code::Unavailable, "circuit open")
        };
        assert_eq!(open.into_response().headers()[header::RETRY_AFTER], "3");
        assert!(
            !HttpError::invalid("bad")
                .into_response()
                .headers()
                .contains_key(header::RETRY_AFTER)
        );
    }
}
