//! What a refusal must be: a status with the right code whose message says
//! what went wrong, briefly.

use std::fmt::Debug;

use tonic::{Code, Status};

/// The longest message a refusal may carry: outside text in it is an
/// excerpt, never the whole input.
pub const MESSAGE_BOUND: usize = 300;

/// Asserts `status` is `code` and its message mentions each of `mentions`
/// and is shorter than [`MESSAGE_BOUND`] bytes.
#[track_caller]
pub fn assert_status(status: &Status, code: Code, mentions: &[&str]) {
    assert_eq!(status.code(), code, "{status:?}");
    for wanted in mentions {
        assert!(
            status.message().contains(wanted),
            "the message mentions {wanted:?}: {status:?}"
        );
    }
    assert!(
        status.message().len() < MESSAGE_BOUND,
        "a short message: {status:?}"
    );
}

/// The status `result` failed with, asserted as [`assert_status`] says.
#[track_caller]
pub fn refused<T: Debug>(result: Result<T, Status>, code: Code, mentions: &[&str]) -> Status {
    let status = match result {
        Ok(answer) => panic!("expected {code:?} mentioning {mentions:?}, got {answer:?}"),
        Err(status) => status,
    };
    assert_status(&status, code, mentions);
    status
}
