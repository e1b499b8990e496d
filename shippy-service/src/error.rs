//! The error every handler returns, and its one mapping to `tonic::Status`.
//!
//! Services turn their domain errors into an [`ApiError`]; the conversion to
//! [`Status`] happens here only. Messages of the client-facing variants are
//! sent to the caller, so they must say what to change. Causes of
//! [`ApiError::Unavailable`] and [`ApiError::Internal`] are logged with their
//! whole chain and never sent.

use std::error::Error as StdError;

use tonic::Status;

/// A boxed error cause.
pub type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// What went wrong in a request, as the caller should see it.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request itself is wrong (`INVALID_ARGUMENT`).
    #[error("{0}")]
    InvalidArgument(String),
    /// The caller has no valid credentials (`UNAUTHENTICATED`).
    #[error("{0}")]
    Unauthenticated(String),
    /// The caller is known but may not do this (`PERMISSION_DENIED`).
    #[error("{0}")]
    PermissionDenied(String),
    /// The caller (or everyone) asked too much, too often; the message says
    /// when to retry (`RESOURCE_EXHAUSTED`).
    #[error("{0}")]
    ResourceExhausted(String),
    /// What the request names does not exist (`NOT_FOUND`).
    #[error("{0}")]
    NotFound(String),
    /// What the request would create exists already (`ALREADY_EXISTS`).
    #[error("{0}")]
    AlreadyExists(String),
    /// The system is not in a state that allows the request (`FAILED_PRECONDITION`).
    #[error("{0}")]
    FailedPrecondition(String),
    /// A dependency cannot be reached; retrying later may work (`UNAVAILABLE`).
    #[error("{message}")]
    Unavailable {
        /// Sent to the caller.
        message: String,
        /// Logged, not sent.
        #[source]
        source: Option<BoxError>,
    },
    /// A fault of ours (`INTERNAL`); the caller only learns that it happened.
    #[error("internal error")]
    Internal(#[source] BoxError),
}

impl ApiError {
    /// `UNAVAILABLE` with a message for the caller and a cause for the log.
    pub fn unavailable(message: impl Into<String>, source: impl Into<BoxError>) -> Self {
        Self::Unavailable {
            message: message.into(),
            source: Some(source.into()),
        }
    }

    /// `INTERNAL`, keeping the cause for the log.
    pub fn internal(source: impl Into<BoxError>) -> Self {
        Self::Internal(source.into())
    }
}

impl From<ApiError> for Status {
    fn from(error: ApiError) -> Self {
        let status = match error {
            ApiError::InvalidArgument(message) => Status::invalid_argument(message),
            ApiError::Unauthenticated(message) => Status::unauthenticated(message),
            ApiError::PermissionDenied(message) => Status::permission_denied(message),
            ApiError::ResourceExhausted(message) => Status::resource_exhausted(message),
            ApiError::NotFound(message) => Status::not_found(message),
            ApiError::AlreadyExists(message) => Status::already_exists(message),
            ApiError::FailedPrecondition(message) => Status::failed_precondition(message),
            ApiError::Unavailable { message, source } => {
                match &source {
                    Some(source) => tracing::warn!(error = %chain(source.as_ref()), "{message}"),
                    None => tracing::warn!("{message}"),
                }
                return Status::unavailable(message);
            }
            ApiError::Internal(source) => {
                tracing::error!(error = %chain(source.as_ref()), "request failed");
                return Status::internal("internal error; the service logged the details");
            }
        };
        // The caller's mistake, not ours: worth a line, not an alarm.
        tracing::info!(code = ?status.code(), message = status.message(), "request refused");
        status
    }
}

/// An error and all its causes on one line: `outer: cause: root cause`.
pub fn chain(error: &(dyn StdError + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        // Some errors (tonic's Status) repeat their source in their own text.
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use tonic::Code;

    use super::*;

    #[test]
    fn each_variant_maps_to_its_code_and_keeps_client_messages() {
        let cases = [
            (
                ApiError::InvalidArgument("bad".into()),
                Code::InvalidArgument,
            ),
            (
                ApiError::Unauthenticated("who".into()),
                Code::Unauthenticated,
            ),
            (ApiError::NotFound("gone".into()), Code::NotFound),
            (
                ApiError::PermissionDenied("not yours".into()),
                Code::PermissionDenied,
            ),
            (
                ApiError::ResourceExhausted("slow down".into()),
                Code::ResourceExhausted,
            ),
            (ApiError::AlreadyExists("twice".into()), Code::AlreadyExists),
            (
                ApiError::FailedPrecondition("not now".into()),
                Code::FailedPrecondition,
            ),
        ];
        for (error, code) in cases {
            let message = error.to_string();
            let status = Status::from(error);
            assert_eq!(status.code(), code);
            assert_eq!(status.message(), message);
        }
    }

    #[test]
    fn internal_causes_are_not_sent_to_the_caller() {
        let status = Status::from(ApiError::internal("password=hunter2 leaked"));
        assert_eq!(status.code(), Code::Internal);
        assert!(!status.message().contains("hunter2"));

        let status = Status::from(ApiError::unavailable("store down", "connection refused"));
        assert_eq!(status.code(), Code::Unavailable);
        assert_eq!(status.message(), "store down");
    }

    #[test]
    fn chain_lists_every_cause() {
        let inner = std::io::Error::other("root cause");
        let outer = ApiError::unavailable("outer", inner);
        assert_eq!(chain(&outer), "outer: root cause");
    }
}
