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

/// Sends each request of `cases` with `call` and asserts it is refused
/// with `code`, its message mentioning what the case names (e.g. the field
/// that is wrong), as [`refused`] says.
pub async fn refuses_each<T, R: Debug>(
    code: Code,
    cases: impl IntoIterator<Item = (T, &str)>,
    mut call: impl AsyncFnMut(T) -> Result<R, Status>,
) {
    for (request, mentions) in cases {
        refused(call(request).await, code, &[mentions]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_status_with_the_code_and_the_mentions_passes() {
        let status = refused(
            Err::<(), _>(Status::not_found("no vessel has room for 3 containers")),
            Code::NotFound,
            &["vessel", "3 containers"],
        );
        assert_eq!(status.code(), Code::NotFound);
    }

    #[test]
    #[should_panic(expected = "the message mentions \"consignment\"")]
    fn a_missing_mention_fails() {
        assert_status(
            &Status::not_found("no vessel"),
            Code::NotFound,
            &["consignment"],
        );
    }

    #[test]
    #[should_panic(expected = "left: NotFound")]
    fn another_code_fails() {
        assert_status(&Status::not_found("no vessel"), Code::InvalidArgument, &[]);
    }

    #[test]
    #[should_panic(expected = "a short message")]
    fn a_long_message_fails() {
        assert_status(
            &Status::not_found("x".repeat(MESSAGE_BOUND)),
            Code::NotFound,
            &[],
        );
    }

    #[test]
    #[should_panic(expected = "expected NotFound")]
    fn an_answer_fails() {
        refused(Ok::<_, Status>("placed"), Code::NotFound, &[]);
    }

    /// A call that refuses every number but 7, naming it.
    async fn refuse_all_but_seven(n: i32) -> Result<i32, Status> {
        match n {
            7 => Ok(7),
            n => Err(Status::invalid_argument(format!("{n} is not seven"))),
        }
    }

    #[tokio::test]
    async fn each_case_refused_with_its_mention_passes() {
        let cases = [(1, "1 is"), (2, "2 is")];
        refuses_each(Code::InvalidArgument, cases, refuse_all_but_seven).await;
    }

    #[tokio::test]
    #[should_panic(expected = "expected InvalidArgument")]
    async fn one_case_answered_fails() {
        let cases = [(1, "1 is"), (7, "7 is")];
        refuses_each(Code::InvalidArgument, cases, refuse_all_but_seven).await;
    }
}
