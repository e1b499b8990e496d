//! Waiting for a dependency (a database, a broker) with backoff.

use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};

use crate::{Shutdown, error::chain};

/// Backoff between attempts: from `min` doubling up to `max`, with jitter.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    /// Delay after the first failure.
    pub min: Duration,
    /// The longest delay between two attempts.
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            min: Duration::from_millis(200),
            max: Duration::from_secs(5),
        }
    }
}

/// Calls `attempt` until it succeeds, backing off between failures and
/// logging each one as a warning naming `what`. Returns `None` if `shutdown`
/// fires first.
pub async fn until_ready<T, E, F, Fut>(
    what: &str,
    backoff: Backoff,
    shutdown: &Shutdown,
    attempt: F,
) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
    E: std::error::Error + 'static,
{
    let policy = ExponentialBuilder::default()
        .with_min_delay(backoff.min)
        .with_max_delay(backoff.max)
        .with_jitter()
        .without_max_times();
    let retrying = attempt.retry(policy).notify(|error: &E, delay: Duration| {
        tracing::warn!(
            error = %chain(error),
            retry_in_ms = delay.as_millis() as u64,
            "{what} is not ready yet; retrying"
        );
    });
    tokio::select! {
        result = retrying => result.ok(),
        () = shutdown.wait() => None,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    const FAST: Backoff = Backoff {
        min: Duration::from_millis(1),
        max: Duration::from_millis(5),
    };

    #[tokio::test]
    async fn retries_until_the_attempt_succeeds() {
        let calls = AtomicU32::new(0);
        let value = until_ready("thing", FAST, &Shutdown::new(), || async {
            let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
            if n < 4 {
                Err(std::io::Error::other("not yet"))
            } else {
                Ok(n)
            }
        })
        .await;
        assert_eq!(value, Some(4));
    }

    #[tokio::test]
    async fn gives_up_when_shutdown_fires() {
        let shutdown = Shutdown::new();
        shutdown.trigger();
        let value: Option<()> = until_ready("thing", FAST, &shutdown, || async {
            Err(std::io::Error::other("never"))
        })
        .await;
        assert_eq!(value, None);
    }
}
