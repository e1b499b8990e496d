//! Waiting for what a system does in its own time: a value asked for again
//! until it is the one wanted, within a bound.

use std::{fmt::Debug, time::Duration};

use tokio::time::Instant;

/// How long [`wait_until_equal`] waits between two questions.
pub const POLL: Duration = Duration::from_millis(50);

/// Asks `current` (every [`POLL`]) until it answers `wanted`; fails once
/// `bound` has passed, saying what `what` is instead.
pub async fn wait_until_equal<T, W>(
    what: &str,
    wanted: &W,
    bound: Duration,
    mut current: impl AsyncFnMut() -> T,
) where
    T: PartialEq<W> + Debug,
    W: Debug + ?Sized,
{
    let deadline = Instant::now() + bound;
    loop {
        let now = current().await;
        if now == *wanted {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "after {bound:?}, {what} is {now:?}, not {wanted:?}"
        );
        tokio::time::sleep(POLL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn returns_once_the_value_is_the_one_wanted() {
        let mut asked = 0;
        wait_until_equal("the count", &3, Duration::from_secs(5), async || {
            asked += 1;
            asked
        })
        .await;
        assert_eq!(asked, 3);
    }

    #[tokio::test]
    #[should_panic(expected = "after 200ms, the count is 0, not 1")]
    async fn fails_after_the_bound_naming_the_last_value() {
        wait_until_equal("the count", &1, Duration::from_millis(200), async || 0).await;
    }
}
