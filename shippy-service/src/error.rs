//! The error every handler returns, and its one mapping to `tonic::Status`.
//!
//! Services turn their domain errors into an [`ApiError`]; the conversion to
//! [`Status`] happens here only. Messages of the client-facing variants are
//! sent to the caller, so they must say what to change. Causes of
//! [`ApiError::Unavailable`] and [`ApiError::Internal`] are logged with their
//! whole chain and never sent.

use std::{error::Error as StdError, time::Duration};

use tonic::{Code, Status, metadata::MetadataValue};

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
    /// Like [`ApiError::ResourceExhausted`], with the wait before a retry can
    /// succeed, which travels as [`RETRY_AFTER_SECONDS`] metadata as well as
    /// in the message (`RESOURCE_EXHAUSTED`).
    #[error("{message}")]
    Throttled {
        /// Sent to the caller.
        message: String,
        /// How long until a retry can succeed.
        retry_after: Duration,
    },
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
            ApiError::Throttled {
                message,
                retry_after,
            } => {
                let mut status = Status::resource_exhausted(message);
                status.metadata_mut().insert(
                    RETRY_AFTER_SECONDS,
                    MetadataValue::from(whole_seconds(retry_after)),
                );
                status
            }
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

/// The metadata key of a `RESOURCE_EXHAUSTED` status's wait: whole seconds
/// (at least 1) before a retry can succeed, as decimal digits. Callers read
/// it with [`retry_after`], never from the message.
pub const RETRY_AFTER_SECONDS: &str = "retry-after-seconds";

/// The most seconds a wait may say (a day): a longer figure is clamped.
const MAX_RETRY_AFTER_SECS: u64 = 24 * 3600;

/// `wait` in whole seconds, rounded up, from 1 to a day.
pub fn whole_seconds(wait: Duration) -> u64 {
    let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    seconds.clamp(1, MAX_RETRY_AFTER_SECS)
}

/// The wait a `RESOURCE_EXHAUSTED` or `UNAVAILABLE` status names in its
/// [`RETRY_AFTER_SECONDS`] metadata (from 1 s to a day); `None` for any
/// other status, or when the metadata is missing or not a number.
pub fn retry_after(status: &Status) -> Option<Duration> {
    if !matches!(status.code(), Code::ResourceExhausted | Code::Unavailable) {
        return None;
    }
    let seconds: u64 = status
        .metadata()
        .get(RETRY_AFTER_SECONDS)?
        .to_str()
        .ok()?
        .parse()
        .ok()?;
    Some(Duration::from_secs(seconds.clamp(1, MAX_RETRY_AFTER_SECS)))
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
    #![allow(clippy::unwrap_used)]

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
    fn a_throttle_sends_its_wait_as_metadata() {
        let status = Status::from(ApiError::Throttled {
            message: "slow down".into(),
            retry_after: Duration::from_millis(41_200),
        });
        assert_eq!(status.code(), Code::ResourceExhausted);
        assert_eq!(status.message(), "slow down");
        assert_eq!(status.metadata().get(RETRY_AFTER_SECONDS).unwrap(), "42");
        assert_eq!(retry_after(&status), Some(Duration::from_secs(42)));

        let plain = Status::from(ApiError::ResourceExhausted("retry in 42s".into()));
        assert_eq!(retry_after(&plain), None, "the message is never parsed");
        let mut garbage = Status::resource_exhausted("x");
        garbage
            .metadata_mut()
            .insert(RETRY_AFTER_SECONDS, MetadataValue::from_static("soon"));
        assert_eq!(retry_after(&garbage), None);
        assert_eq!(whole_seconds(Duration::ZERO), 1);
        assert_eq!(
            whole_seconds(Duration::from_secs(10 * 24 * 3600)),
            24 * 3600
        );
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
